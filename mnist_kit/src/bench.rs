//! Throughput measurement: steady-state training images/s through the real training loop
//! (one warm-up epoch, then a measured epoch over a fixed number of batches), inference
//! images/s at batch 1000 (one untimed pass over the test images, then three timed ones, as
//! the peer programs measure), and the process's peak resident memory.

use std::time::Instant;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::data::{BatchOptions, Mnist};
use crate::models::{Model, Network};
use crate::train::{TrainConfig, TrainData, Trainer};
use crate::{Error, Result};

/// One benchmark result; serializes to the `mnist-kit bench --json` shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// Model name.
    pub model: String,
    /// Training batch size.
    pub batch_size: usize,
    /// Training images per second (Adam, steady state).
    pub train_images_per_sec: f64,
    /// Inference images per second at batch 1000.
    pub infer_images_per_sec: f64,
    /// Peak resident set size of the process so far, MB.
    pub peak_rss_mb: f64,
    /// The machine: CPU model and the instruction set the kit's kernels ran on.
    pub cpu: CpuInfo,
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
    /// Measured training batches (after an equal warm-up).
    pub train_batches: usize,
    /// Test images per inference pass (batches of 1000).
    pub infer_images: usize,
    /// Timed inference passes, after one untimed pass (as the peer programs do).
    pub infer_reps: usize,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            batch_size: 64,
            train_batches: 200,
            infer_images: 10_000,
            infer_reps: 3,
        }
    }
}

/// Benchmarks `model` (a preset name or a JSON config file, see [`crate::models::ModelConfig::resolve`]) on
/// real MNIST.
pub fn bench(mnist: &Mnist, model: &str, cfg: BenchConfig) -> Result<BenchResult> {
    let device = Device::Cpu;
    let net = Network::preset(model, 0, &device)?;
    crate::ops::simd::active();
    let train = TrainConfig {
        epochs: 2,
        batch_size: cfg.batch_size,
        validation: 0,
        train_limit: Some(cfg.batch_size * cfg.train_batches.max(1)),
        verbose: false,
        ..Default::default()
    };
    let data = TrainData::new(mnist, &train)?;
    let history = Trainer::new(&net, train)?.fit(&data)?;
    let measured = history
        .last()
        .ok_or_else(|| Error::invalid("bench", "no epoch ran"))?;

    let opts = BatchOptions {
        batch_size: 1000,
        ..Default::default()
    };
    let test = mnist.test.take(cfg.infer_images.max(1000));
    // Warm-up pass, then the timed pass; batches are built before timing.
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
    let mut n = 0;
    for _ in 0..cfg.infer_reps.max(1) {
        n += pass()?;
    }
    let infer = n as f64 / t0.elapsed().as_secs_f64();
    Ok(BenchResult {
        model: net.name().to_string(),
        batch_size: cfg.batch_size,
        train_images_per_sec: measured.images_per_sec,
        infer_images_per_sec: infer,
        peak_rss_mb: peak_rss_mb().unwrap_or(f64::NAN),
        cpu: CpuInfo::current(),
    })
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
