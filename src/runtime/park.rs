//! The parking lot: idle keep-alive client connections held without a task.
//!
//! A keep-alive connection that stayed silent for `[http] idle_park_ms` leaves its task: the
//! socket, its registration ([`ConnGuard`]) and the few facts needed to resume it move here as a
//! [`Parked`] (about 200 bytes), and the socket joins the worker's epoll set. Nothing else is
//! held while it is idle: no task, no future, no buffer, no ring operation, no timer (nginx keeps
//! an idle connection as a small struct plus an epoll registration; this is the same shape). A
//! TLS connection also keeps its rustls session (keys and a 4 KiB record buffer); its other
//! buffers are given up before it parks. At its deadline a TLS connection sends close_notify.
//! When the socket turns readable (the next request, or the client's close) the lot hands the
//! connection back to the worker's connection handler (`Accepted::served` is `Some`), which
//! reads what arrived at once; when its keep-alive time runs out the lot closes it.
//!
//! One task per worker ([`tend`]) waits on the epoll descriptor itself: a single ring poll on
//! io_uring (the epoll fallback driver polls it like any socket), and one timer for the earliest
//! deadline. Parking and resuming cost one `epoll_ctl` each, paid only by connections idle for
//! `idle_park_ms` (1 s by default), never by busy ones. Unsafe code here: the `epoll_*` calls.
#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use super::shard::Shard;

/// Registers a client connection on the shard (count and descriptor, for closing at shutdown or
/// at the connection cap) for as long as it lives: in its task, or parked here.
pub struct ConnGuard {
    shard: Rc<Shard>,
    id: u64,
    /// Waiting for its next request with nothing buffered (safe to close at the cap).
    pub idle: Rc<Cell<bool>>,
}

impl ConnGuard {
    pub(super) fn new(shard: Rc<Shard>, fd: RawFd) -> Self {
        let id = shard.next_conn_id.get();
        shard.next_conn_id.set(id + 1);
        shard.connections.set(shard.connections.get() + 1);
        let idle = Rc::new(Cell::new(false));
        shard.open_fds.borrow_mut().insert(id, super::OpenConn { fd, idle: idle.clone() });
        shard.note_churn();
        Self { shard, id, idle }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shard.open_fds.borrow_mut().remove(&self.id);
        self.shard.connections.set(self.shard.connections.get() - 1);
        self.shard.note_churn();
    }
}

/// An idle keep-alive connection without a task.
pub struct Parked {
    /// Plain TCP, or TLS with its session kept and its buffers given up (`Stream::release`).
    pub stream: crate::net::Stream,
    pub guard: ConnGuard,
    pub peer: SocketAddr,
    /// The accepting listener's index in the current config (see `Accepted::listener`).
    pub listener: Rc<Cell<usize>>,
    /// Requests served on it so far.
    pub served: u32,
}

/// A keep-alive wait in its task (before it parks).
struct Wait {
    /// When the wait has lasted its park delay (the delay of the config it started on).
    at: Instant,
    waker: Option<Waker>,
    /// Past the park delay: the wait gives up its read and parks.
    due: bool,
}

struct Slot {
    /// Bumped each time the slot is vacated: a stale epoll event or deadline names an old tag.
    tag: u32,
    conn: Option<Parked>,
}

/// The worker's parked connections (the `Shard` owns it; only its own thread touches it).
#[derive(Default)]
pub struct ParkingLot {
    /// The epoll set; `None` when it could not be made (connections then close instead of parking).
    epoll: Option<OwnedFd>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    parked: usize,
    /// (deadline, slot, tag), earliest first; entries of vacated slots are skipped when reached.
    deadlines: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// Keep-alive waits not parked yet ([`IdleFor`]): the tending task's tick wakes each once it
    /// has lasted `idle_park_ms`.
    waits: Vec<Wait>,
    free_waits: Vec<u32>,
    /// The tending task, and when its timer fires (a new earlier deadline wakes it).
    waker: Option<Waker>,
    timer: Option<Instant>,
    stopped: bool,
}

/// How often the tending task looks for keep-alive waits past the park delay: a connection parks
/// between `idle_park_ms` and this much later. One list entry per wait instead of a monoio timer
/// (made, registered and dropped on every request: ~370 instructions; bench/RESULTS.md §33).
const WAIT_TICK: Duration = Duration::from_millis(250);

/// Stale deadline entries tolerated beyond one per parked connection before they are dropped.
const STALE_DEADLINES: usize = 64;

