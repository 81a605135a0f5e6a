//! Access log: one structured line per request, appended to a per-core buffer on the request path
//! (no I/O there) and handed to a writer thread in blocks.
//!
//! Per-core: the line buffer. Crosses cores: full buffers, sent over a channel to the writer
//! thread, which owns the file (or stdout). If the writer falls behind, blocks are dropped and
//! counted rather than blocking a worker.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::http::push_u64;

/// A buffer is handed to the writer once it holds this much.
const FLUSH_BYTES: usize = 32 * 1024;
/// Blocks queued for the writer before new ones are dropped.
const QUEUE_BLOCKS: usize = 256;
/// How often an idle writer checks whether it should stop.
const WRITER_POLL: Duration = Duration::from_millis(50);

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    Stderr,
    File(PathBuf),
}

/// Line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Logfmt,
}

/// One request's fields, borrowed from the session at the end of the request.
pub struct Entry<'a> {
    pub request_id: &'a [u8],
    pub client: &'a [u8],
    pub method: &'a [u8],
    pub path: &'a [u8],
    /// The query string without its `?`, with redacted parameters already masked; may be empty.
    pub query: &'a [u8],
    pub host: &'a [u8],
    pub service: &'a str,
    pub api: &'a str,
    pub endpoint: Option<std::net::SocketAddr>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_us: u64,
    pub connect_us: Option<u64>,
    pub first_byte_us: Option<u64>,
    pub error: Option<&'static str>,
    /// The WAF's outcome (`allow`, `block`, `error`, `monitor_block`) and its time, µs.
    pub waf: Option<(&'static str, u64)>,
    /// The authenticated consumer's name (empty: none).
    pub consumer: &'a str,
    /// The client's protocol, by its ALPN name: `http/1.1`, `http/1.0` or `h2`.
    pub proto: &'static str,
}

/// `query` (without `?`) with the values of the parameters named in `redact` (case-insensitive)
/// replaced by `REDACTED`, appended to `out`.
pub fn redact_query(query: &[u8], redact: &[String], out: &mut impl Extend<u8>) {
    if redact.is_empty() {
        return out.extend(query.iter().copied());
    }
    for (i, pair) in query.split(|&b| b == b'&').enumerate() {
        if i > 0 {
            out.extend([b'&']);
        }
        let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
        if pair.contains(&b'=') && redact.iter().any(|r| r.as_bytes().eq_ignore_ascii_case(name)) {
            out.extend(name.iter().chain(b"=REDACTED").copied());
        } else {
            out.extend(pair.iter().copied());
        }
    }
}

/// The per-core side of the access log.
pub struct AccessLog {
    format: LogFormat,
    buf: RefCell<Vec<u8>>,
    tx: Sender<Vec<u8>>,
    pub dropped_blocks: Cell<u64>,
    /// The current second, formatted once (as nginx caches its time strings), and recent
    /// endpoint addresses.
    cache: RefCell<LineCache>,
}

impl AccessLog {
    pub fn new(format: LogFormat, tx: Sender<Vec<u8>>) -> Self {
        Self {
            format,
            buf: RefCell::new(Vec::with_capacity(FLUSH_BYTES * 2)),
            tx,
            dropped_blocks: Cell::new(0),
            cache: RefCell::default(),
        }
    }

    /// Appends one line; hands the buffer over once it is full.
    pub fn log(&self, e: &Entry<'_>) {
        let mut buf = self.buf.borrow_mut();
        let mut cache = self.cache.borrow_mut();
        match self.format {
            LogFormat::Json => json_line(&mut buf, &mut cache, e),
            LogFormat::Logfmt => logfmt_line(&mut buf, &mut cache, e),
        }
        if buf.len() >= FLUSH_BYTES {
            drop(buf);
            self.flush();
        }
    }

    /// Hands whatever is buffered to the writer (called on a short tick and at shutdown).
    pub fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let block = std::mem::replace(&mut *buf, Vec::with_capacity(FLUSH_BYTES * 2));
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(block) {
            self.dropped_blocks.set(self.dropped_blocks.get() + 1);
        }
    }
}

