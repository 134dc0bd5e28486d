//! One training step, in the pieces PyTorch's example names: the loss, then backward and the
//! optimizer step ([`Optimizer`], a [`candle_nn::Optimizer`]: `backward_step(&loss)`), plus the
//! per-step gradient statistics ([`GradStats`]) that Part 2 of the study reads.
//!
//! A loop written by hand with them trains exactly as [`Trainer`](super::Trainer) does:
//!
//! ```no_run
//! use mnist_kit::candle::Device;
//! use mnist_kit::candle_nn::Optimizer as _;
//! use mnist_kit::data::{BatchOptions, Mnist};
//! use mnist_kit::models::{Model, Network};
//! use mnist_kit::train::{Optimizer, OptimizerConfig, evaluate, step::loss};
//!
//! let mnist = Mnist::load_default()?;
//! let net = Network::preset("dense128", 42, &Device::Cpu)?;
//! let mut opt = Optimizer::for_network(&net, OptimizerConfig::default(), 1e-3)?;
//! let opts = BatchOptions { batch_size: 64, shuffle: true, seed: 42 };
//! for epoch in 0..2 {
//!     for batch in mnist.train.batches(net.input_spec(), opts, epoch, &Device::Cpu)? {
//!         let batch = batch?;
//!         let logits = net.forward_t(&batch.images, true)?;
//!         opt.backward_step(&loss(&logits, &batch.labels, 0.0)?)?;
//!     }
//!     let test = evaluate(&net, &mnist.test)?;
//!     println!("epoch {}: test accuracy {:.2}%", epoch + 1, 100.0 * test.accuracy);
//! }
//! # Ok::<(), mnist_kit::Error>(())
//! ```

use candle_core::Tensor;
use candle_core::backprop::GradStore;
use rayon::prelude::*;

use candle_core::Var;

use super::optim::{CHUNK, MIN_CHUNKS_PER_TASK, OptimizerConfig, OptimizerState, Overwrite};
use crate::models::Network;
use crate::models::layers::{Param, ParamKind};
use crate::ops::cpu::storage_slice;
use crate::{Error, Result};

/// Mean cross-entropy of `logits` (batch x classes) against `labels` (u32 class indices),
/// with the targets smoothed by `label_smoothing` (0 = plain cross-entropy; 0.1 puts 0.1 of
/// each target's mass evenly over the classes, as PyTorch's `label_smoothing`).
pub fn loss(logits: &Tensor, labels: &Tensor, label_smoothing: f64) -> Result<Tensor> {
    let ce = candle_nn::loss::cross_entropy(logits, labels)?;
    if label_smoothing == 0.0 {
        return Ok(ce);
    }
    // -mean over classes of log p: the cross-entropy against the uniform target.
    let log_p = candle_nn::ops::log_softmax(logits, 1)?;
    let uniform = log_p.mean(1)?.mean(0)?.neg()?;
    Ok(((ce * (1.0 - label_smoothing))? + (uniform * label_smoothing)?)?)
}

/// What [`Optimizer::step_observed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The new weights are in the network.
    Applied,
    /// The gradient observer refused the step (a non-finite gradient); nothing changed.
    Refused,
    /// A new weight is not finite; the network keeps the weights it had.
    NonFiniteWeights,
}

/// An optimizer bound to one network's trainable weights, at a learning rate: candle's
/// [`candle_nn::Optimizer`] (`backward_step(&loss)` does what `loss.backward();
/// optimizer.step()` does in PyTorch; `set_learning_rate` follows a schedule), with the kit's
/// rules (SGD, momentum, Adam, AdamW, RMSprop; L2 and decoupled weight decay on weights, not
/// biases) and its fixed summation order.
///
/// It keeps a host copy of every trainable weight, where the rule works; the new values go
/// into the network's variables in place after each step. A step that would make a weight
/// non-finite is refused: the weights keep their last values and the step is an error.
#[derive(Debug, Clone)]
pub struct Optimizer {
    state: OptimizerState,
    trainable: Vec<Param>,
    weights: Vec<Vec<f32>>,
    lr: f64,
}

