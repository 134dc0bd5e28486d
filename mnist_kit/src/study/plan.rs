//! What the study runs: every experiment with its seeded configs, and the groups the report
//! compares. Pure functions of the mode and the base seed (the tuned optimizers also of their
//! learning-rate grids' results).
//!
//! The design: a comparison changes one thing. The architectures share one recipe
//! ([`shared`]: Adam 1e-3, cosine decay, batch 64, no augmentation, [`SHARED_EPOCHS`] epochs);
//! the LeNet-5 ablation, the ResNet depth study and the robustness arms change one thing on
//! top of it; Part 2's groups change one thing on top of their own constant-rate recipe. A
//! configuration two groups need is trained once and named in both (`part2-base` is both
//! "dropout 0" and "ReLU"; `resnet` is both the architecture and depth 1). Seeds follow the
//! cost: [`MLP_SEEDS`] for MLPs, [`CNN_SEEDS`] for the LeNet-5 family and the simple CNN,
//! [`RESNET_SEEDS`] for ResNets.

use crate::Result;
use crate::data::Normalization;
use crate::data::augment::AugmentConfig;
use crate::models::{Activation, MlpConfig, ModelConfig, ResNetConfig};
use crate::train::{EarlyStopping, OptimizerConfig, OptimizerKind, Schedule, TrainConfig};

use super::{Experiment, ExperimentResult};

/// Seeds of an MLP experiment.
pub const MLP_SEEDS: usize = 10;
/// Seeds of a LeNet-5 or simple-CNN experiment.
pub const CNN_SEEDS: usize = 5;
/// Seeds of a ResNet experiment.
pub const RESNET_SEEDS: usize = 3;
/// Epochs of the shared recipe.
pub const SHARED_EPOCHS: usize = 10;
/// Epochs of the plateau arms: twice the shared recipe's, which they must not beat.
pub const LONG_EPOCHS: usize = 2 * SHARED_EPOCHS;
/// Epochs of each architecture's best recipe (augmentation needs a longer schedule).
pub const BEST_EPOCHS: usize = 30;
/// Epochs of Part 2's constant-rate recipe.
pub const PART2_EPOCHS: usize = 8;
/// First training seed of the A/A control's replica, after the base seed.
pub const REPLICA_OFFSET: u64 = 1000;

/// A set of experiments the report compares with each other: one table, one figure, one set
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

/// The seeds of `config`'s family.
pub fn family_seeds(config: &ModelConfig) -> usize {
    match config {
        ModelConfig::Mlp(_) => MLP_SEEDS,
        ModelConfig::Lenet(_) | ModelConfig::SimpleCnn(_) => CNN_SEEDS,
        ModelConfig::Resnet(_) => RESNET_SEEDS,
    }
}

/// Data sizes shared by every experiment: the full data, or 5,000 training / 2,000 test images
/// in quick mode. The validation split is seeded with the study's base seed, so it is the same
/// for every training seed.
fn base(quick: bool, seed: u64, epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs: if quick { 2.min(epochs) } else { epochs },
        train_limit: quick.then_some(5000),
        test_limit: quick.then_some(2000),
        validation: if quick { 1000 } else { 5000 },
        seed,
        split_seed: Some(seed),
        ..Default::default()
    }
}

/// The shared recipe of the architecture comparison and everything built on it: Adam 1e-3
/// with cosine decay to 1 %, batch 64, no augmentation, [`SHARED_EPOCHS`] epochs, test curves
/// per epoch and per-step gradient statistics (they measure, they do not change training).
pub fn shared(quick: bool, seed: u64) -> TrainConfig {
    TrainConfig {
        schedule: Schedule::Cosine { min_factor: 0.01 },
        eval_test_each_epoch: true,
        grad_stats: true,
        ..base(quick, seed, SHARED_EPOCHS)
    }
}

/// The robust recipe: the shared recipe with [`AugmentConfig::robust`], same epochs (so
/// that it changes one thing: the augmentation).
pub fn robust(quick: bool, seed: u64) -> TrainConfig {
    TrainConfig {
        augment: Some(AugmentConfig::robust()),
        ..shared(quick, seed)
    }
}

/// A long recipe with the robust recipe's augmentation: [`BEST_EPOCHS`] epochs (cosine decay
/// to 1 %, as the shared recipe). A candidate best recipe, and the robust candidates' recipe.
pub fn robust_long(quick: bool, seed: u64) -> TrainConfig {
    robust(quick, seed).with_epochs(quick, BEST_EPOCHS)
}

/// A long recipe with the mild geometric augmentation of the LeNet-5 ablation
/// ([`AugmentConfig::default`]) for [`BEST_EPOCHS`] epochs: the other candidate best recipe,
/// aimed at clean accuracy.
pub fn augment_long(quick: bool, seed: u64) -> TrainConfig {
    TrainConfig {
        augment: Some(AugmentConfig::default()),
        ..shared(quick, seed).with_epochs(quick, BEST_EPOCHS)
    }
}

impl TrainConfig {
    fn with_epochs(self, quick: bool, epochs: usize) -> TrainConfig {
        TrainConfig {
            epochs: if quick { 2.min(epochs) } else { epochs },
            ..self
        }
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
        seeds: Some(family_seeds(&config)),
        config,
        train,
        first_seed: None,
        robustness: false,
    }
}

