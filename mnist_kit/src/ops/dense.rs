//! The fully connected layer as one CPU op: `act(x W^T + b)` forward, and `dW`, `db`, `dx`
//! in one backward. In an MLP step this replaces a matmul, a broadcast add and a ReLU node
//! (each with its own backward, gradient buffers and accumulation) by one node.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{Fused, Grads, add_into, slice, split_blocks, storage_slice, to_candle};
use super::gemm::{Mat, matmul, same_sum_order};

/// Below this many multiply-adds a layer runs on one thread: splitting costs more.
const PARALLEL_MIN_MACS: usize = 1 << 17;

fn dims2(l: &Layout, what: &str) -> candle_core::Result<(usize, usize)> {
    match *l.dims() {
        [a, b] => Ok((a, b)),
        ref d => candle_core::bail!("{what}: expected a 2-d tensor, got {d:?}"),
    }
}

/// Ranges of `len` rows (or output units) for the threads: one per thread when the product
/// is large enough and gemm sums the outputs of every piece in the order of the whole product
/// (`keeps_order(piece length)`, see [`same_sum_order`]). No sum then depends on the split, so
/// it can follow the thread count.
fn thread_ranges(
    len: usize,
    macs: usize,
    keeps_order: impl Fn(usize) -> bool,
) -> Vec<(usize, usize)> {
    let parts = rayon::current_num_threads().max(1);
    if macs < PARALLEL_MIN_MACS || parts == 1 {
        return vec![(0, len)];
    }
    let per = len.div_ceil(parts).max(1);
    let ranges: Vec<_> = (0..len)
        .step_by(per)
        .map(|a| (a, (a + per).min(len)))
        .collect();
    if ranges.iter().all(|&(a, b)| keeps_order(b - a)) {
        ranges
    } else {
        vec![(0, len)]
    }
}

/// Adds the bias to rows of `o` outputs, with the ReLU when fused.
fn bias_act(y: &mut [f32], b: &[f32], act: Fused) {
    for row in y.chunks_exact_mut(b.len()) {
        for (v, &bias) in row.iter_mut().zip(b) {
            *v += bias;
            if act == Fused::Relu {
                *v = v.max(0.0);
            }
        }
    }
}

/// `act(x W^T + b)` for x `(N, I)`, W `(O, I)`, b `(O,)`. Split over output units when there
/// are more units than rows (each thread then reads its part of W only), else over rows.
pub(crate) fn linear_forward(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    (n, i, o): (usize, usize, usize),
    act: Fused,
) -> crate::Result<Vec<f32>> {
    let mut y = vec![0f32; n * o];
    let macs = n * i * o;
    if n < o {
        let units = thread_ranges(o, macs, |po| same_sum_order((n, o), (n, po), i));
        if units.len() > 1 {
            let pieces = units
                .par_iter()
                .map(|&(u0, u1)| -> crate::Result<Vec<f32>> {
                    let po = u1 - u0;
                    let mut piece = vec![0f32; n * po];
                    matmul(
                        &mut piece,
                        n,
                        po,
                        i,
                        Mat::rows(x, i),
                        Mat::transposed(&w[u0 * i..u1 * i], i),
                        false,
                    )?;
                    bias_act(&mut piece, &b[u0..u1], act);
                    Ok(piece)
                })
                .collect::<crate::Result<Vec<_>>>()?;
            for (&(u0, u1), piece) in units.iter().zip(&pieces) {
                for (row, src) in y.chunks_exact_mut(o).zip(piece.chunks_exact(u1 - u0)) {
                    row[u0..u1].copy_from_slice(src);
                }
            }
            return Ok(y);
        }
    }
    let blocks = thread_ranges(n, macs, |pn| same_sum_order((n, o), (pn, o), i));
    split_blocks(&mut y, &blocks, o)
        .into_par_iter()
        .zip(blocks.par_iter())
        .try_for_each(|(y, &(r0, r1))| -> crate::Result<()> {
            matmul(
                y,
                r1 - r0,
                o,
                i,
                Mat::rows(&x[r0 * i..r1 * i], i),
                Mat::transposed(w, i),
                false,
            )?;
            bias_act(y, b, act);
            Ok(())
        })?;
    Ok(y)
}

