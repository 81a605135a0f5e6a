//! Config compiler: one test per error variant, plus defaults and the shipped config.

use super::*;

const OK: &str = r#"
[instance]
workers = 2
egress_ip = "127.0.0.1"

[[listener]]
listen = "127.0.0.1:0"

[upstream.orders]
endpoints = [{ addr = "127.0.0.1:9001", weight = 2 }, { addr = "127.0.0.1:9002" }]

[service.shop]
hosts = ["shop.example.com"]
base_path = "/shop/"

[[service.shop.api]]
name = "create-order"
methods = ["POST"]
path = "/orders"
upstream = "orders"
timeout_ms = 3000

[[service.shop.api]]
name = "ping"
methods = ["GET"]
path = "/ping"
mock = { status = 200, headers = { content-type = "text/plain" }, body = "pong" }
"#;

fn err(text: &str) -> String {
    compile(text, 1).expect_err("should fail").to_string()
}

#[test]
fn valid_config_compiles_with_defaults() {
    let s = compile(OK, 7).unwrap();
    assert_eq!(s.generation, 7);
    assert_eq!(s.instance.workers, Workers::Count(2));
    assert_eq!(s.http.header_timeout, Duration::from_millis(DEFAULT_HEADER_TIMEOUT_MS));
    assert_eq!(s.upstreams[0].endpoints[0].weight, 2);
    assert_eq!(s.upstreams[0].egress_ips, vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
    assert_eq!(s.services[0].base_path, "/shop", "trailing slash is normalised");
    assert_eq!(s.apis[0].timeout, Duration::from_millis(3000));
    let Target::Mock(m) = &s.apis[1].target else { panic!("mock") };
    assert_eq!(m.body, b"pong");
    assert!(String::from_utf8_lossy(&m.head).contains("content-length: 4\r\n"));
}

#[test]
fn shipped_config_compiles() {
    let text = include_str!("../../../conf/ringway.toml");
    compile(text, 1).unwrap();
}

#[test]
fn unknown_upstream_names_key_and_line() {
    let text = OK.replace("upstream = \"orders\"", "upstream = \"ordrs\"");
    assert_eq!(err(&text), "service.shop.api[0].upstream: no upstream named \"ordrs\" (line 20)");
}

#[test]
fn unknown_key_names_table_and_line() {
    let text = OK.replace("timeout_ms = 3000", "timeout_ms = 3000\ntimeout = 5");
    let e = err(&text);
    assert!(e.starts_with("service.shop.api[0]: unknown key `timeout`, did you mean `timeout_ms`?"), "{e}");
    assert!(e.ends_with("(line 22)"), "{e}");
}

#[test]
fn syntax_error_has_line() {
    assert!(err("[instance\nworkers = 1").contains("(line 1)"));
}

#[test]
fn each_validation_error_names_its_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("workers = 2", "workers = 0", "instance.workers"),
        ("workers = 2", "workers = 2\nio_driver = \"kqueue\"", "instance.io_driver"),
        ("egress_ip = \"127.0.0.1\"", "egress_ip = \"nope\"", "instance.egress_ip"),
        ("egress_ip = \"127.0.0.1\"", "egress_ip = \"::1\"", "upstream.orders.endpoints[0].addr"),
        ("listen = \"127.0.0.1:0\"", "listen = \"localhost:80\"", "listener[0].listen"),
        ("{ addr = \"127.0.0.1:9002\" }", "{ addr = \"x\" }", "upstream.orders.endpoints[1].addr"),
        ("weight = 2", "weight = 0", "upstream.orders.endpoints[0].weight"),
        ("endpoints = [{", "balance = \"random\"\nendpoints = [{", "upstream.orders.balance"),
        ("hosts = [\"shop.example.com\"]", "hosts = [\"a b\"]", "service.shop.hosts[0]"),
        ("base_path = \"/shop/\"", "base_path = \"shop\"", "service.shop.base_path"),
        ("path = \"/orders\"", "path = \"orders\"", "service.shop.api[0].path"),
        ("methods = [\"POST\"]", "methods = [\"PO ST\"]", "service.shop.api[0].methods[0]"),
        ("name = \"ping\"", "name = \"create-order\"", "service.shop.api[1].name"),
        ("upstream = \"orders\"\n", "", "service.shop.api[0]"),
        ("upstream = \"orders\"", "upstream = \"orders\"\nmock = { body = \"x\" }", "service.shop.api[0]"),
        ("status = 200", "status = 99", "service.shop.api[1].mock.status"),
        ("status = 200", "status = 204", "service.shop.api[1].mock.body"),
        ("content-type = ", "content-length = ", "service.shop.api[1].mock.headers.content-length"),
        ("timeout_ms = 3000", "upstream_path = \"/v2\"\nstrip_base_path = true", "service.shop.api[0].upstream_path"),
        ("[instance]", "[http]\nmax_header_bytes = 10\n[instance]", "http.max_header_bytes"),
        ("[instance]", "[http]\nmax_headers = 500\n[instance]", "http.max_headers"),
        ("[instance]", "[instance]\nuring_entries = 100", "instance.uring_entries"),
    ];
    for (from, to, key) in cases {
        assert!(OK.contains(from), "fixture lacks {from}");
        let e = err(&OK.replacen(from, to, 1));
        assert!(e.starts_with(&format!("{key}:")), "{to} → {e}");
        assert!(e.contains("(line "), "{to} → {e} (no line)");
    }
}

