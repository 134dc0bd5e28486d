//! Robustness report: accuracy on named, deterministic variants of the test set (shifted,
//! rotated, noisy), the generalization question of Part 1 asked of the whole test set.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::data::Split;
use crate::data::augment::Affine;
use crate::models::Network;
use crate::train::evaluate;
use crate::{Error, Result};

/// A named transformation of every test image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Variant {
    /// The test set as is.
    Plain,
    /// Every image moved by `(dx, dy)` pixels.
    Shift(f32, f32),
    /// Every image rotated by this many degrees.
    Rotate(f32),
    /// Gaussian pixel noise of this standard deviation (on the `[0, 1]` scale), seeded.
    Noise(f32),
}

impl Variant {
    /// The study's variants: plain, shifted ±2 px, rotated ±15°, noise σ = 0.2.
    pub const STANDARD: [Variant; 6] = [
        Variant::Plain,
        Variant::Shift(2.0, 2.0),
        Variant::Shift(-2.0, -2.0),
        Variant::Rotate(15.0),
        Variant::Rotate(-15.0),
        Variant::Noise(0.2),
    ];

    /// Human-readable name.
    pub fn name(&self) -> String {
        match self {
            Variant::Plain => "plain".into(),
            Variant::Shift(dx, dy) => format!("shift ({dx:+}, {dy:+}) px"),
            Variant::Rotate(d) => format!("rotate {d:+}°"),
            Variant::Noise(s) => format!("noise σ={s}"),
        }
    }

    /// The transformed split (same labels).
    pub fn apply(&self, split: &Split) -> Result<Split> {
        let side = split.rows();
        if side != split.cols() {
            return Err(Error::invalid("robustness", "square images only"));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut images = Vec::with_capacity(split.len() * split.image_len());
        for (img, _) in split.iter() {
            let mut unit = crate::data::mnist::unit_pixels(img);
            match *self {
                Variant::Plain => {}
                Variant::Shift(dx, dy) => Affine::shift(dx, dy).warp(&mut unit, side, None),
                Variant::Rotate(d) => Affine::rotate(d).warp(&mut unit, side, None),
                Variant::Noise(s) => {
                    let normal = Normal::new(0.0f32, s)
                        .map_err(|e| Error::invalid("noise", e.to_string()))?;
                    unit.iter_mut()
                        .for_each(|v| *v = (*v + normal.sample(&mut rng)).clamp(0.0, 1.0));
                }
            }
            images.extend(unit.iter().map(|v| (v * 255.0).round() as u8));
        }
        Split::from_raw(self.name(), images, split.labels(), side, side)
    }
}

/// Accuracy and loss on one variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustnessRow {
    /// Variant name.
    pub variant: String,
    /// Accuracy on it.
    pub accuracy: f64,
    /// Loss on it.
    pub loss: f64,
}

/// Evaluates `net` on each variant of `test`.
pub fn robustness(net: &Network, test: &Split, variants: &[Variant]) -> Result<Vec<RobustnessRow>> {
    variants
        .iter()
        .map(|v| {
            let e = evaluate(net, &v.apply(test)?)?;
            Ok(RobustnessRow {
                variant: v.name(),
                accuracy: e.accuracy,
                loss: e.loss,
            })
        })
        .collect()
}

/// The rows of [`robustness`] as a table.
pub fn robustness_table(rows: &[RobustnessRow]) -> Result<crate::display::Table> {
    let df = polars::df!(
        "variant" => rows.iter().map(|r| r.variant.clone()).collect::<Vec<_>>(),
        "accuracy (%)" => rows.iter().map(|r| 100.0 * r.accuracy).collect::<Vec<_>>(),
        "loss" => rows.iter().map(|r| r.loss).collect::<Vec<_>>(),
    )?;
    Ok(crate::display::Table::new("robustness", df))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_move_pixels_as_named() {
        let mut img = vec![0u8; 28 * 28];
        img[14 * 28 + 14] = 255;
        let split = Split::from_raw("t", img, vec![3], 28, 28).unwrap();
        let shifted = Variant::Shift(2.0, 2.0).apply(&split).unwrap();
        assert_eq!(shifted.image(0).unwrap()[16 * 28 + 16], 255);
        assert_eq!(shifted.label(0), Some(3));
        assert_eq!(
            Variant::Plain.apply(&split).unwrap().image(0),
            split.image(0)
        );
        let rotated = Variant::Rotate(15.0).apply(&split).unwrap();
        assert_ne!(rotated.image(0), split.image(0));
        let noisy = Variant::Noise(0.2).apply(&split).unwrap();
        assert_eq!(
            noisy.image(0),
            Variant::Noise(0.2).apply(&split).unwrap().image(0),
            "seeded"
        );
    }
}
