//! `summary()` of a model: per layer its output shape, parameter count and the formula behind
//! the count, as text, HTML (notebooks) and JSON (`mnist-kit summary --json`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// One row of a model summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Layer name (matches the parameter prefix in the weights file).
    pub name: String,
    /// What the layer is (`Conv2d 5x5`, `Linear`, `MaxPool 2x2`, ...).
    pub kind: String,
    /// Output shape of one sample (batch dimension left out).
    pub output_shape: Vec<usize>,
    /// Trainable parameters of the layer.
    pub params: usize,
    /// Values saved with the weights that training does not update (BatchNorm's running
    /// statistics).
    pub buffers: usize,
    /// How `params` is computed, e.g. `(5*5*1+1)*6 = 156`.
    pub formula: String,
}

/// A model's layers and parameter totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// Model name (a preset name, or the config kind).
    pub model: String,
    /// Trainable parameters: what the optimizer updates (every table of the kit counts these).
    pub params: usize,
    /// Buffers: BatchNorm's running statistics, saved with the weights but not trained.
    pub buffers: usize,
    /// Rows in forward order.
    pub layers: Vec<LayerInfo>,
}

impl ModelSummary {
    pub(crate) fn new(model: String, layers: Vec<LayerInfo>) -> Self {
        ModelSummary {
            model,
            params: layers.iter().map(|l| l.params).sum(),
            buffers: layers.iter().map(|l| l.buffers).sum(),
            layers,
        }
    }

    /// An HTML table (what notebooks show).
    pub fn to_html(&self) -> String {
        let mut h = format!(
            "<table><caption><b>{}</b>: {} trainable parameters, {} buffers</caption>\
             <thead><tr><th>layer</th><th>kind</th><th>output shape</th><th>params</th><th>buffers</th><th>formula</th></tr></thead><tbody>",
            crate::display::esc(&self.model),
            self.params,
            self.buffers
        );
        for l in &self.layers {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{:?}</td><td style=\"text-align:right\">{}</td>\
                 <td style=\"text-align:right\">{}</td><td><code>{}</code></td></tr>",
                crate::display::esc(&l.name),
                crate::display::esc(&l.kind),
                l.output_shape,
                l.params,
                l.buffers,
                crate::display::esc(&l.formula)
            ));
        }
        h.push_str("</tbody></table>");
        h
    }

    /// Shows the summary as an HTML table in an evcxr notebook.
    pub fn evcxr_display(&self) {
        crate::display::html(&self.to_html());
    }
}

impl fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Model: {}", self.model)?;
        writeln!(
            f,
            "{:<22} {:<28} {:<16} {:>9} {:>8}  formula",
            "layer", "kind", "output shape", "params", "buffers"
        )?;
        writeln!(f, "{}", "-".repeat(100))?;
        for l in &self.layers {
            writeln!(
                f,
                "{:<22} {:<28} {:<16} {:>9} {:>8}  {}",
                l.name,
                l.kind,
                format!("{:?}", l.output_shape),
                l.params,
                l.buffers,
                l.formula
            )?;
        }
        writeln!(f, "{}", "-".repeat(100))?;
        writeln!(f, "Trainable params: {}", self.params)?;
        write!(
            f,
            "Buffers (BatchNorm running statistics): {}",
            self.buffers
        )
    }
}
