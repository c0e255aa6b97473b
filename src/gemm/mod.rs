//! Matrix products: the crate's own cache-blocked GEMM, its portable fallback, and a naive twin.
//!
//! Every matrix is a contiguous row-major `f32` slice. A transposed operand is read through its
//! layout when packed: nothing is transposed in place. Shapes are checked here, once, so the
//! `unsafe` code below is sound for any arguments a caller can pass; a wrong shape is a bug in
//! the caller and panics with the shapes involved.
//!
//! Where this CPU has a micro-kernel (AVX-512F or AVX2+FMA on x86_64, NEON on aarch64) the product is the
//! blocked loop nest of `blocked` over it, split over the crate's thread [`pool`]; it keeps
//! its packing buffers between calls, so the training loop allocates nothing. Elsewhere it is
//! `matrixmultiply::sgemm`, which is also the oracle the kernels are tested against. Either way
//! each output element is computed by one thread in a fixed order: results are bit-identical
//! whatever the thread count.
//!
//! [`pool`]: crate::pool

mod blocked;
mod kernel;

use std::sync::OnceLock;

pub use crate::pool::MAX_THREADS;

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    /// Use the matrix as stored.
    No,
    /// Use the transpose of the stored matrix.
    Yes,
}

/// Sets the number of threads products (and the other split loops) use, clamped to
/// 1..=[`MAX_THREADS`]. Returns the count that will be used, or `None` if the thread pool
/// already started and its size is fixed.
pub fn set_threads(n: usize) -> Option<usize> {
    let n = crate::pool::set_threads(n)?;
    // The fallback reads its own count once per process.
    std::env::set_var("MATMUL_NUM_THREADS", n.to_string());
    Some(n)
}

/// The environment variable that forces the portable fallback (`MNIST_MLP_GEMM=fallback`), to
/// compare the two on one machine or to rule the kernels out when chasing a problem.
pub const GEMM_ENV: &str = "MNIST_MLP_GEMM";

fn kernel() -> Option<&'static kernel::Kernel> {
    static KERNEL: OnceLock<Option<kernel::Kernel>> = OnceLock::new();
    KERNEL
        .get_or_init(|| match std::env::var(GEMM_ENV).as_deref() {
            Ok("fallback") => None,
            _ => kernel::select(),
        })
        .as_ref()
}

/// The code that runs the products on this CPU, e.g. `"avx2+fma 6x16"`, `"neon 8x8"`, or the
/// fallback's name.
pub fn kernel_name() -> &'static str {
    kernel().map_or("matrixmultiply (fallback)", |k| k.name)
}

/// Whether products run on the crate's own kernel (and so never allocate).
pub fn has_native_kernel() -> bool {
    kernel().is_some()
}

/// `c = alpha · op(a) · op(b) + beta · c`, with `op(a)` of shape `(m, k)`, `op(b)` of shape
/// `(k, n)` and `c` of shape `(m, n)`.
///
/// `a` is stored `(m, k)` when `ta` is [`Trans::No`] and `(k, m)` when [`Trans::Yes`]; likewise
/// `b`. With `beta == 0` the old contents of `c` are ignored (NaN included).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    check_shapes(m, n, k, a, b, c);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // An empty sum: c = beta · c, and beta == 0 ignores c.
        for v in c.iter_mut() {
            *v = if beta == 0.0 { 0.0 } else { beta * *v };
        }
        return;
    }
    match kernel() {
        Some(kern) => blocked::gemm(kern, (ta, tb), (m, n, k), alpha, a, b, beta, c, None),
        None => gemm_fallback(ta, tb, m, n, k, alpha, a, b, beta, c),
    }
}