/// At most this many epoll events are taken per call.
const EVENTS: usize = 256;
/// How often the tending task checks whether the worker went quiet. mimalloc purges freed pages
/// only when it is next called, and a quiet worker makes no calls: the tasks and buffers of its
/// now-parked (or closed) connections would stay resident. A worker that was busy and then sees
/// whole ticks without a request, connection or park collects on the next few ([`Quiet`],
/// bench/RESULTS.md §30).
const QUIET_TICK: Duration = Duration::from_secs(1);

impl ParkingLot {
    pub fn new() -> Self {
        // SAFETY: epoll_create1 has no memory arguments; a valid descriptor is owned from here on
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        let epoll = match fd >= 0 {
            // SAFETY: `fd` was just created and nothing else owns it
            true => Some(unsafe { OwnedFd::from_raw_fd(fd) }),
            false => {
                tracing::warn!(error = %io::Error::last_os_error(), "No epoll set: idle connections close instead of parking");
                None
            }
        };
        Self { epoll, ..Default::default() }
    }

    /// The epoll descriptor, seen by the runtime as a socket to poll for readability (`None`:
    /// no epoll set).
    fn waiter(&self) -> Option<io::Result<TcpStream>> {
        let epoll = self.epoll.as_ref()?;
        Some(epoll.try_clone().and_then(|dup| TcpStream::from_std(std::net::TcpStream::from(dup))))
    }

    fn watch(&mut self, at: Instant) -> u32 {
        let wait = Wait { at, waker: None, due: false };
        match self.free_waits.pop() {
            Some(id) => {
                self.waits[id as usize] = wait;
                id
            }
            None => {
                self.waits.push(wait);
                self.waits.len() as u32 - 1
            }
        }
    }

    fn unwatch(&mut self, id: u32) {
        if let Some(w) = self.waits.get_mut(id as usize) {
            w.waker = None;
            w.due = true; // a free entry is never woken
            self.free_waits.push(id);
        }
    }

    /// Wakes the keep-alive waits that have lasted their park delay.
    fn wake_idle(&mut self, now: Instant) {
        for w in &mut self.waits {
            if !w.due && w.at <= now {
                w.due = true;
                if let Some(waker) = w.waker.take() {
                    waker.wake();
                }
            }
        }
    }

    /// Whether connections can park (an epoll set, and its tending task running).
    pub fn open(&self) -> bool {
        self.epoll.is_some() && !self.stopped
    }

    /// Connections parked now.
    pub fn len(&self) -> usize {
        self.parked
    }

    pub fn is_empty(&self) -> bool {
        self.parked == 0
    }

