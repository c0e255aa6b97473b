//! The cache-blocked product (the BLIS loop nest) over a micro-kernel, split over the pool.
//!
//! For each block of `nc` columns and `kc` depth, `op(b)` is packed into `nr`-wide panels; for
//! each block of `mc` rows, `op(a)` into `mr`-tall panels; then every `mr × nr` tile of `c` is
//! one kernel call. Packing reads either layout of an operand (transposes cost nothing extra) and
//! pads edge panels with zeros. The packed buffers belong to the calling thread and are reused
//! by every later product: after the first product of each size, none allocates.
//!
//! Threads share each packing (panels are units of a pool job) and then the tiles (columns of
//! tiles are units). A tile is computed by the same kernel over the same packed data in the same `k` order
//! whichever thread computes it, so the result is bit-identical for any thread count.

use std::cell::RefCell;

use super::kernel::{Kernel, MAX_TILE};
use super::Trans;
use crate::pool;

/// Products with fewer multiply-adds than this run on the calling thread alone: splitting
/// them costs more than it saves.
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// Packed panels of `a` and `b`, 64-byte aligned, grown on demand and never shrunk.
#[derive(Default)]
struct Scratch {
    a: Aligned,
    b: Aligned,
}

#[derive(Default)]
struct Aligned(Vec<f32>);

impl Aligned {
    /// A pointer to `len` floats starting on a 64-byte boundary.
    fn get(&mut self, len: usize) -> *mut f32 {
        const PAD: usize = 64 / std::mem::size_of::<f32>();
        if self.0.len() < len + PAD {
            self.0 = vec![0.0; len + PAD];
        }
        let skip = self.0.as_ptr().align_offset(64).min(PAD);
        self.0[skip..].as_mut_ptr()
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A raw pointer handed to the pool's threads, each of which touches a disjoint part.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: the pointers are only used to write disjoint panels or tiles (one thread each) while
// the owner waits in `pool::run`, and to read packed panels after the packing job returned.
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The pointer `off` elements further (a method, so closures capture the `Sync` wrapper
    /// rather than the raw pointer inside it).
    fn add(self, off: usize) -> *mut T {
        self.0.wrapping_add(off)
    }
}

/// An operand as the product reads it: `op(x)` of shape `(rows, cols)` over stored `data`.
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    trans: Trans,
    rows: usize,
    cols: usize,
}

impl Operand<'_> {
    /// Copies the panel `op(x)[r0 .. r0 + width, c0 .. c0 + depth]` into `dst` as `depth`
    /// groups of `width` values (`dst[p·width + i] = op(x)[r0 + i, c0 + p]`), zero past the last
    /// row.
    fn pack(&self, dst: &mut [f32], r0: usize, c0: usize, depth: usize, width: usize) {
        #[cfg(all(target_arch = "x86_64", mnist_mlp_avx512))]
        {
            if is_x86_feature_detected!("avx512f") {
                // SAFETY: the feature the function is compiled for was just detected.
                return unsafe { self.pack_avx512(dst, r0, c0, depth, width) };
            }
        }
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                // SAFETY: as above.
                return unsafe { self.pack_avx2(dst, r0, c0, depth, width) };
            }
        }
        self.pack_loops::<false>(dst, r0, c0, depth, width)
    }

    #[cfg(all(target_arch = "x86_64", mnist_mlp_avx512))]
    #[clippy::msrv = "1.89"] // built only by 1.89+ (see build.rs)
    #[target_feature(enable = "avx512f")]
    unsafe fn pack_avx512(&self, dst: &mut [f32], r0: usize, c0: usize, depth: usize, w: usize) {
        self.pack_loops::<true>(dst, r0, c0, depth, w)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn pack_avx2(&self, dst: &mut [f32], r0: usize, c0: usize, depth: usize, w: usize) {
        self.pack_loops::<true>(dst, r0, c0, depth, w)
    }

    /// The copy loops of [`Operand::pack`], compiled once per vector width it dispatches to;
    /// `AVX` (only from a caller compiled with AVX) transposes 8 × 8 blocks in registers.
    #[inline(always)]
    fn pack_loops<const AVX: bool>(
        &self,
        dst: &mut [f32],
        r0: usize,
        c0: usize,
        depth: usize,
        width: usize,
    ) {
        let rows = width.min(self.rows - r0);
        match self.trans {
            // Stored (rows, cols): each row of the block is contiguous, so the copy is a
            // transpose, done 8 × 8 at a time (whole rows and columns of a block in cache).
            Trans::No => {
                let row = |i: usize| {
                    let start = (r0 + i) * self.cols + c0;
                    &self.data[start..start + depth]
                };
                const R: usize = 8;
                let mut i = 0;
                while i + R <= rows {
                    let src: [&[f32]; R] = std::array::from_fn(|r| row(i + r));
                    #[cfg(target_arch = "x86_64")]
                    if AVX {
                        // SAFETY: `AVX` is set only by callers compiled with AVX2 or AVX-512F,
                        // which were dispatched to after detecting it (both imply AVX).
                        unsafe { transpose8_avx(&src, dst, i, width) };
                        i += R;
                        continue;
                    }
                    for (p, d) in dst.chunks_exact_mut(width).enumerate() {
                        let d = &mut d[i..i + R];
                        for (v, s) in d.iter_mut().zip(&src) {
                            *v = s[p];
                        }
                    }
                    i += R;
                }
                for i in i..rows {
                    for (d, &v) in dst.chunks_exact_mut(width).zip(row(i)) {
                        d[i] = v;
                    }
                }
                if rows < width {
                    for d in dst.chunks_exact_mut(width) {
                        d[rows..].fill(0.0);
                    }
                }
            }
            // Stored (cols, rows): each column of the block is contiguous.
            Trans::Yes => {
                for (p, d) in dst.chunks_exact_mut(width).take(depth).enumerate() {
                    let start = (c0 + p) * self.rows + r0;
                    d[..rows].copy_from_slice(&self.data[start..start + rows]);
                    d[rows..].fill(0.0);
                }
            }
        }
    }
}

