//! The crate's layers as `lib.rs` draws them: each module imports only the modules above it in
//! the table (the error type and the presentation helpers go everywhere), and no two files of
//! one module import each other. Read from the sources, so a new import that runs back up
//! fails here, not in a reader's head.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
/// Usable from every layer (lib.rs: "every layer may use the error type and the presentation
/// helpers").
const EVERYWHERE: [&str; 4] = ["error", "display", "fsutil", "prelude"];

/// The modules of `lib.rs`'s layer table, bottom up.
fn table() -> Vec<String> {
    let lib = std::fs::read_to_string(Path::new(SRC).join("lib.rs")).unwrap();
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! | "))
        .filter_map(|l| l.split(" |").next())
        .map(|cell| {
            cell.trim_matches(|c| c == '[' || c == ']' || c == '`')
                .to_string()
        })
        .filter(|m| m != "layer" && !m.starts_with("---"))
        .collect()
}

/// The top-level module a source file belongs to (`src/plot/grid.rs` -> `plot`).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(SRC).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// The code of a file without its `#[cfg(test)]` module and comments.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first path segments named after `crate::` in `text`, `use crate::{a::X, b}` included.
fn crate_modules(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group, up to its closing brace.
            let (mut depth, mut start, mut end) = (0usize, 0usize, group.len());
            let mut items = Vec::new();
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        end = k;
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(&group[start..k]);
                        start = k + 1;
                    }
                    _ => {}
                }
            }
            items.push(&group[start..end]);
            out.extend(items.into_iter().map(ident).filter(|s| !s.is_empty()));
        } else {
            out.insert(ident(rest));
        }
    }
    out
}

#[test]
fn every_module_imports_only_layers_below_it() {
    let layers = table();
    assert!(layers.len() >= 10, "lib.rs's table: {layers:?}");
    let rank: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let files = support::rust_files(Path::new(SRC));
    let mut wrong = Vec::new();
    for f in &files {
        let Some(m) = module_of(f) else { continue };
        let Some(&mine) = rank.get(m.as_str()) else {
            continue; // lib.rs, bin/, fuzzing: clients, not layers
        };
        let used = crate_modules(&code(&std::fs::read_to_string(f).unwrap()));
        for other in used {
            let Some(&theirs) = rank.get(other.as_str()) else {
                continue;
            };
            if theirs > mine && !EVERYWHERE.contains(&other.as_str()) {
                wrong.push(format!("{} uses {other}", f.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that run up lib.rs's table: {wrong:#?}"
    );
}

#[test]
fn no_two_files_of_a_module_import_each_other() {
    let files = support::rust_files(Path::new(SRC));
    // file stem -> the sibling stems it names through `super::`
    let mut uses: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let text = code(&std::fs::read_to_string(f).unwrap());
        let dir = f.parent().unwrap().to_path_buf();
        let siblings: BTreeSet<String> = files
            .iter()
            .filter(|g| g.parent() == Some(dir.as_path()) && *g != f)
            .filter_map(|g| g.file_stem()?.to_str().map(String::from))
            .filter(|s| s != "mod")
            .filter(|s| {
                // `super::cpu::ConvGeom`, `super::cpu::{..}` and `super::shifted;` alike.
                text.contains(&format!("super::{s}::")) || text.contains(&format!("super::{s};"))
            })
            .collect();
        uses.insert(f.clone(), siblings);
    }
    let mut circles = Vec::new();
    for (f, sibs) in &uses {
        let stem = f.file_stem().unwrap().to_str().unwrap().to_string();
        for s in sibs {
            let back = f.with_file_name(format!("{s}.rs"));
            if uses.get(&back).is_some_and(|b| b.contains(&stem)) && stem < *s {
                circles.push(format!("{} <-> {s}.rs", f.display()));
            }
        }
    }
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}
