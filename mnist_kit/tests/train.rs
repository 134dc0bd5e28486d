//! Training engine: determinism, augmentation only in training, early stopping with restore,
//! exact resume from a checkpoint, the non-finite guard, and a quick accuracy guard.

use candle_core::Device;
use mnist_kit::Error;
use mnist_kit::data::Mnist;
use mnist_kit::data::augment::AugmentConfig;
use mnist_kit::models::Network;
use mnist_kit::train::{
    EarlyStopping, History, OptimizerKind, Run, TrainConfig, TrainData, Trainer, evaluate,
};

fn mnist() -> Mnist {
    Mnist::load_default().unwrap()
}

fn quick(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        validation: 500,
        train_limit: Some(1500),
        test_limit: Some(500),
        verbose: false,
        seed: 5,
        grad_stats: true,
        ..Default::default()
    }
}

fn weights(net: &Network) -> Vec<Vec<f32>> {
    net.params()
        .iter()
        .map(|p| p.var.flatten_all().unwrap().to_vec1().unwrap())
        .collect()
}

/// History without the timing columns.
fn numbers(h: &History) -> Vec<Vec<f64>> {
    h.epochs
        .iter()
        .map(|r| {
            vec![
                r.lr,
                r.train_loss,
                r.train_accuracy,
                r.val_loss.unwrap_or(-1.0),
                r.val_accuracy.unwrap_or(-1.0),
                r.weight_norm,
                r.grad_noise.unwrap_or(-1.0),
                r.grad_mean_norm.unwrap_or(-1.0),
            ]
        })
        .collect()
}

#[test]
fn same_seed_same_history_and_weights_bit_for_bit() {
    let m = mnist();
    let cfg = TrainConfig {
        augment: Some(AugmentConfig::with_elastic()),
        ..quick(2)
    };
    let run = |seed| {
        let mut net = Network::preset("lenet5-regularized", seed, &Device::Cpu).unwrap();
        let h = Trainer::new(TrainConfig {
            seed,
            ..cfg.clone()
        })
        .fit(&mut net, &m)
        .unwrap();
        (numbers(&h), weights(&net))
    };
    let (h1, w1) = run(5);
    let (h2, w2) = run(5);
    assert_eq!(h1, h2);
    assert_eq!(w1, w2);
    let (h3, _) = run(6);
    assert_ne!(h1, h3);
}

#[test]
fn evaluation_never_sees_augmentation() {
    let m = mnist();
    // Translations of up to 40 px push most digits off the image: training on blanks.
    let blank = AugmentConfig {
        translate_px: 40.0,
        ..AugmentConfig::default()
    };
    let cfg = TrainConfig {
        augment: Some(blank),
        ..quick(1)
    };
    let data = TrainData::new(&m, &cfg).unwrap();
    let mut net = Network::preset("dense128", 1, &Device::Cpu).unwrap();
    let h = Trainer::new(cfg.clone()).fit(&mut net, &m).unwrap();
    let rec = h.last().unwrap();
    // The validation numbers in the history are those of clean validation images.
    let val = evaluate(&net, data.validation.as_ref().unwrap()).unwrap();
    assert_eq!(rec.val_loss, Some(val.loss));
    assert_eq!(rec.val_accuracy, Some(val.accuracy));
    // And they differ from what the same weights score on augmented inputs during training.
    assert!(
        rec.train_accuracy < 0.5,
        "training saw the blanked images: {}",
        rec.train_accuracy
    );
}

#[test]
fn early_stopping_stops_and_restores_the_best_weights() {
    let m = mnist();
    // min_delta so large that nothing after the first epoch counts as an improvement.
    let es = EarlyStopping {
        patience: 2,
        min_delta: 100.0,
        ..Default::default()
    };
    let cfg = TrainConfig {
        early_stopping: Some(es),
        ..quick(10)
    };
    let data = TrainData::new(&m, &cfg).unwrap();
    let mut net = Network::preset("dense128", 2, &Device::Cpu).unwrap();
    let h = Trainer::new(cfg.clone()).fit(&mut net, &m).unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(h.best_epoch, Some(1));
    assert_eq!(h.stopped_epoch, Some(3));
    assert_eq!(h.stop_reason, mnist_kit::train::StopReason::EarlyStopping);
    let val = evaluate(&net, data.validation.as_ref().unwrap()).unwrap();
    assert_eq!(
        Some(val.loss),
        h.epochs[0].val_loss,
        "weights of epoch 1 restored"
    );
    assert_ne!(h.epochs[0].val_loss, h.epochs[2].val_loss);

    // start_from_epoch delays watching.
    let es = EarlyStopping {
        start_from_epoch: 2,
        ..es
    };
    let mut net = Network::preset("dense128", 2, &Device::Cpu).unwrap();
    let h = Trainer::new(TrainConfig {
        early_stopping: Some(es),
        ..cfg
    })
    .fit(&mut net, &m)
    .unwrap();
    assert_eq!((h.best_epoch, h.stopped_epoch), (Some(3), Some(5)));
}

