//! Same seed, same bits, on every machine: short seeded training runs on the real data must
//! end in weights whose fingerprint was recorded when this test was written (on an AMD EPYC
//! with AVX-512). `simd.rs` and `threads.rs` compare paths on one machine; this test compares
//! this machine with the one the constants came from, so a run on another CPU kind (an Intel
//! Xeon with other cache sizes, an AVX2-only EPYC) fails here if any sum depends on it.
//!
//! A deliberate change of the numbers (a new kernel, another summation order) updates the
//! constants: the failure message prints the new fingerprint.

use mnist_kit::candle::Device;
use mnist_kit::data::Mnist;
use mnist_kit::data::augment::AugmentConfig;
use mnist_kit::models::Network;
use mnist_kit::train::{OptimizerKind, TrainConfig, Trainer};

/// FNV-1a over the bits of every parameter, in the network's order.
fn fingerprint(net: &Network) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for p in net.params() {
        let v: Vec<f32> = p.var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        for x in v {
            for b in x.to_bits().to_le_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    h
}

/// `model` trained for one epoch on 2,048 images (batch 64) from seed 5.
fn trained(mnist: &Mnist, model: &str, kind: OptimizerKind, augment: bool) -> u64 {
    let cfg = TrainConfig {
        epochs: 1,
        train_limit: Some(2048),
        test_limit: Some(200),
        validation: 200,
        seed: 5,
        augment: augment.then(AugmentConfig::default),
        verbose: false,
        ..TrainConfig::default().optimizer(kind)
    };
    let mut net = Network::preset(model, 5, &Device::Cpu).unwrap();
    Trainer::new(cfg).fit(&mut net, mnist).unwrap();
    fingerprint(&net)
}

#[test]
fn seeded_training_ends_in_the_recorded_bits() {
    let mnist = Mnist::load_default().unwrap();
    let cases = [
        (
            "dense128",
            OptimizerKind::ADAM,
            false,
            0xae0d_54b8_9f46_18f6u64,
        ),
        (
            "mlp-500-150",
            OptimizerKind::SGD,
            false,
            0x585b_44d0_a693_6d80,
        ),
        ("lenet5", OptimizerKind::ADAM, false, 0xa539_b723_7f59_abd1),
        (
            "lenet5-regularized",
            OptimizerKind::RMSPROP,
            true,
            0x72c8_9786_9a98_1c38,
        ),
        ("resnet", OptimizerKind::ADAMW, true, 0xab3c_9785_e03a_29c0),
    ];
    let mut wrong = Vec::new();
    for (model, kind, augment, want) in cases {
        let got = trained(&mnist, model, kind, augment);
        if got != want {
            wrong.push(format!("{model}: got {got:#018x}, recorded {want:#018x}"));
        }
    }
    // The portable path, the definition of every kernel, gives the recorded bits too (all
    // five did when they were recorded; one here, it is slow).
    mnist_kit::ops::simd::force(Some(mnist_kit::ops::simd::Isa::Portable));
    let portable = trained(&mnist, "dense128", OptimizerKind::ADAM, false);
    mnist_kit::ops::simd::force(None);
    if portable != cases[0].3 {
        wrong.push(format!(
            "dense128 on the portable path: got {portable:#018x}"
        ));
    }
    assert!(
        wrong.is_empty(),
        "the weights differ from the recorded ones on {}:\n{}",
        mnist_kit::bench::cpu_name(),
        wrong.join("\n")
    );
}
