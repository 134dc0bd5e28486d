//! Exploration helpers for study task 1: class balance, pixel statistics, histograms and
//! mean images.

use serde::{Deserialize, Serialize};

use super::mnist::{Mnist, NUM_CLASSES, Split};

/// Summary statistics of one split (pixel values scaled to `[0, 1]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitStats {
    /// Number of samples.
    pub count: usize,
    /// Samples per digit 0-9.
    pub class_counts: Vec<usize>,
    /// Mean pixel value (x/255) over all pixels.
    pub pixel_mean: f64,
    /// Standard deviation of x/255 over all pixels.
    pub pixel_std: f64,
}

/// Statistics of both splits; serializes to the `data stats --json` shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataStats {
    /// Training split.
    pub train: SplitStats,
    /// Test split.
    pub test: SplitStats,
}

impl DataStats {
    /// Computes the statistics of both splits.
    pub fn of(mnist: &Mnist) -> Self {
        DataStats {
            train: split_stats(&mnist.train),
            test: split_stats(&mnist.test),
        }
    }
}

impl DataStats {
    /// One row per split: count, pixel mean and std, then the count of each digit.
    pub fn to_table(&self) -> crate::Result<crate::display::Table> {
        use polars::prelude::*;
        let splits = [("train", &self.train), ("test", &self.test)];
        let mut cols: Vec<Column> = vec![
            Column::new("split".into(), splits.map(|s| s.0)),
            Column::new("count".into(), splits.map(|s| s.1.count as u64)),
            Column::new("pixel_mean".into(), splits.map(|s| s.1.pixel_mean)),
            Column::new("pixel_std".into(), splits.map(|s| s.1.pixel_std)),
        ];
        for d in 0..NUM_CLASSES {
            cols.push(Column::new(
                format!("{d}").into(),
                splits.map(|s| s.1.class_counts.get(d).copied().unwrap_or(0) as u64),
            ));
        }
        let df = DataFrame::new_infer_height(cols)?;
        Ok(crate::display::Table::new("MNIST splits", df))
    }
}

/// Samples per class 0-9.
pub fn class_counts(split: &Split) -> Vec<usize> {
    let mut counts = vec![0; NUM_CLASSES];
    for (_, l) in split.iter() {
        counts[l as usize] += 1;
    }
    counts
}

/// Count, class counts and pixel mean/std of a split.
pub fn split_stats(split: &Split) -> SplitStats {
    let hist = pixel_histogram(split);
    let n: u64 = hist.iter().sum();
    let (mut s, mut s2) = (0f64, 0f64);
    for (v, &c) in hist.iter().enumerate() {
        let x = v as f64 / 255.0;
        s += x * c as f64;
        s2 += x * x * c as f64;
    }
    let mean = if n > 0 { s / n as f64 } else { 0.0 };
    let var = if n > 0 {
        (s2 / n as f64 - mean * mean).max(0.0)
    } else {
        0.0
    };
    SplitStats {
        count: split.len(),
        class_counts: class_counts(split),
        pixel_mean: mean,
        pixel_std: var.sqrt(),
    }
}

/// Number of pixels with each value 0-255.
pub fn pixel_histogram(split: &Split) -> [u64; 256] {
    let mut hist = [0u64; 256];
    for (img, _) in split.iter() {
        for &p in img {
            hist[p as usize] += 1;
        }
    }
    hist
}

/// Mean image (values in `[0, 1]`, row-major) of each class; a class without samples is zeros.
pub fn mean_images(split: &Split) -> Vec<Vec<f32>> {
    let n = split.image_len();
    let mut sums = vec![vec![0f64; n]; NUM_CLASSES];
    let counts = class_counts(split);
    for (img, l) in split.iter() {
        for (s, &p) in sums[l as usize].iter_mut().zip(img) {
            *s += f64::from(p);
        }
    }
    sums.into_iter()
        .zip(counts)
        .map(|(s, c)| {
            s.into_iter()
                .map(|v| {
                    if c > 0 {
                        (v / (255.0 * c as f64)) as f32
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect()
}

/// The first `per_class` sample positions of each digit, in view order.
pub fn examples_per_class(split: &Split, per_class: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); NUM_CLASSES];
    for (i, (_, l)) in split.iter().enumerate() {
        let bucket = &mut out[l as usize];
        if bucket.len() < per_class {
            bucket.push(i);
        }
    }
    out
}
