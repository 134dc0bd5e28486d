//! Each experiment over its seeds: the quantities a run measured ([`Metric`]), their
//! summaries, tables with `mean ± std`, the seed ensemble, and the run chosen on validation.

use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::run::run_dir;
use super::stats::Summary;
use super::{ExperimentResult, StudyConfig};
use crate::data::{Mnist, NUM_CLASSES};
use crate::display::Table;
use crate::train::RunDir;
use crate::train::{History, evaluate_in_batches};
use crate::{Error, Result};

/// How close (in accuracy, 0.005 = half a point) validation accuracy must come to its final
/// value for a run to count as converged: [`convergence_epoch`].
pub const CONVERGENCE_TOLERANCE: f64 = 0.005;

/// The first epoch (1-based) at which validation accuracy comes within
/// [`CONVERGENCE_TOLERANCE`] of its value at the last epoch: how fast a run converges.
pub fn convergence_epoch(h: &History) -> Option<usize> {
    let last = h.last()?.val_accuracy?;
    h.epochs
        .iter()
        .find(|r| {
            r.val_accuracy
                .is_some_and(|v| v >= last - CONVERGENCE_TOLERANCE)
        })
        .map(|r| r.epoch)
}

/// A quantity one run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Test accuracy of the returned weights.
    TestAccuracy,
    /// Test loss of the returned weights.
    TestLoss,
    /// Validation accuracy of the returned weights.
    ValAccuracy,
    /// Validation loss of the returned weights.
    ValLoss,
    /// Validation loss of the returned weights plus the L2 penalty whose gradient the run
    /// trained with (`l2 / 2` times the sum of squares of the weights L2 acts on): the
    /// validation loss Keras reports for a model with `kernel_regularizer=l2(λ)`. Equal to
    /// [`Metric::ValLoss`] for a run without L2.
    PenalizedValLoss,
    /// Training accuracy of the last epoch (training mode: dropout and augmentation on).
    TrainAccuracy,
    /// Training loss of the last epoch.
    TrainLoss,
    /// Accuracy of the returned weights in evaluation mode on the first 5,000 training
    /// images.
    TrainEval,
    /// Training accuracy in evaluation mode (first 5,000 training images) minus validation
    /// accuracy, both of the returned weights: how much better the network does on what it
    /// learned from.
    Gap,
    /// The epoch early stopping restored.
    BestEpoch,
    /// [`convergence_epoch`].
    Convergence,
    /// Mean wall seconds of a training epoch.
    SecondsPerEpoch,
    /// First weight tensor's gradient norm over the last one's, last epoch (gradient flow:
    /// small means vanishing gradients at the input side).
    GradFlowRatio,
    /// Training loss of the first epoch: how fast training starts.
    FirstTrainLoss,
    /// Validation accuracy after the first epoch.
    FirstValAccuracy,
    /// Roughness of the training loss: the mean absolute change between consecutive
    /// `loss_every`-step means over the mean loss (0 for a smooth curve).
    Roughness,
    /// Gradient noise of the last epoch (mean squared distance of minibatch gradients from
    /// their mean).
    GradNoise,
    /// Mean accuracy over the 15 MNIST-C corruptions of the test set.
    MnistC,
    /// Accuracy on one MNIST-C corruption of the test set.
    Corrupted(crate::data::corrupt::Corruption),
}

impl Metric {
    /// Every metric of a table, in table order (the corruptions have their own).
    pub const ALL: [Metric; 17] = [
        Metric::TestAccuracy,
        Metric::TestLoss,
        Metric::ValAccuracy,
        Metric::ValLoss,
        Metric::TrainAccuracy,
        Metric::TrainLoss,
        Metric::TrainEval,
        Metric::Gap,
        Metric::BestEpoch,
        Metric::Convergence,
        Metric::SecondsPerEpoch,
        Metric::GradFlowRatio,
        Metric::FirstTrainLoss,
        Metric::FirstValAccuracy,
        Metric::Roughness,
        Metric::GradNoise,
        Metric::MnistC,
    ];

