//! What the report needs from the trained networks themselves, beyond what each run recorded:
//! weight statistics and filters, attention maps, BatchNorm on batch statistics, the
//! brightness sweep, the real-world digits, seed ensembles, the robust candidates' validation
//! MNIST-C, and the machine the study ran on. Measured once while the weights are there and
//! kept in `results/probes.json`, so that the report renders from evidence alone:
//! `mnist-kit study --report` on a clone without weights rewrites the same report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ExperimentResult;
use super::aggregate::Ensemble;
use crate::analysis::WeightStats;
use crate::analysis::abstain::AbstentionRow;
use crate::analysis::predictions::Prediction;
use crate::analysis::real_digits::RealDigitsScore;
use crate::fsutil::write_bytes_atomic;
use crate::plot::ImageGrid;
use crate::plot::images::AttentionRow;
use crate::{Error, Result};

/// The file name under the study's output directory.
pub const FILE: &str = "probes.json";

/// Measurements of trained networks the report renders (see the module docs). Every map is
/// keyed by experiment name, or by [`run_key`] for one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Probes {
    /// The machine and the invocation that trained the runs and wrote the report.
    pub machine: Option<Machine>,
    /// Per-tensor weight statistics of an experiment's first seed.
    pub weights: BTreeMap<String, Vec<WeightStats>>,
    /// First-layer filters of an experiment's first seed.
    pub filters: BTreeMap<String, ImageGrid>,
    /// Attention maps of an experiment's first seed on the first test digits.
    pub attention: BTreeMap<String, Vec<AttentionRow>>,
    /// MNIST-C accuracy of an experiment's first seed with BatchNorm on each batch's own
    /// statistics, by corruption name.
    pub batch_statistics: BTreeMap<String, BTreeMap<String, f64>>,
    /// Test accuracy of an experiment's first seed with a uniform brightness added:
    /// `(brightness, accuracy)`.
    pub brightness: BTreeMap<String, Vec<(f32, f64)>>,
    /// A run's score on `data/real-digits`.
    pub real_digits: BTreeMap<String, RealDigitsScore>,
    /// An experiment's seed ensemble on the test set.
    pub ensembles: BTreeMap<String, Ensemble>,
    /// A run's mean accuracy on its validation images under the MNIST-C corruptions.
    pub validation_mnist_c: BTreeMap<String, f64>,
    /// A run's most confident mistakes on the test set.
    pub mistakes: BTreeMap<String, Vec<Prediction>>,
    /// How a copied-out model answers with its calibration and digit gate (`models/robust
    /// NAME seed S`): the MNIST test set, the real-world digits, the non-digits.
    #[serde(default)]
    pub abstention: BTreeMap<String, Vec<AbstentionRow>>,
    /// A run's sum of squares of the weights its L2 acts on, for runs trained with L2 (see
    /// [`ExperimentResult::penalized_square_sum`]).
    #[serde(default)]
    pub penalized_square_sums: BTreeMap<String, f64>,
}

/// Where and how the study ran: what the report states about its own run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// The CPU (`model name` of `/proc/cpuinfo`).
    pub cpu: String,
    /// Its logical CPUs.
    pub logical_cpus: usize,
    /// Runs trained side by side.
    pub jobs: usize,
    /// Wall seconds of the invocation, from its start to the finished report.
    pub invocation_seconds: f64,
}

impl Probes {
    /// `all` with each run's [`ExperimentResult::penalized_square_sum`] filled from these
    /// probes where the run did not have it (a clone without weights), and every one the runs
    /// have kept here.
    pub fn with_penalties(&mut self, all: &[ExperimentResult]) -> Vec<ExperimentResult> {
        all.iter()
            .map(|r| {
                let key = run_key(r);
                let mut r = r.clone();
                match r.penalized_square_sum {
                    Some(v) => {
                        self.penalized_square_sums.insert(key, v);
                    }
                    None => r.penalized_square_sum = self.penalized_square_sums.get(&key).copied(),
                }
                r
            })
            .collect()
    }
}

/// The key of one run in [`Probes`]' per-run maps: `NAME seed S`.
pub fn run_key(r: &ExperimentResult) -> String {
    format!("{} seed {}", r.name(), r.seed())
}

impl Probes {
    /// Where the probes of a study writing to `out` live.
    pub fn path(out: &Path) -> PathBuf {
        out.join(FILE)
    }

    /// The probes saved under `out`, or none yet.
    pub fn load(out: &Path) -> Result<Probes> {
        let path = Self::path(out);
        if !path.exists() {
            return Ok(Probes::default());
        }
        crate::fsutil::read_json(&path)
    }

    /// Saves them under `out`.
    pub fn save(&self, out: &Path) -> Result<()> {
        let path = Self::path(out);
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| Error::Json {
            context: path.display().to_string(),
            source,
        })?;
        write_bytes_atomic(&path, &bytes)
    }
}
