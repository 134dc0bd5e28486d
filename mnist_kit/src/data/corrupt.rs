//! MNIST-C (Mu and Gilmer, 2019, <https://arxiv.org/abs/1906.02337>): the benchmark's 15
//! corruptions of the test set, written here from the paper's definitions with its published
//! severities. Each is a function from a 28x28 image and a seeded generator to a 28x28 image,
//! deterministic for a seed: [`Corruption::apply`], a whole split with [`corrupt_split`],
//! IDX files any MNIST tool reads with [`write_dataset`] (`mnist-kit corrupt`).
//!
//! | name | what it does (MNIST-C's severity) |
//! |---|---|
//! | `shot_noise` | Poisson noise, `poisson(3 x) / 3` |
//! | `impulse_noise` | salt and pepper on 17 % of the pixels |
//! | `glass_blur` | Gaussian blur (σ 0.7), pixels swapped with a neighbour twice, blur again |
//! | `motion_blur` | a one-sided streak (radius 10, σ 3) at an angle in ±45° |
//! | `shear` | shear 0.4 rad either way, about the centre |
//! | `scale` | shrunk to 70 % about the centre |
//! | `rotate` | rotated 0.4 rad (23°) either way |
//! | `brightness` | `+0.5` on every pixel, clipped |
//! | `translate` | moved 3 px on each axis, either way |
//! | `stripe` | the 7 leftmost and 7 rightmost columns inverted |
//! | `fog` | `+3` times a plasma fractal (decay 1.4), rescaled to the image's maximum |
//! | `spatter` | blots of mud (grey 63/255) from thresholded smoothed noise |
//! | `dotted_line` | an antialiased dotted line across the image |
//! | `zigzag` | an antialiased zigzag line |
//! | `canny_edges` | the digit replaced by its Canny edges (σ 1, thresholds 0.1 and 0.2) |
//!
//! ```
//! use mnist_kit::data::corrupt::Corruption;
//! let digit = vec![0u8; 784];
//! let bright = Corruption::Brightness.apply_seeded(&digit, 0)?;
//! assert!(bright.iter().all(|&p| p == 128)); // 0 + 0.5, on the 0-255 scale
//! assert_eq!(Corruption::ALL.len(), 15);
//! assert_eq!("canny_edges".parse::<Corruption>()?, Corruption::CannyEdges);
//! # Ok::<(), mnist_kit::Error>(())
//! ```

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Poisson};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::batches::mix;
use super::idx::encode_idx;
use super::{Mnist, Split};
use crate::{Error, Result};

const SIDE: usize = 28;
const N: usize = SIDE * SIDE;

/// The seed of the study's corrupted test sets (and of `mnist-kit corrupt` by default).
pub const DEFAULT_SEED: u64 = 2019;

/// One MNIST-C corruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Corruption {
    /// Poisson noise.
    ShotNoise,
    /// Salt and pepper.
    ImpulseNoise,
    /// Blur with locally shuffled pixels.
    GlassBlur,
    /// A one-sided streak.
    MotionBlur,
    /// Shear about the centre.
    Shear,
    /// Shrink about the centre.
    Scale,
    /// Rotation about the centre.
    Rotate,
    /// A uniform brightness shift.
    Brightness,
    /// A shift of a few pixels.
    Translate,
    /// Inverted left and right bands.
    Stripe,
    /// Plasma-fractal fog.
    Fog,
    /// Mud blots.
    Spatter,
    /// A dotted line.
    DottedLine,
    /// A zigzag line.
    Zigzag,
    /// Edges only.
    CannyEdges,
}

impl Corruption {
    /// The 15 corruptions of MNIST-C, in the paper's order.
    pub const ALL: [Corruption; 15] = [
        Corruption::ShotNoise,
        Corruption::ImpulseNoise,
        Corruption::GlassBlur,
        Corruption::MotionBlur,
        Corruption::Shear,
        Corruption::Scale,
        Corruption::Rotate,
        Corruption::Brightness,
        Corruption::Translate,
        Corruption::Stripe,
        Corruption::Fog,
        Corruption::Spatter,
        Corruption::DottedLine,
        Corruption::Zigzag,
        Corruption::CannyEdges,
    ];

