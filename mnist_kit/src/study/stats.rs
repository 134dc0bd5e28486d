//! Statistics over training seeds: summaries with Student-t confidence intervals, Welch's
//! two-sided t-test, Holm's step-down correction and the verdicts the report states.
//!
//! A verdict says "A beats B" only when the Holm-corrected p-value is below [`ALPHA`];
//! otherwise the settings cannot be told apart with the seeds at hand, and that is the result.
//!
//! ```
//! use mnist_kit::study::stats::{Summary, welch};
//! let a = [0.9812, 0.9805, 0.9818];
//! let b = [0.9764, 0.9771, 0.9759];
//! let s = Summary::of(&a).unwrap();
//! assert!(s.ci95[0] < s.mean && s.mean < s.ci95[1]);
//! assert!(welch(&a, &b).unwrap().p < 0.01);
//! ```

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Significance level of every verdict (two-sided, after Holm's correction).
pub const ALPHA: f64 = 0.05;

/// Mean, sample standard deviation, range and 95 % Student-t interval of one quantity over
/// seeds. With one value the spread is unknown: `std` and the interval are NaN (`null` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of values (seeds).
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (n - 1 in the denominator).
    pub std: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// 95 % confidence interval of the mean: `mean ± t(0.975, n-1) * std / sqrt(n)`.
    pub ci95: [f64; 2],
}

impl Summary {
    /// The summary of `values`; `None` when there are none or one is not finite.
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let (min, max) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let (std, ci95) = if n < 2 {
            (f64::NAN, [f64::NAN, f64::NAN])
        } else {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            let std = var.sqrt();
            let half = t_quantile(0.975, (n - 1) as f64) * std / (n as f64).sqrt();
            (std, [mean - half, mean + half])
        };
        Some(Summary {
            n,
            mean,
            std,
            min,
            max,
            ci95,
        })
    }

    /// `mean ± std` scaled by `scale` with `decimals` decimals (`98.02 ± 0.08` for
    /// `scale = 100`); just the mean when there is one value.
    pub fn show(&self, scale: f64, decimals: usize) -> String {
        if self.std.is_finite() {
            format!(
                "{:.decimals$} ± {:.decimals$}",
                scale * self.mean,
                scale * self.std
            )
        } else {
            format!("{:.decimals$}", scale * self.mean)
        }
    }

    /// [`Summary::show`] of an accuracy in percent with two decimals.
    pub fn pct(&self) -> String {
        self.show(100.0, 2)
    }
}

/// The `q` quantile of Student's t with `df` degrees of freedom.
fn t_quantile(q: f64, df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df).map_or(f64::NAN, |t| t.inverse_cdf(q))
}

/// A t-test: Welch's of two samples, a contrast's, or a one-sample test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TTest {
    /// The tested quantity: the difference of means, the contrast, or mean minus `mu`.
    pub estimate: f64,
    /// Its standard error.
    pub se: f64,
    /// `(mean_a - mean_b) / sqrt(var_a/n_a + var_b/n_b)`.
    pub t: f64,
    /// Welch-Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p: f64,
}

impl TTest {
    /// The 95 % confidence interval of [`TTest::estimate`].
    pub fn ci95(&self) -> [f64; 2] {
        let half = t_quantile(0.975, self.df) * self.se;
        [self.estimate - half, self.estimate + half]
    }
}

/// Welch's two-sided t-test of `a` against `b`; `None` when either has fewer than two
/// values (no spread, no test). When both samples have no spread at all, equal means give
/// p = 1 and different means p = 0.
pub fn welch(a: &[f64], b: &[f64]) -> Option<TTest> {
    contrast(&[a, b], &[1.0, -1.0])
}

/// The t-test of a linear contrast `sum(c_i * mean_i)` of independent samples against 0, with
/// Welch-Satterthwaite degrees of freedom (Welch's test is the contrast `(1, -1)`). `None` when
/// a sample has fewer than two values or the lengths differ.
///
/// `(-1, 2, -1)` over depths 1, 2, 3 tests "diminishing returns": the gain from 1 to 2 exceeds
/// the gain from 2 to 3.
pub fn contrast(samples: &[&[f64]], coefs: &[f64]) -> Option<TTest> {
    if samples.len() != coefs.len() || samples.is_empty() {
        return None;
    }
    let mut value = 0f64;
    let mut terms = Vec::new();
    for (x, &c) in samples.iter().zip(coefs) {
        let s = Summary::of(x)?;
        if s.n < 2 {
            return None;
        }
        value += c * s.mean;
        terms.push((c * c * s.std.powi(2) / s.n as f64, s.n));
    }
    let se2: f64 = terms.iter().map(|t| t.0).sum();
    let n_total: usize = terms.iter().map(|t| t.1).sum();
    if se2 == 0.0 {
        let df = (n_total - samples.len()) as f64;
        return Some(if value == 0.0 {
            TTest {
                estimate: 0.0,
                se: 0.0,
                t: 0.0,
                df,
                p: 1.0,
            }
        } else {
            TTest {
                estimate: value,
                se: 0.0,
                t: value.signum() * f64::INFINITY,
                df,
                p: 0.0,
            }
        });
    }
    let t = value / se2.sqrt();
    let df = se2.powi(2)
        / terms
            .iter()
            .map(|(v, n)| v.powi(2) / (*n - 1) as f64)
            .sum::<f64>();
    let p = StudentsT::new(0.0, 1.0, df)
        .map_or(f64::NAN, |d| 2.0 * d.cdf(-t.abs()))
        .clamp(0.0, 1.0);
    Some(TTest {
        estimate: value,
        se: se2.sqrt(),
        t,
        df,
        p,
    })
}

