//! Micro-kernels: one `MR × NR` tile of `c` from an `MR`-row panel of `a` and a packed
//! `NR`-column panel of `b`, the accumulators held in vector registers for the whole `k` loop.
//!
//! Packed layouts (see the blocked module): the `a` panel is `kc` groups of `MR` values (column
//! `p` of the panel's rows), the `b` panel `kc` groups of `NR` values (row `p` of its columns).
//! The x86 kernels broadcast `a` one value at a time, so they also take it unpacked, at any row
//! and column strides; NEON loads `a` four rows at a time and needs it packed.
//! Every kernel stores `c = alpha·acc` when `beta == 0` (old `c` never read) and
//! `c = alpha·acc + beta·c` otherwise, as a multiply, a multiply and an add with no fused
//! rounding, so edge tiles finished in scalar code round exactly like full tiles.

/// A micro-kernel and the blocking it is tuned for.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// Name reported by `mnist-mlp info` and `bench`.
    pub name: &'static str,
    /// Rows of a tile.
    pub mr: usize,
    /// Columns of a tile.
    pub nr: usize,
    /// Depth of a packed block (panels of `a` and `b` sized for L1).
    pub kc: usize,
    /// Rows of `a` packed at once (sized for L2), a multiple of `mr`.
    pub mc: usize,
    /// Columns of `b` packed at once, a multiple of `nr`.
    pub nc: usize,
    /// Whether the kernel reads `a` at any strides (it broadcasts one value at a time), so a
    /// whole panel can be read where it is stored instead of packed. Otherwise `a` must be a
    /// packed panel: strides `(1, mr)`.
    pub any_a_strides: bool,
    /// The tile function. Safety contract: `a` is readable at `a.ptr + i·a.rs + p·a.cs` for
    /// every row `i < mr` and depth `p < kc`, with `(a.rs, a.cs) == (1, mr)` unless
    /// `any_a_strides`; `b` holds `kc·nr` floats, and `c` points at `mr` rows of `nr` writable
    /// floats `c.rs` apart, aliasing neither; the CPU has the features the kernel was compiled
    /// for.
    pub run: TileFn,
}

/// `(kc, a, b, c, scale)`: `c = alpha · a · b + beta · c` for one tile; see [`Kernel::run`].
pub type TileFn = unsafe fn(usize, PanelA, *const f32, TileC, Scale);

/// A panel of `a` as a kernel reads it: row `i`, depth `p` at `ptr + i·rs + p·cs`.
#[derive(Clone, Copy, Debug)]
pub struct PanelA {
    /// Row 0, depth 0.
    pub ptr: *const f32,
    /// Row stride.
    pub rs: usize,
    /// Column (depth) stride.
    pub cs: usize,
}

/// A tile of `c` as a kernel writes it: row `i` at `ptr + i·rs`.
#[derive(Clone, Copy, Debug)]
pub struct TileC {
    /// Row 0, column 0.
    pub ptr: *mut f32,
    /// Row stride.
    pub rs: usize,
}

/// The factors of `c = alpha · op(a) · op(b) + beta · c`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    /// Factor of the product.
    pub alpha: f32,
    /// Factor of the old `c`; 0 means the old `c` is never read (NaN included).
    pub beta: f32,
}

/// Largest `mr · nr` of any kernel (size of the scratch tile for edge tiles).
pub const MAX_TILE: usize = 8 * 32;

