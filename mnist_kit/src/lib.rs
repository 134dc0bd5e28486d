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
pub mod models;
pub mod ops;
pub mod plot;
pub mod study;
pub mod train;

pub use error::{Error, Result};

/// Re-exported so notebooks and users share the kit's versions of these crates.
pub use candle_core as candle;
pub use candle_nn;
pub use plotly;
pub use polars;
