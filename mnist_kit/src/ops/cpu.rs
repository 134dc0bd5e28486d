//! The kit's CPU kernels as candle custom ops: convolution (forward, input gradient, weight
//! gradient; by the in-place kernels of `shifted.rs` where they apply, else by im2col + GEMM)
//! and 2x2 max pooling with an argmax backward. Work is split over
//! images with rayon in fixed chunks, so results do not depend on thread scheduling.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

use super::gemm::{Mat, matmul, matmul_continue};
use super::geom::{ConvGeom, copy_n, copy_short};
use super::shifted;
use super::simd::multiversion;

pub(crate) fn slice<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: the fast CPU path needs a contiguous tensor"),
    }
}

fn dims4(l: &Layout, what: &str) -> candle_core::Result<[usize; 4]> {
    arr4(l.dims(), what)
}

fn arr4(d: &[usize], what: &str) -> candle_core::Result<[usize; 4]> {
    match *d {
        [a, b, c, e] => Ok([a, b, c, e]),
        _ => candle_core::bail!("{what}: expected a 4-d tensor, got {d:?}"),
    }
}

pub(crate) fn to_candle(e: crate::Error) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

/// The im2col path's part of a convolution's geometry.
impl ConvGeom {
    /// Unfolds one image `(C, H, W)` into columns of `col`: row `r` of the image's
    /// `(C*K*K, OH*OW)` matrix starts at `col[r * ld]` (so images can sit side by side).
    fn im2col(&self, x: &[f32], col: &mut [f32], ld: usize) {
        PADDED.with(|cell| {
            let mut padded = cell.take();
            im2col(*self, x, col, ld, &mut padded);
            cell.set(padded);
        });
    }

    /// Folds columns (layout as in [`ConvGeom::im2col`]) back, adding into one image's
    /// gradient `(C, H, W)`.
    fn col2im(&self, col: &[f32], ld: usize, dx: &mut [f32]) {
        PADDED.with(|cell| {
            let mut padded = cell.take();
            col2im(*self, col, ld, dx, &mut padded);
            cell.set(padded);
        });
    }

    /// The unfolded columns `(C*K*K, (e-s) * OH*OW)` of images `[s, e)` of `x`: unfolded
    /// into `col` by [`ConvGeom::im2col`], or where the kernel covers the [`whole`] image, a
    /// transposed view of the images themselves (no copy).
    ///
    /// [`whole`]: ConvGeom::whole
    fn unfold_block<'a>(
        &self,
        x: &'a [f32],
        (s, e): (usize, usize),
        col: &'a mut [f32],
    ) -> Mat<'a> {
        let image = self.image();
        if self.whole() {
            return Mat::transposed(&x[s * image..e * image], image);
        }
        let ld = (e - s) * self.p();
        let col = &mut col[..self.ckk() * ld];
        for i in s..e {
            self.im2col(&x[i * image..][..image], &mut col[(i - s) * self.p()..], ld);
        }
        Mat::rows(col, ld)
    }

    /// Images per block: as many as keep the block's unfolded input within [`COL_BUDGET`]
    /// floats (the L2 cache), at least one. No bit depends on it (see [`conv_backward`]).
    fn block(&self) -> usize {
        (COL_BUDGET / (self.ckk() * self.p()).max(1)).clamp(1, 64)
    }
}

/// Floats of unfolded input a convolution works on at a time (512 KB).
const COL_BUDGET: usize = 1 << 17;

/// The image `(C, H, W)` with `pad` zeros around each plane, `(C, H+2p, W+2p)`.
#[inline(always)]
fn pad_image(g: &ConvGeom, x: &[f32], out: &mut Vec<f32>) {
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    out.clear();
    out.resize(g.c * hp * wp, 0.0);
    for ci in 0..g.c {
        for y in 0..g.h {
            let src = &x[(ci * g.h + y) * g.w..][..g.w];
            let dst = &mut out[(ci * hp + y + g.pad) * wp + g.pad..][..g.w];
            copy_short(dst, src);
        }
    }
}

