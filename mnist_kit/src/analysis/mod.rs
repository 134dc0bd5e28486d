//! Analysis of trained models: confusion matrices and per-class metrics (more in later work:
//! prediction analysis, weights, saliency, custom digits).

pub mod confusion;
pub mod custom_digit;

pub use crate::train::{Evaluation, evaluate};
pub use confusion::{ClassMetrics, ConfusedPair, ConfusionMatrix};
pub use custom_digit::{Digit, digit_from_bytes, load_digit, predict_digit};
