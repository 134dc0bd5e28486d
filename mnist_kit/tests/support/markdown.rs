//! Markdown as a CommonMark parser (pulldown-cmark, with GitHub's tables) reads it: what the
//! report and the READMEs must survive on any renderer.

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// What a renderer makes of a Markdown text.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Tables, with their number of body rows.
    pub tables: Vec<usize>,
    /// Headings of level 2: their text.
    pub sections: Vec<String>,
    /// Lines that start with `|` (a table row as written) but were not parsed into a table.
    pub stray_rows: Vec<String>,
}

/// Parses `md` and lists its tables, second-level headings and table rows that did not
/// become part of a table.
pub fn parse(md: &str) -> Parsed {
    let mut out = Parsed::default();
    let mut in_table = false;
    let mut in_h2 = false;
    let mut rows = 0;
    let mut table_lines = std::collections::HashSet::new();
    for (event, range) in Parser::new_ext(md, Options::ENABLE_TABLES).into_offset_iter() {
        match event {
            Event::Start(Tag::Table(_)) => {
                in_table = true;
                rows = 0;
                let first = md[..range.start].lines().count();
                let n = md[range.clone()].lines().count();
                table_lines.extend(first..first + n);
            }
            Event::End(TagEnd::Table) => {
                in_table = false;
                out.tables.push(rows);
            }
            Event::Start(Tag::TableRow) if in_table => rows += 1,
            Event::Start(Tag::Heading {
                level: HeadingLevel::H2,
                ..
            }) => {
                in_h2 = true;
                out.sections.push(String::new());
            }
            Event::End(TagEnd::Heading(HeadingLevel::H2)) => in_h2 = false,
            Event::Text(t) | Event::Code(t) if in_h2 => {
                if let Some(s) = out.sections.last_mut() {
                    s.push_str(&t);
                }
            }
            _ => {}
        }
    }
    let mut in_code = false;
    for (i, line) in md.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if !in_code && line.starts_with('|') && !table_lines.contains(&i) {
            out.stray_rows.push(format!("line {}: {line}", i + 1));
        }
    }
    out
}
