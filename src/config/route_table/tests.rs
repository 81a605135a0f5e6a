use super::*;

fn methods(ms: &[&str]) -> MethodSet {
    if ms.is_empty() {
        return MethodSet::any();
    }
    let mut set = MethodSet::default();
    ms.iter().for_each(|m| set.insert(m));
    set
}

/// Services: 0 = shop.example.com "/shop", 1 = *.example.com "", 2 = any host "/".
fn table() -> RouteTable {
    let mut t = RouteTable::default();
    t.add_service(0, &["shop.example.com".into()], "/shop");
    t.add_service(1, &["*.example.com".into()], "");
    t.add_service(2, &[], "");
    t.add_api(0, 0, &PathPattern::parse("/orders").unwrap(), methods(&["POST"]));
    t.add_api(0, 1, &PathPattern::parse("/orders/{id}").unwrap(), methods(&["GET"]));
    t.add_api(0, 2, &PathPattern::parse("/static/*").unwrap(), methods(&[]));
    t.add_api(0, 3, &PathPattern::parse("/static/img/*").unwrap(), methods(&["GET"]));
    t.add_api(1, 4, &PathPattern::parse("/*").unwrap(), methods(&[]));
    t.add_api(2, 5, &PathPattern::parse("/ping").unwrap(), methods(&["GET"]));
    t.finish();
    t
}

fn found(api: ApiId, base_len: usize, prefix_len: Option<usize>) -> RouteMatch {
    RouteMatch::Found { api, base_len, prefix_len }
}

#[test]
fn exact_host_and_base_path_select_the_service() {
    let t = table();
    assert_eq!(t.find(b"shop.example.com", b"POST", b"/shop/orders"), found(0, 5, None));
    assert_eq!(t.find(b"SHOP.Example.COM:8080", b"POST", b"/shop/orders"), found(0, 5, None));
}

#[test]
fn base_path_matches_only_on_segment_boundary() {
    let t = table();
    assert_eq!(t.find(b"shop.example.com", b"GET", b"/shopping/orders"), RouteMatch::NotFound);
}

#[test]
fn params_match_one_nonempty_segment() {
    let t = table();
    assert_eq!(t.find(b"shop.example.com", b"GET", b"/shop/orders/42"), found(1, 5, None));
    assert_eq!(t.find(b"shop.example.com", b"GET", b"/shop/orders/42/x"), RouteMatch::NotFound);
    assert_eq!(t.find(b"shop.example.com", b"GET", b"/shop/orders/"), RouteMatch::NotFound);
}

#[test]
fn any_method_excludes_trace_and_connect() {
    let t = table();
    assert_eq!(
        t.find(b"shop.example.com", b"TRACE", b"/shop/static/x"),
        RouteMatch::MethodNotAllowed("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS".into())
    );
    assert_eq!(
        t.find(b"shop.example.com", b"PURGE", b"/shop/static/x"),
        found(2, 5, Some(7)),
        "extension methods pass"
    );
}

#[test]
fn get_allows_head() {
    let t = table();
    assert_eq!(t.find(b"shop.example.com", b"HEAD", b"/shop/orders/42"), found(1, 5, None));
}

#[test]
fn methods_are_case_sensitive() {
    let t = table();
    assert!(matches!(t.find(b"shop.example.com", b"post", b"/shop/orders"), RouteMatch::MethodNotAllowed(_)));
}

#[test]
fn wrong_method_is_405_with_allow() {
    let t = table();
    assert_eq!(t.find(b"shop.example.com", b"GET", b"/shop/orders"), RouteMatch::MethodNotAllowed("POST".into()));
}

#[test]
fn longest_prefix_wins_and_reports_its_length() {
    let t = table();
    assert_eq!(t.find(b"shop.example.com", b"GET", b"/shop/static/img/a.png"), found(3, 5, Some(11)));
    assert_eq!(t.find(b"shop.example.com", b"POST", b"/shop/static/img/a.png"), found(2, 5, Some(7)));
    assert_eq!(t.find(b"shop.example.com", b"GET", b"/shop/static"), found(2, 5, Some(7)));
}

#[test]
fn wildcard_host_matches_subdomains_only() {
    let t = table();
    assert_eq!(t.find(b"api.example.com", b"GET", b"/anything"), found(4, 0, Some(0)));
    assert_eq!(t.find(b"example.com", b"GET", b"/ping"), found(5, 0, None));
}

#[test]
fn unknown_host_uses_any_host_services() {
    let t = table();
    assert_eq!(t.find(b"other.org", b"GET", b"/ping"), found(5, 0, None));
    assert_eq!(t.find(b"other.org", b"GET", b"/nope"), RouteMatch::NotFound);
    assert_eq!(t.find(b"", b"GET", b"/ping"), found(5, 0, None));
}

#[test]
fn ipv6_host_port_is_stripped() {
    let mut t = RouteTable::default();
    t.add_service(0, &["[::1]".into()], "");
    t.add_api(0, 0, &PathPattern::parse("/x").unwrap(), MethodSet::any());
    t.finish();
    assert_eq!(t.find(b"[::1]:8080", b"GET", b"/x"), found(0, 0, None));
}

#[test]
fn pattern_parse_rejects_bad_paths() {
    for bad in ["x", "/a b", "/a?b", "/a/*/b", "/a{id}", "/{}", "/a*"] {
        assert!(PathPattern::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(PathPattern::parse("/*").unwrap(), PathPattern::Prefix(String::new()));
}
