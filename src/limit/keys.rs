//! Per-key buckets on one core, bounded by a two-generation table (an O(1) approximation of LRU):
//! lookups move entries into the current generation; when it is full, the previous generation is
//! dropped whole and counted as evictions.

use ahash::AHashMap;

use super::gcra::{LocalBucket, Rate};

/// Per-key buckets of one rule on one core.
#[derive(Debug)]
pub struct KeyTable {
    current: AHashMap<u64, LocalBucket>,
    previous: AHashMap<u64, LocalBucket>,
    /// Entries per generation (the table holds at most twice this).
    generation: usize,
    pub evicted: u64,
}

impl KeyTable {
    pub fn new(capacity: usize) -> Self {
        let generation = (capacity / 2).max(1);
        Self { current: AHashMap::with_capacity(generation), previous: AHashMap::new(), generation, evicted: 0 }
    }

    /// The bucket for `key`, created full if unknown.
    pub fn bucket(&mut self, key: u64) -> &mut LocalBucket {
        if !self.current.contains_key(&key) {
            let b = self.previous.remove(&key).unwrap_or_default();
            if self.current.len() >= self.generation {
                self.evicted += self.previous.len() as u64;
                self.previous = std::mem::take(&mut self.current);
            }
            self.current.insert(key, b);
        }
        self.current.get_mut(&key).expect("inserted above")
    }

    /// Whether `key` may pass now (without spending).
    pub fn has_token(&mut self, key: u64, rate: &Rate, now: u64) -> bool {
        self.bucket(key).has_token(rate, now)
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::gcra::NS;

    #[test]
    fn keys_are_limited_independently() {
        let r = Rate::new(2, 2);
        let mut t = KeyTable::new(100);
        let now = NS;
        assert!(t.bucket(1).take(&r, now).is_ok());
        assert!(t.bucket(1).take(&r, now).is_ok());
        assert!(t.bucket(1).take(&r, now).is_err());
        assert!(t.bucket(2).take(&r, now).is_ok(), "another key has its own bucket");
    }

    #[test]
    fn table_is_bounded_and_counts_evictions() {
        let mut t = KeyTable::new(10);
        for k in 0..1000 {
            t.bucket(k);
        }
        assert!(t.len() <= 10);
        assert!(t.evicted >= 980);
    }

    #[test]
    fn recently_used_keys_survive_a_generation_flip() {
        let r = Rate::new(1, 1);
        let mut t = KeyTable::new(4);
        assert!(t.bucket(7).take(&r, NS).is_ok());
        t.bucket(8);
        t.bucket(7); // touched: moves along
        t.bucket(9);
        t.bucket(10);
        assert!(t.bucket(7).take(&r, NS).is_err(), "key 7 kept its empty bucket");
    }
}
