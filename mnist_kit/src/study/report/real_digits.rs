//! The report's real-world digits: every robustness-scored experiment, every seed, and the two
//! copied-out models, on `data/real-digits` (printed and handwriting typefaces, photo-like
//! shots, digits drawn on the serve page).

use std::fmt::Write as _;

use candle_core::Device;
use serde_json::{Value, json};

use super::super::ExperimentResult;
use super::super::aggregate::Replicates;
use super::super::probes::run_key;
use super::context::{Ctx, finite};
use super::export::BestModels;
use crate::Result;
use crate::analysis::abstain::AbstentionRow;
use crate::analysis::real_digits::{RealDigits, RealDigitsScore};
use crate::train::RunDir;

pub(crate) fn section(
    md: &mut String,
    metrics: &mut serde_json::Map<String, Value>,
    ctx: &Ctx,
    best: &BestModels,
) -> Result<()> {
    let Ok(set) = RealDigits::load_default() else {
        let _ = writeln!(
            md,
            "\n_No real-world digits found (data/real-digits or $MNIST_KIT_REAL_DIGITS)._\n"
        );
        return Ok(());
    };
    let scored: Vec<&Replicates> = ctx
        .reps
        .iter()
        .filter(|r| r.scored_on_mnist_c() && r.runs.iter().all(|x| x.dir.is_some()))
        .collect();
    let subsets = set.subsets();
    let _ = writeln!(md, "\n## Real-world digits\n");
    let counts: Vec<String> = subsets
        .iter()
        .map(|s| {
            let n = set.digits.iter().filter(|d| &d.subset == s).count();
            format!("{n} {s}")
        })
        .collect();
    let _ = writeln!(
        md,
        "{} images that are not MNIST ({}), built by `data/real-digits/build.py`: the ten \
         digits in printed typefaces; in typefaces made from people's handwriting; those \
         handwriting digits as a phone photo of paper gives them (off-white paper lit from one \
         side, blue or grey ink, tilt, blur, sensor noise, JPEG); and digits drawn with the \
         mouse on the `mnist-kit serve` page and saved with its Save button. Each goes through \
         the preprocessing a user's image gets (`mnist-kit predict`). Mean accuracy over seeds, \
         with the lowest and highest seed.\n",
        set.len(),
        counts.join(", ")
    );
    let _ = write!(md, "| model | seeds | all |");
    for s in &subsets {
        let _ = write!(md, " {s} |");
    }
    let _ = writeln!(md, "\n|---|---:|---:|{}", "---:|".repeat(subsets.len()));
    let mut json_all = serde_json::Map::new();
    for r in &scored {
        let scores = r
            .runs
            .iter()
            .filter(|x| x.dir.is_some())
            .map(|x| score_of(ctx, &set, x))
            .collect::<Result<Vec<_>>>()?;
        row(md, r.name(), &scores, &subsets);
        json_all.insert(r.name().to_string(), to_json(&scores, &subsets));
    }
    for (label, run) in [
        ("models/best", best.best.as_ref()),
        ("models/robust", best.robust().map(|c| &c.0)),
    ] {
        let Some(run) = run.filter(|r| r.dir.is_some()) else {
            continue;
        };
        let score = score_of(ctx, &set, run)?;
        let name = format!("`{label}` ({} seed {})", run.name(), run.seed());
        row(md, &name, std::slice::from_ref(&score), &subsets);
        json_all.insert(label.to_string(), to_json(&[score], &subsets));
    }
    metrics.insert("real_digits".into(), Value::Object(json_all));
    abstention(md, metrics, ctx, best)
}

/// Share of non-digits the served default should refuse, and of MNIST test digits it may.
const GOAL_NON_DIGITS: f64 = 0.90;
const GOAL_TEST_ABSTAIN: f64 = 0.01;
/// Expected calibration error the served default may have on the test set.
const GOAL_ECE: f64 = 0.015;

