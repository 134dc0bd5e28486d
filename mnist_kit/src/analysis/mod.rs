//! Analysis of trained models: confusion matrices and per-class metrics, prediction analysis,
//! weight statistics, the user's own digits, and when not to answer them.

pub mod abstain;
pub mod confusion;
pub mod custom_digit;
pub mod gate;
pub mod predictions;
pub mod real_digits;
pub mod robustness;
pub mod saliency;
pub mod synthetic;
pub mod weights;

pub use crate::train::{Evaluation, evaluate};
pub use abstain::{Answer, Calibration, answer, expected_calibration_error};
pub use confusion::{ClassMetrics, ConfusedPair, ConfusionMatrix};
pub use custom_digit::{
    Digit, digit_from_bytes, image_size, load_digit, most_likely, predict_digit,
};
pub use predictions::{Prediction, least_confident_correct, most_confident_mistakes, prediction};
pub use robustness::{RobustnessRow, Variant, robustness, robustness_table};
pub use saliency::{attention_maps, digit_saliency, saliency};
pub use synthetic::synthetic_digit;
pub use weights::{WeightStats, weight_histogram, weight_stats, weight_table};
