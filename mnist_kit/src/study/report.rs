//! The study's report: `REPORT.md`, `metrics.json`, `tables/*.csv`, `figures/` (HTML pages that
//! load one local plotly.js, plus SVG and PNG where a headless Chromium is there) and
//! `models/best/`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use serde_json::{Value, json};

use super::aggregate::{
    Ensemble, Metric, Replicates, best_on_validation, by_experiment, ensemble,
    returned_val_accuracy, summary_frame,
};
use super::claims::claims;
use super::findings::{comparisons, findings};
use super::plan::{self, Group, Tuning, TuningState};
use super::run::{run_dir, write_json};
use super::stats::{ALPHA, Summary, holm, show_p, welch};
use super::{ExperimentResult, StudyConfig};
use crate::analysis::{ConfusionMatrix, Variant, robustness};
use crate::data::Mnist;
use crate::data::explore::split_stats;
use crate::fsutil::write_bytes_atomic;
use crate::models::Network;
use crate::plot;
use crate::train::{History, evaluate};
use crate::{Error, Result};

/// Writes `REPORT.md`, `metrics.json`, figures, tables and `models/best/` from every finished
/// run (`all`: every seed of every experiment). `started`: when this run of the study began;
/// its wall time up to the finished report is `invocation_seconds` in `metrics.json` and is
/// stated in the report. `total_seconds` is the sum of every run's wall time, so a resumed
/// study reports what the whole study cost.
pub fn write_report(
    mnist: &Mnist,
    cfg: &StudyConfig,
    all: &[ExperimentResult],
    started: Instant,
) -> Result<()> {
    let out = &cfg.out;
    let figures = out.join("figures");
    let tables = out.join("tables");
    for d in [&figures, &tables] {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    plot::write_plotly_js(&figures)?;
    let sink = FigureSink {
        dir: figures.clone(),
        exporter: plot::StaticExporter::find(),
    };
    if sink.exporter.is_none() {
        println!(
            "static SVG/PNG export skipped: no chromium found (install Debian's chromium or set \
             {}); HTML figures written",
            plot::export::BROWSER_ENV
        );
    }
    let total_seconds: f64 = all.iter().map(|r| r.train_seconds).sum();
    let reps = by_experiment(all);
    let find = |name: &str| reps.iter().find(|r| r.name() == name);
    let groups: Vec<(Group, Vec<&Replicates>)> = plan::groups()
        .into_iter()
        .map(|g| {
            let members: Vec<&Replicates> = g.members.iter().filter_map(|m| find(m)).collect();
            (g, members)
        })
        .filter(|(_, m)| !m.is_empty())
        .collect();
    let arch: Vec<&Replicates> = groups
        .iter()
        .find(|(g, _)| g.name == "architectures")
        .map(|(_, m)| m.clone())
        .unwrap_or_default();

    // Seed ensembles of the architectures.
    let mut ensembles: Vec<Ensemble> = Vec::new();
    for r in arch.iter().filter(|r| r.runs.len() > 1) {
        ensembles.push(ensemble(mnist, cfg, r)?);
    }
    // The single run chosen on validation, copied to models/best/.
    let best = best_on_validation(all);
    if let Some(b) = best {
        copy_best(out, b)?;
    }

    let mut md = String::new();
    intro(&mut md, mnist, cfg, &reps, total_seconds);
    models_section(&mut md, &arch, &ensembles, &sink)?;
    if let Some(b) = best {
        best_section(&mut md, mnist, cfg, b, &sink)?;
    }
    let tested = claims(all);
    let _ = writeln!(md, "\n## What the seed studies claimed\n");
    let _ = writeln!(
        md,
        "Each row is a \"what we learned\" line of a seed study (`shared/seeds/`), tested on our \
         seeds: Welch's test of the named settings (Holm-corrected where a claim makes several \
         comparisons; a one-sample t-test for a stated accuracy; the contrast -1, 2, -1 for \
         diminishing returns). **confirmed** and **contradicted** need p < {ALPHA}; \
         otherwise the row says **not distinguishable**. Claims whose runs did not finish are \
         left out.\n"
    );
    md.push_str(&tested.0.to_markdown_or_empty());
    write_bytes_atomic(&tables.join("claims.csv"), claims_csv(&tested.0).as_bytes())?;

    let mut groups_json = serde_json::Map::new();
    for (g, members) in &groups {
        let runs: Vec<&ExperimentResult> = members.iter().flat_map(|r| r.runs.iter()).collect();
        let cs = comparisons(&runs, Metric::TestAccuracy);
        groups_json.insert(
            g.name.clone(),
            json!({
                "title": g.title,
                "experiments": members.iter().map(|r| r.name()).collect::<Vec<_>>(),
                "metric": "test_accuracy",
                "comparisons": cs.iter().map(|c| json!({
                    "a": c.a, "b": c.b, "p": finite(c.p), "p_holm": finite(c.p_holm),
                    "verdict": c.verdict.as_str(),
                    "mean_a": c.summary_a.mean, "mean_b": c.summary_b.mean,
                })).collect::<Vec<_>>(),
            }),
        );
        let owned: Vec<Replicates> = members.iter().map(|r| (*r).clone()).collect();
        let mut frame = summary_frame(&owned, &Metric::ALL)?;
        write_csv(&tables.join(format!("{}.csv", g.name)), &mut frame)?;
        if g.name == "architectures" {
            // `metrics.json` calls these the models; the table keeps that name as well.
            write_csv(&tables.join("models.csv"), &mut frame)?;
        } else {
            group_section(&mut md, &reps, g, members, &runs, &sink)?;
        }
    }
    for t in Tuning::all(cfg.quick, cfg.seed) {
        if let Some(grid) = grid_table(&t, &reps) {
            write_bytes_atomic(
                &tables.join(format!("{}-lr-grid.csv", t.group)),
                grid.1.as_bytes(),
            )?;
        }
    }
    if let Some(b) = best {
        robustness_section(&mut md, mnist, cfg, b, &tables)?;
    }
    weight_section(&mut md, mnist, cfg, &arch, &sink, &tables)?;
    parameter_section(&mut md, &arch)?;
    curves_section(&mut md, &arch, &sink)?;

    // metrics.json
    let models: serde_json::Map<String, Value> = reps
        .iter()
        .filter(|r| {
            r.group() == "architectures" || ["advanced-mlp", "pair-28x28"].contains(&r.group())
        })
        .map(|r| (r.name().to_string(), experiment_json(r)))
        .collect();
    let experiments: serde_json::Map<String, Value> = reps
        .iter()
        .map(|r| (r.name().to_string(), experiment_json(r)))
        .collect();
    let mut metrics = json!({
        "quick": cfg.quick,
        "cpu": crate::bench::cpu_name(),
        "logical_cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "seeds": cfg.seeds,
        "base_seed": cfg.seed,
        "jobs": cfg.jobs,
        "models": models,
        "experiments": experiments,
        "groups": groups_json,
        "ensembles": ensembles.iter().map(|e| (e.name.clone(), json!({
            "test_accuracy": e.test_accuracy,
            "test_loss": e.test_loss,
            "seeds": e.seeds,
        }))).collect::<serde_json::Map<_, _>>(),
        "best": best.map(|b| json!({
            "experiment": b.name(),
            "seed": b.seed(),
            "val_accuracy": returned_val_accuracy(b),
            "test_accuracy": b.test_accuracy,
            "chosen_on": "validation accuracy of the returned weights (5,000 held-out training images)",
        })),
        "claims": tested.0,
        "total_seconds": total_seconds,
    });

    // Measured last, so that it covers the figures and tables too.
    let wall = started.elapsed().as_secs_f64();
    let _ = writeln!(
        md,
        "\n## Run time\n\nThis run of the study took **{:.0} s ({:.1} min) wall**, from start to \
         this report (training, evaluation, figures and tables), on {} ({} logical CPUs); its \
         runs account for {:.0} s{}.",
        wall,
        wall / 60.0,
        crate::bench::cpu_name(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        total_seconds,
        if total_seconds > wall * cfg.jobs as f64 {
            " (more than the wall time allows: finished runs were reused from an earlier run)"
                .to_string()
        } else if cfg.jobs > 1 {
            format!(
                " in all, summed over the runs trained {} at a time",
                cfg.jobs
            )
        } else {
            String::new()
        }
    );
    metrics["invocation_seconds"] = json!(wall);
    write_json(&out.join("metrics.json"), &metrics)?;
    write_bytes_atomic(&out.join("REPORT.md"), md.as_bytes())?;
    Ok(())
}

trait MarkdownOrEmpty {
    fn to_markdown_or_empty(&self) -> String;
}

impl MarkdownOrEmpty for Vec<super::claims::Claim> {
    fn to_markdown_or_empty(&self) -> String {
        if self.is_empty() {
            "No claim could be tested: their runs have not finished.\n".into()
        } else {
            super::claims::Claims(self.clone()).to_markdown()
        }
    }
}

fn finite(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

fn summary_json(s: Option<Summary>) -> Value {
    match s {
        Some(s) => json!({
            "mean": s.mean, "std": finite(s.std), "min": s.min, "max": s.max,
            "ci95": [finite(s.ci95[0]), finite(s.ci95[1])], "n": s.n,
        }),
        None => Value::Null,
    }
}

/// One experiment in `metrics.json`: test accuracy as mean (a fraction) with its std, seeds,
/// per-seed values and 95 % interval next to it, then the other metrics' summaries.
fn experiment_json(r: &Replicates) -> Value {
    let acc = r.summary(Metric::TestAccuracy);
    let first = r.first();
    let mut v = json!({
        "group": r.group(),
        "params": r.params(),
        "seeds": r.runs.len(),
        "seed_values": r.seeds(),
        "per_seed": r.values(Metric::TestAccuracy),
        "test_accuracy": acc.map(|s| s.mean),
        "test_accuracy_std": acc.map(|s| finite(s.std)),
        "test_accuracy_min": acc.map(|s| s.min),
        "test_accuracy_max": acc.map(|s| s.max),
        "ci95": acc.map(|s| [finite(s.ci95[0]), finite(s.ci95[1])]),
        "epochs": first.map(|f| f.epochs),
        "augmented": first.map(|f| f.experiment.train.augment.is_some()),
        "train_seconds": r.seconds_per_seed(),
        "images_per_sec": r.runs.iter().map(|x| x.images_per_sec).sum::<f64>() / r.runs.len().max(1) as f64,
    });
    for m in Metric::ALL.iter().skip(1) {
        v[m.name()] = summary_json(r.summary(*m));
    }
    v
}

fn write_csv(path: &Path, frame: &mut polars::prelude::DataFrame) -> Result<()> {
    use polars::prelude::{CsvWriter, SerWriter};
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf).finish(frame)?;
    write_bytes_atomic(path, &buf)
}

fn claims_csv(c: &[super::claims::Claim]) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut csv = String::from("source,claim,measured,p,verdict\n");
    for x in c {
        let _ = writeln!(
            csv,
            "{},{},{},{},{}",
            q(&x.source),
            q(&x.claim),
            q(&x.measured),
            if x.p.is_finite() {
                format!("{:.6}", x.p)
            } else {
                String::new()
            },
            x.verdict.as_str()
        );
    }
    csv
}

fn intro(md: &mut String, mnist: &Mnist, cfg: &StudyConfig, reps: &[Replicates], total: f64) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = writeln!(
        md,
        "# mnist_kit study report: {}, {cpus} logical CPUs\n",
        crate::bench::cpu_name()
    );
    if cfg.quick {
        let _ = writeln!(
            md,
            "> **Quick mode**: 5,000 training images, 2 epochs, 2,000 test images. These numbers \
             show the pipeline works; they are not the study's results.\n"
        );
    }
    let seeds: Vec<String> = (0..cfg.seeds as u64)
        .map(|k| (cfg.seed + k).to_string())
        .collect();
    let runs: usize = reps.iter().map(|r| r.runs.len()).sum();
    let _ = writeln!(
        md,
        "{} experiments, {runs} runs: every experiment trained with {} seed{} ({}; the LeNet-5 \
         learning-rate grid with one). A seed sets the initialisation, the shuffling, the \
         dropout masks and the augmentation; the validation split (5,000 training images, seed \
         {}) and the test set are the same for every seed. mnist_kit {}, {} {}. Runs trained \
         {} at a time, each on one thread (the numbers do not depend on it; the seconds per \
         run do); they took {:.0} s ({:.1} min) of training and evaluation in all; the whole \
         run's wall time is under [Run time](#run-time).\n",
        reps.len(),
        cfg.seeds,
        if cfg.seeds == 1 { "" } else { "s" },
        seeds.join(", "),
        cfg.seed,
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
        cfg.jobs,
        total,
        total / 60.0
    );
    let _ = writeln!(md, "## How to read the numbers\n");
    let _ = writeln!(
        md,
        "- `98.02 ± 0.08` is the mean ± the sample standard deviation over seeds, in percent for \
         accuracies; the 95 % interval of the mean is Student's t with n - 1 degrees of freedom.\n\
         - A sentence says one setting **beats** another only when Welch's two-sided t-test on \
         the per-seed test accuracies, Holm-corrected across all pairs of its group, gives \
         p < {ALPHA}. Otherwise the settings **cannot be told apart** with these seeds; that is \
         a result, not a gap.\n\
         - Convergence epoch: the first epoch at which validation accuracy comes within {} \
         points of its value after the last epoch.\n\
         - The train-validation gap is the last epoch's training accuracy (training mode, with \
         dropout and augmentation where used) minus its validation accuracy.\n",
        100.0 * super::aggregate::CONVERGENCE_TOLERANCE
    );
    let tr = split_stats(&mnist.train);
    let te = split_stats(&mnist.test);
    let _ = writeln!(md, "## Data\n");
    let _ = writeln!(
        md,
        "{} training and {} test images of {}x{} pixels. Training pixel mean {:.4}, std {:.4}. \
         Class counts (train): {:?}.\n",
        tr.count,
        te.count,
        mnist.train.rows(),
        mnist.train.cols(),
        tr.pixel_mean,
        tr.pixel_std,
        tr.class_counts
    );
}

