//! Live reload on the real gateway: `POST /reload` and SIGHUP switch every worker to the file's
//! new contents at request boundaries; a bad config keeps the old one running and says why;
//! restart-only changes are refused; rate-limit buckets, endpoint ejections and counters of what
//! stayed carry over; keep-alive traffic through 20 reloads loses nothing.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::bin::*;
use common::*;

/// A gateway started from a file in its own directory; `write` replaces the file's body.
struct Reloadable {
    path: std::path::PathBuf,
    running: Option<ringway::runtime::Running>,
    addr: std::net::SocketAddr,
    admin: std::net::SocketAddr,
}

fn config_text(body: &str) -> String {
    config_text_admin(body, "")
}

/// With extra `[admin]` keys.
fn config_text_admin(body: &str, admin: &str) -> String {
    format!(
        "[instance]\nworkers = 2\nio_driver = \"{}\"\ndrain_timeout_ms = 2000\n\n[admin]\nlisten = \"127.0.0.1:0\"\n{admin}\n\n[[listener]]\nname = \"main\"\nlisten = \"127.0.0.1:0\"\n\n{body}",
        driver()
    )
}

impl Reloadable {
    fn start(name: &str, body: &str) -> Self {
        Self::start_text(name, &config_text(body))
    }

    fn start_text(name: &str, text: &str) -> Self {
        let path = write_config(&format!("reload-{name}"), text);
        let snapshot = ringway::config::load(&path, 1).expect("test config compiles");
        let running = ringway::start_file(Arc::new(snapshot), path.clone()).expect("gateway starts");
        let (addr, admin) = (running.addrs[0], running.admin_addr.unwrap());
        Self { path, running: Some(running), addr, admin }
    }

    /// Rewrites the file (listener and admin addresses as configured: unchanged).
    fn write(&self, body: &str) {
        std::fs::write(&self.path, config_text(body)).unwrap();
    }

    fn post_reload(&self) -> Response {
        request(self.admin, "POST /reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n")
    }

    fn admin(&self, path: &str) -> String {
        request(self.admin, &format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n")).text()
    }
}

impl Drop for Reloadable {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown();
            r.join();
        }
    }
}

fn api(name: &str, path: &str, body: &str) -> String {
    format!("[[service.s.api]]\nname = \"{name}\"\npath = \"{path}\"\nmock = {{ body = \"{body}\" }}\n")
}

#[test]
fn post_reload_switches_every_worker_and_reports_it() {
    let gw = Reloadable::start("switch", &format!("[service.s]\nhosts = []\n{}", api("a", "/a", "A")));
    assert_eq!(get(gw.addr, "x", "/b").status, 404);
    gw.write(&format!("[service.s]\nhosts = []\n{}{}", api("a", "/a", "A2"), api("b", "/b", "B")));
    let r = gw.post_reload();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"generation\":2"), "{}", r.text());
    // every new connection, on either worker, sees the new config
    for _ in 0..8 {
        assert_eq!(get(gw.addr, "x", "/b").text(), "B");
        assert_eq!(get(gw.addr, "x", "/a").text(), "A2");
    }
    let config = gw.admin("/config");
    assert!(config.contains("\"generation\":2,\"last_reload\":{\"ok\":true,\"error\":null"), "{config}");
    assert_eq!(config.matches("\"generation\":2,\"switched_at\"").count(), 2, "both workers switched: {config}");
    let metrics = gw.admin("/metrics");
    assert!(
        metrics.contains("ringway_config_generation 2"),
        "{}",
        metrics.lines().filter(|l| l.contains("generation")).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn a_keep_alive_connection_picks_up_the_new_config_at_its_next_request() {
    let gw = Reloadable::start("keepalive", &format!("[service.s]\nhosts = []\n{}", api("a", "/a", "old")));
    let mut c = Client::connect(gw.addr);
    assert_eq!(c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").response(false).text(), "old");
    gw.write(&format!("[service.s]\nhosts = []\n{}", api("a", "/a", "new")));
    assert_eq!(gw.post_reload().status, 200);
    assert_eq!(c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").response(false).text(), "new");
}

#[test]
fn a_bad_config_keeps_the_old_one_and_says_why() {
    let gw = Reloadable::start("bad", &format!("[service.s]\nhosts = []\n{}", api("a", "/a", "A")));
    std::fs::write(&gw.path, format!("{}\n[service.s.api]]\n", std::fs::read_to_string(&gw.path).unwrap())).unwrap();
    let r = gw.post_reload();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("line"), "the error names the line: {}", r.text());
    assert_eq!(get(gw.addr, "x", "/a").text(), "A", "the old config still serves");
    let config = gw.admin("/config");
    assert!(config.contains("\"generation\":1,\"last_reload\":{\"ok\":false,\"error\":\""), "{config}");
    gw.write(&format!(
        "[service.s]\nhosts = []\n{}",
        api("a", "/a", "A").replace("mock = {", "upstream = \"nope\"\n#")
    ));
    let r = gw.post_reload();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("service.s.api[0]") && r.text().contains("nope"), "{}", r.text());
    assert_eq!(get(gw.addr, "x", "/a").text(), "A");
}

#[test]
fn changes_that_need_a_restart_are_refused_by_name() {
    let gw = Reloadable::start("restart", &format!("[service.s]\nhosts = []\n{}", api("a", "/a", "A")));
    let text = std::fs::read_to_string(&gw.path).unwrap().replace("workers = 2", "workers = 1");
    std::fs::write(&gw.path, text).unwrap();
    let r = gw.post_reload();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("instance.workers") && r.text().contains("restart"), "{}", r.text());
    assert_eq!(get(gw.addr, "x", "/a").text(), "A");
}

