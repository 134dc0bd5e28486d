//! The report's prose: how the study decides (stated once), the architectures on the shared
//! recipe and their best recipes, the best model, every group with its comparisons, and the
//! claims.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::super::aggregate::{Ensemble, Metric, Replicates, ensemble, returned_val_accuracy};
use super::super::claims::{self as claim_rows, Claims, study_questions};
use super::super::findings::{diff_text, findings_with};
use super::super::plan::{self, Group, Tuning, TuningState};
use super::super::stats::{Comparison, Verdict};
use super::context::{Ctx, finite};
use super::export::{BestModels, experiment_json};
use crate::Result;
use crate::analysis::ConfusionMatrix;
use crate::data::explore::split_stats;
use crate::plot;
use crate::train::RunDir;
use crate::train::{History, evaluate};

pub(crate) fn intro(md: &mut String, ctx: &Ctx, groups: &[Group], summary: &str) -> Result<()> {
    opening(md, ctx);
    md.push_str(summary);
    how_it_decides(md, ctx);
    power_table(md, ctx, groups)?;
    data(md, ctx);
    Ok(())
}

/// The title, the quick-mode warning and what was run on what.
fn opening(md: &mut String, ctx: &Ctx) {
    let cfg = ctx.cfg;
    let machine = ctx.machine();
    let _ = writeln!(
        md,
        "# mnist_kit study report: {}, {} logical CPUs\n",
        machine.cpu, machine.logical_cpus
    );
    if cfg.quick {
        let _ = writeln!(
            md,
            "> **Quick mode**: 5,000 training images, 2 epochs, 2,000 test images, one seed. \
             These numbers show the pipeline works; they are not the study's results.\n"
        );
    }
    let runs: usize = ctx.reps.iter().map(|r| r.runs.len()).sum();
    let total: f64 = ctx.all.iter().map(|r| r.train_seconds).sum();
    let _ = writeln!(
        md,
        "{} experiments, {runs} runs. A seed sets the initialisation, the shuffling, the dropout \
         masks and the augmentation; the validation split ({} training images, seed {}) and \
         the {} test images are the same for every run. mnist_kit {}, {} {}; runs trained \
         {} at a time, one thread each (the numbers do not depend on it), {:.0} s ({:.1} min) \
         of training and evaluation in all.\n",
        ctx.reps.len(),
        ctx.all[0].experiment.train.validation,
        cfg.seed,
        ctx.evidence_test_len(),
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
        cfg.jobs,
        total,
        total / 60.0
    );
}

/// The design, the verdict rule and how numbers read: stated once for the whole report.
fn how_it_decides(md: &mut String, ctx: &Ctx) {
    let _ = writeln!(md, "## How this study decides\n");
    let _ = writeln!(
        md,
        "**Design.** A comparison changes one thing. Every architecture trains on one shared \
         recipe (Adam 1e-3, cosine decay to 1 %, batch 64, no augmentation, {} epochs); the \
         LeNet-5 ablation, the ResNet depth study and the robustness arms change one thing on \
         top of it; Part 2's groups change one thing on top of their own recipe ({} epochs of \
         Adam at a constant 1e-3). The optimizers get a learning rate each, chosen on \
         validation from a grid that widens until the winner is inside it. A configuration two \
         groups need is trained once and named in both. Seeds follow the cost: {} per MLP \
         experiment, {} per LeNet-5 or simple-CNN experiment, {} per ResNet (one per grid \
         point).\n",
        plan::SHARED_EPOCHS,
        plan::PART2_EPOCHS,
        plan::MLP_SEEDS,
        plan::CNN_SEEDS,
        plan::RESNET_SEEDS
    );
    let _ = writeln!(
        md,
        "**The verdict rule, the same everywhere.** Every run is scored on the same test \
         images, so two settings differ only by recipe and seed. With at least two seeds a \
         side, the difference of the means gets a Student-t 95 % interval over the seeds: \
         paired by seed when both settings ran the same seeds (runs of one seed share their \
         initialisation and data order, and so many of their mistakes), else Welch's. With one \
         seed a side (the learning-rate grids) a paired bootstrap of the test images ({} \
         resamples) gives it. **A beats B** when the interval lies above zero (below, for a \
         loss), else the two **cannot be told apart**, and the row gives the smallest \
         difference the design could have detected with 80 % power, from the same t \
         distribution. Quantities with no better direction (a training loss, an epoch, \
         gradient noise) read **higher** or **lower** instead. The seed intervals are about \
         these test images: their own sampling error is not in them. There is no further \
         correction for the number of comparisons: each table says how many calls chance \
         alone would make among its rows, and the table below shows the rule's false calls on \
         this study's own A/A splits. Beside each verdict: the share of seed pairs in which \
         A's seed scores higher (rliable's probability of improvement), Welch's p on the \
         per-seed values, and McNemar's p on the pooled per-image outcomes of the runs matched \
         by seed, which asks whether those particular trained models differ, not whether the \
         recipes do. The same pair gets the same interval and verdict wherever it appears.\n\n{}",
        super::super::stats::BOOTSTRAP_REPS,
        verdict_calibration(ctx)
    );
    let _ = writeln!(
        md,
        "**Numbers.** `98.02 ± 0.08` is the mean ± the sample standard deviation over seeds, in \
         percent for accuracies. The train-validation gap is the training accuracy in \
         evaluation mode (first 5,000 training images, no dropout or augmentation) minus the \
         validation accuracy, both of the returned weights. Convergence epoch: the first epoch \
         whose validation accuracy comes within {} points of the last epoch's. Parameters are \
         trainable parameters; buffers (BatchNorm's running statistics) are counted apart.\n",
        100.0 * super::super::aggregate::CONVERGENCE_TOLERANCE
    );
}

