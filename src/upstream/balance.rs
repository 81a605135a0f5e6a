//! Balancers, pure and per core: smooth weighted round robin (nginx's algorithm: over a cycle of
//! `sum(weights)` picks each endpoint is chosen exactly `weight` times, interleaved rather than
//! in bursts), power-of-two-choices on in-flight counts (`least_request`), and a consistent-hash
//! ring (`hash(..)`: adding an endpoint moves only its share of keys).
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

/// Power of two choices on per-core in-flight counts (weighted): picks two distinct available
/// endpoints at random and keeps the one with fewer requests in flight per unit of weight.
pub fn p2c(
    rng: &mut u64,
    weights: &[u32],
    in_flight: impl Fn(usize) -> u32,
    available: impl Fn(usize) -> bool,
) -> Option<usize> {
    let candidates: smallvec::SmallVec<[usize; 16]> = (0..weights.len()).filter(|&i| available(i)).collect();
    match candidates.len() {
        0 => None,
        1 => Some(candidates[0]),
        n => {
            let ia = (next(rng) % n as u64) as usize;
            let mut ib = (next(rng) % (n as u64 - 1)) as usize;
            if ib >= ia {
                ib += 1; // two distinct candidates
            }
            let (a, b) = (candidates[ia], candidates[ib]);
            // compare in_flight / weight without division
            let (la, lb) = (
                u64::from(in_flight(a)) * u64::from(weights[b].max(1)),
                u64::from(in_flight(b)) * u64::from(weights[a].max(1)),
            );
            Some(if lb < la { b } else { a })
        }
    }
}

fn next(rng: &mut u64) -> u64 {
    // xorshift64*: per-core, no shared state
    let mut x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// Consistent-hash ring (ketama style): 160 points per unit of weight, so adding or removing one
/// endpoint moves about 1/N of the keys. Built identically on every core (fixed hash seeds).
#[derive(Debug, Clone)]
pub struct Ring {
    points: Vec<(u64, usize)>,
}

/// Points per unit of weight on the ring.
const POINTS_PER_WEIGHT: u32 = 160;

impl Ring {
    /// `names` identify endpoints (their addresses), so a ring is stable across restarts.
    pub fn new(names: &[String], weights: &[u32]) -> Self {
        let mut points = Vec::new();
        for (i, (name, w)) in names.iter().zip(weights).enumerate() {
            for p in 0..POINTS_PER_WEIGHT * w.max(&1) {
                points.push((ring_hash(format!("{name}#{p}").as_bytes()), i));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// The endpoint owning `key`, skipping unavailable ones clockwise.
    pub fn pick(&self, key: u64, available: impl Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|(h, _)| *h < key);
        (0..self.points.len()).map(|k| self.points[(start + k) % self.points.len()].1).find(|&i| available(i))
    }
}

/// The hash used for ring points and keys: fixed seeds, identical on every core and run.
pub fn ring_hash(bytes: &[u8]) -> u64 {
    ahash::RandomState::with_seeds(0x5157_2a1b, 0x9e37_79b9, 0x7f4a_7c15, 0x2545_f491).hash_one(bytes)
}

#[cfg(test)]
mod ring_tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:80")).collect()
    }

    #[test]
    fn adding_an_endpoint_moves_about_one_nth_of_keys() {
        let before = Ring::new(&names(4), &[1; 4]);
        let after = Ring::new(&names(5), &[1; 5]);
        let keys = 20_000u64;
        let moved = (0..keys).filter(|k| {
            let h = ring_hash(&k.to_le_bytes());
            before.pick(h, |_| true) != after.pick(h, |_| true)
        });
        let frac = moved.count() as f64 / keys as f64;
        assert!((0.14..0.27).contains(&frac), "moved {frac:.3} of keys, expected ~1/5");
    }

    #[test]
    fn same_key_same_endpoint_and_failover_is_stable() {
        let r = Ring::new(&names(3), &[1; 3]);
        let h = ring_hash(b"user-42");
        let owner = r.pick(h, |_| true).unwrap();
        assert_eq!(r.pick(h, |_| true), Some(owner));
        let fallback = r.pick(h, |i| i != owner).unwrap();
        assert_ne!(fallback, owner);
        assert_eq!(r.pick(h, |i| i != owner), Some(fallback));
        assert_eq!(r.pick(h, |_| false), None);
    }

    #[test]
    fn p2c_prefers_the_less_loaded_endpoint() {
        let mut rng = 0x1234_5678_9abc_def1;
        let loads = [10u32, 0, 10];
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[p2c(&mut rng, &[1, 1, 1], |i| loads[i], |_| true).unwrap()] += 1;
        }
        assert!(counts[1] > 150, "{counts:?}");
        assert_eq!(p2c(&mut rng, &[1, 1, 1], |i| loads[i], |i| i == 2), Some(2));
    }
}
