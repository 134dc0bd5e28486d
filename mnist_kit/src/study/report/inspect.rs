//! Inside the models: weight statistics and first-layer filters, where attention looks, the
//! parameter counts layer by layer, and the learning curves.

use std::fmt::Write as _;

use candle_core::Device;

use super::super::aggregate::Replicates;
use super::super::plan;
use super::context::Ctx;
use crate::Result;
use crate::models::Network;
use crate::plot;
use crate::train::History;
use crate::train::RunDir;

/// Weight inspection and capacity: per-tensor statistics and the first-layer filters of the
/// dense baseline and LeNet-5 (first seed), and the attention maps of LeNet-5 with attention.
pub(crate) fn weights(md: &mut String, ctx: &Ctx) -> Result<()> {
    let arch: Vec<&Replicates> = plan::ARCHITECTURES
        .iter()
        .filter_map(|n| ctx.find(n))
        .collect();
    let inspected: Vec<&&Replicates> = arch
        .iter()
        .filter(|r| ["dense128", "lenet5"].contains(&r.name()))
        .collect();
    if !inspected.is_empty() {
        let _ = writeln!(md, "\n## Weight inspection and capacity\n");
    }
    for r in inspected {
        inspect_model(md, ctx, r)?;
    }
    attention(md, ctx, &arch)
}

/// One model's weight statistics and first-layer filters (first seed).
fn inspect_model(md: &mut String, ctx: &Ctx, r: &Replicates) -> Result<()> {
    let Some(first) = r.first() else {
        return Ok(());
    };
    let Some(dir) = &first.dir else {
        return Ok(());
    };
    let name = r.name();
    let load = || RunDir::new(dir).load_network(&Device::Cpu);
    let stats = ctx.probe(
        |p| p.weights.get(name).cloned(),
        || crate::analysis::weight_stats(&load()?),
        |p, v| {
            p.weights.insert(name.to_string(), v);
        },
    )?;
    let _ = writeln!(md, "### {name} (seed {})\n", first.seed());
    weight_table(md, ctx, r, &stats)?;
    let grid = ctx.probe(
        |p| p.filters.get(name).cloned(),
        || plot::ImageGrid::filters(&load()?, 32),
        |p, v| {
            p.filters.insert(name.to_string(), v);
        },
    )?;
    let fig = plot::images::tiles(
        &format!("filters_{name}"),
        &grid,
        plot::images::TileScale::Diverging,
    );
    let _ = writeln!(
        md,
        "\n{}\n",
        ctx.sink.save_image(
            &fig,
            || Ok(grid.clone()),
            &format!(
                "{} (blue negative, red positive, one scale centred on zero)",
                grid.title
            )
        )?
    );
    Ok(())
}