    /// The snake-case name (`shot_noise`, `canny_edges`): the CLI's `--kind` and the key in
    /// `metrics.json`.
    pub fn name(self) -> &'static str {
        match self {
            Corruption::ShotNoise => "shot_noise",
            Corruption::ImpulseNoise => "impulse_noise",
            Corruption::GlassBlur => "glass_blur",
            Corruption::MotionBlur => "motion_blur",
            Corruption::Shear => "shear",
            Corruption::Scale => "scale",
            Corruption::Rotate => "rotate",
            Corruption::Brightness => "brightness",
            Corruption::Translate => "translate",
            Corruption::Stripe => "stripe",
            Corruption::Fog => "fog",
            Corruption::Spatter => "spatter",
            Corruption::DottedLine => "dotted_line",
            Corruption::Zigzag => "zigzag",
            Corruption::CannyEdges => "canny_edges",
        }
    }

    /// Words for a table (`shot noise`).
    pub fn label(self) -> String {
        self.name().replace('_', " ")
    }

    fn index(self) -> u64 {
        Corruption::ALL.iter().position(|c| *c == self).unwrap_or(0) as u64
    }

    /// The corrupted copy of one 28x28 image (row-major, 0-255), drawing its randomness from
    /// `rng`.
    pub fn apply(self, image: &[u8], rng: &mut ChaCha8Rng) -> Result<Vec<u8>> {
        if image.len() != N {
            return Err(Error::invalid(
                "corruption",
                format!("a 28x28 image has 784 pixels, got {}", image.len()),
            ));
        }
        let mut x = [0f64; N];
        for (v, &p) in x.iter_mut().zip(image) {
            *v = f64::from(p) / 255.0;
        }
        let y = self.transform(&x, rng);
        Ok(y.iter()
            .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect())
    }

    /// [`Corruption::apply`] with a generator seeded from `seed`.
    pub fn apply_seeded(self, image: &[u8], seed: u64) -> Result<Vec<u8>> {
        self.apply(image, &mut ChaCha8Rng::seed_from_u64(seed))
    }

    fn transform(self, x: &Img, rng: &mut ChaCha8Rng) -> Img {
        match self {
            Corruption::ShotNoise => map(x, |v| poisson(v * 3.0, rng) / 3.0),
            Corruption::ImpulseNoise => map(x, |v| {
                if rng.random::<f64>() < 0.17 {
                    if rng.random::<bool>() { 1.0 } else { 0.0 }
                } else {
                    v
                }
            }),
            Corruption::GlassBlur => glass_blur(x, rng),
            Corruption::MotionBlur => motion_blur(x, rng.random_range(-45.0..45.0)),
            Corruption::Shear => {
                let s = 0.4 * sign(rng);
                warp(x, centred([[1.0, -s.sin()], [0.0, s.cos()]]))
            }
            Corruption::Scale => {
                let s = 1.0 / 0.7;
                warp(x, centred([[s, 0.0], [0.0, s]]))
            }
            Corruption::Rotate => {
                let r = 0.4 * sign(rng);
                warp(x, centred([[r.cos(), -r.sin()], [r.sin(), r.cos()]]))
            }
            Corruption::Brightness => map(x, |v| (v + 0.5).min(1.0)),
            Corruption::Translate => {
                let (dx, dy) = (3.0 * sign(rng), 3.0 * sign(rng));
                warp(x, [[1.0, 0.0, dx], [0.0, 1.0, dy]])
            }
            Corruption::Stripe => {
                let mut y = *x;
                for (i, v) in y.iter_mut().enumerate() {
                    let col = i % SIDE;
                    if !(7..21).contains(&col) {
                        *v = 1.0 - *v;
                    }
                }
                y
            }
            Corruption::Fog => fog(x, rng),
            Corruption::Spatter => spatter(x, rng),
            Corruption::DottedLine => dotted_line(x, rng),
            Corruption::Zigzag => zigzag(x, rng),
            Corruption::CannyEdges => canny(x),
        }
    }
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Corruption {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        Corruption::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "corruption",
                    format!(
                        "unknown corruption {s:?}; expected one of {}",
                        Corruption::ALL.map(|c| c.name()).join(", ")
                    ),
                )
            })
    }
}

