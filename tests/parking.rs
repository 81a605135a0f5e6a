//! The parking lot: keep-alive connections idle past `[http] idle_park_ms` leave their task and
//! wait in the worker's epoll set. They must stay counted, come back whole when they speak
//! (many at once, and again after parking a second time), be closable at the connection cap,
//! and close on shutdown; new connections that stay silent park too, until their header timeout.
//! scripts/test.sh runs this suite over TLS too (`RINGWAY_TEST_TLS=1`);
//! tests/tls.rs checks that a parked TLS connection keeps its session and closes with close_notify.

mod common;

use std::time::Duration;

use common::*;

/// Longer than the default 1 s park delay plus the lot's 250 ms tick.
const PARKED: Duration = Duration::from_millis(1800);

/// One worker with an admin listener, a 20 s keep-alive and `http` lines of its own.
fn gateway(up: &MockUpstream, http: &str) -> TestGateway {
    let body = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[http]\nkeepalive_timeout_ms = 20000\n{http}\n{}",
        catch_all("o", &[up.addr])
    );
    TestGateway::start_with_workers(&body, "", 1)
}

#[test]
fn parked_connections_are_counted_evicted_at_the_cap_and_closed_on_shutdown() {
    let up = MockUpstream::echo();
    let mut gw = gateway(&up, "max_connections_per_worker = 2");
    let mut old = Client::connect(gw.addr);
    assert_eq!(old.send(b"GET /old HTTP/1.1\r\nHost: a\r\n\r\n").response(false).text(), "GET /old 0");
    let mut newer = Client::connect(gw.addr);
    assert_eq!(newer.send(b"GET /newer HTTP/1.1\r\nHost: a\r\n\r\n").response(false).text(), "GET /newer 0");
    std::thread::sleep(PARKED);
    assert_eq!(gauge(&gw, "ringway_connections_parked"), 2, "both idle connections parked");
    assert_eq!(gauge(&gw, "ringway_connections_active"), 2, "parked connections still count as open");
    // at the cap, a third client is served and the oldest parked connection closed for it
    let mut third = Client::connect(gw.addr);
    assert_eq!(third.send(b"GET /third HTTP/1.1\r\nHost: a\r\n\r\n").response(false).text(), "GET /third 0");
    assert!(old.is_closed(Duration::from_secs(2)), "the oldest idle connection made room");
    assert_eq!(newer.send(b"GET /again HTTP/1.1\r\nHost: a\r\n\r\n").response(false).text(), "GET /again 0");
    drop(third);
    assert!(eventually(Duration::from_secs(3), || gauge(&gw, "ringway_connections_active") == 1));
    // parked again, then the gateway stops: the drain does not wait for it, and it is closed
    std::thread::sleep(PARKED);
    assert_eq!(gauge(&gw, "ringway_connections_parked"), 1);
    let t0 = std::time::Instant::now();
    gw.stop();
    assert!(t0.elapsed() < Duration::from_secs(4), "a parked connection does not hold up shutdown");
    assert!(newer.is_closed(Duration::from_secs(2)), "closed on shutdown");
}

#[test]
fn many_parked_connections_come_back_whole_twice() {
    let up = MockUpstream::echo();
    let gw = gateway(&up, "");
    const N: usize = 300;
    let mut clients: Vec<Client> = (0..N).map(|_| Client::connect(gw.addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(
            c.send(format!("GET /first/{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()).response(false).status,
            200
        );
    }
    for round in ["one", "two"] {
        std::thread::sleep(PARKED);
        assert_eq!(gauge(&gw, "ringway_connections_parked"), N as u64, "round {round}: all parked");
        // every client speaks at about the same time (the lot wakes many at once); half of them
        // split the request across two writes
        for (i, c) in clients.iter_mut().enumerate() {
            let req = format!("POST /{round}/{i} HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok");
            match i % 2 {
                0 => c.send(req.as_bytes()),
                _ => c.send(&req.as_bytes()[..10]),
            };
        }
        for (i, c) in clients.iter_mut().enumerate().filter(|(i, _)| i % 2 == 1) {
            let req = format!("POST /{round}/{i} HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok");
            c.send(&req.as_bytes()[10..]);
        }
        for (i, c) in clients.iter_mut().enumerate() {
            assert_eq!(c.response(false).text(), format!("POST /{round}/{i} 2"), "round {round}");
        }
    }
    // a client that closes while parked is closed on our side too
    drop(clients);
    assert!(eventually(Duration::from_secs(3), || gauge(&gw, "ringway_connections_active") == 0));
    assert_eq!(gauge(&gw, "ringway_connections_parked"), 0);
}

#[test]
fn a_connection_silent_before_its_first_request_parks_until_the_header_timeout() {
    let up = MockUpstream::echo();
    let gw = gateway(&up, "header_timeout_ms = 4000");
    // pre-connected clients (over TLS: after their handshake) that have not asked for anything
    let mut speaks = Client::connect(gw.addr);
    let mut silent = Client::connect(gw.addr);
    let opened = std::time::Instant::now();
    std::thread::sleep(PARKED);
    assert!(
        eventually(Duration::from_secs(3), || gauge(&gw, "ringway_connections_parked") == 2),
        "silent new connections parked"
    );
    assert_eq!(gauge(&gw, "ringway_connections_active"), 2);
    // back from the lot it is still a new connection: its first request is served
    assert_eq!(speaks.send(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n").response(false).text(), "GET /first 0");
    assert_eq!(speaks.send(b"GET /second HTTP/1.1\r\nHost: a\r\n\r\n").response(false).text(), "GET /second 0");
    // the silent one is closed at the header timeout, as it would have been in its task: not
    // before (it is still open at 3 s), without an answer
    std::thread::sleep(Duration::from_secs(3).saturating_sub(opened.elapsed()));
    assert!(!silent.is_closed(Duration::from_millis(100)), "closed before its header timeout");
    assert!(silent.is_closed(Duration::from_secs(3)), "closed at its header timeout");
    assert!(eventually(Duration::from_secs(3), || gauge(&gw, "ringway_connections_active") == 1));
}