/// The data's size, pixel statistics and class counts.
fn data(md: &mut String, ctx: &Ctx) {
    let tr = split_stats(&ctx.mnist.train);
    let te = split_stats(&ctx.mnist.test);
    let _ = writeln!(md, "## Data\n");
    let _ = writeln!(
        md,
        "{} training and {} test images of {}x{} pixels. Training pixel mean {:.4}, std {:.4}. \
         Class counts (train): {:?}.\n",
        tr.count,
        te.count,
        ctx.mnist.train.rows(),
        ctx.mnist.train.cols(),
        tr.pixel_mean,
        tr.pixel_std,
        tr.class_counts
    );
}

/// What each group's design can see: its seeds, the seeds' spread and the smallest
/// test-accuracy difference its comparisons could detect.
fn power_table(md: &mut String, ctx: &Ctx, groups: &[Group]) -> Result<()> {
    let about = "What each group's design could see, on test accuracy: the median over its \
                 comparisons of the smallest difference detectable with 80 % power.";
    let mut page = format!(
        "# Power\n\n{about}\n\n\
         | group | seeds per setting | seed std (points, median) | detectable difference (points, median) |\n|---|---:|---:|---:|\n"
    );
    for g in groups {
        let members = ctx.members(g);
        if members.len() < 2 {
            continue;
        }
        let cs = ctx.evidence.compare_all(&members, Metric::TestAccuracy);
        let mut mdd: Vec<f64> = cs
            .iter()
            .filter_map(|c| c.paired.map(|p| p.mdd80))
            .collect();
        let mut sd: Vec<f64> = members
            .iter()
            .filter_map(|r| r.summary(Metric::TestAccuracy))
            .map(|s| s.std)
            .filter(|s| s.is_finite())
            .collect();
        let median = |v: &mut Vec<f64>| -> String {
            if v.is_empty() {
                return "n/a".into();
            }
            v.sort_by(f64::total_cmp);
            format!("{:.3}", 100.0 * v[v.len() / 2])
        };
        let seeds: Vec<usize> = members.iter().map(|r| r.runs.len()).collect();
        let (lo, hi) = (
            seeds.iter().min().copied().unwrap_or(0),
            seeds.iter().max().copied().unwrap_or(0),
        );
        let _ = writeln!(
            page,
            "| {} | {} | {} | {} |",
            g.name,
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            },
            median(&mut sd),
            median(&mut mdd)
        );
    }
    let link = super::front::page(ctx, "power", &page)?;
    let _ = writeln!(
        md,
        "**Power.** {about} Group by group: [`{link}`]({link}).\n"
    );
    Ok(())
}

/// A member table: one row per experiment with the quantities of `metrics`.
pub(crate) fn member_table(members: &[&Replicates], metrics: &[Metric]) -> String {
    let mut md = String::from("| experiment | params | buffers | seeds |");
    for m in metrics {
        let _ = write!(md, " {} |", header(*m));
    }
    md.push_str(" s per seed |\n|---|---:|---:|---:|");
    md.push_str(&"---:|".repeat(metrics.len()));
    md.push_str("---:|\n");
    for r in members {
        let _ = write!(
            md,
            "| {} | {} | {} | {} |",
            r.name(),
            r.params(),
            r.buffers(),
            r.runs.len()
        );
        for m in metrics {
            let cell = r.summary(*m).map(|s| m.show(&s)).unwrap_or_default();
            let _ = write!(md, " {cell} |");
        }
        let _ = writeln!(md, " {:.0} |", r.seconds_per_seed());
    }
    md
}

fn header(m: Metric) -> String {
    match m {
        Metric::TestAccuracy => "test accuracy %".into(),
        Metric::ValAccuracy => "val accuracy %".into(),
        Metric::Gap => "train-val gap (points)".into(),
        Metric::MnistC => "MNIST-C %".into(),
        m if m.is_percent() => format!("{} %", m.label()),
        m => m.label(),
    }
}