fn preset(name: &str, group: &str, train: TrainConfig) -> Result<Experiment> {
    Ok(exp(name, group, name, ModelConfig::preset(name)?, train))
}

fn scored(mut e: Experiment) -> Experiment {
    e.robustness = true;
    e
}

/// The ten architectures of the zoo on the shared recipe, each scored on MNIST-C.
pub const ARCHITECTURES: [&str; 10] = [
    "dense128",
    "mlp-61k",
    "mlp-500-150",
    "mlp-advanced",
    "lenet5",
    "lenet5-28",
    "lenet5-attention",
    "lenet5-regularized",
    "simple-cnn",
    "resnet",
];

/// The architecture comparison: every architecture of the zoo on the shared recipe.
pub fn architectures(quick: bool, seed: u64) -> Result<Vec<Experiment>> {
    ARCHITECTURES
        .iter()
        .map(|name| preset(name, "architectures", shared(quick, seed)).map(scored))
        .collect()
}

/// Part 1's normalization question: 784-128-10 on `[0, 1]` pixels (seed study 002's scaling)
/// and on the raw 0-255 intensities, against the standardized input of every other run, on
/// the shared recipe.
fn normalization(quick: bool, seed: u64) -> Result<Vec<Experiment>> {
    [
        ("dense128-unit", Normalization::UnitRange),
        ("dense128-raw", Normalization::Raw),
    ]
    .into_iter()
    .map(|(name, n)| {
        let mut e = preset("dense128", "part1-normalization", shared(quick, seed))?;
        e.name = name.into();
        e.train.normalization = n;
        Ok(e)
    })
    .collect()
}

/// Early stopping (restore best) on the wide MLP, which overfits within a few epochs: up to 30
/// epochs at a constant learning rate, stopping 3 epochs after validation loss last improved.
fn early_stopping(quick: bool, seed: u64) -> Result<Experiment> {
    let mut e = preset(
        "mlp-500-150",
        "part1-early-stopping",
        TrainConfig {
            early_stopping: Some(EarlyStopping {
                patience: if quick { 1 } else { 3 },
                ..Default::default()
            }),
            ..base(quick, seed, if quick { 4 } else { 30 })
        },
    )?;
    e.name = "early-stopping".into();
    Ok(e)
}

/// The same 30 epochs without early stopping: the last epoch's weights, beside the restored
/// best ones; at a constant rate its per-epoch curves are also seed study 002's epoch sweep
/// (the network after k epochs is the network trained for k epochs).
fn no_early_stopping(quick: bool, seed: u64) -> Result<Experiment> {
    let mut e = early_stopping(quick, seed)?;
    e.name = "no-early-stopping".into();
    e.train.early_stopping = None;
    Ok(e)
}

/// Part 2's recipe: [`PART2_EPOCHS`] epochs of Adam at a constant 1e-3, batch 64, with the
/// per-step gradient statistics (gradient noise and flow).
/// Epochs of Part 2's recipe in this mode.
pub fn part2_epochs(quick: bool) -> usize {
    part2_base(quick, 0).epochs
}

/// Part 2 keeps the seed studies' constant rate, so its last epoch is noisy: every run
/// returns the weights of its best validation epoch (validation loss, watched from the first
/// epoch; the patience is the whole run, so no run stops early).
fn part2_base(quick: bool, seed: u64) -> TrainConfig {
    TrainConfig {
        grad_stats: true,
        early_stopping: Some(EarlyStopping {
            patience: PART2_EPOCHS,
            restore_best_weights: true,
            ..Default::default()
        }),
        ..base(quick, seed, PART2_EPOCHS)
    }
}

/// The batch sizes of Part 2.
pub const BATCH_SIZES: [usize; 4] = [8, 32, 64, 128];

/// The learning rate of batch size `batch` under the square-root scaling rule for Adam
/// (Malladi et al. 2022): 1e-3 at batch 64, times sqrt(batch / 64).
pub fn batch_lr(batch: usize) -> f64 {
    1e-3 * (batch as f64 / 64.0).sqrt()
}

