//! Image grids (samples, mistakes, filters, attention maps, saliency): grayscale images with
//! captions, shown as HTML with embedded PNGs, so they render in every notebook front-end and
//! in a saved HTML file.

use std::path::Path;

use image::{GrayImage, imageops};

use crate::display::esc;

use crate::analysis::custom_digit::{Digit, SIDE};
use crate::analysis::{Prediction, attention_maps, saliency};
use crate::data::Split;
use crate::fsutil::write_bytes_atomic;
use crate::models::Network;
use crate::{Error, Result};

/// One grayscale image and its caption.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tile {
    /// Caption under the image.
    pub caption: String,
    /// Pixel values, row-major; scaled to the tile's own min..max when shown.
    pub pixels: Vec<f32>,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl Tile {
    /// The smallest and the largest pixel value.
    pub fn range(&self) -> (f32, f32) {
        range(&self.pixels)
    }
}

/// The smallest and the largest of `values` (`(inf, -inf)` when empty).
pub(crate) fn range(values: &[f32]) -> (f32, f32) {
    values
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        })
}

/// A titled grid of [`Tile`]s.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageGrid {
    /// Title above the grid.
    pub title: String,
    /// Tiles in reading order.
    pub tiles: Vec<Tile>,
    /// Tiles per row.
    pub columns: usize,
    /// Display scale (pixels per image pixel).
    pub zoom: u32,
    /// The pixel values shown as black and white, the same for every tile; `None`: each tile
    /// stretched to its own range.
    pub fixed_range: Option<(f32, f32)>,
    /// What the grey levels mean, shown as a colour bar (`None`: no bar, for plain digits).
    /// Tiles are stretched to their own range, so the bar reads from each tile's lowest to its
    /// highest value.
    pub scale_label: Option<String>,
}

impl ImageGrid {
    /// An empty grid.
    pub fn new(title: impl Into<String>, columns: usize) -> Self {
        ImageGrid {
            title: title.into(),
            tiles: Vec::new(),
            columns: columns.max(1),
            zoom: 3,
            fixed_range: None,
            scale_label: None,
        }
    }

    /// Adds a tile; `pixels.len()` must be `width * height`.
    pub fn push(
        &mut self,
        caption: impl Into<String>,
        pixels: Vec<f32>,
        width: usize,
        height: usize,
    ) -> Result<()> {
        if pixels.len() != width * height || width == 0 {
            return Err(Error::invalid(
                "image tile",
                format!("{} values for {width}x{height}", pixels.len()),
            ));
        }
        self.tiles.push(Tile {
            caption: caption.into(),
            pixels,
            width,
            height,
        });
        Ok(())
    }

    /// One tile as a zoomed grayscale image, contrast-stretched to its own range.
    fn tile_image(&self, t: &Tile) -> Result<GrayImage> {
        let (lo, hi) = self.fixed_range.unwrap_or_else(|| t.range());
        let span = if hi > lo { hi - lo } else { 1.0 };
        let bytes = t
            .pixels
            .iter()
            .map(|v| (((v - lo) / span) * 255.0).round() as u8)
            .collect();
        let img = GrayImage::from_raw(t.width as u32, t.height as u32, bytes)
            .ok_or_else(|| Error::invalid("image tile", "bad size"))?;
        let z = self.zoom.max(1);
        Ok(imageops::resize(
            &img,
            t.width as u32 * z,
            t.height as u32 * z,
            imageops::FilterType::Nearest,
        ))
    }

