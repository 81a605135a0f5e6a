//! The real `ringway` binary: `--check`, startup from a file, SIGTERM drain, and bounded memory
//! while streaming large bodies both ways.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::bin::*;
use common::*;

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn check_accepts_the_shipped_config() {
    let out = Command::new(BIN)
        .args(["--check", "-c", concat!(env!("CARGO_MANIFEST_DIR"), "/conf/ringway.toml")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
}

#[test]
fn check_names_key_and_line_of_a_bad_config() {
    let text = "[[listener]]\nlisten = \"127.0.0.1:0\"\n\n[service.shop]\n[[service.shop.api]]\nname = \"x\"\npath = \"/x\"\nupstream = \"ordrs\"\n";
    let path = write_config("bad", text);
    let out = Command::new(BIN).args(["--check", "-c", path.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("service.shop.api[0].upstream: no upstream named \"ordrs\" (line 8)"), "{err}");
}

#[test]
fn check_rejects_unknown_keys() {
    let path = write_config("unknown", "[[listener]]\nlisten = \"127.0.0.1:0\"\nlisten_port = 1\n");
    let out = Command::new(BIN).args(["--check", "-c", path.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listener[0]: unknown key `listen_port`; expected one of `name`, `listen`")
            && err.contains("(line 3)"),
        "{err}"
    );
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let up = MockUpstream::start(|_| Reply::Delay(Duration::from_millis(300), Box::new(Reply::ok("done"))));
    let (mut child, addr) = spawn("sigterm", &catch_all("o", &[up.addr]));
    let mut c = Client::connect(addr);
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(eventually(Duration::from_secs(5), || up.request_count() == 1));
    sigterm(&child);
    assert_eq!(c.response(false).text(), "done", "the in-flight request completes");
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("exits after drain");
    assert!(status.success(), "{status:?}");
}

#[test]
fn one_gib_each_way_streams_in_bounded_memory() {
    const GIB: u64 = 1 << 30;
    let up =
        MockUpstream::start(|r| if r.method == "GET" { Reply::Large(GIB) } else { Reply::ok(&r.body_len.to_string()) });
    let body = CatchAll::new(&[up.addr]).api("max_body_bytes = 0").build();
    let (mut child, addr) = spawn("large", &body);
    let baseline = vm_hwm_kib(child.id());

    let mut c = Client::connect(addr);
    c.send(format!("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: {GIB}\r\n\r\n").as_bytes());
    let piece = vec![b'u'; 256 * 1024];
    for _ in 0..(GIB / piece.len() as u64) {
        c.stream.write_all(&piece).unwrap();
    }
    assert_eq!(c.response(false).text(), GIB.to_string());

    c.send(b"GET /down HTTP/1.1\r\nHost: a\r\n\r\n");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(String::from_utf8_lossy(&head).contains(&format!("content-length: {GIB}")));
    let mut left = GIB;
    let mut buf = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = c.stream.read(&mut buf[..want]).unwrap();
        assert!(n > 0, "download cut short with {left} bytes left");
        left -= n as u64;
    }
    let grown_mib = (vm_hwm_kib(child.id()).saturating_sub(baseline)) / 1024;
    sigterm(&child);
    let _ = wait_exit(&mut child, Duration::from_secs(10));
    assert!(grown_mib < 16, "peak RSS grew by {grown_mib} MiB while moving 2 GiB");
}

#[test]
fn check_catches_host_mistakes_and_prints_warnings() {
    let run = |name: &str, text: &str| {
        let path = write_config(name, text);
        Command::new(BIN).args(["--check", "-c", path.to_str().unwrap()]).output().unwrap()
    };
    let base = "[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.u]\nendpoints = [{ addr = \"127.0.0.1:9\" }]\n[service.s]\n[[service.s.api]]\nname = \"a\"\npath = \"/*\"\nupstream = \"u\"\n";
    // 192.0.2.1 (TEST-NET-1) is never an address of this host
    let out = run("egress", &format!("[instance]\negress_ip = \"192.0.2.1\"\n{base}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("instance.egress_ip: 192.0.2.1 is not an address of this host"), "{err}");
    let out = run("logdir", &format!("[access_log]\npath = \"/nonexistent-dir-ringway/a.log\"\n{base}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("access_log.path: directory /nonexistent-dir-ringway does not exist"), "{err}");
    let out = run(
        "warn",
        &format!("[instance]\nworkers = 1024\n{base}[upstream.spare]\nendpoints = [{{ addr = \"127.0.0.1:10\" }}]\n"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: upstream.spare: no API uses this upstream"), "{err}");
    assert!(err.contains("warning: instance.workers: 1024 workers on"), "{err}");
}

#[test]
fn rust_log_takes_filters_and_reports_a_bad_one() {
    let path = write_config("rustlog", "[[listener]]\nlisten = \"127.0.0.1:0\"\n[service.s]\n[[service.s.api]]\nname = \"a\"\npath = \"/\"\nmock = { body = \"x\" }\n");
    let run = |filter: &str| {
        let mut child = Command::new(BIN)
            .args(["-c", path.to_str().unwrap()])
            .env("RUST_LOG", filter)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        sigterm(&child);
        let _ = wait_exit(&mut child, Duration::from_secs(10));
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        err
    };
    let err = run("warn");
    assert!(!err.contains("INFO"), "a level filter hides info lines: {err}");
    let err = run("warn,ringway=info");
    assert!(
        err.contains("ringway started") && err.contains("version="),
        "a target directive turns them back on: {err}"
    );
    assert!(!err.contains("\u{1b}["), "no colour when stderr is not a terminal");
    let err = run("ringway=loud");
    assert!(err.contains("is not a valid filter"), "a bad filter is reported, not ignored: {err}");
}
