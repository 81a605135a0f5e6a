//! Cross-core accuracy, simulated: N shards with their own leases over one shared bucket, driven by
//! a manual clock (nanoseconds), with even and skewed offered load.

use super::*;

/// Offers `offered_per_s` requests/s for `secs` seconds, spread over `cores` by `weights`, and
/// returns admitted requests per 1 s window.
fn simulate(rate: u64, burst: u64, offered_per_s: u64, cores: usize, weights: &[u64], secs: u64) -> Vec<u64> {
    let shared = SharedBucket::new(Rate::new(rate, burst));
    let mut leases = vec![Lease::default(); cores];
    let total_w: u64 = weights.iter().sum();
    let step = NS / offered_per_s;
    let mut per_window = vec![0u64; secs as usize];
    let start = 5 * NS;
    let mut i = 0u64;
    let mut now = start;
    while now < start + secs * NS {
        // deterministic weighted round robin over cores
        let slot = i % total_w;
        let mut acc = 0;
        let core = weights.iter().position(|w| {
            acc += w;
            slot < acc
        });
        let core = core.unwrap_or(0);
        if leases[core].ensure(&shared, now) {
            leases[core].spend();
            per_window[((now - start) / NS) as usize] += 1;
        }
        i += 1;
        now += step;
    }
    per_window
}

fn assert_within(per_window: &[u64], rate: u64, pct: f64) {
    for (w, &n) in per_window.iter().enumerate().skip(1) {
        let err = (n as f64 - rate as f64).abs() / rate as f64 * 100.0;
        assert!(err <= pct, "window {w}: admitted {n}, configured {rate} ({err:.2}% off): {per_window:?}");
    }
}

#[test]
fn instance_rate_is_exact_at_2x_5x_10x_on_2_cores() {
    for factor in [2, 5, 10] {
        let w = simulate(10_000, 1000, 10_000 * factor, 2, &[1, 1], 5);
        assert_within(&w, 10_000, 2.0);
    }
}

#[test]
fn skew_onto_one_core_does_not_change_the_instance_rate() {
    let w = simulate(10_000, 1000, 50_000, 2, &[99, 1], 5);
    assert_within(&w, 10_000, 2.0);
    let w = simulate(10_000, 1000, 50_000, 8, &[1, 0, 0, 0, 0, 0, 0, 0], 5);
    assert_within(&w, 10_000, 2.0);
}

#[test]
fn many_cores_and_small_rates_stay_exact() {
    let w = simulate(200, 20, 2_000, 8, &[3, 1, 1, 1, 1, 1, 1, 1], 5);
    assert_within(&w, 200, 2.0);
}

#[test]
fn first_window_overshoot_is_bounded_by_burst() {
    let w = simulate(10_000, 1000, 100_000, 4, &[1, 1, 1, 1], 3);
    assert!(w[0] <= 10_000 + 1000 + 4 * 10, "first window {} exceeds rate + burst + leases", w[0]);
}

#[test]
fn under_load_below_the_rate_everything_is_admitted() {
    let w = simulate(10_000, 1000, 5_000, 2, &[1, 1], 3);
    assert!(w.iter().all(|&n| n == 5_000), "{w:?}");
}

#[test]
fn idle_core_returns_its_lease() {
    let shared = SharedBucket::new(Rate::new(1000, 1));
    let mut a = Lease::default();
    let mut b = Lease::default();
    let now = NS;
    assert!(a.ensure(&shared, now));
    a.spend(); // core A leased the only token and spent it
    assert!(!b.ensure(&shared, now), "nothing left for B");
    let later = now + NS / 1000;
    assert!(b.ensure(&shared, later), "refilled after 1 ms");
    // B holds a token it never spends; after the TTL it goes back for A
    let after_ttl = later + LEASE_TTL_NS;
    b.expire(&shared, after_ttl);
    assert!(a.ensure(&shared, after_ttl));
}