/// The corrupted copy of every image of `split` (28x28), same labels and order. Image `i`
/// draws from a generator seeded by `seed`, the corruption and `i`, so the result is the
/// same on any thread count.
pub fn corrupt_split(split: &Split, kind: Corruption, seed: u64) -> Result<Split> {
    if (split.rows(), split.cols()) != (SIDE, SIDE) {
        return Err(Error::invalid(
            "corruption",
            format!(
                "MNIST-C corrupts 28x28 images, got {}x{}",
                split.rows(),
                split.cols()
            ),
        ));
    }
    let images: Vec<Vec<u8>> = (0..split.len())
        .into_par_iter()
        .map(|i| corrupt_image(split, i, kind, seed))
        .collect::<Result<_>>()?;
    Split::from_raw(
        format!("{} ({})", split.name(), kind.name()),
        images.concat(),
        split.labels(),
        SIDE,
        SIDE,
    )
}

/// Image `i` of `split` as [`corrupt_split`] corrupts it.
pub fn corrupt_image(split: &Split, i: usize, kind: Corruption, seed: u64) -> Result<Vec<u8>> {
    let img = split
        .image(i)
        .ok_or_else(|| Error::invalid("corruption", format!("no image {i} in {}", split.name())))?;
    let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(seed, kind.index()), i as u64));
    kind.apply(img, &mut rng)
}

/// Writes a corrupted copy of `mnist` to `dir` as the four raw IDX files of MNIST: the
/// training files unchanged, the test images corrupted by `kind` (seeded by `seed`), the test
/// labels unchanged. Returns the paths written.
pub fn write_dataset(
    mnist: &Mnist,
    kind: Corruption,
    seed: u64,
    dir: &Path,
) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let test = corrupt_split(&mnist.test, kind, seed)?;
    let pixels = |s: &Split| -> Vec<u8> { s.iter().flat_map(|(img, _)| img.to_vec()).collect() };
    let files: [(&str, Vec<u8>); 4] = [
        (
            "train-images-idx3-ubyte",
            images_idx(&mnist.train, &pixels(&mnist.train)),
        ),
        (
            "train-labels-idx1-ubyte",
            encode_idx(&[mnist.train.len() as u32], &mnist.train.labels()),
        ),
        ("t10k-images-idx3-ubyte", images_idx(&test, &pixels(&test))),
        (
            "t10k-labels-idx1-ubyte",
            encode_idx(&[test.len() as u32], &test.labels()),
        ),
    ];
    let mut out = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(name);
        crate::fsutil::write_bytes_atomic(&path, &bytes)?;
        out.push(path);
    }
    Ok(out)
}

fn images_idx(s: &Split, pixels: &[u8]) -> Vec<u8> {
    encode_idx(&[s.len() as u32, s.rows() as u32, s.cols() as u32], pixels)
}

// ---------------------------------------------------------------------------------------
// Image helpers, on `[0, 1]` images of 28x28 in f64.

type Img = [f64; N];

fn map(x: &Img, mut f: impl FnMut(f64) -> f64) -> Img {
    let mut y = [0f64; N];
    for (o, &v) in y.iter_mut().zip(x) {
        *o = f(v).clamp(0.0, 1.0);
    }
    y
}

