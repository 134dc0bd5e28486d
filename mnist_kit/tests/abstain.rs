//! Abstention of the committed served model (`results/models/robust` with its
//! `calibration.json`) on real data: the MNIST test set is answered with honest confidence,
//! noise and blank pages get "not sure", and the calibration round-trips.

use mnist_kit::analysis::Calibration;
use mnist_kit::analysis::abstain::{Abstention, Measure, measure};

use mnist_kit::data::Mnist;
use mnist_kit::train::Run;

const ROBUST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../results/models/robust");

#[test]
fn the_served_model_abstains_where_it_should() {
    let run = Run::open(ROBUST).unwrap();
    let cal = Calibration::load(ROBUST)
        .unwrap()
        .expect("results/models/robust has a calibration.json");
    assert!(cal.temperature > 0.5 && cal.temperature < 3.0, "{cal:?}");
    assert!(
        cal.distance.is_some(),
        "a LeNet-5's 84 features get a distance"
    );
    let mnist = Mnist::load_default().unwrap();
    let rows = measure(&run.net, &cal, &mnist, Measure::default()).unwrap();
    let row = |set: &str, subset: &str| {
        rows.iter()
            .find(|r| r.set == set && r.subset == subset)
            .unwrap_or_else(|| panic!("no row {set}/{subset}"))
    };
    let test = row("mnist-test", "all");
    assert_eq!(test.n, 10_000);
    assert!(
        test.abstain_rate <= 0.01,
        "test abstain rate {}",
        test.abstain_rate
    );
    assert!(test.ece.unwrap() <= 0.015, "test ECE {:?}", test.ece);
    assert!(test.accuracy.unwrap() > 0.97);
    assert_eq!(
        row("non-digits", "noise").abstain_rate,
        1.0,
        "noise is never a digit"
    );
    assert!(
        row("non-digits", "blank")
            .why
            .contains_key(&Abstention::Blank)
    );
    assert!(row("real-digits", "drawn").accuracy.unwrap() >= 0.95);
    // Every subset of both sets has its row, after the set's own.
    assert_eq!(rows[1].set, "real-digits");
    assert_eq!(rows[1].subset, "all");
}

#[test]
fn a_calibration_survives_the_round_trip_and_bad_files_are_errors() {
    let cal = Calibration::load(ROBUST).unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    cal.save(dir.path()).unwrap();
    assert_eq!(Calibration::load(dir.path()).unwrap(), Some(cal));
    assert_eq!(Calibration::load(dir.path().join("none")).unwrap(), None);
    std::fs::write(
        dir.path().join("calibration.json"),
        b"{\"temperature\": -1}",
    )
    .unwrap();
    assert!(Calibration::load(dir.path()).is_err());
}

/// The digit gate on real MNIST: trained briefly, it keeps the validation digits it was set
/// on, refuses most synthesized non-digits it never saw (other seeds than its training's), and
/// survives the round trip through its directory.
#[test]
fn the_digit_gate_tells_digits_from_non_digits() {
    use mnist_kit::analysis::gate::{GATE_TAIL, Gate, GateConfig};
    use mnist_kit::analysis::synthetic::synthetic_non_digit;
    let mnist = Mnist::load_default().unwrap();
    let (train, validation) = mnist.train.split_validation(2000, 42).unwrap();
    let cfg = GateConfig {
        epochs: 2,
        train_limit: Some(20_000),
        ..Default::default()
    };
    let gate = Gate::train(&train, &validation, &cfg).unwrap();
    let (n, under) = gate.fit.validation;
    assert_eq!(n, 2000);
    assert!(under <= GATE_TAIL + 1e-9, "{under}");
    // Test digits it never saw pass.
    let test = mnist.test.take(2000);
    let scores = gate.scores(&test).unwrap();
    let kept = scores.iter().filter(|&&s| !gate.rejects(s)).count();
    assert!(
        kept as f64 >= 0.98 * 2000.0,
        "kept {kept} of 2000 test digits"
    );
    // Non-digits from seeds far past the training's are refused.
    let refused = (0..200u64)
        .filter(|&k| {
            let (_, img) = synthetic_non_digit(u64::MAX / 2 + k);
            gate.rejects(gate.score(&img).unwrap())
        })
        .count();
    assert!(refused >= 140, "refused {refused} of 200 non-digits");
    let dir = tempfile::tempdir().unwrap();
    gate.save(dir.path()).unwrap();
    assert_eq!(Gate::load(dir.path()).unwrap(), Some(gate));
    assert_eq!(Gate::load(dir.path().join("none")).unwrap(), None);
}
