//! Cluster-scoped caps: several ringway nodes enforce one rate through Redis without Redis ever
//! being on a request's path.
//!
//! Each cluster-scoped rule's node-local bucket ([`crate::limit::SharedBucket`] with a feed) holds
//! a quota of tokens that the workers lease from exactly as from a local bucket. This module's
//! thread keeps that quota topped up: every tick it estimates the node's demand, leases about
//! `lease_ms` worth of it from the rule's Redis-side GCRA bucket (`redis_bucket`), and gives back
//! what sits unused. A heartbeat registers the node and reads who else is alive.
//!
//! When Redis fails or is slow (a call over half a lease interval), `on_redis_error` applies from
//! the next tick: `local_share` feeds the quota locally at cap / live nodes, `allow` opens it,
//! `deny` empties it. When Redis answers again the locally fed tokens are dropped and leasing
//! resumes; the Redis bucket's burst is 40 ms worth, so a resumption cannot overshoot the cap by
//! more than that.

pub mod redis_bucket;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use redis_bucket::{BucketSpec, Scripts};

use crate::limit::RateRule;

/// `[cluster] on_redis_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisError {
    /// Enforce cap / live nodes locally.
    LocalShare,
    Allow,
    Deny,
}

/// Where the cluster's Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Single(String),
    Cluster(Vec<String>),
}

/// `[cluster]`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub redis: RedisTarget,
    pub node: String,
    pub lease: Duration,
    pub on_error: OnRedisError,
}

/// A node as its heartbeat shows it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    /// Unix milliseconds of its last heartbeat.
    pub last_heartbeat_ms: u64,
    /// Its current lease rate per rule, tokens per second.
    pub rates: String,
}

/// What `/cluster` and `/metrics` show.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub node: String,
    /// "redis" (leasing), or the `on_redis_error` mode in force.
    pub mode: &'static str,
    pub redis_errors: u64,
    /// Round trip of the last Redis call, microseconds.
    pub redis_latency_us: u64,
    pub live_nodes: Vec<NodeInfo>,
    /// Per rule: tokens leased so far and the current lease rate (tokens/s).
    pub rules: BTreeMap<String, (u64, f64)>,
}

pub type StatusHandle = Arc<Mutex<Status>>;

/// The cluster-scoped rules running now: (rule name, its node bucket).
pub type RuleSource = Box<dyn Fn() -> Vec<(String, Arc<RateRule>)> + Send>;

const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node whose heartbeat is older than this is not alive.
const NODE_TTL_MS: u64 = 3_000;
/// Heartbeats older than this are removed.
const NODE_FORGET_MS: u64 = 30_000;
const RECONNECT_EVERY: Duration = Duration::from_millis(250);
const NODES_KEY: &str = "ringway:nodes";

/// Starts the cluster thread; it ends when `stop` is set.
pub fn start(cfg: ClusterConfig, rules: RuleSource, stop: Arc<AtomicBool>) -> std::io::Result<StatusHandle> {
    let status: StatusHandle =
        Arc::new(Mutex::new(Status { node: cfg.node.clone(), mode: "starting", ..Default::default() }));
    let shared = status.clone();
    std::thread::Builder::new().name("ringway-cluster".into()).spawn(move || {
        let mut node = Node::new(cfg, shared);
        while !stop.load(Ordering::SeqCst) {
            let t0 = Instant::now();
            node.tick(&rules());
            std::thread::sleep(node.tick_every().saturating_sub(t0.elapsed()));
        }
        node.leave();
    })?;
    Ok(status)
}

/// Per rule, what the thread remembers between ticks.
struct RuleState {
    spec: BucketSpec,
    rule: Arc<RateRule>,
    last_spent: u64,
    last_starved: u64,
    /// Demand estimate, tokens per second.
    demand: f64,
    leased_total: u64,
    at: Instant,
    /// Fractional tokens of the local share not fed yet (a tick's share is rarely whole).
    credit: f64,
}

struct Node {
    cfg: ClusterConfig,
    status: StatusHandle,
    scripts: Scripts,
    con: Option<Box<dyn redis::ConnectionLike + Send>>,
    /// Redis failed and has not answered since: `on_redis_error` is in force.
    failed: bool,
    last_connect_try: Option<Instant>,
    last_heartbeat: Option<Instant>,
    live: usize,
    rules: HashMap<String, RuleState>,
}

impl Node {
    fn new(cfg: ClusterConfig, status: StatusHandle) -> Self {
        Self {
            cfg,
            status,
            scripts: Scripts::default(),
            con: None,
            failed: false,
            last_connect_try: None,
            last_heartbeat: None,
            live: 1,
            rules: HashMap::new(),
        }
    }

