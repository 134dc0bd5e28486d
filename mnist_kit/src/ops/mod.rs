//! Tensor operations the models call: convolution and pooling. On the CPU (f32) they run the
//! kit's own kernels (`cpu`: im2col + GEMM convolution, max pooling with an argmax
//! backward); on other devices they fall back to candle's generic ops, so the models never
//! know which path runs. [`reference`](mod@reference) exposes candle's path for comparison and tests.

mod attention;
pub(crate) mod bn;
pub(crate) mod cpu;
mod dense;
mod direct;
pub mod gemm;
mod geom;
pub mod profile;
mod shifted;
pub mod simd;

use candle_core::{DType, Tensor};

use crate::Result;

fn fast(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// How a convolution runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvOptions {
    /// Step between windows.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
    /// Apply `max(0, .)` to the output, fused into the op on the CPU.
    pub relu: bool,
}

impl Default for ConvOptions {
    fn default() -> Self {
        ConvOptions {
            stride: 1,
            padding: 0,
            relu: false,
        }
    }
}

/// 2-D convolution, NCHW input `(N, C, H, W)`, weight `(O, C, K, K)`, optional bias `(O,)`.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let opts = ConvOptions {
        stride,
        padding,
        ..Default::default()
    };
    conv2d_with(x, weight, bias, opts)
}

/// `relu(conv2d(x, w) + b)` in one op on the CPU (its backward masks the gradient by the
/// output's sign, so no separate ReLU node is stored).
pub fn conv2d_relu(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let opts = ConvOptions {
        stride,
        padding,
        relu: true,
    };
    conv2d_with(x, weight, bias, opts)
}

/// 2-D convolution with every option, see [`ConvOptions`].
///
/// ```
/// use candle_core::{Device, Tensor};
/// use mnist_kit::ops::{conv2d_with, ConvOptions};
/// let x = Tensor::ones((2, 1, 8, 8), candle_core::DType::F32, &Device::Cpu)?;
/// let w = Tensor::ones((4, 1, 3, 3), candle_core::DType::F32, &Device::Cpu)?;
/// let opts = ConvOptions { padding: 1, relu: true, ..Default::default() };
/// let y = conv2d_with(&x, &w, None, opts)?;
/// assert_eq!(y.dims(), &[2, 4, 8, 8]);
/// # Ok::<(), mnist_kit::Error>(())
/// ```
pub fn conv2d_with(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    opts: ConvOptions,
) -> Result<Tensor> {
    let ConvOptions {
        stride,
        padding,
        relu,
    } = opts;
    // One output map (spatial attention): a direct convolution, no im2col.
    if let Some(b) = bias
        && fast(x)
        && weight.dim(0)? == 1
        && stride == 1
        && !relu
    {
        let op = direct::SingleMapConv { pad: padding };
        let (w, b) = (weight.contiguous()?, b.contiguous()?);
        return Ok(x.contiguous()?.apply_op3(&w, &b, profile::tagged(op))?);
    }
    if fast(x) {
        let zeros;
        let bias = match bias {
            Some(b) => b.contiguous()?,
            None => {
                zeros = Tensor::zeros(weight.dim(0)?, DType::F32, x.device())?;
                zeros
            }
        };
        let op = cpu::Conv2d {
            stride,
            pad: padding,
            act: cpu::Fused::relu_if(relu),
        };
        return Ok(x
            .contiguous()?
            .apply_op3(&weight.contiguous()?, &bias, profile::tagged(op))?);
    }
    let y = add_bias(x.conv2d(weight, padding, stride, 1, 1)?, bias)?;
    Ok(if relu { y.relu()? } else { y })
}

/// `x W^T + b` for x `(N, I)`, W `(O, I)`, b `(O,)`, with `max(0, .)` fused when `relu`; on
/// the CPU one op (forward and one backward pass for all three gradients).
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor, relu: bool) -> Result<Tensor> {
    if fast(x) && x.rank() == 2 {
        let act = cpu::Fused::relu_if(relu);
        return Ok(x.contiguous()?.apply_op3(
            &weight.contiguous()?,
            &bias.contiguous()?,
            profile::tagged(dense::Linear { act }),
        )?);
    }
    let y = x.matmul(&weight.t()?)?.broadcast_add(bias)?;
    Ok(if relu { y.relu()? } else { y })
}

fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    Ok(match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?,
        None => y,
    })
}

/// Training-mode batch normalization over `(N, C, ...)` with batch statistics, followed by
/// `max(0, .)` when `relu`. Returns the output and the per-channel batch mean and biased
/// variance (for the running statistics), or `None` when the device has no fused kernel (the
/// caller then uses candle's ops).
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    if !fast(x) {
        return Ok(None);
    }
    let stats: bn::Stats = Default::default();
    let op = bn::BatchNormTrain {
        eps: eps as f32,
        relu,
        stats: stats.clone(),
    };
    let y = x.contiguous()?.apply_op3(
        &gamma.contiguous()?,
        &beta.contiguous()?,
        profile::tagged(op),
    )?;
    let (mean, var) =
        stats.lock().ok().and_then(|s| s.clone()).ok_or_else(|| {
            crate::Error::invalid("batch norm", "statistics missing after forward")
        })?;
    let c = mean.len();
    Ok(Some((
        y,
        Tensor::from_vec(mean, c, x.device())?,
        Tensor::from_vec(var, c, x.device())?,
    )))
}

