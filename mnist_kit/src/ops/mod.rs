//! Tensor operations the models call: convolution and pooling. On the CPU (f32) they run the
//! kit's own kernels ([`cpu`]: im2col + GEMM convolution, max pooling with an argmax
//! backward); on other devices they fall back to candle's generic ops, so the models never
//! know which path runs. [`reference`] exposes candle's path for comparison and tests.

pub(crate) mod cpu;
mod gemm;

use candle_core::{DType, Tensor};

use crate::Result;

fn fast(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// 2-D convolution, NCHW input `(N, C, H, W)`, weight `(O, C, K, K)`, optional bias `(O,)`.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    conv(x, weight, bias, stride, padding, cpu::Fused::None)
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
    conv(x, weight, bias, stride, padding, cpu::Fused::Relu)
}

fn conv(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
    act: cpu::Fused,
) -> Result<Tensor> {
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
            act,
        };
        return Ok(x
            .contiguous()?
            .apply_op3(&weight.contiguous()?, &bias, op)?);
    }
    let y = add_bias(x.conv2d(weight, padding, stride, 1, 1)?, bias)?;
    Ok(match act {
        cpu::Fused::None => y,
        cpu::Fused::Relu => y.relu()?,
    })
}

fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    Ok(match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?,
        None => y,
    })
}

/// Max pooling with a square window and stride equal to the window.
pub fn max_pool2d(x: &Tensor, size: usize) -> Result<Tensor> {
    if fast(x) {
        Ok(x.contiguous()?.apply_op1(cpu::MaxPool { size })?)
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

    /// candle's `max_pool2d`.
    pub fn max_pool2d(x: &Tensor, size: usize) -> Result<Tensor> {
        Ok(x.max_pool2d(size)?)
    }
}
