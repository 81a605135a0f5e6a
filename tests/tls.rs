//! HTTPS listeners and TLS to upstreams, against the real gateway on loopback: SNI certificate
//! choice, versions, ALPN, resumption across workers, client certificates, the Host/SNI check
//! (421), idle connections parking with their session, bad handshakes (each counted), config
//! errors, and upstream TLS to an nginx origin with verification on, off, failing for each
//! reason, and with a client certificate.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use common::tls::{exchange, Ca, ClientOpts, NginxTls, TempDir};
use common::MockUpstream;

/// Certificates for one test: a CA, a default leaf and a shop leaf (exact and wildcard).
struct Certs {
    dir: TempDir,
    ca: Ca,
}

impl Certs {
    fn new() -> Self {
        let dir = TempDir::new("tls");
        let ca = Ca::new("ringway test CA");
        ca.leaf(&["default.test", "127.0.0.1"], false).write(&dir, "default");
        ca.leaf(&["shop.example.com", "*.shop.example.com"], false).write(&dir, "shop");
        Self { dir, ca }
    }
}

/// Starts a gateway whose first listener is HTTPS (`listener_extra` adds keys to it) and whose
/// second is plain HTTP, both routing `/*` to `upstream` (or a mock when `None`).
fn gateway(certs: &Certs, listener_extra: &str, upstream: Option<std::net::SocketAddr>) -> GatewayTls {
    gateway_with(certs, listener_extra, upstream, "")
}

/// Same, with lines for `[http]`.
fn gateway_with(certs: &Certs, listener_extra: &str, upstream: Option<std::net::SocketAddr>, http: &str) -> GatewayTls {
    let target = match upstream {
        Some(a) => format!("upstream = \"u\"\n\n[upstream.u]\nendpoints = [{{ addr = \"{a}\" }}]"),
        None => "mock = { body = \"mocked\\n\" }".to_string(),
    };
    let text = format!(
        r#"[instance]
workers = 2
io_driver = "{driver}"

[admin]
listen = "127.0.0.1:0"

[http]
{http}

[[listener]]
name = "https"
listen = "127.0.0.1:0"
tls_handshake_timeout_ms = 500
{listener_extra}

[[listener.tls]]
cert = "default.pem"
key = "default.key"

[[listener.tls]]
cert = "shop.pem"
key = "shop.key"
sni = ["shop.example.com", "*.shop.example.com"]

[[listener]]
name = "http"
listen = "127.0.0.1:0"

[service.s]
hosts = []

[[service.s.api]]
name = "all"
path = "/*"
{target}
"#,
        driver = common::driver()
    );
    let snapshot = ringway::config::compile_in(&text, 1, &certs.dir.0).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let running = ringway::start(Arc::new(snapshot)).expect("gateway starts");
    GatewayTls {
        https: running.addrs[0],
        http: running.addrs[1],
        admin: running.admin_addr.unwrap(),
        running: Some(running),
    }
}

struct GatewayTls {
    https: std::net::SocketAddr,
    http: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    running: Option<ringway::runtime::Running>,
}

impl Drop for GatewayTls {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            r.join();
        }
    }
}

