//! Layers built from tensors the kit initializes itself from a seeded RNG (candle's CPU RNG
//! cannot be seeded), each registering its parameters and its summary row as it is built.

use std::sync::{Arc, Mutex};

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::config::{Activation, Pooling};
use super::summary::LayerInfo;
use crate::ops::profile;
use crate::{Error, Result, ops};

/// What a parameter is, which decides whether weight decay / L2 applies by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Linear or convolution weight: decayed.
    Weight,
    /// Bias: not decayed by default.
    Bias,
    /// BatchNorm scale (gamma) or shift (beta): not decayed by default.
    Norm,
    /// BatchNorm running statistic: not trainable, never touched by the optimizer.
    Buffer,
}

/// A named parameter of a network.
#[derive(Debug, Clone)]
pub struct Param {
    /// Dotted name, as in the safetensors file (`conv1.weight`).
    pub name: String,
    /// The variable (shares storage with the model's tensors).
    pub var: Var,
    /// Its role.
    pub kind: ParamKind,
}

impl Param {
    /// True for parameters the optimizer updates.
    pub fn trainable(&self) -> bool {
        self.kind != ParamKind::Buffer
    }
}

/// Builds layers: draws initial weights from a seeded RNG and records parameters and summary
/// rows in construction order (so the same seed gives the same weights, bit for bit).
pub(crate) struct Builder {
    pub varmap: VarMap,
    pub params: Vec<Param>,
    pub layers: Vec<LayerInfo>,
    rng: ChaCha8Rng,
    device: Device,
}

impl Builder {
    pub fn new(seed: u64, device: &Device) -> Self {
        Builder {
            varmap: VarMap::new(),
            params: Vec::new(),
            layers: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            device: device.clone(),
        }
    }

    fn register(
        &mut self,
        name: String,
        values: Vec<f32>,
        shape: &[usize],
        kind: ParamKind,
    ) -> Result<Tensor> {
        let var = Var::from_vec(values, shape, &self.device)?;
        self.varmap
            .data()
            .lock()
            .map_err(|_| Error::invalid("model", "parameter store poisoned"))?
            .insert(name.clone(), var.clone());
        let t = var.as_tensor().clone();
        self.params.push(Param { name, var, kind });
        Ok(t)
    }

    /// PyTorch's default for linear and conv layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    pub fn uniform(
        &mut self,
        name: String,
        shape: &[usize],
        fan_in: usize,
        kind: ParamKind,
    ) -> Result<Tensor> {
        let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
        let n = shape.iter().product();
        let values = (0..n)
            .map(|_| self.rng.random_range(-bound..bound))
            .collect();
        self.register(name, values, shape, kind)
    }

    /// Kaiming-normal (fan_out, gain sqrt(2)), torchvision's ResNet init.
    pub fn kaiming_normal(
        &mut self,
        name: String,
        shape: &[usize],
        fan_out: usize,
    ) -> Result<Tensor> {
        let std = (2.0 / fan_out.max(1) as f32).sqrt();
        let normal = Normal::new(0.0f32, std).map_err(|e| Error::invalid("init", e.to_string()))?;
        let n = shape.iter().product();
        let values = (0..n).map(|_| normal.sample(&mut self.rng)).collect();
        self.register(name, values, shape, ParamKind::Weight)
    }

    pub fn constant(
        &mut self,
        name: String,
        shape: &[usize],
        value: f32,
        kind: ParamKind,
    ) -> Result<Tensor> {
        let n = shape.iter().product();
        self.register(name, vec![value; n], shape, kind)
    }

    pub fn info(
        &mut self,
        name: &str,
        kind: &str,
        output_shape: &[usize],
        params: usize,
        trainable: bool,
        formula: String,
    ) {
        self.layers.push(LayerInfo {
            name: name.to_string(),
            kind: kind.to_string(),
            output_shape: output_shape.to_vec(),
            params: if trainable { params } else { 0 },
            buffers: if trainable { 0 } else { params },
            formula,
        });
    }

    /// A row for a parameter-free layer (activation, pooling, dropout, flatten).
    pub fn op(&mut self, name: &str, kind: &str, output_shape: &[usize]) {
        self.info(name, kind, output_shape, 0, true, "0".into());
    }
}