/// The verdict rule on this study's own A/A splits: every experiment with enough seeds dealt
/// into two disjoint halves of 5 (every split of 10 seeds) or 3 (126 seeded deals), each pair
/// of halves compared as the report compares settings; the share called, per kind of quantity.
fn verdict_calibration(ctx: &Ctx) -> String {
    use super::super::stats::aa_calls;
    let kinds: [(&str, &[Metric]); 3] = [
        ("test accuracy", &[Metric::TestAccuracy]),
        ("MNIST-C accuracy", &[Metric::MnistC]),
        (
            "once-per-run quantities (gap, convergence epoch, test loss)",
            &[Metric::Gap, Metric::Convergence, Metric::TestLoss],
        ),
    ];
    let mut md = String::from(
        "**The rule on A/A splits.** Two halves of one experiment's seeds differ by chance \
         alone; a calibrated rule calls about 5 % of them:\n\n\
         | quantity | 5 vs 5 seeds | 3 vs 3 seeds |\n|---|---:|---:|\n",
    );
    for (label, metrics) in kinds {
        let mut cells = Vec::new();
        for half in [5usize, 3] {
            let (mut called, mut total) = (0, 0);
            for r in &ctx.reps {
                for &m in metrics {
                    let samples: Vec<_> = r
                        .runs
                        .iter()
                        .filter_map(|run| ctx.evidence.sample(run, m))
                        .map(|s| super::super::stats::Sample::of_value(s.value))
                        .collect();
                    if samples.len() < 2 * half {
                        continue;
                    }
                    let (c, t) = aa_calls(&samples, half, 126, m.higher_is_better(), 7);
                    called += c;
                    total += t;
                }
            }
            cells.push(if total == 0 {
                "-".to_string()
            } else {
                format!(
                    "{:.1} % ({called} of {total})",
                    100.0 * called as f64 / total as f64
                )
            });
        }
        let _ = writeln!(md, "| {label} | {} | {} |", cells[0], cells[1]);
    }
    md
}

/// The comparisons of `cs` as the report shows them: every pair, with its interval, detectable
/// difference and p-values, to `tables/{stem}.csv`, linked; in the report how many the rule
/// called and how many chance alone would call. The sentences (or the forest plot) beside it
/// say which pairs.
pub(crate) fn comparisons(
    ctx: &Ctx,
    stem: &str,
    cs: &[Comparison],
    metric: Metric,
) -> Result<String> {
    Ok(format!(
        "Every pair with its interval, detectable difference, share of seed pairs with A > B \
         and p-values: {}. {}",
        pairs_csv(ctx, stem, cs, metric)?,
        chance_line(cs)
    ))
}

/// Writes every comparison of `cs` to `tables/{stem}.csv`; returns the Markdown link to it.
fn pairs_csv(ctx: &Ctx, stem: &str, cs: &[Comparison], metric: Metric) -> Result<String> {
    let file = format!("{stem}.csv");
    ctx.table(&file, &comparison_csv(cs, metric))?;
    Ok(format!("[`tables/{file}`](tables/{file})"))
}

/// A group's comparisons on a quantity other than its headline one, in one paragraph: the
/// pairs the rule called, with their intervals, and every pair in `tables/STEM.csv`.
fn brief_comparisons(ctx: &Ctx, stem: &str, cs: &[Comparison], metric: Metric) -> Result<String> {
    let link = pairs_csv(ctx, stem, cs, metric)?;
    let called: Vec<String> = cs
        .iter()
        .filter(|c| c.verdict != Verdict::NotDistinguishable)
        .filter_map(|c| {
            let (verdict, _) = verdict_cells(c, metric)?;
            Some(format!(
                "{} vs {}: {}, **{verdict}**",
                c.a,
                c.b,
                diff_text(c, metric)
            ))
        })
        .collect();
    let unit = if metric.is_percent() {
        ", in points"
    } else {
        ""
    };
    let called = if called.is_empty() {
        "none called".to_string()
    } else {
        format!("called: {}", called.join("; "))
    };
    Ok(format!(
        "**{}**, paired as above{unit} (every pair with its interval and detectable \
         difference: {link}): {called}. {}",
        capitalized(&metric.label()),
        chance_line(cs).trim_end()
    ))
}

/// "N comparisons, K called; were every pair equal, chance alone would call about ...".
fn chance_line(cs: &[Comparison]) -> String {
    let n = cs.iter().filter(|c| c.paired.is_some()).count();
    let called = cs
        .iter()
        .filter(|c| c.paired.is_some() && c.verdict != Verdict::NotDistinguishable)
        .count();
    format!(
        "{n} comparison{}, {called} called; were every pair equal, chance alone would call \
         about {:.1} of them.\n\n",
        if n == 1 { "" } else { "s" },
        super::super::stats::ALPHA * n as f64
    )
}

/// One comparison's cells: verdict words and what the interval is over.
fn verdict_cells(c: &Comparison, metric: Metric) -> Option<(String, &'static str)> {
    use super::super::stats::Method;
    let p = c.paired?;
    let word = |name: &str, high: bool| {
        if metric.has_direction() {
            format!("{name} better")
        } else {
            format!("{name} {}", if high { "higher" } else { "lower" })
        }
    };
    let verdict = match c.verdict {
        Verdict::ABetter => word(&c.a, p.diff > 0.0),
        Verdict::BBetter => word(&c.b, p.diff < 0.0),
        Verdict::NotDistinguishable => "not distinguishable".into(),
    };
    let over = match p.method {
        Method::PairedSeeds => "seeds, paired",
        Method::WelchSeeds => "seeds (Welch)",
        Method::Images => "test images",
        Method::None => "n/a",
    };
    Some((verdict, over))
}

/// Every comparison of `cs` as CSV, in the metric's unit (points for accuracies).
fn comparison_csv(cs: &[Comparison], metric: Metric) -> String {
    let scale = if metric.is_percent() { 100.0 } else { 1.0 };
    let mut out = String::from(
        "a,b,difference,interval_low,interval_high,interval_over,seed_pairs_a_higher,\
         detectable_80,verdict,welch_p,mcnemar_p\n",
    );
    for c in cs {
        let (Some(p), Some((verdict, over))) = (c.paired, verdict_cells(c, metric)) else {
            continue;
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{over},{},{},{verdict},{},{}",
            c.a,
            c.b,
            scale * p.diff,
            scale * p.diff_ci95[0],
            scale * p.diff_ci95[1],
            p.p_improve,
            scale * p.mdd80,
            c.p,
            p.mcnemar_p,
        );
    }
    out
}

