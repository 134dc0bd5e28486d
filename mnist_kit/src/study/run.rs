//! Running the plan: one run directory per experiment and seed (`runs/NAME/seed-S/`), finished
//! runs reused, interrupted runs resumed from their last completed epoch.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;

use super::plan::{LR_LADDER, Tuning, TuningState};
use super::{Experiment, ExperimentResult, StudyConfig, plan};
use crate::analysis::ConfusionMatrix;
use crate::data::corrupt::{Corruption, DEFAULT_SEED, corrupt_split};
use crate::data::{Mnist, Split};
use crate::fsutil::write_json;
use crate::models::Network;
use crate::train::RunDir;
use crate::train::{TrainConfig, TrainData, Trainer, evaluate_in_batches};
use crate::{Error, Result};

/// Training images scored in evaluation mode for the train-validation gap.
pub const TRAIN_EVAL_IMAGES: usize = 5000;

/// The training seeds of `e` under `cfg`: from `e.first_seed` (else `cfg.seed`) on, `e.seeds`
/// of them when the experiment sets its own count, else `cfg.seeds`. `cfg.seeds_override`
/// (the CLI's `--seeds`) wins over both counts.
pub fn seeds_of(e: &Experiment, cfg: &StudyConfig) -> Vec<u64> {
    let n = cfg.seeds_override.or(e.seeds).unwrap_or(cfg.seeds) as u64;
    let first = e.first_seed.unwrap_or(cfg.seed);
    (0..n).map(|k| first + k).collect()
}

/// `e` trained with another seed: initialisation, shuffling, dropout masks and augmentation
/// change; the validation split (`split_seed`) and the test set do not.
pub fn with_seed(e: &Experiment, seed: u64) -> Experiment {
    Experiment {
        train: TrainConfig {
            seed,
            split_seed: Some(e.train.split_seed.unwrap_or(e.train.seed)),
            ..e.train.clone()
        },
        ..e.clone()
    }
}

/// The run directory of `e` (with its seed) under `runs`: `runs/NAME/seed-S`.
pub fn run_dir(runs: &Path, e: &Experiment) -> PathBuf {
    runs.join(&e.name).join(format!("seed-{}", e.train.seed))
}

/// The finished run of `e` (with its seed) in `runs`, if one with exactly this training (name,
/// model, configs, seeds) is there; the group is a label of the report and may differ (a
/// notebook trains the study's runs under no group).
pub fn finished(e: &Experiment, runs: &Path) -> Option<ExperimentResult> {
    read_back(e, runs, RunDir::WEIGHTS, true)
}

/// The recorded evidence of the run of `e`'s name and seed in `runs`: its result and
/// per-image predictions, with or without its weights (a clone of the repository has no
/// weights). Enough for every number and comparison; not for a figure that runs the network.
/// What was recorded, as it was recorded: when the plan has changed since, the run keeps the
/// config it trained with (its result says which), until the study trains the new one.
pub fn recorded(e: &Experiment, runs: &Path) -> Option<ExperimentResult> {
    read_back(e, runs, RunDir::PREDICTIONS, false)
}

/// For a run trained with L2, the sum of squares of `net`'s weights L2 acts on.
fn penalized_square_sum(e: &Experiment, net: &Network) -> Result<Option<f64>> {
    let o = e.train.optimizer;
    if o.l2 > 0.0 {
        o.penalized_square_sum(net).map(Some)
    } else {
        Ok(None)
    }
}

/// The result of the run of `e`'s name and seed in `runs` when `needs` is there and, if
/// `exact`, it trained exactly `e`.
fn read_back(e: &Experiment, runs: &Path, needs: &str, exact: bool) -> Option<ExperimentResult> {
    let dir = run_dir(runs, e);
    let text = std::fs::read_to_string(dir.join(RunDir::RESULT)).ok()?;
    let mut done: ExperimentResult = serde_json::from_str(&text).ok()?;
    let same = Experiment {
        group: e.group.clone(),
        ..done.experiment.clone()
    } == *e;
    let same_run = done.experiment.name == e.name && done.experiment.train.seed == e.train.seed;
    if !((same || !exact) && same_run && dir.join(needs).exists()) {
        return None;
    }
    done.experiment.group = e.group.clone();
    let run = RunDir::new(&dir);
    if done.penalized_square_sum.is_none()
        && done.experiment.train.optimizer.l2 > 0.0
        && run.has(RunDir::WEIGHTS)
    {
        // Recorded before results kept it: read it from the weights.
        done.penalized_square_sum = run
            .load_network(&Device::Cpu)
            .and_then(|net| penalized_square_sum(&done.experiment, &net))
            .ok()
            .flatten();
    }
    done.dir = Some(dir);
    Some(done)
}

