//! The seed studies' "what we learned" lines, tested against our seeds: one row per claim with
//! what we measured, a p-value and a verdict (confirmed, contradicted, not distinguishable).
//!
//! Each claim is a directional statement about study runs. "A beats every other" is tested with
//! Welch's test against each other setting, Holm-corrected across those comparisons: confirmed
//! when every comparison favours A at p < 0.05, contradicted when one favours another setting,
//! else not distinguishable. A claim is left out when its runs have not finished.

use serde::{Deserialize, Serialize};

use super::ExperimentResult;
use super::aggregate::{Metric, Replicates, by_experiment};
use super::stats::{ALPHA, Summary, contrast, holm, one_sample, show_p, welch};
use crate::Result;
use crate::display::Table;

/// The outcome of testing a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimVerdict {
    /// Our seeds support it at p < 0.05.
    Confirmed,
    /// Our seeds show the opposite at p < 0.05.
    Contradicted,
    /// The difference is within the noise of our seeds.
    #[serde(rename = "not distinguishable")]
    NotDistinguishable,
}

impl ClaimVerdict {
    /// The word the report ends a row with.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimVerdict::Confirmed => "confirmed",
            ClaimVerdict::Contradicted => "contradicted",
            ClaimVerdict::NotDistinguishable => "not distinguishable",
        }
    }
}

/// One claim and what our runs say about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// The seed study and task (`002 T5`).
    pub source: String,
    /// The claim in a few words.
    pub claim: String,
    /// What we measured (mean ± std per setting).
    pub measured: String,
    /// The deciding p-value (Holm-corrected where the claim makes several comparisons).
    pub p: f64,
    /// The verdict.
    pub verdict: ClaimVerdict,
}

/// A claims table that shows itself in notebooks.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims(pub Vec<Claim>);

impl Claims {
    /// The rows as a [`Table`].
    pub fn to_table(&self) -> Result<Table> {
        let c = &self.0;
        let df = polars::df!(
            "source" => c.iter().map(|x| x.source.clone()).collect::<Vec<_>>(),
            "claim" => c.iter().map(|x| x.claim.clone()).collect::<Vec<_>>(),
            "measured" => c.iter().map(|x| x.measured.clone()).collect::<Vec<_>>(),
            "p" => c.iter().map(|x| show_p(x.p)).collect::<Vec<_>>(),
            "verdict" => c.iter().map(|x| x.verdict.as_str().to_string()).collect::<Vec<_>>(),
        )?;
        Ok(Table::new("What the seed studies claimed, tested", df))
    }

    /// Markdown table rows, each ending with its verdict.
    pub fn to_markdown(&self) -> String {
        let mut md =
            String::from("| source | claim | measured | p | verdict |\n|---|---|---|---|---|\n");
        for c in &self.0 {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                c.source,
                c.claim,
                c.measured,
                show_p(c.p),
                c.verdict.as_str()
            ));
        }
        md
    }

    /// Shows the table in a notebook.
    pub fn evcxr_display(&self) {
        match self.to_table() {
            Ok(t) => t.evcxr_display(),
            Err(e) => println!("claims table: {e}"),
        }
    }
}

/// What a claim asserts about the runs.
enum Test {
    /// `a` is better than each of `others` on the metric (`higher`: larger is better).
    BestOf {
        a: &'static str,
        others: &'static [&'static str],
        metric: Metric,
        higher: bool,
    },
    /// The mean of `a` on the metric is at least `value`.
    Reaches {
        a: &'static str,
        metric: Metric,
        value: f64,
    },
    /// Diminishing returns over three settings in order: the gain from the first to the
    /// second exceeds the gain from the second to the third (contrast -1, 2, -1 > 0).
    Diminishing {
        steps: [&'static str; 3],
        metric: Metric,
    },
}

/// Part 2's optimizers other than Adam.
const NOT_ADAM: &[&str] = &[
    "optimizer-sgd",
    "optimizer-momentum",
    "optimizer-adamw",
    "optimizer-rmsprop",
];