/// Calls `$f::<OW, S>($args)` with the output width and stride of `$g` as constants when they
/// are those of a convolution of the zoo (28, 14, 10, 7, 4 at stride 1; 14, 7, 4 at stride 2),
/// else `$f::<0, 0>`, which reads both at run time.
macro_rules! by_width {
    ($g:expr, $f:ident($($arg:expr),*)) => {
        match ($g.stride, $g.ow) {
            (1, 28) => $f::<28, 1>($($arg),*),
            (1, 14) => $f::<14, 1>($($arg),*),
            (1, 10) => $f::<10, 1>($($arg),*),
            (1, 7) => $f::<7, 1>($($arg),*),
            (1, 4) => $f::<4, 1>($($arg),*),
            (2, 14) => $f::<14, 2>($($arg),*),
            (2, 7) => $f::<7, 2>($($arg),*),
            (2, 4) => $f::<4, 2>($($arg),*),
            _ => $f::<0, 0>($($arg),*),
        }
    };
}

/// The unfolding rows of one zero-padded image. With `OW` and `S` known at compile time every
/// row piece is one fixed-size copy or gather (a few vector moves, no loop or tail dispatch);
/// `OW = 0` takes the width and stride from `g`.
#[inline(always)]
fn unfold<const OW: usize, const S: usize>(
    g: &ConvGeom,
    padded: &[f32],
    col: &mut [f32],
    ld: usize,
) {
    let (ow, s) = if OW == 0 { (g.ow, g.stride) } else { (OW, S) };
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    for ci in 0..g.c {
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = &mut col[((ci * g.k + ky) * g.k + kx) * ld..][..g.p()];
                let src = &padded[(ci * hp + ky) * wp + kx..];
                for (oy, dst) in row.chunks_exact_mut(ow).enumerate() {
                    let src = &src[oy * s * wp..][..(ow - 1) * s + 1];
                    match (s, OW) {
                        (1, 0) => copy_short(dst, src),
                        (1, _) => copy_n::<OW>(dst, src),
                        _ => {
                            for (j, d) in dst.iter_mut().enumerate() {
                                *d = src[j * s];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// [`unfold`]'s inverse: adds the rows back into the padded image, rows `(ci, ky, kx)`, then
/// `oy`, the same order for every pixel.
#[inline(always)]
fn fold<const OW: usize, const S: usize>(g: &ConvGeom, col: &[f32], ld: usize, padded: &mut [f32]) {
    let (ow, s) = if OW == 0 { (g.ow, g.stride) } else { (OW, S) };
    let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
    for ci in 0..g.c {
        for ky in 0..g.k {
            for kx in 0..g.k {
                let row = &col[((ci * g.k + ky) * g.k + kx) * ld..][..g.p()];
                let base = (ci * hp + ky) * wp + kx;
                for (oy, src) in row.chunks_exact(ow).enumerate() {
                    let dst = &mut padded[base + oy * s * wp..][..(ow - 1) * s + 1];
                    for (j, v) in src.iter().enumerate() {
                        dst[j * s] += v;
                    }
                }
            }
        }
    }
}

multiversion! {
    /// [`ConvGeom::im2col`], compiled per instruction set: unfolds a zero-padded copy, so every
    /// row piece is a short copy without bounds logic.
    fn im2col(g: ConvGeom, x: &[f32], col: &mut [f32], ld: usize, padded: &mut Vec<f32>) {
        pad_image(&g, x, padded);
        by_width!(g, unfold(&g, padded, col, ld));
    }
}

multiversion! {
    /// [`ConvGeom::col2im`], compiled per instruction set: contributions are added into a
    /// zero-padded copy ([`fold`]), whose interior is then added to `dx`.
    fn col2im(g: ConvGeom, col: &[f32], ld: usize, dx: &mut [f32], padded: &mut Vec<f32>) {
        let (hp, wp) = (g.h + 2 * g.pad, g.w + 2 * g.pad);
        padded.clear();
        padded.resize(g.c * hp * wp, 0.0);
        by_width!(g, fold(&g, col, ld, padded));
        for ci in 0..g.c {
            for y in 0..g.h {
                let src = &padded[(ci * hp + y + g.pad) * wp + g.pad..][..g.w];
                let dst = &mut dx[(ci * g.h + y) * g.w..][..g.w];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d += s;
                }
            }
        }
    }
}

thread_local! {
    /// A zero-padded image for the narrow im2col/col2im path, reused per thread.
    static PADDED: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

thread_local! {
    static SCRATCH: std::cell::RefCell<[Vec<f32>; 2]> = const { std::cell::RefCell::new([Vec::new(), Vec::new()]) };
}

/// Runs `f` with two per-thread scratch buffers of the given lengths. Their contents are
/// arbitrary: callers overwrite every element they read. Reusing them avoids allocating and
/// zeroing megabytes on every convolution.
fn with_scratch<R>(lens: [usize; 2], f: impl FnOnce([&mut [f32]; 2]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            let [x, y] = &mut *bufs;
            for (buf, &n) in [&mut *x, &mut *y].into_iter().zip(&lens) {
                if buf.len() < n {
                    buf.resize(n, 0.0);
                }
            }
            f([&mut x[..lens[0]], &mut y[..lens[1]]])
        }
        // Re-entered on this thread (cannot happen with rayon's leaf tasks): fresh buffers.
        Err(_) => {
            let mut fresh = lens.map(|n| vec![0.0; n]);
            let [x, y] = &mut fresh;
            f([x, y])
        }
    })
}

/// Parts a batch is split into for the threads, whatever their number: the partial sums (and
/// so the rounding) depend on the split, and a fixed split gives the same numbers on one
/// thread, two or eight.
pub(crate) const SPLIT: usize = 2;

/// Splits `n` images into [`SPLIT`] fixed ranges. The split depends only on `n`, so sums are
/// the same on any thread count.
pub(crate) fn halves(n: usize) -> Vec<(usize, usize)> {
    let per = n.div_ceil(SPLIT).max(1);
    (0..n).step_by(per).map(|a| (a, (a + per).min(n))).collect()
}

/// Cuts `buf` into the disjoint runs of whole images that `blocks` cover.
pub(crate) fn split_blocks<'a>(
    mut buf: &'a mut [f32],
    blocks: &[(usize, usize)],
    per_image: usize,
) -> Vec<&'a mut [f32]> {
    let mut pieces = Vec::with_capacity(blocks.len());
    for &(a, b) in blocks {
        let (head, tail) = buf.split_at_mut((b - a) * per_image);
        pieces.push(head);
        buf = tail;
    }
    pieces
}

/// A convolution's output gradient, and the fused ReLU's output that masks it.
#[derive(Clone, Copy)]
pub(crate) struct OutGrad<'a> {
    pub dy: &'a [f32],
    pub relu_out: Option<&'a [f32]>,
}

impl OutGrad<'_> {
    /// Copies the (masked) gradient of images `[a, b)` from `(N, O, P)` into `(O, (b-a)*P)`
    /// and adds each channel's sum (the bias gradient) to `db`.
    fn gather(&self, a: usize, b: usize, o: usize, p: usize, out: &mut [f32], db: &mut [f32]) {
        gather(self.dy, self.relu_out, a, b, o, p, out, db);
    }
}

