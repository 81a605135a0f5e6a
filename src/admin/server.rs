//! A tiny blocking HTTP/1.1 server on its own thread: one connection at a time, short timeouts,
//! `Connection: close` on every response. Admin traffic is rare; simplicity wins here.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::handlers::{handle, AdminState, Reply};

/// Largest admin request head accepted.
const MAX_REQUEST_BYTES: usize = 16 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The running admin thread.
pub struct AdminHandle {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AdminHandle {
    /// Stops accepting and joins the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the blocking accept
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `addr` and serves admin requests on a new thread.
pub fn start(addr: SocketAddr, state: AdminState) -> io::Result<AdminHandle> {
    let listener = TcpListener::bind(addr).map_err(|e| io::Error::new(e.kind(), format!("admin bind {addr}: {e}")))?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new().name("ringway-admin".into()).spawn(move || {
        let mut state = state;
        for conn in listener.incoming() {
            if flag.load(Ordering::SeqCst) {
                break;
            }
            if let Ok(stream) = conn {
                if let Err(e) = serve(stream, &mut state) {
                    tracing::debug!(error = %e, "Admin request failed");
                }
            }
        }
    })?;
    Ok(AdminHandle { addr, stop, thread: Some(thread) })
}

fn serve(mut stream: TcpStream, state: &mut AdminState) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::with_capacity(1024);
    let mut tmp = [0u8; 4096];
    let (method, target) = loop {
        let n = stream.read(&mut tmp)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                break (req.method.unwrap_or_default().to_string(), req.path.unwrap_or_default().to_string());
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_REQUEST_BYTES => continue,
            _ => return write_reply(&mut stream, &Reply::text(400, "bad request\n")),
        }
    };
    let reply = handle(state, &method, &target);
    write_reply(&mut stream, &reply)
}

fn write_reply(stream: &mut TcpStream, r: &Reply) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        r.status,
        crate::http::reason(r.status),
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&r.body)?;
    stream.flush()
}
