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

#[test]
fn egress_pool_spreads_new_connections_over_its_addresses() {
    let up = MockUpstream::echo();
    // no pooling, so every request dials and takes the next source address
    let body = CatchAll::new(&[up.addr])
        .upstream("egress_ip = [\"127.0.0.2\", \"127.0.0.3\"]\npool_max_idle_per_endpoint = 0")
        .build();
    let gw = TestGateway::start(&body);
    for i in 0..6 {
        assert_eq!(get(gw.addr, "a", &format!("/{i}")).status, 200);
    }
    let mut seen: Vec<String> = up.requests().iter().map(|r| r.peer.ip().to_string()).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["127.0.0.2", "127.0.0.3"]);
}