multiversion! {
    /// [`OutGrad::gather`], compiled per instruction set.
    fn gather(
        dy: &[f32],
        relu_out: Option<&[f32]>,
        a: usize,
        b: usize,
        o: usize,
        p: usize,
        out: &mut [f32],
        db: &mut [f32],
    ) {
        let ld = (b - a) * p;
        for i in a..b {
            for (oc, db) in db.iter_mut().enumerate().take(o) {
                let at = (i * o + oc) * p;
                let dst = &mut out[oc * ld + (i - a) * p..][..p];
                let src = &dy[at..][..p];
                match relu_out {
                    None => {
                        for (d, &g) in dst.iter_mut().zip(src) {
                            *d = g;
                        }
                    }
                    Some(y) => {
                        for ((d, &g), &v) in dst.iter_mut().zip(src).zip(&y[at..][..p]) {
                            *d = if v > 0.0 { g } else { 0.0 };
                        }
                    }
                }
                *db += sum(dst);
            }
        }
    }
}

/// A sum in eight independent lanes (vectorizes; a plain `iter().sum()` is one serial chain).
/// The lanes are added in the same order on every instruction set.
#[inline(always)]
fn sum(v: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = v.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Output activation fused into the convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fused {
    /// Convolution plus bias.
    None,
    /// `max(0, conv + bias)`.
    Relu,
}

impl Fused {
    pub fn relu_if(relu: bool) -> Self {
        if relu { Fused::Relu } else { Fused::None }
    }
}

multiversion! {
    /// Adds the bias to a block's GEMM output `(O, nb*P)` and writes `(nb, O, P)`, with the
    /// ReLU when asked.
    fn bias_act(tmp: &[f32], bias: &[f32], nb: usize, p: usize, ld: usize, relu: bool, out: &mut [f32]) {
        let o = bias.len();
        for j in 0..nb {
            for (oc, &bv) in bias.iter().enumerate() {
                let src = &tmp[oc * ld + j * p..][..p];
                let dst = &mut out[(j * o + oc) * p..][..p];
                if relu {
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d = (s + bv).max(0.0);
                    }
                } else {
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d = s + bv;
                    }
                }
            }
        }
    }
}

