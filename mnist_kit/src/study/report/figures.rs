//! Where the report's figures go: a small HTML page per figure (loading the shared
//! `figures/plotly.min.js`) always, SVG and PNG when a headless Chromium is there
//! ([`plot::StaticExporter`]).

use std::path::PathBuf;

use crate::Result;
use crate::fsutil::write_bytes_atomic;
use crate::plot;

/// Saves figures into one directory.
pub(crate) struct FigureSink {
    dir: PathBuf,
    exporter: Option<plot::StaticExporter>,
}

impl FigureSink {
    /// Figures into `dir`, exported statically when a Chromium is found.
    pub fn new(dir: PathBuf) -> Self {
        FigureSink {
            dir,
            exporter: plot::StaticExporter::find(),
        }
    }

    /// True when figures get PNG and SVG files too.
    pub fn exports(&self) -> bool {
        self.exporter.is_some()
    }

    /// Saves `fig`; returns the Markdown that shows it (the PNG with links) or links the HTML.
    /// A figure whose page (its data and layout, written into the HTML) is what the directory
    /// already holds, with its PNG and SVG beside it, is not drawn again: a rerun of the report
    /// redraws only the figures whose data changed.
    pub fn save(&self, fig: &plot::Figure, caption: &str) -> Result<String> {
        let page = self.dir.join(format!("{}.html", fig.name));
        let html = fig.to_html_linked(plot::PLOTLY_JS);
        let unchanged = std::fs::read(&page).is_ok_and(|old| old == html.as_bytes());
        if !unchanged {
            write_bytes_atomic(&page, html.as_bytes())?;
        }
        let drawn = |ext: &str| self.dir.join(format!("{}.{ext}", fig.name)).exists();
        if let Some(x) = &self.exporter {
            let exported = if unchanged && drawn("png") && drawn("svg") {
                Ok(Vec::new())
            } else {
                x.export(fig, &self.dir)
            };
            match exported {
                Ok(_) => {
                    return Ok(format!(
                        "![{caption}](figures/{n}.png) \
                         ([SVG](figures/{n}.svg) · [interactive HTML](figures/{n}.html))",
                        n = fig.name
                    ));
                }
                Err(e) => println!("static export of {} failed: {e}", fig.name),
            }
        }
        Ok(format!(
            "[{caption} (interactive HTML)](figures/{}.html)",
            fig.name
        ))
    }

    /// Saves an image figure: the plotly figure's PNG (words on the tiles) when a browser
    /// exports it, else the plain PNG of the grid `fallback` makes (at least 600 pixels wide)
    /// with the HTML page.
    pub fn save_image(
        &self,
        fig: &plot::Figure,
        fallback: impl FnOnce() -> Result<plot::ImageGrid>,
        caption: &str,
    ) -> Result<String> {
        let md = self.save(fig, caption)?;
        if self.exporter.is_some() && self.dir.join(format!("{}.png", fig.name)).exists() {
            return Ok(md);
        }
        let mut grid = fallback()?;
        let width = grid.tiles.iter().map(|t| t.width).max().unwrap_or(1)
            * grid.columns.min(grid.tiles.len()).max(1);
        grid.zoom = grid.zoom.max((600 / width.max(1) + 1) as u32);
        grid.save_png(self.dir.join(format!("{}.png", fig.name)))?;
        Ok(format!(
            "![{caption}](figures/{n}.png)\n\n[interactive HTML](figures/{n}.html)",
            n = fig.name
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_whose_data_did_not_change_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FigureSink {
            dir: dir.path().to_path_buf(),
            exporter: None,
        };
        let page = dir.path().join("b.html");
        let fig = |v: f64| plot::bars("b", "value", &[("a".to_string(), v)]);
        sink.save(&fig(1.0), "b").unwrap();
        // Date the page back: a second save of the same data must not write it at all.
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let stamp = || std::fs::metadata(&page).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&page)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let mut text = std::fs::read_to_string(&page).unwrap();
        let first = text.clone();
        sink.save(&fig(1.0), "b").unwrap();
        assert_eq!(stamp(), old, "an unchanged figure is not written again");
        assert_eq!(std::fs::read_to_string(&page).unwrap(), first);
        text.push_str("<!-- stale -->");
        std::fs::write(&page, &text).unwrap();
        sink.save(&fig(2.0), "b").unwrap();
        let now = std::fs::read_to_string(&page).unwrap();
        assert!(
            !now.contains("stale") && now != first,
            "new data is written"
        );
    }
}
