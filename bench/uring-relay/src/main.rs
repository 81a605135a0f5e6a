//! A bare TCP relay on one io_uring (no HTTP, one upstream connection per client connection,
//! like HAProxy's `mode tcp`): the kernel cost of the four socket operations a proxied request
//! needs, driven from io_uring, to compare with the epoll relay the rig calls the L4 floor.
//!
//! `uring-relay LISTEN BACKEND MODE`, MODE:
//! - `oneshot`: one receive at a time per direction into that direction's own 16 KiB buffer,
//!   then one send; what monoio 0.2.4 does (a receive that finds no data arms a poll inside the
//!   kernel and completes later).
//! - `multishot`: one multishot receive per socket that stays armed, filled from a shared ring
//!   of provided buffers (the kernel picks a buffer only when data is there); each buffer goes
//!   back to the ring once its send completes.
//!
//! One thread, one ring; every loop turn submits what the last turn queued and waits for at
//! least one completion (`io_uring_enter` once per turn).

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

const ONESHOT_BUF: usize = 16 * 1024;
const RING_BUFS: u16 = 4096;
const RING_BUF_LEN: usize = 16 * 1024;
const BGID: u16 = 0;

const ACCEPT: u64 = 0;
const RECV: u64 = 1;
const SEND: u64 = 2;

fn ud(kind: u64, side: usize, pair: usize, bid: u16) -> u64 {
    kind | (side as u64) << 2 | (pair as u64) << 3 | (bid as u64) << 40
}

fn split(ud: u64) -> (u64, usize, usize, u16) {
    (ud & 3, (ud >> 2 & 1) as usize, (ud >> 3 & ((1 << 37) - 1)) as usize, (ud >> 40) as u16)
}

/// One queued send: where the bytes are and how far it got.
struct Out {
    bid: u16,
    ptr: *const u8,
    len: usize,
    done: usize,
}

struct Pair {
    fds: [RawFd; 2],
    /// oneshot: each direction's buffer (direction = side the bytes came from)
    bufs: [Vec<u8>; 2],
    /// multishot: sends waiting per direction (at most one in flight, in order)
    queue: [VecDeque<Out>; 2],
    sending: [bool; 2],
    inflight: u32,
    closing: bool,
}

/// The provided-buffer ring: `RING_BUFS` entries of 16 bytes shared with the kernel.
struct BufRing {
    entries: *mut types::BufRingEntry,
    slab: Vec<u8>,
    tail: u16,
}

impl BufRing {
    fn new(ring: &IoUring) -> Self {
        let bytes = RING_BUFS as usize * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: anonymous private mapping, page aligned as the kernel requires
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let mut me = BufRing { entries: p.cast(), slab: vec![0u8; RING_BUFS as usize * RING_BUF_LEN], tail: 0 };
        // SAFETY: the mapping lives as long as the process
        unsafe { ring.submitter().register_buf_ring_with_flags(p as u64, RING_BUFS, BGID, 0) }
            .expect("register_buf_ring (kernel >= 5.19)");
        for bid in 0..RING_BUFS {
            me.give(bid);
        }
        me.publish();
        me
    }

    fn ptr(&self, bid: u16) -> *const u8 {
        self.slab[bid as usize * RING_BUF_LEN..].as_ptr()
    }

    /// Puts buffer `bid` back (visible to the kernel at the next `publish`).
    fn give(&mut self, bid: u16) {
        let addr = self.ptr(bid) as u64;
        // SAFETY: the index is masked into the mapping
        let e = unsafe { &mut *self.entries.add((self.tail & (RING_BUFS - 1)) as usize) };
        e.set_addr(addr);
        e.set_len(RING_BUF_LEN as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field of the ring's first entry, written with release order
        unsafe { (*(types::BufRingEntry::tail(self.entries) as *const AtomicU16)).store(self.tail, Ordering::Release) };
    }
}

struct Relay {
    ring: IoUring,
    multishot: bool,
    backend: SocketAddr,
    listener: RawFd,
    pairs: Vec<Option<Pair>>,
    free: Vec<usize>,
    bufs: Option<BufRing>,
}

impl Relay {
    fn push(&mut self, e: squeue::Entry) {
        // SAFETY: every buffer an entry points at is owned by a live pair or the buffer ring
        while unsafe { self.ring.submission().push(&e) }.is_err() {
            self.ring.submit().expect("submit");
        }
    }

    fn arm_accept(&mut self) {
        self.push(opcode::AcceptMulti::new(types::Fd(self.listener)).build().user_data(ud(ACCEPT, 0, 0, 0)));
    }

    fn arm_recv(&mut self, p: usize, side: usize) {
        let pair = self.pairs[p].as_mut().unwrap();
        pair.inflight += 1;
        let fd = types::Fd(pair.fds[side]);
        let e = if self.multishot {
            opcode::RecvMulti::new(fd, BGID).build()
        } else {
            let b = &mut pair.bufs[side];
            opcode::Recv::new(fd, b.as_mut_ptr(), b.len() as u32).build()
        };
        self.push(e.user_data(ud(RECV, side, p, 0)));
    }

    /// Sends the head of direction `dir`'s queue (bytes that came in on side `dir`).
    fn send_next(&mut self, p: usize, dir: usize) {
        let pair = self.pairs[p].as_mut().unwrap();
        if pair.sending[dir] {
            return;
        }
        let Some(o) = pair.queue[dir].front() else { return };
        // SAFETY: the buffer stays owned until the send completes
        let e = opcode::Send::new(types::Fd(pair.fds[1 - dir]), unsafe { o.ptr.add(o.done) }, (o.len - o.done) as u32)
            .build()
            .user_data(ud(SEND, dir, p, o.bid));
        pair.sending[dir] = true;
        pair.inflight += 1;
        self.push(e);
    }

