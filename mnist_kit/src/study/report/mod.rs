//! The study's report, one file per job: [`write_report`] (this file) reads every finished run
//! once and hands the sections what they need (`context`); `sections` writes the design, the
//! architectures and every group; `robustness` the MNIST-C benchmark and the robust model; `real_digits` the
//! real-world digits;
//! `inspect` the weights, parameter counts and curves; `front` the contents and the
//! limitations; `readme` the README's generated findings; `export` `metrics.json`, the tables and the model directories; `figures` saves
//! figures next to the report.
//!
//! Output: `REPORT.md` with a page per group in `report/` (its members' table, every quantity's
//! comparisons, its figures), `metrics.json`, `tables/*.csv`, `figures/` (HTML pages that load one
//! local plotly.js, plus SVG and PNG where a headless Chromium is there), `models/best/` and
//! `models/robust/`.

mod context;
mod export;
pub use export::ROBUST_TOLERANCE;
mod figures;
mod front;
mod inspect;
pub mod readme;
mod real_digits;
mod robustness;
mod sections;

use std::time::Instant;

use serde_json::Value;

use super::aggregate::by_experiment;
use super::evidence::Evidence;
use super::plan::{self, Group};
use super::probes::Probes;
use super::{ExperimentResult, StudyConfig};
use crate::data::Mnist;
use crate::plot;
use crate::{Error, Result};

use context::Ctx;
use figures::FigureSink;

/// Writes `REPORT.md`, `metrics.json`, figures, tables, `models/best/` and `models/robust/`
/// from every finished run (`all`: every seed of every experiment). `started`: when this run
/// of the study began; its wall time up to the finished report is `invocation_seconds` in
/// `metrics.json` and is stated in the report. `total_seconds` is the sum of every run's wall
/// time, so a resumed study reports what the whole study cost.
pub fn write_report(
    mnist: &Mnist,
    cfg: &StudyConfig,
    all: &[ExperimentResult],
    started: Instant,
) -> Result<()> {
    let out = &cfg.out;
    let figures = out.join("figures");
    let tables = out.join("tables");
    let pages = out.join("report");
    for d in [&figures, &tables, &pages] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    plot::write_plotly_js(&figures)?;
    let sink = FigureSink::new(figures);
    if !sink.exports() {
        println!(
            "static SVG/PNG export skipped: no chromium found (install Debian's chromium or set \
             {}); HTML figures written",
            plot::export::BROWSER_ENV
        );
    }
    if all.is_empty() {
        return Err(Error::invalid("report", "no finished run to report"));
    }
    // A study that trains measures afresh; `--report` renders what was measured.
    let mut probes = if cfg.report_only {
        Probes::load(out)?
    } else {
        Probes::default()
    };
    let all = &probes.with_penalties(all);
    let ctx = Ctx {
        mnist,
        cfg,
        all,
        reps: by_experiment(all),
        evidence: Evidence::new(mnist, all)?,
        sink,
        tables,
        probes: std::sync::Mutex::new(probes),
    };
    let groups: Vec<Group> = plan::groups()
        .into_iter()
        .filter(|g| !ctx.members(g).is_empty())
        .collect();

    let mut md = String::new();
    let mut metrics = serde_json::Map::new();
    sections::intro(&mut md, &ctx, &groups, &readme::summary(&ctx))?;
    sections::architectures(&mut md, &mut metrics, &ctx)?;
    let best = export::best_models(&ctx)?;
    sections::best_model(&mut md, &ctx, &best)?;
    let mut groups_json = serde_json::Map::new();
    for g in &groups {
        groups_json.insert(g.name.clone(), sections::group(&mut md, &ctx, g)?);
    }
    metrics.insert("groups".into(), Value::Object(groups_json));
    robustness::section(&mut md, &mut metrics, &ctx, &best)?;
    real_digits::section(&mut md, &mut metrics, &ctx, &best)?;
    sections::claims(&mut md, &mut metrics, &ctx)?;
    inspect::weights(&mut md, &ctx)?;
    inspect::parameters(&mut md, &ctx)?;
    inspect::curves(&mut md, &ctx)?;
    front::limitations(&mut md, &ctx);
    export::finish(&mut md, metrics, &ctx, &best, started)?;
    write_readme_blocks(&ctx)?;
    if let Ok(p) = ctx.probes.lock() {
        p.save(out)?;
    }
    Ok(())
}

/// The full study rewrites the generated blocks of the README beside its output directory
/// (`results/` in the repository) from the report's evidence; quick runs and other
/// directories leave it alone.
fn write_readme_blocks(ctx: &Ctx) -> Result<()> {
    let Some(readme) = ctx.cfg.out.parent().map(|p| p.join("README.md")) else {
        return Ok(());
    };
    let has_block = std::fs::read_to_string(&readme)
        .is_ok_and(|t| readme::block(&t, readme::FINDINGS).is_some());
    if ctx.cfg.quick || !has_block {
        return Ok(());
    }
    let facts = super::facts::Facts::with_evidence(&ctx.evidence, ctx.all);
    if readme::rewrite(&readme, &facts, ctx.all, &ctx.cfg.out.join("models"))? {
        println!("README's generated blocks rewritten: {}", readme.display());
    }
    Ok(())
}