fn sign(rng: &mut ChaCha8Rng) -> f64 {
    if rng.random::<bool>() { 1.0 } else { -1.0 }
}

fn poisson(lambda: f64, rng: &mut ChaCha8Rng) -> f64 {
    if lambda <= 0.0 {
        return 0.0;
    }
    Poisson::new(lambda).map_or(lambda, |p| p.sample(rng))
}

/// Gaussian smoothing as `scipy.ndimage.gaussian_filter` does it: separable, the kernel cut
/// at 4 σ, the image extended by repeating its edge pixels.
fn gaussian(x: &Img, sigma: f64) -> Img {
    let r = (4.0 * sigma + 0.5) as isize;
    let mut k: Vec<f64> = (-r..=r)
        .map(|i| (-0.5 * (i * i) as f64 / (sigma * sigma)).exp())
        .collect();
    let total: f64 = k.iter().sum();
    k.iter_mut().for_each(|w| *w /= total);
    let clamp = |i: isize| i.clamp(0, SIDE as isize - 1) as usize;
    let mut h = [0f64; N];
    for y in 0..SIDE {
        for xx in 0..SIDE {
            h[y * SIDE + xx] = (-r..=r)
                .zip(&k)
                .map(|(d, w)| w * x[y * SIDE + clamp(xx as isize + d)])
                .sum();
        }
    }
    let mut out = [0f64; N];
    for y in 0..SIDE {
        for xx in 0..SIDE {
            out[y * SIDE + xx] = (-r..=r)
                .zip(&k)
                .map(|(d, w)| w * h[clamp(y as isize + d) * SIDE + xx])
                .sum();
        }
    }
    out
}

/// Bilinear sample at column `cx`, row `cy`; pixels outside the image are 0.
fn sample(x: &Img, cx: f64, cy: f64) -> f64 {
    let (x0, y0) = (cx.floor(), cy.floor());
    let (fx, fy) = (cx - x0, cy - y0);
    let at = |c: f64, r: f64| -> f64 {
        if c < 0.0 || r < 0.0 || c > (SIDE - 1) as f64 || r > (SIDE - 1) as f64 {
            0.0
        } else {
            x[r as usize * SIDE + c as usize]
        }
    };
    at(x0, y0) * (1.0 - fx) * (1.0 - fy)
        + at(x0 + 1.0, y0) * fx * (1.0 - fy)
        + at(x0, y0 + 1.0) * (1.0 - fx) * fy
        + at(x0 + 1.0, y0 + 1.0) * fx * fy
}

/// The image whose pixel `(col, row)` is the input at `m * (col, row, 1)`: an inverse map, as
/// `skimage.transform.warp` takes it.
fn warp(x: &Img, m: [[f64; 3]; 2]) -> Img {
    let mut y = [0f64; N];
    for row in 0..SIDE {
        for col in 0..SIDE {
            let (c, r) = (col as f64, row as f64);
            let sc = m[0][0] * c + m[0][1] * r + m[0][2];
            let sr = m[1][0] * c + m[1][1] * r + m[1][2];
            y[row * SIDE + col] = sample(x, sc, sr).clamp(0.0, 1.0);
        }
    }
    y
}

/// The linear map `a` with the translation that keeps the image centre (13.5, 13.5) fixed.
fn centred(a: [[f64; 2]; 2]) -> [[f64; 3]; 2] {
    let c = (SIDE as f64 - 1.0) / 2.0;
    [
        [a[0][0], a[0][1], c * (1.0 - a[0][0] - a[0][1])],
        [a[1][0], a[1][1], c * (1.0 - a[1][0] - a[1][1])],
    ]
}

