//! The request driver without sockets: a client and upstreams made of scripted in-memory streams
//! (`net::memory`), new upstream connections handed out by `upstream_side::test_dial`, pooled
//! ones checked in beforehand. Each test runs one request through `phases::run` and asserts
//! what each side received and how the connection ends.

use std::rc::Rc;
use std::time::Instant;

use super::io::Conn;
use super::phases::{run, Next, Scratch};
use super::session::Peer;
use super::upstream_side::test_dial;
use crate::net::memory::{MemoryIo, Recorded, Step};
use crate::net::Stream;
use crate::runtime::Shard;
use crate::upstream::{ConnSlot, PoolKey, UpstreamConn};

/// An upstream `u` with these endpoint ports (never dialled: tests supply the connections) and
/// one API `a` on `/*`, plus `api_keys`.
fn proxied(ports: &[u16], api_keys: &str) -> Rc<Shard> {
    let eps: Vec<String> = ports.iter().map(|p| format!("{{ addr = \"127.0.0.1:{p}\" }}")).collect();
    Shard::for_test(&format!(
        "[upstream.u]\nendpoints = [{}]\n\n[service.s]\nhosts = []\n\n[[service.s.api]]\nname = \"a\"\npath = \"/*\"\nupstream = \"u\"\n{api_keys}\n",
        eps.join(", ")
    ))
}

fn memory(steps: Vec<Step>) -> (Stream, Recorded) {
    let (io, rec) = MemoryIo::new(steps);
    (Stream::Memory(Box::new(io)), rec)
}

/// An upstream connection that takes the request and answers `response`.
fn answering(response: &str) -> (Stream, Recorded) {
    memory(vec![Step::Data(response.as_bytes().to_vec()), Step::Hang])
}

/// Puts `stream` in the pool as an idle connection to the upstream's endpoint `ep`.
fn pool(shard: &Shard, ep: usize, stream: Stream) {
    let gen = shard.generation();
    let up = &gen.snapshot.upstreams[0];
    let key = PoolKey { endpoint: up.endpoints[ep].addr, identity: up.pool_identity, upstream: 0 };
    let conn = UpstreamConn { slot: ConnSlot::new(&gen.upstreams[0].open), stream, buf: Vec::new(), requests: 1 };
    shard.pool_checkin(&gen, key, conn, Instant::now());
}

/// Runs one request from a client that sends `client` (then goes silent); returns how the
/// connection ends and what the client received.
fn serve(shard: &Rc<Shard>, client: Vec<Step>) -> (Next, String) {
    let (stream, to_client) = memory(client);
    let peer = Peer {
        addr: "192.0.2.7".parse().unwrap(),
        ip: b"192.0.2.7".to_vec(),
        listener: Rc::default(),
        trusted: false,
        scheme: "http",
        idle: Rc::default(),
        sni_names: None,
        h2: false,
    };
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().unwrap();
    let next = rt.block_on(async {
        let mut conn = Conn::new(stream, Vec::new());
        let mut scratch = Scratch::default();
        run(shard, &mut conn, &peer, 0, &mut scratch).await
    });
    (next, to_client.text())
}

fn data(s: &str) -> Step {
    Step::Data(s.as_bytes().to_vec())
}

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[test]
fn keep_alive_follows_the_client_version_and_connection_field() {
    let s = Shard::for_test(
        "[service.s]\nhosts = []\n[[service.s.api]]\nname = \"m\"\npath = \"/*\"\nmock = { body = \"hi\" }\n",
    );
    let (next, out) = serve(&s, vec![data("GET / HTTP/1.1\r\nHost: a\r\n\r\n")]);
    assert!(matches!(next, Next::KeepAlive) && !out.contains("connection:"), "{out}");
    let (next, out) = serve(&s, vec![data("GET / HTTP/1.0\r\n\r\n")]);
    assert!(matches!(next, Next::Close) && out.contains("connection: close\r\n"), "{out}");
    let (next, out) = serve(&s, vec![data("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")]);
    assert!(matches!(next, Next::KeepAlive) && out.contains("connection: keep-alive\r\n"), "{out}");
    let (next, out) = serve(&s, vec![data("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")]);
    assert!(matches!(next, Next::Close) && out.contains("connection: close\r\n"), "{out}");
    // a body the gateway does not read: the connection cannot be reused
    let (next, _) = serve(&s, vec![data("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")]);
    assert!(matches!(next, Next::LingerClose));
}

