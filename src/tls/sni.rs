//! Certificate choice by SNI: exact names first, then one-label wildcards (`*.example.com`
//! covers `a.example.com`, not `example.com` nor `a.b.example.com`), else the listener's first
//! certificate. Names are compared in lower case, without a trailing dot.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// One certificate of a listener with the names it is chosen for and the names it covers.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) key: Arc<CertifiedKey>,
    /// Configured `sni` names (lower case; may start with `*.`).
    pub(crate) sni: Vec<String>,
    /// Names the certificate is valid for (its SANs, lower case), for the Host check.
    pub(crate) covers: Vec<String>,
}

/// The listener's resolver: entry 0 is the default.
#[derive(Debug)]
pub(crate) struct SniResolver {
    pub(crate) entries: Vec<Entry>,
}

impl SniResolver {
    /// Index of the entry chosen for `server_name` (the default when none matches).
    pub(crate) fn choose(&self, server_name: Option<&str>) -> usize {
        let Some(name) = server_name.map(normal) else { return 0 };
        if let Some(i) = self.entries.iter().position(|e| e.sni.contains(&name)) {
            return i;
        }
        self.entries.iter().position(|e| e.sni.iter().any(|s| wildcard_covers(s, &name))).unwrap_or(0)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.entries[self.choose(hello.server_name())].key.clone())
    }
}

/// Lower case, no trailing dot.
pub(crate) fn normal(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `pattern` (lower case) covers `name` (lower case) exactly or as a one-label wildcard.
pub(crate) fn covers(pattern: &str, name: &str) -> bool {
    pattern == name || wildcard_covers(pattern, name)
}

fn wildcard_covers(pattern: &str, name: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix("*.") else { return false };
    match name.split_once('.') {
        Some((label, rest)) => !label.is_empty() && rest == suffix,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_exactly_one_label() {
        assert!(covers("*.shop.example.com", "a.shop.example.com"));
        assert!(!covers("*.shop.example.com", "shop.example.com"));
        assert!(!covers("*.shop.example.com", "a.b.shop.example.com"));
        assert!(covers("shop.example.com", "shop.example.com"));
        assert!(!covers("shop.example.com", "xshop.example.com"));
        assert_eq!(normal("Shop.Example.COM."), "shop.example.com");
    }
}
