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
        // toml's messages can span lines (a caret diagram); one line is what a terminal wants
        message = message.lines().next().unwrap_or_default().trim().to_string();
        match err.span() {
            Some(span) => {
                let table = self.table_at(span.start);
                let key = self.key_at(span.start);
                let message = explain(&message, key.as_deref(), self.is_header_at(span.start));
                let path = match (&key, table.is_empty()) {
                    (Some(k), true) => k.clone(),
                    (Some(k), false) => format!("{table}.{k}"),
                    (None, _) => table,
                };
                ConfigError::new(path, Some(self.line(span.start)), message)
            }
            None => ConfigError::new("", None, message),
        }
    }

    /// Whether the line holding `offset` is a `[table]` or `[[array]]` header.
    fn is_header_at(&self, offset: usize) -> bool {
        self.line_at(offset).1.trim_start().starts_with('[')
    }

    /// Byte offset where the line holding `offset` starts, and that line's text.
    fn line_at(&self, offset: usize) -> (usize, &'a str) {
        let start = self.text[..offset.min(self.text.len())].rfind('\n').map_or(0, |i| i + 1);
        (start, self.text[start..].lines().next().unwrap_or_default())
    }

    /// The key assigned on the line holding `offset` (`key = value`), if the offset is in a value.
    fn key_at(&self, offset: usize) -> Option<String> {
        let (start, line) = self.line_at(offset);
        let (key, _) = line.split_once('=')?;
        let key = key.trim();
        let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        (plain && offset > start + key.len()).then(|| key.to_string())
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

/// Rewrites serde's wording into a user's: the unit a key expects, and a close match for an
/// unknown name.
fn explain(message: &str, key: Option<&str>, header: bool) -> String {
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        // "string \"5s\", expected u64"
        if let Some((found, expected)) = rest.split_once(", expected ") {
            let unit = match key {
                Some(k) if k.ends_with("_ms") => " of milliseconds",
                Some(k) if k.ends_with("_bytes") => " of bytes",
                _ => "",
            };
            let what = match expected.trim() {
                "u8" | "u16" | "u32" | "u64" | "usize" | "i64" => format!("an integer{unit}"),
                "a boolean" | "bool" => "true or false".to_string(),
                other => other.to_string(),
            };
            let found = found.strip_prefix("string ").unwrap_or(found);
            return format!("expected {what}, found {found}");
        }
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        // "unknown field `listeners`, expected one of `instance`, `http`, ..."
        if let Some((name, expected)) = rest.split_once('`') {
            let options: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            let kind = if header { "table" } else { "key" };
            return match closest(name, &options) {
                Some(best) => format!("unknown {kind} `{name}`, did you mean `{best}`?"),
                None => {
                    let list: Vec<String> = options.iter().map(|o| format!("`{o}`")).collect();
                    format!("unknown {kind} `{name}`; expected one of {}", list.join(", "))
                }
            };
        }
    }
    message.to_string()
}

/// The option nearest to `name` by edit distance, if it is close enough to be a typo.
fn closest<'a>(name: &str, options: &[&'a str]) -> Option<&'a str> {
    let distance = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut cur = vec![i + 1; b.len() + 1];
            for (j, cb) in b.iter().enumerate() {
                cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
            }
            prev = cur;
        }
        prev[b.len()]
    };
    options
        .iter()
        .map(|o| (distance(name, o), *o))
        .filter(|(d, o)| *d <= 2.max(o.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, o)| o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_errors_name_the_key_and_its_unit() {
        let e = crate::config::compile("[instance]\ndrain_timeout_ms = \"5s\"\n", 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "instance.drain_timeout_ms: expected an integer of milliseconds, found \"5s\" (line 2)"
        );
    }

    #[test]
    fn unknown_names_suggest_the_close_one() {
        let e = crate::config::compile("[[listeners]]\nlisten = \"127.0.0.1:0\"\n", 1).unwrap_err();
        assert!(e.to_string().contains("unknown table `listeners`, did you mean `listener`?"), "{e}");
        let e = crate::config::compile("[instance]\nworker = 2\n", 1).unwrap_err();
        assert!(e.to_string().contains("did you mean `workers`?"), "{e}");
    }

    #[test]
    fn duplicate_tables_are_one_line() {
        let e = crate::config::compile("[instance]\nworkers = 1\n[instance]\nworkers = 2\n", 1).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains('\n') && text.contains("instance"), "{text}");
        assert_eq!(e.line, Some(3), "{text}");
    }

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
