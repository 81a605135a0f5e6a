//! The server side of a TLS handshake on an HTTPS listener: run it within the listener's
//! deadline, count its outcome and time, and answer plain HTTP with a 400 as nginx does.

use std::time::Instant;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use crate::net::{Stream, Tls};
use crate::runtime::Shard;
use crate::tls::{handshake, HandshakeError, ListenerTls};

/// What a client speaking plain HTTP to an HTTPS port gets before the close.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 48\r\nconnection: close\r\n\r\nThis port speaks HTTPS; plain HTTP was received\n";

/// Handshakes `tcp`; `None` when it failed (counted, logged at debug, connection closed).
/// Returns the TLS stream and, when the client sent SNI, the names its certificate covers.
pub(super) async fn accept(
    shard: &Shard,
    mut tcp: TcpStream,
    tls: &ListenerTls,
) -> Option<(Stream, Option<Vec<String>>)> {
    let t0 = Instant::now();
    let mut conn = match rustls::ServerConnection::new(tls.config.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot start a TLS session");
            return None;
        }
    };
    let done = monoio::time::timeout(tls.handshake_timeout, handshake(&mut tcp, &mut conn, true)).await;
    let result = match &done {
        Ok(Ok(())) => 0,
        Err(_) => 1,
        Ok(Err(HandshakeError::PlainHttp)) => 2,
        Ok(Err(HandshakeError::Closed | HandshakeError::Io(_))) => 3,
        Ok(Err(HandshakeError::Tls(rustls::Error::PeerIncompatible(_)))) => 4,
        Ok(Err(HandshakeError::Tls(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented))) => {
            5
        }
        Ok(Err(HandshakeError::Tls(_))) => 6,
    };
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_2) if result == 0 => 0,
        Some(rustls::ProtocolVersion::TLSv1_3) if result == 0 => 1,
        _ => 2,
    };
    {
        let mut m = shard.metrics.borrow_mut();
        m.tls_handshakes[result][version] += 1;
        if result == 0 {
            m.tls_handshake_us.record(t0.elapsed().as_micros() as u64);
            if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                m.tls_resumed += 1;
            }
        }
    }
    match done {
        Ok(Ok(())) => {}
        Ok(Err(HandshakeError::PlainHttp)) => {
            let _ = monoio::time::timeout(tls.handshake_timeout, tcp.write_all(PLAIN_HTTP_ANSWER)).await;
            return None;
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            return None;
        }
    }
    let stream = Stream::Tls(Box::new(Tls::server(tcp, conn)));
    let names = sni_names(tls, &stream);
    Some((stream, names))
}

/// When the client of a TLS connection sent SNI, the names the certificate chosen for it covers
/// (the Host check).
pub(super) fn sni_names(tls: &ListenerTls, stream: &Stream) -> Option<Vec<String>> {
    let sni = stream.tls()?.server_name.as_deref()?;
    tls.names_for(Some(sni)).map(<[String]>::to_vec)
}