/// The kernel for this CPU, or `None` where only the portable fallback (matrixmultiply) runs.
pub fn select() -> Option<Kernel> {
    #[cfg(all(target_arch = "x86_64", mnist_mlp_avx512))]
    {
        if is_x86_feature_detected!("avx512f") {
            return Some(x86::AVX512_8X32);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Some(x86::AVX2_6X16);
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        return Some(neon::NEON_8X8);
    }
    #[allow(unreachable_code)]
    None
}

/// Every kernel this CPU can run, the one [`select`] picks first: tests run them all, so a
/// CPU with AVX-512 still tests the AVX2 kernel.
#[cfg(test)]
pub fn runnable() -> Vec<Kernel> {
    #[allow(unused_mut)]
    let mut all = Vec::new();
    #[cfg(all(target_arch = "x86_64", mnist_mlp_avx512))]
    if is_x86_feature_detected!("avx512f") {
        all.push(x86::AVX512_8X32);
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        all.push(x86::AVX2_6X16);
    }
    #[cfg(target_arch = "aarch64")]
    all.push(neon::NEON_8X8);
    all
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Kernel, PanelA, Scale, TileC};
    use std::arch::x86_64::*;

    /// 6 × 16 tile, 12 ymm accumulators: two 8-wide loads of `b` and six broadcasts of `a`
    /// feed twelve FMAs per step of `k` (BLIS's Haswell shape).
    pub const AVX2_6X16: Kernel = Kernel {
        name: "avx2+fma 6x16",
        mr: 6,
        nr: 16,
        kc: 256,
        mc: 528,
        nc: 1024,
        any_a_strides: true,
        run: tile_6x16,
    };

    unsafe fn tile_6x16(kc: usize, a: PanelA, b: *const f32, c: TileC, scale: Scale) {
        // SAFETY: `select` returns this kernel only when AVX2 and FMA were detected; the
        // pointer contract is the caller's (see `Kernel::run`).
        unsafe { tile_6x16_avx2(kc, a, b, c, scale) }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_6x16_avx2(kc: usize, a: PanelA, mut b: *const f32, c: TileC, scale: Scale) {
        let (mut a, rsa, csa) = (a.ptr, a.rs, a.cs);
        let (c, rsc, Scale { alpha, beta }) = (c.ptr, c.rs, scale);
        let mut acc = [[_mm256_setzero_ps(); 2]; 6];
        for _ in 0..kc {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm256_broadcast_ss(&*a.add(i * rsa));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
            a = a.add(csa);
            b = b.add(16);
        }
        let va = _mm256_set1_ps(alpha);
        for (i, row) in acc.iter().enumerate() {
            let ci = c.add(i * rsc);
            for (h, &v) in row.iter().enumerate() {
                let mut out = _mm256_mul_ps(va, v);
                if beta != 0.0 {
                    let old = _mm256_loadu_ps(ci.add(8 * h));
                    out = _mm256_add_ps(out, _mm256_mul_ps(_mm256_set1_ps(beta), old));
                }
                _mm256_storeu_ps(ci.add(8 * h), out);
            }
        }
    }

    /// 8 × 32 tile, 16 zmm accumulators: two 16-wide loads of `b` and eight broadcasts of `a`
    /// (folded into the FMAs) feed sixteen FMAs per step of `k`. Only built by Rust 1.89+,
    /// which has the AVX-512 intrinsics.
    #[cfg(mnist_mlp_avx512)]
    pub const AVX512_8X32: Kernel = Kernel {
        name: "avx512f 8x32",
        mr: 8,
        nr: 32,
        kc: 256,
        mc: 528,
        nc: 1024,
        any_a_strides: true,
        run: tile_8x32,
    };

    #[cfg(mnist_mlp_avx512)]
    unsafe fn tile_8x32(kc: usize, a: PanelA, b: *const f32, c: TileC, scale: Scale) {
        // SAFETY: `select` returns this kernel only when AVX-512F was detected; the pointer
        // contract is the caller's (see `Kernel::run`).
        unsafe { tile_8x32_avx512(kc, a, b, c, scale) }
    }

    #[cfg(mnist_mlp_avx512)]
    #[clippy::msrv = "1.89"] // built only by 1.89+ (see build.rs)
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_8x32_avx512(kc: usize, a: PanelA, mut b: *const f32, c: TileC, scale: Scale) {
        let (mut a, rsa, csa) = (a.ptr, a.rs, a.cs);
        let (c, rsc, Scale { alpha, beta }) = (c.ptr, c.rs, scale);
        let mut acc = [[_mm512_setzero_ps(); 2]; 8];
        for _ in 0..kc {
            let b0 = _mm512_loadu_ps(b);
            let b1 = _mm512_loadu_ps(b.add(16));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*a.add(i * rsa));
                row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
            }
            a = a.add(csa);
            b = b.add(32);
        }
        let va = _mm512_set1_ps(alpha);
        for (i, row) in acc.iter().enumerate() {
            let ci = c.add(i * rsc);
            for (h, &v) in row.iter().enumerate() {
                let mut out = _mm512_mul_ps(va, v);
                if beta != 0.0 {
                    let old = _mm512_loadu_ps(ci.add(16 * h));
                    out = _mm512_add_ps(out, _mm512_mul_ps(_mm512_set1_ps(beta), old));
                }
                _mm512_storeu_ps(ci.add(16 * h), out);
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use super::{Kernel, PanelA, Scale, TileC};
    use std::arch::aarch64::*;

    /// 8 × 8 tile, 16 q-register accumulators: two 4-wide loads each of `a` and `b` feed
    /// sixteen by-lane FMAs per step of `k`; 20 of the 32 vector registers in use. Blocking
    /// sized for a Cortex-A53: 32 KiB L1 (two 8 KiB panels), 512 KiB L2 shared by 4 cores.
    pub const NEON_8X8: Kernel = Kernel {
        name: "neon 8x8",
        mr: 8,
        nr: 8,
        kc: 256,
        mc: 128,
        nc: 1024,
        any_a_strides: false,
        run: tile_8x8,
    };

    macro_rules! fma_row {
        ($acc:ident, $row:expr, $lane:literal, $a:ident, $b0:ident, $b1:ident) => {
            $acc[$row][0] = vfmaq_laneq_f32::<$lane>($acc[$row][0], $b0, $a);
            $acc[$row][1] = vfmaq_laneq_f32::<$lane>($acc[$row][1], $b1, $a);
        };
    }

    unsafe fn tile_8x8(kc: usize, a: PanelA, mut b: *const f32, c: TileC, scale: Scale) {
        // `a` is packed: strides (1, 8), read four rows at a time.
        let mut a = a.ptr;
        let (c, rsc, Scale { alpha, beta }) = (c.ptr, c.rs, scale);
        let mut acc = [[vdupq_n_f32(0.0); 2]; 8];
        for _ in 0..kc {
            let b0 = vld1q_f32(b);
            let b1 = vld1q_f32(b.add(4));
            let a0 = vld1q_f32(a);
            let a1 = vld1q_f32(a.add(4));
            fma_row!(acc, 0, 0, a0, b0, b1);
            fma_row!(acc, 1, 1, a0, b0, b1);
            fma_row!(acc, 2, 2, a0, b0, b1);
            fma_row!(acc, 3, 3, a0, b0, b1);
            fma_row!(acc, 4, 0, a1, b0, b1);
            fma_row!(acc, 5, 1, a1, b0, b1);
            fma_row!(acc, 6, 2, a1, b0, b1);
            fma_row!(acc, 7, 3, a1, b0, b1);
            a = a.add(8);
            b = b.add(8);
        }
        for (i, row) in acc.iter().enumerate() {
            let ci = c.add(i * rsc);
            for (h, &v) in row.iter().enumerate() {
                let mut out = vmulq_n_f32(v, alpha);
                if beta != 0.0 {
                    out = vaddq_f32(out, vmulq_n_f32(vld1q_f32(ci.add(4 * h)), beta));
                }
                vst1q_f32(ci.add(4 * h), out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_picks_the_widest_kernel_this_cpu_runs() {
        let all = runnable();
        assert_eq!(select().map(|k| k.name), all.first().map(|k| k.name));
        for k in &all {
            assert!(
                k.mr * k.nr <= MAX_TILE,
                "{}: an edge tile overflows",
                k.name
            );
            assert!(
                k.mc % k.mr == 0 && k.nc % k.nr == 0,
                "{}: blocks of whole panels",
                k.name
            );
        }
    }
}
