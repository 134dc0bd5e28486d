//! Training-mode batch normalization as one CPU op: batch statistics, normalization, scale
//! and shift forward; the three gradients in one pass backward (instead of ~30 candle nodes).

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::slice;

/// Per-channel batch mean and biased variance of the last forward pass.
pub(crate) type Stats = Arc<Mutex<Option<(Vec<f32>, Vec<f32>)>>>;

/// `(x - mean) / sqrt(var + eps) * gamma + beta` over `(N, C, ...)` with batch statistics.
pub(crate) struct BatchNormTrain {
    pub eps: f32,
    /// Filled by the forward pass: the layer reads it to update its running statistics.
    pub stats: Stats,
}

fn geometry(l: &Layout) -> candle_core::Result<(usize, usize, usize)> {
    let d = l.dims();
    if d.len() < 2 {
        candle_core::bail!("batch norm: expected (N, C, ...), got {d:?}");
    }
    Ok((d[0], d[1], d[2..].iter().product()))
}

/// Mean and biased variance per channel of `x (N, C, P)`.
fn channel_stats(x: &[f32], n: usize, c: usize, p: usize) -> (Vec<f32>, Vec<f32>) {
    let m = (n * p).max(1) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mut s, mut s2) = (0f64, 0f64);
            for i in 0..n {
                for &v in &x[(i * c + ch) * p..][..p] {
                    s += f64::from(v);
                    s2 += f64::from(v) * f64::from(v);
                }
            }
            let mean = s / m;
            ((mean) as f32, (s2 / m - mean * mean).max(0.0) as f32)
        })
        .unzip()
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "mnist-kit-batch-norm"
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
        let (n, c, p) = geometry(l1)?;
        let (x, gamma, beta) = (
            slice(s1, l1, "batch norm input")?,
            slice(s2, l2, "batch norm gamma")?,
            slice(s3, l3, "batch norm beta")?,
        );
        if gamma.len() != c || beta.len() != c {
            candle_core::bail!(
                "batch norm: {c} channels but gamma/beta of {}/{}",
                gamma.len(),
                beta.len()
            );
        }
        let (mean, var) = channel_stats(x, n, c, p);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(p.max(1))
            .enumerate()
            .for_each(|(plane, out)| {
                let ch = plane % c;
                let inv = 1.0 / (var[ch] + self.eps).sqrt();
                let (scale, shift) = (gamma[ch] * inv, beta[ch] - mean[ch] * gamma[ch] * inv);
                for (o, &v) in out.iter_mut().zip(&x[plane * p..(plane + 1) * p]) {
                    *o = v * scale + shift;
                }
            });
        if let Ok(mut s) = self.stats.lock() {
            *s = Some((mean, var));
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (mean, var) = match self.stats.lock().ok().and_then(|s| s.clone()) {
            Some(s) => s,
            None => candle_core::bail!("batch norm: backward before forward"),
        };
        let dims = x.dims().to_vec();
        let (n, c) = (dims[0], dims[1]);
        let p: usize = dims[2..].iter().product();
        let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let g: Vec<f32> = dy.flatten_all()?.to_vec1()?;
        let gm: Vec<f32> = gamma.to_vec1()?;
        let m = (n * p).max(1) as f32;
        let inv: Vec<f32> = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        // dbeta = sum dy, dgamma = sum dy * xhat, per channel.
        let (dbeta, dgamma): (Vec<f32>, Vec<f32>) = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mut db, mut dg) = (0f64, 0f64);
                for i in 0..n {
                    let off = (i * c + ch) * p;
                    for (&gv, &xv) in g[off..off + p].iter().zip(&xv[off..off + p]) {
                        db += f64::from(gv);
                        dg += f64::from(gv) * f64::from((xv - mean[ch]) * inv[ch]);
                    }
                }
                (db as f32, dg as f32)
            })
            .unzip();
        let mut dx = vec![0f32; xv.len()];
        dx.par_chunks_mut(p.max(1))
            .enumerate()
            .for_each(|(plane, out)| {
                let ch = plane % c;
                let k = gm[ch] * inv[ch] / m;
                let off = plane * p;
                for ((o, &gv), &xv) in out.iter_mut().zip(&g[off..off + p]).zip(&xv[off..off + p]) {
                    let xhat = (xv - mean[ch]) * inv[ch];
                    *o = k * (m * gv - dbeta[ch] - xhat * dgamma[ch]);
                }
            });
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, dims, dev)?),
            Some(Tensor::from_vec(dgamma, c, dev)?),
            Some(Tensor::from_vec(dbeta, c, dev)?),
        ))
    }
}