    /// Snake-case name (CSV and JSON keys).
    pub fn name(self) -> &'static str {
        match self {
            Metric::TestAccuracy => "test_accuracy",
            Metric::TestLoss => "test_loss",
            Metric::ValAccuracy => "val_accuracy",
            Metric::ValLoss => "val_loss",
            Metric::PenalizedValLoss => "val_loss_with_penalty",
            Metric::TrainAccuracy => "train_accuracy",
            Metric::TrainLoss => "train_loss",
            Metric::TrainEval => "train_eval_accuracy",
            Metric::Gap => "train_val_gap",
            Metric::BestEpoch => "best_epoch",
            Metric::Convergence => "convergence_epoch",
            Metric::SecondsPerEpoch => "seconds_per_epoch",
            Metric::GradFlowRatio => "grad_flow_ratio",
            Metric::FirstTrainLoss => "first_epoch_train_loss",
            Metric::FirstValAccuracy => "first_epoch_val_accuracy",
            Metric::Roughness => "loss_roughness",
            Metric::GradNoise => "grad_noise",
            Metric::MnistC => "mnist_c_mean",
            Metric::Corrupted(k) => k.name(),
        }
    }

    /// Words for a sentence.
    pub fn label(self) -> String {
        match self {
            Metric::TestAccuracy => "test accuracy".into(),
            Metric::TestLoss => "test loss".into(),
            Metric::ValAccuracy => "validation accuracy".into(),
            Metric::ValLoss => "validation loss".into(),
            Metric::PenalizedValLoss => "validation loss with the L2 penalty".into(),
            Metric::TrainAccuracy => "training accuracy (training mode)".into(),
            Metric::TrainLoss => "final training loss".into(),
            Metric::TrainEval => "training accuracy (evaluation mode)".into(),
            Metric::Gap => "train-validation gap (evaluation mode)".into(),
            Metric::BestEpoch => "best epoch".into(),
            Metric::Convergence => "convergence epoch".into(),
            Metric::SecondsPerEpoch => "seconds per epoch".into(),
            Metric::GradFlowRatio => "first/last layer gradient ratio".into(),
            Metric::FirstTrainLoss => "first-epoch training loss".into(),
            Metric::FirstValAccuracy => "first-epoch validation accuracy".into(),
            Metric::Roughness => "training-loss roughness".into(),
            Metric::GradNoise => "gradient noise".into(),
            Metric::MnistC => "MNIST-C accuracy".into(),
            Metric::Corrupted(k) => format!("accuracy under {}", k.label()),
        }
    }

    /// True for accuracies and gaps, shown in percent (points).
    pub fn is_percent(self) -> bool {
        matches!(
            self,
            Metric::TestAccuracy
                | Metric::ValAccuracy
                | Metric::TrainAccuracy
                | Metric::TrainEval
                | Metric::Gap
                | Metric::FirstValAccuracy
                | Metric::MnistC
                | Metric::Corrupted(_)
        )
    }

    /// True when a larger value is the better one (accuracies; not the held-out losses or the
    /// gap). Quantities without a better direction ([`Metric::has_direction`]) count as
    /// larger-is-better only to orient a verdict, which then reads "higher" or "lower".
    pub fn higher_is_better(self) -> bool {
        !matches!(
            self,
            Metric::TestLoss | Metric::ValLoss | Metric::PenalizedValLoss | Metric::Gap
        )
    }

    /// False for quantities where neither a higher nor a lower value is better in itself:
    /// training losses (a lower one may be overfitting), epochs, time, gradient ratios, noise
    /// and roughness. Their comparisons say "higher" and "lower", never "better".
    pub fn has_direction(self) -> bool {
        !matches!(
            self,
            Metric::TrainLoss
                | Metric::FirstTrainLoss
                | Metric::Roughness
                | Metric::GradNoise
                | Metric::GradFlowRatio
                | Metric::BestEpoch
                | Metric::Convergence
                | Metric::SecondsPerEpoch
        )
    }

    /// True when the runs' per-image predictions carry this quantity, so a comparison can
    /// pair the images.
    pub fn per_image(self) -> bool {
        matches!(
            self,
            Metric::TestAccuracy | Metric::ValAccuracy | Metric::MnistC | Metric::Corrupted(_)
        )
    }

    /// A summary of this metric as a table cell: percent with 2 decimals, losses with 4.
    pub fn show(self, s: &Summary) -> String {
        match self {
            m if m.is_percent() => s.show(100.0, 2),
            Metric::TestLoss
            | Metric::ValLoss
            | Metric::PenalizedValLoss
            | Metric::TrainLoss
            | Metric::FirstTrainLoss => s.show(1.0, 4),
            Metric::BestEpoch | Metric::Convergence | Metric::SecondsPerEpoch => s.show(1.0, 1),
            _ => s.show(1.0, 3),
        }
    }

    /// The value of one run, when it measured it.
    pub fn of(self, r: &ExperimentResult) -> Option<f64> {
        let last = r.history.last();
        let first = r.history.epochs.first();
        match self {
            Metric::TestAccuracy => Some(r.test_accuracy),
            Metric::TestLoss => Some(r.test_loss),
            Metric::ValAccuracy => r.val_accuracy.or(last?.val_accuracy),
            Metric::ValLoss => returned_epoch(r)?.val_loss,
            Metric::PenalizedValLoss => {
                let l2 = r.experiment.train.optimizer.l2;
                let penalty = if l2 > 0.0 {
                    l2 / 2.0 * r.penalized_square_sum?
                } else {
                    0.0
                };
                Some(returned_epoch(r)?.val_loss? + penalty)
            }
            Metric::TrainAccuracy => Some(last?.train_accuracy),
            Metric::TrainLoss => Some(last?.train_loss),
            Metric::TrainEval => r.train_eval_accuracy,
            Metric::Gap => Some(r.train_eval_accuracy? - r.val_accuracy?),
            Metric::BestEpoch => r.history.best_epoch.map(|e| e as f64),
            Metric::Convergence => convergence_epoch(&r.history).map(|e| e as f64),
            Metric::SecondsPerEpoch => {
                let n = r.history.len();
                (n > 0).then(|| r.history.epochs.iter().map(|e| e.seconds).sum::<f64>() / n as f64)
            }
            Metric::GradFlowRatio => {
                let norms = &last?.layer_grad_norms;
                let (first, last) = (norms.first()?.1, norms.last()?.1);
                (last > 0.0).then(|| first / last)
            }
            Metric::FirstTrainLoss => Some(first?.train_loss),
            Metric::FirstValAccuracy => first?.val_accuracy,
            Metric::Roughness => {
                let trace: Vec<f64> = r
                    .history
                    .epochs
                    .iter()
                    .flat_map(|e| e.loss_trace.iter().copied())
                    .collect();
                if trace.len() < 2 {
                    return None;
                }
                let steps: f64 = trace.windows(2).map(|w| (w[1] - w[0]).abs()).sum();
                let mean = trace.iter().sum::<f64>() / trace.len() as f64;
                (mean > 0.0).then(|| steps / (trace.len() - 1) as f64 / mean)
            }
            Metric::GradNoise => last?.grad_noise,
            Metric::MnistC => {
                let c = &r.corruptions;
                (c.len() == crate::data::corrupt::Corruption::ALL.len())
                    .then(|| c.iter().map(|x| x.accuracy).sum::<f64>() / c.len() as f64)
            }
            Metric::Corrupted(k) => r
                .corruptions
                .iter()
                .find(|x| x.corruption == k.name())
                .map(|x| x.accuracy),
        }
    }
}

