//! Seeded synthetic handwritten-style digits: each digit is a few pen strokes, jittered
//! (rotation, shear, scale, stroke width, wobble), rendered anti-aliased and placed like MNIST
//! (20x20 box, centre of mass at the centre). The fallback when no user image is given.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::custom_digit::{Digit, SIDE};
use crate::data::augment::Affine;
use crate::{Error, Result};

/// Strokes of each digit as polylines in a unit box (x right, y down).
fn strokes(digit: u8) -> Strokes {
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
    Ok(pen(&strokes(digit), 1.6..2.6, &mut rng))
}

/// Draws `strokes` (polylines in a unit box) with a jittered pen: a stroke width in `widths`
/// (px), each point wobbled, drawn anti-aliased in the 20x20 box, then rotated, sheared and
/// scaled a little and re-centred by mass, as MNIST placed its digits.
fn pen(strokes: &[Vec<(f32, f32)>], widths: std::ops::Range<f32>, rng: &mut ChaCha8Rng) -> Digit {
    let width = rng.random_range(widths);
    let wobble = 0.03;
    // Draw in a 20x20 box placed at (4, 4) of the 28x28 image.
    let mut lines: Vec<((f32, f32), (f32, f32))> = Vec::new();
    for stroke in strokes {
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
    let mut img = vec![0f32; SIDE * SIDE];
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
    recentre(&mut img);
    Digit {
        pixels: img,
        inverted: false,
    }
}

/// Shifts the ink's centre of mass to the image centre, as MNIST did.
fn recentre(img: &mut [f32]) {
    let (mut m, mut sy, mut sx) = (0f32, 0f32, 0f32);
    for (i, &v) in img.iter().enumerate() {
        m += v;
        sy += v * (i / SIDE) as f32;
        sx += v * (i % SIDE) as f32;
    }
    if m > 0.0 {
        let c = SIDE as f32 / 2.0 - 0.5;
        Affine::shift(c - sx / m, c - sy / m).warp(img, SIDE, None);
    }
}

/// What a synthetic non-digit is (see [`synthetic_non_digit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonDigit {
    /// A letter or sign drawn with a pen, from the ones no digit looks like.
    Letter,
    /// The outline of a polygon, star, plus, arrow, heart, crossed box or face, or a zigzag.
    Shape,
    /// A random pen path.
    Scribble,
    /// Parallel or crossed lines.
    Hatching,
    /// Ink spread without strokes: dots, blots or pixel noise.
    Texture,
}

impl NonDigit {
    /// Every kind, in the order [`synthetic_non_digit`] cycles through them.
    pub const ALL: [NonDigit; 5] = [
        NonDigit::Letter,
        NonDigit::Shape,
        NonDigit::Scribble,
        NonDigit::Hatching,
        NonDigit::Texture,
    ];
}

/// A synthetic image that is no digit, drawn with the randomness of `seed`: pen-drawn
/// letters and signs, shapes, scribbles, hatching or textures (the kind cycles with the seed),
/// placed like an MNIST digit. The training outliers of the digit gate
/// ([`crate::analysis::gate`]); written from their plain definitions, with nothing of
/// `data/non-digits` (the typefaces, shapes and pen paths the gate is measured on).
///
/// ```
/// use mnist_kit::analysis::synthetic::{NonDigit, synthetic_non_digit};
/// let (kind, image) = synthetic_non_digit(3);
/// assert_eq!(image.pixels.len(), 784);
/// assert_eq!(kind, NonDigit::ALL[3]);
/// ```
pub fn synthetic_non_digit(seed: u64) -> (NonDigit, Digit) {
    let kind = NonDigit::ALL[(seed % NonDigit::ALL.len() as u64) as usize];
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6e6f_6e64_6967_6974);
    let digit = match kind {
        NonDigit::Letter => {
            let mut g = GLYPHS[rng.random_range(0..GLYPHS.len())].clone();
            if rng.random::<bool>() {
                g = with_serifs(g);
            }
            pen(&g, 1.6..4.0, &mut rng)
        }
        NonDigit::Shape => pen(&shape(&mut rng), 1.6..3.0, &mut rng),
        NonDigit::Scribble => pen(&scribble(&mut rng), 1.6..3.0, &mut rng),
        NonDigit::Hatching => pen(&hatching(&mut rng), 1.6..3.0, &mut rng),
        NonDigit::Texture => texture(&mut rng),
    };
    (kind, digit)
}

