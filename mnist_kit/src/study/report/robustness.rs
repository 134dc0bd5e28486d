//! Beyond the test set: every scored run on the 15 MNIST-C corruptions, the collapses, what
//! causes them (arms that change one thing; BatchNorm on the corrupted batch's own statistics;
//! a brightness sweep), the robust recipe and the robust model, and real-world digits.

use std::fmt::Write as _;

use candle_core::{D, Device};
use serde_json::{Value, json};

use super::super::aggregate::{COLLAPSE, Metric, Replicates, returned_val_accuracy, top_share};
use super::super::run::corrupted_test_sets;
use super::context::{Ctx, finite};
use super::export::{BestModels, ROBUST_TOLERANCE, on_front};
use super::sections::{comparison_json, comparisons, forest_figure};
use crate::Result;
use crate::data::corrupt::Corruption;
use crate::data::{BatchOptions, Split};
use crate::models::{Model, Network};
use crate::plot;
use crate::train::RunDir;

/// Collapses listed in the report, largest first; all of them go to `tables/collapses.csv`.
const COLLAPSES_SHOWN: usize = 8;

/// The goals of the robust model.
const GOAL_CLEAN: f64 = 0.995;
const GOAL_MNIST_C: f64 = 0.97;
const GOAL_WORST: f64 = 0.90;

pub(crate) fn section(
    md: &mut String,
    metrics: &mut serde_json::Map<String, Value>,
    ctx: &Ctx,
    best: &BestModels,
) -> Result<()> {
    let scored: Vec<&Replicates> = ctx.reps.iter().filter(|r| r.scored_on_mnist_c()).collect();
    if scored.is_empty() {
        return Ok(());
    }
    let _ = writeln!(md, "\n## Beyond the test set: MNIST-C\n");
    let _ = writeln!(
        md,
        "MNIST-C (Mu and Gilmer, 2019) corrupts the test set 15 ways; `mnist_kit::data::corrupt` \
         implements them from the paper's definitions and severities (`mnist-kit corrupt --kind \
         K --out DIR` writes any of them as IDX files). Every architecture of the comparison \
         and every arm below was scored on all 15, every seed. MNIST-C accuracy is the mean \
         over the 15.\n"
    );
    let grid =
        plot::ImageGrid::corruptions(&ctx.mnist.test, 0, crate::data::corrupt::DEFAULT_SEED)?;
    let fig = plot::images::tiles("mnist_c", &grid, plot::images::TileScale::Ink);
    let _ = writeln!(
        md,
        "{}\n",
        ctx.sink.save_image(
            &fig,
            || Ok(grid.clone()),
            "test image 0 under each corruption"
        )?
    );

    let (json_rob, collapses) = corruption_table(md, ctx, &scored)?;
    collapse_list(md, ctx, &collapses)?;
    metrics.insert("robustness".into(), Value::Object(json_rob));
    architectures_on_mnist_c(md, metrics, ctx)?;
    causes(md, metrics, ctx)?;
    robust_model(md, best)?;
    Ok(())
}

/// A model that collapsed under one corruption: (experiment, corruption, class, share,
/// predictions per class pooled over seeds).
type Collapse = (String, Corruption, u8, f64, [u64; 10]);

/// The table of accuracy per corruption (mean over seeds, collapses in bold), written to the
/// report and to `tables/robustness.csv`; returns the JSON of `metrics.robustness` and the
/// collapses.
fn corruption_table(
    md: &mut String,
    ctx: &Ctx,
    scored: &[&Replicates],
) -> Result<(serde_json::Map<String, Value>, Vec<Collapse>)> {
    // The table: mean accuracy per corruption over seeds.
    let kinds = Corruption::ALL;
    let _ = write!(md, "| experiment | clean | MNIST-C |");
    for k in kinds {
        let _ = write!(md, " {} |", k.label());
    }
    let _ = writeln!(md, "\n|---|---:|---:|{}", "---:|".repeat(kinds.len()));
    let mut csv = String::from("experiment,seed,corruption,accuracy,top_class,top_class_share\n");
    let mut json_rob = serde_json::Map::new();
    let mut collapses: Vec<Collapse> = Vec::new();
    for r in scored {
        let entry = corruption_row(md, &mut csv, &mut collapses, r);
        json_rob.insert(r.name().to_string(), Value::Object(entry));
    }
    ctx.table("robustness.csv", &csv)?;
    Ok((json_rob, collapses))
}

