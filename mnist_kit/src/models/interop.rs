//! candle interop: the kit's layers are candle modules, so a candle user can `xs.apply(&layer)`
//! or put them in a `candle_nn::seq()`, and a [`Network`] is a `ModuleT`.
//!
//! ```
//! use candle_nn::{Module, ModuleT};
//! use mnist_kit::candle::{DType, Device, Tensor};
//! use mnist_kit::models::{Network, layers::Linear};
//!
//! let net = Network::preset("dense128", 42, &Device::Cpu)?;
//! let w = net.tensors();
//! let fc1 = Linear::from_tensors(w["fc1.weight"].clone(), w["fc1.bias"].clone())?;
//! let out = Linear::from_tensors(w["out.weight"].clone(), w["out.bias"].clone())?;
//! let seq = candle_nn::seq().add(fc1).add(candle_nn::Activation::Relu).add(out);
//! let x = Tensor::rand(0f32, 1f32, (4, 784), &Device::Cpu)?;
//! let same = (seq.forward(&x)? - ModuleT::forward_t(&net, &x, false)?)?.abs()?.max_all()?;
//! assert_eq!(same.to_scalar::<f32>()?, 0.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use candle_core::Tensor;

use super::layers::{BatchNorm, Conv2d, Dropout, Linear};
use super::network::{Model, Network};

fn candle(e: crate::Error) -> candle_core::Error {
    match e {
        crate::Error::Candle(e) => e,
        other => candle_core::Error::wrap(other),
    }
}

impl candle_core::Module for Linear {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        Linear::forward(self, xs).map_err(candle)
    }
}

impl candle_core::Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        Conv2d::forward(self, xs).map_err(candle)
    }
}

impl candle_core::ModuleT for BatchNorm {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        BatchNorm::forward_t(self, xs, train).map_err(candle)
    }
}

impl candle_core::ModuleT for Dropout {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Dropout::forward_t(self, xs, train).map_err(candle)
    }
}

impl candle_core::ModuleT for Network {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Model::forward_t(self, xs, train).map_err(candle)
    }
}
