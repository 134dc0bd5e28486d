//! The two tensor ops of spatial attention, each one pass over the feature maps on the CPU:
//! the per-pixel mean and max over channels, and scaling every channel by a per-pixel map.
//! Through candle's ops they are five graph nodes with strided reductions and broadcasts.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{slice, storage_slice};

fn dims(l: &Layout, what: &str) -> candle_core::Result<(usize, usize, usize)> {
    match *l.dims() {
        [n, c, h, w] if c > 0 && h * w > 0 => Ok((n, c, h * w)),
        ref d => candle_core::bail!("{what}: expected (N, C, H, W), none of C, H, W 0, got {d:?}"),
    }
}

/// `(N, C, H, W)` to `(N, 2, H, W)`: channel 0 the mean over channels, channel 1 the max.
pub(crate) struct ChannelMeanMax;

impl CustomOp1 for ChannelMeanMax {
    fn name(&self) -> &'static str {
        "mnist-kit-channel-mean-max"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, p) = dims(l, "channel mean/max")?;
        let x = slice(s, l, "channel mean/max")?;
        let mut y = vec![0f32; n * 2 * p];
        y.par_chunks_mut(2 * p)
            .zip(x.par_chunks(c * p))
            .for_each(|(out, img)| {
                let (mean, max) = out.split_at_mut(p);
                mean.copy_from_slice(&img[..p]);
                max.copy_from_slice(&img[..p]);
                for plane in img.chunks_exact(p).skip(1) {
                    for ((s, m), &v) in mean.iter_mut().zip(max.iter_mut()).zip(plane) {
                        *s += v;
                        *m = m.max(v);
                    }
                }
                let inv = 1.0 / c as f32;
                mean.iter_mut().for_each(|s| *s *= inv);
            });
        Ok((
            CpuStorage::F32(y),
            Shape::from((n, 2, l.dims()[2], l.dims()[3])),
        ))
    }

    /// The mean's gradient spreads evenly over the channels; the max's goes to the first
    /// channel holding the maximum (as PyTorch's `max`; candle's gives it to every tie).
    fn bwd(&self, x: &Tensor, y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (n, c, h, w) = x.dims4()?;
        let p = h * w;
        // Read in place, not copied out (`to_vec1`): three feature-map copies per step.
        let dy = dy.contiguous()?;
        let ((xs, xl), (ys, yl), (gs, gl)) = (
            x.storage_and_layout(),
            y.storage_and_layout(),
            dy.storage_and_layout(),
        );
        let xv = storage_slice(&xs, xl, "channel mean/max input")?;
        let yv = storage_slice(&ys, yl, "channel mean/max output")?;
        let g = storage_slice(&gs, gl, "channel mean/max grad")?;
        let mut dx = vec![0f32; xv.len()];
        let inv = 1.0 / c as f32;
        dx.par_chunks_mut(c * p)
            .zip(xv.par_chunks(c * p))
            .zip(g.par_chunks(2 * p).zip(yv.par_chunks(2 * p)))
            .for_each(|((dimg, img), (gimg, yimg))| {
                let (g_mean, g_max) = gimg.split_at(p);
                let max = &yimg[p..];
                let mut taken = vec![false; p];
                for (dplane, plane) in dimg.chunks_exact_mut(p).zip(img.chunks_exact(p)) {
                    let maxes = max.iter().zip(g_max).zip(taken.iter_mut());
                    for (((d, &v), &gm), ((&m, &gx), t)) in
                        dplane.iter_mut().zip(plane).zip(g_mean).zip(maxes)
                    {
                        *d = gm * inv;
                        if !*t && v == m {
                            *t = true;
                            *d += gx;
                        }
                    }
                }
            });
        Ok(Some(Tensor::from_vec(dx, (n, c, h, w), x.device())?))
    }
}

/// `x (N, C, H, W) * map (N, 1, H, W)`: every channel scaled by the same per-pixel map.
pub(crate) struct ScalePixels;

impl CustomOp2 for ScalePixels {
    fn name(&self) -> &'static str {
        "mnist-kit-scale-pixels"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, c, p) = dims(l1, "scale pixels")?;
        if dims(l2, "scale pixels map")? != (n, 1, p) {
            candle_core::bail!(
                "scale pixels: map {:?} does not fit input {:?}",
                l2.dims(),
                l1.dims()
            );
        }
        let (x, map) = (slice(s1, l1, "scale pixels")?, slice(s2, l2, "scale map")?);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(c * p)
            .zip(x.par_chunks(c * p))
            .zip(map.par_chunks(p))
            .for_each(|((out, img), m)| {
                for (o, plane) in out.chunks_exact_mut(p).zip(img.chunks_exact(p)) {
                    for ((o, &v), &s) in o.iter_mut().zip(plane).zip(m) {
                        *o = v * s;
                    }
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        map: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (n, c, h, w) = x.dims4()?;
        let p = h * w;
        let dy = dy.contiguous()?;
        let ((xs, xl), (ms, ml), (gs, gl)) = (
            x.storage_and_layout(),
            map.storage_and_layout(),
            dy.storage_and_layout(),
        );
        let xv = storage_slice(&xs, xl, "scale pixels input")?;
        let mv = storage_slice(&ms, ml, "scale pixels map")?;
        let g = storage_slice(&gs, gl, "scale pixels grad")?;
        let mut dx = vec![0f32; xv.len()];
        let mut dmap = vec![0f32; mv.len()];
        dx.par_chunks_mut(c * p)
            .zip(dmap.par_chunks_mut(p))
            .zip(xv.par_chunks(c * p))
            .zip(g.par_chunks(c * p).zip(mv.par_chunks(p)))
            .for_each(|(((dimg, dm), img), (gimg, m))| {
                for ((dplane, plane), gplane) in dimg
                    .chunks_exact_mut(p)
                    .zip(img.chunks_exact(p))
                    .zip(gimg.chunks_exact(p))
                {
                    let maps = dm.iter_mut().zip(m);
                    for (((d, &v), &gy), (dm, &s)) in
                        dplane.iter_mut().zip(plane).zip(gplane).zip(maps)
                    {
                        *d = gy * s;
                        *dm += gy * v;
                    }
                }
            });
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, (n, c, h, w), dev)?),
            Some(Tensor::from_vec(dmap, (n, 1, h, w), dev)?),
        ))
    }
}