/// The running writer thread.
pub struct LogWriter {
    stop: Arc<AtomicBool>,
    reopen: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl LogWriter {
    /// Asks the writer to reopen its file (logrotate moved it away; SIGUSR1). Takes effect before
    /// the next block is written.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::SeqCst);
    }

    /// Writes what is queued, then ends the thread. Call after the workers have flushed.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

/// Starts the writer thread; returns the sender workers hand their blocks to.
pub fn spawn_writer(target: LogTarget) -> std::io::Result<(Sender<Vec<u8>>, LogWriter)> {
    let mut out = open_target(&target)?;
    let (tx, rx): (Sender<Vec<u8>>, Receiver<Vec<u8>>) = crossbeam_channel::bounded(QUEUE_BLOCKS);
    let stop = Arc::new(AtomicBool::new(false));
    let reopen = Arc::new(AtomicBool::new(false));
    let (stopping, reopening) = (stop.clone(), reopen.clone());
    let thread = std::thread::Builder::new().name("ringway-log".into()).spawn(move || loop {
        if reopening.swap(false, Ordering::SeqCst) {
            let _ = out.flush();
            match open_target(&target) {
                Ok(fresh) => {
                    out = fresh;
                    tracing::info!(target = ?target, "Access log reopened");
                }
                Err(e) => tracing::warn!(target = ?target, error = %e, "Could not reopen the access log; writing to the old file"),
            }
        }
        match rx.recv_timeout(WRITER_POLL) {
            Ok(block) => {
                let _ = out.write_all(&block);
                let _ = out.flush();
            }
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) if stopping.load(Ordering::SeqCst) => {
                for block in rx.try_iter() {
                    let _ = out.write_all(&block);
                }
                let _ = out.flush();
                return;
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
    })?;
    Ok((tx, LogWriter { stop, reopen, thread }))
}

fn open_target(target: &LogTarget) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        LogTarget::Stdout => Box::new(std::io::stdout()),
        LogTarget::Stderr => Box::new(std::io::stderr()),
        LogTarget::File(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("access log {}: {e}", p.display())))?,
        ),
    })
}

fn json_line(b: &mut Vec<u8>, cache: &mut LineCache, e: &Entry<'_>) {
    b.extend_from_slice(b"{\"time\":\"");
    cache.push_now(b);
    b.push(b'"');
    for (k, v) in [
        (&b",\"request_id\":"[..], e.request_id),
        (b",\"client\":", e.client),
        (b",\"method\":", e.method),
        (b",\"path\":", e.path),
        (b",\"query\":", e.query),
        (b",\"host\":", e.host),
    ] {
        b.extend_from_slice(k);
        json_bytes(b, v);
    }
    b.extend_from_slice(b",\"proto\":\"");
    b.extend_from_slice(e.proto.as_bytes());
    b.extend_from_slice(b"\",\"service\":\"");
    b.extend_from_slice(e.service.as_bytes());
    b.extend_from_slice(b"\",\"api\":\"");
    b.extend_from_slice(e.api.as_bytes());
    b.extend_from_slice(b"\",\"endpoint\":");
    match e.endpoint {
        Some(ep) => {
            b.push(b'"');
            cache.push_addr(b, ep);
            b.push(b'"');
        }
        None => b.extend_from_slice(b"null"),
    }
    for (k, v) in [
        (&b",\"status\":"[..], Some(u64::from(e.status))),
        (b",\"bytes_in\":", Some(e.bytes_in)),
        (b",\"bytes_out\":", Some(e.bytes_out)),
        (b",\"duration_us\":", Some(e.duration_us)),
        (b",\"connect_us\":", e.connect_us),
        (b",\"first_byte_us\":", e.first_byte_us),
    ] {
        b.extend_from_slice(k);
        match v {
            Some(v) => push_u64(b, v),
            None => b.extend_from_slice(b"null"),
        }
    }
    b.extend_from_slice(b",\"error\":");
    match e.error {
        Some(err) => {
            b.push(b'"');
            b.extend_from_slice(err.as_bytes());
            b.push(b'"');
        }
        None => b.extend_from_slice(b"null"),
    }
    if let Some((outcome, us)) = e.waf {
        b.extend_from_slice(b",\"waf\":\"");
        b.extend_from_slice(outcome.as_bytes());
        b.extend_from_slice(b"\",\"waf_us\":");
        push_u64(b, us);
    }
    if !e.consumer.is_empty() {
        b.extend_from_slice(b",\"consumer\":\"");
        b.extend_from_slice(e.consumer.as_bytes());
        b.push(b'"');
    }
    b.extend_from_slice(b"}\n");
}