#[test]
fn resume_from_checkpoint_continues_exactly() {
    let m = mnist();
    let cfg = TrainConfig {
        optimizer: mnist_kit::train::OptimizerConfig {
            kind: OptimizerKind::ADAM,
            ..Default::default()
        },
        ..quick(2)
    };
    let dir_a = tempfile::tempdir().unwrap();
    let mut a = Network::preset("lenet5-regularized", 3, &Device::Cpu).unwrap();
    let ha = Trainer::new(cfg.clone())
        .run_dir(dir_a.path())
        .fit(&mut a, &m)
        .unwrap();

    // One epoch, then the same run dir with two: it continues from the checkpoint.
    let dir_b = tempfile::tempdir().unwrap();
    let mut b = Network::preset("lenet5-regularized", 3, &Device::Cpu).unwrap();
    Trainer::new(TrainConfig {
        epochs: 1,
        ..cfg.clone()
    })
    .run_dir(dir_b.path())
    .fit(&mut b, &m)
    .unwrap();
    let mut resumed = Network::preset("lenet5-regularized", 3, &Device::Cpu).unwrap();
    let hb = Trainer::new(cfg.clone())
        .run_dir(dir_b.path())
        .fit(&mut resumed, &m)
        .unwrap();
    assert_eq!(numbers(&ha), numbers(&hb));
    assert_eq!(weights(&a), weights(&resumed));

    // Another config in the same directory starts over.
    let mut fresh = Network::preset("lenet5-regularized", 3, &Device::Cpu).unwrap();
    let other = Trainer::new(TrainConfig {
        lr: 3e-3,
        ..cfg.clone()
    })
    .run_dir(dir_b.path())
    .fit(&mut fresh, &m)
    .unwrap();
    assert_eq!(other.len(), 2);
    assert_ne!(numbers(&other), numbers(&ha));

    let run = Run::open(dir_a.path()).unwrap();
    assert_eq!(weights(&run.net), weights(&a));
    assert_eq!(run.history.len(), 2);
    for f in [
        "config.json",
        "weights.safetensors",
        "last.safetensors",
        "optimizer.safetensors",
        "history.csv",
    ] {
        assert!(dir_a.path().join(f).exists(), "{f}");
    }
    let csv = std::fs::read_to_string(dir_a.path().join("history.csv")).unwrap();
    assert!(csv.starts_with("epoch,lr,train_loss"), "{csv}");
    assert_eq!(csv.lines().count(), 3);
}

#[test]
fn absurd_learning_rate_stops_with_a_typed_error_and_keeps_good_weights() {
    let m = mnist();
    let cfg = TrainConfig {
        lr: 1e6,
        optimizer: mnist_kit::train::OptimizerConfig {
            kind: OptimizerKind::SGD,
            ..Default::default()
        },
        ..quick(3)
    };
    let dir = tempfile::tempdir().unwrap();
    let mut net = Network::preset("dense128", 4, &Device::Cpu).unwrap();
    let err = Trainer::new(cfg)
        .run_dir(dir.path())
        .fit(&mut net, &m)
        .unwrap_err();
    match &err {
        Error::NonFinite { epoch, batch, .. } => assert!(*epoch >= 1 && *batch >= 1),
        other => panic!("expected NonFinite, got {other}"),
    }
    assert!(err.to_string().contains("epoch"));
    let saved = Network::preset("dense128", 0, &Device::Cpu).unwrap();
    saved
        .load_weights(dir.path().join("last.safetensors"))
        .expect("last good weights load (all finite)");
}

