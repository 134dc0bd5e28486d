//! The seed studies' claims in their own words, tested against our runs, and the questions
//! the study adds. Each claim row quotes one sentence of a seed study (`shared/seeds/`, file
//! and task or experiment), says what we tested and how, and ends with confirmed,
//! contradicted or not distinguishable; a hypothesis is labelled as one.
//!
//! Every comparison behind a row is the report's paired comparison ([`Evidence::compare`]),
//! with the report's one verdict rule: a difference counts when its 95 % interval excludes
//! zero, and the same pair gets the same verdict wherever it appears. "A is best" is tested
//! against each other setting: confirmed when A beats every one, contradicted when another
//! beats A, else not distinguishable (with the smallest detectable difference).

use serde::{Deserialize, Serialize};

use super::ExperimentResult;
use super::aggregate::{Metric, Replicates, by_experiment};
use super::evidence::Evidence;
use super::stats::{Comparison, Verdict};
use crate::Result;
use crate::data::corrupt::Corruption;
use crate::display::Table;

/// The outcome of testing a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClaimVerdict {
    /// Our runs support it.
    #[serde(rename = "confirmed")]
    Confirmed,
    /// Our runs show the opposite.
    #[serde(rename = "contradicted")]
    Contradicted,
    /// The difference is within what the design can resolve.
    #[serde(rename = "not distinguishable")]
    NotDistinguishable,
    /// The sentence makes no claim our runs can test as stated (a remark, or a number of the
    /// seed's own run whose recipe it does not give); the row says why.
    #[serde(rename = "not testable as stated")]
    NotTestable,
}

impl ClaimVerdict {
    /// The word a row ends with.
    pub fn as_str(self) -> &'static str {
        match self {
            ClaimVerdict::Confirmed => "confirmed",
            ClaimVerdict::Contradicted => "contradicted",
            ClaimVerdict::NotDistinguishable => "not distinguishable",
            ClaimVerdict::NotTestable => "not testable as stated",
        }
    }
}

/// What kind of sentence a claim is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimKind {
    /// A result the seed study reports.
    Finding,
    /// A hypothesis ("might", "could"): tested, but the seed did not claim it as a result.
    Hypothesis,
}

/// One claim and what our runs say about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// The seed study and task (`002 Task 5`), or `study` for a question the study adds.
    pub source: String,
    /// The seed's sentence, verbatim (the question, for a row the study adds).
    pub quote: String,
    /// Finding or hypothesis.
    pub kind: ClaimKind,
    /// What we tested, on which runs and measure.
    pub tested: String,
    /// What we measured.
    pub measured: String,
    /// The verdict.
    pub verdict: ClaimVerdict,
}

/// A claims table that shows itself in notebooks.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims(pub Vec<Claim>);

impl Claims {
    /// The rows as a [`Table`].
    pub fn to_table(&self, title: &str) -> Result<Table> {
        let c = &self.0;
        let df = polars::df!(
            "source" => c.iter().map(|x| x.source.clone()).collect::<Vec<_>>(),
            "claim" => c.iter().map(quoted).collect::<Vec<_>>(),
            "tested" => c.iter().map(|x| x.tested.clone()).collect::<Vec<_>>(),
            "measured" => c.iter().map(|x| x.measured.clone()).collect::<Vec<_>>(),
            "verdict" => c.iter().map(|x| x.verdict.as_str().to_string()).collect::<Vec<_>>(),
        )?;
        Ok(Table::new(title, df))
    }

    /// Markdown table rows, each ending with its verdict.
    pub fn to_markdown(&self) -> String {
        let mut md = String::from(
            "| source | claim | tested | measured | verdict |\n|---|---|---|---|---|\n",
        );
        for c in &self.0 {
            md.push_str(&format!(
                "| {} | {} | {} | {} | **{}** |\n",
                c.source,
                quoted(c).replace('|', "\\|"),
                c.tested.replace('|', "\\|"),
                c.measured.replace('|', "\\|"),
                c.verdict.as_str()
            ));
        }
        md
    }

    /// Shows the table in a notebook.
    pub fn evcxr_display(&self) {
        match self.to_table("Claims tested") {
            Ok(t) => t.evcxr_display(),
            Err(e) => println!("claims table: {e}"),
        }
    }
}

fn quoted(c: &Claim) -> String {
    match (c.source.as_str(), c.kind) {
        ("study", _) => c.quote.clone(),
        (_, ClaimKind::Hypothesis) => format!("\"{}\" (a hypothesis)", c.quote),
        _ => format!("\"{}\"", c.quote),
    }
}

