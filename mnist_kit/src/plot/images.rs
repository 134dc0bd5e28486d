//! Image figures as plotly figures, so that the report's PNGs carry words: prediction
//! galleries with "true → predicted (confidence)" over each tile, first-layer filters on a
//! diverging colour scale centred on zero, and attention maps as a heat overlay on the digit
//! with column titles and a colour bar.

use plotly::Plot;
use plotly::common::Font;
use plotly::layout::{Annotation, Axis, Layout, Margin};

use super::grid::{ImageGrid, Tile, range};
use super::{Figure, Raw};
use crate::analysis::attention_maps;
use crate::data::Split;
use crate::models::Network;
use crate::{Error, Result};

/// How tile values map to colours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TileScale {
    /// Each tile stretched to its own range, dark ink on white (images).
    Ink,
    /// One scale for every tile, symmetric around zero, blue-white-red (weights).
    Diverging,
}

const GAP: usize = 1;

/// A heatmap's cells, row by row; `None` is an empty cell.
type Cells = Vec<Vec<Option<f64>>>;

/// Tiles composed into one matrix with a `GAP` of empty cells between them, top-left first;
/// `(cells, tile origin (x, y) of each tile, width, height)`.
fn compose(
    tiles: &[Tile],
    columns: usize,
    scale: TileScale,
    row_gap: usize,
    fixed: Option<(f32, f32)>,
) -> (Cells, Vec<(usize, usize)>, usize, usize) {
    let cw = tiles.iter().map(|t| t.width).max().unwrap_or(1);
    let ch = tiles.iter().map(|t| t.height).max().unwrap_or(1);
    let cols = columns.clamp(1, tiles.len().max(1));
    let rows = tiles.len().div_ceil(cols).max(1);
    let (w, h) = (cols * (cw + GAP) - GAP, rows * (ch + row_gap) - row_gap);
    let mut z = vec![vec![None; w]; h];
    let mut origins = Vec::new();
    for (k, t) in tiles.iter().enumerate() {
        let (x0, y0) = ((k % cols) * (cw + GAP), (k / cols) * (ch + row_gap));
        origins.push((x0, y0));
        // One grey scale for every tile when the grid fixes it (brightness and fog must
        // show), else each tile stretched to its own range.
        let (lo, hi) = fixed.unwrap_or_else(|| t.range());
        let span = if hi > lo { hi - lo } else { 1.0 };
        for y in 0..t.height {
            for x in 0..t.width {
                let v = t.pixels[y * t.width + x];
                z[y0 + y][x0 + x] = Some(f64::from(match scale {
                    TileScale::Ink => (v - lo) / span,
                    TileScale::Diverging => v,
                }));
            }
        }
    }
    (z, origins, w, h)
}

fn caption(text: &str, x: f64, y: f64, size: usize) -> Annotation {
    Annotation::new()
        .text(text)
        .x(x)
        .y(y)
        .x_ref("x")
        .y_ref("y")
        .show_arrow(false)
        .y_anchor(plotly::common::Anchor::Bottom)
        .font(Font::new().size(size))
}

/// Axes that show a `w x h` matrix, row 0 at the top, with `top` extra rows above for
/// captions; no ticks. Pixels stay square because the figure's size is computed from the
/// matrix (see [`square`]), not by letting plotly shrink a domain.
fn image_axes(w: usize, h: usize, top: f64) -> (Axis, Axis) {
    (
        Axis::new()
            .range(vec![-0.5, w as f64 - 0.5])
            .show_grid(false)
            .zero_line(false)
            .tick_length(0)
            .show_tick_labels(false),
        Axis::new()
            .range(vec![h as f64 - 0.5, -0.5 - top])
            .show_grid(false)
            .zero_line(false)
            .tick_length(0)
            .show_tick_labels(false),
    )
}

/// The layout of an image figure: title, the matrix's axes, captions, margins (left, right,
/// top, bottom), white background.
fn image_layout(
    title: &str,
    (xa, ya): (Axis, Axis),
    notes: Vec<Annotation>,
    margins: (usize, usize, usize, usize),
) -> Layout {
    Layout::new()
        .title(super::title(title))
        .x_axis(xa)
        .y_axis(ya)
        .annotations(notes)
        .margin(
            Margin::new()
                .left(margins.0)
                .right(margins.1)
                .top(margins.2)
                .bottom(margins.3),
        )
        .plot_background_color("#ffffff")
}