#[test]
fn missing_listener_is_an_error() {
    let text = OK.replace("[[listener]]\nlisten = \"127.0.0.1:0\"\n", "");
    assert!(err(&text).starts_with("listener: at least one"));
}

#[test]
fn duplicate_listen_addresses_are_an_error() {
    let text = OK
        .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:8080\"\n[[listener]]\nlisten = \"127.0.0.1:8080\"");
    assert!(err(&text).starts_with("listener[1].listen: address"));
}

#[test]
fn rewrite_modes_compile() {
    let s = compile(&OK.replace("timeout_ms = 3000", "upstream_path = \"/v2/orders/\""), 1).unwrap();
    assert_eq!(s.apis[0].rewrite, Rewrite::Replace("/v2/orders".into()));
    let s = compile(&OK.replace("timeout_ms = 3000", "strip_base_path = true"), 1).unwrap();
    assert_eq!(s.apis[0].rewrite, Rewrite::StripBase);
}

#[test]
fn child_limits_may_only_lower_their_parent() {
    let text = OK
        .replace("workers = 2", "workers = 2\nmax_qps = 1000")
        .replace("base_path = \"/shop/\"", "base_path = \"/shop/\"\nmax_qps = 2000");
    assert_eq!(err(&text), "service.shop.max_qps: 2000 is above instance.max_qps = 1000; a child may only lower its parent's limit (line 16)");
    let text = OK
        .replace("base_path = \"/shop/\"", "base_path = \"/shop/\"\nmax_qps = 500")
        .replace("timeout_ms = 3000", "timeout_ms = 3000\nmax_qps = 600");
    assert!(err(&text).starts_with("service.shop.api[0].max_qps: 600 is above service.shop.max_qps = 500"));
    let text =
        OK.replace("timeout_ms = 3000", "timeout_ms = 3000\nmax_qps = 50\nlimit_by = \"client_ip\"\nkey_qps = 60");
    assert!(err(&text).starts_with("service.shop.api[0].key_qps: 60 is above service.shop.api[0].max_qps = 50"));
    let s = compile(
        &OK.replace("timeout_ms = 3000", "timeout_ms = 3000\nmax_qps = 50\nlimit_by = \"header:X-Key\"\nkey_qps = 5"),
        1,
    )
    .unwrap();
    let key = s.apis[0].key_limit.as_ref().unwrap();
    assert_eq!(
        (key.source.clone(), key.rate.per_s, key.rate.burst),
        (crate::limit::KeySource::Header("x-key".into()), 5, 1)
    );
    assert_eq!(s.apis[0].limit.as_ref().unwrap().burst, 5, "default burst is a tenth of a second");
}