/// Fully connected layer `y = x W^T + b`, W of shape `(out, in)`.
#[derive(Debug, Clone)]
pub struct Linear {
    name: Arc<str>,
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    pub(crate) fn new(b: &mut Builder, name: &str, inputs: usize, outputs: usize) -> Result<Self> {
        let weight = b.uniform(
            format!("{name}.weight"),
            &[outputs, inputs],
            inputs,
            ParamKind::Weight,
        )?;
        let bias = b.uniform(format!("{name}.bias"), &[outputs], inputs, ParamKind::Bias)?;
        b.info(
            name,
            "Linear",
            &[outputs],
            (inputs + 1) * outputs,
            true,
            format!("({inputs}+1)*{outputs} = {}", (inputs + 1) * outputs),
        );
        Ok(Linear {
            name: name.into(),
            weight,
            bias,
        })
    }

    /// A layer from its weight `(out, in)` and bias `(out,)`, e.g. taken from a trained
    /// network's [`Network::tensors`](super::Network::tensors).
    pub fn from_tensors(weight: Tensor, bias: Tensor) -> Result<Self> {
        let (out, _) = weight.dims2()?;
        if bias.dims() != [out] {
            return Err(Error::invalid(
                "linear layer",
                format!("bias {:?} for a weight {:?}", bias.dims(), weight.dims()),
            ));
        }
        Ok(Linear {
            name: "linear".into(),
            weight: ensure_f32(&weight)?,
            bias: ensure_f32(&bias)?,
        })
    }

    /// Applies the layer to `(N, in)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let _t = profile::layer(&self.name);
        ops::linear(x, &self.weight, &self.bias, false)
    }

    /// `relu(layer(x))`, one fused op where the device allows.
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        let _t = profile::layer(&self.name);
        ops::linear(x, &self.weight, &self.bias, true)
    }

    /// The weight `(out, in)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

/// 2-D convolution with square kernels.
#[derive(Debug, Clone)]
pub struct Conv2d {
    name: Arc<str>,
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
}

/// Shape bookkeeping for a conv layer: `(channels, height, width)` in and out.
pub(crate) struct ConvSpec {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub bias: bool,
}

impl ConvSpec {
    pub fn out_side(&self, side: usize) -> usize {
        (side + 2 * self.padding - self.kernel) / self.stride + 1
    }
}

impl Conv2d {
    /// Builds a conv layer; `side` is the input's spatial side, for the summary's output shape.
    pub(crate) fn new(
        b: &mut Builder,
        name: &str,
        s: ConvSpec,
        side: usize,
        kaiming: bool,
    ) -> Result<Self> {
        let shape = [s.c_out, s.c_in, s.kernel, s.kernel];
        let fan_in = s.c_in * s.kernel * s.kernel;
        let weight = if kaiming {
            b.kaiming_normal(
                format!("{name}.weight"),
                &shape,
                s.c_out * s.kernel * s.kernel,
            )?
        } else {
            b.uniform(format!("{name}.weight"), &shape, fan_in, ParamKind::Weight)?
        };
        let bias = if s.bias {
            Some(b.uniform(format!("{name}.bias"), &[s.c_out], fan_in, ParamKind::Bias)?)
        } else {
            None
        };
        let k = s.kernel;
        let (params, formula) = if s.bias {
            let p = (k * k * s.c_in + 1) * s.c_out;
            (p, format!("({k}*{k}*{}+1)*{} = {p}", s.c_in, s.c_out))
        } else {
            let p = k * k * s.c_in * s.c_out;
            (p, format!("{k}*{k}*{}*{} = {p}", s.c_in, s.c_out))
        };
        let out = s.out_side(side);
        b.info(
            name,
            &format!("Conv2d {k}x{k}"),
            &[s.c_out, out, out],
            params,
            true,
            formula,
        );
        Ok(Conv2d {
            name: name.into(),
            weight,
            bias,
            stride: s.stride,
            padding: s.padding,
        })
    }

    /// A convolution from its kernel `(O, C, K, K)` and optional bias `(O,)`.
    pub fn from_tensors(
        weight: Tensor,
        bias: Option<Tensor>,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let (o, _, kh, kw) = weight.dims4()?;
        if kh != kw || stride == 0 || bias.as_ref().is_some_and(|b| b.dims() != [o]) {
            return Err(Error::invalid(
                "conv layer",
                format!(
                    "kernel {:?}, bias {:?}, stride {stride}: square kernels, an (O,) bias and a \
                     stride of at least 1",
                    weight.dims(),
                    bias.as_ref().map(|b| b.dims().to_vec())
                ),
            ));
        }
        Ok(Conv2d {
            name: "conv".into(),
            weight: ensure_f32(&weight)?,
            bias: bias.as_ref().map(ensure_f32).transpose()?,
            stride,
            padding,
        })
    }

