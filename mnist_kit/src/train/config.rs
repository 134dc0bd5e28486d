//! [`TrainConfig`]: every training choice of the study in one serializable struct with
//! PyTorch-like defaults (Adam 1e-3, batch 64, 55k/5k split, seed 42).

use serde::{Deserialize, Serialize};

use super::optim::{OptimizerConfig, OptimizerKind};
use super::schedule::Schedule;
use crate::data::Normalization;
use crate::data::augment::AugmentConfig;
use crate::{Error, Result};

/// Quantity early stopping watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Validation loss (lower is better).
    #[default]
    ValLoss,
    /// Validation accuracy (higher is better).
    ValAccuracy,
}

/// Direction of improvement; `Auto` infers it from the monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Min for losses, max for accuracies.
    #[default]
    Auto,
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

/// Keras' EarlyStopping knobs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EarlyStopping {
    /// What to watch.
    pub monitor: Monitor,
    /// Direction of improvement.
    pub mode: Mode,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Smallest change that counts as an improvement.
    pub min_delta: f64,
    /// Return the weights of the best epoch instead of the last.
    pub restore_best_weights: bool,
    /// Epochs (1-based count) to wait before watching at all.
    pub start_from_epoch: usize,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        EarlyStopping {
            monitor: Monitor::ValLoss,
            mode: Mode::Auto,
            patience: 3,
            min_delta: 0.0,
            restore_best_weights: true,
            start_from_epoch: 0,
        }
    }
}

impl EarlyStopping {
    /// True when lower values are better.
    pub fn minimizes(&self) -> bool {
        match self.mode {
            Mode::Min => true,
            Mode::Max => false,
            Mode::Auto => self.monitor == Monitor::ValLoss,
        }
    }
    /// True when `current` improves on `best` by more than `min_delta`.
    pub fn improves(&self, current: f64, best: Option<f64>) -> bool {
        match best {
            None => current.is_finite(),
            Some(b) if self.minimizes() => current < b - self.min_delta.abs(),
            Some(b) => current > b + self.min_delta.abs(),
        }
    }
}

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Epochs to run (early stopping or the time budget may end sooner).
    pub epochs: usize,
    /// Training batch size.
    pub batch_size: usize,
    /// Evaluation batch size (no effect on results, only on speed and memory).
    pub eval_batch_size: usize,
    /// Base learning rate (the schedule scales it per epoch).
    pub lr: f64,
    /// Optimizer, L2 and weight decay.
    pub optimizer: OptimizerConfig,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Augmentation of training batches (never of evaluation batches).
    pub augment: Option<AugmentConfig>,
    /// Validation samples split off the training set (0 = none).
    pub validation: usize,
    /// Use only the first N training samples (after the validation split): quick runs.
    pub train_limit: Option<usize>,
    /// Use only the first N test samples.
    pub test_limit: Option<usize>,
    /// Evaluate on the test set after every epoch (the study's curves; labelled as test).
    pub eval_test_each_epoch: bool,
    /// Early stopping, if any.
    pub early_stopping: Option<EarlyStopping>,
    /// Seed of the initialisation, shuffling, dropout and augmentation (and of the validation
    /// split unless `split_seed` is set).
    pub seed: u64,
    /// Seed of the validation split when it must not change with `seed` (the study's repeats
    /// train with several seeds on one split).
    pub split_seed: Option<u64>,
    /// Measure the per-step gradient statistics (gradient noise, per-layer gradient norms):
    /// a host copy of every gradient per step, so only for runs that report them.
    pub grad_stats: bool,
    /// Record the mean training loss of every `loss_every` steps (0 = off): the
    /// per-iteration curve that shows an optimizer's stability.
    pub loss_every: usize,
    /// Print a progress line every N batches (0 = once per epoch only).
    pub log_every: usize,
    /// Print progress at all.
    pub verbose: bool,
    /// Stop after this many wall seconds of training (checked between batches).
    pub time_budget_secs: Option<f64>,
    /// Pixel normalization.
    pub normalization: Normalization,
    /// Label smoothing of the cross-entropy (0 = none; see [`crate::train::step::loss`]).
    pub label_smoothing: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 64,
            eval_batch_size: 1000,
            lr: 1e-3,
            optimizer: OptimizerConfig::default(),
            schedule: Schedule::Constant,
            augment: None,
            validation: 5000,
            train_limit: None,
            test_limit: None,
            eval_test_each_epoch: false,
            early_stopping: None,
            seed: 42,
            split_seed: None,
            grad_stats: false,
            loss_every: 0,
            log_every: 0,
            verbose: true,
            time_budget_secs: None,
            normalization: Normalization::Standard,
            label_smoothing: 0.0,
        }
    }
}

impl TrainConfig {
    /// Sets the optimizer algorithm.
    pub fn optimizer(mut self, kind: OptimizerKind) -> Self {
        self.optimizer.kind = kind;
        self
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        let bad = |r: &str| Err(Error::invalid("train config", r.to_string()));
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("batch sizes must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("learning rate must be positive and finite");
        }
        if !(self.optimizer.l2 >= 0.0 && self.optimizer.weight_decay >= 0.0) {
            return bad("l2 and weight decay must be non-negative");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("label smoothing must be in [0, 1)");
        }
        if self.early_stopping.is_some() && self.validation == 0 {
            return bad("early stopping monitors validation: set validation > 0");
        }
        Ok(())
    }
}
