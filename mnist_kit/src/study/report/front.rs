//! The report's front door and back: a table of contents after the title, from the report's
//! own `##` headings (GitHub's anchors), and a limitations section rendered from the plan.

use std::fmt::Write as _;

use super::super::plan;
use super::context::Ctx;

/// GitHub's anchor of a heading: lower case, punctuation dropped (hyphens and underscores
/// kept), spaces as hyphens.
pub(crate) fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// `md` with its `##` headings, as one paragraph of links, inserted before the first of them.
pub(crate) fn with_contents(md: &str) -> String {
    let headings: Vec<&str> = md.lines().filter_map(|l| l.strip_prefix("## ")).collect();
    let Some(first) = md.find("\n## ") else {
        return md.to_string();
    };
    let links: Vec<String> = headings
        .iter()
        .map(|h| format!("[{h}](#{})", anchor(h)))
        .collect();
    let toc = format!("## Contents\n\n{}\n\n", links.join(" · "));
    format!("{}{toc}{}", &md[..first + 1], &md[first + 1..])
}

/// What this study does not show, from its own settings.
pub(crate) fn limitations(md: &mut String, ctx: &Ctx) {
    let validation = ctx.all.first().map_or(0, |r| r.experiment.train.validation);
    let _ = writeln!(
        md,
        "\n## Limitations\n\n\
         - **Short schedules.** The architectures share one recipe of {} epochs and Part 2 \
         trains for {}: the verdicts are about those regimes, not about each network at its \
         best. A model that needs longer (augmentation usually does) is compared before its \
         plateau.\n\
         - **One validation split, one test set.** Every run sees the same {validation} \
         validation images and the same {} test images. The seed intervals are about these \
         images; another draw of test digits would move every accuracy a little, and \
         together.\n\
         - **MNIST-C as the kit builds it.** The 15 corruptions are the kit's own \
         implementation of the paper's definitions and severities, seeded, not the published \
         image files, and they are synthetic: real photographs, pens and scanners fail in \
         other ways (see the real-world digits).\n\
         - **Seeds follow the cost.** {} seeds per MLP experiment, {} per LeNet-5 or simple \
         CNN, {} per ResNet: the ResNet comparisons can see only large differences.\n\
         - **One kind of machine.** Every run trained on the CPU named above; the numbers are \
         the same bits on other x86 CPUs (the kit's kernels fix every sum's order), the times \
         are not.",
        plan::shared(ctx.cfg.quick, ctx.cfg.seed).epochs,
        plan::part2_epochs(ctx.cfg.quick),
        ctx.evidence_test_len(),
        plan::MLP_SEEDS,
        plan::CNN_SEEDS,
        plan::RESNET_SEEDS,
    );
}

/// Writes a section's page, `report/NAME.md` beside the report, with its links made relative
/// to that folder; returns the page's path relative to the report.
pub(crate) fn page(ctx: &Ctx, name: &str, md: &str) -> crate::Result<String> {
    let md = md
        .replace("](figures/", "](../figures/")
        .replace("](tables/", "](../tables/")
        .replace("](notebooks/", "](../notebooks/")
        .replace("](#", "](../REPORT.md#");
    let path = format!("report/{name}.md");
    write_markdown(&ctx.cfg.out.join(&path), &md)?;
    Ok(path)
}

/// Writes the report: `md` with its contents and one blank line wherever the sections left
/// several (the same Markdown, shorter to read as text), refused if a table touches a line
/// of text (the renderer would lose it).
pub(crate) fn write_markdown(path: &std::path::Path, md: &str) -> crate::Result<()> {
    let md = single_blank_lines(&with_contents(md));
    let glued = glued_tables(&md);
    if !glued.is_empty() {
        return Err(crate::Error::invalid(
            "report",
            format!("a table touches a line of text at lines {glued:?}"),
        ));
    }
    crate::fsutil::write_bytes_atomic(path, md.as_bytes())
}

/// `md` with every run of blank lines cut to one (the report has no code block, where blank
/// lines would count), ending with one newline.
fn single_blank_lines(md: &str) -> String {
    let mut out = String::with_capacity(md.len());
    let mut blank = false;
    for line in md.lines() {
        let is_blank = line.trim().is_empty();
        if !(is_blank && blank) {
            out.push_str(if is_blank { "" } else { line });
            out.push('\n');
        }
        blank = is_blank;
    }
    out
}

/// Lines of `md` (1-based) where a table and a line of text touch: text right before a
/// table makes the renderer read both as one paragraph, and text right after one becomes a
/// row of it.
pub(crate) fn glued_tables(md: &str) -> Vec<usize> {
    let lines: Vec<&str> = md.lines().collect();
    let text = |l: &str| !l.trim().is_empty() && !l.starts_with('|');
    (1..lines.len())
        .filter(|&i| {
            let (before, here) = (lines[i - 1], lines[i]);
            (here.starts_with('|') && text(before)) || (before.starts_with('|') && text(here))
        })
        .map(|i| i + 1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_follow_github() {
        assert_eq!(anchor("Part 2: dropout"), "part-2-dropout");
        assert_eq!(
            anchor("Beyond the test set: MNIST-C"),
            "beyond-the-test-set-mnist-c"
        );
        assert_eq!(anchor("LeNet-5 on 28x28"), "lenet-5-on-28x28");
    }

    #[test]
    fn contents_list_every_heading_before_the_first() {
        let md = "# Title\n\nintro\n\n## One\n\ntext\n\n## Two: b\n";
        let out = with_contents(md);
        assert!(
            out.starts_with(
                "# Title\n\nintro\n\n## Contents\n\n[One](#one) · [Two: b](#two-b)\n\n"
            )
        );
        assert!(out.find("## Contents").unwrap() < out.find("## One").unwrap());
    }

    #[test]
    fn a_table_glued_to_text_is_found() {
        assert_eq!(glued_tables("text\n| a |\n|---|\n"), vec![2]);
        assert_eq!(glued_tables("| a |\n|---|\n| 1 |\nmore text\n"), vec![4]);
        assert!(glued_tables("text\n\n| a |\n|---|\n| 1 |\n\nmore\n").is_empty());
    }
}