/// Trains one run of `e` (with its seed) into its run directory under `runs`, resuming from
/// the last completed epoch when an interrupted run of the same config is there (the result
/// is the same, bit for bit, as an uninterrupted run's); `shared`: other runs print to the
/// same terminal, so every log line names the experiment and seed and the progress bar stays
/// off.
fn run_one(mnist: &Mnist, e: &Experiment, runs: &Path, shared: bool) -> Result<ExperimentResult> {
    let started = Instant::now();
    // Train into a staging directory; the run's directory is replaced only when it is done,
    // so a stopped study leaves every committed run as it was.
    let final_dir = run_dir(runs, e);
    let dir = RunDir::new(staging_dir(&final_dir));
    let mut net = Network::named(&e.model, &e.config, e.train.seed, &Device::Cpu)?;
    // Time already spent on the epochs of a run that resumes.
    let earlier = prepare_staging(e, &net, &dir)?;
    let mut trainer = Trainer::new(e.train.clone()).run_dir(dir.path());
    if shared {
        trainer = trainer.label(format!("{} seed {}", e.name, e.train.seed));
    }
    let history = trainer.fit(&mut net, mnist)?;
    let data = TrainData::new(mnist, &e.train)?;
    let scores = score(mnist, e, &net, &data, &dir)?;
    let cm = ConfusionMatrix::of(&scores.test)?;
    let seconds: f64 = history.epochs.iter().map(|r| r.seconds).sum();
    let images: f64 = history
        .epochs
        .iter()
        .map(|r| r.images_per_sec * r.seconds)
        .sum();
    let result = ExperimentResult {
        experiment: e.clone(),
        params: net.trainable_count(),
        buffers: net.buffer_count(),
        val_accuracy: scores.validation,
        train_eval_accuracy: Some(scores.train_eval),
        corruptions: scores.corruptions,
        test_accuracy: scores.test.accuracy,
        test_loss: scores.test.loss,
        epochs: history.len(),
        train_seconds: earlier + started.elapsed().as_secs_f64(),
        images_per_sec: if seconds > 0.0 { images / seconds } else { 0.0 },
        most_confused: cm
            .most_confused(5)
            .iter()
            .map(|p| (p.truth, p.predicted, p.count))
            .collect(),
        history,
        penalized_square_sum: penalized_square_sum(e, &net)?,
        dir: Some(final_dir.clone()),
    };
    write_json(&dir.file(RunDir::RESULT), &result)?;
    replace_dir(dir.path(), &final_dir)?;
    Ok(result)
}

/// Where a run of `final_dir` trains until it is finished: `seed-S.partial` beside it (an
/// interrupted run resumes from there).
pub fn staging_dir(final_dir: &Path) -> PathBuf {
    let mut name = final_dir.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    final_dir.with_file_name(name)
}

