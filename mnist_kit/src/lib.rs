//! # mnist_kit
//!
//! Study deep learning on MNIST in Rust, on [candle]. Data flows one way:
//! files → [`data`] → models → training → analysis → plots, and the notebooks and the
//! `mnist-kit` CLI are thin clients of this library.
//!
//! ```no_run
//! use mnist_kit::data::{Mnist, explore::split_stats};
//! let mnist = Mnist::load_default()?; // the bundled data/mnist, or $MNIST_DATA_DIR
//! let stats = split_stats(&mnist.train);
//! assert_eq!(stats.count, 60_000);
//! # Ok::<(), mnist_kit::Error>(())
//! ```
//!
//! [candle]: https://github.com/huggingface/candle

// A panic in a notebook cell kills the kernel's state: library code returns errors instead.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod analysis;
pub mod bench;
pub mod data;
pub mod display;
pub mod error;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod models;
pub mod ops;
pub mod plot;
#[cfg(feature = "cli")]
pub mod serve;
pub mod study;
pub mod train;

pub use error::{Error, Result};

/// What a notebook or a script usually needs, in one import: `use mnist_kit::prelude::*;`.
pub mod prelude {
    pub use crate::analysis::{
        ConfusionMatrix, Variant, attention_maps, least_confident_correct, load_digit,
        most_confident_mistakes, predict_digit, prediction, robustness, robustness_table, saliency,
        synthetic_digit, weight_histogram, weight_table,
    };
    pub use crate::data::{Mnist, Normalization, Split, explore};
    pub use crate::display::Table;
    pub use crate::models::{Model, ModelConfig, Network};
    pub use crate::plot::{self, Figure, ImageGrid};
    pub use crate::study::{self, StudyConfig};
    pub use crate::train::{
        EarlyStopping, History, OptimizerKind, Schedule, TrainConfig, TrainData, Trainer, evaluate,
    };
    pub use crate::{Error, Result};
    pub use candle_core::Device;
}

/// Re-exported so notebooks and users share the kit's versions of these crates.
pub use candle_core as candle;
pub use candle_nn;
pub use plotly;
pub use polars;
