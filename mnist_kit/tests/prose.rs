//! Numbers that cannot drift: no Markdown cell of a notebook, and no hand-written part of the
//! README, states a measured number. Measured numbers are rendered by code from the evidence
//! (`study::Facts` and `display::markdown` in the notebooks; the study writes the README's
//! generated blocks), so a rerun that changes a number changes the sentence.
//!
//! A measured number is a number followed by a unit of a result: `%`, `points`, `x`, `s`, `ms`.
//! Settings that read like one are named in [`SETTINGS`]; inline code (`` `...` ``) and quoted
//! seed-study lines (Markdown blockquotes) are not prose of ours.

use std::path::{Path, PathBuf};

use regex::Regex;

/// Phrases that carry a number with a unit but state a setting of the design, not a result.
const SETTINGS: &[&str] = &[
    // The level of every interval.
    "95 % interval",
    "95 % confidence",
    // The speedrun's target.
    "99 % test accuracy",
    "Time to 99 %",
    "time to 99 %",
    // The server's limits (`serve::ServeConfig`).
    "within 5 s",
    "within 10 s",
    "no 40 ms keep-alive stall",
    // The notebook setup's progress interval.
    "every 30 s",
];

/// Between these markers the README is written by code (`cargo study` and the benchmarks'
/// writers); everything else is hand-written.
const GENERATED_BEGIN: &str = "<!-- generated:";
const GENERATED_END: &str = "<!-- /generated -->";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn measured() -> Regex {
    Regex::new(r"(?:^|[^\w.])(\d+(?:[.,]\d+)*)\s*(%|points?\b|x\b|×|ms\b|s\b)").expect("regex")
}

/// The measured numbers `text` states, with a little context each.
fn measured_numbers(text: &str) -> Vec<String> {
    let code = Regex::new(r"`[^`]*`").expect("regex");
    let re = measured();
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with('>') {
            continue;
        }
        let mut line = code.replace_all(line, "").into_owned();
        for s in SETTINGS {
            line = line.replace(s, "");
        }
        for m in re.find_iter(&line) {
            let (a, b) = (m.start().saturating_sub(30), (m.end() + 10).min(line.len()));
            let ctx = line
                .get(a..b)
                .unwrap_or_else(|| m.as_str())
                .trim()
                .to_string();
            out.push(ctx);
        }
    }
    out
}

#[test]
fn the_detector_sees_measured_numbers_and_passes_settings() {
    assert_eq!(
        measured_numbers("reaches 97.77 ± 0.06 % over 10 seeds").len(),
        1
    );
    assert_eq!(measured_numbers("wins by 3.03 points").len(), 1);
    assert_eq!(
        measured_numbers("1.5x faster, 6.5 s per run, p99 40 ms").len(),
        3
    );
    assert_eq!(measured_numbers("roughly 4x per 4x batch").len(), 2);
    assert!(measured_numbers("its 95 % interval excludes zero").is_empty());
    assert!(measured_numbers("`mnist-kit speedrun --seeds 10` and 28x28 input").is_empty());
    assert!(measured_numbers("> 'accuracy of 97.67 %' (seed study 003)").is_empty());
    assert!(measured_numbers("5 epochs of Adam 1e-3, batch 64, 60,000 images").is_empty());
}

#[test]
fn no_notebook_markdown_cell_states_a_measured_number() {
    let dir = root().join("notebooks");
    let mut notebooks: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("notebooks/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ipynb"))
        .collect();
    notebooks.sort();
    assert!(notebooks.len() >= 4, "{notebooks:?}");
    let mut found = Vec::new();
    let mut markdown_cells = 0;
    for path in &notebooks {
        let nb: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json");
        let cells = nb["cells"].as_array().expect("cells");
        for (i, cell) in cells.iter().enumerate() {
            if cell["cell_type"] != "markdown" {
                continue;
            }
            markdown_cells += 1;
            let source: String = match &cell["source"] {
                serde_json::Value::Array(lines) => {
                    lines.iter().filter_map(|l| l.as_str()).collect()
                }
                serde_json::Value::String(s) => s.clone(),
                _ => String::new(),
            };
            for m in measured_numbers(&source) {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                found.push(format!("{name} cell {i}: ...{m}..."));
            }
        }
    }
    assert!(
        markdown_cells > 30,
        "only {markdown_cells} Markdown cells read"
    );
    assert!(
        found.is_empty(),
        "Markdown cells state measured numbers; render them from the evidence in a code cell \
         (study::Facts, display::markdown):\n{}",
        found.join("\n")
    );
}

/// The README without its generated blocks, which must open and close in pairs.
fn hand_written(readme: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in readme.lines() {
        if line.trim_start().starts_with(GENERATED_BEGIN) {
            assert!(!inside, "nested generated block at {line:?}");
            inside = true;
        } else if line.trim_start().starts_with(GENERATED_END) {
            assert!(inside, "generated block closed without opening: {line:?}");
            inside = false;
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(!inside, "a generated block of the README is not closed");
    out
}

#[test]
fn the_readme_states_measured_numbers_only_in_generated_blocks() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    assert!(
        readme.contains(GENERATED_BEGIN),
        "README.md has no generated block"
    );
    let found = measured_numbers(&hand_written(&readme));
    assert!(
        found.is_empty(),
        "hand-written parts of README.md state measured numbers; put them in a generated block \
         written by code:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_readme_blocks_are_the_recorded_runs_findings() {
    use mnist_kit::study::{StudyConfig, report::readme, run::collect_recorded};
    let mnist = mnist_kit::data::Mnist::load_default().expect("bundled MNIST");
    let cfg = StudyConfig {
        out: root().join("results"),
        ..StudyConfig::new(false)
    };
    let all = collect_recorded(&cfg).expect("recorded runs");
    assert!(all.len() > 100, "only {} recorded runs", all.len());
    let text = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let facts = mnist_kit::study::Facts::new(&mnist, &all).expect("facts");
    for (name, expected) in readme::blocks(&facts, &all, &cfg.out.join("models")).expect("blocks") {
        let block = readme::block(&text, name).unwrap_or_else(|| panic!("no {name} block"));
        assert_eq!(
            block.trim(),
            expected.trim(),
            "README.md's {name} block is stale: run `cargo study --readme`"
        );
    }
}