/// The figure size (CSS pixels) at which a `w x (h + top)` matrix gets square cells of about
/// `target / w` pixels (at least `min_cell`) inside the margins.
fn square(
    w: usize,
    h: f64,
    margins: (usize, usize, usize, usize),
    target: usize,
    min_cell: f64,
) -> (u32, u32) {
    let (left, right, top, bottom) = margins;
    let cell = (target as f64 / w.max(1) as f64).max(min_cell);
    let width = left + right + (cell * w as f64).round() as usize;
    let height = top + bottom + (cell * h).round() as usize;
    (width as u32, height as u32)
}

impl ImageGrid {
    /// The grid with its title and every tile's caption as a PNG, drawn by a headless
    /// Chromium (see [`super::export::StaticExporter`]); an error when there is none. For
    /// executed notebooks read on a git host, where the HTML captions do not show.
    pub fn captioned_png(&self) -> Result<Vec<u8>> {
        let exporter = super::export::StaticExporter::find()
            .ok_or_else(|| Error::invalid("image grid", "no headless Chromium for the PNG"))?;
        let signed = self.tiles.iter().any(|t| t.pixels.iter().any(|&v| v < 0.0));
        let scale = if signed {
            TileScale::Diverging
        } else {
            TileScale::Ink
        };
        let fig = tiles(&self.title.replace(' ', "_"), self, scale);
        Ok(exporter.render(&fig)?.1)
    }
}

/// The grid as a figure: its tiles in one picture, each caption above its tile, `scale`
/// saying how values become colours. Sized so that the tiles span about 900 CSS pixels (at least
/// 4 per image pixel); PNGs are drawn at twice that.
pub fn tiles(name: &str, grid: &ImageGrid, scale: TileScale) -> Figure {
    let font = if grid.tiles.first().is_some_and(|t| t.width < 10) {
        10
    } else {
        12
    };
    // Room between rows for the next row's captions: the font's height in image pixels at
    // the size the figure draws a pixel.
    let cw = grid.tiles.iter().map(|t| t.width).max().unwrap_or(1);
    let cols = grid.columns.clamp(1, grid.tiles.len().max(1));
    let pixel = (900.0 / (cols * (cw + GAP)) as f64).max(4.0);
    let row_gap = GAP + ((font + 6) as f64 / pixel).ceil() as usize;
    let (z, origins, w, h) = compose(&grid.tiles, grid.columns, scale, row_gap, grid.fixed_range);
    let mut trace = serde_json::json!({
        "type": "heatmap",
        "z": z,
        "hoverongaps": false,
        "showscale": scale == TileScale::Diverging,
    });
    match scale {
        TileScale::Ink => {
            trace["colorscale"] = serde_json::json!([[0.0, "#ffffff"], [1.0, "#111111"]]);
            trace["zmin"] = 0.0.into();
            trace["zmax"] = 1.0.into();
            if let Some(label) = &grid.scale_label {
                trace["showscale"] = true.into();
                trace["colorbar"] = serde_json::json!({
                    "title": {"text": label, "side": "right"},
                    "tickvals": [0.0, 1.0],
                    "ticktext": ["lowest", "highest"],
                });
            }
        }
        TileScale::Diverging => {
            let m = grid
                .tiles
                .iter()
                .flat_map(|t| t.pixels.iter())
                .fold(0f32, |a, v| a.max(v.abs()))
                .max(1e-12);
            trace["colorscale"] =
                serde_json::json!([[0.0, "#2166ac"], [0.5, "#f7f7f7"], [1.0, "#b2182b"]]);
            trace["zmid"] = 0.0.into();
            trace["zmin"] = f64::from(-m).into();
            trace["zmax"] = f64::from(m).into();
            trace["colorbar"] = serde_json::json!({"title": {"text": "weight"}});
        }
    }
    let mut plot = Plot::new();
    plot.add_trace(Box::new(Raw(trace)));
    let notes: Vec<Annotation> = grid
        .tiles
        .iter()
        .zip(&origins)
        .map(|(t, (x0, y0))| {
            caption(
                &t.caption,
                *x0 as f64 + t.width as f64 / 2.0 - 0.5,
                *y0 as f64 - 0.6,
                font,
            )
        })
        .collect();
    let top = row_gap as f64;
    let (xa, ya) = image_axes(w, h, top);
    let margins = (
        10,
        if scale == TileScale::Diverging || grid.scale_label.is_some() {
            100
        } else {
            10
        },
        60,
        10,
    );
    let (width, height) = square(w, h as f64 + top, margins, 900, 4.0);
    plot.set_layout(image_layout(&grid.title, (xa, ya), notes, margins));
    Figure::sized(name, plot, width, height)
}

