//! [`Network`]: any model of the zoo built from its [`ModelConfig`], with seeded init,
//! train/eval forward, a summary, and safetensors save/load beside its config JSON.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::arch::{Lenet, Mlp, ResNet, SimpleCnn};
use super::config::{ModelConfig, display_name};
use super::layers::{Builder, Param, ensure_f32};
use super::summary::ModelSummary;
use crate::data::{InputSpec, Normalization};
use crate::fsutil::write_atomic;
use crate::{Error, Result};

/// A classifier: images in, logits `(N, 10)` out, with an explicit train/eval flag.
pub trait Model {
    /// Logits for a batch in the model's [`InputSpec`]; `train` enables dropout and batch
    /// statistics.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor>;
}

#[derive(Debug, Clone)]
enum Arch {
    Mlp(Mlp),
    Lenet(Lenet),
    SimpleCnn(SimpleCnn),
    ResNet(ResNet),
}

/// A model of the zoo with its parameters.
///
/// ```
/// use mnist_kit::models::{Model, Network};
/// use mnist_kit::candle::{Device, Tensor};
/// let net = Network::preset("lenet5", 42, &Device::Cpu)?;
/// assert_eq!(net.summary().params, 61_706);
/// let x = Tensor::zeros((2, 1, 32, 32), mnist_kit::candle::DType::F32, &Device::Cpu)?;
/// assert_eq!(net.forward_t(&x, false)?.dims(), &[2, 10]);
/// # Ok::<(), mnist_kit::Error>(())
/// ```
#[derive(Clone)]
pub struct Network {
    name: String,
    config: ModelConfig,
    arch: Arch,
    varmap: VarMap,
    params: Vec<Param>,
    summary: ModelSummary,
    dropout_rng: Arc<Mutex<ChaCha8Rng>>,
    device: Device,
    normalization: Normalization,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("name", &self.name)
            .field("params", &self.summary.params)
            .field("device", &self.device)
            .finish()
    }
}

impl Network {
    /// Builds the model described by `config`, weights drawn from `seed`.
    pub fn new(config: &ModelConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::named(kind_name(config), config, seed, device)
    }

    /// Builds a preset of [`super::MODEL_NAMES`] (`"lenet5"`, `"resnet"`, ...) or the config
    /// in a JSON file (see [`ModelConfig::resolve`]).
    pub fn preset(name: &str, seed: u64, device: &Device) -> Result<Self> {
        let config = ModelConfig::resolve(name)?;
        Self::named(display_name(name), &config, seed, device)
    }