/// Puts the finished `staged` directory in the place of `dst`: the old one is renamed aside,
/// the new one renamed in (each an atomic rename), then the old one removed.
fn replace_dir(staged: &Path, dst: &Path) -> Result<()> {
    let mut old_name = dst.file_name().unwrap_or_default().to_os_string();
    old_name.push(".old");
    let old = dst.with_file_name(old_name);
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    if dst.exists() {
        std::fs::rename(dst, &old).map_err(|e| Error::io(dst, e))?;
    }
    std::fs::rename(staged, dst).map_err(|e| Error::io(staged, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

/// Readies `e`'s staging directory for `net`: an interrupted run of exactly `e` stays (the
/// trainer continues it; returns the seconds its finished epochs took); anything else there
/// goes, also a run that differs only in its epoch count, which the trainer would continue.
fn prepare_staging(e: &Experiment, net: &Network, dir: &RunDir) -> Result<f64> {
    let exactly_e = dir.read_train_config().is_ok_and(|t| t == e.train);
    if exactly_e && crate::train::trainer::continues(dir, net, &e.train) {
        let history = dir.read_history()?.unwrap_or_default();
        println!(
            "{} seed {}: resuming after epoch {} of {}",
            e.name,
            e.train.seed,
            history.len(),
            e.train.epochs
        );
        return Ok(history.epochs.iter().map(|r| r.seconds).sum());
    }
    for f in RunDir::FILES {
        let path = dir.file(f);
        if path.exists() {
            std::fs::remove_file(&path).map_err(|err| Error::io(&path, err))?;
        }
    }
    Ok(0.0)
}

/// What a finished run is scored on.
struct Scores {
    test: crate::train::Evaluation,
    validation: Option<f64>,
    train_eval: f64,
    corruptions: Vec<super::CorruptionScore>,
}

/// Scores `net` on the test set, the validation images, the first training images in
/// evaluation mode and (for robustness runs) every MNIST-C corruption; writes the per-image
/// predictions to the run directory.
fn score(
    mnist: &Mnist,
    e: &Experiment,
    net: &Network,
    data: &TrainData,
    dir: &RunDir,
) -> Result<Scores> {
    let eval = |split: &Split| evaluate_in_batches(net, split, e.train.eval_batch_size);
    let test = eval(&data.test)?;
    let val = data.validation.as_ref().map(eval).transpose()?;
    let train_eval = eval(&data.train.take(TRAIN_EVAL_IMAGES))?;
    let mut tensors = vec![
        ("test.class".to_string(), classes(&test.predictions)?),
        ("test.p_true".to_string(), p_true(&test)?),
    ];
    if let Some(v) = &val {
        tensors.push(("validation.class".into(), classes(&v.predictions)?));
        tensors.push(("validation.p_true".into(), p_true(v)?));
    }
    let mut corruptions = Vec::new();
    if e.robustness {
        for (kind, split) in corrupted_test_sets(mnist)? {
            let c = eval(&split.take(data.test.len()))?;
            let mut predicted = [0u64; 10];
            for &p in &c.predictions {
                predicted[usize::from(p.min(9))] += 1;
            }
            tensors.push((format!("{}.class", kind.name()), classes(&c.predictions)?));
            corruptions.push(super::CorruptionScore {
                corruption: kind.name().to_string(),
                accuracy: c.accuracy,
                predicted,
            });
        }
    }
    // `test.class` and `validation.class` (u8, the predicted digit, in split order),
    // `test.p_true` and `validation.p_true` (f16, the probability of the true digit), and
    // `<corruption>.class` for each corrupted test set.
    let path = dir.file(RunDir::PREDICTIONS);
    candle_core::safetensors::save(&tensors.into_iter().collect(), &path)
        .map_err(|err| Error::invalid("predictions", format!("{}: {err}", path.display())))?;
    Ok(Scores {
        test,
        validation: val.map(|v| v.accuracy),
        train_eval: train_eval.accuracy,
        corruptions,
    })
}

/// A run's rough cost for ordering the work: epochs times training images times the model's
/// training time per image at one thread (measured on the 2-core AMD EPYC, µs).
pub fn cost(e: &Experiment) -> f64 {
    let per_image = match e.model.as_str() {
        "dense128" | "mlp-61k" | "mlp" => 7.0,
        "mlp-500-150" | "mlp-800" => 32.0,
        "mlp-advanced" => 58.0,
        "lenet5" | "lenet5-28" => 70.0,
        "lenet5-regularized" => 90.0,
        "lenet5-attention" => 170.0,
        "simple-cnn" => 290.0,
        "resnet" => 350.0,
        _ => 100.0,
    };
    let depth = match &e.config {
        crate::models::ModelConfig::Resnet(r) => r.blocks_per_stage as f64,
        _ => 1.0,
    };
    let images = e.train.train_limit.unwrap_or(55_000) as f64;
    e.train.epochs as f64
        * images
        * per_image
        * depth
        * if e.train.augment.is_some() { 1.3 } else { 1.0 }
}

fn classes(p: &[u8]) -> Result<candle_core::Tensor> {
    Ok(candle_core::Tensor::from_vec(
        p.to_vec(),
        p.len(),
        &Device::Cpu,
    )?)
}

/// The probability each sample's true digit got, as f16.
fn p_true(e: &crate::train::Evaluation) -> Result<candle_core::Tensor> {
    let p: Vec<f32> = e
        .labels
        .iter()
        .enumerate()
        .map(|(i, &l)| e.probs(i).map_or(0.0, |p| p[usize::from(l)]))
        .collect();
    Ok(
        candle_core::Tensor::from_vec(p, e.labels.len(), &Device::Cpu)?
            .to_dtype(candle_core::DType::F16)?,
    )
}

/// The corrupted copies of `mnist`'s test set, one per MNIST-C corruption (seed
/// [`crate::data::corrupt::DEFAULT_SEED`]), made once per process and dataset.
pub fn corrupted_test_sets(mnist: &Mnist) -> Result<Vec<(Corruption, Split)>> {
    type Sets = Vec<(PathBuf, Vec<(Corruption, Split)>)>;
    static SETS: std::sync::Mutex<Sets> = std::sync::Mutex::new(Vec::new());
    let mut cache = SETS
        .lock()
        .map_err(|_| Error::invalid("corruptions", "cache lock poisoned"))?;
    if let Some((_, sets)) = cache.iter().find(|(dir, _)| *dir == mnist.dir) {
        return Ok(sets.clone());
    }
    let sets = Corruption::ALL
        .into_iter()
        .map(|k| Ok((k, corrupt_split(&mnist.test, k, DEFAULT_SEED)?)))
        .collect::<Result<Vec<_>>>()?;
    cache.push((mnist.dir.clone(), sets.clone()));
    Ok(sets)
}

/// What [`run`] trains: experiments of the plan, by name, group or pattern (see
/// [`plan::selects`]: `"lenet5"`, `"part2-dropout"`, `"lenet5*"`), or experiments of your own.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// Each pattern's experiments of the plan, pattern by pattern (`""` selects all).
    Plan(Vec<String>),
    /// These experiments, every seed.
    Own(Vec<Experiment>),
}

impl From<&str> for Selection {
    fn from(pattern: &str) -> Self {
        Selection::Plan(vec![pattern.to_string()])
    }
}

impl From<&[&str]> for Selection {
    fn from(patterns: &[&str]) -> Self {
        Selection::Plan(patterns.iter().map(|p| p.to_string()).collect())
    }
}

impl<const N: usize> From<[&str; N]> for Selection {
    fn from(patterns: [&str; N]) -> Self {
        Selection::from(&patterns[..])
    }
}

impl From<&Experiment> for Selection {
    fn from(e: &Experiment) -> Self {
        Selection::Own(vec![e.clone()])
    }
}

impl From<Experiment> for Selection {
    fn from(e: Experiment) -> Self {
        Selection::Own(vec![e])
    }
}

/// The one way to run the study's experiments: trains every seed of what `what` selects (each
/// in `cfg.out/runs/NAME/seed-S`, `cfg.jobs` at a time), reusing runs that finished with
/// exactly this config (unless `cfg.force`) and resuming interrupted ones. Returns every
/// seed's result, experiment by experiment, in the order asked. What a notebook cell, the CLI
/// and the tests call.
///
/// ```no_run
/// use mnist_kit::{data::Mnist, study};
/// let mnist = Mnist::load_default()?;
/// let cfg = study::StudyConfig::for_notebooks();
/// let dropout = study::run(&mnist, &cfg, "part2-dropout")?;
/// study::comparison("dropout", &dropout)?; // mean ± std over seeds, shown as a table
/// study::findings(&mnist, &dropout)?; // verdicts: which differences are real
/// let pair = study::run(&mnist, &cfg, ["lenet5", "mlp-61k"])?; // exactly these two
/// # Ok::<(), mnist_kit::Error>(())
/// ```
///
/// An experiment of your own:
///
/// ```no_run
/// use mnist_kit::prelude::*;
/// use mnist_kit::models::MlpConfig;
/// let mnist = Mnist::load_default()?;
/// let cfg = StudyConfig::for_notebooks();
/// let model = ModelConfig::Mlp(MlpConfig { hidden: vec![128], ..Default::default() });
/// let train = cfg.adapt(TrainConfig { epochs: 10, ..Default::default() });
/// let runs = study::run(&mnist, &cfg, study::Experiment::new("my-mlp", "mlp", model, train))?;
/// # Ok::<(), mnist_kit::Error>(())
/// ```
pub fn run(
    mnist: &Mnist,
    cfg: &StudyConfig,
    what: impl Into<Selection>,
) -> Result<Vec<ExperimentResult>> {
    // Finished runs reused, said once for the whole call.
    let reused = Cell::new(0);
    let out = match what.into() {
        Selection::Plan(patterns) => {
            let mut out = Vec::new();
            for pattern in &patterns {
                let found = run_where(mnist, cfg, &reused, |e| plan::selects(pattern, e))?;
                if found.is_empty() && cfg.shard.is_none() {
                    return Err(matches_nothing(pattern));
                }
                out.extend(found);
            }
            out
        }
        Selection::Own(experiments) => {
            cfg.validate()?;
            for e in &experiments {
                e.train.validate()?;
                e.config.validate()?;
            }
            run_all(mnist, &experiments, cfg, &reused)?
        }
    };
    let n = reused.get();
    if n > 0 {
        println!(
            "{n} run{} already done with this config, reused (--force redoes them)",
            if n == 1 { "" } else { "s" }
        );
    }
    Ok(out)
}

fn matches_nothing(pattern: &str) -> Error {
    Error::invalid(
        "experiment selection",
        format!(
            "{pattern:?} is no experiment or group name and matches none (use * for a \
             pattern, e.g. \"lenet5*\")"
        ),
    )
}

/// The runs of `plan` already finished (in their slots, unless `force`) and the ones this
/// process trains (its shard's), each with its slot in plan order.
type Slots = (Vec<Option<ExperimentResult>>, Vec<(usize, Experiment)>);

fn plan_slots(plan: &[Experiment], cfg: &StudyConfig, runs: &Path, reused: &Cell<usize>) -> Slots {
    let mut slots: Vec<Option<ExperimentResult>> = Vec::new();
    let mut todo: Vec<(usize, Experiment)> = Vec::new();
    // The stable order of this call's runs, which a shard takes every n-th of.
    let mut order: Vec<(String, u64)> = plan
        .iter()
        .flat_map(|e| seeds_of(e, cfg).into_iter().map(|s| (e.name.clone(), s)))
        .collect();
    order.sort();
    let mine = |e: &Experiment| match cfg.shard {
        None => true,
        Some((i, n)) => order
            .binary_search(&(e.name.clone(), e.train.seed))
            .is_ok_and(|k| k % n == i),
    };
    for e in plan {
        for seed in seeds_of(e, cfg) {
            let e = with_seed(e, seed);
            match finished(&e, runs) {
                Some(done) if !cfg.force => {
                    reused.set(reused.get() + 1);
                    slots.push(Some(done));
                }
                _ if mine(&e) => {
                    todo.push((slots.len(), e));
                    slots.push(None);
                }
                // Another shard's run.
                _ => slots.push(None),
            }
        }
    }
    (slots, todo)
}

/// Runs every seed of every experiment in `plan` (reusing finished runs unless `force`),
/// `cfg.jobs` runs at a time, each on one thread; returns the results in plan order, seed by
/// seed. Training results do not depend on the thread count, so a run gives the same numbers
/// alone or beside another. `reused` counts the finished runs it reuses.
fn run_all(
    mnist: &Mnist,
    plan: &[Experiment],
    cfg: &StudyConfig,
    reused: &Cell<usize>,
) -> Result<Vec<ExperimentResult>> {
    let runs = cfg.out.join("runs");
    let (mut slots, mut todo) = plan_slots(plan, cfg, &runs, reused);
    // Longest runs first, so two workers finish together (the results keep plan order).
    todo.sort_by(|a, b| cost(&b.1).total_cmp(&cost(&a.1)));
    let workers = cfg.jobs.clamp(1, todo.len().max(1));
    let start = |e: &Experiment| {
        println!(
            "== {} seed {} ({} epochs{})",
            e.name,
            e.train.seed,
            e.train.epochs,
            if cfg.quick { ", quick" } else { "" }
        );
    };
    let progress = Progress::new(todo.iter().map(|(_, e)| cost(e)).collect());
    let done = |r: &ExperimentResult| {
        println!(
            "{} seed {}: test accuracy {:.2}% in {:.0} s; {}",
            r.name(),
            r.seed(),
            100.0 * r.test_accuracy,
            r.train_seconds,
            progress.finished(cost(&r.experiment))
        );
    };
    if workers == 1 {
        for (slot, e) in todo {
            start(&e);
            let r = run_one(mnist, &e, &runs, false)?;
            done(&r);
            slots[slot] = Some(r);
        }
    } else {
        for (slot, r) in run_workers(mnist, &todo, &runs, workers, &start, &done)? {
            slots[slot] = Some(r);
        }
    }
    if cfg.shard.is_some() {
        // Other shards' runs that have not finished are theirs to report.
        return Ok(slots.into_iter().flatten().collect());
    }
    slots
        .into_iter()
        .map(|s| s.ok_or_else(|| Error::invalid("study", "a run did not finish")))
        .collect()
}

/// The study's overall progress: runs done of the total, time so far, and time left from the
/// plan's cost estimates of the runs still to do.
struct Progress {
    total: usize,
    total_cost: f64,
    started: Instant,
    done: std::sync::Mutex<(usize, f64)>,
}

impl Progress {
    fn new(costs: Vec<f64>) -> Self {
        Progress {
            total: costs.len(),
            total_cost: costs.iter().sum(),
            started: Instant::now(),
            done: std::sync::Mutex::new((0, 0.0)),
        }
    }

    /// Counts a finished run of estimated cost `cost`; the progress line.
    fn finished(&self, cost: f64) -> String {
        let (n, c) = match self.done.lock() {
            Ok(mut d) => {
                d.0 += 1;
                d.1 += cost;
                *d
            }
            Err(_) => (0, 0.0),
        };
        let elapsed = self.started.elapsed().as_secs_f64();
        let left = if c > 0.0 {
            elapsed * (self.total_cost - c).max(0.0) / c
        } else {
            f64::NAN
        };
        format!(
            "[{n}/{} runs, {:.0} % of the work] {} elapsed, about {} left",
            self.total,
            100.0 * c / self.total_cost.max(1e-12),
            clock(elapsed),
            clock(left)
        )
    }
}

/// `1h 05m`, `4m 10s` or `12s`.
fn clock(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".into();
    }
    let s = seconds.round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

/// Trains the runs of `todo` on `workers` threads, each with a one-thread rayon pool, taking
/// them in order; after a failure no new run starts. The results come back in slot order.
fn run_workers(
    mnist: &Mnist,
    todo: &[(usize, Experiment)],
    runs: &Path,
    workers: usize,
    start: &(dyn Fn(&Experiment) + Sync),
    done: &(dyn Fn(&ExperimentResult) + Sync),
) -> Result<Vec<(usize, ExperimentResult)>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: std::sync::Mutex<Vec<(usize, Result<ExperimentResult>)>> =
        std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let pool = match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
                    Ok(p) => p,
                    Err(e) => {
                        failed.store(true, SeqCst);
                        if let Ok(mut r) = results.lock() {
                            r.push((0, Err(Error::invalid("thread pool", e.to_string()))));
                        }
                        return;
                    }
                };
                while !failed.load(SeqCst) {
                    let Some((slot, e)) = todo.get(next.fetch_add(1, SeqCst)) else {
                        return;
                    };
                    start(e);
                    let r = pool.install(|| run_one(mnist, e, runs, true));
                    match &r {
                        Ok(r) => done(r),
                        Err(_) => failed.store(true, SeqCst),
                    }
                    if let Ok(mut all) = results.lock() {
                        all.push((*slot, r));
                    }
                }
            });
        }
    });
    let mut all = results
        .into_inner()
        .map_err(|_| Error::invalid("study", "a worker thread panicked"))?;
    all.sort_by_key(|(slot, _)| *slot);
    all.into_iter().map(|(slot, r)| Ok((slot, r?))).collect()
}