/// How `models/robust` answers as served (its calibration and digit gate): the MNIST test set,
/// the real-world digits and the non-digits, abstentions counted as wrong.
fn abstention(
    md: &mut String,
    metrics: &mut serde_json::Map<String, Value>,
    ctx: &Ctx,
    best: &BestModels,
) -> Result<()> {
    let Some(rows) = abstention_rows(ctx, best)? else {
        return Ok(());
    };
    abstention_table(md, &rows);
    ctx.table("abstention.csv", &abstention_csv(&rows))?;
    let json_rows = serde_json::to_value(&rows).map_err(|source| crate::Error::Json {
        context: "abstention rows".into(),
        source,
    })?;
    metrics.insert("abstention".into(), json_rows);
    Ok(())
}

/// The served default's abstention rows (a probe: measured once, from its weights and
/// calibration); none when there is no robust model, or neither a record nor the files to
/// measure.
fn abstention_rows(ctx: &Ctx, best: &BestModels) -> Result<Option<Vec<AbstentionRow>>> {
    use crate::analysis::Calibration;
    use crate::analysis::abstain::{CALIBRATION_FILE, Measure, measure};
    let Some((run, _)) = best.robust() else {
        return Ok(None);
    };
    let key = format!("models/robust {}", run_key(run));
    let dir = ctx.cfg.out.join("models").join("robust");
    let recorded = ctx
        .probes
        .lock()
        .ok()
        .and_then(|p| p.abstention.get(&key).cloned());
    let measurable = dir.join(RunDir::WEIGHTS).exists() && dir.join(CALIBRATION_FILE).exists();
    if recorded.is_none() && !measurable {
        return Ok(None);
    }
    ctx.probe(
        |p| p.abstention.get(&key).cloned(),
        || {
            let served = crate::train::Run::open(&dir)?;
            let calibration = Calibration::load(&dir)?.ok_or_else(|| {
                crate::Error::invalid("abstention", "models/robust has no calibration.json")
            })?;
            // MNIST-C too in the full study (150,000 images; quick runs leave it out).
            let what = Measure {
                mnist_c: !ctx.cfg.quick,
                ..Measure::default()
            };
            measure(&served.net, &calibration, ctx.mnist, what)
        },
        |p, v| {
            p.abstention.insert(key.clone(), v);
        },
    )
    .map(Some)
}

/// Every abstention row (each MNIST-C corruption too) as CSV, shares as fractions.
fn abstention_csv(rows: &[AbstentionRow]) -> String {
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    let mut csv = String::from("set,subset,images,abstained,read_right,ece,abstained_because\n");
    for r in rows {
        let _ = writeln!(
            csv,
            "{},{},{},{:.6},{},{},\"{}\"",
            r.set,
            r.subset,
            r.n,
            r.abstain_rate,
            opt(r.accuracy),
            opt(r.ece),
            r.reasons()
        );
    }
    csv
}

