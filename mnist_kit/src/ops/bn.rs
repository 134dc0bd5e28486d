//! Batch normalization as single CPU ops, with the ReLU that follows it fused in:
//! training mode (batch statistics, normalization, scale and shift forward; the three
//! gradients in one pass backward, instead of ~30 candle nodes), evaluation mode (running
//! statistics folded into one scale and shift per channel), and the residual `relu(a + b)`.
//! Work is split over images; the per-channel sums run over images in order, so the results
//! do not depend on the thread count or the instruction set.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{slice, storage_slice};
use super::simd::multiversion;

/// Per-channel batch mean and biased variance of the last forward pass.
pub(crate) type Stats = Arc<Mutex<Option<(Vec<f32>, Vec<f32>)>>>;

fn geometry(dims: &[usize]) -> candle_core::Result<(usize, usize, usize)> {
    if dims.len() < 2 {
        candle_core::bail!("batch norm: expected (N, C, ...), got {dims:?}");
    }
    Ok((dims[0], dims[1], dims[2..].iter().product()))
}

/// Channels whose sums run side by side: the sum of one plane is a serial chain of f64
/// additions (four cycles each), so four planes' chains are interleaved to keep the adders
/// busy. Each chain keeps its order, so the bits are those of one plane at a time.
const GROUP: usize = 4;

/// Runs `f(group's first channel, group size)` for the channels `0..c` in groups of
/// [`GROUP`], in parallel, and returns the per-channel results in channel order.
fn by_groups<T: Send>(c: usize, f: impl Fn(usize, usize) -> Vec<T> + Sync) -> Vec<T> {
    let parts: Vec<Vec<T>> = (0..c.div_ceil(GROUP))
        .into_par_iter()
        .map(|g| {
            let ch0 = g * GROUP;
            f(ch0, GROUP.min(c - ch0))
        })
        .collect();
    parts.into_iter().flatten().collect()
}

/// Mean and biased variance per channel of `x (N, C, P)`, summed in f64: each plane in
/// order, then the planes over images in order.
fn channel_stats(x: &[f32], n: usize, c: usize, p: usize) -> (Vec<f32>, Vec<f32>) {
    let m = (n * p).max(1) as f64;
    let sums = by_groups(c, |ch0, len| {
        let mut acc = vec![(0f64, 0f64); len];
        for i in 0..n {
            let at = |g: usize| (i * c + ch0 + g) * p;
            if len == GROUP {
                let planes = sum_sq4(x, std::array::from_fn(at), p);
                for ((s, s2), (a, b)) in acc.iter_mut().zip(planes) {
                    *s += a;
                    *s2 += b;
                }
            } else {
                for (g, (s, s2)) in acc.iter_mut().enumerate() {
                    let (a, b) = sum_sq(&x[at(g)..][..p]);
                    *s += a;
                    *s2 += b;
                }
            }
        }
        acc
    });
    sums.into_iter()
        .map(|(s, s2)| {
            let mean = s / m;
            (mean as f32, (s2 / m - mean * mean).max(0.0) as f32)
        })
        .unzip()
}

multiversion! {
    /// `(sum x, sum x^2)` of one plane in f64, in order.
    fn sum_sq(x: &[f32]) -> (f64, f64) {
        let (mut s, mut s2) = (0f64, 0f64);
        for &v in x {
            let v = f64::from(v);
            s += v;
            s2 += v * v;
        }
        (s, s2)
    }
}

multiversion! {
    /// [`sum_sq`] of the four planes of `p` values at `x[at[g]..]`, their chains interleaved.
    fn sum_sq4(x: &[f32], at: [usize; GROUP], p: usize) -> [(f64, f64); GROUP] {
        let [p0, p1, p2, p3] = at.map(|a| &x[a..a + p]);
        let (mut s, mut s2) = ([0f64; GROUP], [0f64; GROUP]);
        for (((&a, &b), &c), &d) in p0.iter().zip(p1).zip(p2).zip(p3) {
            for (g, v) in [a, b, c, d].into_iter().enumerate() {
                let v = f64::from(v);
                s[g] += v;
                s2[g] += v * v;
            }
        }
        std::array::from_fn(|g| (s[g], s2[g]))
    }
}

multiversion! {
    /// `y = x * scale[c] + shift[c]` over one image `(C, P)`, then `max(0, .)` when `relu`.
    fn affine(x: &[f32], y: &mut [f32], scale: &[f32], shift: &[f32], p: usize, relu: bool) {
        for ((yc, xc), (&a, &b)) in y
            .chunks_exact_mut(p)
            .zip(x.chunks_exact(p))
            .zip(scale.iter().zip(shift))
        {
            if relu {
                for (o, &v) in yc.iter_mut().zip(xc) {
                    *o = (v * a + b).max(0.0);
                }
            } else {
                for (o, &v) in yc.iter_mut().zip(xc) {
                    *o = v * a + b;
                }
            }
        }
    }
}

