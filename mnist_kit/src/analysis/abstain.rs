//! Knowing when not to answer. A [`Calibration`] is fit on a run's own training and validation
//! images and saved beside its weights (`calibration.json`):
//! - a temperature that makes the softmax's confidence honest (temperature scaling, Guo et al.
//!   2017);
//! - the most ink the training digits cover;
//! - the distance of the network's penultimate features to the nearest class's training
//!   features (Mahalanobis distance with a shared covariance, Lee et al. 2018), with a limit;
//! - a confidence floor; the limit and the floor are chosen together so that a stated share of
//!   the validation digits, [`Calibration::target_abstain`], is abstained in all.
//!
//! [`Calibration::judge`] then answers a digit, or abstains with a reason: the image is blank,
//! it holds more ink than any MNIST digit (noise, hatching, a filled shape), it lies far from every
//! digit the network was trained on, or the model is not sure (its top two guesses are given).
//!
//! ```no_run
//! use mnist_kit::analysis::{Calibration, answer, load_digit};
//! use mnist_kit::train::Run;
//! let run = Run::open("results/models/robust")?;
//! let calibration = Calibration::load(&run.dir)?;
//! let a = answer(&run.net, &load_digit("my-digit.png")?, calibration.as_ref())?;
//! match a.digit {
//!     Some(d) if !a.abstain => println!("{d} ({:.0}% sure)", 100.0 * a.confidence),
//!     _ => println!("not sure: {}", a.reason.unwrap_or_default()),
//! }
//! # Ok::<(), mnist_kit::Error>(())
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::custom_digit::{Digit, SIDE, digit_input, most_likely};
use super::gate::{GATE_DIR, Gate};
use super::real_digits::{RealDigits, file_name, sorted_entries};
use crate::data::mnist::unit_pixels;
use crate::data::{NUM_CLASSES, Split};
use crate::models::Network;
use crate::train::evaluate::{softmax_rows, split_outputs, top_probabilities};
use crate::{Error, Result};

/// The file a run directory keeps its calibration in.
pub const CALIBRATION_FILE: &str = "calibration.json";
/// Share of validation digits abstained (feature distance and confidence floor together), by
/// default.
pub const DEFAULT_TARGET_ABSTAIN: f64 = 0.007;
/// Of that share, the part left to the feature distance: its limit is this quantile's
/// complement of the validation distances.
pub const DISTANCE_TAIL: f64 = 0.004;
/// Training digits the feature distance is fit on.
const DISTANCE_FIT_IMAGES: usize = 20_000;
/// Widest features the distance is fit for (its matrix is this squared, in the JSON).
const DISTANCE_MAX_FEATURES: usize = 256;
/// Share of MNIST training digits above the ink limit.
const INK_TAIL: f64 = 0.0005;
/// A pixel at or above this value is ink, for the ink statistics: low enough that the grey
/// block that noise leaves after background removal counts.
const INK_LEVEL: f32 = 0.2;
/// Bins of the expected calibration error.
pub const ECE_BINS: usize = 15;

/// The ink of a 28x28 digit, which tells a digit from noise or a blot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ink {
    /// Share of the 784 pixels that are ink: at least 0.2 above the level of the border.
    pub coverage: f32,
}

impl Ink {
    /// The ink of `pixels` (784 values in `[0, 1]`), above the level of its border (an evenly
    /// brighter or fogged image has as much ink as the digit in it).
    pub fn of(pixels: &[f32]) -> Ink {
        let mut border: Vec<f32> = (0..SIDE)
            .flat_map(|i| [i, (SIDE - 1) * SIDE + i, i * SIDE, i * SIDE + SIDE - 1])
            .filter_map(|i| pixels.get(i).copied())
            .collect();
        border.sort_by(f32::total_cmp);
        let level = border.get(border.len() / 2).copied().unwrap_or(0.0);
        let ink = pixels.iter().filter(|&&v| v - level >= INK_LEVEL).count();
        Ink {
            coverage: ink as f32 / pixels.len().max(1) as f32,
        }
    }
}

/// The most ink MNIST's training digits cover (all but a twentieth of a percent of them
/// cover no more). Only the upper end is checked: a thin pen leaves less ink than MNIST's
/// strokes and is still a digit, while noise, hatching or a filled shape leaves more ink than
/// any digit. (Counting separate pieces of ink as well was tried: it refused no more of the
/// non-digits, and nine in ten of MNIST-C's dotted-line and impulse-noise digits.)
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InkRange {
    /// Most ink coverage.
    pub max_coverage: f32,
}

