//! A user's own digit (phone photo, scan, drawing) turned into an MNIST-like 28x28 input, the
//! way MNIST itself was made: ink found and cropped, scaled to fit 20x20 keeping its aspect,
//! and placed in 28x28 with its centre of mass at the centre.

use std::io::Cursor;
use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, ImageBuffer, ImageReader, Limits, Luma};

use crate::{Error, Result};

/// Largest image decoded, in pixels (a 40-megapixel photo); larger is an error, not an OOM.
pub const MAX_PIXELS: u64 = 40_000_000;
/// Side of the MNIST image.
pub const SIDE: usize = 28;
/// Side of the box the digit is scaled into.
pub const BOX: usize = 20;

/// A 28x28 digit with ink high (1.0) on a zero background, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Digit {
    /// 784 values in `[0, 1]`.
    pub pixels: Vec<f32>,
    /// Whether the source had dark ink on a light background (and was inverted).
    pub inverted: bool,
}

impl Digit {
    /// Pixel at `(row, col)`.
    pub fn at(&self, row: usize, col: usize) -> f32 {
        self.pixels.get(row * SIDE + col).copied().unwrap_or(0.0)
    }

    /// Centre of mass `(row, col)` of the ink.
    pub fn centre_of_mass(&self) -> (f32, f32) {
        centre_of_mass(&self.pixels, SIDE, SIDE)
    }

    /// The digit as an 8-bit grayscale PNG (ink white), e.g. for notebooks.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let bytes: Vec<u8> = self
            .pixels
            .iter()
            .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        let img = image::GrayImage::from_raw(SIDE as u32, SIDE as u32, bytes)
            .ok_or_else(|| Error::invalid("digit", "bad pixel count"))?;
        crate::display::encode_png(img, "digit")
    }

    /// Shows the digit as a PNG in an evcxr notebook.
    pub fn evcxr_display(&self) {
        if let Ok(png) = self.to_png() {
            print!(
                "{}",
                crate::display::envelope("image/png", &crate::display::base64(&png))
            );
        }
    }
}

/// Decodes an image file (PNG, JPEG, BMP, GIF, WebP) and preprocesses it.
pub fn load_digit(path: impl AsRef<Path>) -> Result<Digit> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    preprocess(&decode(&bytes, &name)?, &name)
}

/// Decodes image bytes held in memory and preprocesses them.
pub fn digit_from_bytes(bytes: &[u8], name: &str) -> Result<Digit> {
    preprocess(&decode(bytes, name)?, name)
}

/// The width and height an image file declares, read from its header without decoding it.
pub fn image_size(bytes: &[u8], name: &str) -> Result<(u32, u32)> {
    let bad = |reason: String| Error::Image {
        source_name: name.to_string(),
        reason,
    };
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
    if reader.format().is_none() {
        return Err(bad(
            "not a recognized image (PNG, JPEG, BMP, GIF or WebP)".into()
        ));
    }
    reader.into_dimensions().map_err(|e| bad(e.to_string()))
}

/// Side, in pixels, a large image is shrunk to before the preprocessing works on it in floats:
/// the digit ends up in 20x20 anyway, and a 36-megapixel photo in `f32` RGBA would take 576 MB.
pub const WORK_SIDE: u32 = 1024;

fn decode(bytes: &[u8], name: &str) -> Result<DynamicImage> {
    let bad = |reason: String| Error::Image {
        source_name: name.to_string(),
        reason,
    };
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
    if reader.format().is_none() {
        return Err(bad(
            "not a recognized image (PNG, JPEG, BMP, GIF or WebP)".into()
        ));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(60_000);
    limits.max_image_height = Some(60_000);
    limits.max_alloc = Some(MAX_PIXELS * 16);
    reader.limits(limits);
    let (w, h) = reader.into_dimensions().map_err(|e| bad(e.to_string()))?;
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(bad(format!(
            "{w}x{h} is larger than the {MAX_PIXELS}-pixel limit"
        )));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 16);
    reader.limits(limits);
    reader.decode().map_err(|e| bad(e.to_string()))
}

/// MNIST-style preprocessing of a decoded image (any colour type or bit depth).
pub fn preprocess(img: &DynamicImage, name: &str) -> Result<Digit> {
    let bad = |reason: &str| Error::Image {
        source_name: name.to_string(),
        reason: reason.to_string(),
    };
    if img.width() == 0 || img.height() == 0 {
        return Err(bad("empty image"));
    }
    let shrunk;
    let img = if img.width().max(img.height()) > WORK_SIDE {
        shrunk = img.thumbnail(WORK_SIDE, WORK_SIDE);
        &shrunk
    } else {
        img
    };
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (lum, inverted) = ink_luminance(img);
    let v = stretch_ink(lum, w, h, name)?;
    let pixels = centred_box(&v, w, h, name)?;
    Ok(Digit { pixels, inverted })
}