    fn tick_every(&self) -> Duration {
        (self.cfg.lease / 10).clamp(Duration::from_millis(5), Duration::from_millis(20))
    }

    /// Half a lease interval (at least 20 ms): a Redis call slower than this counts as failed.
    fn call_timeout(&self) -> Duration {
        (self.cfg.lease / 2).max(Duration::from_millis(20))
    }

    fn connect(&mut self) -> redis::RedisResult<Box<dyn redis::ConnectionLike + Send>> {
        let t = self.call_timeout();
        match &self.cfg.redis {
            RedisTarget::Single(url) => {
                let c =
                    redis::Client::open(url.as_str())?.get_connection_with_timeout(t.max(Duration::from_millis(50)))?;
                c.set_read_timeout(Some(t))?;
                c.set_write_timeout(Some(t))?;
                Ok(Box::new(c))
            }
            RedisTarget::Cluster(urls) => {
                let client = redis::cluster::ClusterClientBuilder::new(urls.clone())
                    .connection_timeout(t.max(Duration::from_millis(50)))
                    .response_timeout(t)
                    .build()?;
                Ok(Box::new(client.get_connection()?))
            }
        }
    }

    fn failed(&mut self, what: &str, e: &redis::RedisError) {
        if !self.failed {
            tracing::warn!(error = %e, what, mode = ?self.cfg.on_error, "Redis failed; on_redis_error applies");
            self.failed = true;
        }
        self.con = None;
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        st.redis_errors += 1;
    }

    fn tick(&mut self, rules: &[(String, Arc<RateRule>)]) {
        let now = Instant::now();
        if self.con.is_none() && self.last_connect_try.is_none_or(|t| now - t >= RECONNECT_EVERY) {
            self.last_connect_try = Some(now);
            match self.connect() {
                Ok(c) => self.con = Some(c),
                Err(e) => self.failed("connect", &e),
            }
        }
        if self.last_heartbeat.is_none_or(|t| now - t >= HEARTBEAT) {
            self.last_heartbeat = Some(now);
            self.heartbeat();
        }
        let keys: Vec<String> = rules.iter().map(|(n, r)| rule_key(n, r)).collect();
        // rules that left the config are forgotten (their Arc goes with the old generation)
        self.rules.retain(|k, _| keys.contains(k));
        for ((name, rule), key) in rules.iter().zip(&keys) {
            self.rules.entry(key.clone()).or_insert_with(|| RuleState {
                spec: BucketSpec::new(name, rule.bucket.rate.per_s, redis_burst(rule.bucket.rate.per_s)),
                rule: rule.clone(),
                last_spent: 0,
                last_starved: 0,
                demand: 0.0,
                leased_total: 0,
                at: now,
                credit: 0.0,
            });
        }
        for key in &keys {
            self.feed(key, now);
        }
        let mut st = self.status.lock().unwrap_or_else(|e| e.into_inner());
        st.mode = match (self.failed, self.cfg.on_error) {
            (false, _) => "redis",
            (true, OnRedisError::LocalShare) => "local_share",
            (true, OnRedisError::Allow) => "allow",
            (true, OnRedisError::Deny) => "deny",
        };
        st.rules = self.rules.iter().map(|(k, s)| (k.clone(), (s.leased_total, s.demand))).collect();
    }