/// Part 2 of the study on 784-500-150-10: dropout, L2 and activations, each one change to
/// `part2-base` (no dropout, no L2, ReLU), which all three groups share; and on 784-128-10 the
/// batch sizes. The optimizers follow their learning-rate grids ([`Tuning::part2`]).
pub fn part2(quick: bool, seed: u64) -> Result<Vec<Experiment>> {
    let t = part2_base(quick, seed);
    let wide = ModelConfig::preset("mlp-500-150")?;
    let dense = ModelConfig::preset("dense128")?;
    let mut out = vec![exp(
        "part2-base",
        "part2-dropout",
        "mlp-500-150",
        wide.clone(),
        t.clone(),
    )];
    for p in [0.1f32, 0.3] {
        out.push(exp(
            &format!("dropout-{p}"),
            "part2-dropout",
            "mlp-500-150",
            wide.clone().with_dropout(p),
            t.clone(),
        ));
    }
    // Keras' convention, as the seed study used it: `l2(λ)` adds λ·||w||² to the loss, whose
    // gradient 2λ·w is the kit's `l2` term.
    for l2 in [1e-4, 1e-3, 1e-2] {
        let mut tl = t.clone();
        tl.optimizer.l2 = 2.0 * l2;
        out.push(exp(
            &format!("l2-{l2:e}"),
            "part2-l2",
            "mlp-500-150",
            wide.clone(),
            tl,
        ));
    }
    for a in [Activation::Tanh, Activation::Softsign, Activation::Gelu] {
        out.push(exp(
            &format!("activation-{a}"),
            "part2-activations",
            "mlp-500-150",
            wide.clone().with_activation(a),
            t.clone(),
        ));
    }
    for batch in BATCH_SIZES {
        out.push(exp(
            &format!("batch-{batch}"),
            "part2-batch-size",
            "dense128",
            dense.clone(),
            TrainConfig {
                batch_size: batch,
                lr: batch_lr(batch),
                ..t.clone()
            },
        ));
    }
    Ok(out)
}

