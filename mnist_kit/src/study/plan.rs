//! What the study runs: every experiment with its seeded configs, and the groups the report
//! compares. Pure functions of the mode and the base seed (the tuned LeNet-5 optimizers also of
//! their learning-rate grid's results).

use crate::Result;
use crate::data::augment::AugmentConfig;
use crate::models::{Activation, MlpConfig, ModelConfig, ResNetConfig};
use crate::train::{EarlyStopping, OptimizerConfig, OptimizerKind, Schedule, TrainConfig};

use super::{Experiment, ExperimentResult};

/// A set of experiments the report compares with each other: one table, one overlay, one set
/// of verdicts. An experiment may sit in several groups (LeNet-5 is the ablation's plain end).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Name (`part2-dropout`; the key in `metrics.json`).
    pub name: String,
    /// Heading in the report.
    pub title: String,
    /// What differs between the members and how they were trained.
    pub about: String,
    /// Experiment names, in display order.
    pub members: Vec<String>,
}

/// Data sizes shared by every experiment: the full data, or 5,000 training / 2,000 test images
/// in quick mode. The validation split is seeded with the study's base seed, so it is the same
/// for every training seed.
fn base(quick: bool, seed: u64) -> TrainConfig {
    TrainConfig {
        epochs: if quick { 2 } else { 10 },
        train_limit: quick.then_some(5000),
        test_limit: quick.then_some(2000),
        validation: if quick { 1000 } else { 5000 },
        seed,
        split_seed: Some(seed),
        ..Default::default()
    }
}

fn exp(
    name: &str,
    group: &str,
    model: &str,
    config: ModelConfig,
    train: TrainConfig,
) -> Experiment {
    Experiment {
        name: name.to_string(),
        group: group.to_string(),
        model: model.to_string(),
        config,
        train,
        seeds: None,
    }
}

fn preset(name: &str, group: &str, train: TrainConfig) -> Result<Experiment> {
    Ok(exp(name, group, name, ModelConfig::preset(name)?, train))
}

/// The schedule of the architecture comparison: cosine decay, test curves per epoch.
fn arch_base(quick: bool, seed: u64) -> TrainConfig {
    TrainConfig {
        schedule: Schedule::Cosine { min_factor: 0.01 },
        // The study plots train and test curves per epoch (labelled as test).
        eval_test_each_epoch: true,
        ..base(quick, seed)
    }
}

/// Epoch counts per mode.
fn epochs(quick: bool, full: usize) -> usize {
    if quick { 2 } else { full }
}

/// The architecture comparison of the study (Part 1 baselines and the architectures), plus
/// the models the advanced-MLP and 28x28 comparisons add, all on the same cosine schedule.
pub fn architectures(quick: bool, seed: u64) -> Result<Vec<Experiment>> {
    let arch = arch_base(quick, seed);
    let ep = |full: usize| TrainConfig {
        epochs: epochs(quick, full),
        ..arch.clone()
    };
    let augmented = |full: usize| TrainConfig {
        augment: Some(AugmentConfig::default()),
        ..ep(full)
    };
    let g = "architectures";
    Ok(vec![
        preset("dense128", g, ep(10))?,
        // The deep, narrow parameter-matched MLP reaches 97.3-97.4% at 10-20 epochs without
        // augmentation; with it, 20 epochs gave 97.90%.
        preset("mlp-61k", g, augmented(20))?,
        preset("lenet5", g, ep(10))?,
        preset("lenet5-attention", g, ep(10))?,
        preset("simple-cnn", g, ep(6))?,
        // BatchNorm tolerates a larger step: at lr 2e-3 validation accuracy reached 99.46%
        // after 30 epochs, against 99.28% at 1e-3.
        preset(
            "lenet5-regularized",
            g,
            TrainConfig {
                lr: 2e-3,
                ..augmented(30)
            },
        )?,
        // Decoupled weight decay 0.2 (AdamW): validation accuracy 99.48% against 99.40%
        // without and 99.38% at 0.05.
        preset(
            "resnet",
            g,
            TrainConfig {
                optimizer: OptimizerConfig {
                    kind: OptimizerKind::ADAMW,
                    weight_decay: 0.2,
                    ..Default::default()
                },
                ..augmented(20)
            },
        )?,
        preset("mlp-advanced", "advanced-mlp", ep(10))?,
        preset("lenet5-28", "pair-28x28", ep(10))?,
        preset("mlp-500-150", "pair-28x28", ep(10))?,
    ])
}