/// What a claim asserts about the runs.
enum Test {
    /// `a`'s metric is larger (`larger`) or smaller than each of `others`'.
    Extreme {
        a: &'static str,
        others: &'static [&'static str],
        metric: Metric,
        larger: bool,
    },
    /// `a`'s mean is at least `value` (its 95 % interval above it: confirmed; below it:
    /// contradicted).
    AtLeast {
        a: &'static str,
        metric: Metric,
        value: f64,
    },
    /// `a`'s mean lies within `value ± tolerance`.
    Near {
        a: &'static str,
        metric: Metric,
        value: f64,
        tolerance: f64,
    },
    /// `a` differs from each of `others` on `metric`, either way.
    Differs {
        a: &'static str,
        others: &'static [&'static str],
        metric: Metric,
    },
    /// A check of its own: measured words and verdict from the runs.
    Check(fn(&Context) -> Option<(String, ClaimVerdict)>),
    /// Not testable as stated, for the reason given.
    NotTestable(&'static str),
}

/// What a test reads.
pub struct Context<'a> {
    /// The per-image evidence.
    pub evidence: &'a Evidence,
    /// Every experiment over its seeds.
    pub reps: &'a [Replicates],
    /// Training and test image counts of the dataset.
    pub counts: (usize, usize),
}

impl Context<'_> {
    fn find(&self, name: &str) -> Option<&Replicates> {
        self.reps.iter().find(|r| r.name() == name)
    }
}

struct Row {
    source: &'static str,
    quote: &'static str,
    kind: ClaimKind,
    tested: String,
    test: Test,
}

fn row(source: &'static str, quote: &'static str, tested: &str, test: Test) -> Row {
    Row {
        source,
        quote,
        kind: ClaimKind::Finding,
        tested: tested.to_string(),
        test,
    }
}

fn hypothesis(source: &'static str, quote: &'static str, tested: &str, test: Test) -> Row {
    Row {
        kind: ClaimKind::Hypothesis,
        ..row(source, quote, tested, test)
    }
}

