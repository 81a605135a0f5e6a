//! DNS-named endpoints against a real DNS server (dnsmasq on a loopback port): traffic follows
//! the records within the refresh interval, a removed address gets no new request, both
//! addresses of a name share the load, a DNS outage keeps the last good addresses, a name that
//! never resolved answers 503 at once, and `/upstreams` shows names, addresses and results.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::dns::Dnsmasq;
use common::*;

/// Two origins on the same port, on 127.0.0.2 and 127.0.0.3, answering "a" and "b".
fn origins() -> (MockUpstream, MockUpstream, u16) {
    for _ in 0..20 {
        let a = MockUpstream::start_on("127.0.0.2:0", |_| Reply::ok("a"));
        let port = a.addr.port();
        if std::net::TcpListener::bind(("127.0.0.3", port)).is_ok() {
            let b = MockUpstream::start_on(&format!("127.0.0.3:{port}"), |_| Reply::ok("b"));
            return (a, b, port);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

fn gateway(dns: SocketAddr, name: &str, port: u16) -> TestGateway {
    TestGateway::start_with_instance(
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[upstream.catalog]\nendpoints = [{{ addr = \"{name}:{port}\", weight = 2 }}]\ndns_refresh_ms = 200\n\n[service.s]\n[[service.s.api]]\nname = \"all\"\npath = \"/*\"\nupstream = \"catalog\"\n"
        ),
        &format!("resolver = [\"{dns}\"]"),
    )
}

fn body(gw: &TestGateway) -> String {
    let r = get(gw.addr, "x", "/");
    format!("{} {}", r.status, r.text())
}

#[test]
fn traffic_follows_the_records() {
    let (a, b, port) = origins();
    let dns = Dnsmasq::start("127.0.0.2 catalog.test\n");
    let gw = gateway(dns.addr, "catalog.test", port);
    assert!(eventually(Duration::from_secs(5), || body(&gw) == "200 a"), "the name resolved: {}", body(&gw));

    // the record moves: within the refresh interval every new request goes to the new address
    dns.set("127.0.0.3 catalog.test\n");
    assert!(eventually(Duration::from_secs(5), || body(&gw) == "200 b"), "traffic moved: {}", body(&gw));
    let a_before = a.request_count();
    for _ in 0..20 {
        assert_eq!(body(&gw), "200 b");
    }
    assert_eq!(a.request_count(), a_before, "a removed address gets no new request");

    // two records: both addresses serve
    dns.set("127.0.0.2 catalog.test\n127.0.0.3 catalog.test\n");
    let (a0, b0) = (a.request_count(), b.request_count());
    assert!(
        eventually(Duration::from_secs(5), || {
            body(&gw);
            a.request_count() > a0 && b.request_count() > b0
        }),
        "both addresses get requests"
    );
    let upstreams = http_get(gw.admin.unwrap(), "/upstreams").1;
    assert!(
        upstreams.contains(&format!(
            "\"name\":\"catalog.test:{port}\",\"weight\":2,\"addresses\":[\"127.0.0.2\",\"127.0.0.3\"]"
        )),
        "{upstreams}"
    );
    assert!(upstreams.contains("\"last_resolution\":\"ok\""), "{upstreams}");
    assert!(
        upstreams.contains(&format!("\"addr\":\"127.0.0.3:{port}\",\"weight\":1,")),
        "weight 2 split over 2 addresses: {upstreams}"
    );
    assert!(upstreams.contains("\"from\":\"catalog.test\"}"), "{upstreams}");
}

#[test]
fn a_dns_outage_keeps_the_last_good_addresses() {
    let (a, _b, port) = origins();
    let mut dns = Dnsmasq::start("127.0.0.2 catalog.test\n");
    let gw = gateway(dns.addr, "catalog.test", port);
    assert!(eventually(Duration::from_secs(5), || body(&gw) == "200 a"));
    dns.stop();
    // several refresh intervals (200 ms) without DNS: still served from the last good address
    let admin = gw.admin.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || {
            let u = http_get(admin, "/upstreams").1;
            u.contains("\"addresses\":[\"127.0.0.2\"]") && !u.contains("\"last_resolution\":\"ok\"")
        }),
        "the failure is reported, the addresses kept: {}",
        http_get(admin, "/upstreams").1
    );
    for _ in 0..10 {
        assert_eq!(body(&gw), "200 a");
    }
    assert!(a.request_count() >= 11);
}

#[test]
fn a_name_that_never_resolved_answers_503_at_once() {
    let (_a, _b, port) = origins();
    let dns = Dnsmasq::start("127.0.0.2 catalog.test\n");
    let gw = gateway(dns.addr, "nowhere.test", port);
    let admin = gw.admin.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || http_get(admin, "/upstreams").1.contains("\"last_resolution\":\"")
            && !http_get(admin, "/upstreams").1.contains("\"last_resolution\":\"pending\"")),
        "{}",
        http_get(admin, "/upstreams").1
    );
    let r = get(gw.addr, "x", "/");
    assert_eq!(r.status, 503, "no address: when_all_down = fail_fast");
    // the name appears once the record exists
    dns.set("127.0.0.2 catalog.test\n127.0.0.2 nowhere.test\n");
    assert!(eventually(Duration::from_secs(5), || body(&gw) == "200 a"), "{}", body(&gw));
}
