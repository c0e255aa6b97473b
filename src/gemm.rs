//! The crate's one door to `matrixmultiply::sgemm`, and its naive twin.
//!
//! Every matrix is a contiguous row-major `f32` slice. A transposed operand is read through
//! swapped strides: nothing is ever copied to transpose it. Shapes are checked here, once, so
//! the single `unsafe` call below is sound for any arguments a caller can pass; a wrong shape is
//! a bug in the caller and panics with the shapes involved.
//!
//! Threads: matrixmultiply's `threading` feature splits large products over up to 4 threads.
//! Each output block is computed by one thread in a fixed order, so results are bit-identical
//! whatever the thread count. The count is read once per process from `MATMUL_NUM_THREADS`;
//! [`set_threads`] sets it and must run before the first product.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    /// Use the matrix as stored.
    No,
    /// Use the transpose of the stored matrix.
    Yes,
}

/// Most threads matrixmultiply 0.3 will use, whatever it is asked for.
pub const MAX_THREADS: usize = 4;

static STARTED: AtomicBool = AtomicBool::new(false);

/// Asks matrixmultiply to use `n` threads (clamped to 1..=[`MAX_THREADS`]). Returns the number
/// it will use, or `None` if a product already ran and the pool is fixed.
pub fn set_threads(n: usize) -> Option<usize> {
    if STARTED.load(Ordering::Relaxed) {
        return None;
    }
    let n = n.clamp(1, MAX_THREADS);
    std::env::set_var("MATMUL_NUM_THREADS", n.to_string());
    Some(n)
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
    STARTED.store(true, Ordering::Relaxed);
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
