//! The admin endpoint: every route's content, Prometheus output through a real parser, and the
//! access log.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn gateway(up: &MockUpstream, extra: &str) -> TestGateway {
    let body = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{extra}\n{}\n[[service.all.api]]\nname = \"ping\"\npath = \"/ping\"\nmock = {{ body = \"pong\" }}\n",
        catch_all("o", &[up.addr])
    );
    TestGateway::start(&body)
}

fn admin_get(gw: &TestGateway, path: &str) -> Response {
    get(gw.admin.expect("admin configured"), "admin", path)
}

#[test]
fn healthz_and_unknown_paths() {
    let up = MockUpstream::echo();
    let gw = gateway(&up, "");
    let r = admin_get(&gw, "/healthz");
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    assert_eq!(admin_get(&gw, "/nope").status, 404);
    let r = request(gw.admin.unwrap(), "POST /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 405);
}

#[test]
fn latency_stats_count_requests_per_api_and_reset() {
    let up = MockUpstream::echo();
    let gw = gateway(&up, "");
    for _ in 0..7 {
        assert_eq!(get(gw.addr, "a", "/x").status, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(gw.addr, "a", "/ping").status, 200);
    }
    let r = admin_get(&gw, "/stats/latency");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let j = r.text();
    assert!(j.contains("\"apis\":{\"all/all\":{\"total\":{\"count\":7,"), "{j}");
    assert!(j.contains("\"all/ping\":{\"total\":{\"count\":3,"), "{j}");
    assert!(j.contains("\"upstreams\":{\"o\":{\"total\":{\"count\":7,"), "{j}");
    assert!(j.contains("\"first_byte\":{\"count\":7,"), "first-byte phase recorded: {j}");
    assert!(j.contains("\"listeners\":{\"listener0\":{\"total\":{\"count\":10,"), "{j}");
    assert!(j.contains("\"workers_missing\":[]"), "{j}");

    let t = admin_get(&gw, "/stats/latency?format=text&reset=1").text();
    assert!(t
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .eq(["scope", "name", "phase", "count", "min", "p50", "p90", "p99", "p99.9", "max", "mean"]));
    let row = t.lines().find(|l| l.starts_with("api") && l.contains("all/all") && l.contains("total")).unwrap();
    assert_eq!(row.split_whitespace().nth(3), Some("7"), "{row}");
    let after = admin_get(&gw, "/stats/latency").text();
    assert!(after.contains("\"all/all\":{\"total\":{\"count\":0,"), "reset starts a new window: {after}");
}

#[test]
fn prometheus_output_parses_with_the_reference_parser() {
    let up = MockUpstream::echo();
    let gw = gateway(&up, "");
    for _ in 0..5 {
        get(gw.addr, "a", "/x");
    }
    get(gw.addr, "a", "/ping");
    request(gw.addr, "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = admin_get(&gw, "/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}
def value(fam, **labels):
    for s in fams[fam].samples:
        if all(s.labels.get(k) == v for k, v in labels.items()) and s.name == fam + ('_total' if fams[fam].type == 'counter' else ''):
            return s.value
    raise SystemExit(f"no sample {fam} {labels}")
assert value("ringway_requests", service="all", api="all", **{"class": "2xx"}) == 5
assert value("ringway_requests", service="all", api="ping", **{"class": "2xx"}) == 1
assert value("ringway_requests", service="", api="", **{"class": "4xx"}) == 1
assert value("ringway_upstream_requests", upstream="o") == 5
assert fams["ringway_request_duration_seconds"].type == "histogram"
count = [s for s in fams["ringway_request_duration_seconds"].samples if s.name.endswith("_count") and s.labels["api"] == "all"]
assert count[0].value == 5, count
assert len([s for s in fams["ringway_worker_info"].samples]) == 2
print("ok")
"#;
    let mut py = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test.sh installs prometheus_client)");
    use std::io::Write;
    py.stdin.take().unwrap().write_all(&r.body).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejected or disagreed (pip install prometheus_client):\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        r.text()
    );
}