/// The arguments of one [`gemm`] call, for [`gemm_pair`].
pub struct Product<'a> {
    /// How `a` is read.
    pub ta: Trans,
    /// How `b` is read.
    pub tb: Trans,
    /// Rows of `op(a)` and `c`.
    pub m: usize,
    /// Columns of `op(b)` and `c`.
    pub n: usize,
    /// Columns of `op(a)`, rows of `op(b)`.
    pub k: usize,
    /// Factor of the product.
    pub alpha: f32,
    /// Left operand.
    pub a: &'a [f32],
    /// Right operand.
    pub b: &'a [f32],
    /// Factor of the old `c`.
    pub beta: f32,
    /// Output.
    pub c: &'a mut [f32],
    /// When given (shaped like `c`): then `c = 0` wherever `relu_mask ≤ 0`, the gradient
    /// through a ReLU whose output is `relu_mask`, applied tile by tile like [`gemm_bias`]'s.
    pub relu_mask: Option<&'a [f32]>,
}

/// Two independent products (neither reads what the other writes: the borrows see to it), as
/// if by two [`gemm`] calls, with the same results. On the crate's kernels they are one job of
/// the thread pool: a thread that finishes its part of the first starts on the second instead
/// of waiting for the others, and there is one hand-over between threads instead of two.
pub fn gemm_pair(first: Product<'_>, second: Product<'_>) {
    first.check();
    second.check();
    let nonempty = |p: &Product<'_>| p.m > 0 && p.n > 0 && p.k > 0;
    match kernel() {
        Some(kern) if nonempty(&first) && nonempty(&second) => {
            fn plan<'a>(kern: &'a kernel::Kernel, p: Product<'a>) -> blocked::Plan<'a> {
                let epilogue = p.relu_mask.map(|mask| blocked::Epilogue::ReluGrad { mask });
                let (dims, ops) = ((p.m, p.n, p.k), (p.ta, p.tb));
                blocked::Plan::new(kern, ops, dims, p.alpha, p.a, p.b, p.beta, p.c, epilogue)
            }
            blocked::run(&[plan(kern, first), plan(kern, second)]);
        }
        _ => {
            first.run();
            second.run();
        }
    }
}

impl Product<'_> {
    /// The product on its own: [`gemm`], then the ReLU mask if any.
    pub fn run(self) {
        self.check();
        let (ta, tb, m, n, k) = (self.ta, self.tb, self.m, self.n, self.k);
        gemm(
            ta, tb, m, n, k, self.alpha, self.a, self.b, self.beta, self.c,
        );
        if let Some(mask) = self.relu_mask {
            relu_grad(self.c, mask);
        }
    }

    /// Panics unless the operands fit the shape and the mask, if any, is shaped like `c`.
    fn check(&self) {
        check_shapes(self.m, self.n, self.k, self.a, self.b, self.c);
        if let Some(mask) = self.relu_mask {
            assert_eq!(mask.len(), self.c.len(), "relu_mask is not shaped like c");
        }
    }
}

/// `c = op(a) · op(b) + bias` (`bias` added to every row), then `c = max(c, 0)` when `relu`:
/// a layer's forward pass. Shapes as for [`gemm`], `bias` of length `n`.
///
/// On the crate's kernels the bias and ReLU are applied to each block of `c` by the thread that
/// computed it, as soon as the block is final: no second pass over `c`, none of it on one
/// thread. The values are those of [`gemm`] followed by [`bias_relu`] on every row.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bias(
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    relu: bool,
    c: &mut [f32],
) {
    assert_eq!(
        bias.len(),
        n,
        "gemm_bias: bias has {} elements, expected {n}",
        bias.len()
    );
    match kernel() {
        Some(kern) if k > 0 && m > 0 && n > 0 => {
            check_shapes(m, n, k, a, b, c);
            let epilogue = blocked::Epilogue::Bias { bias, relu };
            blocked::gemm(kern, (ta, tb), (m, n, k), 1.0, a, b, 0.0, c, Some(epilogue));
        }
        _ => {
            gemm(ta, tb, m, n, k, 1.0, a, b, 0.0, c);
            for row in c.chunks_exact_mut(n) {
                bias_relu(row, bias, relu);
            }
        }
    }
}

/// `row += bias`, then `row = max(row, 0)` when `relu`, element by element over the shorter of
/// the two. A NaN stays NaN through the ReLU, so divergence is not hidden.
#[inline]
pub fn bias_relu(row: &mut [f32], bias: &[f32], relu: bool) {
    for (v, &b) in row.iter_mut().zip(bias) {
        let z = *v + b;
        *v = if relu && z < 0.0 { 0.0 } else { z };
    }
}