type Strokes = Vec<Vec<(f32, f32)>>;

/// A typeface's serifs: a short horizontal tick at each end of every stroke.
fn with_serifs(strokes: Strokes) -> Strokes {
    let mut out = strokes.clone();
    for s in &strokes {
        for &(x, y) in [s.first(), s.last()].into_iter().flatten() {
            out.push(vec![(x - 0.1, y), (x + 0.1, y)]);
        }
    }
    out
}

fn arc(cx: f32, cy: f32, rx: f32, ry: f32, from: f32, to: f32, n: usize) -> Vec<(f32, f32)> {
    (0..=n)
        .map(|i| {
            let t = (from + (to - from) * i as f32 / n as f32).to_radians();
            (cx + rx * t.cos(), cy + ry * t.sin())
        })
        .collect()
}

/// [`glyphs`], drawn up once.
static GLYPHS: std::sync::LazyLock<Vec<Strokes>> = std::sync::LazyLock::new(glyphs);

/// Letters and signs as pen strokes in a unit box, left out: the ones a digit can look like
/// (O, o, D, I, l, i, j, S, s, Z, z, B, b, G, g, q, a, d, and the like).
fn glyphs() -> Vec<Strokes> {
    let l = |pts: &[(f32, f32)]| pts.to_vec();
    let with = |mut a: Vec<(f32, f32)>, b: &[(f32, f32)]| {
        a.extend_from_slice(b);
        a
    };
    vec![
        // A E F H K L M N
        vec![
            l(&[(0.1, 0.95), (0.5, 0.05), (0.9, 0.95)]),
            l(&[(0.28, 0.6), (0.72, 0.6)]),
        ],
        vec![
            l(&[(0.8, 0.05), (0.2, 0.05), (0.2, 0.95), (0.8, 0.95)]),
            l(&[(0.2, 0.5), (0.7, 0.5)]),
        ],
        vec![
            l(&[(0.8, 0.05), (0.2, 0.05), (0.2, 0.95)]),
            l(&[(0.2, 0.5), (0.7, 0.5)]),
        ],
        vec![
            l(&[(0.2, 0.05), (0.2, 0.95)]),
            l(&[(0.8, 0.05), (0.8, 0.95)]),
            l(&[(0.2, 0.5), (0.8, 0.5)]),
        ],
        vec![
            l(&[(0.2, 0.05), (0.2, 0.95)]),
            l(&[(0.8, 0.05), (0.2, 0.6)]),
            l(&[(0.4, 0.45), (0.85, 0.95)]),
        ],
        vec![l(&[(0.25, 0.05), (0.25, 0.95), (0.8, 0.95)])],
        vec![l(&[
            (0.1, 0.95),
            (0.15, 0.05),
            (0.5, 0.6),
            (0.85, 0.05),
            (0.9, 0.95),
        ])],
        vec![l(&[(0.2, 0.95), (0.2, 0.05), (0.8, 0.95), (0.8, 0.05)])],
        // P R T U V W X Y
        vec![with(
            l(&[(0.25, 0.95), (0.25, 0.05)]),
            &arc(0.45, 0.28, 0.3, 0.23, 270.0, 450.0, 10),
        )],
        vec![
            with(
                l(&[(0.25, 0.95), (0.25, 0.05)]),
                &arc(0.45, 0.28, 0.3, 0.23, 270.0, 450.0, 10),
            ),
            l(&[(0.45, 0.51), (0.85, 0.95)]),
        ],
        vec![
            l(&[(0.1, 0.05), (0.9, 0.05)]),
            l(&[(0.5, 0.05), (0.5, 0.95)]),
        ],
        vec![with(
            with(l(&[(0.2, 0.05)]), &arc(0.5, 0.65, 0.3, 0.3, 180.0, 0.0, 12)),
            &[(0.8, 0.05)],
        )],
        vec![l(&[(0.1, 0.05), (0.5, 0.95), (0.9, 0.05)])],
        vec![l(&[
            (0.05, 0.05),
            (0.25, 0.95),
            (0.5, 0.35),
            (0.75, 0.95),
            (0.95, 0.05),
        ])],
        vec![
            l(&[(0.15, 0.05), (0.85, 0.95)]),
            l(&[(0.85, 0.05), (0.15, 0.95)]),
        ],
        vec![
            l(&[(0.1, 0.05), (0.5, 0.5), (0.9, 0.05)]),
            l(&[(0.5, 0.5), (0.5, 0.95)]),
        ],
        // C c e f h k m n r t u v w x
        vec![arc(0.55, 0.5, 0.35, 0.45, 50.0, 310.0, 16)],
        vec![arc(0.55, 0.7, 0.3, 0.25, 50.0, 310.0, 12)],
        vec![with(
            l(&[(0.25, 0.65), (0.8, 0.65)]),
            &arc(0.52, 0.7, 0.28, 0.25, 0.0, -300.0, 14),
        )],
        vec![
            with(arc(0.65, 0.2, 0.2, 0.15, -20.0, -180.0, 8), &[(0.45, 0.95)]),
            l(&[(0.2, 0.45), (0.75, 0.45)]),
        ],
        vec![with(
            l(&[(0.25, 0.05), (0.25, 0.95), (0.25, 0.65)]),
            &with(arc(0.5, 0.7, 0.25, 0.22, 180.0, 360.0, 8), &[(0.75, 0.95)]),
        )],
        vec![
            l(&[(0.25, 0.05), (0.25, 0.95)]),
            l(&[(0.75, 0.45), (0.25, 0.75), (0.75, 0.95)]),
        ],
        vec![with(
            with(
                l(&[(0.1, 0.95), (0.1, 0.45)]),
                &arc(0.3, 0.6, 0.2, 0.15, 180.0, 360.0, 6),
            ),
            &with(
                l(&[(0.5, 0.95), (0.5, 0.6)]),
                &with(arc(0.7, 0.6, 0.2, 0.15, 180.0, 360.0, 6), &[(0.9, 0.95)]),
            ),
        )],
        vec![with(
            l(&[(0.25, 0.95), (0.25, 0.45), (0.25, 0.7)]),
            &with(arc(0.5, 0.65, 0.25, 0.2, 180.0, 360.0, 8), &[(0.75, 0.95)]),
        )],
        vec![with(
            l(&[(0.3, 0.95), (0.3, 0.45), (0.3, 0.7)]),
            &arc(0.55, 0.65, 0.25, 0.18, 180.0, 290.0, 6),
        )],
        vec![
            l(&[(0.45, 0.1), (0.45, 0.85), (0.6, 0.95), (0.75, 0.9)]),
            l(&[(0.2, 0.4), (0.75, 0.4)]),
        ],
        vec![with(
            arc(0.5, 0.65, 0.25, 0.3, 180.0, 0.0, 10),
            &[(0.75, 0.35), (0.75, 0.95)],
        )],
        vec![l(&[(0.2, 0.45), (0.5, 0.95), (0.8, 0.45)])],
        vec![l(&[
            (0.05, 0.45),
            (0.25, 0.95),
            (0.5, 0.55),
            (0.75, 0.95),
            (0.95, 0.45),
        ])],
        vec![
            l(&[(0.2, 0.45), (0.8, 0.95)]),
            l(&[(0.8, 0.45), (0.2, 0.95)]),
        ],
        // # (a crossed %) ? ! = < > @
        vec![
            l(&[(0.35, 0.05), (0.3, 0.95)]),
            l(&[(0.7, 0.05), (0.65, 0.95)]),
            l(&[(0.1, 0.35), (0.9, 0.35)]),
            l(&[(0.1, 0.65), (0.9, 0.65)]),
        ],
        vec![
            l(&[(0.15, 0.05), (0.85, 0.95)]),
            arc(0.25, 0.2, 0.1, 0.1, 0.0, 360.0, 8),
            arc(0.75, 0.8, 0.1, 0.1, 0.0, 360.0, 8),
            l(&[(0.85, 0.05), (0.15, 0.95)]),
        ],
        vec![
            with(
                arc(0.5, 0.3, 0.3, 0.25, 180.0, 420.0, 12),
                &[(0.5, 0.55), (0.5, 0.7)],
            ),
            l(&[(0.5, 0.88), (0.5, 0.95)]),
        ],
        vec![
            l(&[(0.5, 0.05), (0.5, 0.7)]),
            l(&[(0.5, 0.88), (0.5, 0.95)]),
        ],
        vec![
            l(&[(0.1, 0.35), (0.9, 0.35)]),
            l(&[(0.1, 0.65), (0.9, 0.65)]),
        ],
        vec![l(&[(0.85, 0.15), (0.15, 0.5), (0.85, 0.85)])],
        vec![l(&[(0.15, 0.15), (0.85, 0.5), (0.15, 0.85)])],
        vec![with(
            arc(0.5, 0.5, 0.15, 0.18, 0.0, 360.0, 10),
            &arc(0.5, 0.5, 0.4, 0.45, 10.0, 330.0, 16),
        )],
    ]
}

