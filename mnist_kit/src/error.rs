//! One error type for the whole kit: every public function returns [`Result`], so a bad file or
//! argument in a notebook cell is a message, never a panic that kills the kernel.

use std::path::PathBuf;

/// Everything that can go wrong in `mnist_kit`, with enough context to act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O failure on a named file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that is not a valid IDX array of the expected shape.
    #[error("{path}: invalid IDX file: {reason}")]
    Idx { path: PathBuf, reason: String },
    /// Two files of one split disagree, or a value is out of range.
    #[error("{path}: {reason}")]
    Dataset { path: PathBuf, reason: String },
    /// No dataset directory was found; lists every place that was looked at.
    #[error("MNIST data not found; tried: {}", tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    DataNotFound { tried: Vec<PathBuf> },
    /// A configuration or argument that cannot be used.
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    /// A training run produced a non-finite loss or gradient.
    #[error("non-finite {quantity} at epoch {epoch}, batch {batch} (last good weights kept)")]
    NonFinite {
        quantity: &'static str,
        epoch: usize,
        batch: usize,
    },
    /// A checkpoint or config file that does not match the model it is loaded into.
    #[error("{path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    /// An image that cannot be decoded or used as a digit.
    #[error("{source_name}: {reason}")]
    Image { source_name: String, reason: String },
    /// An image with no ink to read: blank paper, an empty pad.
    #[error("{source_name}: no digit found: {reason}")]
    Blank { source_name: String, reason: String },
    /// JSON (de)serialization of configs, histories and reports.
    #[error("{context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    /// A tensor operation failed inside candle.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// A table operation failed inside polars.
    #[error("table error: {0}")]
    Polars(#[from] polars::error::PolarsError),
}

/// Result with the kit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            reason: reason.into(),
        }
    }
}
