//! Time to accuracy: a small CNN trained to 99 % test accuracy in a few seconds, with the
//! tricks of the public MNIST speed records (a large batch, a one-cycle rate per step, label
//! smoothing, test-time shift augmentation), timed from loading the data to the last test
//! prediction.
//!
//! ```no_run
//! use mnist_kit::bench::speedrun::{SpeedrunConfig, speedrun};
//! let run = speedrun(None, &SpeedrunConfig::default(), 0)?;
//! println!("{:.2}% in {:.1} s", 100.0 * run.test_accuracy, run.seconds);
//! # Ok::<(), mnist_kit::Error>(())
//! ```

use std::path::Path;
use std::time::Instant;

use candle_core::{D, Device};
use serde::{Deserialize, Serialize};

use crate::data::batches::mix;
use crate::data::{BatchOptions, Mnist, NUM_CLASSES, Split};
use crate::models::{Model, ModelConfig, Network};
use crate::train::step::{Optimizer, loss};
use crate::train::{OptimizerConfig, Schedule};
use crate::{Error, Result};
use candle_nn::Optimizer as _;

/// The speedrun recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpeedrunConfig {
    /// The network (default: LeNet-5 on 28x28 with BatchNorm).
    pub model: ModelConfig,
    /// Passes over the 60,000 training images (no validation split).
    pub epochs: usize,
    /// Training batch size.
    pub batch_size: usize,
    /// The optimizer (Adam).
    pub optimizer: OptimizerConfig,
    /// Peak learning rate of the one-cycle schedule, which moves every step.
    pub lr: f64,
    /// Fraction of the steps spent warming up to the peak.
    pub warmup: f64,
    /// Label smoothing of the cross-entropy.
    pub label_smoothing: f64,
    /// Test-time augmentation: the mean of the softmax over the image and these shifts
    /// (dx, dy), in pixels.
    pub test_shifts: Vec<(i32, i32)>,
    /// Seed of run 0; run `i` uses `seed + i`.
    pub seed: u64,
}

impl Default for SpeedrunConfig {
    fn default() -> Self {
        SpeedrunConfig {
            model: ModelConfig::Lenet(crate::models::config::LenetConfig {
                input_side: 28,
                batch_norm: true,
                ..Default::default()
            }),
            epochs: 2,
            batch_size: 128,
            optimizer: OptimizerConfig::default(),
            lr: 4e-3,
            warmup: 0.25,
            label_smoothing: 0.1,
            test_shifts: vec![(1, 0), (-1, 0), (0, 1), (0, -1)],
            seed: 2026,
        }
    }
}

impl SpeedrunConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        let bad = |r: String| Err(Error::invalid("speedrun config", r));
        self.model.validate()?;
        if self.epochs == 0 || self.batch_size == 0 {
            return bad("epochs and batch size must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate {} must be positive", self.lr));
        }
        if !(0.0..1.0).contains(&self.warmup) || !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("warmup and label smoothing must be in [0, 1)".into());
        }
        if let Some(s) = self
            .test_shifts
            .iter()
            .find(|s| s.0.abs() > 4 || s.1.abs() > 4)
        {
            return bad(format!("test shift {s:?}: at most 4 pixels"));
        }
        Ok(())
    }

    /// The rate of `step` of `steps`: one-cycle from peak/25 up to the peak, then down to
    /// peak/10^4.
    pub fn lr_at(&self, step: usize, steps: usize) -> f64 {
        Schedule::OneCycle {
            pct_start: self.warmup,
            div_factor: 25.0,
            final_div_factor: 1e4,
        }
        .lr(self.lr, step, steps)
    }
}

/// One timed speedrun.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeedrunResult {
    /// The run's seed.
    pub seed: u64,
    /// Test accuracy with the test-time shifts.
    pub test_accuracy: f64,
    /// Test accuracy of the plain image alone.
    pub plain_test_accuracy: f64,
    /// Wall seconds from the start of the run (before loading the data) to the last test
    /// prediction.
    pub seconds: f64,
    /// Of which loading the data.
    pub load_seconds: f64,
    /// Of which training.
    pub train_seconds: f64,
}

/// Loads MNIST (`data_dir`, else the default location), trains run `index` of the recipe and
/// scores it on the test set. The clock starts before the data are read.
pub fn speedrun(
    data_dir: Option<&Path>,
    cfg: &SpeedrunConfig,
    index: u64,
) -> Result<SpeedrunResult> {
    speedrun_from(Instant::now(), data_dir, cfg, index)
}