/// Waits until every seed of `plan` has finished in `cfg.out/runs` (other shards run some of
/// them), checking every few seconds; returns their results.
fn wait_for(plan: &[Experiment], cfg: &StudyConfig) -> Result<Vec<ExperimentResult>> {
    let runs = cfg.out.join("runs");
    let mut announced = false;
    loop {
        let mut done = Vec::new();
        let mut missing = 0;
        for e in plan {
            for seed in seeds_of(e, cfg) {
                match finished(&with_seed(e, seed), &runs) {
                    Some(r) => done.push(r),
                    None => missing += 1,
                }
            }
        }
        if missing == 0 {
            return Ok(done);
        }
        if !announced {
            println!("waiting for {missing} grid run(s) of the other shards");
            announced = true;
        }
        std::thread::sleep(std::time::Duration::from_secs(3));
    }
}

fn run_where(
    mnist: &Mnist,
    cfg: &StudyConfig,
    reused: &Cell<usize>,
    select: impl Fn(&Experiment) -> bool,
) -> Result<Vec<ExperimentResult>> {
    cfg.validate()?;
    let (quick, seed) = (cfg.quick, cfg.seed);
    let fixed = plan::plan(quick, seed)?;
    // A tuned comparison needs its learning-rate grid first.
    let tunings: Vec<Tuning> = Tuning::all(quick, seed)
        .into_iter()
        .filter(|t| {
            t.start
                .iter()
                .any(|&(k, _)| t.tuned_run(k, 1e-3).is_ok_and(|e| select(&e)))
        })
        .collect();
    let picked: Vec<Experiment> = fixed.iter().filter(|e| select(e)).cloned().collect();
    let mut results = run_all(mnist, &picked, cfg, reused)?;
    // Grid rounds: every tuning's next grid runs together, until each has chosen its rates.
    let mut grid: Vec<ExperimentResult> = Vec::new();
    let mut chosen = vec![None; tunings.len()];
    for _round in 0..LR_LADDER.len() {
        let mut next = Vec::new();
        for (t, c) in tunings.iter().zip(chosen.iter_mut()) {
            match t.state(&grid)? {
                TuningState::Needs(runs) => next.extend(runs),
                TuningState::Chosen(rates) => *c = Some(rates),
            }
        }
        if next.is_empty() {
            break;
        }
        let ran = run_all(mnist, &next, cfg, reused)?;
        // A shard needs the whole round, its partners' runs too, before the next.
        grid.extend(if cfg.shard.is_some() {
            wait_for(&next, cfg)?
        } else {
            ran
        });
    }
    let mut tuned = Vec::new();
    for (t, c) in tunings.iter().zip(&chosen) {
        if let Some(rates) = c {
            tuned.extend(t.tuned(rates)?.into_iter().filter(|e| select(e)));
        }
    }
    results.extend(grid.into_iter().filter(|r| select(&r.experiment)));
    results.extend(run_all(mnist, &tuned, cfg, reused)?);
    Ok(results)
}

