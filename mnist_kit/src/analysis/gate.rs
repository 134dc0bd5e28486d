//! The digit gate: a second, small network that tells a digit from something that is not one.
//!
//! A classifier trained only on digits has no way to say "this is a letter": the softmax spreads
//! over ten digits whatever comes in, and a pen-drawn `K` or a star can come out 99 % sure.
//! The gate is a LeNet-5 trained with *outlier exposure* (Hendrycks, Mazeika and Dietterich,
//! "Deep Anomaly Detection with Outlier Exposure", ICLR 2019): cross-entropy on MNIST digits,
//! plus a term that pulls its output on synthesized non-digits
//! ([`crate::analysis::synthetic::synthetic_non_digit`]: pen-drawn letters and signs, shapes,
//! scribbles, hatching, textures) towards the uniform distribution. Its top softmax
//! probability is then high on digits and low on what is not one; the floor under which a
//! served model abstains is chosen on validation digits only ([`GATE_TAIL`] of them fall
//! under it), never on non-digits.
//!
//! Digits and outliers go through the same augmentation (the robust recipe's, on half of each),
//! so that a change of appearance tells the gate nothing; the non-digit images of
//! `data/non-digits` (typefaces, drawn shapes and pen paths made another way) are never seen in
//! training and stay its test.
//!
//! ```no_run
//! use mnist_kit::analysis::gate::{Gate, GateConfig};
//! use mnist_kit::data::Mnist;
//! let mnist = Mnist::load_default()?;
//! let (train, validation) = mnist.train.split_validation(5000, 42)?;
//! let gate = Gate::train(&train, &validation, &GateConfig::default())?;
//! gate.save("my-gate")?;
//! # Ok::<(), mnist_kit::Error>(())
//! ```

use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use candle_nn::Optimizer as _;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::custom_digit::{Digit, SIDE, digit_input, pixels_input};
use super::synthetic::synthetic_non_digit;
use crate::data::augment::AugmentConfig;
use crate::data::mnist::unit_pixels;
use crate::data::{Normalization, Split};
use crate::models::{Model as _, Network};
use crate::train::evaluate::{softmax_rows, split_outputs, top_probabilities};
use crate::train::{Optimizer, OptimizerConfig, RunDir};
use crate::{Error, Result};

/// Share of validation digits under the gate's floor.
pub const GATE_TAIL: f64 = 0.002;
/// The directory a served model keeps its gate in.
pub const GATE_DIR: &str = "gate";
/// The file the gate keeps its floor and training config in, beside its weights.
pub const GATE_FILE: &str = "gate.json";

/// How the gate trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GateConfig {
    /// The network (a kit preset).
    pub model: String,
    /// Passes over the training digits.
    pub epochs: usize,
    /// Digits per step.
    pub batch_size: usize,
    /// Synthesized non-digits per step.
    pub outliers: usize,
    /// Weight of the outliers' term (cross-entropy against the uniform distribution).
    pub outlier_weight: f64,
    /// Adam's learning rate.
    pub lr: f64,
    /// Share of digits and of outliers drawn through the robust augmentation.
    pub augment: f64,
    /// Use only this many training digits (quick runs).
    pub train_limit: Option<usize>,
    /// Seed of the weights, the order, the augmentation and the outliers.
    pub seed: u64,
    /// Input scaling.
    pub normalization: Normalization,
}

impl Default for GateConfig {
    fn default() -> Self {
        GateConfig {
            model: "lenet5".into(),
            epochs: 6,
            batch_size: 64,
            outliers: 32,
            outlier_weight: 1.0,
            lr: 1e-3,
            augment: 0.5,
            train_limit: None,
            seed: 42,
            normalization: Normalization::Standard,
        }
    }
}