/// The runs of one experiment, one per seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Replicates {
    /// Every seed's result, in seed order.
    pub runs: Vec<ExperimentResult>,
}

impl Replicates {
    /// The experiment's name.
    pub fn name(&self) -> &str {
        self.runs.first().map_or("", |r| r.name())
    }
    /// Its group.
    pub fn group(&self) -> &str {
        self.runs.first().map_or("", |r| &r.experiment.group)
    }
    /// The first seed's run.
    pub fn first(&self) -> Option<&ExperimentResult> {
        self.runs.first()
    }
    /// The seeds.
    pub fn seeds(&self) -> Vec<u64> {
        self.runs.iter().map(|r| r.seed()).collect()
    }
    /// Trainable parameters.
    pub fn params(&self) -> usize {
        self.first().map_or(0, |r| r.params)
    }
    /// Buffer values (BatchNorm running statistics).
    pub fn buffers(&self) -> usize {
        self.first().map_or(0, |r| r.buffers)
    }
    /// The metric of each seed that measured it.
    pub fn values(&self, m: Metric) -> Vec<f64> {
        self.runs.iter().filter_map(|r| m.of(r)).collect()
    }
    /// Summary of the metric over seeds.
    pub fn summary(&self, m: Metric) -> Option<Summary> {
        Summary::of(&self.values(m))
    }
    /// Every seed's history.
    pub fn histories(&self) -> Vec<&History> {
        self.runs.iter().map(|r| &r.history).collect()
    }
    /// Mean wall seconds of one seed's run.
    pub fn seconds_per_seed(&self) -> f64 {
        let n = self.runs.len().max(1) as f64;
        self.runs.iter().map(|r| r.train_seconds).sum::<f64>() / n
    }
    /// True when every seed was scored on the MNIST-C corruptions.
    pub fn scored_on_mnist_c(&self) -> bool {
        self.runs.iter().all(|x| !x.corruptions.is_empty())
    }
    /// How often each class was predicted under corruption `k`, pooled over the seeds scored
    /// on it.
    pub fn pooled_predictions(&self, k: crate::data::corrupt::Corruption) -> [u64; 10] {
        let mut pooled = [0u64; 10];
        for run in &self.runs {
            if let Some(c) = run.corruptions.iter().find(|c| c.corruption == k.name()) {
                for (p, n) in pooled.iter_mut().zip(c.predicted) {
                    *p += n;
                }
            }
        }
        pooled
    }
}