    /// HTML: a table of PNG images with captions.
    pub fn to_html(&self) -> Result<String> {
        let mut h = format!("<div><b>{}</b><table>", esc(&self.title));
        for row in self.tiles.chunks(self.columns) {
            h.push_str("<tr>");
            for t in row {
                h.push_str(&format!(
                    "<td style=\"text-align:center\"><img src=\"data:image/png;base64,{}\"/><br/><small>{}</small></td>",
                    crate::display::base64(&crate::display::encode_png(self.tile_image(t)?, &t.caption)?),
                    esc(&t.caption)
                ));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table></div>");
        Ok(h)
    }

    /// All tiles in one PNG (no captions), `columns` per row with a 2-pixel gap: for reports.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let z = self.zoom.max(1) as usize;
        let cell_w = self.tiles.iter().map(|t| t.width).max().unwrap_or(1) * z + 2;
        let cell_h = self.tiles.iter().map(|t| t.height).max().unwrap_or(1) * z + 2;
        let cols = self.columns.min(self.tiles.len()).max(1);
        let rows = self.tiles.len().div_ceil(cols).max(1);
        let mut canvas = GrayImage::from_pixel(
            (cols * cell_w) as u32,
            (rows * cell_h) as u32,
            image::Luma([255]),
        );
        for (k, t) in self.tiles.iter().enumerate() {
            let (x, y) = ((k % cols) * cell_w + 1, (k / cols) * cell_h + 1);
            imageops::replace(&mut canvas, &self.tile_image(t)?, x as i64, y as i64);
        }
        crate::display::encode_png(canvas, &self.title)
    }

    /// Writes [`ImageGrid::to_png`] to `path`.
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<()> {
        write_bytes_atomic(path.as_ref(), &self.to_png()?)
    }

    /// Writes a standalone HTML page.
    pub fn save_html(&self, path: impl AsRef<Path>) -> Result<()> {
        let html = format!(
            "<!doctype html><html><body>{}</body></html>",
            self.to_html()?
        );
        write_bytes_atomic(path.as_ref(), html.as_bytes())
    }

    /// Shows the grid in an evcxr notebook: HTML with a caption under every tile, and the
    /// grid as one PNG in the same display bundle (what a git host renders).
    pub fn evcxr_display(&self) {
        match self.to_html() {
            Ok(h) => crate::display::html(&h),
            Err(e) => println!("cannot show image grid: {e}"),
        }
        if crate::display::png_mode()
            && let Ok(png) = self.captioned_png().or_else(|_| self.to_png())
        {
            crate::display::png(&png);
        }
    }
}

/// Encodes a grayscale image as PNG; `name` says which image in errors.
/// Ready-made grids of the study.
impl ImageGrid {
    /// Images of `split` at `positions`, captioned with their labels.
    pub fn samples(
        title: &str,
        split: &Split,
        positions: &[usize],
        columns: usize,
    ) -> Result<Self> {
        let mut g = ImageGrid::new(title, columns);
        for &i in positions {
            let (Some(img), Some(label)) = (split.image(i), split.label(i)) else {
                return Err(Error::invalid(
                    "sample",
                    format!(
                        "{i} is out of range for {} ({} images)",
                        split.name(),
                        split.len()
                    ),
                ));
            };
            let pixels = img.iter().map(|&b| f32::from(b)).collect();
            g.push(format!("#{i}: {label}"), pixels, split.cols(), split.rows())?;
        }
        Ok(g)
    }

    /// Test image `index` of `split` as it is and under each MNIST-C corruption (seeded by
    /// `seed`, as the study's corrupted test sets are).
    pub fn corruptions(split: &Split, index: usize, seed: u64) -> Result<Self> {
        use crate::data::corrupt::Corruption;
        let (Some(img), Some(label)) = (split.image(index), split.label(index)) else {
            return Err(Error::invalid(
                "corruption figure",
                format!("no image {index} in {}", split.name()),
            ));
        };
        let mut g = ImageGrid::new(
            format!("Test image #{index} (a {label}) under the 15 MNIST-C corruptions"),
            8,
        );
        let tile = |p: &[u8]| p.iter().map(|&b| f32::from(b)).collect::<Vec<f32>>();
        g.push("clean", tile(img), split.cols(), split.rows())?;
        for k in Corruption::ALL {
            let c = crate::data::corrupt::corrupt_image(split, index, k, seed)?;
            g.push(k.label(), tile(&c), split.cols(), split.rows())?;
        }
        // One grey scale for all tiles (0 black, 255 white), so brightness and fog show.
        g.fixed_range = Some((0.0, 255.0));
        Ok(g)
    }

    /// A gallery of predictions (mistakes, unsure answers): `true → predicted (confidence)`.
    pub fn predictions(title: &str, split: &Split, predictions: &[Prediction]) -> Result<Self> {
        let mut g = ImageGrid::samples(
            title,
            split,
            &predictions.iter().map(|p| p.index).collect::<Vec<_>>(),
            8,
        )?;
        for (t, p) in g.tiles.iter_mut().zip(predictions) {
            t.caption = format!(
                "#{}: {} → {} ({:.0}%)",
                p.index,
                p.label,
                p.predicted,
                100.0 * p.confidence
            );
        }
        Ok(g)
    }

    /// The first layer's weights as images: conv kernels, or each dense unit's input weights
    /// as a 28x28 (or 32x32) template; at most `limit` of them.
    pub fn filters(net: &Network, limit: usize) -> Result<Self> {
        let w = net.first_layer_weight().ok_or_else(|| {
            Error::invalid(
                "filters",
                format!("{} has no first layer weight", net.name()),
            )
        })?;
        let dims = w.dims().to_vec();
        let units = dims.first().copied().unwrap_or(0);
        let per_unit: usize = dims.iter().skip(1).product();
        let (width, height, what) = match dims.as_slice() {
            [_, c, k, _] => (*k, c * k, "kernel"),
            _ => {
                let side = (per_unit as f64).sqrt() as usize;
                (side, per_unit / side.max(1), "template")
            }
        };
        let values: Vec<f32> = w.flatten_all()?.to_vec1()?;
        let mut g = ImageGrid::new(format!("{}: first-layer {what}s", net.name()), 8);
        g.zoom = if width < 10 { 12 } else { 3 };
        for (u, chunk) in values
            .chunks(per_unit.max(1))
            .take(units.min(limit))
            .enumerate()
        {
            g.push(format!("unit {u}"), chunk.to_vec(), width, height)?;
        }
        Ok(g)
    }

