//! The per-image evidence of finished runs and the comparisons made from it. Every run of the
//! study keeps its predictions on the same test and validation images
//! ([`super::RunDir::PREDICTIONS`]); [`Evidence`] reads them back, resamples the images
//! once for every run ([`ImageResamples`], the pairing) and compares settings with
//! [`stats::paired`]. A comparison of the same two settings on the same quantity is computed
//! once and gives the same numbers wherever the report shows it.
//!
//! ```no_run
//! use mnist_kit::{data::Mnist, study};
//! let mnist = Mnist::load_default()?;
//! let cfg = study::StudyConfig::for_notebooks();
//! let runs = study::run(&mnist, &cfg, "part2-dropout")?;
//! let evidence = study::Evidence::new(&mnist, &runs)?;
//! let reps = study::by_experiment(&runs);
//! let c = evidence.compare(&reps[0], &reps[1], study::Metric::TestAccuracy);
//! # Ok::<(), mnist_kit::Error>(())
//! ```

use std::collections::HashMap;
use std::sync::Mutex;

use super::ExperimentResult;
use super::aggregate::{Metric, Replicates};
use super::stats::{self, Comparison, ImageResamples, Sample, Summary, Verdict, welch};
use crate::data::Mnist;
use crate::data::corrupt::Corruption;
use crate::train::TrainData;
use crate::train::{Predictions, RunDir};
use crate::{Error, Result};

/// Seed of the shared image resamples.
const RESAMPLE_SEED: u64 = 20_191_906;

/// The labels and image resamples of the test and validation images every run was scored on,
/// and the runs' per-image outcomes, read once.
pub struct Evidence {
    test_labels: Vec<u8>,
    val_labels: Vec<u8>,
    test: ImageResamples,
    val: ImageResamples,
    samples: Mutex<HashMap<(String, u64, Metric), Option<Sample>>>,
    comparisons: Mutex<HashMap<(String, String, Metric), Option<Comparison>>>,
}

impl Evidence {
    /// The evidence of `runs`: their test and validation splits (which every run of a study
    /// shares) come from the first run's training config.
    pub fn new(mnist: &Mnist, runs: &[ExperimentResult]) -> Result<Evidence> {
        let first = runs
            .first()
            .ok_or_else(|| Error::invalid("evidence", "no runs"))?;
        let data = TrainData::new(mnist, &first.experiment.train)?;
        let test_labels = data.test.labels();
        let val_labels = data.validation.map(|v| v.labels()).unwrap_or_default();
        Ok(Evidence {
            test: ImageResamples::new(test_labels.len(), stats::BOOTSTRAP_REPS, RESAMPLE_SEED),
            val: ImageResamples::new(val_labels.len(), stats::BOOTSTRAP_REPS, RESAMPLE_SEED + 1),
            test_labels,
            val_labels,
            samples: Mutex::new(HashMap::new()),
            comparisons: Mutex::new(HashMap::new()),
        })
    }

    /// Run `r`'s predicted classes on `split` (`test`, `validation` or a corruption's name),
    /// from its predictions file.
    fn classes(r: &ExperimentResult, split: &str) -> Option<Vec<u8>> {
        let dir = RunDir::new(r.dir.as_ref()?.as_path());
        Predictions::read(&dir).ok()??.classes(split)
    }

    fn outcomes(
        &self,
        r: &ExperimentResult,
        split: &str,
        labels: &[u8],
        images: &ImageResamples,
    ) -> Option<Sample> {
        let classes = Self::classes(r, split)?;
        if classes.len() != labels.len() {
            return None;
        }
        let correct: Vec<bool> = classes.iter().zip(labels).map(|(a, b)| a == b).collect();
        Some(Sample::of_outcomes(&correct, images))
    }

    /// Run `r` as the comparison of `metric` sees it: per-image outcomes where its predictions
    /// carry them, else its one value.
    pub fn sample(&self, r: &ExperimentResult, metric: Metric) -> Option<Sample> {
        let key = (r.name().to_string(), r.seed(), metric);
        if let Some(s) = self.samples.lock().ok()?.get(&key) {
            return s.clone();
        }
        let per_image = match metric {
            Metric::TestAccuracy => self.outcomes(r, "test", &self.test_labels, &self.test),
            Metric::ValAccuracy => self.outcomes(r, "validation", &self.val_labels, &self.val),
            Metric::Corrupted(k) => self.outcomes(r, k.name(), &self.test_labels, &self.test),
            Metric::MnistC => {
                let each: Option<Vec<Sample>> = Corruption::ALL
                    .iter()
                    .map(|&k| {
                        self.sample(r, Metric::Corrupted(k))
                            .filter(|s| !s.resampled.is_empty())
                    })
                    .collect();
                let images = self.test_labels.len() as u32;
                each.map(|each| {
                    let n = each.len() as f64;
                    let reps = each[0].resampled.len();
                    Sample {
                        value: each.iter().map(|s| s.value).sum::<f64>() / n,
                        resampled: (0..reps)
                            .map(|i| each.iter().map(|s| s.resampled[i]).sum::<f64>() / n)
                            .collect(),
                        // McNemar on the pooled 15 x 10,000 corrupted images: corruption k's
                        // image i is image k * 10,000 + i (still sorted).
                        wrong: each
                            .iter()
                            .zip(0u32..)
                            .flat_map(|(s, k)| s.wrong.iter().map(move |&i| k * images + i))
                            .collect(),
                        seed: None,
                    }
                })
            }
            _ => None,
        };
        let s = per_image
            .or_else(|| metric.of(r).map(Sample::of_value))
            .map(|s| s.with_seed(r.seed()));
        if let Ok(mut cache) = self.samples.lock() {
            cache.insert(key, s.clone());
        }
        s
    }

