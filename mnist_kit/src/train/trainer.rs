//! The training loop: seeded batches (augmented in training only), forward/backward, the
//! optimizer step, per-epoch evaluation, early stopping, a non-finite guard and checkpoints in a
//! run directory that can be resumed exactly.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::config::{Monitor, TrainConfig};
use super::evaluate::{correct_and_predictions, evaluate};
use super::history::{EpochRecord, History};
use super::optim::{Optimizer, Overwrite};
use crate::data::batches::mix;
use crate::data::{BatchOptions, Mnist, Split};
use crate::fsutil::write_bytes_atomic;
use crate::models::layers::ParamKind;
use crate::models::network::{WEIGHTS_FILE, read_model_json};
use crate::models::{Model, Network};
use crate::ops::cpu::storage_slice;
use crate::{Error, Result};

/// Run-directory file names.
pub mod files {
    /// Model name, model config and training config.
    pub const CONFIG: &str = "config.json";
    /// Weights of the model as returned (best weights when restore-best applied).
    pub const WEIGHTS: &str = super::WEIGHTS_FILE;
    /// Weights after the last completed epoch.
    pub const LAST: &str = "last.safetensors";
    /// Weights of the best epoch so far (restore-best).
    pub const BEST: &str = "best.safetensors";
    /// Optimizer state after the last completed epoch.
    pub const OPTIMIZER: &str = "optimizer.safetensors";
    /// Per-epoch history.
    pub const HISTORY_CSV: &str = "history.csv";
    /// Per-epoch history with the early-stopping outcome.
    pub const HISTORY_JSON: &str = "history.json";
}

/// The splits a run trains and evaluates on.
#[derive(Debug, Clone)]
pub struct TrainData {
    /// Training samples.
    pub train: Split,
    /// Validation samples (monitored by early stopping).
    pub validation: Option<Split>,
    /// Test samples (evaluated per epoch only when asked).
    pub test: Split,
}

impl TrainData {
    /// Splits `mnist` as `cfg` says: seeded validation split, optional limits.
    pub fn new(mnist: &Mnist, cfg: &TrainConfig) -> Result<Self> {
        let (train, val) = mnist
            .train
            .split_validation(cfg.validation, cfg.split_seed.unwrap_or(cfg.seed))?;
        let train = match cfg.train_limit {
            Some(n) => train.take(n),
            None => train,
        };
        let test = match cfg.test_limit {
            Some(n) => mnist.test.take(n),
            None => mnist.test.clone(),
        };
        Ok(TrainData {
            train,
            validation: (!val.is_empty()).then_some(val),
            test,
        })
    }
}

/// Trains one network; keeps the optimizer and early-stopping state so that training can be
/// continued or resumed from a run directory.
pub struct Trainer {
    net: Network,
    cfg: TrainConfig,
    opt: Optimizer,
    history: History,
    best: Option<(f64, Vec<Tensor>)>,
    run_dir: Option<PathBuf>,
    /// Names the run in log lines (default: the model's name).
    label: Option<String>,
    /// The in-place progress bar on a terminal (off when runs share the terminal).
    progress_bar: bool,
}

