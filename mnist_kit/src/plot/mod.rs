//! Figures (plotly): learning curves, run overlays, bars and the confusion heatmap. Each
//! [`Figure`] saves as standalone offline HTML (plotly.js embedded) and shows itself in
//! notebooks, injecting plotly.js once per kernel session rather than once per figure.

pub mod export;
pub mod grid;
pub mod images;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use plotly::common::{Mode, Title};
use plotly::layout::{Axis, GridPattern, Layout, LayoutGrid};
use plotly::{Bar, Plot, Scatter};

use crate::Result;
use crate::analysis::ConfusionMatrix;
use crate::fsutil::write_bytes_atomic;
use crate::train::{EpochRecord, History};
pub use export::StaticExporter;
pub use grid::ImageGrid;

/// A named plotly figure.
#[derive(Clone)]
pub struct Figure {
    /// File stem used when saving (`learning_curves_lenet5`).
    pub name: String,
    /// The plotly plot.
    pub plot: Plot,
    /// Width and height of a static export in CSS pixels, when the figure needs its own
    /// (image figures); else the exporter's default.
    pub size: Option<(u32, u32)>,
}

// Each shown figure gets its own div id: the same figure shown twice must not share one.
static SHOWN: AtomicUsize = AtomicUsize::new(0);

/// True the first time it is asked in this process. Not a Rust static: evcxr links the kit into
/// every cell separately, each copy with its own statics, so the mark is a file named after the
/// process (pid and start time, so a reused pid does not count).
fn first_figure_in_process() -> bool {
    let start = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().nth(19).map(str::to_string))
        })
        .unwrap_or_default();
    let mark =
        std::env::temp_dir().join(format!("mnist_kit-plotly-{}-{start}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(mark)
        .is_ok()
}

impl Figure {
    fn new(name: impl Into<String>, plot: Plot) -> Self {
        Figure {
            name: name.into(),
            plot,
            size: None,
        }
    }

    fn sized(name: impl Into<String>, plot: Plot, width: u32, height: u32) -> Self {
        Figure {
            name: name.into(),
            plot,
            size: Some((width, height)),
        }
    }

    /// A standalone HTML page with plotly.js embedded (works offline).
    pub fn to_html(&self) -> String {
        self.plot.to_html()
    }

    /// Writes [`Figure::to_html`] to `path` (atomically).
    pub fn save_html(&self, path: impl AsRef<Path>) -> Result<()> {
        write_bytes_atomic(path.as_ref(), self.to_html().as_bytes())
    }

    /// A small HTML page that loads plotly.js from `script_src` (a path relative to the page,
    /// e.g. `plotly.min.js` beside it; see [`write_plotly_js`]): kilobytes per figure instead
    /// of megabytes, and still offline.
    pub fn to_html_linked(&self, script_src: &str) -> String {
        format!(
            "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n\
             <script src=\"{}\"></script>\n</head>\n<body>\n{}\n</body>\n</html>\n",
            crate::display::esc(&self.name),
            crate::display::esc(script_src),
            self.plot
                .to_inline_html(Some(&format!("mnist-kit-{}", self.name)))
        )
    }

    /// The plotly JSON of the figure.
    pub fn to_json(&self) -> String {
        self.plot.to_json()
    }

    /// The HTML a notebook cell shows: plotly.js the first time in a session, then a div.
    pub fn notebook_html(&self) -> String {
        let mut html = String::new();
        if first_figure_in_process() {
            html.push_str(&format!(
                "<script type=\"text/javascript\">{}</script>",
                plotly_js()
            ));
        }
        // Unique across the cells of a session: evcxr links every cell with its own copy of
        // this crate's statics, so the counter alone restarts at 0 in each cell, and a page
        // with two divs of one id draws only the first.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        html.push_str(&self.plot.to_inline_html(Some(&format!(
            "mnist-kit-{}-{}-{nanos}-{}",
            self.name,
            std::process::id(),
            SHOWN.fetch_add(1, Ordering::SeqCst)
        ))));
        html
    }

    /// Shows the figure in an evcxr notebook: HTML with plotly.js (rendered by every Jupyter
    /// front-end, offline). With `MNIST_KIT_NOTEBOOK_PNG=1` (executed copies meant to be read
    /// on a git host) instead a PNG drawn by headless Chromium, where one is installed, next to
    /// the plotly JSON (interactive where the front-end renders plotly, e.g. VS Code).
    pub fn evcxr_display(&self) {
        if !crate::display::png_mode() {
            crate::display::html(&self.notebook_html());
            return;
        }
        if let Some(x) = StaticExporter::find() {
            match x.render(self) {
                Ok((_, png)) => crate::display::png(&png),
                Err(e) => eprintln!("static export of {} failed: {e}", self.name),
            }
        }
        print!(
            "{}",
            crate::display::envelope("application/vnd.plotly.v1+json", &self.to_json())
        );
    }
}

/// File name of the shared plotly.js that [`Figure::to_html_linked`] pages load.
pub const PLOTLY_JS: &str = "plotly.min.js";

/// plotly.js itself (the copy the `plotly` crate embeds), for pages that load it from a file.
pub fn plotly_js() -> String {
    let all = Plot::offline_js_sources();
    let open = "<script type=\"text/javascript\">";
    let start = all.find(open).map_or(0, |i| i + open.len());
    // The crate writes plotly.js, then MathJax in a second script tag.
    let end = all[start..]
        .find("</script>\n\n")
        .map_or(all.len(), |i| start + i);
    all[start..end].to_string()
}

