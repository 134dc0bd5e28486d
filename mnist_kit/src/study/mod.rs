//! The study as plain functions, one file per job:
//!
//! | file | job |
//! |---|---|
//! | [`plan`](mod@plan) | what runs: every experiment, its group and its seeded configs |
//! | [`run`](mod@run) | running them ([`run()`]: the one entry point), one run directory per seed, reusing and resuming finished work |
//! | [`stats`] | the mathematics: the paired bootstrap and its verdict rule, McNemar, Welch, Holm |
//! | [`aggregate`] | each experiment over its seeds: metrics, tables, ensembles, the best run |
//! | [`evidence`](mod@evidence) | the runs' per-image predictions, and the comparisons made from them |
//! | [`findings`](mod@findings) | verdict sentences of a group |
//! | [`facts`] | numbers and verdicts for notebook prose, rendered from the runs |
//! | [`claims`](mod@claims) | the seed studies' claims in their words, and the study's own questions, tested |
//! | [`probes`] | what the report measures on the trained networks themselves, kept in `probes.json` |
//! | [`report`] | `REPORT.md`, `metrics.json`, `figures/`, `tables/`, `models/best/`, `models/robust/` |
//!
//! The notebooks and the CLI call the same functions, so `cargo study` and a notebook tell the
//! same story.

pub mod aggregate;
pub mod claims;
pub mod describe;
pub mod evidence;
pub mod facts;
pub mod findings;
pub mod notebook;
pub mod plan;
pub mod probes;
pub mod report;
pub mod run;
pub mod stats;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::models::ModelConfig;
use crate::train::{History, TrainConfig};
use crate::{Error, Result};

pub use aggregate::{Metric, Replicates, by_experiment, comparison, histories};
pub use claims::{Claim, Claims, claims, study_questions};
pub use describe::configs;
pub use evidence::Evidence;
pub use facts::Facts;
pub use findings::{Findings, findings, findings_with};
pub use notebook::{claims_of, corruptions, dots, ensembles, findings_on, questions_of};
pub use plan::{Group, groups, plan, selects};
pub use report::write_report;
pub use run::{Selection, finished, run, run_dir, staging_dir};

/// Environment variable that turns on quick mode for notebooks and the CLI.
pub const QUICK_ENV: &str = "MNIST_KIT_QUICK";

/// True when `MNIST_KIT_QUICK` is set to something other than `0` or empty.
pub fn quick_from_env() -> bool {
    std::env::var(QUICK_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// One training experiment: a named model config and its training config. The plan holds it
/// with the study's base seed; each of its seeds is a copy with another `train.seed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// Unique name (also the run directory name).
    pub name: String,
    /// The study group it belongs to (`architectures`, `part2-dropout`, ...).
    #[serde(default)]
    pub group: String,
    /// Preset the model is built from.
    pub model: String,
    /// The model config (preset plus overrides).
    pub config: ModelConfig,
    /// Training config.
    pub train: TrainConfig,
    /// Seeds of this experiment when not the study's count (the learning-rate grid runs one).
    #[serde(default)]
    pub seeds: Option<usize>,
    /// First training seed, when not the study's base seed (the A/A control's replica trains
    /// the same configuration from another set of seeds).
    #[serde(default)]
    pub first_seed: Option<u64>,
    /// Score the trained network on the 15 MNIST-C corruptions of the test set.
    #[serde(default)]
    pub robustness: bool,
}

/// What one run (one experiment, one seed) measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentResult {
    /// The experiment, with this run's seed in `train.seed`.
    pub experiment: Experiment,
    /// Trainable parameters.
    pub params: usize,
    /// Buffer values (BatchNorm running statistics), not trained.
    #[serde(default)]
    pub buffers: usize,
    /// Validation accuracy of the returned weights (evaluation mode).
    #[serde(default)]
    pub val_accuracy: Option<f64>,
    /// Accuracy of the returned weights in evaluation mode (no dropout, no augmentation) on
    /// the first [`run::TRAIN_EVAL_IMAGES`] training images: the training side of the
    /// train-validation gap.
    #[serde(default)]
    pub train_eval_accuracy: Option<f64>,
    /// Scores on the MNIST-C corruptions of the test set, when the experiment asks for them.
    #[serde(default)]
    pub corruptions: Vec<CorruptionScore>,
    /// Test accuracy of the returned weights.
    pub test_accuracy: f64,
    /// Test loss.
    pub test_loss: f64,
    /// Epochs run.
    pub epochs: usize,
    /// Wall seconds of training (evaluation included).
    pub train_seconds: f64,
    /// Mean training images per second.
    pub images_per_sec: f64,
    /// Most confused pairs on the test set: `(true, predicted, count)`.
    pub most_confused: Vec<(u8, u8, u64)>,
    /// The history.
    pub history: History,
    /// For a run trained with L2: the sum of squares of the returned weights L2 acts on, so
    /// that the penalized loss Keras reports can be compared ([`aggregate::Metric::PenalizedValLoss`]).
    /// Recorded by the study since it trains with it; read from the weights for runs recorded
    /// before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub penalized_square_sum: Option<f64>,
    /// Where the run's files are (set when it is trained or read back; not saved).
    #[serde(skip)]
    pub dir: Option<PathBuf>,
}