#[test]
fn an_exhausted_rate_limit_stays_exhausted_across_a_reload_that_keeps_it() {
    let limited = "[[service.s.api]]\nname = \"a\"\npath = \"/a\"\nmax_qps = 1\nburst = 3\nmock = { body = \"A\" }\n";
    let gw = Reloadable::start("rate", &format!("[service.s]\nhosts = []\n{limited}"));
    let statuses: Vec<u16> = (0..6).map(|_| get(gw.addr, "x", "/a").status).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    // an unrelated change: the bucket is carried over, still empty
    gw.write(&format!("[service.s]\nhosts = []\n{limited}{}", api("b", "/b", "B")));
    assert_eq!(gw.post_reload().status, 200);
    assert_eq!(get(gw.addr, "x", "/a").status, 429, "the carried bucket is still exhausted");
    assert_eq!(get(gw.addr, "x", "/b").status, 200);
    // a changed rate starts fresh
    gw.write(&format!("[service.s]\nhosts = []\n{}", limited.replace("burst = 3", "burst = 4")));
    assert_eq!(gw.post_reload().status, 200);
    assert_eq!(get(gw.addr, "x", "/a").status, 200, "a new rule starts with a full bucket");
}

#[test]
fn ejected_endpoints_stay_ejected_and_counters_carry_over() {
    let good = MockUpstream::echo();
    let dead = DeadPort::new();
    let upstream = format!(
        "[upstream.u]\nendpoints = [{{ addr = \"{}\" }}, {{ addr = \"{}\" }}]\noutlier = {{ consecutive_failures = 2, base_ejection_ms = 60000 }}\n",
        good.addr, dead.addr
    );
    let body = |extra: &str| {
        format!("{upstream}\n[service.s]\nhosts = []\n[[service.s.api]]\nname = \"a\"\npath = \"/a\"\nupstream = \"u\"\n{extra}")
    };
    let gw = Reloadable::start("eject", &body(""));
    for _ in 0..12 {
        assert_eq!(get(gw.addr, "x", "/a").status, 200, "connect failures are retried on the good endpoint");
    }
    let ejected = |gw: &Reloadable| {
        eventually(Duration::from_secs(3), || {
            let u = gw.admin("/upstreams");
            u.contains(&format!("\"addr\":\"{}\",\"weight\":1,\"state\":\"ejected\"", dead.addr))
        })
    };
    assert!(ejected(&gw), "{}", gw.admin("/upstreams"));
    let before = gw.admin("/metrics");
    gw.write(&format!("{}{}", body(""), api("b", "/b", "B")));
    assert_eq!(gw.post_reload().status, 200);
    let u = gw.admin("/upstreams");
    assert!(ejected(&gw), "still ejected after the reload: {u}");
    let count = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("ringway_requests_total{service=\"s\",api=\"a\",class=\"2xx\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(count(&before) >= 12, "{before}");
    assert!(count(&gw.admin("/metrics")) >= count(&before), "the API's counters carried over");
}

/// Every response must come from a generation that was valid while its request was in flight:
/// the mock API's body names the generation (`g0`, `g1`, ...), so a response is checked against
/// the reloads confirmed before its request was sent and those written before its answer came,
/// and a keep-alive connection never goes back to an older generation. Half the requests go to
/// an upstream whose endpoint alternates between two origins.
#[test]
fn twenty_reloads_under_keep_alive_load_lose_no_request_and_answer_from_a_valid_generation() {
    let (up0, up1) = (MockUpstream::echo(), MockUpstream::echo());
    let config = |g: usize| {
        let up = if g % 2 == 0 { up0.addr } else { up1.addr };
        let upstream = upstream_toml("u", &[up]);
        let extra = if g % 2 == 1 { api("b", "/b", "B") } else { String::new() };
        format!(
            "{upstream}\n[service.s]\nhosts = []\n[[service.s.api]]\nname = \"m\"\npath = \"/m/*\"\nmock = {{ body = \"g{g}\" }}\n[[service.s.api]]\nname = \"a\"\npath = \"/*\"\nupstream = \"u\"\n{extra}"
        )
    };
    let gw = Arc::new(Reloadable::start("load", &config(0)));
    let stop = Arc::new(AtomicBool::new(false));
    // `written`: generations whose file has been written (may be live); `confirmed`: generations
    // every worker has switched to (POST /reload answered 200).
    let (written, confirmed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|n| {
            let (addr, stop, ok, bad) = (gw.addr, stop.clone(), ok.clone(), bad.clone());
            let (written, confirmed) = (written.clone(), confirmed.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut last = 0;
                for i in 0..100_000usize {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let mock = (i + n) % 2 == 0;
                    let lo = confirmed.load(Ordering::SeqCst);
                    let req: &[u8] = if mock {
                        b"GET /m/x HTTP/1.1\r\nHost: x\r\n\r\n"
                    } else {
                        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                    };
                    match c.send(req).try_response(false) {
                        Some(r) if r.status == 200 => {
                            if mock {
                                let hi = written.load(Ordering::SeqCst);
                                let g: usize =
                                    r.text().trim_start_matches('g').parse().expect("mock body names its generation");
                                assert!(
                                    lo <= g && g <= hi,
                                    "generation {g} answered a request sent when {lo} was confirmed and {hi} written"
                                );
                                assert!(g >= last, "a keep-alive connection went back from generation {last} to {g}");
                                last = g;
                            }
                            if r.header("connection") == Some("close") {
                                c = Client::connect(addr); // keepalive_requests reached
                                last = 0;
                            }
                            ok.fetch_add(1, Ordering::SeqCst)
                        }
                        other => {
                            eprintln!("failed: {:?}", other.map(|r| (r.status, r.text())));
                            bad.fetch_add(1, Ordering::SeqCst);
                            c = Client::connect(addr);
                            last = 0;
                            0
                        }
                    };
                }
            })
        })
        .collect();
    for g in 1..=20 {
        written.store(g, Ordering::SeqCst);
        std::fs::write(&gw.path, config_text(&config(g))).unwrap();
        let r = gw.post_reload();
        assert_eq!(r.status, 200, "reload {g}: {}", r.text());
        confirmed.store(g, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(bad.load(Ordering::SeqCst), 0, "failed or reset requests during the reloads");
    assert!(ok.load(Ordering::SeqCst) > 20, "the clients kept going");
    assert!(gw.admin("/config").contains("\"generation\":21,"));
    assert!(
        !up0.requests().is_empty() && !up1.requests().is_empty(),
        "both origins served: the endpoint change took effect"
    );
}

#[test]
fn sighup_reloads_the_binary_and_a_bad_file_keeps_it_serving() {
    let body = |b: &str| format!("[admin]\nlisten = \"127.0.0.1:0\"\n\n[service.s]\nhosts = []\n{}", api("a", "/a", b));
    let mut s = spawn_with("sighup", "", &body("one"));
    let path = std::env::temp_dir().join(format!("ringway-test-{}-sighup", std::process::id())).join("ringway.toml");
    let original = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, original.replace("\"one\"", "\"two\"")).unwrap();
    signal(&s.child, "HUP");
    assert!(eventually(Duration::from_secs(3), || get(s.addr, "x", "/a").text() == "two"), "SIGHUP applied the file");
    std::fs::write(&path, "this is not toml [").unwrap();
    signal(&s.child, "HUP");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(s.addr, "x", "/a").text(), "two", "a bad file keeps the running config");
    assert!(s.child.try_wait().unwrap().is_none(), "SIGHUP never ends the process");
    sigterm(&s.child);
    assert!(wait_exit(&mut s.child, Duration::from_secs(5)).is_some());
}