#[test]
fn limit_and_ip_list_errors_name_their_keys() {
    let cases: &[(&str, &str)] = &[
        ("timeout_ms = 3000", "service.shop.api[0].key_qps: needs limit_by"),
        ("limit_by = \"cookie\"\nkey_qps = 1", "service.shop.api[0].limit_by: \"cookie\" is not"),
        ("burst = 5", "service.shop.api[0].burst: needs max_qps"),
        ("max_qps = 0", "service.shop.api[0].max_qps: must be at least 1"),
        ("max_in_flight = 0", "service.shop.api[0].max_in_flight: must be at least 1"),
    ];
    for (add, want) in cases {
        let extra = if add.starts_with("timeout") { "key_qps = 3".to_string() } else { add.to_string() };
        let e = err(&OK.replace("timeout_ms = 3000", &format!("timeout_ms = 3000\n{extra}")));
        assert!(e.starts_with(want), "{e}");
    }
    let e = err(&OK.replace("workers = 2", "workers = 2\nip_deny = [\"10.0.0.0/8\", \"10.1.1.1/8\"]"));
    assert!(e.starts_with("instance.ip_deny[1]: \"10.1.1.1/8\" has host bits set (did you mean 10.0.0.0/8?)"), "{e}");
    let e = err(&OK.replace("base_path = \"/shop/\"", "base_path = \"/shop/\"\nip_allow = [\"x\"]"));
    assert!(e.starts_with("service.shop.ip_allow[0]:"), "{e}");
}

#[test]
fn egress_pools_compile_and_reject_mixed_families() {
    let s = compile(&OK.replace("egress_ip = \"127.0.0.1\"", "egress_ip = [\"127.0.0.2\", \"127.0.0.3\"]"), 1).unwrap();
    assert_eq!(s.upstreams[0].egress_ips.len(), 2, "the instance pool is inherited");
    let e = err(&OK.replace("egress_ip = \"127.0.0.1\"", "egress_ip = [\"127.0.0.2\", \"::1\"]"));
    assert!(e.starts_with("instance.egress_ip: mixes IPv4 and IPv6"), "{e}");
    let e = err(&OK.replace("egress_ip = \"127.0.0.1\"", "egress_ip = []"));
    assert!(e.starts_with("instance.egress_ip: needs at least one"), "{e}");
}

#[test]
fn upstream_ha_keys_compile_and_validate() {
    let extra = "endpoints = [{ addr = \"127.0.0.1:9001\", weight = 2 }, { addr = \"127.0.0.1:9002\" }]\nbalance = \"hash(header:X-User)\"\nhealth = { path = \"/healthz\", interval_ms = 1000 }\noutlier = { consecutive_failures = 3 }\nwhen_all_down = \"try_all\"\nmax_connections = 10";
    let s = compile(
        &OK.replace("endpoints = [{ addr = \"127.0.0.1:9001\", weight = 2 }, { addr = \"127.0.0.1:9002\" }]", extra),
        1,
    )
    .unwrap();
    let up = &s.upstreams[0];
    assert_eq!(up.balance, Balance::Hash(HashKey::Header("x-user".into())));
    assert_eq!(up.health.as_ref().unwrap().unhealthy_after, 3);
    assert_eq!(up.outlier.unwrap().consecutive_failures, 3);
    assert_eq!((up.when_all_down, up.max_connections), (AllDown::TryAll, Some(10)));
    let bad = OK.replace("endpoints = [{", "when_all_down = \"panic\"\nendpoints = [{");
    assert!(err(&bad).starts_with("upstream.orders.when_all_down:"));
    let bad = OK.replace("endpoints = [{", "health = { expected_status = [500, 200] }\nendpoints = [{");
    assert!(err(&bad).starts_with("upstream.orders.health.expected_status:"));
    let bad = OK.replace("endpoints = [{", "balance = \"hash(cookie)\"\nendpoints = [{");
    assert!(err(&bad).starts_with("upstream.orders.balance:"));
}

