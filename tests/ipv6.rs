//! IPv6 end to end on `::1`: listeners on `[::1]` and `[::]`, IPv6 endpoints and egress address,
//! IPv6 in IP allow/deny lists and trusted proxies' `X-Forwarded-For`, and a DNS name with only
//! an AAAA record.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::dns::Dnsmasq;
use common::*;

/// A gateway from `body` with `listen` as its listener (no harness defaults).
struct Gw(Option<ringway::runtime::Running>);

impl Gw {
    fn start(listen: &str, instance: &str, body: &str) -> (Self, SocketAddr) {
        let text = format!(
            "[instance]\nworkers = 2\nio_driver = \"{}\"\n{instance}\n[[listener]]\nlisten = \"{listen}\"\n{body}",
            driver()
        );
        let snapshot = ringway::config::compile(&text, 1).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let running = ringway::start(Arc::new(snapshot)).expect("starts");
        let addr = running.addrs[0];
        (Self(Some(running)), addr)
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(r) = self.0.take() {
            r.shutdown();
            r.join();
        }
    }
}

fn services(origin: SocketAddr, service_extra: &str) -> String {
    format!(
        "[upstream.o]\nendpoints = [{{ addr = \"{origin}\" }}]\negress_ip = \"::1\"\n[service.s]\n{service_extra}\n[[service.s.api]]\nname = \"a\"\npath = \"/*\"\nupstream = \"o\"\n"
    )
}

fn v6_available() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[test]
fn ipv6_listener_endpoint_and_egress() {
    assert!(v6_available(), "this host has no ::1 (IPv6 loopback): the IPv6 tests need it");
    let origin = MockUpstream::start_on("[::1]:0", |r| Reply::ok(&format!("{}", r.peer.ip())));
    let (_gw, addr) = Gw::start("[::1]:0", "", &services(origin.addr, ""));
    assert!(addr.is_ipv6());
    let r = get(addr, "x", "/hello");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "::1", "the upstream connection came from the IPv6 egress address");
    let seen = origin.requests().pop().unwrap();
    assert_eq!(seen.header("x-forwarded-for"), Some("::1"));
    // a wildcard IPv6 listener takes IPv6 clients
    let (_any, any_addr) = Gw::start("[::]:0", "", &services(origin.addr, ""));
    let local: SocketAddr = format!("[::1]:{}", any_addr.port()).parse().unwrap();
    assert_eq!(get(local, "x", "/").status, 200);
}

#[test]
fn ipv6_in_ip_lists_and_forwarded_for() {
    assert!(v6_available(), "this host has no ::1 (IPv6 loopback): the IPv6 tests need it");
    let origin = MockUpstream::start_on("[::1]:0", |_| Reply::ok("ok"));
    // denied by an IPv6 CIDR
    let (_g, addr) = Gw::start("[::1]:0", "", &services(origin.addr, "ip_deny = [\"::1/128\"]"));
    assert_eq!(get(addr, "x", "/").status, 403);
    // allowed only from 2001:db8::/32: ::1 is not
    let (_g, addr) = Gw::start("[::1]:0", "", &services(origin.addr, "ip_allow = [\"2001:db8::/32\"]"));
    assert_eq!(get(addr, "x", "/").status, 403);
    // ::1 is a trusted proxy: the client is the IPv6 address it forwarded for
    let (_g, addr) =
        Gw::start("[::1]:0", "trusted_proxies = [\"::1\"]", &services(origin.addr, "ip_allow = [\"2001:db8::/32\"]"));
    let r = request(addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 2001:db8::7\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = origin.requests().pop().unwrap();
    assert_eq!(seen.header("x-forwarded-for"), Some("2001:db8::7, ::1"), "the chain is extended");
    let r = request(addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 2001:db9::7\r\n\r\n");
    assert_eq!(r.status, 403);
}

#[test]
fn a_name_with_only_an_aaaa_record() {
    assert!(v6_available(), "this host has no ::1 (IPv6 loopback): the IPv6 tests need it");
    let origin = MockUpstream::start_on("[::1]:0", |_| Reply::ok("six"));
    let dns = Dnsmasq::start("::1 six.test\n");
    let body = format!(
        "[upstream.o]\nendpoints = [{{ addr = \"six.test:{}\" }}]\ndns_refresh_ms = 200\n[service.s]\n[[service.s.api]]\nname = \"a\"\npath = \"/*\"\nupstream = \"o\"\n",
        origin.addr.port()
    );
    let (_g, addr) = Gw::start("127.0.0.1:0", &format!("resolver = [\"{}\"]", dns.addr), &body);
    assert!(eventually(Duration::from_secs(5), || get(addr, "x", "/").text() == "six"), "served from the AAAA address");
}
