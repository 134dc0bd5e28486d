//! The study end to end in quick mode on the real data: per-seed run directories, aggregated
//! metrics and verdicts, resuming per seed and from the last completed epoch, and `--only`.

mod support;

use mnist_kit::data::Mnist;
use mnist_kit::study::findings::comparisons;
use mnist_kit::study::run::{collect_finished, with_seed};
use mnist_kit::study::stats::Verdict;
use mnist_kit::study::{
    Experiment, ExperimentResult, Metric, StudyConfig, by_experiment, plan, run_dir, staging_dir,
    write_report,
};
use mnist_kit::train::Trainer;

/// What `cargo study` does: run what `cfg.only` selects, then every finished run of the plan.
fn run_study(mnist: &Mnist, cfg: &StudyConfig) -> mnist_kit::Result<Vec<ExperimentResult>> {
    mnist_kit::study::run(mnist, cfg, cfg.only.as_deref().unwrap_or(""))?;
    collect_finished(cfg)
}

/// One run of `e` (its seed) under `out/runs`, through the one entry point.
fn run_experiment(mnist: &Mnist, e: &Experiment, out: &std::path::Path) -> ExperimentResult {
    let cfg = StudyConfig {
        out: out.to_path_buf(),
        seed: e.train.seed,
        seeds_override: Some(1),
        jobs: 1,
        ..StudyConfig::new(true)
    };
    let e = Experiment {
        first_seed: None,
        ..e.clone()
    };
    mnist_kit::study::run(mnist, &cfg, &e).unwrap().remove(0)
}

fn quick(dir: &std::path::Path, only: &str, seeds: usize) -> StudyConfig {
    StudyConfig {
        out: dir.to_path_buf(),
        only: Some(only.into()),
        seeds_override: Some(seeds),
        ..StudyConfig::new(true)
    }
}

