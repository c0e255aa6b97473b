//! The cache-blocked product (the BLIS loop nest) over a micro-kernel, split over the pool.
//!
//! For each block of `nc` columns and `kc` depth, `op(b)` is packed into `nr`-wide panels; for
//! each block of `mc` rows, `op(a)` into `mr`-tall panels; then every `mr × nr` tile of `c` is
//! one kernel call. Packing reads either layout of an operand (a transposed one is copied 8 × 8
//! at a time) and pads edge panels with zeros. Kernels that broadcast `a` one value at a time
//! (the x86 ones) read its whole panels where they are stored, at its strides, and only its
//! edge panel is packed. The calling thread keeps one set of packing buffers per unit, sized
//! once for the kernel's largest blocks, so no product allocates after its first.
//!
//! Threads split the tiles of `c` evenly, one pool unit each: whole columns of tiles (or rows),
//! and part of one column at either end of a unit's share when the columns do not divide. Every
//! unit packs what it needs itself: one job per product (or per pair of independent products),
//! no packed data shared between cores. When the split is by columns, every unit reads all of
//! `a`: reading it in place saves each unit a pass over it, which is the part of the packing
//! that grows with the thread count.
//! The depth blocks depend only on `k`, so a tile is computed by the same kernel over the same
//! packed values in the same order whichever thread computes it: the result is bit-identical
//! for any thread count.

use std::cell::RefCell;
use std::ops::Range;

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
    /// `len` floats starting on a 64-byte boundary.
    fn get(&mut self, len: usize) -> &mut [f32] {
        const PAD: usize = 64 / std::mem::size_of::<f32>();
        if self.0.len() < len + PAD {
            self.0 = vec![0.0; len + PAD];
        }
        let skip = self.0.as_ptr().align_offset(64).min(PAD);
        &mut self.0[skip..skip + len]
    }
}

thread_local! {
    /// One set of buffers per unit of a product, kept by the thread that calls the product
    /// (unit `u` uses set `u` whichever thread runs it, so only the caller ever allocates).
    static SCRATCH: RefCell<Vec<Scratch>> = const { RefCell::new(Vec::new()) };
}

/// The output matrix's pointer, handed to the pool's threads, each of which writes its own
/// tiles.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: the pointer is only used to write disjoint bands of tiles (one unit each) while the
// owner of the matrix waits in `pool::run`.
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
    /// Row and column strides of `op(x)` in `data`.
    fn strides(&self) -> (usize, usize) {
        match self.trans {
            Trans::No => (self.cols, 1),
            Trans::Yes => (1, self.rows),
        }
    }

    /// Where `op(x)[r, c]` is stored (`r < rows`, `c < cols`).
    fn at(&self, r: usize, c: usize) -> *const f32 {
        let (rs, cs) = self.strides();
        self.data[r * rs + c * cs..].as_ptr()
    }

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

/// What is done to each tile of `c` once its last depth block is in.
#[derive(Clone, Copy)]
pub(super) enum Epilogue<'a> {
    /// Add a bias (one value per column of `c`), then apply a ReLU when `relu`.
    Bias { bias: &'a [f32], relu: bool },
    /// Zero `c` wherever `mask` (shaped like `c`) is not positive: the gradient through a ReLU
    /// whose output is `mask`.
    ReluGrad { mask: &'a [f32] },
}

/// `c = alpha · op(a) · op(b) + beta · c` with `kern`, then `epilogue` on every tile; shapes
/// already checked by the caller: `op(a)` is `(m, k)`, `op(b)` is `(k, n)`, `c` is `(m, n)`,
/// all non-empty, and an epilogue's bias has `n` values (its mask `m × n`).
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
    epilogue: Option<Epilogue<'_>>,
) {
    let plan = Plan::new(kern, (ta, tb), (m, n, k), alpha, a, b, beta, c, epilogue);
    run(&[plan]);
}

/// One product, cut into `units` bands of `c` that any thread can compute in any order.
pub(super) struct Plan<'a> {
    kern: &'a Kernel,
    ops: Operands<'a>,
    /// Depth of a block.
    kc: usize,
    a_panels: usize,
    b_panels: usize,
    by_columns: bool,
    units: usize,
    alpha: f32,
    beta: f32,
}