fn logfmt_line(b: &mut Vec<u8>, cache: &mut LineCache, e: &Entry<'_>) {
    b.extend_from_slice(b"time=");
    cache.push_now(b);
    for (k, v) in [
        (" request_id=", e.request_id),
        (" client=", e.client),
        (" method=", e.method),
        (" path=", e.path),
        (" query=", e.query),
        (" host=", e.host),
    ] {
        b.extend_from_slice(k.as_bytes());
        json_bytes(b, v);
    }
    b.extend_from_slice(b" proto=");
    b.extend_from_slice(e.proto.as_bytes());
    b.extend_from_slice(b" service=");
    b.extend_from_slice(or_dash(e.service).as_bytes());
    b.extend_from_slice(b" api=");
    b.extend_from_slice(or_dash(e.api).as_bytes());
    b.extend_from_slice(b" endpoint=");
    match e.endpoint {
        Some(ep) => cache.push_addr(b, ep),
        None => b.push(b'-'),
    }
    for (k, v) in [
        (" status=", Some(u64::from(e.status))),
        (" bytes_in=", Some(e.bytes_in)),
        (" bytes_out=", Some(e.bytes_out)),
        (" duration_us=", Some(e.duration_us)),
        (" connect_us=", e.connect_us),
        (" first_byte_us=", e.first_byte_us),
    ] {
        if let Some(v) = v {
            b.extend_from_slice(k.as_bytes());
            push_u64(b, v);
        }
    }
    if let Some(err) = e.error {
        b.extend_from_slice(b" error=");
        b.extend_from_slice(err.as_bytes());
    }
    if let Some((outcome, us)) = e.waf {
        b.extend_from_slice(b" waf=");
        b.extend_from_slice(outcome.as_bytes());
        b.extend_from_slice(b" waf_us=");
        push_u64(b, us);
    }
    if !e.consumer.is_empty() {
        b.extend_from_slice(b" consumer=");
        b.extend_from_slice(e.consumer.as_bytes());
    }
    b.push(b'\n');
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// A JSON string of `v`: runs of printable ASCII are copied whole; `"` and `\\` are escaped,
/// every other byte becomes `\u00XX` (so the line stays one line of ASCII whatever a client sent).
pub fn json_bytes(b: &mut Vec<u8>, v: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    b.push(b'"');
    let mut rest = v;
    while !rest.is_empty() {
        let clean = clean_run(rest);
        b.extend_from_slice(&rest[..clean]);
        let Some(&c) = rest.get(clean) else { break };
        match c {
            b'"' | b'\\' => b.extend_from_slice(&[b'\\', c]),
            _ => b.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]]),
        }
        rest = &rest[clean + 1..];
    }
    b.push(b'"');
}