#[test]
fn a_stale_pooled_connection_is_retried_once_on_a_new_one_without_spending_retries() {
    let s = proxied(&[9001], "retries = 0");
    // the pooled connection takes the request, then turns out closed (the origin's idle close)
    let (stale, stale_saw) = memory(vec![Step::Eof]);
    pool(&s, 0, stale);
    let (fresh, fresh_saw) = answering(OK);
    test_dial::push(fresh);
    let (next, out) = serve(&s, vec![data("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")]);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("ok"), "{out}");
    assert!(matches!(next, Next::KeepAlive));
    assert!(stale_saw.text().starts_with("GET /x HTTP/1.1\r\n"), "the stale one was tried first");
    assert!(fresh_saw.text().starts_with("GET /x HTTP/1.1\r\n"), "then a new connection");
    assert_eq!(test_dial::left(), 0);
}

#[test]
fn a_stale_connection_is_not_retried_for_a_request_with_a_body() {
    let s = proxied(&[9001], "");
    let (stale, _) = memory(vec![Step::Eof]);
    pool(&s, 0, stale);
    let (fresh, fresh_saw) = answering(OK);
    test_dial::push(fresh);
    let (_, out) = serve(&s, vec![data("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")]);
    assert!(out.starts_with("HTTP/1.1 502 "), "{out}");
    assert_eq!(fresh_saw.text(), "", "a body may have been consumed: never sent twice");
    let _ = test_dial::next();
}

#[test]
fn configured_retries_move_a_502_to_the_other_endpoint() {
    let s = proxied(&[9001, 9002], "retries = 1");
    let (bad, bad_saw) = answering("HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
    let (good, good_saw) = answering(OK);
    test_dial::push(bad);
    test_dial::push(good);
    let (_, out) = serve(&s, vec![data("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")]);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(!bad_saw.text().is_empty() && !good_saw.text().is_empty());
    // without retries the 502 is the answer
    let s = proxied(&[9001, 9002], "retries = 0");
    let (bad, _) = answering("HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
    test_dial::push(bad);
    let (_, out) = serve(&s, vec![data("GET /x HTTP/1.1\r\nHost: a\r\n\r\n")]);
    assert!(out.starts_with("HTTP/1.1 502 "), "{out}");
}

#[test]
fn an_early_answer_to_an_upload_reaches_the_client_which_is_then_closed() {
    let s = proxied(&[9001], "");
    // the origin refuses the upload: it stops reading (writes fail) and has answered 413
    let (io, _) = MemoryIo::new(vec![data("HTTP/1.1 413 Payload Too Large\r\ncontent-length: 4\r\n\r\nbig!")]);
    let mut io = io;
    io.fail_writes = true;
    test_dial::push(Stream::Memory(Box::new(io)));
    let (next, out) =
        serve(&s, vec![data("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nxxxx"), Step::Hang]);
    assert!(out.starts_with("HTTP/1.1 413 Payload Too Large\r\n") && out.ends_with("big!"), "{out}");
    assert!(matches!(next, Next::LingerClose), "the unread upload means the connection cannot be reused");
}

#[test]
fn expect_100_continue_is_answered_before_the_body_is_read() {
    let s = proxied(&[9001], "");
    let (up, up_saw) = answering(OK);
    test_dial::push(up);
    let (_, out) = serve(
        &s,
        vec![data("PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"), data("hello")],
    );
    assert!(out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), "{out}");
    let sent = up_saw.text();
    assert!(sent.ends_with("\r\n\r\nhello") && !sent.to_ascii_lowercase().contains("expect"), "{sent}");
}

#[test]
fn a_silent_upstream_gets_504_once_the_exchange_budget_runs_out() {
    let s = proxied(&[9001], "timeout_ms = 30");
    let (up, up_saw) = memory(vec![Step::Hang]);
    test_dial::push(up);
    let t0 = Instant::now();
    let (next, out) = serve(&s, vec![data("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")]);
    assert!(out.starts_with("HTTP/1.1 504 "), "{out}");
    assert!(matches!(next, Next::KeepAlive), "a gateway error after a complete request keeps the connection");
    assert!(up_saw.text().starts_with("GET /slow"));
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn a_filter_free_api_forwards_the_request_head_rewritten() {
    let s = proxied(&[9001], "");
    let (up, up_saw) = answering(OK);
    test_dial::push(up);
    let (_, out) = serve(&s, vec![data("GET /p?q=1 HTTP/1.1\r\nHost: shop\r\nX-Request-Id: abc\r\nConnection: keep-alive, x-drop\r\nX-Drop: 1\r\n\r\n")]);
    assert!(out.contains("x-request-id: abc\r\n"), "{out}");
    let sent = up_saw.text();
    assert!(sent.starts_with("GET /p?q=1 HTTP/1.1\r\n"), "{sent}");
    assert!(sent.contains("x-forwarded-for: 192.0.2.7\r\n") && sent.contains("x-request-id: abc\r\n"), "{sent}");
    assert!(!sent.contains("X-Drop"), "fields named in Connection are hop-by-hop: {sent}");
}
