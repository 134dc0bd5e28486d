//! The short fuzz run of the tests: the fuzz targets' entry points (`mnist_kit::fuzzing`, also
//! run by `cargo fuzz` from `mnist_kit/fuzz/`) on valid seeds and on seeded random mutations of
//! them. Each must return without a panic. `MNIST_KIT_WRITE_CORPUS=DIR` writes the seeds out as
//! the initial corpus of the fuzz targets.

use std::io::{Cursor, Write};

use candle_core::Device;
use image::{DynamicImage, ImageFormat, Rgba, RgbaImage};
use mnist_kit::data::idx::encode_idx;
use mnist_kit::fuzzing;
use mnist_kit::models::{MODEL_NAMES, ModelConfig, Network};
use mnist_kit::train::TrainConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "idx" => {
            let labels = encode_idx(&[10], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
            let images = encode_idx(&[2, 28, 28], &[128; 2 * 784]);
            vec![gzip(&labels), gzip(&images), labels, images]
        }
        "digit" => {
            let mut img = RgbaImage::from_pixel(40, 30, Rgba([250, 250, 240, 255]));
            for y in 5..25 {
                for x in 15..20 {
                    img.put_pixel(x, y, Rgba([20, 20, 30, 255]));
                }
            }
            let img = DynamicImage::ImageRgba8(img);
            [
                ImageFormat::Png,
                ImageFormat::Bmp,
                ImageFormat::Gif,
                ImageFormat::WebP,
            ]
            .into_iter()
            .map(|f| {
                let mut out = Vec::new();
                img.write_to(&mut Cursor::new(&mut out), f).unwrap();
                out
            })
            .chain(std::iter::once({
                let mut out = Vec::new();
                DynamicImage::ImageRgb8(img.to_rgb8())
                    .write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg)
                    .unwrap();
                out
            }))
            .collect()
        }
        "config" => MODEL_NAMES
            .iter()
            .map(|n| ModelConfig::preset(n).unwrap().to_json().into_bytes())
            .chain(std::iter::once(
                serde_json::to_vec(&TrainConfig::default()).unwrap(),
            ))
            .collect(),
        "checkpoint" => {
            let net = Network::preset("lenet5", 1, &Device::Cpu).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("w.safetensors");
            net.save_weights(&path).unwrap();
            vec![std::fs::read(path).unwrap()]
        }
        _ => unreachable!(),
    }
}

/// Bit flips, byte overwrites with boundary values, truncation, insertion and duplication.
fn mutate(seed: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.random_range(1..8) {
        if v.is_empty() {
            v.push(rng.random());
            continue;
        }
        let i = rng.random_range(0..v.len());
        match rng.random_range(0..6) {
            0 => v[i] ^= 1 << rng.random_range(0..8),
            1 => v[i] = [0, 1, 0x7f, 0x80, 0xff][rng.random_range(0..5)],
            2 => v.truncate(i),
            3 => v.insert(i, rng.random()),
            4 => {
                let end = (i + rng.random_range(1..64)).min(v.len());
                let chunk = v[i..end].to_vec();
                v.splice(i..i, chunk);
            }
            _ => {
                // Header fields live in the first bytes: hit them more often.
                let j = rng.random_range(0..v.len().min(16));
                v[j] = rng.random();
            }
        }
    }
    v
}

fn run(target: &str, run_one: fn(&[u8]), iterations: usize) {
    let seeds = seeds(target);
    if let Some(dir) = std::env::var_os("MNIST_KIT_WRITE_CORPUS") {
        let dir = std::path::Path::new(&dir).join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), s).unwrap();
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(0xF022);
    for s in &seeds {
        run_one(s);
    }
    for _ in 0..iterations {
        let s = &seeds[rng.random_range(0..seeds.len())];
        run_one(&mutate(s, &mut rng));
    }
}

#[test]
fn idx_reader_survives_mutations() {
    run("idx", fuzzing::idx, 100_000);
}

#[test]
fn digit_preprocessing_survives_mutations() {
    run("digit", fuzzing::digit, 5_000);
}

#[test]
fn config_parsing_survives_mutations() {
    run("config", fuzzing::config, 20_000);
}

#[test]
fn checkpoint_loading_survives_mutations() {
    run("checkpoint", fuzzing::checkpoint, 2_000);
}