/// Early stopping (restore best) on the wide MLP, which overfits within a few epochs: up to 30
/// epochs at a constant learning rate, stopping 3 epochs after validation loss last improved.
fn early_stopping(quick: bool, seed: u64) -> Result<Experiment> {
    preset(
        "mlp-500-150",
        "part1-early-stopping",
        TrainConfig {
            epochs: if quick { 4 } else { 30 },
            early_stopping: Some(EarlyStopping {
                patience: if quick { 1 } else { 3 },
                ..Default::default()
            }),
            ..base(quick, seed)
        },
    )
    .map(|e| Experiment {
        name: "early-stopping".into(),
        ..e
    })
}

/// Part 2 of the study: dropout, L2, optimizers, batch size and activations, each a group of
/// runs that differ in one knob only (10 epochs, constant learning rate).
pub fn part2(quick: bool, seed: u64) -> Result<Vec<Experiment>> {
    let base = base(quick, seed);
    let wide = ModelConfig::preset("mlp-500-150")?;
    let dense = ModelConfig::preset("dense128")?;
    let mut out = Vec::new();
    for p in [0.0f32, 0.1, 0.3] {
        out.push(exp(
            &format!("dropout-{p}"),
            "part2-dropout",
            "mlp-500-150",
            wide.clone().with_dropout(p),
            base.clone(),
        ));
    }
    for l2 in [1e-4, 1e-3, 1e-2] {
        let mut t = base.clone();
        t.optimizer.l2 = l2;
        out.push(exp(
            &format!("l2-{l2:e}"),
            "part2-l2",
            "mlp-500-150",
            wide.clone(),
            t,
        ));
    }
    for (kind, lr) in [
        (OptimizerKind::SGD, 0.05),
        (OptimizerKind::MOMENTUM, 0.01),
        (OptimizerKind::ADAM, 1e-3),
        (OptimizerKind::ADAMW, 1e-3),
        (OptimizerKind::RMSPROP, 1e-3),
    ] {
        let mut t = TrainConfig { lr, ..base.clone() }.optimizer(kind);
        if kind == OptimizerKind::ADAMW {
            t.optimizer.weight_decay = 1e-2;
        }
        out.push(exp(
            &format!("optimizer-{}", kind.name()),
            "part2-optimizers",
            "dense128",
            dense.clone(),
            t,
        ));
    }
    for batch in [8, 32, 128] {
        let t = TrainConfig {
            batch_size: batch,
            // The gradient-noise curves need the per-step gradient statistics.
            grad_stats: true,
            ..base.clone()
        };
        out.push(exp(
            &format!("batch-{batch}"),
            "part2-batch-size",
            "dense128",
            dense.clone(),
            t,
        ));
    }
    for a in [
        Activation::Relu,
        Activation::Tanh,
        Activation::Softsign,
        Activation::Gelu,
    ] {
        out.push(exp(
            &format!("activation-{a}"),
            "part2-activations",
            "mlp-500-150",
            wide.clone().with_activation(a),
            TrainConfig {
                // Gradient flow per layer comes from the per-step gradient statistics.
                grad_stats: true,
                ..base.clone()
            },
        ));
    }
    Ok(out)
}

