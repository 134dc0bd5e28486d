//! The architectures of the study, each a plain struct of layers with a `forward_t`.

use std::sync::{Arc, Mutex};

use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;

use super::config::{Activation, LenetConfig, MlpConfig, Pooling, ResNetConfig, SimpleCnnConfig};
use super::layers::{
    BatchNorm, Builder, Conv2d, ConvSpec, Dropout, Linear, SpatialAttention, activate, bn_activate,
    global_avg_pool, pool,
};
use crate::Result;
use crate::data::NUM_CLASSES;
use crate::ops::profile;

type Rng = Arc<Mutex<ChaCha8Rng>>;

fn conv(
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    bias: bool,
) -> ConvSpec {
    ConvSpec {
        c_in,
        c_out,
        kernel,
        stride,
        padding,
        bias,
    }
}

fn pool_row(b: &mut Builder, name: &str, p: Pooling, shape: &[usize]) {
    let kind = match p {
        Pooling::Max => "MaxPool 2x2",
        Pooling::Avg => "AvgPool 2x2",
    };
    b.op(name, kind, shape);
}

/// Multi-layer perceptron.
#[derive(Debug, Clone)]
pub struct Mlp {
    hidden: Vec<(Linear, Option<BatchNorm>, Dropout)>,
    out: Linear,
    activation: Activation,
}

impl Mlp {
    pub(crate) fn new(b: &mut Builder, c: &MlpConfig, rng: &Rng) -> Result<Self> {
        let mut inputs = c.input_side * c.input_side;
        b.op("flatten", "Flatten", &[inputs]);
        let mut hidden = Vec::new();
        for (i, &width) in c.hidden.iter().enumerate() {
            let name = format!("fc{}", i + 1);
            let lin = Linear::new(b, &name, inputs, width)?;
            let bn = if c.batch_norm {
                Some(BatchNorm::new(b, &format!("bn{}", i + 1), width, &[width])?)
            } else {
                None
            };
            let drop = Dropout::new(b, &format!("dropout{}", i + 1), c.dropout, rng, &[width]);
            hidden.push((lin, bn, drop));
            inputs = width;
        }
        let out = Linear::new(b, "out", inputs, NUM_CLASSES)?;
        Ok(Mlp {
            hidden,
            out,
            activation: c.activation,
        })
    }

    /// The input of the output layer (the last hidden layer's activations).
    pub fn features_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = x.flatten_from(1)?;
        for (lin, bn, drop) in &self.hidden {
            h = match bn {
                None if self.activation == Activation::Relu => lin.forward_relu(&h)?,
                None => activate(&lin.forward(&h)?, self.activation)?,
                Some(bn) => bn_activate(bn, &lin.forward(&h)?, self.activation, train)?,
            };
            h = drop.forward_t(&h, train)?;
        }
        Ok(h)
    }

    /// The output layer.
    pub fn head(&self) -> &Linear {
        &self.out
    }

    /// The first hidden layer (its rows are 28x28 "templates").
    pub fn first_layer(&self) -> Option<&Linear> {
        self.hidden.first().map(|(l, _, _)| l).or(Some(&self.out))
    }
}

/// One LeNet conv block: conv, optional BatchNorm, activation, optional attention, pooling.
#[derive(Debug, Clone)]
struct ConvBlock {
    conv: Conv2d,
    bn: Option<BatchNorm>,
    attention: Option<SpatialAttention>,
    pooling: Option<Pooling>,
    pool_name: Arc<str>,
}

