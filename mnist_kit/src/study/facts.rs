//! Numbers for prose: what a notebook paragraph says about a group of runs, rendered from the
//! runs themselves, so a rerun that changes a number changes the sentence. Every phrase comes
//! from the same summaries and paired comparisons as the tables and `results/REPORT.md`; a
//! quantity the runs did not measure reads `n/a`, never a guess and never a panic.
//!
//! ```no_run
//! use mnist_kit::{data::Mnist, display::markdown, study};
//! use mnist_kit::study::Metric::TestAccuracy;
//! let mnist = Mnist::load_default()?;
//! let cfg = study::StudyConfig::for_notebooks();
//! let runs = study::run(&mnist, &cfg, "parameter-matched")?;
//! let f = study::Facts::new(&mnist, &runs)?;
//! let md = markdown(format!(
//!     "LeNet-5 reaches {} over {} seeds; {}.",
//!     f.show("lenet5", TestAccuracy),
//!     f.seeds("lenet5"),
//!     f.verdict("lenet5", "mlp-61k", TestAccuracy),
//! ));
//! # Ok::<(), mnist_kit::Error>(())
//! ```

use super::ExperimentResult;
use super::aggregate::{Metric, Replicates, by_experiment};
use super::evidence::Evidence;
use super::findings::{diff_text, mdd_text};
use super::stats::{Comparison, Summary, Verdict};
use crate::Result;
use crate::data::Mnist;

/// What a paragraph says when the runs did not measure a quantity.
pub const NA: &str = "n/a";

/// The runs of a notebook section with their evidence, asked by experiment name.
pub struct Facts<'e> {
    evidence: Held<'e>,
    reps: Vec<Replicates>,
}

/// The evidence a [`Facts`] reads: its own, or one already read (the report's).
enum Held<'e> {
    Own(Box<Evidence>),
    Lent(&'e Evidence),
}

impl Facts<'static> {
    /// The facts of `runs` (every seed of every experiment a paragraph talks about), paired
    /// over the test images of `mnist`.
    pub fn new(mnist: &Mnist, runs: &[ExperimentResult]) -> Result<Facts<'static>> {
        Ok(Facts {
            evidence: Held::Own(Box::new(Evidence::new(mnist, runs)?)),
            reps: by_experiment(runs),
        })
    }
}

impl<'e> Facts<'e> {
    /// The facts of `runs` with evidence already read (the report's), so its predictions are
    /// not read and its comparisons not made twice.
    pub fn with_evidence(evidence: &'e Evidence, runs: &[ExperimentResult]) -> Facts<'e> {
        Facts {
            evidence: Held::Lent(evidence),
            reps: by_experiment(runs),
        }
    }

    fn evidence(&self) -> &Evidence {
        match &self.evidence {
            Held::Own(e) => e,
            Held::Lent(e) => e,
        }
    }

    /// The seeds of experiment `name`, if the runs hold it.
    pub fn replicates(&self, name: &str) -> Option<&Replicates> {
        self.reps.iter().find(|r| r.name() == name)
    }

    /// The summary of `metric` over the seeds of `name`.
    pub fn summary(&self, name: &str, metric: Metric) -> Option<Summary> {
        self.replicates(name)?.summary(metric)
    }

    /// The mean of `metric` over the seeds of `name` (NaN when not measured).
    pub fn mean(&self, name: &str, metric: Metric) -> f64 {
        self.summary(name, metric).map_or(f64::NAN, |s| s.mean)
    }

    /// How many seeds `name` trained.
    pub fn seeds(&self, name: &str) -> usize {
        self.replicates(name).map_or(0, |r| r.runs.len())
    }

    /// How many seeds `name` trained, in words: `1 seed`, `10 seeds`.
    pub fn seeds_text(&self, name: &str) -> String {
        match self.seeds(name) {
            1 => "1 seed".into(),
            n => format!("{n} seeds"),
        }
    }

    /// `name`'s trainable parameters with thousands separators: `61,706`.
    pub fn params(&self, name: &str) -> String {
        self.replicates(name)
            .map_or_else(|| NA.into(), |r| thousands(r.params() as u64))
    }

    /// `mean ± std` of `metric` over the seeds of `name` with its unit (`99.05 ± 0.06 %`,
    /// `1.45 points`, `0.0325`); just the value with one seed.
    pub fn show(&self, name: &str, metric: Metric) -> String {
        self.summary(name, metric)
            .map_or_else(|| NA.into(), |s| with_unit(metric.show(&s), metric))
    }

    /// The lowest to the highest seed of `name` on `metric`: `97.02-98.13 %` (one value
    /// with one seed).
    pub fn range(&self, name: &str, metric: Metric) -> String {
        let Some(s) = self.summary(name, metric) else {
            return NA.into();
        };
        if s.n < 2 || s.min == s.max {
            return with_unit(shown(s.mean, metric), metric);
        }
        with_unit(
            format!("{}-{}", shown(s.min, metric), shown(s.max, metric)),
            metric,
        )
    }

    /// The lowest to the highest mean over the experiments `names` on `metric`:
    /// `98.99-99.21 %`.
    pub fn span(&self, names: &[&str], metric: Metric) -> String {
        let means: Vec<f64> = names
            .iter()
            .map(|n| self.mean(n, metric))
            .filter(|v| v.is_finite())
            .collect();
        if means.is_empty() {
            return NA.into();
        }
        let lo = means.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = (shown(lo, metric), shown(hi, metric));
        if lo == hi {
            return with_unit(lo, metric);
        }
        with_unit(format!("{lo}-{hi}"), metric)
    }

    /// Mean wall seconds of one seed's training: `37 s`.
    pub fn seconds(&self, name: &str) -> String {
        self.replicates(name)
            .map_or_else(|| NA.into(), |r| seconds(r.seconds_per_seed()))
    }

    /// The paired comparison of `a` against `b` on `metric`, as the tables make it.
    pub fn compare(&self, a: &str, b: &str, metric: Metric) -> Option<Comparison> {
        self.evidence()
            .compare(self.replicates(a)?, self.replicates(b)?, metric)
    }

    /// `a` minus `b` on `metric` in its unit, with the 95 % interval and the smallest
    /// difference the design could detect: `+0.25 [+0.02, +0.50] points (95 % interval),
    /// 0.35 points detectable` (the tables' [`diff_text`] and [`mdd_text`]).
    pub fn diff(&self, a: &str, b: &str, metric: Metric) -> String {
        self.compare(a, b, metric)
            .map_or_else(|| NA.into(), |c| diff_words(&c, metric))
    }

    /// The verdict of `a` against `b` on `metric` in words, with the numbers behind it:
    /// "**lenet5** beats **mlp-61k** on test accuracy (99.05 ± 0.06 % against 96.02 ± 0.29 %;
    /// difference ...)", or "**a** and **b** cannot be told apart on ...".
    pub fn verdict(&self, a: &str, b: &str, metric: Metric) -> String {
        let Some(c) = self.compare(a, b, metric) else {
            return format!(
                "**{a}** and **{b}** were not both measured on {}",
                metric.label()
            );
        };
        let label = metric.label();
        let (c, head) = match c.verdict {
            Verdict::NotDistinguishable => (
                c,
                format!("**{a}** and **{b}** cannot be told apart on {label}"),
            ),
            v if !metric.has_direction() => {
                let verb = if v == Verdict::ABetter {
                    "higher"
                } else {
                    "lower"
                };
                (
                    c,
                    format!("the {label} is {verb} with **{a}** than with **{b}**"),
                )
            }
            Verdict::ABetter => (c, format!("**{a}** beats **{b}** on {label}")),
            Verdict::BBetter => (c.flipped(), format!("**{b}** beats **{a}** on {label}")),
        };
        format!(
            "{head} ({} against {}; difference {})",
            with_unit(metric.show(&c.summary_a), metric),
            with_unit(metric.show(&c.summary_b), metric),
            diff_words(&c, metric)
        )
    }

    /// Of every pair of `names` (in order `i < j`) compared on `metric`: how many the rule
    /// called a difference, and how many pairs there were.
    pub fn called_pairs(&self, names: &[&str], metric: Metric) -> (usize, usize) {
        let (mut called, mut pairs) = (0, 0);
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                if let Some(v) = self.called(a, b, metric) {
                    pairs += 1;
                    called += usize::from(v != Verdict::NotDistinguishable);
                }
            }
        }
        (called, pairs)
    }

    /// The verdict alone: `a better`, `b better` or `not distinguishable`.
    pub fn called(&self, a: &str, b: &str, metric: Metric) -> Option<Verdict> {
        self.compare(a, b, metric).map(|c| c.verdict)
    }
}