    /// Applies the convolution to `(N, C, H, W)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_relu(x, false)
    }

    /// Applies the convolution, with `max(0, .)` fused in when `relu` (one op on the CPU).
    pub fn forward_relu(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let _t = profile::layer(&self.name);
        let opts = ops::ConvOptions {
            stride: self.stride,
            padding: self.padding,
            relu,
        };
        ops::conv2d_with(x, &self.weight, self.bias.as_ref(), opts)
    }

    /// The kernel `(O, C, K, K)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

/// Batch normalization over the channel dimension of `(N, C)` or `(N, C, H, W)`, with PyTorch's
/// semantics: batch statistics in training (biased variance), running statistics updated with
/// momentum 0.1 (unbiased variance), running statistics in evaluation.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    name: Arc<str>,
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

impl BatchNorm {
    pub(crate) fn new(
        b: &mut Builder,
        name: &str,
        channels: usize,
        output_shape: &[usize],
    ) -> Result<Self> {
        let weight = b.constant(format!("{name}.weight"), &[channels], 1.0, ParamKind::Norm)?;
        let bias = b.constant(format!("{name}.bias"), &[channels], 0.0, ParamKind::Norm)?;
        b.constant(
            format!("{name}.running_mean"),
            &[channels],
            0.0,
            ParamKind::Buffer,
        )?;
        b.constant(
            format!("{name}.running_var"),
            &[channels],
            1.0,
            ParamKind::Buffer,
        )?;
        let n = b.params.len();
        let running_mean = b.params[n - 2].var.clone();
        let running_var = b.params[n - 1].var.clone();
        b.info(
            name,
            "BatchNorm",
            output_shape,
            2 * channels,
            true,
            format!("2*{channels} = {} (gamma, beta)", 2 * channels),
        );
        b.info(
            &format!("{name}.running"),
            "BatchNorm stats",
            output_shape,
            2 * channels,
            false,
            format!(
                "2*{channels} = {} (running mean, var; not trainable)",
                2 * channels
            ),
        );
        Ok(BatchNorm {
            name: name.into(),
            weight,
            bias,
            running_mean,
            running_var,
            eps: 1e-5,
            momentum: 0.1,
        })
    }

    /// Running statistics with PyTorch's momentum rule (unbiased variance).
    fn update_running(&self, mean: &Tensor, var: &Tensor, n: usize) -> Result<()> {
        let m = self.momentum;
        let unbiased = if n > 1 {
            n as f64 / (n as f64 - 1.0)
        } else {
            1.0
        };
        let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean.detach() * m)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - m))? + (var.detach() * (m * unbiased))?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)?;
        Ok(())
    }

    /// Normalizes `x`; in training also updates the running statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_relu_t(x, train, false)
    }

    /// [`BatchNorm::forward_t`] followed by `max(0, .)` when `relu`, fused into one op on the
    /// CPU.
    pub fn forward_relu_t(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        let _t = profile::layer(&self.name);
        let c = x.dim(1)?;
        if train {
            let (y, mean, var) =
                match ops::batch_norm_train(x, &self.weight, &self.bias, self.eps, relu)? {
                    Some(fused) => fused,
                    None => {
                        let (y, mean, var) = ops::reference::batch_norm_train(
                            x,
                            &self.weight,
                            &self.bias,
                            self.eps,
                        )?;
                        (if relu { y.relu()? } else { y }, mean, var)
                    }
                };
            self.update_running(&mean, &var, x.elem_count() / c.max(1))?;
            return Ok(y);
        }
        ops::batch_norm_eval(
            x,
            &self.running_mean.as_tensor().detach(),
            &self.running_var.as_tensor().detach(),
            &self.weight,
            &self.bias,
            self.eps,
            relu,
        )
    }
}

/// Inverted dropout with masks drawn from the network's seeded RNG.
#[derive(Debug, Clone)]
pub struct Dropout {
    name: Arc<str>,
    p: f32,
    rng: Arc<Mutex<ChaCha8Rng>>,
}