/// Writes [`plotly_js`] to `dir/plotly.min.js` unless an identical copy is there.
pub fn write_plotly_js(dir: &Path) -> Result<()> {
    let path = dir.join(PLOTLY_JS);
    let js = plotly_js();
    if std::fs::read(&path).is_ok_and(|old| old == js.as_bytes()) {
        return Ok(());
    }
    write_bytes_atomic(&path, js.as_bytes())
}

fn title(text: &str) -> Title {
    Title::with_text(text)
}

/// The four curves of a run: train/validation/test loss (left) and accuracy (right) per epoch.
pub fn learning_curves(history: &History) -> Figure {
    let mut plot = Plot::new();
    type Pick = fn(&EpochRecord) -> Option<f64>;
    let traces: [(&str, &str, Pick); 6] = [
        ("training loss", "y", |r| Some(r.train_loss)),
        ("validation loss", "y", |r| r.val_loss),
        ("test loss", "y", |r| r.test_loss),
        ("training accuracy", "y2", |r| {
            Some(100.0 * r.train_accuracy)
        }),
        ("validation accuracy", "y2", |r| {
            r.val_accuracy.map(|v| 100.0 * v)
        }),
        ("test accuracy", "y2", |r| {
            r.test_accuracy.map(|v| 100.0 * v)
        }),
    ];
    for (name, axis, pick) in traces {
        let (x, y): (Vec<usize>, Vec<f64>) = history
            .epochs
            .iter()
            .filter_map(|r| pick(r).map(|v| (r.epoch, v)))
            .unzip();
        if !x.is_empty() {
            let xa = if axis == "y" { "x" } else { "x2" };
            plot.add_trace(
                Scatter::new(x, y)
                    .name(name)
                    .mode(Mode::LinesMarkers)
                    .x_axis(xa)
                    .y_axis(axis),
            );
        }
    }
    plot.set_layout(
        Layout::new()
            .title(title(&format!("{}: learning curves", history.model)))
            .grid(
                LayoutGrid::new()
                    .rows(1)
                    .columns(2)
                    .pattern(GridPattern::Independent),
            )
            .x_axis(Axis::new().title(title("epoch")))
            .x_axis2(Axis::new().title(title("epoch")))
            .y_axis(Axis::new().title(title("cross-entropy loss")))
            .y_axis2(Axis::new().title(title("accuracy (%)"))),
    );
    Figure::new(format!("learning_curves_{}", history.model), plot)
}

/// Qualitative colours (plotly's default cycle), so a mean line and its band match.
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// One colour per network of the zoo, the same in every figure (an experiment named after a
/// network, such as `lenet5` or `resnet`, gets its network's colour).
const MODEL_COLOURS: [(&str, (u8, u8, u8)); 11] = [
    ("dense128", (127, 127, 127)),
    ("mlp-61k", (188, 189, 34)),
    ("mlp-500-150", (140, 86, 75)),
    ("mlp-800", (227, 119, 194)),
    ("mlp-advanced", (23, 190, 207)),
    ("lenet5", (31, 119, 180)),
    ("lenet5-28", (148, 103, 189)),
    ("lenet5-regularized", (44, 160, 44)),
    ("lenet5-attention", (255, 127, 14)),
    ("simple-cnn", (214, 39, 40)),
    ("resnet", (0, 0, 0)),
];

/// Colours for the series of one figure: a network of the zoo always gets its own colour
/// ([`MODEL_COLOURS`]); other labels take the palette in order, skipping the colours the
/// figure's networks already use.
pub fn colours_for(labels: &[&str]) -> Vec<(u8, u8, u8)> {
    let fixed = |l: &str| MODEL_COLOURS.iter().find(|(n, _)| *n == l).map(|(_, c)| *c);
    let taken: Vec<(u8, u8, u8)> = labels.iter().filter_map(|l| fixed(l)).collect();
    let mut free = PALETTE
        .iter()
        .copied()
        .filter(|c| !taken.contains(c))
        .cycle();
    labels
        .iter()
        .map(|l| fixed(l).or_else(|| free.next()).unwrap_or(PALETTE[0]))
        .collect()
}

/// A metric key of [`epoch_value`] in words, with its unit (accuracies in percent).
pub fn metric_words(metric: &str) -> String {
    match metric {
        "train_loss" => "training loss".into(),
        "train_accuracy" => "training accuracy (%)".into(),
        "val_loss" => "validation loss".into(),
        "val_accuracy" => "validation accuracy (%)".into(),
        "test_loss" => "test loss".into(),
        "test_accuracy" => "test accuracy (%)".into(),
        "weight_norm" => "weight L2 norm".into(),
        "grad_noise" => "gradient noise".into(),
        "lr" => "learning rate".into(),
        other => other.replace('_', " "),
    }
}

/// The value of `metric` in one epoch's record (`None` where the run did not measure it).
pub fn epoch_value(r: &EpochRecord, metric: &str) -> Option<f64> {
    match metric {
        "train_loss" => Some(r.train_loss),
        "train_accuracy" => Some(r.train_accuracy),
        "val_loss" => r.val_loss,
        "val_accuracy" => r.val_accuracy,
        "test_loss" => r.test_loss,
        "test_accuracy" => r.test_accuracy,
        "weight_norm" => Some(r.weight_norm),
        "grad_noise" => r.grad_noise,
        "lr" => Some(r.lr),
        _ => None,
    }
}