impl InkRange {
    /// The limit over the digits of `split`.
    pub fn of(split: &Split) -> Result<InkRange> {
        if split.is_empty() {
            return Err(Error::invalid("ink range", "the split is empty"));
        }
        let mut coverage: Vec<f32> = split
            .iter()
            .map(|(img, _)| Ink::of(&unit_pixels(img)).coverage)
            .collect();
        coverage.sort_by(f32::total_cmp);
        let top = ((coverage.len() as f64 - 1.0) * (1.0 - INK_TAIL)).round() as usize;
        Ok(InkRange {
            max_coverage: coverage[top],
        })
    }

    /// Why `ink` is not a digit's, if it is not.
    pub fn reject(&self, ink: Ink) -> Option<String> {
        (ink.coverage > self.max_coverage).then(|| {
            format!(
                "not a digit: too much ink ({:.0} % of the image; MNIST digits at most {:.0} %)",
                100.0 * ink.coverage,
                100.0 * self.max_coverage
            )
        })
    }
}

/// How the calibration did on the validation images it was fit on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CalibrationFit {
    /// Validation images.
    pub n: usize,
    /// Mean negative log-likelihood before and after scaling.
    pub nll: (f64, f64),
    /// Expected calibration error ([`ECE_BINS`] bins) before and after scaling.
    pub ece: (f64, f64),
    /// Share of validation digits under the confidence floor.
    pub abstain_rate: f64,
    /// Accuracy on the validation digits above the floor.
    pub answered_accuracy: f64,
}

/// A run's calibration: temperature, confidence floor and ink range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Logits are divided by it before the softmax (above 1: the raw model is over-confident).
    pub temperature: f32,
    /// Calibrated confidence below which the answer is "not sure".
    pub min_confidence: f32,
    /// The share of validation digits the floor was chosen to leave under it.
    pub target_abstain: f64,
    /// The ink statistics of MNIST's training digits.
    pub ink: InkRange,
    /// The feature-space distance to the training digits (none for networks whose penultimate
    /// layer is wider than 256).
    #[serde(default)]
    pub distance: Option<FeatureDistance>,
    /// How the fit did on validation.
    pub fit: CalibrationFit,
    /// The digit gate, kept in the run's `gate/` directory (not in `calibration.json`):
    /// abstain when it says the image is no digit.
    #[serde(skip)]
    pub gate: Option<Gate>,
}

/// Class-conditional Gaussians with one shared covariance over the penultimate features of the
/// training digits: an input's distance is its Mahalanobis distance to the nearest class mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDistance {
    /// Feature width.
    pub features: usize,
    /// The whitened class means `W mu_c`, 10 rows of `features`.
    pub means: Vec<Vec<f32>>,
    /// The whitening matrix `W = L^-1` (`Sigma = L L^T`, with a small ridge), row-major.
    pub whitening: Vec<f32>,
    /// Distances above this are "not like the training digits".
    pub limit: f32,
}