    /// Parks `conn` until it turns readable or `deadline` (the end of its keep-alive time)
    /// passes. False when it cannot be watched (no epoll set, `epoll_ctl` failed, or the worker
    /// is stopping): the connection is closed then, as at its keep-alive timeout.
    pub fn park(&mut self, conn: Parked, deadline: Instant) -> bool {
        let Some(epoll) = self.epoll.as_ref().filter(|_| !self.stopped) else { return false };
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot { tag: 0, conn: None });
                self.slots.len() as u32 - 1
            }
        };
        let tag = self.slots[slot as usize].tag;
        let mut event = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32, u64: key(slot, tag) };
        // SAFETY: both descriptors are open; `event` lives across the call
        let added =
            unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, conn.stream.as_raw_fd(), &mut event) };
        if added != 0 {
            tracing::debug!(error = %io::Error::last_os_error(), "Cannot park a connection: closed instead");
            self.free.push(slot);
            return false;
        }
        conn.guard.idle.set(true);
        conn.guard.shard.note_churn();
        if self.deadlines.len() >= 2 * self.parked + STALE_DEADLINES {
            self.drop_stale_deadlines();
        }
        self.deadlines.push(Reverse((deadline, slot, tag)));
        if self.timer.is_none_or(|t| deadline < t) {
            self.wake();
        }
        self.slots[slot as usize].conn = Some(conn);
        self.parked += 1;
        true
    }

    /// Forgets the deadlines of connections that left the lot (resumed, or closed at the cap).
    /// They are otherwise skipped only once they come due: a client that speaks every few
    /// seconds parks once per request, and each park leaves an entry for the rest of its
    /// keep-alive time (60 s by default), so the heap would grow with the park rate rather than
    /// with the connections parked. Called when at least half of it is stale: amortised O(1).
    fn drop_stale_deadlines(&mut self) {
        let slots = &self.slots;
        self.deadlines.retain(|Reverse((_, slot, tag))| {
            let s = &slots[*slot as usize];
            s.tag == *tag && s.conn.is_some()
        });
    }

    /// Takes the connection in `slot` out of the lot (and the epoll set), if `tag` is still its.
    fn take(&mut self, slot: u32, tag: u32) -> Option<Parked> {
        let s = self.slots.get_mut(slot as usize).filter(|s| s.tag == tag)?;
        let conn = s.conn.take()?;
        s.tag = s.tag.wrapping_add(1);
        self.free.push(slot);
        self.parked -= 1;
        if let Some(epoll) = &self.epoll {
            // SAFETY: both descriptors are open; DEL ignores the event argument
            unsafe {
                libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, conn.stream.as_raw_fd(), std::ptr::null_mut())
            };
        }
        conn.guard.idle.set(false);
        Some(conn)
    }

    /// The connections whose sockets turned readable (taken out of the lot).
    fn ready(&mut self, out: &mut Vec<Parked>) {
        let Some(epfd) = self.epoll.as_ref().map(AsRawFd::as_raw_fd) else { return };
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        loop {
            // SAFETY: `events` has room for EVENTS entries; timeout 0 never blocks
            let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), EVENTS as i32, 0) };
            if n <= 0 {
                return;
            }
            for e in &events[..n as usize] {
                let k = e.u64;
                out.extend(self.take(k as u32, (k >> 32) as u32));
            }
            if (n as usize) < EVENTS {
                return;
            }
        }
    }

    /// The connections whose deadline is at or before `now` (taken out of the lot); returns the
    /// next deadline, if any.
    fn expired(&mut self, now: Instant, out: &mut Vec<Parked>) -> Option<Instant> {
        while let Some(&Reverse((deadline, slot, tag))) = self.deadlines.peek() {
            let live = self.slots[slot as usize].tag == tag && self.slots[slot as usize].conn.is_some();
            if live && deadline > now {
                return Some(deadline);
            }
            self.deadlines.pop();
            if live {
                out.extend(self.take(slot, tag));
            }
        }
        None
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Stops parking and closes every parked connection (a stopping worker, after its drain).
    pub fn close_all(&mut self) {
        self.stopped = true;
        self.wake();
        let slots: Vec<(u32, u32)> =
            self.slots.iter().enumerate().filter(|(_, s)| s.conn.is_some()).map(|(i, s)| (i as u32, s.tag)).collect();
        for (slot, tag) in slots {
            if let Some(mut p) = self.take(slot, tag) {
                p.stream.close_now();
            }
        }
        self.deadlines.clear();
    }
}

fn key(slot: u32, tag: u32) -> u64 {
    u64::from(tag) << 32 | u64::from(slot)
}

/// Gives freed memory back once a busy worker has gone quiet.
#[derive(Default)]
struct Quiet {
    /// `Shard::activity` at the last tick.
    seen: u64,
    /// Quiet ticks that still collect. mimalloc (v3) purges a page only once it has been free
    /// for its `purge_delay` (1 s) and it is called again: the first collection frees the
    /// pages, the next ones (a tick apart) purge them.
    collects: u8,
}

/// Collections after each busy period.
const QUIET_COLLECTS: u8 = 3;

impl Quiet {
    fn tick(&mut self, activity: u64) {
        if activity != self.seen {
            // busy: the allocator runs and purges on its own
            self.seen = activity;
            self.collects = QUIET_COLLECTS;
        } else if self.collects > 0 {
            self.collects -= 1;
            let t0 = Instant::now();
            // SAFETY: mi_collect takes no pointers; it frees and purges this thread's free
            // pages (a no-op when mimalloc is not the allocator, as in the library's tests)
            unsafe { libmimalloc_sys::mi_collect(true) };
            tracing::debug!(us = t0.elapsed().as_micros() as u64, "Quiet: freed memory given back");
        }
    }
}

/// Resolves once a keep-alive wait has lasted its park delay, i.e. at the first tick of the
/// tending task at or after `at` ([`WAIT_TICK`]); pending forever when the lot is stopped.
pub struct IdleFor<'a> {
    lot: &'a RefCell<ParkingLot>,
    at: Instant,
    id: Option<u32>,
}

impl<'a> IdleFor<'a> {
    pub fn new(lot: &'a RefCell<ParkingLot>, at: Instant) -> Self {
        Self { lot, at, id: None }
    }
}

impl Future for IdleFor<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut lot = this.lot.borrow_mut();
        let id = *this.id.get_or_insert_with(|| lot.watch(this.at));
        let w = &mut lot.waits[id as usize];
        if w.due {
            return Poll::Ready(());
        }
        w.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for IdleFor<'_> {
    fn drop(&mut self) {
        if let (Some(id), Ok(mut lot)) = (self.id, self.lot.try_borrow_mut()) {
            lot.unwatch(id);
        }
    }
}

