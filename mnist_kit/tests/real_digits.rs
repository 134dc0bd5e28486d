//! The real-world digits of data/real-digits: the set is what the report says it is, and the
//! committed models read it.

use mnist_kit::analysis::real_digits::RealDigits;

use mnist_kit::train::Run;

#[test]
fn the_set_holds_every_digit_of_every_subset_preprocessed() {
    let set = RealDigits::load_default().unwrap();
    assert_eq!(
        set.subsets(),
        ["drawn", "handwriting", "photo", "printed", "uci"].map(String::from)
    );
    assert!(set.len() >= 400, "{} images", set.len());
    for subset in set.subsets() {
        let mut per_digit = [0usize; 10];
        for d in set.digits.iter().filter(|d| d.subset == subset) {
            per_digit[usize::from(d.label)] += 1;
            let ink: f32 = d.digit.pixels.iter().sum();
            // Thin pen strokes on a dim photo keep little ink; MNIST digits hold about 100.
            let least = if subset == "photo" { 3.0 } else { 10.0 };
            assert!(
                ink > least,
                "{}: almost no ink after preprocessing",
                d.path.display()
            );
            let (r, c) = d.digit.centre_of_mass();
            assert!(
                (r - 14.0).abs() < 2.5 && (c - 14.0).abs() < 2.5,
                "{}: not centred",
                d.path.display()
            );
        }
        let n = per_digit[0];
        assert!(
            n > 0 && per_digit.iter().all(|&k| k == n),
            "{subset}: {per_digit:?}"
        );
    }
}

#[test]
fn the_committed_models_read_real_digits() {
    let set = RealDigits::load_default().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/models");
    for name in ["robust", "best"] {
        let dir = root.join(name);
        if !dir.join("weights.safetensors").exists() {
            continue;
        }
        let run = Run::open(&dir).unwrap();
        let score = set.score(&run.net).unwrap();
        assert_eq!(score.predictions.len(), set.len());
        assert_eq!(score.subsets.iter().map(|s| s.n).sum::<usize>(), set.len());
        // Far above chance (10 %) on every subset, and most of the printed digits right.
        for s in &score.subsets {
            assert!(
                s.accuracy > 0.5,
                "{name} on {}: {:.3}",
                s.subset,
                s.accuracy
            );
        }
        let printed = score
            .subsets
            .iter()
            .find(|s| s.subset == "printed")
            .unwrap();
        assert!(
            printed.accuracy > 0.9,
            "{name} on printed: {:.3}",
            printed.accuracy
        );
    }
}
