//! Prediction analysis: top-k probabilities, the most confident mistakes and the least
//! confident correct answers of an [`Evaluation`].

use serde::{Deserialize, Serialize};

use crate::train::Evaluation;

/// One sample's prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Position of the sample in the evaluated split.
    pub index: usize,
    /// True digit.
    pub label: u8,
    /// Predicted digit.
    pub predicted: u8,
    /// Probability of the predicted digit.
    pub confidence: f32,
    /// Probability given to the true digit.
    pub true_probability: f32,
    /// The `k` most probable digits with their probabilities, most probable first.
    pub top: Vec<(u8, f32)>,
}

/// Prediction of sample `index` with its `k` most probable digits.
pub fn prediction(e: &Evaluation, index: usize, k: usize) -> Option<Prediction> {
    let probs = e.probs(index)?;
    let mut order: Vec<(u8, f32)> = probs
        .iter()
        .enumerate()
        .map(|(d, &p)| (d as u8, p))
        .collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let label = *e.labels.get(index)?;
    let predicted = *e.predictions.get(index)?;
    Some(Prediction {
        index,
        label,
        predicted,
        confidence: probs.get(predicted as usize).copied().unwrap_or(0.0),
        true_probability: probs.get(label as usize).copied().unwrap_or(0.0),
        top: order.into_iter().take(k).collect(),
    })
}

/// The `n` wrong predictions made with the highest confidence, most confident first.
pub fn most_confident_mistakes(e: &Evaluation, n: usize) -> Vec<Prediction> {
    ranked(e, n, |p| p.label != p.predicted, |a, b| b.total_cmp(a))
}

/// The `n` correct predictions made with the lowest confidence, least confident first.
pub fn least_confident_correct(e: &Evaluation, n: usize) -> Vec<Prediction> {
    ranked(e, n, |p| p.label == p.predicted, |a, b| a.total_cmp(b))
}

/// The first `n` predictions that `keep` accepts, ordered by confidence (ties by index).
fn ranked(
    e: &Evaluation,
    n: usize,
    keep: impl Fn(&Prediction) -> bool,
    order: impl Fn(&f32, &f32) -> std::cmp::Ordering,
) -> Vec<Prediction> {
    let mut picked: Vec<Prediction> = (0..e.len())
        .filter_map(|i| prediction(e, i, 3))
        .filter(|p| keep(p))
        .collect();
    picked.sort_by(|a, b| order(&a.confidence, &b.confidence).then(a.index.cmp(&b.index)));
    picked.truncate(n);
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval() -> Evaluation {
        let mut probabilities = Vec::new();
        // sample 0: true 1, predicted 1 at 0.9; sample 1: true 2, predicted 7 at 0.8;
        // sample 2: true 3, predicted 3 at 0.5; sample 3: true 4, predicted 9 at 0.6.
        for (pred, conf) in [(1, 0.9f32), (7, 0.8), (3, 0.5), (9, 0.6)] {
            let mut p = vec![(1.0 - conf) / 9.0; 10];
            p[pred] = conf;
            probabilities.extend(p);
        }
        Evaluation {
            split: "t".into(),
            loss: 0.0,
            accuracy: 0.5,
            predictions: vec![1, 7, 3, 9],
            labels: vec![1, 2, 3, 4],
            probabilities,
        }
    }

    #[test]
    fn mistakes_and_doubts_are_ranked() {
        let e = eval();
        let m = most_confident_mistakes(&e, 5);
        assert_eq!(m.iter().map(|p| p.index).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!((m[0].label, m[0].predicted), (2, 7));
        assert!((m[0].confidence - 0.8).abs() < 1e-6);
        let c = least_confident_correct(&e, 1);
        assert_eq!(c[0].index, 2);
        let p = prediction(&e, 0, 2).unwrap();
        assert_eq!(p.top[0].0, 1);
        assert_eq!(p.top.len(), 2);
        assert!(prediction(&e, 4, 3).is_none());
    }
}