/// Per-step values `(mean, min, max)` across `series` (shorter series drop out at their end).
fn band(series: &[Vec<f64>]) -> Vec<(f64, f64, f64)> {
    let len = series.iter().map(Vec::len).max().unwrap_or(0);
    (0..len)
        .map(|i| {
            let vals: Vec<f64> = series.iter().filter_map(|s| s.get(i).copied()).collect();
            let n = vals.len().max(1) as f64;
            let (lo, hi) = vals
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            (vals.iter().sum::<f64>() / n, lo, hi)
        })
        .collect()
}

/// Adds a mean line with a shaded min-max band (when there is more than one series).
#[allow(clippy::too_many_arguments)]
fn add_band(
    plot: &mut Plot,
    (r, g, b): (u8, u8, u8),
    series: usize,
    label: &str,
    x: Vec<f64>,
    stats: &[(f64, f64, f64)],
    seeds: usize,
) {
    // A dash pattern per series as well as a colour: lines that coincide (two optimizers
    // with the same curve) stay visible as two.
    let dash = [
        plotly::common::DashType::Solid,
        plotly::common::DashType::Dash,
        plotly::common::DashType::Dot,
        plotly::common::DashType::DashDot,
    ][series % 4]
        .clone();
    let colour = format!("rgb({r},{g},{b})");
    if seeds > 1 {
        let hi: Vec<f64> = stats.iter().map(|s| s.2).collect();
        let lo: Vec<f64> = stats.iter().map(|s| s.1).collect();
        plot.add_trace(
            Scatter::new(x.clone(), hi)
                .mode(Mode::Lines)
                .line(plotly::common::Line::new().width(0.0).color(colour.clone()))
                .show_legend(false)
                .legend_group(label)
                .hover_info(plotly::common::HoverInfo::Skip),
        );
        plot.add_trace(
            Scatter::new(x.clone(), lo)
                .mode(Mode::Lines)
                .line(plotly::common::Line::new().width(0.0).color(colour.clone()))
                .fill(plotly::common::Fill::ToNextY)
                .fill_color(format!("rgba({r},{g},{b},0.18)"))
                .show_legend(false)
                .legend_group(label)
                .hover_info(plotly::common::HoverInfo::Skip),
        );
    }
    let mean: Vec<f64> = stats.iter().map(|s| s.0).collect();
    let name = if seeds > 1 {
        format!("{label} (mean of {seeds})")
    } else {
        label.to_string()
    };
    plot.add_trace(
        Scatter::new(x, mean)
            .name(name)
            .mode(Mode::LinesMarkers)
            .line(plotly::common::Line::new().color(colour).dash(dash))
            .legend_group(label),
    );
}