/// Length of `v`'s leading run of bytes that JSON takes as they are (printable ASCII other than
/// `"` and `\\`), eight bytes at a time: about a third of the instructions of a byte loop on the
/// short fields of a log line (bench/RESULTS.md §31).
fn clean_run(v: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(chunk) = v.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        // a byte's high bit set in `bad` when it is < 0x20, >= 0x7f, '"' or '\\' (the usual
        // "has zero byte" / "has byte less than" tricks, exact on bytes without the high bit,
        // and bytes with it are caught by `x` itself)
        let zero = |y: u64| y.wrapping_sub(ONES) & !y & HIGH;
        let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let del_or_above = (x.wrapping_add(ONES) | x) & HIGH;
        let bad = below_space | del_or_above | zero(x ^ (ONES * u64::from(b'"'))) | zero(x ^ (ONES * u64::from(b'\\')));
        if bad != 0 {
            if let Some(at) = chunk.iter().position(|&c| !is_clean(c)) {
                return i + at;
            }
        }
        i += 8;
    }
    i + v[i..].iter().position(|&c| !is_clean(c)).unwrap_or(v.len() - i)
}

#[inline]
fn is_clean(c: u8) -> bool {
    (0x20..=0x7e).contains(&c) && c != b'"' && c != b'\\'
}

/// [`json_bytes`] for the admin endpoint's `String` bodies.
pub fn json_str(b: &mut String, v: &[u8]) {
    let mut out = Vec::with_capacity(v.len() + 2);
    json_bytes(&mut out, v);
    // json_bytes writes ASCII only
    b.push_str(std::str::from_utf8(&out).unwrap_or_default());
}

/// `ip:port` (IPv6 as `[ip]:port`, through `Display`).
fn push_addr(b: &mut Vec<u8>, addr: std::net::SocketAddr) {
    match addr {
        std::net::SocketAddr::V4(a) => {
            for (i, o) in a.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    b.push(b'.');
                }
                push_u64(b, u64::from(o));
            }
            b.push(b':');
            push_u64(b, u64::from(a.port()));
        }
        v6 => {
            use std::io::Write as _;
            let _ = write!(b, "{v6}");
        }
    }
}

/// What consecutive lines repeat, formatted once: the clock's `YYYY-MM-DDTHH:MM:SS` (once per
/// second, then `.mmmZ` per line) and the last few endpoint addresses (an upstream has a handful;
/// rendering one cost ~430 instructions per line, bench/RESULTS.md §31).
#[derive(Default)]
struct LineCache {
    secs: u64,
    text: Vec<u8>,
    addrs: Vec<(std::net::SocketAddr, Vec<u8>)>,
    /// The entry the next new address replaces once `addrs` is full.
    next_addr: usize,
}

/// Endpoint addresses kept rendered.
const ADDRS_CACHED: usize = 8;

impl LineCache {
    fn push_addr(&mut self, b: &mut Vec<u8>, addr: std::net::SocketAddr) {
        if let Some((_, text)) = self.addrs.iter().find(|(a, _)| *a == addr) {
            b.extend_from_slice(text);
            return;
        }
        let mut text = Vec::with_capacity(24);
        push_addr(&mut text, addr);
        b.extend_from_slice(&text);
        if self.addrs.len() < ADDRS_CACHED {
            self.addrs.push((addr, text));
        } else {
            self.addrs[self.next_addr] = (addr, text);
            self.next_addr = (self.next_addr + 1) % ADDRS_CACHED;
        }
    }

