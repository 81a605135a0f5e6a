//! Signals on the real binary: SIGUSR1 reopens the access log (and never kills), SIGTERM drains
//! with an optional delay during which `/healthz` fails, a second SIGTERM exits at once, and a
//! drain under keep-alive load leaves no written request unanswered.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::bin::*;
use common::*;

fn admin_get(admin: std::net::SocketAddr, path: &str) -> Response {
    request(admin, &format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n"))
}

#[test]
fn sigusr1_reopens_the_access_log_and_keeps_serving() {
    let up = MockUpstream::echo();
    let dir = std::env::temp_dir().join(format!("ringway-test-{}-usr1", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let _ = std::fs::remove_file(&log);
    let body = format!("[access_log]\npath = \"{}\"\n\n{}", log.display(), catch_all("o", &[up.addr]));
    let (mut child, addr) = spawn("usr1", &body);
    assert_eq!(get(addr, "a", "/before").status, 200);
    assert!(eventually(Duration::from_secs(3), || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("/before"))));
    // logrotate: move the file away, then tell the gateway
    let rotated = dir.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    signal(&child, "USR1");
    assert!(eventually(Duration::from_secs(3), || log.exists()), "the log file is reopened under its name");
    assert_eq!(get(addr, "a", "/after").status, 200);
    assert!(
        eventually(Duration::from_secs(3), || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("/after"))),
        "new lines go to the new file"
    );
    assert!(!std::fs::read_to_string(&rotated).unwrap().contains("/after"));
    for sig in ["USR1", "HUP", "USR2"] {
        signal(&child, sig);
    }
    assert_eq!(get(addr, "a", "/still").status, 200, "no common signal kills the process");
    assert!(child.try_wait().unwrap().is_none());
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(10)).is_some_and(|s| s.success()));
}

#[test]
fn drain_delay_fails_healthz_while_traffic_is_still_served() {
    let up = MockUpstream::echo();
    let body = format!("[admin]\nlisten = \"127.0.0.1:0\"\n\n{}", catch_all("o", &[up.addr]));
    let mut s = spawn_with("delay", "drain_delay_ms = 1500", &body);
    let admin = s.admin.expect("admin address logged");
    assert_eq!(admin_get(admin, "/healthz").status, 200);
    sigterm(&s.child);
    assert!(
        eventually(Duration::from_secs(1), || admin_get(admin, "/healthz").status == 503),
        "/healthz fails as soon as the drain delay starts"
    );
    assert_eq!(admin_get(admin, "/healthz").text(), "draining\n");
    assert_eq!(get(s.addr, "a", "/during-delay").status, 200, "traffic is still served during the delay");
    let status = wait_exit(&mut s.child, Duration::from_secs(15)).expect("exits after the delay and the drain");
    assert!(status.success(), "{status:?}");
}

#[test]
fn second_sigterm_during_the_drain_exits_at_once_with_code_3() {
    let up = MockUpstream::echo();
    let mut s = spawn_with("second", "drain_delay_ms = 60000", &catch_all("o", &[up.addr]));
    sigterm(&s.child);
    std::thread::sleep(Duration::from_millis(200));
    assert!(s.child.try_wait().unwrap().is_none(), "still in the drain delay");
    sigterm(&s.child);
    let status = wait_exit(&mut s.child, Duration::from_secs(5)).expect("the second signal ends the drain at once");
    assert_eq!(status.code(), Some(3));
}

/// A keep-alive client: sends requests back to back until told to stop or the gateway says
/// `Connection: close`. Counts requests written whose connection ended without a response.
fn keep_alive_client(addr: std::net::SocketAddr, stop: &AtomicBool, served: &AtomicUsize, lost: &AtomicUsize) {
    let Ok(mut s) = TcpStream::connect(addr) else { return };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        if s.write_all(b"GET /k HTTP/1.1\r\nHost: a\r\n\r\n").is_err() {
            lost.fetch_add(1, Ordering::SeqCst);
            return;
        }
        // read one response (the echo origin's bodies are short and Content-Length framed)
        let close = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if buf.len() >= end + 4 + len {
                    buf.drain(..end + 4 + len);
                    break head.contains("connection: close");
                }
            }
            match s.read(&mut tmp) {
                Ok(n) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                _ => {
                    lost.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
        };
        served.fetch_add(1, Ordering::SeqCst);
        if close {
            return;
        }
    }
}

#[test]
fn sigterm_under_keep_alive_load_answers_every_written_request() {
    let up = MockUpstream::echo();
    let (mut child, addr) = spawn("kaload", &catch_all("o", &[up.addr]));
    let stop = Arc::new(AtomicBool::new(false));
    let (served, lost) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let (stop, served, lost) = (stop.clone(), served.clone(), lost.clone());
            std::thread::spawn(move || keep_alive_client(addr, &stop, &served, &lost))
        })
        .collect();
    assert!(eventually(Duration::from_secs(5), || served.load(Ordering::SeqCst) > 200), "load is flowing");
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(15)).expect("drains and exits");
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    assert!(status.success(), "{status:?}");
    assert_eq!(
        lost.load(Ordering::SeqCst),
        0,
        "every request written on an open connection got a response ({} served)",
        served.load(Ordering::SeqCst)
    );
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    let dir = std::env::temp_dir().join(format!("ringway-test-{}-notify", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&sock_path);
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = "[service.s]\nhosts = []\n[[service.s.api]]\nname = \"a\"\npath = \"/\"\nmock = { body = \"x\" }\n";
    let mut s = spawn_with_env("notify", "", body, &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())]);
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = next();
    assert!(ready.starts_with("READY=1\nMAINPID="), "{ready}");
    signal(&s.child, "HUP");
    let reloading = next();
    assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading}");
    assert_eq!(next(), "READY=1", "ready again once the reload is done");
    sigterm(&s.child);
    assert_eq!(next(), "STOPPING=1");
    assert!(wait_exit(&mut s.child, Duration::from_secs(5)).is_some());
}
