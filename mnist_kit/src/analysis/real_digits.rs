//! Digits that are not MNIST: the kit's small real-world set in `data/real-digits/` (printed
//! typefaces, handwriting typefaces, photo-like shots of them, and digits drawn with the mouse
//! on the `mnist-kit serve` page, see `data/real-digits/build.py`; and real handwriting of the
//! UCI optical digits, 8x8 scans of forms filled in by people, see `data/real-digits/uci.py`),
//! read through the same preprocessing as a user's own image.
//!
//! ```no_run
//! use mnist_kit::analysis::real_digits::RealDigits;
//! use mnist_kit::train::Run;
//! let set = RealDigits::load_default()?;
//! let net = Run::open("results/models/robust")?.net;
//! for s in set.score(&net)?.subsets {
//!     println!("{}: {:.1}% of {}", s.subset, 100.0 * s.accuracy, s.n);
//! }
//! # Ok::<(), mnist_kit::Error>(())
//! ```

use std::path::{Path, PathBuf};

use candle_core::{D, Tensor};
use serde::{Deserialize, Serialize};

use super::custom_digit::{Digit, digit_input, load_digit, most_likely};
use crate::display::Table;
use crate::models::{Model, Network};
use crate::{Error, Result};

/// Environment variable naming the directory of the real-world digits.
pub const REAL_DIGITS_ENV: &str = "MNIST_KIT_REAL_DIGITS";

/// One image of the set.
#[derive(Debug, Clone)]
pub struct RealDigit {
    /// Its subset (the folder): `printed`, `handwriting`, `photo`, `drawn` or `uci`.
    pub subset: String,
    /// Where it comes from (the typeface, or `drawn-N`).
    pub source: String,
    /// The digit it shows.
    pub label: u8,
    /// Its file.
    pub path: PathBuf,
    /// The 28x28 input after the kit's preprocessing.
    pub digit: Digit,
}

/// The set, every image preprocessed.
#[derive(Debug, Clone)]
pub struct RealDigits {
    /// The images, sorted by subset and file name.
    pub digits: Vec<RealDigit>,
}

/// Accuracy on one subset (or on all of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubsetScore {
    /// Subset name, or `all`.
    pub subset: String,
    /// Images.
    pub n: usize,
    /// Read correctly.
    pub correct: usize,
    /// `correct / n`.
    pub accuracy: f64,
}

/// How a network reads the set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RealDigitsScore {
    /// Every image together.
    pub all: SubsetScore,
    /// Per subset, in name order.
    pub subsets: Vec<SubsetScore>,
    /// The predicted digit of each image, in set order.
    pub predictions: Vec<u8>,
}

impl RealDigits {
    /// Where the set is: `$MNIST_KIT_REAL_DIGITS`, else `data/real-digits` in the current
    /// directory or one above it, else the one beside the crate.
    pub fn locate() -> Result<PathBuf> {
        crate::data::find_up(REAL_DIGITS_ENV, "data/real-digits")
    }

    /// [`RealDigits::load`] from [`RealDigits::locate`].
    pub fn load_default() -> Result<Self> {
        Self::load(Self::locate()?)
    }

    /// Reads every `<subset>/<digit>_<source>.<png|jpg>` under `dir`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let mut digits = Vec::new();
        for subset in sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()) {
            let name = file_name(&subset);
            for path in sorted_entries(&subset)? {
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("");
                let Some((label, source)) = stem.split_once('_') else {
                    continue;
                };
                let Ok(label) = label.parse::<u8>() else {
                    continue;
                };
                if label > 9 || !matches!(ext, "png" | "jpg" | "jpeg") {
                    continue;
                }
                digits.push(RealDigit {
                    subset: name.clone(),
                    source: source.to_string(),
                    label,
                    digit: load_digit(&path)?,
                    path,
                });
            }
        }
        if digits.is_empty() {
            return Err(Error::invalid(
                "real digits",
                format!("{}: no <subset>/<digit>_<source>.png files", dir.display()),
            ));
        }
        Ok(RealDigits { digits })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.digits.len()
    }

    /// True when empty (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.digits.is_empty()
    }

    /// The subset names, sorted.
    pub fn subsets(&self) -> Vec<String> {
        let mut s: Vec<String> = self.digits.iter().map(|d| d.subset.clone()).collect();
        s.dedup();
        s
    }

    /// How `net` (evaluation mode) reads every image, in batches.
    pub fn score(&self, net: &Network) -> Result<RealDigitsScore> {
        let mut predictions = Vec::with_capacity(self.len());
        for chunk in self.digits.chunks(256) {
            let inputs = chunk
                .iter()
                .map(|d| digit_input(net, &d.digit))
                .collect::<Result<Vec<_>>>()?;
            let logits = net.forward_t(&Tensor::cat(&inputs, 0)?, false)?;
            let probs = candle_nn::ops::softmax(&logits, D::Minus1)?.to_vec2::<f32>()?;
            predictions.extend(probs.iter().map(|p| most_likely(p) as u8));
        }
        let tally = |subset: Option<&str>| {
            let (mut n, mut correct) = (0, 0);
            for (d, &p) in self.digits.iter().zip(&predictions) {
                if subset.is_none_or(|s| s == d.subset) {
                    n += 1;
                    correct += usize::from(p == d.label);
                }
            }
            SubsetScore {
                subset: subset.unwrap_or("all").to_string(),
                n,
                correct,
                accuracy: correct as f64 / n.max(1) as f64,
            }
        };
        Ok(RealDigitsScore {
            all: tally(None),
            subsets: self.subsets().iter().map(|s| tally(Some(s))).collect(),
            predictions,
        })
    }
    /// Every model of `models` (a name and a network) on the set: one row per model, its
    /// accuracy on each subset and on all (percent).
    pub fn score_table(&self, models: &[(&str, &Network)]) -> Result<Table> {
        let scores = models
            .iter()
            .map(|(n, net)| Ok((n.to_string(), self.score(net)?)))
            .collect::<Result<Vec<_>>>()?;
        self.scores_table(&scores)
    }

    /// [`RealDigits::score_table`] of scores already made (a name and a [`RealDigits::score`]
    /// each), so a notebook can table them and write about them without scoring twice.
    pub fn scores_table(&self, scores: &[(String, RealDigitsScore)]) -> Result<Table> {
        let subsets = self.subsets();
        let mut rows: Vec<Vec<f64>> = vec![Vec::new(); subsets.len() + 1];
        for (_, score) in scores {
            for (col, s) in rows
                .iter_mut()
                .zip(score.subsets.iter().chain([&score.all]))
            {
                col.push(100.0 * s.accuracy);
            }
        }
        let mut cols = vec![polars::prelude::Column::new(
            "model".into(),
            scores.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        )];
        let counts = subsets
            .iter()
            .map(|s| self.digits.iter().filter(|d| &d.subset == s).count())
            .chain([self.len()]);
        let names = subsets.iter().map(String::as_str).chain(["all"]);
        for ((name, n), values) in names.zip(counts).zip(rows) {
            cols.push(polars::prelude::Column::new(
                format!("{name} ({n}) %").into(),
                values,
            ));
        }
        Ok(Table::new(
            "accuracy on the real-world digits",
            polars::prelude::DataFrame::new_infer_height(cols)?,
        ))
    }
}

/// The entries of `dir`, sorted by path.
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

/// The last component of `p`, lossily as text.
pub(crate) fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
