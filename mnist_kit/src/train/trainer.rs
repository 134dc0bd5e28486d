//! The training loop: seeded batches (augmented in training only), forward/backward, the
//! optimizer step, per-epoch evaluation, early stopping, a non-finite guard and checkpoints in a
//! run directory that can be resumed exactly.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;

use super::config::{Monitor, TrainConfig};
use super::evaluate::{correct_and_predictions, evaluate_in_batches};
use super::history::{EpochRecord, History, StopReason};
use super::run_dir::RunDir;
use super::step::{self, GradStats, GradSummary, Optimizer, Outcome};
use crate::data::batches::mix;
use crate::data::{BatchOptions, Mnist, Split};
use crate::models::{Model, Network};
use crate::{Error, Result};

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

/// Trains networks: the configuration once, then [`Trainer::fit`] with the network and the
/// data. With a run directory it writes the config, the history and checkpoints after every
/// epoch, and a later `fit` into the same directory resumes where an interrupted one stopped.
///
/// ```no_run
/// use mnist_kit::prelude::*;
/// let mnist = Mnist::load_default()?;
/// let mut net = Network::preset("lenet5", 42, &Device::Cpu)?;
/// let cfg = TrainConfig { epochs: 2, ..Default::default() };
/// let history = Trainer::new(cfg).run_dir("runs/lenet5").fit(&mut net, &mnist)?;
/// println!("{}", history.to_dataframe()?);
/// let run = Run::open("runs/lenet5")?; // the network, its config and history, read back
/// # Ok::<(), mnist_kit::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Trainer {
    cfg: TrainConfig,
    run_dir: Option<PathBuf>,
    label: Option<String>,
}

impl Trainer {
    /// A trainer with `cfg` (checked when [`Trainer::fit`] starts).
    pub fn new(cfg: TrainConfig) -> Self {
        Trainer {
            cfg,
            run_dir: None,
            label: None,
        }
    }

    /// Writes config, history and checkpoints to `dir` after every epoch, and resumes from
    /// there: when `dir` holds a run of the same network and training config (the epoch count
    /// and the logging aside) that has not finished, `fit` continues it from its last
    /// completed epoch, bit for bit as if it had not stopped; a run of another config there is
    /// replaced.
    pub fn run_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.run_dir = Some(dir.into());
        self
    }

    /// Names the run in its log lines (`"lenet5 seed 43"`), and turns the in-place progress
    /// bar off (for runs that share a terminal).
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Trains `net` on `mnist` as configured (the validation split and limits of the config)
    /// until the epochs are done (counting those a resumed run had done), early stopping
    /// fires or the time budget runs out; `net` ends with the trained weights (the best
    /// epoch's when early stopping restores them), and the config's input normalization
    /// (saved with it; every later evaluation of it scales inputs so). Returns the history.
    pub fn fit(&self, net: &mut Network, mnist: &Mnist) -> Result<History> {
        self.cfg.validate()?;
        net.set_normalization(self.cfg.normalization);
        let data = TrainData::new(mnist, &self.cfg)?;
        let mut session = match &self.run_dir {
            Some(path) => {
                let dir = RunDir::new(path.as_path());
                if continues(&dir, net, &self.cfg) {
                    Session::resume(dir, net, self.cfg.clone())?
                } else {
                    Session::new(net, self.cfg.clone())?.in_dir(dir)?
                }
            }
            None => Session::new(net, self.cfg.clone())?,
        };
        if let Some(label) = &self.label {
            session.label = Some(label.clone());
            session.progress_bar = false;
        }
        session.fit(&data)
    }
}

/// True when `dir` holds a run of `net`'s model trained with `cfg` (the epoch count and the
/// logging aside) that can continue: a completed epoch, the last weights and the optimizer
/// state.
pub(crate) fn continues(dir: &RunDir, net: &Network, cfg: &TrainConfig) -> bool {
    let same_model = dir
        .read_model()
        .is_ok_and(|(name, model)| name == net.name() && &model == net.config());
    let training = |t: &TrainConfig| TrainConfig {
        epochs: 0,
        verbose: false,
        log_every: 0,
        ..t.clone()
    };
    let same_train = dir
        .read_train_config()
        .is_ok_and(|t| training(&t) == training(cfg));
    let epochs_done = dir.read_history().ok().flatten().map_or(0, |h| h.len());
    same_model
        && same_train
        && epochs_done > 0
        && dir.has(RunDir::LAST)
        && dir.has(RunDir::OPTIMIZER)
}

