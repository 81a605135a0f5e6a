//! API policies end to end: consumers identified by API keys (header or query) and JWTs
//! (ES256 and RS256 against a JWKS, HS256 against a secret; tokens made by PyJWT through
//! `scripts/jwt-tool.py`), 401/403 with their headers, per-consumer limits, header and Host
//! rewrites, CORS, the access log and metrics, key files re-read on reload, and config errors
//! that name the key and line.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::tls::TempDir;
use common::*;

/// Test keys and tokens from PyJWT. Panics, naming what is missing, without it.
struct Jwt {
    dir: TempDir,
}

impl Jwt {
    fn new() -> Self {
        let ok = Command::new("python3").args(["-c", "import jwt, cryptography"]).status().is_ok_and(|s| s.success());
        assert!(ok, "MISSING COMPONENT: python3 with PyJWT and cryptography (pip install 'pyjwt[crypto]'; scripts/test.sh installs it)");
        let dir = TempDir::new("jwt");
        let st = Command::new("python3").arg(tool()).arg("keys").arg(&dir.0).status().unwrap();
        assert!(st.success(), "jwt-tool.py keys failed");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path(name)
    }

    /// A token signed with `key` (a file in the key directory).
    fn sign(&self, alg: &str, key: &str, kid: Option<&str>, claims: &str, exp_in: i64) -> String {
        let mut c = Command::new("python3");
        c.arg(tool())
            .args(["sign", alg])
            .arg(self.path(key))
            .arg("--claims")
            .arg(claims)
            .arg(format!("--exp-in={exp_in}"));
        if let Some(k) = kid {
            c.args(["--kid", k]);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

fn tool() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/jwt-tool.py")
}

const ISS: &str = "https://id.example.com";

/// Consumers: partner-a (inline keys, 3 QPS cap), partner-b (a key file), mobile (ES256/RS256
/// JWKS with issuer and audience), batch (HS256 secret). Services: `shop` (host shop.test;
/// API keys in a header or `?apikey=`, JWTs; header rewrites, CORS) with APIs `orders` (any
/// consumer, upstream_host), `partners` (partner-a only), `public` (no auth);
/// `metered` (host metered.test): limit_by = "consumer".
fn config(jwt: &Jwt, keys_file: &Path, origin: std::net::SocketAddr, log: &Path) -> String {
    format!(
        r#"[admin]
listen = "127.0.0.1:0"
[access_log]
path = "{log}"

[consumer.partner-a]
keys = ["k-partner-a-0001"]
key_qps = 3
key_burst = 3

[consumer.partner-b]
keys_file = "{keys}"

[consumer.mobile]
jwt = {{ issuer = "{ISS}", audience = "shop", jwks_file = "{jwks}" }}

[consumer.batch]
jwt = {{ secret_file = "{hs}", algorithms = ["HS256"] }}

{upstream}

[service.shop]
hosts = ["shop.test"]
auth = {{ methods = ["api_key", "jwt"], key_header = "x-api-key", key_query = "apikey" }}
request_headers = {{ set = {{ "x-env" = "prod" }}, remove = ["x-debug"] }}
response_headers = {{ set = {{ "strict-transport-security" = "max-age=31536000" }}, remove = ["x-powered-by"] }}
cors = {{ origins = ["https://shop.example.com"], methods = ["GET", "POST"], headers = ["content-type", "x-api-key"], max_age_s = 600 }}

[[service.shop.api]]
name = "orders"
path = "/orders/{{id}}"
upstream = "o"
upstream_host = "orders.internal"

[[service.shop.api]]
name = "partners"
path = "/partners/*"
upstream = "o"
consumers = ["partner-a"]

[[service.shop.api]]
name = "public"
path = "/public/*"
upstream = "o"
auth = {{ methods = [] }}

[service.metered]
hosts = ["metered.test"]
auth = {{ methods = ["api_key"] }}

[[service.metered.api]]
name = "all"
path = "/*"
upstream = "o"
limit_by = "consumer"
key_qps = 2
key_burst = 2
"#,
        log = log.display(),
        keys = keys_file.display(),
        jwks = jwt.path("jwks.json").display(),
        hs = jwt.path("hs256.key").display(),
        upstream = upstream_toml("o", &[origin]),
    )
}

/// The origin answers with an `X-Powered-By` the response rules remove.
fn origin() -> MockUpstream {
    MockUpstream::start(|r| Reply::Full {
        status: 200,
        headers: vec![("X-Powered-By".into(), "php".into()), ("X-Seen-Target".into(), r.target.clone())],
        body: b"ok".to_vec(),
    })
}

struct Setup {
    gw: TestGateway,
    origin: MockUpstream,
    jwt: Jwt,
    dir: TempDir,
}

fn setup() -> Setup {
    let jwt = Jwt::new();
    let dir = TempDir::new("policies");
    let keys = dir.path("partner-b.keys");
    std::fs::write(&keys, "# partner B's keys\nk-partner-b-0001\nk-partner-b-0002\n").unwrap();
    let origin = origin();
    let gw = TestGateway::start(&config(&jwt, &keys, origin.addr, &dir.path("access.log")));
    Setup { gw, origin, jwt, dir }
}

fn get(s: &Setup, host: &str, target: &str, extra: &str) -> Response {
    request(s.gw.addr, &format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n"))
}

#[test]
fn api_keys_identify_consumers_and_never_reach_the_upstream() {
    let s = setup();
    // no credential: 401 naming both accepted kinds
    let r = get(&s, "shop.test", "/orders/1", "");
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").expect("401 carries WWW-Authenticate");
    assert!(
        challenge.contains("Bearer realm=") && challenge.contains("ApiKey realm=\"ringway\", header=\"x-api-key\""),
        "{challenge}"
    );
    // a key nobody has: 401
    assert_eq!(get(&s, "shop.test", "/orders/1", "X-Api-Key: k-nobody\r\n").status, 401);
    assert_eq!(s.origin.request_count(), 0, "refused requests never reach the upstream");

    // a key in the header; a client's own X-Consumer is not believed
    let r = get(&s, "shop.test", "/orders/1?x=1", "X-Api-Key: k-partner-a-0001\r\nX-Consumer: admin\r\nX-Debug: 1\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = s.origin.requests().pop().unwrap();
    assert_eq!(seen.header("x-consumer"), Some("partner-a"));
    assert_eq!(seen.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("x-consumer")).count(), 1);
    assert_eq!(seen.header("x-api-key"), None, "the credential is removed");
    assert_eq!(seen.header("x-debug"), None, "request_headers.remove");
    assert_eq!(seen.header("x-env"), Some("prod"), "request_headers.set");
    assert_eq!(seen.header("host"), Some("orders.internal"), "upstream_host");
    assert_eq!(seen.target, "/orders/1?x=1");
    // response rules
    assert_eq!(r.header("strict-transport-security"), Some("max-age=31536000"));
    assert_eq!(r.header("x-powered-by"), None);

    // a key from the key file, in the query: removed from the target sent upstream
    let r = get(&s, "shop.test", "/orders/2?a=1&apikey=k-partner-b-0002&b=2", "");
    assert_eq!(r.status, 200);
    let seen = s.origin.requests().pop().unwrap();
    assert_eq!(seen.target, "/orders/2?a=1&b=2");
    assert_eq!(seen.header("x-consumer"), Some("partner-b"));

    // consumers = ["partner-a"]: partner-b is known but not allowed
    assert_eq!(get(&s, "shop.test", "/partners/x", "X-Api-Key: k-partner-b-0001\r\n").status, 403);
    assert_eq!(get(&s, "shop.test", "/partners/x", "X-Api-Key: k-partner-a-0001\r\n").status, 200);
    // auth = { methods = [] }: public, and a client's X-Consumer goes through untouched there
    let r = get(&s, "shop.test", "/public/x", "");
    assert_eq!(r.status, 200);

    // metrics and the access log name consumers
    let metrics = http_get(s.gw.admin.unwrap(), "/metrics").1;
    assert!(metrics.contains("ringway_consumer_requests_total{consumer=\"partner-a\"} 2"), "{metrics}");
    assert!(metrics.contains("ringway_consumer_requests_total{consumer=\"partner-b\"} 2"), "{metrics}");
    let Setup { gw, dir, .. } = s;
    drop(gw);
    let log = std::fs::read_to_string(dir.path("access.log")).unwrap();
    assert!(log.contains("\"status\":401,") && log.contains("\"error\":\"auth_missing\""), "{log}");
    assert!(log.contains("\"error\":\"auth_bad_key\""));
    assert!(log.contains("\"error\":\"auth_consumer_not_allowed\""));
    assert_eq!(log.matches("\"consumer\":\"partner-a\"").count(), 2, "{log}");
}

#[test]
fn jwts_from_a_jwks_and_a_secret_identify_consumers() {
    let s = setup();
    let claims = format!(r#"{{"iss": "{ISS}", "aud": "shop"}}"#);
    let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
    for (alg, key, kid) in [("ES256", "es256.pem", "es-1"), ("RS256", "rs256.pem", "rs-1")] {
        let token = s.jwt.sign(alg, key, Some(kid), &claims, 300);
        for round in 0..2 {
            // the second time the token comes from the core's cache
            let r = get(&s, "shop.test", "/orders/1", &bearer(&token));
            assert_eq!(r.status, 200, "{alg} round {round}: {}", r.text());
            let seen = s.origin.requests().pop().unwrap();
            assert_eq!(seen.header("x-consumer"), Some("mobile"));
            assert_eq!(seen.header("authorization"), None, "the token is removed");
        }
    }
    let hs = s.jwt.sign("HS256", "hs256.key", None, r#"{"iss": "batch-runner"}"#, 300);
    assert_eq!(get(&s, "shop.test", "/orders/1", &bearer(&hs)).status, 200);
    assert_eq!(s.origin.requests().pop().unwrap().header("x-consumer"), Some("batch"));

    // refused: each 401, none reaches the upstream
    let before = s.origin.request_count();
    let expired = s.jwt.sign("ES256", "es256.pem", Some("es-1"), &claims, -3600);
    let r = get(&s, "shop.test", "/orders/1", &bearer(&expired));
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().contains("error=\"invalid_token\""));
    let bad = [
        (
            "wrong audience",
            s.jwt.sign("ES256", "es256.pem", Some("es-1"), &format!(r#"{{"iss": "{ISS}", "aud": "other"}}"#), 300),
        ),
        (
            "wrong issuer",
            s.jwt.sign("ES256", "es256.pem", Some("es-1"), r#"{"iss": "https://evil.example", "aud": "shop"}"#, 300),
        ),
        ("a key nobody trusts", s.jwt.sign("ES256", "other-es256.pem", Some("es-1"), &claims, 300)),
        ("HS256 keyed with the public JWKS (algorithm confusion)", {
            // PyJWT refuses to make this one; jsonwebtoken signs whatever it is given
            let jwks = std::fs::read(s.jwt.path("jwks.json")).unwrap();
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.kid = Some("rs-1".into());
            let body = serde_json::json!({"iss": ISS, "aud": "shop", "exp": 4_000_000_000u64});
            jsonwebtoken::encode(&header, &body, &jsonwebtoken::EncodingKey::from_secret(&jwks)).unwrap()
        }),
        ("alg none", {
            use base64::Engine;
            let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!("{}.{}.", b.encode(br#"{"alg":"none","typ":"JWT"}"#), b.encode(claims.as_bytes()))
        }),
        ("garbage", "not.a.token".to_string()),
        ("bad base64", "eyJhbGciOiJFUzI1NiJ9.@@@.xyz".to_string()),
        ("oversized", format!("{}.{}.sig", "a".repeat(5000), "b".repeat(5000))),
    ];
    for (what, token) in bad {
        let r = get(&s, "shop.test", "/orders/1", &bearer(&token));
        assert_eq!(r.status, 401, "{what}");
    }
    assert_eq!(s.origin.request_count(), before);
}

#[test]
fn consumers_have_their_own_limits() {
    let s = setup();
    let key = |k: &str| format!("X-Api-Key: {k}\r\n");
    // partner-a: key_qps = 3, key_burst = 3 over every API
    let statuses: Vec<u16> =
        (0..5).map(|_| get(&s, "shop.test", "/orders/1", &key("k-partner-a-0001")).status).collect();
    assert_eq!(statuses.iter().filter(|&&c| c == 200).count(), 3, "{statuses:?}");
    let r = get(&s, "shop.test", "/partners/x", &key("k-partner-a-0001"));
    assert_eq!(r.status, 429, "the consumer cap spans APIs");
    assert!(r.header("retry-after").is_some());
    // partner-b is not held back by partner-a's spending
    assert_eq!(get(&s, "shop.test", "/orders/1", &key("k-partner-b-0001")).status, 200);
    // limit_by = "consumer" on an API: key_burst 2 per consumer there, per worker like every
    // per-key limit (2 workers: at most 4 of 8)
    let metered: Vec<u16> = (0..8).map(|_| get(&s, "metered.test", "/x", &key("k-partner-b-0002")).status).collect();
    let ok = metered.iter().filter(|&&c| c == 200).count();
    assert!((2..=4).contains(&ok) && metered.iter().filter(|&&c| c == 429).count() == 8 - ok, "{metered:?}");
    let metrics = http_get(s.gw.admin.unwrap(), "/metrics").1;
    assert!(metrics.contains("{service=\"shop\",api=\"orders\",rule=\"consumer\"} 2"), "{metrics}");
    assert!(metrics.contains("{service=\"shop\",api=\"partners\",rule=\"consumer\"} 1"), "{metrics}");
}

#[test]
fn cors_preflights_are_answered_and_responses_carry_the_fields() {
    let s = setup();
    let preflight = |origin: &str| {
        request(
            s.gw.addr,
            &format!("OPTIONS /orders/1 HTTP/1.1\r\nHost: shop.test\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n"),
        )
    };
    let r = preflight("https://shop.example.com");
    assert_eq!(r.status, 204, "answered without credentials");
    assert_eq!(r.header("access-control-allow-origin"), Some("https://shop.example.com"));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(r.header("access-control-allow-headers"), Some("content-type, x-api-key"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = preflight("https://evil.example");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), None, "a disallowed origin gets no CORS fields");
    assert_eq!(s.origin.request_count(), 0, "preflights are never forwarded");

    let key = "X-Api-Key: k-partner-b-0001\r\n";
    let r = get(&s, "shop.test", "/orders/1", &format!("{key}Origin: https://shop.example.com\r\n"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://shop.example.com"));
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = get(&s, "shop.test", "/orders/1", &format!("{key}Origin: https://evil.example\r\n"));
    assert_eq!(r.status, 200, "not an error: the browser enforces it");
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[test]
fn key_files_are_re_read_on_reload() {
    let jwt = Jwt::new();
    let dir = TempDir::new("policy-reload");
    let keys = dir.path("b.keys");
    std::fs::write(&keys, "k-partner-b-0001\n").unwrap();
    let origin = origin();
    let text = format!(
        "[instance]\nworkers = 2\nio_driver = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n{}",
        driver(),
        config(&jwt, &keys, origin.addr, &dir.path("access.log")).replace("[admin]\nlisten = \"127.0.0.1:0\"\n", "")
    );
    let path = dir.path("ringway.toml");
    std::fs::write(&path, &text).unwrap();
    let snapshot = ringway::config::load(&path, 1).expect("compiles");
    let running = ringway::start_file(std::sync::Arc::new(snapshot), path.clone()).unwrap();
    let (addr, admin) = (running.addrs[0], running.admin_addr.unwrap());
    let call =
        |k: &str| request(addr, &format!("GET /orders/1 HTTP/1.1\r\nHost: shop.test\r\nX-Api-Key: {k}\r\n\r\n")).status;
    assert_eq!((call("k-partner-b-0001"), call("k-partner-b-0009")), (200, 401));
    std::fs::write(&keys, "k-partner-b-0009\n").unwrap(); // rotated
    let r = request(admin, "POST /reload HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!((call("k-partner-b-0001"), call("k-partner-b-0009")), (401, 200));
    running.shutdown();
    running.join();
}

#[test]
fn bad_policy_config_names_the_key_and_line() {
    let jwt = Jwt::new();
    let dir = TempDir::new("policy-errors");
    let base = |extra: &str| {
        format!(
            "[[listener]]\nlisten = \"127.0.0.1:0\"\n[upstream.o]\nendpoints = [{{ addr = \"127.0.0.1:1\" }}]\n{extra}\n[service.s]\nauth = {{ methods = [\"api_key\"] }}\n[[service.s.api]]\nname = \"a\"\npath = \"/*\"\nupstream = \"o\"\n"
        )
    };
    std::fs::write(dir.path("empty.jwks"), r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).unwrap();
    let cases = [
        (
            base("[consumer.a]\nkeys = [\"k-1\"]\n[consumer.b]\nkeys = [\"k-1\"]\n"),
            "consumer.b.keys[0]",
            "also a key of consumer \"a\"",
        ),
        (base("[consumer.a]\nkeys_file = \"missing.keys\"\n"), "consumer.a.keys_file", "cannot read"),
        (base("[consumer.a]\njwt = { jwks_file = \"empty.jwks\" }\n"), "consumer.a.jwt.jwks_file", "no usable key"),
        (
            base("[consumer.a]\nkeys = [\"k-1\"]\n")
                .replace("upstream = \"o\"\n", "upstream = \"o\"\nconsumers = [\"nobody\"]\n"),
            "service.s.api[0].consumers",
            "no [consumer.nobody] section",
        ),
        (base("[consumer.a]\nkeys = [\"k 1\"]\n"), "consumer.a.keys[0]", "visible ASCII"),
        (
            base("").replace("[service.s]\n", "[service.s]\nrequest_headers = { set = { \"bad name\" = \"x\" } }\n"),
            "service.s.request_headers",
            "not a field name",
        ),
        (
            base("").replace("[service.s]\n", "[service.s]\nrequest_headers = { set = { \"host\" = \"x\" } }\n"),
            "service.s.request_headers",
            "cannot be set or removed",
        ),
        (
            base("").replace("[service.s]\n", "[service.s]\nresponse_headers = { remove = [\"content-length\"] }\n"),
            "service.s.response_headers",
            "cannot be set or removed",
        ),
        (
            base("").replace("[service.s]\n", "[service.s]\ncors = { origins = [\"shop.example.com\"] }\n"),
            "service.s.cors.origins",
            "is not an origin",
        ),
        (base("[consumer.a]\njwt = { secret_file = \"short.key\" }\n"), "consumer.a.jwt.secret_file", "cannot read"),
    ];
    let _ = &jwt;
    for (text, key, msg) in cases {
        let e = ringway::config::compile_in(&text, 1, &dir.0).expect_err(key).to_string();
        assert!(e.contains(key) && e.contains(msg) && e.contains("(line "), "want {key} / {msg}, got: {e}");
    }
}
