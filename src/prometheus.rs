//! What the Prometheus text of timing and of the report share.

/// Escapes a Prometheus label value (text format 0.0.4): backslash,
/// double quote and line feed.
pub(crate) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_backslash_quote_and_line_feed() {
        assert_eq!(escape(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
        assert_eq!(escape("/api/*"), "/api/*");
    }
}
