//! `ConfigError`: what went wrong in a config file, named by TOML key path and line.

use std::fmt;

/// A config error: `service.shop.api[1].upstream: no upstream named "ordrs" (line 31)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// TOML key path, e.g. `service.shop.api[1].upstream`; empty for whole-file errors.
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong, in one sentence.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, line: Option<usize>, message: impl Into<String>) -> Self {
        Self { path: path.into(), line, message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Maps byte offsets in the source text to 1-based lines.
pub(crate) struct Source<'a> {
    text: &'a str,
}

impl<'a> Source<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self { text }
    }

    /// 1-based line containing byte `offset`.
    pub(crate) fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    /// Turns a serde/TOML syntax error into a `ConfigError` naming the enclosing table.
    pub(crate) fn toml_error(&self, err: &toml::de::Error) -> ConfigError {
        let mut message = err.message().trim().to_string();
        if message.is_empty() {
            // found by fuzzing: some syntax errors (e.g. `key = ` at end of file) carry no message
            message = "invalid TOML syntax (a value or closing bracket is missing)".to_string();
        }
        match err.span() {
            Some(span) => {
                let table = self.table_at(span.start);
                ConfigError::new(table, Some(self.line(span.start)), message)
            }
            None => ConfigError::new("", None, message),
        }
    }

    /// The `[table]` / `[[array]]` header in force at `offset` (empty for the root table).
    fn table_at(&self, offset: usize) -> String {
        let end = offset.min(self.text.len());
        let mut current = String::new();
        let mut counts: std::collections::HashMap<String, usize> = Default::default();
        for line in self.text[..end].lines() {
            let t = line.trim();
            if let Some(inner) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
                let name = inner.trim().to_string();
                let n = counts.entry(name.clone()).or_insert(0);
                current = format!("{name}[{n}]");
                *n += 1;
            } else if let Some(inner) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
                current = inner.trim().to_string();
            }
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_path_message_and_line() {
        let e = ConfigError::new("service.shop.api[1].upstream", Some(31), "no upstream named \"ordrs\"");
        assert_eq!(e.to_string(), "service.shop.api[1].upstream: no upstream named \"ordrs\" (line 31)");
    }

    #[test]
    fn syntax_errors_without_a_message_still_explain() {
        let text = "[[listener]]\nlisten = ";
        let e = crate::config::compile(text, 1).unwrap_err();
        assert!(!e.message.is_empty() && e.line.is_some(), "{e}");
    }

    #[test]
    fn line_counts_newlines_before_offset() {
        let s = Source::new("a\nb\nc");
        assert_eq!(s.line(0), 1);
        assert_eq!(s.line(2), 2);
        assert_eq!(s.line(4), 3);
    }
}