fn get(host: &str) -> String {
    format!("GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

fn metrics(admin: std::net::SocketAddr) -> String {
    common::http_get(admin, "/metrics").1
}

fn counter(text: &str, series: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
}

#[test]
fn sni_picks_the_certificate_and_unknown_or_missing_sni_gets_the_default() {
    let certs = Certs::new();
    let gw = gateway(&certs, "", None);
    let cfg = ClientOpts::trusting(&certs.ca).config();
    let shop = exchange(gw.https, "shop.example.com", cfg.clone(), &get("shop.example.com")).unwrap();
    assert!(shop.cert_names.contains(&"shop.example.com".to_string()), "{:?}", shop.cert_names);
    assert!(shop.response.starts_with("HTTP/1.1 200"), "{}", shop.response);
    assert!(shop.response.ends_with("mocked\n"));
    let wild = exchange(gw.https, "api.shop.example.com", cfg.clone(), "").unwrap();
    assert!(wild.cert_names.contains(&"*.shop.example.com".to_string()));
    let other = exchange(gw.https, "default.test", cfg.clone(), "").unwrap();
    assert_eq!(other.cert_names, vec!["default.test".to_string()]);
    // an IP address sends no SNI: the default certificate (which lists 127.0.0.1)
    let no_sni = exchange(gw.https, "127.0.0.1", cfg, &get("127.0.0.1")).unwrap();
    assert_eq!(no_sni.cert_names, vec!["default.test".to_string()]);
    assert!(no_sni.response.starts_with("HTTP/1.1 200"), "no SNI, no Host check: {}", no_sni.response);
}

#[test]
fn https_and_http_listeners_serve_the_same_service_with_the_right_forwarded_proto() {
    let certs = Certs::new();
    let origin = MockUpstream::echo();
    let gw = gateway(&certs, "", Some(origin.addr));
    let cfg = ClientOpts::trusting(&certs.ca).config();
    let r = exchange(gw.https, "shop.example.com", cfg, &get("shop.example.com")).unwrap();
    assert!(r.response.starts_with("HTTP/1.1 200"), "{}", r.response);
    let (status, _) = common::http_get(gw.http, "/x");
    assert_eq!(status, 200);
    let seen = origin.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen[1].header("x-forwarded-proto"), Some("http"));
}

#[test]
fn versions_default_to_1_2_and_up_and_can_require_1_3() {
    let certs = Certs::new();
    let gw = gateway(&certs, "", None);
    let mut o = ClientOpts::trusting(&certs.ca);
    o.versions = vec![&rustls::version::TLS12];
    let r = exchange(gw.https, "shop.example.com", o.config(), "").unwrap();
    assert_eq!(r.version, Some(rustls::ProtocolVersion::TLSv1_2));
    let r = exchange(gw.https, "shop.example.com", ClientOpts::trusting(&certs.ca).config(), "").unwrap();
    assert_eq!(r.version, Some(rustls::ProtocolVersion::TLSv1_3));
    drop(gw);
    let gw = gateway(&certs, "tls_min_version = \"1.3\"", None);
    let mut o = ClientOpts::trusting(&certs.ca);
    o.versions = vec![&rustls::version::TLS12];
    let err = exchange(gw.https, "shop.example.com", o.config(), "").unwrap_err();
    assert!(err.contains("ProtocolVersion") || err.contains("protocol"), "{err}");
    let m = metrics(gw.admin);
    assert!(counter(&m, "ringway_tls_handshakes_total{result=\"protocol_version\",version=\"none\"}") >= 1, "{m}");
}

#[test]
fn alpn_prefers_h2_keeps_http_1_1_and_http2_false_turns_h2_off() {
    let certs = Certs::new();
    let gw = gateway(&certs, "", None);
    let r = exchange(gw.https, "shop.example.com", ClientOpts::trusting(&certs.ca).config(), "").unwrap();
    assert_eq!(r.alpn.as_deref(), Some(&b"http/1.1"[..]), "a client offering http/1.1 only");
    let mut o = ClientOpts::trusting(&certs.ca);
    o.alpn = vec![b"http/1.1".to_vec(), b"h2".to_vec()];
    let r = exchange(gw.https, "shop.example.com", o.config(), "").unwrap();
    assert_eq!(r.alpn.as_deref(), Some(&b"h2"[..]), "h2 wins whatever the client's order");
    let mut o = ClientOpts::trusting(&certs.ca);
    o.alpn = vec![];
    let r = exchange(gw.https, "shop.example.com", o.config(), &get("shop.example.com")).unwrap();
    assert!(r.response.starts_with("HTTP/1.1 200"), "a client without ALPN speaks HTTP/1.1");
    drop(gw);
    let gw = gateway(&certs, "http2 = false", None);
    let mut o = ClientOpts::trusting(&certs.ca);
    o.alpn = vec![b"h2".to_vec()];
    let err = exchange(gw.https, "shop.example.com", o.config(), "").unwrap_err();
    assert!(err.to_lowercase().contains("application") || err.contains("NoApplicationProtocol"), "{err}");
}

#[test]
fn sessions_resume_on_any_worker() {
    let certs = Certs::new();
    let gw = gateway(&certs, "", None);
    for versions in [vec![&rustls::version::TLS13], vec![&rustls::version::TLS12]] {
        let mut o = ClientOpts::trusting(&certs.ca);
        o.versions = versions;
        let cfg = o.config();
        let first = exchange(gw.https, "shop.example.com", cfg.clone(), &get("shop.example.com")).unwrap();
        assert!(!first.resumed);
        // new connections land on either worker (SO_REUSEPORT): every one resumes
        for _ in 0..8 {
            let r = exchange(gw.https, "shop.example.com", cfg.clone(), &get("shop.example.com")).unwrap();
            assert!(r.resumed, "{:?} did not resume", r.version);
            assert!(r.response.starts_with("HTTP/1.1 200"));
        }
    }
    assert_eq!(counter(&metrics(gw.admin), "ringway_tls_handshakes_resumed_total"), 16);
}

#[test]
fn client_certificates_are_required_when_a_client_ca_is_set() {
    let certs = Certs::new();
    let client_ca = Ca::new("client CA");
    let ca_path = client_ca.write(&certs.dir, "client-ca.pem");
    let gw = gateway(&certs, &format!("tls_client_ca = \"{}\"", ca_path.display()), None);
    let no_cert =
        exchange(gw.https, "shop.example.com", ClientOpts::trusting(&certs.ca).config(), &get("shop.example.com"));
    let refused = match no_cert {
        Err(_) => true,
        Ok(r) => r.response.is_empty(),
    };
    assert!(refused, "a client without a certificate is refused");
    let leaf = client_ca.leaf(&["client.test"], false);
    let mut o = ClientOpts::trusting(&certs.ca);
    o.client_cert = Some((leaf.chain(), leaf.key()));
    let r = exchange(gw.https, "shop.example.com", o.config(), &get("shop.example.com")).unwrap();
    assert!(r.response.starts_with("HTTP/1.1 200"), "{}", r.response);
    let stranger = Ca::new("someone else").leaf(&["client.test"], false);
    let mut o = ClientOpts::trusting(&certs.ca);
    o.client_cert = Some((stranger.chain(), stranger.key()));
    let r = exchange(gw.https, "shop.example.com", o.config(), &get("shop.example.com"));
    assert!(r.is_err() || r.unwrap().response.is_empty(), "a certificate from another CA is refused");
}

#[test]
fn a_host_outside_the_negotiated_certificate_gets_421() {
    let certs = Certs::new();
    let gw = gateway(&certs, "", None);
    let cfg = ClientOpts::trusting(&certs.ca).config();
    let r = exchange(gw.https, "shop.example.com", cfg.clone(), &get("default.test")).unwrap();
    assert!(r.response.starts_with("HTTP/1.1 421 Misdirected Request"), "{}", r.response);
    let r = exchange(gw.https, "shop.example.com", cfg.clone(), &get("api.shop.example.com:443")).unwrap();
    assert!(r.response.starts_with("HTTP/1.1 200"), "wildcard and port: {}", r.response);
    let r = exchange(gw.https, "default.test", cfg, &get("DEFAULT.test")).unwrap();
    assert!(r.response.starts_with("HTTP/1.1 200"), "{}", r.response);
}

type TlsClient = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A keep-alive TLS connection to `addr` with SNI `name` (none for an IP address).
fn open_tls(addr: std::net::SocketAddr, name: &str, config: Arc<rustls::ClientConfig>) -> TlsClient {
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(config, server_name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).expect("handshake");
    }
    s
}