/// The MLP hyper-parameter sweep of the architecture notebook: learning rate, depth and width
/// around the 784-128-10 baseline, one knob at a time, 5 epochs each.
pub fn sweep(quick: bool, seed: u64) -> Vec<Experiment> {
    let train = TrainConfig {
        epochs: if quick { 2 } else { 5 },
        ..base(quick, seed)
    };
    let mlp = |hidden: Vec<usize>| {
        ModelConfig::Mlp(MlpConfig {
            hidden,
            ..Default::default()
        })
    };
    let mut runs = Vec::new();
    for lr in [3e-4, 1e-3, 3e-3] {
        runs.push((format!("sweep-lr-{lr:e}"), mlp(vec![128]), lr));
    }
    for depth in [2, 3] {
        runs.push((format!("sweep-depth-{depth}"), mlp(vec![128; depth]), 1e-3));
    }
    for width in [32, 512] {
        runs.push((format!("sweep-width-{width}"), mlp(vec![width]), 1e-3));
    }
    runs.into_iter()
        .map(|(name, config, lr)| {
            exp(
                &name,
                "mlp-sweep",
                "mlp",
                config,
                TrainConfig {
                    lr,
                    ..train.clone()
                },
            )
        })
        .collect()
}

/// The learning rates the LeNet-5 optimizer comparison tries for each optimizer, a factor of
/// about 3 apart around the usual default.
pub const LENET5_LR_GRID: [(OptimizerKind, [f64; 3]); 5] = [
    (OptimizerKind::SGD, [0.01, 0.03, 0.1]),
    (OptimizerKind::MOMENTUM, [0.003, 0.01, 0.03]),
    (OptimizerKind::ADAM, [3e-4, 1e-3, 3e-3]),
    (OptimizerKind::ADAMW, [3e-4, 1e-3, 3e-3]),
    (OptimizerKind::RMSPROP, [1e-4, 3e-4, 1e-3]),
];

/// Epochs of one learning-rate grid run (one seed) and of the tuned comparison.
const GRID_EPOCHS: usize = 2;
const LENET5_OPTIMIZER_EPOCHS: usize = 5;

fn lenet5_optimizer_train(quick: bool, seed: u64, kind: OptimizerKind, lr: f64) -> TrainConfig {
    let mut t = TrainConfig {
        lr,
        epochs: epochs(quick, LENET5_OPTIMIZER_EPOCHS),
        ..base(quick, seed)
    }
    .optimizer(kind);
    if kind == OptimizerKind::ADAMW {
        t.optimizer.weight_decay = 1e-2;
    }
    t
}

/// The learning-rate grid of the LeNet-5 optimizer comparison: one seed, a short schedule,
/// chosen on validation accuracy.
pub fn lenet5_lr_grid(quick: bool, seed: u64) -> Result<Vec<Experiment>> {
    let mut out = Vec::new();
    for (kind, lrs) in LENET5_LR_GRID {
        for lr in lrs {
            let mut e = preset(
                "lenet5",
                "lenet5-optimizers-grid",
                TrainConfig {
                    epochs: if quick { 1 } else { GRID_EPOCHS },
                    ..lenet5_optimizer_train(quick, seed, kind, lr)
                },
            )?;
            e.name = grid_name(kind, lr);
            e.seeds = Some(1);
            out.push(e);
        }
    }
    Ok(out)
}

fn grid_name(kind: OptimizerKind, lr: f64) -> String {
    format!("lenet5-grid-{}-lr-{lr:e}", kind.name())
}

/// The grid's winner for `kind`: the learning rate with the highest validation accuracy (ties:
/// lower validation loss, then the smaller rate), with that accuracy. `None` until every rate
/// of the grid has finished.
pub fn chosen_lr(grid: &[ExperimentResult], kind: OptimizerKind) -> Option<(f64, f64)> {
    let lrs = LENET5_LR_GRID.iter().find(|(k, _)| *k == kind)?.1;
    let mut scored = Vec::new();
    for lr in lrs {
        let r = grid
            .iter()
            .find(|r| r.experiment.name == grid_name(kind, lr))?;
        let last = r.history.last()?;
        scored.push((
            lr,
            last.val_accuracy?,
            last.val_loss.unwrap_or(f64::INFINITY),
        ));
    }
    scored
        .into_iter()
        .max_by(|a, b| {
            a.1.total_cmp(&b.1)
                .then(b.2.total_cmp(&a.2))
                .then(b.0.total_cmp(&a.0))
        })
        .map(|(lr, acc, _)| (lr, acc))
}

