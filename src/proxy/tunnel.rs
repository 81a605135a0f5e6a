//! Relaying an upgraded connection (WebSocket and friends) byte for byte after the upstream
//! answered 101 to a protocol the client offered. No HTTP parsing happens here any more.
//!
//! Each side is split into read and write halves; two copy loops run concurrently. A side that
//! closes half-closes the other (its write half is shut down). The relay ends when both
//! directions have ended, or when neither direction moved a byte for `idle` (a server that
//! streams to a silent client keeps the tunnel alive).

use std::cell::Cell;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::io::Conn;

/// Relay buffer per direction.
const RELAY_BUF_BYTES: usize = 16 * 1024;

/// Relays until both directions end or the tunnel is idle. Bytes already buffered go first.
pub async fn relay(client: Conn, upstream: Conn, idle: Duration) {
    let client_early = client.pending().to_vec();
    let upstream_early = upstream.pending().to_vec();
    let (mut cr, mut cw) = client.stream.into_split();
    let (mut ur, mut uw) = upstream.stream.into_split();
    let last = Cell::new(Instant::now());
    let up = async {
        if client_early.is_empty() || uw.write_all(client_early).await.0.is_ok() {
            copy(&mut cr, &mut uw, &last).await;
        }
    };
    let down = async {
        if upstream_early.is_empty() || cw.write_all(upstream_early).await.0.is_ok() {
            copy(&mut ur, &mut cw, &last).await;
        }
    };
    let watchdog = async {
        loop {
            monoio::time::sleep(idle / 4).await;
            if last.get().elapsed() >= idle {
                return;
            }
        }
    };
    // dropping the copies (and their in-flight reads) on idle is fine: the sockets close next
    monoio::select! {
        _ = async { monoio::join!(up, down) } => {},
        _ = watchdog => tracing::debug!("Tunnel idle; closing"),
    }
}

async fn copy<R: AsyncReadRent, W: AsyncWriteRent>(r: &mut R, w: &mut W, last: &Cell<Instant>) {
    let mut buf = Vec::with_capacity(RELAY_BUF_BYTES);
    loop {
        let (res, b) = r.read(buf).await;
        match res {
            Ok(n) if n > 0 => {
                last.set(Instant::now());
                let (res, b) = w.write_all(b).await;
                if res.is_err() {
                    break;
                }
                buf = b;
                buf.clear();
            }
            _ => break,
        }
    }
    let _ = w.shutdown().await;
}