/// One row of the corruption table: its Markdown, its CSV lines and collapses, and its JSON.
fn corruption_row(
    md: &mut String,
    csv: &mut String,
    collapses: &mut Vec<Collapse>,
    r: &Replicates,
) -> serde_json::Map<String, Value> {
    let kinds = Corruption::ALL;
    let cell = |m: Metric| {
        r.summary(m)
            .map(|s| format!("{:.1}", 100.0 * s.mean))
            .unwrap_or_default()
    };
    let _ = write!(
        md,
        "| {} | {} | {} |",
        r.name(),
        cell(Metric::TestAccuracy),
        cell(Metric::MnistC)
    );
    let mut entry = serde_json::Map::new();
    for k in kinds {
        let m = Metric::Corrupted(k);
        let mean = r.summary(m).map_or(f64::NAN, |s| s.mean);
        // The predicted-class histogram pooled over seeds.
        let pooled = r.pooled_predictions(k);
        let (top, share) = top_share(&pooled);
        let mut shares = Vec::new();
        for (run, c) in r.runs.iter().filter_map(|run| {
            let c = run.corruptions.iter().find(|c| c.corruption == k.name())?;
            Some((run, c))
        }) {
            let (top, share) = c.top_class();
            shares.push(share);
            let _ = writeln!(
                csv,
                "{},{},{},{:.6},{top},{share:.6}",
                r.name(),
                run.seed(),
                k.name(),
                c.accuracy
            );
        }
        if share > COLLAPSE {
            collapses.push((r.name().to_string(), k, top, share, pooled));
        }
        let collapsed = share > COLLAPSE;
        let _ = write!(
            md,
            " {}{:.1}{} |",
            if collapsed { "**" } else { "" },
            100.0 * mean,
            if collapsed { "**" } else { "" }
        );
        entry.insert(
            k.name().to_string(),
            json!({
                "mean": finite(mean),
                "per_seed": r.values(m),
                "top_class": top,
                "top_class_share": share,
                "top_class_share_per_seed": shares,
            }),
        );
    }
    let _ = writeln!(md);
    entry.insert(
        "mnist_c_mean".into(),
        json!(r.summary(Metric::MnistC).map(|s| s.mean)),
    );
    entry.insert(
        "clean".into(),
        json!(r.summary(Metric::TestAccuracy).map(|s| s.mean)),
    );
    entry
}

/// The note under the table and the list of collapses, with the worst one's histogram.
fn collapse_list(md: &mut String, ctx: &Ctx, collapses: &[Collapse]) -> Result<()> {
    let _ = writeln!(
        md,
        "\nAccuracies in percent, mean over seeds. **Bold**: the model collapsed, one class took \
         more than half of the predictions (pooled over seeds).\n"
    );
    if collapses.is_empty() {
        let _ = writeln!(
            md,
            "No model collapsed onto one class under any corruption.\n"
        );
    } else {
        let mut csv = String::from("experiment,corruption,class,share,predictions_per_class\n");
        for (name, k, top, share, pooled) in collapses {
            let counts: Vec<String> = pooled.iter().map(u64::to_string).collect();
            let _ = writeln!(
                csv,
                "{name},{},{top},{share},{}",
                k.name(),
                counts.join(" ")
            );
        }
        ctx.table("collapses.csv", &csv)?;
        let mut worst = collapses.to_vec();
        worst.sort_by(|a, b| b.3.total_cmp(&a.3));
        worst.truncate(COLLAPSES_SHOWN);
        let _ = writeln!(
            md,
            "{} collapses (one class took more than half of the predictions), all in \
             [`tables/collapses.csv`](tables/collapses.csv); the {} largest:\n\n| experiment | corruption | class | share | predictions per class (0-9, pooled over seeds) |\n|---|---|---:|---:|---|",
            collapses.len(),
            worst.len()
        );
        for (name, k, top, share, pooled) in worst {
            let _ = writeln!(
                md,
                "| {name} | {} | {top} | {:.0} % | {:?} |",
                k.label(),
                100.0 * share,
                pooled
            );
        }
        if let Some((name, k, _, _, pooled)) = collapses.iter().max_by(|a, b| a.3.total_cmp(&b.3)) {
            let seeds = ctx.find(name).map_or(1, |r| r.runs.len());
            let _ = writeln!(
                md,
                "\n{}\n",
                ctx.sink.save(
                    &plot::class_counts(
                        &format!("collapse_{name}_{}", k.name()),
                        &format!(
                            "What {name} predicts under {}: {} predictions, its {seeds} seeds \
                             pooled",
                            k.label(),
                            pooled.iter().sum::<u64>()
                        ),
                        pooled
                    ),
                    &format!(
                        "what {name} predicts under {}: the worst collapse",
                        k.label()
                    )
                )?
            );
        }
    }
    Ok(())
}

