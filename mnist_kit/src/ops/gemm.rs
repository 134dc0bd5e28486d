//! The kit's matrix product, `C = A B` on strided `f32` matrices, with one summation order on
//! every machine.
//!
//! **The definition.** Every output is one chain of fused multiply-adds over the depth, in
//! order: `c = 0; for p in 0..k { c = a[i][p].mul_add(b[p][j], c) }`. [`reference`] is that
//! definition as a plain loop; [`matmul`] computes the same bits fast.
//!
//! **Why no bit depends on the machine.** The blocked kernel cuts the product into depth
//! passes of [`KC`] terms and register tiles of `MR x NR` outputs. A pass loads each chain's
//! state from `C`, continues it over its part of the depth and stores it back: that decides
//! when a chain's state goes to memory, never the order of its terms, and an `f32` stored and
//! loaded is the same `f32`. Each fused multiply-add is IEEE-754's, rounded once, whether an
//! AVX-512 or AVX2 instruction or the portable path's `f32::mul_add` computes it. So the tile
//! shape (picked per instruction set and matrix shape), the block sizes, the vector width and
//! any split of `C`'s rows or columns over threads give the bits of the definition. Nothing
//! depends on cache sizes or core counts, and nothing splits the depth. `tests/gemm.rs` checks
//! every path and thread count against [`reference`] over the zoo's shapes and odd ones.
//!
//! ```
//! use mnist_kit::ops::gemm::{Mat, matmul, reference};
//! let (a, b) = ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.0, 0.5, -1.0]);
//! let mut c = [0f32; 2];
//! // (2 x 3) * (3 x 1)
//! matmul(&mut c, 2, 1, 3, Mat::rows(&a, 3), Mat::rows(&b, 1))?;
//! assert_eq!(c, [-1.0, 0.5]);
//! let mut r = [0f32; 2];
//! reference(&mut r, 2, 1, 3, Mat::rows(&a, 3), Mat::rows(&b, 1))?;
//! assert_eq!(c, r);
//! # Ok::<(), mnist_kit::Error>(())
//! ```

use std::cell::RefCell;

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::simd::{Isa, active};
use crate::{Error, Result};

/// Depth terms per pass: a packed `KC x NR` panel of `B` stays in the L1 cache.
pub const KC: usize = 192;
/// Rows of `A` packed per block (rounded up to a multiple of the tile's rows).
const MC: usize = 96;
/// Columns of `B` packed per block (rounded up to a multiple of the tile's columns).
const NC: usize = 1024;

/// A strided read-only matrix view: element `(r, c)` is `data[r * rs + c * cs]`.
#[derive(Debug, Clone, Copy)]
pub struct Mat<'a> {
    /// The elements.
    pub data: &'a [f32],
    /// Step between rows.
    pub rs: usize,
    /// Step between columns.
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// Row-major `rows x cols`.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: cols,
        }
    }

    /// The transpose of this view (no copy).
    pub fn t(self) -> Self {
        Mat {
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }

    #[inline(always)]
    fn at(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.rs + c * self.cs]
    }

    /// The view from row `r` on.
    fn skip_rows(self, r: usize) -> Self {
        Mat {
            data: &self.data[(r * self.rs).min(self.data.len())..],
            ..self
        }
    }

    /// The view from column `c` on.
    fn skip_cols(self, c: usize) -> Self {
        Mat {
            data: &self.data[(c * self.cs).min(self.data.len())..],
            ..self
        }
    }
}

fn check(dst: &[f32], m: usize, n: usize, k: usize, a: &Mat, b: &Mat) -> Result<()> {
    if dst.len() < m * n || !a.fits(m, k) || !b.fits(k, n) {
        return Err(Error::invalid(
            "gemm",
            format!("operands too small for {m}x{k} * {k}x{n}"),
        ));
    }
    Ok(())
}

