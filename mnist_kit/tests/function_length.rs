//! No logic function of the library grows past 80 lines: long functions hide their steps.
//! Data tables (the claims catalogue, the report's groups and questions, the glyphs) may be
//! long; nothing else may.

mod support;

use std::path::Path;

const LIMIT: usize = 80;
/// Long by nature: tables of data written as code.
const TABLES: [&str; 4] = ["catalogue", "groups", "questions", "glyphs"];

/// `(name, lines)` of every function with a body in `text`, up to its test module.
fn functions(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.starts_with("#[cfg(test)]") {
            break;
        }
        let trimmed = l.trim_start();
        let indent = l.len() - trimmed.len();
        let after_vis = trimmed
            .strip_prefix("pub(crate) ")
            .or_else(|| trimmed.strip_prefix("pub "))
            .unwrap_or(trimmed);
        let after_const = after_vis.strip_prefix("const ").unwrap_or(after_vis);
        let Some(rest) = after_const.strip_prefix("fn ") else {
            i += 1;
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let mut j = i;
        while j < lines.len() && !lines[j].trim_end().ends_with('{') {
            if lines[j].trim_end().ends_with(';') {
                break;
            }
            j += 1;
        }
        if j >= lines.len() || lines[j].trim_end().ends_with(';') {
            i = j + 1;
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        let mut k = j + 1;
        while k < lines.len() && lines[k].trim_end() != close {
            k += 1;
        }
        out.push((name, k - i + 1));
        i = k + 1;
    }
    out
}

#[test]
fn no_logic_function_grows_past_the_limit() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = support::rust_files(&src);
    let mut long = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel.starts_with("bin/") {
            continue; // the CLI: argument plumbing, one function per command
        }
        for (name, n) in functions(&std::fs::read_to_string(f).unwrap()) {
            if n > LIMIT && !TABLES.contains(&name.as_str()) {
                long.push((rel.clone(), name, n));
            }
        }
    }
    assert!(long.is_empty(), "functions over {LIMIT} lines: {long:#?}");
}