#[test]
fn quick_training_learns_real_digits() {
    // Guards accuracy in CI: the full-data numbers are in the closing notes and the study.
    let m = mnist();
    let cfg = TrainConfig {
        train_limit: Some(6000),
        test_limit: Some(2000),
        ..quick(2)
    };
    let data = TrainData::new(&m, &cfg).unwrap();
    for (model, target) in [("dense128", 0.85), ("lenet5", 0.85)] {
        let mut net = Network::preset(model, 42, &Device::Cpu).unwrap();
        let h = Trainer::new(cfg.clone()).fit(&mut net, &m).unwrap();
        let test = evaluate(&net, &data.test).unwrap();
        eprintln!("{model}: quick-run test accuracy {:.4}", test.accuracy);
        assert!(
            test.accuracy >= target,
            "{model}: {:.4} < {target}",
            test.accuracy
        );
        assert!(
            h.epochs[1].train_loss < h.epochs[0].train_loss,
            "{model}: loss decreases"
        );
        let df = h.to_dataframe().unwrap();
        assert_eq!(df.height(), 2);
    }
}

#[test]
fn a_loop_written_by_hand_trains_the_trainers_weights_bit_for_bit() {
    use mnist_kit::candle_nn::Optimizer as _;
    use mnist_kit::data::BatchOptions;
    use mnist_kit::models::Model;
    use mnist_kit::train::{Optimizer, Schedule, step::loss};
    let m = mnist();
    let cfg = TrainConfig {
        schedule: Schedule::Cosine { min_factor: 0.01 },
        ..quick(2)
    };
    let data = TrainData::new(&m, &cfg).unwrap();

    let mut by_trainer = Network::preset("dense128", cfg.seed, &Device::Cpu).unwrap();
    Trainer::new(cfg.clone()).fit(&mut by_trainer, &m).unwrap();

    let by_hand = Network::preset("dense128", cfg.seed, &Device::Cpu).unwrap();
    let mut opt = Optimizer::for_network(&by_hand, cfg.optimizer, cfg.lr).unwrap();
    let opts = BatchOptions {
        batch_size: cfg.batch_size,
        shuffle: true,
        seed: cfg.seed,
    };
    for epoch in 0..cfg.epochs {
        let lr = cfg.schedule.lr(cfg.lr, epoch, cfg.epochs);
        for batch in data
            .train
            .batches(by_hand.input_spec(), opts, epoch, &Device::Cpu)
            .unwrap()
        {
            let batch = batch.unwrap();
            let logits = by_hand.forward_t(&batch.images, true).unwrap();
            let l = loss(&logits, &batch.labels, cfg.label_smoothing).unwrap();
            opt.set_learning_rate(lr);
            opt.backward_step(&l).unwrap();
        }
    }
    assert_eq!(weights(&by_hand), weights(&by_trainer));
    let fresh = Network::preset("dense128", cfg.seed, &Device::Cpu).unwrap();
    assert_ne!(
        weights(&fresh),
        weights(&by_trainer),
        "training moved the weights"
    );
}

#[test]
fn the_input_normalization_travels_with_the_trained_network() {
    use mnist_kit::data::Normalization;
    let m = mnist();
    let cfg = TrainConfig {
        normalization: Normalization::Raw,
        ..quick(1)
    };
    let data = TrainData::new(&m, &cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Network::preset("dense128", 3, &Device::Cpu).unwrap();
    assert_eq!(net.input_spec().normalization, Normalization::Standard);
    let h = Trainer::new(cfg)
        .run_dir(dir.path())
        .fit(&mut net, &m)
        .unwrap();
    assert_eq!(net.input_spec().normalization, Normalization::Raw);
    // Loaded back, it scales its inputs as in training: `evaluate` scores what the history
    // recorded, with no normalization to pass.
    let run = Run::open(dir.path()).unwrap();
    assert_eq!(run.net.input_spec().normalization, Normalization::Raw);
    let val = evaluate(&run.net, data.validation.as_ref().unwrap()).unwrap();
    assert_eq!(Some(val.accuracy), h.last().unwrap().val_accuracy);
    // Scaled the standard way instead, the same weights score something else.
    let mut standard = run.net.rebuilt().unwrap();
    standard.set_normalization(Normalization::Standard);
    let wrong = evaluate(&standard, data.validation.as_ref().unwrap()).unwrap();
    assert_ne!(Some(wrong.loss), h.last().unwrap().val_loss);
}
