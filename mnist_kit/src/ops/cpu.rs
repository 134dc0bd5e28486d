//! The kit's CPU kernels as candle custom ops: convolution by im2col + GEMM (forward, input
//! gradient, weight gradient) and 2x2 max pooling with an argmax backward. Work is split over
//! images with rayon in fixed chunks, so results do not depend on thread scheduling.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{Mat, matmul};

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

fn to_candle(e: crate::Error) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

/// Geometry of one convolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvGeom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub oh: usize,
    pub ow: usize,
}

impl ConvGeom {
    fn new(x: [usize; 4], wt: [usize; 4], stride: usize, pad: usize) -> candle_core::Result<Self> {
        let [_, c, h, w] = x;
        let [o, ci, k, k2] = wt;
        if ci != c || k != k2 || stride == 0 {
            candle_core::bail!(
                "conv2d: input {x:?} and kernel {wt:?} do not match (stride {stride})"
            );
        }
        if h + 2 * pad < k || w + 2 * pad < k {
            candle_core::bail!("conv2d: kernel {k} larger than padded input {h}x{w}");
        }
        Ok(ConvGeom {
            c,
            h,
            w,
            o,
            k,
            stride,
            pad,
            oh: (h + 2 * pad - k) / stride + 1,
            ow: (w + 2 * pad - k) / stride + 1,
        })
    }
    fn ckk(&self) -> usize {
        self.c * self.k * self.k
    }
    fn p(&self) -> usize {
        self.oh * self.ow
    }
    fn image(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Unfolds one image `(C, H, W)` into columns of `col`: row `r` of the image's
    /// `(C*K*K, OH*OW)` matrix starts at `col[r * ld]` (so images can sit side by side).
    fn im2col(&self, x: &[f32], col: &mut [f32], ld: usize) {
        let g = self;
        for ci in 0..g.c {
            for ky in 0..g.k {
                for kx in 0..g.k {
                    let row = &mut col[((ci * g.k + ky) * g.k + kx) * ld..][..g.p()];
                    for oy in 0..g.oh {
                        let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                        let dst = &mut row[oy * g.ow..(oy + 1) * g.ow];
                        if iy < 0 || iy >= g.h as isize {
                            dst.fill(0.0);
                            continue;
                        }
                        let src = &x[(ci * g.h + iy as usize) * g.w..][..g.w];
                        if g.stride == 1 {
                            // Output columns [lo, hi) read inside the image; the rest is padding.
                            let (lo, hi) = g.valid_columns(kx);
                            dst[..lo].fill(0.0);
                            dst[lo..hi].copy_from_slice(&src[lo + kx - g.pad..hi + kx - g.pad]);
                            dst[hi..].fill(0.0);
                        } else {
                            for (ox, d) in dst.iter_mut().enumerate() {
                                let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                                *d = if ix < 0 || ix >= g.w as isize {
                                    0.0
                                } else {
                                    src[ix as usize]
                                };
                            }
                        }
                    }
                }
            }
        }
    }

    /// Folds columns (layout as in [`ConvGeom::im2col`]) back, adding into one image's
    /// gradient `(C, H, W)`.
    fn col2im(&self, col: &[f32], ld: usize, dx: &mut [f32]) {
        let g = self;
        for ci in 0..g.c {
            for ky in 0..g.k {
                for kx in 0..g.k {
                    let row = &col[((ci * g.k + ky) * g.k + kx) * ld..][..g.p()];
                    for oy in 0..g.oh {
                        let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                        if iy < 0 || iy >= g.h as isize {
                            continue;
                        }
                        let dst = &mut dx[(ci * g.h + iy as usize) * g.w..][..g.w];
                        let src = &row[oy * g.ow..(oy + 1) * g.ow];
                        if g.stride == 1 {
                            let (lo, hi) = g.valid_columns(kx);
                            let dst = &mut dst[lo + kx - g.pad..hi + kx - g.pad];
                            for (d, s) in dst.iter_mut().zip(&src[lo..hi]) {
                                *d += s;
                            }
                        } else {
                            for (ox, s) in src.iter().enumerate() {
                                let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                                if ix >= 0 && (ix as usize) < g.w {
                                    dst[ix as usize] += s;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// For stride 1: the output columns `[lo, hi)` whose input column `ox + kx - pad` lies
    /// inside the image (`lo <= hi`, both within `0..=ow`).
    fn valid_columns(&self, kx: usize) -> (usize, usize) {
        let lo = self.pad.saturating_sub(kx).min(self.ow);
        let hi = (self.w + self.pad).saturating_sub(kx).min(self.ow).max(lo);
        (lo, hi)
    }

    /// Images per GEMM block: enough columns for an efficient GEMM, bounded memory.
    fn block(&self) -> usize {
        (8_192 / self.p().max(1)).clamp(1, 64)
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<[Vec<f32>; 2]> = const { std::cell::RefCell::new([Vec::new(), Vec::new()]) };
}

/// Runs `f` with two per-thread scratch buffers of `a` and `b` floats. Their contents are
/// arbitrary: callers overwrite every element they read. Reusing them avoids allocating and
/// zeroing megabytes of columns on every convolution.
fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            let [x, y] = &mut *bufs;
            for (buf, n) in [(&mut *x, a), (&mut *y, b)] {
                if buf.len() < n {
                    buf.resize(n, 0.0);
                }
            }
            f(&mut x[..a], &mut y[..b])
        }
        // Re-entered on this thread (cannot happen with rayon's leaf tasks): fresh buffers.
        Err(_) => f(&mut vec![0.0; a], &mut vec![0.0; b]),
    })
}

/// Splits `n` images into one fixed range per thread, each cut into GEMM blocks. The split
/// depends only on `n`, the block size and the thread count, so sums are reproducible.
fn ranges(n: usize, block: usize) -> Vec<(usize, usize)> {
    let per = n.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + per).min(n);
        let mut s = start;
        while s < end {
            out.push((s, (s + block).min(end)));
            s += block;
        }
        start = end;
    }
    out
}

/// Cuts `buf` into the disjoint runs of whole images that `blocks` cover.
fn split_blocks<'a>(
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

/// Copies `dy` of images `[a, b)` from `(N, O, P)` into `(O, (b-a)*P)`.
fn gather(dy: &[f32], a: usize, b: usize, o: usize, p: usize, out: &mut [f32]) {
    let ld = (b - a) * p;
    for i in a..b {
        for oc in 0..o {
            out[oc * ld + (i - a) * p..][..p].copy_from_slice(&dy[(i * o + oc) * p..][..p]);
        }
    }
}

/// Output activation fused into the convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fused {
    /// Convolution plus bias.
    None,
    /// `max(0, conv + bias)`.
    Relu,
}

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
    let blocks = ranges(n, g.block());
    split_blocks(&mut out, &blocks, o * p)
        .into_par_iter()
        .zip(blocks.par_iter())
        .try_for_each(|(out_b, &(a, b))| -> crate::Result<()> {
            let nb = b - a;
            let ld = nb * p;
            with_scratch(ckk * ld, o * ld, |col, tmp| {
                for i in a..b {
                    g.im2col(
                        &x[i * g.image()..(i + 1) * g.image()],
                        &mut col[(i - a) * p..],
                        ld,
                    );
                }
                matmul(
                    tmp,
                    o,
                    ld,
                    ckk,
                    Mat::rows(wt, ckk),
                    Mat::rows(col, ld),
                    false,
                )?;
                for j in 0..nb {
                    for (oc, &bv) in bias.iter().enumerate() {
                        let src = &tmp[oc * ld + j * p..][..p];
                        let dst = &mut out_b[(j * o + oc) * p..][..p];
                        match act {
                            Fused::None => dst.iter_mut().zip(src).for_each(|(d, s)| *d = s + bv),
                            Fused::Relu => dst
                                .iter_mut()
                                .zip(src)
                                .for_each(|(d, s)| *d = (s + bv).max(0.0)),
                        }
                    }
                }
                Ok(())
            })
        })?;
    Ok(out)
}

pub(crate) fn conv_grad_input(
    dy: &[f32],
    wt: &[f32],
    n: usize,
    g: ConvGeom,
) -> crate::Result<Vec<f32>> {
    let (ckk, p, o) = (g.ckk(), g.p(), g.o);
    let mut dx = vec![0f32; n * g.image()];
    let blocks = ranges(n, g.block());
    split_blocks(&mut dx, &blocks, g.image())
        .into_par_iter()
        .zip(blocks.par_iter())
        .try_for_each(|(dx_b, &(a, b))| -> crate::Result<()> {
            let ld = (b - a) * p;
            with_scratch(ckk * ld, o * ld, |col, dyc| {
                gather(dy, a, b, o, p, dyc);
                // dcol = W^T (CKK x O) * dy (O x nb*P)
                matmul(
                    col,
                    ckk,
                    ld,
                    o,
                    Mat::transposed(wt, ckk),
                    Mat::rows(dyc, ld),
                    false,
                )?;
                for (j, dx_i) in dx_b.chunks_mut(g.image()).enumerate() {
                    g.col2im(&col[j * p..], ld, dx_i);
                }
                Ok(())
            })
        })?;
    Ok(dx)
}

pub(crate) fn conv_grad_weight(
    x: &[f32],
    dy: &[f32],
    n: usize,
    g: ConvGeom,
) -> crate::Result<Vec<f32>> {
    let (ckk, p, o) = (g.ckk(), g.p(), g.o);
    let partials = ranges(n, g.block())
        .into_par_iter()
        .map(|(a, b)| -> crate::Result<Vec<f32>> {
            let ld = (b - a) * p;
            with_scratch(ckk * ld, o * ld, |col, dyc| {
                for i in a..b {
                    g.im2col(
                        &x[i * g.image()..(i + 1) * g.image()],
                        &mut col[(i - a) * p..],
                        ld,
                    );
                }
                gather(dy, a, b, o, p, dyc);
                // dW = dy (O x nb*P) * col^T (nb*P x CKK)
                let mut dw = vec![0f32; o * ckk];
                matmul(
                    &mut dw,
                    o,
                    ckk,
                    ld,
                    Mat::rows(dyc, ld),
                    Mat::transposed(col, ld),
                    false,
                )?;
                Ok(dw)
            })
        })
        .collect::<crate::Result<Vec<_>>>()?;
    // Partial sums are added in block order: reproducible whatever the scheduling.
    let mut dw = vec![0f32; o * ckk];
    for part in partials {
        for (t, v) in dw.iter_mut().zip(part) {
            *t += v;
        }
    }
    Ok(dw)
}

/// Per-channel sums of `dy (N, O, P)`: the bias gradient.
fn bias_grad(dy: &[f32], n: usize, o: usize, p: usize) -> Vec<f32> {
    let mut db = vec![0f32; o];
    for i in 0..n {
        for (oc, d) in db.iter_mut().enumerate() {
            *d += dy[(i * o + oc) * p..][..p].iter().sum::<f32>();
        }
    }
    db
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
        let dy = match self.act {
            Fused::None => dy.contiguous()?,
            Fused::Relu => dy.contiguous()?.apply_op2_no_bwd(res, &ReluMask)?,
        };
        let dw = dy.apply_op2_no_bwd(
            x,
            &ConvGradWeight {
                kernel: w.dims().to_vec(),
                stride: self.stride,
                pad: self.pad,
            },
        )?;
        let db = dy.apply_op1_no_bwd(&BiasGrad)?;
        // The input gradient of a data batch is never used: skip it (PyTorch does too).
        let dx = if x.track_op() {
            Some(dy.apply_op2_no_bwd(
                w,
                &ConvGradInput {
                    input: x.dims().to_vec(),
                    stride: self.stride,
                    pad: self.pad,
                },
            )?)
        } else {
            None
        };
        Ok((dx, Some(dw), Some(db)))
    }
}

/// `dy * (y > 0)`: the ReLU backward from the fused output.
struct ReluMask;

impl CustomOp2 for ReluMask {
    fn name(&self) -> &'static str {
        "mnist-kit-relu-mask"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (dy, y) = (slice(s1, l1, "relu grad")?, slice(s2, l2, "relu output")?);
        let out = dy
            .iter()
            .zip(y)
            .map(|(&d, &v)| if v > 0.0 { d } else { 0.0 })
            .collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// dy `(N, O, OH, OW)` -> `(O,)` sums.
struct BiasGrad;

impl CustomOp1 for BiasGrad {
    fn name(&self) -> &'static str {
        "mnist-kit-bias-grad"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let [n, o, h, w] = dims4(l, "bias grad")?;
        Ok((
            CpuStorage::F32(bias_grad(slice(s, l, "bias grad")?, n, o, h * w)),
            Shape::from(o),
        ))
    }
}

/// dy `(N, O, OH, OW)` and w -> dx `(N, C, H, W)`.
struct ConvGradInput {
    input: Vec<usize>,
    stride: usize,
    pad: usize,
}

impl CustomOp2 for ConvGradInput {
    fn name(&self) -> &'static str {
        "mnist-kit-conv2d-grad-input"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let xd = arr4(&self.input, "conv2d grad input shape")?;
        let g = ConvGeom::new(xd, dims4(l2, "conv2d kernel")?, self.stride, self.pad)?;
        let dx = conv_grad_input(
            slice(s1, l1, "conv2d grad")?,
            slice(s2, l2, "conv2d kernel")?,
            xd[0],
            g,
        )
        .map_err(to_candle)?;
        Ok((CpuStorage::F32(dx), Shape::from(xd.to_vec())))
    }
}

