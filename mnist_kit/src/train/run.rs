//! [`Run::open`]: the one way to read a trained run back from its directory (the network,
//! its training config, its history and, for a study run, its per-image predictions).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::config::TrainConfig;
use super::history::History;
use super::run_dir::RunDir;
use crate::models::Network;
use crate::{Error, Result};

/// A finished run read back from its directory.
///
/// ```no_run
/// use mnist_kit::train::Run;
/// let run = Run::open("results/models/best")?;
/// println!("{} trained {} epochs", run.net.name(), run.history.len());
/// # Ok::<(), mnist_kit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Run {
    /// The model as returned by training (best weights when restore-best applied), on the CPU.
    pub net: Network,
    /// The training configuration (the default when the directory has none).
    pub train: TrainConfig,
    /// The history (empty when the directory has none).
    pub history: History,
    /// A study run's per-image predictions, when the directory has them.
    pub predictions: Option<Predictions>,
    /// Where it was read from.
    pub dir: PathBuf,
}

impl Run {
    /// Reads the run in `dir`: `config.json` and `weights.safetensors` (required), the
    /// history and the predictions (when there).
    pub fn open(dir: impl AsRef<Path>) -> Result<Run> {
        let run = RunDir::new(dir.as_ref());
        Ok(Run {
            net: run.load_network(&Device::Cpu)?,
            train: run.read_train_config()?,
            history: run.read_history()?.unwrap_or_default(),
            predictions: Predictions::read(&run)?,
            dir: run.path().to_path_buf(),
        })
    }
}

/// A study run's per-image predictions (`predictions.safetensors`): for each set (`test`,
/// `validation`, and each MNIST-C corruption's name), the predicted digit of every image in
/// split order, and for `test` and `validation` the probability of the true digit.
#[derive(Debug, Clone)]
pub struct Predictions {
    tensors: HashMap<String, Tensor>,
}

impl Predictions {
    /// The predictions file of `dir`, when there.
    pub fn read(dir: &RunDir) -> Result<Option<Predictions>> {
        let path = dir.file(RunDir::PREDICTIONS);
        if !path.exists() {
            return Ok(None);
        }
        let tensors =
            candle_core::safetensors::load(&path, &Device::Cpu).map_err(|e| Error::Checkpoint {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Ok(Some(Predictions { tensors }))
    }

    /// The predicted digit of every image of `set`, when recorded.
    pub fn classes(&self, set: &str) -> Option<Vec<u8>> {
        self.tensors.get(&format!("{set}.class"))?.to_vec1().ok()
    }
}