fn models_section(
    md: &mut String,
    arch: &[&Replicates],
    ensembles: &[Ensemble],
    sink: &FigureSink,
) -> Result<()> {
    if arch.is_empty() {
        return Ok(());
    }
    let _ = writeln!(md, "## Models\n");
    let _ = writeln!(
        md,
        "| model | params | seeds | test accuracy % | 95% CI | min-max | test loss | val accuracy % | epochs | augmented | s per seed | images/s |"
    );
    let _ = writeln!(
        md,
        "|---|---:|---:|---:|---|---|---:|---:|---:|:---:|---:|---:|"
    );
    for r in arch {
        let Some(acc) = r.summary(Metric::TestAccuracy) else {
            continue;
        };
        let f = r.first();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.2}-{:.2} | {} | {} | {} | {} | {:.0} | {:.0} |",
            r.name(),
            r.params(),
            r.runs.len(),
            acc.pct(),
            ci_text(&acc),
            100.0 * acc.min,
            100.0 * acc.max,
            r.summary(Metric::TestLoss)
                .map(|s| Metric::TestLoss.show(&s))
                .unwrap_or_default(),
            r.summary(Metric::ValAccuracy)
                .map(|s| s.pct())
                .unwrap_or_default(),
            f.map_or(0, |f| f.epochs),
            if f.is_some_and(|f| f.experiment.train.augment.is_some()) {
                "yes"
            } else {
                "no"
            },
            r.seconds_per_seed(),
            r.runs.iter().map(|x| x.images_per_sec).sum::<f64>() / r.runs.len().max(1) as f64
        );
    }
    for e in ensembles {
        let _ = writeln!(
            md,
            "| {} seed ensemble | | {} | {:.2} | | | {:.4} | | | | | |",
            e.name,
            e.seeds.len(),
            100.0 * e.test_accuracy,
            e.test_loss
        );
    }
    if !ensembles.is_empty() {
        let _ = writeln!(
            md,
            "\nA seed ensemble averages the softmax probabilities of its seeds' networks; it is \
             one model, so it has no spread."
        );
    }
    let runs: Vec<&ExperimentResult> = arch.iter().flat_map(|r| r.runs.iter()).collect();
    let _ = writeln!(md, "\n{}\n", findings(&runs).0.join(" "));
    let acc: Vec<(String, f64, f64)> = arch
        .iter()
        .filter_map(|r| {
            let s = r.summary(Metric::TestAccuracy)?;
            Some((
                r.name().to_string(),
                s.mean,
                if s.std.is_finite() { s.std } else { 0.0 },
            ))
        })
        .collect();
    let _ = writeln!(
        md,
        "{}\n",
        sink.save(
            &plot::bars_with_errors(
                "test accuracy",
                "test accuracy (mean ± std over seeds)",
                &acc
            ),
            "test accuracy by model"
        )?
    );
    Ok(())
}

