//! Graceful binary upgrade: `ringway -c FILE --upgrade` starts a new process that receives the
//! running process's listening sockets over a Unix socket (SCM_RIGHTS), starts its workers on
//! them, and tells the old process, which then drains and exits. The sockets never close, so a
//! client hammering the port is never refused: connections queued on them are accepted by
//! whichever process takes them first, and both answer.
//!
//! Protocol on the Unix socket (one exchange, then the old process stops listening on it):
//! new → `UPGRADE\n`; old → one message whose text lists `name configured bound count` per
//! listener (one line each) and whose descriptors are those sockets, `count` per listener in
//! order; new → `READY\n` once its workers run; the old process then stops like on SIGTERM.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sendfd::{RecvWithFd, SendWithFd};

use super::control::{ControlMsg, Outbox};

/// How long either side waits for the other during the exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most descriptors passed (the kernel's SCM_MAX_FD is 253).
const MAX_FDS: usize = 253;

/// A listener handed over by the old process.
#[derive(Debug)]
pub struct Inherited {
    pub name: String,
    /// Its configured address (a new config must name the same to take it over).
    pub configured: SocketAddr,
    pub bound: SocketAddr,
    /// One socket per old worker.
    pub sockets: Vec<OwnedFd>,
}

/// The Unix socket a running instance listens on for an upgrade: `$RINGWAY_UPGRADE_SOCKET`, else
/// one per config file in the temporary directory.
pub fn socket_path(config: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("RINGWAY_UPGRADE_SOCKET") {
        return PathBuf::from(p);
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    std::fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf()).hash(&mut h);
    std::env::temp_dir().join(format!("ringway-upgrade-{:016x}.sock", h.finish()))
}

/// The new process's side: connects, asks, receives the sockets. Keep the stream to
/// [`confirm`] once serving.
pub fn receive(path: &Path) -> std::io::Result<(UnixStream, Vec<Inherited>)> {
    let mut stream = UnixStream::connect(path).map_err(|e| {
        std::io::Error::new(e.kind(), format!("no running ringway to upgrade from at {}: {e}", path.display()))
    })?;
    stream.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
    stream.write_all(b"UPGRADE\n")?;
    let mut text = vec![0u8; 64 * 1024];
    let mut fds = [0; MAX_FDS];
    let (n, nfds) = stream.recv_with_fd(&mut text, &mut fds)?;
    let mut owned: std::collections::VecDeque<OwnedFd> =
        fds[..nfds].iter().map(|&fd| super::listener::own_received(fd)).collect();
    let text = String::from_utf8_lossy(&text[..n]).into_owned();
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let bad = || std::io::Error::other(format!("bad upgrade message line {line:?}"));
        let [name, configured, bound, count] = f[..] else { return Err(bad()) };
        let count: usize = count.parse().map_err(|_| bad())?;
        let sockets: Vec<OwnedFd> = (0..count).filter_map(|_| owned.pop_front()).collect();
        out.push(Inherited {
            name: name.to_string(),
            configured: configured.parse().map_err(|_| bad())?,
            bound: bound.parse().map_err(|_| bad())?,
            sockets,
        });
    }
    Ok((stream, out))
}

/// The new process is serving: the old one may drain.
pub fn confirm(mut stream: UnixStream) -> std::io::Result<()> {
    stream.write_all(b"READY\n")
}

/// The running process's side: listens at `path`; on an upgrade request hands over every
/// worker's listening sockets and, once the new process confirms, calls `on_ready` (which
/// starts this process's drain). One upgrade per process.
pub fn serve(
    path: PathBuf,
    outboxes: Vec<Outbox>,
    listeners: impl Fn() -> Vec<(String, SocketAddr, SocketAddr)> + Send + 'static,
    on_ready: impl FnOnce() + Send + 'static,
) -> std::io::Result<()> {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::thread::Builder::new().name("ringway-upgrade".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            match hand_over(&conn, &outboxes, &listeners()) {
                Ok(()) => {
                    // the path is the new process's from now on
                    let _ = std::fs::remove_file(&path);
                    tracing::info!("Listening sockets handed to the new process; draining");
                    on_ready();
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "Upgrade attempt failed; still serving"),
            }
        }
    })?;
    Ok(())
}

fn hand_over(
    conn: &UnixStream,
    outboxes: &[Outbox],
    listeners: &[(String, SocketAddr, SocketAddr)],
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if line.trim() != "UPGRADE" {
        return Err(std::io::Error::other(format!("unexpected request {line:?}")));
    }
    // a duplicate of every worker's accepting sockets, by listener name
    let (tx, rx) = crossbeam_channel::unbounded();
    let asked = outboxes.iter().filter(|o| o.send(ControlMsg::ListenFds { reply: tx.clone() })).count();
    drop(tx);
    let mut per_worker: Vec<(usize, Vec<(String, OwnedFd)>)> = Vec::with_capacity(asked);
    for _ in 0..asked {
        per_worker
            .push(rx.recv_timeout(EXCHANGE_TIMEOUT).map_err(|_| std::io::Error::other("a worker did not answer"))?);
    }
    per_worker.sort_by_key(|(w, _)| *w);
    let mut text = String::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    for (name, configured, bound) in listeners {
        let mine: Vec<OwnedFd> = per_worker
            .iter_mut()
            .filter_map(|(_, l)| l.iter().position(|(n, _)| n == name).map(|i| l.swap_remove(i).1))
            .collect();
        text.push_str(&format!("{name} {configured} {bound} {}\n", mine.len()));
        fds.extend(mine);
    }
    if fds.len() > MAX_FDS {
        return Err(std::io::Error::other("too many listening sockets to hand over in one message"));
    }
    let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    conn.send_with_fd(text.as_bytes(), &raw)?;
    drop(fds); // the new process holds its own copies now
    line.clear();
    reader.read_line(&mut line)?;
    match line.trim() {
        "READY" => Ok(()),
        other => Err(std::io::Error::other(format!("the new process did not confirm ({other:?})"))),
    }
}
