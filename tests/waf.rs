//! The WAF hook end to end. With the real OWASP Core Rule Set (Apache + ModSecurity, started by
//! `scripts/waf-crs.sh`): attacks in the query, a form body, a chunked body and behind
//! `Expect: 100-continue` are blocked before the upstream sees them, clean traffic of every
//! method passes with its whole body, and monitor mode lets everything through while counting.
//! With scripted WAFs: the time budget, a WAF that is down, slow or failing under both
//! `on_error` values, what the WAF receives, pooled connections to it, and `waf = ""`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::waf::CrsWaf;
use common::*;

fn waf_section(name: &str, upstream: &str, extra: &str) -> String {
    format!("[waf.{name}]\nupstream = \"{upstream}\"\n{extra}\n")
}

/// Services `shop` (host shop.test, WAF in block mode) and `watch` (host watch.test, the same WAF
/// in monitor mode), both proxying to `origin`.
fn crs_gateway(waf: SocketAddr, origin: SocketAddr, log: &std::path::Path) -> TestGateway {
    let body = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[access_log]\npath = \"{}\"\n\n{}\n{}\n{}\n{}\n\
         [service.shop]\nhosts = [\"shop.test\"]\nwaf = \"crs\"\n[[service.shop.api]]\nname = \"all\"\npath = \"/*\"\nupstream = \"o\"\n\n\
         [service.watch]\nhosts = [\"watch.test\"]\nwaf = \"crs_watch\"\n[[service.watch.api]]\nname = \"all\"\npath = \"/*\"\nupstream = \"o\"\n",
        log.display(),
        upstream_toml("crs", &[waf]),
        upstream_toml("o", &[origin]),
        // Apache + CRS answer in a few ms; the budget is generous so a loaded CI box is not an error
        waf_section("crs", "crs", "timeout_ms = 2000\non_error = \"deny\"\nsend_body_bytes = 8192"),
        waf_section("crs_watch", "crs", "mode = \"monitor\"\ntimeout_ms = 2000"),
    );
    TestGateway::start(&body)
}

fn send(gw: &TestGateway, raw: &str) -> Response {
    request(gw.addr, raw)
}