/// [`speedrun`] with the clock started at `start` (the CLI passes its process start).
pub fn speedrun_from(
    start: Instant,
    data_dir: Option<&Path>,
    cfg: &SpeedrunConfig,
    index: u64,
) -> Result<SpeedrunResult> {
    cfg.validate()?;
    let mnist = Mnist::load_from(data_dir)?;
    let load_seconds = start.elapsed().as_secs_f64();
    let seed = cfg.seed.wrapping_add(index);
    let net = Network::new(&cfg.model, seed, &Device::Cpu)?;
    // Fresh variables made by this code (see `Network::rebuilt`); on a rayon worker, as the
    // trainer does, so the kernels' parallel loops join the pool directly.
    let net = net.rebuilt()?;
    let t0 = Instant::now();
    rayon::scope(|_| train(&net, &mnist.train, cfg, seed))?;
    let train_seconds = t0.elapsed().as_secs_f64();
    let (plain, shifted) = rayon::scope(|_| score(&net, &mnist.test, &cfg.test_shifts))?;
    Ok(SpeedrunResult {
        seed,
        test_accuracy: shifted,
        plain_test_accuracy: plain,
        seconds: start.elapsed().as_secs_f64(),
        load_seconds,
        train_seconds,
    })
}

/// Most runs [`speedruns`] takes.
pub const MAX_RUNS: usize = 1000;

/// What `mnist-kit speedrun --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeedrunSummary {
    /// Mean test accuracy (with the test-time shifts) over the runs.
    pub mean_test_accuracy: f64,
    /// Each run's test accuracy, in seed order.
    pub per_seed: Vec<f64>,
    /// Median wall seconds per run, data loading included.
    pub seconds_per_run: f64,
    /// The seeds.
    pub seeds: Vec<u64>,
    /// Mean test accuracy of the plain images alone.
    pub mean_plain_test_accuracy: f64,
    /// Each run's wall seconds.
    pub seconds: Vec<f64>,
    /// Median seconds of training alone.
    pub train_seconds_per_run: f64,
    /// Threads of the rayon pool the runs used.
    pub threads: usize,
    /// The CPU's model name.
    pub cpu: String,
    /// The recipe.
    pub recipe: SpeedrunConfig,
}

/// `runs` speedruns one after another (seeds `cfg.seed`, `cfg.seed + 1`, ...); run 0's clock
/// starts at `start` (the process start, for the CLI), each later run's when it begins.
/// `each` sees every run as it finishes.
pub fn speedruns(
    start: Instant,
    data_dir: Option<&Path>,
    cfg: &SpeedrunConfig,
    runs: usize,
    mut each: impl FnMut(&SpeedrunResult),
) -> Result<SpeedrunSummary> {
    if !(1..=MAX_RUNS).contains(&runs) {
        return Err(Error::invalid(
            "speedrun",
            format!("{runs} runs: from 1 to {MAX_RUNS}"),
        ));
    }
    let mut done = Vec::with_capacity(runs);
    for i in 0..runs {
        let clock = if i == 0 { start } else { Instant::now() };
        let r = speedrun_from(clock, data_dir, cfg, i as u64)?;
        each(&r);
        done.push(r);
    }
    let mean = |f: fn(&SpeedrunResult) -> f64| done.iter().map(f).sum::<f64>() / runs as f64;
    let seconds: Vec<f64> = done.iter().map(|r| r.seconds).collect();
    let train: Vec<f64> = done.iter().map(|r| r.train_seconds).collect();
    Ok(SpeedrunSummary {
        mean_test_accuracy: mean(|r| r.test_accuracy),
        per_seed: done.iter().map(|r| r.test_accuracy).collect(),
        seconds_per_run: median(&seconds),
        seeds: done.iter().map(|r| r.seed).collect(),
        mean_plain_test_accuracy: mean(|r| r.plain_test_accuracy),
        seconds,
        train_seconds_per_run: median(&train),
        threads: rayon::current_num_threads(),
        cpu: super::cpu_name(),
        recipe: cfg.clone(),
    })
}

