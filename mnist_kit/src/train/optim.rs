//! Optimizers with PyTorch's update rules (candle-nn ships only SGD and AdamW, whose state is
//! private). Updates run on flat `f32` buffers: exact, cheap for MNIST-sized models, and the
//! state is plain data that a checkpoint saves and restores.
//!
//! L2 (`l2`) adds `l2 * w` to the gradient before the update (the gradient of the penalty
//! `l2/2 * ||w||^2`, PyTorch's `weight_decay` for SGD/Adam/RMSprop). Decoupled weight decay
//! (`weight_decay`) shrinks `w *= 1 - lr * weight_decay` beside the update (AdamW's rule). Both
//! apply to weights only unless `decay_biases` is set; BatchNorm running statistics are never
//! optimizer parameters.

use std::collections::HashMap;

use candle_core::{CpuStorage, Device, Layout, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::models::Network;
use crate::models::layers::ParamKind;
use crate::{Error, Result};

/// The optimizer algorithm and its hyper-parameters (the learning rate lives in the schedule).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerKind {
    /// SGD, optionally with (Nesterov) momentum.
    Sgd {
        /// Momentum factor (0 = plain SGD).
        momentum: f64,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// Adam (Kingma & Ba), L2 coupled through the gradient.
    Adam {
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Denominator epsilon.
        eps: f64,
    },
    /// AdamW (Loshchilov & Hutter): Adam with decoupled weight decay.
    AdamW {
        /// First-moment decay.
        beta1: f64,
        /// Second-moment decay.
        beta2: f64,
        /// Denominator epsilon.
        eps: f64,
    },
    /// RMSprop (PyTorch's variant: eps outside the square root), optional momentum.
    RmsProp {
        /// Squared-gradient decay.
        alpha: f64,
        /// Denominator epsilon.
        eps: f64,
        /// Momentum factor (0 = none).
        momentum: f64,
    },
}

impl OptimizerKind {
    /// Plain SGD.
    pub const SGD: Self = OptimizerKind::Sgd {
        momentum: 0.0,
        nesterov: false,
    };
    /// SGD with momentum 0.9.
    pub const MOMENTUM: Self = OptimizerKind::Sgd {
        momentum: 0.9,
        nesterov: false,
    };
    /// Nesterov SGD with momentum 0.9.
    pub const NESTEROV: Self = OptimizerKind::Sgd {
        momentum: 0.9,
        nesterov: true,
    };
    /// Adam with PyTorch's defaults.
    pub const ADAM: Self = OptimizerKind::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    /// AdamW with PyTorch's defaults.
    pub const ADAMW: Self = OptimizerKind::AdamW {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    /// RMSprop with PyTorch's defaults.
    pub const RMSPROP: Self = OptimizerKind::RmsProp {
        alpha: 0.99,
        eps: 1e-8,
        momentum: 0.0,
    };

    /// Parses `sgd`, `momentum`, `nesterov`, `adam`, `adamw`, `rmsprop`.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "sgd" => Self::SGD,
            "momentum" | "sgd-momentum" | "sgd+momentum" => Self::MOMENTUM,
            "nesterov" => Self::NESTEROV,
            "adam" => Self::ADAM,
            "adamw" => Self::ADAMW,
            "rmsprop" => Self::RMSPROP,
            _ => {
                return Err(Error::invalid(
                    "optimizer",
                    format!("{name:?}; expected sgd, momentum, nesterov, adam, adamw or rmsprop"),
                ));
            }
        })
    }

    /// Short name for tables.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerKind::Sgd { momentum, nesterov } => {
                if *nesterov {
                    "nesterov"
                } else if *momentum > 0.0 {
                    "momentum"
                } else {
                    "sgd"
                }
            }
            OptimizerKind::Adam { .. } => "adam",
            OptimizerKind::AdamW { .. } => "adamw",
            OptimizerKind::RmsProp { .. } => "rmsprop",
        }
    }
}