fn post(host: &str, path: &str, ctype: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn the_core_rule_set_blocks_attacks_and_passes_clean_traffic() {
    let crs = CrsWaf::start();
    let origin = MockUpstream::echo();
    let dir = common::tls::TempDir::new("waf-log");
    let log = dir.path("access.log");
    let gw = crs_gateway(crs.addr, origin.addr, &log);
    let get =
        |target: &str, extra: &str| send(&gw, &format!("GET {target} HTTP/1.1\r\nHost: shop.test\r\n{extra}\r\n"));

    // clean traffic passes, every method, with its body
    assert_eq!(get("/items?q=walking+shoes", "").status, 200);
    assert_eq!(
        send(&gw, &post("shop.test", "/login", "application/x-www-form-urlencoded", "user=alice&note=hello")).status,
        200
    );
    for method in ["PUT", "PATCH", "DELETE"] {
        let raw = format!(
            "{method} /items/7 HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{{\"count\": 2}}\n"
        );
        let r = send(&gw, &raw);
        assert_eq!(r.status, 200, "clean {method}: {}", r.text());
    }
    let seen_clean = origin.request_count();
    assert_eq!(seen_clean, 5);

    // attacks: blocked with the WAF's status and the request id; the origin never sees them
    let attacks = [
        ("SQL injection in the query", get("/items?id=1%27%20OR%20%271%27=%271", "")),
        ("XSS in the query", get("/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E", "")),
        ("path traversal in the query", get("/download?file=../../../../etc/passwd", "")),
        ("a scanner's User-Agent", get("/", "User-Agent: sqlmap/1.7.2#stable (https://sqlmap.org)\r\n")),
        (
            "SQL injection in a form body",
            send(
                &gw,
                &post("shop.test", "/login", "application/x-www-form-urlencoded", "user=admin%27%20OR%201=1--&pw=x"),
            ),
        ),
    ];
    for (what, r) in &attacks {
        assert_eq!(r.status, 403, "{what}: {}", r.text());
        let id = r.header("x-request-id").expect("blocked answers carry the request id").to_string();
        assert!(r.text().contains(&id), "{what}: the body names the request id: {}", r.text());
    }
    assert_eq!(origin.request_count(), seen_clean, "no blocked request reached the origin");

    // a chunked body is inspected decoded
    let chunked = |body: &str| {
        format!(
            "POST /login HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
    };
    assert_eq!(send(&gw, &chunked("user=admin%27%20OR%201=1--")).status, 403);
    assert_eq!(send(&gw, &chunked("user=alice")).status, 200);

    // a body longer than send_body_bytes: the WAF gets the first 8 KiB, the origin all of it
    let long = format!("note={}", "a".repeat(20_000));
    let r = send(&gw, &post("shop.test", "/notes", "application/x-www-form-urlencoded", &long));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), format!("POST /notes {}", long.len()), "the whole body was forwarded");

    // Expect: 100-continue: the gateway asks for the body itself, then the WAF judges it
    let mut c = Client::connect(gw.addr);
    let evil = "user=admin%27%20OR%201=1--";
    c.send(
        format!(
            "POST /login HTTP/1.1\r\nHost: shop.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            evil.len()
        )
        .as_bytes(),
    );
    let interim = c.response(false);
    assert_eq!(interim.status, 100, "the gateway sent 100 Continue to read the body for the WAF");
    assert_eq!(c.send(evil.as_bytes()).response(false).status, 403);

    // monitor mode: the same attack passes, counted and logged as monitor_block
    let before = origin.request_count();
    let r = send(&gw, "GET /items?id=1%27%20OR%20%271%27=%271 HTTP/1.1\r\nHost: watch.test\r\n\r\n");
    assert_eq!(r.status, 200, "monitor mode never blocks");
    assert_eq!(origin.request_count(), before + 1);

    // metrics and histograms
    let admin = gw.admin.unwrap();
    let metrics = http_get(admin, "/metrics").1;
    let count = |waf: &str, outcome: &str| -> u64 {
        let key = format!("ringway_waf_requests_total{{waf=\"{waf}\",outcome=\"{outcome}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&key)).map_or(0, |v| v.trim().parse().unwrap())
    };
    assert_eq!(count("crs", "block"), 7, "{metrics}");
    assert_eq!(count("crs", "allow"), 7);
    assert_eq!(count("crs", "error"), 0);
    assert_eq!(count("crs_watch", "monitor_block"), 1);
    assert!(metrics.contains("ringway_waf_duration_seconds_count{waf=\"crs\"} 15"), "{metrics}");
    let latency = http_get(admin, "/stats/latency").1;
    assert!(latency.contains("\"waf\":{\"count\":"), "the API histograms have a waf phase: {latency}");

    // the access log names each verdict
    drop(gw); // flushes the log
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.matches("\"waf\":\"block\"").count(), 7, "{lines}");
    assert_eq!(lines.matches("\"waf\":\"monitor_block\"").count(), 1);
    assert!(lines.contains("\"waf_us\":"));
}

/// A scripted WAF answering every request with `reply`.
fn scripted(reply: Reply) -> MockUpstream {
    MockUpstream::start(move |_| reply.clone())
}

fn gateway_with_waf(waf: SocketAddr, origin: SocketAddr, waf_keys: &str, upstream_keys: &str) -> TestGateway {
    let body = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{}{upstream_keys}\n{}\n{}\n\
         [service.s]\nwaf = \"w\"\n[[service.s.api]]\nname = \"all\"\npath = \"/*\"\nupstream = \"o\"\n\
         [[service.s.api]]\nname = \"open\"\npath = \"/open/*\"\nupstream = \"o\"\nwaf = \"\"\n",
        upstream_toml("wafup", &[waf]),
        upstream_toml("o", &[origin]),
        waf_section("w", "wafup", waf_keys),
    );
    TestGateway::start(&body)
}