/// The share of predictions above which a model has collapsed onto one class.
pub const COLLAPSE: f64 = 0.5;

/// The most predicted class of a histogram and the share of predictions it took (0 for an
/// empty one): above [`COLLAPSE`] a model has collapsed onto it.
pub fn top_share(counts: &[u64; 10]) -> (u8, f64) {
    let total: u64 = counts.iter().sum();
    let (top, n) = counts
        .iter()
        .enumerate()
        .max_by_key(|(_, n)| **n)
        .map_or((0, 0), |(c, n)| (c, *n));
    (top as u8, n as f64 / total.max(1) as f64)
}

/// Groups per-seed results by experiment, in order of first appearance.
pub fn by_experiment<R: std::borrow::Borrow<ExperimentResult>>(results: &[R]) -> Vec<Replicates> {
    let mut out: Vec<Replicates> = Vec::new();
    for r in results {
        let r = r.borrow();
        match out.iter_mut().find(|x| x.name() == r.name()) {
            Some(x) => {
                if !x.runs.iter().any(|y| y.seed() == r.seed()) {
                    x.runs.push(r.clone());
                }
            }
            None => out.push(Replicates {
                runs: vec![r.clone()],
            }),
        }
    }
    for x in &mut out {
        x.runs.sort_by_key(|r| r.seed());
    }
    out
}

/// `(experiment, its seeds' histories)` pairs for [`crate::plot::overlay`] (mean per epoch
/// with a min-max band) and [`crate::plot::gradient_flow`].
pub fn histories(results: &[ExperimentResult]) -> Vec<(String, Vec<&History>)> {
    let mut out: Vec<(String, Vec<&History>)> = Vec::new();
    for r in results {
        match out.iter_mut().find(|(n, _)| n == r.name()) {
            Some((_, hs)) => hs.push(&r.history),
            None => out.push((r.name().to_string(), vec![&r.history])),
        }
    }
    out
}

/// The metrics a comparison table shows.
pub const TABLE_METRICS: [Metric; 4] = [
    Metric::TestAccuracy,
    Metric::ValAccuracy,
    Metric::Gap,
    Metric::TestLoss,
];

