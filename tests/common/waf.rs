//! The real WAF for the tests: Apache httpd + ModSecurity 2 + the OWASP Core Rule Set, started by
//! `scripts/waf-crs.sh` on a loopback port and stopped by PID.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use super::tls::{free_port, TempDir};

pub struct CrsWaf {
    pub addr: SocketAddr,
    child: std::process::Child,
    dir: TempDir,
}

impl CrsWaf {
    /// Starts the CRS verdict service. Panics, naming what is missing, when the Debian packages
    /// are not installed: this test never passes without the real rule set.
    pub fn start() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/waf-crs.sh");
        for need in
            ["/usr/sbin/apache2", "/usr/lib/apache2/modules/mod_security2.so", "/usr/share/modsecurity-crs/rules"]
        {
            assert!(
                Path::new(need).exists(),
                "MISSING COMPONENT: {need} (the WAF tests need apache2, libapache2-mod-security2 and \
                 modsecurity-crs; scripts/test.sh installs them)"
            );
        }
        let dir = TempDir::new("crs");
        let port = free_port();
        let child = std::process::Command::new("bash")
            .arg(&script)
            .arg(&dir.0)
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("waf-crs.sh starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let t0 = std::time::Instant::now();
        let mut waf = Self { addr, child, dir };
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = waf.child.try_wait() {
                let log = std::fs::read_to_string(waf.dir.path("error.log")).unwrap_or_default();
                panic!("the CRS service exited ({status}) before listening:\n{log}");
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "the CRS service did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        waf
    }
}

impl Drop for CrsWaf {
    fn drop(&mut self) {
        // SIGTERM: httpd stops its worker processes too (SIGKILL would orphan them)
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