/// The seed studies' claims, in their words.
fn catalogue() -> Vec<Row> {
    use Metric::*;
    let ext = |a, others, metric, larger| Test::Extreme {
        a,
        others,
        metric,
        larger,
    };
    vec![
        row(
            "002 Task 1",
            "MNIST contains 60,000 training images and 10,000 test images.",
            "The counts of the bundled files.",
            Test::Check(|c| {
                let ok = c.counts == (60_000, 10_000);
                Some((
                    format!("{} training and {} test images", c.counts.0, c.counts.1),
                    if ok {
                        ClaimVerdict::Confirmed
                    } else {
                        ClaimVerdict::Contradicted
                    },
                ))
            }),
        ),
        row(
            "002 Task 1",
            "Normalization improves convergence and stabilizes training.",
            "The seed's normalization, pixels scaled from 0-255 to [0, 1] (dense128-unit), \
             against the raw 0-255 intensities (dense128-raw), 784-128-10 on the shared recipe: \
             the first epoch's training loss (lower: faster convergence).",
            ext("dense128-unit", &["dense128-raw"], FirstTrainLoss, false),
        ),
        row(
            "002 Task 2",
            "Models trained on MNIST can classify digits even when noise or small distortions \
             are added.",
            "Every architecture (shared recipe) on MNIST-C's noise and small distortions (shot \
             noise, impulse noise, glass blur, motion blur, shear, scale, rotate, translate): \
             confirmed when each architecture's mean accuracy on each of them is at least 90 %, \
             contradicted when one falls below.",
            Test::Check(noise_and_distortions),
        ),
        row(
            "002 Task 3",
            "ReLU activation accelerates learning.",
            "784-500-150-10, Part 2 recipe: ReLU (part2-base) against tanh, softsign and GELU \
             on the first epoch's training loss (lower: faster).",
            ext(
                "part2-base",
                &["activation-tanh", "activation-softsign", "activation-gelu"],
                FirstTrainLoss,
                false,
            ),
        ),
        row(
            "002 Task 4",
            "Highlighted which digits are most commonly confused (e.g., 4 vs 9, 3 vs 5).",
            "The confusion matrix of every architecture run pooled: are 4↔9 and 3↔5 among \
             its five most confused pairs (either direction)?",
            Test::Check(confused_pairs),
        ),
        row(
            "002 Task 5",
            "No Dropout: Highest overfitting, lowest validation performance.",
            "784-500-150-10, Part 2 recipe: dropout 0 (part2-base) against 0.1 and 0.3 on the \
             train-validation gap in evaluation mode (widest: most overfitting).",
            ext("part2-base", &["dropout-0.1", "dropout-0.3"], Gap, true),
        ),
        row(
            "002 Task 5",
            "No Dropout: Highest overfitting, lowest validation performance.",
            "The same runs on validation accuracy (lowest).",
            ext(
                "part2-base",
                &["dropout-0.1", "dropout-0.3"],
                ValAccuracy,
                false,
            ),
        ),
        row(
            "002 Task 5",
            "Dropout 0.1: Reduced overfitting, best balance.",
            "Dropout 0.1 against 0 and 0.3 on validation accuracy (highest: the best balance).",
            ext(
                "dropout-0.1",
                &["part2-base", "dropout-0.3"],
                ValAccuracy,
                true,
            ),
        ),
        row(
            "002 Task 5",
            "Dropout 0.3: Too much noise, slower convergence.",
            "Dropout 0.3 against 0 and 0.1 on the first epoch's validation accuracy (lower: \
             slower).",
            ext(
                "dropout-0.3",
                &["part2-base", "dropout-0.1"],
                FirstValAccuracy,
                false,
            ),
        ),
        row(
            "002 Task 6",
            "Smaller L2: Slightly smoother curves, minor improvement.",
            "784-500-150-10, Part 2 recipe: L2 1e-4 against none (part2-base) on test \
             accuracy (higher: an improvement).",
            ext("l2-1e-4", &["part2-base"], TestAccuracy, true),
        ),
        row(
            "002 Task 6",
            "Medium L2 (0.001): Best validation loss (ideal weight shrinking).",
            "L2 1e-3 against none, 1e-4 and 1e-2 on validation loss as Keras reports it, the \
             L2 penalty included (λ·Σw² over the kernels, of the returned weights; lowest).",
            ext(
                "l2-1e-3",
                &["part2-base", "l2-1e-4", "l2-1e-2"],
                PenalizedValLoss,
                false,
            ),
        ),
        row(
            "002 Task 6",
            "Large L2 (0.01): Underfitting due to excessive penalty.",
            "L2 1e-2 against none, 1e-4 and 1e-3 on training accuracy in evaluation mode \
             (lowest: underfitting), through the gap's training side.",
            Test::Check(|c| {
                extreme_on(
                    c,
                    "l2-1e-2",
                    &["part2-base", "l2-1e-4", "l2-1e-3"],
                    TrainEval,
                    false,
                )
            }),
        ),
        row(
            "002 Task 7",
            "SGD: Slow, unstable convergence.",
            "784-128-10, each optimizer at its validation-chosen rate: SGD against the other \
             four on the first epoch's validation accuracy (lowest: slowest).",
            ext(
                "optimizer-sgd",
                &[
                    "optimizer-momentum",
                    "optimizer-adam",
                    "optimizer-adamw",
                    "optimizer-rmsprop",
                ],
                FirstValAccuracy,
                false,
            ),
        ),
        row(
            "002 Task 7",
            "SGD: Slow, unstable convergence.",
            "The same runs on the roughness of the training loss (every 10 steps; highest: \
             least stable).",
            ext(
                "optimizer-sgd",
                &[
                    "optimizer-momentum",
                    "optimizer-adam",
                    "optimizer-adamw",
                    "optimizer-rmsprop",
                ],
                Roughness,
                true,
            ),
        ),
        row(
            "002 Task 7",
            "SGD + Momentum: Faster & smoother, still sensitive to learning rate.",
            "Momentum against SGD on the first epoch's validation accuracy (higher: faster).",
            ext(
                "optimizer-momentum",
                &["optimizer-sgd"],
                FirstValAccuracy,
                true,
            ),
        ),
        row(
            "002 Task 7",
            "Adam: Fastest convergence, highest accuracy, best stability.",
            "Adam against the other four on the first epoch's validation accuracy (highest: \
             fastest).",
            ext(
                "optimizer-adam",
                &[
                    "optimizer-sgd",
                    "optimizer-momentum",
                    "optimizer-adamw",
                    "optimizer-rmsprop",
                ],
                FirstValAccuracy,
                true,
            ),
        ),
        row(
            "002 Task 7",
            "Adam: Fastest convergence, highest accuracy, best stability.",
            "Adam against the other four on test accuracy (highest).",
            ext(
                "optimizer-adam",
                &[
                    "optimizer-sgd",
                    "optimizer-momentum",
                    "optimizer-adamw",
                    "optimizer-rmsprop",
                ],
                TestAccuracy,
                true,
            ),
        ),
        row(
            "002 Task 7",
            "Adam: Fastest convergence, highest accuracy, best stability.",
            "Adam against the other four on the roughness of the training loss (lowest: most \
             stable).",
            ext(
                "optimizer-adam",
                &[
                    "optimizer-sgd",
                    "optimizer-momentum",
                    "optimizer-adamw",
                    "optimizer-rmsprop",
                ],
                Roughness,
                false,
            ),
        ),
        row(
            "002 Task 7",
            "AdamW: Similar to Adam but better generalization due to decoupled weight decay.",
            "AdamW (decoupled decay 0.01) against Adam on test accuracy (higher: better \
             generalization).",
            ext("optimizer-adamw", &["optimizer-adam"], TestAccuracy, true),
        ),
        row(
            "002 Task 8",
            "Batch 8: Noisy gradients → better generalization but slower training.",
            "784-128-10, 8 epochs at every batch size, Adam's rate scaled by the square-root \
             rule: batch 8 against 32 and 128 on the gradient noise (highest).",
            ext("batch-8", &["batch-32", "batch-128"], GradNoise, true),
        ),
        row(
            "002 Task 8",
            "Batch 8: Noisy gradients → better generalization but slower training.",
            "The same runs on test accuracy (highest: better generalization).",
            ext("batch-8", &["batch-32", "batch-128"], TestAccuracy, true),
        ),
        row(
            "002 Task 8",
            "Batch 8: Noisy gradients → better generalization but slower training.",
            "The same runs on seconds per epoch (highest: slower).",
            ext("batch-8", &["batch-32", "batch-128"], SecondsPerEpoch, true),
        ),
        row(
            "002 Task 8",
            "Batch 32: Best overall stability vs. performance (recommended).",
            "Batch 32 against 8 and 128 on test accuracy (highest).",
            ext("batch-32", &["batch-8", "batch-128"], TestAccuracy, true),
        ),
        row(
            "002 Task 8",
            "Batch 128: Smooth curves but easily overfits → worse generalization.",
            "Batch 128 against 8 and 32 on test accuracy (lowest: worse generalization).",
            ext("batch-128", &["batch-8", "batch-32"], TestAccuracy, false),
        ),
        row(
            "002 Task 9",
            "Tanh: Smooth but suffers from vanishing gradients.",
            "784-500-150-10, Part 2 recipe: tanh against ReLU on the first-over-last layer \
             gradient norm ratio of the last epoch (smaller: more vanishing).",
            ext("activation-tanh", &["part2-base"], GradFlowRatio, false),
        ),
        row(
            "002 Task 9",
            "Softsign: Similar to tanh but lighter saturation.",
            "Softsign against tanh on the same gradient ratio (larger: lighter saturation).",
            ext(
                "activation-softsign",
                &["activation-tanh"],
                GradFlowRatio,
                true,
            ),
        ),
        row(
            "002 Task 9",
            "GELU: Best performance; widely used in Transformers because it activates neurons \
             probabilistically.",
            "GELU against ReLU, tanh and softsign on test accuracy (highest).",
            ext(
                "activation-gelu",
                &["part2-base", "activation-tanh", "activation-softsign"],
                TestAccuracy,
                true,
            ),
        ),
        row(
            "002 Task 9",
            "ReLU remains popular due to simplicity & strong gradient flow.",
            "A remark on why practitioners choose ReLU; its gradient flow against tanh and \
             softsign is the activation group's own comparison.",
            Test::NotTestable(
                "popularity is not a property of a run; the gradient-flow part is tested in \
                 the rows on tanh and in the activation group's gradient ratios",
            ),
        ),
        row(
            "002 Task 10",
            "High parameter count → high capacity → high risk of memorizing training data.",
            "784-500-150-10 (469,160 parameters) against 784-128-10 (101,770), shared recipe, \
             on the train-validation gap in evaluation mode (wider: more memorizing).",
            ext("mlp-500-150", &["dense128"], Gap, true),
        ),
        row(
            "001 Models",
            "LeNet5 : # of Params - 61,706",
            "The trainable parameters of our LeNet-5 (32x32 input).",
            Test::Check(|c| count(c, "lenet5", 61_706)),
        ),
        row(
            "001 Models",
            "CustomMLP : # of Params - 61,450",
            "The trainable parameters of our 1024-48x6-10 MLP (mlp-61k).",
            Test::Check(|c| count(c, "mlp-61k", 61_450)),
        ),
        row(
            "004 Analysis",
            "The LeNet-5 model generally exhibits higher accuracy compared to the custom MLP \
             model.",
            "004's pair on the shared recipe: LeNet-5 on 28x28 (lenet5-28, 44,426 parameters) \
             against 784-500-150-10 (469,160), test accuracy.",
            ext("lenet5-28", &["mlp-500-150"], TestAccuracy, true),
        ),
        row(
            "004 Conclusion",
            "the LeNet-5 model demonstrated performance close to known benchmarks and achieved \
             lower losses and higher accuracies than the custom MLP model.",
            "The same pair on test loss (lower).",
            ext("lenet5-28", &["mlp-500-150"], TestLoss, false),
        ),
        hypothesis(
            "004 Analysis",
            "The accuracy of LeNet-5 on the test dataset should align closely with known \
             benchmarks (e.g., around 99%).",
            "An expectation (004's results section holds placeholders), tested as stated: \
             lenet5-28's mean test accuracy within 99 ± 0.5 %.",
            Test::Near {
                a: "lenet5-28",
                metric: TestAccuracy,
                value: 0.99,
                tolerance: 0.005,
            },
        ),
        row(
            "004 Results",
            "These regularization techniques combined showed a significant improvement in \
             model performance.",
            "004's combination on its 28x28 LeNet-5 (BatchNorm after each convolution, dropout \
             0.5 after each hidden fully connected layer, augmentation: lenet5-28-004) against \
             the plain network, both at twice the shared recipe's epochs (lenet5-28-long), test \
             accuracy.",
            ext("lenet5-28-004", &["lenet5-28-long"], TestAccuracy, true),
        ),
        row(
            "003 Results",
            "Achieved the highest accuracy of **98.96%**.",
            "Our LeNet-5 (shared recipe) reaches at least 98.96 % test accuracy.",
            Test::AtLeast {
                a: "lenet5",
                metric: TestAccuracy,
                value: 0.9896,
            },
        ),
        row(
            "003 Results",
            "Achieved **92.4% accuracy** with minimal tuning.",
            "A number of 003's own training run of its simple CNN.",
            Test::NotTestable(
                "003 gives neither the epochs nor the optimizer of the run that scored it, so no \
                 run of ours is that run; our simple CNN's accuracy is in the architectures \
                 table",
            ),
        ),
        row(
            "003 Results",
            "**Advanced CNN:** **97.67%**",
            "A number of 003's own run of a model its text does not define.",
            Test::NotTestable(
                "003's text describes no advanced CNN (its advanced model is an MLP) and gives no \
                 recipe for the run; our advanced MLP's accuracy is in its own group",
            ),
        ),
        row(
            "000 Experiment 4",
            "Although simple models such as MLPs handle this job, they struggle with local \
             patterns since they turn the image into a flat line first.",
            "LeNet-5 against the parameter-matched MLP (61,706 and 61,450 parameters), shared \
             recipe, test accuracy (the MLP lower: it struggles).",
            ext("lenet5", &["mlp-61k"], TestAccuracy, true),
        ),
        row(
            "000 Experiment 5",
            "By comparing basic SGD with adaptive counterparts such as Adam and RMSprop, \
             variations emerge in both speed and smoothness.",
            "LeNet-5, each optimizer at its validation-chosen rate: SGD differs from Adam and \
             from RMSprop on the first epoch's validation accuracy (speed), either way.",
            Test::Differs {
                a: "lenet5-sgd",
                others: &["lenet5-adam", "lenet5-rmsprop"],
                metric: FirstValAccuracy,
            },
        ),
        row(
            "000 Experiment 5",
            "By comparing basic SGD with adaptive counterparts such as Adam and RMSprop, \
             variations emerge in both speed and smoothness.",
            "The same runs on the roughness of the training loss (smoothness), either way.",
            Test::Differs {
                a: "lenet5-sgd",
                others: &["lenet5-adam", "lenet5-rmsprop"],
                metric: Roughness,
            },
        ),
        row(
            "000 Experiment 6",
            "These detours help preserve gradient strength through deeper structures.",
            "ResNet against the plain network of the same depth at 2 and at 3 blocks per \
             stage (the deepest the study trains), shared recipe, on the first-over-last layer \
             gradient ratio of the last epoch (larger: the gradient keeps its strength down to \
             the input); confirmed when the shortcuts keep it larger at both depths.",
            Test::Check(|c| {
                let mut words = Vec::new();
                let mut verdicts = Vec::new();
                for (res, plain) in [
                    ("resnet-depth-2", "plain-depth-2"),
                    ("resnet-depth-3", "plain-depth-3"),
                ] {
                    let (m, v) = extreme_on(c, res, &[plain], GradFlowRatio, true)?;
                    words.push(m);
                    verdicts.push(v);
                }
                Some((words.join("; "), combine(&verdicts)))
            }),
        ),
        hypothesis(
            "000 Experiment 6",
            "One outcome might show diminishing returns beyond a certain depth.",
            "ResNet with shortcuts at 1, 2 and 3 blocks per stage, shared recipe, test \
             accuracy: diminishing returns means the second block gains (2 above 1) and the \
             third does not (3 not above 2). A third block that still gains contradicts it; \
             no gain from the second either leaves nothing to diminish (not distinguishable).",
            Test::Check(|c| {
                let (m2, second) =
                    extreme_on(c, "resnet-depth-2", &["resnet"], TestAccuracy, true)?;
                let (m3, third) =
                    extreme_on(c, "resnet-depth-3", &["resnet-depth-2"], TestAccuracy, true)?;
                let v = match (second, third) {
                    (_, ClaimVerdict::Confirmed) => ClaimVerdict::Contradicted,
                    (ClaimVerdict::Confirmed, _) => ClaimVerdict::Confirmed,
                    _ => ClaimVerdict::NotDistinguishable,
                };
                Some((format!("depth 2 {m2}; depth 3 {m3}"), v))
            }),
        ),
        hypothesis(
            "000 Experiment 8",
            "This shift in emphasis could improve both accuracy and consistency in recognizing \
             numbers.",
            "LeNet-5 with spatial attention against LeNet-5, shared recipe, test accuracy.",
            ext("lenet5-attention", &["lenet5"], TestAccuracy, true),
        ),
        row(
            "000 Experiment 8",
            "The result: attention steers processing toward informative areas, reducing \
             reliance on irrelevant details.",
            "The same pair on MNIST-C's clutter (dotted line, zigzag, spatter: details that \
             do not belong to the digit): attention more accurate on each.",
            Test::Check(|c| {
                let mut words = Vec::new();
                let mut verdicts = Vec::new();
                for k in [
                    Corruption::DottedLine,
                    Corruption::Zigzag,
                    Corruption::Spatter,
                ] {
                    let (m, v) = extreme_on(
                        c,
                        "lenet5-attention",
                        &["lenet5"],
                        Metric::Corrupted(k),
                        true,
                    )?;
                    words.push(m);
                    verdicts.push(v);
                }
                Some((words.join("; "), combine(&verdicts)))
            }),
        ),
    ]
}