/// Sends a keep-alive GET with `host` and reads one Content-Length-framed response: status line
/// and body.
fn request(s: &mut TlsClient, host: &str) -> (String, String) {
    s.write_all(format!("GET /x HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                return (head.lines().next().unwrap().to_string(), body);
            }
        }
        let n = s.read(&mut chunk).expect("a response");
        assert!(n > 0, "closed before a whole response: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parked(admin: std::net::SocketAddr) -> u64 {
    common::gauge_at(admin, "ringway_connections_parked")
}

#[test]
fn idle_keepalive_connections_park_keep_their_session_and_close_with_close_notify() {
    let certs = Certs::new();
    let gw = gateway_with(&certs, "", None, "keepalive_timeout_ms = 4000");
    let cfg = ClientOpts::trusting(&certs.ca).config();
    let mut shop = open_tls(gw.https, "shop.example.com", cfg.clone());
    let mut by_ip = open_tls(gw.https, "127.0.0.1", cfg);
    for _ in 0..2 {
        assert_eq!(request(&mut shop, "shop.example.com"), ("HTTP/1.1 200 OK".into(), "mocked\n".into()));
        assert_eq!(request(&mut by_ip, "127.0.0.1").0, "HTTP/1.1 200 OK");
        // past the 1 s park delay and the lot's 250 ms tick (later on a loaded box)
        std::thread::sleep(Duration::from_millis(1300));
        assert!(
            common::eventually(Duration::from_secs(5), || parked(gw.admin) == 2),
            "both idle TLS connections parked"
        );
    }
    // the session came back whole: its keys, and its SNI (the Host check still applies)
    assert_eq!(request(&mut by_ip, "127.0.0.1").0, "HTTP/1.1 200 OK");
    let misdirected = request(&mut shop, "default.test").0;
    assert!(misdirected.starts_with("HTTP/1.1 421"), "{misdirected}");
    // parked again, then closed at the end of its keep-alive time with close_notify: rustls
    // reports a clean end (0) rather than UnexpectedEof
    let mut rest = Vec::new();
    match by_ip.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest)),
        Err(e) => panic!("the keep-alive close was not a clean TLS close: {e}"),
    }
    // the other one (its 421 kept it open) reaches its deadline a moment later
    assert!(common::eventually(Duration::from_secs(5), || parked(gw.admin) == 0), "closed at the deadline");
}

