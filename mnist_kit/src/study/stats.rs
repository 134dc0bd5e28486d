//! Statistics over training seeds and test images: summaries with Student-t intervals,
//! Welch's test and Holm's correction (kept beside the verdicts), and the paired comparison
//! the verdicts come from ([`paired`]).
//!
//! **The verdict rule, the same for every comparison in the report.** Every run of a study is
//! scored on the same test images, so the runs of two settings differ only by their recipe and
//! their seed. With at least two seeds a side, the difference of the means gets a Student-t
//! 95 % interval over the seeds: **paired by seed** when both settings ran the same seeds (the
//! per-seed differences, `n - 1` degrees of freedom: runs of one seed share their
//! initialisation and data order, and so many of their mistakes), else Welch's. That interval
//! holds its 5 % false-call rate at any seed count for any quantity (test accuracy, MNIST-C, a
//! gap, an epoch; checked on simulated A/A data in the tests and printed from the study's own
//! A/A splits in the report), where a bootstrap over 3-10 seeds with normal quantiles did not.
//! It is about these test images: their own sampling error is not in it. With one seed a side
//! the test images are all there is to resample, and a paired bootstrap over them gives the
//! interval. "A beats B" when the interval lies above zero (below, for a loss), else the two
//! cannot be told apart, with the smallest difference the design could have detected with 80
//! % power beside it, from the same t distribution. For quantities without a better direction
//! (gradient noise, an epoch) the words are "higher" and "lower". There is no further
//! multiple-comparison correction: among `m` comparisons of equal settings the rule calls
//! about `0.05 m` by chance, which the report says per group. Beside each verdict stand the
//! share of seed pairs in which A's seed scores higher (rliable's probability of improvement),
//! and McNemar's test on the pooled per-image outcomes of the matched runs, which asks whether
//! those particular trained models differ, not whether the recipes do.
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

/// One pairwise comparison: the paired interval and its verdict, with Welch's test beside it.
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
    /// Welch's two-sided p-value on the per-seed values (NaN when a side has one seed).
    pub p: f64,
    /// Welch's p-value after Holm's correction across the family it was shown in (for
    /// reference; the verdict does not use it).
    pub p_holm: f64,
    /// The verdict, from the paired interval.
    pub verdict: Verdict,
    /// The paired comparison: difference, interval, P(A > B), detectable difference, McNemar.
    pub paired: Option<Paired>,
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

/// Every pair of `settings` (`(name, per-seed values)`, in order `i < j`) compared over seeds
/// with [`paired`] (no per-image outcomes), Welch's p-values Holm-corrected across the family
/// beside them. `higher_is_better` orients the verdict. Settings without values are left out.
pub fn compare_all(settings: &[(String, Vec<f64>)], higher_is_better: bool) -> Vec<Comparison> {
    let settings: Vec<(&String, Summary, &Vec<f64>)> = settings
        .iter()
        .filter_map(|(n, v)| Summary::of(v).map(|s| (n, s, v)))
        .collect();
    let mut out = Vec::new();
    for i in 0..settings.len() {
        for j in i + 1..settings.len() {
            let (a, b) = (&settings[i], &settings[j]);
            let samples = |v: &[f64]| v.iter().map(|&x| Sample::of_value(x)).collect::<Vec<_>>();
            let Some(pd) = paired(
                &samples(a.2),
                &samples(b.2),
                higher_is_better,
                (i * 1000 + j) as u64,
            ) else {
                continue;
            };
            out.push(Comparison {
                a: a.0.clone(),
                b: b.0.clone(),
                summary_a: a.1,
                summary_b: b.1,
                p: welch(a.2, b.2).map_or(f64::NAN, |t| t.p),
                p_holm: f64::NAN,
                verdict: pd.verdict,
                paired: Some(pd),
            });
        }
    }
    let adjusted = holm(&out.iter().map(|c| c.p).collect::<Vec<_>>());
    for (c, p) in out.iter_mut().zip(adjusted) {
        c.p_holm = p;
    }
    out
}

/// Standard normal quantiles behind [`mdd80`]: `scipy.stats.norm.ppf(0.975)` and
/// `scipy.stats.norm.ppf(0.8)`.
const Z975: f64 = 1.959_963_984_540_054;
const Z80: f64 = 0.841_621_233_572_914_3;

/// The smallest true difference a two-sided test at 5 % detects with 80 % power when the
/// estimate's standard error is `se`: `(z_0.975 + z_0.8) * se`.
pub fn mdd80(se: f64) -> f64 {
    (Z975 + Z80) * se
}