fn ci_text(s: &Summary) -> String {
    if s.ci95[0].is_finite() {
        format!("[{:.2}, {:.2}]", 100.0 * s.ci95[0], 100.0 * s.ci95[1])
    } else {
        "n/a (one seed)".into()
    }
}

fn copy_best(out: &Path, b: &ExperimentResult) -> Result<()> {
    let src = run_dir(&out.join("runs"), &b.experiment);
    let dst = out.join("models").join("best");
    std::fs::create_dir_all(&dst).map_err(|e| Error::io(&dst, e))?;
    use crate::train::trainer::files;
    for f in [
        files::CONFIG,
        files::WEIGHTS,
        files::HISTORY_JSON,
        files::HISTORY_CSV,
        super::run::RESULT_FILE,
    ] {
        if src.join(f).exists() {
            std::fs::copy(src.join(f), dst.join(f)).map_err(|e| Error::io(dst.join(f), e))?;
        }
    }
    Ok(())
}

fn test_split(mnist: &Mnist, b: &ExperimentResult) -> crate::data::Split {
    match b.experiment.train.test_limit {
        Some(n) => mnist.test.take(n),
        None => mnist.test.clone(),
    }
}

fn best_section(
    md: &mut String,
    mnist: &Mnist,
    cfg: &StudyConfig,
    b: &ExperimentResult,
    sink: &FigureSink,
) -> Result<()> {
    let _ = writeln!(md, "## The best model, chosen on validation\n");
    let _ = writeln!(
        md,
        "`models/best/` is **{} (seed {})**: of every run of the study, the one whose returned \
         weights scored the highest validation accuracy ({:.2} %, on the 5,000 held-out training \
         images). The test set played no part in the choice. Its test accuracy is **{:.2} %** \
         (loss {:.4}). Try it: `mnist-kit predict --run results/models/best my_digit.png`.\n",
        b.name(),
        b.seed(),
        100.0 * returned_val_accuracy(b).unwrap_or(f64::NAN),
        100.0 * b.test_accuracy,
        b.test_loss
    );
    let net = Network::load(run_dir(&cfg.out.join("runs"), &b.experiment), &Device::Cpu)?;
    let test = test_split(mnist, b);
    let e = evaluate(&net, &test, 1000, b.experiment.train.normalization)?;
    let cm = ConfusionMatrix::of(&e)?;
    let pairs: Vec<String> = cm
        .most_confused(5)
        .iter()
        .map(|p| format!("{}→{} ({})", p.truth, p.predicted, p.count))
        .collect();
    let errors = e.len() - (e.accuracy * e.len() as f64).round() as usize;
    let _ = writeln!(
        md,
        "Its {errors} test errors; the most confused pairs (true→predicted, count): {}.\n",
        pairs.join(", ")
    );
    let _ = writeln!(
        md,
        "{}\n",
        sink.save(
            &plot::confusion_heatmap(b.name(), &cm),
            &format!("confusion matrix of {}", b.name())
        )?
    );
    let mistakes = crate::analysis::most_confident_mistakes(&e, 16);
    let mut grid = plot::ImageGrid::predictions(
        &format!(
            "{}: the 16 most confident mistakes (true → predicted, confidence)",
            b.name()
        ),
        &test,
        &mistakes,
    )?;
    for t in &mut grid.tiles {
        // "#1234: 4 → 9 (98%)" reads as "4 → 9 (98%)" over the tile.
        if let Some((_, rest)) = t.caption.split_once(": ") {
            t.caption = rest.to_string();
        }
    }
    let fig = plot::images::tiles("mistakes", &grid, plot::images::TileScale::Ink);
    let _ = writeln!(
        md,
        "{}\n",
        sink.save_image(
            &fig,
            || Ok(grid.clone()),
            "the most confident mistakes, each labelled true → predicted (confidence)"
        )?
    );
    Ok(())
}