impl ConvBlock {
    /// Builds block `n` (layers `conv{n}`, `bn{n}`, `attention{n}`, `pool{n}`): a `kernel` x
    /// `kernel` valid convolution from `c_in` to `c_out` channels on `side` x `side` maps, then
    /// the optional parts. Returns the block and the side of its output.
    #[allow(clippy::too_many_arguments)]
    fn new(
        b: &mut Builder,
        n: usize,
        (c_in, c_out, kernel): (usize, usize, usize),
        side: usize,
        batch_norm: bool,
        attention: bool,
        pooling: Pooling,
    ) -> Result<(Self, usize)> {
        let conv = Conv2d::new(
            b,
            &format!("conv{n}"),
            conv(c_in, c_out, kernel, 1, 0, true),
            side,
            false,
        )?;
        let side = side + 1 - kernel;
        let bn = if batch_norm {
            Some(BatchNorm::new(
                b,
                &format!("bn{n}"),
                c_out,
                &[c_out, side, side],
            )?)
        } else {
            None
        };
        let attention = if attention {
            Some(SpatialAttention::new(
                b,
                &format!("attention{n}"),
                c_out,
                side,
            )?)
        } else {
            None
        };
        let side = side / 2;
        pool_row(b, &format!("pool{n}"), pooling, &[c_out, side, side]);
        let block = ConvBlock {
            conv,
            bn,
            attention,
            pooling: Some(pooling),
            pool_name: format!("pool{n}").into(),
        };
        Ok((block, side))
    }

    fn forward_t(
        &self,
        x: &Tensor,
        a: Activation,
        train: bool,
        maps: &mut Vec<Tensor>,
    ) -> Result<Tensor> {
        let mut h = match &self.bn {
            // Without BatchNorm in between, conv + bias + ReLU run as one op.
            None if a == Activation::Relu => self.conv.forward_relu(x, true)?,
            None => activate(&self.conv.forward(x)?, a)?,
            Some(bn) => bn_activate(bn, &self.conv.forward(x)?, a, train)?,
        };
        if let Some(att) = &self.attention {
            let (scaled, map) = att.forward(&h)?;
            maps.push(map);
            h = scaled;
        }
        match self.pooling {
            Some(p) => {
                let _t = profile::layer(&self.pool_name);
                pool(&h, p)
            }
            None => Ok(h),
        }
    }
}

/// LeNet-5 (classic 32x32 or the 28x28 variant), with optional BatchNorm, dropout and
/// spatial attention.
#[derive(Debug, Clone)]
pub struct Lenet {
    blocks: Vec<ConvBlock>,
    fcs: Vec<(Linear, Dropout)>,
    /// Dropout on the 120 features of the classic C5 convolution.
    drop_features: Option<Dropout>,
    out: Linear,
    activation: Activation,
}

impl Lenet {
    pub(crate) fn new(b: &mut Builder, c: &LenetConfig, rng: &Rng) -> Result<Self> {
        let mut side = c.input_side;
        let mut blocks = Vec::new();
        for (i, (c_in, c_out)) in [(1, 6), (6, 16)].into_iter().enumerate() {
            let (block, out) = ConvBlock::new(
                b,
                i + 1,
                (c_in, c_out, 5),
                side,
                c.batch_norm,
                c.attention,
                c.pooling,
            )?;
            blocks.push(block);
            side = out;
        }
        let mut fcs = Vec::new();
        let mut features = 16 * side * side;
        if side == 5 {
            // Classic LeNet-5: C5 is a 5x5 convolution to 120 maps of 1x1.
            let conv3 = Conv2d::new(b, "conv3", conv(16, 120, 5, 1, 0, true), side, false)?;
            let bn = if c.batch_norm {
                Some(BatchNorm::new(b, "bn3", 120, &[120, 1, 1])?)
            } else {
                None
            };
            blocks.push(ConvBlock {
                conv: conv3,
                bn,
                attention: None,
                pooling: None,
                pool_name: "pool3".into(),
            });
            features = 120;
            b.op("flatten", "Flatten", &[features]);
        } else {
            b.op("flatten", "Flatten", &[features]);
            let fc = Linear::new(b, "fc0", features, 120)?;
            let d = Dropout::new(b, "dropout0", c.dropout, rng, &[120]);
            fcs.push((fc, d));
            features = 120;
        }
        let drop_features =
            (side == 5).then(|| Dropout::new(b, "dropout_c5", c.dropout, rng, &[features]));
        let fc1 = Linear::new(b, "fc1", features, 84)?;
        let d1 = Dropout::new(b, "dropout1", c.dropout, rng, &[84]);
        fcs.push((fc1, d1));
        let out = Linear::new(b, "out", 84, NUM_CLASSES)?;
        Ok(Lenet {
            blocks,
            fcs,
            drop_features,
            out,
            activation: c.activation,
        })
    }