/// Bootstrap resamples of a split's images, shared by every run scored on it: resample `r`
/// draws `n` images with replacement, stored as how often each image was drawn.
#[derive(Debug, Clone)]
pub struct ImageResamples {
    n: usize,
    counts: Vec<u8>,
}

impl ImageResamples {
    /// `reps` resamples of `n` images from a generator seeded with `seed`.
    pub fn new(n: usize, reps: usize, seed: u64) -> Self {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut counts = vec![0u8; n * reps];
        if n > 0 {
            for row in counts.chunks_exact_mut(n) {
                for _ in 0..n {
                    let i = rng.random_range(0..n);
                    row[i] = row[i].saturating_add(1);
                }
            }
        }
        ImageResamples { n, counts }
    }

    /// Number of resamples.
    pub fn reps(&self) -> usize {
        self.counts.len() / self.n.max(1)
    }

    /// Number of images.
    pub fn images(&self) -> usize {
        self.n
    }

    /// One run's accuracy on every resample, from the images it got wrong.
    pub fn accuracies(&self, wrong: &[u32]) -> Vec<f64> {
        self.counts
            .chunks_exact(self.n.max(1))
            .map(|row| {
                let missed: u64 = wrong.iter().map(|&i| u64::from(row[i as usize])).sum();
                1.0 - missed as f64 / self.n as f64
            })
            .collect()
    }
}

/// One run as the paired comparison sees it: its value, that value on each image resample
/// (empty for a quantity without per-image outcomes) and the images it got wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The measured value (an accuracy, a loss, an epoch...).
    pub value: f64,
    /// The value on each shared image resample.
    pub resampled: Vec<f64>,
    /// Indices of the images the run got wrong (for McNemar), sorted.
    pub wrong: Vec<u32>,
    /// The run's training seed, when known: runs of two settings with the same seed are
    /// compared seed by seed.
    pub seed: Option<u64>,
}

impl Sample {
    /// A run scored on the resampled images: `correct[i]` for image `i`.
    pub fn of_outcomes(correct: &[bool], images: &ImageResamples) -> Sample {
        let wrong: Vec<u32> = correct
            .iter()
            .enumerate()
            .filter(|(_, c)| !**c)
            .map(|(i, _)| i as u32)
            .collect();
        let value = 1.0 - wrong.len() as f64 / correct.len().max(1) as f64;
        Sample {
            value,
            resampled: images.accuracies(&wrong),
            wrong,
            seed: None,
        }
    }

    /// A quantity measured once per run, without per-image outcomes.
    pub fn of_value(value: f64) -> Sample {
        Sample {
            value,
            resampled: Vec::new(),
            wrong: Vec::new(),
            seed: None,
        }
    }

    /// The same sample, marked as the run of training seed `seed`.
    pub fn with_seed(self, seed: u64) -> Sample {
        Sample {
            seed: Some(seed),
            ..self
        }
    }
}

/// How a comparison's interval was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Student's t over the per-seed differences of runs matched by seed.
    PairedSeeds,
    /// Welch's t over the two sets of seeds.
    WelchSeeds,
    /// A paired bootstrap of the shared test images (one seed on a side).
    Images,
    /// No interval: one value a side and nothing to resample.
    None,
}

/// A paired comparison of settings `a` and `b`: see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// Mean of `a` minus mean of `b`.
    pub diff: f64,
    /// 95 % interval of `diff`.
    pub diff_ci95: [f64; 2],
    /// Standard error of `diff`.
    pub se: f64,
    /// The smallest difference detectable with 80 % power: `(t_0.975 + t_0.8) se` with the
    /// interval's degrees of freedom (normal quantiles for the image bootstrap).
    pub mdd80: f64,
    /// How the interval was made.
    pub method: Method,
    /// Degrees of freedom of the t interval (infinite for the image bootstrap).
    pub df: f64,
    /// Probability that a seed of `a` scores above a seed of `b` (ties count half), over all
    /// seed pairs.
    pub p_improve: f64,
    /// Exact McNemar test on the pooled per-image outcomes of matched seeds (seed k of `a`
    /// with seed k of `b`); NaN without per-image outcomes.
    pub mcnemar_p: f64,
    /// Images `a` got right and `b` wrong, and the reverse, pooled over matched seeds.
    pub discordant: [u64; 2],
    /// The verdict from `diff_ci95`.
    pub verdict: Verdict,
}

impl Paired {
    /// Whether McNemar's test, at 5 %, says what the verdict says (a difference in the same
    /// direction, or none); `None` without per-image outcomes.
    pub fn mcnemar_agrees(&self) -> Option<bool> {
        if self.mcnemar_p.is_nan() {
            return None;
        }
        let signif = self.mcnemar_p < ALPHA;
        let a_more = self.discordant[0] > self.discordant[1];
        Some(match self.verdict {
            Verdict::NotDistinguishable => !signif,
            Verdict::ABetter | Verdict::BBetter => signif && (a_more == (self.diff > 0.0)),
        })
    }
}