/// `dst[p·width + i + r] = src[r][p]` for the 8 rows `src` (all of one length, the panel's
/// depth): the 8-row block of a transposing pack, 8 × 8 at a time in AVX registers.
///
/// # Safety
/// The CPU must have AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose8_avx(src: &[&[f32]; 8], dst: &mut [f32], i: usize, width: usize) {
    use std::arch::x86_64::*;
    let depth = src[0].len();
    let full = depth / 8 * 8;
    for p in (0..full).step_by(8) {
        let mut r = [_mm256_setzero_ps(); 8];
        for (v, s) in r.iter_mut().zip(src) {
            *v = _mm256_loadu_ps(s[p..p + 8].as_ptr());
        }
        // Interleave pairs of rows, then pairs of pairs, then swap 128-bit halves.
        let t = [
            _mm256_unpacklo_ps(r[0], r[1]),
            _mm256_unpackhi_ps(r[0], r[1]),
            _mm256_unpacklo_ps(r[2], r[3]),
            _mm256_unpackhi_ps(r[2], r[3]),
            _mm256_unpacklo_ps(r[4], r[5]),
            _mm256_unpackhi_ps(r[4], r[5]),
            _mm256_unpacklo_ps(r[6], r[7]),
            _mm256_unpackhi_ps(r[6], r[7]),
        ];
        let u = [
            _mm256_shuffle_ps::<0x44>(t[0], t[2]),
            _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
            _mm256_shuffle_ps::<0x44>(t[1], t[3]),
            _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
            _mm256_shuffle_ps::<0x44>(t[4], t[6]),
            _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
            _mm256_shuffle_ps::<0x44>(t[5], t[7]),
            _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
        ];
        let cols = [
            _mm256_permute2f128_ps::<0x20>(u[0], u[4]),
            _mm256_permute2f128_ps::<0x20>(u[1], u[5]),
            _mm256_permute2f128_ps::<0x20>(u[2], u[6]),
            _mm256_permute2f128_ps::<0x20>(u[3], u[7]),
            _mm256_permute2f128_ps::<0x31>(u[0], u[4]),
            _mm256_permute2f128_ps::<0x31>(u[1], u[5]),
            _mm256_permute2f128_ps::<0x31>(u[2], u[6]),
            _mm256_permute2f128_ps::<0x31>(u[3], u[7]),
        ];
        for (q, col) in cols.iter().enumerate() {
            let start = (p + q) * width + i;
            _mm256_storeu_ps(dst[start..start + 8].as_mut_ptr(), *col);
        }
    }
    for p in full..depth {
        for (r, s) in src.iter().enumerate() {
            dst[p * width + i + r] = s[p];
        }
    }
}