/// One metric of several experiments over epochs: for each `(label, histories of its seeds)`
/// the mean per epoch as a line with the min-max band across seeds shaded.
pub fn overlay(name: &str, metric: &str, runs: &[(String, Vec<&History>)]) -> Figure {
    let mut plot = Plot::new();
    let colours = colours_for(&runs.iter().map(|r| r.0.as_str()).collect::<Vec<_>>());
    let scale = if metric.ends_with("accuracy") {
        100.0
    } else {
        1.0
    };
    let mut dropped = false;
    for (i, (label, hs)) in runs.iter().enumerate() {
        let series: Vec<Vec<f64>> = hs
            .iter()
            .map(|h| {
                h.epochs
                    .iter()
                    .filter_map(|r| epoch_value(r, metric).map(|v| scale * v))
                    .collect()
            })
            .filter(|v: &Vec<f64>| !v.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        dropped |= series.iter().any(|s| s.len() != series[0].len());
        let stats = band(&series);
        let x: Vec<f64> = (1..=stats.len()).map(|e| e as f64).collect();
        add_band(&mut plot, colours[i], i, label, x, &stats, series.len());
        stopped_markers(&mut plot, colours[i], label, hs, metric, scale);
    }
    let band_note = match (runs.iter().any(|(_, h)| h.len() > 1), dropped) {
        (true, true) => " (mean over the seeds still training; band: min-max)",
        (true, false) => " (mean, band: min-max over seeds)",
        _ => "",
    };
    let words = metric_words(metric);
    plot.set_layout(
        Layout::new()
            .title(title(&format!("{name}: {words}{band_note}")))
            .x_axis(Axis::new().title(title("epoch")))
            .y_axis(Axis::new().title(title(&words))),
    );
    Figure::new(format!("{name}_{metric}"), plot)
}

/// Each seed's early-stopping point as a cross on its own curve (the epoch it stopped at):
/// where a seed's line ends because it stopped, not because the plot does.
fn stopped_markers(
    plot: &mut Plot,
    (r, g, b): (u8, u8, u8),
    label: &str,
    hs: &[&History],
    metric: &str,
    scale: f64,
) {
    let points: Vec<(f64, f64)> = hs
        .iter()
        .filter_map(|h| {
            let e = h.stopped_epoch?;
            let rec = h.epochs.iter().find(|r| r.epoch == e)?;
            Some((e as f64, scale * epoch_value(rec, metric)?))
        })
        .collect();
    if points.is_empty() {
        return;
    }
    let (x, y): (Vec<f64>, Vec<f64>) = points.into_iter().unzip();
    plot.add_trace(
        Scatter::new(x, y)
            .name(format!("{label}: a seed stopped early"))
            .mode(Mode::Markers)
            .marker(
                plotly::common::Marker::new()
                    .symbol(plotly::common::MarkerSymbol::X)
                    .size(11)
                    .color(format!("rgb({r},{g},{b})")),
            )
            .legend_group(label),
    );
}

/// The smoothed per-iteration training loss (the mean of every `loss_every` steps, recorded
/// when a run asked for it) of several experiments, mean with min-max band over seeds: the
/// stability of an optimizer shows as the width and wiggle of its curve.
pub fn loss_trace(name: &str, runs: &[(String, Vec<&History>)], every: usize) -> Figure {
    let mut plot = Plot::new();
    let colours = colours_for(&runs.iter().map(|r| r.0.as_str()).collect::<Vec<_>>());
    for (i, (label, hs)) in runs.iter().enumerate() {
        let series: Vec<Vec<f64>> = hs
            .iter()
            .map(|h| {
                h.epochs
                    .iter()
                    .flat_map(|r| r.loss_trace.iter().copied())
                    .collect()
            })
            .filter(|v: &Vec<f64>| !v.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let stats = band(&series);
        let x: Vec<f64> = (1..=stats.len())
            .map(|k| (k * every.max(1)) as f64)
            .collect();
        add_band(&mut plot, colours[i], i, label, x, &stats, series.len());
    }
    plot.set_layout(
        Layout::new()
            .title(title(&format!(
                "{name}: training loss, mean of every {every} steps"
            )))
            .x_axis(Axis::new().title(title("step")))
            .y_axis(
                Axis::new()
                    .title(title("training loss"))
                    .type_(plotly::layout::AxisType::Log),
            ),
    );
    Figure::new(format!("{name}_loss_trace"), plot)
}

/// A bar chart of `(label, value)`.
pub fn bars(name: &str, y_title: &str, items: &[(String, f64)]) -> Figure {
    let mut plot = Plot::new();
    let (x, y): (Vec<String>, Vec<f64>) = items.iter().cloned().unzip();
    plot.add_trace(Bar::new(x, y));
    plot.set_layout(
        Layout::new()
            .title(title(name))
            .y_axis(Axis::new().title(title(y_title))),
    );
    Figure::new(name.replace(' ', "_"), plot)
}

/// Bars of `(label, mean, std)` with ± std error bars.
pub fn bars_with_errors(name: &str, y_title: &str, items: &[(String, f64, f64)]) -> Figure {
    let mut plot = Plot::new();
    let x: Vec<String> = items.iter().map(|i| i.0.clone()).collect();
    let y: Vec<f64> = items.iter().map(|i| i.1).collect();
    let e: Vec<f64> = items.iter().map(|i| i.2).collect();
    plot.add_trace(
        Bar::new(x, y)
            .error_y(plotly::common::ErrorData::new(plotly::common::ErrorType::Data).array(e)),
    );
    // Accuracies sit near 1: start the axis near the lowest bar so differences show.
    let lo = items
        .iter()
        .map(|i| i.1 - 2.0 * i.2)
        .fold(f64::INFINITY, f64::min);
    let hi = items
        .iter()
        .map(|i| i.1 + 2.0 * i.2)
        .fold(f64::NEG_INFINITY, f64::max);
    let mut y_axis = Axis::new().title(title(y_title));
    if lo.is_finite() && hi.is_finite() && hi > lo {
        let pad = 0.1 * (hi - lo);
        y_axis = y_axis.range(vec![lo - pad, hi + pad]);
    }
    plot.set_layout(Layout::new().title(title(name)).y_axis(y_axis));
    Figure::new(name.replace(' ', "_"), plot)
}

/// One setting of a [`dots`] figure: its name, each seed's value, and the mean with its 95 %
/// interval.
#[derive(Debug, Clone, PartialEq)]
pub struct DotRow {
    /// The setting.
    pub name: String,
    /// One value per seed.
    pub seeds: Vec<f64>,
    /// The mean over seeds.
    pub mean: f64,
    /// The 95 % interval of the mean.
    pub ci95: [f64; 2],
}

/// Each setting's seeds as dots and its mean as a diamond with the 95 % interval as a bar,
/// one row per setting, values scaled by `scale` (100 for percent): the uncertainty in one
/// look, on an axis fitted to the data.
pub fn dots(name: &str, title_text: &str, x_title: &str, rows: &[DotRow], scale: f64) -> Figure {
    let mut plot = Plot::new();
    let labels: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    let (mut sx, mut sy) = (Vec::new(), Vec::new());
    for r in rows {
        for v in &r.seeds {
            sx.push(scale * v);
            sy.push(r.name.clone());
        }
    }
    plot.add_trace(
        Scatter::new(sx, sy)
            .name("seeds")
            .mode(Mode::Markers)
            .marker(
                plotly::common::Marker::new()
                    .size(8)
                    .opacity(0.55)
                    .color("#6baed6"),
            ),
    );
    let means: Vec<f64> = rows.iter().map(|r| scale * r.mean).collect();
    let lo: Vec<f64> = rows.iter().map(|r| scale * (r.mean - r.ci95[0])).collect();
    let hi: Vec<f64> = rows.iter().map(|r| scale * (r.ci95[1] - r.mean)).collect();
    plot.add_trace(
        Scatter::new(means, labels.clone())
            .name("mean, 95 % interval")
            .mode(Mode::Markers)
            .marker(
                plotly::common::Marker::new()
                    .size(12)
                    .symbol(plotly::common::MarkerSymbol::Diamond)
                    .color("#08306b"),
            )
            .error_x(
                plotly::common::ErrorData::new(plotly::common::ErrorType::Data)
                    .array(hi)
                    .array_minus(lo)
                    .thickness(2.0)
                    .color("#08306b"),
            ),
    );
    let height = (120 + 40 * rows.len()) as u32;
    plot.set_layout(
        Layout::new()
            .title(title(title_text))
            .height(height as usize)
            .margin(plotly::layout::Margin::new().left(170))
            .x_axis(Axis::new().title(title(x_title)))
            .y_axis(
                Axis::new()
                    .category_order(plotly::layout::CategoryOrder::Array)
                    .category_array(labels.into_iter().rev().collect()),
            ),
    );
    let mut f = Figure::new(name, plot);
    f.size = Some((900, height.max(260)));
    f
}

/// A forest plot: each comparison's difference with its 95 % interval, one row each, largest
/// difference on top, and a line at zero (`rows`: label, difference, low, high; scaled by
/// `scale`). Rows whose interval excludes zero (a verdict) are red, the others grey, and the
/// legend says so.
pub fn forest(
    name: &str,
    title_text: &str,
    x_title: &str,
    rows: &[(String, f64, f64, f64)],
    scale: f64,
) -> Figure {
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let mut plot = Plot::new();
    for (called, colour, legend) in [
        (true, "#b2182b", "interval excludes zero: a verdict"),
        (
            false,
            "#737373",
            "interval includes zero: not distinguishable",
        ),
    ] {
        let part: Vec<&(String, f64, f64, f64)> = rows
            .iter()
            .filter(|r| (r.2 > 0.0 || r.3 < 0.0) == called)
            .collect();
        if part.is_empty() {
            continue;
        }
        plot.add_trace(
            Scatter::new(
                part.iter().map(|r| scale * r.1).collect(),
                part.iter().map(|r| r.0.clone()).collect(),
            )
            .name(legend)
            .mode(Mode::Markers)
            .marker(plotly::common::Marker::new().size(10).color(colour))
            .error_x(
                plotly::common::ErrorData::new(plotly::common::ErrorType::Data)
                    .array(part.iter().map(|r| scale * (r.3 - r.1)).collect())
                    .array_minus(part.iter().map(|r| scale * (r.1 - r.2)).collect())
                    .color(colour)
                    .thickness(2.0),
            ),
        );
    }
    let height = (180 + 34 * rows.len()) as u32;
    let zero = plotly::layout::Shape::new()
        .shape_type(plotly::layout::ShapeType::Line)
        .x_ref("x")
        .y_ref("paper")
        .x0(0.0)
        .x1(0.0)
        .y0(0.0)
        .y1(1.0)
        .line(plotly::layout::ShapeLine::new().color("#000000").width(1.0));
    plot.set_layout(
        Layout::new()
            .title(title(title_text))
            .height(height as usize)
            .margin(plotly::layout::Margin::new().left(260))
            .shapes(vec![zero])
            .show_legend(true)
            .legend(
                plotly::layout::Legend::new()
                    .orientation(plotly::common::Orientation::Horizontal)
                    .y(-0.12),
            )
            .x_axis(Axis::new().title(title(x_title)).zero_line(true))
            .y_axis(
                Axis::new()
                    .category_order(plotly::layout::CategoryOrder::Array)
                    .category_array(labels.into_iter().rev().collect()),
            ),
    );
    let mut f = Figure::new(name, plot);
    f.size = Some((900, height.max(260)));
    f
}

/// How often each digit was predicted, as bars on a categorical axis 0-9 (`counts`: ten
/// counts), titled in words: what a collapsed model answers.
pub fn class_counts(name: &str, title_text: &str, counts: &[u64]) -> Figure {
    let mut plot = Plot::new();
    let digits: Vec<String> = (0..counts.len()).map(|d| d.to_string()).collect();
    plot.add_trace(Bar::new(digits.clone(), counts.to_vec()).name("predictions"));
    plot.set_layout(
        Layout::new()
            .title(title(title_text))
            .x_axis(
                Axis::new()
                    .title(title("digit predicted"))
                    .type_(plotly::layout::AxisType::Category)
                    .category_order(plotly::layout::CategoryOrder::Array)
                    .category_array(digits),
            )
            .y_axis(Axis::new().title(title("predictions"))),
    );
    Figure::new(name, plot)
}

/// Points of a [`means_against`] line: `(x, mean, std)`.
pub type MeanPoints = Vec<(f64, f64, f64)>;

/// Lines of means with ± std error bars against a numeric x: `series` are `(label, [(x,
/// mean, std)])` (the depth study's accuracy against blocks per stage, or accuracy against a
/// brightness shift).
pub fn means_against(
    file: &str,
    name: &str,
    x_title: &str,
    y_title: &str,
    series: &[(String, MeanPoints)],
) -> Figure {
    let mut plot = Plot::new();
    for (label, pts) in series {
        let x: Vec<f64> = pts.iter().map(|p| p.0).collect();
        let y: Vec<f64> = pts.iter().map(|p| p.1).collect();
        let e: Vec<f64> = pts.iter().map(|p| p.2).collect();
        plot.add_trace(
            Scatter::new(x, y)
                .name(label)
                .mode(Mode::LinesMarkers)
                .error_y(plotly::common::ErrorData::new(plotly::common::ErrorType::Data).array(e)),
        );
    }
    // Whole-number x (blocks per stage) gets a tick per number; fractions (a brightness
    // shift) keep plotly's own ticks, or a single "0" would be all there is.
    let whole = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.0))
        .all(|x| x.fract() == 0.0);
    let mut x_axis = Axis::new().title(title(x_title));
    if whole {
        x_axis = x_axis.dtick(1.0);
    }
    plot.set_layout(
        Layout::new()
            .title(title(name))
            .x_axis(x_axis)
            .y_axis(Axis::new().title(title(y_title))),
    );
    Figure::new(file, plot)
}