/// `act(conv(x, w) + b)` for `n` images: each half of the batch on its own task, block by
/// block (unfold, one GEMM, bias and activation), every block's columns in the cache.
pub(crate) fn conv_forward(
    x: &[f32],
    wt: &[f32],
    bias: &[f32],
    n: usize,
    g: ConvGeom,
    act: Fused,
) -> crate::Result<Vec<f32>> {
    let (ckk, p, o) = (g.ckk(), g.p(), g.o);
    let mut out = vec![0f32; n * o * p];
    let halves = halves(n);
    let per_block = g.block();
    split_blocks(&mut out, &halves, o * p)
        .into_par_iter()
        .zip(halves.par_iter())
        .try_for_each(|(out_h, &(a, b))| -> crate::Result<()> {
            if shifted::forward_applies(&g) {
                let x_h = &x[a * g.image()..b * g.image()];
                shifted::forward(&g, x_h, wt, bias, act == Fused::Relu, out_h);
                return Ok(());
            }
            let most = per_block.min(b - a);
            with_scratch([ckk * most * p, o * most * p], |[col, tmp]| {
                for s in (a..b).step_by(most) {
                    let e = (s + most).min(b);
                    let ld = (e - s) * p;
                    let cols = g.unfold_block(x, (s, e), col);
                    matmul(tmp, o, ld, ckk, Mat::rows(wt, ckk), cols)?;
                    let out_b = &mut out_h[(s - a) * o * p..(e - a) * o * p];
                    bias_act(tmp, bias, e - s, p, ld, act == Fused::Relu, out_b);
                }
                Ok(())
            })
        })?;
    Ok(out)
}