/// The JSON of one comparison: the old fields and the paired ones.
pub(crate) fn comparison_json(c: &Comparison) -> Value {
    let p = c.paired;
    json!({
        "a": c.a, "b": c.b,
        "mean_a": c.summary_a.mean, "mean_b": c.summary_b.mean,
        "p": finite(c.p), "p_holm": finite(c.p_holm),
        "verdict": c.verdict.as_str(),
        "diff": p.map(|p| p.diff),
        "diff_ci95": p.map(|p| [p.diff_ci95[0], p.diff_ci95[1]]),
        "p_improve": p.map(|p| p.p_improve),
        "mdd80": p.map(|p| p.mdd80),
        "mcnemar_p": p.map(|p| finite(p.mcnemar_p)),
        "mcnemar_agrees": p.and_then(|p| p.mcnemar_agrees()),
        "interval_method": p.map(|p| p.method),
        "df": p.map(|p| finite(p.df)),
    })
}

/// The dot plot of `members` on `metric`: every seed, the mean and its 95 % interval.
pub(crate) fn dot_figure(
    ctx: &Ctx,
    name: &str,
    title: &str,
    members: &[&Replicates],
    metric: Metric,
) -> plot::Figure {
    let rows: Vec<plot::DotRow> = members
        .iter()
        .filter_map(|r| {
            let s = r.summary(metric)?;
            let ci = ctx.evidence.interval(r, metric).unwrap_or(s.ci95);
            Some(plot::DotRow {
                name: r.name().to_string(),
                seeds: r.values(metric),
                mean: s.mean,
                ci95: ci,
            })
        })
        .collect();
    let scale = if metric.is_percent() { 100.0 } else { 1.0 };
    let unit = if metric.is_percent() { " (%)" } else { "" };
    plot::dots(
        &format!("{name}_{}_dots", metric.name()),
        title,
        &format!("{}{unit}", metric.label()),
        &rows,
        scale,
    )
}

/// The forest plot of comparisons on `metric`.
pub(crate) fn forest_figure(
    name: &str,
    title: &str,
    cs: &[Comparison],
    metric: Metric,
) -> plot::Figure {
    let rows: Vec<(String, f64, f64, f64)> = cs
        .iter()
        .filter_map(|c| {
            let p = c.paired?;
            Some((
                format!("{} − {}", c.a, c.b),
                p.diff,
                p.diff_ci95[0],
                p.diff_ci95[1],
            ))
        })
        .collect();
    let scale = if metric.is_percent() { 100.0 } else { 1.0 };
    let unit = if metric.is_percent() { " (points)" } else { "" };
    plot::forest(
        &format!("{name}_{}_forest", metric.name()),
        title,
        &format!("difference of {}{unit}, 95 % interval", metric.label()),
        &rows,
        scale,
    )
}

pub(crate) fn architectures(
    md: &mut String,
    metrics: &mut serde_json::Map<String, Value>,
    ctx: &Ctx,
) -> Result<()> {
    let arch: Vec<&Replicates> = plan::ARCHITECTURES
        .iter()
        .filter_map(|n| ctx.find(n))
        .collect();
    if arch.is_empty() {
        return Ok(());
    }
    let _ = writeln!(md, "## Architectures on the shared recipe\n");
    let _ = writeln!(
        md,
        "Every architecture of the zoo trained the same way ({} epochs of Adam 1e-3 with cosine \
         decay, batch 64, no augmentation): only the network differs.\n",
        plan::SHARED_EPOCHS
    );
    md.push_str(&member_table(
        &arch,
        &[
            Metric::TestAccuracy,
            Metric::ValAccuracy,
            Metric::Gap,
            Metric::TestLoss,
            Metric::MnistC,
        ],
    ));
    let _ = writeln!(
        md,
        "\n{}\n",
        ctx.sink.save(
            &dot_figure(
                ctx,
                "architectures",
                "Test accuracy on the shared recipe: each seed, the mean and its 95 % interval",
                &arch,
                Metric::TestAccuracy
            ),
            "test accuracy of every architecture, each seed a dot"
        )?
    );
    // The architectures on the shared recipe, then the candidate best recipes' seeds.
    let mut ensembled = arch.clone();
    for name in plan::BEST {
        for recipe in plan::LONG_RECIPES {
            ensembled.extend(ctx.find(&format!("{name}-{recipe}")));
        }
    }
    seed_ensembles(md, metrics, ctx, &ensembled)?;
    metrics.insert(
        "models".into(),
        Value::Object(
            arch.iter()
                .map(|r| (r.name().to_string(), experiment_json(r)))
                .collect(),
        ),
    );
    best_recipes(md, ctx)?;
    Ok(())
}

