//! Presentation, the bottom floor every layer may use: the evcxr envelope
//! (`EVCXR_BEGIN_CONTENT <mime>` ... `EVCXR_END_CONTENT`) that the kit's types print from their
//! inherent `evcxr_display` methods, HTML escaping, base64 and PNG encoding, and [`Table`].

use std::io::Cursor;

use base64::Engine as _;
use image::{DynamicImage, GrayImage};

/// Escapes `&`, `<` and `>` for HTML text.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Standard base64 with padding (PNG payloads in notebook envelopes and data URLs).
pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A grayscale image as PNG bytes; `name` says what it is in an error.
pub fn encode_png(img: GrayImage, name: &str) -> crate::Result<Vec<u8>> {
    let mut out = Vec::new();
    DynamicImage::ImageLuma8(img)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| crate::Error::Image {
            source_name: name.to_string(),
            reason: e.to_string(),
        })?;
    Ok(out)
}

/// Formats one display block for `mime`. Each block is printed in a single call so that
/// concurrent output cannot split it.
pub fn envelope(mime: &str, content: &str) -> String {
    format!("EVCXR_BEGIN_CONTENT {mime}\n{content}\nEVCXR_END_CONTENT\n")
}

/// Prints an HTML block for the notebook front-end.
pub fn html(content: &str) {
    print!("{}", envelope("text/html", content));
}

/// Prints a PNG block (base64) for the notebook front-end; evcxr bundles it with the other
/// blocks the value prints, so a front-end picks the richest it renders.
pub fn png(bytes: &[u8]) {
    print!("{}", envelope("image/png", &base64(bytes)));
}

/// Markdown rendered by the notebook front-end: the prose of a notebook cell written from
/// the numbers the cell computed (see [`crate::study::Facts`]), so a rerun that changes a
/// number changes the sentence.
///
/// ```
/// use mnist_kit::display::markdown;
/// let accuracy = 0.9905;
/// let md = markdown(format!("**What this shows.** {:.2} % of the test images.", 100.0 * accuracy));
/// assert_eq!(md.0, "**What this shows.** 99.05 % of the test images.");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Markdown(pub String);

/// [`Markdown`] of `text`.
pub fn markdown(text: impl Into<String>) -> Markdown {
    Markdown(text.into())
}

impl Markdown {
    /// Shows the text as Markdown in an evcxr notebook.
    pub fn evcxr_display(&self) {
        print!("{}", envelope("text/markdown", &self.0));
    }
}

impl std::fmt::Display for Markdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Environment variable for executed notebooks read on a git host: figures and image grids
/// carry a PNG (see `plot::Figure::evcxr_display`).
pub const NOTEBOOK_PNG_ENV: &str = "MNIST_KIT_NOTEBOOK_PNG";

/// True when `MNIST_KIT_NOTEBOOK_PNG` is set to something other than `0` or empty.
pub fn png_mode() -> bool {
    std::env::var(NOTEBOOK_PNG_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

use polars::prelude::{AnyValue, DataFrame};

/// A titled polars table that shows itself as HTML in notebooks (polars' own `Display` is a
/// text table) and keeps the `DataFrame` for further work.
///
/// ```
/// use mnist_kit::display::Table;
/// use mnist_kit::polars::prelude::*;
/// let df = df!("model" => ["lenet5"], "loss" => [0.0325], "accuracy (%)" => [99.123])?;
/// let html = Table::new("models", df).to_html();
/// assert!(html.contains("<td>lenet5</td>"), "{html}");
/// assert!(html.contains("<td>0.0325</td>"), "{html}");
/// assert!(html.contains("<td>99.12</td>"), "{html}");
/// # Ok::<(), PolarsError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Table {
    /// Caption.
    pub title: String,
    /// The data.
    pub frame: DataFrame,
}

impl Table {
    /// A table with a caption.
    pub fn new(title: impl Into<String>, frame: DataFrame) -> Self {
        Table {
            title: title.into(),
            frame,
        }
    }

    /// HTML table; floats with 2 decimals in percent and points columns (a `%` or `points` in
    /// the column's name), 4 elsewhere.
    pub fn to_html(&self) -> String {
        let mut h = format!(
            "<table><caption><b>{}</b></caption><thead><tr>",
            esc(&self.title)
        );
        let columns = self.frame.columns();
        for c in columns {
            h.push_str(&format!("<th>{}</th>", esc(c.name())));
        }
        h.push_str("</tr></thead><tbody>");
        let decimals: Vec<usize> = columns
            .iter()
            .map(|c| {
                let name = c.name().as_str();
                if name.contains('%') || name.contains("points") {
                    2
                } else {
                    4
                }
            })
            .collect();
        for i in 0..self.frame.height() {
            h.push_str("<tr>");
            for (c, &d) in columns.iter().zip(&decimals) {
                let cell = match c.get(i) {
                    Ok(AnyValue::Float64(v)) => format!("{v:.d$}"),
                    Ok(AnyValue::Float32(v)) => format!("{v:.d$}"),
                    Ok(AnyValue::Null) | Err(_) => String::new(),
                    Ok(v) => v.get_str().map_or_else(|| v.to_string(), str::to_string),
                };
                h.push_str(&format!("<td>{}</td>", esc(&cell)));
            }
            h.push_str("</tr>");
        }
        h.push_str("</tbody></table>");
        h
    }

    /// Shows the table in an evcxr notebook.
    pub fn evcxr_display(&self) {
        html(&self.to_html());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn envelope_is_well_formed() {
        let e = super::envelope("text/html", "<b>x</b>");
        assert!(e.starts_with("EVCXR_BEGIN_CONTENT text/html\n"));
        assert!(e.ends_with("\nEVCXR_END_CONTENT\n"));
        assert_eq!(e.matches("EVCXR_BEGIN_CONTENT").count(), 1);
    }

    #[test]
    fn table_html_escapes_and_formats() {
        use polars::prelude::*;
        let df = df!("run" => ["a<b", "c"], "acc" => [0.5f64, 0.25], "n" => [1i64, 2])
            .unwrap_or_default();
        let h = super::Table::new("t", df).to_html();
        assert!(h.contains("<td>a&lt;b</td>"), "{h}");
        assert!(h.contains("<td>0.2500</td>"), "{h}");
        assert!(h.contains("<td>2</td>"), "{h}");
        assert_eq!(h.matches("<tr>").count(), 3);
    }

    #[test]
    fn base64_matches_rfc4648_and_escaping_covers_markup() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::esc("a<b & c>"), "a&lt;b &amp; c&gt;");
    }
}