/// `dy = 0` wherever `y ≤ 0`, element by element over the shorter of the two: the gradient
/// through a ReLU whose output is `y`. A NaN gradient where the ReLU is open stays NaN.
#[inline]
pub fn relu_grad(dy: &mut [f32], y: &[f32]) {
    for (d, &a) in dy.iter_mut().zip(y) {
        *d = if a > 0.0 { *d } else { 0.0 };
    }
}

fn check_shapes(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &[f32]) {
    assert_eq!(
        a.len(),
        m * k,
        "gemm: a has {} elements, expected {m}×{k}",
        a.len()
    );
    assert_eq!(
        b.len(),
        k * n,
        "gemm: b has {} elements, expected {k}×{n}",
        b.len()
    );
    assert_eq!(
        c.len(),
        m * n,
        "gemm: c has {} elements, expected {m}×{n}",
        c.len()
    );
}

/// The same product by `matrixmultiply::sgemm` (the portable fallback, and the oracle of the
/// crate's kernels). Allocates its packing buffers on every call.
#[allow(clippy::too_many_arguments)]
pub fn gemm_fallback(
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    check_shapes(m, n, k, a, b, c);
    if m == 0 || n == 0 {
        return;
    }
    // Row stride and column stride of op(a) and op(b) as matrixmultiply reads them.
    let (rsa, csa) = match ta {
        Trans::No => (k, 1),
        Trans::Yes => (1, m),
    };
    let (rsb, csb) = match tb {
        Trans::No => (n, 1),
        Trans::Yes => (1, k),
    };
    // SAFETY: the asserts above give a.len() == m·k, b.len() == k·n and c.len() == m·n. With the
    // strides chosen, the largest offset read from `a` is (m−1)·rsa + (k−1)·csa = m·k − 1 in both
    // layouts (likewise for `b`), and the largest written in `c` is (m−1)·n + n−1 = m·n − 1, so
    // every access is in bounds. `c` is a unique borrow, so it cannot alias `a` or `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// The same product as [`gemm`] by the textbook triple loop, accumulating in `f64`: the oracle
/// the fast path is tested against. Not for production use.
#[allow(clippy::too_many_arguments)]
pub fn gemm_naive(
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    let at = |i: usize, p: usize| {
        if ta == Trans::No {
            a[i * k + p]
        } else {
            a[p * m + i]
        }
    };
    let bt = |p: usize, j: usize| {
        if tb == Trans::No {
            b[p * n + j]
        } else {
            b[j * k + p]
        }
    };
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|p| f64::from(at(i, p)) * f64::from(bt(p, j)))
                .sum();
            let old = if beta == 0.0 {
                0.0
            } else {
                f64::from(beta) * f64::from(c[i * n + j])
            };
            c[i * n + j] = (f64::from(alpha) * dot + old) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random(len: usize, rng: &mut Rng) -> Vec<f32> {
        (0..len).map(|_| rng.uniform() as f32 * 2.0 - 1.0).collect()
    }

    #[test]
    fn matches_naive_for_odd_shapes_and_every_transpose() {
        const SIZES: [usize; 5] = [1, 7, 63, 65, 785];
        let mut rng = Rng::new(42);
        let mut cases = 0;
        for ta in [Trans::No, Trans::Yes] {
            for tb in [Trans::No, Trans::Yes] {
                for &m in &SIZES {
                    for &n in &SIZES {
                        for &k in &SIZES {
                            if m * n * k > 5_000_000 {
                                continue; // 785³ and friends: slow oracle, nothing new to learn
                            }
                            let a = random(m * k, &mut rng);
                            let b = random(k * n, &mut rng);
                            let c0 = random(m * n, &mut rng);
                            let (mut fast, mut slow) = (c0.clone(), c0.clone());
                            gemm(ta, tb, m, n, k, 0.5, &a, &b, 2.0, &mut fast);
                            gemm_naive(ta, tb, m, n, k, 0.5, &a, &b, 2.0, &mut slow);
                            let tol = 1e-5 * k as f32 + 1e-5;
                            for (x, y) in fast.iter().zip(&slow) {
                                assert!(
                                    (x - y).abs() <= tol,
                                    "{ta:?}{tb:?} {m}×{n}×{k}: {x} vs {y}"
                                );
                            }
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert!(cases > 400, "{cases} cases");
    }

    /// Shapes past every blocking size of every kernel (kc 256, mc 528, nc 1024) and with edge
    /// tiles on both sides, against the fallback; then the same product again must give the
    /// same bits (the packing buffers are reused, stale data must not leak in).
    #[test]
    fn blocked_product_matches_the_fallback_across_block_edges() {
        let mut rng = Rng::new(7);
        for (m, n, k) in [
            (530, 17, 260),
            (9, 1041, 20),
            (600, 33, 257),
            (128, 10, 784),
        ] {
            for (ta, tb) in [
                (Trans::No, Trans::Yes),
                (Trans::Yes, Trans::No),
                (Trans::No, Trans::No),
            ] {
                let a = random(m * k, &mut rng);
                let b = random(k * n, &mut rng);
                let c0 = random(m * n, &mut rng);
                let (mut fast, mut oracle) = (c0.clone(), c0.clone());
                gemm(ta, tb, m, n, k, 0.75, &a, &b, -1.5, &mut fast);
                gemm_fallback(ta, tb, m, n, k, 0.75, &a, &b, -1.5, &mut oracle);
                let tol = 2e-6 * k as f32;
                for (idx, (x, y)) in fast.iter().zip(&oracle).enumerate() {
                    assert!(
                        (x - y).abs() <= tol,
                        "{ta:?}{tb:?} {m}×{n}×{k} [{idx}]: {x} vs {y}"
                    );
                }
                let mut again = c0.clone();
                gemm(ta, tb, m, n, k, 0.75, &a, &b, -1.5, &mut again);
                assert!(fast
                    .iter()
                    .zip(&again)
                    .all(|(x, y)| x.to_bits() == y.to_bits()));
            }
        }
    }

    /// The fused bias and ReLU give the bits of the product followed by a separate pass, on
    /// shapes with edge tiles, several depth blocks and a parallel split, NaN in c or not.
    #[test]
    fn fused_bias_and_relu_match_a_separate_pass() {
        let mut rng = Rng::new(11);
        for (m, n, k) in [
            (128, 512, 784),
            (37, 45, 300),
            (128, 10, 128),
            (3, 1, 1),
            (5, 4, 0),
        ] {
            let x = random(m * k, &mut rng);
            let w = random(n * k, &mut rng);
            let bias = random(n, &mut rng);
            for relu in [false, true] {
                let mut fused = vec![f32::NAN; m * n];
                gemm_bias(
                    Trans::No,
                    Trans::Yes,
                    m,
                    n,
                    k,
                    &x,
                    &w,
                    &bias,
                    relu,
                    &mut fused,
                );
                let mut apart = vec![0.0; m * n];
                gemm(Trans::No, Trans::Yes, m, n, k, 1.0, &x, &w, 0.0, &mut apart);
                for row in apart.chunks_exact_mut(n) {
                    bias_relu(row, &bias, relu);
                }
                assert!(
                    fused
                        .iter()
                        .zip(&apart)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{m}×{n}×{k} relu {relu}"
                );
                if relu {
                    assert!(fused.iter().all(|&v| v >= 0.0));
                }
            }
        }
    }

    /// A pair of products in one job gives the bits of the two products run one after the
    /// other (the second passed back through a ReLU): large (split over the pool) and small (one
    /// unit), with edge tiles, alpha and beta.
    #[test]
    fn a_pair_of_products_matches_two_calls() {
        let mut rng = Rng::new(13);
        for ((m1, n1, k1), (m2, n2, k2)) in [
            ((512, 784, 128), (128, 784, 512)),
            ((37, 45, 300), (5, 3, 2)),
            ((10, 128, 128), (128, 128, 10)),
        ] {
            let (a1, b1) = (random(m1 * k1, &mut rng), random(k1 * n1, &mut rng));
            let (a2, b2) = (random(m2 * k2, &mut rng), random(k2 * n2, &mut rng));
            let (c1, c2) = (random(m1 * n1, &mut rng), random(m2 * n2, &mut rng));
            let mask = random(m2 * n2, &mut rng); // about half ≤ 0
            let (mut p1, mut p2) = (c1.clone(), c2.clone());
            gemm_pair(
                Product {
                    ta: Trans::Yes,
                    tb: Trans::No,
                    m: m1,
                    n: n1,
                    k: k1,
                    alpha: 1.0,
                    a: &a1,
                    b: &b1,
                    beta: 0.0,
                    c: &mut p1,
                    relu_mask: None,
                },
                Product {
                    ta: Trans::No,
                    tb: Trans::No,
                    m: m2,
                    n: n2,
                    k: k2,
                    alpha: 0.5,
                    a: &a2,
                    b: &b2,
                    beta: 2.0,
                    c: &mut p2,
                    relu_mask: Some(&mask),
                },
            );
            let (mut s1, mut s2) = (c1.clone(), c2.clone());
            gemm(
                Trans::Yes,
                Trans::No,
                m1,
                n1,
                k1,
                1.0,
                &a1,
                &b1,
                0.0,
                &mut s1,
            );
            gemm(
                Trans::No,
                Trans::No,
                m2,
                n2,
                k2,
                0.5,
                &a2,
                &b2,
                2.0,
                &mut s2,
            );
            relu_grad(&mut s2, &mask);
            let same =
                |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same(&p1, &s1) && same(&p2, &s2),
                "{m1}×{n1}×{k1} and {m2}×{n2}×{k2}"
            );
        }
    }

    /// Runs `test` (this test's own path) again in a new process of this test binary, alone,
    /// with `env` set: there nothing has started the pool or chosen a kernel yet. Returns
    /// true in that process (go on with the test), false in the one that started it (done).
    /// Under `MNIST_MLP_TEST_RUNNER` (e.g. qemu-aarch64) the new process runs through it.
    fn in_fresh_process(test: &str, env: &[(&str, &str)]) -> bool {
        const CHILD: &str = "MNIST_MLP_TEST_FRESH_PROCESS";
        if std::env::var_os(CHILD).is_some() {
            return true;
        }
        let exe = std::env::current_exe().unwrap();
        // Through the emulator the tests run under, if any (as tests/common does).
        let runner = std::env::var("MNIST_MLP_TEST_RUNNER").unwrap_or_default();
        let mut words = runner.split_whitespace();
        let mut cmd = match words.next() {
            Some(program) => {
                let mut cmd = std::process::Command::new(program);
                cmd.args(words).arg(exe);
                cmd
            }
            None => std::process::Command::new(exe),
        };
        let out = cmd
            .args([test, "--exact", "--test-threads=1", "--nocapture"])
            .env(CHILD, "1")
            .env_remove(GEMM_ENV)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{test} in a fresh process with {env:?}:\n{text}"
        );
        false
    }

    /// Before the pool starts the count is clamped to 1..=MAX_THREADS and handed to the
    /// fallback too; once it runs, the count is fixed and a new one is refused.
    #[test]
    fn thread_count_is_clamped_then_fixed_once_the_pool_runs() {
        if !in_fresh_process(
            "gemm::tests::thread_count_is_clamped_then_fixed_once_the_pool_runs",
            &[],
        ) {
            return;
        }
        assert_eq!(set_threads(0), Some(1));
        assert_eq!(set_threads(MAX_THREADS + 3), Some(MAX_THREADS));
        assert_eq!(set_threads(3), Some(3));
        assert_eq!(std::env::var("MATMUL_NUM_THREADS").as_deref(), Ok("3"));
        assert_eq!(
            crate::pool::threads(),
            3,
            "the pool starts with the count set"
        );
        assert_eq!(set_threads(2), None, "the pool already runs");
        assert_eq!(crate::pool::threads(), 3);
    }

    /// Without `MNIST_MLP_GEMM=fallback` the products run on this CPU's kernel, if it has one.
    #[test]
    fn the_kernel_this_cpu_has_is_the_one_used() {
        if std::env::var(GEMM_ENV).as_deref() == Ok("fallback") {
            return; // the variable is tested in the next test
        }
        match kernel::select() {
            Some(k) => {
                assert!(has_native_kernel(), "{} is not used", k.name);
                assert_eq!(kernel_name(), k.name);
            }
            None => {
                assert!(!has_native_kernel());
                assert_eq!(kernel_name(), "matrixmultiply (fallback)");
            }
        }
    }

    /// `MNIST_MLP_GEMM=fallback` puts every product on matrixmultiply, with the same results.
    #[test]
    fn the_environment_variable_forces_the_fallback() {
        let name = "gemm::tests::the_environment_variable_forces_the_fallback";
        if !in_fresh_process(name, &[(GEMM_ENV, "fallback")]) {
            return;
        }
        assert!(!has_native_kernel());
        assert_eq!(kernel_name(), "matrixmultiply (fallback)");
        let mut rng = Rng::new(3);
        let (m, n, k) = (13, 11, 17);
        let (a, b, bias) = (
            random(m * k, &mut rng),
            random(n * k, &mut rng),
            random(n, &mut rng),
        );
        let mut fast = vec![0.0; m * n];
        gemm_bias(
            Trans::No,
            Trans::Yes,
            m,
            n,
            k,
            &a,
            &b,
            &bias,
            true,
            &mut fast,
        );
        let mut slow = vec![0.0; m * n];
        gemm_naive(Trans::No, Trans::Yes, m, n, k, 1.0, &a, &b, 0.0, &mut slow);
        for (row, (f, s)) in fast
            .chunks_exact(n)
            .zip(slow.chunks_exact_mut(n))
            .enumerate()
        {
            bias_relu(s, &bias, true);
            for (x, y) in f.iter().zip(s.iter()) {
                assert!((x - y).abs() < 1e-5, "row {row}: {x} vs {y}");
            }
        }
    }

    /// Products with no rows or no columns write nothing (and reach no kernel), whatever
    /// their depth; an empty sum is `beta · c`.
    #[test]
    fn products_with_an_empty_side_are_no_ops() {
        for (m, n, k) in [(0, 5, 3), (4, 0, 3), (0, 0, 2), (0, 5, 0)] {
            let (a, b) = (vec![1.0; m * k], vec![1.0; k * n]);
            let mut c = vec![7.0; m * n];
            gemm(Trans::No, Trans::No, m, n, k, 1.0, &a, &b, 0.0, &mut c);
            gemm(Trans::Yes, Trans::Yes, m, n, k, 1.0, &a, &b, 2.0, &mut c);
            gemm_fallback(Trans::No, Trans::Yes, m, n, k, 1.0, &a, &b, 0.0, &mut c);
            // (Not gemm_bias with n == 0: its fallback arm panics in chunks_exact_mut(0). No
            // layer has 0 outputs, so the library never asks for it.)
            if n > 0 {
                let bias = vec![1.0; n];
                gemm_bias(Trans::No, Trans::No, m, n, k, &a, &b, &bias, true, &mut c);
            }
            assert!(c.is_empty(), "{m}×{n}×{k}");
        }
    }

    /// A pair where either product is empty (no rows, no columns or no depth) gives the bits
    /// of two separate calls, like any other pair.
    #[test]
    fn a_pair_with_an_empty_product_matches_two_calls() {
        let mut rng = Rng::new(17);
        let shapes = [(0, 5, 3), (4, 0, 3), (4, 5, 0), (6, 20, 9)];
        for &(m1, n1, k1) in &shapes {
            for &(m2, n2, k2) in &shapes {
                let (a1, b1) = (random(m1 * k1, &mut rng), random(k1 * n1, &mut rng));
                let (a2, b2) = (random(m2 * k2, &mut rng), random(k2 * n2, &mut rng));
                let (c1, c2) = (random(m1 * n1, &mut rng), random(m2 * n2, &mut rng));
                let mask = random(m2 * n2, &mut rng);
                let (mut p1, mut p2) = (c1.clone(), c2.clone());
                let product = |m, n, k, a, b, c, relu_mask| Product {
                    ta: Trans::No,
                    tb: Trans::Yes,
                    m,
                    n,
                    k,
                    alpha: 0.5,
                    a,
                    b,
                    beta: 2.0,
                    c,
                    relu_mask,
                };
                gemm_pair(
                    product(m1, n1, k1, &a1, &b1, &mut p1, None),
                    product(m2, n2, k2, &a2, &b2, &mut p2, Some(&mask)),
                );
                let (mut s1, mut s2) = (c1.clone(), c2.clone());
                gemm(
                    Trans::No,
                    Trans::Yes,
                    m1,
                    n1,
                    k1,
                    0.5,
                    &a1,
                    &b1,
                    2.0,
                    &mut s1,
                );
                gemm(
                    Trans::No,
                    Trans::Yes,
                    m2,
                    n2,
                    k2,
                    0.5,
                    &a2,
                    &b2,
                    2.0,
                    &mut s2,
                );
                relu_grad(&mut s2, &mask);
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&p1),
                    bits(&s1),
                    "first of {m1}×{n1}×{k1}, {m2}×{n2}×{k2}"
                );
                assert_eq!(
                    bits(&p2),
                    bits(&s2),
                    "second of {m1}×{n1}×{k1}, {m2}×{n2}×{k2}"
                );
            }
        }
    }

    /// A 2×2×2 product whose ReLU mask has one value too many.
    fn product_with_a_long_mask<'a>(c: &'a mut [f32], mask: &'a [f32]) -> Product<'a> {
        Product {
            ta: Trans::No,
            tb: Trans::No,
            m: 2,
            n: 2,
            k: 2,
            alpha: 1.0,
            a: &[1.0; 4],
            b: &[1.0; 4],
            beta: 0.0,
            c,
            relu_mask: Some(mask),
        }
    }

    #[test]
    #[should_panic(expected = "relu_mask is not shaped like c")]
    fn a_product_refuses_a_mask_not_shaped_like_c() {
        product_with_a_long_mask(&mut [0.0; 4], &[1.0; 5]).run();
    }

    #[test]
    #[should_panic(expected = "relu_mask is not shaped like c")]
    fn a_pair_refuses_a_mask_not_shaped_like_c() {
        let (mut c1, mut c2) = ([0.0; 4], [0.0; 4]);
        let mask = [1.0; 5];
        gemm_pair(
            product_with_a_long_mask(&mut c1, &mask[..4]),
            product_with_a_long_mask(&mut c2, &mask),
        );
    }

    #[test]
    fn empty_inner_dimension_scales_c() {
        let mut c = [1.0, -2.0];
        gemm(Trans::No, Trans::No, 1, 2, 0, 1.0, &[], &[], 3.0, &mut c);
        assert_eq!(c, [3.0, -6.0]);
        gemm(Trans::No, Trans::No, 1, 2, 0, 1.0, &[], &[], 0.0, &mut c);
        assert_eq!(c, [0.0, 0.0]);
    }

    #[test]
    fn beta_zero_ignores_garbage_in_c() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [1.0, 0.0, 0.0, 1.0];
        let mut c = [f32::NAN; 4];
        gemm(Trans::No, Trans::No, 2, 2, 2, 1.0, &a, &b, 0.0, &mut c);
        assert_eq!(c, a);
    }

    #[test]
    #[should_panic(expected = "expected 2×3")]
    fn wrong_shape_is_caught_before_the_unsafe_call() {
        let mut c = [0.0; 4];
        gemm(
            Trans::No,
            Trans::No,
            2,
            2,
            3,
            1.0,
            &[0.0; 5],
            &[0.0; 6],
            0.0,
            &mut c,
        );
    }
}
