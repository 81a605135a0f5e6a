//! Admission through the real gateway: QPS caps with 429 + headers, per-key limits, concurrency
//! caps, IP allow/deny and trusted proxies. Rate accuracy over time is measured in bench/, not here.

mod common;

use std::time::Duration;

use common::*;

fn api_config(up: &MockUpstream, api_extra: &str, service_extra: &str) -> String {
    format!(
        "{}\n[service.shop]\n{service_extra}\n[[service.shop.api]]\nname = \"all\"\npath = \"/*\"\nupstream = \"o\"\n{api_extra}\n",
        upstream_toml("o", &[up.addr])
    )
}

/// Sends `n` GETs on one keep-alive connection with `extra` headers; returns the statuses.
fn burst(addr: std::net::SocketAddr, n: usize, extra: &str) -> Vec<Response> {
    let mut c = Client::connect(addr);
    (0..n).map(|i| c.send(format!("GET /{i} HTTP/1.1\r\nHost: a\r\n{extra}\r\n").as_bytes()).response(false)).collect()
}

#[test]
fn api_cap_answers_excess_with_429_and_headers() {
    let up = MockUpstream::echo();
    // 1 per second with a burst of 3: a quick burst of 10 gets exactly 3 through
    let gw = TestGateway::start(&api_config(&up, "max_qps = 1\nburst = 3", ""));
    let rs = burst(gw.addr, 10, "");
    let ok = rs.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 3, "{:?}", rs.iter().map(|r| r.status).collect::<Vec<_>>());
    let refused = rs.iter().find(|r| r.status == 429).unwrap();
    assert_eq!(refused.header("x-ratelimit-limit"), Some("1"));
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));
    assert!(refused.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(up.request_count(), 3, "refused requests never reach the upstream");
}

#[test]
fn instance_cap_applies_across_services_and_workers() {
    let up = MockUpstream::echo();
    let gw = TestGateway::start_with_instance(&api_config(&up, "", ""), "max_qps = 1\nburst = 4");
    // several connections, likely on both workers: still 4 in total
    let ok: usize = (0..4).map(|_| burst(gw.addr, 4, "").iter().filter(|r| r.status == 200).count()).sum();
    assert_eq!(ok, 4);
}

#[test]
fn per_key_limit_separates_clients() {
    let up = MockUpstream::echo();
    let gw = TestGateway::start(&api_config(&up, "limit_by = \"header:x-api-key\"\nkey_qps = 1\nkey_burst = 2", ""));
    let a = burst(gw.addr, 5, "X-Api-Key: alice\r\n");
    let b = burst(gw.addr, 5, "X-Api-Key: bob\r\n");
    let ok = |rs: &[Response]| rs.iter().filter(|r| r.status == 200).count();
    assert_eq!((ok(&a), ok(&b)), (2, 2));
}

