//! A generation: one config's worth of per-core state. The worker ([`super::Shard`]) outlives
//! generations; a request pins the generation current when it starts (an `Rc`) and runs on it to
//! the end, so a new config never changes the rules under a request in flight.
//!
//! | lives as long as | what |
//! |---|---|
//! | the worker (`Shard`) | pool, connection registry, drain flag, access-log buffer, metrics, request ids |
//! | a generation | snapshot, shared rate buckets, upstream balancer/health state, limiter leases and key tables, per-API in-flight counts, filter chains |
//!
//! Live state that must survive a new config is keyed by *name*, not by index: [`SharedRates`]
//! reuses a bucket for a rule with the same name and rate, so a reload neither resets nor doubles
//! a cap.

use std::cell::RefCell;
use std::sync::Arc;

use crate::config::{Remap, Snapshot};
use crate::filter::FilterChain;
use crate::limit::{Carry, RateRule, ShardLimiter};
use crate::upstream::UpstreamState;

/// The shared buckets of one config's instance, service and API caps: built once per config and
/// shared by every worker (the only cross-core state on the request path, touched about once per
/// millisecond per busy core).
#[derive(Debug)]
pub struct SharedRates {
    pub instance: Option<Arc<RateRule>>,
    /// By service index in the snapshot.
    pub services: Vec<Option<Arc<RateRule>>>,
    /// By API index in the snapshot.
    pub apis: Vec<Option<Arc<RateRule>>>,
    /// By consumer index in the snapshot.
    pub consumers: Vec<Option<Arc<RateRule>>>,
    /// The egress bandwidth cap (tokens are KiB).
    pub egress: Option<Arc<RateRule>>,
}

impl SharedRates {
    /// Buckets for `snapshot`; a rule whose name and rate are unchanged from `previous` keeps its
    /// bucket (and so the tokens already spent). `previous` comes with the name→index map of the
    /// reload ([`Remap`]), so services and APIs are matched as everywhere else (an API by its
    /// service's name and its own).
    pub fn new(snapshot: &Snapshot, previous: Option<(&SharedRates, &Remap)>) -> Arc<Self> {
        // a cluster-scoped rule's bucket is fed by the cluster thread; a rule keeps its bucket only
        // if neither its rate nor its scope changed
        let carry_scoped = |old: Option<&Arc<RateRule>>, rate: crate::limit::Rate, cluster: bool| match old {
            Some(r) if r.bucket.rate == rate && r.bucket.feed.is_some() == cluster => r.clone(),
            _ if cluster => RateRule::cluster(rate),
            _ => RateRule::new(rate),
        };
        let carry = |old: Option<&Arc<RateRule>>, rate: crate::limit::Rate| carry_scoped(old, rate, false);
        let instance = (snapshot.instance.limit).map(|rate| {
            carry_scoped(previous.and_then(|(p, _)| p.instance.as_ref()), rate, snapshot.instance.limit_cluster)
        });
        let services = (snapshot.services.iter().enumerate())
            .map(|(j, svc)| {
                let old = previous.and_then(|(p, m)| kept(&p.services, &m.services, j));
                svc.limit.map(|rate| carry_scoped(old, rate, svc.limit_cluster))
            })
            .collect();
        let apis = (snapshot.apis.iter().enumerate())
            .map(|(j, api)| {
                let old = previous.and_then(|(p, m)| kept(&p.apis, &m.apis, j));
                api.limit.map(|rate| carry_scoped(old, rate, api.limit_cluster))
            })
            .collect();
        let consumers = (snapshot.consumers.iter().enumerate())
            .map(|(j, c)| {
                let old = previous.and_then(|(p, m)| kept(&p.consumers, &m.consumers, j));
                c.limit.map(|rate| carry(old, rate))
            })
            .collect();
        let egress = (snapshot.instance.egress_bandwidth)
            .map(|b| carry(previous.and_then(|(p, _)| p.egress.as_ref()), crate::limit::bandwidth::egress_rate(b)));
        Arc::new(Self { instance, services, apis, consumers, egress })
    }

    /// The cluster-scoped rules, named for Redis: `instance`, `service:NAME`, `api:SVC/NAME`.
    pub fn cluster_rules(&self, snapshot: &Snapshot) -> Vec<(String, Arc<RateRule>)> {
        let fed = |r: &Option<Arc<RateRule>>| r.as_ref().filter(|r| r.bucket.feed.is_some()).cloned();
        let mut out = Vec::new();
        out.extend(fed(&self.instance).map(|r| ("instance".to_string(), r)));
        for (i, r) in self.services.iter().enumerate() {
            out.extend(fed(r).map(|r| (format!("service:{}", snapshot.services[i].name), r)));
        }
        for (i, r) in self.apis.iter().enumerate() {
            out.extend(fed(r).map(|r| (format!("api:{}", snapshot.api_label(i)), r)));
        }
        out
    }
}

/// The previous config's rule for item `j` of the new one (`map`: new index → old index).
fn kept<'a>(rules: &'a [Option<Arc<RateRule>>], map: &[Option<usize>], j: usize) -> Option<&'a Arc<RateRule>> {
    map[j].and_then(|i| rules[i].as_ref())
}

/// One config's per-core state.
pub struct Generation {
    pub snapshot: Arc<Snapshot>,
    pub rates: Arc<SharedRates>,
    pub upstreams: Vec<UpstreamState>,
    pub limiter: RefCell<ShardLimiter>,
    /// Requests in flight per API (for `max_in_flight`).
    pub api_in_flight: RefCell<Vec<u32>>,
    /// Request filters per API (empty chains until a filter is configured).
    pub filters: Vec<FilterChain>,
    /// JWTs this core verified (on this config's keys), until they expire.
    pub tokens: RefCell<crate::policy::jwt::TokenCache>,
}