/// The questions the study adds: comparisons no seed study claims, answered the same way.
fn questions() -> Vec<Row> {
    use Metric::*;
    let q = |quote: &'static str, tested: &str, test: Test| Row {
        source: "study",
        quote,
        kind: ClaimKind::Finding,
        tested: tested.to_string(),
        test,
    };
    let ext = |a, others, metric, larger| Test::Extreme {
        a,
        others,
        metric,
        larger,
    };
    vec![
        q(
            "Does the A/A control come out equal?",
            "lenet5 against lenet5-replica (the same configuration, another set of seeds), \
             test accuracy: the verdict must be not distinguishable.",
            Test::Check(|c| {
                let (a, b) = (c.find("lenet5")?, c.find("lenet5-replica")?);
                let cmp = c.evidence.compare(a, b, TestAccuracy)?;
                let v = match cmp.verdict {
                    Verdict::NotDistinguishable => ClaimVerdict::Confirmed,
                    _ => ClaimVerdict::Contradicted,
                };
                Some((measured_pair(&cmp, TestAccuracy), v))
            }),
        ),
        q(
            "Does BatchNorm help LeNet-5?",
            "lenet5-batchnorm against lenet5, shared recipe, test accuracy.",
            ext("lenet5-batchnorm", &["lenet5"], TestAccuracy, true),
        ),
        q(
            "Does dropout 0.1 help LeNet-5?",
            "lenet5-dropout against lenet5, shared recipe, test accuracy.",
            ext("lenet5-dropout", &["lenet5"], TestAccuracy, true),
        ),
        q(
            "Does augmentation help LeNet-5?",
            "lenet5-augment against lenet5, shared recipe, test accuracy.",
            ext("lenet5-augment", &["lenet5"], TestAccuracy, true),
        ),
        q(
            "Does L2 1e-4 help LeNet-5?",
            "lenet5-l2 against lenet5, shared recipe, test accuracy.",
            ext("lenet5-l2", &["lenet5"], TestAccuracy, true),
        ),
        q(
            "Do all four together help LeNet-5?",
            "lenet5-all against lenet5, shared recipe, test accuracy.",
            ext("lenet5-all", &["lenet5"], TestAccuracy, true),
        ),
        q(
            "Is the ResNet the most accurate architecture?",
            "resnet against each other architecture of the comparison, shared recipe, test \
             accuracy.",
            ext(
                "resnet",
                &[
                    "dense128",
                    "mlp-61k",
                    "lenet5",
                    "lenet5-attention",
                    "simple-cnn",
                    "lenet5-regularized",
                ],
                TestAccuracy,
                true,
            ),
        ),
        q(
            "Do shortcuts help a ResNet of 2 blocks per stage?",
            "resnet-depth-2 against plain-depth-2, shared recipe, test accuracy.",
            ext("resnet-depth-2", &["plain-depth-2"], TestAccuracy, true),
        ),
        q(
            "Does the advanced MLP beat the plain MLPs?",
            "mlp-advanced against 784-128-10 and 784-500-150-10, shared recipe, test accuracy.",
            ext(
                "mlp-advanced",
                &["dense128", "mlp-500-150"],
                TestAccuracy,
                true,
            ),
        ),
        q(
            "Does BatchNorm make LeNet-5 less robust?",
            "lenet5-batchnorm against lenet5, shared recipe, MNIST-C accuracy (lower: less \
             robust).",
            ext("lenet5-batchnorm", &["lenet5"], MnistC, false),
        ),
        q(
            "Does augmentation make LeNet-5 more robust?",
            "lenet5-augment against lenet5, shared recipe, MNIST-C accuracy.",
            ext("lenet5-augment", &["lenet5"], MnistC, true),
        ),
        q(
            "Does AdamW's decay 0.2 make the ResNet less robust?",
            "resnet-adamw against resnet, shared recipe otherwise, MNIST-C accuracy (lower: \
             less robust).",
            ext("resnet-adamw", &["resnet"], MnistC, false),
        ),
        q(
            "Does the robust recipe make LeNet-5 more robust?",
            "lenet5-robust against lenet5, MNIST-C accuracy.",
            ext("lenet5-robust", &["lenet5"], MnistC, true),
        ),
        q(
            "Does the robust recipe make the ResNet more robust?",
            "resnet-robust against resnet, MNIST-C accuracy.",
            ext("resnet-robust", &["resnet"], MnistC, true),
        ),
        q(
            "Does the robust recipe cost clean accuracy on the ResNet?",
            "resnet-robust against resnet, test accuracy (lower: it costs).",
            ext("resnet-robust", &["resnet"], TestAccuracy, false),
        ),
    ]
}