    fn push_now(&mut self, b: &mut Vec<u8>) {
        use std::io::Write as _;
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = d.as_secs();
        if self.text.is_empty() || secs != self.secs {
            let (days, rem) = (secs / 86_400, secs % 86_400);
            let (y, m, dd) = crate::http::date::civil_from_days(days as i64);
            self.text.clear();
            let _ = write!(self.text, "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
            self.secs = secs;
        }
        b.extend_from_slice(&self.text);
        let ms = d.subsec_millis();
        b.extend_from_slice(&[
            b'.',
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One line in a format, as text.
    fn line(format: fn(&mut Vec<u8>, &mut LineCache, &Entry<'_>)) -> String {
        let mut b = Vec::new();
        format(&mut b, &mut LineCache::default(), &entry());
        String::from_utf8(b).expect("ASCII")
    }

    fn entry() -> Entry<'static> {
        Entry {
            request_id: b"id1",
            client: b"127.0.0.1",
            method: b"GET",
            path: b"/a\"b",
            query: b"q=1",
            host: b"h",
            service: "shop",
            api: "orders",
            endpoint: Some("127.0.0.1:9001".parse().unwrap()),
            status: 200,
            bytes_in: 0,
            bytes_out: 12,
            duration_us: 345,
            connect_us: None,
            first_byte_us: Some(300),
            error: None,
            waf: Some(("monitor_block", 812)),
            consumer: "",
            proto: "http/1.1",
        }
    }

    #[test]
    fn json_line_is_one_escaped_object() {
        let b = line(json_line);
        assert!(b.ends_with("}\n") && b.matches('\n').count() == 1);
        assert!(b.contains("\"path\":\"/a\\\"b\""));
        assert!(b.contains("\"host\":\"h\",\"proto\":\"http/1.1\",\"service\""), "{b}");
        assert!(b.contains("\"endpoint\":\"127.0.0.1:9001\",\"status\":200"));
        assert!(b.contains("\"connect_us\":null,\"first_byte_us\":300,\"error\":null"));
        assert!(b.ends_with(",\"waf\":\"monitor_block\",\"waf_us\":812}\n"), "{b}");
    }

    #[test]
    fn clean_runs_end_at_the_first_byte_to_escape_wherever_it_is() {
        for len in 0..40 {
            for at in 0..=len {
                for bad in [0u8, 0x1f, b'"', b'\\', 0x7f, 0x80, 0xff] {
                    let mut v = vec![b'a'; len];
                    v.extend_from_slice(b" ~z");
                    if at < len {
                        v[at] = bad;
                    }
                    let want = if at < len { at } else { v.len() };
                    assert_eq!(clean_run(&v), want, "len {len} at {at} byte {bad:#x}");
                }
            }
        }
        // every printable byte but the two escaped ones is clean, in every position of a word
        let all: Vec<u8> = (0x20..=0x7e).filter(|c| *c != b'"' && *c != b'\\').collect();
        assert_eq!(clean_run(&all), all.len());
    }

    #[test]
    fn strings_escape_every_byte_outside_printable_ascii_and_times_are_utc_millis() {
        let mut b = String::new();
        json_str(&mut b, b"a\x01b\\c\"d\xffe");
        assert_eq!(b, r#""a\u0001b\\c\"d\u00ffe""#);
        let mut clock = LineCache::default();
        let (mut one, mut two) = (Vec::new(), Vec::new());
        clock.push_now(&mut one);
        clock.push_now(&mut two);
        for bytes in [&one, &two] {
            let t = String::from_utf8_lossy(bytes);
            assert_eq!(bytes.len(), "2026-12-01T22:32:56.123Z".len(), "{t}");
            assert!(t.starts_with("20") && bytes[10] == b'T' && bytes[19] == b'.' && t.ends_with('Z'), "{t}");
            assert!(bytes[20..23].iter().all(u8::is_ascii_digit), "{t}");
        }
    }

    #[test]
    fn named_query_parameters_are_redacted() {
        let mut out = Vec::new();
        redact_query(b"a=1&Token=s3cret&b&token2=x", &["token".into()], &mut out);
        assert_eq!(out, b"a=1&Token=REDACTED&b&token2=x");
    }

    #[test]
    fn logfmt_line_has_fields() {
        let b = line(logfmt_line);
        assert!(b.contains(" service=shop api=orders endpoint=127.0.0.1:9001 status=200 "), "{b}");
        assert!(b.ends_with(" waf=monitor_block waf_us=812\n"), "{b}");
    }

    #[test]
    fn full_buffers_go_to_the_writer() {
        let (tx, rx) = crossbeam_channel::bounded(4);
        let log = AccessLog::new(LogFormat::Json, tx);
        for _ in 0..200 {
            log.log(&entry());
        }
        log.flush();
        let lines: usize = rx.try_iter().map(|b| b.split(|&c| c == b'\n').filter(|l| !l.is_empty()).count()).sum();
        assert_eq!(lines, 200);
    }
}
