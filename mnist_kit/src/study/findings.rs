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
    if let [r] = reps.as_slice() {
        out.push(format!(
            "**{}** reached {}{} {} over {}.",
            r.name(),
            shown(r, metric),
            unit(metric),
            metric.label(),
            seeds_phrase(&reps)
        ));
    }
    let mut ranked: Vec<&Replicates> = reps.iter().collect();
    let mean = |r: &Replicates| r.summary(metric).map_or(0.0, |s| s.mean);
    ranked.sort_by(|a, b| mean(b).total_cmp(&mean(a)));
    let cs = comparisons(evidence, results, metric);
    let (won, tied): (Vec<&Comparison>, Vec<&Comparison>) = cs
        .iter()
        .partition(|c| c.verdict != Verdict::NotDistinguishable);
    if won.len() <= 3 {
        out.extend(won.iter().filter_map(|c| beats_sentence(c, metric)));
    } else {
        out.extend(winners_sentences(&won, &ranked, metric));
    }
    if !tied.is_empty() {
        out.push(undecided_sentence(
            &tied,
            won.is_empty(),
            &reps,
            &ranked,
            metric,
        ));
    }
    out.extend(reps.iter().filter_map(early_stop_sentence));
    Findings(out)
}

fn shown(r: &Replicates, metric: Metric) -> String {
    r.summary(metric)
        .map(|s| metric.show(&s))
        .unwrap_or_default()
}

fn unit(metric: Metric) -> &'static str {
    if metric.is_percent() { " %" } else { "" }
}

/// "**A** beats **B** on ... (a vs b, difference ...)", or "... is higher with **A** than
/// with **B** ..." for a quantity without a better direction.
fn beats_sentence(c: &Comparison, metric: Metric) -> Option<String> {
    let ((w, sw), (l, sl)) = c.oriented()?;
    let o = if c.a == w { c.clone() } else { c.flipped() };
    let numbers = format!(
        "{} vs {}, difference {}{}",
        metric.show(sw),
        metric.show(sl),
        diff_text(&o, metric),
        if metric.is_percent() { " points" } else { "" },
    );
    Some(if metric.has_direction() {
        format!("**{w}** beats **{l}** on {} ({numbers}).", metric.label())
    } else {
        let (hi, lo) = if sw.mean >= sl.mean { (w, l) } else { (l, w) };
        format!(
            "The {} is higher with **{hi}** than with **{lo}** ({numbers}).",
            metric.label()
        )
    })
}

/// Many verdicts: one sentence per winner, best first.
fn winners_sentences(won: &[&Comparison], ranked: &[&Replicates], metric: Metric) -> Vec<String> {
    let unit = unit(metric);
    ranked
        .iter()
        .filter_map(|w| {
            let beaten: Vec<String> = won
                .iter()
                .filter(|c| c.winner() == Some(w.name()))
                .filter_map(|c| c.oriented())
                .map(|(_, (loser, s))| format!("{loser} ({}{unit})", metric.show(s)))
                .collect();
            (!beaten.is_empty()).then(|| {
                let verb = if metric.has_direction() {
                    "beats"
                } else {
                    "is higher than"
                };
                format!(
                    "**{}** ({}{unit}) {verb} {} on {}.",
                    w.name(),
                    shown(w, metric),
                    beaten.join(", "),
                    metric.label()
                )
            })
        })
        .collect()
}

/// The pairs that cannot be told apart, with their intervals and detectable differences (or,
/// when nothing was decided among many, one sentence with the ranking).
fn undecided_sentence(
    tied: &[&Comparison],
    nothing_won: bool,
    reps: &[Replicates],
    ranked: &[&Replicates],
    metric: Metric,
) -> String {
    let points = if metric.is_percent() { " points" } else { "" };
    if nothing_won && tied.len() > 6 {
        let most = tied
            .iter()
            .filter_map(|c| c.paired.map(|p| p.mdd80))
            .fold(0f64, f64::max);
        let ranking = ranked
            .iter()
            .map(|r| format!("{} {}{}", r.name(), shown(r, metric), unit(metric)))
            .collect::<Vec<_>>()
            .join(", ");
        return format!(
            "No setting beats another with {} (all {} pairs' 95 % intervals include zero; \
             the design could have detected differences of {}{points} and more); {}: {ranking}.",
            seeds_phrase(reps),
            tied.len(),
            if metric.is_percent() {
                format!("{:.2}", 100.0 * most)
            } else {
                format!("{most:.4}")
            },
            metric.label(),
        );
    }
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
    format!(
        "{} cannot be told apart with {} (difference{}, 95 % interval; the smallest \
         difference detectable with 80 % power): {}.",
        if tied.len() == 1 {
            "One pair".to_string()
        } else {
            format!("{} pairs", tied.len())
        },
        seeds_phrase(reps),
        if metric.is_percent() {
            " in points"
        } else {
            ""
        },
        pairs.join("; ")
    )
}

/// "X stopped early at epoch 7 (best 4), ... of 30; ..." when some seed stopped early.
fn early_stop_sentence(r: &Replicates) -> Option<String> {
    let stops: Vec<String> = r
        .runs
        .iter()
        .filter_map(|x| x.history.stopped_epoch.map(|s| (s, x.history.best_epoch)))
        .map(|(s, b)| match b {
            Some(b) => format!("{s} (best {b})"),
            None => s.to_string(),
        })
        .collect();
    (!stops.is_empty()).then(|| {
        format!(
            "{} stopped early at epoch {} of {}; the best epoch's weights were restored.",
            r.name(),
            stops.join(", "),
            r.first().map_or(0, |f| f.experiment.train.epochs)
        )
    })
}