/// A regular polygon (3-6 sides), a star, a plus, an arrow, a heart, a crossed box, a face or a
/// zigzag.
fn shape(rng: &mut ChaCha8Rng) -> Strokes {
    let turn = rng.random_range(0.0f32..360.0);
    let ring = |n: usize, radius: &dyn Fn(usize) -> f32| -> Vec<(f32, f32)> {
        (0..=n)
            .map(|i| {
                let t = (turn + 360.0 * i as f32 / n as f32).to_radians();
                let r = radius(i % n);
                (0.5 + r * t.cos(), 0.5 + r * t.sin())
            })
            .collect()
    };
    match rng.random_range(0..8) {
        0 => {
            let n = rng.random_range(3..=6);
            vec![ring(n, &|_| 0.45)]
        }
        1 => {
            let inner = rng.random_range(0.15f32..0.25);
            vec![ring(10, &|i| if i % 2 == 0 { 0.48 } else { inner })]
        }
        2 => vec![
            vec![(0.5, 0.05), (0.5, 0.95)],
            vec![(0.05, 0.5), (0.95, 0.5)],
        ],
        3 => vec![
            vec![(0.5, 0.05), (0.5, 0.95)],
            vec![(0.2, 0.3), (0.5, 0.05), (0.8, 0.3)],
        ],
        4 => {
            let mut s = arc(0.3, 0.3, 0.2, 0.2, 150.0, 360.0, 10);
            s.extend(arc(0.7, 0.3, 0.2, 0.2, 180.0, 390.0, 10));
            s.extend([(0.5, 0.95), (0.13, 0.4)]);
            vec![s]
        }
        5 => vec![vec![
            (0.1, 0.1),
            (0.9, 0.1),
            (0.9, 0.9),
            (0.1, 0.9),
            (0.1, 0.1),
            (0.9, 0.9),
        ]],
        6 => {
            // A face: a ring, two eyes, a mouth.
            let eye = |x: f32| arc(x, 0.38, 0.04, 0.04, 0.0, 360.0, 6);
            vec![
                arc(0.5, 0.5, 0.45, 0.45, 0.0, 360.0, 24),
                eye(0.35),
                eye(0.65),
                arc(0.5, 0.55, 0.22, 0.18, 20.0, 160.0, 8),
            ]
        }
        _ => {
            // A zigzag of 3-7 strokes, across or down.
            let n = rng.random_range(3..=7);
            let across = rng.random::<bool>();
            let pts = (0..=n).map(|i| {
                let t = 0.05 + 0.9 * i as f32 / n as f32;
                let o = if i % 2 == 0 { 0.3 } else { 0.7 };
                if across { (t, o) } else { (o, t) }
            });
            vec![pts.collect()]
        }
    }
}

