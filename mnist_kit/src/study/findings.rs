//! What a group of experiments shows, as sentences computed from its seeds and test images: a
//! setting "beats" another only when the paired 95 % interval of the difference excludes zero
//! ([`super::stats`] states the rule); otherwise the sentence says the two cannot be told apart
//! and gives the smallest difference the design could have seen.

use std::borrow::Borrow;

use super::ExperimentResult;
use super::aggregate::{Metric, Replicates, by_experiment};
use super::evidence::Evidence;
use super::stats::{Comparison, Verdict};
use crate::Result;
use crate::data::Mnist;

/// The verdict sentences of a group (the report's paragraphs and the notebooks' conclusions).
#[derive(Debug, Clone, PartialEq)]
pub struct Findings(pub Vec<String>);

impl Findings {
    /// Shows the sentences as a paragraph in a notebook.
    pub fn evcxr_display(&self) {
        crate::display::html(&format!(
            "<p><b>Measured:</b> {}</p>",
            crate::display::esc(&self.0.join(" ")).replace("**", "")
        ));
    }
}

/// Every pairwise comparison of the experiments in `results` on `metric`, paired over the test
/// images where the runs kept their predictions, experiments in order of first appearance.
pub fn comparisons<R: Borrow<ExperimentResult>>(
    evidence: &Evidence,
    results: &[R],
    metric: Metric,
) -> Vec<Comparison> {
    let reps = by_experiment(results);
    let refs: Vec<&Replicates> = reps.iter().collect();
    evidence.compare_all(&refs, metric)
}

fn seeds_phrase(reps: &[Replicates]) -> String {
    let ns: Vec<usize> = reps.iter().map(|r| r.runs.len()).collect();
    match (ns.iter().min(), ns.iter().max()) {
        (Some(a), Some(b)) if a == b => format!("{a} seed{}", if *a == 1 { "" } else { "s" }),
        (Some(a), Some(b)) => format!("{a}-{b} seeds"),
        _ => "no seeds".into(),
    }
}

/// A difference in points (or in the metric's unit) with its interval: `+0.12 [+0.05, +0.19]`.
pub fn diff_text(c: &Comparison, metric: Metric) -> String {
    let Some(p) = c.paired else {
        return "n/a".into();
    };
    let (scale, d) = if metric.is_percent() {
        (100.0, 2)
    } else {
        (1.0, 4)
    };
    if !p.diff_ci95[0].is_finite() {
        return format!("{:+.d$} (one seed a side: no interval)", scale * p.diff);
    }
    format!(
        "{:+.d$} [{:+.d$}, {:+.d$}]",
        scale * p.diff,
        scale * p.diff_ci95[0],
        scale * p.diff_ci95[1]
    )
}

/// The smallest difference detectable with 80 % power, in the metric's unit.
pub fn mdd_text(c: &Comparison, metric: Metric) -> String {
    match c.paired {
        Some(p) if !p.mdd80.is_finite() => "n/a".into(),
        Some(p) if metric.is_percent() => format!("{:.2}", 100.0 * p.mdd80),
        Some(p) => format!("{:.4}", p.mdd80),
        None => "n/a".into(),
    }
}

/// [`Findings`] of a group of runs (every seed of every experiment) on test accuracy, the
/// comparisons paired over the test images of `mnist`.
pub fn findings<R: Borrow<ExperimentResult> + Clone>(
    mnist: &Mnist,
    results: &[R],
) -> Result<Findings> {
    let owned: Vec<ExperimentResult> = results.iter().map(|r| r.borrow().clone()).collect();
    let evidence = Evidence::new(mnist, &owned)?;
    Ok(findings_with(&evidence, results, Metric::TestAccuracy))
}

