//! The study as a notebook reads it: each call takes the runs a section trained (or read back)
//! and returns one thing to show, so one cell shows one table, one figure or one list.

use polars::prelude::*;

use super::aggregate::{Metric, Replicates, by_experiment, ensemble};
use super::claims::{Claims, claims, study_questions};
use super::evidence::Evidence;
use super::{ExperimentResult, StudyConfig};
use crate::data::Mnist;
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
    let (scale, unit) = if metric.is_percent() {
        (100.0, " (%)")
    } else {
        (1.0, "")
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
