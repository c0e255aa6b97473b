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

use super::kernel::{Kernel, PanelA, Scale, TileC, MAX_TILE};
use super::{Epilogue, Product, Trans};
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
struct View<'a> {
    data: &'a [f32],
    trans: Trans,
    rows: usize,
    cols: usize,
}

impl View<'_> {
    /// Row and column strides of `op(x)` in `data`.
    fn strides(&self) -> (usize, usize) {
        match self.trans {
            Trans::No => (self.cols, 1),
            Trans::Yes => (1, self.rows),
        }
    }

    /// Where the block `op(x)[r0 .. r0 + rows, c0 .. c0 + depth]` starts, for a kernel to
    /// read in place at [`View::strides`]. Panics unless the whole block lies inside `op(x)`:
    /// the bounds the kernel's unchecked reads rely on, checked once per tile.
    fn block(&self, (r0, c0): (usize, usize), rows: usize, depth: usize) -> *const f32 {
        assert!(
            rows > 0 && depth > 0 && r0 + rows <= self.rows && c0 + depth <= self.cols,
            "gemm: block {r0}+{rows} × {c0}+{depth} outside a {}×{} operand",
            self.rows,
            self.cols
        );
        let (rs, cs) = self.strides();
        self.data[r0 * rs + c0 * cs..].as_ptr()
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

    /// The copy loops of [`View::pack`], compiled once per vector width it dispatches to;
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

/// One product, cut into `units` bands of `c` that any thread can compute in any order.
pub(super) struct Plan<'a> {
    kern: &'a Kernel,
    /// `op(a)`, `(m, k)`.
    a: View<'a>,
    /// `op(b)ᵀ`, `(n, k)`: it packs like `a`, its rows are the columns of `op(b)`.
    bt: View<'a>,
    /// The output, `(m, n)`, row stride `n`, written by the units through this pointer.
    c: Shared<f32>,
    epilogue: Epilogue<'a>,
    scale: Scale,
    /// Depth of a block: `k` in equal parts of at most the kernel's `kc`.
    kc: usize,
    a_panels: usize,
    b_panels: usize,
    /// Whether the bands are columns of tiles (else rows of tiles).
    by_columns: bool,
    units: usize,
}

/// Rows, columns and position of one tile of `c`.
struct Tile {
    i0: usize,
    j0: usize,
    h: usize,
    w: usize,
}

/// One depth block of the product: depth `p0 .. p0 + kc` of `k`.
struct Depth {
    p0: usize,
    kc: usize,
    /// The product's factors for the first block; later blocks add to what is in `c`.
    scale: Scale,
    /// Whether this is the last block, after which a tile of `c` is final.
    last: bool,
}

