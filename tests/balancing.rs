//! Balancers, retries and circuit caps through the real gateway.

mod common;

use std::time::Duration;

use common::*;

fn config(addrs: &[std::net::SocketAddr], up_extra: &str, api_extra: &str) -> String {
    format!(
        "{}{up_extra}\n[service.s]\n[[service.s.api]]\nname = \"all\"\npath = \"/*\"\nupstream = \"o\"\n{api_extra}\n",
        upstream_toml("o", addrs)
    )
}

#[test]
fn least_request_steers_away_from_a_slow_endpoint() {
    let slow = MockUpstream::start(|_| Reply::Delay(Duration::from_millis(200), Box::new(Reply::ok("slow"))));
    let fast = MockUpstream::echo();
    let gw =
        TestGateway::start_with_workers(&config(&[slow.addr, fast.addr], "balance = \"least_request\"", ""), "", 1);
    let addr = gw.addr;
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for _ in 0..10 {
                    assert_eq!(c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").response(false).status, 200);
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let (s, f) = (slow.request_count(), fast.request_count());
    assert_eq!(s + f, 80);
    // round robin would give 40/40; least_request leaves the slow endpoint a share that depends on
    // how often the fast one also has a request in flight (ties): 8-16 of 80 seen here
    assert!(s * 3 < f, "slow endpoint got {s} of 80, fast {f}");
}

#[test]
fn header_hash_is_sticky_per_key() {
    let (a, b) = (MockUpstream::echo(), MockUpstream::echo());
    let gw = TestGateway::start(&config(&[a.addr, b.addr], "balance = \"hash(header:x-user)\"", ""));
    for user in 0..20 {
        for _ in 0..3 {
            let r = request(gw.addr, &format!("GET / HTTP/1.1\r\nHost: a\r\nX-User: u{user}\r\n\r\n"));
            assert_eq!(r.status, 200);
        }
    }
    let by =
        |m: &MockUpstream| m.requests().iter().map(|r| r.header("x-user").unwrap().to_string()).collect::<Vec<_>>();
    let (ua, ub) = (by(&a), by(&b));
    assert!(ua.iter().all(|u| !ub.contains(u)), "a user's requests never split across endpoints");
    assert!(!ua.is_empty() && !ub.is_empty(), "users spread over both endpoints");
    assert_eq!(ua.len() % 3 + ub.len() % 3, 0);
}

#[test]
fn gateway_errors_are_retried_on_another_endpoint_for_idempotent_requests() {
    let bad = MockUpstream::start(|_| Reply::status(503, "busy"));
    let good = MockUpstream::echo();
    // half the endpoints fail here, so the default 20% budget would (rightly) refuse some retries
    let up_extra = "outlier = { enabled = false }\nretry_budget_percent = 100";
    let gw = TestGateway::start(&config(&[bad.addr, good.addr], up_extra, "retries = 1"));
    let statuses: Vec<u16> = (0..10).map(|i| get(gw.addr, "a", &format!("/{i}")).status).collect();
    assert!(statuses.iter().all(|&s| s == 200), "GETs are retried past the 503: {statuses:?}");
    assert!(bad.request_count() > 0, "the bad endpoint was tried");
    let posts: Vec<u16> =
        (0..10).map(|_| request(gw.addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx").status).collect();
    assert!(posts.contains(&503), "a POST with a body is never replayed: {posts:?}");
}

#[test]
fn retry_budget_caps_retries() {
    let bad = MockUpstream::start(|_| Reply::status(503, "busy"));
    let good = MockUpstream::echo();
    let up_extra = "outlier = { enabled = false }\nretry_budget_percent = 0";
    let gw = TestGateway::start(&config(&[bad.addr, good.addr], up_extra, "retries = 1"));
    let statuses: Vec<u16> = (0..10).map(|i| get(gw.addr, "a", &format!("/{i}")).status).collect();
    assert!(statuses.contains(&503), "with a 0% budget nothing is retried: {statuses:?}");
}

#[test]
fn max_connections_answers_503_instead_of_queueing() {
    let up = MockUpstream::start(|_| Reply::Delay(Duration::from_millis(400), Box::new(Reply::ok("slow"))));
    let gw = TestGateway::start_with_workers(&config(&[up.addr], "max_connections = 1", ""), "", 1);
    let mut first = Client::connect(gw.addr);
    first.send(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(eventually(Duration::from_secs(5), || up.request_count() == 1));
    assert_eq!(get(gw.addr, "a", "/b").status, 503, "U17: circuit open, answered at once");
    assert_eq!(first.response(false).status, 200);
    assert_eq!(get(gw.addr, "a", "/c").status, 200, "the pooled connection is reused");
}

#[test]
fn a_reset_before_any_response_byte_is_retried_elsewhere_by_default() {
    // one endpoint accepts, reads the request and closes without a byte; the other answers
    let broken = MockUpstream::start(|_| Reply::Close);
    let good = MockUpstream::echo();
    let gw = TestGateway::start_with_workers(&config(&[broken.addr, good.addr], "", ""), "", 1);
    // (round robin: every other request meets the broken endpoint; 4 requests need 2 retries,
    // which the upstream's retry budget of 20% of at least 10 requests allows)
    for _ in 0..4 {
        assert_eq!(get(gw.addr, "a", "/").status, 200, "GET is retried on the other endpoint");
    }
    assert!(broken.request_count() > 0, "the broken endpoint was tried");
    // a POST may have had effects: never retried
    let statuses: Vec<u16> =
        (0..6).map(|_| request(gw.addr, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").status).collect();
    assert!(statuses.contains(&502), "POSTs that hit the broken endpoint fail: {statuses:?}");
    // and the default can be turned off
    let off = TestGateway::start_with_workers(
        &config(&[broken.addr, good.addr], "", "retry_on_connection_error = false"),
        "",
        1,
    );
    let statuses: Vec<u16> = (0..6).map(|_| get(off.addr, "a", "/").status).collect();
    assert!(statuses.contains(&502), "without the default a reset is a 502: {statuses:?}");
}
