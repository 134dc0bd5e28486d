//! Confusion matrix, per-class precision/recall/F1 and the most confused pairs, as data, polars
//! DataFrames and HTML.

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::NUM_CLASSES;
use crate::train::Evaluation;
use crate::{Error, Result};

/// Counts of (true digit, predicted digit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// `counts[true][predicted]`.
    pub counts: [[u64; NUM_CLASSES]; NUM_CLASSES],
}

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// The digit.
    pub class: u8,
    /// Of the samples predicted as this digit, the fraction that are it.
    pub precision: f64,
    /// Of the samples of this digit, the fraction predicted as it.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Samples of this digit.
    pub support: u64,
}

/// One off-diagonal cell: how often `truth` was predicted as `predicted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusedPair {
    /// True digit.
    pub truth: u8,
    /// Predicted digit.
    pub predicted: u8,
    /// Number of such mistakes.
    pub count: u64,
}

impl ConfusionMatrix {
    /// Builds the matrix from true and predicted labels (equal lengths, digits 0-9).
    pub fn new(labels: &[u8], predictions: &[u8]) -> Result<Self> {
        if labels.len() != predictions.len() {
            return Err(Error::invalid(
                "confusion matrix",
                format!(
                    "{} labels but {} predictions",
                    labels.len(),
                    predictions.len()
                ),
            ));
        }
        let mut counts = [[0u64; NUM_CLASSES]; NUM_CLASSES];
        for (&t, &p) in labels.iter().zip(predictions) {
            if t as usize >= NUM_CLASSES || p as usize >= NUM_CLASSES {
                return Err(Error::invalid(
                    "confusion matrix",
                    format!("label {t} / prediction {p} is not a digit"),
                ));
            }
            counts[t as usize][p as usize] += 1;
        }
        Ok(ConfusionMatrix { counts })
    }

    /// From an [`Evaluation`].
    pub fn of(e: &Evaluation) -> Result<Self> {
        Self::new(&e.labels, &e.predictions)
    }

