//! The `mnist-kit` binary end to end: JSON contracts and one-line errors without panics.

use std::process::{Command, Output};

fn mnist_kit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mnist-kit"))
        .args(args)
        .env_remove("MNIST_DATA_DIR")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("binary runs")
}

/// Asserts a clean failure: non-zero exit, one `error:` line, no panic or backtrace.
pub fn assert_clean_failure(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "must fail: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

#[test]
fn data_stats_json_has_the_contract_shape() {
    let out = mnist_kit(&["data", "stats", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["train"]["count"], 60000);
    assert_eq!(v["test"]["count"], 10000);
    assert_eq!(v["train"]["class_counts"][0], 5923);
    assert_eq!(v["test"]["class_counts"][1], 1135);
    let mean = v["train"]["pixel_mean"].as_f64().unwrap();
    assert!((mean - 0.1307).abs() < 1e-3);
    assert!(v["test"]["pixel_std"].as_f64().unwrap() > 0.3);
}

#[test]
fn bad_data_dirs_fail_with_one_line() {
    let e = assert_clean_failure(&mnist_kit(&["data", "stats", "--data-dir", "/nonexistent"]));
    assert!(e.contains("/nonexistent"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        b"not an idx file",
    )
    .unwrap();
    let e = assert_clean_failure(&mnist_kit(&[
        "data",
        "stats",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]));
    assert!(e.contains("train-"), "{e}");
}

#[test]
fn summary_json_prints_the_exact_counts() {
    for (model, params) in [
        ("dense128", 101_770),
        ("mlp-61k", 61_450),
        ("mlp-500-150", 469_160),
        ("mlp-800", 636_010),
        ("lenet5", 61_706),
        ("lenet5-28", 44_426),
        ("simple-cnn", 34_826),
    ] {
        let out = mnist_kit(&["summary", model, "--json"]);
        assert!(out.status.success(), "{model}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["model"], model);
        assert_eq!(v["params"], params, "{model}");
        assert_eq!(v["buffers"], 0, "{model}");
        let layers = v["layers"].as_array().unwrap();
        let sum: u64 = layers.iter().map(|l| l["params"].as_u64().unwrap()).sum();
        assert_eq!(sum, params as u64);
        assert!(
            layers
                .iter()
                .all(|l| l["output_shape"].is_array() && l["formula"].is_string())
        );
    }
    let out = mnist_kit(&["models"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("lenet5-attention"));
    let e = assert_clean_failure(&mnist_kit(&["summary", "lenet6"]));
    assert!(e.contains("known models"), "{e}");
}

#[test]
fn cli_training_is_deterministic_and_eval_matches() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| -> (serde_json::Value, Vec<Vec<f32>>) {
        let out_dir = dir.path().join(name);
        let out = mnist_kit(&[
            "train",
            "--model",
            "lenet5-regularized",
            "--out",
            out_dir.to_str().unwrap(),
            "--epochs",
            "1",
            "--train-limit",
            "600",
            "--val-split",
            "200",
            "--test-limit",
            "300",
            "--augment",
            "--seed",
            seed,
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let last = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .to_string();
        let result: serde_json::Value = serde_json::from_str(&last).unwrap();
        let net = mnist_kit::train::Run::open(&out_dir).unwrap().net;
        let weights = net
            .params()
            .iter()
            .map(|p| p.var.flatten_all().unwrap().to_vec1().unwrap())
            .collect();
        (result, weights)
    };
    let (a, wa) = run("a", "9");
    let (b, wb) = run("b", "9");
    let (c, wc) = run("c", "10");
    assert_eq!(a["test_accuracy"], b["test_accuracy"]);
    assert_eq!(a["test_loss"], b["test_loss"]);
    assert_eq!(wa, wb, "same seed, same weights bit for bit");
    assert_ne!(wa, wc, "another seed, other weights");
    let _ = c;
    // `eval` reports the same test numbers on the full test set shape.
    let out = mnist_kit(&[
        "eval",
        "--run",
        dir.path().join("a").to_str().unwrap(),
        "--json",
    ]);
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let confusion = e["confusion"].as_array().unwrap();
    assert_eq!(confusion.len(), 10);
    let total: u64 = confusion
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 10_000);
}

#[test]
fn bench_profile_json_has_a_row_per_layer() {
    // The JSON contract of `bench --profile` (a shape check: the times are the benchmark's).
    let out = mnist_kit(&[
        "bench",
        "--model",
        "lenet5",
        "--batches",
        "5",
        "--profile",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in [
        "train_images_per_sec",
        "infer_images_per_sec",
        "peak_rss_mb",
        "cpu",
    ] {
        assert!(v.get(k).is_some(), "{k} kept");
    }
    let layers = v["layers"].as_array().unwrap();
    let names: Vec<&str> = layers.iter().map(|l| l["name"].as_str().unwrap()).collect();
    for layer in [
        "conv1",
        "pool1",
        "conv2",
        "pool2",
        "conv3",
        "fc1",
        "out",
        "optimizer step",
    ] {
        assert!(names.contains(&layer), "{layer} in {names:?}");
    }
    let share: f64 = layers.iter().map(|l| l["share"].as_f64().unwrap()).sum();
    assert!(
        (share - 1.0).abs() < 0.05,
        "shares add up to the step: {share}"
    );
    for l in layers {
        assert!(l["forward_ms"].as_f64().unwrap() >= 0.0);
        assert!(l["backward_ms"].as_f64().unwrap() >= 0.0);
    }
}