impl Generation {
    pub fn new(snapshot: Arc<Snapshot>, rates: Arc<SharedRates>) -> Self {
        let service_keys: Vec<Option<usize>> =
            snapshot.services.iter().map(|s| s.key_limit.as_ref().map(|k| k.table_size)).collect();
        let api_keys: Vec<Option<usize>> =
            snapshot.apis.iter().map(|a| a.key_limit.as_ref().map(|k| k.table_size)).collect();
        let no_filters: FilterChain = std::rc::Rc::new([]);
        // one chain per WAF, shared by the APIs that use it
        let waf_chains: Vec<FilterChain> = (snapshot.wafs.iter().enumerate())
            .map(|(id, w)| {
                let filter: std::rc::Rc<dyn crate::filter::RequestFilter> =
                    std::rc::Rc::new(crate::waf::WafFilter::new(id, w.clone()));
                std::rc::Rc::from(vec![filter])
            })
            .collect();
        Self {
            upstreams: snapshot.upstreams.iter().map(UpstreamState::new).collect(),
            limiter: RefCell::new(ShardLimiter::new(&service_keys, &api_keys)),
            api_in_flight: RefCell::new(vec![0; snapshot.apis.len()]),
            filters: (snapshot.apis.iter())
                .map(|a| a.waf.map_or_else(|| no_filters.clone(), |w| waf_chains[w].clone()))
                .collect(),
            tokens: RefCell::default(),
            snapshot,
            rates,
        }
    }

    /// The generation for `snapshot` on this core, taking over what `old` knew of everything
    /// that stayed (by name): endpoint availability (health, ejection) and failure reports per
    /// upstream and endpoint address; limiter leases of kept buckets and per-key tables of
    /// unchanged key rules.
    pub fn carry(snapshot: Arc<Snapshot>, rates: Arc<SharedRates>, old: &Generation, map: &Remap) -> Self {
        let next = Generation::new(snapshot, rates);
        let (o, n) = (&old.snapshot, &next.snapshot);
        for (j, i) in map.upstreams.iter().enumerate() {
            let Some(i) = *i else { continue };
            let (from, to) = (&old.upstreams[i], &next.upstreams[j]);
            for (ej, ei) in map.endpoints[j].iter().enumerate() {
                if let Some(ei) = *ei {
                    to.available[ej].set(from.available[ei].get());
                    to.reported_failure[ej].set(from.reported_failure[ei].get());
                }
            }
        }
        let same = |a: &Option<Arc<crate::limit::RateRule>>, b: &Option<Arc<crate::limit::RateRule>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        let services: Vec<Carry> = map
            .services
            .iter()
            .enumerate()
            .filter_map(|(j, i)| {
                let i = (*i)?;
                let lease = same(&old.rates.services[i], &next.rates.services[j]);
                let keys = n.services[j].key_limit.is_some() && o.services[i].key_limit == n.services[j].key_limit;
                Some(Carry { new: j, old: i, lease, keys })
            })
            .collect();
        let apis: Vec<Carry> = map
            .apis
            .iter()
            .enumerate()
            .filter_map(|(j, i)| {
                let i = (*i)?;
                let lease = same(&old.rates.apis[i], &next.rates.apis[j]);
                let keys = n.apis[j].key_limit.is_some() && o.apis[i].key_limit == n.apis[j].key_limit;
                Some(Carry { new: j, old: i, lease, keys })
            })
            .collect();
        let instance = same(&old.rates.instance, &next.rates.instance);
        next.limiter.borrow_mut().carry_from(&mut old.limiter.borrow_mut(), instance, &services, &apis);
        let consumers = (map.consumers.iter().enumerate()).filter_map(|(j, i)| {
            i.filter(|&i| same(&old.rates.consumers[i], &next.rates.consumers[j])).map(|i| (j, i))
        });
        next.limiter.borrow_mut().carry_consumers(&old.limiter.borrow(), consumers);
        next
    }

    /// The config generation number (`Snapshot::generation`).
    pub fn id(&self) -> u64 {
        self.snapshot.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(api_qps: u64, gen: u64) -> Snapshot {
        let text = format!(
            r#"
[instance]
max_qps = 1000
[[listener]]
listen = "127.0.0.1:0"
[upstream.u]
endpoints = [{{ addr = "127.0.0.1:9" }}]
[service.s]
hosts = []
[[service.s.api]]
name = "a"
path = "/a"
upstream = "u"
max_qps = {api_qps}
[[service.s.api]]
name = "b"
path = "/b"
upstream = "u"
max_qps = 7
"#
        );
        crate::config::compile(&text, gen).expect("test config compiles")
    }

    #[test]
    fn unchanged_rules_keep_their_bucket_by_name() {
        let old = snapshot(50, 1);
        let old_rates = SharedRates::new(&old, None);
        let new = snapshot(60, 2);
        let new_rates = SharedRates::new(&new, Some((&old_rates, &Remap::new(&old, &new))));
        let same = |a: &Option<Arc<RateRule>>, b: &Option<Arc<RateRule>>| {
            Arc::ptr_eq(a.as_ref().unwrap(), b.as_ref().unwrap())
        };
        assert!(same(&old_rates.instance, &new_rates.instance), "instance cap unchanged: carried over");
        assert!(same(&old_rates.apis[1], &new_rates.apis[1]), "api b unchanged: carried over");
        assert!(!same(&old_rates.apis[0], &new_rates.apis[0]), "api a's rate changed: a new bucket");
        assert_eq!(new_rates.apis[0].as_ref().unwrap().bucket.rate.per_s, 60);
    }
}
