//! systemd's readiness protocol (`Type=notify`): datagrams to `$NOTIFY_SOCKET` saying READY=1
//! once listening, RELOADING=1 (with MONOTONIC_USEC) when a reload starts and READY=1 when it
//! ends, STOPPING=1 when the drain begins. Without `NOTIFY_SOCKET` every call is a no-op.
#![allow(unsafe_code)]

use std::os::unix::net::UnixDatagram;

/// Sends `state` to systemd, if it is listening. Failures are logged at debug and ignored:
/// readiness notification must never stop the gateway.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let sent = UnixDatagram::unbound().and_then(|sock| {
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            // an abstract socket name
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(state.as_bytes(), &addr)
            }
            None => sock.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(e) = sent {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// `RELOADING=1` with the monotonic time systemd asks for (microseconds of CLOCK_MONOTONIC).
pub fn reloading() {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the call to fill
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
    sd_notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}