/// `a` against each of `others` on `metric`: larger (or smaller) than every one.
fn extreme_on(
    c: &Context,
    a: &str,
    others: &[&str],
    metric: Metric,
    larger: bool,
) -> Option<(String, ClaimVerdict)> {
    let ra = c.find(a)?;
    let mut words = Vec::new();
    let mut verdicts = Vec::new();
    for o in others {
        let ro = c.find(o)?;
        let cmp = c.evidence.compare(ra, ro, metric)?;
        let p = cmp.paired?;
        let (lo, hi) = (p.diff_ci95[0], p.diff_ci95[1]);
        verdicts.push(if (larger && lo > 0.0) || (!larger && hi < 0.0) {
            ClaimVerdict::Confirmed
        } else if (larger && hi < 0.0) || (!larger && lo > 0.0) {
            ClaimVerdict::Contradicted
        } else {
            ClaimVerdict::NotDistinguishable
        });
        words.push(format!("vs {o}: {}", measured_pair(&cmp, metric)));
    }
    let show = ra
        .summary(metric)
        .map(|s| format!("{a} {}{}", metric.show(&s), unit(metric)))
        .unwrap_or_else(|| a.to_string());
    Some((
        format!("{}: {show}; {}", metric.label(), words.join("; ")),
        combine(&verdicts),
    ))
}