#[test]
fn upstreams_and_config_describe_the_running_instance() {
    let up = MockUpstream::echo();
    let gw = gateway(&up, "");
    get(gw.addr, "a", "/x");
    let u = admin_get(&gw, "/upstreams").text();
    assert!(u.contains(&format!("{{\"addr\":\"{}\",\"weight\":1,", up.addr)), "{u}");
    assert!(u.contains("\"egress_ip\":[]"), "{u}");
    assert!(u.contains("\"state\":\"healthy\""), "{u}");
    assert!(u.contains("\"requests\":1,\"connects\":1,\"connect_failures\":0,\"pool_hits\":0"), "{u}");
    let c = admin_get(&gw, "/config").text();
    assert!(c.starts_with("{\"generation\":1,\"last_reload\":null,\"workers\":[{\"worker\":0,"), "{c}");
    assert!(c.contains(&format!("\"driver\":\"{}\"", driver())) || driver() == "auto", "{c}");
    assert!(c.contains(&format!("\"addr\":\"{}\"", gw.addr)), "listeners show the bound address: {c}");
}

#[test]
fn dashboard_is_a_self_contained_page() {
    let up = MockUpstream::echo();
    let gw = gateway(&up, "");
    let r = admin_get(&gw, "/");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let page = r.text();
    assert!(page.contains("fetch('/metrics'") && page.contains("<svg") && page.contains("last 1 min"));
    assert!(!page.contains("http://") && !page.contains("https://"), "no external assets");
}

#[test]
fn access_log_writes_one_json_line_per_request() {
    let up = MockUpstream::echo();
    let path = std::env::temp_dir().join(format!("ringway-access-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let gw = gateway(
        &up,
        &format!("[access_log]\npath = \"{}\"\nformat = \"json\"\nredact_query = [\"secret\"]\n", path.display()),
    );
    let ok = get(gw.addr, "shop.test", "/a/b?secret=1&page=2");
    let bad = request(gw.addr, "GET /x HTTP/1.1\r\n\r\n");
    assert_eq!(bad.status, 400);
    assert!(bad.header("date").is_some_and(|d| d.ends_with(" GMT")), "gateway-made responses carry Date");
    assert!(eventually(Duration::from_secs(5), || std::fs::read_to_string(&path).map_or(0, |t| t.lines().count()) >= 2));
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text.lines().find(|l| l.contains("\"status\":200")).unwrap();
    let id = up.requests()[0].header("x-request-id").unwrap().to_string();
    assert!(line.contains(&format!("\"request_id\":\"{id}\"")), "the id the origin saw: {line}");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-request-id"), Some(id.as_str()), "the proxied response names the request id");
    assert!(
        line.contains(
            "\"method\":\"GET\",\"path\":\"/a/b\",\"query\":\"secret=REDACTED&page=2\",\"host\":\"shop.test\""
        ),
        "the query is logged with named parameters redacted: {line}"
    );
    assert!(line.contains(&format!("\"service\":\"all\",\"api\":\"all\",\"endpoint\":\"{}\"", up.addr)), "{line}");
    assert!(line.contains("\"error\":null"), "{line}");
    let bad = text.lines().find(|l| l.contains("\"status\":400")).unwrap();
    assert!(bad.contains("\"error\":\"bad_request\""), "{bad}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn idle_admin_connections_never_delay_healthz() {
    let up = MockUpstream::echo();
    let gw = gateway(&up, "");
    let admin = gw.admin.unwrap();
    // 100 connections that never send a byte (a stuck scraper, a port scanner)
    let idle: Vec<std::net::TcpStream> = (0..100).map(|_| std::net::TcpStream::connect(admin).unwrap()).collect();
    let t0 = std::time::Instant::now();
    let r = admin_get(&gw, "/healthz");
    let took = t0.elapsed();
    assert_eq!(r.status, 200);
    // the old one-at-a-time server took ~2 s per idle connection ahead; a coarse bound
    assert!(took < Duration::from_secs(2), "/healthz took {took:?} behind 100 idle connections");
    println!("/healthz behind 100 idle admin connections: {took:?}");
    // and a scrape works alongside them
    assert_eq!(admin_get(&gw, "/metrics").status, 200);
    drop(idle);
}

#[test]
fn head_works_where_get_does() {
    let up = MockUpstream::echo();
    let gw = gateway(&up, "");
    for path in ["/healthz", "/metrics", "/stats/latency", "/config", "/"] {
        let r = Client::connect(gw.admin.unwrap())
            .send(format!("HEAD {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .response(true);
        assert_eq!(r.status, 200, "HEAD {path}");
        assert!(r.header("content-length").is_some_and(|l| l != "0"), "HEAD {path} announces the GET length");
        assert!(r.body.is_empty());
    }
}

#[test]
fn latency_reset_never_lowers_prometheus_series() {
    let up = MockUpstream::echo();
    let gw = gateway(&up, "");
    for _ in 0..3 {
        assert_eq!(get(gw.addr, "a", "/x").status, 200);
    }
    let count = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("ringway_request_duration_seconds_count{service=\"all\",api=\"all\"}"))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
    };
    assert_eq!(count(&admin_get(&gw, "/metrics").text()).as_deref(), Some("3"));
    admin_get(&gw, "/stats/latency?reset=1");
    let window = admin_get(&gw, "/stats/latency").text();
    assert!(window.contains("\"all/all\":{\"total\":{\"count\":0,"), "the JSON window restarted: {window}");
    assert_eq!(count(&admin_get(&gw, "/metrics").text()).as_deref(), Some("3"), "the Prometheus series kept its count");
    assert_eq!(get(gw.addr, "a", "/x").status, 200);
    let window = admin_get(&gw, "/stats/latency").text();
    assert!(window.contains("\"all/all\":{\"total\":{\"count\":1,"), "{window}");
    // buckets small enough for a gateway whose p50 is tens of microseconds
    assert!(admin_get(&gw, "/metrics").text().contains("le=\"0.000025\""));
}

#[test]
fn metrics_pass_promtool_and_carry_process_build_and_endpoint_series() {
    let up = MockUpstream::echo();
    let gw = gateway(&up, "");
    assert_eq!(get(gw.addr, "a", "/x").status, 200);
    let body = admin_get(&gw, "/metrics").text();
    for series in [
        "ringway_build_info{version=",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        &format!("ringway_upstream_endpoint_healthy{{upstream=\"o\",endpoint=\"{}\"}} 1", up.addr),
        &format!("ringway_upstream_endpoint_ejected{{upstream=\"o\",endpoint=\"{}\"}} 0", up.addr),
    ] {
        assert!(body.contains(series), "missing {series}");
    }
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            panic!("promtool is needed for this test (scripts/test.sh installs Debian's prometheus package): {e}")
        }
    };
    use std::io::Write;
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && report.trim().is_empty(), "promtool check metrics:\n{report}");
}

