//! Real Redis for the cluster tests: one `redis-server` on a loopback port (stoppable and
//! restartable on the same port), or a 3-master Redis Cluster made with `redis-cli --cluster
//! create`. Stopped by PID.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::tls::{free_port, wait_listening, TempDir};

fn binary(name: &str) -> String {
    let path = format!("/usr/bin/{name}");
    assert!(
        std::path::Path::new(&path).exists(),
        "MISSING COMPONENT: {name} (apt-get install redis-server; scripts/test.sh installs it)"
    );
    path
}

pub struct RedisServer {
    pub addr: SocketAddr,
    child: Option<Child>,
    dir: TempDir,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Self {
        let dir = TempDir::new("redis");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut s = Self { addr, child: None, dir, extra: extra.iter().map(|e| e.to_string()).collect() };
        s.restart();
        s
    }

    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Stops it (an outage).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it (again) on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new(binary("redis-server"))
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--port", &self.addr.port().to_string()])
            .arg("--dir")
            .arg(&self.dir.0)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        wait_listening(self.addr, "redis-server");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Three masters, slots spread by `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|i| {
                let conf = format!("nodes-{i}-{}.conf", std::process::id());
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf,
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
        let out = Command::new(binary("redis-cli"))
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        // wait until every node agrees the cluster is up
        let t0 = std::time::Instant::now();
        for n in &nodes {
            loop {
                let info = Command::new(binary("redis-cli"))
                    .args(["-h", "127.0.0.1", "-p", &n.addr.port().to_string(), "cluster", "info"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(t0.elapsed() < Duration::from_secs(20), "the Redis Cluster did not come up");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Self { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| format!("redis://{}", n.addr)).collect()
    }
}