/// The gradients of one convolution, `(dw, db, dx)`, `dx` only when `need_dx`; each half of
/// the batch on its own task, block by block, unfolding `x` again into the cache.
///
/// The weight gradient of a half is one chain of fused multiply-adds per weight over the
/// half's pixels in order ([`matmul_continue`] carries it from block to block), and the bias
/// gradient a sum over its images in order; the two halves are then added. So no bit depends
/// on the block size, the thread count or the instruction set.
pub(crate) fn conv_backward(
    grad: OutGrad,
    x: &[f32],
    wt: &[f32],
    n: usize,
    g: ConvGeom,
    need_dx: bool,
) -> crate::Result<Grads> {
    let (ckk, p, o) = (g.ckk(), g.p(), g.o);
    let halves = halves(n);
    let per_block = g.block();
    // Few output channels: dW (O x CKK) = dy col^T keeps the tile full; else dW^T (CKK x O)
    // = col dy^T, whose packing copies rows. Both orientations give the same bits.
    let by_rows = o < 16;
    let mut dx = vec![0f32; if need_dx { n * g.image() } else { 0 }];
    let dx_halves = split_blocks(&mut dx, &halves, if need_dx { g.image() } else { 0 });
    let partials = dx_halves
        .into_par_iter()
        .zip(halves.par_iter())
        .map(|(dx_h, &(a, b))| -> crate::Result<(Vec<f32>, Vec<f32>)> {
            let most = per_block.min(b - a);
            let mut dw = vec![0f32; o * ckk];
            let mut db = vec![0f32; o];
            if shifted::weight_grad_applies(&g) {
                let dx_h = need_dx.then_some(dx_h);
                backward_in_place(grad, x, wt, g, (a, b), dx_h, (&mut dw, &mut db))?;
                return Ok((dw, db));
            }
            with_scratch([ckk * most * p, o * most * p], |[col, dyc]| {
                for s in (a..b).step_by(most) {
                    let e = (s + most).min(b);
                    let ld = (e - s) * p;
                    let dyc = &mut dyc[..o * ld];
                    grad.gather(s, e, o, p, dyc, &mut db);
                    let cols = g.unfold_block(x, (s, e), col);
                    let dy_m = Mat::rows(dyc, ld);
                    if by_rows {
                        matmul_continue(&mut dw, o, ckk, ld, dy_m, cols.t())?;
                    } else {
                        matmul_continue(&mut dw, ckk, o, ld, cols, dy_m.t())?;
                    }
                    if !need_dx {
                        continue;
                    }
                    let dx_b = &mut dx_h[(s - a) * g.image()..(e - a) * g.image()];
                    if g.whole() {
                        // The columns are the images: dx (images x CKK) = dy^T W directly.
                        // The fold would add each chain to zero, which changes no bit: a
                        // chain of multiply-adds from +0 is never -0.
                        matmul(dx_b, e - s, ckk, o, dy_m.t(), Mat::rows(wt, ckk))?;
                        continue;
                    }
                    // dcol = W^T (CKK x O) * dy (O x ld), folded back into the images.
                    matmul(col, ckk, ld, o, Mat::transposed(wt, ckk), dy_m)?;
                    for (j, dx_i) in dx_b.chunks_mut(g.image()).enumerate() {
                        g.col2im(&col[j * p..], ld, dx_i);
                    }
                }
                Ok::<(), crate::Error>(())
            })?;
            if !by_rows {
                dw = transpose(&dw, ckk, o);
            }
            Ok((dw, db))
        })
        .collect::<crate::Result<Vec<_>>>()?;
    Ok(Grads::from_partials(
        partials,
        (o * ckk, o),
        need_dx.then_some(dx),
    ))
}

/// [`conv_backward`] of images `[a, b)` with the in-place kernels: the weight gradient from
/// the padded images ([`shifted::weight_grad`]), the input gradient tap by tap where
/// [`shifted::input_grad_applies`], else by columns.
fn backward_in_place(
    grad: OutGrad,
    x: &[f32],
    wt: &[f32],
    g: ConvGeom,
    (a, b): (usize, usize),
    dx: Option<&mut [f32]>,
    (dw, db): (&mut [f32], &mut [f32]),
) -> crate::Result<()> {
    let (ckk, p, o) = (g.ckk(), g.p(), g.o);
    let most = g.block().min(b - a);
    with_scratch([o * (b - a) * p, ckk * most * p], |[dyc, col]| {
        grad.gather(a, b, o, p, dyc, db);
        shifted::weight_grad(&g, &x[a * g.image()..b * g.image()], dyc, dw);
        match dx {
            None => Ok(()),
            Some(dx) if shifted::input_grad_applies(&g) => {
                shifted::input_grad(&g, wt, dyc, dx);
                Ok(())
            }
            Some(dx) => input_grad_by_columns(g, wt, dyc, most, col, dx),
        }
    })
}

