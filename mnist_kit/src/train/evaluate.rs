//! Evaluation of a network on a split, in batches, never dropping a sample.

use candle_core::{D, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::{BatchOptions, NUM_CLASSES, Split};
use crate::models::{Model, Network};
use crate::{Error, Result};

/// Loss, accuracy and per-sample outputs of a network on a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Name of the split.
    pub split: String,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction of correct predictions.
    pub accuracy: f64,
    /// Predicted digit per sample, in split order.
    pub predictions: Vec<u8>,
    /// True digit per sample.
    pub labels: Vec<u8>,
    /// Softmax probabilities, `10` per sample, row-major.
    pub probabilities: Vec<f32>,
}

impl Evaluation {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// True for an empty split.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// The 10 probabilities of sample `i`.
    pub fn probs(&self, i: usize) -> Option<&[f32]> {
        self.probabilities
            .get(i * NUM_CLASSES..(i + 1) * NUM_CLASSES)
    }
    /// An HTML line for notebooks.
    pub fn to_html(&self) -> String {
        format!(
            "<p><b>{}</b>: accuracy <b>{:.2}%</b>, loss {:.4}, {} samples, {} errors</p>",
            crate::display::esc(&self.split),
            100.0 * self.accuracy,
            self.loss,
            self.len(),
            self.labels
                .iter()
                .zip(&self.predictions)
                .filter(|(a, b)| a != b)
                .count()
        )
    }

    /// Shows the evaluation in an evcxr notebook.
    pub fn evcxr_display(&self) {
        crate::display::html(&self.to_html());
    }
}

/// Images per evaluation batch where no training config says otherwise.
pub const EVAL_BATCH: usize = 1000;

/// Evaluates `net` (evaluation mode, its own input normalization) on every sample of `split`.
pub fn evaluate(net: &Network, split: &Split) -> Result<Evaluation> {
    evaluate_in_batches(net, split, EVAL_BATCH)
}

/// [`evaluate`] in batches of `batch_size` (a training config's evaluation batch: the
/// predictions do not depend on it; the mean loss's last bits do).
pub(crate) fn evaluate_in_batches(
    net: &Network,
    split: &Split,
    batch_size: usize,
) -> Result<Evaluation> {
    let opts = BatchOptions {
        batch_size,
        shuffle: false,
        seed: 0,
    };
    // On a rayon worker (a no-op when already on one, as in training): the kernels' parallel
    // loops then share work with the other workers directly instead of waking the pool from
    // outside once per op. Single forwards (a served request) are better off on their own
    // thread, so `forward_t` does not do this itself.
    rayon::scope(|_| evaluate_batches(net, split, opts))
}

fn evaluate_batches(net: &Network, split: &Split, opts: BatchOptions) -> Result<Evaluation> {
    let device = net.device().clone();
    let mut loss_sum = 0f64;
    let mut correct = 0usize;
    let mut predictions = Vec::with_capacity(split.len());
    let mut labels = Vec::with_capacity(split.len());
    let mut probabilities = Vec::with_capacity(split.len() * NUM_CLASSES);
    for batch in split.batches(net.input_spec(), opts, 0, &device)? {
        let batch = batch?;
        let logits = net.forward_t(&batch.images, false)?;
        let l = candle_nn::loss::cross_entropy(&logits, &batch.labels)?.to_scalar::<f32>()?;
        let (c, p) = correct_and_predictions(&logits, &batch.labels)?;
        loss_sum += f64::from(l) * batch.positions.len() as f64;
        correct += c;
        predictions.extend(p);
        labels.extend(batch.labels.to_vec1::<u32>()?.into_iter().map(|v| v as u8));
        let probs = candle_nn::ops::softmax(&logits, D::Minus1)?;
        probabilities.extend(probs.flatten_all()?.to_vec1::<f32>()?);
    }
    let n = split.len();
    if n == 0 {
        return Err(Error::invalid(
            "evaluation",
            format!("split {} is empty", split.name()),
        ));
    }
    Ok(Evaluation {
        split: split.name().to_string(),
        loss: loss_sum / n as f64,
        accuracy: correct as f64 / n as f64,
        predictions,
        labels,
        probabilities,
    })
}

/// Number correct and predictions of one batch of logits (the loss is the caller's: training
/// already has it as the tensor it backpropagates).
pub(crate) fn correct_and_predictions(
    logits: &Tensor,
    labels: &Tensor,
) -> Result<(usize, Vec<u8>)> {
    let pred = logits.argmax(D::Minus1)?;
    let correct = pred
        .eq(labels)?
        .to_dtype(candle_core::DType::U32)?
        .sum_all()?
        .to_scalar::<u32>()? as usize;
    let pred = pred
        .to_vec1::<u32>()?
        .into_iter()
        .map(|v| v as u8)
        .collect();
    Ok((correct, pred))
}

/// The logits (10 per image) and penultimate features (`width` per image) of `net` on every
/// image of `split`, row-major: `(logits, features, width)`.
pub fn split_outputs(net: &Network, split: &Split) -> Result<(Vec<f32>, Vec<f32>, usize)> {
    let opts = BatchOptions {
        batch_size: EVAL_BATCH,
        shuffle: false,
        seed: 0,
    };
    rayon::scope(|_| {
        let mut logits = Vec::with_capacity(split.len() * NUM_CLASSES);
        let mut features = Vec::new();
        let mut width = 0;
        for batch in split.batches(net.input_spec(), opts, 0, &Device::Cpu)? {
            let (f, l) = net.features_and_logits(&batch?.images)?;
            width = f.dim(1)?;
            logits.extend(l.flatten_all()?.to_vec1::<f32>()?);
            features.extend(f.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok((logits, features, width))
    })
}

/// The largest probability of each row of ten (the confidence of each answer).
pub fn top_probabilities(probabilities: &[f32]) -> Vec<f32> {
    probabilities
        .chunks(NUM_CLASSES)
        .map(|p| p.iter().copied().fold(0.0, f32::max))
        .collect()
}

/// Softmax of each row of 10 logits divided by `temperature` (computed in f64).
pub fn softmax_rows(logits: &[f32], temperature: f32) -> Vec<f32> {
    let t = f64::from(temperature);
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks(NUM_CLASSES) {
        let m = row
            .iter()
            .map(|&v| f64::from(v) / t)
            .fold(f64::MIN, f64::max);
        let e: Vec<f64> = row.iter().map(|&v| (f64::from(v) / t - m).exp()).collect();
        let s: f64 = e.iter().sum();
        out.extend(e.iter().map(|v| (v / s) as f32));
    }
    out
}
