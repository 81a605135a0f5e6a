//! Upstream HA through the real gateway: passive outlier ejection decided once for all cores,
//! active health checks taking endpoints out of and back into rotation, `when_all_down`, and the
//! ejected-percent cap. State is observed through the admin endpoint, never by sleeping.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

fn upstream(addrs: &[SocketAddr], extra: &str) -> String {
    upstream_with_api(addrs, extra, "")
}

/// The test upstream `o` with `extra` upstream keys and `api` keys on its catch-all API, plus admin.
fn upstream_with_api(addrs: &[SocketAddr], extra: &str, api: &str) -> String {
    format!("[admin]\nlisten = \"127.0.0.1:0\"\n{}", CatchAll::new(addrs).upstream(extra).api(api).build())
}

fn states(gw: &TestGateway) -> Vec<String> {
    let text = get(gw.admin.unwrap(), "a", "/upstreams").text();
    text.split("\"state\":\"").skip(1).map(|s| s.split('"').next().unwrap().to_string()).collect()
}

fn spread_gets(gw: &TestGateway, n: usize) -> Vec<u16> {
    // several connections so both workers take part
    (0..n).map(|i| get(gw.addr, "a", &format!("/{i}")).status).collect()
}

#[test]
fn failing_endpoint_is_ejected_on_every_core_and_errors_are_bounded() {
    let (a, b) = (MockUpstream::echo(), MockUpstream::echo());
    let bad = MockUpstream::start(|_| Reply::status(503, "down"));
    let extra = "outlier = { consecutive_failures = 3, base_ejection_ms = 60000, max_ejected_percent = 50 }\n";
    let gw = TestGateway::start(&upstream(&[a.addr, b.addr, bad.addr], extra));
    let t0 = std::time::Instant::now();
    let first = spread_gets(&gw, 60);
    assert!(
        eventually(Duration::from_secs(5), || states(&gw) == ["healthy", "healthy", "ejected"]),
        "{:?}",
        states(&gw)
    );
    let errors_before = first.iter().filter(|&&s| s == 503).count();
    // figures for the notes: `cargo test --test upstream_health -- --nocapture`
    let last_error = first.iter().rposition(|&s| s == 503).unwrap_or(0);
    eprintln!(
        "outlier: {errors_before} client-visible 503s, the last at request #{last_error} of 60, ejected within {:?}",
        t0.elapsed()
    );
    assert!((3..=8).contains(&errors_before), "client-visible 5xx during ejection: {errors_before}");
    let seen = bad.request_count();
    let after = spread_gets(&gw, 60);
    assert!(after.iter().all(|&s| s == 200), "{after:?}");
    assert_eq!(bad.request_count(), seen, "no core sends to the ejected endpoint");
}

#[test]
fn health_checks_take_a_dead_endpoint_out_and_bring_it_back() {
    let good = MockUpstream::echo();
    let spare = DeadPort::new(); // nothing listens: probes fail
    let dead_addr = spare.addr;
    let extra = "health = { interval_ms = 50, timeout_ms = 200, unhealthy_after = 2, healthy_after = 2 }\n";
    let gw = TestGateway::start(&upstream(&[good.addr, dead_addr], extra));
    assert!(eventually(Duration::from_secs(5), || states(&gw) == ["healthy", "unhealthy"]), "{:?}", states(&gw));
    let before = good.request_count();
    assert!(spread_gets(&gw, 20).iter().all(|&s| s == 200));
    assert_eq!(good.request_count() - before, 20, "the dead endpoint gets no traffic");
    // the endpoint recovers on the same address
    drop(spare);
    let revived = MockUpstream::start_on(&dead_addr.to_string(), |r| Reply::ok(&format!("revived {}", r.target)));
    assert!(eventually(Duration::from_secs(5), || states(&gw) == ["healthy", "healthy"]), "{:?}", states(&gw));
    let texts: Vec<String> = (0..20).map(|i| get(gw.addr, "a", &format!("/{i}")).text()).collect();
    assert!(texts.iter().any(|t| t.starts_with("revived")), "re-admitted endpoint serves again");
    drop(revived);
}

#[test]
fn all_endpoints_down_fails_fast_with_503_or_tries_anyway() {
    let spare = DeadPort::new();
    let dead = spare.addr;
    let hc = "health = { interval_ms = 50, timeout_ms = 200, unhealthy_after = 1, healthy_after = 1 }\n";
    let gw = TestGateway::start(&upstream(&[dead], hc));
    assert!(eventually(Duration::from_secs(5), || states(&gw) == ["unhealthy"]));
    assert_eq!(get(gw.addr, "a", "/").status, 503, "fail_fast: nothing healthy to try");
    let gw = TestGateway::start(&upstream(&[dead], &format!("{hc}when_all_down = \"try_all\"\n")));
    assert!(eventually(Duration::from_secs(5), || states(&gw) == ["unhealthy"]));
    assert_eq!(get(gw.addr, "a", "/").status, 502, "try_all: the dead endpoint is tried (refused)");
}

#[test]
fn ejections_respect_max_ejected_percent() {
    let good = MockUpstream::echo();
    let bad: Vec<MockUpstream> = (0..9).map(|_| MockUpstream::start(|_| Reply::status(500, "x"))).collect();
    let mut addrs: Vec<SocketAddr> = bad.iter().map(|b| b.addr).collect();
    addrs.push(good.addr);
    let extra = "outlier = { consecutive_failures = 2, base_ejection_ms = 60000, max_ejected_percent = 10 }\n";
    let gw = TestGateway::start(&upstream(&addrs, extra));
    spread_gets(&gw, 100);
    assert!(eventually(Duration::from_secs(3), || states(&gw).iter().filter(|s| *s == "ejected").count() == 1));
    spread_gets(&gw, 50);
    let st = states(&gw);
    assert_eq!(st.iter().filter(|s| *s == "ejected").count(), 1, "10% of 10 endpoints, at least one: {st:?}");
    assert!(good.request_count() > 0, "traffic keeps flowing to the rest");
}

#[test]
fn hanging_and_refusing_endpoints_are_ejected_too() {
    let good = MockUpstream::echo();
    let hanging = MockUpstream::start(|_| Reply::Delay(Duration::from_secs(5), Box::new(Reply::ok("late"))));
    let spare = DeadPort::new();
    let refusing = spare.addr;
    let extra = "outlier = { consecutive_failures = 2, base_ejection_ms = 60000, max_ejected_percent = 100 }\n";
    let body = upstream_with_api(&[good.addr, hanging.addr, refusing], extra, "timeout_ms = 200");
    let gw = TestGateway::start(&body);
    assert!(
        eventually(Duration::from_secs(10), || {
            get(gw.addr, "a", "/");
            states(&gw) == ["healthy", "ejected", "ejected"]
        }),
        "{:?}",
        states(&gw)
    );
    assert!(spread_gets(&gw, 20).iter().all(|&s| s == 200), "only the good endpoint is left");
}
