//! Custom digits end to end: MNIST test digits re-rendered the way a user's images look
//! (upscaled, dark ink on light paper, off-centre on a larger canvas, five formats) go through
//! the preprocessing and a trained model, by library call and by `mnist-kit predict`.

use std::path::PathBuf;
use std::process::Command;

use candle_core::Device;
use image::{DynamicImage, GrayImage, Luma, imageops};
use mnist_kit::analysis::{load_digit, predict_digit, synthetic_digit};
use mnist_kit::data::Mnist;
use mnist_kit::models::Network;
use mnist_kit::train::{TrainConfig, Trainer};

/// Writes test image `i` of MNIST as a user-style photo; returns its path and label.
fn render(mnist: &Mnist, i: usize, dir: &std::path::Path) -> (PathBuf, u8) {
    let px: Vec<u8> = mnist
        .test
        .image(i)
        .unwrap()
        .iter()
        .map(|&p| 255 - p)
        .collect();
    let small = GrayImage::from_raw(28, 28, px).unwrap();
    let big = imageops::resize(&small, 112, 112, imageops::FilterType::CatmullRom);
    let mut canvas = GrayImage::from_pixel(300, 200, Luma([235]));
    imageops::overlay(&mut canvas, &big, 20 + 7 * i as i64, 10 + 3 * i as i64);
    let ext = ["png", "jpg", "bmp", "gif", "webp"][i % 5];
    let path = dir.join(format!("digit{i}.{ext}"));
    let img = DynamicImage::ImageLuma8(canvas);
    let img = match ext {
        "webp" | "gif" => DynamicImage::ImageRgba8(img.to_rgba8()),
        "jpg" | "bmp" => DynamicImage::ImageRgb8(img.to_rgb8()),
        _ => img,
    };
    img.save(&path).unwrap();
    (path, mnist.test.label(i).unwrap())
}

#[test]
fn a_trained_model_reads_rendered_user_digits() {
    let mnist = Mnist::load_default().unwrap();
    let cfg = TrainConfig {
        epochs: 2,
        train_limit: Some(8000),
        validation: 0,
        verbose: false,
        ..Default::default()
    };
    let mut net = Network::preset("lenet5", 1, &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    Trainer::new(cfg.clone())
        .run_dir(dir.path().join("run"))
        .fit(&mut net, &mnist)
        .unwrap();
    let samples: Vec<_> = (0..30).map(|i| render(&mnist, i, dir.path())).collect();
    let correct = samples
        .iter()
        .filter(|(path, label)| {
            let d = load_digit(path).unwrap();
            assert!(d.inverted, "dark ink on light paper");
            let probs = predict_digit(&net, &d).unwrap();
            let pred = probs
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            pred == *label as usize
        })
        .count();
    assert!(
        correct >= 26,
        "{correct}/30 rendered digits classified correctly"
    );

    // Synthetic stroke digits (the fallback when no image is given) read as their digit too.
    let synthetic_ok = (0..10u8)
        .flat_map(|d| (0..3).map(move |s| (d, s)))
        .filter(|&(d, s)| {
            let digit = synthetic_digit(d, s).unwrap();
            let probs = predict_digit(&net, &digit).unwrap();
            probs
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0
                == d as usize
        })
        .count();
    eprintln!("synthetic digits: {synthetic_ok}/30");
    assert!(
        synthetic_ok >= 24,
        "{synthetic_ok}/30 synthetic digits classified correctly"
    );

    // The CLI: one JSON line per image, an error line for an unreadable file, exit non-zero.
    let bogus = dir.path().join("notes.txt");
    std::fs::write(&bogus, "not an image").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mnist-kit"))
        .args(["predict", "--json", "--run"])
        .arg(dir.path().join("run"))
        .arg(&samples[0].0)
        .arg(&bogus)
        .arg(&samples[1].0)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "both good images predicted: {stdout}");
    assert_eq!(lines[0]["probabilities"].as_array().unwrap().len(), 10);
    assert!(lines[0]["digit"].is_u64() && lines[0]["path"].is_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notes.txt") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