/// The MLP hyper-parameter sweep of the architecture notebook: learning rate, depth and width
/// around the 784-128-10 baseline, one knob at a time, 5 epochs each at a constant rate.
pub fn sweep(quick: bool, seed: u64) -> Vec<Experiment> {
    let train = base(quick, seed, 5);
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

/// The regularization ablation on LeNet-5: each technique alone on top of the plain network,
/// and all of them together, on the shared recipe (the plain end is `lenet5` itself), each
/// scored on MNIST-C (BatchNorm and augmentation are arms of the robustness question too).
/// Then seed study 004's own combination on its 28x28 LeNet-5 (BatchNorm after each
/// convolution, dropout 0.5 after each hidden fully connected layer, augmentation).
pub fn lenet5_ablation(quick: bool, seed: u64) -> Result<Vec<Experiment>> {
    let plain = ModelConfig::preset("lenet5")?;
    let train = shared(quick, seed);
    let aug = TrainConfig {
        augment: Some(AugmentConfig::default()),
        ..train.clone()
    };
    let mut l2 = train.clone();
    l2.optimizer.l2 = 1e-4;
    let mut all = aug.clone();
    all.optimizer.l2 = 1e-4;
    let g = "lenet5-ablation";
    let lenet28 = ModelConfig::preset("lenet5-28")?;
    Ok(vec![
        scored(exp(
            "lenet5-batchnorm",
            g,
            "lenet5",
            plain.clone().with_batch_norm(true),
            train.clone(),
        )),
        scored(exp(
            "lenet5-dropout",
            g,
            "lenet5",
            plain.clone().with_dropout(0.1),
            train.clone(),
        )),
        scored(exp(
            "lenet5-augment",
            g,
            "lenet5",
            plain.clone(),
            aug.clone(),
        )),
        scored(exp("lenet5-l2", g, "lenet5", plain.clone(), l2)),
        scored(exp(
            "lenet5-all",
            g,
            "lenet5",
            plain.with_batch_norm(true).with_dropout(0.1),
            all,
        )),
        exp(
            "lenet5-28-004",
            "pair-28x28-regularized",
            "lenet5-28",
            lenet28.clone().with_batch_norm(true).with_dropout(0.5),
            aug.with_epochs(quick, LONG_EPOCHS),
        ),
        exp(
            "lenet5-28-long",
            "pair-28x28-regularized",
            "lenet5-28",
            lenet28,
            train.with_epochs(quick, LONG_EPOCHS),
        ),
    ])
}

/// The A/A control: LeNet-5 on the shared recipe again, from another set of seeds. Its
/// comparison with `lenet5` must come out not distinguishable.
fn replica(quick: bool, seed: u64) -> Result<Experiment> {
    let mut e = preset("lenet5", "aa-control", shared(quick, seed))?;
    e.name = "lenet5-replica".into();
    e.first_seed = Some(seed + REPLICA_OFFSET);
    Ok(e)
}

/// Blocks per stage of the depth study.
pub const RESNET_DEPTHS: [usize; 3] = [1, 2, 3];

/// ResNet depth on the shared recipe: 1, 2 and 3 basic blocks per stage, each with shortcuts
/// and as a plain network (no shortcuts, no projections); depth 1 with shortcuts is `resnet`
/// itself.
pub fn resnet_depth(quick: bool, seed: u64) -> Vec<Experiment> {
    let mut out = Vec::new();
    for blocks in RESNET_DEPTHS {
        for residual in [true, false] {
            if residual && blocks == 1 {
                continue;
            }
            let config = ModelConfig::Resnet(ResNetConfig {
                blocks_per_stage: blocks,
                residual,
                ..Default::default()
            });
            out.push(exp(
                &depth_name(residual, blocks),
                "resnet-depth",
                "resnet",
                config,
                shared(quick, seed),
            ));
        }
    }
    out
}

/// The networks whose plateau the study checks: each also trained for [`LONG_EPOCHS`] on the
/// shared recipe (`lenet5-long`, `resnet-long`).
pub const PLATEAU: [&str; 2] = ["lenet5", "resnet"];

/// The plateau arms: the shared recipe at twice the epochs. If the shared recipe sits at its
/// plateau, they cannot be told apart from it.
pub fn plateau(quick: bool, seed: u64) -> Result<Vec<Experiment>> {
    PLATEAU
        .iter()
        .map(|name| {
            let train = shared(quick, seed).with_epochs(quick, LONG_EPOCHS);
            let mut e = scored(preset(name, &format!("plateau-{name}"), train)?);
            e.name = format!("{name}-long");
            Ok(e)
        })
        .collect()
}

/// The networks with candidate best recipes: LeNet-5 with BatchNorm and dropout (the
/// regularized preset) and the ResNet.
pub const BEST: [&str; 2] = ["lenet5-regularized", "resnet"];

/// The suffixes of the candidate best recipes' experiments, `NAME-SUFFIX` for each [`BEST`]
/// network: [`augment_long`] and [`robust_long`].
pub const LONG_RECIPES: [&str; 2] = ["augment-long", "robust-long"];

/// Each [`BEST`] network's candidate best recipes, scored on MNIST-C: `NAME-augment-long`
/// ([`augment_long`]) and `NAME-robust-long` ([`robust_long`]). The network's best recipe is
/// the one of its runs with the highest validation accuracy (never test); they are also the
/// served model's candidates.
pub fn best_recipes(quick: bool, seed: u64) -> Result<Vec<Experiment>> {
    let mut out = Vec::new();
    for name in BEST {
        let trains = [augment_long(quick, seed), robust_long(quick, seed)];
        for (suffix, train) in LONG_RECIPES.into_iter().zip(trains) {
            let mut e = scored(preset(name, &format!("best-{name}"), train)?);
            e.name = format!("{name}-{suffix}");
            out.push(e);
        }
    }
    Ok(out)
}

/// The name of a depth-study network (`resnet` for depth 1 with shortcuts).
pub fn depth_name(residual: bool, blocks: usize) -> String {
    match (residual, blocks) {
        (true, 1) => "resnet".into(),
        (true, b) => format!("resnet-depth-{b}"),
        (false, b) => format!("plain-depth-{b}"),
    }
}

/// The robustness group's arms and recipes: the ResNet with AdamW's decoupled weight decay
/// 0.2 (the earlier study's headline recipe, where the collapse was found), and the robust
/// recipe on four networks, all scored on MNIST-C.
pub fn robustness(quick: bool, seed: u64) -> Result<Vec<Experiment>> {
    let mut adamw = shared(quick, seed);
    adamw.optimizer = OptimizerConfig {
        kind: OptimizerKind::ADAMW,
        weight_decay: 0.2,
        ..Default::default()
    };
    let mut out = vec![scored(exp(
        "resnet-adamw",
        "robustness-causes",
        "resnet",
        ModelConfig::preset("resnet")?,
        adamw,
    ))];
    for name in ROBUST {
        let mut e = scored(preset(name, "robust-recipe", robust(quick, seed))?);
        e.name = format!("{name}-robust");
        out.push(e);
    }
    Ok(out)
}

/// The networks trained on the robust recipe too.
pub const ROBUST: [&str; 4] = ["dense128", "lenet5", "lenet5-regularized", "resnet"];

/// The half-decade ladder of learning rates the grids step on.
pub const LR_LADDER: [f64; 11] = [
    1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0,
];

/// A learning-rate grid per optimizer, chosen on validation accuracy, and the comparison at
/// the chosen rates. The grid starts at three neighbouring rates of [`LR_LADDER`] and grows
/// by one rate past an edge whenever the edge wins, so the chosen rate is never at the edge
/// of what was tried (unless it is the ladder's own end).
#[derive(Debug, Clone)]
pub struct Tuning {
    /// The comparison's group (`lenet5-optimizers`); the grid's is `<group>-grid`.
    pub group: &'static str,
    /// Name prefix of the tuned experiments (`lenet5` gives `lenet5-adam`).
    pub prefix: &'static str,
    /// Preset of the model.
    pub model: &'static str,
    /// Each optimizer with the ladder index of its grid's middle rate.
    pub start: Vec<(OptimizerKind, usize)>,
    /// The comparison's recipe (the rate is set per optimizer).
    pub train: TrainConfig,
    /// Epochs of a grid run (one seed).
    pub grid_epochs: usize,
}

/// Where a tuning stands, from the grid runs that have finished.
#[derive(Debug, Clone, PartialEq)]
pub enum TuningState {
    /// These grid runs are still needed.
    Needs(Vec<Experiment>),
    /// Every optimizer has a rate, with the validation accuracy that chose it.
    Chosen(Vec<(OptimizerKind, f64, f64)>),
}

impl Tuning {
    /// Seed study 000's Experiment 5: LeNet-5 with SGD, momentum, Adam, AdamW and RMSprop, 5
    /// epochs at a constant rate each (the per-iteration loss recorded for smoothness).
    pub fn lenet5(quick: bool, seed: u64) -> Tuning {
        Tuning {
            group: "lenet5-optimizers",
            prefix: "lenet5",
            model: "lenet5",
            start: vec![
                (OptimizerKind::SGD, 7),
                (OptimizerKind::MOMENTUM, 6),
                (OptimizerKind::ADAM, 4),
                (OptimizerKind::ADAMW, 4),
                (OptimizerKind::RMSPROP, 3),
            ],
            train: TrainConfig {
                loss_every: 10,
                ..base(quick, seed, 5)
            },
            grid_epochs: 2,
        }
    }

    /// Seed study 002's Task 7 on 784-128-10: the same five optimizers on Part 2's recipe.
    pub fn part2(quick: bool, seed: u64) -> Tuning {
        Tuning {
            group: "part2-optimizers",
            prefix: "optimizer",
            model: "dense128",
            start: vec![
                (OptimizerKind::SGD, 8),
                (OptimizerKind::MOMENTUM, 6),
                (OptimizerKind::ADAM, 4),
                (OptimizerKind::ADAMW, 4),
                (OptimizerKind::RMSPROP, 4),
            ],
            train: TrainConfig {
                loss_every: 10,
                ..part2_base(quick, seed)
            },
            grid_epochs: 3,
        }
    }

    /// Both tunings of the study.
    pub fn all(quick: bool, seed: u64) -> [Tuning; 2] {
        [Tuning::lenet5(quick, seed), Tuning::part2(quick, seed)]
    }

    fn recipe(&self, kind: OptimizerKind, lr: f64) -> TrainConfig {
        let mut t = TrainConfig {
            lr,
            ..self.train.clone()
        }
        .optimizer(kind);
        if kind == OptimizerKind::ADAMW {
            t.optimizer.weight_decay = 1e-2;
        }
        t
    }

    /// The grid run of `kind` at ladder rate `i`.
    pub fn grid_run(&self, kind: OptimizerKind, i: usize) -> Result<Experiment> {
        let lr = LR_LADDER[i];
        let quick = self.train.train_limit.is_some();
        let train = self.recipe(kind, lr).with_epochs(quick, self.grid_epochs);
        let mut e = exp(
            &format!("{}-grid-{}-lr-{lr:e}", self.prefix, kind.name()),
            &format!("{}-grid", self.group),
            self.model,
            ModelConfig::preset(self.model)?,
            train,
        );
        e.seeds = Some(1);
        Ok(e)
    }

    /// The tuned comparison's experiment of `kind` at rate `lr`.
    pub fn tuned_run(&self, kind: OptimizerKind, lr: f64) -> Result<Experiment> {
        Ok(exp(
            &format!("{}-{}", self.prefix, kind.name()),
            self.group,
            self.model,
            ModelConfig::preset(self.model)?,
            self.recipe(kind, lr),
        ))
    }

    /// Names of the tuned experiments, known before the grid has run.
    pub fn names(&self) -> Vec<String> {
        self.start
            .iter()
            .map(|(k, _)| format!("{}-{}", self.prefix, k.name()))
            .collect()
    }

    /// The grid runs to do next, or the chosen rates, from the `finished` grid runs (their
    /// validation accuracy after the last epoch; ties: lower validation loss, then the smaller
    /// rate).
    pub fn state(&self, finished: &[ExperimentResult]) -> Result<TuningState> {
        let mut needs = Vec::new();
        let mut chosen = Vec::new();
        for &(kind, mid) in &self.start {
            let mut lo = mid.saturating_sub(1);
            let mut hi = (mid + 1).min(LR_LADDER.len() - 1);
            loop {
                let mut scored = Vec::new();
                let mut missing = Vec::new();
                for i in lo..=hi {
                    let e = self.grid_run(kind, i)?;
                    match finished.iter().find(|r| r.experiment.name == e.name) {
                        Some(r) => {
                            let last = r.history.last();
                            scored.push((
                                i,
                                last.and_then(|l| l.val_accuracy).unwrap_or(0.0),
                                last.and_then(|l| l.val_loss).unwrap_or(f64::INFINITY),
                            ));
                        }
                        None => missing.push(e),
                    }
                }
                if !missing.is_empty() {
                    needs.extend(missing);
                    break;
                }
                let Some(&(best, acc, _)) = scored.iter().max_by(|a, b| {
                    a.1.total_cmp(&b.1)
                        .then(b.2.total_cmp(&a.2))
                        .then(b.0.cmp(&a.0))
                }) else {
                    break;
                };
                if best == lo && lo > 0 {
                    lo -= 1;
                } else if best == hi && hi + 1 < LR_LADDER.len() {
                    hi += 1;
                } else {
                    chosen.push((kind, LR_LADDER[best], acc));
                    break;
                }
            }
        }
        Ok(if needs.is_empty() {
            TuningState::Chosen(chosen)
        } else {
            TuningState::Needs(needs)
        })
    }

    /// The tuned experiments at the chosen rates.
    pub fn tuned(&self, chosen: &[(OptimizerKind, f64, f64)]) -> Result<Vec<Experiment>> {
        chosen
            .iter()
            .map(|&(k, lr, _)| self.tuned_run(k, lr))
            .collect()
    }

    /// The grid's rates that were tried for `kind`, with their validation accuracy.
    pub fn tried(&self, kind: OptimizerKind, finished: &[ExperimentResult]) -> Vec<(f64, f64)> {
        let mut out: Vec<(f64, f64)> = LR_LADDER
            .iter()
            .enumerate()
            .filter_map(|(i, &lr)| {
                let name = self.grid_run(kind, i).ok()?.name;
                let r = finished.iter().find(|r| r.experiment.name == name)?;
                Some((lr, r.history.last()?.val_accuracy?))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

/// Every experiment that does not depend on another's result, in run order (the tuned
/// optimizers follow their grids, see [`Tuning`]).
pub fn plan(quick: bool, seed: u64) -> Result<Vec<Experiment>> {
    let mut plan = architectures(quick, seed)?;
    plan.extend(normalization(quick, seed)?);
    plan.push(early_stopping(quick, seed)?);
    plan.push(no_early_stopping(quick, seed)?);
    plan.extend(part2(quick, seed)?);
    plan.extend(sweep(quick, seed));
    plan.extend(lenet5_ablation(quick, seed)?);
    plan.push(replica(quick, seed)?);
    plan.extend(resnet_depth(quick, seed));
    plan.extend(plateau(quick, seed)?);
    plan.extend(robustness(quick, seed)?);
    plan.extend(best_recipes(quick, seed)?);
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
    let shared_words = format!(
        "the shared recipe: Adam 1e-3, cosine decay to 1 %, batch 64, no augmentation, \
         {SHARED_EPOCHS} epochs"
    );
    let part2_words = format!(
        "{PART2_EPOCHS} epochs of Adam at a constant 1e-3, batch 64, returning the weights of \
         the best validation epoch"
    );
    let mut out = vec![
        g(
            "architectures",
            "Architectures",
            &format!("Every architecture on {shared_words}: only the network differs."),
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
            "parameter-matched",
            "LeNet-5 against the parameter-matched MLP",
            &format!(
                "Seed study 001's pair: LeNet-5 (61,706 parameters, 32x32 input) and a \
                 1024-48x6-10 MLP (61,450), both on {shared_words}."
            ),
            &["lenet5", "mlp-61k"],
        ),
        g(
            "pair-28x28",
            "LeNet-5 on 28x28 against the 784-500-150-10 MLP",
            &format!("Seed study 004's pair, both on {shared_words}."),
            &["lenet5-28", "mlp-500-150"],
        ),
        g(
            "pair-28x28-regularized",
            "Seed study 004's regularized LeNet-5",
            &format!(
                "004's combination on its 28x28 LeNet-5: BatchNorm after each convolution, \
                 dropout 0.5 after each hidden fully connected layer and augmentation \
                 (shifts, rotations, scaling, shear), against the plain network; both on \
                 the shared recipe at {LONG_EPOCHS} epochs, so that the regularized network \
                 converges too (augmentation on for the regularized one)."
            ),
            &["lenet5-28-long", "lenet5-28-004"],
        ),
        g(
            "advanced-mlp",
            "Advanced MLP",
            &format!(
                "Seed study 003's advanced MLP (784-512-256-128-10, BatchNorm before each \
                 ReLU, dropout 0.2) against the plain 784-128-10 and 784-500-150-10 networks, \
                 all on {shared_words}."
            ),
            &["mlp-advanced", "dense128", "mlp-500-150"],
        ),
        g(
            "part1-normalization",
            "Part 1: input normalization",
            &format!(
                "784-128-10 on standardized pixels ((x - 0.1307) / 0.3081, every other run), \
                 on pixels scaled to [0, 1] (seed study 002's normalization) and on the raw \
                 0-255 intensities, all on {shared_words}."
            ),
            &["dense128", "dense128-unit", "dense128-raw"],
        ),
        g(
            "part1-early-stopping",
            "Part 1: early stopping",
            "784-500-150-10 at a constant learning rate for up to 30 epochs; early stopping \
             watches the validation loss with patience 3 and restores the best epoch \
             (early-stopping), against all 30 epochs and the last epoch's weights \
             (no-early-stopping).",
            &["early-stopping", "no-early-stopping"],
        ),
        g(
            "part2-dropout",
            "Part 2: dropout",
            &format!(
                "784-500-150-10 with dropout after each hidden layer, on {part2_words}; \
                 part2-base is dropout 0 (and the ReLU of the activation group, and no L2)."
            ),
            &["part2-base", "dropout-0.1", "dropout-0.3"],
        ),
        g(
            "part2-l2",
            "Part 2: L2",
            &format!(
                "784-500-150-10 with L2 on the weights (not the biases) in Keras' convention, \
                 as seed study 002 used it: l2-λ adds λ·||w||² to the loss (2λ·w to the \
                 gradient), on {part2_words}; part2-base has none."
            ),
            &["part2-base", "l2-1e-4", "l2-1e-3", "l2-1e-2"],
        ),
    ];
    out.push(Group {
        name: "part2-optimizers".into(),
        title: "Part 2: optimizers".into(),
        about: format!(
            "784-128-10 with each optimizer at the learning rate that scored best on \
             validation in its grid ({} epochs, one seed, widened until the winner is inside \
             it), then {PART2_EPOCHS} epochs at batch 64 at that constant rate, as the rest \
             of Part 2 (AdamW: decoupled decay 0.01).",
            Tuning::part2(false, 0).grid_epochs
        ),
        members: Tuning::part2(false, 0).names(),
    });
    out.push(g(
        "part2-batch-size",
        "Part 2: batch size",
        "784-128-10 at batch 8, 32, 64 and 128 for the same 8 epochs, Adam at a constant rate \
         scaled by the square-root rule (1e-3 at batch 64, times sqrt(batch / 64)), the \
         best validation epoch returned; the gradient noise is measured per step.",
        &["batch-8", "batch-32", "batch-64", "batch-128"],
    ));
    out.push(g(
        "part2-activations",
        "Part 2: activations",
        &format!(
            "784-500-150-10 with one hidden activation each, on {part2_words}; part2-base is \
             ReLU."
        ),
        &[
            "part2-base",
            "activation-tanh",
            "activation-softsign",
            "activation-gelu",
        ],
    ));
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
             that scored best on validation in its grid ({} epochs, one seed, widened until \
             the winner is inside it); then 5 epochs at that constant rate (AdamW: decoupled \
             decay 0.01).",
            Tuning::lenet5(false, 0).grid_epochs
        ),
        members: Tuning::lenet5(false, 0).names(),
    });
    out.push(g(
        "lenet5-ablation",
        "LeNet-5 regularization ablation",
        &format!(
            "Each technique alone on top of plain LeNet-5, then all together, all on \
             {shared_words}: BatchNorm after each convolution, dropout 0.1 on the hidden fully \
             connected layers, augmentation of the training batches (±10° rotation, ±2 px \
             shifts, ±10 % scale, ±8° shear), L2 1e-4."
        ),
        &[
            "lenet5",
            "lenet5-batchnorm",
            "lenet5-dropout",
            "lenet5-augment",
            "lenet5-l2",
            "lenet5-all",
        ],
    ));
    out.push(g(
        "aa-control",
        "A/A control",
        &format!(
            "LeNet-5 on {shared_words}, trained twice from two disjoint sets of seeds \
             (lenet5 from the base seed, lenet5-replica from the base seed + \
             {REPLICA_OFFSET}). Nothing differs, so the verdict rule must find nothing."
        ),
        &["lenet5", "lenet5-replica"],
    ));
    out.push(g(
        "resnet-depth",
        "ResNet depth and shortcuts",
        &format!(
            "1, 2 and 3 basic blocks per stage, with shortcuts (resnet, resnet-depth-2, \
             resnet-depth-3) and without (plain: no identity shortcuts and no projections), \
             all on the full training set with {shared_words}. resnet is the architecture \
             comparison's ResNet."
        ),
        &[
            "resnet",
            "resnet-depth-2",
            "resnet-depth-3",
            "plain-depth-1",
            "plain-depth-2",
            "plain-depth-3",
        ],
    ));
    out.push(g(
        "robustness-causes",
        "What makes a network collapse under corruption",
        &format!(
            "Arms that change one thing each, on {shared_words}: BatchNorm \
             (lenet5-batchnorm against lenet5), augmentation (lenet5-augment), AdamW's \
             decoupled weight decay 0.2 on the ResNet (the earlier study's headline recipe)."
        ),
        &[
            "lenet5",
            "lenet5-batchnorm",
            "lenet5-augment",
            "resnet",
            "resnet-adamw",
        ],
    ));
    out.push(g(
        "robust-recipe",
        "The robust recipe",
        &format!(
            "Four networks on the shared recipe and on the robust recipe, which changes one \
             thing, the augmentation ({SHARED_EPOCHS} epochs both): stronger geometric \
             augmentation (±15°, ±3 px, ±20 % scale, ±15° shear) and changes of appearance \
             (stroke width, hollow strokes, blur, contrast, brightness, smooth background, \
             ruled or dashed lines, pixel noise, erased patches; written from their plain \
             definitions, not MNIST-C's code)."
        ),
        &[
            "dense128",
            "dense128-robust",
            "lenet5",
            "lenet5-robust",
            "lenet5-regularized",
            "lenet5-regularized-robust",
            "resnet",
            "resnet-robust",
        ],
    ));
    for name in PLATEAU {
        out.push(g(
            &format!("plateau-{name}"),
            &format!("Plateau: {name} at twice the epochs"),
            &format!(
                "{name} on {shared_words}, and the same recipe for {LONG_EPOCHS} epochs \
                 ({name}-long). If the shared recipe has reached the network's plateau, the \
                 two cannot be told apart."
            ),
            &[name, &format!("{name}-long")],
        ));
    }
    for name in BEST {
        out.push(g(
            &format!("best-{name}"),
            &format!("Best recipe: {name}"),
            &format!(
                "{name} on {shared_words}, and on two longer recipes, {BEST_EPOCHS} epochs \
                 with the same cosine decay: the LeNet-5 ablation's mild geometric \
                 augmentation ({name}-augment-long) and the robust recipe's augmentation \
                 ({name}-robust-long). The best recipe is the one with the highest \
                 validation accuracy; these runs are also the served model's candidates."
            ),
            &[
                name,
                &format!("{name}-{}", LONG_RECIPES[0]),
                &format!("{name}-{}", LONG_RECIPES[1]),
            ],
        ));
    }
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
        let tuned: Vec<String> = Tuning::all(true, 42)
            .iter()
            .flat_map(|t| t.names())
            .collect();
        for g in groups() {
            for m in &g.members {
                assert!(
                    names.contains(m) || tuned.contains(m),
                    "{} lists {m}",
                    g.name
                );
            }
        }
    }

    #[test]
    fn comparisons_change_one_thing() {
        let plan = plan(false, 42).unwrap();
        let find = |n: &str| plan.iter().find(|e| e.name == n).unwrap();
        // The architectures share every training setting.
        let arch: Vec<&Experiment> = ARCHITECTURES.iter().map(|n| find(n)).collect();
        assert!(arch.iter().all(|e| e.train == arch[0].train));
        // Ablation arms and depth networks differ from lenet5 / resnet in one thing.
        assert_eq!(find("lenet5-batchnorm").train, find("lenet5").train);
        assert_eq!(find("resnet-depth-2").train, find("resnet").train);
        let aug = &find("lenet5-augment").train;
        assert_eq!(
            TrainConfig {
                augment: None,
                ..aug.clone()
            },
            find("lenet5").train
        );
        // The replica differs in its seeds only.
        let r = find("lenet5-replica");
        assert_eq!(
            (&r.config, &r.train),
            (&find("lenet5").config, &find("lenet5").train)
        );
        assert_ne!(r.first_seed, find("lenet5").first_seed);
        // Seeds follow the family.
        assert_eq!(find("dense128").seeds, Some(MLP_SEEDS));
        assert_eq!(find("lenet5").seeds, Some(CNN_SEEDS));
        assert_eq!(find("resnet-depth-2").seeds, Some(RESNET_SEEDS));
    }

    /// A finished one-epoch grid run of `e` with validation accuracy `acc`.
    fn done(e: Experiment, acc: f64) -> ExperimentResult {
        let epoch = crate::train::history::EpochRecord {
            epoch: 1,
            lr: e.train.lr,
            train_loss: 0.1,
            train_accuracy: 0.9,
            val_loss: Some(1.0 - acc),
            val_accuracy: Some(acc),
            test_loss: None,
            test_accuracy: None,
            seconds: 1.0,
            images_per_sec: 1.0,
            weight_norm: 1.0,
            grad_noise: None,
            grad_mean_norm: None,
            layer_grad_norms: Vec::new(),
            loss_trace: Vec::new(),
        };
        ExperimentResult {
            params: 0,
            buffers: 0,
            val_accuracy: Some(acc),
            train_eval_accuracy: None,
            corruptions: Vec::new(),
            test_accuracy: acc,
            test_loss: 0.0,
            epochs: 1,
            train_seconds: 1.0,
            images_per_sec: 1.0,
            most_confused: Vec::new(),
            history: crate::train::History {
                epochs: vec![epoch],
                ..Default::default()
            },
            experiment: e,
            penalized_square_sum: None,
            dir: None,
        }
    }

    #[test]
    fn grids_widen_until_the_winner_is_inside() {
        let t = Tuning {
            start: vec![(OptimizerKind::SGD, 5)],
            ..Tuning::lenet5(true, 42)
        };
        // Validation accuracy peaks at ladder rate 2 (1e-4), left of the grid 4..=6.
        let score = |i: usize| 0.9 - 0.01 * (i as f64 - 2.0).abs();
        let mut finished = Vec::new();
        let mut rounds = 0;
        let chosen = loop {
            match t.state(&finished).unwrap() {
                TuningState::Needs(runs) => {
                    for e in runs {
                        let i = LR_LADDER.iter().position(|&lr| lr == e.train.lr).unwrap();
                        finished.push(done(e, score(i)));
                    }
                }
                TuningState::Chosen(c) => break c,
            }
            rounds += 1;
            assert!(rounds < 10);
        };
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].1, LR_LADDER[2]);
        // The grid grew to 1..=6: the winner has a tried neighbour on each side.
        let tried = t.tried(OptimizerKind::SGD, &finished);
        assert_eq!(tried.first().unwrap().0, LR_LADDER[1]);
        assert_eq!(tried.last().unwrap().0, LR_LADDER[6]);
    }

    #[test]
    fn the_penalized_validation_loss_adds_what_l2_penalizes() {
        use crate::study::aggregate::Metric;
        let base = preset("dense128", "g", TrainConfig::default()).unwrap();
        // The kit's l2 2e-3 is Keras' l2(1e-3): 1e-3 times the sum of squares.
        let mut l2 = base.clone();
        l2.train.optimizer.l2 = 2e-3;
        let mut r = done(l2, 0.9);
        assert_eq!(Metric::PenalizedValLoss.of(&r), None, "no sum recorded");
        r.penalized_square_sum = Some(100.0);
        let with = Metric::PenalizedValLoss.of(&r).unwrap();
        assert!((with - (0.1 + 0.1)).abs() < 1e-12, "{with}");
        assert!((Metric::ValLoss.of(&r).unwrap() - 0.1).abs() < 1e-12);
        // Without L2 it is the validation loss.
        let plain = done(base, 0.9);
        assert_eq!(
            Metric::PenalizedValLoss.of(&plain),
            Metric::ValLoss.of(&plain)
        );
    }
}