impl Trainer {
    /// A trainer for `net` (the trainer shares its parameters: training updates `net`).
    pub fn new(net: &Network, cfg: TrainConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Trainer {
            opt: Optimizer::new(net, cfg.optimizer),
            history: History {
                model: net.name().to_string(),
                ..Default::default()
            },
            net: net.clone(),
            cfg,
            best: None,
            run_dir: None,
            label: None,
            progress_bar: true,
        })
    }

    /// Names the run in its log lines (`"lenet5 seed 43"`), and turns the in-place progress
    /// bar off (for runs that share a terminal).
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self.progress_bar = false;
        self
    }

    /// Writes config, history and checkpoints to `dir` after every epoch.
    pub fn with_run_dir(mut self, dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        self.run_dir = Some(dir);
        self.write_config()?;
        Ok(self)
    }

    /// Reopens a run directory: the model at its last completed epoch, optimizer state and
    /// history, so that [`Trainer::fit`] continues exactly where it stopped. `epochs`, when
    /// given, replaces the configured epoch count.
    pub fn resume(dir: impl AsRef<Path>, epochs: Option<usize>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let (name, model_cfg) = read_model_json(&dir.join(files::CONFIG))?;
        let mut cfg = read_train_config(dir)?;
        if let Some(e) = epochs {
            cfg.epochs = e;
        }
        let net = Network::named(name, &model_cfg, cfg.seed, device)?;
        let last = dir.join(files::LAST);
        net.load_weights(if last.exists() {
            last
        } else {
            dir.join(files::WEIGHTS)
        })?;
        let mut t = Trainer::new(&net, cfg)?;
        let opt_path = dir.join(files::OPTIMIZER);
        if opt_path.exists() {
            let state = candle_core::safetensors::load(&opt_path, &Device::Cpu).map_err(|e| {
                Error::Checkpoint {
                    path: opt_path.clone(),
                    reason: e.to_string(),
                }
            })?;
            t.opt.load_state_tensors(&state)?;
        }
        let hist = dir.join(files::HISTORY_JSON);
        if hist.exists() {
            t.history = History::read_json(&hist)?;
        }
        if let (Some(es), Some(best_epoch)) = (t.cfg.early_stopping, t.history.best_epoch) {
            let best_path = dir.join(files::BEST);
            if let Some(rec) = t.history.epochs.get(best_epoch.saturating_sub(1)) {
                let value = monitored(rec, es.monitor).unwrap_or(f64::NAN);
                let snap = if best_path.exists() {
                    let probe = Network::named(t.net.name(), t.net.config(), 0, device)?;
                    probe.load_weights(&best_path)?;
                    probe.snapshot()?
                } else {
                    t.net.snapshot()?
                };
                t.best = Some((value, snap));
            }
        }
        t.run_dir = Some(dir.to_path_buf());
        Ok(t)
    }

    /// The network being trained.
    pub fn network(&self) -> &Network {
        &self.net
    }
    /// The history so far.
    pub fn history(&self) -> &History {
        &self.history
    }
    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Trains until `cfg.epochs` epochs are done (counting epochs already in the history),
    /// early stopping fires or the time budget runs out. Returns the history.
    pub fn fit(&mut self, data: &TrainData) -> Result<History> {
        // Train fresh variables (see `Network::rebuilt`), then hand the values back to the
        // caller's network, also when training stopped on an error.
        let shared = self.net.clone();
        self.net = shared.rebuilt()?;
        // On a worker of the global rayon pool: the kernels' parallel loops then split work
        // with the other workers directly, instead of each one waking the pool from outside
        // and blocking this thread on a latch until it is done.
        let result = rayon::scope(|_| self.fit_epochs(data));
        let synced = shared.restore(&self.net.snapshot()?);
        self.net = shared;
        let history = result?;
        synced?;
        Ok(history)
    }

    fn fit_epochs(&mut self, data: &TrainData) -> Result<History> {
        let started = Instant::now();
        let es = self.cfg.early_stopping;
        if self.history.stop_reason == "early_stopping" {
            return Ok(self.history.clone());
        }
        let mut params = self.param_buffers()?;
        if self.history.is_empty() {
            // A good checkpoint exists from the start: a diverging first epoch keeps it.
            if let Some(dir) = &self.run_dir {
                self.net.save_weights(dir.join(files::LAST))?;
            }
        }
        let trainable: Vec<_> = self
            .net
            .params()
            .iter()
            .filter(|p| p.trainable())
            .cloned()
            .collect();
        let spec = self.net.input_spec();
        let device = self.net.device().clone();
        let opts = BatchOptions {
            batch_size: self.cfg.batch_size,
            shuffle: true,
            seed: self.cfg.seed,
            normalization: self.cfg.normalization,
        };
        let augment = self.cfg.augment;
        let transform = move |img: &mut [f32], side: usize, rng: &mut ChaCha8Rng| {
            if let Some(a) = augment {
                a.apply(img, side, rng);
            }
        };
        let mut stop_reason = "completed";
        while self.history.len() < self.cfg.epochs {
            let epoch = self.history.len(); // 0-based
            let lr = self.cfg.schedule.lr(self.cfg.lr, epoch, self.cfg.epochs);
            self.net
                .reseed_dropout(mix(self.cfg.seed ^ 0xD0, epoch as u64));
            let mut batches = data.train.batches(spec, opts, epoch, &device)?;
            if augment.is_some() {
                batches =
                    batches.with_transform(&transform, mix(self.cfg.seed ^ 0xA6, epoch as u64));
            }
            let num_batches = batches.num_batches();
            let t0 = Instant::now();
            let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
            let stats = self.cfg.grad_stats;
            let mut grad_sum: Vec<Vec<f64>> = if stats {
                params.iter().map(|p| vec![0.0; p.len()]).collect()
            } else {
                Vec::new()
            };
            let mut grad_sq = 0f64;
            let mut layer_norm_sum = vec![0f64; trainable.len()];
            let mut loss_trace = Vec::new();
            let mut window = (0f64, 0usize);
            let mut out_of_time = false;
            for (b, batch) in batches.enumerate() {
                let batch = batch?;
                let logits = self.net.forward_t(&batch.images, true)?;
                let loss = candle_nn::loss::cross_entropy(&logits, &batch.labels)?;
                // One cross-entropy per step: the loss tensor is backpropagated and read here.
                let l = f64::from(loss.to_scalar::<f32>()?);
                let (c, _) = correct_and_predictions(&logits, &batch.labels)?;
                if !l.is_finite() {
                    return Err(self.non_finite("loss", epoch, b));
                }
                let grads = loss.backward()?;
                // The gradients are read where backprop left them (no host copies).
                let grad_tensors = trainable
                    .iter()
                    .map(|p| {
                        grads
                            .get(p.var.as_tensor())
                            .map(Tensor::contiguous)
                            .transpose()
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                let held: Vec<_> = grad_tensors
                    .iter()
                    .map(|g| g.as_ref().map(Tensor::storage_and_layout))
                    .collect();
                let zeros = if held.iter().any(Option::is_none) {
                    vec![0f32; params.iter().map(Vec::len).max().unwrap_or(0)]
                } else {
                    Vec::new()
                };
                let flat = held
                    .iter()
                    .zip(&params)
                    .map(|(h, p)| match h {
                        Some((s, l)) => storage_slice(s, l, "gradient"),
                        None => Ok(&zeros[..p.len()]),
                    })
                    .collect::<candle_core::Result<Vec<&[f32]>>>()?;
                if stats {
                    let mut sq = 0f64;
                    for ((acc, g), norm) in grad_sum.iter_mut().zip(&flat).zip(&mut layer_norm_sum)
                    {
                        let layer_sq = accumulate(acc, g);
                        *norm += layer_sq.sqrt();
                        sq += layer_sq;
                    }
                    if !sq.is_finite() {
                        return Err(self.non_finite("gradient", epoch, b));
                    }
                    grad_sq += sq;
                }
                if self.cfg.loss_every > 0 {
                    window = (window.0 + l, window.1 + 1);
                    if window.1 == self.cfg.loss_every {
                        loss_trace.push(window.0 / window.1 as f64);
                        window = (0.0, 0);
                    }
                }
                let finite = self.opt.step(&mut params, &flat, lr)?;
                // The variables still hold the pre-step weights: the last good ones.
                if !finite {
                    return Err(self.non_finite("weights", epoch, b));
                }
                drop(flat);
                drop(held);
                for (p, buf) in trainable.iter().zip(&params) {
                    p.var.as_tensor().inplace_op1(&Overwrite(buf))?;
                }
                let n = batch.positions.len();
                loss_sum += l * n as f64;
                correct += c;
                seen += n;
                self.progress(
                    epoch,
                    b + 1,
                    num_batches,
                    loss_sum / seen as f64,
                    correct as f64 / seen as f64,
                );
                if let Some(budget) = self.cfg.time_budget_secs
                    && started.elapsed().as_secs_f64() > budget
                {
                    out_of_time = true;
                    break;
                }
            }
            let seconds = t0.elapsed().as_secs_f64();
            let steps = num_batches.max(1) as f64;
            let mean_sq: f64 = grad_sum.iter().flatten().map(|s| (s / steps).powi(2)).sum();
            let val = match &data.validation {
                Some(v) => Some(evaluate(
                    &self.net,
                    v,
                    self.cfg.eval_batch_size,
                    self.cfg.normalization,
                )?),
                None => None,
            };
            let test = if self.cfg.eval_test_each_epoch {
                Some(evaluate(
                    &self.net,
                    &data.test,
                    self.cfg.eval_batch_size,
                    self.cfg.normalization,
                )?)
            } else {
                None
            };
            let record = EpochRecord {
                epoch: epoch + 1,
                lr,
                train_loss: loss_sum / seen.max(1) as f64,
                train_accuracy: correct as f64 / seen.max(1) as f64,
                val_loss: val.as_ref().map(|e| e.loss),
                val_accuracy: val.as_ref().map(|e| e.accuracy),
                test_loss: test.as_ref().map(|e| e.loss),
                test_accuracy: test.as_ref().map(|e| e.accuracy),
                seconds,
                images_per_sec: seen as f64 / seconds.max(1e-9),
                weight_norm: params
                    .iter()
                    .flatten()
                    .map(|&w| f64::from(w).powi(2))
                    .sum::<f64>()
                    .sqrt(),
                grad_noise: stats.then(|| (grad_sq / steps - mean_sq).max(0.0)),
                grad_mean_norm: stats.then(|| mean_sq.sqrt()),
                layer_grad_norms: if stats {
                    trainable
                        .iter()
                        .zip(&layer_norm_sum)
                        .filter(|(p, _)| p.kind == ParamKind::Weight)
                        .map(|(p, s)| (p.name.clone(), s / steps))
                        .collect()
                } else {
                    Vec::new()
                },
                loss_trace,
            };
            self.log_epoch(&record);
            self.history.epochs.push(record);
            let mut stop = false;
            if let Some(es) = es {
                let rec = self.history.last().cloned();
                if let Some(value) = rec.as_ref().and_then(|r| monitored(r, es.monitor)) {
                    let watching = epoch + 1 > es.start_from_epoch;
                    if watching && es.improves(value, self.best.as_ref().map(|b| b.0)) {
                        self.best = Some((value, self.net.snapshot()?));
                        self.history.best_epoch = Some(epoch + 1);
                        if let Some(dir) = &self.run_dir {
                            self.net.save_weights(dir.join(files::BEST))?;
                        }
                    }
                    let since_best = self
                        .history
                        .best_epoch
                        .map(|b| epoch + 1 - b)
                        .unwrap_or(epoch + 1 - es.start_from_epoch.min(epoch + 1));
                    if watching && since_best >= es.patience.max(1) {
                        stop = true;
                        stop_reason = "early_stopping";
                        self.history.stopped_epoch = Some(epoch + 1);
                    }
                }
            }
            if out_of_time {
                stop = true;
                stop_reason = "time_budget";
            }
            self.history.stop_reason = if stop {
                stop_reason.into()
            } else {
                "running".into()
            };
            self.checkpoint()?;
            if stop {
                break;
            }
        }
        if self.history.stop_reason == "running" || self.history.stop_reason.is_empty() {
            self.history.stop_reason = stop_reason.into();
        }
        if let (Some(es), Some((_, snap))) = (es, &self.best)
            && es.restore_best_weights
        {
            self.net.restore(snap)?;
        }
        if let Some(dir) = &self.run_dir {
            self.net.save_weights(dir.join(files::WEIGHTS))?;
            self.history.write_json(dir.join(files::HISTORY_JSON))?;
            self.history.write_csv(dir.join(files::HISTORY_CSV))?;
        }
        Ok(self.history.clone())
    }

    fn param_buffers(&self) -> Result<Vec<Vec<f32>>> {
        self.net
            .params()
            .iter()
            .filter(|p| p.trainable())
            .map(|p| Ok(p.var.flatten_all()?.to_vec1::<f32>()?))
            .collect()
    }

    /// Saves the last good weights, then builds the error.
    fn non_finite(&self, quantity: &'static str, epoch: usize, batch: usize) -> Error {
        if let Some(dir) = &self.run_dir
            && let Err(e) = self.net.save_weights(dir.join(files::LAST))
        {
            return e;
        }
        Error::NonFinite {
            quantity,
            epoch: epoch + 1,
            batch: batch + 1,
        }
    }

    fn write_config(&self) -> Result<()> {
        let Some(dir) = &self.run_dir else {
            return Ok(());
        };
        let json = serde_json::json!({
            "name": self.net.name(),
            "config": self.net.config(),
            "train": self.cfg,
        });
        let bytes = serde_json::to_vec_pretty(&json).map_err(|source| Error::Json {
            context: "run config".into(),
            source,
        })?;
        write_bytes_atomic(&dir.join(files::CONFIG), &bytes)
    }

    fn checkpoint(&self) -> Result<()> {
        let Some(dir) = &self.run_dir else {
            return Ok(());
        };
        self.net.save_weights(dir.join(files::LAST))?;
        let state = self.opt.state_tensors()?;
        crate::fsutil::write_atomic(&dir.join(files::OPTIMIZER), |tmp| {
            candle_core::safetensors::save(&state, tmp).map_err(Error::from)
        })?;
        self.history.write_json(dir.join(files::HISTORY_JSON))?;
        self.history.write_csv(dir.join(files::HISTORY_CSV))
    }

    fn progress(&self, epoch: usize, batch: usize, total: usize, loss: f64, acc: f64) {
        if !self.cfg.verbose {
            return;
        }
        let line = format!(
            "epoch {}/{} batch {batch}/{total} loss {loss:.4} acc {:.2}%",
            epoch + 1,
            self.cfg.epochs,
            100.0 * acc
        );
        if self.cfg.log_every > 0 && batch.is_multiple_of(self.cfg.log_every) {
            println!("  {line}");
        } else if self.progress_bar
            && std::io::stderr().is_terminal()
            && (batch.is_multiple_of(10) || batch == total)
        {
            let width = 30;
            let done = width * batch / total.max(1);
            eprint!(
                "\r[{}{}] {line}",
                "#".repeat(done),
                ".".repeat(width - done)
            );
            let _ = std::io::stderr().flush();
        }
    }

    fn log_epoch(&self, r: &EpochRecord) {
        if !self.cfg.verbose {
            return;
        }
        if self.progress_bar && std::io::stderr().is_terminal() {
            eprint!("\r\x1b[2K");
        }
        let opt = |name: &str, l: Option<f64>, a: Option<f64>| match (l, a) {
            (Some(l), Some(a)) => format!("  {name}_loss {l:.4} {name}_acc {:.2}%", 100.0 * a),
            _ => String::new(),
        };
        println!(
            "{} epoch {}/{}: loss {:.4} acc {:.2}%{}{}  lr {:.2e}  {:.1}s {:.0} img/s",
            self.label.as_deref().unwrap_or(self.net.name()),
            r.epoch,
            self.cfg.epochs,
            r.train_loss,
            100.0 * r.train_accuracy,
            opt("val", r.val_loss, r.val_accuracy),
            opt("test", r.test_loss, r.test_accuracy),
            r.lr,
            r.seconds,
            r.images_per_sec
        );
    }
}

fn monitored(r: &EpochRecord, m: Monitor) -> Option<f64> {
    match m {
        Monitor::ValLoss => r.val_loss,
        Monitor::ValAccuracy => r.val_accuracy,
    }
}

fn read_train_config(dir: &Path) -> Result<TrainConfig> {
    let path = dir.join(files::CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    #[derive(serde::Deserialize)]
    struct Wrapper {
        #[serde(default)]
        train: TrainConfig,
    }
    let w: Wrapper = serde_json::from_str(&text).map_err(|source| Error::Json {
        context: path.display().to_string(),
        source,
    })?;
    Ok(w.train)
}

/// Trains `net` on `mnist` with `cfg` (no run directory) and returns the history.
///
/// ```no_run
/// use mnist_kit::{data::Mnist, models::Network, train::{fit, TrainConfig}};
/// let mnist = Mnist::load_default()?;
/// let net = Network::preset("dense128", 42, &mnist_kit::candle::Device::Cpu)?;
/// let history = fit(&net, &mnist, &TrainConfig { epochs: 2, ..Default::default() })?;
/// println!("{}", history.to_dataframe()?);
/// # Ok::<(), mnist_kit::Error>(())
/// ```
pub fn fit(net: &Network, mnist: &Mnist, cfg: &TrainConfig) -> Result<History> {
    let data = TrainData::new(mnist, cfg)?;
    Trainer::new(net, cfg.clone())?.fit(&data)
}

/// A finished run read back from its directory.
#[derive(Debug, Clone)]
pub struct Run {
    /// The model as returned by training (best weights when restore-best applied).
    pub net: Network,
    /// The training configuration.
    pub train: TrainConfig,
    /// The history.
    pub history: History,
    /// Where it was read from.
    pub dir: PathBuf,
}

/// Loads a run directory written by a [`Trainer`] with a run dir (or `mnist-kit train`).
pub fn load_run(dir: impl AsRef<Path>, device: &Device) -> Result<Run> {
    let dir = dir.as_ref();
    let net = Network::load(dir, device)?;
    let train = read_train_config(dir)?;
    let hist = dir.join(files::HISTORY_JSON);
    let history = if hist.exists() {
        History::read_json(&hist)?
    } else {
        History::default()
    };
    Ok(Run {
        net,
        train,
        history,
        dir: dir.to_path_buf(),
    })
}

/// `acc += g` (in f64) and returns `sum(g^2)`: the per-step gradient statistics, in fixed
/// chunks on the rayon pool, their partial sums added in order (the same on any thread count).
fn accumulate(acc: &mut [f64], g: &[f32]) -> f64 {
    use super::optim::{CHUNK, MIN_CHUNKS_PER_TASK};
    let partial: Vec<f64> = acc
        .par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .with_min_len(MIN_CHUNKS_PER_TASK)
        .map(|(acc, g)| accumulate_chunk(acc, g))
        .collect();
    partial.iter().sum()
}

crate::ops::simd::multiversion! {
    /// `acc += g` and `sum(g^2)` of one chunk, in order.
    fn accumulate_chunk(acc: &mut [f64], g: &[f32]) -> f64 {
        let mut sq = 0f64;
        for (a, &v) in acc.iter_mut().zip(g) {
            let v = f64::from(v);
            *a += v;
            sq += v * v;
        }
        sq
    }
}
