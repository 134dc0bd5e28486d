//! Direct convolution for a single output map, stride 1 (spatial attention's 7x7 conv from
//! two maps to one). im2col would copy the input K² times to feed a one-row GEMM; here every
//! tap is one shifted row-slice multiply-add, forward and backward.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{Grads, slice, storage_slice};

/// `conv2d(x (N, C, H, W), w (1, C, K, K), b (1,))`, stride 1, zero padding `pad`.
pub(crate) struct SingleMapConv {
    pub pad: usize,
}

#[derive(Clone, Copy)]
struct Geom {
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    oh: usize,
    ow: usize,
    pad: usize,
}

impl Geom {
    fn new(x: &[usize], w: &[usize], pad: usize) -> candle_core::Result<Self> {
        let (&[_, c, h, wd], &[1, wc, k, k2]) = (x, w) else {
            candle_core::bail!("single-map conv: input {x:?}, weight {w:?}");
        };
        if wc != c || k != k2 || k == 0 || h + 2 * pad < k || wd + 2 * pad < k {
            candle_core::bail!("single-map conv: input {x:?} does not fit weight {w:?}");
        }
        let (oh, ow) = (h + 2 * pad + 1 - k, wd + 2 * pad + 1 - k);
        Ok(Geom {
            c,
            h,
            w: wd,
            k,
            oh,
            ow,
            pad,
        })
    }

    /// For tap offset `t` (0..k) along an axis of `len` inputs and `out` outputs: the output
    /// range whose input `o + t - pad` lies inside, and that input's start.
    fn span(t: usize, pad: usize, len: usize, out: usize) -> (usize, usize, usize) {
        let lo = pad.saturating_sub(t);
        let hi = (len + pad).saturating_sub(t).min(out);
        (lo, hi.max(lo), lo + t - pad)
    }

    /// Calls `f(c, ky, kx, out_rows, out_cols, in_row0, in_col0)` for every tap with a
    /// non-empty overlap.
    fn taps(
        &self,
        mut f: impl FnMut(usize, usize, usize, (usize, usize), (usize, usize), usize, usize),
    ) {
        for c in 0..self.c {
            for ky in 0..self.k {
                let (y0, y1, iy0) = Self::span(ky, self.pad, self.h, self.oh);
                for kx in 0..self.k {
                    let (x0, x1, ix0) = Self::span(kx, self.pad, self.w, self.ow);
                    if y1 > y0 && x1 > x0 {
                        f(c, ky, kx, (y0, y1), (x0, x1), iy0, ix0);
                    }
                }
            }
        }
    }
}

impl CustomOp3 for SingleMapConv {
    fn name(&self) -> &'static str {
        "mnist-kit-single-map-conv"
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
        let g = Geom::new(l1.dims(), l2.dims(), self.pad)?;
        let n = l1.dims()[0];
        let (x, w, b) = (
            slice(s1, l1, "single-map conv input")?,
            slice(s2, l2, "single-map conv weight")?,
            slice(s3, l3, "single-map conv bias")?,
        );
        let bias = match b {
            [b] => *b,
            _ => candle_core::bail!("single-map conv: bias of {} values", b.len()),
        };
        let (plane, out_plane) = (g.c * g.h * g.w, g.oh * g.ow);
        let mut y = vec![bias; n * out_plane];
        if out_plane > 0 && plane > 0 {
            y.par_chunks_mut(out_plane)
                .zip(x.par_chunks(plane))
                .for_each(|(out, img)| {
                    g.taps(|c, ky, kx, (y0, y1), (x0, x1), iy0, ix0| {
                        let wt = w[(c * g.k + ky) * g.k + kx];
                        for (r, oy) in (y0..y1).enumerate() {
                            let src = &img[(c * g.h + iy0 + r) * g.w + ix0..][..x1 - x0];
                            let dst = &mut out[oy * g.ow + x0..oy * g.ow + x1];
                            dst.iter_mut().zip(src).for_each(|(d, &s)| *d += wt * s);
                        }
                    });
                });
        }
        Ok((CpuStorage::F32(y), Shape::from((n, 1, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = Geom::new(x.dims(), w.dims(), self.pad)?;
        let n = x.dim(0)?;
        let dy = dy.contiguous()?;
        let ((xs, xl), (ws, wl), (gs, gl)) = (
            x.storage_and_layout(),
            w.storage_and_layout(),
            dy.storage_and_layout(),
        );
        let xv = storage_slice(&xs, xl, "single-map conv input")?;
        let wv = storage_slice(&ws, wl, "single-map conv kernel")?;
        let gv = storage_slice(&gs, gl, "single-map conv grad")?;
        let (plane, out_plane, taps) = (g.c * g.h * g.w, g.oh * g.ow, wv.len());
        let mut dx = vec![0f32; xv.len()];
        // Per image: dx, and the image's share of dw and db, summed by `Grads::from_partials`.
        let mut partials = vec![(vec![0f32; taps], vec![0f32; 1]); n];
        if out_plane > 0 && plane > 0 {
            dx.par_chunks_mut(plane)
                .zip(partials.par_iter_mut())
                .zip(xv.par_chunks(plane).zip(gv.par_chunks(out_plane)))
                .for_each(|((dimg, (dw, db)), (img, gimg))| {
                    g.taps(|c, ky, kx, (y0, y1), (x0, x1), iy0, ix0| {
                        let t = (c * g.k + ky) * g.k + kx;
                        let wt = wv[t];
                        let mut acc = 0f32;
                        for (r, oy) in (y0..y1).enumerate() {
                            let at = (c * g.h + iy0 + r) * g.w + ix0;
                            let grow = &gimg[oy * g.ow + x0..oy * g.ow + x1];
                            let src = &img[at..at + grow.len()];
                            acc += grow.iter().zip(src).map(|(&a, &b)| a * b).sum::<f32>();
                            let dst = &mut dimg[at..at + grow.len()];
                            dst.iter_mut().zip(grow).for_each(|(d, &gy)| *d += wt * gy);
                        }
                        dw[t] = acc;
                    });
                    db[0] = gimg.iter().sum();
                });
        }
        let Grads { dw, db, .. } = Grads::from_partials(partials, (taps, 1), None);
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.dims(), dev)?),
            Some(Tensor::from_vec(dw, w.dims(), dev)?),
            Some(Tensor::from_vec(db, 1, dev)?),
        ))
    }
}
