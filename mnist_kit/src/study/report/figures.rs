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
    pub fn save(&self, fig: &plot::Figure, caption: &str) -> Result<String> {
        write_bytes_atomic(
            &self.dir.join(format!("{}.html", fig.name)),
            fig.to_html_linked(plot::PLOTLY_JS).as_bytes(),
        )?;
        if let Some(x) = &self.exporter {
            match x.export(fig, &self.dir) {
                Ok(_) => {
                    return Ok(format!(
                        "![{caption}](figures/{n}.png)\n\n[SVG](figures/{n}.svg) · \
                         [interactive HTML](figures/{n}.html)",
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
