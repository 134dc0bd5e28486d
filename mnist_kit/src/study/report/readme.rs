//! The headline findings, for the report's summary and the README's generated blocks: the findings the README leads with, written from the
//! recorded runs (their results and per-image predictions; no weights needed), so the README
//! cannot say what the runs do not. A block sits between `<!-- generated:NAME -->` and
//! `<!-- /generated -->`; everything outside it is hand-written and states no measured number
//! (`tests/prose.rs`).

use std::fmt::Write as _;
use std::path::Path;

use super::super::facts::{Facts, pct};
use super::super::{ExperimentResult, Metric, by_experiment};
use crate::data::corrupt::Corruption;
use crate::train::RunDir;
use crate::{Error, Result};

/// The name of the README's findings block.
pub const FINDINGS: &str = "findings";
/// The name of the README's block on what the study costs.
pub const COST: &str = "cost";

/// What the recorded study cost: experiments, runs, and the seconds of training and
/// evaluation they took, summed over runs.
pub fn cost(all: &[ExperimentResult]) -> String {
    let seconds: f64 = all.iter().map(|r| r.train_seconds).sum();
    format!(
        "The recorded study has {} experiments and {} runs; their training and evaluation took \
         {} s in all (the sum over runs), about {:.1} h of wall time two at a time.\n",
        by_experiment(all).len(),
        all.len(),
        super::super::facts::thousands(seconds.round() as u64),
        seconds / 3600.0 / 2.0,
    )
}

/// Both generated blocks of the README from the recorded runs `all` (their facts `f`):
/// `(name, content)`.
pub fn blocks(
    f: &Facts,
    all: &[ExperimentResult],
    models: &Path,
) -> Result<Vec<(&'static str, String)>> {
    Ok(vec![
        (FINDINGS, findings(f, all, models)?),
        (COST, cost(all)),
    ])
}

/// Rewrites the generated blocks of the README at `readme` from the recorded runs; true when
/// one changed. The study calls it after its report, `study --readme` without training.
pub fn rewrite(readme: &Path, f: &Facts, all: &[ExperimentResult], models: &Path) -> Result<bool> {
    let mut changed = false;
    for (name, text) in blocks(f, all, models)? {
        changed |= update(readme, name, &text)?;
    }
    Ok(changed)
}

/// One headline finding: its sentence, the report section that shows the evidence (its `##`
/// heading) and the notebook that walks through it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The sentence, numbers rendered from the runs.
    pub text: String,
    /// The report's `##` heading of the section behind it.
    pub section: &'static str,
    /// The executed notebook that shows it (`results/notebooks/NAME`).
    pub notebook: &'static str,
}

/// The convolutional architectures of the shared recipe.
const CONVS: [&str; 6] = [
    "simple-cnn",
    "lenet5",
    "lenet5-28",
    "lenet5-attention",
    "lenet5-regularized",
    "resnet",
];
/// The MLPs of the shared recipe.
const MLPS: [&str; 4] = ["dense128", "mlp-61k", "mlp-500-150", "mlp-advanced"];

const NB01: &str = "01_part1_fundamentals.ipynb";
const NB02: &str = "02_part2_regularization_optimization.ipynb";
const NB03: &str = "03_architectures.ipynb";

/// The five headline findings of the runs `all` (every recorded seed of the study), each a
/// verdict of the report's rule on the quantity it is about.
pub fn headline(f: &Facts, all: &[ExperimentResult]) -> Vec<Finding> {
    let acc = Metric::TestAccuracy;
    let (convs, mlps) = (CONVS, MLPS);
    let epochs = f
        .replicates("lenet5")
        .and_then(|r| r.first())
        .map_or(0, |r| r.experiment.train.epochs);
    let most_accurate = convs
        .iter()
        .copied()
        .max_by(|a, b| f.mean(a, acc).total_cmp(&f.mean(b, acc)))
        .unwrap_or("resnet");
    let optimizers: Vec<String> = by_experiment(all)
        .iter()
        .filter(|r| r.name().starts_with("optimizer-") && !r.name().contains("-grid-"))
        .map(|r| r.name().to_string())
        .collect();
    let names: Vec<&str> = optimizers.iter().map(String::as_str).collect();
    let (called, pairs) = f.called_pairs(&names, acc);
    vec![
        Finding {
            text: format!(
                "On one recipe ({epochs} epochs of Adam with cosine decay) the convolutional \
                 networks reach {} and the MLPs {} (means over seeds); the most accurate, \
                 {most_accurate}, against LeNet-5: {}.",
                f.span(&convs, acc),
                f.span(&mlps, acc),
                f.verdict(most_accurate, "lenet5", acc),
            ),
            section: "Architectures compared",
            notebook: NB03,
        },
        Finding {
            text: format!(
                "At {} against {} parameters, convolutions win: {}.",
                f.params("lenet5"),
                f.params("mlp-61k"),
                f.verdict("lenet5", "mlp-61k", acc),
            ),
            section: "LeNet-5 against the parameter-matched MLP",
            notebook: NB01,
        },
        Finding {
            text: format!(
                "Clean accuracy is not robustness: {most_accurate} ({} clean) keeps {} on the 15 \
                 MNIST-C corruptions. BatchNorm alone: {}. The robust recipe (appearance and \
                 stronger geometric augmentation): {}; on clean accuracy, {}.",
                f.show(most_accurate, acc),
                f.show(most_accurate, Metric::MnistC),
                f.verdict("lenet5-batchnorm", "lenet5", Metric::MnistC),
                f.verdict("resnet-robust", "resnet", Metric::MnistC),
                f.verdict("resnet-robust", "resnet", acc),
            ),
            section: "Beyond the test set: MNIST-C",
            notebook: NB03,
        },
        Finding {
            text: format!(
                "Given its own learning rate (chosen on validation from a grid), each of the {} \
                 optimizers on the 784-128-10 network ends at a test accuracy in {}; {called} of \
                 their {pairs} pairs differ by the verdict rule.",
                names.len(),
                f.span(&names, acc),
            ),
            section: "Part 2: optimizers",
            notebook: NB02,
        },
        Finding {
            text: format!(
                "Regularizing LeNet-5 one technique at a time: {}; {}; {}.",
                f.verdict("lenet5-batchnorm", "lenet5", acc),
                f.verdict("lenet5-dropout", "lenet5", acc),
                f.verdict("lenet5-augment", "lenet5", acc),
            ),
            section: "LeNet-5 regularization ablation",
            notebook: NB03,
        },
    ]
}

