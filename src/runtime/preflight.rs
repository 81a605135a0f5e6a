//! Checks of a compiled config against this host, run by `--check` and before start-up: the
//! mistakes that would otherwise only show in traffic (an egress IP this host does not have, an
//! access-log directory that does not exist) are errors naming the key; doubtful choices
//! (more workers than allowed CPUs) are warnings.

use std::net::{IpAddr, SocketAddr};

use crate::config::{ConfigError, Snapshot, Workers};
use crate::metrics::LogTarget;

/// Errors for what cannot work on this host; otherwise the warnings (the config's own first).
pub fn preflight(s: &Snapshot) -> Result<Vec<String>, ConfigError> {
    let mut warnings = s.warnings.clone();
    for ip in &s.instance.egress_ips {
        check_local(*ip, "instance.egress_ip")?;
    }
    for u in &s.upstreams {
        for ip in u.egress_ips.iter().filter(|ip| !s.instance.egress_ips.contains(ip)) {
            check_local(*ip, &format!("upstream.{}.egress_ip", u.name))?;
        }
    }
    if let Some(LogTarget::File(path)) = s.access_log.as_ref().map(|a| &a.target) {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        if !dir.is_dir() {
            let msg = format!("directory {} does not exist", dir.display());
            return Err(ConfigError::new("access_log.path", None, msg));
        }
    }
    let cpus = super::allowed_cpus().len();
    if let Workers::Count(n) = s.instance.workers {
        if n > cpus {
            warnings.push(format!(
                "instance.workers: {n} workers on {cpus} allowed CPUs: workers will share CPUs (\"auto\" runs one per CPU)"
            ));
        }
    }
    Ok(warnings)
}

/// An egress IP must be an address of this host: bind a socket to it.
fn check_local(ip: IpAddr, key: &str) -> Result<(), ConfigError> {
    match std::net::UdpSocket::bind(SocketAddr::new(ip, 0)) {
        Ok(_) => Ok(()),
        Err(e) => Err(ConfigError::new(
            key,
            None,
            format!("{ip} is not an address of this host ({e}); every upstream connection from it would fail"),
        )),
    }
}
