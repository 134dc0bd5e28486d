//! Throughput measurement: steady-state training images/s through the real training loop and
//! inference images/s at batch 1000, each timed for at least [`MIN_SECONDS`] and three passes
//! (whichever is longer) after an untimed warm-up, over several rounds (median and spread),
//! with the thread count, the process's peak resident memory and the CPU.

pub mod speedrun;

use std::time::Instant;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::data::{BatchOptions, Mnist};
use crate::models::{Model, Network};
use crate::train::{TrainConfig, Trainer};
use crate::{Error, Result};

/// The shortest timed phase: this shared machine's speed moves within seconds.
pub const MIN_SECONDS: f64 = 2.0;
/// The fewest timed passes of a phase.
pub const MIN_PASSES: usize = 3;

/// One benchmark result; serializes to the `mnist-kit bench --json` shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// Model name.
    pub model: String,
    /// Training batch size.
    pub batch_size: usize,
    /// Training images per second (Adam, steady state): the median over the rounds.
    pub train_images_per_sec: f64,
    /// Lowest and highest training rate over the rounds.
    pub train_images_per_sec_spread: [f64; 2],
    /// Inference images per second at batch 1000: the median over the rounds.
    pub infer_images_per_sec: f64,
    /// Lowest and highest inference rate over the rounds.
    pub infer_images_per_sec_spread: [f64; 2],
    /// Rounds measured.
    pub rounds: usize,
    /// Threads the kernels ran on (the rayon pool).
    pub threads: usize,
    /// Peak resident set size of the process so far, MB.
    pub peak_rss_mb: f64,
    /// The machine: CPU model and the instruction set the kit's kernels ran on.
    pub cpu: CpuInfo,
    /// Where a training step's time goes, layer by layer (`bench --profile`; empty otherwise).
    #[serde(default)]
    pub layers: Vec<LayerTime>,
}

/// One row of the per-layer profile of a training step (batch [`BenchConfig::batch_size`],
/// Adam): a layer of the network (its forward, and the backward of the ops it made), or one of
/// the step's other parts: `optimizer step`, `other forward` (the loss and candle's own ops
/// between layers) and `other backward` (their gradients, and the autograd's bookkeeping).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerTime {
    /// Layer name as in `mnist-kit summary` (`conv1`, `stage2.0.bn1`, ...), or the part.
    pub name: String,
    /// Milliseconds per batch in the forward pass (training mode).
    pub forward_ms: f64,
    /// Milliseconds per batch in the backward pass (and the optimizer step, for its row).
    pub backward_ms: f64,
    /// Share of the whole step, forward and backward together.
    pub share: f64,
}

/// The CPU a measurement ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuInfo {
    /// `/proc/cpuinfo`'s model name.
    pub model: String,
    /// Logical CPUs available to the process.
    pub logical_cpus: usize,
    /// The instruction set the kit's own loops used (`portable`, `avx2`, `avx512`).
    pub isa: String,
}

impl CpuInfo {
    /// This machine, now.
    pub fn current() -> Self {
        CpuInfo {
            model: cpu_name(),
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            isa: crate::ops::simd::active().name().to_string(),
        }
    }
}

/// Settings of a benchmark run.
#[derive(Debug, Clone, Copy)]
pub struct BenchConfig {
    /// Training batch size.
    pub batch_size: usize,
    /// Training batches per pass (one epoch of the benchmark).
    pub train_batches: usize,
    /// Test images per inference pass (batches of 1000).
    pub infer_images: usize,
    /// Rounds: the result is their median.
    pub rounds: usize,
    /// Threads (`None`: the current rayon pool, `RAYON_NUM_THREADS` or the logical CPUs).
    pub threads: Option<usize>,
    /// Also time each layer of a training step ([`BenchResult::layers`]).
    pub profile: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            batch_size: 64,
            train_batches: 200,
            infer_images: 10_000,
            rounds: 1,
            threads: None,
            profile: false,
        }
    }
}

/// Benchmarks `model` (a preset name or a JSON config file, see
/// [`crate::models::ModelConfig::resolve`]) on real MNIST.
pub fn bench(mnist: &Mnist, model: &str, cfg: BenchConfig) -> Result<BenchResult> {
    match cfg.threads {
        Some(t) => rayon::ThreadPoolBuilder::new()
            .num_threads(t.max(1))
            .build()
            .map_err(|e| Error::invalid("bench", format!("thread pool: {e}")))?
            .install(|| bench_rounds(mnist, model, cfg)),
        None => bench_rounds(mnist, model, cfg),
    }
}