#[test]
fn mistakes_that_would_only_show_in_traffic_are_caught() {
    let e = err(&OK.replace("methods = [\"POST\"]", "methods = [\"post\"]"));
    assert!(e.contains("service.shop.api[0].methods[0]: methods are case-sensitive") && e.contains("\"POST\""), "{e}");
    let e = err(&OK.replace("timeout_ms = 3000", "timeout_ms = 0"));
    assert!(e.starts_with("service.shop.api[0].timeout_ms: must be above 0") && e.ends_with("(line 21)"), "{e}");
    let dup = OK.to_string() + "\n[[service.shop.api]]\nname = \"again\"\nmethods = [\"POST\", \"PUT\"]\npath = \"/orders\"\nupstream = \"orders\"\n";
    let e = err(&dup);
    assert!(e.starts_with("service.shop.api[2].path: same path and method as service.shop.api[0]"), "{e}");
    let twin = OK.to_string() + "\n[service.twin]\nhosts = [\"shop.example.com\"]\nbase_path = \"/shop\"\n";
    let e = err(&twin);
    assert!(e.starts_with("service.twin: service \"shop\" already has the same hosts and base path"), "{e}");
    let e = err(&OK
        .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:8080\"")
        .replace("[[listener]]", "[admin]\nlisten = \"127.0.0.1:8080\"\n\n[[listener]]"));
    assert!(e.starts_with("admin.listen: 127.0.0.1:8080 is also a listener address"), "{e}");
    let e = err(&OK.replace("127.0.0.1:9002", "backend.internal"));
    assert!(e.contains("is not an IP:port address or a host name with a port"), "{e}");
    let e = err(&OK.replace("127.0.0.1:9002", "backend.internal:9002\" }, { addr = \"BACKEND.internal.:9002"));
    assert!(e.contains("is listed twice"), "{e}");
}

#[test]
fn dns_names_expand_to_their_resolved_addresses() {
    let text = OK.replace("127.0.0.1:9002", "backend.internal:9002");
    let s = compile(&text, 1).unwrap();
    assert_eq!(s.upstreams[0].endpoints.len(), 1, "not resolved yet: only the address");
    assert_eq!(s.upstreams[0].names[0].host, "backend.internal");
    let mut resolved = Resolutions::new();
    resolved.insert(
        "backend.internal".into(),
        vec!["127.0.0.5".parse().unwrap(), "127.0.0.6".parse().unwrap(), "::1".parse().unwrap()],
    );
    let s = compile_with(&text, 2, std::path::Path::new("."), &resolved).unwrap();
    let addrs: Vec<String> = s.upstreams[0].endpoints.iter().map(|e| e.addr.to_string()).collect();
    // the instance's egress IP is IPv4: the IPv6 address is left out
    assert_eq!(addrs, ["127.0.0.1:9001", "127.0.0.5:9002", "127.0.0.6:9002"]);
    assert!(s.upstreams[0].endpoints[1].from.as_deref() == Some("backend.internal"));
    assert_eq!(s.resolved, resolved, "the snapshot knows what it was expanded with");
}

#[test]
fn unused_upstreams_are_warnings() {
    let text = OK.to_string() + "\n[upstream.spare]\nendpoints = [{ addr = \"127.0.0.1:9003\" }]\n";
    let s = compile(&text, 1).unwrap();
    assert_eq!(s.warnings, vec!["upstream.spare: no API uses this upstream".to_string()]);
}

#[test]
fn waf_sections_compile_and_apis_inherit_or_override_them() {
    let text = format!(
        "{OK}\n[upstream.waf]\nendpoints = [{{ addr = \"127.0.0.1:9400\" }}]\n[waf.crs]\nupstream = \"waf\"\npath = \"/check/\"\n[waf.quiet]\nupstream = \"waf\"\nmode = \"off\"\n"
    )
    .replace("hosts = [\"shop.example.com\"]", "hosts = [\"shop.example.com\"]\nwaf = \"crs\"")
    .replace("path = \"/ping\"", "path = \"/ping\"\nwaf = \"\"");
    let s = compile(&text, 1).unwrap();
    let crs = &s.wafs[0];
    assert_eq!((crs.name.as_str(), crs.mode, crs.deny_on_error), ("crs", WafMode::Block, false));
    assert_eq!((crs.timeout, crs.send_body_bytes), (Duration::from_millis(50), 8192), "the defaults");
    assert_eq!(crs.path_prefix, "/check");
    assert_eq!(s.apis[0].waf, Some(0), "an API inherits its service's WAF");
    assert_eq!(s.apis[1].waf, None, "waf = \"\" turns it off");
    assert!(!s.warnings.iter().any(|w| w.contains("upstream.waf")), "a WAF's upstream is in use: {:?}", s.warnings);
    let off = text.replace("waf = \"crs\"", "waf = \"quiet\"");
    assert_eq!(compile(&off, 1).unwrap().apis[0].waf, None, "a WAF in mode = \"off\" is not called");
}

