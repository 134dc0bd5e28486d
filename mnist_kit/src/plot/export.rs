//! Static SVG and PNG export of figures through a headless Chromium (Debian's `chromium`):
//! the figure is drawn by the embedded plotly.js in a local page, `Plotly.toImage` renders it,
//! and `--dump-dom` hands the images back. Nothing is downloaded; without a browser the export
//! is skipped, not an error.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::Figure;
use crate::fsutil::write_bytes_atomic;
use crate::{Error, Result};

/// Environment variable naming the Chromium binary (else `chromium`, `chromium-browser` or
/// `google-chrome` on `PATH`).
pub const BROWSER_ENV: &str = "MNIST_KIT_CHROMIUM";

/// A headless browser that renders figures to SVG and PNG.
#[derive(Debug, Clone)]
pub struct StaticExporter {
    browser: PathBuf,
    /// Image width in CSS pixels.
    pub width: u32,
    /// Image height in CSS pixels.
    pub height: u32,
}

impl StaticExporter {
    /// The browser from `MNIST_KIT_CHROMIUM` or `PATH`, if there is one that runs.
    pub fn find() -> Option<Self> {
        let candidates: Vec<PathBuf> = match std::env::var_os(BROWSER_ENV) {
            Some(p) => vec![PathBuf::from(p)],
            None => ["chromium", "chromium-browser", "google-chrome"]
                .iter()
                .filter_map(|name| {
                    let path = std::env::var_os("PATH")?;
                    std::env::split_paths(&path)
                        .map(|d| d.join(name))
                        .find(|p| p.is_file())
                })
                .collect(),
        };
        candidates.into_iter().find_map(|browser| {
            let ok = Command::new(&browser)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            ok.then_some(StaticExporter {
                browser,
                width: 900,
                height: 520,
            })
        })
    }

    /// Writes `<dir>/<figure name>.svg` and `.png`; returns their paths.
    pub fn export(&self, fig: &Figure, dir: &Path) -> Result<Vec<PathBuf>> {
        let (svg, png) = self.render(fig)?;
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let svg_path = dir.join(format!("{}.svg", fig.name));
        let png_path = dir.join(format!("{}.png", fig.name));
        write_bytes_atomic(&svg_path, svg.as_bytes())?;
        write_bytes_atomic(&png_path, &png)?;
        Ok(vec![svg_path, png_path])
    }

    /// The figure drawn as SVG text and PNG bytes (at twice the CSS size).
    pub fn render(&self, fig: &Figure) -> Result<(String, Vec<u8>)> {
        let page_dir = tempfile_dir()?;
        let page = page_dir.join(format!("{}.html", fig.name));
        let js = format!("<script>{}</script>", super::plotly_js());
        let html = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\">{js}</head><body>\
             <div id=\"fig\"></div><pre id=\"svg\"></pre><pre id=\"png\"></pre><script>\
             const fig = {json};\
             Plotly.newPlot('fig', fig.data, fig.layout).then(gd => Promise.all([\
               Plotly.toImage(gd, {{format: 'svg', width: {w}, height: {h}}}),\
               Plotly.toImage(gd, {{format: 'png', width: {w}, height: {h}, scale: 2}})\
             ])).then(([svg, png]) => {{\
               document.getElementById('svg').textContent = decodeURIComponent(svg.slice(svg.indexOf(',') + 1));\
               const bin = atob(png.slice(png.indexOf(',') + 1));\
               let hex = '';\
               for (let i = 0; i < bin.length; i++) hex += bin.charCodeAt(i).toString(16).padStart(2, '0');\
               document.getElementById('png').textContent = hex;\
             }});</script></body></html>",
            js = js,
            json = fig.to_json(),
            w = fig.size.map_or(self.width, |s| s.0),
            h = fig.size.map_or(self.height, |s| s.1),
        );
        write_bytes_atomic(&page, html.as_bytes())?;
        let out = Command::new(&self.browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--virtual-time-budget=20000",
                "--dump-dom",
            ])
            .arg(&page)
            .output()
            .map_err(|e| Error::io(&self.browser, e))?;
        let _ = std::fs::remove_dir_all(&page_dir);
        let dom = String::from_utf8_lossy(&out.stdout);
        let svg = between(&dom, "<pre id=\"svg\">", "</pre>").map(unescape_text);
        let png = between(&dom, "<pre id=\"png\">", "</pre>").and_then(from_hex);
        let (Some(svg), Some(png)) = (svg.filter(|s| s.contains("<svg")), png) else {
            return Err(Error::invalid(
                "static export",
                format!(
                    "{} did not render {} ({})",
                    self.browser.display(),
                    fig.name,
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .last()
                        .unwrap_or("no output")
                ),
            ));
        };
        Ok((svg, png))
    }
}

fn tempfile_dir() -> Result<PathBuf> {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mnist_kit-export-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// Undoes the escaping of a serialized text node.
fn unescape_text(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_decode_what_the_page_writes() {
        assert_eq!(from_hex("89504e47"), Some(vec![0x89, 0x50, 0x4e, 0x47]));
        assert_eq!(from_hex("8"), None);
        assert_eq!(
            unescape_text("&lt;svg a=\"1&amp;2\"&gt;"),
            "<svg a=\"1&2\">"
        );
        assert_eq!(between("x<p>in</p>y", "<p>", "</p>"), Some("in"));
    }

    /// Runs where a Chromium is installed (`apt-get install chromium`); skipped otherwise.
    #[test]
    fn exports_svg_and_png_when_a_browser_exists() {
        let Some(exporter) = StaticExporter::find() else {
            eprintln!("no chromium: static export not tested");
            return;
        };
        let fig = super::super::bars(
            "export test",
            "value",
            &[("a".into(), 1.0), ("b".into(), 2.0)],
        );
        let dir =
            std::env::temp_dir().join(format!("mnist_kit-export-test-{}", std::process::id()));
        let files = exporter.export(&fig, &dir).unwrap();
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("export test"),
            "{}",
            &svg[..200.min(svg.len())]
        );
        let png = image::open(&files[1]).unwrap();
        assert_eq!((png.width(), png.height()), (1800, 1040));
        let _ = std::fs::remove_dir_all(dir);
    }
}