#[test]
fn bytes_after_close_notify_end_the_connection() {
    let certs = Certs::new();
    let gw = gateway(&certs, "", None);
    let cfg = ClientOpts::trusting(&certs.ca).config();
    let mut c = open_tls(gw.https, "127.0.0.1", cfg.clone());
    assert_eq!(request(&mut c, "127.0.0.1").0, "HTTP/1.1 200 OK");
    // close_notify and 8 KiB of another record in one write: rustls takes at most 4 KiB per
    // call and nothing after close_notify, so the rest can never be consumed (a read loop that
    // retried it would spin)
    c.conn.send_close_notify();
    let mut wire = Vec::new();
    while c.conn.wants_write() {
        c.conn.write_tls(&mut wire).unwrap();
    }
    wire.extend_from_slice(b"\x17\x03\x03\x40\x00");
    wire.extend_from_slice(&[0u8; 8192]);
    c.sock.write_all(&wire).unwrap();
    c.sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut rest = Vec::new();
    let end = c.sock.read_to_end(&mut rest);
    assert!(end.is_ok(), "the gateway closed the connection: {end:?}");
    // and every worker still serves
    for _ in 0..4 {
        let mut other = open_tls(gw.https, "127.0.0.1", cfg.clone());
        assert_eq!(request(&mut other, "127.0.0.1").0, "HTTP/1.1 200 OK");
    }
}