fn unit(metric: Metric) -> &'static str {
    if metric.is_percent() { " %" } else { "" }
}

/// `difference [interval] (detectable d)` of one comparison.
fn measured_pair(c: &Comparison, metric: Metric) -> String {
    let diff = super::findings::diff_text(c, metric);
    let pts = if metric.is_percent() { " points" } else { "" };
    match c.verdict {
        Verdict::NotDistinguishable => format!(
            "{diff}{pts}, detectable {}{pts}",
            super::findings::mdd_text(c, metric)
        ),
        _ => format!("{diff}{pts}"),
    }
}

/// All confirmed: confirmed; any contradicted: contradicted; else not distinguishable.
fn combine(v: &[ClaimVerdict]) -> ClaimVerdict {
    if v.contains(&ClaimVerdict::Contradicted) {
        ClaimVerdict::Contradicted
    } else if !v.is_empty() && v.iter().all(|x| *x == ClaimVerdict::Confirmed) {
        ClaimVerdict::Confirmed
    } else {
        ClaimVerdict::NotDistinguishable
    }
}

fn count(c: &Context, name: &str, want: usize) -> Option<(String, ClaimVerdict)> {
    let r = c.find(name)?;
    Some((
        format!("{name}: {} trainable parameters", r.params()),
        if r.params() == want {
            ClaimVerdict::Confirmed
        } else {
            ClaimVerdict::Contradicted
        },
    ))
}

