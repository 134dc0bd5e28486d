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
//! ## The layers, bottom up
//!
//! Each module imports only modules above it in this list (and every layer may use the error
//! type and the presentation helpers):
//!
//! | layer | what it holds |
//! |---|---|
//! | [`error`] | the one error type, with the file or value it is about |
//! | [`display`] | HTML tables, escaping, PNG encoding and base64: notebook output |
//! | [`fsutil`] | atomic file writes |
//! | [`ops`] | the CPU kernels: the kit's GEMM with its fixed summation order, convolution, BatchNorm, the per-layer timing hooks |
//! | [`data`] | IDX files, splits, batches, augmentation, MNIST-C corruptions |
//! | [`models`] | layers, the zoo's architectures, [`models::Network`], summaries |
//! | [`train`] | the loss and optimizer step, the [`train::Trainer`], evaluation, run directories |
//! | [`bench`] | throughput, the per-layer profile, and time to accuracy (the speedrun) |
//! | [`analysis`] | confusion matrices, predictions, robustness, saliency, weights, your own digits, abstention |
//! | [`plot`] | plotly figures and image grids |
//! | [`study`] | the study's plan, runs, statistics, findings, claims and report |
//! | `serve` | the draw-a-digit page and its JSON API (feature `cli`) |
//!
//! [candle]: https://github.com/huggingface/candle

// A panic in a notebook cell kills the kernel's state: library code returns errors instead.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

// The layers, bottom up: each imports only the ones above it in this list.
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
pub mod prelude;
#[cfg(feature = "cli")]
pub mod serve;
pub mod study;
pub mod train;

pub use error::{Error, Result};

/// Re-exported so notebooks and users share the kit's versions of these crates.
pub use candle_core as candle;
pub use candle_nn;
pub use plotly;
pub use polars;
