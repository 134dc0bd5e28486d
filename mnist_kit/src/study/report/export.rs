//! The report's files besides the Markdown: `models/best/` and `models/robust/` (run
//! directories with weights), `metrics.json` and the run time.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use serde_json::{Value, json};

use super::super::ExperimentResult;
use super::super::aggregate::{Metric, Replicates, best_on_validation, returned_val_accuracy};
use super::super::probes::Machine;
use super::super::run::run_dir;
use super::super::stats::Summary;
use super::context::{Ctx, finite};
use crate::Result;
use crate::analysis::gate::{GATE_DIR, GATE_TAIL, Gate, GateConfig};
use crate::data::Split;
use crate::data::corrupt::{Corruption, DEFAULT_SEED, corrupt_split};
use crate::fsutil::write_json;
use crate::train::RunDir;
use crate::train::{TrainData, evaluate_in_batches};

/// How far below the best validation accuracy a run may be and still be the robust model:
/// half a point, so that a run much more robust (by several points of MNIST-C) is not passed
/// over for a tenth of a point of clean accuracy.
pub const ROBUST_TOLERANCE: f64 = 0.005;

/// The two models the report copies out.
pub(crate) struct BestModels {
    /// The run with the highest validation accuracy.
    pub best: Option<ExperimentResult>,
    /// The candidates for the robust model (within [`ROBUST_TOLERANCE`] of the best
    /// validation accuracy), each with its validation MNIST-C accuracy, best first.
    pub candidates: Vec<(ExperimentResult, f64)>,
}

impl BestModels {
    /// The robust model: the candidate with the best validation MNIST-C accuracy.
    pub fn robust(&self) -> Option<&(ExperimentResult, f64)> {
        self.candidates.first()
    }
}

/// Chooses `models/best` (highest validation accuracy) and `models/robust` (of the runs within
/// [`ROBUST_TOLERANCE`] of that, the best validation MNIST-C accuracy: the validation images under the
/// 15 corruptions, seeded apart from the test set's), on validation only, and copies them.
pub(crate) fn best_models(ctx: &Ctx) -> Result<BestModels> {
    // Chosen from what the runs recorded, weights or not (a clone has none).
    let runs: Vec<ExperimentResult> = ctx.all.to_vec();
    let best = best_on_validation(&runs).cloned();
    let top = best
        .as_ref()
        .and_then(returned_val_accuracy)
        .unwrap_or(f64::NAN);
    let mut candidates = Vec::new();
    for r in &runs {
        let Some(v) = returned_val_accuracy(r) else {
            continue;
        };
        if v + ROBUST_TOLERANCE < top {
            continue;
        }
        let key = super::super::probes::run_key(r);
        let v = ctx.probe(
            |p| p.validation_mnist_c.get(&key).copied(),
            || validation_mnist_c(ctx, r),
            |p, v| {
                p.validation_mnist_c.insert(key.clone(), v);
            },
        )?;
        candidates.push((r.clone(), v));
    }
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
    let out = &ctx.cfg.out;
    // Copied out only from runs that have their weights: `--report` on a clone keeps the
    // committed models.
    let has_weights = |r: &ExperimentResult| {
        r.dir
            .as_ref()
            .is_some_and(|d| d.join(RunDir::WEIGHTS).exists())
    };
    if let Some(b) = best.as_ref().filter(|b| has_weights(b)) {
        copy_run(b, &out.join("models").join("best"))?;
        calibrate(ctx, b, &out.join("models").join("best"))?;
    }
    if let Some((r, _)) = candidates.first().filter(|(r, _)| has_weights(r)) {
        copy_run(r, &out.join("models").join("robust"))?;
        calibrate(ctx, r, &out.join("models").join("robust"))?;
    }
    Ok(BestModels { best, candidates })
}

/// Whether candidate `i` is on the Pareto front of (validation accuracy, validation MNIST-C):
/// no other candidate is at least as good on both and better on one. The robust model (the
/// most robust candidate) always is.
pub(crate) fn on_front(candidates: &[(ExperimentResult, f64)], i: usize) -> bool {
    let val = |k: usize| returned_val_accuracy(&candidates[k].0).unwrap_or(f64::NAN);
    let (a, c) = (val(i), candidates[i].1);
    !(0..candidates.len()).any(|k| {
        let (ak, ck) = (val(k), candidates[k].1);
        k != i && ak >= a && ck >= c && (ak > a || ck > c)
    })
}