impl FeatureDistance {
    /// Fits the means and covariance on `features` (row-major, `f` wide) of digits `labels`.
    fn fit(features: &[f32], labels: &[u8], f: usize) -> Result<FeatureDistance> {
        let n = labels.len();
        if n < 2 * NUM_CLASSES || features.len() != n * f {
            return Err(Error::invalid(
                "feature distance",
                format!("{} features of width {f} for {n} labels", features.len()),
            ));
        }
        let mut mean = vec![vec![0f64; f]; NUM_CLASSES];
        let mut count = [0usize; NUM_CLASSES];
        for (row, &y) in features.chunks(f).zip(labels) {
            let y = usize::from(y);
            count[y] += 1;
            for (m, &v) in mean[y].iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        for (m, &c) in mean.iter_mut().zip(&count) {
            m.iter_mut().for_each(|v| *v /= c.max(1) as f64);
        }
        let mut cov = vec![0f64; f * f];
        let mut centred = vec![0f64; f];
        for (row, &y) in features.chunks(f).zip(labels) {
            for ((c, &v), m) in centred.iter_mut().zip(row).zip(&mean[usize::from(y)]) {
                *c = f64::from(v) - m;
            }
            for i in 0..f {
                let ci = centred[i];
                if ci == 0.0 {
                    continue;
                }
                for j in 0..=i {
                    cov[i * f + j] += ci * centred[j];
                }
            }
        }
        let trace: f64 = (0..f).map(|i| cov[i * f + i]).sum::<f64>() / n as f64;
        // A ridge of a thousandth of the mean variance: dead ReLU units have none.
        let ridge = 1e-3 * trace / f as f64 + 1e-12;
        for i in 0..f {
            for j in 0..=i {
                cov[i * f + j] /= n as f64;
            }
            cov[i * f + i] += ridge;
        }
        let l = cholesky(&cov, f)?;
        let w = lower_inverse(&l, f);
        let whiten = |v: &[f64]| -> Vec<f32> {
            (0..f)
                .map(|i| (0..=i).map(|j| w[i * f + j] * v[j]).sum::<f64>() as f32)
                .collect()
        };
        Ok(FeatureDistance {
            features: f,
            means: mean.iter().map(|m| whiten(m)).collect(),
            whitening: w.iter().map(|&v| v as f32).collect(),
            limit: f32::INFINITY,
        })
    }

    /// Sets the limit to the upper [`DISTANCE_TAIL`] of the distances of `features` (`width`
    /// each, row-major: the validation digits); which of them are beyond it.
    fn set_limit(&mut self, features: &[f32], width: usize) -> Vec<bool> {
        let dist: Vec<f32> = features
            .chunks(width.max(1))
            .map(|f| self.distance(f))
            .collect();
        let mut sorted = dist.clone();
        sorted.sort_by(f32::total_cmp);
        let k = ((sorted.len() as f64) * (1.0 - DISTANCE_TAIL)).floor() as usize;
        self.limit = sorted
            .get(k.min(sorted.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f32::INFINITY);
        dist.iter().map(|&v| v > self.limit).collect()
    }

    /// The squared Mahalanobis distance of `feature` to the nearest class mean.
    pub fn distance(&self, feature: &[f32]) -> f32 {
        let f = self.features;
        let z: Vec<f32> = (0..f)
            .map(|i| {
                let row = &self.whitening[i * f..i * f + i + 1];
                row.iter().zip(feature).map(|(a, b)| a * b).sum()
            })
            .collect();
        self.means
            .iter()
            .map(|m| {
                m.iter()
                    .zip(&z)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f32>()
            })
            .fold(f32::INFINITY, f32::min)
    }
}

/// The lower Cholesky factor of the symmetric positive-definite `a` (its lower triangle read).
fn cholesky(a: &[f64], n: usize) -> Result<Vec<f64>> {
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            if i == j {
                let d = a[i * n + i] - s;
                if d <= 0.0 || !d.is_finite() {
                    return Err(Error::invalid(
                        "feature distance",
                        format!("covariance not positive definite at {i}"),
                    ));
                }
                l[i * n + i] = d.sqrt();
            } else {
                l[i * n + j] = (a[i * n + j] - s) / l[j * n + j];
            }
        }
    }
    Ok(l)
}

/// The inverse of the lower-triangular `l` (lower-triangular too), by forward substitution.
fn lower_inverse(l: &[f64], n: usize) -> Vec<f64> {
    let mut w = vec![0f64; n * n];
    for c in 0..n {
        for i in c..n {
            let s: f64 = (c..i).map(|k| l[i * n + k] * w[k * n + c]).sum();
            let rhs = if i == c { 1.0 } else { 0.0 };
            w[i * n + c] = (rhs - s) / l[i * n + i];
        }
    }
    w
}

/// Why an answer abstains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Abstention {
    /// No ink at all.
    Blank,
    /// More ink than any digit's.
    Ink,
    /// The digit gate says it is no digit.
    NotADigit,
    /// Features far from every digit class the network learned.
    Distance,
    /// A calibrated confidence under the floor.
    Confidence,
}

impl Abstention {
    /// The kind in words, for tables.
    pub fn label(self) -> &'static str {
        match self {
            Abstention::Blank => "blank",
            Abstention::Ink => "ink",
            Abstention::NotADigit => "not a digit",
            Abstention::Distance => "feature distance",
            Abstention::Confidence => "confidence",
        }
    }
}

/// A digit, or a reasoned "not sure".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The most likely digit (none for a blank image).
    pub digit: Option<usize>,
    /// Calibrated class probabilities (empty for a blank image).
    pub probabilities: Vec<f32>,
    /// The probability of `digit`.
    pub confidence: f32,
    /// True when the answer should not be trusted.
    pub abstain: bool,
    /// Why it abstains, in words.
    pub reason: Option<String>,
    /// Why it abstains, as a kind.
    pub why: Option<Abstention>,
    /// The second most likely digit.
    pub runner_up: Option<usize>,
    /// The feature distance to the nearest digit class and its limit, when the calibration has
    /// one.
    pub distance: Option<(f32, f32)>,
}

impl Answer {
    /// The answer to an image with no ink.
    pub fn blank(reason: impl Into<String>) -> Answer {
        Answer {
            digit: None,
            probabilities: Vec::new(),
            confidence: 0.0,
            abstain: true,
            reason: Some(reason.into()),
            why: Some(Abstention::Blank),
            runner_up: None,
            distance: None,
        }
    }
}