/// A pen path of 6-14 random points, or two of them.
fn scribble(rng: &mut ChaCha8Rng) -> Strokes {
    (0..rng.random_range(1..=2))
        .map(|_| {
            (0..rng.random_range(6..=14))
                .map(|_| (rng.random_range(0.0..1.0), rng.random_range(0.0..1.0)))
                .collect()
        })
        .collect()
}

/// 3-6 parallel lines at one angle, sometimes crossed by as many at another.
fn hatching(rng: &mut ChaCha8Rng) -> Strokes {
    let mut out = Vec::new();
    let sets = if rng.random::<f32>() < 0.4 { 2 } else { 1 };
    for _ in 0..sets {
        let n = rng.random_range(3..=6);
        let t = rng.random_range(0.0f32..180.0).to_radians();
        let (dx, dy) = (t.cos() * 0.5, t.sin() * 0.5);
        for k in 0..n {
            let off = (k as f32 + 0.5) / n as f32 - 0.5;
            let (cx, cy) = (0.5 - dy * off * 2.0, 0.5 + dx * off * 2.0);
            out.push(vec![(cx - dx, cy - dy), (cx + dx, cy + dy)]);
        }
    }
    out
}

/// Ink without strokes: 3-12 round dots, or pixel noise of a random density, in the 20x20 box.
fn texture(rng: &mut ChaCha8Rng) -> Digit {
    let mut img = vec![0f32; SIDE * SIDE];
    if rng.random::<bool>() {
        for _ in 0..rng.random_range(3..=12) {
            let (cx, cy) = (
                rng.random_range(4.0f32..24.0),
                rng.random_range(4.0f32..24.0),
            );
            let r = rng.random_range(0.8f32..2.5);
            for (i, v) in img.iter_mut().enumerate() {
                let d = ((i % SIDE) as f32 - cx).hypot((i / SIDE) as f32 - cy);
                *v = v.max((r + 0.5 - d).clamp(0.0, 1.0));
            }
        }
    } else {
        let density = rng.random_range(0.1f32..0.6);
        for y in 4..24 {
            for x in 4..24 {
                if rng.random::<f32>() < density {
                    img[y * SIDE + x] = rng.random_range(0.3f32..1.0);
                }
            }
        }
    }
    recentre(&mut img);
    Digit {
        pixels: img,
        inverted: false,
    }
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

    #[test]
    fn synthetic_non_digits_are_seeded_inked_and_of_every_kind() {
        let mut kinds = Vec::new();
        for seed in 0..40 {
            let (kind, img) = synthetic_non_digit(seed);
            assert_eq!(
                (kind, &img),
                (synthetic_non_digit(seed).0, &synthetic_non_digit(seed).1)
            );
            assert_ne!(img, synthetic_non_digit(seed + 5).1, "seed {seed}");
            let ink: f32 = img.pixels.iter().sum();
            assert!(ink > 10.0, "{kind:?} {seed}: {ink}");
            assert!(img.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
            let (cy, cx) = img.centre_of_mass();
            assert!(
                (cy - 13.5).abs() < 1.5 && (cx - 13.5).abs() < 1.5,
                "{kind:?}: {cy} {cx}"
            );
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        assert_eq!(kinds.len(), NonDigit::ALL.len());
    }
}