/// One sample with its attention maps: the digit (28x28) and each map with its side.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttentionRow {
    /// Row label (`#7: 3`).
    pub label: String,
    /// The digit, 28x28, ink high.
    pub digit: Vec<f32>,
    /// `(side, values in 0..1)` per attention stage.
    pub maps: Vec<(usize, Vec<f32>)>,
}

/// A map of `side x side` drawn over the 28x28 digit: the first stage (28x28) one to one, a
/// smaller stage (10x10 after the second block) at 2x over the centre where its receptive
/// fields sit; elsewhere no overlay.
fn overlay_cells(side: usize, map: &[f32]) -> Cells {
    let mut z = vec![vec![None; 28]; 28];
    if side >= 28 {
        for (y, row) in z.iter_mut().enumerate() {
            for (x, cell) in row.iter_mut().enumerate() {
                *cell = map.get(y * side + x).map(|&v| f64::from(v));
            }
        }
    } else {
        let off = (28 - 2 * side) / 2;
        for y in 0..2 * side {
            for x in 0..2 * side {
                z[off + y][off + x] = map.get((y / 2) * side + x / 2).map(|&v| f64::from(v));
            }
        }
    }
    z
}

/// Attention maps as a heat overlay on the digit: one row per sample, columns "input",
/// "after conv1", "after conv2"; one colour scale for every map (the attention weight, 0 to 1,
/// no stretching), its range per map in the caption, and maps that are near-constant (less than
/// 0.05 between min and max) called so.
pub fn attention(name: &str, title: &str, rows: &[AttentionRow]) -> Figure {
    let stages = rows.iter().map(|r| r.maps.len()).max().unwrap_or(0);
    let cols = 1 + stages;
    let (cell, gap) = (28, 2);
    let w = cols * (cell + gap) - gap;
    let h = rows.len() * (cell + gap + 3) - gap;
    let mut digits = vec![vec![None; w]; h];
    let mut heat = vec![vec![None; w]; h];
    let mut notes = Vec::new();
    let headers = ["input", "after conv1", "after conv2", "after conv3"];
    for (c, head) in headers.iter().take(cols).enumerate() {
        notes.push(
            caption(head, (c * (cell + gap)) as f64 + 13.5, -4.0, 14)
                .font(Font::new().size(14).color("#000000")),
        );
    }
    for (r, row) in rows.iter().enumerate() {
        let y0 = r * (cell + gap + 3) + 3;
        let (dlo, dhi) = range(&row.digit);
        let span = if dhi > dlo { dhi - dlo } else { 1.0 };
        for c in 0..cols {
            let x0 = c * (cell + gap);
            for y in 0..28 {
                for x in 0..28 {
                    let v = row.digit.get(y * 28 + x).copied().unwrap_or(0.0);
                    digits[y0 + y][x0 + x] = Some(f64::from((v - dlo) / span));
                }
            }
        }
        notes.push(caption(&row.label, 13.5, y0 as f64 - 0.6, 12));
        for (k, (side, map)) in row.maps.iter().enumerate() {
            let x0 = (k + 1) * (cell + gap);
            for (y, line) in overlay_cells(*side, map).into_iter().enumerate() {
                for (x, v) in line.into_iter().enumerate() {
                    heat[y0 + y][x0 + x] = v;
                }
            }
            let (lo, hi) = range(map);
            let flat = if hi - lo < 0.05 {
                ", near-constant"
            } else {
                ""
            };
            notes.push(caption(
                &format!("{side}x{side}: {lo:.2}-{hi:.2}{flat}"),
                x0 as f64 + 13.5,
                y0 as f64 - 0.6,
                11,
            ));
        }
    }
    let mut plot = Plot::new();
    plot.add_trace(Box::new(Raw(serde_json::json!({
        "type": "heatmap", "z": digits, "colorscale": [[0.0, "#ffffff"], [1.0, "#000000"]],
        "zmin": 0.0, "zmax": 1.0, "showscale": false, "hoverongaps": false,
    }))));
    plot.add_trace(Box::new(Raw(serde_json::json!({
        "type": "heatmap", "z": heat,
        "colorscale": [[0.0, "#ffffcc"], [0.5, "#fd8d3c"], [1.0, "#800026"]],
        "zmin": 0.0, "zmax": 1.0,
        "opacity": 0.6, "hoverongaps": false,
        "colorbar": {"title": {"text": "attention<br>weight"}},
    }))));
    let top = 6.0;
    let (xa, ya) = image_axes(w, h, top);
    let margins = (10, 120, 70, 10);
    let (width, height) = square(w, h as f64 + top, margins, 560, 6.0);
    plot.set_layout(image_layout(title, (xa, ya), notes, margins));
    Figure::sized(name, plot, width, height)
}