#[test]
fn bad_handshakes_fail_fast_are_counted_and_leave_others_alone() {
    let certs = Certs::new();
    let gw = gateway(&certs, "", None);
    // plain HTTP to the HTTPS port: a readable 400, then close
    let mut s = TcpStream::connect(gw.https).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 400"), "{}", String::from_utf8_lossy(&out));
    // garbage that looks like a handshake record, a truncated ClientHello, a stalled one
    let mut g = TcpStream::connect(gw.https).unwrap();
    g.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]).unwrap();
    let mut t = TcpStream::connect(gw.https).unwrap();
    t.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]).unwrap();
    drop(t);
    let stalled = TcpStream::connect(gw.https).unwrap();
    (&stalled).write_all(&[0x16, 0x03, 0x01]).unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    // meanwhile a real client is served
    let r = exchange(gw.https, "shop.example.com", ClientOpts::trusting(&certs.ca).config(), &get("shop.example.com"))
        .unwrap();
    assert!(r.response.starts_with("HTTP/1.1 200"));
    let mut buf = [0u8; 64];
    let t0 = std::time::Instant::now();
    let n = (&stalled).read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the stalled handshake is closed");
    assert!(t0.elapsed() < Duration::from_secs(2), "closed by the 500 ms handshake deadline");
    let mut g_out = Vec::new();
    g.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = g.read_to_end(&mut g_out);
    let m = metrics(gw.admin);
    let result = |r: &str| counter(&m, &format!("ringway_tls_handshakes_total{{result=\"{r}\",version=\"none\"}}"));
    assert_eq!(result("plain_http"), 1, "{m}");
    assert_eq!(result("timeout"), 1, "{m}");
    assert!(result("closed") + result("error") >= 2, "{m}");
    assert!(counter(&m, "ringway_tls_handshakes_total{result=\"ok\",version=\"TLSv1.3\"}") >= 1);
    assert!(m.contains("ringway_tls_handshake_duration_seconds_count"));
}

#[test]
fn admin_config_lists_each_certificate() {
    let certs = Certs::new();
    let gw = gateway(&certs, "", None);
    let (status, body) = common::http_get(gw.admin, "/config");
    assert_eq!(status, 200);
    assert!(body.contains("\"sans\":[\"shop.example.com\",\"*.shop.example.com\"]"), "{body}");
    assert!(body.contains("\"days_left\":"), "{body}");
    assert!(body.contains("\"not_after\":\"4096-01-01T00:00:00Z\""), "rcgen's default expiry, RFC 3339: {body}");
    assert!(body.contains("\"subject\":\"CN=shop.example.com\""), "{body}");
}

/// Compiles a config with one HTTPS listener made of `entries` and extra listener keys.
fn compile_tls(certs: &Certs, listener_extra: &str, entries: &str) -> Result<ringway::config::Snapshot, String> {
    let text = format!(
        "[[listener]]\nlisten = \"127.0.0.1:0\"\n{listener_extra}\n{entries}\n[service.s]\nhosts = []\n[[service.s.api]]\nname = \"a\"\npath = \"/\"\nmock = {{ body = \"x\" }}\n"
    );
    ringway::config::compile_in(&text, 1, &certs.dir.0).map_err(|e| e.to_string())
}

