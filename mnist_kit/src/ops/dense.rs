//! The fully connected layer as one CPU op: `act(x W^T + b)` forward, and `dW`, `db`, `dx`
//! in one backward. In an MLP step this replaces a matmul, a broadcast add and a ReLU node
//! (each with its own backward, gradient buffers and accumulation) by one node.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::cpu::{Fused, Grads, add_into, slice, storage_slice, to_candle};
use super::gemm::{Mat, matmul_par};

fn dims2(l: &Layout, what: &str) -> candle_core::Result<(usize, usize)> {
    match *l.dims() {
        [a, b] => Ok((a, b)),
        ref d => candle_core::bail!("{what}: expected a 2-d tensor, got {d:?}"),
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

/// `act(x W^T + b)` for x `(N, I)`, W `(O, I)`, b `(O,)`. The product is split over the
/// threads by [`matmul_par`], which cannot change a bit.
pub(crate) fn linear_forward(
    x: &[f32],
    w: &[f32],
    b: &[f32],
    (n, i, o): (usize, usize, usize),
    act: Fused,
) -> crate::Result<Vec<f32>> {
    let mut y = vec![0f32; n * o];
    matmul_par(&mut y, n, o, i, Mat::rows(x, i), Mat::transposed(w, i))?;
    bias_act(&mut y, b, act);
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
    // dW (O x I) = g^T x; db sums g's rows in order.
    let mut dw = vec![0f32; o * i];
    matmul_par(&mut dw, o, i, n, Mat::transposed(g, o), Mat::rows(x, i))?;
    let mut db = vec![0f32; o];
    for row in g.chunks_exact(o) {
        add_into(&mut db, row);
    }
    // dx (N x I) = g W.
    let dx = if need_dx {
        let mut dx = vec![0f32; n * i];
        matmul_par(&mut dx, n, i, o, Mat::rows(g, o), Mat::rows(w, i))?;
        Some(dx)
    } else {
        None
    };
    Ok(Grads { dw, db, dx })
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