/// [`attention`] of `net` on the samples of `split` at `positions`.
pub fn attention_of(net: &Network, split: &Split, positions: &[usize]) -> Result<Figure> {
    let rows = attention_rows(net, split, positions)?;
    Ok(attention_figure(net.name(), &rows))
}

/// [`attention`] of network `name`'s rows, with its usual name and title.
pub fn attention_figure(name: &str, rows: &[AttentionRow]) -> Figure {
    attention(
        &format!("attention_{name}"),
        &format!("{name}: where the attention weighs up (one colour scale, weight 0 to 1)"),
        rows,
    )
}

/// Attention rows as a plain image grid (each digit, then its maps): what a report shows where
/// no browser draws [`attention`].
pub fn attention_grid(title: &str, rows: &[AttentionRow]) -> Result<ImageGrid> {
    let mut g = ImageGrid::new(title, 4);
    for r in rows {
        g.push(r.label.clone(), r.digit.clone(), 28, 28)?;
        for (k, (side, m)) in r.maps.iter().enumerate() {
            g.push(
                format!("attention {} ({side}x{side})", k + 1),
                m.clone(),
                *side,
                *side,
            )?;
        }
    }
    g.columns = (g.tiles.len() / rows.len().max(1)).max(1);
    g.scale_label = Some("attention weight (each map from its lowest to its highest)".into());
    Ok(g)
}

/// The digits at `positions` of `split` with `net`'s attention maps: what
/// [`attention_of`] draws.
pub fn attention_rows(
    net: &Network,
    split: &Split,
    positions: &[usize],
) -> Result<Vec<AttentionRow>> {
    let mut rows = Vec::new();
    for &i in positions {
        let img = split.image(i).ok_or_else(|| {
            crate::Error::invalid(
                "sample",
                format!("{i} is out of range for {}", split.name()),
            )
        })?;
        rows.push(AttentionRow {
            label: format!("#{i}: {}", split.label(i).unwrap_or(0)),
            digit: img.iter().map(|&b| f32::from(b)).collect(),
            maps: attention_maps(net, split, i)?,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A grid with a fixed range draws every tile on it: a uniformly grey tile stays grey
    /// (brightness, fog), instead of being stretched to white like a tile of its own range.
    #[test]
    fn a_fixed_range_is_kept_in_the_figure() {
        let mut g = ImageGrid::new("g", 2);
        g.push("grey", vec![102.0; 4], 2, 2).unwrap();
        g.push("ink", vec![0.0, 255.0, 0.0, 255.0], 2, 2).unwrap();
        let cells =
            |g: &ImageGrid| compose(&g.tiles, g.columns, TileScale::Ink, 1, g.fixed_range).0;
        assert_eq!(cells(&g)[0][0], Some(0.0), "its own range: stretched");
        g.fixed_range = Some((0.0, 255.0));
        let z = cells(&g);
        assert!((z[0][0].unwrap() - 0.4).abs() < 1e-6, "{:?}", z[0]);
        assert_eq!(z[0][4], Some(1.0), "{:?}", z[0]);
    }

    /// PNGs are drawn at twice a figure's size: every image figure is at least 600 px wide,
    /// even with a single tile or a single attention row.
    #[test]
    fn image_figures_are_at_least_600_px_wide() {
        let mut one = ImageGrid::new("one", 1);
        one.push("7 → 7 (99%)", vec![0.5; 784], 28, 28).unwrap();
        for scale in [TileScale::Ink, TileScale::Diverging] {
            let (w, h) = tiles("t", &one, scale).size.unwrap();
            assert!(2 * w >= 600 && h > 0, "{w}x{h}");
        }
        let mut filters = ImageGrid::new("filters", 16);
        for _ in 0..16 {
            filters.push("f", vec![0.1; 25], 5, 5).unwrap();
        }
        let (w, _) = tiles("f", &filters, TileScale::Diverging).size.unwrap();
        assert!(
            2 * w >= 600 && w >= 16 * 5 * 8,
            "filters at 8x or more: {w}"
        );
        let row = AttentionRow {
            label: "#0: 7".into(),
            digit: vec![0.0; 784],
            maps: vec![(28, vec![0.5; 784]), (10, vec![0.5; 100])],
        };
        let (w, _) = attention("a", "attention", &[row]).size.unwrap();
        assert!(2 * w >= 600, "{w}");
    }
}