/// The architectures of the comparison compared on MNIST-C accuracy, paired as every
/// comparison of the report.
fn architectures_on_mnist_c(
    md: &mut String,
    metrics: &mut serde_json::Map<String, Value>,
    ctx: &Ctx,
) -> Result<()> {
    let arch: Vec<&Replicates> = super::super::plan::ARCHITECTURES
        .iter()
        .filter_map(|n| ctx.find(n))
        .filter(|r| r.summary(Metric::MnistC).is_some())
        .collect();
    if arch.len() > 1 {
        let cs = ctx.evidence.compare_all(&arch, Metric::MnistC);
        let _ = writeln!(
            md,
            "### Architectures compared on MNIST-C\n\nPaired over the corrupted test images (one \
             resample for all 15 corruptions) and the seeds, as every comparison of the \
             report.\n\n{}",
            comparisons(ctx, "architectures-mnist_c-pairs", &cs, Metric::MnistC)?
        );
        let _ = writeln!(
            md,
            "\n{}\n",
            ctx.sink.save(
                &forest_figure(
                    "robustness",
                    "Differences of MNIST-C accuracy",
                    &cs,
                    Metric::MnistC
                ),
                "differences of MNIST-C accuracy with their 95 % intervals"
            )?
        );
        metrics.insert(
            "robustness_comparisons".into(),
            Value::Array(cs.iter().map(comparison_json).collect()),
        );
    }
    Ok(())
}

/// Accuracy of `net` on `split` with BatchNorm in training mode: each batch of 1,000
/// normalized by its own statistics (the running statistics of clean training data left
/// aside).
fn batch_statistics_accuracy(net: &Network, split: &Split) -> Result<f64> {
    let opts = BatchOptions {
        batch_size: 1000,
        ..Default::default()
    };
    let mut correct = 0usize;
    for b in split.batches(net.input_spec(), opts, 0, &Device::Cpu)? {
        let b = b?;
        let logits = net.forward_t(&b.images, true)?;
        let pred = logits.argmax(D::Minus1)?;
        correct += pred
            .eq(&b.labels)?
            .to_dtype(candle_core::DType::U32)?
            .sum_all()?
            .to_scalar::<u32>()? as usize;
    }
    Ok(correct as f64 / split.len().max(1) as f64)
}

/// What causes a collapse: the arms (BatchNorm, augmentation, AdamW's decay; their groups
/// compare them), BatchNorm on the corrupted batch's own statistics, and accuracy against a
/// uniform brightness shift.
fn causes(md: &mut String, metrics: &mut serde_json::Map<String, Value>, ctx: &Ctx) -> Result<()> {
    let _ = writeln!(md, "### What causes the collapses\n");
    let _ = writeln!(
        md,
        "The arms of [What makes a network collapse under corruption](#what-makes-a-network-collapse-under-corruption) \
         change one thing each (BatchNorm, augmentation, AdamW's decay 0.2). Two measurements \
         without training add to them, on each network's first seed:\n\n\
         - **BatchNorm's statistics.** The same weights evaluated with every BatchNorm layer \
         normalizing each batch of 1,000 corrupted images by its own mean and variance (the \
         running statistics of clean training data left aside). Where this recovers the \
         accuracy, the running statistics, not the learned features, cause the collapse.\n\
         - **Brightness.** Accuracy when a uniform brightness `b` is added to every pixel \
         (clipped): the mean that clipped noise adds to a black background is about 0.08.\n"
    );
    batchnorm_statistics(md, metrics, ctx)?;
    brightness_sweep(md, ctx)
}

