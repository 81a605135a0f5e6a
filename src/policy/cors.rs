//! CORS: preflight requests answered by the gateway, and the `Access-Control-*` fields of actual
//! responses, for the origins configured. A disallowed origin gets no CORS fields (the browser
//! then refuses the response), never an error.

use crate::http::{eq_ignore_case, push_header};

/// `cors = { .. }`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Allowed origins (`scheme://host[:port]`, lower case), or any with `"*"`.
    pub origins: Vec<String>,
    pub any_origin: bool,
    /// `Access-Control-Allow-Methods` (joined).
    pub methods: String,
    /// `Access-Control-Allow-Headers` (joined; empty: not sent).
    pub headers: String,
    /// `Access-Control-Expose-Headers` (joined; empty: not sent).
    pub expose_headers: String,
    pub max_age_s: u32,
    pub credentials: bool,
}

impl Cors {
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.any_origin || self.origins.iter().any(|o| eq_ignore_case(o.as_bytes(), origin))
    }

    /// `Access-Control-Allow-Origin` (+ `-Credentials`) and `Vary: Origin` for an allowed origin.
    fn allow_origin(&self, origin: &[u8], out: &mut Vec<u8>) {
        if self.any_origin && !self.credentials {
            push_header(out, b"access-control-allow-origin", b"*");
        } else {
            push_header(out, b"access-control-allow-origin", origin);
            push_header(out, b"vary", b"Origin");
        }
        if self.credentials {
            push_header(out, b"access-control-allow-credentials", b"true");
        }
    }

    /// The fields of a 204 answer to a preflight from `origin` (none when it is not allowed).
    pub fn write_preflight(&self, origin: &[u8], out: &mut Vec<u8>) {
        if !self.allows(origin) {
            push_header(out, b"vary", b"Origin");
            return;
        }
        self.allow_origin(origin, out);
        push_header(out, b"access-control-allow-methods", self.methods.as_bytes());
        if !self.headers.is_empty() {
            push_header(out, b"access-control-allow-headers", self.headers.as_bytes());
        }
        out.extend_from_slice(b"access-control-max-age: ");
        crate::http::push_u64(out, u64::from(self.max_age_s));
        out.extend_from_slice(b"\r\n");
    }

    /// The fields added to an actual response for a request from `origin`.
    pub fn write_response(&self, origin: &[u8], out: &mut Vec<u8>) {
        if !self.allows(origin) {
            return;
        }
        self.allow_origin(origin, out);
        if !self.expose_headers.is_empty() {
            push_header(out, b"access-control-expose-headers", self.expose_headers.as_bytes());
        }
    }
}

/// Whether `origin` is a serialised origin: `http(s)://host[:port]`, nothing after.
pub fn is_origin(origin: &str) -> bool {
    let Some(rest) = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://")) else {
        return false;
    };
    let (host_ok, port) = match rest.strip_prefix('[') {
        // an IPv6 literal: "[addr]" or "[addr]:port"
        Some(bracketed) => {
            let Some((addr, tail)) = bracketed.split_once(']') else { return false };
            let port = match tail {
                "" => None,
                t => match t.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return false,
                },
            };
            (addr.parse::<std::net::Ipv6Addr>().is_ok(), port)
        }
        None => {
            let (host, port) = match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            let ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
            (ok, port)
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(credentials: bool, any: bool) -> Cors {
        Cors {
            origins: vec!["https://shop.example.com".into()],
            any_origin: any,
            methods: "GET, POST".into(),
            headers: "content-type".into(),
            expose_headers: String::new(),
            max_age_s: 600,
            credentials,
        }
    }

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn allowed_origins_get_the_fields_others_none() {
        let c = cors(false, false);
        let pre = text(|o| c.write_preflight(b"https://shop.example.com", o));
        assert_eq!(
            pre,
            "access-control-allow-origin: https://shop.example.com\r\nvary: Origin\r\naccess-control-allow-methods: GET, POST\r\naccess-control-allow-headers: content-type\r\naccess-control-max-age: 600\r\n"
        );
        assert_eq!(text(|o| c.write_preflight(b"https://evil.example", o)), "vary: Origin\r\n");
        assert_eq!(text(|o| c.write_response(b"https://evil.example", o)), "");
        assert!(text(|o| c.write_response(b"https://SHOP.example.com", o)).contains("allow-origin"));
        let any = cors(false, true);
        assert_eq!(text(|o| any.write_response(b"https://x.test", o)), "access-control-allow-origin: *\r\n");
        let creds = cors(true, true);
        assert_eq!(
            text(|o| creds.write_response(b"https://x.test", o)),
            "access-control-allow-origin: https://x.test\r\nvary: Origin\r\naccess-control-allow-credentials: true\r\n",
            "with credentials the origin is echoed, never *"
        );
    }

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for ok in ["https://shop.example.com", "http://localhost:8080", "https://[::1]:8443", "https://[::1]"] {
            assert!(is_origin(ok), "{ok}");
        }
        for bad in [
            "shop.example.com",
            "https://shop.example.com/",
            "ftp://x",
            "https://",
            "https://a:b",
            "*",
            "https://a:b:80",
            "https://[nope]:80",
            "https://[::1]8443",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }
}
