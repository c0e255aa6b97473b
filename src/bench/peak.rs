//! The machine's own peak for `bench` to compare with: a short probe of independent vector FMA
//! chains, with the widest FMA this CPU has.

use std::time::Instant;

use super::time_ms;

/// Estimated single-core f32 peak: independent chains of vector FMAs, using the widest FMA
/// this CPU has (AVX-512F or AVX2+FMA on x86_64, NEON on aarch64); the best of several ~10 ms rounds, so a
/// busy machine lowers it less. An estimate: turbo and other load move it.
pub fn fma_peak_gflops() -> f64 {
    let iters = 1u64 << 16;
    // A first round warms the core up and sizes the rounds to about 10 ms.
    let secs = time_ms(|| {
        std::hint::black_box(fma_probe(iters));
    }) / 1e3;
    let scale = ((0.01 / secs.max(1e-7)) as u64).clamp(1, 1 << 12);
    (0..7)
        .map(|_| {
            let t = Instant::now();
            let flops = fma_probe(iters * scale);
            flops / t.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

#[cfg(target_arch = "x86_64")]
fn fma_probe(iters: u64) -> f64 {
    #[cfg(mnist_mlp_avx512)]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature the function is compiled for was just detected.
            let sink = unsafe { fma_probe_avx512(iters) };
            std::hint::black_box(sink);
            return (iters * 12 * 16 * 2) as f64;
        }
    }
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the features the function is compiled for were just detected.
        let sink = unsafe { fma_probe_avx2(iters) };
        std::hint::black_box(sink);
        return (iters * 12 * 8 * 2) as f64;
    }
    scalar_probe(iters)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_probe_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    // Twelve independent chains cover the FMA latency (4 cycles) on up to three FMA ports.
    // Named locals, not an array, so every chain stays in a register.
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let one = _mm256_set1_ps(1.0);
    let (mut x0, mut x1, mut x2, mut x3, mut x4, mut x5) = (one, one, one, one, one, one);
    let (mut x6, mut x7, mut x8, mut x9, mut x10, mut x11) = (one, one, one, one, one, one);
    for _ in 0..iters {
        x0 = _mm256_fmadd_ps(x0, a, b);
        x1 = _mm256_fmadd_ps(x1, a, b);
        x2 = _mm256_fmadd_ps(x2, a, b);
        x3 = _mm256_fmadd_ps(x3, a, b);
        x4 = _mm256_fmadd_ps(x4, a, b);
        x5 = _mm256_fmadd_ps(x5, a, b);
        x6 = _mm256_fmadd_ps(x6, a, b);
        x7 = _mm256_fmadd_ps(x7, a, b);
        x8 = _mm256_fmadd_ps(x8, a, b);
        x9 = _mm256_fmadd_ps(x9, a, b);
        x10 = _mm256_fmadd_ps(x10, a, b);
        x11 = _mm256_fmadd_ps(x11, a, b);
    }
    let sum = [x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11]
        .iter()
        .fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x));
    let mut out = [0.0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), sum);
    out.iter().sum()
}

#[cfg(all(target_arch = "x86_64", mnist_mlp_avx512))]
#[clippy::msrv = "1.89"] // built only by 1.89+ (see build.rs)
#[target_feature(enable = "avx512f")]
unsafe fn fma_probe_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    // As the AVX2 probe, 16 lanes wide: twelve chains cover 2 ports × 4 cycles of latency.
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let one = _mm512_set1_ps(1.0);
    let (mut x0, mut x1, mut x2, mut x3, mut x4, mut x5) = (one, one, one, one, one, one);
    let (mut x6, mut x7, mut x8, mut x9, mut x10, mut x11) = (one, one, one, one, one, one);
    for _ in 0..iters {
        x0 = _mm512_fmadd_ps(x0, a, b);
        x1 = _mm512_fmadd_ps(x1, a, b);
        x2 = _mm512_fmadd_ps(x2, a, b);
        x3 = _mm512_fmadd_ps(x3, a, b);
        x4 = _mm512_fmadd_ps(x4, a, b);
        x5 = _mm512_fmadd_ps(x5, a, b);
        x6 = _mm512_fmadd_ps(x6, a, b);
        x7 = _mm512_fmadd_ps(x7, a, b);
        x8 = _mm512_fmadd_ps(x8, a, b);
        x9 = _mm512_fmadd_ps(x9, a, b);
        x10 = _mm512_fmadd_ps(x10, a, b);
        x11 = _mm512_fmadd_ps(x11, a, b);
    }
    let sum = [x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11]
        .iter()
        .fold(_mm512_setzero_ps(), |s, &x| _mm512_add_ps(s, x));
    _mm512_reduce_add_ps(sum)
}

#[cfg(target_arch = "aarch64")]
fn fma_probe(iters: u64) -> f64 {
    use std::arch::aarch64::*;
    // SAFETY: NEON is part of the aarch64 baseline; these intrinsics only touch registers and
    // the local array.
    unsafe {
        let mut acc = [vdupq_n_f32(1.0); 8];
        let (a, b) = (vdupq_n_f32(0.999_999), vdupq_n_f32(1e-7));
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = vfmaq_f32(b, *x, a);
            }
        }
        let sum = acc.iter().fold(vdupq_n_f32(0.0), |s, &x| vaddq_f32(s, x));
        std::hint::black_box(vaddvq_f32(sum));
    }
    (iters * 8 * 4 * 2) as f64
}

#[cfg(not(target_arch = "aarch64"))]
fn scalar_probe(iters: u64) -> f64 {
    let mut acc = [1.0f32; 8];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = *x * 0.999_999 + 1e-7;
        }
    }
    std::hint::black_box(acc);
    (iters * 8 * 2) as f64
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn fma_probe(iters: u64) -> f64 {
    scalar_probe(iters)
}