/// BatchNorm on the corrupted batch's own statistics against its running statistics, on
/// each BatchNorm network's first seed.
fn batchnorm_statistics(
    md: &mut String,
    metrics: &mut serde_json::Map<String, Value>,
    ctx: &Ctx,
) -> Result<()> {
    // The BatchNorm networks without dropout (training mode would switch dropout on too).
    let bn_models = [
        "lenet5-batchnorm",
        "resnet",
        "resnet-adamw",
        "resnet-robust",
    ];
    let mut rows = Vec::new();
    let mut json_bn = serde_json::Map::new();
    for name in bn_models {
        let Some(r) = ctx.find(name) else { continue };
        let Some(first) = r.first() else { continue };
        let Some(dir) = &first.dir else { continue };
        let measured = ctx.probe(
            |p| p.batch_statistics.get(name).cloned(),
            || {
                let net = RunDir::new(dir).load_network(&Device::Cpu)?;
                let mut out = std::collections::BTreeMap::new();
                for (k, split) in &corrupted_test_sets(ctx.mnist)? {
                    let s = split.take(ctx.evidence_test_len());
                    out.insert(k.name().to_string(), batch_statistics_accuracy(&net, &s)?);
                }
                Ok(out)
            },
            |p, v| {
                p.batch_statistics.insert(name.to_string(), v);
            },
        )?;
        let mut running = 0.0;
        let mut batch = 0.0;
        let mut worst = (String::new(), 1.0, 1.0);
        for k in Corruption::ALL {
            let b = measured.get(k.name()).copied().unwrap_or(f64::NAN);
            let a = Metric::Corrupted(k).of(first).unwrap_or(f64::NAN);
            running += a;
            batch += b;
            if a < worst.1 {
                worst = (k.label(), a, b);
            }
            json_bn.insert(
                format!("{name}.{}", k.name()),
                json!({"running": a, "batch": b}),
            );
        }
        let n = Corruption::ALL.len() as f64;
        rows.push((name, running / n, batch / n, worst));
    }
    if !rows.is_empty() {
        let _ = writeln!(
            md,
            "| network (first seed) | MNIST-C, running statistics | MNIST-C, batch statistics | its worst corruption: running → batch |\n|---|---:|---:|---|"
        );
        for (name, a, b, w) in &rows {
            let _ = writeln!(
                md,
                "| {name} | {:.1} % | {:.1} % | {}: {:.1} % → {:.1} % |",
                100.0 * a,
                100.0 * b,
                w.0,
                100.0 * w.1,
                100.0 * w.2
            );
        }
        let _ = writeln!(md);
    }
    metrics.insert("batchnorm_statistics".into(), Value::Object(json_bn));
    Ok(())
}

/// Accuracy against a uniform brightness shift, on each network's first seed.
fn brightness_sweep(md: &mut String, ctx: &Ctx) -> Result<()> {
    let shifts = [0.0f32, 0.02, 0.05, 0.08, 0.12, 0.2, 0.3];
    let sweep_models = [
        "dense128",
        "lenet5",
        "lenet5-batchnorm",
        "lenet5-augment",
        "resnet",
        "resnet-robust",
        "lenet5-robust",
    ];
    let mut series: Vec<(String, plot::MeanPoints)> = Vec::new();
    let mut csv = String::from("experiment,shift,accuracy\n");
    for name in sweep_models {
        let Some(first) = ctx.find(name).and_then(|r| r.first()) else {
            continue;
        };
        let Some(dir) = &first.dir else { continue };
        let measured = ctx.probe(
            |p| p.brightness.get(name).cloned(),
            || {
                let net = RunDir::new(dir).load_network(&Device::Cpu)?;
                let test = ctx.mnist.test.take(ctx.evidence_test_len());
                let mut out = Vec::new();
                for &b in &shifts {
                    let shifted = brightened(&test, b)?;
                    out.push((b, crate::train::evaluate(&net, &shifted)?.accuracy));
                }
                Ok(out)
            },
            |p, v| {
                p.brightness.insert(name.to_string(), v);
            },
        )?;
        let mut pts = Vec::new();
        for (b, accuracy) in measured {
            pts.push((f64::from(b), accuracy * 100.0, 0.0));
            let _ = writeln!(csv, "{name},{b},{accuracy:.6}");
        }
        series.push((name.to_string(), pts));
    }
    if !series.is_empty() {
        ctx.table("brightness_sweep.csv", &csv)?;
        let fig = plot::means_against(
            "brightness_sweep",
            "Test accuracy against a uniform brightness shift (first seed)",
            "brightness added to every pixel (0-1 scale, clipped)",
            "test accuracy (%)",
            &series,
        );
        let _ = writeln!(
            md,
            "{}\n",
            ctx.sink
                .save(&fig, "accuracy against a uniform brightness shift")?
        );
    }
    Ok(())
}