impl GateConfig {
    /// A short gate for quick runs: 6,000 digits, one pass.
    pub fn quick() -> Self {
        GateConfig {
            epochs: 1,
            train_limit: Some(6000),
            ..Default::default()
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| Err(Error::invalid("gate config", reason));
        if self.epochs == 0 || self.batch_size == 0 || self.outliers == 0 {
            return bad("epochs, batch_size and outliers must be positive".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate {} is not positive", self.lr));
        }
        if !(self.outlier_weight >= 0.0 && self.outlier_weight.is_finite()) {
            return bad(format!(
                "outlier weight {} is negative",
                self.outlier_weight
            ));
        }
        if !(0.0..=1.0).contains(&self.augment) {
            return bad(format!("augment share {} is not in [0, 1]", self.augment));
        }
        if self.train_limit == Some(0) {
            return bad("train_limit 0 leaves no digits".into());
        }
        Ok(())
    }
}

/// What `gate.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateFit {
    /// The abstention floor on the gate's top probability.
    pub floor: f32,
    /// Validation digits the floor was chosen on, and the share under it.
    pub validation: (usize, f64),
    /// [`Split::digest`] of those validation digits.
    pub validation_digest: u64,
    /// How the gate trained.
    pub config: GateConfig,
}

/// A trained gate and its floor.
#[derive(Clone)]
pub struct Gate {
    /// The network.
    pub net: Arc<Network>,
    /// Its floor and training config.
    pub fit: GateFit,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("net", &self.net.name())
            .field("fit", &self.fit)
            .finish()
    }
}

/// Two gates are the same when their networks have the same weights and their fits agree.
impl PartialEq for Gate {
    fn eq(&self, other: &Gate) -> bool {
        let weights = |g: &Gate| -> Option<Vec<Vec<f32>>> {
            g.net
                .params()
                .iter()
                .map(|p| p.var.as_tensor().flatten_all().ok()?.to_vec1::<f32>().ok())
                .collect()
        };
        if self.fit != other.fit || self.net.name() != other.net.name() {
            return false;
        }
        let mine = weights(self);
        mine.is_some() && mine == weights(other)
    }
}

impl Gate {
    /// Trains a gate on the digits of `train` and synthesized non-digits, then sets its floor
    /// on the digits of `validation` (none of them seen in training). Progress on stderr, one
    /// line per epoch.
    pub fn train(train: &Split, validation: &Split, cfg: &GateConfig) -> Result<Gate> {
        cfg.validate()?;
        if validation.is_empty() {
            return Err(Error::invalid(
                "gate",
                "no validation digits to set the floor on",
            ));
        }
        let train = match cfg.train_limit {
            Some(n) => train.take(n),
            None => train.clone(),
        };
        if train.is_empty() {
            return Err(Error::invalid("gate", "no training digits"));
        }
        let mut net = Network::preset(&cfg.model, cfg.seed, &Device::Cpu)?;
        net.set_normalization(cfg.normalization);
        let mut opt = Optimizer::for_network(&net, OptimizerConfig::default(), cfg.lr)?;
        let augment = AugmentConfig::robust();
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut outlier_seed = cfg.seed.wrapping_mul(1_000_003);
        for epoch in 0..cfg.epochs {
            let started = std::time::Instant::now();
            order.shuffle(&mut rng);
            let (mut sum, mut steps) = (0.0f64, 0usize);
            for chunk in order.chunks(cfg.batch_size) {
                let mut images: Vec<Vec<f32>> = Vec::with_capacity(chunk.len() + cfg.outliers);
                let mut labels = Vec::with_capacity(chunk.len());
                for &i in chunk {
                    let (img, label) = (train.image(i), train.label(i));
                    let (Some(img), Some(label)) = (img, label) else {
                        return Err(Error::invalid("gate", format!("no training image {i}")));
                    };
                    images.push(unit_pixels(img));
                    labels.push(u32::from(label));
                }
                for _ in 0..cfg.outliers {
                    images.push(synthetic_non_digit(outlier_seed).1.pixels);
                    outlier_seed = outlier_seed.wrapping_add(1);
                }
                for img in &mut images {
                    if rng.random::<f64>() < cfg.augment {
                        augment.apply(img, SIDE, &mut rng);
                    }
                }
                sum += f64::from(step(&net, &mut opt, &images, labels, cfg)?);
                steps += 1;
            }
            eprintln!(
                "gate epoch {}/{}: loss {:.4} ({} steps, {:.0} s)",
                epoch + 1,
                cfg.epochs,
                sum / steps.max(1) as f64,
                steps,
                started.elapsed().as_secs_f64()
            );
        }
        let scores = scores(&net, validation)?;
        let floor = floor(&scores, GATE_TAIL);
        let under = scores.iter().filter(|&&s| s < floor).count();
        Ok(Gate {
            net: Arc::new(net),
            fit: GateFit {
                floor,
                validation: (scores.len(), under as f64 / scores.len() as f64),
                validation_digest: validation.digest(),
                config: cfg.clone(),
            },
        })
    }