/// Fits the copied model's calibration (temperature, confidence floor, ink range) on its own
/// validation images and writes `calibration.json` beside its weights, with the digit gate
/// ([`crate::analysis::gate`]) in `gate/`: the gate takes [`GATE_TAIL`] of the validation
/// digits, the confidence floor and the feature distance the rest of the share.
fn calibrate(ctx: &Ctx, r: &ExperimentResult, dst: &Path) -> Result<()> {
    use crate::analysis::Calibration;
    use crate::analysis::abstain::DEFAULT_TARGET_ABSTAIN;
    let data = TrainData::new(ctx.mnist, &r.experiment.train)?;
    let Some(val) = &data.validation else {
        return Ok(());
    };
    let net = RunDir::new(dst).load_network(&Device::Cpu)?;
    let mut c = Calibration::fit(&net, val, &data.train, DEFAULT_TARGET_ABSTAIN - GATE_TAIL)?;
    c.gate = Some(gate(ctx, &data.train, val)?);
    c.save(dst)
}

/// The study's digit gate, trained once into `gate/` of the output directory and reused while
/// its config and the validation digits it was set on stay the same.
fn gate(ctx: &Ctx, train: &Split, validation: &Split) -> Result<Gate> {
    let cfg = if ctx.cfg.quick {
        GateConfig::quick()
    } else {
        GateConfig::default()
    };
    let dir = ctx.cfg.out.join(GATE_DIR);
    if let Some(g) = Gate::load(&dir)?
        && g.fit.config == cfg
        && g.fit.validation_digest == validation.digest()
    {
        return Ok(g);
    }
    eprintln!("== the digit gate");
    let g = Gate::train(train, validation, &cfg)?;
    g.save(&dir)?;
    Ok(g)
}

/// Accuracy of run `r` on its validation images under each MNIST-C corruption, averaged.
fn validation_mnist_c(ctx: &Ctx, r: &ExperimentResult) -> Result<f64> {
    let data = TrainData::new(ctx.mnist, &r.experiment.train)?;
    let Some(val) = data.validation else {
        return Ok(f64::NAN);
    };
    let net = RunDir::new(run_dir(&ctx.cfg.out.join("runs"), &r.experiment))
        .load_network(&Device::Cpu)?;
    let mut sum = 0.0;
    for k in Corruption::ALL {
        let split = corrupt_split(&val, k, DEFAULT_SEED + 1)?;
        let e = evaluate_in_batches(&net, &split, r.experiment.train.eval_batch_size)?;
        sum += e.accuracy;
    }
    Ok(sum / Corruption::ALL.len() as f64)
}

fn copy_run(r: &ExperimentResult, dst: &Path) -> Result<()> {
    match &r.dir {
        Some(src) => RunDir::new(src.as_path()).copy_model_to(&RunDir::new(dst)),
        None => Ok(()),
    }
}

pub(crate) fn summary_json(s: Option<Summary>) -> Value {
    match s {
        Some(s) => json!({
            "mean": s.mean, "std": finite(s.std), "min": s.min, "max": s.max,
            "ci95": [finite(s.ci95[0]), finite(s.ci95[1])], "n": s.n,
        }),
        None => Value::Null,
    }
}

/// One experiment in `metrics.json`: test accuracy as mean (a fraction) with its std, seeds,
/// per-seed values and 95 % interval next to it, trainable parameters and buffers apart, then
/// the other metrics' summaries.
pub(crate) fn experiment_json(r: &Replicates) -> Value {
    let acc = r.summary(Metric::TestAccuracy);
    let first = r.first();
    let mut v = json!({
        "group": r.group(),
        "params": r.params(),
        "buffers": r.buffers(),
        "seeds": r.runs.len(),
        "seed_values": r.seeds(),
        "per_seed": r.values(Metric::TestAccuracy),
        "test_accuracy": acc.map(|s| s.mean),
        "test_accuracy_std": acc.map(|s| finite(s.std)),
        "test_accuracy_min": acc.map(|s| s.min),
        "test_accuracy_max": acc.map(|s| s.max),
        "ci95": acc.map(|s| [finite(s.ci95[0]), finite(s.ci95[1])]),
        "epochs": first.map(|f| f.epochs),
        "augmented": first.map(|f| f.experiment.train.augment.is_some()),
        "train_seconds": r.seconds_per_seed(),
        "images_per_sec": r.runs.iter().map(|x| x.images_per_sec).sum::<f64>() / r.runs.len().max(1) as f64,
    });
    for m in Metric::ALL.iter().skip(1) {
        v[m.name()] = summary_json(r.summary(*m));
    }
    v
}

