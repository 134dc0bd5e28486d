//! Image grids (samples, mistakes, filters, attention maps, saliency): grayscale images with
//! captions, shown as HTML with embedded PNGs, so they render in every notebook front-end and
//! in a saved HTML file.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, GrayImage, imageops};

use crate::analysis::custom_digit::base64_lite::encode;
use crate::fsutil::write_bytes_atomic;
use crate::{Error, Result};

/// One grayscale image and its caption.
#[derive(Debug, Clone, PartialEq)]
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

/// A titled grid of [`Tile`]s.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageGrid {
    /// Title above the grid.
    pub title: String,
    /// Tiles in reading order.
    pub tiles: Vec<Tile>,
    /// Tiles per row.
    pub columns: usize,
    /// Display scale (pixels per image pixel).
    pub zoom: u32,
}

impl ImageGrid {
    /// An empty grid.
    pub fn new(title: impl Into<String>, columns: usize) -> Self {
        ImageGrid {
            title: title.into(),
            tiles: Vec::new(),
            columns: columns.max(1),
            zoom: 3,
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

    /// PNG of one tile, contrast-stretched to its own range.
    fn png(&self, t: &Tile) -> Result<Vec<u8>> {
        let (lo, hi) = t
            .pixels
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let span = if hi > lo { hi - lo } else { 1.0 };
        let bytes = t
            .pixels
            .iter()
            .map(|v| (((v - lo) / span) * 255.0).round() as u8)
            .collect();
        let img = GrayImage::from_raw(t.width as u32, t.height as u32, bytes)
            .ok_or_else(|| Error::invalid("image tile", "bad size"))?;
        let z = self.zoom.max(1);
        let big = imageops::resize(
            &img,
            t.width as u32 * z,
            t.height as u32 * z,
            imageops::FilterType::Nearest,
        );
        let mut out = Vec::new();
        DynamicImage::ImageLuma8(big)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .map_err(|e| Error::Image {
                source_name: t.caption.clone(),
                reason: e.to_string(),
            })?;
        Ok(out)
    }

    /// HTML: a table of PNG images with captions.
    pub fn to_html(&self) -> Result<String> {
        let esc = crate::models::summary::esc;
        let mut h = format!("<div><b>{}</b><table>", esc(&self.title));
        for row in self.tiles.chunks(self.columns) {
            h.push_str("<tr>");
            for t in row {
                h.push_str(&format!(
                    "<td style=\"text-align:center\"><img src=\"data:image/png;base64,{}\"/><br/><small>{}</small></td>",
                    encode(&self.png(t)?),
                    esc(&t.caption)
                ));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table></div>");
        Ok(h)
    }

    /// Writes a standalone HTML page.
    pub fn save_html(&self, path: impl AsRef<Path>) -> Result<()> {
        let html = format!(
            "<!doctype html><html><body>{}</body></html>",
            self.to_html()?
        );
        write_bytes_atomic(path.as_ref(), html.as_bytes())
    }

    /// Shows the grid in an evcxr notebook.
    pub fn evcxr_display(&self) {
        match self.to_html() {
            Ok(h) => crate::display::html(&h),
            Err(e) => println!("cannot show image grid: {e}"),
        }
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
}