    /// [`Gate::train`] for a trained run: on its own training digits, its floor on its own
    /// validation digits, as its training config split them from `mnist`.
    pub fn train_for_run(
        run: &crate::train::Run,
        mnist: &crate::data::Mnist,
        cfg: &GateConfig,
    ) -> Result<Gate> {
        let data = crate::train::TrainData::new(mnist, &run.train)?;
        let val = data
            .validation
            .as_ref()
            .ok_or_else(|| Error::invalid("gate", "the run kept no validation images"))?;
        Gate::train(&data.train, val, cfg)
    }

    /// The gate's score for one preprocessed digit: its top softmax probability.
    pub fn score(&self, digit: &Digit) -> Result<f32> {
        let x = digit_input(&self.net, digit)?;
        let logits = self
            .net
            .forward_t(&x, false)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(top_probabilities(&softmax_rows(&logits, 1.0))
            .first()
            .copied()
            .unwrap_or(0.0))
    }

    /// The gate's score for every image of `split`.
    pub fn scores(&self, split: &Split) -> Result<Vec<f32>> {
        scores(&self.net, split)
    }

    /// Whether a score is under the floor.
    pub fn rejects(&self, score: f32) -> bool {
        score < self.fit.floor
    }

    /// Writes the gate into `dir` (created): `config.json`, `weights.safetensors`, `gate.json`.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let run = RunDir::new(dir.as_ref());
        run.save_network(&self.net)?;
        crate::fsutil::write_json(&run.file(GATE_FILE), &self.fit)
    }

    /// Reads a gate written by [`Gate::save`]; `None` when `dir` has no `gate.json`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Option<Gate>> {
        let run = RunDir::new(dir.as_ref());
        let path = run.file(GATE_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let fit: GateFit = crate::fsutil::read_json(&path)?;
        if !(fit.floor.is_finite() && (0.0..=1.0).contains(&fit.floor)) {
            return Err(Error::Checkpoint {
                path,
                reason: format!("floor {} is not a probability", fit.floor),
            });
        }
        let mut net = run.load_network(&Device::Cpu)?;
        net.set_normalization(fit.config.normalization);
        Ok(Some(Gate {
            net: Arc::new(net),
            fit,
        }))
    }
}

/// One step of outlier exposure: `images` are `labels.len()` digits, then the outliers. The
/// loss before the step.
fn step(
    net: &Network,
    opt: &mut Optimizer,
    images: &[Vec<f32>],
    labels: Vec<u32>,
    cfg: &GateConfig,
) -> Result<f32> {
    let refs: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
    let x = pixels_input(net, &refs)?;
    let logits = net.forward_t(&x, true)?;
    let n = labels.len();
    let digits = logits.narrow(0, 0, n)?;
    let y = Tensor::from_vec(labels, n, &Device::Cpu)?;
    let ce = candle_nn::loss::cross_entropy(&digits, &y)?;
    // Cross-entropy against the uniform distribution: -mean over classes of log p.
    let others = logits.narrow(0, n, images.len() - n)?;
    let uniform = candle_nn::ops::log_softmax(&others, 1)?
        .mean(1)?
        .mean(0)?
        .neg()?;
    let loss = (ce + (uniform * cfg.outlier_weight)?)?;
    let value = loss.to_scalar::<f32>()?;
    opt.backward_step(&loss)?;
    Ok(value)
}

fn scores(net: &Network, split: &Split) -> Result<Vec<f32>> {
    let (logits, _, _) = split_outputs(net, split)?;
    Ok(top_probabilities(&softmax_rows(&logits, 1.0)))
}

/// The value with a `tail` share of `scores` under it.
fn floor(scores: &[f32], tail: f64) -> f32 {
    let mut s = scores.to_vec();
    s.sort_by(f32::total_cmp);
    let k = (s.len() as f64 * tail).floor() as usize;
    s.get(k).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_leaves_the_tail_under_it() {
        let scores: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        let f = floor(&scores, 0.002);
        assert_eq!(scores.iter().filter(|&&s| s < f).count(), 2);
        assert_eq!(floor(&[], 0.1), 0.0);
    }

    #[test]
    fn bad_configs_are_errors() {
        assert!(GateConfig::default().validate().is_ok());
        for bad in [
            GateConfig {
                epochs: 0,
                ..Default::default()
            },
            GateConfig {
                lr: -1.0,
                ..Default::default()
            },
            GateConfig {
                augment: 2.0,
                ..Default::default()
            },
            GateConfig {
                train_limit: Some(0),
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