/// One network in training: the optimizer and early-stopping state, and the run directory
/// it checkpoints to.
struct Session {
    net: Network,
    cfg: TrainConfig,
    opt: Optimizer,
    history: History,
    best: Option<(f64, Vec<Tensor>)>,
    run_dir: Option<RunDir>,
    /// Names the run in log lines (default: the model's name).
    label: Option<String>,
    /// The in-place progress bar on a terminal (off when runs share the terminal).
    progress_bar: bool,
}

impl Session {
    /// A session for `net` (it shares its parameters: training updates `net`).
    fn new(net: &Network, cfg: TrainConfig) -> Result<Self> {
        Ok(Session {
            opt: Optimizer::for_network(net, cfg.optimizer, cfg.lr)?,
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

    /// Trains into `dir` from the start: removes another run's checkpoints there, then writes
    /// the config.
    fn in_dir(mut self, dir: RunDir) -> Result<Self> {
        let dir = RunDir::create(dir.path())?;
        for f in RunDir::FILES {
            let path = dir.file(f);
            if path.exists() {
                std::fs::remove_file(&path).map_err(|err| Error::io(&path, err))?;
            }
        }
        dir.write_config(&self.net, Some(&self.cfg))?;
        self.run_dir = Some(dir);
        Ok(self)
    }

    /// Reopens the interrupted run in `dir` (see [`continues`]) for `net`: its weights after
    /// the last completed epoch, the optimizer state, the history and the best epoch so far,
    /// so that [`Session::fit`] continues exactly where it stopped. `cfg` may set another
    /// epoch count.
    fn resume(dir: RunDir, net: &Network, cfg: TrainConfig) -> Result<Self> {
        net.load_weights(dir.file(if dir.has(RunDir::LAST) {
            RunDir::LAST
        } else {
            RunDir::WEIGHTS
        }))?;
        let mut t = Session::new(net, cfg)?;
        if dir.has(RunDir::OPTIMIZER) {
            let path = dir.file(RunDir::OPTIMIZER);
            let state = candle_core::safetensors::load(&path, &Device::Cpu).map_err(|e| {
                Error::Checkpoint {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?;
            t.opt.state_mut().load_state_tensors(&state)?;
        }
        if let Some(h) = dir.read_history()? {
            t.history = h;
        }
        if let (Some(es), Some(best_epoch)) = (t.cfg.early_stopping, t.history.best_epoch)
            && let Some(rec) = t.history.epochs.get(best_epoch.saturating_sub(1))
        {
            let value = monitored(rec, es.monitor).unwrap_or(f64::NAN);
            let snap = if dir.has(RunDir::BEST) {
                let probe = Network::named(t.net.name(), t.net.config(), 0, t.net.device())?;
                probe.load_weights(dir.file(RunDir::BEST))?;
                probe.snapshot()?
            } else {
                t.net.snapshot()?
            };
            t.best = Some((value, snap));
        }
        dir.write_config(&t.net, Some(&t.cfg))?;
        t.run_dir = Some(dir);
        Ok(t)
    }

    /// Trains until `cfg.epochs` epochs are done (counting epochs already in the history),
    /// early stopping fires or the time budget runs out. Returns the history.
    fn fit(&mut self, data: &TrainData) -> Result<History> {
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
        if self.history.stop_reason == StopReason::EarlyStopping {
            return Ok(self.history.clone());
        }
        self.opt.bind(&self.net)?;
        if self.history.is_empty()
            && let Some(dir) = &self.run_dir
        {
            // A good checkpoint exists from the start: a diverging first epoch keeps it.
            self.net.save_weights(dir.file(RunDir::LAST))?;
        }
        let mut stop_reason = StopReason::Completed;
        while self.history.len() < self.cfg.epochs {
            let epoch = self.history.len(); // 0-based
            let lr = self.cfg.schedule.lr(self.cfg.lr, epoch, self.cfg.epochs);
            let trained = self.train_epoch(data, epoch, lr, started)?;
            let record = self.record(data, epoch, lr, trained.measured)?;
            self.log_epoch(&record);
            self.history.epochs.push(record);
            let early = self.early_stopping(epoch)?;
            let stop = if trained.out_of_time {
                Some(StopReason::TimeBudget)
            } else if early {
                Some(StopReason::EarlyStopping)
            } else {
                None
            };
            self.history.stop_reason = stop.unwrap_or(StopReason::Running);
            self.checkpoint()?;
            if let Some(reason) = stop {
                stop_reason = reason;
                break;
            }
        }
        self.finish(stop_reason)
    }

    /// One epoch of training at rate `lr`: for every batch, forward, loss, backward and the
    /// optimizer step.
    fn train_epoch(
        &mut self,
        data: &TrainData,
        epoch: usize,
        lr: f64,
        started: Instant,
    ) -> Result<EpochTraining> {
        self.net
            .reseed_dropout(mix(self.cfg.seed ^ 0xD0, epoch as u64));
        let spec = self.net.input_spec();
        let device = self.net.device().clone();
        let opts = BatchOptions {
            batch_size: self.cfg.batch_size,
            shuffle: true,
            seed: self.cfg.seed,
        };
        let augment = self.cfg.augment;
        let transform = move |img: &mut [f32], side: usize, rng: &mut ChaCha8Rng| {
            if let Some(a) = augment {
                a.apply(img, side, rng);
            }
        };
        let mut batches = data.train.batches(spec, opts, epoch, &device)?;
        if augment.is_some() {
            batches = batches.with_transform(&transform, mix(self.cfg.seed ^ 0xA6, epoch as u64));
        }
        let num_batches = batches.num_batches();
        let t0 = Instant::now();
        let mut m = Measured::default();
        let mut stats = self.cfg.grad_stats.then(|| GradStats::new(&self.opt));
        let mut trace = LossTrace::new(self.cfg.loss_every);
        let mut out_of_time = false;
        for (b, batch) in batches.enumerate() {
            let batch = batch?;
            let logits = self.net.forward_t(&batch.images, true)?;
            let loss = step::loss(&logits, &batch.labels, self.cfg.label_smoothing)?;
            // One loss per step: the loss tensor is backpropagated and read here.
            let l = f64::from(loss.to_scalar::<f32>()?);
            let (c, _) = correct_and_predictions(&logits, &batch.labels)?;
            if !l.is_finite() {
                return Err(self.non_finite("loss", epoch, b));
            }
            let grads = loss.backward()?;
            let outcome = self
                .opt
                .step_observed(&grads, lr, |g| stats.as_mut().is_none_or(|s| s.add(g)))?;
            match outcome {
                Outcome::Applied => {}
                Outcome::Refused => return Err(self.non_finite("gradient", epoch, b)),
                Outcome::NonFiniteWeights => return Err(self.non_finite("weights", epoch, b)),
            }
            trace.push(l);
            m.add(l, c, batch.positions.len());
            self.progress(epoch, b + 1, num_batches, m.loss(), m.accuracy());
            if let Some(budget) = self.cfg.time_budget_secs
                && started.elapsed().as_secs_f64() > budget
            {
                out_of_time = true;
                break;
            }
        }
        m.seconds = t0.elapsed().as_secs_f64();
        m.grads = stats.map(|s| s.finish(num_batches));
        m.loss_trace = trace.points;
        Ok(EpochTraining {
            measured: m,
            out_of_time,
        })
    }

    /// The epoch's record: its training measurements, then validation and (when asked) test
    /// evaluation.
    fn record(&self, data: &TrainData, epoch: usize, lr: f64, m: Measured) -> Result<EpochRecord> {
        let eval = |split: &crate::data::Split| {
            evaluate_in_batches(&self.net, split, self.cfg.eval_batch_size)
        };
        let val = data.validation.as_ref().map(eval).transpose()?;
        let test = if self.cfg.eval_test_each_epoch {
            Some(eval(&data.test)?)
        } else {
            None
        };
        let (train_loss, train_accuracy) = (m.loss(), m.accuracy());
        let (grad_noise, grad_mean_norm, layer_grad_norms) = match m.grads {
            Some(g) => (Some(g.noise), Some(g.mean_norm), g.layer_norms),
            None => (None, None, Vec::new()),
        };
        Ok(EpochRecord {
            epoch: epoch + 1,
            lr,
            train_loss,
            train_accuracy,
            val_loss: val.as_ref().map(|e| e.loss),
            val_accuracy: val.as_ref().map(|e| e.accuracy),
            test_loss: test.as_ref().map(|e| e.loss),
            test_accuracy: test.as_ref().map(|e| e.accuracy),
            seconds: m.seconds,
            images_per_sec: m.seen as f64 / m.seconds.max(1e-9),
            weight_norm: self.opt.weight_norm(),
            grad_noise,
            grad_mean_norm,
            layer_grad_norms,
            loss_trace: m.loss_trace,
        })
    }

    /// Early stopping after `epoch`: keeps the best weights so far, and says whether the
    /// patience has run out.
    fn early_stopping(&mut self, epoch: usize) -> Result<bool> {
        let Some(es) = self.cfg.early_stopping else {
            return Ok(false);
        };
        let Some(value) = self.history.last().and_then(|r| monitored(r, es.monitor)) else {
            return Ok(false);
        };
        let watching = epoch + 1 > es.start_from_epoch;
        if watching && es.improves(value, self.best.as_ref().map(|b| b.0)) {
            self.best = Some((value, self.net.snapshot()?));
            self.history.best_epoch = Some(epoch + 1);
            if let Some(dir) = &self.run_dir {
                self.net.save_weights(dir.file(RunDir::BEST))?;
            }
        }
        let since_best = self
            .history
            .best_epoch
            .map(|b| epoch + 1 - b)
            .unwrap_or(epoch + 1 - es.start_from_epoch.min(epoch + 1));
        let stop = watching && since_best >= es.patience.max(1);
        if stop {
            self.history.stopped_epoch = Some(epoch + 1);
        }
        Ok(stop)
    }

    /// After the last epoch: the best weights back when asked, the final files written.
    fn finish(&mut self, stop_reason: StopReason) -> Result<History> {
        if self.history.stop_reason == StopReason::Running {
            self.history.stop_reason = stop_reason;
        }
        if let (Some(es), Some((_, snap))) = (self.cfg.early_stopping, &self.best)
            && es.restore_best_weights
        {
            self.net.restore(snap)?;
        }
        if let Some(dir) = &self.run_dir {
            self.net.save_weights(dir.file(RunDir::WEIGHTS))?;
            dir.write_history(&self.history)?;
        }
        Ok(self.history.clone())
    }

    /// Saves the last good weights, then builds the error.
    fn non_finite(&self, quantity: &'static str, epoch: usize, batch: usize) -> Error {
        if let Some(dir) = &self.run_dir
            && let Err(e) = self.net.save_weights(dir.file(RunDir::LAST))
        {
            return e;
        }
        Error::NonFinite {
            quantity,
            epoch: epoch + 1,
            batch: batch + 1,
        }
    }

    fn checkpoint(&self) -> Result<()> {
        let Some(dir) = &self.run_dir else {
            return Ok(());
        };
        self.net.save_weights(dir.file(RunDir::LAST))?;
        let state = self.opt.state().state_tensors()?;
        crate::fsutil::write_atomic(&dir.file(RunDir::OPTIMIZER), |tmp| {
            candle_core::safetensors::save(&state, tmp).map_err(Error::from)
        })?;
        dir.write_history(&self.history)
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

/// One epoch's training measurements.
#[derive(Debug, Default)]
struct Measured {
    loss_sum: f64,
    correct: usize,
    seen: usize,
    seconds: f64,
    grads: Option<GradSummary>,
    loss_trace: Vec<f64>,
}

impl Measured {
    fn add(&mut self, loss: f64, correct: usize, n: usize) {
        self.loss_sum += loss * n as f64;
        self.correct += correct;
        self.seen += n;
    }
    fn loss(&self) -> f64 {
        self.loss_sum / self.seen.max(1) as f64
    }
    fn accuracy(&self) -> f64 {
        self.correct as f64 / self.seen.max(1) as f64
    }
}

struct EpochTraining {
    measured: Measured,
    out_of_time: bool,
}

/// The mean training loss of every `every` steps (0 = off).
struct LossTrace {
    every: usize,
    window: (f64, usize),
    points: Vec<f64>,
}

impl LossTrace {
    fn new(every: usize) -> Self {
        LossTrace {
            every,
            window: (0.0, 0),
            points: Vec::new(),
        }
    }
    fn push(&mut self, loss: f64) {
        if self.every == 0 {
            return;
        }
        self.window = (self.window.0 + loss, self.window.1 + 1);
        if self.window.1 == self.every {
            self.points.push(self.window.0 / self.window.1 as f64);
            self.window = (0.0, 0);
        }
    }
}
