//! The WAF request and the verdict table, without sockets.

use std::cell::RefCell;
use std::time::Duration;

use super::*;
use crate::config::UpstreamId;
use crate::error::Kind;
use crate::filter::{CallFuture, HeadView, Upstreams};

fn config(mode: WafMode, deny_on_error: bool) -> WafConfig {
    WafConfig {
        name: "crs".into(),
        upstream: 3,
        mode,
        timeout: Duration::from_millis(50),
        deny_on_error,
        send_body_bytes: 8,
        path_prefix: String::new(),
    }
}

struct Head(Vec<(&'static str, &'static [u8])>);
impl HeadView for Head {
    fn method(&self) -> &[u8] {
        b"POST"
    }
    fn authority(&self) -> Option<&[u8]> {
        Some(b"shop.test")
    }
    fn path(&self) -> &[u8] {
        b"/a/../b"
    }
    fn query(&self) -> &[u8] {
        b"?id=1%27"
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
    fn for_each_header(&self, f: &mut dyn FnMut(&str, &[u8])) {
        for (n, v) in &self.0 {
            f(n, v);
        }
    }
}

/// Answers every call with `answer` and keeps what it was sent.
struct Scripted {
    answer: Result<u16, ()>,
    sent: RefCell<Vec<(UpstreamId, Vec<u8>, Duration)>>,
}
impl Upstreams for Scripted {
    fn call<'a>(&'a self, upstream: UpstreamId, request: &'a [u8], timeout: Duration) -> CallFuture<'a> {
        self.sent.borrow_mut().push((upstream, request.to_vec(), timeout));
        let answer = self.answer.map_err(|_| Error::upstream(Kind::ConnectRefused, "scripted"));
        Box::pin(async move { answer })
    }
}

fn head() -> Head {
    Head(vec![
        ("Host", b"shop.test"),
        ("Connection", b"keep-alive, X-Hop"),
        ("X-Hop", b"1"),
        ("Connection", b"X-Other"),
        ("X-Other", b"2"),
        ("Transfer-Encoding", b"chunked"),
        ("X-Forwarded-For", b"6.6.6.6"),
        ("Content-Type", b"application/x-www-form-urlencoded"),
        ("User-Agent", b"sqlmap/1.7"),
    ])
}

fn run(cfg: &WafConfig, answer: Result<u16, ()>, body: &[u8], truncated: bool) -> (Verdict, Effects, Vec<u8>) {
    let head = head();
    let up = Scripted { answer, sent: RefCell::default() };
    let req = FilterRequest {
        head: &head,
        path: b"/b",
        client: "192.0.2.7".parse().unwrap(),
        service: "shop",
        api: "orders",
        request_id: b"rid-1",
        body,
        body_truncated: truncated,
        upstreams: &up,
    };
    let filter = WafFilter::new(0, cfg.clone());
    let mut effects = Effects::default();
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().build().unwrap();
    let verdict = rt.block_on(filter.on_request(&req, &mut effects));
    let sent = up.sent.borrow();
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].0, sent[0].2), (3, Duration::from_millis(50)), "the WAF's upstream, within its budget");
    (verdict, effects, sent[0].1.clone())
}

#[test]
fn the_waf_gets_the_original_request_the_real_client_and_the_body_framed_by_length() {
    let (_, _, sent) = run(&config(WafMode::Block, false), Ok(200), b"a=1' OR", true);
    let text = String::from_utf8(sent).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("POST /a/../b?id=1%27 HTTP/1.1"), "the target as the client spelled it");
    let fields: Vec<&str> = lines.collect();
    assert_eq!(
        fields,
        [
            "Host: shop.test",
            "Content-Type: application/x-www-form-urlencoded",
            "User-Agent: sqlmap/1.7",
            "x-forwarded-for: 192.0.2.7",
            "x-request-id: rid-1",
            "x-body-truncated: 1",
            "content-length: 7",
        ],
        "hop-by-hop fields (and those any Connection field names) and the client's XFF are not passed on"
    );
    assert_eq!(body, "a=1' OR");
}

#[test]
fn a_path_prefix_goes_before_the_target() {
    let mut cfg = config(WafMode::Block, false);
    cfg.path_prefix = "/check".into();
    let (_, _, sent) = run(&cfg, Ok(204), b"", false);
    assert!(sent.starts_with(b"POST /check/a/../b?id=1%27 HTTP/1.1\r\n"));
    assert!(!sent.windows(16).any(|w| w.eq_ignore_ascii_case(b"x-body-truncated")));
}

#[test]
fn verdicts_by_mode_and_on_error() {
    use WafOutcome::*;
    let block = config(WafMode::Block, false);
    let closed = config(WafMode::Block, true);
    let monitor = config(WafMode::Monitor, true);
    let status = |v: &Verdict| match v {
        Verdict::Continue => 0,
        Verdict::Respond(r) => r.status,
    };
    let cases: [(&WafConfig, Result<u16, ()>, WafOutcome, u16); 10] = [
        (&block, Ok(200), Allow, 0),
        (&block, Ok(403), Block, 403),
        (&block, Ok(406), Block, 406),
        (&block, Ok(500), Error, 0),
        (&block, Err(()), Error, 0),
        (&closed, Ok(502), Error, 503),
        (&closed, Err(()), Error, 503),
        (&closed, Ok(302), Error, 503),
        (&monitor, Ok(403), MonitorBlock, 0),
        (&monitor, Err(()), Error, 0),
    ];
    for (cfg, answer, outcome, want) in cases {
        let (verdict, effects, _) = run(cfg, answer, b"", false);
        let rec = effects.waf.expect("the call is recorded");
        assert_eq!((rec.outcome, status(&verdict)), (outcome, want), "{:?} {answer:?}", cfg.mode);
        if let Verdict::Respond(r) = verdict {
            let body = String::from_utf8(r.body).unwrap();
            assert!(body.ends_with("request id rid-1\n"), "{body}");
        }
    }
}
