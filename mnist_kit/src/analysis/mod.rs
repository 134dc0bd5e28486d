//! Analysis of trained models: confusion matrices and per-class metrics (more in later work:
//! prediction analysis, weights, saliency, custom digits).

pub mod confusion;

pub use crate::train::{Evaluation, evaluate};
pub use confusion::{ClassMetrics, ConfusedPair, ConfusionMatrix};