/// [`findings`] on `metric` with evidence already read.
pub fn findings_with<R: Borrow<ExperimentResult>>(
    evidence: &Evidence,
    results: &[R],
    metric: Metric,
) -> Findings {
    let reps = by_experiment(results);
    let mut out = Vec::new();
    let show = |r: &Replicates| {
        r.summary(metric)
            .map(|s| metric.show(&s))
            .unwrap_or_default()
    };
    let unit = if metric.is_percent() { " %" } else { "" };
    if reps.len() == 1 {
        let r = &reps[0];
        out.push(format!(
            "**{}** reached {}{unit} {} over {}.",
            r.name(),
            show(r),
            metric.label(),
            seeds_phrase(&reps)
        ));
    }
    let mut ranked: Vec<&Replicates> = reps.iter().collect();
    let mean = |r: &Replicates| r.summary(metric).map_or(0.0, |s| s.mean);
    ranked.sort_by(|a, b| mean(b).total_cmp(&mean(a)));
    let ranking = || {
        ranked
            .iter()
            .map(|r| format!("{} {}{unit}", r.name(), show(r)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cs = comparisons(evidence, results, metric);
    let (won, tied): (Vec<&Comparison>, Vec<&Comparison>) = cs
        .iter()
        .partition(|c| c.verdict != Verdict::NotDistinguishable);
    if won.len() <= 3 {
        for c in &won {
            let Some(((w, sw), (l, sl))) = c.oriented() else {
                continue;
            };
            let o = if c.a == w { (*c).clone() } else { c.flipped() };
            let mcnemar = o
                .paired
                .filter(|p| p.mcnemar_p.is_finite())
                .map(|p| format!("; McNemar {}", super::stats::show_p(p.mcnemar_p)))
                .unwrap_or_default();
            out.push(format!(
                "**{w}** beats **{l}** on {} ({} vs {}, difference {}{}{mcnemar}).",
                metric.label(),
                metric.show(sw),
                metric.show(sl),
                diff_text(&o, metric),
                if metric.is_percent() { " points" } else { "" },
            ));
        }
    } else {
        // Many verdicts: one sentence per winner, best first.
        for w in &ranked {
            let beaten: Vec<String> = won
                .iter()
                .filter(|c| c.winner() == Some(w.name()))
                .filter_map(|c| c.oriented())
                .map(|(_, (loser, s))| format!("{loser} ({}{unit})", metric.show(s)))
                .collect();
            if beaten.is_empty() {
                continue;
            }
            out.push(format!(
                "**{}** ({}{unit}) beats {} on {}.",
                w.name(),
                show(w),
                beaten.join(", "),
                metric.label()
            ));
        }
    }
    if !tied.is_empty() {
        let pairs: Vec<String> = tied
            .iter()
            .map(|c| {
                format!(
                    "{} vs {} ({}, detectable {})",
                    c.a,
                    c.b,
                    diff_text(c, metric),
                    mdd_text(c, metric)
                )
            })
            .collect();
        if won.is_empty() && tied.len() > 6 {
            let most = tied
                .iter()
                .filter_map(|c| c.paired.map(|p| p.mdd80))
                .fold(0f64, f64::max);
            out.push(format!(
                "No setting beats another with {} (all {} pairs' 95 % intervals include zero; \
                 the design could have detected differences of {}{} and more); {}: {}.",
                seeds_phrase(&reps),
                tied.len(),
                if metric.is_percent() {
                    format!("{:.2}", 100.0 * most)
                } else {
                    format!("{most:.4}")
                },
                if metric.is_percent() { " points" } else { "" },
                metric.label(),
                ranking()
            ));
        } else {
            out.push(format!(
                "{} cannot be told apart with {} (difference{}, 95 % interval; the smallest \
                 difference detectable with 80 % power): {}.",
                if tied.len() == 1 {
                    "One pair".to_string()
                } else {
                    format!("{} pairs", tied.len())
                },
                seeds_phrase(&reps),
                if metric.is_percent() {
                    " in points"
                } else {
                    ""
                },
                pairs.join("; ")
            ));
        }
    }
    for r in &reps {
        let stops: Vec<String> = r
            .runs
            .iter()
            .filter_map(|x| x.history.stopped_epoch.map(|s| (s, x.history.best_epoch)))
            .map(|(s, b)| match b {
                Some(b) => format!("{s} (best {b})"),
                None => s.to_string(),
            })
            .collect();
        if !stops.is_empty() {
            out.push(format!(
                "{} stopped early at epoch {} of {}; the best epoch's weights were restored.",
                r.name(),
                stops.join(", "),
                r.first().map_or(0, |f| f.experiment.train.epochs)
            ));
        }
    }
    Findings(out)
}