fn metrics(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn two_seeds_write_per_seed_runs_aggregates_and_verdicts() {
    let mnist = Mnist::load_default().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = quick(dir.path(), "part2-dropout", 2);
    let started = std::time::Instant::now();
    let results = run_study(&mnist, &cfg).unwrap();
    assert_eq!(results.len(), 6, "three settings, two seeds each");
    assert!(
        !dir.path().join("REPORT.md").exists(),
        "run_study trains; its caller writes the report"
    );
    write_report(&mnist, &cfg, &results, started).unwrap();
    for name in ["part2-base", "dropout-0.1", "dropout-0.3"] {
        for seed in [42, 43] {
            let d = dir
                .path()
                .join("runs")
                .join(name)
                .join(format!("seed-{seed}"));
            assert!(d.join("result.json").exists(), "{}", d.display());
            assert!(d.join("weights.safetensors").exists());
        }
    }
    // Different seeds train different networks on the same validation split.
    let reps = by_experiment(&results);
    let first = &reps[0];
    assert_ne!(first.runs[0].test_accuracy, first.runs[1].test_accuracy);

    let m = metrics(dir.path());
    let e = &m["experiments"]["dropout-0.1"];
    assert_eq!(e["seeds"], 2);
    let per_seed: Vec<f64> = e["per_seed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(per_seed.len(), 2);
    let mean = e["test_accuracy"].as_f64().unwrap();
    assert!((mean - (per_seed[0] + per_seed[1]) / 2.0).abs() < 1e-12);
    assert!(e["test_accuracy_std"].as_f64().unwrap() >= 0.0);
    let ci = e["ci95"].as_array().unwrap();
    assert!(ci[0].as_f64().unwrap() <= mean && mean <= ci[1].as_f64().unwrap());
    let cs = m["groups"]["part2-dropout"]["comparisons"]
        .as_array()
        .unwrap();
    assert_eq!(cs.len(), 3, "every pair once");
    for c in cs {
        let p = c["p"].as_f64().unwrap();
        assert!(c["p_holm"].as_f64().unwrap() >= p);
        assert!(
            ["a better", "b better", "not distinguishable"]
                .contains(&c["verdict"].as_str().unwrap())
        );
    }
    let best = &m["best"];
    assert!(best["test_accuracy"].as_f64().unwrap() > 0.8);
    assert!(dir.path().join("models/best/weights.safetensors").exists());

    // One CSV row per experiment of the group, one column per statistic.
    let table = std::fs::read_to_string(dir.path().join("tables/part2-dropout.csv")).unwrap();
    let header: Vec<&str> = table.lines().next().unwrap().split(',').collect();
    for col in [
        "experiment",
        "seeds",
        "test_accuracy_mean",
        "test_accuracy_ci_hi",
    ] {
        assert!(header.contains(&col), "{col} in {header:?}");
    }
    assert_eq!(
        table.lines().count(),
        4,
        "header and three settings: {table}"
    );

    let report = std::fs::read_to_string(dir.path().join("REPORT.md")).unwrap();
    assert!(report.contains("## Part 2: dropout"), "{report}");
    // Each group's page: its members' table and figures, linked from its section.
    assert!(report.contains("[`report/part2-dropout.md`](report/part2-dropout.md)"));
    let page = std::fs::read_to_string(dir.path().join("report/part2-dropout.md")).unwrap();
    let page_md = support::markdown::parse(&page);
    assert!(page_md.stray_rows.is_empty(), "{:#?}", page_md.stray_rows);
    assert_eq!(page_md.tables.len(), 1, "the members' table: {page}");
    assert!(page.contains("](../figures/part2-dropout_"), "{page}");
    assert!(
        !page.contains("](figures/"),
        "links relative to the page: {page}"
    );
    // As a CommonMark renderer reads it: every table row in a table, the front door's
    // sections as headings.
    let parsed = support::markdown::parse(&report);
    assert!(parsed.stray_rows.is_empty(), "{:#?}", parsed.stray_rows);
    // Every table the text spells (a delimiter row) is one the parser reads; with the groups'
    // pages and the pairs the report sends to CSV, it holds more than ten.
    let delimiters = report.lines().filter(|l| l.starts_with("|---")).count();
    assert_eq!(parsed.tables.len(), delimiters);
    let page_tables: usize = std::fs::read_dir(dir.path().join("report"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .map(|p| support::markdown::parse(&p).tables.len())
        .sum();
    let pair_tables = std::fs::read_dir(dir.path().join("tables"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with("-pairs.csv")
        })
        .count();
    assert!(
        parsed.tables.len() + page_tables + pair_tables > 10,
        "{} tables, {page_tables} on pages, {pair_tables} pairs CSVs",
        parsed.tables.len()
    );
    for s in [
        "Contents",
        "Summary",
        "How this study decides",
        "Limitations",
    ] {
        assert!(
            parsed.sections.iter().any(|h| h == s),
            "{s}: {:?}",
            parsed.sections
        );
    }
    assert!(
        report.contains("cannot be told apart") || report.contains(" beats "),
        "a verdict sentence: {report}"
    );
    assert!(report.contains("## What the seed studies claimed"));
    // The front door: contents after the title, limitations at the end, the rule's A/A table.
    let contents = report.find("## Contents").expect("contents");
    assert!(contents < report.find("## How this study decides").unwrap());
    assert!(report.contains("[Part 2: dropout](#part-2-dropout) · "));
    assert!(report.contains("## Limitations"));
    assert!(report.contains("**The rule on A/A splits.**"));
    let claims = report
        .split("## What the seed studies claimed")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let rows: Vec<&str> = claims
        .lines()
        .filter(|l| l.starts_with("| 002 Task 5"))
        .collect();
    // The three dropout lines, the first tested on the gap and on validation accuracy.
    assert_eq!(rows.len(), 4, "the dropout claims: {claims}");
    for row in rows {
        let row = row.trim_end_matches(" |").trim_end_matches("**");
        assert!(
            row.ends_with("confirmed")
                || row.ends_with("contradicted")
                || row.ends_with("not distinguishable"),
            "{row}"
        );
    }
    // The wall time of the whole run, figures included, is stated as measured.
    let wall = m["invocation_seconds"].as_f64().unwrap();
    assert!(report.contains(&format!(
        "took **{wall:.0} s ({:.1} min) wall**",
        wall / 60.0
    )));
    // HTML figures load the one local plotly.js, so each is small.
    let page = std::fs::read_to_string(dir.path().join("figures/part2-dropout_val_accuracy.html"))
        .unwrap();
    assert!(page.contains("src=\"plotly.min.js\"") && page.len() < 200_000);
    assert!(dir.path().join("figures/plotly.min.js").exists());

    // Deleting one seed's result re-runs only that seed.
    let gone = dir.path().join("runs/dropout-0.3/seed-43");
    std::fs::remove_file(gone.join("result.json")).unwrap();
    let stamp = |p: &std::path::Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let kept = dir.path().join("runs/dropout-0.3/seed-42/result.json");
    let before = stamp(&kept);
    let again = run_study(&mnist, &cfg).unwrap();
    assert_eq!(stamp(&kept), before, "the finished seed was reused");
    assert!(
        gone.join("result.json").exists(),
        "the missing seed ran again"
    );
    let rerun = again
        .iter()
        .find(|r| r.name() == "dropout-0.3" && r.seed() == 43)
        .unwrap();
    let original = results
        .iter()
        .find(|r| r.name() == "dropout-0.3" && r.seed() == 43)
        .unwrap();
    assert_eq!(rerun.history.epochs.len(), original.history.epochs.len());
    assert_eq!(rerun.test_accuracy, original.test_accuracy);
}

#[test]
fn an_interrupted_run_resumes_from_its_last_epoch_bit_for_bit() {
    let mnist = Mnist::load_default().unwrap();
    let plan = plan(true, 42).unwrap();
    let e = with_seed(plan.iter().find(|e| e.name == "l2-1e-4").unwrap(), 43);
    assert_eq!(e.train.epochs, 2);
    let whole = tempfile::tempdir().unwrap();
    let full = run_experiment(&mnist, &e, whole.path());

    // The same run, "killed" after its first epoch: a trainer that stops there leaves the
    // checkpoint an interrupted study run leaves in its staging directory; the config it was
    // started with says 2. The run's own directory holds an older finished run meanwhile
    // (as a clone holds the committed one): it stays untouched until the new run is done.
    let cut = tempfile::tempdir().unwrap();
    let committed = run_dir(&cut.path().join("runs"), &e);
    std::fs::create_dir_all(&committed).unwrap();
    std::fs::write(committed.join("result.json"), b"{\"committed\": true}").unwrap();
    let dir = staging_dir(&committed);
    let one = mnist_kit::train::TrainConfig {
        epochs: 1,
        ..e.train.clone()
    };
    let mut net = mnist_kit::models::Network::named(
        &e.model,
        &e.config,
        e.train.seed,
        &mnist_kit::candle::Device::Cpu,
    )
    .unwrap();
    Trainer::new(one)
        .run_dir(&dir)
        .fit(&mut net, &mnist)
        .unwrap();
    let config_path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["train"]["epochs"] = 2.into();
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();

    let before = mnist_kit::train::History::read_json(dir.join("history.json")).unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(
        std::fs::read(committed.join("result.json")).unwrap(),
        b"{\"committed\": true}",
        "the interrupted run left the committed one alone"
    );

    let resumed = run_experiment(&mnist, &e, cut.path());
    assert_eq!(resumed.epochs, 2);
    assert_eq!(
        resumed.history.epochs[0], before.epochs[0],
        "epoch 1 was read back, not trained again"
    );
    let strip = |h: &mnist_kit::train::History| -> Vec<Vec<f64>> {
        h.epochs
            .iter()
            .map(|r| {
                vec![
                    r.train_loss,
                    r.train_accuracy,
                    r.val_loss.unwrap(),
                    r.val_accuracy.unwrap(),
                    r.weight_norm,
                ]
            })
            .collect()
    };
    assert_eq!(strip(&resumed.history), strip(&full.history));
    assert_eq!(resumed.test_accuracy, full.test_accuracy);
    assert_eq!(resumed.test_loss.to_bits(), full.test_loss.to_bits());
    let w = |d: &std::path::Path| std::fs::read(d.join("weights.safetensors")).unwrap();
    assert_eq!(
        w(&committed),
        w(&run_dir(&whole.path().join("runs"), &e)),
        "same weights, bit for bit"
    );
    assert!(!dir.exists(), "the staging directory became the run's");
    assert!(
        !std::fs::read_to_string(committed.join("result.json"))
            .unwrap()
            .contains("committed"),
        "the finished run replaced the old one"
    );
}

#[test]
fn only_selects_exact_names_and_identical_configs_are_not_distinguishable() {
    let mnist = Mnist::load_default().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // "sweep-lr-1e-3" is an exact name: no other sweep run trains.
    run_study(&mnist, &quick(dir.path(), "sweep-lr-1e-3", 2)).unwrap();
    let done = collect_finished(&quick(dir.path(), "", 2)).unwrap();
    let names: std::collections::BTreeSet<&str> = done.iter().map(|r| r.name()).collect();
    assert_eq!(names.into_iter().collect::<Vec<_>>(), vec!["sweep-lr-1e-3"]);
    // A name that is neither an experiment nor a group fails with a hint.
    let err = run_study(&mnist, &quick(dir.path(), "sweep", 2)).unwrap_err();
    assert!(err.to_string().contains('*'), "{err}");

    // Two experiments with identical configs under different names, both trained: the same
    // numbers on every seed, so the verdict must be "not distinguishable".
    let twin: Vec<_> = done
        .iter()
        .map(|r| {
            let mut e = r.experiment.clone();
            e.name = "twin".into();
            run_experiment(&mnist, &e, dir.path())
        })
        .collect();
    assert_eq!(twin.len(), 2);
    let both: Vec<_> = done.iter().chain(&twin).cloned().collect();
    let evidence = mnist_kit::study::Evidence::new(&mnist, &both).unwrap();
    let cs = comparisons(&evidence, &both, Metric::TestAccuracy);
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0].verdict, Verdict::NotDistinguishable);
    assert_eq!(cs[0].p, 1.0);
}

#[test]
fn runs_side_by_side_give_the_numbers_of_runs_alone() {
    let mnist = Mnist::load_default().unwrap();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let alone = StudyConfig {
        jobs: 1,
        ..quick(a.path(), "lenet5-regularized", 2)
    };
    let paired = StudyConfig {
        jobs: 2,
        ..quick(b.path(), "lenet5-regularized", 2)
    };
    let x = run_study(&mnist, &alone).unwrap();
    let y = run_study(&mnist, &paired).unwrap();
    assert_eq!(x.len(), 2);
    for (r, s) in x.iter().zip(&y) {
        assert_eq!((r.name(), r.seed()), (s.name(), s.seed()));
        assert_eq!(
            r.test_loss.to_bits(),
            s.test_loss.to_bits(),
            "{} {}",
            r.name(),
            r.seed()
        );
        let losses = |h: &mnist_kit::train::History| -> Vec<u64> {
            h.epochs.iter().map(|e| e.train_loss.to_bits()).collect()
        };
        assert_eq!(losses(&r.history), losses(&s.history));
    }
    let w = |d: &std::path::Path| {
        std::fs::read(d.join("runs/lenet5-regularized/seed-43/weights.safetensors")).unwrap()
    };
    assert_eq!(w(a.path()), w(b.path()));
}

#[test]
fn shards_split_the_runs_and_together_give_what_one_process_gives() {
    let mnist = Mnist::load_default().unwrap();
    let (alone, shared) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = run_study(&mnist, &quick(alone.path(), "part2-dropout", 2)).unwrap();
    assert_eq!(one.len(), 6);
    // The first shard trains every other run and returns those; the second finds them done.
    for (i, returned) in [(0, 3), (1, 6)] {
        let cfg = StudyConfig {
            shard: Some((i, 2)),
            ..quick(shared.path(), "part2-dropout", 2)
        };
        assert_eq!(run_study(&mnist, &cfg).unwrap().len(), returned);
    }
    let both = collect_finished(&quick(shared.path(), "part2-dropout", 2)).unwrap();
    let key = |r: &mnist_kit::study::ExperimentResult| (r.name().to_string(), r.seed());
    for r in &one {
        let s = both
            .iter()
            .find(|b| key(b) == key(r))
            .unwrap_or_else(|| panic!("{:?} missing from the shards", key(r)));
        assert_eq!(s.test_accuracy, r.test_accuracy, "{:?}", key(r));
        let file = |root: &std::path::Path| {
            std::fs::read(
                root.join("runs")
                    .join(r.name())
                    .join(format!("seed-{}", r.seed()))
                    .join("weights.safetensors"),
            )
            .unwrap()
        };
        assert!(
            file(alone.path()) == file(shared.path()),
            "{:?}: other weights",
            key(r)
        );
    }
}

/// Copies `from` into `to`, leaving out the runs' weights, checkpoints and optimizer state
/// (what a clone of the repository lacks; `models/` keeps its own, as committed).
fn copy_without_weights(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_without_weights(&src, &dst);
            continue;
        }
        let name = entry.file_name().to_string_lossy().to_string();
        let in_runs = src.components().any(|c| c.as_os_str() == "runs");
        if in_runs && name.ends_with(".safetensors") && name != "predictions.safetensors" {
            continue;
        }
        std::fs::copy(&src, &dst).unwrap();
    }
}