/// One-sample two-sided t-test of `values` against `mu`.
pub fn one_sample(values: &[f64], mu: f64) -> Option<TTest> {
    let s = Summary::of(values)?;
    if s.n < 2 {
        return None;
    }
    let df = (s.n - 1) as f64;
    let diff = s.mean - mu;
    if s.std == 0.0 {
        return Some(TTest {
            estimate: diff,
            se: 0.0,
            t: if diff == 0.0 {
                0.0
            } else {
                diff.signum() * f64::INFINITY
            },
            df,
            p: if diff == 0.0 { 1.0 } else { 0.0 },
        });
    }
    let se = s.std / (s.n as f64).sqrt();
    let t = diff / se;
    let p = StudentsT::new(0.0, 1.0, df)
        .map_or(f64::NAN, |d| 2.0 * d.cdf(-t.abs()))
        .clamp(0.0, 1.0);
    Some(TTest {
        estimate: diff,
        se,
        t,
        df,
        p,
    })
}

/// Holm's step-down correction of a family of p-values, in the order given. A NaN p-value
/// (a test that could not be made) counts as 1.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let clean: Vec<f64> = p
        .iter()
        .map(|&v| if v.is_nan() { 1.0 } else { v })
        .collect();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&i, &j| clean[i].total_cmp(&clean[j]));
    let mut out = vec![1.0; m];
    let mut running = 0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * clean[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// Which of two settings is better, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// The first setting is better (Holm-corrected p < [`ALPHA`]).
    #[serde(rename = "a better")]
    ABetter,
    /// The second setting is better.
    #[serde(rename = "b better")]
    BBetter,
    /// The difference is within the noise of the seeds.
    #[serde(rename = "not distinguishable")]
    NotDistinguishable,
}

impl Verdict {
    /// The words of `metrics.json`: `a better`, `b better`, `not distinguishable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::ABetter => "a better",
            Verdict::BBetter => "b better",
            Verdict::NotDistinguishable => "not distinguishable",
        }
    }
}

/// One pairwise comparison within a family (a study group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// First setting.
    pub a: String,
    /// Second setting.
    pub b: String,
    /// Summary of `a`'s values.
    pub summary_a: Summary,
    /// Summary of `b`'s values.
    pub summary_b: Summary,
    /// Welch's two-sided p-value (NaN when a side has one seed).
    pub p: f64,
    /// The p-value after Holm's correction across the family.
    pub p_holm: f64,
    /// The verdict at [`ALPHA`] on `p_holm`.
    pub verdict: Verdict,
}

/// One side of a [`Comparison`]: the setting's name and its summary.
pub type Side<'a> = (&'a str, &'a Summary);

impl Comparison {
    /// The better setting's name, if the comparison found one.
    pub fn winner(&self) -> Option<&str> {
        self.oriented().map(|((w, _), _)| w)
    }

    /// `(winner, loser)`, each with its summary, if the comparison found a winner.
    pub fn oriented(&self) -> Option<(Side<'_>, Side<'_>)> {
        let a = (self.a.as_str(), &self.summary_a);
        let b = (self.b.as_str(), &self.summary_b);
        match self.verdict {
            Verdict::ABetter => Some((a, b)),
            Verdict::BBetter => Some((b, a)),
            Verdict::NotDistinguishable => None,
        }
    }
}

/// Every pair of `settings` (`(name, per-seed values)`, in order `i < j`), tested with Welch's
/// t-test and Holm-corrected across the family. `higher_is_better` orients the verdict.
/// Settings without values are left out.
pub fn compare_all(settings: &[(String, Vec<f64>)], higher_is_better: bool) -> Vec<Comparison> {
    let settings: Vec<(&String, Summary, &Vec<f64>)> = settings
        .iter()
        .filter_map(|(n, v)| Summary::of(v).map(|s| (n, s, v)))
        .collect();
    let mut pairs = Vec::new();
    for i in 0..settings.len() {
        for j in i + 1..settings.len() {
            pairs.push((i, j));
        }
    }
    let raw: Vec<f64> = pairs
        .iter()
        .map(|&(i, j)| welch(settings[i].2, settings[j].2).map_or(f64::NAN, |t| t.p))
        .collect();
    let adjusted = holm(&raw);
    pairs
        .iter()
        .zip(raw.iter().zip(&adjusted))
        .map(|(&(i, j), (&p, &p_holm))| {
            let (a, b) = (&settings[i], &settings[j]);
            let a_higher = a.1.mean > b.1.mean;
            let verdict = if p_holm < ALPHA && a.1.mean != b.1.mean {
                if a_higher == higher_is_better {
                    Verdict::ABetter
                } else {
                    Verdict::BBetter
                }
            } else {
                Verdict::NotDistinguishable
            };
            Comparison {
                a: a.0.clone(),
                b: b.0.clone(),
                summary_a: a.1,
                summary_b: b.1,
                p,
                p_holm,
                verdict,
            }
        })
        .collect()
}

/// `p = 0.0123` as a report shows it (`p < 0.001` below that, `n/a` when untested).
pub fn show_p(p: f64) -> String {
    if p.is_nan() {
        "n/a".into()
    } else if p < 0.001 {
        "p < 0.001".into()
    } else {
        format!("p = {p:.3}")
    }
}