/// The definition: `dst (m x n, row-major) = a (m x k) * b (k x n)`, each output one
/// fused multiply-add chain over the depth in order. Slow; tests compare [`matmul`] with it.
pub fn reference(dst: &mut [f32], m: usize, n: usize, k: usize, a: Mat, b: Mat) -> Result<()> {
    check(dst, m, n, k, &a, &b)?;
    for i in 0..m {
        for j in 0..n {
            let mut c = 0f32;
            for p in 0..k {
                c = a.at(i, p).mul_add(b.at(p, j), c);
            }
            dst[i * n + j] = c;
        }
    }
    Ok(())
}

/// `dst (m x n, row-major) = a (m x k) * b (k x n)` on the calling thread, with the bits of
/// [`reference`].
pub fn matmul(dst: &mut [f32], m: usize, n: usize, k: usize, a: Mat, b: Mat) -> Result<()> {
    product(dst, m, n, k, a, b, false)
}

/// Continues the chains that `dst` holds over `k` more depth steps: `dst += a * b`, each
/// output still one fused multiply-add chain, so a product over a depth cut into consecutive
/// parts gives the bits of the product over the whole depth (a convolution's weight gradient
/// runs over its images block by block this way, whatever the block size).
pub fn matmul_continue(
    dst: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
) -> Result<()> {
    product(dst, m, n, k, a, b, true)
}

fn product(
    dst: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    cont: bool,
) -> Result<()> {
    check(dst, m, n, k, &a, &b)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !cont {
            dst[..m * n].fill(0.0);
        }
        return Ok(());
    }
    let out = Out {
        c: dst,
        ldc: n,
        cont,
    };
    BUFFERS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => dispatch(out, m, n, k, a, b, &mut bufs),
        Err(_) => dispatch(out, m, n, k, a, b, &mut Buffers::default()),
    });
    Ok(())
}

/// Below this many multiply-adds a product runs on one thread: splitting costs more.
const PARALLEL_MIN_MACS: usize = 1 << 22;
/// The same for a product at least [`TALL_ROWS`] rows per thread, split over its rows (an
/// inference batch: each thread packs only the small `B` again).
const PARALLEL_MIN_MACS_TALL: usize = 1 << 20;
/// Rows per thread from which a product counts as tall.
const TALL_ROWS: usize = 256;

/// [`matmul`] split over the threads of the current rayon pool: over columns when the
/// product is at least as wide as it is tall, else over rows. Same bits for any thread count
/// (no split touches the depth).
pub fn matmul_par(dst: &mut [f32], m: usize, n: usize, k: usize, a: Mat, b: Mat) -> Result<()> {
    let parts = rayon::current_num_threads();
    let tall = m >= TALL_ROWS * parts && n < m;
    let min_macs = if tall {
        PARALLEL_MIN_MACS_TALL
    } else {
        PARALLEL_MIN_MACS
    };
    if parts < 2 || m * n * k < min_macs || m * n == 0 {
        return matmul(dst, m, n, k, a, b);
    }
    check(dst, m, n, k, &a, &b)?;
    if n >= m {
        // Column ranges of whole 16-column groups; each piece is written to its own buffer,
        // then copied into place.
        let per = n.div_ceil(parts).div_ceil(16) * 16;
        let ranges: Vec<(usize, usize)> =
            (0..n).step_by(per).map(|j| (j, (j + per).min(n))).collect();
        let pieces = ranges
            .par_iter()
            .map(|&(j0, j1)| -> Result<Vec<f32>> {
                let mut piece = vec![0f32; m * (j1 - j0)];
                matmul(&mut piece, m, j1 - j0, k, a, b.skip_cols(j0))?;
                Ok(piece)
            })
            .collect::<Result<Vec<_>>>()?;
        for (&(j0, j1), piece) in ranges.iter().zip(&pieces) {
            for (row, src) in dst.chunks_exact_mut(n).zip(piece.chunks_exact(j1 - j0)) {
                row[j0..j1].copy_from_slice(src);
            }
        }
        return Ok(());
    }
    let per = m.div_ceil(parts);
    dst[..m * n]
        .par_chunks_mut(per * n)
        .enumerate()
        .try_for_each(|(t, rows)| {
            let i0 = t * per;
            matmul(rows, rows.len() / n, n, k, a.skip_rows(i0), b)
        })
}