    /// The input of the output layer (the 84 features of F6) and the attention maps (empty
    /// without attention).
    pub fn features_with_maps(&self, x: &Tensor, train: bool) -> Result<(Tensor, Vec<Tensor>)> {
        let mut maps = Vec::new();
        let mut h = x.clone();
        for block in &self.blocks {
            h = block.forward_t(&h, self.activation, train, &mut maps)?;
        }
        h = h.flatten_from(1)?;
        if let Some(d) = &self.drop_features {
            h = d.forward_t(&h, train)?;
        }
        for (fc, drop) in &self.fcs {
            let a = match self.activation {
                Activation::Relu => fc.forward_relu(&h)?,
                other => activate(&fc.forward(&h)?, other)?,
            };
            h = drop.forward_t(&a, train)?;
        }
        Ok((h, maps))
    }

    /// The output layer.
    pub fn head(&self) -> &Linear {
        &self.out
    }

    /// The first convolution (6 filters of 5x5).
    pub fn first_conv(&self) -> Option<&Conv2d> {
        self.blocks.first().map(|b| &b.conv)
    }
}

/// Keras' `mnist_convnet`.
#[derive(Debug, Clone)]
pub struct SimpleCnn {
    blocks: Vec<ConvBlock>,
    dropout: Dropout,
    out: Linear,
    activation: Activation,
}

impl SimpleCnn {
    pub(crate) fn new(b: &mut Builder, c: &SimpleCnnConfig, rng: &Rng) -> Result<Self> {
        let mut side = 28;
        let mut blocks = Vec::new();
        for (i, (c_in, c_out)) in [(1, 32), (32, 64)].into_iter().enumerate() {
            let (block, out) = ConvBlock::new(
                b,
                i + 1,
                (c_in, c_out, 3),
                side,
                c.batch_norm,
                false,
                c.pooling,
            )?;
            blocks.push(block);
            side = out;
        }
        let features = 64 * side * side;
        b.op("flatten", "Flatten", &[features]);
        let dropout = Dropout::new(b, "dropout", c.dropout, rng, &[features]);
        let out = Linear::new(b, "out", features, NUM_CLASSES)?;
        Ok(SimpleCnn {
            blocks,
            dropout,
            out,
            activation: c.activation,
        })
    }

    /// The input of the output layer (the flattened feature maps).
    pub fn features_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = x.clone();
        for block in &self.blocks {
            h = block.forward_t(&h, self.activation, train, &mut Vec::new())?;
        }
        self.dropout.forward_t(&h.flatten_from(1)?, train)
    }

    /// The output layer.
    pub fn head(&self) -> &Linear {
        &self.out
    }

    /// The first convolution (32 filters of 3x3).
    pub fn first_conv(&self) -> Option<&Conv2d> {
        self.blocks.first().map(|b| &b.conv)
    }
}

/// Basic residual block: two 3x3 convs with BatchNorm, identity or 1x1 projection shortcut.
#[derive(Debug, Clone)]
struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    shortcut: Option<(Conv2d, BatchNorm)>,
    residual: bool,
    add_name: Arc<str>,
}

