//! Egress IP: every upstream connection leaves from the configured source address.

mod common;

use common::*;

#[test]
fn upstream_sees_the_instance_egress_ip() {
    let up = MockUpstream::echo();
    let gw = TestGateway::start_with_instance(&catch_all("o", &[up.addr]), "egress_ip = \"127.0.0.2\"");
    assert_eq!(get(gw.addr, "a", "/").status, 200);
    assert_eq!(up.requests()[0].peer.ip().to_string(), "127.0.0.2");
}

#[test]
fn upstream_override_wins_over_the_instance_egress_ip() {
    let (a, b) = (MockUpstream::echo(), MockUpstream::echo());
    let body = format!(
        "{}egress_ip = \"127.0.0.3\"\n{}\n[service.s]\n[[service.s.api]]\nname = \"a\"\npath = \"/a\"\nupstream = \"a\"\n[[service.s.api]]\nname = \"b\"\npath = \"/b\"\nupstream = \"b\"\n",
        upstream_toml("a", &[a.addr]),
        upstream_toml("b", &[b.addr])
    );
    let gw = TestGateway::start_with_instance(&body, "egress_ip = \"127.0.0.2\"");
    assert_eq!(get(gw.addr, "h", "/a").status, 200);
    assert_eq!(get(gw.addr, "h", "/b").status, 200);
    assert_eq!(a.requests()[0].peer.ip().to_string(), "127.0.0.3");
    assert_eq!(b.requests()[0].peer.ip().to_string(), "127.0.0.2");
}

#[test]
fn unusable_egress_ip_is_a_502_naming_the_source() {
    let up = MockUpstream::echo();
    // 192.0.2.1 (TEST-NET-1) is not a local address: bind fails, nothing is sent anywhere
    let gw = TestGateway::start_with_instance(&catch_all("o", &[up.addr]), "egress_ip = \"192.0.2.1\"");
    assert_eq!(get(gw.addr, "a", "/").status, 502);
    assert_eq!(up.request_count(), 0);
}
