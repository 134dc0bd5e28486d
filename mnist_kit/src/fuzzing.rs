//! Entry points of the fuzz targets (`mnist_kit/fuzz/`) and of their short run in the tests.
//! Each takes arbitrary bytes and must return, with or without an error: never panic, never
//! allocate without bound.

use std::path::Path;
use std::sync::OnceLock;

use candle_core::Device;

use crate::analysis::digit_from_bytes;
use crate::data::idx::decode_idx;
use crate::models::{ModelConfig, Network};
use crate::train::TrainConfig;

/// IDX files, raw or gzip, read as labels (rank 1) and as images (rank 3).
pub fn idx(data: &[u8]) {
    for rank in [1, 3] {
        let _ = decode_idx(data, "fuzz", rank);
    }
}

/// Custom-digit preprocessing of any image bytes.
pub fn digit(data: &[u8]) {
    let _ = digit_from_bytes(data, "fuzz");
}

/// Model and training config JSON; valid small model configs are built too.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = ModelConfig::from_json(text)
        && c.approx_params() < 1_000_000
    {
        let _ = Network::new(&c, 0, &Device::Cpu);
    }
    if let Ok(t) = serde_json::from_str::<TrainConfig>(text) {
        let _ = t.validate();
    }
}

/// Checkpoint (safetensors) loading into a LeNet-5.
pub fn checkpoint(data: &[u8]) {
    static NET: OnceLock<Option<Network>> = OnceLock::new();
    if let Some(net) = NET.get_or_init(|| Network::preset("lenet5", 0, &Device::Cpu).ok()) {
        let _ = net.load_weights_bytes(data, Path::new("fuzz"));
    }
}