fn bench_rounds(mnist: &Mnist, model: &str, cfg: BenchConfig) -> Result<BenchResult> {
    let device = Device::Cpu;
    let net = Network::preset(model, 0, &device)?;
    crate::ops::simd::active();
    let (mut train, mut infer) = (Vec::new(), Vec::new());
    for _ in 0..cfg.rounds.max(1) {
        train.push(train_rate(mnist, model, cfg)?);
        infer.push(infer_rate(mnist, &net, cfg)?);
    }
    let layers = if cfg.profile {
        profile_layers(mnist, model, cfg)?
    } else {
        Vec::new()
    };
    Ok(BenchResult {
        layers,
        model: net.name().to_string(),
        batch_size: cfg.batch_size,
        train_images_per_sec: median(&train),
        train_images_per_sec_spread: spread(&train),
        infer_images_per_sec: median(&infer),
        infer_images_per_sec_spread: spread(&infer),
        rounds: train.len(),
        threads: rayon::current_num_threads(),
        peak_rss_mb: peak_rss_mb().unwrap_or(f64::NAN),
        cpu: CpuInfo::current(),
    })
}

/// Training images/s of a fresh network over passes of `train_batches` batches: one untimed
/// pass, then as many as take [`MIN_SECONDS`] (at least [`MIN_PASSES`]), from a first pass's
/// time.
fn train_rate(mnist: &Mnist, model: &str, cfg: BenchConfig) -> Result<f64> {
    let fit = |epochs: usize| -> Result<Vec<(f64, f64)>> {
        let mut net = Network::preset(model, 0, &Device::Cpu)?;
        let train = TrainConfig {
            epochs,
            batch_size: cfg.batch_size,
            validation: 0,
            train_limit: Some(cfg.batch_size * cfg.train_batches.max(1)),
            verbose: false,
            ..Default::default()
        };
        let h = Trainer::new(train).fit(&mut net, mnist)?;
        let images = (cfg.batch_size * cfg.train_batches.max(1)) as f64;
        Ok(h.epochs.iter().map(|e| (images, e.seconds)).collect())
    };
    let probe = fit(1)?;
    let pass = probe.first().map_or(1.0, |&(_, s)| s.max(1e-3));
    let timed = MIN_PASSES.max((MIN_SECONDS / pass).ceil() as usize);
    let epochs = fit(1 + timed)?;
    let (images, seconds) = epochs
        .iter()
        .skip(1)
        .fold((0.0, 0.0), |(i, s), &(ei, es)| (i + ei, s + es));
    if seconds <= 0.0 {
        return Err(Error::invalid("bench", "no epoch was timed"));
    }
    Ok(images / seconds)
}

/// The per-layer profile: [`BenchConfig::train_batches`] training steps of a fresh network
/// (Adam, the training mode), after 5 untimed ones, with the hooks of [`crate::ops::profile`]
/// on; each row in milliseconds per batch, largest share first.
pub fn profile_layers(mnist: &Mnist, model: &str, cfg: BenchConfig) -> Result<Vec<LayerTime>> {
    use crate::ops::profile;
    use crate::train::step::loss;
    use crate::train::{Optimizer, OptimizerConfig};
    let net = Network::preset(model, 0, &Device::Cpu)?;
    let mut optimizer = Optimizer::for_network(&net, OptimizerConfig::default(), 1e-3)?;
    let steps = cfg.train_batches.max(1);
    let warm = 5;
    let split = mnist.train.take(cfg.batch_size * (steps + warm));
    let opts = BatchOptions {
        batch_size: cfg.batch_size,
        shuffle: true,
        seed: 0,
    };
    let batches: Vec<_> = split
        .batches(net.input_spec(), opts, 0, &Device::Cpu)?
        .collect::<Result<_>>()?;
    let (mut fwd, mut bwd, mut opt) = (0.0, 0.0, 0.0);
    let mut timed = 0usize;
    // On a rayon worker, as the trainer runs its steps.
    rayon::scope(|_| -> Result<()> {
        for (i, b) in batches.iter().enumerate() {
            if i == warm {
                profile::enable(true);
            }
            let t0 = Instant::now();
            let l = loss(&net.forward_t(&b.images, true)?, &b.labels, 0.0)?;
            let t1 = Instant::now();
            let grads = l.backward()?;
            let t2 = Instant::now();
            optimizer.step_observed(&grads, 1e-3, |_| true)?;
            let t3 = Instant::now();
            if i >= warm {
                timed += 1;
                fwd += (t1 - t0).as_secs_f64();
                bwd += (t2 - t1).as_secs_f64();
                opt += (t3 - t2).as_secs_f64();
            }
        }
        Ok(())
    })?;
    let times = profile::take();
    profile::enable(false);
    let per = 1e3 / timed.max(1) as f64;
    Ok(layer_rows(times, [fwd * per, bwd * per, opt * per], per))
}