/// Blur (σ 0.7), then twice over the interior from the bottom right: each pixel swapped, with
/// probability 1/2, with the neighbour at an offset in {-1, 0} on each axis; blur again.
fn glass_blur(x: &Img, rng: &mut ChaCha8Rng) -> Img {
    let blurred = gaussian(x, 0.7);
    // MNIST-C shuffles the 8-bit image.
    let mut q = [0f64; N];
    for (o, v) in q.iter_mut().zip(&blurred) {
        *o = (v.clamp(0.0, 1.0) * 255.0).floor();
    }
    for _ in 0..2 {
        for h in (2..SIDE).rev() {
            for w in (2..SIDE).rev() {
                if rng.random::<bool>() {
                    let dx = rng.random_range(-1..1i64) as isize;
                    let dy = rng.random_range(-1..1i64) as isize;
                    let (h2, w2) = ((h as isize + dy) as usize, (w as isize + dx) as usize);
                    q.swap(h * SIDE + w, h2 * SIDE + w2);
                }
            }
        }
    }
    let q = q.map(|v| v / 255.0);
    gaussian(&q, 0.7).map(|v| v.clamp(0.0, 1.0))
}

/// ImageMagick's motion blur (radius 10, σ 3): each pixel the Gaussian-weighted sum of 21
/// pixels behind it along `angle` degrees, at whole-pixel offsets, edges repeated.
fn motion_blur(x: &Img, angle: f64) -> Img {
    let (width, sigma) = (21usize, 3.0f64);
    let mut w: Vec<f64> = (0..width)
        .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= total);
    let (s, c) = angle.to_radians().sin_cos();
    let offsets: Vec<(isize, isize)> = (0..width)
        .map(|i| {
            let i = i as f64;
            ((i * c - 0.5).ceil() as isize, (i * s - 0.5).ceil() as isize)
        })
        .collect();
    let clamp = |i: isize| i.clamp(0, SIDE as isize - 1) as usize;
    let mut y = [0f64; N];
    for row in 0..SIDE {
        for col in 0..SIDE {
            y[row * SIDE + col] = offsets
                .iter()
                .zip(&w)
                .map(|(&(dx, dy), wt)| {
                    wt * x[clamp(row as isize + dy) * SIDE + clamp(col as isize + dx)]
                })
                .sum::<f64>()
                .clamp(0.0, 1.0);
        }
    }
    y
}

/// The diamond-square plasma fractal of MNIST-C on a 256x256 torus, scaled to `[0, 1]`.
fn plasma(decay: f64, rng: &mut ChaCha8Rng) -> Vec<f64> {
    const SIZE: usize = 256;
    let mut m = vec![0f64; SIZE * SIZE];
    let mut step = SIZE;
    let mut wibble = 100.0f64;
    let at = |i: usize, j: usize| (i % SIZE) * SIZE + (j % SIZE);
    while step >= 2 {
        let h = step / 2;
        let g = SIZE / step;
        let noisy =
            |sum: f64, rng: &mut ChaCha8Rng| sum / 4.0 + wibble * rng.random_range(-wibble..wibble);
        // Squares: each centre from its four corners.
        for i in 0..g {
            for j in 0..g {
                let s = m[at(i * step, j * step)]
                    + m[at((i + 1) * step, j * step)]
                    + m[at(i * step, (j + 1) * step)]
                    + m[at((i + 1) * step, (j + 1) * step)];
                m[at(i * step + h, j * step + h)] = noisy(s, rng);
            }
        }
        // Diamonds: each edge midpoint from the two centres and two corners beside it.
        let centre = |m: &[f64], i: usize, j: usize| m[at(i * step + h, j * step + h)];
        let corner = |m: &[f64], i: usize, j: usize| m[at(i * step, j * step)];
        for i in 0..g {
            for j in 0..g {
                let s = centre(&m, i, j)
                    + centre(&m, i + g - 1, j)
                    + corner(&m, i, j)
                    + corner(&m, i, j + 1);
                m[at(i * step, j * step + h)] = noisy(s, rng);
            }
        }
        for i in 0..g {
            for j in 0..g {
                let s = centre(&m, i, j)
                    + centre(&m, i, j + g - 1)
                    + corner(&m, i, j)
                    + corner(&m, i + 1, j);
                m[at(i * step + h, j * step)] = noisy(s, rng);
            }
        }
        step /= 2;
        wibble /= decay;
    }
    let lo = m.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = m.iter().copied().fold(f64::NEG_INFINITY, f64::max) - lo;
    m.iter().map(|v| (v - lo) / hi.max(1e-12)).collect()
}

