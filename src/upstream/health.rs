//! Active health checking: the pure threshold state machine, and the prober that runs it (one
//! thread per upstream, never a worker).
//!
//! Per-core vs shared: probes run off the workers; a state change becomes one control message
//! per worker (`ControlMsg::Endpoint`), which flips the endpoint's availability in every shard.
//!
//! Invariants: an endpoint starts healthy; it turns unhealthy after `unhealthy_after` consecutive
//! failed probes and healthy again after `healthy_after` consecutive good ones.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// `health = { .. }` of an upstream, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// HTTP GET path; `None` = TCP connect check.
    pub path: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_after: u32,
    pub healthy_after: u32,
    /// Inclusive range of statuses that count as healthy.
    pub expected_status: (u16, u16),
}

/// Threshold state of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthState {
    pub healthy: bool,
    streak: u32,
}

impl Default for HealthState {
    fn default() -> Self {
        Self { healthy: true, streak: 0 }
    }
}

impl HealthState {
    /// A state carried over a reload.
    pub fn with(healthy: bool) -> Self {
        Self { healthy, streak: 0 }
    }

    /// Feeds one probe result; returns `Some(new_state)` when the endpoint flips.
    pub fn observe(&mut self, ok: bool, cfg: &HealthConfig) -> Option<bool> {
        if ok == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.healthy { cfg.unhealthy_after } else { cfg.healthy_after };
        if self.streak >= needed.max(1) {
            self.healthy = ok;
            self.streak = 0;
            return Some(ok);
        }
        None
    }
}

/// One probe: connect (from `source`), complete a TLS handshake for TLS upstreams, and for HTTP
/// checks send a GET and read the status. Returns `Err(reason)` on failure.
pub fn probe(
    addr: SocketAddr,
    source: Option<IpAddr>,
    cfg: &HealthConfig,
    tls: Option<&crate::tls::UpstreamTls>,
) -> Result<(), String> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))
        .map_err(|e| e.to_string())?;
    if let Some(ip) = source {
        socket.bind(&SocketAddr::new(ip, 0).into()).map_err(|e| format!("bind {ip}: {e}"))?;
    }
    socket.connect_timeout(&addr.into(), cfg.timeout).map_err(|e| format!("connect: {e}"))?;
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(cfg.timeout)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(cfg.timeout)).map_err(|e| e.to_string())?;
    match tls {
        None => http_check(s, addr.to_string(), cfg),
        Some(tls) => {
            let name = tls.name_for(addr.ip());
            let host = match &name {
                rustls::pki_types::ServerName::DnsName(d) => d.as_ref().to_string(),
                _ => addr.to_string(),
            };
            let conn = rustls::ClientConnection::new(tls.config.clone(), name).map_err(|e| format!("tls: {e}"))?;
            let mut stream = rustls::StreamOwned::new(conn, s);
            while stream.conn.is_handshaking() {
                stream.conn.complete_io(&mut stream.sock).map_err(|e| format!("tls handshake: {e}"))?;
            }
            http_check(stream, host, cfg)
        }
    }
}

/// The HTTP part of a probe (nothing to do for a connect check).
fn http_check(mut s: impl Read + Write, host: String, cfg: &HealthConfig) -> Result<(), String> {
    let Some(path) = &cfg.path else { return Ok(()) };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ringway-health\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let line = &buf[..got];
    let status = (line.len() >= 12 && line.starts_with(b"HTTP/1."))
        .then(|| std::str::from_utf8(&line[9..12]).ok()?.parse::<u16>().ok())
        .flatten()
        .ok_or_else(|| "no HTTP status line".to_string())?;
    if (cfg.expected_status.0..=cfg.expected_status.1).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HealthConfig {
        HealthConfig {
            path: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            unhealthy_after: 3,
            healthy_after: 2,
            expected_status: (200, 399),
        }
    }

    #[test]
    fn thresholds_flip_state() {
        let c = cfg();
        let mut s = HealthState::default();
        assert_eq!(s.observe(false, &c), None);
        assert_eq!(s.observe(false, &c), None);
        assert_eq!(s.observe(false, &c), Some(false), "third failure marks it down");
        assert_eq!(s.observe(true, &c), None);
        assert_eq!(s.observe(false, &c), None, "a failure resets the good streak");
        assert_eq!(s.observe(true, &c), None);
        assert_eq!(s.observe(true, &c), Some(true), "two good probes in a row bring it back");
    }

    #[test]
    fn interrupted_streak_does_not_flip() {
        let c = cfg();
        let mut s = HealthState::default();
        for _ in 0..10 {
            s.observe(false, &c);
            s.observe(false, &c);
            assert_eq!(s.observe(true, &c), None);
        }
        assert!(s.healthy);
    }

    #[test]
    fn http_probe_checks_the_status() {
        use std::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for (i, s) in l.incoming().enumerate() {
                let mut s = s.unwrap();
                let mut b = [0u8; 512];
                let _ = s.read(&mut b);
                let status = if i == 0 { "200 OK" } else { "503 Busy" };
                let _ = s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes());
            }
        });
        let c = HealthConfig { path: Some("/healthz".into()), ..cfg() };
        assert_eq!(probe(addr, None, &c, None), Ok(()));
        assert_eq!(probe(addr, None, &c, None), Err("status 503".into()));
        let closed = { std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap() };
        assert!(probe(closed, None, &c, None).unwrap_err().starts_with("connect"));
    }
}