#[test]
fn waf_errors_name_the_key_and_line() {
    let line_of = |text: &str, needle: &str| 1 + text.lines().position(|l| l.contains(needle)).unwrap();
    let base = format!("{OK}\n[upstream.waf]\nendpoints = [{{ addr = \"127.0.0.1:9400\" }}]\n");
    let text = format!("{base}[waf.crs]\nupstream = \"nope\"\n");
    let line = format!("line {}", line_of(&text, "\"nope\""));
    let e = err(&text);
    assert!(e.contains("waf.crs.upstream") && e.contains(&line) && e.contains("no upstream named \"nope\""), "{e}");
    let e = err(&format!("{base}[waf.crs]\nupstream = \"waf\"\nmode = \"strict\"\n"));
    assert!(e.contains("waf.crs.mode") && e.contains("\"block\", \"monitor\" or \"off\""), "{e}");
    let e = err(&format!("{base}[waf.crs]\nupstream = \"waf\"\non_error = \"panic\"\n"));
    assert!(e.contains("waf.crs.on_error"), "{e}");
    let e = err(&format!("{base}[waf.crs]\nupstream = \"waf\"\ntimeout_ms = 0\n"));
    assert!(e.contains("waf.crs.timeout_ms") && e.contains("from 1 to 60000"), "{e}");
    let e = err(&format!("{base}[waf.crs]\nupstream = \"waf\"\npath = \"check\"\n"));
    assert!(e.contains("waf.crs.path"), "{e}");
    let text = OK.replace("hosts = [\"shop.example.com\"]", "hosts = [\"shop.example.com\"]\nwaf = \"crs\"");
    let line = format!("line {}", line_of(&text, "waf = \"crs\""));
    let e = err(&text);
    assert!(e.contains("service.shop.waf") && e.contains(&line) && e.contains("no [waf.crs] section"), "{e}");
}

#[test]
fn cluster_scope_needs_a_cluster_section_and_a_cap() {
    let with_scope =
        OK.replace("base_path = \"/shop/\"", "base_path = \"/shop/\"\nmax_qps = 1000\nscope = \"cluster\"");
    let e = err(&with_scope);
    assert!(e.contains("service.shop.scope") && e.contains("needs a [cluster] section"), "{e}");
    let cluster = "\n[cluster]\nredis = \"redis://127.0.0.1:6379/0\"\nnode = \"gw-1\"\n";
    let s = compile(&format!("{with_scope}{cluster}"), 1).unwrap();
    assert!(s.services[0].limit_cluster && !s.instance.limit_cluster);
    let c = s.cluster.as_ref().unwrap();
    assert_eq!(
        (c.node.as_str(), c.lease, c.on_error),
        ("gw-1", Duration::from_millis(100), crate::cluster::OnRedisError::LocalShare)
    );
    let no_cap = OK.replace("base_path = \"/shop/\"", "base_path = \"/shop/\"\nscope = \"cluster\"");
    let e = err(&format!("{no_cap}{cluster}"));
    assert!(e.contains("service.shop.scope") && e.contains("set max_qps here"), "{e}");
    let e = err(&format!("{OK}\n[cluster]\nredis = \"http://x\"\n"));
    assert!(e.contains("cluster.redis") && e.contains("(line "), "{e}");
    let e = err(&format!("{OK}\n[cluster]\nredis = \"redis://x:1\"\non_redis_error = \"panic\"\n"));
    assert!(e.contains("cluster.on_redis_error"), "{e}");
}