impl<'a> Plan<'a> {
    /// The bands of `product`, whose shapes [`Product::check`] accepted and whose sides and
    /// depth are all non-empty.
    ///
    /// [`Product::check`]: super::Product
    pub(super) fn new(kern: &'a Kernel, product: Product<'a>) -> Self {
        let Product {
            m, n, k, a, b, c, ..
        } = product;
        let a = View {
            data: a.data,
            trans: a.trans,
            rows: m,
            cols: k,
        };
        let bt = View {
            data: b.data,
            trans: match b.trans {
                Trans::No => Trans::Yes,
                Trans::Yes => Trans::No,
            },
            rows: n,
            cols: k,
        };
        let (a_panels, b_panels) = (m.div_ceil(kern.mr), n.div_ceil(kern.nr));
        // Each unit owns a band of `c`: columns of tiles when `c` is at least as wide as it is
        // tall, else rows (see `band`). It packs its own part of the operand along the band
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
            a,
            bt,
            c: Shared(c.as_mut_ptr()),
            epilogue: product.epilogue,
            scale: Scale {
                alpha: product.alpha,
                beta: product.beta,
            },
            // Equal depth blocks (784 = 4 × 196 rather than 3 × 256 + 16).
            kc: k.div_ceil(k.div_ceil(kern.kc)),
            a_panels,
            b_panels,
            by_columns,
            units: threads.min(if by_columns { b_panels } else { a_panels }),
        }
    }

    /// Computes band `u` with the packing buffers `s`.
    ///
    /// # Safety
    /// `u < self.units`, and no other call for the same `u` may overlap this one.
    unsafe fn run_unit(&self, u: usize, s: &mut Scratch) {
        let band = self.band(u);
        // SAFETY: the bands of different units are disjoint, so each tile of `c` is written by
        // one unit at a time (the contract); `c` has `m × n` floats and the bands lie inside it.
        unsafe { self.band_product(&band, s) }
    }

    /// Unit `u`'s share of the tiles, in column order (row order when split by rows): whole
    /// columns of tiles, and a part of one at either end when the columns do not divide
    /// evenly, whose panel of `b` both neighbours pack.
    fn band(&self, u: usize) -> Band {
        let (major, minor) = if self.by_columns {
            (self.b_panels, self.a_panels)
        } else {
            (self.a_panels, self.b_panels)
        };
        let total = major * minor;
        let tiles = total * u / self.units..total * (u + 1) / self.units;
        let lines = tiles.start / minor..tiles.end.div_ceil(minor);
        let (rows, cols) = if self.by_columns {
            (0..self.a_panels, lines)
        } else {
            (lines, 0..self.b_panels)
        };
        Band {
            rows,
            cols,
            tiles,
            minor,
            by_columns: self.by_columns,
        }
    }

    /// The tiles of `band` (panels of `mr` rows and `nr` columns of `c`), with the unit's own
    /// packing buffers `s`: the BLIS loop nest, numbered as BLIS and matrixmultiply number it.
    ///
    /// # Safety
    /// The band's tiles must lie inside `c` and no other thread may write them meanwhile.
    unsafe fn band_product(&self, band: &Band, s: &mut Scratch) {
        let kern = self.kern;
        let (mc_panels, nc_panels) = (kern.mc / kern.mr, kern.nc / kern.nr);
        let k = self.a.cols;
        // Full-size blocks whatever the shape: allocated once for good (pages that are never
        // written cost no memory).
        let pa = s.a.get(kern.mc * kern.kc);
        let pb = s.b.get(kern.nc * kern.kc);
        // LOOP 5 (jc): `nc` columns of `c` at a time.
        for jc in band.cols.clone().step_by(nc_panels) {
            let jcs = jc..(jc + nc_panels).min(band.cols.end);
            // LOOP 4 (pc): `kc` of the depth at a time, `op(b)` packed for each block.
            for p0 in (0..k).step_by(self.kc) {
                let kc = self.kc.min(k - p0);
                let depth = Depth {
                    p0,
                    kc,
                    scale: Scale {
                        beta: if p0 == 0 { self.scale.beta } else { 1.0 },
                        ..self.scale
                    },
                    last: p0 + kc == k,
                };
                self.pack_b(pb, jcs.clone(), &depth);
                // LOOP 3 (ic): `mc` rows of `c` at a time, `op(a)` packed for each block.
                for ic in band.rows.clone().step_by(mc_panels) {
                    let ics = ic..(ic + mc_panels).min(band.rows.end);
                    self.pack_a(pa, ics.clone(), &depth);
                    // SAFETY: the band's tiles are this unit's (the caller's contract).
                    unsafe { self.macro_kernel(band, (ics, jcs.clone()), &depth, (pa, pb)) };
                }
            }
        }
    }

    /// Packs the panels `jcs` of `op(b)` over the block `depth`, `kc·nr` floats each, into
    /// `pb`.
    fn pack_b(&self, pb: &mut [f32], jcs: Range<usize>, depth: &Depth) {
        let (nr, kc) = (self.kern.nr, depth.kc);
        for jr in jcs.clone() {
            let off = (jr - jcs.start) * kc * nr;
            self.bt
                .pack(&mut pb[off..off + kc * nr], jr * nr, depth.p0, kc, nr);
        }
    }

    /// Packs the panels `ics` of `op(a)` that the kernel cannot read in place over the block
    /// `depth`, `kc·mr` floats each, into `pa`.
    fn pack_a(&self, pa: &mut [f32], ics: Range<usize>, depth: &Depth) {
        let (mr, kc) = (self.kern.mr, depth.kc);
        for ir in ics.clone().filter(|&ir| !self.direct(ir)) {
            let off = (ir - ics.start) * kc * mr;
            self.a
                .pack(&mut pa[off..off + kc * mr], ir * mr, depth.p0, kc, mr);
        }
    }

    /// Whether panel `ir` of `op(a)` is read where it is stored: when the kernel can and all
    /// of its `mr` rows exist. Packing it would cost a pass over `a` per unit and gain
    /// nothing; edge panels are packed (zero rows).
    fn direct(&self, ir: usize) -> bool {
        self.kern.any_a_strides && (ir + 1) * self.kern.mr <= self.a.rows
    }

    /// LOOP 2 (jr) and LOOP 1 (ir), BLIS's macro-kernel: the band's tiles in the panels
    /// `ics × jcs` over the block `depth`, each one kernel call, then the epilogue on each tile
    /// that is final.
    ///
    /// # Safety
    /// As for [`Plan::band_product`]; `pa` and `pb` hold the packed panels of the block.
    unsafe fn macro_kernel(
        &self,
        band: &Band,
        (ics, jcs): (Range<usize>, Range<usize>),
        depth: &Depth,
        (pa, pb): (&[f32], &[f32]),
    ) {
        let (mr, nr, kc) = (self.kern.mr, self.kern.nr, depth.kc);
        let (m, n) = (self.a.rows, self.bt.rows);
        for jr in jcs.clone() {
            let b_off = (jr - jcs.start) * kc * nr;
            let b = pb[b_off..b_off + kc * nr].as_ptr();
            for ir in ics.clone().filter(|&ir| band.has(ir, jr)) {
                let a = if self.direct(ir) {
                    let (rs, cs) = self.a.strides();
                    PanelA {
                        ptr: self.a.block((ir * mr, depth.p0), mr, kc),
                        rs,
                        cs,
                    }
                } else {
                    let off = (ir - ics.start) * kc * mr;
                    PanelA {
                        ptr: pa[off..off + kc * mr].as_ptr(),
                        rs: 1,
                        cs: mr,
                    }
                };
                let t = Tile {
                    i0: ir * mr,
                    j0: jr * nr,
                    h: mr.min(m - ir * mr),
                    w: nr.min(n - jr * nr),
                };
                // SAFETY: a direct panel has all `mr` rows inside `op(a)` and depth
                // p0..p0+kc ≤ k, so every `a.ptr + i·rs + p·cs` the kernel reads is in `a`;
                // otherwise the panel was packed with `kc·mr` floats. The `b` panel has `kc·nr`.
                // The tile lies inside `c` and is this unit's (the caller's contract).
                unsafe {
                    self.tile(kc, a, b, &t, depth.scale);
                    if depth.last {
                        self.finish(&t);
                    }
                }
            }
        }
    }

    /// The tile `t` of `c` (`h ≤ mr` rows, `w ≤ nr` columns) over depth `kc`. Edge tiles go
    /// through a scratch tile and are finished with the kernel's own arithmetic.
    ///
    /// # Safety
    /// As for [`Kernel::run`], with `t` inside `c` and this unit's.
    unsafe fn tile(&self, kc: usize, a: PanelA, b: *const f32, t: &Tile, scale: Scale) {
        let (kern, ldc) = (self.kern, self.bt.rows);
        let c = self.c.add(t.i0 * ldc + t.j0);
        if t.h == kern.mr && t.w == kern.nr {
            return (kern.run)(kc, a, b, TileC { ptr: c, rs: ldc }, scale);
        }
        let mut scratch = [0.0f32; MAX_TILE];
        let whole = TileC {
            ptr: scratch.as_mut_ptr(),
            rs: kern.nr,
        };
        let plain = Scale {
            alpha: 1.0,
            beta: 0.0,
        };
        (kern.run)(kc, a, b, whole, plain);
        let Scale { alpha, beta } = scale;
        for (i, row) in scratch.chunks_exact(kern.nr).take(t.h).enumerate() {
            // SAFETY: row `i < h` of the tile has `w` valid floats (caller's contract).
            let out = std::slice::from_raw_parts_mut(c.add(i * ldc), t.w);
            for (o, &v) in out.iter_mut().zip(row) {
                *o = if beta == 0.0 {
                    alpha * v
                } else {
                    alpha * v + beta * *o
                };
            }
        }
    }

    /// The epilogue on the final tile `t`, row by row.
    ///
    /// # Safety
    /// `t` lies inside `c` and is this unit's.
    unsafe fn finish(&self, t: &Tile) {
        if let Epilogue::None = self.epilogue {
            return;
        }
        let ldc = self.bt.rows;
        for i in t.i0..t.i0 + t.h {
            let at = i * ldc + t.j0;
            // SAFETY: the caller's contract; these are the tile's rows.
            let row = unsafe { std::slice::from_raw_parts_mut(self.c.add(at), t.w) };
            match self.epilogue {
                Epilogue::None => {}
                Epilogue::Bias { bias, relu } => {
                    super::bias_relu(row, &bias[t.j0..t.j0 + t.w], relu)
                }
                Epilogue::ReluGrad { mask } => super::relu_grad(row, &mask[at..at + t.w]),
            }
        }
    }
}

