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

/// One operand of a product: a row-major matrix as stored, read as stored or transposed.
#[derive(Clone, Copy, Debug)]
pub struct Operand<'a> {
    /// The stored matrix.
    pub data: &'a [f32],
    /// How the product reads it.
    pub trans: Trans,
}

impl<'a> Operand<'a> {
    /// `data` read as `trans` says.
    pub fn new(data: &'a [f32], trans: Trans) -> Self {
        Operand { data, trans }
    }

    /// The matrix as stored.
    pub fn stored(data: &'a [f32]) -> Self {
        Operand::new(data, Trans::No)
    }

    /// The transpose of the stored matrix (read through its layout, never copied).
    pub fn transposed(data: &'a [f32]) -> Self {
        Operand::new(data, Trans::Yes)
    }
}

/// What is done to each tile of `c` once the product there is final.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    /// Nothing.
    None,
    /// `c += bias` on every row (`bias` has one value per column of `c`), then `c = max(c, 0)`
    /// when `relu` ([`bias_relu`]): a layer's forward pass.
    Bias {
        /// One value per column of `c`.
        bias: &'a [f32],
        /// Whether a ReLU follows the bias.
        relu: bool,
    },
    /// `c = 0` wherever `mask ≤ 0` (`mask` shaped like `c`, [`relu_grad`]): the gradient
    /// through a ReLU whose output is `mask`.
    ReluGrad {
        /// The ReLU's output, shaped like `c`.
        mask: &'a [f32],
    },
}

/// A product `c = alpha · op(a) · op(b) + beta · c` followed by an [`Epilogue`], with `op(a)`
/// of shape `(m, k)`, `op(b)` of shape `(k, n)` and `c` of shape `(m, n)`: the one way the
/// crate multiplies matrices.
///
/// `a` is stored `(m, k)` when read as stored and `(k, m)` when transposed; likewise `b`. With
/// `beta == 0` (the default) the old contents of `c` are ignored, NaN included. Run it with
/// [`Product::run`] (this CPU's kernel), [`run_pair`] (two at once), or, to compare,
/// [`Product::run_fallback`] (matrixmultiply) and [`Product::run_naive`] (the textbook loop).
/// Shapes are checked when it runs; a wrong one is a bug in the caller and panics with the
/// shapes involved.
pub struct Product<'a> {
    m: usize,
    n: usize,
    k: usize,
    a: Operand<'a>,
    b: Operand<'a>,
    c: &'a mut [f32],
    alpha: f32,
    beta: f32,
    epilogue: Epilogue<'a>,
}

impl<'a> Product<'a> {
    /// `c = op(a) · op(b)`, with `(m, n, k)` as in the type's description.
    pub fn new(
        (m, n, k): (usize, usize, usize),
        a: Operand<'a>,
        b: Operand<'a>,
        c: &'a mut [f32],
    ) -> Self {
        Product {
            m,
            n,
            k,
            a,
            b,
            c,
            alpha: 1.0,
            beta: 0.0,
            epilogue: Epilogue::None,
        }
    }

    /// The same product as `c = alpha · op(a) · op(b) + beta · c`.
    pub fn scaled(self, alpha: f32, beta: f32) -> Self {
        Product {
            alpha,
            beta,
            ..self
        }
    }

    /// The same product, with `epilogue` applied to `c` once it is final.
    pub fn then(self, epilogue: Epilogue<'a>) -> Self {
        Product { epilogue, ..self }
    }

    /// Runs the product on this CPU's kernel, or on the fallback where it has none.
    ///
    /// On the crate's kernels the epilogue is applied to each block of `c` by the thread that
    /// computed it, as soon as the block is final: no second pass over `c`, none of it on one
    /// thread. The values are those of the product followed by the epilogue.
    pub fn run(self) {
        self.check();
        match kernel() {
            Some(kern) if self.has_work() => blocked::run_job(&[blocked::Plan::new(kern, self)]),
            _ => self.run_checked_fallback(),
        }
    }

    /// Runs the product on `matrixmultiply::sgemm` (the portable fallback, and the oracle of
    /// the crate's kernels), then the epilogue over all of `c`. Allocates its packing buffers
    /// on every call.
    pub fn run_fallback(self) {
        self.check();
        self.run_checked_fallback();
    }

