//! Admin HTTP endpoint, served by its own thread (never by a worker).
//!
//! Endpoints:
//! - `GET /healthz`: `ok` while the process runs.
//! - `GET /stats/latency`: HDR percentiles (count, min, p50, p90, p99, p99.9, max, mean; µs) per
//!   listener, service, API and upstream, for the total time and the upstream connect and
//!   first-byte phases, merged over workers. JSON; `?format=text` for a table; `?reset=1` starts
//!   a new window after answering.
//! - `GET /metrics`: Prometheus text format 0.0.4.
//! - `GET /upstreams`: endpoints, weights, egress IP and per-upstream counters (merged and per core).
//! - `GET /config`: generation, workers with CPU and I/O driver, listeners, egress IPs.
//! - `GET /` (`/dashboard`): a self-contained HTML page plotting the latency percentiles.
//!
//! Per-core vs shared: the admin thread owns no request-path state. For each scrape it asks every
//! worker for a copy of its metrics over the control channel and waits at most
//! [`SCRAPE_DEADLINE`]; a worker that does not answer is reported as missing, never waited on.

mod dashboard;
mod handlers;
mod process;
mod server;

pub use handlers::AdminState;
pub use server::{start, AdminHandle};

use std::time::Duration;

/// How long a scrape waits for each worker's metrics.
pub const SCRAPE_DEADLINE: Duration = Duration::from_millis(500);