/// Seed ensembles of the architectures with several seeds: their table and `metrics.json`'s
/// `ensembles`.
fn seed_ensembles(
    md: &mut String,
    metrics: &mut serde_json::Map<String, Value>,
    ctx: &Ctx,
    arch: &[&Replicates],
) -> Result<()> {
    let mut ensembles: Vec<Ensemble> = Vec::new();
    for r in arch.iter().filter(|r| r.runs.len() > 1) {
        let e = ctx.probe(
            |p| p.ensembles.get(r.name()).cloned(),
            || ensemble(ctx.mnist, ctx.cfg, r),
            |p, e| {
                p.ensembles.insert(r.name().to_string(), e);
            },
        )?;
        ensembles.push(e);
    }
    if !ensembles.is_empty() {
        let _ = writeln!(
            md,
            "Seed ensembles (the softmax probabilities of an experiment's seeds averaged: one \
             model, no spread), each architecture on the shared recipe and the candidate best \
             recipes:\n\n| ensemble | seeds | test accuracy % | test loss | mean of its seeds % |\n|---|---:|---:|---:|---:|"
        );
        for e in &ensembles {
            let mean = ctx
                .find(&e.name)
                .and_then(|r| r.summary(Metric::TestAccuracy))
                .map(|s| s.pct())
                .unwrap_or_default();
            let _ = writeln!(
                md,
                "| {} | {} | {:.2} | {:.4} | {mean} |",
                e.name,
                e.seeds.len(),
                100.0 * e.test_accuracy,
                e.test_loss
            );
        }
        let _ = writeln!(md);
    }
    metrics.insert(
        "ensembles".into(),
        Value::Object(
            ensembles
                .iter()
                .map(|e| {
                    (
                        e.name.clone(),
                        json!({"test_accuracy": e.test_accuracy, "test_loss": e.test_loss, "seeds": e.seeds}),
                    )
                })
                .collect(),
        ),
    );
    Ok(())
}

/// Each architecture's best recipe, chosen on validation among the recipes the study trained
/// it with (the shared recipe everywhere, the robust recipe for four of them).
fn best_recipes(md: &mut String, ctx: &Ctx) -> Result<()> {
    let _ = writeln!(
        md,
        "### Each architecture's best recipe, chosen on validation\n\nAmong the recipes the \
         study trained each architecture with (the shared recipe for all, the robust recipe \
         for {}, 30 epochs with the mild or the robust augmentation for {}), the one with the \
         highest mean validation accuracy; its test accuracy beside it.\n\n| architecture | recipes trained | chosen on validation | val accuracy % | test accuracy % |\n|---|---|---|---:|---:|",
        plan::ROBUST.join(", "),
        plan::BEST.join(", ")
    );
    let mut csv = String::from("architecture,recipe,val_accuracy,test_accuracy\n");
    for name in plan::ARCHITECTURES {
        let mut options: Vec<(&str, &Replicates)> = Vec::new();
        if let Some(r) = ctx.find(name) {
            options.push(("shared", r));
        }
        for recipe in std::iter::once("robust").chain(plan::LONG_RECIPES) {
            if let Some(r) = ctx.find(&format!("{name}-{recipe}")) {
                options.push((recipe, r));
            }
        }
        let val = |r: &Replicates| r.summary(Metric::ValAccuracy).map_or(f64::NAN, |s| s.mean);
        let Some(&(recipe, chosen)) = options.iter().max_by(|a, b| val(a.1).total_cmp(&val(b.1)))
        else {
            continue;
        };
        let names: Vec<&str> = options.iter().map(|o| o.0).collect();
        let test = chosen
            .summary(Metric::TestAccuracy)
            .map(|s| s.pct())
            .unwrap_or_default();
        let _ = writeln!(
            md,
            "| {name} | {} | {recipe} | {:.2} | {test} |",
            names.join(", "),
            100.0 * val(chosen)
        );
        for (r, rep) in &options {
            let _ = writeln!(
                csv,
                "{name},{r},{},{}",
                val(rep),
                rep.summary(Metric::TestAccuracy)
                    .map_or(f64::NAN, |s| s.mean)
            );
        }
    }
    let _ = writeln!(md);
    ctx.table("best_recipes.csv", &csv)
}

pub(crate) fn best_model(md: &mut String, ctx: &Ctx, best: &BestModels) -> Result<()> {
    let Some(b) = &best.best else { return Ok(()) };
    let _ = writeln!(md, "## The best model, chosen on validation\n");
    let _ = writeln!(
        md,
        "`models/best/` is **{} (seed {})**: of every run of the study, the one whose returned \
         weights scored the highest validation accuracy ({:.2} %, on the 5,000 held-out \
         training images). The test set played no part in the choice. Its test accuracy is \
         **{:.2} %** (loss {:.4}). `models/robust/` is the model for real handwriting: see \
         [the robust model](#the-robust-model).\n",
        b.name(),
        b.seed(),
        100.0 * returned_val_accuracy(b).unwrap_or(f64::NAN),
        100.0 * b.test_accuracy,
        b.test_loss
    );
    // From the run's recorded predictions: no inference.
    let Some(dir) = &b.dir else { return Ok(()) };
    let Some(predicted) =
        crate::train::Predictions::read(&RunDir::new(dir))?.and_then(|p| p.classes("test"))
    else {
        return Ok(());
    };
    let test = match b.experiment.train.test_limit {
        Some(n) => ctx.mnist.test.take(n),
        None => ctx.mnist.test.clone(),
    };
    let labels = test.labels();
    let cm = ConfusionMatrix::new(&labels, &predicted)?;
    let errors = labels
        .iter()
        .zip(&predicted)
        .filter(|(a, b)| a != b)
        .count();
    let pairs: Vec<String> = cm
        .most_confused(5)
        .iter()
        .map(|p| format!("{}→{} ({})", p.truth, p.predicted, p.count))
        .collect();
    let _ = writeln!(
        md,
        "Its {errors} test errors; the most confused pairs (true→predicted, count): {}.\n",
        pairs.join(", ")
    );
    let _ = writeln!(
        md,
        "{}\n",
        ctx.sink.save(
            &plot::confusion_heatmap(b.name(), &cm),
            &format!("confusion matrix of {}", b.name())
        )?
    );
    mistakes_gallery(md, ctx, b, dir, &test)
}