/// The image as ink luminance (light ink on dark, as MNIST), the local background taken
/// away, and whether it had to be inverted.
fn ink_luminance(img: &DynamicImage) -> (Vec<f32>, bool) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let rgba = img.to_rgba32f();
    let lum_alpha: Vec<(f32, f32)> = rgba
        .pixels()
        .map(|p| {
            (
                0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2],
                p[3].clamp(0.0, 1.0),
            )
        })
        .collect();
    // Transparent pixels are background: composite on white under dark ink, black under light.
    let (sum_la, sum_a) = lum_alpha
        .iter()
        .fold((0.0, 0.0), |(s, a), &(l, al)| (s + l * al, a + al));
    let opaque_mean = if sum_a > 0.0 { sum_la / sum_a } else { 1.0 };
    let transparent = lum_alpha.iter().any(|&(_, a)| a < 0.99);
    let backdrop = if opaque_mean < 0.5 { 1.0 } else { 0.0 };
    let mut lum: Vec<f32> = lum_alpha
        .iter()
        .map(|&(l, a)| a * l + (1.0 - a) * backdrop)
        .collect();
    // Polarity from the border: MNIST has light ink on a dark background.
    let border = border_median(&lum, w, h);
    let inverted = if transparent {
        backdrop > 0.5
    } else {
        border > 0.5
    };
    if inverted {
        lum.iter_mut().for_each(|v| *v = 1.0 - *v);
    }
    // Uneven lighting (a shadow, a lamp's falloff across the paper) is background too: take
    // away the local background: the lower quartile of a window two thirds of the side wide.
    let local = local_background(&lum, w, h);
    lum.iter_mut()
        .zip(&local)
        .for_each(|(v, b)| *v = (*v - b).max(0.0));
    (lum, inverted)
}

/// The ink stretched from the background level (0) to its strength (1), texture below a
/// quarter of it cleared; an error for an image with no ink.
fn stretch_ink(lum: Vec<f32>, w: usize, h: usize, name: &str) -> Result<Vec<f32>> {
    // Background removal: subtract the border level, stretch so the strongest ink is 1.
    let bg = border_median(&lum, w, h).min(percentile(&lum, 0.5));
    let ink = percentile(&lum, 0.995).max(lum.iter().cloned().fold(0.0, f32::max) * 0.9);
    let blank = |reason: &str| Error::Blank {
        source_name: name.to_string(),
        reason: reason.to_string(),
    };
    if ink - bg < 0.1 {
        return Err(blank(
            "the image is blank (no contrast between ink and background)",
        ));
    }
    let mut v: Vec<f32> = lum
        .into_iter()
        .map(|x| ((x - bg) / (ink - bg)).clamp(0.0, 1.0))
        .collect();
    // Paper texture and shadows below a quarter of the ink's strength are background.
    v.iter_mut().for_each(|x| {
        if *x < 0.25 {
            *x = 0.0
        }
    });
    Ok(v)
}