impl Dropout {
    pub(crate) fn new(
        b: &mut Builder,
        name: &str,
        p: f32,
        rng: &Arc<Mutex<ChaCha8Rng>>,
        shape: &[usize],
    ) -> Self {
        // Summary rows only for active dropout: a rate of 0 is no layer.
        if p > 0.0 {
            b.op(name, &format!("Dropout(p={p})"), shape);
        }
        Dropout {
            name: name.into(),
            p,
            rng: rng.clone(),
        }
    }

    /// Zeroes each element with probability `p` and scales the rest by `1/(1-p)` in training;
    /// the identity in evaluation.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p <= 0.0 {
            return Ok(x.clone());
        }
        let _t = profile::layer(&self.name);
        let keep = 1.0 - self.p;
        let scale = 1.0 / keep;
        let n = x.elem_count();
        let mask: Vec<f32> = {
            let mut rng = self
                .rng
                .lock()
                .map_err(|_| Error::invalid("dropout", "rng poisoned"))?;
            (0..n)
                .map(|_| {
                    if rng.random::<f32>() < keep {
                        scale
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        Ok((x * mask)?)
    }
}

/// Spatial attention (CBAM-style): per-pixel channel mean and max, a 7x7 conv to one map,
/// sigmoid, and the input scaled by `1 + map` (residual attention, Wang et al. 2017).
#[derive(Debug, Clone)]
pub struct SpatialAttention {
    name: Arc<str>,
    conv: Conv2d,
}

impl SpatialAttention {
    pub(crate) fn new(b: &mut Builder, name: &str, channels: usize, side: usize) -> Result<Self> {
        let spec = ConvSpec {
            c_in: 2,
            c_out: 1,
            kernel: 7,
            stride: 1,
            padding: 3,
            bias: true,
        };
        let conv = Conv2d::new(b, &format!("{name}.conv"), spec, side, false)?;
        b.op(
            &format!("{name}.scale"),
            "SpatialAttention (x * (1 + sigmoid map))",
            &[channels, side, side],
        );
        Ok(SpatialAttention {
            name: name.into(),
            conv,
        })
    }

    /// Returns `x * (1 + map)` and the attention map `(N, 1, H, W)` in `[0, 1]` (the same in
    /// training and evaluation).
    pub fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let _t = profile::layer(&self.name);
        let pooled = ops::channel_mean_max(x)?;
        let map = candle_nn::ops::sigmoid(&self.conv.forward(&pooled)?)?;
        // Residual form: the map amplifies (up to 2x) instead of gating, so at initialisation
        // (map ~ 0.5) the block is not halved; in the study it trained to a lower loss.
        Ok((ops::scale_pixels(x, &(&map + 1.0)?)?, map))
    }
}

/// Applies an activation function.
pub fn activate(x: &Tensor, a: Activation) -> Result<Tensor> {
    activate_ref(x, a)
}

/// BatchNorm then the activation: fused into one op for ReLU.
pub fn bn_activate(bn: &BatchNorm, x: &Tensor, a: Activation, train: bool) -> Result<Tensor> {
    if a == Activation::Relu {
        bn.forward_relu_t(x, train, true)
    } else {
        activate(&bn.forward_t(x, train)?, a)
    }
}

fn activate_ref(x: &Tensor, a: Activation) -> Result<Tensor> {
    Ok(match a {
        Activation::Relu => x.relu()?,
        Activation::Tanh => x.tanh()?,
        Activation::Softsign => (x / (x.abs()? + 1.0)?)?,
        Activation::Gelu => x.gelu_erf()?,
        Activation::Sigmoid => candle_nn::ops::sigmoid(x)?,
    })
}

/// 2x2 pooling of the given kind.
pub fn pool(x: &Tensor, p: Pooling) -> Result<Tensor> {
    match p {
        Pooling::Max => ops::max_pool2d(x, 2),
        Pooling::Avg => ops::avg_pool2d(x, 2),
    }
}

/// Mean over the spatial dims: `(N, C, H, W)` to `(N, C)`.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    Ok(x.mean(D::Minus1)?.mean(D::Minus1)?)
}

pub(crate) fn ensure_f32(x: &Tensor) -> Result<Tensor> {
    Ok(if x.dtype() == DType::F32 {
        x.clone()
    } else {
        x.to_dtype(DType::F32)?
    })
}
