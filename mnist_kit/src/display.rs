//! Notebook display: the evcxr envelope (`EVCXR_BEGIN_CONTENT <mime>` ... `EVCXR_END_CONTENT`)
//! that the kit's types print from their inherent `evcxr_display` methods.

/// Formats one display block for `mime`. Each block is printed in a single call so that
/// concurrent output cannot split it.
pub fn envelope(mime: &str, content: &str) -> String {
    format!("EVCXR_BEGIN_CONTENT {mime}\n{content}\nEVCXR_END_CONTENT\n")
}

/// Prints an HTML block for the notebook front-end.
pub fn html(content: &str) {
    print!("{}", envelope("text/html", content));
}

#[cfg(test)]
mod tests {
    #[test]
    fn envelope_is_well_formed() {
        let e = super::envelope("text/html", "<b>x</b>");
        assert!(e.starts_with("EVCXR_BEGIN_CONTENT text/html\n"));
        assert!(e.ends_with("\nEVCXR_END_CONTENT\n"));
        assert_eq!(e.matches("EVCXR_BEGIN_CONTENT").count(), 1);
    }
}