    /// Builds `config` and gives it a display name.
    pub fn named(
        name: impl Into<String>,
        config: &ModelConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let mut b = Builder::new(seed, device);
        // Dropout draws from its own stream so that enabling it does not change the init.
        let dropout_rng = Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0xD50F_u64)));
        let arch = match config {
            ModelConfig::Mlp(c) => Arch::Mlp(Mlp::new(&mut b, c, &dropout_rng)?),
            ModelConfig::Lenet(c) => Arch::Lenet(Lenet::new(&mut b, c, &dropout_rng)?),
            ModelConfig::SimpleCnn(c) => Arch::SimpleCnn(SimpleCnn::new(&mut b, c, &dropout_rng)?),
            ModelConfig::Resnet(c) => Arch::ResNet(ResNet::new(&mut b, c, &dropout_rng)?),
        };
        let name = name.into();
        Ok(Network {
            summary: ModelSummary::new(name.clone(), b.layers),
            name,
            config: config.clone(),
            arch,
            varmap: b.varmap,
            params: b.params,
            dropout_rng,
            device: device.clone(),
            normalization: Normalization::Standard,
        })
    }

    /// Display name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The config it was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }
    /// The input format it expects, with the normalization it was trained with.
    pub fn input_spec(&self) -> InputSpec {
        InputSpec {
            normalization: self.normalization,
            ..self.config.input_spec()
        }
    }
    /// Sets how its inputs are scaled: the trainer sets the training config's, a saved run
    /// restores it; standard until then.
    pub fn set_normalization(&mut self, normalization: Normalization) {
        self.normalization = normalization;
    }
    /// The device its parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }
    /// Per-layer summary with parameter counts and formulas.
    pub fn summary(&self) -> ModelSummary {
        self.summary.clone()
    }
    /// All parameters (trainable ones and BatchNorm running statistics), in build order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }
    /// The variables the optimizer updates.
    pub fn trainable_vars(&self) -> Vec<Var> {
        self.params
            .iter()
            .filter(|p| p.trainable())
            .map(|p| p.var.clone())
            .collect()
    }
    /// Number of trainable parameters.
    pub fn trainable_count(&self) -> usize {
        self.params
            .iter()
            .filter(|p| p.trainable())
            .map(|p| p.var.elem_count())
            .sum()
    }
    /// Number of buffer values: saved with the weights, not trained (BatchNorm running
    /// statistics).
    pub fn buffer_count(&self) -> usize {
        self.params
            .iter()
            .filter(|p| !p.trainable())
            .map(|p| p.var.elem_count())
            .sum()
    }
    /// The candle VarMap holding every parameter by name.
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Restarts the dropout mask stream (the trainer does this per epoch for determinism).
    pub fn reseed_dropout(&self, seed: u64) {
        if let Ok(mut rng) = self.dropout_rng.lock() {
            *rng = ChaCha8Rng::seed_from_u64(seed);
        }
    }

    /// Logits and the spatial attention maps, one `(N, 1, H, W)` tensor per attention module
    /// (empty for models without attention).
    pub fn forward_with_attention(&self, xs: &Tensor) -> Result<(Tensor, Vec<Tensor>)> {
        let (_, logits, maps) = self.parts(xs, false)?;
        Ok((logits, maps))
    }

    /// The first layer's weight: conv kernels `(O, 1, K, K)` or dense rows `(H, side*side)`
    /// (each row a 28x28 or 32x32 "template").
    pub fn first_layer_weight(&self) -> Option<Tensor> {
        match &self.arch {
            Arch::Mlp(m) => m.first_layer().map(|l| l.weight().clone()),
            Arch::Lenet(m) => m.first_conv().map(|c| c.weight().clone()),
            Arch::SimpleCnn(m) => m.first_conv().map(|c| c.weight().clone()),
            Arch::ResNet(m) => Some(m.first_conv().weight().clone()),
        }
    }

    /// A copy of every parameter's current value (for restore-best).
    pub fn snapshot(&self) -> Result<Vec<Tensor>> {
        self.params
            .iter()
            .map(|p| Ok(p.var.as_tensor().copy()?))
            .collect()
    }

    /// Sets every parameter from a [`Network::snapshot`] of the same model.
    pub fn restore(&self, snapshot: &[Tensor]) -> Result<()> {
        if snapshot.len() != self.params.len() {
            return Err(Error::invalid(
                "snapshot",
                format!(
                    "{} tensors for {} parameters",
                    snapshot.len(),
                    self.params.len()
                ),
            ));
        }
        for (p, t) in self.params.iter().zip(snapshot) {
            p.var.set(t)?;
        }
        Ok(())
    }

    /// A new network with the same config and parameter values but its own, newly created
    /// variables. Backpropagation keys gradients by tensor id, and in an evcxr notebook every
    /// cell links its own copy of candle with its own id counter: a network made in one cell and
    /// differentiated in another would mix up ids. Training and saliency differentiate a copy
    /// made by the running code instead.
    pub fn rebuilt(&self) -> Result<Network> {
        let mut fresh = Network::named(self.name.clone(), &self.config, 0, &self.device)?;
        fresh.restore(&self.snapshot()?)?;
        fresh.normalization = self.normalization;
        Ok(fresh)
    }

    /// Named tensors of every parameter, as saved.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
            .collect()
    }

    /// Writes the weights as safetensors (atomically: temp file, then rename).
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        let tensors = self.tensors();
        write_atomic(path.as_ref(), |tmp| {
            candle_core::safetensors::save(&tensors, tmp).map_err(Error::from)
        })
    }

    /// Loads weights saved by [`Network::save_weights`]. Every parameter must be present with
    /// its shape, and the file must hold nothing else; otherwise a [`Error::Checkpoint`] says
    /// what differs.
    pub fn load_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        self.load_weights_bytes(&bytes, path)
    }

    /// [`Network::load_weights`] from the bytes of a safetensors file; `source` names it in
    /// errors.
    pub fn load_weights_bytes(&self, bytes: &[u8], source: &Path) -> Result<()> {
        let bad = |reason: String| Error::Checkpoint {
            path: source.to_path_buf(),
            reason,
        };
        let loaded = candle_core::safetensors::load_buffer(bytes, &self.device)
            .map_err(|e| bad(format!("not a valid safetensors file: {e}")))?;
        let mut missing = Vec::new();
        for p in &self.params {
            match loaded.get(&p.name) {
                None => missing.push(p.name.clone()),
                Some(t) if t.dims() != p.var.dims() => {
                    return Err(bad(format!(
                        "{} has shape {:?} in the file but {:?} in model {}",
                        p.name,
                        t.dims(),
                        p.var.dims(),
                        self.name
                    )));
                }
                Some(_) => {}
            }
        }
        if !missing.is_empty() {
            return Err(bad(format!(
                "model {} needs {} tensor(s) the file lacks: {}",
                self.name,
                missing.len(),
                missing.join(", ")
            )));
        }
        if loaded.len() != self.params.len() {
            let extra: Vec<_> = loaded
                .keys()
                .filter(|k| !self.params.iter().any(|p| &p.name == *k))
                .cloned()
                .collect();
            return Err(bad(format!(
                "file holds tensors model {} does not have: {}",
                self.name,
                extra.join(", ")
            )));
        }
        for p in &self.params {
            let t = ensure_f32(&loaded[&p.name])?;
            if t.flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .any(|v| !v.is_finite())
            {
                return Err(bad(format!("{} holds non-finite values", p.name)));
            }
            p.var.set(&t)?;
        }
        Ok(())
    }
}