/// A tuning's learning-rate grids as a Markdown table and a CSV: validation accuracy of each
/// rate tried, the chosen one in bold.
fn grid_table(t: &Tuning, reps: &[Replicates]) -> Option<(String, String)> {
    let grid_group = format!("{}-grid", t.group);
    let grid: Vec<ExperimentResult> = reps
        .iter()
        .filter(|r| r.group() == grid_group)
        .flat_map(|r| r.runs.iter().cloned())
        .collect();
    if grid.is_empty() {
        return None;
    }
    let chosen = match t.state(&grid) {
        Ok(TuningState::Chosen(c)) => c,
        _ => Vec::new(),
    };
    let mut md = String::from(
        "| optimizer | learning rates tried: validation accuracy | chosen |\n|---|---|---:|\n",
    );
    let mut csv = String::from("optimizer,lr,val_accuracy,chosen\n");
    for &(kind, _) in &t.start {
        let pick = chosen.iter().find(|c| c.0 == kind).map(|c| c.1);
        let mut cells = Vec::new();
        for (lr, acc) in t.tried(kind, &grid) {
            let text = format!("{lr:e}: {:.2} %", 100.0 * acc);
            cells.push(if Some(lr) == pick {
                format!("**{text}**")
            } else {
                text
            });
            let _ = writeln!(csv, "{},{lr},{acc},{}", kind.name(), Some(lr) == pick);
        }
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            kind.name(),
            cells.join(", "),
            pick.map(|c| format!("{c:e}")).unwrap_or_else(|| "-".into())
        );
    }
    Some((md, csv))
}