impl<'a> Plan<'a> {
    /// The bands of `c = alpha · op(a) · op(b) + beta · c` (shapes as for [`gemm`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        kern: &'a Kernel,
        (ta, tb): (Trans, Trans),
        (m, n, k): (usize, usize, usize),
        alpha: f32,
        a: &'a [f32],
        b: &'a [f32],
        beta: f32,
        c: &'a mut [f32],
        epilogue: Option<Epilogue<'a>>,
    ) -> Self {
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
        let kc = k.div_ceil(k.div_ceil(kern.kc));
        let (a_panels, b_panels) = (m.div_ceil(mr), n.div_ceil(nr));
        // Each unit owns a band of `c`: columns of tiles when `c` is at least as wide as it is
        // tall, else rows (see `run_unit`). It packs its own part of the operand along the band
        // and what it needs of the other one, so no packed data crosses cores and no unit waits
        // for another.
        let by_columns = n >= m;
        let threads = if m * n * k >= PARALLEL_MIN_MACS {
            pool::threads()
        } else {
            1
        };
        Plan {
            kern,
            ops: Operands {
                a,
                bt,
                c: Shared(c.as_mut_ptr()),
                ldc: n,
                epilogue,
            },
            kc,
            a_panels,
            b_panels,
            by_columns,
            units: threads.min(if by_columns { b_panels } else { a_panels }),
            alpha,
            beta,
        }
    }

    /// Computes band `u` with the packing buffers `s`.
    ///
    /// # Safety
    /// `u < self.units`, and no other call for the same `u` may overlap this one.
    unsafe fn run_unit(&self, u: usize, s: &mut Scratch) {
        // Unit `u` takes its share of the tiles in column order (row order when split by
        // rows): whole columns of tiles, and a part of one at either end when the columns do
        // not divide evenly, whose panel of `b` both neighbours pack.
        let (major, minor) = if self.by_columns {
            (self.b_panels, self.a_panels)
        } else {
            (self.a_panels, self.b_panels)
        };
        let total = major * minor;
        let tiles = total * u / self.units..total * (u + 1) / self.units;
        let lines = tiles.start / minor..tiles.end.div_ceil(minor);
        let band = if self.by_columns {
            Band {
                rows: 0..self.a_panels,
                cols: lines,
                tiles,
                minor,
                by_columns: true,
            }
        } else {
            Band {
                rows: lines,
                cols: 0..self.b_panels,
                tiles,
                minor,
                by_columns: false,
            }
        };
        // SAFETY: the bands of different units are disjoint, so each tile of `c` is written by
        // one unit at a time (the contract); `c` has `m × n` floats and the bands lie inside it.
        unsafe {
            band_product(
                self.kern, &self.ops, self.kc, &band, self.alpha, self.beta, s,
            )
        }
    }
}

/// Runs the bands of all `plans` as one job of the pool (the products must be independent:
/// no output of one is an input or output of another). The bands of the second product are
/// handed out last first: the order with which a pair was measured faster than two jobs.
pub(super) fn run(plans: &[Plan<'_>]) {
    let units: usize = plans.iter().map(|p| p.units).sum();
    SCRATCH.with(|sets| {
        let mut sets = sets.borrow_mut();
        if sets.len() < units {
            sets.resize_with(units, Scratch::default);
        }
        let sets = pool::SharedMut::new(&mut sets[..units]);
        let job = |g: usize| {
            let (mut i, mut u) = (0, g);
            while u >= plans[i].units {
                u -= plans[i].units;
                i += 1;
            }
            let u = if i % 2 == 1 {
                plans[i].units - 1 - u
            } else {
                u
            };
            // SAFETY: unit `g` alone uses buffer set `g`, and the pool runs each unit once;
            // `u` is a band of plan `i`, reached from `g` alone.
            unsafe { plans[i].run_unit(u, &mut sets.part(g..g + 1)[0]) };
        };
        if units == 1 {
            job(0)
        } else {
            pool::run(units, &job)
        }
    });
}

/// A unit's part of `c`: the tiles `tiles` of the product, numbered down the columns (`jr ·
/// minor + ir`) when split by columns, along the rows (`ir · minor + jr`) otherwise, inside the
/// panels `rows × cols`.
struct Band {
    rows: Range<usize>,
    cols: Range<usize>,
    tiles: Range<usize>,
    minor: usize,
    by_columns: bool,
}

impl Band {
    /// Whether tile `(ir, jr)` is the unit's.
    fn has(&self, ir: usize, jr: usize) -> bool {
        let t = if self.by_columns {
            jr * self.minor + ir
        } else {
            ir * self.minor + jr
        };
        self.tiles.contains(&t)
    }
}

/// The inputs and output of one product, as each unit sees them.
struct Operands<'a> {
    a: Operand<'a>,
    bt: Operand<'a>,
    c: Shared<f32>,
    ldc: usize,
    epilogue: Option<Epilogue<'a>>,
}

