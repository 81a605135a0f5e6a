//! DNS-named endpoints: one thread, off the workers, resolves every name the running config uses
//! (all A and AAAA records) every `dns_refresh_ms`, and when a name's addresses change has the
//! reloader compile the running config again with the new addresses. Workers then switch to it
//! at a request boundary like after any reload, so the endpoint-set update reaches them as a
//! message, and what stays is carried over by address: health and outlier state, pooled
//! connections; a vanished address gets no new request (its pooled connections are closed,
//! requests in flight finish).
//!
//! Stale-if-error: a failed or empty answer keeps the last good addresses (and is retried
//! sooner). A name that never resolved has no endpoints (the upstream answers as
//! `when_all_down` says). Start-up does not wait for DNS: the first pass runs at once after the
//! workers start.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, Protocol, ResolverConfig, ResolverOpts};
use hickory_resolver::Resolver;

use super::reload::Reloader;
use crate::config::{Resolutions, Snapshot};

/// How often the thread looks for names that are due.
const TICK: Duration = Duration::from_millis(100);
/// A failed resolution is retried after at most this long.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(2);
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/upstreams` shows of one name.
#[derive(Debug, Clone)]
pub struct NameStatus {
    /// The addresses in use (the last good answer).
    pub addresses: Vec<IpAddr>,
    /// Seconds the last good answer was valid for.
    pub ttl_s: Option<u64>,
    /// The last attempt: `Ok` or why it failed.
    pub last: Result<(), String>,
    pub at: Option<SystemTime>,
}

/// Name → status, shared with the admin thread.
pub type DnsTable = Arc<Mutex<BTreeMap<String, NameStatus>>>;

/// One resolver for a DNS server list (empty: the host's /etc/resolv.conf).
pub fn resolver(servers: &[SocketAddr]) -> std::io::Result<Resolver> {
    let (config, mut opts) = match servers.is_empty() {
        true => hickory_resolver::system_conf::read_system_conf().map_err(std::io::Error::other)?,
        false => {
            let group: Vec<NameServerConfig> = servers
                .iter()
                .flat_map(|a| [NameServerConfig::new(*a, Protocol::Udp), NameServerConfig::new(*a, Protocol::Tcp)])
                .collect();
            (ResolverConfig::from_parts(None, vec![], group), ResolverOpts::default())
        }
    };
    // every answer is fresh (a change shows at the next refresh), both families, quick failure
    opts.cache_size = 0;
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts.timeout = QUERY_TIMEOUT;
    opts.attempts = 1;
    Resolver::new(config, opts)
}

/// Resolves `host` once: its addresses (sorted, unique) and how long the answer is valid.
pub fn resolve(r: &Resolver, host: &str) -> Result<(Vec<IpAddr>, Duration), String> {
    let fqdn = format!("{host}.");
    match r.lookup_ip(fqdn.as_str()) {
        Ok(answer) => {
            let mut ips: Vec<IpAddr> = answer.iter().collect();
            ips.sort();
            ips.dedup();
            if ips.is_empty() {
                return Err("no A or AAAA records".into());
            }
            Ok((ips, answer.valid_until().saturating_duration_since(Instant::now())))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The names of `snapshot` and the shortest refresh interval each is used with.
fn names_of(snapshot: &Snapshot) -> BTreeMap<String, Duration> {
    let mut out: BTreeMap<String, Duration> = BTreeMap::new();
    for u in &snapshot.upstreams {
        for n in &u.names {
            let e = out.entry(n.host.clone()).or_insert(u.dns_refresh);
            *e = (*e).min(u.dns_refresh);
        }
    }
    out
}

/// `--check`: one resolution of every name; a warning for each that does not resolve now.
pub fn check_names(snapshot: &Snapshot) -> Vec<String> {
    let names = names_of(snapshot);
    if names.is_empty() {
        return Vec::new();
    }
    let r = match resolver(&snapshot.instance.resolver) {
        Ok(r) => r,
        Err(e) => return vec![format!("cannot set up the DNS resolver: {e}")],
    };
    (names.keys())
        .filter_map(|host| resolve(&r, host).err().map(|e| format!("DNS name {host} does not resolve now: {e}")))
        .collect()
}

/// Starts the DNS thread; it ends when `stop` is set.
pub fn start(reloader: Arc<Reloader>, stop: Arc<std::sync::atomic::AtomicBool>) -> std::io::Result<DnsTable> {
    let table: DnsTable = Arc::default();
    let shared = table.clone();
    std::thread::Builder::new().name("ringway-dns".into()).spawn(move || {
        let mut state = Pass { table: shared, resolved: Resolutions::new(), due: BTreeMap::new(), resolver: None };
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            state.run(&reloader);
            std::thread::sleep(TICK);
        }
    })?;
    Ok(table)
}

struct Pass {
    table: DnsTable,
    /// The last good addresses of every name in use.
    resolved: Resolutions,
    /// When each name is next resolved.
    due: BTreeMap<String, Instant>,
    /// The resolver and the server list it was made for.
    resolver: Option<(Vec<SocketAddr>, Resolver)>,
}

impl Pass {
    fn run(&mut self, reloader: &Reloader) {
        let snapshot = reloader.snapshot();
        let names = names_of(&snapshot);
        if names.is_empty() {
            return;
        }
        let servers = &snapshot.instance.resolver;
        if self.resolver.as_ref().is_none_or(|(s, _)| s != servers) {
            match resolver(servers) {
                Ok(r) => self.resolver = Some((servers.clone(), r)),
                Err(e) => {
                    tracing::error!(error = %e, "Cannot set up the DNS resolver");
                    return;
                }
            }
        }
        let Some((_, r)) = &self.resolver else { return };
        // names no longer in use are forgotten
        self.resolved.retain(|h, _| names.contains_key(h));
        self.due.retain(|h, _| names.contains_key(h));
        self.table.lock().unwrap_or_else(|e| e.into_inner()).retain(|h, _| names.contains_key(h));
        let now = Instant::now();
        for (host, refresh) in &names {
            if self.due.get(host).is_some_and(|d| *d > now) {
                continue;
            }
            let result = resolve(r, host);
            let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
            let status = table.entry(host.clone()).or_insert(NameStatus {
                addresses: Vec::new(),
                ttl_s: None,
                last: Ok(()),
                at: None,
            });
            status.at = Some(SystemTime::now());
            match result {
                Ok((ips, ttl)) => {
                    if self.resolved.get(host) != Some(&ips) {
                        tracing::info!(name = %host, addresses = ?ips, "DNS name resolved to new addresses");
                    }
                    (status.addresses, status.ttl_s, status.last) = (ips.clone(), Some(ttl.as_secs()), Ok(()));
                    self.resolved.insert(host.clone(), ips);
                    self.due.insert(host.clone(), now + *refresh);
                }
                Err(e) => {
                    // stale-if-error: the last good addresses stay in use
                    tracing::warn!(name = %host, error = %e, kept = ?status.addresses, "DNS resolution failed; keeping the last good addresses");
                    status.last = Err(e);
                    self.due.insert(host.clone(), now + (*refresh).min(RETRY_AFTER_ERROR));
                }
            }
        }
        if snapshot.resolved != self.resolved {
            if let Err(e) = reloader.refresh_dns(&self.resolved) {
                tracing::error!(error = %e, "Could not apply the new DNS addresses; the running config stays");
            }
        }
    }
}
