//! Smooth weighted round robin (nginx's algorithm): over a cycle of `sum(weights)` picks each
//! endpoint is chosen exactly `weight` times, interleaved rather than in bursts.
//!
//! Pure and per core: each shard has its own state, so cores spread independently.

/// Balancer state for one upstream on one shard.
#[derive(Debug, Clone)]
pub struct SmoothWeighted {
    weights: Vec<i64>,
    current: Vec<i64>,
    total: i64,
}

impl SmoothWeighted {
    pub fn new(weights: &[u32]) -> Self {
        let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w.max(1))).collect();
        let total = weights.iter().sum();
        Self { current: vec![0; weights.len()], weights, total }
    }

    /// Picks an endpoint index.
    pub fn pick(&mut self) -> usize {
        self.pick_excluding(usize::MAX)
    }

    /// Picks an endpoint other than `skip` when there is one (for a retry after a failure).
    pub fn pick_excluding(&mut self, skip: usize) -> usize {
        if self.weights.len() == 1 {
            return 0;
        }
        self.pick_where(|i| i != skip).unwrap_or(0)
    }

    /// Picks among the endpoints `allowed` admits; `None` when it admits none.
    pub fn pick_where(&mut self, allowed: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.weights.len();
        let mut best = usize::MAX;
        let mut total = 0;
        for i in 0..n {
            if !allowed(i) {
                continue;
            }
            self.current[i] += self.weights[i];
            total += self.weights[i];
            if best == usize::MAX || self.current[i] > self.current[best] {
                best = i;
            }
        }
        if best == usize::MAX {
            return None;
        }
        debug_assert!(total <= self.total);
        self.current[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_respected_and_interleaved() {
        let mut b = SmoothWeighted::new(&[5, 1, 1]);
        let picks: Vec<usize> = (0..7).map(|_| b.pick()).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]); // nginx's documented sequence for 5/1/1
        let mut counts = [0; 3];
        (0..700).for_each(|_| counts[b.pick()] += 1);
        assert_eq!(counts, [500, 100, 100]);
    }

    #[test]
    fn equal_weights_rotate() {
        let mut b = SmoothWeighted::new(&[1, 1, 1]);
        let picks: Vec<usize> = (0..6).map(|_| b.pick()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn unavailable_endpoints_are_skipped_and_weights_kept_among_the_rest() {
        let mut b = SmoothWeighted::new(&[2, 1, 1]);
        let mut counts = [0; 3];
        (0..300).for_each(|_| counts[b.pick_where(|i| i != 1).unwrap()] += 1);
        assert_eq!(counts, [200, 0, 100]);
        assert_eq!(b.pick_where(|_| false), None);
    }

    #[test]
    fn excluding_never_returns_the_skipped_endpoint() {
        let mut b = SmoothWeighted::new(&[10, 1]);
        for _ in 0..50 {
            assert_eq!(b.pick_excluding(0), 1);
        }
        let mut single = SmoothWeighted::new(&[3]);
        assert_eq!(single.pick_excluding(0), 0);
    }
}