/// The tiles of `band` (panels of `mr` rows and `nr` columns of `c`), with the unit's own
/// packing buffers `s`: the BLIS loops over `nc` columns, `kc` depth and `mc` rows.
///
/// # Safety
/// The tiles must lie inside `c` (`a.rows × bt.rows`, row stride `ldc`) and no other thread
/// may write them meanwhile.
unsafe fn band_product(
    kern: &Kernel,
    ops: &Operands<'_>,
    kc_max: usize,
    band: &Band,
    alpha: f32,
    beta: f32,
    s: &mut Scratch,
) {
    let (mr, nr) = (kern.mr, kern.nr);
    let (m, n, k) = (ops.a.rows, ops.bt.rows, ops.a.cols);
    let (mc_panels, nc_panels) = (kern.mc / mr, kern.nc / nr);
    // Whole panels of `a` are read where they are stored when the kernel can: packing them
    // would cost a pass over `a` per unit and gain nothing. Edge panels are packed (zero rows).
    let direct = |ir: usize| kern.any_a_strides && (ir + 1) * mr <= m;
    let (rows, cols) = (band.rows.clone(), band.cols.clone());
    {
        // Full-size blocks whatever the shape: allocated once for good (pages that are never
        // written cost no memory).
        let pa = s.a.get(kern.mc * kern.kc);
        let pb = s.b.get(kern.nc * kern.kc);
        for jc in cols.clone().step_by(nc_panels) {
            let jcs = jc..(jc + nc_panels).min(cols.end);
            for p0 in (0..k).step_by(kc_max) {
                let kc = kc_max.min(k - p0);
                let beta = if p0 == 0 { beta } else { 1.0 };
                let last = p0 + kc == k;
                for jr in jcs.clone() {
                    let off = (jr - jc) * kc * nr;
                    ops.bt
                        .pack(&mut pb[off..off + kc * nr], jr * nr, p0, kc, nr);
                }
                for ic in rows.clone().step_by(mc_panels) {
                    let ics = ic..(ic + mc_panels).min(rows.end);
                    for ir in ics.clone().filter(|&ir| !direct(ir)) {
                        let off = (ir - ic) * kc * mr;
                        ops.a.pack(&mut pa[off..off + kc * mr], ir * mr, p0, kc, mr);
                    }
                    for jr in jcs.clone() {
                        let (j0, w) = (jr * nr, nr.min(n - jr * nr));
                        for ir in ics.clone().filter(|&ir| band.has(ir, jr)) {
                            let (i0, h) = (ir * mr, mr.min(m - ir * mr));
                            let (a, a_strides) = if direct(ir) {
                                (ops.a.at(i0, p0), ops.a.strides())
                            } else {
                                let off = (ir - ic) * kc * mr;
                                (pa[off..off + kc * mr].as_ptr(), (1, mr))
                            };
                            let b_off = (jr - jc) * kc * nr;
                            // SAFETY: a direct panel has all `mr` rows inside `op(a)` and
                            // depth p0..p0+kc ≤ k, so every `a + i·rsa + p·csa` the kernel
                            // reads is in `a`; otherwise the panel was packed above with
                            // `kc·mr` floats. The `b` panel has `kc·nr`. The tile (rows
                            // i0..i0+h, columns j0..j0+w) lies inside `c` and is this thread's
                            // (the caller's contract).
                            unsafe {
                                tile(
                                    kern,
                                    kc,
                                    (a, a_strides),
                                    pb[b_off..b_off + kc * nr].as_ptr(),
                                    ops.c.add(i0 * ops.ldc + j0),
                                    (ops.ldc, h, w),
                                    alpha,
                                    beta,
                                );
                            }
                            if let (Some(e), true) = (ops.epilogue, last) {
                                for i in i0..i0 + h {
                                    // SAFETY: as for the tile above, whose rows these are.
                                    let row = unsafe {
                                        std::slice::from_raw_parts_mut(
                                            ops.c.add(i * ops.ldc + j0),
                                            w,
                                        )
                                    };
                                    match e {
                                        Epilogue::Bias { bias, relu } => {
                                            super::bias_relu(row, &bias[j0..j0 + w], relu)
                                        }
                                        Epilogue::ReluGrad { mask } => {
                                            let at = i * ops.ldc + j0;
                                            super::relu_grad(row, &mask[at..at + w])
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
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
    (a, a_strides): (*const f32, (usize, usize)),
    b: *const f32,
    c: *mut f32,
    (rsc, h, w): (usize, usize, usize),
    alpha: f32,
    beta: f32,
) {
    if h == kern.mr && w == kern.nr {
        return (kern.run)(kc, a, a_strides, b, c, rsc, alpha, beta);
    }
    let mut t = [0.0f32; MAX_TILE];
    (kern.run)(kc, a, a_strides, b, t.as_mut_ptr(), kern.nr, 1.0, 0.0);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::{gemm_fallback, kernel};
    use crate::rng::Rng;

    fn random(len: usize, rng: &mut Rng) -> Vec<f32> {
        (0..len).map(|_| rng.uniform() as f32 * 2.0 - 1.0).collect()
    }

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    /// Each kernel this CPU runs, and the same kernel made to take `a` packed as NEON does
    /// (so x86 tests the packed path for whole panels too).
    fn kernels() -> Vec<Kernel> {
        kernel::runnable()
            .into_iter()
            .flat_map(|k| {
                [
                    k,
                    Kernel {
                        any_a_strides: false,
                        ..k
                    },
                ]
            })
            .collect()
    }

    #[test]
    fn scratch_is_aligned_kept_between_calls_and_one_cache_line_over() {
        let mut s = Aligned::default();
        let first = s.get(1000).as_ptr();
        for len in [1000, 10, 999, 0] {
            let buf = s.get(len);
            assert_eq!(buf.len(), len);
            assert_eq!(buf.as_ptr(), first, "get({len}) reallocated");
        }
        assert!(s.0.len() <= 1000 + 16, "{} floats held for 1000", s.0.len());
        let grown = s.get(5000);
        assert_eq!(grown.len(), 5000);
        // Small and large (the allocator maps those: a page plus its own header) buffers.
        for len in [1, 1000, 5000, 1 << 17] {
            let mut s = Aligned::default();
            let at = s.get(len).as_ptr() as usize;
            assert_eq!(
                at % 64,
                0,
                "{len} floats at {at:#x}: not on a 64-byte boundary"
            );
        }
    }

    /// A pair of non-empty products is one job of the pool: the calling thread then holds a
    /// set of packing buffers for each unit of both products (two jobs in a row would use the
    /// first set twice).
    #[test]
    fn a_pair_of_products_is_one_job() {
        if !crate::gemm::has_native_kernel() {
            return; // the fallback runs a pair as two products
        }
        // A thread of its own: its buffer sets start empty.
        std::thread::spawn(|| {
            let (a1, b1, mut c1) = (vec![1.0; 5 * 2], vec![1.0; 2 * 3], vec![0.0; 5 * 3]);
            let (a2, b2, mut c2) = (vec![1.0; 4 * 7], vec![1.0; 7 * 6], vec![0.0; 4 * 6]);
            let product = |(m, n, k), a, b, c| crate::gemm::Product {
                ta: Trans::No,
                tb: Trans::No,
                m,
                n,
                k,
                alpha: 1.0,
                a,
                b,
                beta: 0.0,
                c,
                relu_mask: None,
            };
            crate::gemm::gemm_pair(
                product((5, 3, 2), &a1, &b1, &mut c1),
                product((4, 6, 7), &a2, &b2, &mut c2),
            );
            assert!(c1.iter().all(|&v| v == 2.0) && c2.iter().all(|&v| v == 7.0));
            let sets = SCRATCH.with(|sets| sets.borrow().len());
            assert_eq!(sets, 2, "one unit each, in one job: a set for each");
        })
        .join()
        .unwrap();
    }

    /// Products under PARALLEL_MIN_MACS multiply-adds are one unit (splitting them costs more
    /// than it saves), larger ones one unit per thread (at most one per column of tiles).
    #[test]
    fn small_products_are_one_unit_and_large_ones_one_per_thread() {
        let Some(&kern) = kernel::runnable().first() else {
            return; // no kernel of our own on this CPU
        };
        let (a, b, mut c) = (vec![0.0; 64 * 64], vec![0.0; 64 * 64], vec![0.0; 64 * 64]);
        // 64 × 64 × 64 is PARALLEL_MIN_MACS.
        let large = Plan::new(
            &kern,
            (Trans::No, Trans::No),
            (64, 64, 64),
            1.0,
            &a,
            &b,
            0.0,
            &mut c,
            None,
        );
        assert_eq!(large.units, pool::threads().min(large.b_panels));
        let (a, c) = (&a[..63 * 64], &mut c[..63 * 64]);
        let small = Plan::new(
            &kern,
            (Trans::No, Trans::No),
            (63, 64, 64),
            1.0,
            a,
            &b,
            0.0,
            c,
            None,
        );
        assert_eq!(small.units, 1);
    }

    /// `op(x)[r0 + i, c0 + p]` read by the definition into `depth` groups of `width`.
    fn naive_pack(op: &Operand<'_>, r0: usize, c0: usize, depth: usize, width: usize) -> Vec<f32> {
        let mut out = vec![0.0; depth * width];
        for p in 0..depth {
            for i in (0..width).filter(|i| r0 + i < op.rows) {
                let (r, c) = (r0 + i, c0 + p);
                out[p * width + i] = match op.trans {
                    Trans::No => op.data[r * op.cols + c],
                    Trans::Yes => op.data[c * op.rows + r],
                };
            }
        }
        out
    }

    /// Both layouts, panels of every kernel's widths, blocks of 8 rows and the rows after
    /// them, depths with and without a tail past a multiple of 8, a last panel past the last
    /// row (zero-padded): the dispatched copy and the portable one against the definition.
    #[test]
    fn packing_copies_each_panel_and_zero_pads_past_the_last_row() {
        let (rows, cols) = (21, 19);
        let data = random(rows * cols, &mut Rng::new(9));
        for trans in [Trans::No, Trans::Yes] {
            let op = Operand {
                data: &data,
                trans,
                rows,
                cols,
            };
            for width in [6, 8, 16, 32] {
                for (r0, c0, depth) in [(0, 0, 19), (8, 3, 16), (16, 2, 17), (20, 18, 1)] {
                    let want = naive_pack(&op, r0, c0, depth, width);
                    let mut dispatched = vec![f32::NAN; depth * width];
                    op.pack(&mut dispatched, r0, c0, depth, width);
                    let mut portable = vec![f32::NAN; depth * width];
                    op.pack_loops::<false>(&mut portable, r0, c0, depth, width);
                    let case =
                        format!("{trans:?} rows {r0}.. of width {width}, cols {c0}..+{depth}");
                    assert_eq!(bits(&dispatched), bits(&want), "dispatched copy, {case}");
                    assert_eq!(bits(&portable), bits(&want), "portable copy, {case}");
                }
            }
        }
    }

    /// The shapes of the split tests: split by rows (tall), by columns (wide), several depth
    /// blocks, edge tiles on both sides; every transpose.
    const SPLIT_SHAPES: [(usize, usize, usize); 3] = [(100, 37, 30), (23, 150, 30), (50, 66, 600)];

    /// However many units a product is cut into, each tile of `c` is computed once, by the
    /// same arithmetic: the bits of one unit (with beta ≠ 0, a tile computed twice would be
    /// scaled twice), which match the fallback.
    #[test]
    fn any_number_of_units_gives_the_bits_of_one() {
        let mut rng = Rng::new(23);
        for kern in kernels() {
            for (m, n, k) in SPLIT_SHAPES {
                for (ta, tb) in [(Trans::No, Trans::Yes), (Trans::Yes, Trans::No)] {
                    let (a, b, c0) = (
                        random(m * k, &mut rng),
                        random(k * n, &mut rng),
                        random(m * n, &mut rng),
                    );
                    let product = |units: usize| {
                        let mut c = c0.clone();
                        let mut plan =
                            Plan::new(&kern, (ta, tb), (m, n, k), 0.5, &a, &b, -1.5, &mut c, None);
                        plan.units = units;
                        run(&[plan]);
                        c
                    };
                    let one = product(1);
                    let mut oracle = c0.clone();
                    gemm_fallback(ta, tb, m, n, k, 0.5, &a, &b, -1.5, &mut oracle);
                    let case = format!("{} {ta:?}{tb:?} {m}×{n}×{k}", kern.name);
                    for (idx, (x, y)) in one.iter().zip(&oracle).enumerate() {
                        assert!(
                            (x - y).abs() <= 1e-5 * k as f32,
                            "{case} [{idx}]: {x} vs {y}"
                        );
                    }
                    for units in 2..=7 {
                        assert_eq!(bits(&product(units)), bits(&one), "{case} in {units} units");
                    }
                }
            }
        }
    }

    /// Two products in one job, each cut into several units: the units of the pair map to
    /// every band of both products once, as two separate jobs would.
    #[test]
    fn a_pair_in_one_job_computes_every_band_of_both() {
        let mut rng = Rng::new(29);
        let kern = kernels()[0];
        let [(m1, n1, k1), (m2, n2, k2), _] = SPLIT_SHAPES;
        let (a1, b1, c1) = (
            random(m1 * k1, &mut rng),
            random(k1 * n1, &mut rng),
            random(m1 * n1, &mut rng),
        );
        let (a2, b2, c2) = (
            random(m2 * k2, &mut rng),
            random(k2 * n2, &mut rng),
            random(m2 * n2, &mut rng),
        );
        let mask = random(m2 * n2, &mut rng);
        let ops = (Trans::No, Trans::No);
        let epilogue = Some(Epilogue::ReluGrad { mask: &mask });
        let (mut s1, mut s2) = (c1.clone(), c2.clone());
        run(&[Plan::new(
            &kern,
            ops,
            (m1, n1, k1),
            1.0,
            &a1,
            &b1,
            2.0,
            &mut s1,
            None,
        )]);
        run(&[Plan::new(
            &kern,
            ops,
            (m2, n2, k2),
            1.0,
            &a2,
            &b2,
            2.0,
            &mut s2,
            epilogue,
        )]);
        for (u1, u2) in [(1, 1), (1, 3), (3, 1), (2, 5), (4, 4)] {
            let (mut p1, mut p2) = (c1.clone(), c2.clone());
            let mut first = Plan::new(&kern, ops, (m1, n1, k1), 1.0, &a1, &b1, 2.0, &mut p1, None);
            let mut second = Plan::new(
                &kern,
                ops,
                (m2, n2, k2),
                1.0,
                &a2,
                &b2,
                2.0,
                &mut p2,
                epilogue,
            );
            (first.units, second.units) = (u1, u2);
            run(&[first, second]);
            assert_eq!(bits(&p1), bits(&s1), "first product, units {u1} + {u2}");
            assert_eq!(bits(&p2), bits(&s2), "second product, units {u1} + {u2}");
        }
    }
}
