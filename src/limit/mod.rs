//! Rate limiting and admission: instance → service → API → per-key QPS caps, per-API
//! concurrency caps, and IP allow/deny. Phase 5 of the request path (`proxy/phases.rs`).
//!
//! Per-core vs shared: a [`ShardLimiter`] (leases, key tables, in-flight counts) lives on each
//! shard. The instance, service and API rates are each one [`SharedBucket`] (a [`RateRule`], held
//! by the runtime's per-config generation, never by the immutable snapshot) from which cores lease ~1 ms batches (`shared.rs` explains the accuracy bound); per-key buckets are
//! per core (a key whose connections stay on one core is limited exactly; a key spread over N
//! cores may get up to N × `key_qps`).
//!
//! Invariants: a request spends a token at every level only when every level has one; nothing
//! here allocates per request except a new key's table entry.

pub mod bandwidth;
mod cidr;
mod gcra;
mod keys;
mod shared;

pub use cidr::{client_ip, Cidr, IpFilter};
pub use gcra::{LocalBucket, Rate, NS};
pub use keys::KeyTable;
pub use shared::{Feed, Lease, SharedBucket, LEASE_TTL_NS};

use std::sync::Arc;
use std::time::Instant;

/// A rate shared by all cores (instance, service or API cap).
#[derive(Debug)]
pub struct RateRule {
    pub bucket: SharedBucket,
    /// Time origin of the bucket's nanosecond clock, common to all cores.
    pub epoch: Instant,
}

impl RateRule {
    pub fn new(rate: Rate) -> Arc<Self> {
        Arc::new(Self { bucket: SharedBucket::new(rate), epoch: Instant::now() })
    }

    /// A cluster-scoped rule: its tokens come from the node quota the cluster thread feeds.
    pub fn cluster(rate: Rate) -> Arc<Self> {
        Arc::new(Self { bucket: SharedBucket::fed(rate), epoch: Instant::now() })
    }

    pub fn now_ns(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_nanos() as u64 + NS
    }
}

/// Where a per-key limit takes its key from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    ClientIp,
    /// A request header (lower-case name); requests without it share one key.
    Header(String),
    /// The authenticated consumer (`auth` on the API); anonymous requests share one key.
    Consumer,
}

/// A per-key limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRule {
    pub source: KeySource,
    pub rate: Rate,
    pub table_size: usize,
}

/// Which level refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Instance,
    Service,
    Api,
    ServiceKey,
    ApiKey,
    /// A consumer's own cap over every API (`[consumer.NAME] key_qps`).
    Consumer,
}

impl Level {
    pub const ALL: [Level; 6] =
        [Level::Instance, Level::Service, Level::Api, Level::ServiceKey, Level::ApiKey, Level::Consumer];

    pub fn name(self) -> &'static str {
        match self {
            Level::Instance => "instance",
            Level::Service => "service",
            Level::Api => "api",
            Level::ServiceKey => "service_key",
            Level::ApiKey => "api_key",
            Level::Consumer => "consumer",
        }
    }
}

/// A refusal: which rule, its limit and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub level: Level,
    pub limit_per_s: u64,
    pub retry_after_s: u64,
}