fn metric(gw: &TestGateway, outcome: &str) -> u64 {
    let metrics = http_get(gw.admin.unwrap(), "/metrics").1;
    let key = format!("ringway_waf_requests_total{{waf=\"w\",outcome=\"{outcome}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&key)).map_or(0, |v| v.trim().parse().unwrap())
}

/// A loopback address nothing listens on.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

#[test]
fn a_waf_that_cannot_answer_fails_open_or_closed_as_configured() {
    let origin = MockUpstream::echo();
    let failing = scripted(Reply::status(500, "boom"));
    let down = closed_port();
    for (waf, what) in [(failing.addr, "answers 500"), (down, "refuses connections")] {
        for (on_error, want) in [("allow", 200), ("deny", 503)] {
            let gw = gateway_with_waf(waf, origin.addr, &format!("on_error = \"{on_error}\"\ntimeout_ms = 1000"), "");
            let r = get(gw.addr, "x", "/a");
            assert_eq!(r.status, want, "a WAF that {what}, on_error = {on_error}: {}", r.text());
            assert_eq!(metric(&gw, "error"), 1);
            // monitor mode never blocks, even with on_error = "deny"
            let gw =
                gateway_with_waf(waf, origin.addr, "mode = \"monitor\"\non_error = \"deny\"\ntimeout_ms = 1000", "");
            assert_eq!(get(gw.addr, "x", "/a").status, 200, "monitor mode, a WAF that {what}");
        }
    }
}

#[test]
fn a_stalled_waf_costs_each_request_at_most_its_budget() {
    let origin = MockUpstream::echo();
    // the WAF takes 10 s; the budget is 100 ms
    let slow = scripted(Reply::Delay(Duration::from_secs(10), Box::new(Reply::ok(""))));
    for (on_error, want) in [("allow", 200), ("deny", 503)] {
        let gw = gateway_with_waf(slow.addr, origin.addr, &format!("timeout_ms = 100\non_error = \"{on_error}\""), "");
        let t0 = Instant::now();
        let r = get(gw.addr, "x", "/a");
        assert_eq!(r.status, want, "on_error = {on_error}");
        // generous: the point is that nobody waits for the WAF's 10 s
        assert!(t0.elapsed() < Duration::from_secs(5), "answered after {:?}", t0.elapsed());
        assert_eq!(metric(&gw, "error"), 1);
    }
}

#[test]
fn a_waf_behind_a_failing_health_check_is_not_waited_for() {
    let origin = MockUpstream::echo();
    let down = closed_port();
    let gw = gateway_with_waf(
        down,
        origin.addr,
        "on_error = \"deny\"",
        "health = { path = \"/\", interval_ms = 50, timeout_ms = 50, unhealthy_after = 1 }\n",
    );
    let admin = gw.admin.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || http_get(admin, "/upstreams").1.contains("\"state\":\"unhealthy\"")),
        "the WAF's endpoint is marked down: {}",
        http_get(admin, "/upstreams").1
    );
    assert_eq!(get(gw.addr, "x", "/a").status, 503, "on_error = deny applies at once");
    assert_eq!(metric(&gw, "error"), 1);
}