/// Gradients of [`linear_forward`]: `(dW, db, dx)`, `dx` only when `need_dx`. `relu_out` is
/// the forward's output when the ReLU was fused (it masks `dy`).
pub(crate) fn linear_backward(
    dy: &[f32],
    relu_out: Option<&[f32]>,
    x: &[f32],
    w: &[f32],
    (n, i, o): (usize, usize, usize),
    need_dx: bool,
) -> crate::Result<Grads> {
    let masked;
    let g: &[f32] = match relu_out {
        Some(y) => {
            masked = dy
                .iter()
                .zip(y)
                .map(|(&d, &v)| if v > 0.0 { d } else { 0.0 })
                .collect::<Vec<_>>();
            &masked
        }
        None => dy,
    };
    // dW (O x I) = g^T x, and db, split over output units: every element sums all n rows
    // inside one range.
    let units = thread_ranges(o, n * i * o, |po| same_sum_order((o, i), (po, i), n));
    let mut dw = vec![0f32; o * i];
    let mut db = vec![0f32; o];
    split_blocks(&mut dw, &units, i)
        .into_par_iter()
        .zip(split_blocks(&mut db, &units, 1))
        .zip(units.par_iter())
        .try_for_each(|((dw, db), &(u0, u1))| -> crate::Result<()> {
            matmul(
                dw,
                u1 - u0,
                i,
                n,
                Mat::transposed(&g[u0..], o),
                Mat::rows(x, i),
                false,
            )?;
            for row in g.chunks_exact(o) {
                add_into(db, &row[u0..u1]);
            }
            Ok(())
        })?;
    // dx (N x I) = g W, split over rows.
    let mut dx = vec![0f32; if need_dx { n * i } else { 0 }];
    if need_dx {
        let rows = thread_ranges(n, n * i * o, |pn| same_sum_order((n, i), (pn, i), o));
        split_blocks(&mut dx, &rows, i)
            .into_par_iter()
            .zip(rows.par_iter())
            .try_for_each(|(dx, &(r0, r1))| {
                matmul(
                    dx,
                    r1 - r0,
                    i,
                    o,
                    Mat::rows(&g[r0 * o..r1 * o], o),
                    Mat::rows(w, i),
                    false,
                )
            })?;
    }
    Ok(Grads {
        dw,
        db,
        dx: need_dx.then_some(dx),
    })
}

/// `act(x W^T + b)`: x `(N, I)`, W `(O, I)`, b `(O,)`.
pub(crate) struct Linear {
    pub act: Fused,
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "mnist-kit-linear"
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
        let (n, i) = dims2(l1, "linear input")?;
        let (o, wi) = dims2(l2, "linear weight")?;
        let b = slice(s3, l3, "linear bias")?;
        if wi != i || b.len() != o {
            candle_core::bail!(
                "linear: input ({n}, {i}), weight ({o}, {wi}) and bias ({}) do not match",
                b.len()
            );
        }
        let y = linear_forward(
            slice(s1, l1, "linear input")?,
            slice(s2, l2, "linear weight")?,
            b,
            (n, i, o),
            self.act,
        )
        .map_err(to_candle)?;
        Ok((CpuStorage::F32(y), Shape::from((n, o))))
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
        let (n, i) = dims2(x.layout(), "linear input")?;
        let (o, _) = dims2(w.layout(), "linear weight")?;
        let Grads { dw, db, dx } = {
            let (dys, dyl) = dy.storage_and_layout();
            let (xs, xl) = x.storage_and_layout();
            let (ws, wl) = w.storage_and_layout();
            let (ys, yl) = res.storage_and_layout();
            let relu_out = match self.act {
                Fused::None => None,
                Fused::Relu => Some(storage_slice(&ys, yl, "linear output")?),
            };
            linear_backward(
                storage_slice(&dys, dyl, "linear grad")?,
                relu_out,
                storage_slice(&xs, xl, "linear input")?,
                storage_slice(&ws, wl, "linear weight")?,
                (n, i, o),
                x.track_op(),
            )
            .map_err(to_candle)?
        };
        let dev = x.device();
        Ok((
            dx.map(|v| Tensor::from_vec(v, (n, i), dev)).transpose()?,
            Some(Tensor::from_vec(dw, (o, i), dev)?),
            Some(Tensor::from_vec(db, o, dev)?),
        ))
    }
}