/// The tuned LeNet-5 optimizer comparison: each optimizer at the learning rate `lr_of` gives
/// it (the grid's choice, see [`chosen_lr`]); optimizers without one are left out.
pub fn lenet5_optimizers(
    quick: bool,
    seed: u64,
    lr_of: impl Fn(OptimizerKind) -> Option<f64>,
) -> Result<Vec<Experiment>> {
    let mut out = Vec::new();
    for (kind, _) in LENET5_LR_GRID {
        let Some(lr) = lr_of(kind) else {
            continue;
        };
        let mut e = preset(
            "lenet5",
            "lenet5-optimizers",
            TrainConfig {
                // The per-iteration loss shows each optimizer's stability.
                loss_every: 10,
                ..lenet5_optimizer_train(quick, seed, kind, lr)
            },
        )?;
        e.name = format!("lenet5-{}", kind.name());
        out.push(e);
    }
    Ok(out)
}

/// [`lenet5_optimizers`] at the rates the finished `grid` runs chose.
pub fn lenet5_optimizers_tuned(
    quick: bool,
    seed: u64,
    grid: &[ExperimentResult],
) -> Result<Vec<Experiment>> {
    lenet5_optimizers(quick, seed, |k| chosen_lr(grid, k).map(|(lr, _)| lr))
}

/// The names [`lenet5_optimizers`] gives, known before the grid has run.
pub fn lenet5_optimizer_names() -> Vec<String> {
    LENET5_LR_GRID
        .iter()
        .map(|(k, _)| format!("lenet5-{}", k.name()))
        .collect()
}

/// The regularization ablation on LeNet-5: each technique alone on top of the plain network,
/// and all of them together, on LeNet-5's schedule (the plain end is `lenet5` itself).
pub fn lenet5_ablation(quick: bool, seed: u64) -> Result<Vec<Experiment>> {
    let plain = ModelConfig::preset("lenet5")?;
    let train = TrainConfig {
        epochs: epochs(quick, 10),
        ..arch_base(quick, seed)
    };
    let aug = TrainConfig {
        augment: Some(AugmentConfig::default()),
        ..train.clone()
    };
    let mut l2 = train.clone();
    l2.optimizer.l2 = 1e-4;
    let mut all = aug.clone();
    all.optimizer.l2 = 1e-4;
    let g = "lenet5-ablation";
    Ok(vec![
        exp(
            "lenet5-batchnorm",
            g,
            "lenet5",
            plain.clone().with_batch_norm(true),
            train.clone(),
        ),
        exp(
            "lenet5-dropout",
            g,
            "lenet5",
            plain.clone().with_dropout(0.1),
            train.clone(),
        ),
        exp("lenet5-augment", g, "lenet5", plain.clone(), aug),
        exp("lenet5-l2", g, "lenet5", plain.clone(), l2),
        exp(
            "lenet5-all",
            g,
            "lenet5",
            plain.with_batch_norm(true).with_dropout(0.1),
            all,
        ),
    ])
}

/// Blocks per stage of the depth study.
pub const RESNET_DEPTHS: [usize; 3] = [1, 2, 3];
const DEPTH_EPOCHS: usize = 3;
/// Training images of the depth study (a third of the training set).
const DEPTH_IMAGES: usize = 15_000;

/// ResNet depth: 1, 2 and 3 basic blocks per stage, each with and without its shortcuts, on a
/// short schedule (no augmentation, Adam, cosine).
pub fn resnet_depth(quick: bool, seed: u64) -> Vec<Experiment> {
    let base = base(quick, seed);
    let train = TrainConfig {
        epochs: epochs(quick, DEPTH_EPOCHS),
        schedule: Schedule::Cosine { min_factor: 0.01 },
        train_limit: Some(base.train_limit.unwrap_or(DEPTH_IMAGES)),
        ..base
    };
    let mut out = Vec::new();
    for residual in [true, false] {
        for blocks in RESNET_DEPTHS {
            let config = ModelConfig::Resnet(ResNetConfig {
                blocks_per_stage: blocks,
                residual,
                ..Default::default()
            });
            let kind = if residual { "resnet" } else { "plain" };
            out.push(exp(
                &format!("{kind}-depth-{blocks}"),
                "resnet-depth",
                "resnet",
                config,
                train.clone(),
            ));
        }
    }
    out
}