fn group_section(
    md: &mut String,
    all: &[Replicates],
    g: &Group,
    members: &[&Replicates],
    runs: &[&ExperimentResult],
    sink: &FigureSink,
) -> Result<()> {
    let _ = writeln!(md, "\n## {}\n\n{}\n", g.title, g.about);
    let tuning = Tuning::all(false, 0)
        .into_iter()
        .find(|t| t.group == g.name);
    if let Some(t) = tuning
        && let Some((grid, _)) = grid_table(&t, all)
    {
        let _ = writeln!(
            md,
            "Learning-rate grid (one seed, validation accuracy):\n\n{grid}"
        );
    }
    let depth = g.name == "resnet-depth";
    let _ = writeln!(
        md,
        "| run | params | seeds | test accuracy % | 95% CI | val accuracy % | train-val gap (points) | convergence epoch | {} | s per epoch |",
        if depth {
            "final training loss"
        } else {
            "test loss"
        }
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|");
    for r in members {
        let cell = |m: Metric| r.summary(m).map(|s| m.show(&s)).unwrap_or_default();
        let Some(acc) = r.summary(Metric::TestAccuracy) else {
            continue;
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name(),
            r.params(),
            r.runs.len(),
            acc.pct(),
            ci_text(&acc),
            cell(Metric::ValAccuracy),
            cell(Metric::Gap),
            cell(Metric::Convergence),
            if depth {
                cell(Metric::TrainLoss)
            } else {
                cell(Metric::TestLoss)
            },
            cell(Metric::SecondsPerEpoch)
        );
    }
    let _ = writeln!(md, "\n{}", findings(runs).0.join(" "));
    match g.name.as_str() {
        "pair-28x28" => pair_sentence(md, members),
        "resnet-depth" => shortcut_sentence(md, members),
        "lenet5-ablation" => ablation_effects(md, members),
        _ => {}
    }
    let hist: Vec<(String, Vec<&History>)> = members
        .iter()
        .map(|r| (r.name().to_string(), r.histories()))
        .collect();
    let mut figs: Vec<(plot::Figure, &str)> = Vec::new();
    match g.name.as_str() {
        "pair-28x28" => {
            for (m, c) in [
                ("train_loss", "training loss per epoch"),
                ("test_loss", "test loss per epoch"),
                ("train_accuracy", "training accuracy per epoch"),
                ("test_accuracy", "test accuracy per epoch"),
            ] {
                figs.push((plot::overlay(&g.name, m, &hist), c));
            }
        }
        "resnet-depth" => {
            figs.push((
                depth_figure(members, Metric::TestAccuracy),
                "test accuracy against depth",
            ));
            figs.push((
                depth_figure(members, Metric::TrainLoss),
                "final training loss against depth",
            ));
        }
        _ => figs.push((
            plot::overlay(&g.name, "val_accuracy", &hist),
            "validation accuracy per epoch",
        )),
    }
    if g.name.ends_with("l2") {
        figs.push((
            plot::overlay(&g.name, "weight_norm", &hist),
            "weight norm per epoch",
        ));
    }
    if g.name.ends_with("batch-size") {
        figs.push((
            plot::overlay(&g.name, "grad_noise", &hist),
            "gradient noise per epoch",
        ));
    }
    if g.name.ends_with("optimizers") {
        figs.push((
            plot::overlay(&g.name, "train_loss", &hist),
            "training loss per epoch",
        ));
    }
    if g.name == "lenet5-optimizers" {
        figs.push((
            plot::loss_trace(&g.name, &hist, 10),
            "training loss, mean of every 10 steps (stability)",
        ));
    }
    if g.name.ends_with("activations") {
        gradient_flow_table(md, members);
        figs.push((
            plot::gradient_flow(&g.name, &hist),
            "gradient norm per layer",
        ));
    }
    for (fig, caption) in figs {
        let _ = writeln!(md, "\n{}", sink.save(&fig, caption)?);
    }
    Ok(())
}

fn pair_sentence(md: &mut String, members: &[&Replicates]) {
    let [a, b] = members else { return };
    let (Some(sa), Some(sb)) = (
        a.summary(Metric::TestAccuracy),
        b.summary(Metric::TestAccuracy),
    ) else {
        return;
    };
    let (small, large) = if a.params() <= b.params() {
        (a, b)
    } else {
        (b, a)
    };
    let ratio = large.params() as f64 / small.params().max(1) as f64;
    let t = welch(
        &a.values(Metric::TestAccuracy),
        &b.values(Metric::TestAccuracy),
    );
    let verdict = match t {
        Some(t) if t.p < ALPHA => format!(
            "{} is more accurate ({})",
            if sa.mean > sb.mean {
                a.name()
            } else {
                b.name()
            },
            show_p(t.p)
        ),
        Some(t) => format!("the two cannot be told apart ({})", show_p(t.p)),
        None => "with one seed the difference cannot be tested".into(),
    };
    let _ = writeln!(
        md,
        "\n{} has {} parameters, {ratio:.1}x fewer than {}'s {}; test accuracy {} % against {} %: {verdict}.",
        small.name(),
        small.params(),
        large.name(),
        large.params(),
        small
            .summary(Metric::TestAccuracy)
            .map(|s| s.pct())
            .unwrap_or_default(),
        large
            .summary(Metric::TestAccuracy)
            .map(|s| s.pct())
            .unwrap_or_default(),
    );
}

/// What the shortcuts buy at each depth: the residual network against the plain one of the
/// same depth, on test accuracy and final training loss (Welch, Holm across the depths).
fn shortcut_sentence(md: &mut String, members: &[&Replicates]) {
    let find = |n: String| members.iter().find(|r| r.name() == n);
    let mut rows = Vec::new();
    for d in plan::RESNET_DEPTHS {
        if let (Some(r), Some(p)) = (
            find(format!("resnet-depth-{d}")),
            find(format!("plain-depth-{d}")),
        ) {
            rows.push((d, r, p));
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\nWhat the shortcuts buy at each depth (residual minus plain, Welch's 95 % interval, \
         Holm-corrected across the depths):\n\n| blocks per stage | test accuracy (points) | verdict | final training loss | verdict |\n|---:|---|---|---|---|"
    );
    let pairs: Vec<(&Replicates, &Replicates)> = rows.iter().map(|(_, r, p)| (**r, **p)).collect();
    let words = ("shortcuts help", "shortcuts hurt");
    let acc = effect_cells(&pairs, Metric::TestAccuracy, 3, words);
    let loss = effect_cells(&pairs, Metric::TrainLoss, 3, words);
    for (((d, _, _), a), l) in rows.iter().zip(&acc).zip(&loss) {
        let _ = writeln!(md, "| {d} | {} | {} | {} | {} |", a.0, a.1, l.0, l.1);
    }
}

/// The effect `a - b` on `m` for each pair `(a, b)`, with Welch's 95 % interval (in points for
/// percentages, to `digits` decimals), and its verdict, Holm-corrected across the pairs:
/// `words.0` when `a` is better at p < 0.05, `words.1` when it is worse, else not
/// distinguishable.
fn effect_cells(
    pairs: &[(&Replicates, &Replicates)],
    m: Metric,
    digits: usize,
    words: (&str, &str),
) -> Vec<(String, String)> {
    let tests: Vec<Option<super::stats::TTest>> = pairs
        .iter()
        .map(|(a, b)| welch(&a.values(m), &b.values(m)))
        .collect();
    let adjusted = holm(
        &tests
            .iter()
            .map(|t| t.map_or(f64::NAN, |t| t.p))
            .collect::<Vec<_>>(),
    );
    let scale = if m.is_percent() { 100.0 } else { 1.0 };
    tests
        .iter()
        .zip(&adjusted)
        .map(|(t, p)| match t {
            Some(t) => {
                let ci = t.ci95();
                let word = if *p >= ALPHA {
                    "not distinguishable"
                } else if (t.estimate > 0.0) == m.higher_is_better() {
                    words.0
                } else {
                    words.1
                };
                (
                    format!(
                        "{:+.digits$} [{:+.digits$}, {:+.digits$}]",
                        scale * t.estimate,
                        scale * ci[0],
                        scale * ci[1]
                    ),
                    format!("{word} (Holm {})", show_p(*p).replace("p ", "")),
                )
            }
            None => ("n/a".into(), "not distinguishable (one seed)".into()),
        })
        .collect()
}

/// Each technique against plain LeNet-5: the difference of means on test accuracy and on the
/// train-validation gap, with Welch's 95 % interval and Holm-corrected verdicts.
fn ablation_effects(md: &mut String, members: &[&Replicates]) {
    let Some(plain) = members.iter().find(|r| r.name() == "lenet5") else {
        return;
    };
    let arms: Vec<&&Replicates> = members.iter().filter(|r| r.name() != "lenet5").collect();
    let _ = writeln!(
        md,
        "\nEffect of each technique against plain LeNet-5 (difference of means, Welch's 95 % \
         interval, Holm-corrected across the five techniques):\n"
    );
    let _ = writeln!(
        md,
        "| technique | test accuracy effect (points) | verdict | gap effect (points) | verdict |\n|---|---|---|---|---|"
    );
    let pairs: Vec<(&Replicates, &Replicates)> = arms.iter().map(|r| (**r, *plain)).collect();
    let cols = [
        effect_cells(&pairs, Metric::TestAccuracy, 2, ("helps", "hurts")),
        effect_cells(
            &pairs,
            Metric::Gap,
            2,
            ("narrows the gap", "widens the gap"),
        ),
    ];
    for (i, r) in arms.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            r.name().trim_start_matches("lenet5-"),
            cols[0][i].0,
            cols[0][i].1,
            cols[1][i].0,
            cols[1][i].1
        );
    }
}

/// The depth study's `m` (mean ± std over seeds) against blocks per stage, with and without
/// shortcuts; `members` are the `resnet-depth-*` and `plain-depth-*` experiments.
pub fn depth_figure<R: std::borrow::Borrow<Replicates>>(members: &[R], m: Metric) -> plot::Figure {
    let members: Vec<&Replicates> = members.iter().map(|r| r.borrow()).collect();
    let mut series: Vec<(String, plot::MeanPoints)> = Vec::new();
    for kind in ["resnet", "plain"] {
        let pts: Vec<(f64, f64, f64)> = plan::RESNET_DEPTHS
            .iter()
            .filter_map(|d| {
                let r = members
                    .iter()
                    .find(|r| r.name() == format!("{kind}-depth-{d}"))?;
                let s = r.summary(m)?;
                Some((
                    *d as f64,
                    s.mean,
                    if s.std.is_finite() { s.std } else { 0.0 },
                ))
            })
            .collect();
        if !pts.is_empty() {
            series.push((kind.to_string(), pts));
        }
    }
    plot::means_against(
        &format!("resnet-depth_{}", m.name()),
        &format!("ResNet depth: {} (mean ± std over seeds)", m.label()),
        "basic blocks per stage",
        m.label(),
        &series,
    )
}

fn gradient_flow_table(md: &mut String, members: &[&Replicates]) {
    let Some(layers) = members
        .first()
        .and_then(|r| r.first())
        .and_then(|r| r.history.last())
        .map(|l| {
            l.layer_grad_norms
                .iter()
                .map(|(n, _)| n.clone())
                .collect::<Vec<_>>()
        })
    else {
        return;
    };
    if layers.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n### Gradient flow (last epoch, mean minibatch gradient norm, mean over seeds)\n"
    );
    let _ = writeln!(md, "| run | {} | first / last |", layers.join(" | "));
    let _ = writeln!(md, "|---|{}---:|", "---:|".repeat(layers.len()));
    for r in members {
        let n = r.runs.len().max(1) as f64;
        let mut sums = vec![0f64; layers.len()];
        for run in &r.runs {
            if let Some(l) = run.history.last() {
                for (s, (_, v)) in sums.iter_mut().zip(&l.layer_grad_norms) {
                    *s += v / n;
                }
            }
        }
        let cells: Vec<String> = sums.iter().map(|v| format!("{v:.4}")).collect();
        let ratio = r
            .summary(Metric::GradFlowRatio)
            .map(|s| Metric::GradFlowRatio.show(&s))
            .unwrap_or_default();
        let _ = writeln!(md, "| {} | {} | {ratio} |", r.name(), cells.join(" | "));
    }
}