/// Gradient flow: the mean gradient norm of each weight tensor in the last epoch of each
/// experiment (mean over seeds, min-max band), input side on the left, on a log axis
/// (vanishing gradients show as a line falling towards the input).
pub fn gradient_flow(name: &str, runs: &[(String, Vec<&History>)]) -> Figure {
    let mut plot = Plot::new();
    let colours = colours_for(&runs.iter().map(|r| r.0.as_str()).collect::<Vec<_>>());
    // Each network's weight tensors, input side first.
    let layers_of = |hs: &[&History]| -> Vec<String> {
        hs.iter()
            .filter_map(|h| h.last())
            .map(|l| l.layer_grad_norms.iter().map(|(n, _)| n.clone()).collect())
            .next()
            .unwrap_or_default()
    };
    let counts: Vec<usize> = runs
        .iter()
        .map(|(_, hs)| layers_of(hs).len())
        .filter(|&n| n > 0)
        .collect();
    // Networks of different depths share no layer names: each is drawn over its relative
    // position from input (0) to output (1) instead of under another network's names.
    let same = counts.windows(2).all(|w| w[0] == w[1]);
    let mut layers: Vec<String> = Vec::new();
    for (i, (label, hs)) in runs.iter().enumerate() {
        let series: Vec<Vec<f64>> = hs
            .iter()
            .filter_map(|h| h.last())
            .map(|l| l.layer_grad_norms.iter().map(|(_, v)| *v).collect())
            .filter(|v: &Vec<f64>| !v.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        if layers.is_empty() {
            layers = layers_of(hs);
        }
        let stats = band(&series);
        let n = stats.len();
        let x: Vec<f64> = (0..n)
            .map(|k| {
                if same {
                    k as f64
                } else {
                    k as f64 / (n.max(2) - 1) as f64
                }
            })
            .collect();
        add_band(&mut plot, colours[i], i, label, x, &stats, series.len());
    }
    let x_axis = if same {
        let ticks: Vec<f64> = (0..layers.len()).map(|k| k as f64).collect();
        Axis::new()
            .title(title("weight tensor (input → output)"))
            .tick_values(ticks)
            .tick_text(layers)
    } else {
        Axis::new().title(title(
            "position of the weight tensor (0: first layer, 1: output layer)",
        ))
    };
    plot.set_layout(
        Layout::new()
            .title(title(&format!(
                "{name}: gradient norm per layer (last epoch)"
            )))
            .x_axis(x_axis)
            .y_axis(
                Axis::new()
                    .title(title("mean minibatch gradient L2 norm"))
                    .type_(plotly::layout::AxisType::Log),
            ),
    );
    Figure::new(format!("{name}_gradient_flow"), plot)
}

/// A histogram from equal bins given by their lower edges and counts, as
/// [`crate::analysis::weights::weight_histogram`] returns them.
pub fn histogram(name: &str, x_title: &str, lower_edges: &[f64], counts: &[u64]) -> Figure {
    histogram_bars(name, x_title, lower_edges, counts, false)
}

/// [`histogram`] with a logarithmic count axis: for counts that span orders of magnitude,
/// such as MNIST's pixel values, where the zeros outnumber every ink level by a hundred.
pub fn histogram_log(name: &str, x_title: &str, lower_edges: &[f64], counts: &[u64]) -> Figure {
    histogram_bars(name, x_title, lower_edges, counts, true)
}

fn histogram_bars(
    name: &str,
    x_title: &str,
    lower_edges: &[f64],
    counts: &[u64],
    log: bool,
) -> Figure {
    let width = lower_edges.windows(2).next().map_or(1.0, |w| w[1] - w[0]);
    let centres: Vec<f64> = lower_edges.iter().map(|e| e + 0.5 * width).collect();
    let mut plot = Plot::new();
    plot.add_trace(Bar::new(centres, counts.to_vec()).width(width));
    let mut y = Axis::new().title(title(if log { "count (log scale)" } else { "count" }));
    if log {
        y = y.type_(plotly::layout::AxisType::Log);
    }
    plot.set_layout(
        Layout::new()
            .title(title(name))
            .bar_gap(0.0)
            .x_axis(Axis::new().title(title(x_title)))
            .y_axis(y),
    );
    Figure::new(name.replace(' ', "_"), plot)
}

/// The confusion matrix as people read it: square cells, every digit labelled, each cell
/// annotated with its count; the errors (off the diagonal) coloured by count from white to
/// red, the diagonal (correct answers) in grey so that it does not swamp them, and the most
/// confused pairs listed beside.
pub fn confusion_heatmap(name: &str, cm: &ConfusionMatrix) -> Figure {
    let n = crate::data::NUM_CLASSES;
    // The counts where `keep(true, predicted)`, gaps elsewhere: two heatmaps, one scale each.
    let part = |keep: fn(usize, usize) -> bool| -> Vec<Vec<Option<u64>>> {
        (0..n)
            .map(|t| {
                (0..n)
                    .map(|p| keep(t, p).then_some(cm.counts[t][p]))
                    .collect()
            })
            .collect()
    };
    let errors = part(|t, p| t != p);
    let diagonal = part(|t, p| t == p);
    let max_err = errors
        .iter()
        .flatten()
        .flatten()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let digits: Vec<String> = (0..n).map(|d| d.to_string()).collect();
    let mut plot = Plot::new();
    plot.add_trace(Box::new(Raw(serde_json::json!({
        "type": "heatmap", "x": digits, "y": digits, "z": diagonal,
        "colorscale": [[0.0, "#d9d9d9"], [1.0, "#d9d9d9"]], "showscale": false,
        "hoverongaps": false, "xgap": 1, "ygap": 1,
        "hovertemplate": "true %{y}, predicted %{x}: %{z} correct<extra></extra>",
    }))));
    plot.add_trace(Box::new(Raw(serde_json::json!({
        "type": "heatmap", "x": digits, "y": digits, "z": errors,
        "colorscale": [[0.0, "#ffffff"], [0.25, "#fcbba1"], [1.0, "#a50f15"]],
        "zmin": 0, "zmax": max_err, "hoverongaps": false, "xgap": 1, "ygap": 1,
        // Whole errors on the scale: at most about eight ticks.
        "colorbar": {"title": {"text": "errors"}, "dtick": max_err.div_ceil(8)},
        "hovertemplate": "true %{y}, predicted %{x}: %{z} errors<extra></extra>",
    }))));
    let notes = confusion_notes(cm, max_err);
    let total = cm.total();
    let wrong: u64 = errors.iter().flatten().flatten().sum();
    plot.set_layout(
        Layout::new()
            .title(
                // Pinned to the top of the figure, clear of the axis title above the columns.
                title(&format!(
                    "{name}: confusion matrix, {wrong} errors of {total}<br><sup>counts; \
                     errors from white to red, correct answers on the grey diagonal</sup>"
                ))
                .y_ref(plotly::common::Reference::Container)
                .y(0.975)
                .y_anchor(plotly::common::Anchor::Top),
            )
            .x_axis(
                Axis::new()
                    .title(title("predicted"))
                    .dtick(1.0)
                    .side(plotly::common::AxisSide::Top)
                    .type_(plotly::layout::AxisType::Category),
            )
            .y_axis(
                Axis::new()
                    .title(title("true"))
                    .dtick(1.0)
                    .type_(plotly::layout::AxisType::Category)
                    .range(vec![n as f64 - 0.5, -0.5])
                    .scale_anchor("x"),
            )
            .annotations(notes)
            .margin(
                plotly::layout::Margin::new()
                    .left(60)
                    .right(260)
                    .top(130)
                    .bottom(30),
            ),
    );
    Figure::sized(format!("confusion_{name}"), plot, 900, 700)
}

/// The confusion heatmap's annotations: each cell's count (white on dark cells, grey for
/// zero) and the most confused pairs beside the matrix.
fn confusion_notes(cm: &ConfusionMatrix, max_err: u64) -> Vec<plotly::layout::Annotation> {
    use plotly::common::Font;
    use plotly::layout::Annotation;
    let n = crate::data::NUM_CLASSES;
    let mut notes: Vec<Annotation> = Vec::new();
    for t in 0..n {
        for p in 0..n {
            let c = cm.counts[t][p];
            let colour = if t == p {
                "#333333"
            } else if c * 2 > max_err {
                "#ffffff"
            } else if c == 0 {
                "#bbbbbb"
            } else {
                "#000000"
            };
            notes.push(
                Annotation::new()
                    .text(c.to_string())
                    .x(p.to_string())
                    .y(t.to_string())
                    .show_arrow(false)
                    .font(Font::new().size(if t == p { 11 } else { 13 }).color(colour)),
            );
        }
    }
    let top: Vec<String> = cm
        .most_confused(5)
        .iter()
        .map(|p| format!("{} → {}: {}", p.truth, p.predicted, p.count))
        .collect();
    notes.push(
        Annotation::new()
            .text(format!(
                "most confused<br>(true → predicted)<br>{}",
                top.join("<br>")
            ))
            .x_ref("paper")
            .y_ref("paper")
            .x(1.2)
            .y(1.0)
            .x_anchor(plotly::common::Anchor::Left)
            .y_anchor(plotly::common::Anchor::Top)
            .align(plotly::layout::HAlign::Left)
            .show_arrow(false)
            .font(Font::new().size(13)),
    );
    notes
}

/// A plotly trace given as its JSON (for attributes the typed API lacks, like `zmid`,
/// `xgap` or gaps in `z`).
#[derive(Clone, serde::Serialize)]
#[serde(transparent)]
struct Raw(serde_json::Value);

impl plotly::Trace for Raw {
    fn to_json(&self) -> String {
        self.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> History {
        let rec = |e: usize, l: f64| EpochRecord {
            epoch: e,
            lr: 1e-3,
            train_loss: l,
            train_accuracy: 1.0 - l,
            val_loss: Some(l + 0.1),
            val_accuracy: Some(0.9),
            test_loss: None,
            test_accuracy: None,
            seconds: 1.0,
            images_per_sec: 100.0,
            weight_norm: 1.0,
            grad_noise: Some(0.1),
            grad_mean_norm: Some(0.1),
            layer_grad_norms: Vec::new(),
            loss_trace: Vec::new(),
        };
        History {
            model: "m".into(),
            epochs: vec![rec(1, 0.5), rec(2, 0.3)],
            ..Default::default()
        }
    }

    #[test]
    fn figures_serialize_and_embed_plotly_once() {
        let f = learning_curves(&history());
        let json: serde_json::Value = serde_json::from_str(&f.to_json()).unwrap();
        assert_eq!(
            json["data"].as_array().unwrap().len(),
            4,
            "train/val loss and accuracy"
        );
        assert!(f.to_html().contains("<script"), "standalone html");
        let first = f.notebook_html();
        let second = f.notebook_html();
        assert!(first.len() > 1_000_000, "plotly.js injected the first time");
        assert!(second.len() < 100_000, "and not again");
        let id = |h: &str| {
            h.split("id=\"mnist-kit-")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(str::to_string)
        };
        assert!(id(&second).is_some());
        assert_ne!(
            id(&first),
            id(&second),
            "each display draws into its own div"
        );
        let cm = ConfusionMatrix::new(&[0, 1, 1], &[0, 1, 0]).unwrap();
        let h: serde_json::Value =
            serde_json::from_str(&confusion_heatmap("t", &cm).to_json()).unwrap();
        assert_eq!(h["data"][0]["type"], "heatmap");
    }

    #[test]
    fn confusion_heatmap_shows_counts_errors_and_whole_error_ticks() {
        // Ten classes, 20 errors: 2 → 7 twelve times, 5 → 3 eight times.
        let mut truth: Vec<u8> = (0..100).map(|i| i % 10).collect();
        let mut pred = truth.clone();
        truth.extend([2; 12].iter().chain([5; 8].iter()));
        pred.extend([7; 12].iter().chain([3; 8].iter()));
        let cm = ConfusionMatrix::new(&truth, &pred).unwrap();
        let h: serde_json::Value =
            serde_json::from_str(&confusion_heatmap("t", &cm).to_json()).unwrap();
        let errors = &h["data"][1];
        assert_eq!(errors["zmax"], 12);
        assert_eq!(
            errors["colorbar"]["dtick"], 2,
            "whole errors, about eight ticks"
        );
        assert!(errors["z"][2][2].is_null(), "the diagonal is drawn apart");
        assert_eq!(errors["z"][2][7], 12);
        let notes = h["layout"]["annotations"].as_array().unwrap();
        assert_eq!(
            notes.len(),
            10 * 10 + 1,
            "a count in every cell and the top pairs"
        );
        let top = notes.last().unwrap()["text"].as_str().unwrap();
        assert!(
            top.contains("2 → 7: 12") && top.contains("5 → 3: 8"),
            "{top}"
        );
        let title = h["layout"]["title"]["text"].as_str().unwrap();
        assert!(title.contains("20 errors of 120"), "{title}");
    }
}

#[cfg(test)]
mod figure_tests {
    use super::*;

    #[test]
    fn forest_rows_are_ordered_and_the_legend_explains_the_colours() {
        let rows = vec![
            ("a - b".to_string(), 0.001, -0.002, 0.004),
            ("c - d".to_string(), 0.010, 0.004, 0.016),
            ("e - f".to_string(), -0.003, -0.006, -0.001),
        ];
        let json = forest("f", "t", "x", &rows, 100.0).to_json();
        assert!(json.contains("interval excludes zero: a verdict"));
        assert!(json.contains("interval includes zero: not distinguishable"));
        // Largest difference on top: the category order lists rows bottom up.
        let order = json.find("\"categoryarray\"").unwrap();
        let tail = &json[order..];
        assert!(tail.find("e - f").unwrap() < tail.find("a - b").unwrap());
        assert!(tail.find("a - b").unwrap() < tail.find("c - d").unwrap());
    }

    #[test]
    fn a_network_keeps_its_colour_across_figures() {
        let a = colours_for(&["lenet5", "dense128"]);
        let b = colours_for(&["resnet", "dropout-0.1", "lenet5"]);
        assert_eq!(a[0], b[2], "LeNet-5 in both");
        // Other labels take colours no network of the figure uses.
        assert!(!b[..1].contains(&b[1]) && b[1] != b[2]);
        let c = colours_for(&["x", "y", "z"]);
        assert!(c[0] != c[1] && c[1] != c[2]);
    }

    #[test]
    fn class_counts_use_a_category_axis_of_digits() {
        let json =
            class_counts("c", "What it predicts", &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]).to_json();
        assert!(json.contains("\"type\":\"category\""), "{json}");
        assert!(json.contains("What it predicts"));
    }

    #[test]
    fn fractional_x_keeps_its_own_ticks() {
        let pts: MeanPoints = vec![(0.0, 99.0, 0.0), (0.05, 98.0, 0.0), (0.2, 90.0, 0.0)];
        let json = means_against("b", "t", "x", "y", &[("m".into(), pts)]).to_json();
        assert!(!json.contains("\"dtick\""), "{json}");
        let whole: MeanPoints = vec![(1.0, 99.0, 0.0), (2.0, 98.0, 0.0)];
        let json = means_against("d", "t", "x", "y", &[("m".into(), whole)]).to_json();
        assert!(json.contains("\"dtick\":1"), "{json}");
    }
}