const TOKEN: &str = "s3cret-token-for-tests-0123456789";

fn admin_request(gw: &Reloadable, method: &str, path: &str, auth: Option<&str>, body: &str) -> Response {
    let auth = auth.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    request(
        gw.admin,
        &format!("{method} {path} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Length: {}\r\n\r\n{body}", body.len()),
    )
}

#[test]
fn put_config_needs_the_token_validates_and_replaces_the_file_atomically() {
    let svc = format!("[service.s]\nhosts = []\n{}", api("a", "/a", "A"));
    let dir = write_config("reload-put", "").parent().unwrap().to_path_buf();
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let gw = Reloadable::start_text("put", &config_text_admin(&svc, "token_file = \"token\""));
    let original = std::fs::read_to_string(&gw.path).unwrap();
    let next = config_text_admin(&format!("{svc}{}", api("b", "/b", "B")), "token_file = \"token\"");
    assert_eq!(admin_request(&gw, "PUT", "/config", None, &next).status, 401);
    assert_eq!(admin_request(&gw, "PUT", "/config", Some("wrong-token-wrong-token"), &next).status, 401);
    assert_eq!(admin_request(&gw, "POST", "/reload", None, "").status, 401, "reload needs the token too");
    assert_eq!(admin_request(&gw, "GET", "/stats/latency?reset=1", None, "").status, 401);
    assert_eq!(admin_request(&gw, "GET", "/stats/latency", None, "").status, 200, "reading needs none");
    // a bad body: refused, the file untouched
    let r = admin_request(&gw, "PUT", "/config", Some(TOKEN), "[service.s\n");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(std::fs::read_to_string(&gw.path).unwrap(), original);
    // a good one: written, the old one kept as .bak, running
    let r = admin_request(&gw, "PUT", "/config", Some(TOKEN), &next);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(std::fs::read_to_string(&gw.path).unwrap(), next);
    assert_eq!(std::fs::read_to_string(gw.path.with_extension("toml.bak")).unwrap(), original);
    assert_eq!(get(gw.addr, "x", "/b").text(), "B");
    assert_eq!(admin_request(&gw, "POST", "/reload", Some(TOKEN), "").status, 200);
}