fn robustness_section(
    md: &mut String,
    mnist: &Mnist,
    cfg: &StudyConfig,
    b: &ExperimentResult,
    tables: &Path,
) -> Result<()> {
    let net = Network::load(run_dir(&cfg.out.join("runs"), &b.experiment), &Device::Cpu)?;
    let test = test_split(mnist, b);
    let robust = robustness(
        &net,
        &test,
        &Variant::STANDARD,
        b.experiment.train.normalization,
    )?;
    let mut csv = String::from("variant,accuracy,loss\n");
    for r in &robust {
        let _ = writeln!(csv, "{},{:.4},{:.4}", r.variant, r.accuracy, r.loss);
    }
    write_bytes_atomic(&tables.join("robustness.csv"), csv.as_bytes())?;
    let _ = writeln!(md, "\n## Robustness of {} (seed {})\n", b.name(), b.seed());
    let _ = writeln!(md, "| test variant | accuracy | loss |\n|---|---:|---:|");
    for r in &robust {
        let _ = writeln!(
            md,
            "| {} | {:.2}% | {:.4} |",
            r.variant,
            100.0 * r.accuracy,
            r.loss
        );
    }
    if let (Some(plain), Some(worst)) = (
        robust.first(),
        robust
            .iter()
            .min_by(|a, b| a.accuracy.total_cmp(&b.accuracy)),
    ) {
        let _ = writeln!(
            md,
            "\nThe hardest variant is {}: {:.2} points below the plain test set.",
            worst.variant,
            100.0 * (plain.accuracy - worst.accuracy)
        );
    }
    Ok(())
}