/// `c = alpha · op(a) · op(b) + beta · c` with `kern`; shapes already checked by the caller:
/// `op(a)` is `(m, k)`, `op(b)` is `(k, n)`, `c` is `(m, n)`, all non-empty.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(
    kern: &Kernel,
    (ta, tb): (Trans, Trans),
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    let (mr, nr) = (kern.mr, kern.nr);
    // `op(b)ᵀ` is `(n, k)` and packs like `a`: its rows are b's columns.
    let a = Operand {
        data: a,
        trans: ta,
        rows: m,
        cols: k,
    };
    let bt = Operand {
        data: b,
        trans: match tb {
            Trans::No => Trans::Yes,
            Trans::Yes => Trans::No,
        },
        rows: n,
        cols: k,
    };
    // Equal depth blocks (784 = 4 × 196 rather than 3 × 256 + 16).
    let kc_max = k.div_ceil(k.div_ceil(kern.kc));
    let mc_max = kern.mc.min(m.div_ceil(mr) * mr);
    let nc_max = kern.nc.min(n.div_ceil(nr) * nr);
    let parallel = m * n * k >= PARALLEL_MIN_MACS;
    let split = |units: usize, job: &(dyn Fn(usize) + Sync)| {
        if parallel {
            pool::run(units, job)
        } else {
            (0..units).for_each(job)
        }
    };
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let pa = Shared(s.a.get(mc_max * kc_max));
        let pb = Shared(s.b.get(nc_max * kc_max));
        let pc = Shared(c.as_mut_ptr());
        for jc in (0..n).step_by(kern.nc) {
            let nc = kern.nc.min(n - jc);
            let b_panels = nc.div_ceil(nr);
            for p0 in (0..k).step_by(kc_max) {
                let kc = kc_max.min(k - p0);
                let beta = if p0 == 0 { beta } else { 1.0 };
                for ic in (0..m).step_by(kern.mc) {
                    let mc = kern.mc.min(m - ic);
                    let a_panels = mc.div_ceil(mr);
                    // Units: the `b` panels (first row block only), then the `a` panels.
                    let b_units = if ic == 0 { b_panels } else { 0 };
                    split(b_units + a_panels, &|u| {
                        if u < b_units {
                            // SAFETY: panel `u` is `kc·nr` floats at `u·kc·nr` inside the
                            // `nc_max·kc_max` buffer; each unit packs its own panel.
                            let dst = unsafe {
                                std::slice::from_raw_parts_mut(pb.add(u * kc * nr), kc * nr)
                            };
                            bt.pack(dst, jc + u * nr, p0, kc, nr);
                        } else {
                            let ir = u - b_units;
                            // SAFETY: as above, inside the `mc_max·kc_max` buffer.
                            let dst = unsafe {
                                std::slice::from_raw_parts_mut(pa.add(ir * kc * mr), kc * mr)
                            };
                            a.pack(dst, ic + ir * mr, p0, kc, mr);
                        }
                    });
                    // Units: columns of tiles (each `b` panel then stays in one core's L1), or
                    // rows of tiles when there are too few columns to share.
                    let by_columns = b_panels >= 4;
                    let units = if by_columns { b_panels } else { a_panels };
                    split(units, &|u| {
                        let (jrs, irs) = if by_columns {
                            (u..u + 1, 0..a_panels)
                        } else {
                            (0..b_panels, u..u + 1)
                        };
                        for jr in jrs {
                            let (j0, w) = (jr * nr, nr.min(nc - jr * nr));
                            for ir in irs.clone() {
                                let (i0, h) = (ir * mr, mr.min(mc - ir * mr));
                                // SAFETY: both panels were packed by the job above (which
                                // returned), with `kc·mr` and `kc·nr` floats; the tile's
                                // rows `ic+i0 ..+h` and columns `jc+j0 ..+w` lie inside the
                                // `m × n` matrix `c`, and each tile belongs to one unit.
                                unsafe {
                                    tile(
                                        kern,
                                        kc,
                                        pa.add(ir * kc * mr),
                                        pb.add(jr * kc * nr),
                                        pc.add((ic + i0) * n + jc + j0),
                                        (n, h, w),
                                        alpha,
                                        beta,
                                    );
                                }
                            }
                        }
                    });
                }
            }
        }
    });
}

/// One tile of `h ≤ mr` rows and `w ≤ nr` columns at `c` (row stride `rsc`). Edge tiles go
/// through a scratch tile and are finished with the kernel's own arithmetic.
///
/// # Safety
/// As for [`Kernel::run`], with `c` valid for `h` rows of `w` floats.
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    kern: &Kernel,
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    (rsc, h, w): (usize, usize, usize),
    alpha: f32,
    beta: f32,
) {
    if h == kern.mr && w == kern.nr {
        return (kern.run)(kc, a, b, c, rsc, alpha, beta);
    }
    let mut t = [0.0f32; MAX_TILE];
    (kern.run)(kc, a, b, t.as_mut_ptr(), kern.nr, 1.0, 0.0);
    for (i, row) in t.chunks_exact(kern.nr).take(h).enumerate() {
        // SAFETY: row `i < h` of the tile has `w` valid floats (caller's contract).
        let out = std::slice::from_raw_parts_mut(c.add(i * rsc), w);
        for (o, &v) in out.iter_mut().zip(row) {
            *o = if beta == 0.0 {
                alpha * v
            } else {
                alpha * v + beta * *o
            };
        }
    }
}