/// `x + 3 plasma`, rescaled so the image's maximum stays where it was.
fn fog(x: &Img, rng: &mut ChaCha8Rng) -> Img {
    let (strength, decay) = (3.0, 1.4);
    let max = x.iter().copied().fold(0.0, f64::max);
    let p = plasma(decay, rng);
    let mut y = [0f64; N];
    for (i, o) in y.iter_mut().enumerate() {
        let v = x[i] + strength * p[(i / SIDE) * 256 + i % SIDE];
        *o = (v * max / (max + strength)).clamp(0.0, 1.0);
    }
    y
}

/// Mud: noise N(0.65, 0.3), smoothed (σ 1); where it exceeds 0.65, a mask smoothed again
/// (σ 1.5) and kept from 0.8 up; the image mixed with grey 63/255 under the mask.
fn spatter(x: &Img, rng: &mut ChaCha8Rng) -> Img {
    let Ok(normal) = Normal::new(0.65, 0.3) else {
        return *x;
    };
    let mut liquid = [0f64; N];
    for v in liquid.iter_mut() {
        *v = normal.sample(rng);
    }
    let liquid = gaussian(&liquid, 1.0);
    let mask = liquid.map(|v| if v > 0.65 { 1.0 } else { 0.0 });
    let mask = gaussian(&mask, 1.5).map(|v| if v < 0.8 { 0.0 } else { v });
    let mut y = [0f64; N];
    for i in 0..N {
        y[i] = (x[i] * (1.0 - mask[i]) + 63.0 / 255.0 * mask[i]).clamp(0.0, 1.0);
    }
    y
}

/// MNIST-C's antialiased line from `(c0, r0)` to `(c1, r1)` (columns, rows): `log(1 - d/2.3)
/// + 1` at vertical distance `d` from the line, between columns `floor(c0)` and `ceil(c1)`.
fn line(c0: f64, r0: f64, c1: f64, r1: f64) -> Img {
    let mut out = [0f64; N];
    if c1 == c0 {
        return out;
    }
    let m = (r1 - r0) / (c1 - c0);
    let (l, r) = (c0.floor(), c1.ceil());
    for row in 0..SIDE {
        for col in 0..SIDE {
            let c = col as f64;
            if c < l || c >= r {
                continue;
            }
            let d = (row as f64 - (m * (c - c0) + r0))
                .abs()
                .clamp(0.0, 2.3 - 1e-10);
            out[row * SIDE + col] = ((1.0 - d / 2.3).ln() + 1.0).clamp(0.0, 1.0);
        }
    }
    out
}

/// A line across the image from a random row on the left to one on the right, with every
/// other pair of columns blanked.
fn dotted_line(x: &Img, rng: &mut ChaCha8Rng) -> Img {
    let (r0, r1) = (
        rng.random_range(0..27) as f64,
        rng.random_range(0..27) as f64,
    );
    let mut l = line(0.0, r0, 27.0, r1);
    for (i, v) in l.iter_mut().enumerate() {
        if (i % SIDE / 2).is_multiple_of(2) {
            *v = 0.0;
        }
    }
    let mut y = [0f64; N];
    for i in 0..N {
        y[i] = (x[i] + l[i]).clamp(0.0, 1.0);
    }
    y
}