/// One row per experiment: seeds, parameters, `mean ± std` of test accuracy (with its 95 %
/// interval), validation accuracy, the train-validation gap and test loss, epochs and seconds
/// per seed. Shows itself as a table in notebooks; [`summary_frame`] has the numbers.
pub fn comparison(title: &str, results: &[ExperimentResult]) -> Result<Table> {
    let reps = by_experiment(results);
    let cell = |r: &Replicates, m: Metric| r.summary(m).map(|s| m.show(&s)).unwrap_or_default();
    let ci = |r: &Replicates| {
        r.summary(Metric::TestAccuracy)
            .filter(|s| s.ci95[0].is_finite())
            .map(|s| format!("[{:.2}, {:.2}]", 100.0 * s.ci95[0], 100.0 * s.ci95[1]))
            .unwrap_or_default()
    };
    let df = polars::df!(
        "experiment" => reps.iter().map(|r| r.name().to_string()).collect::<Vec<_>>(),
        "seeds" => reps.iter().map(|r| r.runs.len() as u64).collect::<Vec<_>>(),
        "params" => reps.iter().map(|r| r.params() as u64).collect::<Vec<_>>(),
        "buffers" => reps.iter().map(|r| r.buffers() as u64).collect::<Vec<_>>(),
        "test accuracy %" => reps.iter().map(|r| cell(r, Metric::TestAccuracy)).collect::<Vec<_>>(),
        "95% CI" => reps.iter().map(ci).collect::<Vec<_>>(),
        "val accuracy %" => reps.iter().map(|r| cell(r, Metric::ValAccuracy)).collect::<Vec<_>>(),
        "train-val gap (points)" => reps.iter().map(|r| cell(r, Metric::Gap)).collect::<Vec<_>>(),
        "test loss" => reps.iter().map(|r| cell(r, Metric::TestLoss)).collect::<Vec<_>>(),
        "epochs" => reps.iter().map(|r| r.first().map_or(0, |f| f.epochs as u64)).collect::<Vec<_>>(),
        "s per seed" => reps.iter().map(|r| format!("{:.0}", r.seconds_per_seed())).collect::<Vec<_>>(),
    )?;
    Ok(Table::new(format!("{title} (mean ± std over seeds)"), df))
}

/// The numbers behind [`comparison`], one column per statistic: `<metric>_mean`, `_std`,
/// `_min`, `_max`, `_ci_lo`, `_ci_hi` for each of `metrics` (empty where a run did not
/// measure it), plus `experiment`, `seeds` and `params`.
pub fn summary_frame(
    reps: &[Replicates],
    metrics: &[Metric],
) -> Result<polars::prelude::DataFrame> {
    use polars::prelude::{Column, DataFrame};
    let mut cols = vec![
        Column::new(
            "experiment".into(),
            reps.iter()
                .map(|r| r.name().to_string())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "seeds".into(),
            reps.iter().map(|r| r.runs.len() as u64).collect::<Vec<_>>(),
        ),
        Column::new(
            "params".into(),
            reps.iter().map(|r| r.params() as u64).collect::<Vec<_>>(),
        ),
        Column::new(
            "buffers".into(),
            reps.iter().map(|r| r.buffers() as u64).collect::<Vec<_>>(),
        ),
    ];
    type Pick = fn(&Summary) -> f64;
    let stats: [(&str, Pick); 6] = [
        ("mean", |s| s.mean),
        ("std", |s| s.std),
        ("min", |s| s.min),
        ("max", |s| s.max),
        ("ci_lo", |s| s.ci95[0]),
        ("ci_hi", |s| s.ci95[1]),
    ];
    for &m in metrics {
        let sums: Vec<Option<Summary>> = reps.iter().map(|r| r.summary(m)).collect();
        for (suffix, pick) in stats {
            let v: Vec<Option<f64>> = sums
                .iter()
                .map(|s| s.as_ref().map(pick).filter(|x| x.is_finite()))
                .collect();
            cols.push(Column::new(format!("{}_{suffix}", m.name()).into(), v));
        }
    }
    Ok(DataFrame::new_infer_height(cols)?)
}