/// Hyper-parameters shared by all optimizers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    /// The algorithm.
    pub kind: OptimizerKind,
    /// Coupled L2: `l2 * w` added to the gradient.
    pub l2: f64,
    /// Decoupled decay: `w *= 1 - lr * weight_decay`.
    pub weight_decay: f64,
    /// Apply L2/decay to biases and BatchNorm scales too.
    pub decay_biases: bool,
}

impl OptimizerConfig {
    /// Whether L2 and decay act on parameter `p` (trainable weights; biases and BatchNorm
    /// scales only with `decay_biases`).
    pub fn decays(&self, p: &crate::models::layers::Param) -> bool {
        p.trainable() && (p.kind == ParamKind::Weight || self.decay_biases)
    }

    /// The sum of squares of `net`'s parameters that L2 acts on: the penalty whose gradient
    /// is the L2 term is `l2 / 2` times it (Keras' `l2(λ)` adds `λ` times it to the loss it
    /// reports, so `λ = l2 / 2`).
    pub fn penalized_square_sum(&self, net: &Network) -> Result<f64> {
        let mut sum = 0.0;
        for p in net.params().iter().filter(|p| self.decays(p)) {
            let w = p.var.flatten_all()?.to_vec1::<f32>()?;
            sum += w.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>();
        }
        Ok(sum)
    }
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::ADAM,
            l2: 0.0,
            weight_decay: 0.0,
            decay_biases: false,
        }
    }
}

/// Elements per parallel task of an update (and of the trainer's gradient statistics).
pub(crate) const CHUNK: usize = 1 << 14;
/// Chunks a parallel task takes at least: a smaller tensor is updated on the calling thread,
/// where waking another costs more than the work (MLP-61k trained slower on two threads than
/// on one). The chunks, and so the numbers, stay the same.
pub(crate) const MIN_CHUNKS_PER_TASK: usize = 4;

/// One step's update rule with its constants, applied chunk by chunk.
struct Rule {
    kind: OptimizerKind,
    lr: f32,
    l2: f32,
    /// `1 - lr * weight_decay` (1 without decoupled decay).
    shrink: f32,
    /// First step of a momentum buffer: it starts at the gradient (PyTorch).
    first: bool,
    /// Adam: `lr / (1 - beta1^t)` and `sqrt(1 - beta2^t)`.
    step_size: f32,
    bc2_sqrt: f32,
}

impl Rule {
    fn new(kind: OptimizerKind, lr: f64, t: i32, l2: f32, wd: f64, first: bool) -> Self {
        let (step_size, bc2_sqrt) = match kind {
            OptimizerKind::Adam { beta1, beta2, .. }
            | OptimizerKind::AdamW { beta1, beta2, .. } => (
                (lr / (1.0 - beta1.powi(t))) as f32,
                (1.0 - beta2.powi(t)).sqrt() as f32,
            ),
            _ => (0.0, 0.0),
        };
        Rule {
            kind,
            lr: lr as f32,
            l2,
            shrink: (1.0 - lr * wd) as f32,
            first,
            step_size,
            bc2_sqrt,
        }
    }

    /// Updates one chunk; whether all its new weights are finite.
    fn apply(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) -> bool {
        apply_rule(self, p, g, m, v)
    }
}

crate::ops::simd::multiversion! {
    /// [`Rule::apply`], compiled per instruction set: elementwise, so every path rounds alike.
    /// The finiteness check folds without an early exit, so it vectorizes.
    fn apply_rule(rule: &Rule, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) -> bool {
        rule.apply_inline(p, g, m, v);
        p.iter().fold(true, |ok, w| ok & w.is_finite())
    }
}

