//! The Redis side of a cluster-scoped cap: one GCRA bucket per rule, kept as one key (its TAT in
//! microseconds of Redis's own clock, so node clocks never matter), taken from and given back to
//! by Lua scripts that run atomically on the server. One key per script call, so it works on a
//! Redis Cluster too.

use redis::{ConnectionLike, Script};

/// Takes up to ARGV[3] tokens; returns how many it got. A missing key starts with no burst.
/// ARGV: T (µs per token, may be fractional), tolerance (µs), want, key TTL (ms).
const TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1])
local tol = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local stored = redis.call('GET', KEYS[1])
-- how far ahead of now the bucket is, in small numbers (the clock itself is too large for
-- fractions to survive). A bucket that does not exist yet (first use, or a Redis that came back
-- empty) starts at its tolerance: it admits the rate from now on, never a burst on top.
local ahead = tol
if stored then ahead = math.max(tonumber(stored) - now, 0) end
local k = math.floor((tol + T - ahead) / T + 0.001)
if k > want then k = want end
if k <= 0 then return 0 end
redis.call('SET', KEYS[1], string.format('%.0f', now + ahead + k * T), 'PX', ARGV[4])
return k
"#;

/// Gives ARGV[2] tokens back (never before now: returned tokens cannot build a burst).
const GIVE_BACK: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local back = tat - tonumber(ARGV[1]) * tonumber(ARGV[2])
if back < now then back = now end
if tat > now then redis.call('SET', KEYS[1], string.format('%.0f', back), 'PX', ARGV[3]) end
return 0
"#;

/// The scripts, loaded once per connection (EVALSHA, falling back to EVAL).
pub struct Scripts {
    take: Script,
    give_back: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self { take: Script::new(TAKE), give_back: Script::new(GIVE_BACK) }
    }
}

/// A cluster bucket's parameters, in Redis terms.
#[derive(Debug, Clone)]
pub struct BucketSpec {
    /// `ringway:bucket:<rule>:<rate>:<burst>`: a changed rate is a new bucket.
    pub key: String,
    /// Microseconds per token.
    pub t_us: f64,
    pub tolerance_us: f64,
}

impl BucketSpec {
    /// A bucket of `per_s` tokens a second, `burst` at once.
    pub fn new(rule: &str, per_s: u64, burst: u64) -> Self {
        let t_us = 1_000_000.0 / per_s.max(1) as f64;
        Self {
            key: format!("ringway:bucket:{{{rule}}}:{per_s}:{burst}"),
            t_us,
            tolerance_us: (burst.max(1) - 1) as f64 * t_us,
        }
    }

    fn ttl_ms(&self) -> u64 {
        // long enough to outlive any TAT ahead of now, short enough to clean up after a rule goes
        60_000 + (self.tolerance_us / 1000.0) as u64
    }
}

impl Scripts {
    pub fn take(&self, con: &mut dyn ConnectionLike, b: &BucketSpec, want: u64) -> redis::RedisResult<u64> {
        self.take.key(&b.key).arg(b.t_us).arg(b.tolerance_us).arg(want).arg(b.ttl_ms()).invoke(con)
    }

    pub fn give_back(&self, con: &mut dyn ConnectionLike, b: &BucketSpec, n: u64) -> redis::RedisResult<()> {
        let _: i64 = self.give_back.key(&b.key).arg(n).arg(b.t_us).arg(b.ttl_ms()).invoke(con)?;
        Ok(())
    }
}