/// Packing buffers, reused per thread.
#[derive(Default)]
struct Buffers {
    a: Vec<f32>,
    b: Vec<f32>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// The output: row-major with `ldc` floats per row; `cont`: its values are chains to
/// continue (else they are overwritten).
struct Out<'a> {
    c: &'a mut [f32],
    ldc: usize,
    cont: bool,
}

/// A vector of `f32` lanes with a fused multiply-add: the one thing the tiles need.
pub(super) trait Lanes: Copy {
    const L: usize;
    fn zero() -> Self;
    fn splat(x: f32) -> Self;
    /// Loads `L` floats from the front of `s` (which holds at least `L`).
    fn load(s: &[f32]) -> Self;
    /// Stores `L` floats to the front of `s` (which holds at least `L`).
    fn store(self, s: &mut [f32]);
    /// `a * b + self`, rounded once per lane.
    fn fma(self, a: Self, b: Self) -> Self;
    /// `self + b`, rounded once per lane.
    fn add(self, b: Self) -> Self;
    /// Writes the transpose of the 8 x 8 block whose row `r` starts at `src[r * ld]` to
    /// `dst`, row `q` at `dst[q * dst_ld]`.
    #[inline(always)]
    fn transpose8(src: &[f32], ld: usize, dst: &mut [f32], dst_ld: usize) {
        for r in 0..8 {
            let row = &src[r * ld..][..8];
            for (q, &v) in row.iter().enumerate() {
                dst[q * dst_ld + r] = v;
            }
        }
    }
}

/// Four lanes in plain Rust: `f32::mul_add` per lane (a hardware instruction where the target
/// has one, else libm's correctly rounded `fmaf`).
#[derive(Clone, Copy)]
pub(super) struct Portable([f32; 4]);

impl Lanes for Portable {
    const L: usize = 4;
    #[inline(always)]
    fn zero() -> Self {
        Portable([0.0; 4])
    }
    #[inline(always)]
    fn splat(x: f32) -> Self {
        Portable([x; 4])
    }
    #[inline(always)]
    fn load(s: &[f32]) -> Self {
        let mut v = [0.0; 4];
        v.copy_from_slice(&s[..4]);
        Portable(v)
    }
    #[inline(always)]
    fn store(self, s: &mut [f32]) {
        s[..4].copy_from_slice(&self.0);
    }
    #[inline(always)]
    fn fma(self, a: Self, b: Self) -> Self {
        let mut v = self.0;
        for ((v, a), b) in v.iter_mut().zip(a.0).zip(b.0) {
            *v = a.mul_add(b, *v);
        }
        Portable(v)
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        let mut v = self.0;
        for (v, b) in v.iter_mut().zip(b.0) {
            *v += b;
        }
        Portable(v)
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::Lanes;
    use std::arch::x86_64::*;

    /// The 8 x 8 transpose of [`Lanes::transpose8`] in AVX registers (24 shuffles).
    #[inline(always)]
    fn transpose8_avx(src: &[f32], ld: usize, dst: &mut [f32], dst_ld: usize) {
        let src = &src[..7 * ld + 8];
        let dst = &mut dst[..7 * dst_ld + 8];
        // SAFETY: rows r * ld .. r * ld + 8 of `src` and q * dst_ld .. q * dst_ld + 8 of
        // `dst` lie inside the slices (sliced above); only called from code compiled for (and
        // dispatched on) AVX2.
        unsafe {
            let s = src.as_ptr();
            let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(s.add(i * ld)));
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let out = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            let d = dst.as_mut_ptr();
            for (q, v) in out.into_iter().enumerate() {
                _mm256_storeu_ps(d.add(q * dst_ld), v);
            }
        }
    }

    /// Eight lanes of AVX2 + FMA. Only built inside functions compiled for those features.
    #[derive(Clone, Copy)]
    pub(in crate::ops) struct Avx2(__m256);

