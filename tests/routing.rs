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

fn public_only(up: &MockUpstream, http: &str) -> TestGateway {
    TestGateway::start(&format!(
        "{http}\n{}\n[service.pub]\nbase_path = \"/public\"\n[[service.pub.api]]\nname = \"all\"\npath = \"/*\"\nupstream = \"o\"\n",
        upstream_toml("o", &[up.addr])
    ))
}

#[test]
fn dot_segments_cannot_leave_a_base_path() {
    let up = MockUpstream::echo();
    let gw = public_only(&up, "");
    for attack in ["/public/../admin", "/public/%2e%2e/admin", "/public/./../admin", "/public/.%2E/admin"] {
        assert_eq!(get(gw.addr, "a", attack).status, 404, "{attack} is routed as /admin");
    }
    assert!(up.requests().is_empty(), "nothing outside /public reached the origin");
    // inside the base path, the normalised path is what the upstream gets
    assert_eq!(get(gw.addr, "a", "/public/x/../%61b/./c?q=%2e%2e").text(), "GET /public/ab/c?q=%2e%2e 0");
    // an encoded slash does not split a segment: kept encoded by default
    assert_eq!(get(gw.addr, "a", "/public/a%2fb").text(), "GET /public/a%2Fb 0");
}

#[test]
fn escaped_slashes_reject_and_merge_slashes_are_configurable() {
    let up = MockUpstream::echo();
    let gw = public_only(&up, "[http]\nescaped_slashes = \"reject\"\nmerge_slashes = true\n");
    assert_eq!(get(gw.addr, "a", "/public/a%2Fb").status, 400);
    assert_eq!(get(gw.addr, "a", "/public/a%5cb").status, 400);
    assert_eq!(get(gw.addr, "a", "/public//a///b").text(), "GET /public/a/b 0");
    assert_eq!(get(gw.addr, "a", "//public/a").text(), "GET /public/a 0");
}

#[test]
fn options_asterisk_is_answered_by_the_gateway() {
    let up = MockUpstream::echo();
    let gw = TestGateway::start(&catch_all("o", &[up.addr]));
    let mut c = Client::connect(gw.addr);
    let r = c.send(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").response(false);
    assert_eq!(r.status, 200);
    assert!(r.header("allow").is_some_and(|a| a.contains("GET")), "{:?}", r.headers);
    // keep-alive: the next request on the connection is served
    assert_eq!(c.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n").response(false).text(), "GET /x 0");
    assert!(up.requests().iter().all(|r| r.target != "*" && r.target != "/*"), "never forwarded");
}