    /// Total samples.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Fraction on the diagonal.
    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..NUM_CLASSES).map(|i| self.counts[i][i]).sum();
        ratio(correct, self.total())
    }

    /// Each row divided by its sum (recall per cell); rows without samples stay zero.
    pub fn normalized(&self) -> [[f64; NUM_CLASSES]; NUM_CLASSES] {
        let mut out = [[0.0; NUM_CLASSES]; NUM_CLASSES];
        for (t, row) in self.counts.iter().enumerate() {
            let sum: u64 = row.iter().sum();
            for (p, &c) in row.iter().enumerate() {
                out[t][p] = ratio(c, sum);
            }
        }
        out
    }

    /// Precision, recall, F1 and support per digit.
    pub fn class_metrics(&self) -> Vec<ClassMetrics> {
        (0..NUM_CLASSES)
            .map(|c| {
                let tp = self.counts[c][c];
                let predicted: u64 = (0..NUM_CLASSES).map(|t| self.counts[t][c]).sum();
                let support: u64 = self.counts[c].iter().sum();
                let precision = ratio(tp, predicted);
                let recall = ratio(tp, support);
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassMetrics {
                    class: c as u8,
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect()
    }

    /// The `k` largest off-diagonal cells, largest first (ties: by true, then predicted digit).
    pub fn most_confused(&self, k: usize) -> Vec<ConfusedPair> {
        let mut pairs: Vec<ConfusedPair> = (0..NUM_CLASSES)
            .flat_map(|t| (0..NUM_CLASSES).map(move |p| (t, p)))
            .filter(|&(t, p)| t != p && self.counts[t][p] > 0)
            .map(|(t, p)| ConfusedPair {
                truth: t as u8,
                predicted: p as u8,
                count: self.counts[t][p],
            })
            .collect();
        pairs.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.truth.cmp(&b.truth))
                .then(a.predicted.cmp(&b.predicted))
        });
        pairs.truncate(k);
        pairs
    }

    /// Counts as a DataFrame: column `true` and one column per predicted digit.
    pub fn to_dataframe(&self) -> Result<DataFrame> {
        let mut cols = vec![Column::new(
            "true".into(),
            (0..NUM_CLASSES as u32).collect::<Vec<_>>(),
        )];
        for p in 0..NUM_CLASSES {
            cols.push(Column::new(
                format!("pred_{p}").into(),
                self.counts.iter().map(|r| r[p]).collect::<Vec<_>>(),
            ));
        }
        Ok(DataFrame::new_infer_height(cols)?)
    }

    /// Per-class metrics as a DataFrame.
    pub fn metrics_dataframe(&self) -> Result<DataFrame> {
        let m = self.class_metrics();
        Ok(DataFrame::new_infer_height(vec![
            Column::new(
                "class".into(),
                m.iter().map(|c| c.class as u32).collect::<Vec<_>>(),
            ),
            Column::new(
                "precision".into(),
                m.iter().map(|c| c.precision).collect::<Vec<_>>(),
            ),
            Column::new(
                "recall".into(),
                m.iter().map(|c| c.recall).collect::<Vec<_>>(),
            ),
            Column::new("f1".into(), m.iter().map(|c| c.f1).collect::<Vec<_>>()),
            Column::new(
                "support".into(),
                m.iter().map(|c| c.support).collect::<Vec<_>>(),
            ),
        ])?)
    }

    /// Most confused pairs as a DataFrame.
    pub fn confused_dataframe(&self, k: usize) -> Result<DataFrame> {
        let p = self.most_confused(k);
        Ok(DataFrame::new_infer_height(vec![
            Column::new(
                "true".into(),
                p.iter().map(|c| c.truth as u32).collect::<Vec<_>>(),
            ),
            Column::new(
                "predicted".into(),
                p.iter().map(|c| c.predicted as u32).collect::<Vec<_>>(),
            ),
            Column::new(
                "count".into(),
                p.iter().map(|c| c.count).collect::<Vec<_>>(),
            ),
        ])?)
    }

    /// An HTML table with row-normalized shading.
    pub fn to_html(&self) -> String {
        let norm = self.normalized();
        let mut h = format!(
            "<table><caption>confusion matrix ({} samples, accuracy {:.2}%; rows: true, columns: predicted)</caption><tr><th></th>",
            self.total(),
            100.0 * self.accuracy()
        );
        for p in 0..NUM_CLASSES {
            h.push_str(&format!("<th>{p}</th>"));
        }
        h.push_str("</tr>");
        for (t, (row, counts)) in norm.iter().zip(&self.counts).enumerate() {
            h.push_str(&format!("<tr><th>{t}</th>"));
            for (p, (&rate, &count)) in row.iter().zip(counts).enumerate() {
                // Diagonal in blue by recall; mistakes in red, visible from 5% of the row.
                let (color, alpha) = if t == p {
                    ("40,120,200", rate * 0.5)
                } else {
                    ("220,60,60", (rate * 20.0).min(1.0))
                };
                h.push_str(&format!(
                    "<td style=\"text-align:right;background:rgba({color},{alpha:.2})\">{count}</td>"
                ));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
        h
    }

    /// Shows the matrix in an evcxr notebook.
    pub fn evcxr_display(&self) {
        crate::display::html(&self.to_html());
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_a_hand_computed_case() {
        // truth:      0 0 0 1 1 2
        // predicted:  0 0 1 1 2 2
        let m = ConfusionMatrix::new(&[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2]).unwrap();
        assert_eq!(m.counts[0][0], 2);
        assert_eq!(m.counts[0][1], 1);
        assert!((m.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        let c = m.class_metrics();
        // class 0: tp 2, predicted 2, support 3
        assert!((c[0].precision - 1.0).abs() < 1e-12 && (c[0].recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((c[0].f1 - 0.8).abs() < 1e-12);
        // class 1: tp 1, predicted 2 (one from 0), support 2
        assert!((c[1].precision - 0.5).abs() < 1e-12 && (c[1].recall - 0.5).abs() < 1e-12);
        // class 2: tp 1, predicted 2, support 1
        assert!((c[2].precision - 0.5).abs() < 1e-12 && (c[2].recall - 1.0).abs() < 1e-12);
        assert_eq!(c[3].support, 0);
        assert_eq!(m.normalized()[0][1], 1.0 / 3.0);
        let pairs = m.most_confused(5);
        assert_eq!(pairs.len(), 2);
        assert_eq!(
            (pairs[0].truth, pairs[0].predicted, pairs[0].count),
            (0, 1, 1)
        );
        assert_eq!(m.to_dataframe().unwrap().shape(), (10, 11));
        assert_eq!(m.metrics_dataframe().unwrap().height(), 10);
        assert!(ConfusionMatrix::new(&[0], &[]).is_err());
        assert!(ConfusionMatrix::new(&[10], &[0]).is_err());
    }
}