/// One model's per-tensor weight statistics, in the report and in `tables/weights_NAME.csv`.
fn weight_table(
    md: &mut String,
    ctx: &Ctx,
    r: &Replicates,
    stats: &[crate::analysis::WeightStats],
) -> Result<()> {
    let name = r.name();
    let _ = writeln!(
        md,
        "| parameter | shape | count | share | std | L2 norm | \\|w\\| < 1e-3 |\n|---|---|---:|---:|---:|---:|---:|"
    );
    let mut csv = String::from("parameter,count,share,mean,std,min,max,l2_norm,near_zero\n");
    for w in stats {
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
    ctx.table(&format!("weights_{name}.csv"), &csv)?;
    if let Some(biggest) = stats.iter().max_by(|a, b| a.share.total_cmp(&b.share)) {
        let _ = writeln!(
            md,
            "\n{} holds {:.1}% of {name}'s {} parameters: that layer is where its capacity sits.",
            biggest.name,
            100.0 * biggest.share,
            r.params()
        );
    }
    Ok(())
}

/// The attention maps of LeNet-5 with attention (first seed).
fn attention(md: &mut String, ctx: &Ctx, arch: &[&Replicates]) -> Result<()> {
    if let Some(att) = arch.iter().find(|r| r.name() == "lenet5-attention")
        && let Some(first) = att.first()
        && let Some(dir) = &first.dir
    {
        let positions = [0, 1, 2, 3];
        let name = att.name();
        let rows = ctx.probe(
            |p| p.attention.get(name).cloned(),
            || {
                let net = RunDir::new(dir).load_network(&Device::Cpu)?;
                plot::images::attention_rows(&net, &ctx.mnist.test, &positions)
            },
            |p, v| {
                p.attention.insert(name.to_string(), v);
            },
        )?;
        let fig = plot::images::attention_figure(name, &rows);
        // The plain grid only where no browser draws `fig`.
        let grid = || plot::images::attention_grid(&format!("{name}: where it looks"), &rows);
        let _ = writeln!(
            md,
            "\n## Where LeNet-5 with attention looks\n\n{}\n\nEach row: a test digit, then the \
             spatial attention map after the first convolution block (28x28, one to one over the \
             digit) and after the second (10x10, drawn at 2x over the digit's centre, where its \
             receptive fields sit), as a heat overlay on one colour scale: the sigmoid weight, 0 \
             to 1, not stretched per map (the block scales its input by 1 + weight). Each map's \
             caption gives its own min and max; a map whose range is under 0.05 is marked \
             near-constant: it weighs every position alike.\n",
            ctx.sink.save_image(&fig, grid, "attention maps")?
        );
    }
    Ok(())
}

pub(crate) fn parameters(md: &mut String, ctx: &Ctx) -> Result<()> {
    let arch: Vec<&Replicates> = plan::ARCHITECTURES
        .iter()
        .filter_map(|n| ctx.find(n))
        .collect();
    let _ = writeln!(
        md,
        "\n## Parameter counts explained\n\nEvery layer of every architecture with its parameter \
         count and the formula behind it: [`tables/parameters.csv`](tables/parameters.csv) \
         (`mnist-kit summary --model M` prints one).\n\n| model | trainable parameters | \
         buffers | largest layer |\n|---|---:|---:|---|"
    );
    let mut csv = String::from("model,layer,kind,output,params,buffers,formula\n");
    for r in &arch {
        let Some(first) = r.first() else { continue };
        let net = Network::named(
            &first.experiment.model,
            &first.experiment.config,
            0,
            &Device::Cpu,
        )?;
        let s = net.summary();
        let largest = s
            .layers
            .iter()
            .max_by_key(|l| l.params)
            .map_or_else(String::new, |l| format!("{} ({})", l.name, l.params));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {largest} |",
            r.name(),
            s.params,
            s.buffers
        );
        for l in s.layers.iter().filter(|l| l.params + l.buffers > 0) {
            let shape: Vec<String> = l.output_shape.iter().map(usize::to_string).collect();
            let _ = writeln!(
                csv,
                "{},{},\"{}\",{},{},{},\"{}\"",
                r.name(),
                l.name,
                l.kind.replace('"', "'"),
                shape.join("x"),
                l.params,
                l.buffers,
                l.formula.replace('"', "'")
            );
        }
    }
    md.push('\n');
    ctx.table("parameters.csv", &csv)
}

pub(crate) fn curves(md: &mut String, ctx: &Ctx) -> Result<()> {
    let arch: Vec<&Replicates> = plan::ARCHITECTURES
        .iter()
        .filter_map(|n| ctx.find(n))
        .collect();
    let sink = &ctx.sink;
    if arch.is_empty() {
        return Ok(());
    }
    let title = "Learning curves (train, validation and test per epoch; first seed)";
    let mut page = format!("# {title}\n\n");
    for r in &arch {
        if let Some(first) = r.first() {
            let _ = writeln!(
                page,
                "{}\n",
                sink.save(
                    &plot::learning_curves(&first.history),
                    &format!("{} learning curves", r.name())
                )?
            );
        }
    }
    let link = super::front::page(ctx, "learning-curves", &page)?;
    let hist: Vec<(String, Vec<&History>)> = arch
        .iter()
        .map(|r| (r.name().to_string(), r.histories()))
        .collect();
    let _ = writeln!(
        md,
        "## {title}\n\nEach architecture's first seed, curve by curve: [`{link}`]({link}).\n\n{}\n",
        sink.save(
            &plot::overlay("architectures", "test_accuracy", &hist),
            "test accuracy per epoch, every architecture"
        )?
    );
    Ok(())
}
