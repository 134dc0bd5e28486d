//! Optimizer goldens: three steps on a 3-element weight with fixed gradients, compared with
//! PyTorch 2.15. The generating script:
//!
//! ```python
//! import torch
//! def run(make, steps=3):
//!     w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
//!     opt = make([w])
//!     for t in range(1, steps + 1):
//!         w.grad = torch.tensor([0.1 * t, -0.2, 0.3 * (-1) ** t])
//!         opt.step()
//!     return [round(v, 7) for v in w.tolist()]
//! print("sgd", run(lambda p: torch.optim.SGD(p, lr=0.1, weight_decay=0.1)))
//! print("momentum", run(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.1)))
//! print("nesterov", run(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)))
//! print("adam", run(lambda p: torch.optim.Adam(p, lr=0.1, weight_decay=0.1)))
//! print("adamw", run(lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.1)))
//! print("rmsprop", run(lambda p: torch.optim.RMSprop(p, lr=0.01, weight_decay=0.1)))
//! print("rmsprop_momentum", run(lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.9, weight_decay=0.1)))
//! ```

#![allow(clippy::excessive_precision)] // goldens are PyTorch's printed digits

use mnist_kit::train::{OptimizerConfig, OptimizerKind, OptimizerState};

fn run(kind: OptimizerKind, lr: f64, l2: f64, weight_decay: f64) -> Vec<f32> {
    let cfg = OptimizerConfig {
        kind,
        l2,
        weight_decay,
        decay_biases: false,
    };
    let mut opt = OptimizerState::with_params(cfg, &[("w", true)]);
    let mut params = vec![vec![0.5f32, -1.0, 2.0]];
    for t in 1..=3 {
        let sign = if t % 2 == 0 { 1.0 } else { -1.0 };
        let grads = vec![vec![0.1 * t as f32, -0.2, 0.3 * sign]];
        opt.step(&mut params, &grads, lr).unwrap();
    }
    params.remove(0)
}

fn close(ours: &[f32], torch: [f32; 3], name: &str) {
    for (a, b) in ours.iter().zip(torch) {
        assert!(
            (a - b).abs() < 5e-7,
            "{name}: ours {ours:?} vs PyTorch {torch:?}"
        );
    }
}

#[test]
fn optimizers_match_pytorch() {
    close(
        &run(OptimizerKind::SGD, 0.1, 0.1, 0.0),
        [0.4255485, -0.910897, 1.970301],
        "sgd",
    );
    close(
        &run(OptimizerKind::MOMENTUM, 0.1, 0.1, 0.0),
        [0.3776685, -0.833137, 1.9422209],
        "momentum",
    );
    close(
        &run(OptimizerKind::NESTEROV, 0.1, 0.1, 0.0),
        [0.3166019, -0.7626818, 1.9186722],
        "nesterov",
    );
    close(
        &run(OptimizerKind::ADAM, 0.1, 0.1, 0.0),
        [0.2032818, -0.7003815, 2.0057609],
        "adam",
    );
    close(
        &run(OptimizerKind::ADAMW, 0.1, 0.0, 0.1),
        [0.1957864, -0.673289, 2.066977],
        "adamw",
    );
    close(
        &run(OptimizerKind::RMSPROP, 0.01, 0.1, 0.0),
        [0.2388216, -0.7738886, 2.0208066],
        "rmsprop",
    );
    let rms_m = OptimizerKind::RmsProp {
        alpha: 0.99,
        eps: 1e-8,
        momentum: 0.9,
    };
    close(
        &run(rms_m, 0.01, 0.1, 0.0),
        [-0.0077183, -0.5414161, 2.1018162],
        "rmsprop+momentum",
    );
}