#[test]
fn refusals_stay_out_of_api_latency_curves() {
    let up = MockUpstream::echo();
    let body = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n{}",
        CatchAll::new(&[up.addr]).api("max_qps = 1\nburst = 1").build()
    );
    let gw = TestGateway::start(&body);
    let statuses: Vec<u16> = (0..5).map(|_| get(gw.addr, "a", "/x").status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 4, "{statuses:?}");
    let json = admin_get(&gw, "/stats/latency").text();
    assert!(json.contains("\"all/all\":{\"total\":{\"count\":1,"), "only the served request: {json}");
    assert!(json.contains("\"listeners\":{\"listener0\":{\"total\":{\"count\":5,"), "clients saw all five: {json}");
}

#[test]
fn access_log_says_499_when_the_client_left_before_any_response() {
    let up = MockUpstream::start(|_| Reply::Delay(Duration::from_millis(400), Box::new(Reply::ok("late"))));
    let path = std::env::temp_dir().join(format!("ringway-access499-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let gw = gateway(&up, &format!("[access_log]\npath = \"{}\"\n", path.display()));
    let mut c = Client::connect(gw.addr);
    c.send(b"GET /gone HTTP/1.1\r\nHost: a\r\n\r\n");
    std::thread::sleep(Duration::from_millis(100));
    drop(c); // the client gives up while the upstream thinks
    assert!(
        eventually(Duration::from_secs(5), || std::fs::read_to_string(&path).is_ok_and(|t| t.contains("/gone"))),
        "the request is logged"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text.lines().find(|l| l.contains("/gone")).unwrap();
    assert!(line.contains("\"status\":499") && line.contains("\"error\":\"client_closed\""), "{line}");
    let _ = std::fs::remove_file(&path);
}