impl Calibration {
    /// Fits the calibration of `net` (inputs scaled as it was trained): the temperature,
    /// confidence floor and feature-distance limit on `validation`, abstaining
    /// `target_abstain` of its digits in all; the ink limits and the feature distance on
    /// `train`, the run's own training images.
    pub fn fit(
        net: &Network,
        validation: &Split,
        train: &Split,
        target_abstain: f64,
    ) -> Result<Calibration> {
        if !(DISTANCE_TAIL..0.5).contains(&target_abstain) {
            return Err(Error::invalid(
                "target abstain rate",
                format!("{target_abstain} is not in [{DISTANCE_TAIL}, 0.5)"),
            ));
        }
        let (logits, features, width) = split_outputs(net, validation)?;
        let labels = validation.labels();
        let temperature = fit_temperature(&logits, &labels)?;
        let mut distance = if width <= DISTANCE_MAX_FEATURES {
            let fit_on = train.take(DISTANCE_FIT_IMAGES);
            let (_, f, _) = split_outputs(net, &fit_on)?;
            Some(FeatureDistance::fit(&f, &fit_on.labels(), width)?)
        } else {
            None
        };
        let far = match &mut distance {
            Some(d) => d.set_limit(&features, width),
            None => vec![false; labels.len()],
        };
        let raw = softmax_rows(&logits, 1.0);
        let scaled = softmax_rows(&logits, temperature);
        let conf = top_probabilities(&scaled);
        // The floor: the rest of the share, from the confidences of the digits kept so far.
        let n = labels.len();
        let flagged = far.iter().filter(|&&b| b).count();
        let mut kept: Vec<f32> = conf
            .iter()
            .zip(&far)
            .filter(|(_, f)| !**f)
            .map(|(c, _)| *c)
            .collect();
        kept.sort_by(f32::total_cmp);
        let k = ((n as f64 * target_abstain).floor() as usize).saturating_sub(flagged);
        let min_confidence = kept.get(k).copied().unwrap_or(0.0);
        let (mut under, mut right, mut answered) = (0usize, 0usize, 0usize);
        for ((p, &y), &f) in scaled.chunks(NUM_CLASSES).zip(&labels).zip(&far) {
            let d = most_likely(p);
            if f || p[d] < min_confidence {
                under += 1;
            } else {
                answered += 1;
                right += usize::from(d == usize::from(y));
            }
        }
        Ok(Calibration {
            temperature,
            min_confidence,
            target_abstain,
            ink: InkRange::of(train)?,
            distance,
            gate: None,
            fit: CalibrationFit {
                n,
                nll: (
                    nll(&logits, &labels, 1.0),
                    nll(&logits, &labels, temperature),
                ),
                ece: (
                    expected_calibration_error(&raw, &labels, ECE_BINS),
                    expected_calibration_error(&scaled, &labels, ECE_BINS),
                ),
                abstain_rate: under as f64 / n as f64,
                answered_accuracy: right as f64 / answered.max(1) as f64,
            },
        })
    }

    /// [`Calibration::fit`] for a trained run: its own validation and training images, as its
    /// training config split them from `mnist`.
    pub fn fit_run(
        run: &crate::train::Run,
        mnist: &crate::data::Mnist,
        target_abstain: f64,
    ) -> Result<Calibration> {
        let data = crate::train::TrainData::new(mnist, &run.train)?;
        let val = data
            .validation
            .as_ref()
            .ok_or_else(|| Error::invalid("calibration", "the run kept no validation images"))?;
        Calibration::fit(&run.net, val, &data.train, target_abstain)
    }