impl Optimizer {
    /// A fresh optimizer (`config`) for the trainable weights of `net`, at learning rate `lr`.
    pub fn for_network(net: &Network, config: OptimizerConfig, lr: f64) -> Result<Self> {
        Optimizer::with_state(net, OptimizerState::new(net, config), lr)
    }

    /// Binds an existing state (e.g. read from a checkpoint) to `net`.
    pub fn with_state(net: &Network, state: OptimizerState, lr: f64) -> Result<Self> {
        let mut o = Optimizer {
            state,
            trainable: Vec::new(),
            weights: Vec::new(),
            lr,
        };
        o.bind(net)?;
        Ok(o)
    }

    /// Binds to `net` (a rebuilt copy of the network, say), reading its current weights; the
    /// optimizer state stays.
    pub fn bind(&mut self, net: &Network) -> Result<()> {
        self.trainable = net
            .params()
            .iter()
            .filter(|p| p.trainable())
            .cloned()
            .collect();
        self.read_weights()
    }

    fn read_weights(&mut self) -> Result<()> {
        self.weights = self
            .trainable
            .iter()
            .map(|p| Ok(p.var.flatten_all()?.to_vec1::<f32>()?))
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// The rule's state (its step count and moments).
    pub fn state(&self) -> &OptimizerState {
        &self.state
    }
    /// The rule's state, to load a checkpointed state into.
    pub fn state_mut(&mut self) -> &mut OptimizerState {
        &mut self.state
    }
    /// The trainable parameters, in the optimizer's order.
    pub fn params(&self) -> &[Param] {
        &self.trainable
    }
    /// The current weights, flat, in the order of [`Optimizer::params`].
    pub fn weights(&self) -> &[Vec<f32>] {
        &self.weights
    }
    /// L2 norm of all trainable weights together.
    pub fn weight_norm(&self) -> f64 {
        self.weights
            .iter()
            .flatten()
            .map(|&w| f64::from(w).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    /// One optimizer step from `grads`: `observe` sees every trainable parameter's gradient
    /// first (flat, where backprop left it; a parameter without a gradient reads as zeros)
    /// and may refuse the step by returning false.
    pub fn step_observed(
        &mut self,
        grads: &GradStore,
        lr: f64,
        mut observe: impl FnMut(&[&[f32]]) -> bool,
    ) -> Result<Outcome> {
        let tensors = self
            .trainable
            .iter()
            .map(|p| {
                grads
                    .get(p.var.as_tensor())
                    .map(Tensor::contiguous)
                    .transpose()
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let held: Vec<_> = tensors
            .iter()
            .map(|g| g.as_ref().map(Tensor::storage_and_layout))
            .collect();
        let zeros = if held.iter().any(Option::is_none) {
            vec![0f32; self.weights.iter().map(Vec::len).max().unwrap_or(0)]
        } else {
            Vec::new()
        };
        let flat = held
            .iter()
            .zip(&self.weights)
            .map(|(h, w)| match h {
                Some((s, l)) => storage_slice(s, l, "gradient"),
                None => Ok(&zeros[..w.len()]),
            })
            .collect::<candle_core::Result<Vec<&[f32]>>>()?;
        if !observe(&flat) {
            return Ok(Outcome::Refused);
        }
        if !self.state.step(&mut self.weights, &flat, lr)? {
            // The variables still hold the pre-step weights: the last good ones.
            return Ok(Outcome::NonFiniteWeights);
        }
        drop(flat);
        drop(held);
        for (p, w) in self.trainable.iter().zip(&self.weights) {
            p.var.as_tensor().inplace_op1(&Overwrite(w))?;
        }
        Ok(Outcome::Applied)
    }
}

impl candle_nn::Optimizer for Optimizer {
    type Config = OptimizerConfig;

    /// An optimizer for bare variables (a network written with candle-nn, say): a variable of
    /// rank 2 or more is a weight (decayed by L2 or weight decay), a vector a bias. The
    /// learning rate starts at 1e-3; `set_learning_rate` changes it.
    fn new(vars: Vec<Var>, config: OptimizerConfig) -> candle_core::Result<Self> {
        let trainable: Vec<Param> = vars
            .into_iter()
            .enumerate()
            .map(|(i, var)| Param {
                name: format!("var{i}"),
                kind: if var.rank() >= 2 {
                    ParamKind::Weight
                } else {
                    ParamKind::Bias
                },
                var,
            })
            .collect();
        let listed: Vec<(&str, bool)> = trainable
            .iter()
            .map(|p| (p.name.as_str(), p.kind == ParamKind::Weight))
            .collect();
        let state = OptimizerState::with_params(config, &listed);
        let mut o = Optimizer {
            state,
            trainable,
            weights: Vec::new(),
            lr: 1e-3,
        };
        o.read_weights().map_err(candle_core::Error::wrap)?;
        Ok(o)
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        match self
            .step_observed(grads, self.lr, |_| true)
            .map_err(candle_core::Error::wrap)?
        {
            Outcome::Applied | Outcome::Refused => Ok(()),
            Outcome::NonFiniteWeights => Err(candle_core::Error::wrap(Error::invalid(
                "optimizer step",
                format!(
                    "step {}: a new weight is not finite (the weights keep their last values); \
                     try a lower learning rate",
                    self.state.steps()
                ),
            ))),
        }
    }

    fn learning_rate(&self) -> f64 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
}

/// Per-step gradient statistics over one epoch: the mean gradient, the gradient noise (mean
/// squared norm minus the squared norm of the mean) and each weight's mean gradient norm.
#[derive(Debug, Clone)]
pub struct GradStats {
    sum: Vec<Vec<f64>>,
    sq: f64,
    layer_norm_sum: Vec<f64>,
    names: Vec<(String, bool)>,
    steps: usize,
}

/// What [`GradStats::finish`] reports for one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct GradSummary {
    /// Mean squared gradient norm minus the squared norm of the mean gradient.
    pub noise: f64,
    /// Norm of the mean gradient.
    pub mean_norm: f64,
    /// Mean gradient norm of each weight (biases and BatchNorm parameters left out).
    pub layer_norms: Vec<(String, f64)>,
}

impl GradStats {
    /// Empty statistics for the parameters of `opt`.
    pub fn new(opt: &Optimizer) -> Self {
        GradStats {
            sum: opt.weights.iter().map(|w| vec![0.0; w.len()]).collect(),
            sq: 0.0,
            layer_norm_sum: vec![0.0; opt.trainable.len()],
            names: opt
                .trainable
                .iter()
                .map(|p| (p.name.clone(), p.kind == ParamKind::Weight))
                .collect(),
            steps: 0,
        }
    }

    /// Adds one step's gradients; false when their norm is not finite.
    pub fn add(&mut self, grads: &[&[f32]]) -> bool {
        let mut sq = 0f64;
        for ((acc, g), norm) in self.sum.iter_mut().zip(grads).zip(&mut self.layer_norm_sum) {
            let layer_sq = accumulate(acc, g);
            *norm += layer_sq.sqrt();
            sq += layer_sq;
        }
        self.sq += sq;
        self.steps += 1;
        sq.is_finite()
    }

    /// The epoch's statistics over `steps` steps (the epoch's batch count).
    pub fn finish(&self, steps: usize) -> GradSummary {
        let steps = steps.max(1) as f64;
        let mean_sq: f64 = self.sum.iter().flatten().map(|s| (s / steps).powi(2)).sum();
        GradSummary {
            noise: (self.sq / steps - mean_sq).max(0.0),
            mean_norm: mean_sq.sqrt(),
            layer_norms: self
                .names
                .iter()
                .zip(&self.layer_norm_sum)
                .filter(|((_, weight), _)| *weight)
                .map(|((name, _), s)| (name.clone(), s / steps))
                .collect(),
        }
    }
}

/// `acc += g` (in f64) and returns `sum(g^2)`: the per-step gradient statistics, in fixed
/// chunks on the rayon pool, their partial sums added in order (the same on any thread count).
fn accumulate(acc: &mut [f64], g: &[f32]) -> f64 {
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