/// The profile's rows from the hooks' `times` (seconds over the timed steps; `per` turns
/// them into milliseconds per step) and the step's measured `[forward, backward, optimizer]`
/// milliseconds: one row per layer, then the optimizer step and what no layer claimed,
/// largest first, each with its share of the step.
fn layer_rows(times: crate::ops::profile::Times, step: [f64; 3], per: f64) -> Vec<LayerTime> {
    use crate::ops::profile::Phase;
    let mut rows: Vec<LayerTime> = Vec::new();
    for ((name, phase), (secs, _)) in times {
        let i = match rows.iter().position(|r| r.name == *name) {
            Some(i) => i,
            None => {
                rows.push(LayerTime {
                    name: name.to_string(),
                    forward_ms: 0.0,
                    backward_ms: 0.0,
                    share: 0.0,
                });
                rows.len() - 1
            }
        };
        match phase {
            Phase::Forward => rows[i].forward_ms += secs * per,
            Phase::Backward => rows[i].backward_ms += secs * per,
        }
    }
    let layer_fwd: f64 = rows.iter().map(|r| r.forward_ms).sum();
    let layer_bwd: f64 = rows.iter().map(|r| r.backward_ms).sum();
    let part = |name: &str, f: f64, b: f64| LayerTime {
        name: name.into(),
        forward_ms: f.max(0.0),
        backward_ms: b.max(0.0),
        share: 0.0,
    };
    let [fwd, bwd, opt] = step;
    rows.push(part("optimizer step", 0.0, opt));
    rows.push(part("other forward", fwd - layer_fwd, 0.0));
    rows.push(part("other backward", 0.0, bwd - layer_bwd));
    let total = (fwd + bwd + opt).max(1e-12);
    for r in &mut rows {
        r.share = (r.forward_ms + r.backward_ms) / total;
    }
    rows.sort_by(|a, b| (b.forward_ms + b.backward_ms).total_cmp(&(a.forward_ms + a.backward_ms)));
    rows
}

/// Inference images/s at batch 1000 over the test images: one untimed pass, then passes until
/// [`MIN_SECONDS`] and [`MIN_PASSES`] are reached. Batches are built before timing.
fn infer_rate(mnist: &Mnist, net: &Network, cfg: BenchConfig) -> Result<f64> {
    let device = Device::Cpu;
    let opts = BatchOptions {
        batch_size: 1000,
        ..Default::default()
    };
    let test = mnist.test.take(cfg.infer_images.max(1000));
    let batches: Vec<_> = test
        .batches(net.input_spec(), opts, 0, &device)?
        .collect::<Result<_>>()?;
    // On a rayon worker, as `evaluate` runs its batches.
    let pass = || -> Result<usize> {
        rayon::scope(|_| {
            let mut n = 0;
            for b in &batches {
                net.forward_t(&b.images, false)?;
                n += b.positions.len();
            }
            Ok(n)
        })
    };
    pass()?;
    let t0 = Instant::now();
    let (mut n, mut passes) = (0, 0);
    while passes < MIN_PASSES || t0.elapsed().as_secs_f64() < MIN_SECONDS {
        n += pass()?;
        passes += 1;
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn spread(v: &[f64]) -> [f64; 2] {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    [lo, hi]
}

/// Peak resident set size (VmHWM) of this process in MB, where /proc is available.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The CPU's model name (`/proc/cpuinfo`'s first `model name`), or the architecture where
/// there is none: the report and the bench name the machine their times come from.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread_of_rounds() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(spread(&[3.0, 1.0, 2.0]), [1.0, 3.0]);
    }
}