/// The two chosen models of `models` (`results/models`, with `best/` and `robust/`) in a
/// sentence.
pub fn chosen_models(models: &Path) -> Result<String> {
    let chosen = |which: &str| -> Result<ExperimentResult> {
        let path = models.join(which).join(RunDir::RESULT);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::invalid("README findings", e.to_string()))
    };
    let (best, robust) = (chosen("best")?, chosen("robust")?);
    let best_test = best.history.last().and_then(|e| e.test_accuracy);
    Ok(format!(
        "The best single model (`results/models/best/`, {} seed {}, {} on the test set) is \
         chosen on validation accuracy; `results/models/robust/` ({} seed {}, {} on MNIST-C, \
         {} under translation) is the run with the best validation MNIST-C accuracy among those \
         close enough to the best validation accuracy.",
        best.name(),
        best.seed(),
        best_test.map_or_else(|| "n/a".into(), pct),
        robust.name(),
        robust.seed(),
        Metric::MnistC.of(&robust).map_or_else(|| "n/a".into(), pct),
        Metric::Corrupted(Corruption::Translate)
            .of(&robust)
            .map_or_else(|| "n/a".into(), pct),
    ))
}

/// The README's findings block: the headline findings, each with its report section and
/// notebook, and the chosen models.
pub fn findings(f: &Facts, all: &[ExperimentResult], models: &Path) -> Result<String> {
    let mut out = String::new();
    for h in headline(f, all) {
        out.push_str(&format!(
            "- {} ([report](results/REPORT.md#{}), [notebook](results/notebooks/{}))\n",
            h.text,
            super::front::anchor(h.section),
            h.notebook
        ));
    }
    out.push_str(&format!("- {}\n", chosen_models(models)?));
    Ok(out)
}

/// The report's summary: the headline findings (see [`headline`]), each with a
/// link to its section and to the notebook that walks through it.
pub(crate) fn summary(ctx: &super::context::Ctx) -> String {
    let mut md = String::from("## Summary\n\n");
    for h in headline(&Facts::with_evidence(&ctx.evidence, ctx.all), ctx.all) {
        let _ = writeln!(
            md,
            "- {} ([section](#{}); [notebook](notebooks/{}))",
            h.text,
            super::front::anchor(h.section),
            h.notebook
        );
    }
    md.push('\n');
    md
}

/// `text` with the content of its generated block `name` replaced by `content`.
pub fn replace_block(text: &str, name: &str, content: &str) -> Result<String> {
    let begin = format!("<!-- generated:{name} -->");
    let end = "<!-- /generated -->";
    let missing = || Error::invalid("README", format!("no `{begin}` ... `{end}` block"));
    let start = text.find(&begin).ok_or_else(missing)? + begin.len();
    let stop = start + text[start..].find(end).ok_or_else(missing)?;
    let body = content.trim_end_matches('\n');
    Ok(format!("{}\n{body}\n{}", &text[..start], &text[stop..]))
}

/// The content of the generated block `name` of `text`, if it has one.
pub fn block<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let begin = format!("<!-- generated:{name} -->");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find("<!-- /generated -->")?;
    Some(&text[start..stop])
}

/// Rewrites the block `name` of the file at `path` with `content`; true when it changed.
pub fn update(path: &Path, name: &str, content: &str) -> Result<bool> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let new = replace_block(&text, name, content)?;
    if new == text {
        return Ok(false);
    }
    crate::fsutil::write_bytes_atomic(path, new.as_bytes())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_replaced_and_the_rest_kept() {
        let text = "intro\n<!-- generated:findings -->\nold\n<!-- /generated -->\nafter\n";
        let new = replace_block(text, FINDINGS, "- one\n- two\n").unwrap();
        assert_eq!(
            new,
            "intro\n<!-- generated:findings -->\n- one\n- two\n<!-- /generated -->\nafter\n"
        );
        assert_eq!(block(&new, FINDINGS), Some("\n- one\n- two\n"));
        assert!(replace_block("no block", FINDINGS, "x").is_err());
        // Idempotent.
        assert_eq!(replace_block(&new, FINDINGS, "- one\n- two").unwrap(), new);
    }
}