/// The seed ensemble of one experiment: its seeds' softmax probabilities averaged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ensemble {
    /// The experiment.
    pub name: String,
    /// The seeds averaged.
    pub seeds: Vec<u64>,
    /// Accuracy of the averaged probabilities on the test set.
    pub test_accuracy: f64,
    /// Cross-entropy of the averaged probabilities.
    pub test_loss: f64,
}

impl Ensemble {
    /// One line for a notebook.
    pub fn evcxr_display(&self) {
        crate::display::html(&format!(
            "<p><b>{}</b>: the ensemble of {} seeds ({:?}) reaches <b>{:.2}%</b> test accuracy \
             (loss {:.4}).</p>",
            crate::display::esc(&self.name),
            self.seeds.len(),
            self.seeds,
            100.0 * self.test_accuracy,
            self.test_loss
        ));
    }
}

/// Evaluates the seed ensemble of `rep` on the test set its runs were tested on, loading each
/// seed's weights from `cfg.out/runs`.
pub fn ensemble(mnist: &Mnist, cfg: &StudyConfig, rep: &Replicates) -> Result<Ensemble> {
    let first = rep
        .first()
        .ok_or_else(|| Error::invalid("ensemble", "no runs"))?;
    let train = &first.experiment.train;
    let test = match train.test_limit {
        Some(n) => mnist.test.take(n),
        None => mnist.test.clone(),
    };
    let runs = cfg.out.join("runs");
    let mut sum = vec![0f64; test.len() * NUM_CLASSES];
    for r in &rep.runs {
        let net = RunDir::new(run_dir(&runs, &r.experiment)).load_network(&Device::Cpu)?;
        let e = evaluate_in_batches(&net, &test, train.eval_batch_size)?;
        for (s, &p) in sum.iter_mut().zip(&e.probabilities) {
            *s += f64::from(p);
        }
    }
    let k = rep.runs.len() as f64;
    let (mut correct, mut loss) = (0usize, 0f64);
    for (i, label) in test.labels().into_iter().enumerate() {
        let p = &sum[i * NUM_CLASSES..(i + 1) * NUM_CLASSES];
        let best = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(d, _)| d);
        correct += usize::from(best == usize::from(label));
        loss -= (p[usize::from(label)] / k).max(1e-12).ln();
    }
    let n = test.len().max(1) as f64;
    Ok(Ensemble {
        name: rep.name().to_string(),
        seeds: rep.seeds(),
        test_accuracy: correct as f64 / n,
        test_loss: loss / n,
    })
}

/// The epoch whose weights a run returned: the restored best epoch when early stopping
/// restored one, else the last.
pub fn returned_epoch(r: &ExperimentResult) -> Option<&crate::train::EpochRecord> {
    let h = &r.history;
    let restored = r
        .experiment
        .train
        .early_stopping
        .is_some_and(|es| es.restore_best_weights);
    match (restored, h.best_epoch) {
        (true, Some(b)) => h.epochs.get(b.checked_sub(1)?),
        _ => h.last(),
    }
}

/// Validation accuracy of the weights a run returned (see [`returned_epoch`]).
pub fn returned_val_accuracy(r: &ExperimentResult) -> Option<f64> {
    returned_epoch(r)?.val_accuracy
}

/// The single run with the highest validation accuracy of its returned weights (ties: lower
/// validation loss, then the earlier run). Chosen without looking at the test set.
pub fn best_on_validation(results: &[ExperimentResult]) -> Option<&ExperimentResult> {
    let loss = |r: &ExperimentResult| Metric::ValLoss.of(r).unwrap_or(f64::INFINITY);
    results
        .iter()
        .filter(|r| returned_val_accuracy(r).is_some())
        .rev()
        .max_by(|a, b| {
            returned_val_accuracy(a)
                .unwrap_or(0.0)
                .total_cmp(&returned_val_accuracy(b).unwrap_or(0.0))
                .then(loss(b).total_cmp(&loss(a)))
        })
}