/// The input gradient `dx (n, C, H, W)` from the output gradient `dyc (O, n * P)` (image
/// `j`'s values at column `j * P`), `most` images at a time: `dcol = Wᵀ dy` into `col`, folded
/// back into the images.
fn input_grad_by_columns(
    g: ConvGeom,
    wt: &[f32],
    dyc: &[f32],
    most: usize,
    col: &mut [f32],
    dx: &mut [f32],
) -> crate::Result<()> {
    let (ckk, p, o) = (g.ckk(), g.p(), g.o);
    let n = dx.len() / g.image();
    for s in (0..n).step_by(most) {
        let e = (s + most).min(n);
        let ld = (e - s) * p;
        let dy_m = Mat {
            data: &dyc[s * p..],
            rs: n * p,
            cs: 1,
        };
        matmul(col, ckk, ld, o, Mat::transposed(wt, ckk), dy_m)?;
        let dx_b = &mut dx[s * g.image()..e * g.image()];
        for (j, dx_i) in dx_b.chunks_mut(g.image()).enumerate() {
            g.col2im(&col[j * p..], ld, dx_i);
        }
    }
    Ok(())
}

/// The transpose of a row-major `rows x cols` matrix.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    for (r, row) in m.chunks_exact(cols).enumerate().take(rows) {
        for (c, &v) in row.iter().enumerate() {
            t[c * rows + r] = v;
        }
    }
    t
}

/// The gradients of a layer op: weight, bias and, when asked for, input.
pub(crate) struct Grads {
    pub dw: Vec<f32>,
    pub db: Vec<f32>,
    pub dx: Option<Vec<f32>>,
}

impl Grads {
    /// Adds per-block `(dw, db)` partial sums (each `dw_len` and `db_len` long) in block
    /// order, so the result does not depend on thread scheduling.
    pub fn from_partials(
        partials: Vec<(Vec<f32>, Vec<f32>)>,
        (dw_len, db_len): (usize, usize),
        dx: Option<Vec<f32>>,
    ) -> Self {
        let mut dw = vec![0f32; dw_len];
        let mut db = vec![0f32; db_len];
        for (pw, pb) in partials {
            add_into(&mut dw, &pw);
            add_into(&mut db, &pb);
        }
        Grads { dw, db, dx }
    }
}

multiversion! {
    /// `acc += v`, elementwise.
    pub(crate) fn add_into(acc: &mut [f32], v: &[f32]) {
        for (t, x) in acc.iter_mut().zip(v) {
            *t += x;
        }
    }
}

fn geom(
    x: &Layout,
    w: &Layout,
    stride: usize,
    pad: usize,
) -> candle_core::Result<([usize; 4], ConvGeom)> {
    let xd = dims4(x, "conv2d input")?;
    Ok((
        xd,
        ConvGeom::new(xd, dims4(w, "conv2d kernel")?, stride, pad)?,
    ))
}

/// The f32 data of a contiguous CPU tensor's storage.
pub(crate) fn storage_slice<'a>(
    s: &'a Storage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    match s {
        Storage::Cpu(c) => slice(c, l, what),
        _ => candle_core::bail!("{what}: the fast CPU path needs a CPU tensor"),
    }
}

/// `act(conv2d(x, w) + b)`: x `(N, C, H, W)`, w `(O, C, K, K)`, b `(O,)`.
pub(crate) struct Conv2d {
    pub stride: usize,
    pub pad: usize,
    pub act: Fused,
}

