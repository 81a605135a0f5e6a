//! HTTP/2 for clients (docs/HTTP2.md): curl over ALPN h2 and h2c, streams through the same
//! phases to HTTP/1.1 origins, the translation rules, flow control, GOAWAY on drain and idle,
//! and the attack table, each sent as raw frames by `scripts/h2-probe.py` (Python `h2`'s
//! hyperframe and hpack) with the worker checked responsive afterwards; an h2load smoke run.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::tls::{Ca, TempDir};
use common::{eventually, gauge, MockUpstream, Reply, TestGateway};
use serde_json::Value;

const PROBE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/h2-probe.py");

/// Runs a probe scenario; panics loudly when Python's `h2` package is missing.
fn probe(scenario: &str, addr: SocketAddr, args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(PROBE)
        .args([scenario, &addr.ip().to_string(), &addr.port().to_string()])
        .args(args)
        .output()
        .expect("MISSING COMPONENT: python3 (the HTTP/2 probe)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() != Some(3), "MISSING COMPONENT: {stderr} (scripts/test.sh installs it)");
    assert!(out.status.success(), "probe {scenario} failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("probe output: {e}: {stderr}"))
}

fn stream(v: &Value, id: u32) -> &Value {
    &v["streams"][id.to_string()]
}

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code} %{http_version}"])
        .args(args)
        .output()
        .expect("MISSING COMPONENT: curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    (body.to_string(), tail.to_string())
}

/// A gateway whose test listener speaks h2c (prior knowledge) besides HTTP/1.1.
fn h2c_gateway(body: &str) -> TestGateway {
    TestGateway::start(&format!("h2c = true\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{body}"))
}

/// Listener lines for HTTPS (ALPN offers h2) with a certificate for localhost and 127.0.0.1
/// from a fresh CA, and that CA's file for the client.
fn tls_listener(dir: &TempDir) -> (String, std::path::PathBuf) {
    let ca = Ca::new("h2 test CA");
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"], false).write(dir, "gw");
    let lines = format!("[[listener.tls]]\ncert = \"{}\"\nkey = \"{}\"\n\n", cert.display(), key.display());
    (lines, ca.write(dir, "ca.pem"))
}

fn proxy_to(origin: &MockUpstream, extra_api: &str) -> String {
    format!(
        "[upstream.o]\nendpoints = [{{ addr = \"{}\" }}]\n\n[service.s]\nhosts = []\n\n[[service.s.api]]\nname = \"all\"\npath = \"/*\"\nupstream = \"o\"\n{extra_api}\n",
        origin.addr
    )
}

#[test]
fn curl_gets_http2_by_alpn_and_by_prior_knowledge_and_http1_still_works() {
    let origin = MockUpstream::start(|r| {
        let fields: Vec<String> = r.headers.iter().map(|(n, v)| format!("{}={v}", n.to_lowercase())).collect();
        Reply::ok(&format!("{} {} {}", r.method, r.target, fields.join("|")))
    });
    // HTTPS: a listener with certificates offers h2 by default
    let dir = TempDir::new("h2-tls");
    let (tls, ca_file) = tls_listener(&dir);
    let gw = TestGateway::start(&format!("{tls}{}", proxy_to(&origin, "")));
    let url = format!("https://localhost:{}/v1/items?q=1", gw.addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", gw.addr.port());
    let (body, status) = curl(&["--cacert", ca_file.to_str().unwrap(), "--resolve", &resolve, &url]);
    assert_eq!(status, "200 2", "{body}");
    assert!(body.starts_with("GET /v1/items?q=1 "), "{body}");
    assert!(body.contains(&format!("host=localhost:{}", gw.addr.port())), ":authority becomes Host: {body}");
    assert!(body.contains("x-forwarded-proto=https"), "{body}");
    let (_, status) = curl(&["--http1.1", "--cacert", ca_file.to_str().unwrap(), "--resolve", &resolve, &url]);
    assert_eq!(status, "200 1.1");
    drop(gw);
    // plain: h2c by prior knowledge and HTTP/1.1 on the same listener
    let gw = h2c_gateway(&proxy_to(&origin, ""));
    let url = format!("http://127.0.0.1:{}/h2c", gw.addr.port());
    let (body, status) = curl(&["--http2-prior-knowledge", &url]);
    assert_eq!(status, "200 2", "{body}");
    assert!(body.starts_with("GET /h2c ") && body.contains("x-forwarded-proto=http|"), "{body}");
    assert!(!body.contains("connection=") && !body.contains("te="), "no connection-specific fields: {body}");
    let (_, status) = curl(&[&url]);
    assert_eq!(status, "200 1.1", "HTTP/1.1 on an h2c listener");
    // an h2c listener does not upgrade from HTTP/1.1 (h2c smuggling): the request is served as 1.1
    let (_, status) = curl(&["--http2", &url]);
    assert_eq!(status, "200 1.1");
}

#[test]
fn request_bodies_stream_with_and_without_a_length() {
    let origin = MockUpstream::echo();
    let gw = h2c_gateway(&proxy_to(&origin, ""));
    let dir = TempDir::new("h2-body");
    let file = dir.path("up.bin");
    std::fs::write(&file, vec![7u8; 1 << 20]).unwrap();
    let url = format!("http://127.0.0.1:{}/upload", gw.addr.port());
    let data = format!("@{}", file.display());
    let (body, status) = curl(&["--http2-prior-knowledge", "--data-binary", &data, &url]);
    assert_eq!((body.as_str(), status.as_str()), ("POST /upload 1048576", "200 2"));
    let seen = origin.requests();
    assert!(!seen[0].chunked && seen[0].header("content-length") == Some("1048576"));
    // DATA frames without content-length: sent on chunked
    let v = probe("post_chunks", gw.addr, &["--path", "/chunks", "--count", "300"]);
    assert_eq!(stream(&v, 1)["status"], 200, "{v}");
    assert_eq!(stream(&v, 1)["body"], "POST /chunks 300000");
    let last = origin.requests().pop().unwrap();
    assert!(last.chunked && last.body_len == 300_000);
}

#[test]
fn responses_of_every_framing_come_back_whole_and_a_slow_stream_blocks_no_other() {
    let origin = MockUpstream::start(|r| match r.target.as_str() {
        "/large" => Reply::Large(8 << 20),
        "/chunked" => Reply::Chunked(vec![b"ab".to_vec(), b"cde".to_vec(), vec![b'f'; 40_000]]),
        "/close" => Reply::RawThenClose(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-close".to_vec()),
        "/slow" => Reply::Delay(Duration::from_millis(1500), Box::new(Reply::ok("slow"))),
        t => Reply::ok(t),
    });
    let gw = h2c_gateway(&proxy_to(&origin, ""));
    let base = format!("http://127.0.0.1:{}", gw.addr.port());
    let out = Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{size_download} %{http_version}"])
        .arg(format!("{base}/large"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{} 2", 8 << 20));
    let v = probe("get", gw.addr, &["--path", "/chunked"]);
    let s = stream(&v, 1);
    assert_eq!((s["status"].as_u64(), s["body_len"].as_u64()), (Some(200), Some(40_005)), "{v}");
    assert!(s["headers"].get("transfer-encoding").is_none(), "{v}");
    let v = probe("get", gw.addr, &["--path", "/close"]);
    assert_eq!(stream(&v, 1)["body"], "until-close", "{v}");
    assert!(stream(&v, 1)["headers"].get("connection").is_none());
    // stream 1 waits 1.5 s for its origin; 15 others on the same connection finish first
    let v = probe("concurrent", gw.addr, &["--path", "/slow", "--count", "16"]);
    let order: Vec<u64> = v["order"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    assert_eq!(order.len(), 16, "{v}");
    assert_eq!(order.last(), Some(&1), "the slow stream ends last: {order:?}");
    assert_eq!(stream(&v, 31)["body"], "/fast/15");
}

#[test]
fn translation_rules_join_cookies_and_refuse_malformed_requests_as_stream_errors() {
    let origin = MockUpstream::start(|r| {
        Reply::ok(&format!("cookie={} te={:?}", r.header("cookie").unwrap_or("-"), r.header("te")))
    });
    let gw = h2c_gateway(&proxy_to(&origin, ""));
    let v = probe("cookies", gw.addr, &["--path", "/c"]);
    assert_eq!(stream(&v, 1)["body"], "cookie=a=1; b=2 te=None", "{v}");
    let v = probe("te_trailers", gw.addr, &["--path", "/t"]);
    assert_eq!(stream(&v, 1)["body"], "cookie=- te=None", "TE: trailers is dropped: {v}");
    let served = origin.request_count();
    for scenario in ["host_mismatch", "connection_header", "te_gzip", "length_mismatch"] {
        let v = probe(scenario, gw.addr, &["--path", "/m"]);
        assert_eq!(stream(&v, 1)["reset"], "PROTOCOL_ERROR", "{scenario}: {v}");
        assert!(v["goaway"].is_null(), "a stream error, not a connection error: {scenario}: {v}");
    }
    // a body whose length does not match may already be on its way; none of the others is sent
    assert!(origin.request_count() <= served + 1, "malformed requests reached the origin");
}

#[test]
fn a_stream_reset_before_it_went_upstream_is_never_sent() {
    let origin = MockUpstream::start(|r| Reply::ok(&r.target));
    let gw = h2c_gateway(&proxy_to(&origin, ""));
    for _ in 0..20 {
        let v = probe("reset_after_headers", gw.addr, &["--path", "/never"]);
        assert_eq!(stream(&v, 3)["body"], "/fast/after", "{v}");
    }
    assert!(origin.requests().iter().all(|r| r.target != "/never"), "a reset stream was forwarded");
    // resets at a modest rate are normal (a browser leaving a page): the connection stays
    let v = probe("rapid_reset", gw.addr, &["--path", "/never", "--count", "50", "--wait", "1"]);
    assert!(v["goaway"].is_null() && !v["closed"].as_bool().unwrap(), "{v}");
}

/// Every attack of the table: the connection gets GOAWAY with `code` and is closed, and a new
/// connection is served at once.
#[test]
fn known_attacks_get_goaway_and_a_close_and_the_worker_stays_responsive() {
    let origin = MockUpstream::start(|r| Reply::ok(&r.target));
    let gw = h2c_gateway(&proxy_to(&origin, ""));
    let table: [(&str, &[&str], &str); 9] = [
        ("rapid_reset", &["--count", "1000"], "ENHANCE_YOUR_CALM"),
        ("continuation_flood", &["--count", "10000"], "ENHANCE_YOUR_CALM"),
        ("settings_flood", &["--count", "1000"], "ENHANCE_YOUR_CALM"),
        ("ping_flood", &["--count", "1000"], "ENHANCE_YOUR_CALM"),
        ("empty_data_flood", &["--count", "1000"], "ENHANCE_YOUR_CALM"),
        ("zero_window_update_flood", &["--count", "1000"], "ENHANCE_YOUR_CALM"),
        ("stream_reuse", &[], "PROTOCOL_ERROR"),
        ("oversized_frame", &[], "FRAME_SIZE_ERROR"),
        ("bad_preface", &[], "PROTOCOL_ERROR"),
    ];
    for (scenario, args, code) in table {
        let v = probe(scenario, gw.addr, &[&["--path", "/attack"], args].concat());
        assert_eq!(v["goaway"]["name"], code, "{scenario}: {v}");
        assert_eq!(v["closed"], true, "{scenario}: the connection must close: {v}");
        let ok = probe("get", gw.addr, &["--path", "/after"]);
        assert_eq!(stream(&ok, 1)["body"], "/after", "worker unresponsive after {scenario}: {ok}");
    }
    assert!(origin.requests().iter().all(|r| r.target != "/attack" || r.method == "GET"));
    // HPACK bomb: 4 MB of fields from 1 KB is refused for that stream; the connection lives on
    let v = probe("hpack_bomb", gw.addr, &["--path", "/bomb"]);
    assert_eq!(stream(&v, 1)["status"], 200, "{v}");
    assert_eq!(stream(&v, 3)["reset"], "PROTOCOL_ERROR", "{v}");
    assert!(v["goaway"].is_null(), "{v}");
    let metrics = common::request(gw.admin.unwrap(), "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").text();
    let sum = |name: &str| -> u64 {
        let lines = metrics.lines().filter(|l| l.starts_with(&format!("{name}{{")));
        lines.map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap()).sum()
    };
    // the guard's floods (SETTINGS, PING, empty DATA, zero WINDOW_UPDATE, and the resets unless
    // h2's own pending-reset limit saw them first); the h2 crate's refusals count as protocol errors
    let (floods, errors) = (sum("ringway_http2_floods_total"), sum("ringway_http2_protocol_errors_total"));
    assert!(floods >= 4 && floods + errors >= 9, "floods {floods}, protocol errors {errors}");
}

#[test]
fn tls_connections_that_negotiate_h2_but_skip_the_preface_get_goaway() {
    let dir = TempDir::new("h2-preface");
    let (tls, ca_file) = tls_listener(&dir);
    let gw = TestGateway::start(&format!(
        "{tls}[service.s]\nhosts = []\n[[service.s.api]]\nname = \"m\"\npath = \"/*\"\nmock = {{ body = \"m\" }}\n"
    ));
    let v = probe("garbage_preface", gw.addr, &["--tls", ca_file.to_str().unwrap()]);
    assert_eq!(v["goaway"]["name"], "PROTOCOL_ERROR", "{v}");
    assert_eq!(v["closed"], true, "{v}");
    let v = probe("get", gw.addr, &["--tls", ca_file.to_str().unwrap(), "--path", "/x"]);
    assert_eq!(stream(&v, 1)["body"], "m", "{v}");
}

#[test]
fn idle_connections_get_goaway_and_draining_lets_streams_finish() {
    let origin = MockUpstream::start(|r| match r.target.as_str() {
        "/slow" => Reply::Delay(Duration::from_millis(800), Box::new(Reply::ok("finished"))),
        t => Reply::ok(t),
    });
    let mut gw = h2c_gateway(&format!("[http2]\nidle_timeout_ms = 300\n\n{}", proxy_to(&origin, "")));
    let v = probe("idle", gw.addr, &["--wait", "3"]);
    assert_eq!(v["goaway"]["name"], "NO_ERROR", "{v}");
    assert_eq!(v["closed"], true, "{v}");
    // a stream in flight when the worker drains: GOAWAY, then its response, then the close
    let addr = gw.addr;
    let client = std::thread::spawn(move || probe("get", addr, &["--path", "/slow", "--wait", "5"]));
    assert!(eventually(Duration::from_secs(5), || origin.request_count() >= 1));
    gw.stop();
    let v = client.join().unwrap();
    assert_eq!(stream(&v, 1)["body"], "finished", "{v}");
    assert_eq!(v["goaway"]["name"], "NO_ERROR", "{v}");
}

#[test]
fn an_idle_connection_gives_up_its_read_buffer_and_serves_the_next_stream() {
    // the first response comes 700 ms late: it is written while the client has been silent long
    // enough for the connection's read to have been cancelled (100 ms + at most one 250 ms tick)
    let origin = MockUpstream::start(|r| match r.target.as_str() {
        "/slow" => Reply::Delay(Duration::from_millis(700), Box::new(Reply::ok("/slow"))),
        t => Reply::ok(t),
    });
    let dir = TempDir::new("h2-idle");
    let (tls, ca_file) = tls_listener(&dir);
    let rest = format!("[admin]\nlisten = \"127.0.0.1:0\"\n\n[http]\nidle_park_ms = 100\n\n{}", proxy_to(&origin, ""));
    for (name, listener, args) in
        [("h2c", "h2c = true\n\n", vec![]), ("TLS", tls.as_str(), vec!["--tls", ca_file.to_str().unwrap()])]
    {
        let gw = TestGateway::start_with_workers(&format!("{listener}{rest}"), "", 1);
        assert_eq!(gauge(&gw, "ringway_h2_connections_idle"), 0, "{name}");
        let addr = gw.addr;
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(["--path", "/slow", "--pause", "3"].map(String::from));
        let client = std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            probe("get_pause_get", addr, &args)
        });
        assert!(
            eventually(Duration::from_millis(3000), || gauge(&gw, "ringway_h2_connections_idle") == 1),
            "{name}: the silent connection waits without a read buffer"
        );
        let v = client.join().unwrap();
        assert_eq!(stream(&v, 1)["body"], "/slow", "{name}: {v}");
        assert_eq!(stream(&v, 3)["body"], "/slow/again", "{name}: the stream after the silence: {v}");
        assert_eq!(v["goaway"], Value::Null, "{name}: {v}");
        assert!(eventually(Duration::from_secs(2), || gauge(&gw, "ringway_h2_connections_idle") == 0), "{name}");
    }
}

#[test]
fn streams_are_logged_as_h2_and_counted() {
    let dir = TempDir::new("h2-log");
    let log = dir.path("access.log");
    let gw = h2c_gateway(&format!(
        "[access_log]\npath = \"{}\"\n\n[service.s]\nhosts = []\n[[service.s.api]]\nname = \"m\"\npath = \"/*\"\nmock = {{ body = \"m\" }}\n",
        log.display()
    ));
    let (_, status) = curl(&["--http2-prior-knowledge", &format!("http://127.0.0.1:{}/logged", gw.addr.port())]);
    assert_eq!(status, "200 2");
    let (_, status) = curl(&[&format!("http://127.0.0.1:{}/plain", gw.addr.port())]);
    assert_eq!(status, "200 1.1");
    let metrics = common::request(gw.admin.unwrap(), "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").text();
    assert!(metrics.contains("ringway_http2_streams_total{worker="), "{metrics}");
    drop(gw); // flushes the log
    let text = std::fs::read_to_string(&log).unwrap();
    let h2 = text.lines().find(|l| l.contains("/logged")).unwrap();
    let h1 = text.lines().find(|l| l.contains("/plain")).unwrap();
    assert!(h2.contains("\"proto\":\"h2\"") && h1.contains("\"proto\":\"http/1.1\""), "{text}");
}

#[test]
fn h2load_smoke_run_completes_every_request() {
    let origin = MockUpstream::start(|_| Reply::ok("ok"));
    let gw = h2c_gateway(&proxy_to(&origin, ""));
    let out = Command::new("h2load")
        .args(["-n", "2000", "-c", "4", "-m", "10", &format!("http://127.0.0.1:{}/load", gw.addr.port())])
        .output()
        .expect("MISSING COMPONENT: h2load (Debian nghttp2-client; scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2000 succeeded, 0 failed, 0 errored"), "{text}");
    assert!(text.contains("2000 2xx"), "{text}");
}

#[test]
fn config_errors_name_the_key() {
    let base = "[[listener]]\nlisten = \"127.0.0.1:0\"\n";
    let cases = [
        (format!("{base}http2 = true\n"), "listener[0].http2"),
        (format!("{base}h2c = true\n[[listener.tls]]\ncert = \"a\"\nkey = \"b\"\n"), "listener[0].h2c"),
        (format!("{base}[http2]\nmax_concurrent_streams = 0\n"), "http2.max_concurrent_streams"),
        (format!("{base}[http2]\ninitial_window_bytes = 10\n"), "http2.initial_window_bytes"),
        (format!("{base}[http2]\nidle_timeout_ms = 0\n"), "http2.idle_timeout_ms"),
        (format!("{base}[http2]\nmax_streams = 5\n"), "max_streams"),
    ];
    for (text, key) in cases {
        let err = ringway::config::compile(&text, 1).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains("line"), "{key}: {err}");
    }
}