    /// Runs the product by the textbook triple loop accumulating in `f64`, then the epilogue:
    /// the oracle the fast path is tested against. Not for production use.
    pub fn run_naive(self) {
        self.check();
        let (m, n, k) = (self.m, self.n, self.k);
        let (a, b) = (self.a, self.b);
        let at = |i: usize, p: usize| match a.trans {
            Trans::No => a.data[i * k + p],
            Trans::Yes => a.data[p * m + i],
        };
        let bt = |p: usize, j: usize| match b.trans {
            Trans::No => b.data[p * n + j],
            Trans::Yes => b.data[j * k + p],
        };
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|p| f64::from(at(i, p)) * f64::from(bt(p, j)))
                    .sum();
                let c = &mut self.c[i * n + j];
                let old = if self.beta == 0.0 {
                    0.0
                } else {
                    f64::from(self.beta) * f64::from(*c)
                };
                *c = (f64::from(self.alpha) * dot + old) as f32;
            }
        }
        apply_epilogue(self.epilogue, self.c, n);
    }

    /// Whether a kernel has anything to multiply: no empty side, no empty sum.
    fn has_work(&self) -> bool {
        self.m > 0 && self.n > 0 && self.k > 0
    }

    /// [`Product::run_fallback`] after [`Product::check`].
    fn run_checked_fallback(self) {
        let (m, n, k) = (self.m, self.n, self.k);
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            // An empty sum: c = beta · c, and beta == 0 ignores c.
            for v in self.c.iter_mut() {
                *v = if self.beta == 0.0 {
                    0.0
                } else {
                    self.beta * *v
                };
            }
        } else {
            // Row stride and column stride of op(a) and op(b) as matrixmultiply reads them.
            let (rsa, csa) = match self.a.trans {
                Trans::No => (k, 1),
                Trans::Yes => (1, m),
            };
            let (rsb, csb) = match self.b.trans {
                Trans::No => (n, 1),
                Trans::Yes => (1, k),
            };
            // SAFETY: `check` gave a.len() == m·k, b.len() == k·n and c.len() == m·n. With the
            // strides chosen, the largest offset read from `a` is (m−1)·rsa + (k−1)·csa = m·k − 1
            // in both layouts (likewise for `b`), and the largest written in `c` is
            // (m−1)·n + n−1 = m·n − 1, so every access is in bounds. `c` is a unique borrow, so
            // it cannot alias `a` or `b`.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    self.alpha,
                    self.a.data.as_ptr(),
                    rsa as isize,
                    csa as isize,
                    self.b.data.as_ptr(),
                    rsb as isize,
                    csb as isize,
                    self.beta,
                    self.c.as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
        }
        apply_epilogue(self.epilogue, self.c, n);
    }

    /// Panics unless the operands fit the shape and the epilogue's bias or mask fits `c`.
    fn check(&self) {
        let (m, n, k) = (self.m, self.n, self.k);
        let fits = |what: &str, len: usize, rows: usize, cols: usize| {
            assert_eq!(
                len,
                rows * cols,
                "gemm: {what} has {len} elements, expected {rows}×{cols}"
            );
        };
        fits("a", self.a.data.len(), m, k);
        fits("b", self.b.data.len(), k, n);
        fits("c", self.c.len(), m, n);
        match self.epilogue {
            Epilogue::None => {}
            Epilogue::Bias { bias, .. } => fits("the bias", bias.len(), 1, n),
            Epilogue::ReluGrad { mask } => fits("the ReLU mask", mask.len(), m, n),
        }
    }
}

/// Runs two independent products (neither reads what the other writes: the borrows see to
/// it), with the results of two [`Product::run`] calls. On the crate's kernels they are one job
/// of the thread pool: a thread that finishes its part of the first starts on the second
/// instead of waiting for the others, and there is one hand-over between threads instead of
/// two.
pub fn run_pair(first: Product<'_>, second: Product<'_>) {
    first.check();
    second.check();
    match kernel() {
        Some(kern) if first.has_work() && second.has_work() => blocked::run_job(&[
            blocked::Plan::new(kern, first),
            blocked::Plan::new(kern, second),
        ]),
        _ => {
            first.run();
            second.run();
        }
    }
}