/// Resolves once the lot wakes its tending task (a new earliest deadline, or the stop).
struct Nudged<'a>(&'a RefCell<ParkingLot>, bool);

impl Future for Nudged<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.1 {
            return Poll::Ready(());
        }
        self.1 = true;
        self.0.borrow_mut().waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// The worker's tending task: resumes parked connections that turned readable (through
/// `handler`, as a new task) and closes those past their deadline, until the lot is closed.
pub async fn tend(shard: Rc<Shard>, handler: super::ConnHandler) {
    let waiter = match shard.parked.borrow().waiter() {
        Some(Ok(w)) => w,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "Cannot watch the parking lot: idle connections close instead of parking");
            shard.parked.borrow_mut().stopped = true;
            return;
        }
        None => return,
    };
    // one poll stays armed across timer wake-ups (a dropped ring poll would linger until the next event)
    let readable = waiter.readable(false);
    let mut readable = std::pin::pin!(readable);
    let mut woken = Vec::new();
    let mut quiet = Quiet::default();
    let mut tick = Instant::now() + QUIET_TICK;
    let mut wait_tick = Instant::now() + WAIT_TICK;
    loop {
        let next = {
            let mut lot = shard.parked.borrow_mut();
            if lot.stopped {
                return;
            }
            let now = Instant::now();
            let next = lot.expired(now, &mut woken);
            for mut p in woken.drain(..) {
                p.stream.close_now(); // past their keep-alive time: closed
            }
            if now >= tick {
                tick = now + QUIET_TICK;
                quiet.tick(shard.activity());
            }
            if now >= wait_tick {
                wait_tick = now + WAIT_TICK;
                lot.wake_idle(now);
            }
            let next = next.map_or(tick, |d| d.min(tick)).min(wait_tick);
            lot.timer = Some(next);
            next
        };
        let sleep = next.saturating_duration_since(Instant::now());
        let ready = monoio::select! {
            r = &mut readable => Some(r),
            _ = monoio::time::sleep(sleep) => None,
            _ = Nudged(&shard.parked, false) => None,
        };
        if let Some(r) = ready {
            if let Err(e) = r {
                tracing::debug!(error = %e, "Waiting on the parking lot failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
            readable.set(waiter.readable(false));
            shard.parked.borrow_mut().ready(&mut woken);
            for p in woken.drain(..) {
                let conn = super::Accepted {
                    stream: p.stream,
                    peer: p.peer,
                    listener: p.listener,
                    guard: Some(p.guard),
                    served: Some(p.served),
                };
                monoio::spawn(handler(shard.clone(), conn));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_of_resumed_connections_do_not_pile_up() {
        let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().build();
        rt.expect("runtime").block_on(async {
            let shard = Shard::for_test("");
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let clients: Vec<_> = (0..8).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
            let mut conns: Vec<Parked> = clients
                .iter()
                .map(|_| {
                    let (s, peer) = listener.accept().unwrap();
                    let guard = ConnGuard::new(shard.clone(), s.as_raw_fd());
                    let stream = crate::net::Stream::Plain(TcpStream::from_std(s).unwrap());
                    Parked { stream, guard, peer, listener: Rc::new(Cell::new(0)), served: 1 }
                })
                .collect();
            let mut lot = ParkingLot::new();
            let far = Instant::now() + Duration::from_secs(600);
            // every connection parks and resumes 100 times, as a client speaking every few seconds
            for _ in 0..100 {
                for c in conns.drain(..) {
                    assert!(lot.park(c, far));
                }
                let held: Vec<(u32, u32)> =
                    (0..lot.slots.len() as u32).map(|i| (i, lot.slots[i as usize].tag)).collect();
                conns.extend(held.into_iter().filter_map(|(slot, tag)| lot.take(slot, tag)));
                assert_eq!(lot.len(), 0);
            }
            assert_eq!(conns.len(), 8, "every connection came back");
            assert!(
                lot.deadlines.len() <= 2 * 8 + STALE_DEADLINES,
                "{} deadline entries for 8 connections",
                lot.deadlines.len()
            );
            // the live ones survive a clean-up
            for c in conns.drain(..) {
                assert!(lot.park(c, far));
            }
            lot.drop_stale_deadlines();
            assert_eq!(lot.deadlines.len(), 8);
            lot.close_all();
        });
    }
}