/// Weight inspection and capacity: per-tensor statistics and the first-layer filters of the
/// dense baseline and LeNet-5 (first seed), and the attention maps of LeNet-5 with attention.
fn weight_section(
    md: &mut String,
    mnist: &Mnist,
    cfg: &StudyConfig,
    arch: &[&Replicates],
    sink: &FigureSink,
    tables: &Path,
) -> Result<()> {
    let inspected: Vec<&&Replicates> = arch
        .iter()
        .filter(|r| ["dense128", "lenet5"].contains(&r.name()))
        .collect();
    if !inspected.is_empty() {
        let _ = writeln!(md, "\n## Weight inspection and capacity\n");
    }
    let runs = cfg.out.join("runs");
    for r in inspected {
        let Some(first) = r.first() else { continue };
        let name = r.name();
        let net = Network::load(run_dir(&runs, &first.experiment), &Device::Cpu)?;
        let stats = crate::analysis::weight_stats(&net)?;
        let _ = writeln!(md, "### {name} (seed {})\n", first.seed());
        let _ = writeln!(
            md,
            "| parameter | shape | count | share | std | L2 norm | |w| < 1e-3 |\n|---|---|---:|---:|---:|---:|---:|"
        );
        let mut csv = String::from("parameter,count,share,mean,std,min,max,l2_norm,near_zero\n");
        for w in &stats {
            let _ = writeln!(
                md,
                "| {} | {:?} | {} | {:.1}% | {:.4} | {:.3} | {:.2}% |",
                w.name,
                w.shape,
                w.count,
                100.0 * w.share,
                w.std,
                w.l2_norm,
                100.0 * w.near_zero
            );
            let _ = writeln!(
                csv,
                "{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6}",
                w.name, w.count, w.share, w.mean, w.std, w.min, w.max, w.l2_norm, w.near_zero
            );
        }
        write_bytes_atomic(&tables.join(format!("weights_{name}.csv")), csv.as_bytes())?;
        if let Some(biggest) = stats.iter().max_by(|a, b| a.share.total_cmp(&b.share)) {
            let _ = writeln!(
                md,
                "\n{} holds {:.1}% of {name}'s {} parameters: that layer is where its capacity sits.",
                biggest.name,
                100.0 * biggest.share,
                r.params()
            );
        }
        let grid = plot::ImageGrid::filters(&net, 32)?;
        let fig = plot::images::tiles(
            &format!("filters_{name}"),
            &grid,
            plot::images::TileScale::Diverging,
        );
        let _ = writeln!(
            md,
            "\n{}\n",
            sink.save_image(
                &fig,
                || Ok(grid.clone()),
                &format!(
                    "{} (blue negative, red positive, one scale centred on zero)",
                    grid.title
                )
            )?
        );
    }
    if let Some(att) = arch.iter().find(|r| r.name() == "lenet5-attention")
        && let Some(first) = att.first()
    {
        let net = Network::load(run_dir(&runs, &first.experiment), &Device::Cpu)?;
        let positions = [0, 1, 2, 3];
        let normalization = first.experiment.train.normalization;
        let fig = plot::images::attention_of(&net, &mnist.test, &positions, normalization)?;
        // The plain grid (a second pass over the samples) only where no browser draws `fig`.
        let grid = || plot::ImageGrid::attention(&net, &mnist.test, &positions, normalization);
        let _ = writeln!(
            md,
            "\n## Where LeNet-5 with attention looks\n\n{}\n\nEach row: a test digit, then the \
             spatial attention map after the first convolution block (28x28, one to one over the \
             digit) and after the second (10x10, drawn at 2x over the digit's centre, where its \
             receptive fields sit), as a heat overlay on one colour scale: the sigmoid weight, 0 \
             to 1, not stretched per map (the block scales its input by 1 + weight). Each map's \
             caption gives its own min and max; a map whose range is under 0.05 is marked \
             near-constant: it weighs every position alike.\n",
            sink.save_image(&fig, grid, "attention maps")?
        );
    }
    Ok(())
}

