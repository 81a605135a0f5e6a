//! Routing through the real gateway: host tiers, base paths, API path kinds, rewrites, weights.

mod common;

use common::*;

fn config(a: std::net::SocketAddr, b: std::net::SocketAddr) -> String {
    format!(
        r#"
{}
{}
[service.shop]
hosts = ["shop.example.com"]
base_path = "/shop"
[[service.shop.api]]
name = "order"
methods = ["GET"]
path = "/orders/{{id}}"
upstream = "a"
[[service.shop.api]]
name = "static"
path = "/static/*"
upstream = "b"
upstream_path = "/assets"
[[service.shop.api]]
name = "stripped"
path = "/strip/*"
upstream = "a"
strip_base_path = true

[service.wild]
hosts = ["*.example.org"]
[[service.wild.api]]
name = "any"
path = "/*"
upstream = "b"
"#,
        upstream_toml("a", &[a]),
        upstream_toml("b", &[b])
    )
}

#[test]
fn host_and_base_path_pick_the_service_and_api() {
    let (a, b) = (MockUpstream::echo(), MockUpstream::echo());
    let gw = TestGateway::start(&config(a.addr, b.addr));
    assert_eq!(get(gw.addr, "shop.example.com", "/shop/orders/7").text(), "GET /shop/orders/7 0");
    assert_eq!(get(gw.addr, "SHOP.example.com:8080", "/shop/orders/8").status, 200);
    assert_eq!(get(gw.addr, "api.example.org", "/whatever").text(), "GET /whatever 0");
    assert_eq!((a.request_count(), b.request_count()), (2, 1));
}

#[test]
fn misses_are_404_and_method_mismatch_is_405() {
    let (a, b) = (MockUpstream::echo(), MockUpstream::echo());
    let gw = TestGateway::start(&config(a.addr, b.addr));
    assert_eq!(get(gw.addr, "other.test", "/shop/orders/7").status, 404, "unknown host, no any-host service");
    assert_eq!(get(gw.addr, "shop.example.com", "/shopping").status, 404, "base path matches on segments");
    assert_eq!(get(gw.addr, "example.org", "/x").status, 404, "*.example.org does not match example.org");
    let r = request(gw.addr, "POST /shop/orders/7 HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    assert_eq!(a.request_count() + b.request_count(), 0);
}

#[test]
fn rewrites_change_the_upstream_path_and_keep_the_query() {
    let (a, b) = (MockUpstream::echo(), MockUpstream::echo());
    let gw = TestGateway::start(&config(a.addr, b.addr));
    assert_eq!(get(gw.addr, "shop.example.com", "/shop/static/css/x.css?v=2").text(), "GET /assets/css/x.css?v=2 0");
    assert_eq!(get(gw.addr, "shop.example.com", "/shop/strip/a?q").text(), "GET /strip/a?q 0");
}

#[test]
fn absolute_form_routes_on_its_authority_and_rewrites_host() {
    let (a, b) = (MockUpstream::echo(), MockUpstream::echo());
    let gw = TestGateway::start(&config(a.addr, b.addr));
    let r = request(gw.addr, "GET http://shop.example.com/shop/orders/1 HTTP/1.1\r\nHost: evil.example.org\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(b.request_count(), 0, "the Host header did not route");
    assert_eq!(a.requests()[0].header("host"), Some("shop.example.com"));
}

#[test]
fn weighted_round_robin_spreads_by_weight() {
    let (a, b) = (MockUpstream::echo(), MockUpstream::echo());
    let body = format!(
        "[upstream.o]\nendpoints = [{{ addr = \"{}\", weight = 3 }}, {{ addr = \"{}\" }}]\n[service.s]\n[[service.s.api]]\nname = \"x\"\npath = \"/*\"\nupstream = \"o\"\n",
        a.addr, b.addr
    );
    let gw = TestGateway::start(&body);
    // one connection stays on one worker, whose balancer then cycles exactly
    let mut c = Client::connect(gw.addr);
    for _ in 0..40 {
        assert_eq!(c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").response(false).status, 200);
    }
    assert_eq!((a.request_count(), b.request_count()), (30, 10));
}