/// The ink's bounding box fitted into 20x20 (aspect kept, anti-aliased) and placed on 28x28
/// so that its centre of mass lands on the centre.
fn centred_box(v: &[f32], w: usize, h: usize, name: &str) -> Result<Vec<f32>> {
    let bad = |reason: &str| Error::Image {
        source_name: name.to_string(),
        reason: reason.to_string(),
    };
    let blank = |reason: &str| Error::Blank {
        source_name: name.to_string(),
        reason: reason.to_string(),
    };
    let (r0, r1, c0, c1) =
        bounding_box(v, w, h).ok_or_else(|| blank("no ink after background removal"))?;
    let (cw, ch) = (c1 - c0 + 1, r1 - r0 + 1);
    let crop: Vec<f32> = (r0..=r1)
        .flat_map(|r| v[r * w + c0..=r * w + c1].to_vec())
        .collect();
    // Fit into 20x20 keeping the aspect ratio (anti-aliased).
    let scale = BOX as f32 / cw.max(ch) as f32;
    let (nw, nh) = (
        ((cw as f32 * scale).round() as u32).clamp(1, BOX as u32),
        ((ch as f32 * scale).round() as u32).clamp(1, BOX as u32),
    );
    let buf: ImageBuffer<Luma<f32>, Vec<f32>> =
        ImageBuffer::from_raw(cw as u32, ch as u32, crop).ok_or_else(|| bad("crop failed"))?;
    let filter = if cw.max(ch) > BOX {
        FilterType::Triangle
    } else {
        FilterType::CatmullRom
    };
    let small = image::imageops::resize(&buf, nw, nh, filter);
    let (nw, nh) = (nw as usize, nh as usize);
    let small: Vec<f32> = small
        .into_raw()
        .into_iter()
        .map(|x| x.clamp(0.0, 1.0))
        .collect();
    // Place so that the centre of mass lands on the image centre.
    let (cy, cx) = centre_of_mass(&small, nw, nh);
    let centre = SIDE as f32 / 2.0 - 0.5;
    let top = (centre - cy).round() as isize;
    let left = (centre - cx).round() as isize;
    let mut pixels = vec![0f32; SIDE * SIDE];
    for y in 0..nh {
        for x in 0..nw {
            let (ty, tx) = (y as isize + top, x as isize + left);
            if (0..SIDE as isize).contains(&ty) && (0..SIDE as isize).contains(&tx) {
                pixels[ty as usize * SIDE + tx as usize] = small[y * nw + x];
            }
        }
    }
    Ok(pixels)
}

/// Side of the grid the local background is estimated on.
const BACKGROUND_GRID: usize = 32;