/// Evaluation-mode batch normalization with the running statistics, `(x - mean) /
/// sqrt(var + eps) * gamma + beta`, followed by `max(0, .)` when `relu`: one op on the CPU
/// (statistics folded into a scale and a shift per channel), candle's ops elsewhere.
pub fn batch_norm_eval(
    x: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<Tensor> {
    if !fast(x) {
        let y = reference::normalize(x, mean, var, gamma, beta, eps)?;
        return Ok(if relu { y.relu()? } else { y });
    }
    let (m, v, g, b): (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) = (
        mean.to_vec1()?,
        var.to_vec1()?,
        gamma.to_vec1()?,
        beta.to_vec1()?,
    );
    let mut scale = Vec::with_capacity(m.len());
    let mut shift = Vec::with_capacity(m.len());
    for i in 0..m.len() {
        let inv = 1.0 / (v[i] + eps as f32).sqrt();
        scale.push(g[i] * inv);
        shift.push(b[i] - m[i] * g[i] * inv);
    }
    Ok(x.contiguous()?
        .apply_op1(profile::tagged(bn::BatchNormEval { scale, shift, relu }))?)
}

/// `max(0, a + b)` (the end of a residual block): one op on the CPU.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if fast(a) && fast(b) {
        Ok(a.contiguous()?
            .apply_op2(&b.contiguous()?, profile::tagged(bn::AddRelu))?)
    } else {
        Ok((a + b)?.relu()?)
    }
}

/// Per-pixel mean and max over the channels: `(N, C, H, W)` to `(N, 2, H, W)`, channel 0 the
/// mean, channel 1 the max (the input of spatial attention). The max's gradient goes to the
/// first channel holding it.
pub fn channel_mean_max(x: &Tensor) -> Result<Tensor> {
    if fast(x) {
        Ok(x.contiguous()?
            .apply_op1(profile::tagged(attention::ChannelMeanMax))?)
    } else {
        reference::channel_mean_max(x)
    }
}

/// Every channel of `x (N, C, H, W)` times the per-pixel `map (N, 1, H, W)`.
pub fn scale_pixels(x: &Tensor, map: &Tensor) -> Result<Tensor> {
    if fast(x) && fast(map) {
        Ok(x.contiguous()?
            .apply_op2(&map.contiguous()?, profile::tagged(attention::ScalePixels))?)
    } else {
        reference::scale_pixels(x, map)
    }
}

/// Max pooling with a square window and stride equal to the window.
pub fn max_pool2d(x: &Tensor, size: usize) -> Result<Tensor> {
    if fast(x) {
        Ok(x.contiguous()?
            .apply_op1(profile::tagged(cpu::MaxPool::new(size)))?)
    } else {
        Ok(x.max_pool2d(size)?)
    }
}

/// Average pooling with a square window and stride equal to the window.
pub fn avg_pool2d(x: &Tensor, size: usize) -> Result<Tensor> {
    Ok(x.avg_pool2d(size)?)
}

/// candle's own ops, the reference the fast kernels are checked against.
pub mod reference {
    use super::*;

    /// candle's `conv2d` plus bias.
    pub fn conv2d(
        x: &Tensor,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: usize,
        padding: usize,
    ) -> Result<Tensor> {
        add_bias(x.conv2d(weight, padding, stride, 1, 1)?, bias)
    }

    /// Batch normalization with batch statistics from candle's ops: `(y, mean, biased var)`.
    pub fn batch_norm_train(
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f64,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let c = x.dim(1)?;
        // Reduce over every dim but the channel: move C first, flatten the rest.
        let xt = x.transpose(0, 1)?.contiguous()?.reshape((c, ()))?;
        let mean = xt.mean(candle_core::D::Minus1)?;
        let var = xt
            .broadcast_sub(&mean.unsqueeze(1)?)?
            .sqr()?
            .mean(candle_core::D::Minus1)?;
        let y = normalize(x, &mean, &var, gamma, beta, eps)?;
        Ok((y, mean, var))
    }

    /// `(x - mean) / sqrt(var + eps) * gamma + beta`, statistics per channel (dim 1).
    pub fn normalize(
        x: &Tensor,
        mean: &Tensor,
        var: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        eps: f64,
    ) -> Result<Tensor> {
        let c = x.dim(1)?;
        let shape: Vec<usize> = (0..x.rank()).map(|d| if d == 1 { c } else { 1 }).collect();
        let scale = ((var + eps)?.sqrt()?.recip()? * gamma)?;
        let shift = (beta - (mean * &scale)?)?;
        Ok(x.broadcast_mul(&scale.reshape(shape.as_slice())?)?
            .broadcast_add(&shift.reshape(shape.as_slice())?)?)
    }

    /// `x W^T + b` from candle's ops.
    pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&weight.t()?)?.broadcast_add(bias)?)
    }

    /// candle's `max_pool2d`.
    pub fn max_pool2d(x: &Tensor, size: usize) -> Result<Tensor> {
        Ok(x.max_pool2d(size)?)
    }

    /// Mean and max over dim 1, concatenated along dim 1 (the max's gradient goes to every
    /// tie).
    pub fn channel_mean_max(x: &Tensor) -> Result<Tensor> {
        Ok(Tensor::cat(&[&x.mean_keepdim(1)?, &x.max_keepdim(1)?], 1)?)
    }

    /// `x * map`, the map broadcast over dim 1.
    pub fn scale_pixels(x: &Tensor, map: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_mul(map)?)
    }
}
