//! Training-time data augmentation on `[0, 1]` images: random affine (rotation, translation,
//! scale, shear) and Simard's elastic distortion, both seeded. The trainer applies it to
//! training batches only; evaluation batches never see it.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Elastic distortion (Simard et al. 2003): a random displacement field smoothed by a
/// Gaussian of `sigma` pixels and scaled by `alpha` pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Elastic {
    /// Displacement scale in pixels.
    pub alpha: f32,
    /// Smoothing (Gaussian standard deviation) in pixels.
    pub sigma: f32,
}

/// Random transformations drawn per sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    /// Maximum rotation in degrees (uniform in ±).
    pub rotation_deg: f32,
    /// Maximum translation in pixels, each axis (uniform in ±).
    pub translate_px: f32,
    /// Maximum relative scale change (scale uniform in `1 ± scale`).
    pub scale: f32,
    /// Maximum shear in degrees (uniform in ±).
    pub shear_deg: f32,
    /// Optional elastic distortion on top of the affine transform.
    pub elastic: Option<Elastic>,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            rotation_deg: 10.0,
            translate_px: 2.0,
            scale: 0.1,
            shear_deg: 8.0,
            elastic: None,
        }
    }
}

impl AugmentConfig {
    /// Affine defaults plus elastic distortion (alpha 34, sigma 4 as in Simard 2003 on 28x28).
    pub fn with_elastic() -> Self {
        AugmentConfig {
            elastic: Some(Elastic {
                alpha: 34.0,
                sigma: 4.0,
            }),
            ..Default::default()
        }
    }

    /// Transforms `img` (square, `side` pixels wide, values in `[0, 1]`) in place.
    pub fn apply(&self, img: &mut [f32], side: usize, rng: &mut ChaCha8Rng) {
        if side == 0 || img.len() != side * side {
            return;
        }
        let sym = |rng: &mut ChaCha8Rng, max: f32| {
            if max > 0.0 {
                rng.random_range(-max..=max)
            } else {
                0.0
            }
        };
        let affine = Affine {
            rotation_deg: sym(rng, self.rotation_deg),
            shear_deg: sym(rng, self.shear_deg),
            scale: 1.0 + sym(rng, self.scale),
            translate: (sym(rng, self.translate_px), sym(rng, self.translate_px)),
        };
        let field = self
            .elastic
            .map(|e| (displacement(side, e, rng), displacement(side, e, rng)));
        affine.warp(img, side, field.as_ref());
    }
}

/// One deterministic affine transform about the image centre.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Affine {
    /// Rotation in degrees (positive: clockwise on screen, rows growing downwards).
    pub rotation_deg: f32,
    /// Shear in degrees.
    pub shear_deg: f32,
    /// Scale factor (1 = unchanged).
    pub scale: f32,
    /// Translation `(x, y)` in pixels.
    pub translate: (f32, f32),
}

impl Affine {
    /// A pure translation.
    pub fn shift(dx: f32, dy: f32) -> Self {
        Affine {
            rotation_deg: 0.0,
            shear_deg: 0.0,
            scale: 1.0,
            translate: (dx, dy),
        }
    }

    /// A pure rotation.
    pub fn rotate(deg: f32) -> Self {
        Affine {
            rotation_deg: deg,
            shear_deg: 0.0,
            scale: 1.0,
            translate: (0.0, 0.0),
        }
    }

    /// Applies the transform to a square `[0, 1]` image in place (bilinear, zero outside),
    /// plus an optional per-pixel displacement field `(dx, dy)`.
    pub fn warp(&self, img: &mut [f32], side: usize, field: Option<&(Vec<f32>, Vec<f32>)>) {
        if side == 0 || img.len() != side * side {
            return;
        }
        let theta = self.rotation_deg.to_radians();
        let shear = self.shear_deg.to_radians().tan();
        let s = self.scale;
        let (tx, ty) = self.translate;
        // Forward map A = R(theta) * Shear * S; its inverse pulls source pixels.
        let (c, sn) = (theta.cos(), theta.sin());
        let a = [
            [c * s, (c * shear - sn) * s],
            [sn * s, (sn * shear + c) * s],
        ];
        let det = a[0][0] * a[1][1] - a[0][1] * a[1][0];
        if det.abs() < 1e-6 {
            return;
        }
        let inv = [
            [a[1][1] / det, -a[0][1] / det],
            [-a[1][0] / det, a[0][0] / det],
        ];
        let centre = (side as f32 - 1.0) / 2.0;
        let src = img.to_vec();
        for y in 0..side {
            for x in 0..side {
                let i = y * side + x;
                let (fx, fy) = field.map_or((0.0, 0.0), |(dx, dy)| (dx[i], dy[i]));
                let (px, py) = (x as f32 - centre - tx, y as f32 - centre - ty);
                let sx = inv[0][0] * px + inv[0][1] * py + centre + fx;
                let sy = inv[1][0] * px + inv[1][1] * py + centre + fy;
                img[i] = bilinear(&src, side, sx, sy);
            }
        }
    }
}

fn bilinear(img: &[f32], side: usize, x: f32, y: f32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |xi: f32, yi: f32| -> f32 {
        if xi < 0.0 || yi < 0.0 || xi >= side as f32 || yi >= side as f32 {
            0.0
        } else {
            img[yi as usize * side + xi as usize]
        }
    };
    at(x0, y0) * (1.0 - fx) * (1.0 - fy)
        + at(x0 + 1.0, y0) * fx * (1.0 - fy)
        + at(x0, y0 + 1.0) * (1.0 - fx) * fy
        + at(x0 + 1.0, y0 + 1.0) * fx * fy
}

/// A smoothed random displacement field, scaled by `alpha`.
fn displacement(side: usize, e: Elastic, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let field: Vec<f32> = (0..side * side)
        .map(|_| rng.random_range(-1.0f32..=1.0))
        .collect();
    let radius = (3.0 * e.sigma).ceil().max(1.0) as isize;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|k| (-((k * k) as f32) / (2.0 * e.sigma * e.sigma)).exp())
        .collect();
    let norm: f32 = kernel.iter().sum();
    let blur = |input: &[f32], horizontal: bool| -> Vec<f32> {
        let mut out = vec![0.0; side * side];
        for y in 0..side {
            for x in 0..side {
                let mut acc = 0.0;
                for (k, w) in (-radius..=radius).zip(&kernel) {
                    let (xx, yy) = if horizontal {
                        (x as isize + k, y as isize)
                    } else {
                        (x as isize, y as isize + k)
                    };
                    if xx >= 0 && yy >= 0 && (xx as usize) < side && (yy as usize) < side {
                        acc += w * input[yy as usize * side + xx as usize];
                    }
                }
                out[y * side + x] = acc / norm;
            }
        }
        out
    };
    blur(&blur(&field, true), false)
        .into_iter()
        .map(|v| v * e.alpha)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn augmentation_is_seeded_and_changes_the_image() {
        let mut img = vec![0.0f32; 28 * 28];
        for y in 8..20 {
            for x in 12..16 {
                img[y * 28 + x] = 1.0;
            }
        }
        let cfg = AugmentConfig::with_elastic();
        let run = |seed| {
            let mut a = img.clone();
            cfg.apply(&mut a, 28, &mut ChaCha8Rng::seed_from_u64(seed));
            a
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        assert_ne!(run(1), img);
        let none = AugmentConfig {
            rotation_deg: 0.0,
            translate_px: 0.0,
            scale: 0.0,
            shear_deg: 0.0,
            elastic: None,
        };
        let mut same = img.clone();
        none.apply(&mut same, 28, &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(same, img, "the identity transform keeps the image");
    }
}