/// Runs the bands of all `plans` as one job of the pool (the products must be independent:
/// no output of one is an input or output of another). The bands of the second product are
/// handed out last first: the order with which a pair was measured faster than two jobs.
pub(super) fn run_job(plans: &[Plan<'_>]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::{kernel, run_pair, Operand};
    use crate::rng::Rng;

    fn random(len: usize, rng: &mut Rng) -> Vec<f32> {
        (0..len).map(|_| rng.uniform() as f32 * 2.0 - 1.0).collect()
    }

    /// `c = op(a) · op(b)`, `op(a)` `(m, k)` and `op(b)` `(k, n)` stored as `ops` says.
    fn product<'a>(
        (m, n, k): (usize, usize, usize),
        (ta, tb): (Trans, Trans),
        a: &'a [f32],
        b: &'a [f32],
        c: &'a mut [f32],
    ) -> Product<'a> {
        let (a, b) = (Operand::new(a, ta), Operand::new(b, tb));
        Product::new((m, n, k), a, b, c)
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
            let product = |(m, n, k), a, b, c| {
                Product::new((m, n, k), Operand::stored(a), Operand::stored(b), c)
            };
            run_pair(
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
        let plain = (Trans::No, Trans::No);
        let large = Plan::new(&kern, product((64, 64, 64), plain, &a, &b, &mut c));
        assert_eq!(large.units, pool::threads().min(large.b_panels));
        let (a, c) = (&a[..63 * 64], &mut c[..63 * 64]);
        let small = Plan::new(&kern, product((63, 64, 64), plain, a, &b, c));
        assert_eq!(small.units, 1);
    }

    /// `op(x)[r0 + i, c0 + p]` read by the definition into `depth` groups of `width`.
    fn naive_pack(op: &View<'_>, r0: usize, c0: usize, depth: usize, width: usize) -> Vec<f32> {
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
            let op = View {
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
            for shape @ (m, n, k) in SPLIT_SHAPES {
                for ops @ (ta, tb) in [(Trans::No, Trans::Yes), (Trans::Yes, Trans::No)] {
                    let (a, b, c0) = (
                        random(m * k, &mut rng),
                        random(k * n, &mut rng),
                        random(m * n, &mut rng),
                    );
                    let split = |units: usize| {
                        let mut c = c0.clone();
                        let mut plan =
                            Plan::new(&kern, product(shape, ops, &a, &b, &mut c).scaled(0.5, -1.5));
                        plan.units = units;
                        run_job(&[plan]);
                        c
                    };
                    let one = split(1);
                    let mut oracle = c0.clone();
                    product(shape, ops, &a, &b, &mut oracle)
                        .scaled(0.5, -1.5)
                        .run_fallback();
                    let case = format!("{} {ta:?}{tb:?} {m}×{n}×{k}", kern.name);
                    for (idx, (x, y)) in one.iter().zip(&oracle).enumerate() {
                        assert!(
                            (x - y).abs() <= 1e-5 * k as f32,
                            "{case} [{idx}]: {x} vs {y}"
                        );
                    }
                    for units in 2..=7 {
                        assert_eq!(bits(&split(units)), bits(&one), "{case} in {units} units");
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
        let epilogue = Epilogue::ReluGrad { mask: &mask };
        let (mut s1, mut s2) = (c1.clone(), c2.clone());
        let product1 = (m1, n1, k1);
        let product2 = (m2, n2, k2);
        run_job(&[Plan::new(
            &kern,
            product(product1, ops, &a1, &b1, &mut s1).scaled(1.0, 2.0),
        )]);
        run_job(&[Plan::new(
            &kern,
            product(product2, ops, &a2, &b2, &mut s2)
                .scaled(1.0, 2.0)
                .then(epilogue),
        )]);
        for (u1, u2) in [(1, 1), (1, 3), (3, 1), (2, 5), (4, 4)] {
            let (mut p1, mut p2) = (c1.clone(), c2.clone());
            let mut first = Plan::new(
                &kern,
                product(product1, ops, &a1, &b1, &mut p1).scaled(1.0, 2.0),
            );
            let mut second = Plan::new(
                &kern,
                product(product2, ops, &a2, &b2, &mut p2)
                    .scaled(1.0, 2.0)
                    .then(epilogue),
            );
            (first.units, second.units) = (u1, u2);
            run_job(&[first, second]);
            assert_eq!(bits(&p1), bits(&s1), "first product, units {u1} + {u2}");
            assert_eq!(bits(&p2), bits(&s2), "second product, units {u1} + {u2}");
        }
    }
}
