//! `Session`: what one request did, filled in by the phases and recorded once at the end into the
//! shard's metrics and (when enabled) the access log.

use std::net::SocketAddr;
use std::time::Instant;

use smallvec::SmallVec;

use crate::config::{ApiId, ServiceId, UpstreamId};

/// Per-request record.
pub struct Session {
    /// When the complete request head was available.
    pub started: Instant,
    pub listener: usize,
    pub service: Option<ServiceId>,
    pub api: Option<ApiId>,
    pub upstream: Option<UpstreamId>,
    pub endpoint: Option<SocketAddr>,
    /// Status sent to the client; 0 when no response was sent.
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connect_us: Option<u64>,
    pub first_byte_us: Option<u64>,
    /// Why the request failed, for the access log (`connect_timeout`, `response_timeout`, ...).
    pub error: Option<&'static str>,
    /// Method, path and host, captured only when the access log is on.
    pub log: Option<Box<LogFields>>,
}

/// Request fields kept for the access log.
pub struct LogFields {
    pub method: SmallVec<[u8; 8]>,
    pub path: SmallVec<[u8; 64]>,
    pub host: SmallVec<[u8; 32]>,
}

impl Session {
    pub fn new(listener: usize, started: Instant) -> Self {
        Self {
            started,
            listener,
            service: None,
            api: None,
            upstream: None,
            endpoint: None,
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            connect_us: None,
            first_byte_us: None,
            error: None,
            log: None,
        }
    }
}

/// Microseconds since `t0`.
#[inline]
pub fn micros_since(t0: Instant) -> u64 {
    t0.elapsed().as_micros().min(u128::from(u64::MAX)) as u64
}
