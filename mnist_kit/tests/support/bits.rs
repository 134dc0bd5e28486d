//! For the bit-for-bit tests (`simd.rs`, `threads.rs`): the outputs and gradients of every
//! fast op, and a few training steps of models that use them all, as bits; and the random
//! inputs the kernel tests share.

use candle_core::{Device, Tensor, Var};
use mnist_kit::data::Mnist;
use mnist_kit::data::augment::AugmentConfig;
use mnist_kit::models::Network;
use mnist_kit::ops;
use mnist_kit::train::{OptimizerKind, TrainConfig, Trainer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn rand_tensor(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

pub fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// The outputs and gradients of every fast op on fixed random inputs, as bits.
pub fn op_bits() -> Bits {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut out = Vec::new();
    // Convolutions: wide and narrow maps, stride 1 and 2, padding, fused ReLU.
    for (shape, o, k, stride, pad, relu) in [
        ([4, 3, 20, 20], 5, 5, 1, 0, true),
        ([6, 16, 7, 7], 32, 3, 1, 1, false),
        ([6, 16, 14, 14], 32, 3, 2, 1, true),
        ([5, 8, 4, 4], 8, 3, 1, 1, false),
        ([3, 1, 28, 28], 16, 3, 2, 1, false),
    ] {
        let x = Var::from_tensor(&rand_tensor(&mut rng, &shape)).unwrap();
        let w = Var::from_tensor(&rand_tensor(&mut rng, &[o, shape[1], k, k])).unwrap();
        let b = Var::from_tensor(&rand_tensor(&mut rng, &[o])).unwrap();
        let opts = ops::ConvOptions {
            stride,
            padding: pad,
            relu,
        };
        let y = ops::conv2d_with(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), opts).unwrap();
        let r = rand_tensor(&mut rng, y.dims());
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let tag = format!("conv {shape:?} s{stride}");
        out.push((format!("{tag} y"), bits(&y)));
        for (n, v) in [("dx", &x), ("dw", &w), ("db", &b)] {
            out.push((format!("{tag} {n}"), bits(g.get(v.as_tensor()).unwrap())));
        }
    }
    // BatchNorm (train, eval), ReLU fused or not; add+ReLU; max pooling; linear.
    for shape in [vec![16, 8, 5, 5], vec![64, 64, 4, 4], vec![32, 48]] {
        for relu in [false, true] {
            let c = shape[1];
            let x = Var::from_tensor(&rand_tensor(&mut rng, &shape)).unwrap();
            let gamma = Var::from_tensor(&rand_tensor(&mut rng, &[c])).unwrap();
            let beta = Var::from_tensor(&rand_tensor(&mut rng, &[c])).unwrap();
            let (y, m, v) = ops::batch_norm_train(
                x.as_tensor(),
                gamma.as_tensor(),
                beta.as_tensor(),
                1e-5,
                relu,
            )
            .unwrap()
            .unwrap();
            let r = rand_tensor(&mut rng, &shape);
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let tag = format!("bn {shape:?} relu={relu}");
            for (n, t) in [("y", &y), ("mean", &m), ("var", &v)] {
                out.push((format!("{tag} {n}"), bits(t)));
            }
            for (n, t) in [("dx", &x), ("dgamma", &gamma), ("dbeta", &beta)] {
                out.push((format!("{tag} {n}"), bits(g.get(t.as_tensor()).unwrap())));
            }
            let e = ops::batch_norm_eval(
                x.as_tensor(),
                &m,
                &(v + 0.5).unwrap(),
                gamma.as_tensor(),
                beta.as_tensor(),
                1e-5,
                relu,
            )
            .unwrap();
            out.push((format!("{tag} eval"), bits(&e)));
        }
    }
    let a = rand_tensor(&mut rng, &[7, 16, 7, 7]);
    let b = rand_tensor(&mut rng, &[7, 16, 7, 7]);
    out.push(("add_relu".into(), bits(&ops::add_relu(&a, &b).unwrap())));
    let x = Var::from_tensor(&rand_tensor(&mut rng, &[9, 6, 12, 10])).unwrap();
    let y = ops::max_pool2d(x.as_tensor(), 2).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    out.push(("pool y".into(), bits(&y)));
    out.push(("pool dx".into(), bits(g.get(x.as_tensor()).unwrap())));
    // Linear (rows, inputs, outputs): small; split over units; deep with few units, where a
    // split over rows would change gemm's summation (refused); deep weight gradient.
    for (n, i, o) in [
        (33, 100, 20),
        (64, 784, 500),
        (128, 784, 48),
        (600, 150, 520),
    ] {
        let x = Var::from_tensor(&rand_tensor(&mut rng, &[n, i])).unwrap();
        let w = Var::from_tensor(&rand_tensor(&mut rng, &[o, i])).unwrap();
        let bias = Var::from_tensor(&rand_tensor(&mut rng, &[o])).unwrap();
        let y = ops::linear(x.as_tensor(), w.as_tensor(), bias.as_tensor(), true).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let tag = format!("linear {n}x{i}x{o}");
        out.push((format!("{tag} y"), bits(&y)));
        for (name, v) in [("dx", &x), ("dw", &w), ("db", &bias)] {
            out.push((format!("{tag} {name}"), bits(g.get(v.as_tensor()).unwrap())));
        }
    }
    out
}

/// A few training steps of models that use every kernel and every optimizer rule (with
/// augmentation and gradient statistics), as the weights' bits and the history's numbers.
pub fn training_bits(mnist: &Mnist) -> Bits {
    let mut out = Vec::new();
    for (model, kind) in [
        ("resnet", OptimizerKind::ADAMW),
        ("lenet5-regularized", OptimizerKind::RMSPROP),
        ("lenet5-attention", OptimizerKind::MOMENTUM),
        ("mlp-advanced", OptimizerKind::ADAM),
        ("dense128", OptimizerKind::SGD),
    ] {
        let cfg = TrainConfig {
            epochs: 1,
            train_limit: Some(256),
            test_limit: Some(100),
            validation: 100,
            augment: Some(AugmentConfig::default()),
            grad_stats: true,
            verbose: false,
            ..TrainConfig::default().optimizer(kind)
        };
        let mut net = Network::preset(model, 1, &Device::Cpu).unwrap();
        let h = Trainer::new(cfg).fit(&mut net, mnist).unwrap();
        for p in net.params() {
            out.push((format!("{model} {}", p.name), bits(p.var.as_tensor())));
        }
        let r = &h.epochs[0];
        let numbers = [
            r.train_loss,
            r.val_loss.unwrap(),
            r.weight_norm,
            r.grad_noise.unwrap(),
        ];
        out.push((
            format!("{model} history"),
            numbers
                .iter()
                .flat_map(|v| {
                    let b = v.to_bits();
                    [(b >> 32) as u32, b as u32]
                })
                .collect(),
        ));
    }
    out
}

/// Named bit patterns, in a fixed order.
pub type Bits = Vec<(String, Vec<u32>)>;

/// Every fast op's bits and a few training runs' bits (see [`op_bits`], [`training_bits`]).
pub fn all_bits(mnist: &Mnist) -> (Bits, Bits) {
    (op_bits(), training_bits(mnist))
}

/// Asserts that `got` has the bits of `reference`, entry by entry; `how` names the setting
/// that produced `got` in the failure message.
pub fn assert_same_bits(got: &(Bits, Bits), reference: &(Bits, Bits), how: &str) {
    for (g, r) in [(&got.0, &reference.0), (&got.1, &reference.1)] {
        assert_eq!(g.len(), r.len());
        for ((name, a), (_, b)) in g.iter().zip(r) {
            assert!(a == b, "{name}: {how}");
        }
    }
}