/// A zigzag of 2-pixel teeth from column 2 to 25, tilted to end up to 5 rows from its start.
fn zigzag(x: &Img, rng: &mut ChaCha8Rng) -> Img {
    let (a, b) = (2.0f64, 2.0f64);
    let (c0, c1) = (2.0f64, 25.0f64);
    let r0 = rng.random_range(0..27) as f64;
    let r1 = r0 + rng.random_range(-5..5) as f64;
    let theta = ((r1 - r0) / (c1 - c0)).atan();
    let d = (c1 - c0) / theta.cos();
    let mut points = vec![(0.0f64, 0.0f64)];
    let teeth = ((d - a) / (2.0 * a)).floor() as usize + 1;
    let mut last_r = 0.0;
    for i in 0..teeth {
        last_r = if i % 2 == 0 { b } else { -b };
        points.push(((2 * i + 1) as f64 * a, last_r));
    }
    let max_c = 2.0 * a * (d / (2.0 * a)).floor();
    if d != max_c {
        points.push((d, last_r / (2.0 * (d - max_c))));
    }
    let (s, c) = theta.sin_cos();
    let pts: Vec<(f64, f64)> = points
        .iter()
        .map(|&(pc, pr)| (c * pc - s * pr + c0, s * pc + c * pr + r0))
        .collect();
    let mut y = *x;
    for w in pts.windows(2) {
        let l = line(w[0].0, w[0].1, w[1].0, w[1].1);
        for i in 0..N {
            y[i] = (y[i] + l[i]).clamp(0.0, 1.0);
        }
    }
    y
}