    /// Each sample next to the model's attention maps over it (`lenet5-attention`), or next to
    /// its input-gradient saliency for models without attention.
    pub fn attention(net: &Network, split: &Split, positions: &[usize]) -> Result<Self> {
        let mut g = ImageGrid::new(format!("{}: where it looks", net.name()), 4);
        for &i in positions {
            let img = split.image(i).ok_or_else(|| {
                Error::invalid(
                    "sample",
                    format!("{i} is out of range for {}", split.name()),
                )
            })?;
            let label = split.label(i).unwrap_or(0);
            g.push(
                format!("#{i}: {label}"),
                img.iter().map(|&b| f32::from(b)).collect(),
                split.cols(),
                split.rows(),
            )?;
            let maps = attention_maps(net, split, i)?;
            if maps.is_empty() {
                let s = saliency(net, split, i, None)?;
                let side = net.input_spec().side;
                g.push("saliency", s, side, side)?;
            }
            for (k, (side, m)) in maps.into_iter().enumerate() {
                g.push(
                    format!("attention {} ({side}x{side})", k + 1),
                    m,
                    side,
                    side,
                )?;
            }
        }
        g.columns = g.tiles.len() / positions.len().max(1);
        g.scale_label = Some(if g.tiles.iter().any(|t| t.caption == "saliency") {
            "saliency: |d score / d pixel| (each map from its lowest to its highest)".into()
        } else {
            "attention weight (each map from its lowest to its highest)".into()
        });
        Ok(g)
    }

    /// Preprocessed custom digits with captions (e.g. the prediction).
    pub fn digits(title: &str, digits: &[(String, &Digit)]) -> Result<Self> {
        let mut g = ImageGrid::new(title, 8);
        for (caption, d) in digits {
            g.push(caption.clone(), d.pixels.clone(), SIDE, SIDE)?;
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_html_embeds_one_png_per_tile() {
        let mut g = ImageGrid::new("t <1>", 2);
        for i in 0..3 {
            g.push(format!("tile {i}"), vec![i as f32; 4], 2, 2)
                .unwrap();
        }
        assert!(g.push("bad", vec![0.0; 3], 2, 2).is_err());
        let h = g.to_html().unwrap();
        assert_eq!(h.matches("data:image/png;base64,iVBORw0KGgo").count(), 3);
        assert_eq!(h.matches("<tr>").count(), 2);
        assert!(h.contains("t &lt;1&gt;"));
    }

    #[test]
    fn study_grids_have_one_tile_per_item() {
        let split = Split::from_raw("s", vec![7u8; 3 * 784], vec![1, 2, 3], 28, 28).unwrap();
        let g = ImageGrid::samples("s", &split, &[0, 2], 4).unwrap();
        assert_eq!(g.tiles.len(), 2);
        assert_eq!(g.tiles[1].caption, "#2: 3");
        assert!(ImageGrid::samples("s", &split, &[3], 4).is_err());
        let png = image::load_from_memory(&g.to_png().unwrap()).unwrap();
        assert_eq!((png.width(), png.height()), (2 * (28 * 3 + 2), 28 * 3 + 2));

        let dev = candle_core::Device::Cpu;
        let lenet = Network::preset("lenet5", 0, &dev).unwrap();
        let f = ImageGrid::filters(&lenet, 100).unwrap();
        assert_eq!(f.tiles.len(), 6);
        assert_eq!((f.tiles[0].width, f.tiles[0].height), (5, 5));
        let mlp = Network::preset("dense128", 0, &dev).unwrap();
        let f = ImageGrid::filters(&mlp, 16).unwrap();
        assert_eq!(f.tiles.len(), 16);
        assert_eq!((f.tiles[0].width, f.tiles[0].height), (28, 28));

        let att = Network::preset("lenet5-attention", 0, &dev).unwrap();
        let g = ImageGrid::attention(&att, &split, &[0, 1]).unwrap();
        assert_eq!(g.tiles.len(), 6, "input + 2 attention maps per sample");
        let g = ImageGrid::attention(&lenet, &split, &[0]).unwrap();
        assert_eq!(g.tiles[1].caption, "saliency");
        assert_eq!(g.tiles[1].width, 32);
    }
}