/// Every claim the study tests: source, words, test.
fn catalogue() -> Vec<(&'static str, &'static str, Test)> {
    use Metric::*;
    let best = |a, others, metric, higher| Test::BestOf {
        a,
        others,
        metric,
        higher,
    };
    vec![
        (
            "002 T5",
            "dropout 0.1 is the best balance (highest test accuracy)",
            best(
                "dropout-0.1",
                &["dropout-0", "dropout-0.3"],
                TestAccuracy,
                true,
            ),
        ),
        (
            "002 T5",
            "no dropout overfits most (widest train-validation gap)",
            best("dropout-0", &["dropout-0.1", "dropout-0.3"], Gap, true),
        ),
        (
            "002 T5",
            "dropout 0.3 converges slower (later convergence epoch)",
            best(
                "dropout-0.3",
                &["dropout-0", "dropout-0.1"],
                Convergence,
                true,
            ),
        ),
        (
            "002 T6",
            "L2 1e-3 gives the best validation loss",
            best("l2-1e-3", &["l2-1e-4", "l2-1e-2"], ValLoss, false),
        ),
        (
            "002 T6",
            "L2 1e-2 underfits (lowest training accuracy)",
            best("l2-1e-2", &["l2-1e-4", "l2-1e-3"], TrainAccuracy, false),
        ),
        (
            "002 T7",
            "Adam converges fastest (earliest convergence epoch)",
            best("optimizer-adam", NOT_ADAM, Convergence, false),
        ),
        (
            "002 T7",
            "Adam reaches the highest accuracy",
            best("optimizer-adam", NOT_ADAM, TestAccuracy, true),
        ),
        (
            "002 T7",
            "plain SGD is slow (converges later than Adam)",
            best("optimizer-sgd", &["optimizer-adam"], Convergence, true),
        ),
        (
            "002 T7",
            "AdamW generalizes better than Adam (test accuracy)",
            best("optimizer-adamw", &["optimizer-adam"], TestAccuracy, true),
        ),
        (
            "002 T8",
            "batch 32 is the best balance (highest test accuracy)",
            best("batch-32", &["batch-8", "batch-128"], TestAccuracy, true),
        ),
        (
            "002 T8",
            "batch 8 generalizes better (smallest train-validation gap)",
            best("batch-8", &["batch-32", "batch-128"], Gap, false),
        ),
        (
            "002 T8",
            "batch 128 generalizes worse (widest train-validation gap)",
            best("batch-128", &["batch-8", "batch-32"], Gap, true),
        ),
        (
            "002 T9",
            "GELU performs best (highest test accuracy)",
            best(
                "activation-gelu",
                &["activation-relu", "activation-tanh", "activation-softsign"],
                TestAccuracy,
                true,
            ),
        ),
        (
            "002 T9",
            "tanh suffers from vanishing gradients (smaller first/last layer gradient ratio than ReLU)",
            best(
                "activation-tanh",
                &["activation-relu"],
                GradFlowRatio,
                false,
            ),
        ),
        (
            "001, 004",
            "LeNet-5 beats the parameter-matched MLP",
            best("lenet5", &["mlp-61k"], TestAccuracy, true),
        ),
        (
            "001, 004",
            "BatchNorm + dropout + augmentation improve LeNet-5 (lenet5-regularized, its own longer schedule)",
            best("lenet5-regularized", &["lenet5"], TestAccuracy, true),
        ),
        (
            "001, 004",
            "BatchNorm helps LeNet-5 (same schedule)",
            best("lenet5-batchnorm", &["lenet5"], TestAccuracy, true),
        ),
        (
            "001, 004",
            "dropout helps LeNet-5 (same schedule)",
            best("lenet5-dropout", &["lenet5"], TestAccuracy, true),
        ),
        (
            "001, 004",
            "augmentation helps LeNet-5 (same schedule)",
            best("lenet5-augment", &["lenet5"], TestAccuracy, true),
        ),
        (
            "001",
            "L2 helps LeNet-5 (same schedule)",
            best("lenet5-l2", &["lenet5"], TestAccuracy, true),
        ),
        (
            "001, 004",
            "all techniques together help LeNet-5 (same schedule)",
            best("lenet5-all", &["lenet5"], TestAccuracy, true),
        ),
        (
            "000 Exp 8",
            "spatial attention improves LeNet-5",
            best("lenet5-attention", &["lenet5"], TestAccuracy, true),
        ),
        (
            "000 Exp 5",
            "Adam beats SGD on LeNet-5",
            best("lenet5-adam", &["lenet5-sgd"], TestAccuracy, true),
        ),
        (
            "000 Exp 5",
            "RMSprop beats SGD on LeNet-5",
            best("lenet5-rmsprop", &["lenet5-sgd"], TestAccuracy, true),
        ),
        (
            "000 Exp 6",
            "a deeper ResNet is more accurate (2 blocks per stage beat 1)",
            best("resnet-depth-2", &["resnet-depth-1"], TestAccuracy, true),
        ),
        (
            "000 Exp 6",
            "diminishing returns with depth (1→2 blocks gains more than 2→3)",
            Test::Diminishing {
                steps: ["resnet-depth-1", "resnet-depth-2", "resnet-depth-3"],
                metric: TestAccuracy,
            },
        ),
        (
            "003",
            "the advanced MLP beats plain MLPs (784-128-10 and 784-500-150-10)",
            best(
                "mlp-advanced",
                &["dense128", "mlp-500-150"],
                TestAccuracy,
                true,
            ),
        ),
        (
            "003",
            "LeNet-5 reaches 98.96 % test accuracy",
            Test::Reaches {
                a: "lenet5",
                metric: TestAccuracy,
                value: 0.9896,
            },
        ),
    ]
}