/// Canny's edge detector (σ 1, hysteresis thresholds 0.1 and 0.2 on the Sobel gradient
/// magnitude of the smoothed image): edge pixels 1, the rest 0.
fn canny(x: &Img) -> Img {
    let smooth = gaussian(x, 1.0);
    let at = |r: isize, c: isize| -> f64 {
        let (r, c) = (r.clamp(0, 27) as usize, c.clamp(0, 27) as usize);
        smooth[r * SIDE + c]
    };
    let mut gx = [0f64; N];
    let mut gy = [0f64; N];
    let mut mag = [0f64; N];
    for r in 0..SIDE as isize {
        for c in 0..SIDE as isize {
            let i = r as usize * SIDE + c as usize;
            gx[i] = (at(r - 1, c + 1) + 2.0 * at(r, c + 1) + at(r + 1, c + 1))
                - (at(r - 1, c - 1) + 2.0 * at(r, c - 1) + at(r + 1, c - 1));
            gy[i] = (at(r + 1, c - 1) + 2.0 * at(r + 1, c) + at(r + 1, c + 1))
                - (at(r - 1, c - 1) + 2.0 * at(r - 1, c) + at(r - 1, c + 1));
            mag[i] = gx[i].hypot(gy[i]);
        }
    }
    // Non-maximum suppression along the gradient, quantized to 0°, 45°, 90°, 135°; the
    // border is never an edge.
    let mut peak = [false; N];
    for r in 1..SIDE - 1 {
        for c in 1..SIDE - 1 {
            let i = r * SIDE + c;
            if mag[i] <= 0.0 {
                continue;
            }
            let angle = gy[i].atan2(gx[i]).to_degrees().rem_euclid(180.0);
            let (dr, dc): (isize, isize) = if !(22.5..157.5).contains(&angle) {
                (0, 1)
            } else if angle < 67.5 {
                (1, 1)
            } else if angle < 112.5 {
                (1, 0)
            } else {
                (1, -1)
            };
            let n = |sr: isize, sc: isize| {
                mag[(r as isize + sr) as usize * SIDE + (c as isize + sc) as usize]
            };
            peak[i] = mag[i] >= n(dr, dc) && mag[i] >= n(-dr, -dc);
        }
    }
    // Hysteresis: weak peaks connected (8-neighbourhood) to a strong one.
    let (low, high) = (0.1, 0.2);
    let mut edge = [false; N];
    let mut stack: Vec<usize> = (0..N).filter(|&i| peak[i] && mag[i] >= high).collect();
    for &i in &stack {
        edge[i] = true;
    }
    while let Some(i) = stack.pop() {
        let (r, c) = ((i / SIDE) as isize, (i % SIDE) as isize);
        for dr in -1..=1 {
            for dc in -1..=1 {
                let (nr, nc) = (r + dr, c + dc);
                if nr < 0 || nc < 0 || nr >= SIDE as isize || nc >= SIDE as isize {
                    continue;
                }
                let j = nr as usize * SIDE + nc as usize;
                if !edge[j] && peak[j] && mag[j] >= low {
                    edge[j] = true;
                    stack.push(j);
                }
            }
        }
    }
    edge.map(|e| if e { 1.0 } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vertical bar, like a 1.
    fn bar() -> Vec<u8> {
        let mut img = vec![0u8; N];
        for r in 6..22 {
            for c in 12..16 {
                img[r * SIDE + c] = 255;
            }
        }
        img
    }

    fn mean(v: &[u8]) -> f64 {
        v.iter().map(|&p| f64::from(p)).sum::<f64>() / v.len() as f64
    }

    #[test]
    fn every_corruption_is_seeded_and_changes_the_image() {
        let img = bar();
        for k in Corruption::ALL {
            let a = k.apply_seeded(&img, 1).unwrap();
            assert_eq!(a.len(), N, "{k}");
            assert_eq!(
                a,
                k.apply_seeded(&img, 1).unwrap(),
                "{k} is not deterministic"
            );
            assert_ne!(a, img, "{k} left the image unchanged");
            assert_eq!(k.name().parse::<Corruption>().unwrap(), k);
        }
    }

    #[test]
    fn corruptions_do_what_their_names_say() {
        let img = bar();
        let apply = |k: Corruption| k.apply_seeded(&img, 3).unwrap();
        // Brightness: +0.5 everywhere, clipped.
        assert!(apply(Corruption::Brightness).iter().all(|&p| p >= 127));
        // Stripe: the side bands inverted, the middle kept.
        let s = apply(Corruption::Stripe);
        assert_eq!(s[0], 255);
        assert_eq!(s[10 * SIDE + 13], 255);
        assert_eq!(s[10 * SIDE + 10], 0);
        // Translate: the ink moves by 3 px on both axes but keeps its amount.
        let t = apply(Corruption::Translate);
        assert!((mean(&t) - mean(&img)).abs() < 1.0);
        assert_ne!(t[6 * SIDE + 12], 255);
        // Scale: the digit shrinks, so there is less ink.
        assert!(mean(&apply(Corruption::Scale)) < 0.6 * mean(&img));
        // Canny: only edges remain, the bar's interior goes dark.
        let c = apply(Corruption::CannyEdges);
        assert!(c.iter().all(|&p| p == 0 || p == 255));
        assert_eq!(c[14 * SIDE + 13], 0, "interior of the bar");
        assert!(c.iter().filter(|&&p| p == 255).count() > 20);
        // Fog lifts the background somewhere.
        assert!(apply(Corruption::Fog)[..SIDE * 4].iter().any(|&p| p > 20));
        // Impulse noise: about 17 % of the pixels set to 0 or 255 at random.
        let z = Corruption::ImpulseNoise
            .apply_seeded(&[128u8; N], 3)
            .unwrap();
        let hit = z.iter().filter(|&&p| p != 128).count() as f64 / N as f64;
        assert!((0.12..0.22).contains(&hit), "{hit}");
        // Lines add ink to a blank image.
        for k in [Corruption::DottedLine, Corruption::Zigzag] {
            assert!(
                k.apply_seeded(&[0u8; N], 5)
                    .unwrap()
                    .iter()
                    .any(|&p| p > 200)
            );
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(Corruption::Fog.apply_seeded(&[0u8; 10], 0).is_err());
        assert!("nonsense".parse::<Corruption>().is_err());
    }
}