/// Reads `{"name":..,"config":{..}}`: a run directory's `config.json` (the `train` part is
/// the run directory's to read).
pub(crate) fn read_model_json(path: &Path) -> Result<(String, ModelConfig)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    #[derive(serde::Deserialize)]
    struct Meta {
        name: String,
        config: ModelConfig,
    }
    let meta: Meta = serde_json::from_str(&text).map_err(|source| Error::Json {
        context: path.display().to_string(),
        source,
    })?;
    meta.config.validate()?;
    Ok((meta.name, meta.config))
}

fn kind_name(config: &ModelConfig) -> String {
    match config {
        ModelConfig::Mlp(c) => format!(
            "mlp-{}",
            c.hidden
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join("-")
        ),
        ModelConfig::Lenet(c) => format!("lenet5-{}", c.input_side),
        ModelConfig::SimpleCnn(_) => "simple-cnn".into(),
        ModelConfig::Resnet(_) => "resnet".into(),
    }
}

impl Model for Network {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.parts(xs, train)?.1)
    }
}

impl Network {
    /// Features (the output layer's input), logits and attention maps of one forward pass.
    fn parts(&self, xs: &Tensor, train: bool) -> Result<(Tensor, Tensor, Vec<Tensor>)> {
        let xs = ensure_f32(xs)?;
        let (features, head, maps) = match &self.arch {
            Arch::Mlp(m) => (m.features_t(&xs, train)?, m.head(), Vec::new()),
            Arch::Lenet(m) => {
                let (f, maps) = m.features_with_maps(&xs, train)?;
                (f, m.head(), maps)
            }
            Arch::SimpleCnn(m) => (m.features_t(&xs, train)?, m.head(), Vec::new()),
            Arch::ResNet(m) => (m.features_t(&xs, train)?, m.head(), Vec::new()),
        };
        let logits = head.forward(&features)?;
        Ok((features, logits, maps))
    }

    /// The penultimate features (the output layer's input, `(N, F)`) and the logits of one
    /// evaluation-mode pass: what a distance to the training digits in feature space is measured
    /// on ([`crate::analysis::abstain`]).
    pub fn features_and_logits(&self, xs: &Tensor) -> Result<(Tensor, Tensor)> {
        let (f, l, _) = self.parts(xs, false)?;
        Ok((f, l))
    }
}

impl Network {
    /// Shows the summary table in an evcxr notebook.
    pub fn evcxr_display(&self) {
        self.summary.evcxr_display();
    }
}
