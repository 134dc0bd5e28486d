//! Figures (plotly): learning curves, run overlays, bars and the confusion heatmap. Each
//! [`Figure`] saves as standalone offline HTML (plotly.js embedded) and shows itself in
//! notebooks, injecting plotly.js once per kernel session rather than once per figure.

pub mod export;
pub mod grid;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use plotly::common::{Mode, Title};
use plotly::layout::{Axis, GridPattern, Layout, LayoutGrid};
use plotly::{Bar, HeatMap, Plot, Scatter};

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

    /// The plotly JSON of the figure.
    pub fn to_json(&self) -> String {
        self.plot.to_json()
    }

    /// The HTML a notebook cell shows: plotly.js the first time in a session, then a div.
    pub fn notebook_html(&self) -> String {
        let mut html = String::new();
        if first_figure_in_process() {
            html.push_str(&Plot::offline_js_sources());
        }
        html.push_str(&self.plot.to_inline_html(Some(&format!(
            "mnist-kit-{}-{}-{}",
            self.name,
            std::process::id(),
            SHOWN.fetch_add(1, Ordering::SeqCst)
        ))));
        html
    }

    /// Shows the figure in an evcxr notebook (HTML, rendered by every Jupyter front-end).
    pub fn evcxr_display(&self) {
        crate::display::html(&self.notebook_html());
    }
}

fn title(text: &str) -> Title {
    Title::with_text(text)
}

/// The four curves of a run: train/validation/test loss (left) and accuracy (right) per epoch.
pub fn learning_curves(history: &History) -> Figure {
    let mut plot = Plot::new();
    type Pick = fn(&EpochRecord) -> Option<f64>;
    let traces: [(&str, &str, Pick); 6] = [
        ("train loss", "y", |r| Some(r.train_loss)),
        ("val loss", "y", |r| r.val_loss),
        ("test loss", "y", |r| r.test_loss),
        ("train acc", "y2", |r| Some(r.train_accuracy)),
        ("val acc", "y2", |r| r.val_accuracy),
        ("test acc", "y2", |r| r.test_accuracy),
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
            .y_axis(Axis::new().title(title("loss")))
            .y_axis2(Axis::new().title(title("accuracy"))),
    );
    Figure::new(format!("learning_curves_{}", history.model), plot)
}

/// One metric of several runs over epochs (ablations): `runs` are `(label, history)`.
pub fn overlay(name: &str, metric: &str, runs: &[(String, &History)]) -> Figure {
    let mut plot = Plot::new();
    for (label, h) in runs {
        let (x, y): (Vec<usize>, Vec<f64>) = h
            .epochs
            .iter()
            .filter_map(|r| {
                let v = match metric {
                    "train_loss" => Some(r.train_loss),
                    "train_accuracy" => Some(r.train_accuracy),
                    "val_loss" => r.val_loss,
                    "val_accuracy" => r.val_accuracy,
                    "test_loss" => r.test_loss,
                    "test_accuracy" => r.test_accuracy,
                    "weight_norm" => Some(r.weight_norm),
                    "grad_noise" => Some(r.grad_noise),
                    "lr" => Some(r.lr),
                    _ => None,
                };
                v.map(|v| (r.epoch, v))
            })
            .unzip();
        plot.add_trace(Scatter::new(x, y).name(label).mode(Mode::LinesMarkers));
    }
    plot.set_layout(
        Layout::new()
            .title(title(&format!("{name}: {metric}")))
            .x_axis(Axis::new().title(title("epoch")))
            .y_axis(Axis::new().title(title(metric))),
    );
    Figure::new(format!("{name}_{metric}"), plot)
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

/// Gradient flow: the mean gradient norm of each weight tensor in the last epoch of each run,
/// input side on the left, on a log axis (vanishing gradients show as a falling line).
pub fn gradient_flow(name: &str, runs: &[(String, &History)]) -> Figure {
    let mut plot = Plot::new();
    for (label, h) in runs {
        let Some(last) = h.last() else { continue };
        let (x, y): (Vec<String>, Vec<f64>) = last.layer_grad_norms.iter().cloned().unzip();
        plot.add_trace(Scatter::new(x, y).name(label).mode(Mode::LinesMarkers));
    }
    plot.set_layout(
        Layout::new()
            .title(title(&format!(
                "{name}: gradient norm per layer (last epoch)"
            )))
            .x_axis(Axis::new().title(title("weight tensor (input → output)")))
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
    let width = lower_edges.windows(2).next().map_or(1.0, |w| w[1] - w[0]);
    let centres: Vec<f64> = lower_edges.iter().map(|e| e + 0.5 * width).collect();
    let mut plot = Plot::new();
    plot.add_trace(Bar::new(centres, counts.to_vec()).width(width));
    plot.set_layout(
        Layout::new()
            .title(title(name))
            .bar_gap(0.0)
            .x_axis(Axis::new().title(title(x_title)))
            .y_axis(Axis::new().title(title("count"))),
    );
    Figure::new(name.replace(' ', "_"), plot)
}

/// The confusion matrix as a heatmap of row-normalized rates (counts on hover).
pub fn confusion_heatmap(name: &str, cm: &ConfusionMatrix) -> Figure {
    let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    // Rows bottom-up so that digit 0 is the top row, as in the printed matrix.
    let z: Vec<Vec<f64>> = cm.normalized().iter().rev().map(|r| r.to_vec()).collect();
    let y: Vec<String> = digits.iter().rev().cloned().collect();
    let mut plot = Plot::new();
    plot.add_trace(HeatMap::new(digits, y, z).zmin(0.0).zmax(1.0));
    plot.set_layout(
        Layout::new()
            .title(title(&format!("{name}: confusion (row-normalized)")))
            .x_axis(Axis::new().title(title("predicted")))
            .y_axis(Axis::new().title(title("true"))),
    );
    Figure::new(format!("confusion_{name}"), plot)
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
            grad_noise: 0.1,
            grad_mean_norm: 0.1,
            layer_grad_norms: Vec::new(),
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
        let cm = ConfusionMatrix::new(&[0, 1, 1], &[0, 1, 0]).unwrap();
        let h: serde_json::Value =
            serde_json::from_str(&confusion_heatmap("t", &cm).to_json()).unwrap();
        assert_eq!(h["data"][0]["type"], "heatmap");
    }
}
