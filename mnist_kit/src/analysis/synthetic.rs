//! Seeded synthetic handwritten-style digits: each digit is a few pen strokes, jittered
//! (rotation, shear, scale, stroke width, wobble), rendered anti-aliased and placed like MNIST
//! (20x20 box, centre of mass at the centre). The fallback when no user image is given.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::custom_digit::{Digit, SIDE};
use crate::data::augment::Affine;
use crate::{Error, Result};

/// Strokes of each digit as polylines in a unit box (x right, y down).
fn strokes(digit: u8) -> Vec<Vec<(f32, f32)>> {
    let arc =
        |cx: f32, cy: f32, rx: f32, ry: f32, from: f32, to: f32, n: usize| -> Vec<(f32, f32)> {
            (0..=n)
                .map(|i| {
                    let t = (from + (to - from) * i as f32 / n as f32).to_radians();
                    (cx + rx * t.cos(), cy + ry * t.sin())
                })
                .collect()
        };
    match digit {
        0 => vec![arc(0.5, 0.5, 0.32, 0.45, 0.0, 360.0, 24)],
        1 => vec![vec![(0.35, 0.2), (0.55, 0.05), (0.55, 0.95)]],
        2 => {
            let mut s = arc(0.5, 0.3, 0.3, 0.25, 200.0, 380.0, 12);
            s.extend([(0.2, 0.95), (0.85, 0.95)]);
            vec![s]
        }
        3 => {
            let mut s = arc(0.5, 0.28, 0.28, 0.23, 200.0, 450.0, 12);
            s.extend(arc(0.5, 0.73, 0.3, 0.23, 270.0, 520.0, 12));
            vec![s]
        }
        4 => vec![vec![(0.65, 0.95), (0.65, 0.05), (0.15, 0.65), (0.9, 0.65)]],
        5 => {
            let mut s = vec![(0.8, 0.05), (0.3, 0.05), (0.27, 0.45)];
            s.extend(arc(0.5, 0.68, 0.3, 0.27, 240.0, 510.0, 14));
            vec![s]
        }
        6 => {
            let mut s = vec![(0.7, 0.05)];
            s.extend(arc(0.5, 0.68, 0.3, 0.27, 200.0, 560.0, 20));
            vec![s]
        }
        7 => vec![vec![(0.15, 0.05), (0.85, 0.05), (0.4, 0.95)]],
        8 => vec![
            arc(0.5, 0.27, 0.25, 0.22, 0.0, 360.0, 16),
            arc(0.5, 0.72, 0.3, 0.25, 0.0, 360.0, 16),
        ],
        _ => {
            let mut s = arc(0.5, 0.3, 0.28, 0.25, 0.0, 360.0, 16);
            s.extend([(0.78, 0.3), (0.7, 0.95)]);
            vec![s]
        }
    }
}

fn segment_distance(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (qx, qy) = (a.0 + t * dx - p.0, a.1 + t * dy - p.1);
    (qx * qx + qy * qy).sqrt()
}

/// A synthetic `digit` (0-9) drawn with the randomness of `seed`.
///
/// ```
/// let d = mnist_kit::analysis::synthetic::synthetic_digit(7, 1)?;
/// assert_eq!(d.pixels.len(), 784);
/// # Ok::<(), mnist_kit::Error>(())
/// ```
pub fn synthetic_digit(digit: u8, seed: u64) -> Result<Digit> {
    if digit > 9 {
        return Err(Error::invalid("digit", format!("{digit} is not 0-9")));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (u64::from(digit) << 32));
    let width = rng.random_range(1.6f32..2.6);
    let wobble = 0.03;
    // Draw in a 20x20 box placed at (4, 4) of the 28x28 image.
    let mut img = vec![0f32; SIDE * SIDE];
    let mut lines: Vec<((f32, f32), (f32, f32))> = Vec::new();
    for stroke in strokes(digit) {
        let pts: Vec<(f32, f32)> = stroke
            .iter()
            .map(|&(x, y)| {
                let jx = rng.random_range(-wobble..wobble);
                let jy = rng.random_range(-wobble..wobble);
                (4.0 + 20.0 * (x + jx), 4.0 + 20.0 * (y + jy))
            })
            .collect();
        lines.extend(pts.windows(2).map(|w| (w[0], w[1])));
    }
    for y in 0..SIDE {
        for x in 0..SIDE {
            let p = (x as f32, y as f32);
            let d = lines
                .iter()
                .map(|&(a, b)| segment_distance(p, a, b))
                .fold(f32::INFINITY, f32::min);
            // Anti-aliased pen: full ink within half the width, fading over one pixel.
            img[y * SIDE + x] = (width / 2.0 + 0.5 - d).clamp(0.0, 1.0);
        }
    }
    let affine = Affine {
        rotation_deg: rng.random_range(-12.0..12.0),
        shear_deg: rng.random_range(-15.0..15.0),
        scale: rng.random_range(0.9..1.05),
        translate: (0.0, 0.0),
    };
    affine.warp(&mut img, SIDE, None);
    // Re-centre by mass, as MNIST did.
    let (mut m, mut sy, mut sx) = (0f32, 0f32, 0f32);
    for (i, &v) in img.iter().enumerate() {
        m += v;
        sy += v * (i / SIDE) as f32;
        sx += v * (i % SIDE) as f32;
    }
    if m > 0.0 {
        let c = SIDE as f32 / 2.0 - 0.5;
        Affine::shift(c - sx / m, c - sy / m).warp(&mut img, SIDE, None);
    }
    Ok(Digit {
        pixels: img,
        inverted: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_digits_are_seeded_centred_and_distinct() {
        for d in 0..10 {
            let a = synthetic_digit(d, 3).unwrap();
            assert_eq!(a, synthetic_digit(d, 3).unwrap(), "seeded");
            assert_ne!(a, synthetic_digit(d, 4).unwrap());
            let (cy, cx) = a.centre_of_mass();
            assert!(
                (cy - 13.5).abs() < 1.0 && (cx - 13.5).abs() < 1.0,
                "{d}: {cy} {cx}"
            );
            let ink: f32 = a.pixels.iter().sum();
            assert!(ink > 20.0, "{d}: {ink}");
        }
        assert_ne!(
            synthetic_digit(1, 3).unwrap(),
            synthetic_digit(7, 3).unwrap()
        );
        assert!(synthetic_digit(10, 0).is_err());
    }
}