    /// Reads `dir/calibration.json`; `None` when the run has none.
    pub fn load(dir: impl AsRef<Path>) -> Result<Option<Calibration>> {
        let path = dir.as_ref().join(CALIBRATION_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let c: Calibration = crate::fsutil::read_json(&path)?;
        if !(c.temperature.is_finite() && c.temperature > 0.0) {
            return Err(Error::Checkpoint {
                path,
                reason: format!("temperature {} is not positive", c.temperature),
            });
        }
        let gate = Gate::load(dir.as_ref().join(GATE_DIR))?;
        Ok(Some(Calibration { gate, ..c }))
    }

    /// Writes `dir/calibration.json`, and the gate (when there is one) into `dir/gate/`.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        if let Some(g) = &self.gate {
            g.save(dir.as_ref().join(GATE_DIR))?;
        }
        crate::fsutil::write_json(&dir.as_ref().join(CALIBRATION_FILE), self)
    }

    /// The answer for a preprocessed digit whose logits and penultimate features are
    /// `logits` and `features`, and whose gate score ([`Gate::score`]) is `gate` when the
    /// calibration has a gate.
    pub fn judge(
        &self,
        digit: &Digit,
        logits: &[f32],
        features: &[f32],
        gate: Option<f32>,
    ) -> Answer {
        let probabilities = softmax_rows(logits, self.temperature);
        let mut a = plain_answer(probabilities);
        a.distance = self
            .distance
            .as_ref()
            .filter(|d| d.features == features.len())
            .map(|d| (d.distance(features), d.limit));
        let far = a.distance.filter(|(v, limit)| v > limit);
        let rejected = match (&self.gate, gate) {
            (Some(g), Some(score)) if g.rejects(score) => Some((score, g.fit.floor)),
            _ => None,
        };
        let (why, reason) = if let Some(reason) = self.ink.reject(Ink::of(&digit.pixels)) {
            (Abstention::Ink, reason)
        } else if let Some((score, floor)) = rejected {
            (
                Abstention::NotADigit,
                format!(
                    "not a digit, says the digit gate: {:.0} % like a digit, digits from {:.0} %",
                    100.0 * score,
                    100.0 * floor
                ),
            )
        } else if let Some((v, limit)) = far {
            (
                Abstention::Distance,
                format!(
                    "not like the digits it learned: feature distance {v:.0}, digits up to \
                     {limit:.0}"
                ),
            )
        } else if a.confidence < self.min_confidence {
            (Abstention::Confidence, not_sure(&a))
        } else {
            return a;
        };
        a.abstain = true;
        a.why = Some(why);
        a.reason = Some(reason);
        a
    }
}

fn not_sure(a: &Answer) -> String {
    let p = |d: Option<usize>| d.and_then(|d| a.probabilities.get(d)).copied();
    match (a.digit, a.runner_up, p(a.digit), p(a.runner_up)) {
        (Some(d), Some(r), Some(pd), Some(pr)) => format!(
            "not sure: {d} ({:.0} %) or {r} ({:.0} %)",
            100.0 * pd,
            100.0 * pr
        ),
        _ => "not sure".into(),
    }
}

fn plain_answer(probabilities: Vec<f32>) -> Answer {
    let digit = most_likely(&probabilities);
    let runner_up = probabilities
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != digit)
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i);
    Answer {
        digit: Some(digit),
        confidence: probabilities.get(digit).copied().unwrap_or(0.0),
        probabilities,
        abstain: false,
        reason: None,
        why: None,
        runner_up,
        distance: None,
    }
}

/// The answer of `net` for a preprocessed digit: calibrated and judged when a calibration is
/// given, else the raw softmax with no abstention.
pub fn answer(net: &Network, digit: &Digit, calibration: Option<&Calibration>) -> Result<Answer> {
    let (features, logits) = net.features_and_logits(&digit_input(net, digit)?)?;
    let logits = logits.flatten_all()?.to_vec1::<f32>()?;
    Ok(match calibration {
        Some(c) => {
            let gate = c.gate.as_ref().map(|g| g.score(digit)).transpose()?;
            c.judge(
                digit,
                &logits,
                &features.flatten_all()?.to_vec1::<f32>()?,
                gate,
            )
        }
        None => plain_answer(softmax_rows(&logits, 1.0)),
    })
}

/// Mean negative log-likelihood of `labels` under the logits divided by `temperature`.
fn nll(logits: &[f32], labels: &[u8], temperature: f32) -> f64 {
    let t = f64::from(temperature);
    let mut sum = 0.0;
    for (row, &y) in logits.chunks(NUM_CLASSES).zip(labels) {
        let z: Vec<f64> = row.iter().map(|&v| f64::from(v) / t).collect();
        let m = z.iter().cloned().fold(f64::MIN, f64::max);
        let lse = m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        sum += lse - z.get(usize::from(y)).copied().unwrap_or(m);
    }
    sum / labels.len().max(1) as f64
}

