//! Graceful binary upgrade on the real binary: a second process started with `--upgrade` takes
//! over the first one's listening sockets (SCM_RIGHTS); the first drains and exits; a client
//! opening a new connection per request throughout is never refused.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::bin::*;
use common::*;

#[test]
fn upgrade_hands_over_the_sockets_without_refusing_a_connection() {
    let sock = std::env::temp_dir().join(format!("ringway-test-{}-upgrade.sock", std::process::id()));
    let env = [("RINGWAY_UPGRADE_SOCKET", sock.to_str().unwrap())];
    let body = "[service.s]\nhosts = []\n[[service.s.api]]\nname = \"a\"\npath = \"/*\"\nmock = { body = \"v1\" }\n";
    let mut old = spawn_with_env("upgrade", "", body, &env);
    let path = std::env::temp_dir().join(format!("ringway-test-{}-upgrade", std::process::id())).join("ringway.toml");
    let addr = old.addr;
    let t0 = std::time::Instant::now();
    // a client that opens a new connection for every request until told to stop
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let client = {
        let (stop, failed, seen) = (stop.clone(), failed.clone(), seen.clone());
        std::thread::spawn(move || {
            for _ in 0..20_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match std::net::TcpStream::connect(addr) {
                    Ok(s) => {
                        let r = Client::from_stream(s)
                            .send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                            .try_response(false);
                        match r {
                            Some(r) if r.status == 200 => seen.lock().unwrap().push(r.text()),
                            other => {
                                eprintln!(
                                    "failed after {} ok at {:?}: {:?}",
                                    seen.lock().unwrap().len(),
                                    t0.elapsed(),
                                    other.map(|r| r.status)
                                );
                                failed.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("connect failed: {e}");
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })
    };
    assert!(eventually(Duration::from_secs(5), || seen.lock().unwrap().len() > 20), "the old process serves");
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap().replace("v1", "v2")).unwrap();
    let new = std::process::Command::new(BIN)
        .args(["-c", path.to_str().unwrap(), "--upgrade"])
        .envs(env)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the new binary");
    // killed however the test ends (a panic must not leave it holding the port)
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut new = Reap(new);
    let old_exit = wait_exit(&mut old.child, Duration::from_secs(15));
    assert!(old_exit.is_some_and(|s| s.success()), "the old process drained and exited cleanly: {old_exit:?}");
    assert!(
        eventually(Duration::from_secs(5), || seen.lock().unwrap().last().is_some_and(|t| t == "v2")),
        "the new process serves"
    );
    let before = seen.lock().unwrap().len();
    assert!(eventually(Duration::from_secs(5), || seen.lock().unwrap().len() > before + 20), "and keeps serving");
    stop.store(true, Ordering::SeqCst);
    client.join().unwrap();
    assert_eq!(failed.load(Ordering::SeqCst), 0, "refused or failed requests during the upgrade");
    let seen = seen.lock().unwrap();
    assert!(seen.iter().any(|t| t == "v1") && seen.iter().any(|t| t == "v2"));
    sigterm(&new.0);
    assert!(wait_exit(&mut new.0, Duration::from_secs(5)).is_some());
    let _ = std::fs::remove_file(&sock);
}

#[test]
fn upgrade_without_a_running_process_says_so() {
    let sock = std::env::temp_dir().join(format!("ringway-test-{}-noupgrade.sock", std::process::id()));
    let path = write_config("noupgrade", "[[listener]]\nlisten = \"127.0.0.1:0\"\n");
    let out = std::process::Command::new(BIN)
        .args(["-c", path.to_str().unwrap(), "--upgrade"])
        .env("RINGWAY_UPGRADE_SOCKET", &sock)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no running ringway to upgrade from"), "{err}");
}
