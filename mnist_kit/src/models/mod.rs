//! The model zoo: configs, layers, architectures, summaries and the [`Network`] wrapper.

mod arch;
pub mod config;
mod interop;
pub mod layers;
pub mod network;
pub mod summary;

pub use config::{
    Activation, LenetConfig, MODEL_NAMES, MlpConfig, ModelConfig, Pooling, ResNetConfig,
    SimpleCnnConfig, display_name,
};
pub use network::{Model, Network};
pub use summary::{LayerInfo, ModelSummary};
