//! Serializable model configurations: every architecture of the study and the knobs its
//! ablations vary. Named presets parse from strings (`"lenet5".parse()`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::data::{InputSpec, Layout, Normalization};
use crate::{Error, Result};

/// Hidden-layer nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, x)
    #[default]
    Relu,
    /// tanh(x)
    Tanh,
    /// x / (1 + |x|)
    Softsign,
    /// x * Φ(x) (exact, erf-based, as PyTorch's default)
    Gelu,
    /// 1 / (1 + e^-x)
    Sigmoid,
}

impl Activation {
    /// All activations, in display order.
    pub const ALL: [Activation; 5] = [
        Activation::Relu,
        Activation::Tanh,
        Activation::Softsign,
        Activation::Gelu,
        Activation::Sigmoid,
    ];
    /// Lower-case name (`relu`, `tanh`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Softsign => "softsign",
            Activation::Gelu => "gelu",
            Activation::Sigmoid => "sigmoid",
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Activation::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::invalid(
                    "activation",
                    format!("{s:?}; expected one of relu, tanh, softsign, gelu, sigmoid"),
                )
            })
    }
}

/// Pooling between convolution blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// 2x2 max pooling.
    #[default]
    Max,
    /// 2x2 average pooling (LeCun 1998 used trainable subsampling, close to this).
    Avg,
}

/// Multi-layer perceptron on flattened images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MlpConfig {
    /// Input side: 28, or 32 for the zero-padded input of the LeNet-matched MLP.
    pub input_side: usize,
    /// Hidden layer widths, input to output.
    pub hidden: Vec<usize>,
    /// Hidden activation.
    pub activation: Activation,
    /// Dropout after each hidden layer (0 = off).
    pub dropout: f32,
    /// BatchNorm after each hidden linear layer, before the activation.
    pub batch_norm: bool,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig {
            input_side: 28,
            hidden: vec![128],
            activation: Activation::Relu,
            dropout: 0.0,
            batch_norm: false,
        }
    }
}

/// LeNet-5 and its variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LenetConfig {
    /// 32 (classic: conv3 120@5x5 on 5x5 maps) or 28 (fc 256-120 after the second pool).
    pub input_side: usize,
    /// Activation after every conv and hidden fc layer.
    pub activation: Activation,
    /// Pooling after conv1 and conv2.
    pub pooling: Pooling,
    /// BatchNorm after each convolution (the "regularized LeNet-5").
    pub batch_norm: bool,
    /// Dropout after each hidden fully connected layer (0 = off).
    pub dropout: f32,
    /// Spatial attention (mean+max channel maps, 7x7 conv, sigmoid, `x * (1 + map)`) after conv
    /// blocks 1 and 2.
    pub attention: bool,
}

impl Default for LenetConfig {
    fn default() -> Self {
        LenetConfig {
            input_side: 32,
            activation: Activation::Relu,
            pooling: Pooling::Max,
            batch_norm: false,
            dropout: 0.0,
            attention: false,
        }
    }
}

/// Keras' `mnist_convnet`: conv 32@3x3, pool, conv 64@3x3, pool, dropout, fc 10.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimpleCnnConfig {
    /// Activation after each convolution.
    pub activation: Activation,
    /// Pooling after each convolution.
    pub pooling: Pooling,
    /// Dropout before the classifier.
    pub dropout: f32,
    /// BatchNorm after each convolution.
    pub batch_norm: bool,
}

impl Default for SimpleCnnConfig {
    fn default() -> Self {
        SimpleCnnConfig {
            activation: Activation::Relu,
            pooling: Pooling::Max,
            dropout: 0.5,
            batch_norm: false,
        }
    }
}

/// A small ResNet for 28x28: 3x3 stem, three stages of basic blocks, global average pool, fc.
/// The default stem has stride 2, so the stages work at 14, 7 and 4 pixels: a quarter of the
/// compute of a stride-1 stem, at the same parameter count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResNetConfig {
    /// Channels of the three stages; stages 2 and 3 halve the resolution.
    pub channels: [usize; 3],
    /// Basic blocks per stage.
    pub blocks_per_stage: usize,
    /// Stride of the stem convolution (1 keeps the stages at 28, 14 and 7 pixels).
    pub stem_stride: usize,
    /// Activation (ReLU in the original).
    pub activation: Activation,
    /// Dropout before the classifier.
    pub dropout: f32,
    /// Shortcut connections. `false` gives the plain network of the same depth: every block
    /// is two convolutions with nothing added, and the projection shortcuts are not built, so
    /// the plain network has fewer parameters (the 1x1 projections and their BatchNorms).
    pub residual: bool,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        ResNetConfig {
            channels: [16, 32, 64],
            blocks_per_stage: 1,
            stem_stride: 2,
            activation: Activation::Relu,
            dropout: 0.0,
            residual: true,
        }
    }
}