    /// Compares experiment `a` with `b` on `metric` (see [`stats::paired`]): the same result
    /// for the same pair wherever it is asked, oriented as asked.
    pub fn compare(&self, a: &Replicates, b: &Replicates, metric: Metric) -> Option<Comparison> {
        let (first, second, flipped) = if a.name() <= b.name() {
            (a, b, false)
        } else {
            (b, a, true)
        };
        let key = (first.name().to_string(), second.name().to_string(), metric);
        let cached = self.comparisons.lock().ok()?.get(&key).cloned();
        let c = match cached {
            Some(c) => c,
            None => {
                let c = self.compute(first, second, metric);
                if let Ok(mut cache) = self.comparisons.lock() {
                    cache.insert(key, c.clone());
                }
                c
            }
        };
        c.map(|c| if flipped { c.flipped() } else { c })
    }

    fn compute(&self, a: &Replicates, b: &Replicates, metric: Metric) -> Option<Comparison> {
        let sa: Vec<Sample> = a
            .runs
            .iter()
            .filter_map(|r| self.sample(r, metric))
            .collect();
        let sb: Vec<Sample> = b
            .runs
            .iter()
            .filter_map(|r| self.sample(r, metric))
            .collect();
        // Pair the images only when every run of both sides has them.
        let images = |v: &[Sample]| v.iter().all(|s| !s.resampled.is_empty());
        let (sa, sb) = if images(&sa) && images(&sb) {
            (sa, sb)
        } else {
            let plain = |v: Vec<Sample>| {
                v.into_iter()
                    .map(|s| match s.seed {
                        Some(seed) => Sample::of_value(s.value).with_seed(seed),
                        None => Sample::of_value(s.value),
                    })
                    .collect::<Vec<_>>()
            };
            (plain(sa), plain(sb))
        };
        let values = |v: &[Sample]| v.iter().map(|s| s.value).collect::<Vec<f64>>();
        let (va, vb) = (values(&sa), values(&sb));
        let seed = seed_of(a.name(), b.name(), metric);
        let paired = stats::paired(&sa, &sb, metric.higher_is_better(), seed)?;
        let p = welch(&va, &vb).map_or(f64::NAN, |t| t.p);
        Some(Comparison {
            a: a.name().to_string(),
            b: b.name().to_string(),
            summary_a: Summary::of(&va)?,
            summary_b: Summary::of(&vb)?,
            p,
            p_holm: p,
            verdict: paired.verdict,
            paired: Some(paired),
        })
    }

    /// The 95 % interval of `a`'s mean on `metric`, as the comparisons make theirs: Student's
    /// t over its seeds, or with one seed a bootstrap of the test images (where its
    /// predictions carry them).
    pub fn interval(&self, a: &Replicates, metric: Metric) -> Option<[f64; 2]> {
        let sa: Vec<Sample> = a
            .runs
            .iter()
            .filter_map(|r| self.sample(r, metric))
            .collect();
        if sa.len() >= 2 {
            return Some(Summary::of(&sa.iter().map(|s| s.value).collect::<Vec<_>>())?.ci95);
        }
        let images = sa.iter().all(|s| !s.resampled.is_empty());
        let sa: Vec<Sample> = if images {
            sa
        } else {
            sa.into_iter().map(|s| Sample::of_value(s.value)).collect()
        };
        let zero = Sample {
            value: 0.0,
            resampled: if images {
                vec![0.0; sa.first()?.resampled.len()]
            } else {
                Vec::new()
            },
            wrong: Vec::new(),
            seed: None,
        };
        let seed = seed_of(a.name(), "", metric);
        Some(stats::paired(&sa, &[zero], true, seed)?.diff_ci95)
    }

    /// Every pair of `reps` (in order `i < j`) compared on `metric`, with Welch's p-values
    /// Holm-corrected across the pairs (for reference: the verdicts come from the intervals).
    pub fn compare_all(&self, reps: &[&Replicates], metric: Metric) -> Vec<Comparison> {
        let mut out = Vec::new();
        for i in 0..reps.len() {
            for j in i + 1..reps.len() {
                if let Some(c) = self.compare(reps[i], reps[j], metric) {
                    out.push(c);
                }
            }
        }
        let adjusted = stats::holm(&out.iter().map(|c| c.p).collect::<Vec<_>>());
        for (c, p) in out.iter_mut().zip(adjusted) {
            c.p_holm = p;
        }
        out
    }
}

/// A comparison's own seed for its seed resampling, from the pair and the quantity.
fn seed_of(a: &str, b: &str, metric: Metric) -> u64 {
    crate::data::mnist::fnv1a(
        a.bytes()
            .chain([0])
            .chain(b.bytes())
            .chain([0])
            .chain(metric.name().bytes()),
    )
}

impl Comparison {
    /// The same comparison seen from the other side (`b` against `a`).
    pub fn flipped(&self) -> Comparison {
        let verdict = match self.verdict {
            Verdict::ABetter => Verdict::BBetter,
            Verdict::BBetter => Verdict::ABetter,
            Verdict::NotDistinguishable => Verdict::NotDistinguishable,
        };
        Comparison {
            a: self.b.clone(),
            b: self.a.clone(),
            summary_a: self.summary_b,
            summary_b: self.summary_a,
            p: self.p,
            p_holm: self.p_holm,
            verdict,
            paired: self.paired.map(|p| stats::Paired {
                diff: -p.diff,
                diff_ci95: [-p.diff_ci95[1], -p.diff_ci95[0]],
                p_improve: 1.0 - p.p_improve,
                discordant: [p.discordant[1], p.discordant[0]],
                verdict,
                ..p
            }),
        }
    }
}