impl Rule {
    #[inline(always)]
    fn apply_inline(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let (lr, l2) = (self.lr, self.l2);
        if self.shrink != 1.0 {
            p.iter_mut().for_each(|w| *w *= self.shrink);
        }
        match self.kind {
            OptimizerKind::Sgd { momentum, nesterov } => {
                let mu = momentum as f32;
                if mu == 0.0 {
                    for (w, &gi) in p.iter_mut().zip(g) {
                        *w -= lr * (gi + l2 * *w);
                    }
                } else {
                    for ((w, &gi), b) in p.iter_mut().zip(g).zip(m) {
                        let d = gi + l2 * *w;
                        *b = if self.first { d } else { mu * *b + d };
                        let step = if nesterov { d + mu * *b } else { *b };
                        *w -= lr * step;
                    }
                }
            }
            OptimizerKind::Adam { beta2, eps, beta1 }
            | OptimizerKind::AdamW { beta2, eps, beta1 } => {
                // 1 - beta in f64: 1 - 0.999f32 is off by 1.3e-5 relative.
                let (b2, one_b1, one_b2) =
                    (beta2 as f32, (1.0 - beta1) as f32, (1.0 - beta2) as f32);
                let (eps, step_size, bc2_sqrt) = (eps as f32, self.step_size, self.bc2_sqrt);
                for (((w, &gi), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                    let d = gi + l2 * *w;
                    // PyTorch updates the first moment with lerp; same rounding here.
                    *m += one_b1 * (d - *m);
                    *v = b2 * *v + one_b2 * d * d;
                    *w -= step_size * *m / (v.sqrt() / bc2_sqrt + eps);
                }
            }
            OptimizerKind::RmsProp {
                alpha,
                eps,
                momentum,
            } => {
                let (a, one_a) = (alpha as f32, (1.0 - alpha) as f32);
                let (eps, mu) = (eps as f32, momentum as f32);
                for (((w, &gi), b), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                    let d = gi + l2 * *w;
                    *v = a * *v + one_a * d * d;
                    let upd = d / (v.sqrt() + eps);
                    if mu > 0.0 {
                        *b = mu * *b + upd;
                        *w -= lr * *b;
                    } else {
                        *w -= lr * upd;
                    }
                }
            }
        }
    }
}

/// Per-parameter state buffers, both allocated at the first step whatever the rule (a rule
/// that does not use one leaves it at zero).
#[derive(Debug, Clone, Default)]
struct Slot {
    decay: bool,
    /// Momentum buffer (SGD, RMSprop) or first moment (Adam).
    m: Vec<f32>,
    /// Second moment (Adam) or squared-gradient average (RMSprop).
    v: Vec<f32>,
}

/// The state of an optimizer rule (SGD, momentum, Adam, AdamW, RMSprop) for the trainable
/// parameters of one network: the moments of every slot and the step count. The weights
/// themselves live in [`super::Optimizer`], which binds this state to a network.
#[derive(Debug, Clone)]
pub struct OptimizerState {
    config: OptimizerConfig,
    slots: Vec<Slot>,
    names: Vec<String>,
    step: u64,
}

impl OptimizerState {
    /// State for every trainable parameter of `net`.
    pub fn new(net: &Network, config: OptimizerConfig) -> Self {
        let trainable: Vec<_> = net.params().iter().filter(|p| p.trainable()).collect();
        OptimizerState {
            config,
            slots: trainable
                .iter()
                .map(|p| Slot {
                    decay: config.decays(p),
                    ..Default::default()
                })
                .collect(),
            names: trainable.iter().map(|p| p.name.clone()).collect(),
            step: 0,
        }
    }