/// `epilogue` on all of `c`, `n` values a row, in one pass after the product.
fn apply_epilogue(epilogue: Epilogue<'_>, c: &mut [f32], n: usize) {
    if n == 0 {
        return; // no columns: nothing to do, and no rows to cut
    }
    match epilogue {
        Epilogue::None => {}
        Epilogue::Bias { bias, relu } => {
            for row in c.chunks_exact_mut(n) {
                bias_relu(row, bias, relu);
            }
        }
        Epilogue::ReluGrad { mask } => relu_grad(c, mask),
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
                            Product::new(
                                (m, n, k),
                                Operand::new(&a, ta),
                                Operand::new(&b, tb),
                                &mut fast,
                            )
                            .scaled(0.5, 2.0)
                            .run();
                            Product::new(
                                (m, n, k),
                                Operand::new(&a, ta),
                                Operand::new(&b, tb),
                                &mut slow,
                            )
                            .scaled(0.5, 2.0)
                            .run_naive();
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
                Product::new(
                    (m, n, k),
                    Operand::new(&a, ta),
                    Operand::new(&b, tb),
                    &mut fast,
                )
                .scaled(0.75, -1.5)
                .run();
                Product::new(
                    (m, n, k),
                    Operand::new(&a, ta),
                    Operand::new(&b, tb),
                    &mut oracle,
                )
                .scaled(0.75, -1.5)
                .run_fallback();
                let tol = 2e-6 * k as f32;
                for (idx, (x, y)) in fast.iter().zip(&oracle).enumerate() {
                    assert!(
                        (x - y).abs() <= tol,
                        "{ta:?}{tb:?} {m}×{n}×{k} [{idx}]: {x} vs {y}"
                    );
                }
                let mut again = c0.clone();
                Product::new(
                    (m, n, k),
                    Operand::new(&a, ta),
                    Operand::new(&b, tb),
                    &mut again,
                )
                .scaled(0.75, -1.5)
                .run();
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
                Product::new(
                    (m, n, k),
                    Operand::stored(&x),
                    Operand::transposed(&w),
                    &mut fused,
                )
                .then(Epilogue::Bias { bias: &bias, relu })
                .run();
                let mut apart = vec![0.0; m * n];
                Product::new(
                    (m, n, k),
                    Operand::stored(&x),
                    Operand::transposed(&w),
                    &mut apart,
                )
                .run();
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
            let relu_grad_epilogue = Epilogue::ReluGrad { mask: &mask };
            run_pair(
                Product::new(
                    (m1, n1, k1),
                    Operand::transposed(&a1),
                    Operand::stored(&b1),
                    &mut p1,
                ),
                Product::new(
                    (m2, n2, k2),
                    Operand::stored(&a2),
                    Operand::stored(&b2),
                    &mut p2,
                )
                .scaled(0.5, 2.0)
                .then(relu_grad_epilogue),
            );
            let (mut s1, mut s2) = (c1.clone(), c2.clone());
            Product::new(
                (m1, n1, k1),
                Operand::transposed(&a1),
                Operand::stored(&b1),
                &mut s1,
            )
            .run();
            Product::new(
                (m2, n2, k2),
                Operand::stored(&a2),
                Operand::stored(&b2),
                &mut s2,
            )
            .scaled(0.5, 2.0)
            .run();
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
        Product::new(
            (m, n, k),
            Operand::stored(&a),
            Operand::transposed(&b),
            &mut fast,
        )
        .then(Epilogue::Bias {
            bias: &bias,
            relu: true,
        })
        .run();
        let mut slow = vec![0.0; m * n];
        Product::new(
            (m, n, k),
            Operand::stored(&a),
            Operand::transposed(&b),
            &mut slow,
        )
        .run_naive();
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
            Product::new((m, n, k), Operand::stored(&a), Operand::stored(&b), &mut c).run();
            Product::new(
                (m, n, k),
                Operand::transposed(&a),
                Operand::transposed(&b),
                &mut c,
            )
            .scaled(1.0, 2.0)
            .run();
            Product::new(
                (m, n, k),
                Operand::stored(&a),
                Operand::transposed(&b),
                &mut c,
            )
            .run_fallback();
            let bias = vec![1.0; n];
            let bias = Epilogue::Bias {
                bias: &bias,
                relu: true,
            };
            Product::new((m, n, k), Operand::stored(&a), Operand::stored(&b), &mut c)
                .then(bias)
                .run();
            Product::new((m, n, k), Operand::stored(&a), Operand::stored(&b), &mut c)
                .then(bias)
                .run_naive();
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
                let product = |(m, n, k), a, b, c| {
                    Product::new((m, n, k), Operand::stored(a), Operand::transposed(b), c)
                        .scaled(0.5, 2.0)
                };
                run_pair(
                    product((m1, n1, k1), &a1, &b1, &mut p1),
                    product((m2, n2, k2), &a2, &b2, &mut p2)
                        .then(Epilogue::ReluGrad { mask: &mask }),
                );
                let (mut s1, mut s2) = (c1.clone(), c2.clone());
                Product::new(
                    (m1, n1, k1),
                    Operand::stored(&a1),
                    Operand::transposed(&b1),
                    &mut s1,
                )
                .scaled(0.5, 2.0)
                .run();
                Product::new(
                    (m2, n2, k2),
                    Operand::stored(&a2),
                    Operand::transposed(&b2),
                    &mut s2,
                )
                .scaled(0.5, 2.0)
                .run();
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
        let ones = Operand::stored(&[1.0; 4]);
        Product::new((2, 2, 2), ones, ones, c).then(Epilogue::ReluGrad { mask })
    }

    #[test]
    #[should_panic(expected = "the ReLU mask has 5 elements, expected 2×2")]
    fn a_product_refuses_a_mask_not_shaped_like_c() {
        product_with_a_long_mask(&mut [0.0; 4], &[1.0; 5]).run();
    }

    #[test]
    #[should_panic(expected = "the ReLU mask has 5 elements, expected 2×2")]
    fn a_pair_refuses_a_mask_not_shaped_like_c() {
        let (mut c1, mut c2) = ([0.0; 4], [0.0; 4]);
        let mask = [1.0; 5];
        run_pair(
            product_with_a_long_mask(&mut c1, &mask[..4]),
            product_with_a_long_mask(&mut c2, &mask),
        );
    }

    #[test]
    #[should_panic(expected = "the bias has 3 elements, expected 1×2")]
    fn a_product_refuses_a_bias_not_as_wide_as_c() {
        let ones = Operand::stored(&[1.0; 4]);
        let bias = Epilogue::Bias {
            bias: &[0.0; 3],
            relu: false,
        };
        Product::new((2, 2, 2), ones, ones, &mut [0.0; 4])
            .then(bias)
            .run();
    }

    #[test]
    fn empty_inner_dimension_scales_c() {
        let mut c = [1.0, -2.0];
        Product::new(
            (1, 2, 0),
            Operand::stored(&[]),
            Operand::stored(&[]),
            &mut c,
        )
        .scaled(1.0, 3.0)
        .run();
        assert_eq!(c, [3.0, -6.0]);
        Product::new(
            (1, 2, 0),
            Operand::stored(&[]),
            Operand::stored(&[]),
            &mut c,
        )
        .run();
        assert_eq!(c, [0.0, 0.0]);
    }

    /// The descriptor's factors and epilogue reach every way of running it, checked against
    /// values worked out by hand (the paths are otherwise compared with each other, which a
    /// factor lost in the descriptor would pass).
    #[test]
    fn factors_and_epilogues_reach_every_runner() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let identity = [1.0, 0.0, 0.0, 1.0];
        type Runner = fn(Product<'_>);
        let runners: [(&str, Runner); 3] = [
            ("run", |p: Product<'_>| p.run()),
            ("run_fallback", |p: Product<'_>| p.run_fallback()),
            ("run_naive", |p: Product<'_>| p.run_naive()),
        ];
        /// `c = a · I`, 2 × 2.
        fn product<'a>(a: &'a [f32], identity: &'a [f32], c: &'a mut [f32]) -> Product<'a> {
            Product::new((2, 2, 2), Operand::stored(a), Operand::stored(identity), c)
        }
        for (name, run) in runners {
            let mut c = [f32::NAN; 4];
            run(product(&a, &identity, &mut c));
            assert_eq!(c, a, "{name}: alpha 1, beta 0 by default");
            let mut c = [1.0; 4];
            run(product(&a, &identity, &mut c).scaled(0.5, 2.0));
            assert_eq!(c, [2.5, 3.0, 3.5, 4.0], "{name}: 0.5 · a · I + 2 · c");
            let bias = Epilogue::Bias {
                bias: &[-3.0, 1.0],
                relu: true,
            };
            run(product(&a, &identity, &mut c).then(bias));
            assert_eq!(c, [0.0, 3.0, 0.0, 5.0], "{name}: max(a · I + bias, 0)");
            let mask = [1.0, 0.0, -1.0, 2.0];
            run(product(&a, &identity, &mut c).then(Epilogue::ReluGrad { mask: &mask }));
            assert_eq!(
                c,
                [1.0, 0.0, 0.0, 4.0],
                "{name}: a · I where the mask is positive"
            );
        }
    }

    #[test]
    fn beta_zero_ignores_garbage_in_c() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [1.0, 0.0, 0.0, 1.0];
        let mut c = [f32::NAN; 4];
        Product::new((2, 2, 2), Operand::stored(&a), Operand::stored(&b), &mut c).run();
        assert_eq!(c, a);
    }

    #[test]
    #[should_panic(expected = "expected 2×3")]
    fn wrong_shape_is_caught_before_the_unsafe_call() {
        let mut c = [0.0; 4];
        Product::new(
            (2, 2, 3),
            Operand::stored(&[0.0; 5]),
            Operand::stored(&[0.0; 6]),
            &mut c,
        )
        .run();
    }
}
