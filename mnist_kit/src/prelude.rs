//! What a notebook or a script usually needs, in one import: `use mnist_kit::prelude::*;`.

pub use crate::analysis::{
    ConfusionMatrix, Variant, attention_maps, least_confident_correct, load_digit,
    most_confident_mistakes, predict_digit, prediction, robustness, robustness_table, saliency,
    synthetic_digit, weight_histogram, weight_table,
};
pub use crate::data::{Mnist, Normalization, Split, explore};
pub use crate::display::{Markdown, Table, markdown};
pub use crate::models::{Model, ModelConfig, Network};
pub use crate::plot::{self, Figure, ImageGrid};
pub use crate::study::facts::{pct, points, seconds, thousands};
pub use crate::study::{self, Facts, Metric, StudyConfig};
pub use crate::train::{
    EarlyStopping, History, Optimizer, OptimizerConfig, OptimizerKind, Run, Schedule, TrainConfig,
    TrainData, Trainer, evaluate,
};
pub use crate::{Error, Result};
pub use candle_core::Device;