#[test]
fn the_waf_sees_the_request_its_client_and_id_and_its_verdict_decides() {
    let origin = MockUpstream::echo();
    // blocks requests whose body mentions "evil", with 406; allows the rest
    let waf = MockUpstream::start(|r| {
        if String::from_utf8_lossy(&r.body).contains("evil") {
            Reply::status(406, "no")
        } else {
            Reply::status(204, "")
        }
    });
    let gw = gateway_with_waf(waf.addr, origin.addr, "send_body_bytes = 16\npath = \"/check\"", "");
    let raw = "POST /orders?x=1 HTTP/1.1\r\nHost: shop.test\r\nConnection: keep-alive\r\nX-Request-Id: abc-123\r\nContent-Length: 26\r\n\r\nhello world, a long body!\n";
    let r = request(gw.addr, raw);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = &waf.requests()[0];
    assert_eq!((seen.method.as_str(), seen.target.as_str()), ("POST", "/check/orders?x=1"));
    assert_eq!(seen.header("host"), Some("shop.test"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-request-id"), Some("abc-123"));
    assert_eq!(seen.header("x-body-truncated"), Some("1"));
    assert_eq!(seen.body, b"hello world, a l", "the first send_body_bytes of the body");
    let up = &origin.requests()[0];
    assert_eq!(up.header("x-request-id"), Some("abc-123"), "the upstream gets the same id");
    assert_eq!(up.body_len, 26, "and the whole body");

    let r = request(gw.addr, "POST /orders HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 9\r\n\r\nbe evil!\n");
    assert_eq!(r.status, 406, "a 4xx verdict is the client's answer");
    assert_eq!(origin.request_count(), 1);
    // an API with waf = "" is not checked
    assert_eq!(
        request(gw.addr, "POST /open/x HTTP/1.1\r\nHost: shop.test\r\nContent-Length: 4\r\n\r\nevil").status,
        200
    );
    assert_eq!(waf.request_count(), 2);
}

#[test]
fn waf_connections_are_pooled() {
    let origin = MockUpstream::echo();
    let waf = scripted(Reply::status(200, "ok"));
    let gw = gateway_with_waf(waf.addr, origin.addr, "", "");
    let mut c = Client::connect(gw.addr);
    for _ in 0..50 {
        assert_eq!(c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").response(false).status, 200);
    }
    assert_eq!(waf.request_count(), 50);
    assert!(waf.connection_count() <= 2, "{} connections to the WAF for 50 requests", waf.connection_count());
}

#[test]
fn a_head_request_is_checked_without_waiting_for_a_body() {
    let origin = MockUpstream::echo();
    // the WAF answers HEAD like GET: a Content-Length and (correctly) no body
    let waf = MockUpstream::start(|_| Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec()));
    let gw = gateway_with_waf(waf.addr, origin.addr, "timeout_ms = 5000\non_error = \"deny\"", "");
    let mut c = Client::connect(gw.addr);
    for _ in 0..3 {
        let t0 = Instant::now();
        assert_eq!(c.send(b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n").response(true).status, 200);
        assert!(t0.elapsed() < Duration::from_secs(3), "waited for a body the HEAD answer cannot have");
    }
    assert_eq!(metric(&gw, "allow"), 3);
}

#[test]
fn waf_calls_count_against_the_egress_cap() {
    // a mock API: the only bytes sent to an upstream are the WAF calls
    let waf = scripted(Reply::status(200, "ok"));
    let body = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{}\n{}\n[service.s]\nwaf = \"w\"\n[[service.s.api]]\nname = \"all\"\npath = \"/*\"\nmock = {{ body = \"m\" }}\n",
        upstream_toml("wafup", &[waf.addr]),
        waf_section("w", "wafup", "send_body_bytes = 0"),
    );
    let gw = TestGateway::start_with_instance(&body, "egress_bandwidth_bytes_per_s = 100000000");
    for _ in 0..10 {
        assert_eq!(get(gw.addr, "x", "/a").status, 200);
    }
    let metrics = http_get(gw.admin.unwrap(), "/metrics").1;
    let bytes: f64 = (metrics.lines())
        .filter(|l| l.starts_with("ringway_egress_bytes_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    // each WAF request is well over 60 bytes
    assert!(bytes >= 10.0 * 60.0, "{bytes} bytes counted for 10 WAF calls");
    assert_eq!(waf.request_count(), 10);
}