#[test]
fn decay_skips_biases_unless_asked_and_state_round_trips() {
    let cfg = OptimizerConfig {
        kind: OptimizerKind::SGD,
        l2: 0.5,
        weight_decay: 0.5,
        decay_biases: false,
    };
    let mut opt = OptimizerState::with_params(cfg, &[("w", true), ("b", false)]);
    let mut params = vec![vec![1.0f32], vec![1.0f32]];
    opt.step(&mut params, &[vec![0.0], vec![0.0]], 0.1).unwrap();
    assert!(params[0][0] < 1.0, "weight decayed");
    assert_eq!(params[1][0], 1.0, "bias untouched");

    let adam = OptimizerConfig {
        kind: OptimizerKind::ADAM,
        ..Default::default()
    };
    let mut a = OptimizerState::with_params(adam, &[("w", true)]);
    let mut pa = vec![vec![0.3f32, -0.2]];
    a.step(&mut pa, &[vec![0.1, 0.2]], 0.01).unwrap();
    let mut b = OptimizerState::with_params(adam, &[("w", true)]);
    b.load_state_tensors(&a.state_tensors().unwrap()).unwrap();
    let mut pb = pa.clone();
    a.step(&mut pa, &[vec![-0.1, 0.4]], 0.01).unwrap();
    b.step(&mut pb, &[vec![-0.1, 0.4]], 0.01).unwrap();
    assert_eq!(pa, pb, "restored state continues identically");
    assert_eq!(b.steps(), 2);
}

#[test]
fn step_reports_whether_every_new_weight_is_finite() {
    let sgd = OptimizerConfig {
        kind: OptimizerKind::SGD,
        ..Default::default()
    };
    let mut opt = OptimizerState::with_params(sgd, &[("w", true)]);
    // Two parallel chunks and a tail; the overflow sits in the last one.
    let n = 40_000;
    let mut params = vec![vec![1.0f32; n]];
    let mut grads = vec![vec![0.5f32; n]];
    assert!(opt.step(&mut params, &grads, 0.1).unwrap());
    grads[0][n - 1] = f32::MAX;
    assert!(!opt.step(&mut params, &grads, 1e10).unwrap());
    assert!(params[0][n - 1].is_infinite());
}

/// The kit's optimizer through candle-nn's `Optimizer` trait, on bare variables (a network
/// written with candle-nn): Adam's golden of the first step, then a learning rate that makes a
/// weight infinite is an error and leaves the weights as they were.
#[test]
fn the_kit_optimizer_is_a_candle_optimizer() {
    use mnist_kit::candle::{Device, Tensor, Var};
    use mnist_kit::candle_nn::Optimizer as _;
    use mnist_kit::train::Optimizer;
    let w = Var::from_slice(&[0.5f32, -1.0, 2.0], (1, 3), &Device::Cpu).unwrap();
    let cfg = OptimizerConfig::default();
    let mut opt = Optimizer::new(vec![w.clone()], cfg).unwrap();
    opt.set_learning_rate(0.1);
    assert_eq!(opt.learning_rate(), 0.1);
    // loss = sum(w * g): its gradient is g.
    let g = Tensor::new(&[[0.1f32, -0.2, 0.3]], &Device::Cpu).unwrap();
    let loss = || (w.as_tensor() * &g).unwrap().sum_all().unwrap();
    let weights = || {
        w.as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    opt.backward_step(&loss()).unwrap();
    // Adam's first step moves every weight by lr against the sign of its gradient.
    let after = weights();
    for (a, e) in after.iter().zip([0.4f32, -0.9, 1.9]) {
        assert!((a - e).abs() < 1e-6, "{after:?}");
    }
    opt.set_learning_rate(f64::INFINITY);
    assert!(
        opt.backward_step(&loss()).is_err(),
        "an infinite step must be refused"
    );
    let kept = weights();
    assert_eq!(kept, after, "a refused step leaves the weights");
}

#[test]
fn the_l2_penalty_sums_the_weights_l2_acts_on() {
    use mnist_kit::candle::Device;
    use mnist_kit::models::Network;
    let net = Network::preset("lenet5-regularized", 1, &Device::Cpu).unwrap();
    let square_sum = |keep: &dyn Fn(&str) -> bool| -> f64 {
        net.params()
            .iter()
            .filter(|p| p.trainable() && keep(&p.name))
            .flat_map(|p| p.var.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .map(|v| f64::from(v).powi(2))
            .sum()
    };
    let kernels = square_sum(&|n| n.ends_with(".weight") && !n.contains("bn"));
    let everything = square_sum(&|_| true);
    let cfg = OptimizerConfig::default();
    let ours = cfg.penalized_square_sum(&net).unwrap();
    assert!(
        (ours - kernels).abs() < 1e-9 * kernels,
        "{ours} vs {kernels}"
    );
    assert!(everything > kernels, "biases and BatchNorm scales left out");
    let all = OptimizerConfig {
        decay_biases: true,
        ..cfg
    };
    let ours = all.penalized_square_sum(&net).unwrap();
    assert!((ours - everything).abs() < 1e-9 * everything);
}