/// The architectures whose noise and distortion accuracies 002 Task 2's row tests.
const ARCHITECTURE_NAMES: [&str; 7] = [
    "dense128",
    "mlp-61k",
    "lenet5",
    "lenet5-attention",
    "simple-cnn",
    "lenet5-regularized",
    "resnet",
];

fn noise_and_distortions(c: &Context) -> Option<(String, ClaimVerdict)> {
    use Corruption::*;
    let kinds = [
        ShotNoise,
        ImpulseNoise,
        GlassBlur,
        MotionBlur,
        Shear,
        Scale,
        Rotate,
        Translate,
    ];
    let mut worst: Vec<(String, f64)> = Vec::new();
    for name in ARCHITECTURE_NAMES {
        let Some(r) = c.find(name) else { continue };
        for k in kinds {
            if let Some(s) = r.summary(Metric::Corrupted(k)) {
                worst.push((format!("{name} under {}", k.label()), s.mean));
            }
        }
    }
    if worst.is_empty() {
        return None;
    }
    worst.sort_by(|a, b| a.1.total_cmp(&b.1));
    let below: Vec<&(String, f64)> = worst.iter().filter(|(_, v)| *v < 0.9).collect();
    let lowest: Vec<String> = worst
        .iter()
        .take(3)
        .map(|(n, v)| format!("{n} {:.2} %", 100.0 * v))
        .collect();
    Some((
        format!(
            "{} of {} (architecture, corruption) means below 90 %; lowest: {}",
            below.len(),
            worst.len(),
            lowest.join(", ")
        ),
        if below.is_empty() {
            ClaimVerdict::Confirmed
        } else {
            ClaimVerdict::Contradicted
        },
    ))
}