/// Resamples of the bootstrap of a comparison.
pub const BOOTSTRAP_REPS: usize = 2000;

/// Compares settings `a` and `b` (their runs, one per seed) as the module documentation
/// says; `higher_is_better` orients the verdict; `seed` makes the seed resampling
/// repeatable (the image resamples come with the samples). With one seed per setting the
/// interval covers the test images' sampling error alone.
pub fn paired(a: &[Sample], b: &[Sample], higher_is_better: bool, seed: u64) -> Option<Paired> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mean = |v: &[Sample]| v.iter().map(|s| s.value).sum::<f64>() / v.len() as f64;
    let diff = mean(a) - mean(b);
    let with_images = a.iter().chain(b).all(|s| !s.resampled.is_empty());
    let reps = if with_images {
        a.iter()
            .chain(b)
            .map(|s| s.resampled.len())
            .min()
            .unwrap_or(0)
    } else {
        BOOTSTRAP_REPS
    };
    if reps == 0 {
        return None;
    }
    let values = |v: &[Sample]| v.iter().map(|s| s.value).collect::<Vec<f64>>();
    let (ci, se, mdd, method, df) = if a.len() >= 2 && b.len() >= 2 {
        let (se, df, method) = match by_seed(a, b) {
            Some(d) => {
                let n = d.len() as f64;
                let m = d.iter().sum::<f64>() / n;
                let var = d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
                ((var / n).sqrt(), n - 1.0, Method::PairedSeeds)
            }
            None => {
                let t = welch(&values(a), &values(b))?;
                (t.se, t.df, Method::WelchSeeds)
            }
        };
        let df = if df.is_finite() && df > 0.0 { df } else { 1.0 };
        let half = t_quantile(0.975, df) * se;
        let mdd = (t_quantile(0.975, df) + t_quantile(0.8, df)) * se;
        ([diff - half, diff + half], se, mdd, method, df)
    } else if with_images {
        let (ci, se) = image_bootstrap(a, b, reps, seed);
        (ci, se, mdd80(se), Method::Images, f64::INFINITY)
    } else {
        (
            [f64::NAN, f64::NAN],
            f64::NAN,
            f64::NAN,
            Method::None,
            f64::NAN,
        )
    };
    let verdict = if ci[0] > 0.0 || ci[1] < 0.0 {
        if (ci[0] > 0.0) == higher_is_better {
            Verdict::ABetter
        } else {
            Verdict::BBetter
        }
    } else {
        Verdict::NotDistinguishable
    };
    let (mcnemar_p, discordant) = if with_images {
        mcnemar_matched(a, b)
    } else {
        (f64::NAN, [0, 0])
    };
    let p_improve = share_higher(a, b);
    Some(Paired {
        diff,
        diff_ci95: ci,
        se,
        mdd80: mdd,
        method,
        df,
        p_improve,
        mcnemar_p,
        discordant,
        verdict,
    })
}

/// The verdict rule on A/A splits of one setting's runs: `2 * half` of its runs dealt into two
/// disjoint halves, each pair of halves compared with [`paired`]. With exactly `2 * half`
/// runs every split is taken once (the half holding the first run fixed); with more, `splits`
/// seeded random deals. Returns `(called, compared)`: a calibrated rule calls about 5 %.
pub fn aa_calls(
    runs: &[Sample],
    half: usize,
    splits: usize,
    higher_is_better: bool,
    seed: u64,
) -> (usize, usize) {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let n = runs.len();
    if half == 0 || n < 2 * half {
        return (0, 0);
    }
    let mut deals: Vec<Vec<usize>> = Vec::new();
    if n == 2 * half {
        // Every subset of `half` indices that holds index 0: each split once.
        let mut pick = vec![0usize];
        fn grow(
            pick: &mut Vec<usize>,
            from: usize,
            n: usize,
            half: usize,
            out: &mut Vec<Vec<usize>>,
        ) {
            if pick.len() == half {
                let rest: Vec<usize> = (0..n).filter(|i| !pick.contains(i)).collect();
                out.push(pick.iter().copied().chain(rest).collect());
                return;
            }
            for i in from..n {
                pick.push(i);
                grow(pick, i + 1, n, half, out);
                pick.pop();
            }
        }
        grow(&mut pick, 1, n, half, &mut deals);
    } else {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..splits {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut rng);
            deals.push(order[..2 * half].to_vec());
        }
    }
    let mut called = 0;
    for (k, deal) in deals.iter().enumerate() {
        let a: Vec<Sample> = deal[..half].iter().map(|&i| runs[i].clone()).collect();
        let b: Vec<Sample> = deal[half..2 * half]
            .iter()
            .map(|&i| runs[i].clone())
            .collect();
        if paired(&a, &b, higher_is_better, seed ^ k as u64)
            .is_some_and(|p| p.verdict != Verdict::NotDistinguishable)
        {
            called += 1;
        }
    }
    (called, deals.len())
}