/// Per-image work: `f(image index, that image's slice of out)`.
fn per_image(out: &mut [f32], image: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    out.par_chunks_mut(image.max(1))
        .enumerate()
        .for_each(|(i, o)| f(i, o));
}

/// `relu?((x - mean) / sqrt(var + eps) * gamma + beta)` over `(N, C, ...)` with batch
/// statistics.
pub(crate) struct BatchNormTrain {
    pub eps: f32,
    /// Fused `max(0, .)` on the output.
    pub relu: bool,
    /// Filled by the forward pass: the layer reads it to update its running statistics.
    pub stats: Stats,
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
        let (n, c, p) = geometry(l1.dims())?;
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
        let (scale, shift): (Vec<f32>, Vec<f32>) = (0..c)
            .map(|ch| {
                let inv = 1.0 / (var[ch] + self.eps).sqrt();
                (gamma[ch] * inv, beta[ch] - mean[ch] * gamma[ch] * inv)
            })
            .unzip();
        let mut y = vec![0f32; x.len()];
        per_image(&mut y, c * p, |i, out| {
            affine(&x[i * c * p..][..c * p], out, &scale, &shift, p, self.relu);
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
        res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (mean, var) = match self.stats.lock().ok().and_then(|s| s.clone()) {
            Some(s) => s,
            None => candle_core::bail!("batch norm: backward before forward"),
        };
        let dy = dy.contiguous()?;
        let (n, c, p) = geometry(x.dims())?;
        let gm: Vec<f32> = gamma.to_vec1()?;
        let m = (n * p).max(1) as f32;
        let inv: Vec<f32> = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        let (dx, dgamma, dbeta) = {
            let (xs, xl) = x.storage_and_layout();
            let (gs, gl) = dy.storage_and_layout();
            let (ys, yl) = res.storage_and_layout();
            let xv = storage_slice(&xs, xl, "batch norm input")?;
            let g = storage_slice(&gs, gl, "batch norm grad")?;
            let y = storage_slice(&ys, yl, "batch norm output")?;
            // The ReLU's mask applied to the incoming gradient, once.
            let masked: Option<Vec<f32>> = self.relu.then(|| {
                let mut out = vec![0f32; g.len()];
                per_image(&mut out, c * p, |i, o| {
                    let at = i * c * p;
                    relu_mask(&g[at..][..c * p], &y[at..][..c * p], o);
                });
                out
            });
            let g = masked.as_deref().unwrap_or(g);
            // dbeta = sum dy, dgamma = sum dy * xhat, per channel, over images in order.
            let (dbeta, dgamma) = dbeta_dgamma(g, xv, (n, c, p), &mean, &inv);
            let mut dx = vec![0f32; xv.len()];
            per_image(&mut dx, c * p, |i, out| {
                let at = i * c * p;
                bn_dx(
                    &g[at..][..c * p],
                    &xv[at..][..c * p],
                    out,
                    BnGrad {
                        p,
                        m,
                        mean: &mean,
                        inv: &inv,
                        gamma: &gm,
                        dbeta: &dbeta,
                        dgamma: &dgamma,
                    },
                );
            });
            (dx, dgamma, dbeta)
        };
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.dims(), dev)?),
            Some(Tensor::from_vec(dgamma, c, dev)?),
            Some(Tensor::from_vec(dbeta, c, dev)?),
        ))
    }
}

multiversion! {
    /// `out = g` where `y > 0`, else 0 (the ReLU's backward).
    fn relu_mask(g: &[f32], y: &[f32], out: &mut [f32]) {
        for ((o, &gv), &yv) in out.iter_mut().zip(g).zip(y) {
            *o = if yv > 0.0 { gv } else { 0.0 };
        }
    }
}

/// Per channel of `(N, C, P)`: `(sum g, sum g * xhat)` in f64, each plane in order, then the
/// planes over images in order. (Interleaving the planes' chains, as [`channel_stats`] does,
/// measured slower here: the compiler packs the eight accumulators into one vector.)
fn dbeta_dgamma(
    g: &[f32],
    x: &[f32],
    (n, c, p): (usize, usize, usize),
    mean: &[f32],
    inv: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mut db, mut dg) = (0f64, 0f64);
            let whole = n / GROUP * GROUP;
            // Four images' planes at a time, then the rest one by one.
            for i in (0..whole).step_by(GROUP) {
                let at: [usize; GROUP] = std::array::from_fn(|k| ((i + k) * c + ch) * p);
                let (gp, xp) = (at.map(|a| &g[a..a + p]), at.map(|a| &x[a..a + p]));
                for (a, b) in grad_sums4(gp, xp, mean[ch], inv[ch]) {
                    db += a;
                    dg += b;
                }
            }
            for i in whole..n {
                let off = (i * c + ch) * p;
                let (a, b) = grad_sums(&g[off..off + p], &x[off..off + p], mean[ch], inv[ch]);
                db += a;
                dg += b;
            }
            (db as f32, dg as f32)
        })
        .unzip()
}

