//! The study end to end in quick mode, restricted to one fast experiment: report files,
//! metrics.json shape, models/best, and resumability.

use mnist_kit::data::Mnist;
use mnist_kit::study::{StudyConfig, run_study};

#[test]
fn quick_study_writes_the_report_and_resumes() {
    let mnist = Mnist::load_default().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = StudyConfig {
        quick: true,
        out: dir.path().to_path_buf(),
        only: Some("dense128".into()),
        force: false,
        seed: 42,
    };
    let results = run_study(&mnist, &cfg).unwrap();
    assert_eq!(results.len(), 1);
    assert!(
        results[0].test_accuracy > 0.8,
        "{}",
        results[0].test_accuracy
    );
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("metrics.json")).unwrap())
            .unwrap();
    let m = &metrics["models"]["dense128"];
    assert_eq!(m["params"], 101_770);
    for key in ["test_accuracy", "epochs", "train_seconds"] {
        assert!(m[key].is_number(), "{key}");
    }
    assert!(metrics["total_seconds"].is_number());
    let report = std::fs::read_to_string(dir.path().join("REPORT.md")).unwrap();
    // The wall time of the whole run, figures included, is stated as measured.
    let wall = metrics["invocation_seconds"].as_f64().unwrap();
    assert!(wall > 0.0);
    assert!(
        report.contains(&format!(
            "took **{wall:.0} s ({:.1} min) wall**",
            wall / 60.0
        )),
        "{report}"
    );
    assert!(
        report.contains("Quick mode") && report.contains("(784+1)*128 = 100480"),
        "{report}"
    );
    for f in [
        "models/best/weights.safetensors",
        "models/best/config.json",
        "tables/models.csv",
        "figures/test_accuracy.html",
    ] {
        assert!(dir.path().join(f).exists(), "{f}");
    }
    // A rerun skips the finished experiment and reads back identical numbers.
    let again = run_study(&mnist, &cfg).unwrap();
    assert_eq!(again[0].history, results[0].history);

    // A Part 2 task joins the same report: its table, its verdict and metrics.json entries.
    let part2 = StudyConfig {
        only: Some("part2-dropout".into()),
        ..cfg
    };
    let all = run_study(&mnist, &part2).unwrap();
    assert_eq!(all.len(), 4, "dense128 read back plus three dropout runs");
    let report = std::fs::read_to_string(dir.path().join("REPORT.md")).unwrap();
    assert!(
        report.contains("## Part 2: dropout") && report.contains("dropout-0.3"),
        "{report}"
    );
    assert!(
        report.contains("## Models") && report.contains("dense128"),
        "architectures kept"
    );
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("metrics.json")).unwrap())
            .unwrap();
    let dropout = metrics["experiments"]["part2-dropout"].as_object().unwrap();
    assert_eq!(dropout.len(), 3);
    assert!(dropout["dropout-0.1"]["weight_norm"].is_number());
    assert!(dir.path().join("tables/part2-dropout.csv").exists());
}