    fn open(&mut self, client: RawFd) {
        let Ok(up) = TcpStream::connect(self.backend) else {
            // SAFETY: our accepted descriptor
            unsafe { libc::close(client) };
            return;
        };
        up.set_nodelay(true).ok();
        set_nodelay(client);
        let pair = Pair {
            fds: [client, up.into_raw_fd()],
            bufs: if self.multishot { [Vec::new(), Vec::new()] } else { [vec![0; ONESHOT_BUF], vec![0; ONESHOT_BUF]] },
            queue: [VecDeque::new(), VecDeque::new()],
            sending: [false; 2],
            inflight: 0,
            closing: false,
        };
        let p = match self.free.pop() {
            Some(p) => {
                self.pairs[p] = Some(pair);
                p
            }
            None => {
                self.pairs.push(Some(pair));
                self.pairs.len() - 1
            }
        };
        self.arm_recv(p, 0);
        self.arm_recv(p, 1);
    }

    fn close(&mut self, p: usize) {
        let pair = self.pairs[p].as_mut().unwrap();
        if !pair.closing {
            pair.closing = true;
            for fd in pair.fds {
                // SAFETY: shutdown wakes the receives still armed on our own sockets
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            }
        }
        if pair.inflight == 0 {
            let pair = self.pairs[p].take().unwrap();
            for fd in pair.fds {
                // SAFETY: no operation refers to the descriptor any more
                unsafe { libc::close(fd) };
            }
            if let Some(ring) = self.bufs.as_mut() {
                for q in pair.queue {
                    for o in q {
                        ring.give(o.bid);
                    }
                }
            }
            self.free.push(p);
        }
    }

    fn complete(&mut self, user_data: u64, res: i32, flags: u32) {
        let (kind, side, p, bid) = split(user_data);
        if kind == ACCEPT {
            if res >= 0 {
                self.open(res);
            }
            if !cqueue::more(flags) {
                self.arm_accept();
            }
            return;
        }
        let multishot = self.multishot;
        let pair = self.pairs[p].as_mut().unwrap();
        let last = kind == SEND || !multishot || !cqueue::more(flags);
        if last {
            pair.inflight -= 1;
        }
        if kind == RECV {
            let got = cqueue::buffer_select(flags);
            if res <= 0 || pair.closing {
                if let (Some(b), Some(ring)) = (got, self.bufs.as_mut()) {
                    ring.give(b);
                }
                if res == -libc::ENOBUFS && !pair.closing {
                    self.arm_recv(p, side); // the buffer ring ran dry: re-arm
                } else {
                    self.close(p);
                }
                return;
            }
            let ptr = match got {
                Some(b) => self.bufs.as_ref().unwrap().ptr(b),
                None => pair.bufs[side].as_ptr(),
            };
            pair.queue[side].push_back(Out { bid: got.unwrap_or(0), ptr, len: res as usize, done: 0 });
            self.send_next(p, side);
            if multishot && last {
                self.arm_recv(p, side);
            }
            return;
        }
        // a send of direction `side` finished
        pair.sending[side] = false;
        if res < 0 || pair.closing {
            self.close(p);
            return;
        }
        let o = pair.queue[side].front_mut().unwrap();
        o.done += res as usize;
        if o.done < o.len {
            self.send_next(p, side);
            return;
        }
        pair.queue[side].pop_front();
        if let Some(ring) = self.bufs.as_mut() {
            ring.give(bid);
        }
        if multishot {
            self.send_next(p, side);
        } else {
            self.arm_recv(p, side);
        }
    }

    fn run(&mut self) -> ! {
        self.arm_accept();
        let mut done: Vec<(u64, i32, u32)> = Vec::with_capacity(1024);
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => panic!("io_uring_enter: {e}"),
            }
            done.extend(self.ring.completion().map(|c| (c.user_data(), c.result(), c.flags())));
            for (u, r, f) in done.drain(..) {
                self.complete(u, r, f);
            }
            if let Some(b) = self.bufs.as_ref() {
                b.publish();
            }
        }
    }
}

fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on an accepted TCP socket with a valid int
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 || !matches!(args[3].as_str(), "oneshot" | "multishot") {
        eprintln!("usage: uring-relay LISTEN_ADDR BACKEND_ADDR oneshot|multishot");
        std::process::exit(2);
    }
    let listener = TcpListener::bind(&args[1]).expect("bind");
    let backend: SocketAddr = args[2].parse().expect("backend address");
    // RELAY_RING: how completions that arrive while the thread runs are delivered.
    // plain: task work may interrupt the thread (the kernel's default); coop (default, what
    // ringway's workers use): COOP_TASKRUN + TASKRUN_FLAG, run at the next ring entry;
    // defer: DEFER_TASKRUN + SINGLE_ISSUER, run only when the thread waits for completions.
    let mut b = IoUring::builder();
    b.setup_cqsize(16384);
    match std::env::var("RELAY_RING").as_deref().unwrap_or("coop") {
        "plain" => {}
        "coop" => {
            b.setup_coop_taskrun().setup_taskrun_flag();
        }
        "defer" => {
            b.setup_single_issuer().setup_defer_taskrun();
        }
        other => panic!("RELAY_RING={other}: plain, coop or defer"),
    }
    let ring = b.build(4096).expect("io_uring");
    let multishot = args[3] == "multishot";
    let bufs = multishot.then(|| BufRing::new(&ring));
    let mut relay =
        Relay { ring, multishot, backend, listener: listener.as_raw_fd(), pairs: Vec::new(), free: Vec::new(), bufs };
    relay.run()
}