    impl Lanes for Avx2 {
        const L: usize = 8;
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY: only called from code compiled for (and dispatched on) AVX2 + FMA.
            Avx2(unsafe { _mm256_setzero_ps() })
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            // SAFETY: as above.
            Avx2(unsafe { _mm256_set1_ps(x) })
        }
        #[inline(always)]
        fn load(s: &[f32]) -> Self {
            let s = &s[..8];
            // SAFETY: 8 floats are readable (sliced); AVX2 as above.
            Avx2(unsafe { _mm256_loadu_ps(s.as_ptr()) })
        }
        #[inline(always)]
        fn store(self, s: &mut [f32]) {
            let s = &mut s[..8];
            // SAFETY: 8 floats are writable (sliced); AVX2 as above.
            unsafe { _mm256_storeu_ps(s.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn fma(self, a: Self, b: Self) -> Self {
            // SAFETY: as above.
            Avx2(unsafe { _mm256_fmadd_ps(a.0, b.0, self.0) })
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            // SAFETY: as above.
            Avx2(unsafe { _mm256_add_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn transpose8(src: &[f32], ld: usize, dst: &mut [f32], dst_ld: usize) {
            transpose8_avx(src, ld, dst, dst_ld)
        }
    }

    /// Sixteen lanes of AVX-512 F. Only built inside functions compiled for it.
    #[derive(Clone, Copy)]
    pub(in crate::ops) struct Avx512(__m512);

    impl Lanes for Avx512 {
        const L: usize = 16;
        #[inline(always)]
        fn zero() -> Self {
            // SAFETY: only called from code compiled for (and dispatched on) AVX-512 F.
            Avx512(unsafe { _mm512_setzero_ps() })
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            // SAFETY: as above.
            Avx512(unsafe { _mm512_set1_ps(x) })
        }
        #[inline(always)]
        fn load(s: &[f32]) -> Self {
            let s = &s[..16];
            // SAFETY: 16 floats are readable (sliced); AVX-512 as above.
            Avx512(unsafe { _mm512_loadu_ps(s.as_ptr()) })
        }
        #[inline(always)]
        fn store(self, s: &mut [f32]) {
            let s = &mut s[..16];
            // SAFETY: 16 floats are writable (sliced); AVX-512 as above.
            unsafe { _mm512_storeu_ps(s.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn fma(self, a: Self, b: Self) -> Self {
            // SAFETY: as above.
            Avx512(unsafe { _mm512_fmadd_ps(a.0, b.0, self.0) })
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            // SAFETY: as above.
            Avx512(unsafe { _mm512_add_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn transpose8(src: &[f32], ld: usize, dst: &mut [f32], dst_ld: usize) {
            transpose8_avx(src, ld, dst, dst_ld)
        }
    }
}

/// Register tiles `(MR, NR)` each instruction set offers, preferred first. The choice only
/// changes the speed.
const AVX512_TILES: [(usize, usize); 7] = [
    (12, 32),
    (8, 48),
    (6, 64),
    (4, 64),
    (14, 16),
    (6, 32),
    (4, 32),
];
const AVX2_TILES: [(usize, usize); 5] = [(6, 16), (4, 24), (3, 32), (12, 8), (6, 8)];

/// The tile with the fewest estimated cycles for an `m x n` output: whole tiles times the
/// cycles of one depth step of a tile, for two vector FMAs and two loads per cycle and an
/// FMA latency of four cycles.
fn pick(tiles: &[(usize, usize)], lanes: usize, m: usize, n: usize) -> (usize, usize) {
    let cost = |&(mr, nr): &(usize, usize)| {
        let fmas = mr * nr / lanes;
        let loads = mr + nr / lanes;
        let step = (fmas.max(loads) as f64 / 2.0).max(4.0);
        (m.div_ceil(mr) * n.div_ceil(nr)) as f64 * step
    };
    let mut best = tiles[0];
    for t in tiles {
        if cost(t) < cost(&best) {
            best = *t;
        }
    }
    best
}

fn dispatch(out: Out, m: usize, n: usize, k: usize, a: Mat, b: Mat, bufs: &mut Buffers) {
    #[cfg(target_arch = "x86_64")]
    match active() {
        // SAFETY: `active` only returns an instruction set the CPU supports.
        Isa::Avx512 => return unsafe { avx512(out, m, n, k, a, b, bufs) },
        // SAFETY: as above.
        Isa::Avx2 => return unsafe { avx2(out, m, n, k, a, b, bufs) },
        Isa::Portable => {}
    }
    blocked::<Portable, 4, 8, 2>(out, m, n, k, a, b, bufs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
unsafe fn avx512(out: Out, m: usize, n: usize, k: usize, a: Mat, b: Mat, bufs: &mut Buffers) {
    use x86::Avx512 as V;
    match pick(&AVX512_TILES, 16, m, n) {
        (8, 48) => blocked::<V, 8, 48, 3>(out, m, n, k, a, b, bufs),
        (6, 64) => blocked::<V, 6, 64, 4>(out, m, n, k, a, b, bufs),
        (4, 64) => blocked::<V, 4, 64, 4>(out, m, n, k, a, b, bufs),
        (14, 16) => blocked::<V, 14, 16, 1>(out, m, n, k, a, b, bufs),
        (6, 32) => blocked::<V, 6, 32, 2>(out, m, n, k, a, b, bufs),
        (4, 32) => blocked::<V, 4, 32, 2>(out, m, n, k, a, b, bufs),
        _ => blocked::<V, 12, 32, 2>(out, m, n, k, a, b, bufs),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(out: Out, m: usize, n: usize, k: usize, a: Mat, b: Mat, bufs: &mut Buffers) {
    use x86::Avx2 as V;
    match pick(&AVX2_TILES, 8, m, n) {
        (4, 24) => blocked::<V, 4, 24, 3>(out, m, n, k, a, b, bufs),
        (3, 32) => blocked::<V, 3, 32, 4>(out, m, n, k, a, b, bufs),
        (12, 8) => blocked::<V, 12, 8, 1>(out, m, n, k, a, b, bufs),
        (6, 8) => blocked::<V, 6, 8, 1>(out, m, n, k, a, b, bufs),
        _ => blocked::<V, 6, 16, 2>(out, m, n, k, a, b, bufs),
    }
}

/// The blocked product with `MR x NR` register tiles of `NV` vectors per row
/// (`NR = NV * V::L`): for each block of columns and each depth pass, `B` is packed into
/// `NR`-wide panels (or read in place when it is row-major and only one row of tiles uses
/// it); for each block of rows, `A` into `MR`-high panels; every tile then continues its
/// outputs' chains over the pass.
#[inline(always)]
fn blocked<V: Lanes, const MR: usize, const NR: usize, const NV: usize>(
    mut out: Out,
    m: usize,
    n: usize,
    k: usize,
    a: Mat,
    b: Mat,
    bufs: &mut Buffers,
) {
    debug_assert_eq!(NR, NV * V::L);
    let mc = MC.div_ceil(MR) * MR;
    let nc = NC.div_ceil(NR) * NR;
    // Row-major B that one row of tiles reads once: no copy.
    let in_place = (b.cs == 1 && m <= MR).then_some(b);
    for j0 in (0..n).step_by(nc) {
        let nb = nc.min(n - j0);
        for p0 in (0..k).step_by(KC) {
            let kb = KC.min(k - p0);
            if in_place.is_none() {
                pack_b::<V, NR>(&mut bufs.b, b, p0, kb, j0, nb);
            }
            for i0 in (0..m).step_by(mc) {
                let mb = mc.min(m - i0);
                pack_a::<V, MR>(&mut bufs.a, a, i0, mb, p0, kb);
                for jp in 0..nb.div_ceil(NR) {
                    let j = j0 + jp * NR;
                    let cols = NR.min(n - j);
                    let panel = if let Some(b) = in_place.filter(|_| cols == NR) {
                        Panel {
                            data: &b.data[p0 * b.rs + j..],
                            stride: b.rs,
                        }
                    } else if in_place.is_some() {
                        pack_b::<V, NR>(&mut bufs.b, b, p0, kb, j, cols);
                        Panel {
                            data: &bufs.b,
                            stride: NR,
                        }
                    } else {
                        Panel {
                            data: &bufs.b[jp * NR * kb..(jp + 1) * NR * kb],
                            stride: NR,
                        }
                    };
                    for (ip, ap) in bufs
                        .a
                        .chunks_exact(MR * KC)
                        .enumerate()
                        .take(mb.div_ceil(MR))
                    {
                        let i = i0 + ip * MR;
                        let shape = (MR.min(m - i), cols);
                        let first = p0 == 0 && !out.cont;
                        tile::<V, MR, NR, NV>(&mut out, (i, j), shape, ap, panel, kb, first);
                    }
                }
            }
        }
    }
}

/// `NR` columns of `B` over one depth pass: step `p`'s values start at `data[p * stride]`.
#[derive(Clone, Copy)]
struct Panel<'a> {
    data: &'a [f32],
    stride: usize,
}

/// Packs rows `i0..i0+mb` of `A`, depth `p0..p0+kb`, into `MR`-high panels of [`KC`]-long
/// rows: row `r` of panel `t` starts at `t * MR * KC + r * KC` (zeros past the last row), so
/// a tile finds every value at a fixed offset. Only the first `kb` values of a row are
/// written or read. A transposed `A` is packed in 8 x 8 blocks transposed in registers.
#[inline(always)]
fn pack_a<V: Lanes, const MR: usize>(
    buf: &mut Vec<f32>,
    a: Mat,
    i0: usize,
    mb: usize,
    p0: usize,
    kb: usize,
) {
    let rows = mb.div_ceil(MR) * MR;
    if buf.len() < rows * KC {
        buf.resize(rows * KC, 0.0);
    }
    let a = a.skip_rows(i0).skip_cols(p0);
    let (full_r, full_p) = if a.rs == 1 && a.cs != 1 {
        (mb / 8 * 8, kb / 8 * 8)
    } else {
        (0, 0)
    };
    // Row r of the panel is column r of the stored matrix when rs == 1: contiguous along
    // the rows, so blocks are transposed in registers.
    for r0 in (0..full_r).step_by(8) {
        for p in (0..full_p).step_by(8) {
            V::transpose8(&a.data[p * a.cs + r0..], a.cs, &mut buf[r0 * KC + p..], KC);
        }
    }
    for (r, dst) in buf.chunks_exact_mut(KC).enumerate().take(rows) {
        let dst = &mut dst[..kb];
        if r >= mb {
            dst.fill(0.0);
        } else if a.cs == 1 {
            dst.copy_from_slice(&a.data[r * a.rs..][..kb]);
        } else {
            let start = if r < full_r { full_p } else { 0 };
            for (p, d) in dst.iter_mut().enumerate().skip(start) {
                *d = a.at(r, p);
            }
        }
    }
}

/// Packs columns `j0..j0+nb` of `B`, depth `p0..p0+kb`, into `NR`-wide panels: panel `t`
/// holds, for each depth step, the `NR` values of its columns (zeros past the last column).
/// A transposed `B` is packed in 8 x 8 blocks transposed in registers.
#[inline(always)]
fn pack_b<V: Lanes, const NR: usize>(
    buf: &mut Vec<f32>,
    b: Mat,
    p0: usize,
    kb: usize,
    j0: usize,
    nb: usize,
) {
    let panels = nb.div_ceil(NR);
    if buf.len() < panels * NR * kb {
        buf.resize(panels * NR * kb, 0.0);
    }
    for (t, panel) in buf.chunks_exact_mut(NR * kb).enumerate().take(panels) {
        let cols = NR.min(nb - t * NR);
        if cols < NR {
            for dst in panel.chunks_exact_mut(NR) {
                dst[cols..].fill(0.0);
            }
        }
        let b = b.skip_rows(p0).skip_cols(j0 + t * NR);
        if b.cs == 1 {
            for (p, dst) in panel.chunks_exact_mut(NR).enumerate() {
                let src = &b.data[p * b.rs..];
                // Whole panels in fixed-size moves: a `memcpy` call per row costs more.
                match (dst.first_chunk_mut::<NR>(), src.first_chunk::<NR>()) {
                    (Some(d), Some(s)) if cols == NR => *d = *s,
                    _ => dst[..cols].copy_from_slice(&src[..cols]),
                }
            }
            continue;
        }
        // Column c of this panel is row c of the stored matrix: contiguous along the depth
        // when rs == 1.
        let (full_c, full_p) = if b.rs == 1 {
            (cols / 8 * 8, kb / 8 * 8)
        } else {
            (0, 0)
        };
        for c0 in (0..full_c).step_by(8) {
            for p in (0..full_p).step_by(8) {
                V::transpose8(
                    &b.data[c0 * b.cs + p..],
                    b.cs,
                    &mut panel[p * NR + c0..],
                    NR,
                );
            }
        }
        for c in 0..cols {
            let start = if c < full_c { full_p } else { 0 };
            for p in start..kb {
                panel[p * NR + c] = b.at(p, c);
            }
        }
    }
}

/// One register tile: outputs `(i.., j..)`, `rows x cols` of them valid (the rest of the tile
/// is padding), continued over one depth pass of `kb` steps of the packed `A` panel `ap` and
/// the `B` panel, from zero on the first pass and from `C` on later ones.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<V: Lanes, const MR: usize, const NR: usize, const NV: usize>(
    out: &mut Out,
    (i, j): (usize, usize),
    (rows, cols): (usize, usize),
    ap: &[f32],
    b: Panel,
    kb: usize,
    first: bool,
) {
    // Every access to `acc` has a constant index once the loops unroll, so it lives in
    // registers (a run-time index would keep it in memory, stored on every step).
    let mut acc = [[V::zero(); NV]; MR];
    if !first {
        for (r, acc_r) in acc.iter_mut().enumerate() {
            if r >= rows {
                break;
            }
            let src = &out.c[(i + r) * out.ldc + j..][..cols];
            let mut row = [0f32; NR];
            let src = if cols == NR {
                src
            } else {
                row[..cols].copy_from_slice(src);
                &row[..]
            };
            for (v, a) in acc_r.iter_mut().enumerate() {
                *a = V::load(&src[v * V::L..]);
            }
        }
    }
    let (a_rows, _) = ap.as_chunks::<KC>();
    let kb = kb.min(KC);
    if kb > 0 {
        let bd = &b.data[..(kb - 1) * b.stride + NR];
        for p in 0..kb {
            let bp = &bd[p * b.stride..][..NR];
            let mut bl = [V::zero(); NV];
            for (v, x) in bl.iter_mut().enumerate() {
                *x = V::load(&bp[v * V::L..]);
            }
            for (acc_r, a_row) in acc.iter_mut().zip(a_rows) {
                let s = V::splat(a_row[p]);
                for (x, &bx) in acc_r.iter_mut().zip(&bl) {
                    *x = x.fma(s, bx);
                }
            }
        }
    }
    for (r, acc_r) in acc.iter().enumerate() {
        if r >= rows {
            break;
        }
        let dst = &mut out.c[(i + r) * out.ldc + j..][..cols];
        if cols == NR {
            for (v, a) in acc_r.iter().enumerate() {
                a.store(&mut dst[v * V::L..]);
            }
        } else {
            let mut row = [0f32; NR];
            for (v, a) in acc_r.iter().enumerate() {
                a.store(&mut row[v * V::L..]);
            }
            dst.copy_from_slice(&row[..cols]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tile_fits_the_shape() {
        assert_eq!(pick(&AVX512_TILES, 16, 120, 128), (12, 32));
        assert_eq!(pick(&AVX512_TILES, 16, 6, 25), (6, 32));
        assert_eq!(pick(&AVX2_TILES, 8, 60, 64), (6, 16));
    }

    #[test]
    fn bad_operands_are_errors() {
        let mut c = [0f32; 4];
        let a = [0f32; 3];
        assert!(matmul(&mut c, 2, 2, 2, Mat::rows(&a, 2), Mat::rows(&a, 2)).is_err());
        assert!(reference(&mut c, 2, 2, 2, Mat::rows(&a, 2), Mat::rows(&a, 2)).is_err());
    }
}
