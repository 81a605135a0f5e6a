//! The real `ringway` binary as a child process: config files, start-up, signals, exit.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_ringway");

/// Writes `text` as `ringway.toml` in a fresh per-test directory; returns its path.
pub fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ringway-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ringway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A running binary: its first listener and, when configured, its admin address.
pub struct Spawned {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
}

/// Starts the binary with `[instance]` extras and `body`, and waits for its start-up lines.
pub fn spawn_with(name: &str, instance_extra: &str, body: &str) -> Spawned {
    spawn_with_env(name, instance_extra, body, &[])
}

/// Same, with extra environment variables.
pub fn spawn_with_env(name: &str, instance_extra: &str, body: &str, env: &[(&str, &str)]) -> Spawned {
    let text = format!(
        "[instance]\nworkers = 2\nio_driver = \"{}\"\n{instance_extra}\n\n[[listener]]\nlisten = \"127.0.0.1:0\"\n\n{body}",
        super::driver()
    );
    let path = write_config(name, &text);
    let mut child = Command::new(BIN)
        .args(["-c", path.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringway");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let wants_admin = body.contains("[admin]");
    let (mut addr, mut admin) = (None, None);
    while addr.is_none() || (wants_admin && admin.is_none()) {
        let line = lines.next().expect("ringway exited before listening").unwrap();
        let clean: String = line.chars().filter(|c| !c.is_control()).collect();
        let clean = clean.replace("[2m", "").replace("[0m", "").replace("[3m", "");
        for (key, slot) in [("admin=", &mut admin), ("addr=", &mut addr)] {
            if let Some(rest) = clean.split(key).nth(1) {
                if let Some(a) = rest.split_whitespace().next().and_then(|t| t.parse::<SocketAddr>().ok()) {
                    *slot = Some(a);
                }
            }
        }
    }
    // keep draining the log (into $RINGWAY_TEST_CHILD_LOG when set, for debugging)
    let mut keep = std::env::var_os("RINGWAY_TEST_CHILD_LOG").and_then(|p| std::fs::File::create(p).ok());
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Some(f) = keep.as_mut() {
                use std::io::Write;
                let _ = writeln!(f, "{line}");
            }
        }
    });
    Spawned { child, addr: addr.unwrap(), admin }
}

/// Starts the binary with `body` (no `[instance]` extras); returns the process and address.
pub fn spawn(name: &str, body: &str) -> (Child, SocketAddr) {
    let s = spawn_with(name, "", body);
    (s.child, s.addr)
}

/// Sends `signal` (a `kill` name: TERM, USR1, ...) to the process.
pub fn signal(child: &Child, signal: &str) {
    let ok = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill -{signal}");
}

pub fn sigterm(child: &Child) {
    signal(child, "TERM");
}

/// Waits up to `limit` for the process to exit.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}
