//! Path normalisation: input → routed/forwarded path.

use super::*;

fn norm(p: &str) -> Result<String, ParseError> {
    norm_with(p, PathRules::default())
}

fn norm_with(p: &str, rules: PathRules) -> Result<String, ParseError> {
    let out = normalize(p.as_bytes(), rules)?;
    Ok(String::from_utf8(out.map_or(p.as_bytes().to_vec(), |o| o.to_vec())).unwrap())
}

#[test]
fn normal_paths_are_borrowed() {
    for p in ["/", "/a/b", "/a/b/", "/a.b/c..d/.e", "/a//b"] {
        assert!(normalize(p.as_bytes(), PathRules::default()).unwrap().is_none(), "{p}");
    }
}

#[test]
fn dot_segments_never_climb_out_of_a_base_path() {
    assert_eq!(norm("/public/../admin").unwrap(), "/admin");
    assert_eq!(norm("/public/%2e%2e/admin").unwrap(), "/admin");
    assert_eq!(norm("/public/%2E%2e/admin").unwrap(), "/admin");
    assert_eq!(norm("/public/./../admin").unwrap(), "/admin");
    assert_eq!(norm("/public/.%2e/admin").unwrap(), "/admin");
    assert_eq!(norm("/a/./b/.").unwrap(), "/a/b/");
    assert_eq!(norm("/a/b/..").unwrap(), "/a/");
    assert_eq!(norm("/../../etc/passwd").unwrap(), "/etc/passwd");
    assert_eq!(norm("/..").unwrap(), "/");
}

#[test]
fn unreserved_escapes_are_decoded_others_kept_upper_case() {
    assert_eq!(norm("/%61%62c").unwrap(), "/abc");
    assert_eq!(norm("/a%20b").unwrap(), "/a%20b");
    assert_eq!(norm("/a%3fb").unwrap(), "/a%3Fb");
}

#[test]
fn escaped_slashes_are_kept_or_refused() {
    assert_eq!(norm("/a%2fb/../c").unwrap(), "/c", "an encoded slash does not split a segment");
    assert_eq!(norm("/a%2Fb").unwrap(), "/a%2Fb");
    assert_eq!(norm("/a%5cb").unwrap(), "/a%5Cb");
    let reject = PathRules { escaped_slashes: EscapedSlashes::Reject, merge_slashes: false };
    assert!(norm_with("/a%2Fb", reject).is_err());
    assert!(norm_with("/a%5Cb", reject).is_err());
    assert_eq!(norm_with("/a%41b", reject).unwrap(), "/aAb");
}

#[test]
fn merge_slashes_is_optional() {
    assert_eq!(norm("/a//b").unwrap(), "/a//b");
    let merge = PathRules { merge_slashes: true, ..PathRules::default() };
    assert_eq!(norm_with("/a//b///c", merge).unwrap(), "/a/b/c");
    assert_eq!(norm_with("//a/../b", merge).unwrap(), "/b");
}

#[test]
fn invalid_escapes_are_refused() {
    for p in ["/a%zz", "/a%", "/a%4", "/%g0"] {
        assert!(norm(p).is_err(), "{p}");
    }
}

#[test]
fn normalising_twice_changes_nothing() {
    for p in ["/a/%2e%2e/b/./c/", "/x/%2F/../y", "/a%2e/b", "/.%2e./a", "/a/b/../../../c"] {
        let once = norm(p).unwrap();
        assert_eq!(norm(&once).unwrap(), once, "{p}");
        assert!(!once.split('/').any(|s| s == ".." || s == "."), "{p} → {once}");
    }
}
