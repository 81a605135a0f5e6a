//! Public corpora replayed through the gateway (cases in `tests/corpus/*.cases`, extracted by
//! `scripts/corpus/extract.py` from nodejs/llhttp, defparam/smuggler and narfindustries/http-garden;
//! sources and licences are in each file's header).
//!
//! For every request case: each request the gateway accepts reaches the origin exactly once (no
//! extra request, none swallowed), with the body length llhttp's own expected output gives for it
//! where llhttp has one, and no smuggled request ever reaches the origin. For every response case:
//! a response llhttp cannot frame never reaches the client (502), and a response it can frame
//! reaches the client with exactly llhttp's body. Each case's outcome must also equal the verdict
//! recorded in its file, so any change in behaviour shows up in review; after a deliberate change,
//! `RINGWAY_CORPUS_RECORD=1 cargo test --test corpus` rewrites the verdicts.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");
/// A case is over when the gateway closes or stays quiet this long.
const QUIET: Duration = Duration::from_millis(500);
const THREADS: usize = 48;

struct Case {
    id: String,
    raw: Vec<u8>,
    reference: Option<String>,
    verdict: String,
}

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).expect("\\xNN"));
                i += 2;
            }
            other => panic!("bad escape {other:?} in {s}"),
        }
        i += 2;
    }
    out
}

fn load(file: &str) -> Vec<Case> {
    let text = std::fs::read_to_string(format!("{DIR}/{file}")).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut cases: Vec<Case> = Vec::new();
    for line in text.lines() {
        if let Some(id) = line.strip_prefix("[case] ") {
            cases.push(Case { id: id.into(), raw: Vec::new(), reference: None, verdict: String::new() });
        } else if let (Some(raw), Some(c)) = (line.strip_prefix("raw: "), cases.last_mut()) {
            c.raw = unescape(raw);
        } else if let (Some(r), Some(c)) = (line.strip_prefix("ref: "), cases.last_mut()) {
            c.reference = Some(r.into());
        } else if let (Some(v), Some(c)) = (line.strip_prefix("verdict: "), cases.last_mut()) {
            c.verdict = v.into();
        }
    }
    assert!(!cases.is_empty(), "{file} holds no cases");
    cases
}

/// Rewrites the verdict lines of `file` (record mode).
fn record(file: &str, verdicts: &[(String, String)]) {
    let path = format!("{DIR}/{file}");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::with_capacity(text.len());
    let mut next = verdicts.iter();
    for line in text.lines() {
        if line.starts_with("verdict: ") {
            out.push_str(&format!("verdict: {}\n", next.next().expect("one verdict per case").1));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(&path, out).unwrap();
}

/// A reference value `key=a,b,c` from a case's `ref` line.
fn ref_field<'a>(reference: &'a str, key: &str) -> Option<&'a str> {
    reference.split(' ').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn ref_numbers(reference: &str, key: &str) -> Vec<u64> {
    ref_field(reference, key).unwrap_or("-").split(',').filter_map(|n| n.parse().ok()).collect()
}

/// Sends `raw` from `source`, then reads until the gateway closes or goes quiet.
fn exchange(gw: SocketAddr, source: Ipv4Addr, raw: &[u8], ask: &[u8]) -> Vec<u8> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from((source, 0)).into()).expect("bind a loopback source address");
    sock.connect(&gw.into()).expect("connect to gateway");
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(QUIET)).unwrap();
    let _ = s.write_all(raw);
    let _ = s.write_all(ask);
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    loop {
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return buf,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

/// One response read from the client side: status, whether the origin made it, its body.
struct Got {
    status: u16,
    from_origin: bool,
    body: Vec<u8>,
}

/// Parses the gateway's responses in `buf` (Content-Length, chunked or close-delimited bodies).
fn responses(mut buf: &[u8]) -> Vec<Got> {
    let mut out = Vec::new();
    loop {
        let mut hs = [httparse::EMPTY_HEADER; 128];
        let mut r = httparse::Response::new(&mut hs);
        let Ok(httparse::Status::Complete(n)) = r.parse(buf) else { return out };
        let status = r.code.unwrap();
        let field = |name: &str| {
            r.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value))
        };
        let marked = field("x-origin").is_some();
        let plain = field("content-type").is_some_and(|c| c == "text/plain; charset=utf-8");
        let rest = &buf[n..];
        let (body, used) = if status == 101 || status == 204 || status == 304 || (100..200).contains(&status) {
            (Vec::new(), 0)
        } else if let Some(len) = field("content-length") {
            let len = len.trim().parse::<usize>().unwrap_or(0).min(rest.len());
            (rest[..len].to_vec(), len)
        } else if field("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().ends_with("chunked")) {
            dechunk(rest)
        } else {
            (rest.to_vec(), rest.len())
        };
        // the gateway's own answers: its plain-text "NNN Reason" body; the request replay's
        // origin marks its answers instead
        let own = plain && body.starts_with(format!("{status} ").as_bytes()) && body.ends_with(b"\n");
        let from_origin = marked || !own;
        out.push(Got { status, from_origin, body });
        buf = &rest[used..];
    }
}