/// The slowly varying background of `lum` (ink high): the lower quartile of a window two
/// thirds of the side wide around each point (ink, under three quarters of any such window,
/// does not move it; a shadow's gradient does), computed on an area-averaged grid of at most
/// 32x32 cells and stretched back bilinearly.
fn local_background(lum: &[f32], w: usize, h: usize) -> Vec<f32> {
    let cell = w.max(h).div_ceil(BACKGROUND_GRID).max(1);
    let (gw, gh) = (w.div_ceil(cell), h.div_ceil(cell));
    let mut grid = vec![0f32; gw * gh];
    let mut count = vec![0u32; gw * gh];
    for (y, row) in lum.chunks(w).enumerate() {
        let g = (y / cell) * gw;
        for (x, part) in row.chunks(cell).enumerate() {
            grid[g + x] += part.iter().sum::<f32>();
            count[g + x] += part.len() as u32;
        }
    }
    grid.iter_mut()
        .zip(&count)
        .for_each(|(v, &n)| *v /= n.max(1) as f32);
    let low = lower_quartiles(&grid, gw, gh, gw.max(gh) / 3);
    // Bilinear from cell centres back to pixels: each pixel's two neighbouring cells and
    // weight along one axis, worked out once per column and once per row.
    let weights = |n: usize, cells: usize| -> Vec<(usize, usize, f32)> {
        (0..n)
            .map(|i| {
                let g = ((i as f32 + 0.5) / cell as f32 - 0.5).max(0.0);
                let g0 = (g as usize).min(cells - 1);
                (g0, (g0 + 1).min(cells - 1), (g - g0 as f32).clamp(0.0, 1.0))
            })
            .collect()
    };
    let (across, down) = (weights(w, gw), weights(h, gh));
    let mut out = Vec::with_capacity(w * h);
    for &(y0, y1, fy) in &down {
        let (r0, r1) = (&low[y0 * gw..(y0 + 1) * gw], &low[y1 * gw..(y1 + 1) * gw]);
        for &(x0, x1, fx) in &across {
            let top = r0[x0] * (1.0 - fx) + r0[x1] * fx;
            let bottom = r1[x0] * (1.0 - fx) + r1[x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// The lower quartile of the `2 radius + 1` square window (clipped at the edges) around every
/// cell of `grid` (values in `[0, 1]`, taken to 1/255): a histogram slid along each row.
fn lower_quartiles(grid: &[f32], gw: usize, gh: usize, radius: usize) -> Vec<f32> {
    let level = |v: f32| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as usize;
    let mut out = vec![0f32; gw * gh];
    for gy in 0..gh {
        let rows = gy.saturating_sub(radius)..=(gy + radius).min(gh - 1);
        let mut hist = [0u32; 256];
        let mut n = 0u32;
        let column = |x: usize, add: bool, hist: &mut [u32; 256], n: &mut u32| {
            for y in rows.clone() {
                let b = level(grid[y * gw + x]);
                if add {
                    hist[b] += 1;
                    *n += 1;
                } else {
                    hist[b] -= 1;
                    *n -= 1;
                }
            }
        };
        for x in 0..=radius.min(gw - 1) {
            column(x, true, &mut hist, &mut n);
        }
        for gx in 0..gw {
            let k = n / 4;
            let mut seen = 0;
            for (b, &c) in hist.iter().enumerate() {
                seen += c;
                if seen > k {
                    out[gy * gw + gx] = b as f32 / 255.0;
                    break;
                }
            }
            if gx >= radius {
                column(gx - radius, false, &mut hist, &mut n);
            }
            if gx + radius + 1 < gw {
                column(gx + radius + 1, true, &mut hist, &mut n);
            }
        }
    }
    out
}

fn border_median(v: &[f32], w: usize, h: usize) -> f32 {
    let mut border: Vec<f32> = Vec::with_capacity(2 * (w + h));
    for x in 0..w {
        border.push(v[x]);
        border.push(v[(h - 1) * w + x]);
    }
    for y in 0..h {
        border.push(v[y * w]);
        border.push(v[y * w + w - 1]);
    }
    percentile(&border, 0.5)
}

fn percentile(v: &[f32], q: f32) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    // A 1024-bin histogram: exact enough for [0, 1] data and linear in the image size.
    let mut hist = [0usize; 1024];
    for &x in v {
        // x >= 0 after the clamp: adding a half and truncating rounds (without a libm call).
        hist[(x.clamp(0.0, 1.0) * 1023.0 + 0.5) as usize] += 1;
    }
    let target = ((v.len() - 1) as f32 * q) as usize;
    let mut seen = 0;
    for (i, &c) in hist.iter().enumerate() {
        seen += c;
        if seen > target {
            return i as f32 / 1023.0;
        }
    }
    1.0
}

fn bounding_box(v: &[f32], w: usize, h: usize) -> Option<(usize, usize, usize, usize)> {
    let (mut r0, mut r1, mut c0, mut c1) = (usize::MAX, 0, usize::MAX, 0);
    for y in 0..h {
        for x in 0..w {
            if v[y * w + x] > 0.0 {
                r0 = r0.min(y);
                r1 = r1.max(y);
                c0 = c0.min(x);
                c1 = c1.max(x);
            }
        }
    }
    (r0 != usize::MAX).then_some((r0, r1, c0, c1))
}

fn centre_of_mass(v: &[f32], w: usize, h: usize) -> (f32, f32) {
    let (mut m, mut sy, mut sx) = (0f32, 0f32, 0f32);
    for y in 0..h {
        for x in 0..w {
            let p = v[y * w + x];
            m += p;
            sy += p * y as f32;
            sx += p * x as f32;
        }
    }
    if m > 0.0 {
        (sy / m, sx / m)
    } else {
        ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0)
    }
}

/// A preprocessed digit as `net`'s input batch of one: normalized, and centred in the model's
/// input side (a 32x32 model gets the 28x28 digit padded with background).
pub(crate) fn digit_input(
    net: &crate::models::Network,
    digit: &Digit,
) -> Result<candle_core::Tensor> {
    pixels_input(net, &[&digit.pixels])
}

/// 28x28 images (`[0, 1]`, ink high) as `net`'s input batch, as [`digit_input`] makes one.
pub(crate) fn pixels_input(
    net: &crate::models::Network,
    images: &[&[f32]],
) -> Result<candle_core::Tensor> {
    let spec = net.input_spec();
    let normalization = spec.normalization;
    let pad = spec.side.saturating_sub(SIDE) / 2;
    let mut input = vec![normalization.background(); images.len() * spec.len()];
    for (img, out) in images.iter().zip(input.chunks_mut(spec.len())) {
        for r in 0..SIDE.min(spec.side) {
            for c in 0..SIDE.min(spec.side) {
                out[(r + pad) * spec.side + c + pad] =
                    normalization.apply(img.get(r * SIDE + c).copied().unwrap_or(0.0));
            }
        }
    }
    Ok(candle_core::Tensor::from_vec(
        input,
        spec.batch_shape(images.len()),
        net.device(),
    )?)
}

/// Class probabilities of `net` for a preprocessed digit.
pub fn predict_digit(net: &crate::models::Network, digit: &Digit) -> Result<Vec<f32>> {
    use crate::models::Model;
    let logits = net.forward_t(&digit_input(net, digit)?, false)?;
    Ok(candle_nn::ops::softmax(&logits, candle_core::D::Minus1)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

/// The index of the largest value (the predicted class of a probability vector); 0 when empty.
///
/// ```
/// assert_eq!(mnist_kit::analysis::most_likely(&[0.1, 0.7, 0.2]), 1);
/// ```
pub fn most_likely(probabilities: &[f32]) -> usize {
    probabilities
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Rgba, RgbaImage};

    fn png(img: DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn an_off_centre_bar_ends_centred_with_its_aspect() {
        // Dark bar 10 wide x 40 tall on white paper, far in a corner of a 100x80 image.
        let mut img = GrayImage::from_pixel(100, 80, Luma([230]));
        for y in 5..45 {
            for x in 70..80 {
                img.put_pixel(x, y, Luma([20]));
            }
        }
        let d = digit_from_bytes(&png(DynamicImage::ImageLuma8(img)), "bar").unwrap();
        assert!(d.inverted, "dark ink on light paper detected");
        let (cy, cx) = d.centre_of_mass();
        assert!(
            (cy - 13.5).abs() <= 1.0 && (cx - 13.5).abs() <= 1.0,
            "{cy} {cx}"
        );
        // 40 tall -> 20 rows of ink; 10 wide -> 5 columns (aspect kept).
        let rows = (0..SIDE)
            .filter(|&r| (0..SIDE).any(|c| d.at(r, c) > 0.5))
            .count();
        let cols = (0..SIDE)
            .filter(|&c| (0..SIDE).any(|r| d.at(r, c) > 0.5))
            .count();
        assert!(
            (19..=21).contains(&rows) && (4..=6).contains(&cols),
            "{rows}x{cols}"
        );
        assert_eq!(d.at(0, 0), 0.0);
    }

    #[test]
    fn a_shadow_across_the_paper_is_background() {
        // A dark bar 6 wide x 60 tall on 200x200 paper; a shadow darkens the paper from 240
        // to 110 towards one corner (darker than a quarter of the ink's contrast).
        let draw = |shadow: bool| {
            let mut img = GrayImage::from_fn(200, 200, |x, y| {
                let s = if shadow {
                    (x + y).saturating_sub(200) as f32 / 200.0
                } else {
                    0.0
                };
                Luma([(240.0 - 130.0 * s) as u8])
            });
            for y in 70..130 {
                for x in 97..103 {
                    img.put_pixel(x, y, Luma([20]));
                }
            }
            digit_from_bytes(&png(DynamicImage::ImageLuma8(img)), "bar").unwrap()
        };
        let (plain, shaded) = (draw(false), draw(true));
        let diff: f32 = plain
            .pixels
            .iter()
            .zip(&shaded.pixels)
            .map(|(a, b)| (a - b).abs())
            .sum();
        let ink: f32 = plain.pixels.iter().sum();
        assert!(diff < 0.1 * ink, "the shadow changed {diff} of {ink}");
    }

    #[test]
    fn light_ink_alpha_and_bad_inputs() {
        // Light ink on black: no inversion.
        let mut img = GrayImage::new(40, 40);
        for y in 10..30 {
            img.put_pixel(20, y, Luma([255]));
            img.put_pixel(21, y, Luma([255]));
        }
        assert!(
            !digit_from_bytes(&png(DynamicImage::ImageLuma8(img)), "light")
                .unwrap()
                .inverted
        );
        // Black strokes on a transparent background.
        let mut rgba = RgbaImage::from_pixel(50, 50, Rgba([0, 0, 0, 0]));
        for y in 10..40 {
            rgba.put_pixel(25, y, Rgba([0, 0, 0, 255]));
        }
        let d = digit_from_bytes(&png(DynamicImage::ImageRgba8(rgba)), "alpha").unwrap();
        assert!(d.pixels.iter().any(|&v| v > 0.9));
        // 16-bit grayscale works.
        let img16 = ImageBuffer::<Luma<u16>, _>::from_fn(30, 30, |x, _| {
            Luma([if x == 15 { 0 } else { 60_000 }])
        });
        assert!(digit_from_bytes(&png(DynamicImage::ImageLuma16(img16)), "16bit").is_ok());
        // Blank, 1x1 and non-images are typed errors, never panics.
        let blank = png(DynamicImage::ImageLuma8(GrayImage::from_pixel(
            20,
            20,
            Luma([255]),
        )));
        assert!(
            digit_from_bytes(&blank, "blank")
                .unwrap_err()
                .to_string()
                .contains("blank")
        );
        let one = png(DynamicImage::ImageLuma8(GrayImage::from_pixel(
            1,
            1,
            Luma([0]),
        )));
        assert!(digit_from_bytes(&one, "1x1").is_err());
        assert!(digit_from_bytes(b"definitely not an image", "text").is_err());
        assert!(digit_from_bytes(&[], "empty").is_err());
    }
}