fn parameter_section(md: &mut String, arch: &[&Replicates]) -> Result<()> {
    let _ = writeln!(md, "\n## Parameter counts explained\n");
    for r in arch {
        let Some(first) = r.first() else { continue };
        let net = Network::named(
            &first.experiment.model,
            &first.experiment.config,
            0,
            &Device::Cpu,
        )?;
        let s = net.summary();
        let _ = writeln!(md, "### {} ({} parameters)\n", r.name(), s.params);
        let _ = writeln!(
            md,
            "| layer | kind | output | params | formula |\n|---|---|---|---:|---|"
        );
        for l in s.layers.iter().filter(|l| l.params > 0) {
            let _ = writeln!(
                md,
                "| {} | {} | {:?} | {} | `{}` |",
                l.name, l.kind, l.output_shape, l.params, l.formula
            );
        }
        let _ = writeln!(md);
    }
    Ok(())
}

fn curves_section(md: &mut String, arch: &[&Replicates], sink: &FigureSink) -> Result<()> {
    if arch.is_empty() {
        return Ok(());
    }
    let _ = writeln!(
        md,
        "## Learning curves (train, validation and test per epoch; first seed)\n"
    );
    for r in arch {
        if let Some(first) = r.first() {
            let _ = writeln!(
                md,
                "{}\n",
                sink.save(
                    &plot::learning_curves(&first.history),
                    &format!("{} learning curves", r.name())
                )?
            );
        }
    }
    let hist: Vec<(String, Vec<&History>)> = arch
        .iter()
        .map(|r| (r.name().to_string(), r.histories()))
        .collect();
    let _ = writeln!(
        md,
        "{}\n",
        sink.save(
            &plot::overlay("architectures", "test_accuracy", &hist),
            "test accuracy per epoch, every architecture"
        )?
    );
    Ok(())
}

/// Where the report's figures go: a small HTML page per figure (loading the shared
/// `figures/plotly.min.js`) always, SVG and PNG when a headless Chromium is there
/// ([`plot::StaticExporter`]).
struct FigureSink {
    dir: PathBuf,
    exporter: Option<plot::StaticExporter>,
}

impl FigureSink {
    /// Saves `fig`; returns the Markdown that shows it (the PNG with links) or links the HTML.
    fn save(&self, fig: &plot::Figure, caption: &str) -> Result<String> {
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
    fn save_image(
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