/// The temperature that minimizes the validation negative log-likelihood: golden-section
/// search over its logarithm in `[1/20, 20]` (the likelihood is convex in `1/T`, so the
/// minimum is unique).
pub fn fit_temperature(logits: &[f32], labels: &[u8]) -> Result<f32> {
    if labels.is_empty() || logits.len() != labels.len() * NUM_CLASSES {
        return Err(Error::invalid(
            "temperature fit",
            format!("{} logits for {} labels", logits.len(), labels.len()),
        ));
    }
    let f = |log_t: f64| nll(logits, labels, log_t.exp() as f32);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = ((1.0f64 / 20.0).ln(), 20f64.ln());
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..60 {
        if fc < fd {
            (b, d, fd) = (d, c, fc);
            c = b - g * (b - a);
            fc = f(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    Ok((((a + b) / 2.0).exp()) as f32)
}

/// Expected calibration error: the confidence-weighted gap between confidence and accuracy
/// over `bins` equal-width confidence bins (Naeini et al. 2015, as in Guo et al. 2017).
///
/// ```
/// use mnist_kit::analysis::expected_calibration_error;
/// // Two images, both answered with confidence 0.9; one right: |0.9 - 0.5| = 0.4.
/// let mut p = vec![0.01f32; 20];
/// p[3] = 0.91; p[10 + 3] = 0.91;
/// let ece = expected_calibration_error(&p, &[3, 4], 15);
/// assert!((ece - 0.41).abs() < 1e-6);
/// ```
pub fn expected_calibration_error(probabilities: &[f32], labels: &[u8], bins: usize) -> f64 {
    let bins = bins.max(1);
    let mut conf_sum = vec![0f64; bins];
    let mut right = vec![0usize; bins];
    let mut count = vec![0usize; bins];
    for (p, &y) in probabilities.chunks(NUM_CLASSES).zip(labels) {
        let d = most_likely(p);
        let c = f64::from(p[d]);
        let b = ((c * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        conf_sum[b] += c;
        count[b] += 1;
        right[b] += usize::from(d == usize::from(y));
    }
    let n: usize = count.iter().sum();
    if n == 0 {
        return 0.0;
    }
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| (conf_sum[b] - right[b] as f64).abs() / n as f64)
        .sum()
}

/// How a calibrated model answers one set of images: digits it should read, or non-digits
/// it should refuse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbstentionRow {
    /// The set (`mnist-test`, `real-digits`, `non-digits`).
    pub set: String,
    /// Its subset (`all`, or a folder of the set).
    pub subset: String,
    /// Images.
    pub n: usize,
    /// Share abstained.
    pub abstain_rate: f64,
    /// Share read correctly and not abstained (digits only; an abstention counts as wrong).
    pub accuracy: Option<f64>,
    /// Expected calibration error of the calibrated probabilities (digits only).
    pub ece: Option<f64>,
    /// Abstentions by kind.
    pub why: std::collections::BTreeMap<Abstention, usize>,
}

impl AbstentionRow {
    /// Why it abstained, in words: `kind count` for each kind, comma-separated.
    pub fn reasons(&self) -> String {
        let why: Vec<String> = self
            .why
            .iter()
            .map(|(k, n)| format!("{} {n}", k.label()))
            .collect();
        why.join(", ")
    }

    /// The row of `answers` (with `labels` for digits).
    pub fn of(set: &str, subset: &str, answers: &[Answer], labels: Option<&[u8]>) -> Self {
        let n = answers.len().max(1) as f64;
        let abstained = answers.iter().filter(|a| a.abstain).count();
        let (accuracy, ece) = match labels {
            Some(labels) => {
                let right = answers
                    .iter()
                    .zip(labels)
                    .filter(|(a, y)| !a.abstain && a.digit == Some(usize::from(**y)))
                    .count();
                let (probs, ys): (Vec<&[f32]>, Vec<u8>) = answers
                    .iter()
                    .zip(labels)
                    .filter(|(a, _)| a.probabilities.len() == NUM_CLASSES)
                    .map(|(a, y)| (a.probabilities.as_slice(), *y))
                    .unzip();
                (
                    Some(right as f64 / n),
                    Some(expected_calibration_error(&probs.concat(), &ys, ECE_BINS)),
                )
            }
            None => (None, None),
        };
        let mut why = std::collections::BTreeMap::new();
        for w in answers.iter().filter_map(|a| a.why) {
            *why.entry(w).or_insert(0) += 1;
        }
        AbstentionRow {
            why,
            set: set.into(),
            subset: subset.into(),
            n: answers.len(),
            abstain_rate: abstained as f64 / n,
            accuracy,
            ece,
        }
    }
}

/// What [`measure`] reads besides the MNIST test set.
#[derive(Debug, Clone, Default)]
pub struct Measure {
    /// Also every MNIST-C corruption of the test set (15 x 10,000 images).
    pub mnist_c: bool,
    /// The real-world digits' directory (default: [`RealDigits::locate`]).
    pub real_digits: Option<std::path::PathBuf>,
    /// The non-digits' directory (default: `data/non-digits`, see [`non_digit_files`]).
    pub non_digits: Option<std::path::PathBuf>,
}

/// How `net` with `calibration` answers: the MNIST test set, (when asked) each MNIST-C
/// corruption, the real-world digits (all, then each subset) and the non-digits (all, then
/// each subset): one [`AbstentionRow`] each.
pub fn measure(
    net: &Network,
    calibration: &Calibration,
    mnist: &crate::data::Mnist,
    what: Measure,
) -> Result<Vec<AbstentionRow>> {
    use crate::data::corrupt::{Corruption, DEFAULT_SEED, corrupt_split};
    let labels = mnist.test.labels();
    let on_split = |split: &Split| answer_split(net, split, calibration);
    let mut rows = vec![AbstentionRow::of(
        "mnist-test",
        "all",
        &on_split(&mnist.test)?,
        Some(&labels),
    )];
    if what.mnist_c {
        // All 15 pooled first, then each corruption.
        let mut each = Vec::with_capacity(Corruption::ALL.len());
        let (mut pooled, mut pooled_labels) = (Vec::new(), Vec::new());
        for k in Corruption::ALL {
            let answers = on_split(&corrupt_split(&mnist.test, k, DEFAULT_SEED)?)?;
            each.push(AbstentionRow::of(
                "mnist-c",
                k.name(),
                &answers,
                Some(&labels),
            ));
            pooled.extend(answers);
            pooled_labels.extend_from_slice(&labels);
        }
        rows.push(AbstentionRow::of(
            "mnist-c",
            "all",
            &pooled,
            Some(&pooled_labels),
        ));
        rows.extend(each);
    }
    let real = match &what.real_digits {
        Some(d) => RealDigits::load(d)?,
        None => RealDigits::load_default()?,
    };
    let mut real_answers = Vec::with_capacity(real.len());
    for d in &real.digits {
        real_answers.push((
            d.subset.clone(),
            answer(net, &d.digit, Some(calibration))?,
            Some(d.label),
        ));
    }
    rows.extend(grouped_rows("real-digits", &real_answers));
    let mut non = Vec::new();
    for (subset, path) in non_digit_files(what.non_digits.as_deref())? {
        non.push((subset, answer_file(net, &path, Some(calibration))?, None));
    }
    rows.extend(grouped_rows("non-digits", &non));
    Ok(rows)
}

/// The rows of [`measure`] as a table: set, subset, images, abstained %, read right % (an
/// abstention counts as wrong), ECE %, and why it abstained.
pub fn abstention_table(rows: &[AbstentionRow]) -> Result<crate::display::Table> {
    use polars::prelude::{Column, DataFrame};
    let pct = |v: Option<f64>| v.map(|v| 100.0 * v);
    let cols = vec![
        Column::new(
            "set".into(),
            rows.iter().map(|r| r.set.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "subset".into(),
            rows.iter().map(|r| r.subset.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "images".into(),
            rows.iter().map(|r| r.n as u64).collect::<Vec<_>>(),
        ),
        Column::new(
            "abstained %".into(),
            rows.iter()
                .map(|r| 100.0 * r.abstain_rate)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "read right %".into(),
            rows.iter().map(|r| pct(r.accuracy)).collect::<Vec<_>>(),
        ),
        Column::new(
            "ECE %".into(),
            rows.iter().map(|r| pct(r.ece)).collect::<Vec<_>>(),
        ),
        Column::new(
            "abstained because".into(),
            rows.iter().map(AbstentionRow::reasons).collect::<Vec<_>>(),
        ),
    ];
    Ok(crate::display::Table::new(
        "how the model answers, abstaining where it should",
        DataFrame::new_infer_height(cols)?,
    ))
}

/// Rows for `set`: all its answers, then each subset's (in the order they come).
fn grouped_rows(set: &str, answers: &[(String, Answer, Option<u8>)]) -> Vec<AbstentionRow> {
    let row = |subset: &str, part: Vec<&(String, Answer, Option<u8>)>| {
        let a: Vec<Answer> = part.iter().map(|x| x.1.clone()).collect();
        let labels: Option<Vec<u8>> = part.iter().map(|x| x.2).collect();
        AbstentionRow::of(set, subset, &a, labels.as_deref())
    };
    let mut subsets: Vec<&str> = Vec::new();
    for (s, _, _) in answers {
        if !subsets.contains(&s.as_str()) {
            subsets.push(s);
        }
    }
    let mut rows = vec![row("all", answers.iter().collect())];
    for s in subsets {
        rows.push(row(s, answers.iter().filter(|x| x.0 == s).collect()));
    }
    rows
}

/// Answers for every image of `split` (MNIST-style digits, already 28x28).
pub fn answer_split(
    net: &Network,
    split: &Split,
    calibration: &Calibration,
) -> Result<Vec<Answer>> {
    let (logits, features, width) = split_outputs(net, split)?;
    let gate = match &calibration.gate {
        Some(g) => g.scores(split)?.into_iter().map(Some).collect(),
        None => vec![None; split.len()],
    };
    Ok(split
        .iter()
        .zip(logits.chunks(NUM_CLASSES))
        .zip(features.chunks(width.max(1)))
        .zip(gate)
        .map(|((((img, _), l), f), g)| {
            let digit = Digit {
                pixels: unit_pixels(img),
                inverted: false,
            };
            calibration.judge(&digit, l, f, g)
        })
        .collect())
}

/// An image file of `data/non-digits/` (or a real digit), read through the kit's
/// preprocessing: the answer, with a blank image abstained.
pub fn answer_file(
    net: &Network,
    path: &Path,
    calibration: Option<&Calibration>,
) -> Result<Answer> {
    match super::custom_digit::load_digit(path) {
        Ok(d) => answer(net, &d, calibration),
        Err(Error::Blank { reason, .. }) => Ok(Answer::blank(format!("blank: {reason}"))),
        Err(e) => Err(e),
    }
}

/// Environment variable naming the directory of the non-digits.
pub const NON_DIGITS_ENV: &str = "MNIST_KIT_NON_DIGITS";

/// The images of the non-digit set (`data/non-digits/<subset>/*.png`, see its `build.py`), as
/// `(subset, path)` sorted by subset and name; the directory is `$MNIST_KIT_NON_DIGITS`, else
/// `data/non-digits` here or above.
pub fn non_digit_files(dir: Option<&Path>) -> Result<Vec<(String, std::path::PathBuf)>> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => crate::data::find_up(NON_DIGITS_ENV, "data/non-digits")?,
    };
    let mut out = Vec::new();
    for sub in sorted_entries(&dir)?.into_iter().filter(|p| p.is_dir()) {
        let name = file_name(&sub);
        for f in sorted_entries(&sub)? {
            if f.extension().is_some_and(|e| e == "png" || e == "jpg") {
                out.push((name.clone(), f));
            }
        }
    }
    if out.is_empty() {
        return Err(Error::invalid(
            "non-digits",
            format!("{}: no <subset>/*.png files", dir.display()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ink_counts_above_the_border_level() {
        let mut px = vec![0.3f32; SIDE * SIDE]; // an evenly brighter image
        for r in 5..20 {
            px[r * SIDE + 14] = 1.0; // a stroke of 15 pixels
        }
        assert_eq!(Ink::of(&px).coverage, 15.0 / 784.0);
        let limit = InkRange { max_coverage: 0.3 };
        assert!(limit.reject(Ink::of(&px)).is_none());
        assert!(
            limit
                .reject(Ink { coverage: 0.5 })
                .unwrap()
                .contains("too much ink")
        );
    }

    #[test]
    fn whitening_inverts_the_cholesky_factor() {
        // Sigma = [[4, 2], [2, 3]]: L = [[2, 0], [1, sqrt 2]].
        let l = cholesky(&[4.0, 0.0, 2.0, 3.0], 2).unwrap();
        assert!((l[0] - 2.0).abs() < 1e-12 && (l[2] - 1.0).abs() < 1e-12);
        assert!((l[3] - 2f64.sqrt()).abs() < 1e-12);
        let w = lower_inverse(&l, 2);
        // W L = I
        let wl = |i: usize, j: usize| (0..2).map(|k| w[i * 2 + k] * l[k * 2 + j]).sum::<f64>();
        for (i, j, want) in [(0, 0, 1.0), (0, 1, 0.0), (1, 0, 0.0), (1, 1, 1.0)] {
            assert!((wl(i, j) - want).abs() < 1e-12);
        }
        assert!(
            cholesky(&[1.0, 0.0, 2.0, 1.0], 2).is_err(),
            "not positive definite"
        );
    }

    #[test]
    fn temperature_undoes_a_known_scale() {
        // Logits of a calibrated model (probabilities match the labels' frequencies) multiplied
        // by 3: the fit must find a temperature near 3.
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for i in 0..2000u32 {
            let mut row = [0f32; NUM_CLASSES];
            row[0] = 3.0 * 1.5; // p(class 0) = e^1.5 / (e^1.5 + 9) = 0.332 before scaling
            logits.extend(row);
            // class 0 in 332 of 1000 cases, else spread over the rest
            labels.push(if i % 1000 < 332 { 0 } else { 1 + (i % 9) as u8 });
        }
        let t = fit_temperature(&logits, &labels).unwrap();
        assert!((t - 3.0).abs() < 0.05, "{t}");
    }
}
