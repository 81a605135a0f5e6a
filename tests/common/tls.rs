//! TLS test kit: certificates made here with rcgen (a CA, leaves for given names, expired
//! ones), written as PEM files into a temporary directory; a blocking rustls client that reports
//! what was negotiated; and an nginx HTTPS origin started on a loopback port, stopped by PID.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new, empty directory of this process's own. Named by a per-process counter, not only the
    /// clock: two test threads asking in the same clock tick could share a directory, and one
    /// gateway then serve the other's certificate with its own key (the likeliest cause of a
    /// client handshake that once failed with `BadSignature`; never reproduced).
    pub fn new(tag: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("ringway-test-{tag}-{}-{seq}-{nanos}", std::process::id()));
        // create_dir, not create_dir_all: a directory that is already there is an error, not shared
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("test directory {}: {e}", dir.display()));
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate authority that signs test leaves.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// PEM of the CA certificate (what clients trust).
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        let pem = cert.pem();
        Self { cert, key, pem }
    }

    /// A leaf for `names` (DNS names or IP addresses); `expired` makes it valid only in the past.
    pub fn leaf(&self, names: &[&str], expired: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// Writes the CA certificate into `dir` as `file`.
    pub fn write(&self, dir: &TempDir, file: &str) -> PathBuf {
        let p = dir.path(file);
        std::fs::write(&p, &self.pem).unwrap();
        p
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap()).unwrap();
        roots
    }
}

/// A leaf certificate and its key, as PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    /// Writes `NAME.pem` and `NAME.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &TempDir, name: &str) -> (PathBuf, PathBuf) {
        let (c, k) = (dir.path(&format!("{name}.pem")), dir.path(&format!("{name}.key")));
        std::fs::write(&c, &self.cert_pem).unwrap();
        std::fs::write(&k, &self.key_pem).unwrap();
        (c, k)
    }

    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes()).map(|c| c.unwrap()).collect()
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

/// How a test client connects.
pub struct ClientOpts {
    pub roots: rustls::RootCertStore,
    pub versions: Vec<&'static rustls::SupportedProtocolVersion>,
    pub alpn: Vec<Vec<u8>>,
    pub client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl ClientOpts {
    pub fn trusting(ca: &Ca) -> Self {
        Self {
            roots: ca.roots(),
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            alpn: vec![b"http/1.1".to_vec()],
            client_cert: None,
        }
    }

    pub fn config(self) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&self.versions)
            .unwrap()
            .with_root_certificates(self.roots);
        let mut c = match self.client_cert {
            Some((chain, key)) => b.with_client_auth_cert(chain, key).unwrap(),
            None => b.with_no_client_auth(),
        };
        c.alpn_protocols = self.alpn;
        Arc::new(c)
    }
}

/// What a TLS exchange showed.
#[derive(Debug)]
pub struct TlsResult {
    pub version: Option<rustls::ProtocolVersion>,
    pub alpn: Option<Vec<u8>>,
    /// DNS names of the certificate the server presented.
    pub cert_names: Vec<String>,
    pub resumed: bool,
    /// The whole response (read until close).
    pub response: String,
}

/// Connects to `addr` with SNI `name`, sends `request` (when not empty) and reads until the server
/// closes. `Err` carries the handshake or I/O error text.
pub fn exchange(
    addr: SocketAddr,
    name: &str,
    config: Arc<rustls::ClientConfig>,
    request: &str,
) -> Result<TlsResult, String> {
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(config, server_name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).map_err(|e| e.to_string())?;
    }
    let version = s.conn.protocol_version();
    let alpn = s.conn.alpn_protocol().map(<[u8]>::to_vec);
    let resumed = s.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let cert_names = s.conn.peer_certificates().map(|c| names_of(&c[0])).unwrap_or_default();
    let mut response = Vec::new();
    if !request.is_empty() {
        s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        let _ = s.read_to_end(&mut response);
    }
    Ok(TlsResult { version, alpn, cert_names, resumed, response: String::from_utf8_lossy(&response).into_owned() })
}

/// The DNS names of a certificate (its SANs).
fn names_of(der: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).unwrap();
    let mut out = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            if let GeneralName::DNSName(d) = n {
                out.push(d.to_string());
            }
        }
    }
    out
}

/// nginx serving HTTPS on a loopback port, stopped (by PID) on drop.
pub struct NginxTls {
    pub addr: SocketAddr,
    child: std::process::Child,
    _dir: TempDir,
}

impl NginxTls {
    /// Serves `200 origin-ok` (and the client certificate's subject in `x-client-dn`) with
    /// `cert`/`key`; `client_ca`: require client certificates signed by it.
    pub fn start(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Self {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is required for the upstream TLS tests (scripts/test.sh installs nginx-light)");
        let dir = TempDir::new("nginx");
        let port = free_port();
        let verify = match client_ca {
            Some(ca) => format!("ssl_client_certificate {};\n        ssl_verify_client on;", ca.display()),
            None => String::new(),
        };
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 256; }}\nhttp {{\n    access_log off;\n    client_body_temp_path {d};\n    proxy_temp_path {d};\n    fastcgi_temp_path {d};\n    uwsgi_temp_path {d};\n    scgi_temp_path {d};\n    server {{\n        listen 127.0.0.1:{port} ssl;\n        ssl_certificate {cert};\n        ssl_certificate_key {key};\n        {verify}\n        location / {{ add_header x-client-dn \"$ssl_client_s_dn\"; return 200 \"origin-ok\\n\"; }}\n    }}\n}}\n",
            d = dir.0.display(),
            cert = cert.display(),
            key = key.display(),
        );
        let conf_path = dir.path("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = std::process::Command::new(nginx)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&dir.0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("nginx starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_listening(addr, "nginx");
        Self { addr, child, _dir: dir }
    }
}

impl Drop for NginxTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (10 s at most) until a server started as a child process accepts on `addr`.
pub fn wait_listening(addr: SocketAddr, what: &str) {
    let t0 = std::time::Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "{what} did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback port free right now (for servers that cannot bind port 0 and report it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