fn verdict(p: f64, favours: bool) -> ClaimVerdict {
    if p < ALPHA {
        if favours {
            ClaimVerdict::Confirmed
        } else {
            ClaimVerdict::Contradicted
        }
    } else {
        ClaimVerdict::NotDistinguishable
    }
}

fn show(m: Metric, s: &Summary) -> String {
    let unit = match m {
        Metric::Gap => " points",
        m if m.is_percent() => " %",
        _ => "",
    };
    format!("{}{unit}", m.show(s))
}

fn evaluate(test: &Test, reps: &[Replicates]) -> Option<(String, f64, ClaimVerdict)> {
    let find = |n: &str| reps.iter().find(|r| r.name() == n);
    match test {
        Test::BestOf {
            a,
            others,
            metric,
            higher,
        } => {
            let ra = find(a)?;
            let va = ra.values(*metric);
            let sa = Summary::of(&va)?;
            let mut ps = Vec::new();
            let mut favours = Vec::new();
            let mut words = vec![format!("{a} {}", show(*metric, &sa))];
            for o in *others {
                let ro = find(o)?;
                let vo = ro.values(*metric);
                let so = Summary::of(&vo)?;
                words.push(format!("{o} {}", show(*metric, &so)));
                ps.push(welch(&va, &vo).map_or(f64::NAN, |t| t.p));
                favours.push((sa.mean > so.mean) == *higher && sa.mean != so.mean);
            }
            let adjusted = holm(&ps);
            // Contradicted when any comparison goes against `a`; confirmed when all favour it.
            let against = adjusted
                .iter()
                .zip(&favours)
                .filter(|(p, f)| **p < ALPHA && !**f)
                .map(|(p, _)| *p)
                .fold(f64::NAN, f64::min);
            let (p, v) = if ps.iter().any(|p| p.is_nan()) {
                // One seed somewhere: nothing can be tested.
                (f64::NAN, ClaimVerdict::NotDistinguishable)
            } else if !against.is_nan() {
                (against, ClaimVerdict::Contradicted)
            } else {
                let worst = adjusted.iter().cloned().fold(0f64, f64::max);
                let all = favours.iter().all(|f| *f);
                (worst, verdict(worst, all))
            };
            Some((format!("{}: {}", metric.label(), words.join(", ")), p, v))
        }
        Test::Reaches { a, metric, value } => {
            let v = find(a)?.values(*metric);
            let s = Summary::of(&v)?;
            let p = one_sample(&v, *value).map_or(f64::NAN, |t| t.p);
            let ci = if s.ci95[0].is_finite() {
                format!(
                    " (95% CI {:.2}-{:.2} %)",
                    100.0 * s.ci95[0],
                    100.0 * s.ci95[1]
                )
            } else {
                String::new()
            };
            Some((
                format!(
                    "{a} {}{ci} against {:.2} %",
                    show(*metric, &s),
                    100.0 * value
                ),
                p,
                verdict(p, s.mean >= *value),
            ))
        }
        Test::Diminishing { steps, metric } => {
            let vals: Vec<Vec<f64>> = steps
                .iter()
                .map(|n| find(n).map(|r| r.values(*metric)))
                .collect::<Option<_>>()?;
            let sums: Vec<Summary> = vals.iter().map(|v| Summary::of(v)).collect::<Option<_>>()?;
            let slices: Vec<&[f64]> = vals.iter().map(|v| v.as_slice()).collect();
            let t = contrast(&slices, &[-1.0, 2.0, -1.0]);
            let p = t.map_or(f64::NAN, |t| t.p);
            let gain1 = sums[1].mean - sums[0].mean;
            let gain2 = sums[2].mean - sums[1].mean;
            let scale = if metric.is_percent() { 100.0 } else { 1.0 };
            Some((
                format!(
                    "{}: {}; gains {:+.2} then {:+.2}",
                    metric.label(),
                    steps
                        .iter()
                        .zip(&sums)
                        .map(|(n, s)| format!("{n} {}", show(*metric, s)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    scale * gain1,
                    scale * gain2
                ),
                p,
                verdict(p, gain1 > gain2),
            ))
        }
    }
}

/// The claims that `results` (every seed of the study's runs, or a notebook section's) can
/// test; claims whose runs are missing are left out.
pub fn claims<R: std::borrow::Borrow<ExperimentResult>>(results: &[R]) -> Claims {
    let reps = by_experiment(results);
    Claims(
        catalogue()
            .into_iter()
            .filter_map(|(source, claim, test)| {
                let (measured, p, verdict) = evaluate(&test, &reps)?;
                Some(Claim {
                    source: source.into(),
                    claim: claim.into(),
                    measured,
                    p,
                    verdict,
                })
            })
            .collect(),
    )
}