fn dechunk(mut b: &[u8]) -> (Vec<u8>, usize) {
    let total = b.len();
    let mut body = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else { break };
        b = &b[eol + 2..];
        if size == 0 {
            let end = b.windows(4).position(|w| w == b"\r\n\r\n").map_or(b.len(), |p| p + 4);
            let end = if b.starts_with(b"\r\n") { 2 } else { end };
            b = &b[end.min(b.len())..];
            break;
        }
        body.extend_from_slice(&b[..size.min(b.len())]);
        b = &b[(size + 2).min(b.len())..];
    }
    (body, total - b.len())
}

/// Runs `f` over the cases on `THREADS` threads; returns the verdicts in case order.
fn run_all(cases: &[&Case], f: impl Fn(usize, &Case) -> Result<String, String> + Sync) -> Vec<(String, String)> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<String, String>>>> = Mutex::new((0..cases.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(i) else { return };
                let r = f(i, case);
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    let results = results.into_inner().unwrap();
    let mut failures = Vec::new();
    let mut verdicts = Vec::new();
    for (case, r) in cases.iter().zip(results) {
        match r.expect("every case ran") {
            Ok(v) => verdicts.push((case.id.clone(), v)),
            Err(e) => failures.push(format!("{}: {e}", case.id)),
        }
    }
    assert!(failures.is_empty(), "{} cases broke a property:\n{}", failures.len(), failures.join("\n"));
    verdicts
}

/// Replays every case of `file` (ids ending in `/response` as origin responses, the rest as client
/// requests), then compares with the recorded verdicts (or records them).
fn check(file: &str, as_responses: bool) {
    let cases = load(file);
    let (responses, requests): (Vec<&Case>, Vec<&Case>) =
        cases.iter().partition(|c| as_responses || c.id.ends_with("/response"));
    let mut verdicts = replay_requests(&requests);
    verdicts.extend(replay_responses(&responses));
    let order: std::collections::HashMap<&str, usize> =
        cases.iter().enumerate().map(|(i, c)| (c.id.as_str(), i)).collect();
    verdicts.sort_by_key(|(id, _)| order[id.as_str()]);
    check_verdicts(file, &cases, &verdicts);
}

/// Compares with the recorded verdicts (or records them).
fn check_verdicts(file: &str, cases: &[Case], verdicts: &[(String, String)]) {
    if std::env::var_os("RINGWAY_CORPUS_RECORD").is_some() {
        record(file, verdicts);
        return;
    }
    let changed: Vec<String> = cases
        .iter()
        .zip(verdicts)
        .filter(|(c, (_, v))| &c.verdict != v)
        .map(|(c, (_, v))| format!("{}: recorded `{}`, now `{v}`", c.id, c.verdict))
        .collect();
    assert!(
        changed.is_empty(),
        "{file}: {} of {} verdicts changed (RINGWAY_CORPUS_RECORD=1 records deliberate changes):\n{}",
        changed.len(),
        cases.len(),
        changed.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// A distinct loopback source address per case, so the origin can tell the cases apart.
fn source(i: usize) -> Ipv4Addr {
    let n = i + 1;
    Ipv4Addr::new(127, 10 + (n >> 16) as u8, (n >> 8) as u8, n as u8)
}

fn replay_requests(cases: &[&Case]) -> Vec<(String, String)> {
    if cases.is_empty() {
        return Vec::new();
    }
    let up = MockUpstream::start(|r| Reply::Full {
        status: 200,
        headers: vec![("x-origin".into(), "1".into())],
        body: format!("{} {} {}", r.method, r.target, r.body_len).into_bytes(),
    });
    let gw = TestGateway::start(&CatchAll::new(&[up.addr]).api("max_body_bytes = 1000000").build());
    run_all(cases, |i, case| {
        let ip = source(i);
        let got = responses(&exchange(gw.addr, ip, &case.raw, b""));
        // the origin has answered before the gateway could pass its response on
        let seen: Vec<SeenRequest> = up
            .requests()
            .into_iter()
            .filter(|r| r.header("x-forwarded-for").is_some_and(|x| x.ends_with(&ip.to_string())))
            .collect();
        let proxied = got.iter().filter(|g| g.from_origin).count();
        if seen.len() != proxied {
            return Err(format!("origin saw {} requests, client got {proxied} origin responses", seen.len()));
        }
        // a TE-only probe whose Transfer-Encoding the gateway honoured ends its body at the
        // zero chunk: the GET after it is the client's own next request, not a smuggled one
        let pipelined = case.id.ends_with("/te") && seen.iter().any(|r| r.target == "/smuggler" && r.chunked);
        if let Some(s) = seen.iter().find(|r| r.target.contains("smuggled")).filter(|_| !pipelined) {
            return Err(format!("a smuggled request reached the origin: {} {}", s.method, s.target));
        }
        if let Some(reference) = &case.reference {
            let bodies = ref_numbers(reference, "bodies");
            let complete = ref_field(reference, "messages").and_then(|m| m.parse::<usize>().ok()).unwrap_or(0);
            for (n, r) in seen.iter().enumerate().take(complete) {
                if bodies.get(n).is_some_and(|&b| b != r.body_len) {
                    return Err(format!(
                        "request {n}: origin got {} body bytes, llhttp reads {}",
                        r.body_len, bodies[n]
                    ));
                }
            }
        }
        let statuses: Vec<String> =
            got.iter().map(|g| if g.from_origin { g.status.to_string() } else { format!("gw{}", g.status) }).collect();
        let bodies: Vec<String> = seen.iter().map(|r| r.body_len.to_string()).collect();
        Ok(format!("responses={} origin_bodies={}", or_dash(&statuses), or_dash(&bodies)))
    })
}

fn or_dash(v: &[String]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// An origin on its own port that answers every request with `raw`, then closes its side.
fn raw_origin(raw: Vec<u8>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let raw = Arc::new(raw);
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let raw = raw.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut head = Vec::new();
                let mut tmp = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&tmp[..n]),
                    }
                }
                let _ = s.write_all(&raw);
                let _ = s.shutdown(std::net::Shutdown::Write);
                while matches!(s.read(&mut tmp), Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

fn replay_responses(cases: &[&Case]) -> Vec<(String, String)> {
    if cases.is_empty() {
        return Vec::new();
    }
    // one upstream and one API per case: /case/N goes to the origin that answers with case N
    let mut toml = String::new();
    for (i, case) in cases.iter().enumerate() {
        let origin = raw_origin(case.raw.clone());
        toml.push_str(&format!("[upstream.u{i}]\nendpoints = [{{ addr = \"{origin}\" }}]\n"));
    }
    toml.push_str("[service.all]\n");
    for i in 0..cases.len() {
        toml.push_str(&format!("[[service.all.api]]\nname = \"c{i}\"\npath = \"/case/{i}\"\nupstream = \"u{i}\"\n"));
    }
    let gw = TestGateway::start(&toml);
    run_all(cases, |i, case| {
        let head = case.reference.as_deref().is_some_and(|r| ref_field(r, "head") == Some("yes"));
        let method = if head { "HEAD" } else { "GET" };
        let ask = format!("{method} /case/{i} HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut got = responses(&exchange(gw.addr, source(i), ask.as_bytes(), b""));
        if head {
            got.iter_mut().for_each(|g| g.body.clear()); // a HEAD answer has no body to parse
        }
        let Some(first) = got.first() else { return Ok("responses=-".into()) };
        if let Some(reference) = &case.reference {
            let error = ref_field(reference, "error") == Some("yes");
            let statuses = ref_numbers(reference, "statuses");
            // llhttp cannot even read the head: nothing of it may reach the client, except that
            // bare LF line ends are tolerated (as nginx and HAProxy do): the head is re-serialised
            let bare_lf = ref_field(reference, "reason").is_some_and(|r| r.contains("CR") || r.contains("LF"));
            if error && statuses.is_empty() && first.status != 502 && !bare_lf {
                return Err(format!("llhttp refuses this head, the client got {}", first.status));
            }
            // a response llhttp frames completely reaches the client with exactly that body
            let final_at = statuses.iter().position(|s| !(100..200).contains(s) || *s == 101);
            let bodies = ref_numbers(reference, "bodies");
            if let (Some(at), false) = (final_at, error) {
                let complete = ref_field(reference, "messages").and_then(|m| m.parse::<usize>().ok()).unwrap_or(0);
                let framed = at < complete || bodies.len() > at;
                if framed && first.from_origin && u64::from(first.status) == statuses[at] {
                    let want = bodies.get(at).copied().unwrap_or(0);
                    if first.body.len() as u64 != want {
                        return Err(format!("client got {} body bytes, llhttp reads {want}", first.body.len()));
                    }
                }
            }
        }
        let who = if first.from_origin { "" } else { "gw" };
        Ok(format!("responses={who}{} body={}", first.status, first.body.len()))
    })
}

#[test]
fn llhttp_requests() {
    check("llhttp-requests.cases", false);
}

#[test]
fn llhttp_responses() {
    check("llhttp-responses.cases", true);
}

#[test]
fn smuggler_gadgets() {
    check("smuggler.cases", false);
}

#[test]
fn http_garden_trophies() {
    check("http-garden.cases", false);
}