    /// Tops up (or trims) one rule's node quota.
    fn feed(&mut self, key: &str, now: Instant) {
        let lease_s = self.cfg.lease.as_secs_f64();
        let live = self.live.max(1) as f64;
        let on_error = self.cfg.on_error;
        let failed = self.failed;
        let Some(state) = self.rules.get_mut(key) else { return };
        let Some(feed) = state.rule.bucket.feed.as_deref() else { return };
        let cap = state.rule.bucket.rate.per_s as f64;
        let elapsed = now.saturating_duration_since(state.at).as_secs_f64().max(1e-3);
        state.at = now;
        let spent = feed.spent();
        let starved = feed.starved();
        let consumed = spent.saturating_sub(state.last_spent) as f64;
        let was_starved = starved > state.last_starved;
        (state.last_spent, state.last_starved) = (spent, starved);
        // demand: what was taken, and more when cores found the quota empty
        let observed = consumed / elapsed;
        state.demand = 0.5 * state.demand + 0.5 * observed;
        if was_starved {
            state.demand = (state.demand.max(cap / live) * 1.5).min(cap);
        }
        if failed {
            match on_error {
                OnRedisError::LocalShare => {
                    let share = cap / live;
                    let ceiling = (share * lease_s).max(1.0) as u64;
                    state.credit += share * elapsed;
                    let add = state.credit.floor();
                    state.credit -= add;
                    feed.set_quota((feed.quota() + add as u64).min(ceiling));
                }
                OnRedisError::Allow => feed.set_quota(u64::MAX / 4),
                OnRedisError::Deny => feed.set_quota(0),
            }
            return;
        }
        // the reserve: enough for one lease interval of demand, but never more than 1.5x this
        // node's fair share of one (a big reserve moves tokens between 1 s windows as it swings)
        let ceiling = (cap / live * lease_s * 1.5).max(1.0);
        let target = (state.demand * lease_s * 1.25).clamp(1.0, ceiling) as u64;
        let quota = feed.quota();
        let Some(con) = self.con.as_deref_mut() else { return };
        let t0 = Instant::now();
        let result = if quota < target {
            self.scripts.take(con, &state.spec, target - quota).map(|got| {
                feed.add_quota(got);
                state.leased_total += got;
            })
        } else if quota > target.saturating_mul(2) + 1 {
            let back = feed.take_quota(quota - target);
            self.scripts.give_back(con, &state.spec, back)
        } else {
            Ok(())
        };
        let took = t0.elapsed();
        match result {
            Ok(()) if took <= self.call_timeout() => {
                self.status.lock().unwrap_or_else(|e| e.into_inner()).redis_latency_us = took.as_micros() as u64;
            }
            Ok(()) => {
                let e = redis::RedisError::from((redis::ErrorKind::IoError, "Redis call over half a lease interval"));
                self.failed("lease", &e);
            }
            Err(e) => self.failed("lease", &e),
        }
    }

    fn heartbeat(&mut self) {
        let Some(con) = self.con.as_deref_mut() else { return };
        let now_ms = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let rates: Vec<String> = self.rules.iter().map(|(k, s)| format!("{k}={:.0}", s.demand)).collect();
        let value = format!("{now_ms} {}", rates.join(","));
        let result = (|| -> redis::RedisResult<Vec<(String, String)>> {
            redis::cmd("HSET").arg(NODES_KEY).arg(&self.cfg.node).arg(&value).query::<()>(con)?;
            redis::cmd("HGETALL").arg(NODES_KEY).query(con)
        })();
        match result {
            Ok(all) => {
                if std::mem::take(&mut self.failed) {
                    tracing::info!("Redis answers again; leasing resumes");
                    // tokens fed locally while Redis was away are not Redis's: drop them
                    for s in self.rules.values() {
                        if let Some(f) = s.rule.bucket.feed.as_deref() {
                            f.set_quota(0);
                        }
                    }
                }
                let mut live = Vec::new();
                for (name, v) in all {
                    let (ts, rates) = v.split_once(' ').unwrap_or((v.as_str(), ""));
                    let ts: u64 = ts.parse().unwrap_or(0);
                    if now_ms.saturating_sub(ts) > NODE_FORGET_MS {
                        let _ = redis::cmd("HDEL").arg(NODES_KEY).arg(&name).query::<()>(con);
                    } else if now_ms.saturating_sub(ts) <= NODE_TTL_MS {
                        live.push(NodeInfo { name, last_heartbeat_ms: ts, rates: rates.to_string() });
                    }
                }
                self.live = live.len().max(1);
                self.status.lock().unwrap_or_else(|e| e.into_inner()).live_nodes = live;
            }
            Err(e) => self.failed("heartbeat", &e),
        }
    }

    /// On shutdown: unspent quota goes back and the node leaves the list.
    fn leave(&mut self) {
        let Some(con) = self.con.as_deref_mut() else { return };
        for s in self.rules.values() {
            if let Some(f) = s.rule.bucket.feed.as_deref() {
                let back = f.take_quota(f.quota());
                let _ = self.scripts.give_back(con, &s.spec, back);
            }
        }
        let _ = redis::cmd("HDEL").arg(NODES_KEY).arg(&self.cfg.node).query::<()>(con);
    }
}

/// A rule's identity across reloads: its name and rate (a changed rate is a new bucket).
fn rule_key(name: &str, rule: &RateRule) -> String {
    format!("{name}:{}", rule.bucket.rate.per_s)
}

/// The Redis bucket's burst: 40 ms of the rate (at least 1), whatever the local burst: enough that
/// nodes topping up every 10-20 ms lose no tokens between their calls, small enough that a node
/// resuming after an outage cannot push a 1 s window more than 4% over the cap.
fn redis_burst(per_s: u64) -> u64 {
    (per_s / 25).max(1)
}