/// `metrics.json` (with the experiments, the best models and the run time) and `REPORT.md`'s
/// closing section, then both files.
/// The closing "Run time" section: the study's wall time and machine, and its runs' sum.
fn run_time(md: &mut String, machine: &Machine, total_seconds: f64) {
    let wall = machine.invocation_seconds;
    let _ = writeln!(
        md,
        "\n## Run time\n\nThis run of the study took **{:.0} s ({:.1} min) wall**, from start to \
         this report (training, evaluation, figures and tables), on {} ({} logical CPUs); its \
         runs account for {:.0} s{}.",
        wall,
        wall / 60.0,
        machine.cpu,
        machine.logical_cpus,
        total_seconds,
        if total_seconds > wall * machine.jobs as f64 {
            " (more than the wall time allows: finished runs were reused from an earlier run)"
                .to_string()
        } else if machine.jobs > 1 {
            format!(
                " in all, summed over the runs trained {} at a time",
                machine.jobs
            )
        } else {
            String::new()
        }
    );
}

pub(crate) fn finish(
    md: &mut String,
    mut metrics: serde_json::Map<String, Value>,
    ctx: &Ctx,
    best: &BestModels,
    started: Instant,
) -> Result<()> {
    let cfg = ctx.cfg;
    let total_seconds: f64 = ctx.all.iter().map(|r| r.train_seconds).sum();
    let experiments: serde_json::Map<String, Value> = ctx
        .reps
        .iter()
        .map(|r| (r.name().to_string(), experiment_json(r)))
        .collect();
    let mut machine = ctx.machine();
    let fields = json!({
        "quick": cfg.quick,
        "cpu": machine.cpu,
        "logical_cpus": machine.logical_cpus,
        "seeds": cfg.seeds_override.unwrap_or(cfg.seeds),
        "seeds_per_family": {
            "mlp": super::super::plan::MLP_SEEDS,
            "cnn": super::super::plan::CNN_SEEDS,
            "resnet": super::super::plan::RESNET_SEEDS,
        },
        "base_seed": cfg.seed,
        "jobs": machine.jobs,
        "experiments": experiments,
        "best": best.best.as_ref().map(|b| json!({
            "experiment": b.name(),
            "seed": b.seed(),
            "val_accuracy": returned_val_accuracy(b),
            "test_accuracy": b.test_accuracy,
            "chosen_on": "validation accuracy of the returned weights (5,000 held-out training images)",
        })),
        "robust": best.robust().map(|(r, v)| json!({
            "experiment": r.name(),
            "seed": r.seed(),
            "val_accuracy": returned_val_accuracy(r),
            "val_mnist_c": v,
            "test_accuracy": r.test_accuracy,
            "mnist_c": Metric::MnistC.of(r),
            "chosen_on": format!(
                "validation MNIST-C accuracy among the runs within {} points of the best \
                 validation accuracy",
                100.0 * ROBUST_TOLERANCE
            ),
        })),
        "total_seconds": total_seconds,
    });
    if let Value::Object(f) = fields {
        metrics.extend(f);
    }
    // Measured last, so that it covers the figures and tables too; `--report` states the
    // recorded study's.
    if !machine.invocation_seconds.is_finite() {
        machine.invocation_seconds = started.elapsed().as_secs_f64();
    }
    run_time(md, &machine, total_seconds);
    metrics.insert(
        "invocation_seconds".into(),
        json!(machine.invocation_seconds),
    );
    if let Ok(mut p) = ctx.probes.lock() {
        p.machine = Some(machine);
    }
    write_json(&cfg.out.join("metrics.json"), &Value::Object(metrics))?;
    super::front::write_markdown(&cfg.out.join("REPORT.md"), md)
}
