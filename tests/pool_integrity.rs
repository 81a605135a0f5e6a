//! Response-queue poisoning: bytes an origin sends after a response has ended must never become
//! another request's response. Each scenario poisons a pooled connection, then probes at several
//! delays on the same client connection and on new ones; every probe must get its own answer.
//! Also: origin-closed and expired idle connections are closed (no CLOSE-WAIT left behind).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

/// A complete response that must never reach a client.
const STRAY: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nPOISON";
/// Stray bytes leave the origin this long after the response (so the gateway has pooled the
/// connection already); the probes wait until they are out.
const STRAY_AFTER: Duration = Duration::from_millis(2);

/// One poisoning scenario: the request the client sends and what the origin writes back.
struct Scenario {
    name: &'static str,
    request: &'static str,
    response: Vec<u8>,
    stray: Vec<u8>,
}

fn scenarios() -> Vec<Scenario> {
    let req = |m: &'static str| -> &'static str {
        match m {
            "GET" => "GET /poison HTTP/1.1\r\nHost: a\r\n\r\n",
            _ => "HEAD /poison HTTP/1.1\r\nHost: a\r\n\r\n",
        }
    };
    vec![
        Scenario {
            name: "late extra response after a Content-Length body",
            request: req("GET"),
            response: b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            stray: STRAY.to_vec(),
        },
        Scenario {
            name: "late extra response after a chunked body",
            request: req("GET"),
            response: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n".to_vec(),
            stray: STRAY.to_vec(),
        },
        Scenario {
            name: "HEAD answered with a body",
            request: req("HEAD"),
            response: b"HTTP/1.1 200 OK\r\ncontent-length: 44\r\n\r\n".to_vec(),
            stray: STRAY.iter().chain(b"\r\n\r\n").copied().collect(),
        },
        Scenario {
            name: "204 followed by a body",
            request: req("GET"),
            response: b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
            stray: STRAY.to_vec(),
        },
        Scenario {
            name: "late 0-chunk after a HEAD",
            request: req("HEAD"),
            response: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec(),
            stray: b"0\r\n\r\n".to_vec(),
        },
    ]
}

fn origin(s: &Scenario) -> MockUpstream {
    let (response, stray) = (s.response.clone(), s.stray.clone());
    MockUpstream::start(move |r| {
        if r.target == "/poison" {
            Reply::Sequence(vec![(Duration::ZERO, response.clone()), (STRAY_AFTER, stray.clone())])
        } else {
            Reply::ok(&format!("probe {}", r.target))
        }
    })
}

fn probe(c: &mut Client, n: usize) -> Response {
    c.send(format!("GET /p{n} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()).response(false)
}

fn run_scenario(s: &Scenario, workers: usize) {
    let up = origin(s);
    let gw = TestGateway::start_with_workers(&catch_all("o", &[up.addr]), "", workers);
    let mut n = 0;
    for delay_ms in [5u64, 40, 150] {
        let mut same = Client::connect(gw.addr);
        let before = up.replies_written();
        same.send(s.request.as_bytes()).response(s.request.starts_with("HEAD"));
        // the delays count from when the stray bytes are out: on a loaded machine the origin's
        // thread can write them late enough to land after a probe was forwarded, where they
        // would be that probe's answer through any proxy (not what this test is about)
        assert!(
            eventually(Duration::from_secs(5), || up.replies_written() > before),
            "{}: the origin wrote its stray bytes",
            s.name
        );
        std::thread::sleep(Duration::from_millis(delay_ms));
        for _ in 0..3 {
            n += 1;
            let r = probe(&mut same, n);
            assert_eq!(r.text(), format!("probe /p{n}"), "{}: same connection after {delay_ms} ms", s.name);
            n += 1;
            let r = probe(&mut Client::connect(gw.addr), n);
            assert_eq!(r.text(), format!("probe /p{n}"), "{}: new connection after {delay_ms} ms", s.name);
        }
    }
    let probes = up.requests().iter().filter(|r| r.target.starts_with("/p") && r.target != "/poison").count();
    assert_eq!(probes, n, "{}: every probe reached the origin exactly once", s.name);
}

#[test]
fn stray_bytes_never_become_a_response_one_worker() {
    for s in scenarios() {
        run_scenario(&s, 1);
    }
}

#[test]
fn stray_bytes_never_become_a_response_two_workers() {
    for s in scenarios() {
        run_scenario(&s, 2);
    }
}

/// Sockets of this process in CLOSE-WAIT towards `peer` (the origin closed, we did not).
fn close_wait_towards(peer: SocketAddr) -> usize {
    let port = format!("{:04X}", peer.port());
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3 && cols[2].ends_with(&format!(":{port}")) && cols[3] == "08"
        })
        .count()
}

#[test]
fn origin_closed_idle_connections_are_closed_at_once() {
    // the origin answers, then closes the idle connection 50 ms later (its keep-alive timeout)
    let up = MockUpstream::start(|_| {
        Reply::SequenceThenClose(vec![
            (Duration::ZERO, b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()),
            (Duration::from_millis(50), Vec::new()),
        ])
    });
    let gw = TestGateway::start(&catch_all("o", &[up.addr]));
    let clients: Vec<Client> = (0..20)
        .map(|_| {
            let mut c = Client::connect(gw.addr);
            c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
            c
        })
        .collect();
    for mut c in clients {
        assert_eq!(c.response(false).status, 200);
    }
    // the origin closes 50 ms after each answer: give it time to, then nothing may be left
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        eventually(Duration::from_secs(3), || close_wait_towards(up.addr) == 0),
        "the gateway closes pooled connections the origin closed, without further traffic ({} left)",
        close_wait_towards(up.addr)
    );
    // and the next request dials a fresh connection rather than failing
    assert_eq!(get(gw.addr, "a", "/").status, 200);
}

#[test]
fn expired_idle_connections_are_reaped_without_traffic() {
    let up = MockUpstream::echo();
    let toml = CatchAll::new(&[up.addr]).upstream("pool_idle_timeout_ms = 100").build();
    let gw = TestGateway::start(&toml);
    for _ in 0..10 {
        assert_eq!(get(gw.addr, "a", "/").status, 200);
    }
    let origin_conns = up.connection_count();
    assert!(
        eventually(Duration::from_secs(3), || {
            let admin_pool = ringway_pool_idle(&gw);
            admin_pool == Some(0)
        }),
        "pooled connections past pool_idle_timeout_ms are closed by the janitor"
    );
    assert_eq!(get(gw.addr, "a", "/").status, 200);
    assert!(up.connection_count() > origin_conns, "a new connection is dialled after the reap");
}

/// Idle pooled connections over all workers, read from the in-process gateway's stats.
fn ringway_pool_idle(gw: &TestGateway) -> Option<usize> {
    let running = gw.running.as_ref()?;
    let stats = running.stats();
    Some(stats.iter().map(|s| s.pool_idle).sum())
}