/// The share of seed pairs (one run of `a`, one of `b`) in which `a`'s scores higher, ties
/// counting half: rliable's probability of improvement.
fn share_higher(a: &[Sample], b: &[Sample]) -> f64 {
    let mut wins = 0.0;
    for x in a {
        for y in b {
            wins += if x.value > y.value {
                1.0
            } else if x.value == y.value {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (a.len() * b.len()).max(1) as f64
}

/// McNemar's test on the per-image outcomes of runs matched in order (seed k of `a` with seed
/// k of `b`), pooled: its p and the discordant counts (right in `a` only, right in `b` only).
fn mcnemar_matched(a: &[Sample], b: &[Sample]) -> (f64, [u64; 2]) {
    let mut d = [0u64; 2];
    for (x, y) in a.iter().zip(b) {
        let (ax, by) = (&x.wrong, &y.wrong);
        d[0] += by.iter().filter(|i| ax.binary_search(i).is_err()).count() as u64;
        d[1] += ax.iter().filter(|i| by.binary_search(i).is_err()).count() as u64;
    }
    (mcnemar_exact(d[0], d[1]), d)
}

/// The per-seed differences `a - b` when both sides ran the same seeds (each once), in seed
/// order; `None` otherwise.
fn by_seed(a: &[Sample], b: &[Sample]) -> Option<Vec<f64>> {
    let key = |v: &[Sample]| -> Option<Vec<(u64, f64)>> {
        let mut k: Vec<(u64, f64)> = v
            .iter()
            .map(|s| Some((s.seed?, s.value)))
            .collect::<Option<_>>()?;
        k.sort_by_key(|x| x.0);
        k.windows(2).all(|w| w[0].0 != w[1].0).then_some(k)
    };
    let (ka, kb) = (key(a)?, key(b)?);
    (ka.len() == kb.len() && ka.iter().zip(&kb).all(|(x, y)| x.0 == y.0))
        .then(|| ka.iter().zip(&kb).map(|(x, y)| x.1 - y.1).collect())
}

/// The 95 % percentile interval and standard error of the difference of means from `reps`
/// shared resamples of the test images (the pairing), the seeds of a side with more than one
/// resampled too, their spread scaled by `sqrt(n / (n - 1))`.
fn image_bootstrap(a: &[Sample], b: &[Sample], reps: usize, seed: u64) -> ([f64; 2], f64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let arm = |v: &[Sample], r: usize, rng: &mut rand_chacha::ChaCha8Rng| -> f64 {
        let n = v.len();
        let all = v.iter().map(|s| s.resampled[r]).sum::<f64>() / n as f64;
        if n < 2 {
            return all;
        }
        let drawn = (0..n)
            .map(|_| v[rng.random_range(0..n)].resampled[r])
            .sum::<f64>()
            / n as f64;
        all + (n as f64 / (n - 1) as f64).sqrt() * (drawn - all)
    };
    let mut diffs: Vec<f64> = (0..reps)
        .map(|r| arm(a, r, &mut rng) - arm(b, r, &mut rng))
        .collect();
    let m = diffs.iter().sum::<f64>() / reps as f64;
    let se = (diffs.iter().map(|d| (d - m).powi(2)).sum::<f64>() / (reps.max(2) - 1) as f64).sqrt();
    diffs.sort_by(f64::total_cmp);
    ([percentile(&diffs, 2.5), percentile(&diffs, 97.5)], se)
}

/// The `q`-th percentile (0-100) of sorted values, interpolating linearly between order
/// statistics (NumPy's default).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
}

/// The exact two-sided McNemar test of `b` against `c` discordant pairs: the binomial test of
/// `min(b, c)` successes in `b + c` trials at 1/2, doubled and capped at 1.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // P(X <= k) for X ~ Binomial(n, 1/2), summed in log space.
    let ln_half_n = n as f64 * 0.5f64.ln();
    let mut ln_choose = 0f64; // ln C(n, 0)
    let mut cdf = 0f64;
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        cdf += (ln_choose + ln_half_n).exp();
    }
    (2.0 * cdf).min(1.0)
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
