//! The run directory: one folder per trained model, in safetensors and JSON, that the trainer
//! writes and resumes, the study scores, `mnist-kit serve` lists and the CLI reads. This
//! type owns every file name in it.
//!
//! ```text
//! config.json              {"name", "config" (the model), "normalization" (its input's),
//!                           "train" (the TrainConfig)}
//! weights.safetensors      the model as returned (best weights when restore-best applied)
//! last.safetensors         the weights after the last completed epoch (resume)
//! best.safetensors         the best epoch's weights so far (early stopping)
//! optimizer.safetensors    the optimizer state after the last completed epoch (resume)
//! history.json, .csv       one row per epoch
//! result.json              a study run's scores (study runs only)
//! predictions.safetensors  a study run's per-image predictions (study runs only)
//! ```

use std::path::{Path, PathBuf};

use candle_core::Device;

use super::config::TrainConfig;
use super::history::History;
use crate::data::Normalization;
use crate::fsutil::write_bytes_atomic;
use crate::models::Network;
use crate::models::network::read_model_json;
use crate::{Error, Result};

/// A run directory (see the module docs for its files).
///
/// Read a finished run with [`super::Run::open`].
///
/// ```no_run
/// use mnist_kit::train::RunDir;
/// let run = RunDir::new("results/models/best");
/// println!("trained with {:?}", run.read_train_config()?.optimizer.kind);
/// # Ok::<(), mnist_kit::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Model name, model config and training config.
    pub const CONFIG: &'static str = "config.json";
    /// The model as returned by training.
    pub const WEIGHTS: &'static str = "weights.safetensors";
    /// Weights after the last completed epoch.
    pub const LAST: &'static str = "last.safetensors";
    /// Weights of the best epoch so far.
    pub const BEST: &'static str = "best.safetensors";
    /// Optimizer state after the last completed epoch.
    pub const OPTIMIZER: &'static str = "optimizer.safetensors";
    /// Per-epoch history as CSV.
    pub const HISTORY_CSV: &'static str = "history.csv";
    /// Per-epoch history with the early-stopping outcome, as JSON.
    pub const HISTORY_JSON: &'static str = "history.json";
    /// A study run's scores.
    pub const RESULT: &'static str = "result.json";
    /// A study run's per-image predictions.
    pub const PREDICTIONS: &'static str = "predictions.safetensors";
    /// Every file a run directory may hold.
    pub const FILES: [&'static str; 9] = [
        Self::CONFIG,
        Self::WEIGHTS,
        Self::LAST,
        Self::BEST,
        Self::OPTIMIZER,
        Self::HISTORY_CSV,
        Self::HISTORY_JSON,
        Self::RESULT,
        Self::PREDICTIONS,
    ];
    /// The files that make a finished model someone can load, read and retrain.
    pub const MODEL_FILES: [&'static str; 4] = [
        Self::CONFIG,
        Self::WEIGHTS,
        Self::HISTORY_JSON,
        Self::HISTORY_CSV,
    ];

    /// The run directory at `path` (nothing is read or created).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RunDir { path: path.into() }
    }

    /// Creates the directory (and its parents) when missing.
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let dir = RunDir::new(path);
        std::fs::create_dir_all(&dir.path).map_err(|e| Error::io(&dir.path, e))?;
        Ok(dir)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of file `name` in it (one of the constants).
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Whether file `name` is there.
    pub fn has(&self, name: &str) -> bool {
        self.file(name).is_file()
    }

    /// Writes `config.json`: the network's name, config and input normalization, and the
    /// training config when given.
    pub fn write_config(&self, net: &Network, train: Option<&TrainConfig>) -> Result<()> {
        let mut json = serde_json::json!({
            "name": net.name(),
            "config": net.config(),
            "normalization": net.input_spec().normalization,
        });
        if let Some(t) = train {
            json["train"] = serde_json::to_value(t).map_err(|source| Error::Json {
                context: "train config".into(),
                source,
            })?;
        }
        let bytes = serde_json::to_vec_pretty(&json).map_err(|source| Error::Json {
            context: "run config".into(),
            source,
        })?;
        write_bytes_atomic(&self.file(Self::CONFIG), &bytes)
    }

    /// The model's name and config from `config.json`.
    pub fn read_model(&self) -> Result<(String, crate::models::ModelConfig)> {
        read_model_json(&self.file(Self::CONFIG))
    }

    /// The training config from `config.json` (the default when it has none).
    pub fn read_train_config(&self) -> Result<TrainConfig> {
        Ok(self.read_config_json()?.train)
    }

    /// The model's input normalization from `config.json`: its own entry, else (a run saved
    /// before the model carried it) its training config's.
    pub fn read_normalization(&self) -> Result<Normalization> {
        let c = self.read_config_json()?;
        Ok(c.normalization.unwrap_or(c.train.normalization))
    }

    fn read_config_json(&self) -> Result<ConfigJson> {
        let path = self.file(Self::CONFIG);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|source| Error::Json {
            context: path.display().to_string(),
            source,
        })
    }

    /// The history, when `history.json` is there.
    pub fn read_history(&self) -> Result<Option<History>> {
        let path = self.file(Self::HISTORY_JSON);
        if !path.exists() {
            return Ok(None);
        }
        History::read_json(path).map(Some)
    }

    /// Writes the history as JSON and CSV.
    pub fn write_history(&self, history: &History) -> Result<()> {
        history.write_json(self.file(Self::HISTORY_JSON))?;
        history.write_csv(self.file(Self::HISTORY_CSV))
    }

    /// Saves a model someone can load: `config.json` (without a training config) and
    /// `weights.safetensors`, creating the directory.
    pub fn save_network(&self, net: &Network) -> Result<()> {
        std::fs::create_dir_all(&self.path).map_err(|e| Error::io(&self.path, e))?;
        self.write_config(net, None)?;
        net.save_weights(self.file(Self::WEIGHTS))
    }

    /// The model as returned by training: `config.json` and `weights.safetensors` (read a
    /// run with [`super::Run::open`]).
    pub(crate) fn load_network(&self, device: &Device) -> Result<Network> {
        let (name, config) = self.read_model()?;
        let mut net = Network::named(name, &config, 0, device)?;
        net.load_weights(self.file(Self::WEIGHTS))?;
        net.set_normalization(self.read_normalization()?);
        Ok(net)
    }

    /// Copies the [`RunDir::MODEL_FILES`] that exist into `to` (created), replacing what is
    /// there: a finished model someone else can load.
    pub fn copy_model_to(&self, to: &RunDir) -> Result<()> {
        if to.path.exists() {
            std::fs::remove_dir_all(&to.path).map_err(|e| Error::io(&to.path, e))?;
        }
        std::fs::create_dir_all(&to.path).map_err(|e| Error::io(&to.path, e))?;
        for name in Self::MODEL_FILES.into_iter().chain([Self::RESULT]) {
            let from = self.file(name);
            if from.exists() {
                std::fs::copy(&from, to.file(name)).map_err(|e| Error::io(&from, e))?;
            }
        }
        Ok(())
    }
}

/// What `config.json` says beside the model.
#[derive(serde::Deserialize)]
struct ConfigJson {
    #[serde(default)]
    train: TrainConfig,
    #[serde(default)]
    normalization: Option<Normalization>,
}

impl AsRef<Path> for RunDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl From<PathBuf> for RunDir {
    fn from(path: PathBuf) -> Self {
        RunDir::new(path)
    }
}

impl From<&Path> for RunDir {
    fn from(path: &Path) -> Self {
        RunDir::new(path)
    }
}