/// dy `(N, O, OH, OW)` and x -> dw `(O, C, K, K)`.
struct ConvGradWeight {
    kernel: Vec<usize>,
    stride: usize,
    pad: usize,
}

impl CustomOp2 for ConvGradWeight {
    fn name(&self) -> &'static str {
        "mnist-kit-conv2d-grad-weight"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let wd = arr4(&self.kernel, "conv2d grad kernel shape")?;
        let xd = dims4(l2, "conv2d input")?;
        let g = ConvGeom::new(xd, wd, self.stride, self.pad)?;
        let dw = conv_grad_weight(
            slice(s2, l2, "conv2d input")?,
            slice(s1, l1, "conv2d grad")?,
            xd[0],
            g,
        )
        .map_err(to_candle)?;
        Ok((CpuStorage::F32(dw), Shape::from(wd.to_vec())))
    }
}

/// 2x2 (or `size`) max pooling with stride `size`; the backward routes each gradient to the
/// first maximum of its window, as PyTorch does.
pub(crate) struct MaxPool {
    pub size: usize,
}

fn pool_dims(l: &Layout, size: usize) -> candle_core::Result<([usize; 4], usize, usize)> {
    let d = dims4(l, "max_pool2d")?;
    if size == 0 || d[2] < size || d[3] < size {
        candle_core::bail!("max_pool2d: window {size} larger than input {d:?}");
    }
    Ok((d, d[2] / size, d[3] / size))
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "mnist-kit-max-pool2d"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "max_pool2d")?;
        let ([n, c, h, w], oh, ow) = pool_dims(l, self.size)?;
        let k = self.size;
        let mut out = vec![0f32; n * c * oh * ow];
        out.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(plane, o)| {
                let src = &x[plane * h * w..(plane + 1) * h * w];
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut m = f32::NEG_INFINITY;
                        for ky in 0..k {
                            for kx in 0..k {
                                let v = src[(oy * k + ky) * w + ox * k + kx];
                                if v > m || v.is_nan() {
                                    m = v;
                                }
                            }
                        }
                        o[oy * ow + ox] = m;
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }
    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        Ok(Some(arg.apply_op2_no_bwd(
            &grad,
            &MaxPoolGrad { size: self.size },
        )?))
    }
}

/// x and dy -> dx for [`MaxPool`].
struct MaxPoolGrad {
    size: usize,
}

impl CustomOp2 for MaxPoolGrad {
    fn name(&self) -> &'static str {
        "mnist-kit-max-pool2d-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "max_pool2d grad")?;
        let dy = slice(s2, l2, "max_pool2d grad")?;
        let ([n, c, h, w], oh, ow) = pool_dims(l1, self.size)?;
        let k = self.size;
        let mut dx = vec![0f32; n * c * h * w];
        dx.par_chunks_mut(h * w).enumerate().for_each(|(plane, d)| {
            let src = &x[plane * h * w..(plane + 1) * h * w];
            let g = &dy[plane * oh * ow..(plane + 1) * oh * ow];
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best = (oy * k) * w + ox * k;
                    for ky in 0..k {
                        for kx in 0..k {
                            let i = (oy * k + ky) * w + ox * k + kx;
                            if src[i] > src[best] {
                                best = i;
                            }
                        }
                    }
                    d[best] += g[oy * ow + ox];
                }
            }
        });
        Ok((CpuStorage::F32(dx), Shape::from((n, c, h, w))))
    }
}