/// Every experiment that does not depend on another's result, in run order: the
/// architectures, early stopping, Part 2, the MLP sweep, the LeNet-5 learning-rate grid, the
/// ablation and the depth study. [`lenet5_optimizers`] follows once the grid has finished.
pub fn plan(quick: bool, seed: u64) -> Result<Vec<Experiment>> {
    let mut plan = architectures(quick, seed)?;
    plan.push(early_stopping(quick, seed)?);
    plan.extend(part2(quick, seed)?);
    plan.extend(sweep(quick, seed));
    plan.extend(lenet5_lr_grid(quick, seed)?);
    plan.extend(lenet5_ablation(quick, seed)?);
    plan.extend(resnet_depth(quick, seed));
    Ok(plan)
}

/// The groups the report compares, in report order. Members are experiment names; a group
/// shows only the members that have finished.
pub fn groups() -> Vec<Group> {
    let g = |name: &str, title: &str, about: &str, members: &[&str]| Group {
        name: name.into(),
        title: title.into(),
        about: about.into(),
        members: members.iter().map(|m| m.to_string()).collect(),
    };
    let names = |prefix: &str, items: &[&str]| -> Vec<String> {
        items.iter().map(|i| format!("{prefix}{i}")).collect()
    };
    let mut out = vec![
        g(
            "architectures",
            "Architectures",
            "Every architecture of the study on its own schedule (cosine decay; the \
             augmented ones longer), Adam unless stated.",
            &[
                "dense128",
                "mlp-61k",
                "lenet5",
                "lenet5-attention",
                "simple-cnn",
                "lenet5-regularized",
                "resnet",
            ],
        ),
        g(
            "part1-early-stopping",
            "Part 1: early stopping",
            "784-500-150-10 at a constant learning rate for up to 30 epochs; early stopping \
             watches the validation loss with patience 3 and restores the best epoch.",
            &["early-stopping"],
        ),
        g(
            "pair-28x28",
            "LeNet-5 on 28x28 against the 784-500-150-10 MLP",
            "Seed study 004's pair: both on the 28x28 input, 10 epochs, cosine decay.",
            &["lenet5-28", "mlp-500-150"],
        ),
        g(
            "advanced-mlp",
            "Advanced MLP",
            "Seed study 003's advanced MLP (784-512-256-128-10, BatchNorm before each ReLU, \
             dropout 0.2) against the plain 784-128-10 and 784-500-150-10 networks, 10 epochs, \
             cosine decay.",
            &["mlp-advanced", "dense128", "mlp-500-150"],
        ),
    ];
    let part2 = [
        (
            "part2-dropout",
            "Part 2: dropout",
            "784-500-150-10, dropout after each hidden layer; 10 epochs, Adam 1e-3 constant.",
            names("dropout-", &["0", "0.1", "0.3"]),
        ),
        (
            "part2-l2",
            "Part 2: L2",
            "784-500-150-10, L2 added to the weights' gradients (not the biases); 10 epochs, \
             Adam 1e-3 constant.",
            names("l2-", &["1e-4", "1e-3", "1e-2"]),
        ),
        (
            "part2-optimizers",
            "Part 2: optimizers",
            "784-128-10, 10 epochs at a constant rate: SGD 0.05, momentum 0.01, Adam, AdamW \
             (decay 0.01) and RMSprop at 1e-3.",
            names(
                "optimizer-",
                &["sgd", "momentum", "adam", "adamw", "rmsprop"],
            ),
        ),
        (
            "part2-batch-size",
            "Part 2: batch size",
            "784-128-10, 10 epochs, Adam 1e-3 constant; the gradient noise is measured per \
             step.",
            names("batch-", &["8", "32", "128"]),
        ),
        (
            "part2-activations",
            "Part 2: activations",
            "784-500-150-10, 10 epochs, Adam 1e-3 constant, one hidden activation each.",
            names("activation-", &["relu", "tanh", "softsign", "gelu"]),
        ),
    ];
    for (name, title, about, members) in part2 {
        out.push(Group {
            name: name.into(),
            title: title.into(),
            about: about.into(),
            members,
        });
    }
    out.push(Group {
        name: "mlp-sweep".into(),
        title: "MLP sweep".into(),
        about: "One knob at a time around 784-128-10: learning rate, depth, width; 5 epochs, \
                Adam constant."
            .into(),
        members: sweep(false, 0).into_iter().map(|e| e.name).collect(),
    });
    out.push(Group {
        name: "lenet5-optimizers".into(),
        title: "LeNet-5 optimizers".into(),
        about: format!(
            "Seed study 000's Experiment 5: LeNet-5 with each optimizer at the learning rate \
             that scored best on validation in a grid of three ({} epochs, one seed); then \
             {LENET5_OPTIMIZER_EPOCHS} epochs at that constant rate.",
            GRID_EPOCHS
        ),
        members: lenet5_optimizer_names(),
    });
    out.push(Group {
        name: "lenet5-ablation".into(),
        title: "LeNet-5 regularization ablation".into(),
        about: "Each technique alone on top of plain LeNet-5, then all together: BatchNorm \
                after each convolution, dropout 0.1 on the hidden fully connected layers, \
                augmentation of the training batches (shifts, rotations, scaling), L2 1e-4. \
                All on LeNet-5's schedule: 10 epochs, Adam 1e-3, cosine decay."
            .into(),
        members: [
            "lenet5",
            "lenet5-batchnorm",
            "lenet5-dropout",
            "lenet5-augment",
            "lenet5-l2",
            "lenet5-all",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    });
    out.push(Group {
        name: "resnet-depth".into(),
        title: "ResNet depth".into(),
        about: format!(
            "1, 2 and 3 basic blocks per stage, each with its shortcuts (resnet) and without \
             them (plain, the projection shortcuts removed too); {DEPTH_EPOCHS} epochs on the \
             first {DEPTH_IMAGES} training images, Adam 1e-3, cosine decay, no augmentation: a \
             much shorter schedule than the headline ResNet's, to fit six networks times the \
             seeds into the study's time."
        ),
        members: resnet_depth(false, 0).into_iter().map(|e| e.name).collect(),
    });
    out
}

/// True when `pattern` selects `e` (`--only`): an exact experiment or group name, a group
/// `e` is a member of, or a pattern with `*` wildcards matching the name or the group. The
/// empty pattern and `*` select everything.
pub fn selects(pattern: &str, e: &Experiment) -> bool {
    if pattern.is_empty() {
        return true;
    }
    if pattern.contains('*') {
        return glob(pattern, &e.name) || glob(pattern, &e.group);
    }
    e.name == pattern
        || e.group == pattern
        || groups()
            .iter()
            .any(|g| g.name == pattern && g.members.contains(&e.name))
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return pattern == text;
    }
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_wildcards_only() {
        assert!(glob("lenet5*", "lenet5-attention"));
        assert!(glob("*", "x"));
        assert!(glob("*-depth-*", "plain-depth-2"));
        assert!(!glob("lenet5", "lenet5-attention"));
        assert!(!glob("a*b*c", "acb"));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn exact_names_select_exactly() {
        let plan = plan(true, 42).unwrap();
        let picked = |p: &str| -> Vec<String> {
            plan.iter()
                .filter(|e| selects(p, e))
                .map(|e| e.name.clone())
                .collect()
        };
        assert_eq!(picked("lenet5"), vec!["lenet5"]);
        assert_eq!(picked("part2-dropout").len(), 3);
        // The ablation group takes its plain end, lenet5, from the architectures.
        assert_eq!(picked("lenet5-ablation").len(), 6);
        assert!(picked("lenet5*").len() > 6);
        assert!(picked("nothing").is_empty());
        let names: std::collections::BTreeSet<_> = plan.iter().map(|e| &e.name).collect();
        assert_eq!(names.len(), plan.len(), "experiment names are unique");
        for g in groups() {
            for m in &g.members {
                assert!(
                    names.contains(m) || lenet5_optimizer_names().contains(m),
                    "{} lists {m}",
                    g.name
                );
            }
        }
    }
}