#[test]
fn refused_request_with_body_closes_and_never_runs_the_smuggled_request() {
    let up = MockUpstream::echo();
    let gw = TestGateway::start(&api_config(&up, "max_qps = 1\nburst = 1", ""));
    assert_eq!(get(gw.addr, "a", "/first").status, 200);
    let mut c = Client::connect(gw.addr);
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    c.send(format!("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len()).as_bytes());
    let r = c.response(false);
    assert_eq!((r.status, r.header("connection")), (429, Some("close")));
    assert!(c.try_response(false).is_none(), "exactly one response");
    assert!(up.requests().iter().all(|r| r.target != "/smuggled"));
}

#[test]
fn max_in_flight_sheds_with_503() {
    let up = MockUpstream::start(|_| Reply::Delay(Duration::from_millis(400), Box::new(Reply::ok("slow"))));
    let gw = TestGateway::start_with_workers(&api_config(&up, "max_in_flight = 1", ""), "", 1);
    let mut first = Client::connect(gw.addr);
    first.send(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(eventually(Duration::from_secs(5), || up.request_count() == 1));
    assert_eq!(get(gw.addr, "a", "/b").status, 503, "a second concurrent request is shed at once");
    assert_eq!(first.response(false).status, 200);
    assert_eq!(get(gw.addr, "a", "/c").status, 200, "the slot is free again");
}

#[test]
fn ip_deny_and_allow_lists_answer_403() {
    let up = MockUpstream::echo();
    let gw = TestGateway::start(&api_config(&up, "", "ip_deny = [\"127.0.0.0/8\"]"));
    assert_eq!(get(gw.addr, "a", "/").status, 403);
    let gw = TestGateway::start(&api_config(&up, "", "ip_allow = [\"10.0.0.0/8\", \"::1\"]"));
    assert_eq!(get(gw.addr, "a", "/").status, 403);
    let gw = TestGateway::start_with_instance(&api_config(&up, "", ""), "ip_deny = [\"127.0.0.1\"]");
    assert_eq!(get(gw.addr, "a", "/").status, 403);
    let gw = TestGateway::start(&api_config(&up, "", "ip_allow = [\"127.0.0.0/8\"]"));
    assert_eq!(get(gw.addr, "a", "/").status, 200);
    assert_eq!(up.request_count(), 1);
}

#[test]
fn trusted_proxy_forwarded_for_decides_the_client() {
    let up = MockUpstream::echo();
    let body = api_config(&up, "", "ip_deny = [\"203.0.113.0/24\"]");
    let gw = TestGateway::start_with_instance(&body, "trusted_proxies = [\"127.0.0.1\"]");
    let denied = request(gw.addr, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.5\r\n\r\n");
    assert_eq!(denied.status, 403);
    let ok = request(gw.addr, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n");
    assert_eq!(ok.status, 200);
    assert_eq!(up.requests()[0].header("x-forwarded-for"), Some("198.51.100.1, 127.0.0.1"), "the chain is extended");
    // without trusted proxies the header is ignored and replaced
    let gw = TestGateway::start(&body);
    assert_eq!(request(gw.addr, "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 203.0.113.5\r\n\r\n").status, 200);
    assert_eq!(up.requests()[1].header("x-forwarded-for"), Some("127.0.0.1"));
}

#[test]
fn refusals_are_counted_in_metrics() {
    let up = MockUpstream::echo();
    let body = format!("[admin]\nlisten = \"127.0.0.1:0\"\n{}", api_config(&up, "max_qps = 1\nburst = 1", ""));
    let gw = TestGateway::start(&body);
    let rs = burst(gw.addr, 4, "");
    assert_eq!(rs.iter().filter(|r| r.status == 429).count(), 3);
    let m = get(gw.admin.unwrap(), "a", "/metrics").text();
    assert!(m.contains("ringway_rate_limited_total{service=\"shop\",api=\"all\",rule=\"api\"} 3"), "{m}");
    assert!(m.contains("ringway_requests_total{service=\"shop\",api=\"all\",class=\"4xx\"} 3"));
}

#[test]
fn refusals_appear_in_the_access_log() {
    let up = MockUpstream::echo();
    let path = std::env::temp_dir().join(format!("ringway-limits-access-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let body = format!(
        "[access_log]\npath = \"{}\"\nformat = \"logfmt\"\n{}",
        path.display(),
        api_config(&up, "max_qps = 1\nburst = 1", "")
    );
    let gw = TestGateway::start(&body);
    let rs = burst(gw.addr, 3, "");
    assert_eq!(rs.iter().filter(|r| r.status == 429).count(), 2);
    assert!(eventually(Duration::from_secs(5), || std::fs::read_to_string(&path).map_or(0, |t| t.lines().count()) >= 3));
    let text = std::fs::read_to_string(&path).unwrap();
    let refused: Vec<&str> = text.lines().filter(|l| l.contains(" status=429 ")).collect();
    assert_eq!(refused.len(), 2, "{text}");
    assert!(refused.iter().all(|l| l.contains("service=shop api=all") && l.ends_with("error=rate_limited")), "{text}");
    let _ = std::fs::remove_file(&path);
}
