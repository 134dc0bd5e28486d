//! `mnist-kit`: the command-line client of the kit. Every subcommand is a thin call into the
//! library; errors print one line to stderr and exit non-zero.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mnist_kit::Result;
use mnist_kit::candle::Device;
use mnist_kit::data::augment::AugmentConfig;
use mnist_kit::data::{DataStats, Mnist};
use mnist_kit::models::{Activation, MODEL_NAMES, ModelConfig, Network, display_name};
use mnist_kit::train::{
    EarlyStopping, OptimizerKind, Run, Schedule, TrainConfig, TrainData, Trainer, evaluate,
};

// Tensors of a few MB are allocated and freed every step; glibc returns them to the OS each
// time (page faults on every reuse), mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "mnist-kit",
    version,
    about = "Study deep learning on MNIST in Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect the dataset.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// List the models of the zoo.
    Models,
    /// Per-layer summary of a model with parameter counts and formulas.
    Summary {
        /// Model name (see `mnist-kit models`) or a JSON model config file.
        model: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the study (every experiment, seeded) and write the report to results/.
    Study(StudyArgs),
    /// Write an MNIST-C corrupted copy of the dataset as the four IDX files: training files
    /// unchanged, test images corrupted.
    Corrupt(CorruptArgs),
    /// Classify images of handwritten digits (PNG, JPEG, BMP, GIF, WebP) with a trained run.
    Predict {
        /// Run directory (default: results/models/robust, the study's model for real
        /// handwriting, else results/models/best).
        #[arg(long)]
        run: Option<PathBuf>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Image files.
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// A local web page where a model reads the digit you draw (and its JSON API).
    Serve(ServeArgs),
    /// Training and inference throughput and peak memory of a model.
    Bench(BenchArgs),
    /// Train a model and write a run directory.
    Train(Box<TrainArgs>),
    /// Read the real-world digits (data/real-digits: printed and handwriting typefaces,
    /// photo-like shots, digits drawn on the serve page) with trained runs.
    RealDigits {
        /// Run directories (default: results/models/robust and results/models/best).
        #[arg(long)]
        run: Vec<PathBuf>,
        /// The set's directory (default: $MNIST_KIT_REAL_DIGITS, else data/real-digits).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// One JSON object per run and line.
        #[arg(long)]
        json: bool,
    },
    /// Time to 99 %: train the speedrun recipe (a small CNN, one-cycle, label smoothing,
    /// test-time shifts) once per seed, each timed from loading the data to the last test
    /// prediction.
    Speedrun(SpeedrunArgs),
    /// Fit a run's calibration on its validation images (temperature scaling, the confidence
    /// floor under which it answers "not sure", MNIST's ink range), write calibration.json
    /// into the run, and measure abstention: the MNIST test set, data/real-digits and
    /// data/non-digits.
    Calibrate(CalibrateArgs),
    /// Evaluate a run directory on the test set.
    Eval {
        /// Run directory written by `train`.
        #[arg(long)]
        run: PathBuf,
        /// Dataset directory (default: $MNIST_DATA_DIR, else the bundled data/mnist).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct CalibrateArgs {
    /// Run directory (default: results/models/robust, else results/models/best).
    #[arg(long)]
    run: Option<PathBuf>,
    /// Share of validation digits allowed under the confidence floor.
    #[arg(long, default_value_t = mnist_kit::analysis::abstain::DEFAULT_TARGET_ABSTAIN)]
    target_abstain: f64,
    /// Measure only: use the run's calibration.json as it is.
    #[arg(long)]
    keep: bool,
    /// Also the expected calibration error under each MNIST-C corruption of the test set.
    #[arg(long)]
    mnist_c: bool,
    /// Train the run's digit gate (outlier exposure on synthesized non-digits) into its
    /// gate/ directory, its floor set on the run's validation digits.
    #[arg(long)]
    gate: bool,
    /// Passes over the training digits of the gate (with --gate).
    #[arg(long, default_value_t = mnist_kit::analysis::gate::GateConfig::default().epochs)]
    gate_epochs: usize,
    /// Dataset directory (default: $MNIST_DATA_DIR, else the bundled data/mnist).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// One JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct StudyArgs {
    /// Small data and few epochs (also set by MNIST_KIT_QUICK=1).
    #[arg(long)]
    quick: bool,
    /// Output directory.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Run only this experiment or group (exact name), or a pattern with * wildcards
    /// ("lenet5*"); finished runs of the others still join the report.
    #[arg(long)]
    only: Option<String>,
    /// Redo runs that already finished.
    #[arg(long)]
    force: bool,
    /// Training seeds for every experiment (default: the plan's per family, 10 for the
    /// MLPs, 5 for the LeNet-5 family, 3 for the ResNets; 1 with --quick).
    #[arg(long)]
    seeds: Option<usize>,
    /// Base seed: the validation split's and the first training seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Runs trained at the same time, one thread each (default: the logical CPUs; the
    /// results are the same for any value).
    #[arg(long)]
    jobs: Option<usize>,
    /// Run every N-th run of the plan only, I from 0 to N-1 (`--shard 0/4`): N processes
    /// sharing --out split the study; `--report` then writes the report. A shard writes no
    /// report.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// Train nothing: write the report from the runs finished in --out (after sharded
    /// runs).
    #[arg(long)]
    report: bool,
    /// Train nothing: rewrite the README's generated findings block (the README beside
    /// --out) from the runs recorded in --out: their results and predictions, no weights.
    #[arg(long)]
    readme: bool,
    /// Dataset directory (default: $MNIST_DATA_DIR, else the bundled data/mnist).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Run directory to serve by default (else results/models/robust, else
    /// results/models/best).
    #[arg(long)]
    run: Option<PathBuf>,
    /// Interface to listen on (127.0.0.1: this machine only).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The study's results directory, whose models are listed.
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Another host name to answer to (repeatable); by default only the bound address,
    /// localhost, 127.0.0.1 and [::1], so a web page that rebinds its own name to this
    /// machine cannot use the API.
    #[arg(long)]
    allow_host: Vec<String>,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Model name (see `mnist-kit models`) or a JSON model config file.
    #[arg(long, default_value = "lenet5")]
    model: String,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Training batches per pass (each phase times at least 3 passes and 2 s, after an
    /// untimed pass).
    #[arg(long, default_value_t = 200)]
    batches: usize,
    /// Rounds of the whole measurement; the result is their median, with the spread.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Threads (default: RAYON_NUM_THREADS, else the logical CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// Also time each layer of a training step (forward and backward milliseconds per batch
    /// and share of the step, with the optimizer step): a table, or `layers` in the JSON.
    #[arg(long)]
    profile: bool,
    /// Dataset directory (default: $MNIST_DATA_DIR, else the bundled data/mnist).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct CorruptArgs {
    /// The corruption (shot_noise, impulse_noise, glass_blur, motion_blur, shear, scale,
    /// rotate, brightness, translate, stripe, fog, spatter, dotted_line, zigzag,
    /// canny_edges), or `all` for one subdirectory of DIR each.
    #[arg(long)]
    kind: String,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the corruptions' randomness (default: the study's).
    #[arg(long, default_value_t = mnist_kit::data::corrupt::DEFAULT_SEED)]
    seed: u64,
    /// Dataset directory (default: $MNIST_DATA_DIR, else the bundled data/mnist).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Model name (see `mnist-kit models`).
    #[arg(long)]
    model: String,
    /// Run directory to write (config, weights, history, checkpoints).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// sgd, momentum, nesterov, adam, adamw or rmsprop.
    #[arg(long, default_value = "adam")]
    optimizer: String,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Coupled L2 penalty (added to the gradient as l2 * w).
    #[arg(long, default_value_t = 0.0)]
    l2: f64,
    /// Decoupled weight decay (w *= 1 - lr * wd).
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Dropout rate for the model's dropout layers.
    #[arg(long)]
    dropout: Option<f32>,
    /// BatchNorm after each conv / hidden layer.
    #[arg(long)]
    batch_norm: bool,
    /// relu, tanh, softsign, gelu or sigmoid.
    #[arg(long)]
    activation: Option<String>,
    /// Random affine augmentation of training batches.
    #[arg(long)]
    augment: bool,
    /// Elastic distortion (Simard et al. 2003) on top of the affine augmentation (implies
    /// --augment).
    #[arg(long)]
    elastic: bool,
    /// Early stopping on validation loss with this patience (restores the best weights).
    #[arg(long)]
    early_stopping: Option<usize>,
    /// constant, step, cosine, warmup-cosine or one-cycle.
    #[arg(long, default_value = "constant")]
    schedule: String,
    /// Validation samples split off the 60k training images.
    #[arg(long, default_value_t = 5000)]
    val_split: usize,
    /// Train on the first N training samples only.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Evaluate on the first N test samples only.
    #[arg(long)]
    test_limit: Option<usize>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Measure gradient noise and per-layer gradient norms every step (costs a host copy of
    /// every gradient).
    #[arg(long)]
    grad_stats: bool,
    /// Dataset directory (default: $MNIST_DATA_DIR, else the bundled data/mnist).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print the final result as one JSON line (last line of stdout).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct SpeedrunArgs {
    /// Runs (seeds), one after another.
    #[arg(long, default_value_t = 10)]
    seeds: usize,
    /// Passes over the training set (default: the recipe's).
    #[arg(long)]
    epochs: Option<usize>,
    /// Batch size (default: the recipe's).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate (default: the recipe's).
    #[arg(long)]
    lr: Option<f64>,
    /// Label smoothing (default: the recipe's).
    #[arg(long)]
    label_smoothing: Option<f64>,
    /// Model name or JSON model config file (default: the recipe's LeNet-5 28x28 with
    /// BatchNorm).
    #[arg(long)]
    model: Option<String>,
    /// Score the plain test images only (no test-time shifts).
    #[arg(long)]
    no_shifts: bool,
    /// Dataset directory (default: $MNIST_DATA_DIR, else the bundled data/mnist).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Counts, class counts, pixel mean and std per split.
    Stats {
        /// Dataset directory (default: $MNIST_DATA_DIR, else the bundled data/mnist).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// mimalloc's `mi_option_purge_delay` (the same number in mimalloc v2 and v3; the Rust bindings
/// do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// When the process started (first thing in `main`): the speedrun's clock.
static PROCESS_START: std::sync::LazyLock<std::time::Instant> =
    std::sync::LazyLock::new(std::time::Instant::now);

fn main() -> ExitCode {
    std::sync::LazyLock::force(&PROCESS_START);
    // By default mimalloc hands freed memory back to the OS after 10 ms; a training step frees
    // and reallocates tens of MB, so every step faulted fresh (zeroed) pages back in: ResNet
    // training took ~24,000 page faults per 200 batches and ~7% more CPU time. Keep them.
    // SAFETY: sets a process-wide allocator option; no allocation is in flight on another
    // thread (none exists yet).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // candle asks for the thread count on every CPU matmul and parses /proc/cpuinfo unless
    // RAYON_NUM_THREADS is set; setting it once here removes that cost.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: first statement of main, before any other thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    // candle's pool for large elementwise ops busy-waits (25,000 spins) after every op on its
    // own threads, which then compete with the kit's rayon kernels for the cores: LeNet-5
    // training at batch 64 on 2 cores ran at ~12,400 images/s with it and ~16,100 without.
    // Elementwise work is a small share here, so it runs on the calling thread.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: still before any other thread exists.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its sources on one line.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            msg.push_str(": ");
            msg.push_str(&s_msg);
        }
        src = s.source();
    }
    msg.replace('\n', " ")
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Data {
            command: DataCommand::Stats { data_dir, json },
        } => data_stats(data_dir, json),
        Command::Models => {
            println!("{:<20} {:>9} {:>8}", "model", "params", "buffers");
            for name in MODEL_NAMES {
                let s = Network::preset(name, 0, &Device::Cpu)?.summary();
                println!("{name:<20} {:>9} {:>8}", s.params, s.buffers);
            }
            Ok(())
        }
        Command::Train(args) => train(*args),
        Command::Speedrun(args) => speedrun(args),
        Command::RealDigits { run, dir, json } => real_digits(run, dir, json),
        Command::Predict { run, json, images } => predict(&default_run(run), json, &images),
        Command::Calibrate(args) => calibrate(args),
        Command::Corrupt(args) => corrupt(args),
        Command::Serve(args) => serve(args),
        Command::Study(args) => study(args),
        Command::Bench(args) => bench(args),
        Command::Eval {
            run,
            data_dir,
            json,
        } => eval(&run, data_dir, json),
        Command::Summary { model, json } => {
            let summary = Network::preset(&model, 0, &Device::Cpu)?.summary();
            if json {
                println!("{}", to_json(&summary)?);
            } else {
                println!("{summary}");
            }
            Ok(())
        }
    }
}

fn study(a: StudyArgs) -> Result<()> {
    let StudyArgs {
        quick,
        out,
        only,
        force,
        seeds,
        seed,
        jobs,
        shard,
        report,
        readme,
        data_dir,
    } = a;
    let mnist = Mnist::load_from(data_dir.as_deref())?;
    let quick = quick || mnist_kit::study::quick_from_env();
    let cfg = mnist_kit::study::StudyConfig {
        out,
        only,
        force,
        seed,
        seeds_override: seeds.or(quick.then_some(1)),
        ..mnist_kit::study::StudyConfig::new(quick)
    };
    let cfg = mnist_kit::study::StudyConfig {
        jobs: jobs.unwrap_or(cfg.jobs),
        shard,
        report_only: report,
        ..cfg
    };
    if readme {
        return study_readme(&mnist, &cfg);
    }
    let started = std::time::Instant::now();
    // `--report` renders what the runs recorded (a clone has no weights); a study that
    // trains reports the runs it finished.
    let all = if report {
        mnist_kit::study::run::collect_recorded(&cfg)?
    } else {
        mnist_kit::study::run(&mnist, &cfg, cfg.only.as_deref().unwrap_or(""))?;
        mnist_kit::study::run::collect_finished(&cfg)?
    };
    if all.is_empty() {
        return Err(mnist_kit::Error::Invalid {
            what: "study",
            reason: "no finished run to report (did --only match anything?)".into(),
        });
    }
    if let Some((i, n)) = shard {
        println!(
            "shard {i}/{n} done ({} runs of the plan finished in {}); write the report \
             with `mnist-kit study --report` once every shard is done",
            all.len(),
            cfg.out.display()
        );
        return Ok(());
    }
    mnist_kit::study::write_report(&mnist, &cfg, &all, started)?;
    println!("report written to {}", cfg.out.join("REPORT.md").display());
    Ok(())
}

/// `study --readme`: the README's findings block from the recorded runs.
fn study_readme(mnist: &Mnist, cfg: &mnist_kit::study::StudyConfig) -> Result<()> {
    use mnist_kit::study::report::readme;
    let all = mnist_kit::study::run::collect_recorded(cfg)?;
    if all.is_empty() {
        return Err(mnist_kit::Error::Invalid {
            what: "study --readme",
            reason: format!("no recorded run in {}", cfg.out.display()),
        });
    }
    let path = cfg
        .out
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("README.md");
    let facts = mnist_kit::study::Facts::new(mnist, &all)?;
    let changed = readme::rewrite(&path, &facts, &all, &cfg.out.join("models"))?;
    println!(
        "{} from {} recorded runs: {}",
        if changed { "rewritten" } else { "unchanged" },
        all.len(),
        path.display()
    );
    Ok(())
}

fn serve(a: ServeArgs) -> Result<()> {
    let ServeArgs {
        run,
        host,
        port,
        results,
        allow_host,
    } = a;
    // A server's memory spikes with large uploads: hand freed pages back to the OS
    // (mimalloc's default delay), which training keeps instead (see `main`).
    // SAFETY: sets a process-wide allocator option; the server has not started yet.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10) };
    let cfg = mnist_kit::serve::ServeConfig {
        host,
        port,
        run,
        results,
        allow_hosts: allow_host,
        ..Default::default()
    };
    let server = mnist_kit::serve::Server::bind(&cfg)?;
    let (models, default) = server.models();
    println!(
        "serving {} model(s) (default {}) on http://{}/ (Ctrl-C stops)",
        models.len(),
        default.as_deref().unwrap_or("none"),
        server.addr()
    );
    server.run();
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
    let BenchArgs {
        model,
        batch_size,
        batches,
        rounds,
        threads,
        profile,
        data_dir,
        json,
    } = a;
    let mnist = Mnist::load_from(data_dir.as_deref())?;
    let cfg = mnist_kit::bench::BenchConfig {
        batch_size,
        train_batches: batches,
        rounds,
        threads,
        profile,
        ..Default::default()
    };
    let r = mnist_kit::bench::bench(&mnist, &model, cfg)?;
    if json {
        println!("{}", to_json(&r)?);
    } else {
        let [tl, th] = r.train_images_per_sec_spread;
        let [il, ih] = r.infer_images_per_sec_spread;
        println!(
            "{} batch {}: train {:.0} img/s ({tl:.0}-{th:.0}), inference {:.0} img/s \
             ({il:.0}-{ih:.0}, batch 1000), {} rounds on {} threads, peak RSS {:.0} MB; \
             {} ({} CPUs, {} kernels)",
            r.model,
            r.batch_size,
            r.train_images_per_sec,
            r.infer_images_per_sec,
            r.rounds,
            r.threads,
            r.peak_rss_mb,
            r.cpu.model,
            r.cpu.logical_cpus,
            r.cpu.isa
        );
        if !r.layers.is_empty() {
            println!(
                "{:<22} {:>11} {:>12} {:>7}",
                "layer", "forward ms", "backward ms", "share"
            );
            for l in &r.layers {
                println!(
                    "{:<22} {:>11.3} {:>12.3} {:>6.1}%",
                    l.name,
                    l.forward_ms,
                    l.backward_ms,
                    100.0 * l.share
                );
            }
        }
    }
    Ok(())
}

fn corrupt(a: CorruptArgs) -> Result<()> {
    let CorruptArgs {
        kind,
        out,
        seed,
        data_dir,
    } = a;
    use mnist_kit::data::corrupt::{Corruption, write_dataset};
    let mnist = Mnist::load_from(data_dir.as_deref())?;
    let kinds: Vec<(Corruption, PathBuf)> = if kind.trim() == "all" {
        Corruption::ALL
            .into_iter()
            .map(|k| (k, out.join(k.name())))
            .collect()
    } else {
        vec![(kind.parse()?, out.clone())]
    };
    for (k, dir) in kinds {
        write_dataset(&mnist, k, seed, &dir)?;
        println!("{}: {}", k.name(), dir.display());
    }
    Ok(())
}

fn real_digits(runs: Vec<PathBuf>, dir: Option<PathBuf>, json: bool) -> Result<()> {
    use mnist_kit::analysis::real_digits::RealDigits;
    let set = match dir {
        Some(d) => RealDigits::load(d)?,
        None => RealDigits::load_default()?,
    };
    let runs = if runs.is_empty() {
        ["results/models/robust", "results/models/best"]
            .into_iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .collect()
    } else {
        runs
    };
    for run in runs {
        let r = Run::open(&run)?;
        let score = set.score(&r.net)?;
        if json {
            println!(
                "{}",
                to_json(&serde_json::json!({
                    "run": run.display().to_string(),
                    "model": r.net.name(),
                    "all": score.all,
                    "subsets": score.subsets,
                }))?
            );
        } else {
            let parts: Vec<String> = score
                .subsets
                .iter()
                .map(|s| format!("{} {:.1}% of {}", s.subset, 100.0 * s.accuracy, s.n))
                .collect();
            println!(
                "{} ({}): {:.1}% of {} ({})",
                run.display(),
                r.net.name(),
                100.0 * score.all.accuracy,
                score.all.n,
                parts.join(", ")
            );
        }
    }
    Ok(())
}

fn speedrun(a: SpeedrunArgs) -> Result<()> {
    use mnist_kit::bench::speedrun::{SpeedrunConfig, speedruns};
    let d = SpeedrunConfig::default();
    let cfg = SpeedrunConfig {
        model: match &a.model {
            Some(m) => ModelConfig::resolve(m)?,
            None => d.model.clone(),
        },
        epochs: a.epochs.unwrap_or(d.epochs),
        batch_size: a.batch_size.unwrap_or(d.batch_size),
        lr: a.lr.unwrap_or(d.lr),
        label_smoothing: a.label_smoothing.unwrap_or(d.label_smoothing),
        test_shifts: if a.no_shifts {
            Vec::new()
        } else {
            d.test_shifts.clone()
        },
        ..d
    };
    let json = a.json;
    let summary = speedruns(*PROCESS_START, a.data_dir.as_deref(), &cfg, a.seeds, |r| {
        if !json {
            println!(
                "seed {}: {:.2}% ({:.2}% without shifts) in {:.2} s (load {:.2} s, train {:.2} s)",
                r.seed,
                100.0 * r.test_accuracy,
                100.0 * r.plain_test_accuracy,
                r.seconds,
                r.load_seconds,
                r.train_seconds
            );
        }
    })?;
    if json {
        println!("{}", to_json(&summary)?);
    } else {
        println!(
            "mean {:.2}% over {} seeds, median {:.2} s per run on {} threads ({})",
            100.0 * summary.mean_test_accuracy,
            summary.seeds.len(),
            summary.seconds_per_run,
            summary.threads,
            summary.cpu
        );
    }
    Ok(())
}

fn data_stats(data_dir: Option<PathBuf>, json: bool) -> Result<()> {
    let mnist = Mnist::load_from(data_dir.as_deref())?;
    let stats = DataStats::of(&mnist);
    if json {
        println!("{}", to_json(&stats)?);
    } else {
        println!("dataset: {}", mnist.dir.display());
        for (name, s) in [("train", &stats.train), ("test", &stats.test)] {
            println!(
                "{name:>5}: {} images, pixel mean {:.4}, std {:.4}",
                s.count, s.pixel_mean, s.pixel_std
            );
            println!("       class counts {:?}", s.class_counts);
        }
    }
    Ok(())
}

fn train(a: TrainArgs) -> Result<()> {
    let mut model = ModelConfig::resolve(&a.model)?;
    if let Some(p) = a.dropout {
        model = model.with_dropout(p);
    }
    if a.batch_norm {
        model = model.with_batch_norm(true);
    }
    if let Some(act) = &a.activation {
        model = model.with_activation(act.parse::<Activation>()?);
    }
    let mut cfg = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        schedule: Schedule::from_name(&a.schedule)?,
        augment: if a.elastic {
            Some(AugmentConfig::with_elastic())
        } else {
            a.augment.then(AugmentConfig::default)
        },
        validation: a.val_split,
        train_limit: a.train_limit,
        test_limit: a.test_limit,
        early_stopping: a.early_stopping.map(|patience| EarlyStopping {
            patience,
            ..Default::default()
        }),
        seed: a.seed,
        grad_stats: a.grad_stats,
        verbose: !a.json,
        ..Default::default()
    };
    cfg.optimizer.kind = OptimizerKind::from_name(&a.optimizer)?;
    cfg.optimizer.l2 = a.l2;
    cfg.optimizer.weight_decay = a.weight_decay;
    let mnist = Mnist::load_from(a.data_dir.as_deref())?;
    let mut net = Network::named(display_name(&a.model), &model, a.seed, &Device::Cpu)?;
    let history = Trainer::new(cfg.clone())
        .run_dir(&a.out)
        .fit(&mut net, &mnist)?;
    let test_split = TrainData::new(&mnist, &cfg)?.test;
    let test = evaluate(&net, &test_split)?;
    let result = serde_json::json!({
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "epochs_run": history.len(),
        "best_epoch": history.best_epoch,
        "run_dir": a.out,
    });
    if a.json {
        println!("{}", to_json(&result)?);
    } else {
        println!(
            "test accuracy {:.2}% (loss {:.4}) after {} epoch(s); run written to {}",
            100.0 * test.accuracy,
            test.loss,
            history.len(),
            a.out.display()
        );
    }
    Ok(())
}

fn eval(run: &std::path::Path, data_dir: Option<PathBuf>, json: bool) -> Result<()> {
    let run = Run::open(run)?;
    let mnist = Mnist::load_from(data_dir.as_deref())?;
    let e = evaluate(&run.net, &mnist.test)?;
    let confusion = mnist_kit::analysis::ConfusionMatrix::of(&e)?.counts;
    if json {
        let v = serde_json::json!({"accuracy": e.accuracy, "loss": e.loss, "confusion": confusion});
        println!("{}", to_json(&v)?);
    } else {
        println!(
            "{}: test accuracy {:.2}%, loss {:.4}",
            run.net.name(),
            100.0 * e.accuracy,
            e.loss
        );
        println!("confusion (rows: true digit, columns: predicted)");
        for (d, row) in confusion.iter().enumerate() {
            println!(
                "{d}: {}",
                row.iter().map(|c| format!("{c:>5}")).collect::<String>()
            );
        }
    }
    Ok(())
}

/// `I/N` of `--shard`.
fn parse_shard(s: &str) -> std::result::Result<(usize, usize), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected I/N, e.g. 0/4"))?;
    let (i, n) = (
        i.trim()
            .parse::<usize>()
            .map_err(|e| format!("{s:?}: {e}"))?,
        n.trim()
            .parse::<usize>()
            .map_err(|e| format!("{s:?}: {e}"))?,
    );
    if n == 0 || i >= n {
        return Err(format!("{s:?}: I runs from 0 to N-1"));
    }
    Ok((i, n))
}

