//! Access log: one structured line per request, appended to a per-core buffer on the request path
//! (no I/O there) and handed to a writer thread in blocks.
//!
//! Per-core: the line buffer. Crosses cores: full buffers, sent over a channel to the writer
//! thread, which owns the file (or stdout). If the writer falls behind, blocks are dropped and
//! counted rather than blocking a worker.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

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
    buf: RefCell<String>,
    tx: Sender<String>,
    pub dropped_blocks: Cell<u64>,
}

impl AccessLog {
    pub fn new(format: LogFormat, tx: Sender<String>) -> Self {
        Self { format, buf: RefCell::new(String::with_capacity(FLUSH_BYTES * 2)), tx, dropped_blocks: Cell::new(0) }
    }

    /// Appends one line; hands the buffer over once it is full.
    pub fn log(&self, e: &Entry<'_>) {
        let mut buf = self.buf.borrow_mut();
        match self.format {
            LogFormat::Json => json_line(&mut buf, e),
            LogFormat::Logfmt => logfmt_line(&mut buf, e),
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
        let block = std::mem::replace(&mut *buf, String::with_capacity(FLUSH_BYTES * 2));
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
pub fn spawn_writer(target: LogTarget) -> std::io::Result<(Sender<String>, LogWriter)> {
    let mut out = open_target(&target)?;
    let (tx, rx): (Sender<String>, Receiver<String>) = crossbeam_channel::bounded(QUEUE_BLOCKS);
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
                let _ = out.write_all(block.as_bytes());
                let _ = out.flush();
            }
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) if stopping.load(Ordering::SeqCst) => {
                for block in rx.try_iter() {
                    let _ = out.write_all(block.as_bytes());
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

fn json_line(b: &mut String, e: &Entry<'_>) {
    b.push_str("{\"time\":\"");
    push_time(b);
    b.push_str("\",\"request_id\":");
    json_str(b, e.request_id);
    b.push_str(",\"client\":");
    json_str(b, e.client);
    b.push_str(",\"method\":");
    json_str(b, e.method);
    b.push_str(",\"path\":");
    json_str(b, e.path);
    b.push_str(",\"query\":");
    json_str(b, e.query);
    b.push_str(",\"host\":");
    json_str(b, e.host);
    let _ = write!(b, ",\"proto\":\"{}\"", e.proto);
    let _ = write!(b, ",\"service\":\"{}\",\"api\":\"{}\",\"endpoint\":", e.service, e.api);
    match e.endpoint {
        Some(ep) => {
            let _ = write!(b, "\"{ep}\"");
        }
        None => b.push_str("null"),
    }
    let _ = write!(
        b,
        ",\"status\":{},\"bytes_in\":{},\"bytes_out\":{},\"duration_us\":{}",
        e.status, e.bytes_in, e.bytes_out, e.duration_us
    );
    let opt = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
    let _ = write!(b, ",\"connect_us\":{},\"first_byte_us\":{},\"error\":", opt(e.connect_us), opt(e.first_byte_us));
    match e.error {
        Some(err) => {
            let _ = write!(b, "\"{err}\"");
        }
        None => b.push_str("null"),
    }
    if let Some((outcome, us)) = e.waf {
        let _ = write!(b, ",\"waf\":\"{outcome}\",\"waf_us\":{us}");
    }
    if !e.consumer.is_empty() {
        let _ = write!(b, ",\"consumer\":\"{}\"", e.consumer);
    }
    b.push_str("}\n");
}

fn logfmt_line(b: &mut String, e: &Entry<'_>) {
    b.push_str("time=");
    push_time(b);
    for (k, v) in [
        ("request_id", e.request_id),
        ("client", e.client),
        ("method", e.method),
        ("path", e.path),
        ("query", e.query),
        ("host", e.host),
    ] {
        let _ = write!(b, " {k}=");
        json_str(b, v);
    }
    let _ = write!(b, " proto={}", e.proto);
    let _ = write!(b, " service={} api={} endpoint=", or_dash(e.service), or_dash(e.api));
    match e.endpoint {
        Some(ep) => {
            let _ = write!(b, "{ep}");
        }
        None => b.push('-'),
    }
    let _ = write!(
        b,
        " status={} bytes_in={} bytes_out={} duration_us={}",
        e.status, e.bytes_in, e.bytes_out, e.duration_us
    );
    if let Some(c) = e.connect_us {
        let _ = write!(b, " connect_us={c}");
    }
    if let Some(f) = e.first_byte_us {
        let _ = write!(b, " first_byte_us={f}");
    }
    if let Some(err) = e.error {
        let _ = write!(b, " error={err}");
    }
    if let Some((outcome, us)) = e.waf {
        let _ = write!(b, " waf={outcome} waf_us={us}");
    }
    if !e.consumer.is_empty() {
        let _ = write!(b, " consumer={}", e.consumer);
    }
    b.push('\n');
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// A quoted, escaped string from arbitrary bytes (non-UTF-8 and controls become \u escapes).
pub fn json_str(b: &mut String, v: &[u8]) {
    b.push('"');
    for &c in v {
        match c {
            b'"' => b.push_str("\\\""),
            b'\\' => b.push_str("\\\\"),
            0x20..=0x7e => b.push(c as char),
            _ => {
                let _ = write!(b, "\\u{:04x}", c);
            }
        }
    }
    b.push('"');
}

/// RFC 3339 UTC time with milliseconds.
fn push_time(b: &mut String) {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, dd) = crate::http::date::civil_from_days(days as i64);
    let _ = write!(
        b,
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut b = String::new();
        json_line(&mut b, &entry());
        assert!(b.ends_with("}\n") && b.matches('\n').count() == 1);
        assert!(b.contains("\"path\":\"/a\\\"b\""));
        assert!(b.contains("\"host\":\"h\",\"proto\":\"http/1.1\",\"service\""), "{b}");
        assert!(b.contains("\"endpoint\":\"127.0.0.1:9001\",\"status\":200"));
        assert!(b.contains("\"connect_us\":null,\"first_byte_us\":300,\"error\":null"));
        assert!(b.ends_with(",\"waf\":\"monitor_block\",\"waf_us\":812}\n"), "{b}");
    }

    #[test]
    fn named_query_parameters_are_redacted() {
        let mut out = Vec::new();
        redact_query(b"a=1&Token=s3cret&b&token2=x", &["token".into()], &mut out);
        assert_eq!(out, b"a=1&Token=REDACTED&b&token2=x");
    }

    #[test]
    fn logfmt_line_has_fields() {
        let mut b = String::new();
        logfmt_line(&mut b, &entry());
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
        let lines: usize = rx.try_iter().map(|b| b.lines().count()).sum();
        assert_eq!(lines, 200);
    }
}