/// The 16 most confident test mistakes of run `b` as an image grid (a probe: measured once,
/// from its weights in `dir`).
fn mistakes_gallery(
    md: &mut String,
    ctx: &Ctx,
    b: &super::super::ExperimentResult,
    dir: &std::path::Path,
    test: &crate::data::Split,
) -> Result<()> {
    let key = super::super::probes::run_key(b);
    let mistakes = ctx.probe(
        |p| p.mistakes.get(&key).cloned(),
        || {
            let net = RunDir::new(dir).load_network(&candle_core::Device::Cpu)?;
            let e = evaluate(&net, test)?;
            Ok(crate::analysis::most_confident_mistakes(&e, 16))
        },
        |p, m| {
            p.mistakes.insert(key.clone(), m);
        },
    )?;
    let mut grid = plot::ImageGrid::predictions(
        &format!(
            "{}: the 16 most confident mistakes (true → predicted, confidence)",
            b.name()
        ),
        test,
        &mistakes,
    )?;
    for t in &mut grid.tiles {
        if let Some((_, rest)) = t.caption.split_once(": ") {
            t.caption = rest.to_string();
        }
    }
    let fig = plot::images::tiles("mistakes", &grid, plot::images::TileScale::Ink);
    let _ = writeln!(
        md,
        "{}\n",
        ctx.sink.save_image(
            &fig,
            || Ok(grid.clone()),
            "the most confident mistakes, each labelled true → predicted (confidence)"
        )?
    );
    Ok(())
}