#[test]
fn the_report_rewrites_itself_from_the_evidence_without_any_weights() {
    let mnist = Mnist::load_default().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // One architecture of the zoo: the report inspects its attention, scores it on MNIST-C and
    // the real digits, copies it out as both models and shows its mistakes.
    let cfg = quick(dir.path(), "lenet5-attention", 1);
    let all = run_study(&mnist, &cfg).unwrap();
    write_report(&mnist, &cfg, &all, std::time::Instant::now()).unwrap();
    assert!(dir.path().join("probes.json").exists());

    let clone = tempfile::tempdir().unwrap();
    copy_without_weights(dir.path(), clone.path());
    assert!(
        !clone
            .path()
            .join("runs/lenet5-attention/seed-42/weights.safetensors")
            .exists()
    );
    let again = StudyConfig {
        out: clone.path().to_path_buf(),
        report_only: true,
        ..quick(clone.path(), "lenet5-attention", 1)
    };
    let recorded = mnist_kit::study::run::collect_recorded(&again).unwrap();
    assert_eq!(recorded.len(), all.len());
    write_report(&mnist, &again, &recorded, std::time::Instant::now()).unwrap();
    let mut files = vec![
        "REPORT.md".to_string(),
        "metrics.json".to_string(),
        "probes.json".to_string(),
    ];
    for t in std::fs::read_dir(dir.path().join("tables")).unwrap() {
        files.push(format!(
            "tables/{}",
            t.unwrap().file_name().to_string_lossy()
        ));
    }
    for f in &files {
        assert_eq!(
            std::fs::read(dir.path().join(f)).unwrap(),
            std::fs::read(clone.path().join(f)).unwrap(),
            "{f} differs"
        );
    }
    assert!(
        clone
            .path()
            .join("models/best/weights.safetensors")
            .exists(),
        "the committed models stay"
    );
}