/// Any model of the kit. Serializes as `{"kind": "lenet", ...fields}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelConfig {
    /// Fully connected network.
    Mlp(MlpConfig),
    /// LeNet-5 family (with optional BatchNorm, dropout, attention).
    Lenet(LenetConfig),
    /// Keras' simple convnet.
    SimpleCnn(SimpleCnnConfig),
    /// Residual network.
    Resnet(ResNetConfig),
}

/// Largest hidden width an MLP config may ask for.
pub const MAX_WIDTH: usize = 16_384;
/// Most hidden layers (MLP) or blocks per stage (ResNet) a config may ask for.
pub const MAX_LAYERS: usize = 64;
/// Most weights a config may ask for (see [`ModelConfig::approx_params`]): 4 GB of f32.
pub const MAX_PARAMS: usize = 1 << 30;
/// Most channels of a ResNet stage.
pub const MAX_CHANNELS: usize = 1024;

/// Named presets: the models of the study.
pub const MODEL_NAMES: [&str; 11] = [
    "dense128",
    "mlp-61k",
    "mlp-500-150",
    "mlp-800",
    "mlp-advanced",
    "lenet5",
    "lenet5-28",
    "lenet5-regularized",
    "simple-cnn",
    "resnet",
    "lenet5-attention",
];

impl ModelConfig {
    /// The preset called `name` (see [`MODEL_NAMES`]).
    ///
    /// ```
    /// let cfg = mnist_kit::models::ModelConfig::preset("lenet5")?;
    /// assert_eq!(cfg.input_spec().side, 32);
    /// # Ok::<(), mnist_kit::Error>(())
    /// ```
    pub fn preset(name: &str) -> Result<Self> {
        let mlp = |side, hidden: &[usize]| {
            ModelConfig::Mlp(MlpConfig {
                input_side: side,
                hidden: hidden.to_vec(),
                ..Default::default()
            })
        };
        Ok(match name.to_ascii_lowercase().as_str() {
            "dense128" => mlp(28, &[128]),
            "mlp-61k" => mlp(32, &[48; 6]),
            "mlp-500-150" => mlp(28, &[500, 150]),
            "mlp-800" => mlp(28, &[800]),
            // 003's "advanced MLP": deeper, with BatchNorm before each ReLU and dropout after.
            "mlp-advanced" => ModelConfig::Mlp(MlpConfig {
                hidden: vec![512, 256, 128],
                batch_norm: true,
                dropout: 0.2,
                ..Default::default()
            }),
            "lenet5" => ModelConfig::Lenet(LenetConfig::default()),
            "lenet5-28" => ModelConfig::Lenet(LenetConfig {
                input_side: 28,
                ..Default::default()
            }),
            "lenet5-regularized" => ModelConfig::Lenet(LenetConfig {
                batch_norm: true,
                // With BatchNorm and augmentation, 0.25 underfit (train accuracy below test).
                dropout: 0.1,
                ..Default::default()
            }),
            "lenet5-attention" => ModelConfig::Lenet(LenetConfig {
                attention: true,
                ..Default::default()
            }),
            "simple-cnn" => ModelConfig::SimpleCnn(SimpleCnnConfig::default()),
            "resnet" => ModelConfig::Resnet(ResNetConfig::default()),
            _ => {
                return Err(Error::invalid(
                    "model name",
                    format!("{name:?}; known models: {}", MODEL_NAMES.join(", ")),
                ));
            }
        })
    }

    /// The input format this model expects, with the standard normalization (a trained
    /// [`crate::models::Network`] carries the one it was trained with).
    pub fn input_spec(&self) -> InputSpec {
        let (side, layout) = match self {
            ModelConfig::Mlp(c) => (c.input_side, Layout::Flat),
            ModelConfig::Lenet(c) => (c.input_side, Layout::Nchw),
            ModelConfig::SimpleCnn(_) | ModelConfig::Resnet(_) => (28, Layout::Nchw),
        };
        InputSpec {
            side,
            layout,
            normalization: Normalization::Standard,
        }
    }

    /// Checks the knobs: sizes, dropout in `[0, 1)`.
    pub fn validate(&self) -> Result<()> {
        let dropout_ok = |p: f32| (0.0..1.0).contains(&p);
        let (side_ok, dropout) = match self {
            ModelConfig::Mlp(c) => {
                if c.hidden.contains(&0) {
                    return Err(Error::invalid("model config", "hidden width 0"));
                }
                // Bound the size before anything is allocated (a config file may be hostile).
                if c.hidden.len() > MAX_LAYERS || c.hidden.iter().any(|&w| w > MAX_WIDTH) {
                    return Err(Error::invalid(
                        "model config",
                        format!("at most {MAX_LAYERS} hidden layers of at most {MAX_WIDTH} units"),
                    ));
                }
                (c.input_side == 28 || c.input_side == 32, c.dropout)
            }
            ModelConfig::Lenet(c) => (c.input_side == 28 || c.input_side == 32, c.dropout),
            ModelConfig::SimpleCnn(c) => (true, c.dropout),
            ModelConfig::Resnet(c) => {
                let sizes_ok = c
                    .channels
                    .iter()
                    .all(|&ch| (1..=MAX_CHANNELS).contains(&ch))
                    && (1..=MAX_LAYERS).contains(&c.blocks_per_stage)
                    && (1..=2).contains(&c.stem_stride);
                if !sizes_ok {
                    return Err(Error::invalid(
                        "model config",
                        format!(
                            "resnet channels must be 1..={MAX_CHANNELS}, blocks_per_stage \
                             1..={MAX_LAYERS}, stem_stride 1 or 2"
                        ),
                    ));
                }
                (true, c.dropout)
            }
        };
        if !side_ok {
            return Err(Error::invalid(
                "model config",
                "input_side must be 28 or 32",
            ));
        }
        if self.approx_params() > MAX_PARAMS as u128 {
            return Err(Error::invalid(
                "model config",
                format!(
                    "about {} parameters, more than the {MAX_PARAMS} allowed",
                    self.approx_params()
                ),
            ));
        }
        if !dropout_ok(dropout) {
            return Err(Error::invalid(
                "model config",
                format!("dropout {dropout} outside [0, 1)"),
            ));
        }
        Ok(())
    }