/// The abstention rows as Markdown (MNIST-C pooled; each corruption in
/// `tables/abstention.csv`), with the goals.
fn abstention_table(md: &mut String, rows: &[AbstentionRow]) {
    let _ = writeln!(
        md,
        "\n### Knowing when not to answer\n\n`models/robust` as `mnist-kit serve` answers: with \
         its temperature, ink limit, feature distance, digit gate (a LeNet-5 trained with \
         outlier exposure on synthesized letters, signs, shapes, scribbles and textures) and \
         confidence floor, all fit on training and validation images only. An abstention \
         counts as wrong on digits and as right on non-digits (`data/non-digits`: blank pages, \
         noise, the Latin letters in DejaVu Sans and Serif, shapes, scribbles).\n\n\
         | set | subset | images | abstained % | read right % | ECE % | abstained because |\n\
         |---|---|---:|---:|---:|---:|---|"
    );
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}", 100.0 * v));
    for r in rows
        .iter()
        .filter(|r| r.set != "mnist-c" || r.subset == "all")
    {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} | {} | {} | {} |",
            r.set,
            r.subset,
            r.n,
            100.0 * r.abstain_rate,
            pct(r.accuracy),
            pct(r.ece),
            r.reasons()
        );
    }
    let _ = writeln!(
        md,
        "\nEvery row, each MNIST-C corruption too where measured: \
         [`tables/abstention.csv`](tables/abstention.csv)."
    );
    let find = |set: &str| rows.iter().find(|r| r.set == set && r.subset == "all");
    let mark = |ok: bool| if ok { "met" } else { "**not met**" };
    if let (Some(test), Some(non)) = (find("mnist-test"), find("non-digits")) {
        let ece = test.ece.unwrap_or(f64::NAN);
        let _ = writeln!(
            md,
            "\nGoals: non-digits abstained {:.1} % (≥ {:.0} %: {}); MNIST test digits \
             abstained {:.2} % (≤ {:.0} %: {}); test ECE {:.2} % (≤ {:.1} %: {}).\n",
            100.0 * non.abstain_rate,
            100.0 * GOAL_NON_DIGITS,
            mark(non.abstain_rate >= GOAL_NON_DIGITS),
            100.0 * test.abstain_rate,
            100.0 * GOAL_TEST_ABSTAIN,
            mark(test.abstain_rate <= GOAL_TEST_ABSTAIN),
            100.0 * ece,
            100.0 * GOAL_ECE,
            mark(ece <= GOAL_ECE)
        );
        let with_unit = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2} %", 100.0 * v));
        if let Some(c) = find("mnist-c") {
            let _ = writeln!(
                md,
                "On MNIST-C's 15 corruptions pooled ({} images), where the goal asks only that \
                 it be reported: ECE {}, abstained {:.2} %, read right {} (an abstention \
                 counted as wrong).\n",
                c.n,
                with_unit(c.ece),
                100.0 * c.abstain_rate,
                with_unit(c.accuracy),
            );
        }
    }
}

/// Run `r`'s score on the real-world digits (a probe: measured once, from its weights).
fn score_of(ctx: &Ctx, set: &RealDigits, r: &ExperimentResult) -> Result<RealDigitsScore> {
    let key = run_key(r);
    ctx.probe(
        |p| p.real_digits.get(&key).cloned(),
        || {
            let dir = r.dir.as_ref().ok_or_else(|| {
                crate::Error::invalid("real digits", format!("{key} has no run directory"))
            })?;
            let net = RunDir::new(dir.as_path()).load_network(&Device::Cpu)?;
            set.score(&net)
        },
        |p, v| {
            p.real_digits.insert(key.clone(), v);
        },
    )
}

fn accuracies(scores: &[RealDigitsScore], subset: Option<&str>) -> Vec<f64> {
    scores
        .iter()
        .map(|s| match subset {
            None => s.all.accuracy,
            Some(name) => s
                .subsets
                .iter()
                .find(|x| x.subset == name)
                .map_or(f64::NAN, |x| x.accuracy),
        })
        .collect()
}

fn cell(v: &[f64]) -> String {
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (lo, hi) = v
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    if v.len() > 1 {
        format!("{:.1} ({:.1}-{:.1})", 100.0 * mean, 100.0 * lo, 100.0 * hi)
    } else {
        format!("{:.1}", 100.0 * mean)
    }
}

fn row(md: &mut String, name: &str, scores: &[RealDigitsScore], subsets: &[String]) {
    let _ = write!(
        md,
        "| {name} | {} | {} |",
        scores.len(),
        cell(&accuracies(scores, None))
    );
    for s in subsets {
        let _ = write!(md, " {} |", cell(&accuracies(scores, Some(s))));
    }
    let _ = writeln!(md);
}

fn to_json(scores: &[RealDigitsScore], subsets: &[String]) -> Value {
    let entry = |v: Vec<f64>| {
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        json!({ "mean": finite(mean), "per_seed": v })
    };
    let mut m = serde_json::Map::new();
    m.insert("all".into(), entry(accuracies(scores, None)));
    for s in subsets {
        m.insert(s.clone(), entry(accuracies(scores, Some(s))));
    }
    Value::Object(m)
}