#[test]
fn put_config_is_disabled_without_a_token_file() {
    let svc = format!("[service.s]\nhosts = []\n{}", api("a", "/a", "A"));
    let gw = Reloadable::start("put-off", &svc);
    let r = admin_request(&gw, "PUT", "/config", None, &config_text(&svc));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(admin_request(&gw, "POST", "/reload", None, "").status, 200, "no token: reload stays open");
}

#[test]
fn a_storm_of_reload_requests_coalesces() {
    // a health-checked upstream: each reload restarts its prober (tens of milliseconds), so
    // requests arriving meanwhile must share the next reload instead of queueing one each
    let up = MockUpstream::echo();
    let body = format!(
        "[upstream.u]\nendpoints = [{{ addr = \"{}\" }}]\nhealth = {{ interval_ms = 1000 }}\n\n[service.s]\nhosts = []\n[[service.s.api]]\nname = \"a\"\npath = \"/a\"\nupstream = \"u\"\n",
        up.addr
    );
    let gw = Arc::new(Reloadable::start("storm", &body));
    // every client connects first, then all send at once
    let barrier = Arc::new(std::sync::Barrier::new(40));
    let threads: Vec<_> = (0..40)
        .map(|_| {
            let (admin, barrier) = (gw.admin, barrier.clone());
            std::thread::spawn(move || {
                let mut c = Client::connect(admin);
                barrier.wait();
                c.send(b"POST /reload HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\n\r\n").response(false).status
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    let config = gw.admin("/config");
    let generation: u64 = config["{\"generation\":".len()..].split(',').next().unwrap().parse().unwrap();
    assert!(generation > 1 && generation <= 11, "40 requests, {} reloads", generation - 1);
}

/// The bound address `/config` shows for listener `name`.
fn listener_addr(gw: &Reloadable, name: &str) -> Option<std::net::SocketAddr> {
    let config = gw.admin("/config");
    let key = format!("{{\"name\":\"{name}\",\"addr\":\"");
    let rest = &config[config.find(&key)? + key.len()..];
    rest.split('"').next()?.parse().ok()
}

#[test]
fn listeners_are_added_and_removed_by_reload() {
    let svc = format!("[service.s]\nhosts = []\n{}", api("a", "/a", "A"));
    let gw = Reloadable::start("listeners", &svc);
    let extra = "[[listener]]\nname = \"extra\"\nlisten = \"127.0.0.1:0\"\n\n";
    gw.write(&format!("{extra}{svc}"));
    let r = gw.post_reload();
    assert_eq!(r.status, 200, "{}", r.text());
    let added = listener_addr(&gw, "extra").expect("the new listener is listed with its bound address");
    for _ in 0..6 {
        assert_eq!(get(added, "x", "/a").text(), "A", "both workers accept on the new listener");
    }
    assert_eq!(get(gw.addr, "x", "/a").text(), "A", "the kept listener still serves");
    // a keep-alive connection on the listener about to be removed
    let mut c = Client::connect(added);
    assert_eq!(c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").response(false).text(), "A");
    gw.write(&svc);
    assert_eq!(gw.post_reload().status, 200);
    assert!(listener_addr(&gw, "extra").is_none());
    assert!(std::net::TcpStream::connect(added).is_err(), "a removed listener no longer accepts");
    assert_eq!(c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").response(false).text(), "A", "its open connections drain");
    assert_eq!(get(gw.addr, "x", "/a").text(), "A");
}

#[test]
fn a_listener_that_cannot_be_bound_fails_the_reload_and_keeps_the_old_config() {
    let svc = format!("[service.s]\nhosts = []\n{}", api("a", "/a", "A"));
    let gw = Reloadable::start("bindfail", &svc);
    // a port held without SO_REUSEPORT cannot be shared
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    gw.write(&format!("[[listener]]\nname = \"extra\"\nlisten = \"{taken}\"\n\n{svc}{}", api("b", "/b", "B")));
    let r = gw.post_reload();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("listener[1].listen"), "{}", r.text());
    assert_eq!(get(gw.addr, "x", "/b").status, 404, "nothing of the new config applied");
    assert_eq!(get(gw.addr, "x", "/a").text(), "A");
}

/// A keep-alive wait keeps the park delay of the config it began on: a reload that turns parking
/// off meanwhile still lets it park and then close at its keep-alive timeout (it must not wait
/// on a read with no deadline).
#[test]
fn a_keep_alive_wait_survives_a_reload_that_turns_parking_off() {
    let body =
        |extra: &str| format!("[http]\nkeepalive_timeout_ms = 3000\n{extra}\n[service.s]\n{}", api("a", "/a", "A"));
    let gw = Reloadable::start("park-off", &body(""));
    let mut c = Client::connect(gw.addr);
    assert_eq!(c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").response(false).text(), "A");
    gw.write(&body("idle_park_ms = 0"));
    assert_eq!(gw.post_reload().status, 200);
    assert!(c.is_closed(Duration::from_secs(8)), "the keep-alive timeout still closes the connection");
}
