//! [`History`]: what `fit` saw, epoch by epoch, as data: a polars DataFrame, CSV, JSON and an
//! HTML table in notebooks.

use std::path::Path;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::fsutil::write_bytes_atomic;
use crate::{Error, Result};

/// One epoch of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Learning rate used in the epoch.
    pub lr: f64,
    /// Mean training loss over the epoch's batches (training mode: dropout on).
    pub train_loss: f64,
    /// Training accuracy over the epoch's batches (training mode).
    pub train_accuracy: f64,
    /// Validation loss (evaluation mode), when there is a validation split.
    pub val_loss: Option<f64>,
    /// Validation accuracy.
    pub val_accuracy: Option<f64>,
    /// Test loss, when test evaluation per epoch was asked for.
    pub test_loss: Option<f64>,
    /// Test accuracy.
    pub test_accuracy: Option<f64>,
    /// Wall seconds of the epoch's training (evaluation excluded).
    pub seconds: f64,
    /// Training images per second.
    pub images_per_sec: f64,
    /// Global L2 norm of the trainable weights at the end of the epoch.
    pub weight_norm: f64,
    /// Gradient noise: mean squared distance of minibatch gradients from their epoch mean
    /// (measured when the run asked for gradient statistics).
    #[serde(default)]
    pub grad_noise: Option<f64>,
    /// Norm of the epoch-mean gradient (the signal the noise is compared with).
    #[serde(default)]
    pub grad_mean_norm: Option<f64>,
    /// Gradient flow: mean L2 norm of each weight tensor's minibatch gradient over the epoch,
    /// input side first (`("fc1.weight", 0.12)`).
    #[serde(default)]
    pub layer_grad_norms: Vec<(String, f64)>,
    /// Mean training loss of each window of `loss_every` steps in the epoch (when asked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loss_trace: Vec<f64>,
}

/// Per-epoch records plus the early-stopping outcome.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct History {
    /// Model name.
    pub model: String,
    /// One record per epoch run.
    pub epochs: Vec<EpochRecord>,
    /// 1-based epoch with the best monitored value (the weights returned when restoring).
    pub best_epoch: Option<usize>,
    /// 1-based epoch at which early stopping ended the run, if it did.
    pub stopped_epoch: Option<usize>,
    /// Why training ended.
    pub stop_reason: StopReason,
}

/// Why a training run ended (in JSON: `completed`, `early_stopping`, `time_budget`, and
/// `running` for a run still going or interrupted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Not finished: still training, or interrupted (a run directory to resume).
    #[default]
    #[serde(alias = "")]
    Running,
    /// Every configured epoch ran.
    Completed,
    /// Early stopping ended it.
    EarlyStopping,
    /// The time budget ran out.
    TimeBudget,
}

impl StopReason {
    /// The JSON word.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Running => "running",
            StopReason::Completed => "completed",
            StopReason::EarlyStopping => "early_stopping",
            StopReason::TimeBudget => "time_budget",
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl History {
    /// Epochs run.
    pub fn len(&self) -> usize {
        self.epochs.len()
    }
    /// True before the first epoch.
    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }
    /// The last epoch's record.
    pub fn last(&self) -> Option<&EpochRecord> {
        self.epochs.last()
    }

    /// The history as a polars DataFrame, one row per epoch.
    pub fn to_dataframe(&self) -> Result<DataFrame> {
        let e = &self.epochs;
        let col = |name: &str, v: Vec<f64>| Column::new(name.into(), v);
        let opt = |name: &str, v: Vec<Option<f64>>| Column::new(name.into(), v);
        let df = DataFrame::new_infer_height(vec![
            Column::new(
                "epoch".into(),
                e.iter().map(|r| r.epoch as u32).collect::<Vec<_>>(),
            ),
            col("lr", e.iter().map(|r| r.lr).collect()),
            col("train_loss", e.iter().map(|r| r.train_loss).collect()),
            col(
                "train_accuracy",
                e.iter().map(|r| r.train_accuracy).collect(),
            ),
            opt("val_loss", e.iter().map(|r| r.val_loss).collect()),
            opt("val_accuracy", e.iter().map(|r| r.val_accuracy).collect()),
            opt("test_loss", e.iter().map(|r| r.test_loss).collect()),
            opt("test_accuracy", e.iter().map(|r| r.test_accuracy).collect()),
            col("seconds", e.iter().map(|r| r.seconds).collect()),
            col(
                "images_per_sec",
                e.iter().map(|r| r.images_per_sec).collect(),
            ),
            col("weight_norm", e.iter().map(|r| r.weight_norm).collect()),
            opt("grad_noise", e.iter().map(|r| r.grad_noise).collect()),
            opt(
                "grad_mean_norm",
                e.iter().map(|r| r.grad_mean_norm).collect(),
            ),
        ])?;
        Ok(df)
    }

    /// Writes the history as CSV (atomically).
    pub fn write_csv(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut df = self.to_dataframe()?;
        let mut buf = Vec::new();
        CsvWriter::new(&mut buf).finish(&mut df)?;
        write_bytes_atomic(path.as_ref(), &buf)
    }

    /// Writes the history as JSON (atomically).
    pub fn write_json(&self, path: impl AsRef<Path>) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| Error::Json {
            context: "history".into(),
            source,
        })?;
        write_bytes_atomic(path.as_ref(), &json)
    }

    /// Reads a history written by [`History::write_json`].
    pub fn read_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|source| Error::Json {
            context: path.display().to_string(),
            source,
        })
    }

    /// An HTML table of the epochs (best epoch in bold).
    pub fn to_html(&self) -> String {
        let f = |v: Option<f64>, pct: bool| match v {
            Some(x) if pct => format!("{:.2}%", 100.0 * x),
            Some(x) => format!("{x:.4}"),
            None => "".into(),
        };
        let mut h = format!(
            "<table><caption><b>{}</b>: {} epoch(s), {}{}</caption><thead><tr>\
             <th>epoch</th><th>lr</th><th>train loss</th><th>train acc</th><th>val loss</th>\
             <th>val acc</th><th>test loss</th><th>test acc</th><th>s</th><th>img/s</th></tr></thead><tbody>",
            crate::display::esc(&self.model),
            self.len(),
            self.stop_reason,
            self.best_epoch
                .map(|b| format!(", best epoch {b}"))
                .unwrap_or_default()
        );
        for r in &self.epochs {
            let style = if Some(r.epoch) == self.best_epoch {
                " style=\"font-weight:bold\""
            } else {
                ""
            };
            h.push_str(&format!(
                "<tr{style}><td>{}</td><td>{:.2e}</td><td>{:.4}</td><td>{:.2}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.0}</td></tr>",
                r.epoch,
                r.lr,
                r.train_loss,
                100.0 * r.train_accuracy,
                f(r.val_loss, false),
                f(r.val_accuracy, true),
                f(r.test_loss, false),
                f(r.test_accuracy, true),
                r.seconds,
                r.images_per_sec
            ));
        }
        h.push_str("</tbody></table>");
        h
    }

    /// Shows the history as an HTML table in an evcxr notebook.
    pub fn evcxr_display(&self) {
        crate::display::html(&self.to_html());
    }
}