impl CustomOp3 for Conv2d {
    fn name(&self) -> &'static str {
        "mnist-kit-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (xd, g) = geom(l1, l2, self.stride, self.pad)?;
        let b = slice(s3, l3, "conv2d bias")?;
        if b.len() != g.o {
            candle_core::bail!("conv2d: bias has {} values for {} channels", b.len(), g.o);
        }
        let out = conv_forward(
            slice(s1, l1, "conv2d input")?,
            slice(s2, l2, "conv2d kernel")?,
            b,
            xd[0],
            g,
            self.act,
        )
        .map_err(to_candle)?;
        Ok((CpuStorage::F32(out), Shape::from((xd[0], g.o, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let (xd, g) = geom(x.layout(), w.layout(), self.stride, self.pad)?;
        // The input gradient of a data batch is never used: skip it (PyTorch does too).
        let need_dx = x.track_op();
        let Grads { dw, db, dx } = {
            let (dys, dyl) = dy.storage_and_layout();
            let (xs, xl) = x.storage_and_layout();
            let (ws, wl) = w.storage_and_layout();
            let (ys, yl) = res.storage_and_layout();
            let grad = OutGrad {
                dy: storage_slice(&dys, dyl, "conv2d grad")?,
                relu_out: match self.act {
                    Fused::None => None,
                    Fused::Relu => Some(storage_slice(&ys, yl, "conv2d output")?),
                },
            };
            conv_backward(
                grad,
                storage_slice(&xs, xl, "conv2d input")?,
                storage_slice(&ws, wl, "conv2d kernel")?,
                xd[0],
                g,
                need_dx,
            )
            .map_err(to_candle)?
        };
        let dev = x.device();
        Ok((
            dx.map(|v| Tensor::from_vec(v, x.shape(), dev))
                .transpose()?,
            Some(Tensor::from_vec(dw, w.shape(), dev)?),
            Some(Tensor::from_vec(db, g.o, dev)?),
        ))
    }
}

/// Max pooling with a `size` x `size` window and stride `size`. The forward keeps the
/// position of each window's maximum (first maximum, as PyTorch), so the backward is a
/// scatter instead of a second search.
pub(crate) struct MaxPool {
    pub size: usize,
    argmax: std::sync::Mutex<Option<std::sync::Arc<Vec<u8>>>>,
}

impl MaxPool {
    pub fn new(size: usize) -> Self {
        MaxPool {
            size,
            argmax: Default::default(),
        }
    }
}

fn pool_dims(l: &Layout, size: usize) -> candle_core::Result<([usize; 4], usize, usize)> {
    let d = dims4(l, "max_pool2d")?;
    if size == 0 || size > 16 || d[2] < size || d[3] < size {
        candle_core::bail!("max_pool2d: window {size} unsupported for input {d:?}");
    }
    Ok((d, d[2] / size, d[3] / size))
}

multiversion! {
/// Max-pools one plane `(h, w)` into `out (oh, ow)`, writing each window's argmax
/// (row-major index inside the window) to `arg`.
fn pool_plane(src: &[f32], w: usize, k: usize, ow: usize, out: &mut [f32], arg: &mut [u8]) {
    for (oy, (orow, arow)) in out
        .chunks_exact_mut(ow)
        .zip(arg.chunks_exact_mut(ow))
        .enumerate()
    {
        let rows = &src[oy * k * w..][..k * w];
        if k == 2 {
            let (r0, r1) = rows.split_at(w);
            for (((o, a), p0), p1) in orow
                .iter_mut()
                .zip(arow.iter_mut())
                .zip(r0.chunks_exact(2))
                .zip(r1.chunks_exact(2))
            {
                let (mut m, mut j) = (p0[0], 0u8);
                if p0[1] > m || p0[1].is_nan() && !m.is_nan() {
                    (m, j) = (p0[1], 1);
                }
                if p1[0] > m || p1[0].is_nan() && !m.is_nan() {
                    (m, j) = (p1[0], 2);
                }
                if p1[1] > m || p1[1].is_nan() && !m.is_nan() {
                    (m, j) = (p1[1], 3);
                }
                (*o, *a) = (m, j);
            }
        } else {
            for (ox, (o, a)) in orow.iter_mut().zip(arow.iter_mut()).enumerate() {
                let (mut m, mut j) = (f32::NEG_INFINITY, 0u8);
                for ky in 0..k {
                    for kx in 0..k {
                        let v = rows[ky * w + ox * k + kx];
                        if (ky, kx) == (0, 0) || v > m || v.is_nan() && !m.is_nan() {
                            (m, j) = (v, (ky * k + kx) as u8);
                        }
                    }
                }
                (*o, *a) = (m, j);
            }
        }
    }
}
}

/// Max-pools `x (N, C, H, W)`: the output and the argmax of every window.
pub(crate) fn max_pool_forward(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    k: usize,
) -> (Vec<f32>, Vec<u8>) {
    let (oh, ow) = (h / k, w / k);
    let mut out = vec![0f32; n * c * oh * ow];
    let mut arg = vec![0u8; out.len()];
    // One task per image: planes are small, per-plane tasks cost more than they carry.
    out.par_chunks_mut(c * oh * ow)
        .zip(arg.par_chunks_mut(c * oh * ow))
        .zip(x.par_chunks(c * h * w))
        .for_each(|((o, a), src)| {
            for ((o, a), plane) in o
                .chunks_mut(oh * ow)
                .zip(a.chunks_mut(oh * ow))
                .zip(src.chunks(h * w))
            {
                pool_plane(plane, w, k, ow, o, a);
            }
        });
    (out, arg)
}

/// Scatters `dy (N, C, OH, OW)` to the argmax positions of `(N, C, H, W)`.
pub(crate) fn max_pool_backward(
    dy: &[f32],
    arg: &[u8],
    [n, c, h, w]: [usize; 4],
    k: usize,
) -> Vec<f32> {
    let (oh, ow) = (h / k, w / k);
    let mut dx = vec![0f32; n * c * h * w];
    dx.par_chunks_mut(c * h * w)
        .zip(dy.par_chunks(c * oh * ow))
        .zip(arg.par_chunks(c * oh * ow))
        .for_each(|((dx, dy), arg)| {
            for ((d, g), a) in dx
                .chunks_mut(h * w)
                .zip(dy.chunks(oh * ow))
                .zip(arg.chunks(oh * ow))
            {
                for (oy, (g, a)) in g.chunks_exact(ow).zip(a.chunks_exact(ow)).enumerate() {
                    let rows = &mut d[oy * k * w..][..k * w];
                    for (ox, (&g, &a)) in g.iter().zip(a).enumerate() {
                        let (ky, kx) = (a as usize / k, a as usize % k);
                        rows[ky * w + ox * k + kx] = g;
                    }
                }
            }
        });
    dx
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "mnist-kit-max-pool2d"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "max_pool2d")?;
        let (d, oh, ow) = pool_dims(l, self.size)?;
        let (out, arg) = max_pool_forward(x, d, self.size);
        if let Ok(mut slot) = self.argmax.lock() {
            *slot = Some(std::sync::Arc::new(arg));
        }
        Ok((CpuStorage::F32(out), Shape::from((d[0], d[1], oh, ow))))
    }
    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let argmax = self.argmax.lock().ok().and_then(|s| s.clone());
        let Some(argmax) = argmax else {
            candle_core::bail!("max_pool2d backward: the forward's argmax is missing")
        };
        let grad = grad.contiguous()?;
        Ok(Some(grad.apply_op1_no_bwd(&MaxPoolGrad {
            size: self.size,
            input: arg.dims().to_vec(),
            argmax,
        })?))
    }
}

/// dy -> dx for [`MaxPool`], from the forward's argmax.
struct MaxPoolGrad {
    size: usize,
    input: Vec<usize>,
    argmax: std::sync::Arc<Vec<u8>>,
}

impl CustomOp1 for MaxPoolGrad {
    fn name(&self) -> &'static str {
        "mnist-kit-max-pool2d-grad"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let dy = slice(s, l, "max_pool2d grad")?;
        let d = arr4(&self.input, "max_pool2d grad")?;
        let k = self.size;
        if dy.len() != d[0] * d[1] * (d[2] / k) * (d[3] / k) || self.argmax.len() != dy.len() {
            candle_core::bail!(
                "max_pool2d grad: gradient {:?} does not match input {d:?}",
                l.dims()
            );
        }
        Ok((
            CpuStorage::F32(max_pool_backward(dy, &self.argmax, d, k)),
            Shape::from(d.to_vec()),
        ))
    }
}