/// A tuning's learning-rate grids as a Markdown table and a CSV: validation accuracy of each
/// rate tried, the chosen one in bold.
fn grid_table(t: &Tuning, ctx: &Ctx) -> Option<(String, String)> {
    let grid_group = format!("{}-grid", t.group);
    let grid: Vec<_> = ctx
        .reps
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

/// The quantities a group's table and comparisons show besides test accuracy.
fn group_metrics(g: &str) -> (Vec<Metric>, Vec<Metric>) {
    use Metric::*;
    let table = match g {
        "part2-dropout" => vec![
            TestAccuracy,
            ValAccuracy,
            ValLoss,
            Gap,
            TrainEval,
            FirstValAccuracy,
        ],
        "part2-l2" => vec![
            TestAccuracy,
            ValAccuracy,
            ValLoss,
            PenalizedValLoss,
            Gap,
            TrainEval,
        ],
        "part2-optimizers" | "lenet5-optimizers" => {
            vec![
                TestAccuracy,
                ValAccuracy,
                FirstValAccuracy,
                Roughness,
                Convergence,
            ]
        }
        "part2-batch-size" => vec![TestAccuracy, ValAccuracy, Gap, GradNoise, SecondsPerEpoch],
        "part2-activations" => vec![TestAccuracy, ValAccuracy, FirstTrainLoss, GradFlowRatio],
        "part1-normalization" => vec![TestAccuracy, ValAccuracy, FirstTrainLoss],
        "resnet-depth" => vec![TestAccuracy, ValAccuracy, TrainLoss, GradFlowRatio],
        "robustness-causes" | "robust-recipe" => vec![TestAccuracy, ValAccuracy, MnistC],
        "part1-early-stopping" => vec![TestAccuracy, ValAccuracy, BestEpoch],
        _ => vec![TestAccuracy, ValAccuracy, Gap, TestLoss],
    };
    let extra = match g {
        "part2-dropout" => vec![ValAccuracy, Gap],
        "part2-l2" => vec![ValAccuracy, PenalizedValLoss, Gap],
        "part2-optimizers" | "lenet5-optimizers" => vec![FirstValAccuracy, Roughness],
        "part2-batch-size" => vec![Gap, GradNoise],
        "part2-activations" => vec![FirstTrainLoss, GradFlowRatio],
        "part1-normalization" => vec![FirstTrainLoss],
        "resnet-depth" => vec![TrainLoss],
        "robustness-causes" | "robust-recipe" => vec![MnistC],
        _ => vec![],
    };
    (table, extra)
}

/// One group: in the report, what differs and the verdicts on test accuracy; on its page
/// (`report/GROUP.md`, linked), the same with its members' table, the learning-rate grid, the
/// comparisons of the quantities its claims use and its figures. Returns its `metrics.json`
/// entry.
pub(crate) fn group(md: &mut String, ctx: &Ctx, g: &Group) -> Result<Value> {
    let members = ctx.members(g);
    let title = if g.name == "architectures" {
        "Architectures compared".to_string()
    } else {
        g.title.clone()
    };
    let _ = writeln!(md, "\n## {title}\n\n{}\n", g.about);
    let mut page = format!("# {title}\n\n{}\n\n", g.about);
    lr_grid(&mut page, ctx, g)?;
    group_table(&mut page, ctx, g, &members)?;
    let runs: Vec<&super::super::ExperimentResult> =
        members.iter().flat_map(|r| r.runs.iter()).collect();
    let cs = ctx.evidence.compare_all(&members, Metric::TestAccuracy);
    let test_line = if cs.is_empty() {
        String::new()
    } else {
        format!(
            "**Test accuracy**, paired over the seeds and the test images. {}",
            comparisons(
                ctx,
                &format!("{}-test_accuracy-pairs", g.name),
                &cs,
                Metric::TestAccuracy
            )?
            .trim_end()
        )
    };
    let findings = findings_with(&ctx.evidence, &runs, Metric::TestAccuracy)
        .0
        .join(" ");
    let _ = writeln!(page, "\n{test_line}\n\n{findings}\n");
    let extra_json = other_metrics(&mut page, ctx, g, &members)?;
    group_overview(&mut page, ctx, g, &members, &cs)?;
    group_figures(&mut page, ctx, g, &members)?;
    let link = super::front::page(ctx, &g.name, &page)?;
    let _ = writeln!(
        md,
        "{test_line} Its experiments' table, the other quantities' comparisons and the \
         figures: [`{link}`]({link}).\n\n{findings}\n"
    );
    Ok(json!({
        "title": g.title,
        "experiments": members.iter().map(|r| r.name()).collect::<Vec<_>>(),
        "metric": "test_accuracy",
        "comparisons": cs.iter().map(comparison_json).collect::<Vec<_>>(),
        "other_metrics": extra_json,
    }))
}

/// The learning-rate grid of a group that tuned one.
fn lr_grid(md: &mut String, ctx: &Ctx, g: &Group) -> Result<()> {
    if let Some(t) = Tuning::all(ctx.cfg.quick, ctx.cfg.seed)
        .into_iter()
        .find(|t| t.group == g.name)
        && let Some((table, csv)) = grid_table(&t, ctx)
    {
        let _ = writeln!(
            md,
            "Learning-rate grid (one seed each, validation accuracy; the chosen rate in \
             bold):\n\n{table}"
        );
        ctx.table(&format!("{}-lr-grid.csv", t.group), &csv)?;
    }
    Ok(())
}

/// A group's table of its members and its CSV.
fn group_table(md: &mut String, ctx: &Ctx, g: &Group, members: &[&Replicates]) -> Result<()> {
    let (table_metrics, _) = group_metrics(&g.name);
    if g.name != "architectures" {
        // The architectures' table opens the report.
        md.push_str(&member_table(members, &table_metrics));
        md.push('\n');
    }
    let owned: Vec<Replicates> = members.iter().map(|r| (*r).clone()).collect();
    let mut frame = super::super::aggregate::summary_frame(&owned, &Metric::ALL)?;
    write_csv(&ctx.tables.join(format!("{}.csv", g.name)), &mut frame)?;
    if g.name == "architectures" {
        // `metrics.json` calls these the models; the table keeps that name as well.
        write_csv(&ctx.tables.join("models.csv"), &mut frame)?;
    }
    Ok(())
}

/// The paired comparisons of a group's other quantities, as tables and as JSON.
fn other_metrics(
    md: &mut String,
    ctx: &Ctx,
    g: &Group,
    members: &[&Replicates],
) -> Result<serde_json::Map<String, Value>> {
    let (_, extra) = group_metrics(&g.name);
    let mut extra_json = serde_json::Map::new();
    for m in &extra {
        let ce = ctx.evidence.compare_all(members, *m);
        if ce.is_empty() {
            continue;
        }
        let _ = writeln!(
            md,
            "{}\n",
            brief_comparisons(ctx, &format!("{}-{}-pairs", g.name, m.name()), &ce, *m)?
        );
        extra_json.insert(
            m.name().to_string(),
            Value::Array(ce.iter().map(comparison_json).collect()),
        );
    }
    Ok(extra_json)
}

/// A group's dot plot of its members and forest plot of its comparisons.
fn group_overview(
    md: &mut String,
    ctx: &Ctx,
    g: &Group,
    members: &[&Replicates],
    cs: &[Comparison],
) -> Result<()> {
    // The architectures' dot plot opens the report; it is not drawn twice.
    if members.len() > 1 && g.name != "architectures" {
        let _ = writeln!(
            md,
            "\n{}",
            ctx.sink.save(
                &dot_figure(
                    ctx,
                    &g.name,
                    &format!(
                        "{}: test accuracy per seed, mean and 95 % interval",
                        g.title
                    ),
                    members,
                    Metric::TestAccuracy
                ),
                "test accuracy, each seed a dot"
            )?
        );
    }
    if cs.len() > 1 {
        let _ = writeln!(
            md,
            "\n{}",
            ctx.sink.save(
                &forest_figure(
                    &g.name,
                    &format!("{}: differences of test accuracy", g.title),
                    cs,
                    Metric::TestAccuracy
                ),
                "differences of test accuracy with their 95 % intervals"
            )?
        );
    }
    Ok(())
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn write_csv(path: &std::path::Path, frame: &mut polars::prelude::DataFrame) -> Result<()> {
    use polars::prelude::{CsvWriter, SerWriter};
    let mut buf = Vec::new();
    CsvWriter::new(&mut buf).finish(frame)?;
    crate::fsutil::write_bytes_atomic(path, &buf)
}

/// A figure a group's question needs.
#[derive(Clone, Copy)]
enum Curve {
    /// One per-epoch quantity of every member, overlaid.
    Overlay(&'static str),
    /// The training loss, mean of every 10 steps.
    LossTrace,
    /// The gradient norm per layer.
    GradientFlow,
    /// MNIST-C accuracy, each seed a dot.
    MnistCDots,
}

/// The figures of each group, with their captions.
fn curves(group: &str) -> &'static [(Curve, &'static str)] {
    use Curve::*;
    match group {
        "pair-28x28" | "parameter-matched" => &[
            (Overlay("train_loss"), "training loss per epoch"),
            (Overlay("test_loss"), "test loss per epoch"),
            (Overlay("test_accuracy"), "test accuracy per epoch"),
        ],
        "part2-l2" => &[
            (Overlay("val_loss"), "validation loss per epoch"),
            (Overlay("weight_norm"), "weight norm per epoch"),
        ],
        "part2-batch-size" => &[(Overlay("grad_noise"), "gradient noise per epoch")],
        "part2-optimizers" | "lenet5-optimizers" => &[
            (Overlay("val_accuracy"), "validation accuracy per epoch"),
            (
                LossTrace,
                "training loss, mean of every 10 steps (speed and smoothness)",
            ),
        ],
        "part2-activations" => &[
            (GradientFlow, "gradient norm per layer"),
            (Overlay("train_loss"), "training loss per epoch"),
        ],
        "resnet-depth" => &[
            (Overlay("train_loss"), "training loss per epoch"),
            (GradientFlow, "gradient norm per layer"),
        ],
        "robustness-causes" | "robust-recipe" => {
            &[(MnistCDots, "MNIST-C accuracy, each seed a dot")]
        }
        "architectures" => &[],
        _ => &[(Overlay("val_accuracy"), "validation accuracy per epoch")],
    }
}

/// The curves a group's question needs.
fn group_figures(md: &mut String, ctx: &Ctx, g: &Group, members: &[&Replicates]) -> Result<()> {
    let hist: Vec<(String, Vec<&History>)> = members
        .iter()
        .map(|r| (r.name().to_string(), r.histories()))
        .collect();
    for &(curve, caption) in curves(&g.name) {
        let fig = match curve {
            Curve::Overlay(m) => plot::overlay(&g.name, m, &hist),
            Curve::LossTrace => plot::loss_trace(&g.name, &hist, 10),
            Curve::GradientFlow => plot::gradient_flow(&g.name, &hist),
            Curve::MnistCDots => dot_figure(
                ctx,
                &g.name,
                &format!("{}: MNIST-C accuracy", g.title),
                members,
                Metric::MnistC,
            ),
        };
        let _ = writeln!(md, "\n{}", ctx.sink.save(&fig, caption)?);
    }
    Ok(())
}

/// The claims of the seed studies and the questions the study adds.
pub(crate) fn claims(
    md: &mut String,
    metrics: &mut serde_json::Map<String, Value>,
    ctx: &Ctx,
) -> Result<()> {
    let counts = (ctx.mnist.train.len(), ctx.mnist.test.len());
    let tested: Claims = claim_rows::claims(&ctx.evidence, ctx.all, counts);
    let added: Claims = study_questions(&ctx.evidence, ctx.all, counts);
    let _ = writeln!(md, "\n## What the seed studies claimed\n");
    let _ = writeln!(
        md,
        "Each row quotes a sentence of a seed study (`shared/seeds/`: 000 the project series, \
         001 and 004 the LeNet-5/MLP reports, 002 the Part 1/Part 2 notebook, 003 the model \
         list), says what we tested and how, and ends with the verdict of the rule above: \
         **confirmed**, **contradicted** or **not distinguishable**, or **not testable as \
         stated** with the reason (a remark, or a number of a seed's own run whose recipe it \
         does not give). A claim about speed or smoothness is tested on a speed or smoothness \
         measure; a claim that one setting is best is tested against each other one. A \
         hypothesis is labelled as one. Rows whose runs did not finish are left out.\n"
    );
    md.push_str(&tested.to_markdown());
    let _ = writeln!(md, "\n## Questions this study adds\n");
    let _ = writeln!(
        md,
        "Comparisons no seed study claims, answered with the same rule.\n"
    );
    md.push_str(&added.to_markdown());
    let csv = |c: &Claims| {
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let mut out = String::from("source,claim,kind,tested,measured,verdict\n");
        for x in &c.0 {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{}",
                q(&x.source),
                q(&x.quote),
                serde_json::to_value(x.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                q(&x.tested),
                q(&x.measured),
                x.verdict.as_str()
            );
        }
        out
    };
    ctx.table("claims.csv", &csv(&tested))?;
    ctx.table("questions.csv", &csv(&added))?;
    metrics.insert(
        "claims".into(),
        serde_json::to_value(&tested.0).unwrap_or(Value::Null),
    );
    metrics.insert(
        "questions".into(),
        serde_json::to_value(&added.0).unwrap_or(Value::Null),
    );
    Ok(())
}