multiversion! {
    /// `(sum g, sum g * xhat)` of one plane, in f64, in order.
    fn grad_sums(g: &[f32], x: &[f32], mean: f32, inv: f32) -> (f64, f64) {
        let (mut db, mut dg) = (0f64, 0f64);
        for (&gv, &xv) in g.iter().zip(x) {
            db += f64::from(gv);
            dg += f64::from(gv) * f64::from((xv - mean) * inv);
        }
        (db, dg)
    }
}

/// [`grad_sums`] of four planes of one channel: four chains side by side, each in its plane's
/// order, so the bits are those of one plane at a time. With AVX2, four values of each plane
/// are loaded at once and transposed, so one vector holds the four planes' values; the
/// compiler's own vectorization of the plain loop measured slower than one plane at a time.
fn grad_sums4(g: [&[f32]; GROUP], x: [&[f32]; GROUP], mean: f32, inv: f32) -> [(f64, f64); GROUP] {
    #[cfg(target_arch = "x86_64")]
    if super::simd::active() >= super::simd::Isa::Avx2 {
        // SAFETY: `active` only returns an instruction set the CPU supports.
        return unsafe { grad_sums4_avx2(g, x, mean, inv) };
    }
    std::array::from_fn(|k| grad_sums(g[k], x[k], mean, inv))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn grad_sums4_avx2(
    g: [&[f32]; GROUP],
    x: [&[f32]; GROUP],
    mean: f32,
    inv: f32,
) -> [(f64, f64); GROUP] {
    use std::arch::x86_64::*;
    let p = g.iter().chain(&x).map(|v| v.len()).min().unwrap_or(0);
    let whole = p / 4 * 4;
    // The 4 x 4 block of values `j..j + 4` of the four planes, transposed: vector `t` holds
    // value `j + t` of planes 0, 1, 2, 3.
    let block = |v: &[&[f32]; GROUP], j: usize| -> [__m128; 4] {
        let r: [__m128; 4] = std::array::from_fn(|k| {
            let s = &v[k][j..j + 4];
            // SAFETY: four floats are readable (sliced).
            unsafe { _mm_loadu_ps(s.as_ptr()) }
        });
        let (t0, t1) = (_mm_unpacklo_ps(r[0], r[1]), _mm_unpacklo_ps(r[2], r[3]));
        let (t2, t3) = (_mm_unpackhi_ps(r[0], r[1]), _mm_unpackhi_ps(r[2], r[3]));
        [
            _mm_movelh_ps(t0, t1),
            _mm_movehl_ps(t1, t0),
            _mm_movelh_ps(t2, t3),
            _mm_movehl_ps(t3, t2),
        ]
    };
    let (vm, vi) = (_mm_set1_ps(mean), _mm_set1_ps(inv));
    let (mut db, mut dg) = (_mm256_setzero_pd(), _mm256_setzero_pd());
    for j in (0..whole).step_by(4) {
        let (gb, xb) = (block(&g, j), block(&x, j));
        for (gt, xt) in gb.into_iter().zip(xb) {
            // Added in f64 as the scalar loop does: a product, then a sum, each rounded.
            let gd = _mm256_cvtps_pd(gt);
            let xhat = _mm256_cvtps_pd(_mm_mul_ps(_mm_sub_ps(xt, vm), vi));
            db = _mm256_add_pd(db, gd);
            dg = _mm256_add_pd(dg, _mm256_mul_pd(gd, xhat));
        }
    }
    let (mut dbs, mut dgs) = ([0f64; 4], [0f64; 4]);
    // SAFETY: four doubles are writable.
    unsafe {
        _mm256_storeu_pd(dbs.as_mut_ptr(), db);
        _mm256_storeu_pd(dgs.as_mut_ptr(), dg);
    }
    for k in 0..GROUP {
        for j in whole..p {
            dbs[k] += f64::from(g[k][j]);
            dgs[k] += f64::from(g[k][j]) * f64::from((x[k][j] - mean) * inv);
        }
    }
    std::array::from_fn(|k| (dbs[k], dgs[k]))
}

/// What the input gradient of one image needs.
#[derive(Clone, Copy)]
struct BnGrad<'a> {
    p: usize,
    m: f32,
    mean: &'a [f32],
    inv: &'a [f32],
    gamma: &'a [f32],
    dbeta: &'a [f32],
    dgamma: &'a [f32],
}

