//! The committed report and the READMEs read as intended by a CommonMark parser with
//! GitHub's tables: every table row written is part of a parsed table (none glued to a line
//! of text and shown as a paragraph, none with a stray `|` in a cell). The report the current
//! code writes is checked the same way, sections included, in `tests/study.rs`.

mod support;

use std::path::PathBuf;

use support::markdown::parse;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_parser_sees_a_glued_table() {
    let ok = parse("text\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n## Next\n");
    assert_eq!(ok.tables, vec![1]);
    assert_eq!(ok.sections, vec!["Next".to_string()]);
    assert!(ok.stray_rows.is_empty());
    // A table row under a paragraph line without a delimiter row is no table.
    let glued = parse("text\n| a | b |\n| 1 | 2 |\n");
    assert!(glued.tables.is_empty());
    assert_eq!(glued.stray_rows.len(), 2);
}

#[test]
fn the_committed_markdown_parses_as_written() {
    // The report's pages of each group (members, every quantity, figures) with the rest.
    let mut files: Vec<String> = [
        "results/REPORT.md",
        "README.md",
        "results/README.md",
        "data/README.md",
    ]
    .map(String::from)
    .to_vec();
    let pages = std::fs::read_dir(root().join("results/report")).expect("results/report");
    let before = files.len();
    files.extend(
        pages
            .filter_map(|e| e.ok())
            .map(|e| format!("results/report/{}", e.file_name().to_string_lossy())),
    );
    assert!(files.len() > before, "the report's pages are committed");
    for file in &files {
        let path = root().join(file);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let parsed = parse(&text);
        assert!(
            parsed.stray_rows.is_empty(),
            "{file}: table rows outside any table: {:#?}",
            parsed.stray_rows
        );
    }
}