/// How a trained network does on one corrupted copy of the test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorruptionScore {
    /// The corruption's name (`shot_noise`, ...).
    pub corruption: String,
    /// Accuracy on the corrupted test images.
    pub accuracy: f64,
    /// How often each class was predicted (the predicted-class histogram).
    pub predicted: [u64; 10],
}

impl CorruptionScore {
    /// The most predicted class and the share of predictions it took: above one half the
    /// model has collapsed onto it.
    pub fn top_class(&self) -> (u8, f64) {
        let total: u64 = self.predicted.iter().sum();
        let (c, n) = self
            .predicted
            .iter()
            .enumerate()
            .max_by_key(|(_, n)| **n)
            .map_or((0, 0), |(c, n)| (c, *n));
        (c as u8, n as f64 / total.max(1) as f64)
    }
}

impl Experiment {
    /// An experiment of the model `config` (built as the preset or kind `model`) trained with
    /// `train`, in no study group.
    pub fn new(name: &str, model: &str, config: ModelConfig, train: TrainConfig) -> Self {
        Experiment {
            name: name.into(),
            group: String::new(),
            model: model.into(),
            config,
            train,
            seeds: None,
            first_seed: None,
            robustness: false,
        }
    }
}

impl ExperimentResult {
    /// The training seed of this run.
    pub fn seed(&self) -> u64 {
        self.experiment.train.seed
    }
    /// The experiment's name.
    pub fn name(&self) -> &str {
        &self.experiment.name
    }
}

/// Study settings.
#[derive(Debug, Clone)]
pub struct StudyConfig {
    /// Small data and few epochs: minutes instead of the full run.
    pub quick: bool,
    /// Output directory (`results/` by default).
    pub out: PathBuf,
    /// Run only these experiments: an exact experiment or group name, or a pattern with `*`
    /// wildcards (`lenet5*`).
    pub only: Option<String>,
    /// Redo runs that already finished.
    pub force: bool,
    /// Base seed: the validation split's seed and the first training seed.
    pub seed: u64,
    /// Training seeds of an experiment that does not set its own count (`seed`, `seed + 1`,
    /// ...); the plan sets one for each family (10 for the MLPs, 5 for the LeNet-5 family, 3
    /// for the ResNets).
    pub seeds: usize,
    /// Seeds for every experiment, whatever its own count (the CLI's `--seeds`; 1 in quick
    /// mode).
    pub seeds_override: Option<usize>,
    /// Runs trained at the same time, each on one thread (default: the logical CPUs). Small
    /// networks keep one core busier than two: two runs side by side train ~1.3-1.6x more
    /// images per second in all than one run on two threads. The numbers do not change.
    pub jobs: usize,
    /// Run only this process's share of the plan: `(i, n)` takes every run whose place in
    /// the plan's stable order is `i` modulo `n` (`--shard i/n`), so `n` processes on any
    /// machines sharing `out` split the study between them; the report is written once
    /// they have all finished (`--report`).
    pub shard: Option<(usize, usize)>,
    /// Only rewrite the report from what the runs recorded and `probes.json` holds
    /// (`--report`): nothing trains, and the report states the run time and machine of the
    /// study that made the runs.
    pub report_only: bool,
}

