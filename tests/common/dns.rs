//! A real DNS server for the tests: dnsmasq answering from a hosts file on a loopback port,
//! stopped by PID. `set` rewrites the file and sends SIGHUP (dnsmasq re-reads it).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::tls::{free_port, wait_listening, TempDir};

pub struct Dnsmasq {
    pub addr: SocketAddr,
    hosts: PathBuf,
    child: Option<std::process::Child>,
    _dir: TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq with `hosts` (lines of "IP name"). Panics, naming what is missing, without it.
    pub fn start(hosts: &str) -> Self {
        let bin = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"].into_iter().find(|p| std::path::Path::new(p).exists());
        let bin = bin.expect("MISSING COMPONENT: dnsmasq (apt-get install dnsmasq-base; scripts/test.sh installs it)");
        let dir = TempDir::new("dnsmasq");
        let file = dir.path("hosts");
        std::fs::write(&file, hosts).unwrap();
        let port = free_port();
        let child = std::process::Command::new(bin)
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
            ])
            .args(["--local-ttl=1", "--no-negcache", "--user=root", "--log-facility=-"])
            .arg(format!("--port={port}"))
            .arg(format!("--addn-hosts={}", file.display()))
            .arg(format!("--pid-file={}", dir.path("pid").display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dnsmasq starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // it is up when it answers over TCP too
        wait_listening(addr, "dnsmasq");
        Self { addr, hosts: file, child: Some(child), _dir: dir }
    }

    /// Replaces the records and has dnsmasq re-read them.
    pub fn set(&self, hosts: &str) {
        std::fs::write(&self.hosts, hosts).unwrap();
        let pid = self.child.as_ref().expect("running").id();
        let _ = std::process::Command::new("kill").arg("-HUP").arg(pid.to_string()).status();
    }

    /// Stops the server (a DNS outage).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}