    /// State for explicitly listed parameters: `(name, decayed)` pairs (tests, custom loops).
    pub fn with_params(config: OptimizerConfig, params: &[(&str, bool)]) -> Self {
        OptimizerState {
            config,
            slots: params
                .iter()
                .map(|&(_, decay)| Slot {
                    decay: decay || config.decay_biases,
                    ..Default::default()
                })
                .collect(),
            names: params.iter().map(|(n, _)| n.to_string()).collect(),
            step: 0,
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }
    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Updates `params` in place from `grads` (one flat buffer per trainable parameter:
    /// `Vec<f32>` or `&[f32]`). Returns whether every updated weight is finite (checked while
    /// each chunk is still in cache).
    pub fn step<G: AsRef<[f32]> + Sync>(
        &mut self,
        params: &mut [Vec<f32>],
        grads: &[G],
        lr: f64,
    ) -> Result<bool> {
        if params.len() != self.slots.len() || grads.len() != self.slots.len() {
            return Err(Error::invalid(
                "optimizer step",
                format!(
                    "{} params, {} grads for {} slots",
                    params.len(),
                    grads.len(),
                    self.slots.len()
                ),
            ));
        }
        self.step += 1;
        let t = self.step as i32;
        let c = self.config;
        let mut finite = true;
        for ((p, g), slot) in params.iter_mut().zip(grads).zip(&mut self.slots) {
            let g = g.as_ref();
            if p.len() != g.len() {
                return Err(Error::invalid(
                    "optimizer step",
                    "gradient size differs from parameter",
                ));
            }
            let (l2, wd) = if slot.decay {
                (c.l2 as f32, c.weight_decay)
            } else {
                (0.0, 0.0)
            };
            // Both buffers exist for every rule, so the update can run in parallel chunks.
            let first = slot.m.len() != p.len();
            for buf in [&mut slot.m, &mut slot.v] {
                if buf.len() != p.len() {
                    *buf = vec![0.0; p.len()];
                }
            }
            let rule = Rule::new(c.kind, lr, t, l2, wd, first);
            finite &= p
                .par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(
                    slot.m
                        .par_chunks_mut(CHUNK)
                        .zip(slot.v.par_chunks_mut(CHUNK)),
                )
                .with_min_len(MIN_CHUNKS_PER_TASK)
                .map(|((w, g), (m, v))| rule.apply(w, g, m, v))
                .reduce(|| true, |a, b| a & b);
        }
        Ok(finite)
    }

    /// The state as named tensors (`<param>.m`, `<param>.v`, `step`), for checkpoints.
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (name, slot) in self.names.iter().zip(&self.slots) {
            for (suffix, buf) in [("m", &slot.m), ("v", &slot.v)] {
                if !buf.is_empty() {
                    out.insert(
                        format!("{name}.{suffix}"),
                        Tensor::from_slice(buf, buf.len(), &Device::Cpu)?,
                    );
                }
            }
        }
        // Steps as two u32 halves: safetensors via candle has no u64.
        let halves = [(self.step >> 32) as u32, self.step as u32];
        out.insert("step".into(), Tensor::from_slice(&halves, 2, &Device::Cpu)?);
        Ok(out)
    }

    /// Restores state saved by [`OptimizerState::state_tensors`].
    pub fn load_state_tensors(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let bad = |r: String| Error::invalid("optimizer state", r);
        let step = state
            .get("step")
            .ok_or_else(|| bad("no step counter".into()))?;
        let halves = step.to_vec1::<u32>().map_err(|e| bad(e.to_string()))?;
        if halves.len() != 2 {
            return Err(bad("bad step counter".into()));
        }
        self.step = (u64::from(halves[0]) << 32) | u64::from(halves[1]);
        for (name, slot) in self.names.iter().zip(&mut self.slots) {
            for (suffix, buf) in [("m", &mut slot.m), ("v", &mut slot.v)] {
                *buf = match state.get(&format!("{name}.{suffix}")) {
                    Some(t) => t
                        .to_vec1::<f32>()
                        .map_err(|e| bad(format!("{name}.{suffix}: {e}")))?,
                    None => Vec::new(),
                };
            }
        }
        Ok(())
    }
}

/// Overwrites a contiguous f32 tensor with `self.0` in place (the optimizer's new weights
/// into a variable, with one copy and no allocation).
pub(crate) struct Overwrite<'a>(pub &'a [f32]);

impl candle_core::InplaceOp1 for Overwrite<'_> {
    fn name(&self) -> &'static str {
        "mnist-kit-overwrite"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("overwrite: expected an f32 tensor");
        };
        let dst = match layout.contiguous_offsets() {
            Some((a, b)) if b - a == self.0.len() => &mut data[a..b],
            _ => candle_core::bail!(
                "overwrite: a contiguous tensor of {} values expected, got {:?}",
                self.0.len(),
                layout.dims()
            ),
        };
        dst.par_chunks_mut(CHUNK)
            .zip(self.0.par_chunks(CHUNK))
            .with_min_len(MIN_CHUNKS_PER_TASK)
            .for_each(|(d, s)| d.copy_from_slice(s));
        Ok(())
    }
}