impl BasicBlock {
    fn new(
        b: &mut Builder,
        name: &str,
        c_in: usize,
        c_out: usize,
        stride: usize,
        side: usize,
        residual: bool,
    ) -> Result<Self> {
        let out = (side - 1) / stride + 1;
        let shape = [c_out, out, out];
        let conv1 = Conv2d::new(
            b,
            &format!("{name}.conv1"),
            conv(c_in, c_out, 3, stride, 1, false),
            side,
            true,
        )?;
        let bn1 = BatchNorm::new(b, &format!("{name}.bn1"), c_out, &shape)?;
        let conv2 = Conv2d::new(
            b,
            &format!("{name}.conv2"),
            conv(c_out, c_out, 3, 1, 1, false),
            out,
            true,
        )?;
        let bn2 = BatchNorm::new(b, &format!("{name}.bn2"), c_out, &shape)?;
        let shortcut = if residual && (stride != 1 || c_in != c_out) {
            let c = Conv2d::new(
                b,
                &format!("{name}.shortcut"),
                conv(c_in, c_out, 1, stride, 0, false),
                side,
                true,
            )?;
            Some((
                c,
                BatchNorm::new(b, &format!("{name}.shortcut_bn"), c_out, &shape)?,
            ))
        } else {
            None
        };
        Ok(BasicBlock {
            conv1,
            bn1,
            conv2,
            bn2,
            shortcut,
            residual,
            add_name: format!("{name}.add").into(),
        })
    }

    fn forward_t(&self, x: &Tensor, a: Activation, train: bool) -> Result<Tensor> {
        let h = bn_activate(&self.bn1, &self.conv1.forward(x)?, a, train)?;
        let h = self.conv2.forward(&h)?;
        if !self.residual {
            return bn_activate(&self.bn2, &h, a, train);
        }
        let h = self.bn2.forward_t(&h, train)?;
        let skip = match &self.shortcut {
            Some((c, bn)) => bn.forward_t(&c.forward(x)?, train)?,
            None => x.clone(),
        };
        let _t = profile::layer(&self.add_name);
        if a == Activation::Relu {
            crate::ops::add_relu(&h, &skip)
        } else {
            activate(&(h + skip)?, a)
        }
    }
}

/// Small ResNet for 28x28 inputs.
#[derive(Debug, Clone)]
pub struct ResNet {
    stem: Conv2d,
    stem_bn: BatchNorm,
    blocks: Vec<BasicBlock>,
    dropout: Dropout,
    out: Linear,
    activation: Activation,
}

impl ResNet {
    pub(crate) fn new(b: &mut Builder, c: &ResNetConfig, rng: &Rng) -> Result<Self> {
        let c0 = c.channels[0];
        let stride = c.stem_stride.max(1);
        let stem_spec = conv(1, c0, 3, stride, 1, false);
        let side0 = stem_spec.out_side(28);
        let stem = Conv2d::new(b, "stem", stem_spec, 28, true)?;
        let stem_bn = BatchNorm::new(b, "stem_bn", c0, &[c0, side0, side0])?;
        let mut blocks = Vec::new();
        let (mut c_in, mut side) = (c0, side0);
        for (s, &c_out) in c.channels.iter().enumerate() {
            for k in 0..c.blocks_per_stage {
                let stride = if s > 0 && k == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(
                    b,
                    &format!("stage{}.{k}", s + 1),
                    c_in,
                    c_out,
                    stride,
                    side,
                    c.residual,
                )?);
                side = (side - 1) / stride + 1;
                c_in = c_out;
            }
        }
        b.op("global_avg_pool", "GlobalAvgPool", &[c_in]);
        let dropout = Dropout::new(b, "dropout", c.dropout, rng, &[c_in]);
        let out = Linear::new(b, "out", c_in, NUM_CLASSES)?;
        Ok(ResNet {
            stem,
            stem_bn,
            blocks,
            dropout,
            out,
            activation: c.activation,
        })
    }

    /// The input of the output layer (the globally pooled channels).
    pub fn features_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = bn_activate(
            &self.stem_bn,
            &self.stem.forward(x)?,
            self.activation,
            train,
        )?;
        for block in &self.blocks {
            h = block.forward_t(&h, self.activation, train)?;
        }
        self.dropout.forward_t(&global_avg_pool(&h)?, train)
    }

    /// The output layer.
    pub fn head(&self) -> &Linear {
        &self.out
    }

    /// The stem convolution.
    pub fn first_conv(&self) -> &Conv2d {
        &self.stem
    }
}