#[test]
fn config_errors_name_the_file_the_key_and_the_reason() {
    let certs = Certs::new();
    let entry = |c: &str, k: &str| format!("[[listener.tls]]\ncert = \"{c}\"\nkey = \"{k}\"\n");
    let e = compile_tls(&certs, "", &entry("missing.pem", "default.key")).unwrap_err();
    assert!(e.starts_with("listener[0].tls[0].cert") && e.contains("missing.pem") && e.contains("line 5"), "{e}");
    let e = compile_tls(&certs, "", &entry("default.pem", "shop.key")).unwrap_err();
    assert!(e.starts_with("listener[0].tls[0].key") && e.contains("does not match"), "{e}");
    std::fs::write(certs.dir.path("bad.pem"), "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
        .unwrap();
    let e = compile_tls(&certs, "", &entry("bad.pem", "default.key")).unwrap_err();
    assert!(e.contains("bad.pem"), "{e}");
    std::fs::write(certs.dir.path("empty.key"), "nothing here\n").unwrap();
    let e = compile_tls(&certs, "", &entry("default.pem", "empty.key")).unwrap_err();
    assert!(e.starts_with("listener[0].tls[0].key") && e.contains("private key"), "{e}");
    let dup = format!(
        "{}sni = [\"a.test\"]\n{}sni = [\"A.test\"]\n",
        entry("default.pem", "default.key"),
        entry("shop.pem", "shop.key")
    );
    let e = compile_tls(&certs, "", &dup).unwrap_err();
    assert!(e.starts_with("listener[0].tls[1].sni") && e.contains("already listed"), "{e}");
    let e = compile_tls(&certs, "tls_min_version = \"1.1\"", &entry("default.pem", "default.key")).unwrap_err();
    assert!(e.starts_with("listener[0].tls_min_version") && e.contains("never"), "{e}");
    let e = compile_tls(&certs, "tls_min_version = \"1.3\"", "").unwrap_err();
    assert!(e.starts_with("listener[0].tls_min_version") && e.contains("needs [[listener.tls]]"), "{e}");
    certs.ca.leaf(&["old.test"], true).write(&certs.dir, "old");
    let s = compile_tls(&certs, "", &entry("old.pem", "old.key")).expect("an expired certificate is a warning");
    assert!(s.warnings.iter().any(|w| w.contains("expired") && w.contains("old.pem")), "{:?}", s.warnings);
}

#[test]
fn upstream_tls_connections_are_reused() {
    let dir = TempDir::new("up-reuse");
    let (_, ca_path, origin) = tls_origin(&dir);
    let tls = format!("{{ sni = \"origin.test\", ca_file = \"{}\" }}", ca_path.display());
    let gw = tls_upstream_gateway(&dir, origin.addr, &tls);
    // one keep-alive client: every request on the same worker, so its pool serves all but the first
    let mut client = common::Client::connect(gw.addr);
    for i in 0..6 {
        let r = client.send(format!("GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes()).response(false);
        assert_eq!((r.status, r.text().as_str()), (200, "origin-ok\n"));
    }
    // a request now and then may find its connection closed by a late session ticket (the checkout
    // check sees a readable socket); most must be reused
    let hits = counter(&metrics(gw.admin.unwrap()), "ringway_upstream_pool_hits_total{upstream=\"o\"}");
    assert!(hits >= 3, "{hits} of 5 later requests went out on a pooled TLS connection");
}

/// An nginx HTTPS origin for `origin.test` whose certificate a fresh CA signed: the CA, its file
/// (for `ca_file`), and the origin.
fn tls_origin(dir: &TempDir) -> (Ca, std::path::PathBuf, NginxTls) {
    let ca = Ca::new("origin CA");
    let ca_path = ca.write(dir, "ca.pem");
    let (cert, key) = ca.leaf(&["origin.test"], false).write(dir, "origin");
    let origin = NginxTls::start(&cert, &key, None);
    (ca, ca_path, origin)
}

/// A gateway with one plain listener (and an admin one) proxying to `origin` over TLS with
/// `tls = { .. }`.
fn tls_upstream_gateway(dir: &TempDir, origin: std::net::SocketAddr, tls: &str) -> common::TestGateway {
    let _ = dir;
    common::TestGateway::start(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[upstream.o]\nendpoints = [{{ addr = \"{origin}\" }}]\ntls = {tls}\nretry_budget_percent = 100\n\n[service.s]\nhosts = []\n\n[[service.s.api]]\nname = \"a\"\npath = \"/*\"\nupstream = \"o\"\n"
    ))
}

#[test]
fn upstream_tls_verifies_and_each_failure_is_a_named_502() {
    let dir = TempDir::new("up");
    let (ca, ca_path, origin) = tls_origin(&dir);
    let ok = tls_upstream_gateway(
        &dir,
        origin.addr,
        &format!("{{ sni = \"origin.test\", ca_file = \"{}\" }}", ca_path.display()),
    );
    let (status, body) = common::http_get(ok.addr, "/x");
    assert_eq!((status, body.as_str()), (200, "origin-ok\n"));
    drop(ok);
    let other_ca = Ca::new("not the origin's CA");
    let other_path = other_ca.write(&dir, "other.pem");
    let cases = [
        (format!("{{ sni = \"origin.test\", ca_file = \"{}\" }}", other_path.display()), 502),
        (format!("{{ sni = \"wrong.test\", ca_file = \"{}\" }}", ca_path.display()), 502),
        ("{ sni = \"wrong.test\", verify = false }".to_string(), 200),
    ];
    for (tls, want) in cases {
        let gw = tls_upstream_gateway(&dir, origin.addr, &tls);
        let (status, _) = common::http_get(gw.addr, "/x");
        assert_eq!(status, want, "{tls}");
    }
    drop(origin);
    let (old_cert, old_key) = ca.leaf(&["origin.test"], true).write(&dir, "expired");
    let expired = NginxTls::start(&old_cert, &old_key, None);
    let gw = tls_upstream_gateway(
        &dir,
        expired.addr,
        &format!("{{ sni = \"origin.test\", ca_file = \"{}\" }}", ca_path.display()),
    );
    let (status, _) = common::http_get(gw.addr, "/x");
    assert_eq!(status, 502, "an expired origin certificate");
}

#[test]
fn upstream_tls_failure_reasons_reach_the_access_log() {
    let dir = TempDir::new("uplog");
    let (_, ca_path, origin) = tls_origin(&dir);
    let log = dir.path("access.log");
    let gw = common::TestGateway::start(&format!(
        "[access_log]\npath = \"{}\"\n\n[upstream.o]\nendpoints = [{{ addr = \"{}\" }}]\ntls = {{ sni = \"wrong.test\", ca_file = \"{}\" }}\n\n[service.s]\nhosts = []\n\n[[service.s.api]]\nname = \"a\"\npath = \"/*\"\nupstream = \"o\"\n",
        log.display(),
        origin.addr,
        ca_path.display()
    ));
    assert_eq!(common::http_get(gw.addr, "/x").0, 502);
    let mut gw = gw;
    gw.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("tls_cert_name_mismatch"), "{text}");
}

#[test]
fn upstream_mutual_tls_presents_the_client_certificate() {
    let dir = TempDir::new("mtls");
    let ca = Ca::new("origin CA");
    let ca_path = ca.write(&dir, "ca.pem");
    let (cert, key) = ca.leaf(&["origin.test"], false).write(&dir, "origin");
    let clients = Ca::new("gateway clients");
    let clients_path = clients.write(&dir, "clients.pem");
    let (ccert, ckey) = clients.leaf(&["gateway.test"], false).write(&dir, "gw");
    let origin = NginxTls::start(&cert, &key, Some(&clients_path));
    let with = tls_upstream_gateway(
        &dir,
        origin.addr,
        &format!(
            "{{ sni = \"origin.test\", ca_file = \"{}\", client_cert = \"{}\", client_key = \"{}\" }}",
            ca_path.display(),
            ccert.display(),
            ckey.display()
        ),
    );
    let (status, body) = common::http_get(with.addr, "/x");
    assert_eq!((status, body.as_str()), (200, "origin-ok\n"));
    drop(with);
    let without = tls_upstream_gateway(
        &dir,
        origin.addr,
        &format!("{{ sni = \"origin.test\", ca_file = \"{}\" }}", ca_path.display()),
    );
    let (status, _) = common::http_get(without.addr, "/x");
    assert_eq!(status, 400, "nginx answers 400 when the required client certificate is missing");
}
