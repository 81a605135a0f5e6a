//! `[cluster]` and the `scope` keys of the instance, services and APIs.

use std::time::Duration;

use toml::Spanned;

use super::Compiler;
use crate::cluster::{ClusterConfig, OnRedisError, RedisTarget};
use crate::config::error::ConfigError;
use crate::config::file::FileCluster;

pub const DEFAULT_LEASE_MS: u64 = 100;

impl Compiler<'_> {
    pub(super) fn cluster(&self, f: Option<&Spanned<FileCluster>>) -> Result<Option<ClusterConfig>, ConfigError> {
        let Some(c) = f else { return Ok(None) };
        let span = c.span();
        let f = c.get_ref();
        let url_ok = |u: &str| u.starts_with("redis://") && u.len() > "redis://".len();
        let redis = match (&f.redis, &f.redis_cluster) {
            (Some(u), None) if url_ok(u.get_ref()) => RedisTarget::Single(u.get_ref().clone()),
            (Some(u), None) => {
                let msg = format!("\"{}\" is not a redis:// URL (redis://host:port/db)", u.get_ref());
                return Err(self.err("cluster.redis", u.span(), msg));
            }
            (None, Some(list)) => {
                if list.get_ref().is_empty() || !list.get_ref().iter().all(|u| url_ok(u)) {
                    return Err(self.err("cluster.redis_cluster", list.span(), "needs redis:// URLs of cluster nodes"));
                }
                RedisTarget::Cluster(list.get_ref().clone())
            }
            (Some(u), Some(_)) => {
                return Err(self.err("cluster.redis", u.span(), "set either `redis` or `redis_cluster`, not both"))
            }
            (None, None) => return Err(self.err("cluster", span, "needs `redis` or `redis_cluster`")),
        };
        let node = match &f.node {
            Some(n) if n.get_ref().is_empty() || n.get_ref().contains([' ', ',', '=']) => {
                return Err(self.err("cluster.node", n.span(), "must be a name without spaces, ',' or '='"))
            }
            Some(n) => n.get_ref().clone(),
            None => host_name(),
        };
        let lease = match &f.lease_ms {
            Some(l) if !(10..=10_000).contains(l.get_ref()) => {
                return Err(self.err("cluster.lease_ms", l.span(), "must be from 10 to 10000"))
            }
            Some(l) => Duration::from_millis(*l.get_ref()),
            None => Duration::from_millis(DEFAULT_LEASE_MS),
        };
        let on_error = match f.on_redis_error.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("local_share", _)) => OnRedisError::LocalShare,
            Some(("allow", _)) => OnRedisError::Allow,
            Some(("deny", _)) => OnRedisError::Deny,
            Some((other, span)) => {
                let msg = format!("\"{other}\" is not one of \"local_share\", \"allow\", \"deny\"");
                return Err(self.err("cluster.on_redis_error", span, msg));
            }
        };
        Ok(Some(ClusterConfig { redis, node, lease, on_error }))
    }

    /// `scope` at `path`: true for "cluster" (which needs `[cluster]` and a `max_qps` there).
    pub(super) fn scope(
        &self,
        path: &str,
        v: &Option<Spanned<String>>,
        has_limit: bool,
        has_cluster: bool,
    ) -> Result<bool, ConfigError> {
        let Some(v) = v else { return Ok(false) };
        match v.get_ref().as_str() {
            "instance" => Ok(false),
            "cluster" if !has_cluster => Err(self.err(format!("{path}.scope"), v.span(), "needs a [cluster] section")),
            "cluster" if !has_limit => {
                Err(self.err(format!("{path}.scope"), v.span(), "applies to max_qps: set max_qps here"))
            }
            "cluster" => Ok(true),
            other => {
                let msg = format!("\"{other}\" is not \"instance\" or \"cluster\"");
                Err(self.err(format!("{path}.scope"), v.span(), msg))
            }
        }
    }
}

/// This host's name (the default node name).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ringway".into())
}