/// Most seeds a study may ask for.
pub const MAX_SEEDS: usize = 100;

impl StudyConfig {
    /// The defaults for quick or full mode: 1 seed in quick mode, 3 in full mode.
    pub fn new(quick: bool) -> Self {
        StudyConfig {
            quick,
            out: PathBuf::from("results"),
            only: None,
            force: false,
            seed: 42,
            seeds: Self::default_seeds(quick),
            seeds_override: quick.then_some(1),
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            shard: None,
            report_only: false,
        }
    }

    /// Seeds per experiment when none are asked for: 1 in quick mode, 3 in full mode.
    pub fn default_seeds(quick: bool) -> usize {
        if quick { 1 } else { 3 }
    }

    /// What notebooks use: quick mode from `MNIST_KIT_QUICK`; full mode shares the study's
    /// `results/` (found above the working directory, next to `data/`), so a notebook reuses
    /// the runs `cargo study` finished; quick runs go to a temporary directory instead.
    pub fn for_notebooks() -> Self {
        let quick = quick_from_env();
        let out = if quick {
            std::env::temp_dir().join("mnist_kit_quick")
        } else {
            std::env::current_dir()
                .ok()
                .and_then(|cwd| {
                    cwd.ancestors()
                        .find(|a| a.join("data").join("mnist").is_dir())
                        .map(|root| root.join("results"))
                })
                .unwrap_or_else(|| PathBuf::from("results"))
        };
        StudyConfig {
            out,
            ..Self::new(quick)
        }
    }

    /// `train` as the study runs it in this mode: the study's base seed for the initialisation
    /// and the validation split; in quick mode at most 2 epochs on 5,000 training images (1,000
    /// validation, 2,000 test images).
    pub fn adapt(&self, train: TrainConfig) -> TrainConfig {
        let mut t = TrainConfig {
            seed: self.seed,
            split_seed: Some(self.seed),
            ..train
        };
        if self.quick {
            t.epochs = t.epochs.min(2);
            t.train_limit = Some(5000);
            t.test_limit = Some(2000);
            t.validation = 1000;
        }
        t
    }

    /// The run directory of experiment `name`'s first seed (`out/runs/NAME/seed-S`): open it
    /// with [`crate::train::Run::open`].
    ///
    /// ```no_run
    /// use mnist_kit::prelude::*;
    /// let cfg = StudyConfig::for_notebooks();
    /// let lenet = Run::open(cfg.run_path("lenet5"))?.net;
    /// # Ok::<(), mnist_kit::Error>(())
    /// ```
    pub fn run_path(&self, name: &str) -> PathBuf {
        self.out
            .join("runs")
            .join(name)
            .join(format!("seed-{}", self.seed))
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if self.jobs == 0 {
            return Err(Error::invalid("study config", "jobs must be at least 1"));
        }
        if let Some((i, n)) = self.shard
            && (n == 0 || i >= n)
        {
            return Err(Error::invalid(
                "study config",
                format!("shard {i}/{n}: the index runs from 0 to the count minus 1"),
            ));
        }
        for n in std::iter::once(self.seeds).chain(self.seeds_override) {
            if !(1..=MAX_SEEDS).contains(&n) {
                return Err(Error::invalid(
                    "study config",
                    format!("seeds must be 1..={MAX_SEEDS}, got {n}"),
                ));
            }
        }
        Ok(())
    }
}

impl Default for StudyConfig {
    fn default() -> Self {
        Self::new(quick_from_env())
    }
}
