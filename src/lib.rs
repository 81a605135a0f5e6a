//! ringway: a dedicated-instance API gateway, thread-per-core on io_uring.
//!
//! Architecture in brief (README.md has the long version):
//! - `main` loads and compiles the TOML config into an immutable [`config::Snapshot`], binds every
//!   listener (SO_REUSEPORT, one socket per worker) and starts [`runtime`].
//! - Each worker is a pinned thread with its own monoio runtime (io_uring, epoll fallback) and a
//!   [`runtime::Shard`] (pool, connection registry, metrics) pointing at the current
//!   [`runtime::Generation`] (one config's route table, balancer state, limiter). Nothing on the
//!   request path is shared between cores but the rate buckets' leases; cores talk only through
//!   typed control messages.
//! - A connection is one local task running the handler the runtime is given ([`proxy::handler`],
//!   wired by [`start`]; the runtime knows nothing of HTTP), whose request loop is the fixed phase
//!   sequence in `proxy/phases.rs`: read head → route → admit → filters → upstream head →
//!   forward (one retry loop) → finish.
//! - The HTTP/1.1 codec ([`http`]) is our own, strict, over `httparse`, and does no I/O.
//!
//! Modules: [`config`], [`runtime`], [`http`], [`proxy`], [`filter`], [`upstream`], [`limit`],
//! [`metrics`], [`admin`], [`error`], [`clock`], [`net`].
#![deny(unsafe_code)]
#![warn(clippy::all, rust_2018_idioms)]

pub mod admin;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod filter;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz_logic;
pub mod http;
pub mod http2;
pub mod limit;
pub mod metrics;
pub mod net;
pub mod policy;
pub mod proxy;
pub mod runtime;
pub mod tls;
pub mod upstream;
pub mod waf;

/// Starts a gateway for `snapshot`: the runtime (workers, endpoint supervisor, admin) with the
/// proxy's request loop serving every accepted connection.
pub fn start(snapshot: std::sync::Arc<config::Snapshot>) -> std::io::Result<runtime::Running> {
    runtime::start(snapshot, proxy::handler, runtime::StartOptions::default())
}

/// Like [`start`], for a config read from `path`: SIGHUP / `POST /reload` re-read that file.
pub fn start_file(
    snapshot: std::sync::Arc<config::Snapshot>,
    path: std::path::PathBuf,
) -> std::io::Result<runtime::Running> {
    runtime::start(snapshot, proxy::handler, runtime::StartOptions { path: Some(path), inherited: Vec::new() })
}

/// Like [`start_file`], taking over listening sockets from a process being upgraded.
pub fn start_upgrade(
    snapshot: std::sync::Arc<config::Snapshot>,
    path: std::path::PathBuf,
    inherited: Vec<runtime::upgrade::Inherited>,
) -> std::io::Result<runtime::Running> {
    runtime::start(snapshot, proxy::handler, runtime::StartOptions { path: Some(path), inherited })
}
