//! The TLS handshake over a monoio TCP stream, driven here so the caller sees the rustls error
//! itself (certificate problems by name), the negotiated version and SNI, and plain HTTP sent to
//! an HTTPS port before any TLS parsing.
//!
//! Only the handshake runs here; the finished connection is handed to `net::Tls` for the data
//! path. Every byte read here has gone to rustls, so application data that arrived with the last
//! handshake flight is inside the connection, where the first read finds it.

use std::io;
use std::ops::{Deref, DerefMut};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::{ConnectionCommon, SideData};

/// Bytes read from the socket at a time during a handshake (a certificate chain takes a few).
const HANDSHAKE_READ_BYTES: usize = 8 * 1024;

/// Why a handshake failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// The peer spoke plain HTTP (its first bytes were not a TLS record).
    PlainHttp,
    /// The peer closed before the handshake finished.
    Closed,
    /// TLS said no (bad record, alert, unsupported version, certificate rejected).
    Tls(rustls::Error),
    Io(io::Error),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::PlainHttp => f.write_str("plain HTTP on a TLS port"),
            HandshakeError::Closed => f.write_str("peer closed during the TLS handshake"),
            HandshakeError::Tls(e) => write!(f, "TLS: {e}"),
            HandshakeError::Io(e) => write!(f, "TLS handshake I/O: {e}"),
        }
    }
}

/// Runs `conn`'s handshake on `tcp` to completion. `server`: check that the peer's first byte
/// opens a TLS handshake record (0x16) before giving it to rustls.
pub async fn handshake<C, SD>(tcp: &mut TcpStream, conn: &mut C, server: bool) -> Result<(), HandshakeError>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    let mut buf = Vec::with_capacity(HANDSHAKE_READ_BYTES);
    let mut first = server;
    loop {
        flush(tcp, conn).await?;
        if !conn.is_handshaking() {
            return Ok(());
        }
        buf.clear();
        let (res, b) = tcp.read(buf).await;
        buf = b;
        match res {
            Ok(0) => return Err(HandshakeError::Closed),
            Ok(_) => {}
            Err(e) => return Err(HandshakeError::Io(e)),
        }
        if first {
            first = false;
            if buf[0] != 0x16 {
                return Err(HandshakeError::PlainHttp);
            }
        }
        let mut slice = &buf[..];
        while !slice.is_empty() {
            conn.read_tls(&mut slice).map_err(HandshakeError::Io)?;
            if let Err(e) = conn.process_new_packets() {
                // rustls queued an alert saying why: send it before giving up
                let _ = flush(tcp, conn).await;
                return Err(HandshakeError::Tls(e));
            }
        }
    }
}

/// Writes whatever TLS records the connection has queued.
async fn flush<C, SD>(tcp: &mut TcpStream, conn: &mut C) -> Result<(), HandshakeError>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    while conn.wants_write() {
        let mut out = Vec::new();
        conn.write_tls(&mut out).map_err(HandshakeError::Io)?;
        let (res, _) = tcp.write_all(out).await;
        res.map_err(HandshakeError::Io)?;
    }
    Ok(())
}

/// The access log's name for a failed upstream handshake.
pub fn upstream_flag(e: &HandshakeError) -> &'static str {
    use rustls::CertificateError as C;
    match e {
        HandshakeError::Tls(rustls::Error::InvalidCertificate(c)) => match c {
            C::Expired | C::ExpiredContext { .. } => "tls_cert_expired",
            C::NotValidForName | C::NotValidForNameContext { .. } => "tls_cert_name_mismatch",
            C::UnknownIssuer => "tls_cert_unknown_issuer",
            _ => "tls_cert_invalid",
        },
        HandshakeError::Tls(_) => "tls_handshake_failed",
        HandshakeError::Closed => "tls_handshake_closed",
        HandshakeError::PlainHttp | HandshakeError::Io(_) => "tls_handshake_failed",
    }
}
