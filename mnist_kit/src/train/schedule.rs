//! Learning-rate schedules, evaluated per epoch (the History records each epoch's rate).

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How the learning rate changes over epochs.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Multiply by `gamma` every `step_size` epochs.
    Step {
        /// Epochs between decays.
        step_size: usize,
        /// Decay factor.
        gamma: f64,
    },
    /// Cosine annealing from the base rate to `min_factor * base` over the run.
    Cosine {
        /// Final rate as a fraction of the base rate.
        min_factor: f64,
    },
    /// Linear warm-up over `warmup_epochs`, then cosine to `min_factor * base`.
    WarmupCosine {
        /// Epochs of linear warm-up.
        warmup_epochs: usize,
        /// Final rate as a fraction of the base rate.
        min_factor: f64,
    },
    /// One-cycle (Smith): up from `base/div_factor` to `base` over `pct_start` of the run,
    /// then cosine down to `base/final_div_factor`.
    OneCycle {
        /// Fraction of the run spent increasing.
        pct_start: f64,
        /// Initial rate is `base / div_factor`.
        div_factor: f64,
        /// Final rate is `base / final_div_factor`.
        final_div_factor: f64,
    },
}

impl Schedule {
    /// Parses `constant`, `step`, `cosine`, `warmup-cosine`, `one-cycle` with default knobs.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name.to_ascii_lowercase().replace('_', "-").as_str() {
            "constant" | "none" => Schedule::Constant,
            "step" => Schedule::Step {
                step_size: 3,
                gamma: 0.5,
            },
            "cosine" => Schedule::Cosine { min_factor: 0.01 },
            "warmup-cosine" => Schedule::WarmupCosine {
                warmup_epochs: 1,
                min_factor: 0.01,
            },
            "one-cycle" | "onecycle" => Schedule::OneCycle {
                pct_start: 0.3,
                div_factor: 25.0,
                final_div_factor: 1e4,
            },
            _ => {
                return Err(Error::invalid(
                    "schedule",
                    format!(
                        "{name:?}; expected constant, step, cosine, warmup-cosine or one-cycle"
                    ),
                ));
            }
        })
    }

    /// Learning rate of `epoch` (0-based) in a run of `epochs` epochs.
    pub fn lr(&self, base: f64, epoch: usize, epochs: usize) -> f64 {
        let e = epoch as f64;
        let n = epochs.max(1) as f64;
        let cosine = |from: f64, to: f64, t: f64| {
            to + (from - to) * 0.5 * (1.0 + (PI * t.clamp(0.0, 1.0)).cos())
        };
        match *self {
            Schedule::Constant => base,
            Schedule::Step { step_size, gamma } => {
                base * gamma.powi((epoch / step_size.max(1)) as i32)
            }
            Schedule::Cosine { min_factor } => {
                cosine(base, base * min_factor, e / (n - 1.0).max(1.0))
            }
            Schedule::WarmupCosine {
                warmup_epochs,
                min_factor,
            } => {
                if epoch < warmup_epochs {
                    base * (e + 1.0) / (warmup_epochs as f64 + 1.0)
                } else {
                    let span = (n - 1.0 - warmup_epochs as f64).max(1.0);
                    cosine(base, base * min_factor, (e - warmup_epochs as f64) / span)
                }
            }
            Schedule::OneCycle {
                pct_start,
                div_factor,
                final_div_factor,
            } => {
                let peak = ((n - 1.0) * pct_start).round().max(1.0);
                let start = base / div_factor;
                if e <= peak {
                    cosine(start, base, e / peak)
                } else {
                    cosine(
                        base,
                        base / final_div_factor,
                        (e - peak) / ((n - 1.0) - peak).max(1.0),
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_have_their_shapes() {
        assert_eq!(Schedule::Constant.lr(0.1, 5, 10), 0.1);
        let step = Schedule::Step {
            step_size: 2,
            gamma: 0.5,
        };
        assert_eq!(
            [0, 1, 2, 4].map(|e| step.lr(1.0, e, 10)),
            [1.0, 1.0, 0.5, 0.25]
        );
        let cos = Schedule::Cosine { min_factor: 0.0 };
        assert!((cos.lr(1.0, 0, 11) - 1.0).abs() < 1e-12);
        assert!((cos.lr(1.0, 5, 11) - 0.5).abs() < 1e-12);
        assert!(cos.lr(1.0, 10, 11).abs() < 1e-12);
        let warm = Schedule::WarmupCosine {
            warmup_epochs: 2,
            min_factor: 0.0,
        };
        assert!(warm.lr(1.0, 0, 10) < warm.lr(1.0, 1, 10));
        assert!((warm.lr(1.0, 2, 10) - 1.0).abs() < 1e-12);
        let one = Schedule::from_name("one-cycle").unwrap();
        let lrs: Vec<f64> = (0..10).map(|e| one.lr(1.0, e, 10)).collect();
        let peak = lrs.iter().cloned().fold(0.0, f64::max);
        assert!((peak - 1.0).abs() < 1e-9);
        assert!(lrs[0] < 0.1 && lrs[9] < 1e-3);
    }
}