/// The run to use when none is named: the study's model for real handwriting, else its best.
fn default_run(run: Option<PathBuf>) -> PathBuf {
    run.unwrap_or_else(|| {
        let robust = PathBuf::from("results/models/robust");
        if robust.exists() {
            robust
        } else {
            PathBuf::from("results/models/best")
        }
    })
}

fn predict(run: &std::path::Path, json: bool, images: &[PathBuf]) -> Result<()> {
    use mnist_kit::analysis::{Calibration, abstain::answer_file};
    let loaded = Run::open(run)?;
    let calibration = Calibration::load(run)?;
    let model = loaded.net.name().to_string();
    let mut failed = 0;
    for path in images {
        match answer_file(&loaded.net, path, calibration.as_ref()) {
            Ok(a) => {
                if json {
                    let mut v = mnist_kit::serve::answer_json(&a, &model);
                    v["path"] = serde_json::json!(path);
                    println!("{}", to_json(&v)?);
                } else {
                    match (a.digit, &a.reason) {
                        (Some(d), None) => {
                            println!("{}: {d} ({:.1}%)", path.display(), 100.0 * a.confidence)
                        }
                        (_, Some(r)) => println!("{}: not sure ({r})", path.display()),
                        (None, None) => println!("{}: not sure", path.display()),
                    }
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {}", one_line(&e));
            }
        }
    }
    if failed > 0 {
        return Err(mnist_kit::Error::Invalid {
            what: "images",
            reason: format!("{failed} of {} could not be classified", images.len()),
        });
    }
    Ok(())
}

fn calibrate(a: CalibrateArgs) -> Result<()> {
    use mnist_kit::analysis::Calibration;
    use mnist_kit::analysis::abstain::{Measure, measure};
    let dir = default_run(a.run);
    let run = Run::open(&dir)?;
    let mnist = Mnist::load_from(a.data_dir.as_deref())?;
    let kept = if a.keep {
        Calibration::load(&dir)?
    } else {
        None
    };
    use mnist_kit::analysis::gate::{GATE_DIR, GATE_TAIL, Gate, GateConfig};
    // --gate trains a new gate; else the run's gate (if any) stays.
    let gate = if a.gate {
        let cfg = GateConfig {
            epochs: a.gate_epochs,
            ..Default::default()
        };
        Some(Gate::train_for_run(&run, &mnist, &cfg)?)
    } else {
        Gate::load(dir.join(GATE_DIR))?
    };
    let refit = kept.is_none();
    let mut calibration = match kept {
        Some(c) => c,
        // With a gate, the gate takes its share of the validation digits.
        None => {
            let share = a.target_abstain - if gate.is_some() { GATE_TAIL } else { 0.0 };
            Calibration::fit_run(&run, &mnist, share)?
        }
    };
    calibration.gate = gate;
    if refit || a.gate {
        calibration.save(&dir)?;
    }
    let what = Measure {
        mnist_c: a.mnist_c,
        ..Default::default()
    };
    let rows = measure(&run.net, &calibration, &mnist, what)?;
    if a.json {
        println!(
            "{}",
            to_json(&serde_json::json!({
                "run": dir.display().to_string(),
                "model": run.net.name(),
                "calibration": calibration,
                "rows": rows,
            }))?
        );
        return Ok(());
    }
    let f = &calibration.fit;
    println!(
        "{} ({}): temperature {:.3}, confidence floor {:.3}; validation ({} images) NLL {:.4} -> \
         {:.4}, ECE {:.2}% -> {:.2}%, {:.2}% under the floor",
        dir.display(),
        run.net.name(),
        calibration.temperature,
        calibration.min_confidence,
        f.n,
        f.nll.0,
        f.nll.1,
        100.0 * f.ece.0,
        100.0 * f.ece.1,
        100.0 * f.abstain_rate
    );
    println!(
        "{:<12} {:<14} {:>6} {:>9} {:>9} {:>7}  abstained because",
        "set", "subset", "n", "abstain", "accuracy", "ECE"
    );
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}%", 100.0 * v));
    for r in rows {
        println!(
            "{:<12} {:<14} {:>6} {:>9} {:>9} {:>7}  {}",
            r.set,
            r.subset,
            r.n,
            pct(Some(r.abstain_rate)),
            pct(r.accuracy),
            pct(r.ece),
            r.reasons()
        );
    }
    Ok(())
}

fn to_json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|source| mnist_kit::Error::Json {
        context: "serializing output".into(),
        source,
    })
}