/// A comparison's difference in words: the tables' interval and detectable difference.
fn diff_words(c: &Comparison, metric: Metric) -> String {
    let unit = if metric.is_percent() { " points" } else { "" };
    format!(
        "{}{unit} (95 % interval), {}{unit} detectable",
        diff_text(c, metric),
        mdd_text(c, metric)
    )
}

/// One value of `metric` as its summaries show it (`99.05`, `0.0325`), without the unit.
fn shown(v: f64, metric: Metric) -> String {
    Summary::of(&[v]).map_or_else(|| NA.into(), |s| metric.show(&s))
}

fn with_unit(shown: String, metric: Metric) -> String {
    match metric {
        Metric::Gap => format!("{shown} points"),
        m if m.is_percent() => format!("{shown} %"),
        Metric::SecondsPerEpoch => format!("{shown} s"),
        _ => shown,
    }
}

/// An accuracy (a fraction) in percent with two decimals: `99.05 %`.
pub fn pct(fraction: f64) -> String {
    if fraction.is_finite() {
        format!("{:.2} %", 100.0 * fraction)
    } else {
        NA.into()
    }
}

/// A difference of two accuracies (fractions) in points with two decimals: `0.25 points`.
pub fn points(fraction: f64) -> String {
    if fraction.is_finite() {
        format!("{:.2} points", 100.0 * fraction)
    } else {
        NA.into()
    }
}

/// Seconds, whole from ten, one decimal from one, two below: `166 s`, `6.5 s`, `0.04 s`.
pub fn seconds(s: f64) -> String {
    match s {
        s if !s.is_finite() => NA.into(),
        s if s >= 10.0 => format!("{s:.0} s"),
        s if s >= 1.0 => format!("{s:.1} s"),
        s => format!("{s:.2} s"),
    }
}

/// A count with thousands separators: `61,706`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_with_their_units() {
        assert_eq!(pct(0.990_54), "99.05 %");
        assert_eq!(points(0.0025), "0.25 points");
        assert_eq!(seconds(166.4), "166 s");
        assert_eq!(seconds(6.54), "6.5 s");
        assert_eq!(seconds(0.041), "0.04 s");
        assert_eq!(thousands(61_706), "61,706");
        assert_eq!(thousands(469_160), "469,160");
        assert_eq!(thousands(7), "7");
        assert_eq!(pct(f64::NAN), NA);
    }
}
