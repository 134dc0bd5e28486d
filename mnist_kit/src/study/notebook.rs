//! The study as a notebook reads it: each call takes the runs a section trained (or read back)
//! and returns one thing to show, so one cell shows one table, one figure or one list.

use polars::prelude::*;

use super::aggregate::{COLLAPSE, Metric, Replicates, by_experiment, ensemble, top_share};
use super::claims::{Claims, claims, study_questions};
use super::evidence::Evidence;
use super::findings::{Findings, findings_with};
use super::{ExperimentResult, StudyConfig};
use crate::data::Mnist;
use crate::data::corrupt::Corruption;
use crate::display::Table;
use crate::{Result, plot};

/// The seed studies' claims that `runs` can test, with the evidence of their test images.
pub fn claims_of(mnist: &Mnist, runs: &[ExperimentResult]) -> Result<Claims> {
    let evidence = Evidence::new(mnist, runs)?;
    Ok(claims(
        &evidence,
        runs,
        (mnist.train.len(), mnist.test.len()),
    ))
}

/// The questions the study adds that `runs` can answer.
pub fn questions_of(mnist: &Mnist, runs: &[ExperimentResult]) -> Result<Claims> {
    let evidence = Evidence::new(mnist, runs)?;
    Ok(study_questions(
        &evidence,
        runs,
        (mnist.train.len(), mnist.test.len()),
    ))
}

/// Every seed of every experiment in `runs` on `metric` as a dot, with the mean and its 95 %
/// interval over seeds and test images.
pub fn dots(
    mnist: &Mnist,
    title: &str,
    runs: &[ExperimentResult],
    metric: Metric,
) -> Result<plot::Figure> {
    let evidence = Evidence::new(mnist, runs)?;
    let reps = by_experiment(runs);
    let rows: Vec<plot::DotRow> = reps
        .iter()
        .filter_map(|r: &Replicates| {
            let s = r.summary(metric)?;
            Some(plot::DotRow {
                name: r.name().to_string(),
                seeds: r.values(metric),
                mean: s.mean,
                ci95: evidence.interval(r, metric).unwrap_or(s.ci95),
            })
        })
        .collect();
    // The gap is a difference of two accuracies: points, not percent.
    let (scale, unit) = match metric {
        Metric::Gap => (100.0, " (points)"),
        m if m.is_percent() => (100.0, " (%)"),
        _ => (1.0, ""),
    };
    Ok(plot::dots(
        &format!("{}_dots", metric.name()),
        title,
        &format!("{}{unit}", metric.label()),
        &rows,
        scale,
    ))
}

/// The seed ensemble of every experiment in `runs` with more than one seed, in one table:
/// its seeds' softmax probabilities averaged, against the seeds' own mean.
pub fn ensembles(mnist: &Mnist, cfg: &StudyConfig, runs: &[ExperimentResult]) -> Result<Table> {
    let (mut name, mut seeds, mut mean, mut ens, mut gain) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in by_experiment(runs).iter().filter(|r| r.runs.len() > 1) {
        let e = ensemble(mnist, cfg, r)?;
        let m = r.summary(Metric::TestAccuracy).map_or(f64::NAN, |s| s.mean);
        name.push(e.name.clone());
        seeds.push(e.seeds.len() as u64);
        mean.push(100.0 * m);
        ens.push(100.0 * e.test_accuracy);
        gain.push(100.0 * (e.test_accuracy - m));
    }
    let frame = df!(
        "experiment" => name,
        "seeds" => seeds,
        "mean of the seeds (%)" => mean,
        "ensemble (%)" => ens,
        "ensemble gain (points)" => gain,
    )?;
    Ok(Table::new("seed ensembles on the test set", frame))
}

/// [`findings`](super::findings()) of `runs` on another metric than test accuracy (MNIST-C
/// accuracy, the train-validation gap, ...), paired over the test images where the metric has
/// them.
pub fn findings_on(mnist: &Mnist, runs: &[ExperimentResult], metric: Metric) -> Result<Findings> {
    let evidence = Evidence::new(mnist, runs)?;
    Ok(findings_with(&evidence, runs, metric))
}

/// Accuracy under each MNIST-C corruption of every experiment in `runs` that was scored on
/// them: one row per experiment, the clean test accuracy, the MNIST-C mean and the 15
/// corruptions (percent, mean over seeds), and the class a model collapsed onto, if one took
/// more than half of its predictions under some corruption (pooled over seeds).
pub fn corruptions(runs: &[ExperimentResult]) -> Result<Table> {
    let reps: Vec<Replicates> = by_experiment(runs)
        .into_iter()
        .filter(Replicates::scored_on_mnist_c)
        .collect();
    let pct = |r: &Replicates, m: Metric| r.summary(m).map(|s| 100.0 * s.mean);
    let mut cols = vec![
        Column::new(
            "experiment".into(),
            reps.iter()
                .map(|r| r.name().to_string())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "clean".into(),
            reps.iter()
                .map(|r| pct(r, Metric::TestAccuracy))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "MNIST-C".into(),
            reps.iter()
                .map(|r| pct(r, Metric::MnistC))
                .collect::<Vec<_>>(),
        ),
    ];
    for k in Corruption::ALL {
        cols.push(Column::new(
            k.label().into(),
            reps.iter()
                .map(|r| pct(r, Metric::Corrupted(k)))
                .collect::<Vec<_>>(),
        ));
    }
    let collapse: Vec<String> = reps.iter().map(collapses).collect();
    cols.push(Column::new("collapses onto".into(), collapse));
    Ok(Table::new(
        "accuracy under MNIST-C (%, mean over seeds)",
        DataFrame::new_infer_height(cols)?,
    ))
}

/// `"8 under fog (97 %), ..."`: the corruptions under which one class took more than half of
/// `r`'s predictions, pooled over its seeds.
fn collapses(r: &Replicates) -> String {
    let mut out = Vec::new();
    for k in Corruption::ALL {
        let (class, share) = top_share(&r.pooled_predictions(k));
        if share > COLLAPSE {
            out.push(format!(
                "{class} under {} ({:.0} %)",
                k.label(),
                100.0 * share
            ));
        }
    }
    out.join(", ")
}