/// `split` with `b` added to every pixel (on the 0-1 scale), clipped.
fn brightened(split: &Split, b: f32) -> Result<Split> {
    let add = (b * 255.0).round() as u16;
    let images: Vec<u8> = split
        .iter()
        .flat_map(|(img, _)| {
            img.iter()
                .map(move |&p| (u16::from(p) + add).min(255) as u8)
        })
        .collect();
    Split::from_raw(
        format!("{} (+{b})", split.name()),
        images,
        split.labels(),
        split.rows(),
        split.cols(),
    )
}

fn robust_model(md: &mut String, best: &BestModels) -> Result<()> {
    let _ = writeln!(md, "### The robust model\n");
    let Some((r, val_c)) = best.robust() else {
        let _ = writeln!(md, "No run with weights to choose from.\n");
        return Ok(());
    };
    let _ = writeln!(
        md,
        "`models/robust/` is **{} (seed {})**: of the runs whose validation accuracy is within \
         {:.1} points of the best ({} candidates), the one with the highest validation MNIST-C \
         accuracy (the {} validation images under the 15 corruptions, seeded apart from the \
         test set's): {:.2} %. It is on the Pareto front of the two validation accuracies (no \
         candidate is as good on both and better on one), as the table shows. `mnist-kit \
         serve` and `mnist-kit predict` use it by default, with its calibration \
         (`calibration.json`: temperature scaling and the confidence floor under which it \
         answers \"not sure\", fit on the same validation images).\n",
        r.name(),
        r.seed(),
        100.0 * ROBUST_TOLERANCE,
        best.candidates.len(),
        r.experiment.train.validation,
        100.0 * val_c
    );
    let _ = writeln!(
        md,
        "| candidate | seed | val accuracy % | val MNIST-C % | Pareto front |\n\
         |---|---:|---:|---:|---|"
    );
    for (i, (c, v)) in best.candidates.iter().enumerate().take(10) {
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {:.2} | {} |",
            c.name(),
            c.seed(),
            100.0 * returned_val_accuracy(c).unwrap_or(f64::NAN),
            100.0 * v,
            if on_front(&best.candidates, i) {
                "yes"
            } else {
                ""
            }
        );
    }
    let clean = r.test_accuracy;
    let mnist_c = Metric::MnistC.of(r).unwrap_or(f64::NAN);
    let worst = r
        .corruptions
        .iter()
        .min_by(|a, b| a.accuracy.total_cmp(&b.accuracy));
    let mark = |ok: bool| if ok { "met" } else { "**not met**" };
    let _ = writeln!(
        md,
        "\nOn the test set: clean **{:.2} %** (goal ≥ {:.1} %: {}), MNIST-C **{:.2} %** (goal ≥ \
         {:.0} %: {}), worst corruption {} (goal: none below {:.0} %: {}).\n",
        100.0 * clean,
        100.0 * GOAL_CLEAN,
        mark(clean >= GOAL_CLEAN),
        100.0 * mnist_c,
        100.0 * GOAL_MNIST_C,
        mark(mnist_c >= GOAL_MNIST_C),
        worst.map_or("n/a".into(), |w| format!(
            "{} {:.2} %",
            w.corruption.replace('_', " "),
            100.0 * w.accuracy
        )),
        100.0 * GOAL_WORST,
        mark(worst.is_some_and(|w| w.accuracy >= GOAL_WORST))
    );
    Ok(())
}

impl Ctx<'_> {
    /// The number of test images the runs were scored on.
    pub fn evidence_test_len(&self) -> usize {
        self.all
            .first()
            .and_then(|r| r.experiment.train.test_limit)
            .unwrap_or(self.mnist.test.len())
    }
}