/// Every finished run of the plan in `cfg.out/runs` (the tuned optimizers at the rates their
/// finished grids chose), without training anything.
pub fn collect_finished(cfg: &StudyConfig) -> Result<Vec<ExperimentResult>> {
    collect_with(cfg, finished)
}

/// Every run of the plan in `cfg.out/runs` whose evidence is recorded ([`recorded`]): what a
/// clone of the repository holds, weights or not.
pub fn collect_recorded(cfg: &StudyConfig) -> Result<Vec<ExperimentResult>> {
    collect_with(cfg, recorded)
}

fn collect_with(
    cfg: &StudyConfig,
    read: fn(&Experiment, &Path) -> Option<ExperimentResult>,
) -> Result<Vec<ExperimentResult>> {
    let runs = cfg.out.join("runs");
    let gather = |plan: &[Experiment]| -> Vec<ExperimentResult> {
        plan.iter()
            .flat_map(|e| {
                seeds_of(e, cfg)
                    .into_iter()
                    .filter_map(|s| read(&with_seed(e, s), &runs))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let mut out = gather(&plan::plan(cfg.quick, cfg.seed)?);
    for t in Tuning::all(cfg.quick, cfg.seed) {
        // Walk the grid as it grew: each state names the next runs, which are read back.
        let mut grid: Vec<ExperimentResult> = Vec::new();
        for _ in 0..LR_LADDER.len() {
            match t.state(&grid)? {
                TuningState::Needs(runs) => {
                    let found = gather(&runs);
                    if found.is_empty() {
                        break;
                    }
                    grid.extend(found);
                }
                TuningState::Chosen(rates) => {
                    out.extend(gather(&t.tuned(&rates)?));
                    break;
                }
            }
        }
        out.extend(grid);
    }
    Ok(out)
}
