//! What a group of experiments shows, as sentences computed from its seeds: a setting "beats"
//! another only when Welch's test, Holm-corrected across the group, says so (p < 0.05);
//! otherwise the sentence says the settings cannot be told apart and gives their spread.

use std::borrow::Borrow;

use super::ExperimentResult;
use super::aggregate::{Metric, Replicates, by_experiment};
use super::stats::{Comparison, Verdict, compare_all, show_p};

/// The verdict sentences of a group (the report's paragraphs and the notebooks' conclusions).
#[derive(Debug, Clone, PartialEq)]
pub struct Findings(pub Vec<String>);

impl Findings {
    /// Shows the sentences as a paragraph in a notebook.
    pub fn evcxr_display(&self) {
        crate::display::html(&format!(
            "<p><b>Measured:</b> {}</p>",
            crate::models::summary::esc(&self.0.join(" ")).replace("**", "")
        ));
    }
}

/// Every pairwise comparison of the experiments in `results` on `metric` (Welch, Holm across
/// them), experiments in order of first appearance.
pub fn comparisons<R: Borrow<ExperimentResult>>(results: &[R], metric: Metric) -> Vec<Comparison> {
    let reps = by_experiment(results);
    let settings: Vec<(String, Vec<f64>)> = reps
        .iter()
        .map(|r| (r.name().to_string(), r.values(metric)))
        .collect();
    compare_all(&settings, metric.higher_is_better())
}

fn seeds_phrase(reps: &[Replicates]) -> String {
    let ns: Vec<usize> = reps.iter().map(|r| r.runs.len()).collect();
    match (ns.iter().min(), ns.iter().max()) {
        (Some(a), Some(b)) if a == b => format!("{a} seed{}", if *a == 1 { "" } else { "s" }),
        (Some(a), Some(b)) => format!("{a}-{b} seeds"),
        _ => "no seeds".into(),
    }
}

/// [`Findings`] of a group of runs (every seed of every experiment), on test accuracy.
pub fn findings<R: Borrow<ExperimentResult>>(results: &[R]) -> Findings {
    let reps = by_experiment(results);
    let mut out = Vec::new();
    let acc = |r: &Replicates| {
        r.summary(Metric::TestAccuracy)
            .map(|s| s.pct())
            .unwrap_or_default()
    };
    if reps.len() == 1 {
        let r = &reps[0];
        out.push(format!(
            "**{}** reached {} % test accuracy over {}.",
            r.name(),
            acc(r),
            seeds_phrase(&reps)
        ));
    }
    // The experiments, highest mean test accuracy first, and that ranking in words.
    let mut ranked: Vec<&Replicates> = reps.iter().collect();
    let mean = |r: &Replicates| r.summary(Metric::TestAccuracy).map_or(0.0, |s| s.mean);
    ranked.sort_by(|a, b| mean(b).total_cmp(&mean(a)));
    let ranking = || {
        ranked
            .iter()
            .map(|r| format!("{} {} %", r.name(), acc(r)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cs = comparisons(results, Metric::TestAccuracy);
    if !cs.is_empty() {
        let untested = cs.iter().all(|c| c.p.is_nan());
        if untested {
            out.push(format!(
                "With one seed per setting no difference can be tested; test accuracies: {}.",
                ranking()
            ));
        } else {
            let (won, tied): (Vec<&Comparison>, Vec<&Comparison>) = cs
                .iter()
                .partition(|c| c.verdict != Verdict::NotDistinguishable);
            if won.len() <= 3 {
                for c in &won {
                    let Some(((w, sw), (l, sl))) = c.oriented() else {
                        continue;
                    };
                    out.push(format!(
                        "**{w}** beats **{l}** on test accuracy ({} % vs {} %, {:+.2} points; \
                         Welch {}, Holm {}).",
                        sw.pct(),
                        sl.pct(),
                        100.0 * (sw.mean - sl.mean),
                        show_p(c.p),
                        show_p(c.p_holm).replace("p ", "")
                    ));
                }
            } else {
                // Many verdicts: one sentence per winner, best first.
                for w in &ranked {
                    let beaten: Vec<&Comparison> = won
                        .iter()
                        .copied()
                        .filter(|c| c.winner() == Some(w.name()))
                        .collect();
                    if beaten.is_empty() {
                        continue;
                    }
                    let names: Vec<String> = beaten
                        .iter()
                        .filter_map(|c| c.oriented())
                        .map(|(_, (loser, s))| format!("{loser} ({} %)", s.pct()))
                        .collect();
                    let worst = beaten.iter().map(|c| c.p_holm).fold(0f64, f64::max);
                    out.push(format!(
                        "**{}** ({} %) beats {} on test accuracy (Holm-corrected p ≤ {:.3}).",
                        w.name(),
                        acc(w),
                        names.join(", "),
                        worst.max(0.001)
                    ));
                }
            }
            if won.is_empty() && tied.len() > 6 {
                // Many pairs and no verdict: the spread in one sentence.
                let lowest = tied.iter().map(|c| c.p_holm).fold(1f64, f64::min);
                out.push(format!(
                    "No setting beats another with {} (all {} pairs: Holm-corrected p ≥ {:.3}); \
                     test accuracy {}.",
                    seeds_phrase(&reps),
                    tied.len(),
                    lowest,
                    ranking()
                ));
            } else if !tied.is_empty() {
                let pairs: Vec<String> = tied
                    .iter()
                    .map(|c| {
                        format!(
                            "{} vs {} ({} % vs {} %, Holm {})",
                            c.a,
                            c.b,
                            c.summary_a.pct(),
                            c.summary_b.pct(),
                            show_p(c.p_holm).replace("p ", "")
                        )
                    })
                    .collect();
                out.push(if won.is_empty() {
                    format!(
                        "No setting beats another with {}: {}.",
                        seeds_phrase(&reps),
                        pairs.join("; ")
                    )
                } else {
                    format!(
                        "{} cannot be told apart with {}: {}.",
                        if tied.len() == 1 {
                            "One pair".to_string()
                        } else {
                            format!("{} pairs", tied.len())
                        },
                        seeds_phrase(&reps),
                        pairs.join("; ")
                    )
                });
            }
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