/// The rules that apply to one request, borrowed from the generation's shared rates.
pub struct Rules<'a> {
    pub instance: Option<&'a RateRule>,
    pub service: Option<&'a RateRule>,
    pub api: Option<&'a RateRule>,
    pub service_key: Option<(&'a KeyRule, u64)>,
    pub api_key: Option<(&'a KeyRule, u64)>,
    /// The caller's consumer cap and the consumer's index.
    pub consumer: Option<(&'a RateRule, usize)>,
}

/// What a reload keeps of one service's or API's limiter state ([`ShardLimiter::carry_from`]).
#[derive(Debug, Clone, Copy)]
pub struct Carry {
    pub new: usize,
    pub old: usize,
    /// The shared bucket was kept: keep this core's lease of it.
    pub lease: bool,
    /// The key rule is unchanged: keep the per-key table.
    pub keys: bool,
}

/// One core's limiter state for one snapshot.
pub struct ShardLimiter {
    instance: Lease,
    services: Vec<Lease>,
    apis: Vec<Lease>,
    service_keys: Vec<Option<KeyTable>>,
    api_keys: Vec<Option<KeyTable>>,
    /// Leases of consumer caps, by consumer index (grown on first use).
    consumers: Vec<Lease>,
    epoch: Instant,
}

impl ShardLimiter {
    /// `service_keys[i]` / `api_keys[i]`: the key-table size when that service/API has a key rule.
    pub fn new(service_keys: &[Option<usize>], api_keys: &[Option<usize>]) -> Self {
        Self {
            instance: Lease::default(),
            services: vec![Lease::default(); service_keys.len()],
            apis: vec![Lease::default(); api_keys.len()],
            service_keys: service_keys.iter().map(|s| s.map(KeyTable::new)).collect(),
            api_keys: api_keys.iter().map(|s| s.map(KeyTable::new)).collect(),
            consumers: Vec::new(),
            epoch: Instant::now(),
        }
    }

    /// Admits or refuses one request for `service`/`api` at `now`.
    pub fn check(&mut self, service: usize, api: usize, rules: &Rules<'_>, now: Instant) -> Result<(), Refusal> {
        let shared = [(Level::Instance, rules.instance), (Level::Service, rules.service), (Level::Api, rules.api)];
        for (level, rule) in shared {
            let Some(rule) = rule else { continue };
            let lease = match level {
                Level::Instance => &mut self.instance,
                Level::Service => &mut self.services[service],
                _ => &mut self.apis[api],
            };
            let t = rule.now_ns(now);
            if !lease.ensure(&rule.bucket, t) {
                return Err(refusal(level, &rule.bucket.rate, rule.bucket.wait_ns(t)));
            }
        }
        if let Some((rule, c)) = rules.consumer {
            if self.consumers.len() <= c {
                self.consumers.resize(c + 1, Lease::default());
            }
            let t = rule.now_ns(now);
            if !self.consumers[c].ensure(&rule.bucket, t) {
                return Err(refusal(Level::Consumer, &rule.bucket.rate, rule.bucket.wait_ns(t)));
            }
        }
        let local = now.saturating_duration_since(self.epoch).as_nanos() as u64 + NS;
        for (level, key) in [(Level::ServiceKey, rules.service_key), (Level::ApiKey, rules.api_key)] {
            let Some((rule, k)) = key else { continue };
            let table =
                if level == Level::ServiceKey { &mut self.service_keys[service] } else { &mut self.api_keys[api] };
            if let Some(t) = table {
                if !t.has_token(k, &rule.rate, local) {
                    let wait = rule.rate.wait_ns(t.bucket(k).tat, local);
                    return Err(refusal(level, &rule.rate, wait));
                }
            }
        }
        // every level has a token: spend them all
        if rules.instance.is_some() {
            self.instance.spend();
        }
        if rules.service.is_some() {
            self.services[service].spend();
        }
        if rules.api.is_some() {
            self.apis[api].spend();
        }
        if let Some((_, c)) = rules.consumer {
            self.consumers[c].spend();
        }
        for (level, key) in [(Level::ServiceKey, rules.service_key), (Level::ApiKey, rules.api_key)] {
            let Some((rule, k)) = key else { continue };
            let table =
                if level == Level::ServiceKey { &mut self.service_keys[service] } else { &mut self.api_keys[api] };
            if let Some(t) = table {
                let _ = t.bucket(k).take(&rule.rate, local);
            }
        }
        Ok(())
    }

    /// Takes over `old`'s state for what a reload kept: its clock origin always; the instance
    /// lease when `instance`; for each `(new, old, lease, keys)` service pair the lease (when the
    /// shared bucket was kept) and the key table (when the key rule is unchanged); the same for
    /// APIs. A rule that changed starts fresh.
    pub fn carry_from(&mut self, old: &mut ShardLimiter, instance: bool, services: &[Carry], apis: &[Carry]) {
        self.epoch = old.epoch;
        if instance {
            self.instance = old.instance;
        }
        for c in services {
            if c.lease {
                self.services[c.new] = old.services[c.old];
            }
            if c.keys {
                self.service_keys[c.new] = old.service_keys[c.old].take();
            }
        }
        for c in apis {
            if c.lease {
                self.apis[c.new] = old.apis[c.old];
            }
            if c.keys {
                self.api_keys[c.new] = old.api_keys[c.old].take();
            }
        }
    }

    /// Keeps the leases of consumer caps that a reload kept: `(new index, old index)` pairs.
    pub fn carry_consumers(&mut self, old: &ShardLimiter, kept: impl Iterator<Item = (usize, usize)>) {
        for (new, was) in kept {
            if let Some(lease) = old.consumers.get(was) {
                if self.consumers.len() <= new {
                    self.consumers.resize(new + 1, Lease::default());
                }
                self.consumers[new] = *lease;
            }
        }
    }

    /// Keys evicted from the per-key tables so far.
    pub fn evicted_keys(&self) -> u64 {
        self.service_keys.iter().chain(&self.api_keys).flatten().map(|t| t.evicted).sum()
    }
}

fn refusal(level: Level, rate: &Rate, wait_ns: u64) -> Refusal {
    Refusal { level, limit_per_s: rate.per_s, retry_after_s: wait_ns.div_ceil(NS).max(1) }
}

#[cfg(test)]
mod tests;