fn train(net: &Network, train: &Split, cfg: &SpeedrunConfig, seed: u64) -> Result<()> {
    let mut opt = Optimizer::for_network(net, cfg.optimizer, cfg.lr)?;
    let opts = BatchOptions {
        batch_size: cfg.batch_size,
        shuffle: true,
        seed,
    };
    let per_epoch = train.len().div_ceil(cfg.batch_size);
    let steps = per_epoch * cfg.epochs;
    for epoch in 0..cfg.epochs {
        net.reseed_dropout(mix(seed ^ 0xD0, epoch as u64));
        for (b, batch) in train
            .batches(net.input_spec(), opts, epoch, &Device::Cpu)?
            .enumerate()
        {
            let batch = batch?;
            let logits = net.forward_t(&batch.images, true)?;
            let loss = loss(&logits, &batch.labels, cfg.label_smoothing)?;
            opt.set_learning_rate(cfg.lr_at(epoch * per_epoch + b, steps));
            opt.backward_step(&loss)?;
        }
    }
    Ok(())
}

/// Test accuracy of the plain images, and of the mean softmax over the plain images and
/// their `shifts`.
fn score(net: &Network, test: &Split, shifts: &[(i32, i32)]) -> Result<(f64, f64)> {
    let opts = BatchOptions {
        batch_size: 1000,
        shuffle: false,
        seed: 0,
    };
    let spec = net.input_spec();
    let mut probs = vec![0f32; test.len() * NUM_CLASSES];
    let mut labels = Vec::with_capacity(test.len());
    let mut plain = 0f64;
    for (k, &(dx, dy)) in std::iter::once(&(0, 0)).chain(shifts).enumerate() {
        let shift = move |img: &mut [f32], side: usize, _: &mut rand_chacha::ChaCha8Rng| {
            shift_image(img, side, dx, dy)
        };
        let mut batches = test.batches(spec, opts, 0, &Device::Cpu)?;
        if k > 0 {
            batches = batches.with_transform(&shift, 0);
        }
        let mut at = 0;
        for batch in batches {
            let batch = batch?;
            let p = candle_nn::ops::softmax(&net.forward_t(&batch.images, false)?, D::Minus1)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            for (acc, v) in probs[at..at + p.len()].iter_mut().zip(&p) {
                *acc += v;
            }
            at += p.len();
            if k == 0 {
                labels.extend(batch.labels.to_vec1::<u32>()?);
            }
        }
        if k == 0 {
            plain = accuracy(&probs, &labels);
        }
    }
    Ok((plain, accuracy(&probs, &labels)))
}

fn accuracy(probs: &[f32], labels: &[u32]) -> f64 {
    let correct = probs
        .chunks_exact(NUM_CLASSES)
        .zip(labels)
        .filter(|&(p, &l)| argmax(p) == l as usize)
        .count();
    correct as f64 / labels.len().max(1) as f64
}

fn argmax(p: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

/// Moves a `side` x `side` image (values in [0, 1]) by `dx` right and `dy` down, filling
/// with background.
pub fn shift_image(img: &mut [f32], side: usize, dx: i32, dy: i32) {
    let src = img.to_vec();
    for y in 0..side as i32 {
        for x in 0..side as i32 {
            let (sx, sy) = (x - dx, y - dy);
            let inside = (0..side as i32).contains(&sx) && (0..side as i32).contains(&sy);
            img[(y * side as i32 + x) as usize] = if inside {
                src[(sy * side as i32 + sx) as usize]
            } else {
                0.0
            };
        }
    }
}

/// Median of `xs` (0 for none).
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifting_moves_pixels_and_fills_background() {
        let mut img = vec![0f32; 9];
        img[4] = 1.0; // centre of 3x3
        shift_image(&mut img, 3, 1, 0);
        assert_eq!(img[5], 1.0);
        assert_eq!(img.iter().sum::<f32>(), 1.0);
        shift_image(&mut img, 3, 1, 1);
        assert_eq!(img.iter().sum::<f32>(), 0.0, "shifted out of the frame");
    }

    #[test]
    fn one_cycle_rises_then_falls() {
        let c = SpeedrunConfig::default();
        let lrs: Vec<f64> = (0..100).map(|s| c.lr_at(s, 100)).collect();
        let peak = lrs.iter().cloned().fold(0.0, f64::max);
        assert!((peak - c.lr).abs() < 1e-12);
        assert!(lrs[0] < c.lr / 20.0 && lrs[99] < c.lr / 1000.0);
    }

    #[test]
    fn bad_recipes_are_refused() {
        let bad = SpeedrunConfig {
            label_smoothing: 1.0,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = SpeedrunConfig {
            test_shifts: vec![(9, 0)],
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