multiversion! {
    /// `dx = gamma * inv / m * (m * g - dbeta - xhat * dgamma)` for one image `(C, P)`.
    fn bn_dx(g: &[f32], x: &[f32], out: &mut [f32], k: BnGrad) {
        for (ch, ((o, gc), xc)) in out
            .chunks_exact_mut(k.p)
            .zip(g.chunks_exact(k.p))
            .zip(x.chunks_exact(k.p))
            .enumerate()
        {
            let (mean, inv) = (k.mean[ch], k.inv[ch]);
            let f = k.gamma[ch] * inv / k.m;
            let (db, dg) = (k.dbeta[ch], k.dgamma[ch]);
            for ((o, &gv), &xv) in o.iter_mut().zip(gc).zip(xc) {
                let xhat = (xv - mean) * inv;
                *o = f * (k.m * gv - db - xhat * dg);
            }
        }
    }
}

/// Evaluation-mode batch normalization with the running statistics folded into one scale and
/// shift per channel, `relu?(x * scale + shift)`. Differentiable in `x` (saliency maps).
pub(crate) struct BatchNormEval {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub relu: bool,
}

impl CustomOp1 for BatchNormEval {
    fn name(&self) -> &'static str {
        "mnist-kit-batch-norm-eval"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, c, p) = geometry(l.dims())?;
        if self.scale.len() != c {
            candle_core::bail!("batch norm: {c} channels, {} statistics", self.scale.len());
        }
        let x = slice(s, l, "batch norm input")?;
        let mut y = vec![0f32; x.len()];
        per_image(&mut y, c * p, |i, out| {
            affine(
                &x[i * c * p..][..c * p],
                out,
                &self.scale,
                &self.shift,
                p,
                self.relu,
            );
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, res: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (_, c, p) = geometry(x.dims())?;
        let dy = dy.contiguous()?;
        let dx = {
            let (gs, gl) = dy.storage_and_layout();
            let (ys, yl) = res.storage_and_layout();
            let g = storage_slice(&gs, gl, "batch norm grad")?;
            let y = storage_slice(&ys, yl, "batch norm output")?;
            let zero = vec![0f32; c];
            let mut dx = vec![0f32; g.len()];
            per_image(&mut dx, c * p, |i, out| {
                let at = i * c * p;
                if self.relu {
                    relu_mask(&g[at..][..c * p], &y[at..][..c * p], out);
                    let masked = out.to_vec();
                    affine(&masked, out, &self.scale, &zero, p, false);
                } else {
                    affine(&g[at..][..c * p], out, &self.scale, &zero, p, false);
                }
            });
            dx
        };
        Ok(Some(Tensor::from_vec(dx, x.dims(), x.device())?))
    }
}

/// `max(0, a + b)`: the end of a residual block in one op.
pub(crate) struct AddRelu;

multiversion! {
    fn add_relu(a: &[f32], b: &[f32], y: &mut [f32]) {
        for ((o, &u), &v) in y.iter_mut().zip(a).zip(b) {
            *o = (u + v).max(0.0);
        }
    }
}

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "mnist-kit-add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if l1.dims() != l2.dims() {
            candle_core::bail!("add_relu: shapes {:?} and {:?}", l1.dims(), l2.dims());
        }
        let (a, b) = (slice(s1, l1, "add_relu a")?, slice(s2, l2, "add_relu b")?);
        let image = l1.dims().iter().skip(1).product::<usize>().max(1);
        let mut y = vec![0f32; a.len()];
        per_image(&mut y, image, |i, out| {
            add_relu(
                &a[i * image..][..out.len()],
                &b[i * image..][..out.len()],
                out,
            );
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let image = a.dims().iter().skip(1).product::<usize>().max(1);
        let dx = {
            let (gs, gl) = dy.storage_and_layout();
            let (ys, yl) = res.storage_and_layout();
            let g = storage_slice(&gs, gl, "add_relu grad")?;
            let y = storage_slice(&ys, yl, "add_relu output")?;
            let mut dx = vec![0f32; g.len()];
            per_image(&mut dx, image, |i, out| {
                relu_mask(
                    &g[i * image..][..out.len()],
                    &y[i * image..][..out.len()],
                    out,
                );
            });
            dx
        };
        let t = Tensor::from_vec(dx, a.dims(), a.device())?;
        Ok((Some(t.clone()), Some(t)))
    }
}
