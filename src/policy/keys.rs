//! API keys: one table for the instance, from every consumer's `keys` and `keys_file`.
//!
//! A lookup is one hash-map probe on the key's SHA-256 digest, then a constant-time comparison
//! of the stored key with the presented one: the probe's timing depends only on a digest an
//! attacker cannot steer toward a real key, and the comparison's not at all on where they differ.

use std::collections::HashMap;

use super::ConsumerId;

/// Longest API key accepted (longer ones are refused unread).
pub const MAX_KEY_BYTES: usize = 512;

type Digest = [u8; 32];

#[derive(Debug, Default)]
pub struct KeyTable {
    by_digest: HashMap<Digest, (ConsumerId, Box<[u8]>), ahash::RandomState>,
}

fn digest(key: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, key);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Equal length and bytes, in time that depends only on the lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl KeyTable {
    /// Adds `key` for `consumer`; `Err(other)` when another consumer (or this one) has it.
    pub fn insert(&mut self, key: &[u8], consumer: ConsumerId) -> Result<(), ConsumerId> {
        match self.by_digest.entry(digest(key)) {
            std::collections::hash_map::Entry::Occupied(e) => Err(e.get().0),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((consumer, key.into()));
                Ok(())
            }
        }
    }

    /// The consumer `key` belongs to.
    pub fn find(&self, key: &[u8]) -> Option<ConsumerId> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return None;
        }
        let (consumer, stored) = self.by_digest.get(&digest(key))?;
        ct_eq(stored, key).then_some(*consumer)
    }
}

/// The keys of a `keys_file`: one a line, surrounding whitespace trimmed, empty lines and lines
/// starting with `#` skipped. `Err((line, why))` for a key no client could send.
pub fn parse_key_file(text: &str) -> Result<Vec<String>, (usize, &'static str)> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let key = line.trim();
        if key.is_empty() || key.starts_with('#') {
            continue;
        }
        check_key(key).map_err(|why| (i + 1, why))?;
        keys.push(key.to_string());
    }
    Ok(keys)
}

/// A key must be sendable in a header field and a query: visible ASCII, no spaces, at most
/// [`MAX_KEY_BYTES`].
pub fn check_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("an API key cannot be empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return Err("an API key is at most 512 bytes");
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("an API key is visible ASCII without spaces");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_by_exact_value_only() {
        let mut t = KeyTable::default();
        t.insert(b"k-alpha", 0).unwrap();
        t.insert(b"k-beta", 1).unwrap();
        assert_eq!(t.insert(b"k-alpha", 1), Err(0), "a key belongs to one consumer");
        assert_eq!(t.find(b"k-alpha"), Some(0));
        assert_eq!(t.find(b"k-beta"), Some(1));
        assert_eq!(t.find(b"k-alph"), None);
        assert_eq!(t.find(b"K-ALPHA"), None);
        assert_eq!(t.find(b""), None);
        assert_eq!(t.find(&[b'a'; 600]), None);
    }

    #[test]
    fn key_files_skip_comments_and_refuse_unsendable_keys() {
        assert_eq!(parse_key_file("# partner A\nk-1\n\n  k-2  \n#k-3\n").unwrap(), ["k-1", "k-2"]);
        assert_eq!(parse_key_file("k-1\nk 2\n"), Err((2, "an API key is visible ASCII without spaces")));
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"abc", b"ab"));
    }
}