    /// Weight count of the dense and convolution layers (biases and norms left out): a cheap
    /// upper-bound check before anything is allocated.
    pub fn approx_params(&self) -> u128 {
        match self {
            ModelConfig::Mlp(c) => {
                let mut widths = vec![(c.input_side * c.input_side) as u128];
                widths.extend(c.hidden.iter().map(|&w| w as u128));
                widths.push(10);
                widths.windows(2).map(|w| w[0] * w[1]).sum()
            }
            ModelConfig::Resnet(c) => {
                let ch: Vec<u128> = c.channels.iter().map(|&x| x as u128).collect();
                let blocks = c.blocks_per_stage as u128;
                ch.iter().map(|&k| 18 * k * k * blocks).sum::<u128>() + 9 * ch[0]
            }
            ModelConfig::Lenet(_) | ModelConfig::SimpleCnn(_) => 0,
        }
    }

    /// Sets the hidden activation, where the architecture has one knob for it.
    pub fn with_activation(mut self, a: Activation) -> Self {
        match &mut self {
            ModelConfig::Mlp(c) => c.activation = a,
            ModelConfig::Lenet(c) => c.activation = a,
            ModelConfig::SimpleCnn(c) => c.activation = a,
            ModelConfig::Resnet(c) => c.activation = a,
        }
        self
    }

    /// Sets the dropout rate.
    pub fn with_dropout(mut self, p: f32) -> Self {
        match &mut self {
            ModelConfig::Mlp(c) => c.dropout = p,
            ModelConfig::Lenet(c) => c.dropout = p,
            ModelConfig::SimpleCnn(c) => c.dropout = p,
            ModelConfig::Resnet(c) => c.dropout = p,
        }
        self
    }

    /// Turns BatchNorm on or off (ResNet always has it).
    pub fn with_batch_norm(mut self, on: bool) -> Self {
        match &mut self {
            ModelConfig::Mlp(c) => c.batch_norm = on,
            ModelConfig::Lenet(c) => c.batch_norm = on,
            ModelConfig::SimpleCnn(c) => c.batch_norm = on,
            ModelConfig::Resnet(_) => {}
        }
        self
    }

    /// Parses a config from JSON.
    pub fn from_json(json: &str) -> Result<Self> {
        let cfg: ModelConfig = serde_json::from_str(json).map_err(|source| Error::Json {
            context: "model config".into(),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// A preset name, or the path of a JSON config file (`{"kind": "resnet", ...}`, as
    /// written to a run directory's `config.json` under `"config"`), for trying an
    /// architecture without a new preset.
    ///
    /// ```
    /// let cfg = mnist_kit::models::ModelConfig::resolve("resnet")?;
    /// let path = std::env::temp_dir().join("mnist_kit_resolve_doc.json");
    /// std::fs::write(&path, cfg.to_json()).unwrap();
    /// assert_eq!(mnist_kit::models::ModelConfig::resolve(path.to_str().unwrap())?, cfg);
    /// # Ok::<(), mnist_kit::Error>(())
    /// ```
    pub fn resolve(name_or_path: &str) -> Result<Self> {
        match json_file(name_or_path) {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                Self::from_json(&text)
            }
            None => Self::preset(name_or_path),
        }
    }

    /// The config as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// The name a model given to [`ModelConfig::resolve`] is shown under: the preset name, or
/// the config file's stem.
pub fn display_name(name_or_path: &str) -> String {
    match json_file(name_or_path).and_then(|p| p.file_stem()) {
        Some(stem) => stem.to_string_lossy().into_owned(),
        None => name_or_path.to_ascii_lowercase(),
    }
}

/// `Some(path)` when the model is named by a `.json` file rather than a preset.
fn json_file(name_or_path: &str) -> Option<&std::path::Path> {
    let path = std::path::Path::new(name_or_path);
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        .then_some(path)
}

impl FromStr for ModelConfig {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ModelConfig::preset(s)
    }
}