fn confused_pairs(c: &Context) -> Option<(String, ClaimVerdict)> {
    let mut counts = [[0u64; 10]; 10];
    for name in ARCHITECTURE_NAMES {
        for r in c.find(name).map(|r| r.runs.as_slice()).unwrap_or(&[]) {
            for &(t, p, n) in &r.most_confused {
                let (a, b) = (t.min(p) as usize, t.max(p) as usize);
                counts[a.min(9)][b.min(9)] += n;
            }
        }
    }
    let mut pairs: Vec<((usize, usize), u64)> = (0..10)
        .flat_map(|a| (a + 1..10).map(move |b| (a, b)))
        .map(|(a, b)| ((a, b), counts[a][b]))
        .filter(|(_, n)| *n > 0)
        .collect();
    if pairs.is_empty() {
        return None;
    }
    pairs.sort_by_key(|p| std::cmp::Reverse(p.1));
    let top: Vec<(usize, usize)> = pairs.iter().take(5).map(|(p, _)| *p).collect();
    let both = top.contains(&(4, 9)) && top.contains(&(3, 5));
    Some((
        format!(
            "five most confused pairs (from each run's top five): {}",
            pairs
                .iter()
                .take(5)
                .map(|((a, b), n)| format!("{a}↔{b} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        if both {
            ClaimVerdict::Confirmed
        } else {
            ClaimVerdict::Contradicted
        },
    ))
}

fn evaluate(test: &Test, c: &Context) -> Option<(String, ClaimVerdict)> {
    match test {
        Test::Extreme {
            a,
            others,
            metric,
            larger,
        } => extreme_on(c, a, others, *metric, *larger),
        Test::Differs { a, others, metric } => {
            let ra = c.find(a)?;
            let mut words = Vec::new();
            let mut differ = Vec::new();
            for o in *others {
                let cmp = c.evidence.compare(ra, c.find(o)?, *metric)?;
                differ.push(cmp.verdict != Verdict::NotDistinguishable);
                words.push(format!("vs {o}: {}", measured_pair(&cmp, *metric)));
            }
            Some((
                format!("{}: {}", metric.label(), words.join("; ")),
                if differ.iter().all(|d| *d) {
                    ClaimVerdict::Confirmed
                } else {
                    ClaimVerdict::NotDistinguishable
                },
            ))
        }
        Test::AtLeast { a, metric, value }
        | Test::Near {
            a, metric, value, ..
        } => {
            let r = c.find(a)?;
            let ci = c.evidence.interval(r, *metric)?;
            let mean = r.summary(*metric)?.mean;
            let tol = match test {
                Test::Near { tolerance, .. } => *tolerance,
                _ => f64::INFINITY,
            };
            let v = if tol.is_finite() {
                if ci[0] >= value - tol && ci[1] <= value + tol {
                    ClaimVerdict::Confirmed
                } else if ci[1] < value - tol || ci[0] > value + tol {
                    ClaimVerdict::Contradicted
                } else {
                    ClaimVerdict::NotDistinguishable
                }
            } else if ci[0] >= *value {
                ClaimVerdict::Confirmed
            } else if ci[1] < *value {
                ClaimVerdict::Contradicted
            } else {
                ClaimVerdict::NotDistinguishable
            };
            Some((
                format!(
                    "{a} {:.2} % (95 % interval {:.2}-{:.2} %) against {:.2} %{}",
                    100.0 * mean,
                    100.0 * ci[0],
                    100.0 * ci[1],
                    100.0 * value,
                    if tol.is_finite() {
                        format!(" ± {:.1}", 100.0 * tol)
                    } else {
                        String::new()
                    }
                ),
                v,
            ))
        }
        Test::Check(f) => f(c),
        Test::NotTestable(why) => Some((why.to_string(), ClaimVerdict::NotTestable)),
    }
}

fn tested(rows: Vec<Row>, c: &Context) -> Claims {
    Claims(
        rows.into_iter()
            .filter_map(|r| {
                let (measured, verdict) = evaluate(&r.test, c)?;
                Some(Claim {
                    source: r.source.into(),
                    quote: r.quote.into(),
                    kind: r.kind,
                    tested: r.tested,
                    measured,
                    verdict,
                })
            })
            .collect(),
    )
}

/// The seed studies' claims that `results` can test (claims whose runs are missing are left
/// out), with the evidence of `results` and the dataset's image counts.
pub fn claims<R: std::borrow::Borrow<ExperimentResult>>(
    evidence: &Evidence,
    results: &[R],
    counts: (usize, usize),
) -> Claims {
    let reps = by_experiment(results);
    tested(
        catalogue(),
        &Context {
            evidence,
            reps: &reps,
            counts,
        },
    )
}

/// The questions the study adds, answered from `results`.
pub fn study_questions<R: std::borrow::Borrow<ExperimentResult>>(
    evidence: &Evidence,
    results: &[R],
    counts: (usize, usize),
) -> Claims {
    let reps = by_experiment(results);
    tested(
        questions(),
        &Context {
            evidence,
            reps: &reps,
            counts,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_quote_is_in_its_seed_study() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/seeds");
        let Ok(files) = std::fs::read_dir(&dir) else {
            // The seed studies sit beside the project on the developers' machines only.
            return;
        };
        let mut text = String::new();
        for f in files.flatten() {
            text.push_str(&std::fs::read_to_string(f.path()).unwrap_or_default());
        }
        // The files are UTF-8 read twice; compare letters and digits only.
        let plain = |s: &str| -> String {
            s.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_lowercase()
        };
        let haystack = plain(&text);
        for r in catalogue() {
            assert!(
                haystack.contains(&plain(r.quote)),
                "{} quote not found: {}",
                r.source,
                r.quote
            );
        }
    }
}
