//! The connection's byte stream as the h2 crate sees it, with a frame-header watch in front.
//!
//! [`GuardedIo`] adapts a `net::Stream` to tokio's I/O traits (through [`ConnIo`], which holds
//! no buffer while the connection is idle), first replays bytes already read (the h2c preface
//! that told HTTP/2 from HTTP/1.1), and passes every byte received through a [`FrameGuard`].
//! The guard reads only the 9-byte frame headers (and a WINDOW_UPDATE's 4-byte increment) and
//! counts, per one-second window, the frames that cost a server work without carrying a request:
//! client resets (rapid reset, CVE-2023-44487), SETTINGS, PING, PRIORITY, and empty frames (DATA
//! without data or end of stream, zero window increments). Over a limit, the read that showed it
//! is withheld from h2 and the connection is told to send GOAWAY ENHANCE_YOUR_CALM and close.
//!
//! What the h2 crate refuses itself (and is tested here): oversized frames, header blocks over
//! `max_header_list_bytes` however many CONTINUATION frames carry them, HPACK tables over their
//! size, stream-id reuse, streams over `max_concurrent_streams`, a bad preface.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use h2::Reason;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::io::ConnIo;
use crate::net::Stream;

/// Per-second limits of the frames the guard counts.
#[derive(Debug, Clone, Copy)]
pub struct FloodLimits {
    pub resets: u32,
    pub settings: u32,
    pub pings: u32,
    pub priority: u32,
    pub empty: u32,
}

/// The limits ringway applies (docs/HTTP2.md, "Attacks refused").
pub const FLOOD_LIMITS: FloodLimits =
    FloodLimits { resets: 100, settings: 100, pings: 100, priority: 1000, empty: 100 };

const PREFACE_BYTES: usize = 24;
const WINDOW: Duration = Duration::from_secs(1);

/// What a guard trips on, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    Resets,
    Settings,
    Pings,
    Priority,
    Empty,
    /// Not a flood: the first frame after the preface was not SETTINGS (RFC 9113 §3.4); the
    /// h2 crate lets that pass, the guard does not.
    NoSettingsFirst,
}

impl Flood {
    /// The GOAWAY code the connection closes with.
    pub fn reason(self) -> Reason {
        match self {
            Flood::NoSettingsFirst => Reason::PROTOCOL_ERROR,
            _ => Reason::ENHANCE_YOUR_CALM,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Flood::NoSettingsFirst => "no_settings_first",
            Flood::Resets => "rst_stream",
            Flood::Settings => "settings",
            Flood::Pings => "ping",
            Flood::Priority => "priority",
            Flood::Empty => "empty_frames",
        }
    }
}

/// Frame-header watch over the bytes a client sends.
#[derive(Debug)]
pub struct FrameGuard {
    limits: FloodLimits,
    /// Preface bytes still to pass (they are not a frame).
    preface_left: usize,
    header: [u8; 9],
    header_len: usize,
    /// Payload bytes of the current frame still to pass.
    payload_left: usize,
    /// The current frame is a WINDOW_UPDATE: its increment's bytes seen so far.
    window_update: Option<(u32, u8)>,
    window_start: Option<Instant>,
    counts: [u32; 5],
    /// A frame header has been seen (the first must be SETTINGS).
    started: bool,
}

impl FrameGuard {
    pub fn new(limits: FloodLimits) -> Self {
        Self {
            limits,
            preface_left: PREFACE_BYTES,
            header: [0; 9],
            header_len: 0,
            payload_left: 0,
            window_update: None,
            window_start: None,
            counts: [0; 5],
            started: false,
        }
    }

    /// Watches `bytes` (the next ones received, at `now`); `Some` once a limit is passed.
    pub fn inspect(&mut self, mut bytes: &[u8], now: Instant) -> Option<Flood> {
        match self.window_start {
            Some(t) if now.saturating_duration_since(t) < WINDOW => {}
            _ => {
                self.window_start = Some(now);
                self.counts = [0; 5];
            }
        }
        let skip = self.preface_left.min(bytes.len());
        self.preface_left -= skip;
        bytes = &bytes[skip..];
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                if let Some((inc, seen)) = &mut self.window_update {
                    for &b in bytes[..n].iter().take(4 - *seen as usize) {
                        *inc = (*inc << 8) | u32::from(b);
                        *seen += 1;
                    }
                    if *seen == 4 {
                        let zero = *inc & 0x7fff_ffff == 0;
                        self.window_update = None;
                        if let (true, Some(flood)) = (zero, self.count(Flood::Empty)) {
                            return Some(flood);
                        }
                    }
                }
                self.payload_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
            self.header_len += n;
            bytes = &bytes[n..];
            if self.header_len == 9 {
                self.header_len = 0;
                if let Some(flood) = self.frame() {
                    return Some(flood);
                }
            }
        }
        None
    }

    /// A complete frame header: count it.
    fn frame(&mut self) -> Option<Flood> {
        let h = self.header;
        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        let (kind, flags) = (h[3], h[4]);
        self.payload_left = len;
        const END_STREAM: u8 = 0x1;
        const ACK: u8 = 0x1;
        if !std::mem::replace(&mut self.started, true) && (kind != 4 || flags & ACK != 0) {
            return Some(Flood::NoSettingsFirst);
        }
        match kind {
            0 if len == 0 && flags & END_STREAM == 0 => self.count(Flood::Empty),
            2 => self.count(Flood::Priority),
            3 => self.count(Flood::Resets),
            4 if flags & ACK == 0 => self.count(Flood::Settings),
            6 if flags & ACK == 0 => self.count(Flood::Pings),
            8 if len == 4 => {
                self.window_update = Some((0, 0));
                None
            }
            _ => None,
        }
    }

    fn count(&mut self, flood: Flood) -> Option<Flood> {
        let l = self.limits;
        let (i, limit) = match flood {
            Flood::Resets => (0, l.resets),
            Flood::Settings => (1, l.settings),
            Flood::Pings => (2, l.pings),
            Flood::Priority => (3, l.priority),
            Flood::Empty => (4, l.empty),
            // not counted: the first-frame rule trips at once
            Flood::NoSettingsFirst => return Some(flood),
        };
        self.counts[i] += 1;
        (self.counts[i] > limit).then_some(flood)
    }
}

/// The tokio-io view of a client connection for the h2 crate (see the module comment).
pub struct GuardedIo {
    inner: ConnIo,
    replay: Vec<u8>,
    replay_pos: usize,
    guard: FrameGuard,
    /// Set when the guard trips; the connection driver sends GOAWAY and closes.
    tripped: Rc<Cell<Option<Flood>>>,
}

impl GuardedIo {
    /// `park_after`, `idle_gauge`: see [`ConnIo`].
    pub fn new(
        stream: Stream,
        replay: Vec<u8>,
        limits: FloodLimits,
        tripped: Rc<Cell<Option<Flood>>>,
        park_after: Option<Duration>,
        idle_gauge: Rc<Cell<usize>>,
    ) -> Self {
        let inner = ConnIo::new(stream, park_after, idle_gauge);
        Self { inner, replay, replay_pos: 0, guard: FrameGuard::new(limits), tripped }
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.tripped.get().is_some() {
            return Poll::Pending; // nothing more reaches h2; the driver is closing
        }
        let before = buf.filled().len();
        if this.replay_pos < this.replay.len() {
            let n = (this.replay.len() - this.replay_pos).min(buf.remaining());
            buf.put_slice(&this.replay[this.replay_pos..this.replay_pos + n]);
            this.replay_pos += n;
            if this.replay_pos == this.replay.len() {
                this.replay = Vec::new();
                this.replay_pos = 0;
            }
        } else {
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        }
        let fresh = &buf.filled()[before..];
        if fresh.is_empty() {
            return Poll::Ready(Ok(()));
        }
        if let Some(flood) = this.guard.inspect(fresh, Instant::now()) {
            buf.set_filled(before);
            this.tripped.set(Some(flood));
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn feed(frames: &[Vec<u8>], split: usize) -> Option<Flood> {
        let mut g = FrameGuard::new(FLOOD_LIMITS);
        let mut all = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        all.extend_from_slice(&frame(4, 0, 0, &[]));
        for f in frames {
            all.extend_from_slice(f);
        }
        let now = Instant::now();
        all.chunks(split).find_map(|c| g.inspect(c, now))
    }

    #[test]
    fn ordinary_traffic_passes_at_any_split() {
        let mut frames = vec![frame(4, 0, 0, &[0; 6]), frame(8, 0, 0, &1000u32.to_be_bytes())];
        for id in (1..400).step_by(2) {
            frames.push(frame(1, 0x5, id, &[0x82, 0x86, 0x84]));
            frames.push(frame(0, 0x1, id, b"")); // an empty DATA that ends a stream is normal
            frames.push(frame(0, 0, id, &[7; 100]));
        }
        for split in [1, 7, 9, 1000] {
            assert_eq!(feed(&frames, split), None, "split {split}");
        }
    }

    #[test]
    fn each_flood_trips_just_past_its_limit() {
        let cases: [(Vec<u8>, u32, Flood); 6] = [
            (frame(3, 0, 1, &[0, 0, 0, 8]), 100, Flood::Resets),
            (frame(4, 0, 0, &[]), 99, Flood::Settings), // the opening SETTINGS counts
            (frame(6, 0, 0, &[0; 8]), 100, Flood::Pings),
            (frame(2, 0, 3, &[0, 0, 0, 0, 16]), 1000, Flood::Priority),
            (frame(0, 0, 1, &[]), 100, Flood::Empty),
            (frame(8, 0, 1, &[0, 0, 0, 0]), 100, Flood::Empty),
        ];
        for (f, limit, flood) in cases {
            let at_limit = vec![f.clone(); limit as usize];
            assert_eq!(feed(&at_limit, 5), None, "{flood:?} at its limit");
            let over = vec![f; limit as usize + 1];
            assert_eq!(feed(&over, 5), Some(flood), "{flood:?} over its limit");
        }
        // acknowledgements are not counted
        assert_eq!(feed(&vec![frame(4, 1, 0, &[]); 500], 64), None);
        assert_eq!(feed(&vec![frame(6, 1, 0, &[0; 8]); 500], 64), None);
    }

    #[test]
    fn the_first_frame_must_be_settings() {
        let mut g = FrameGuard::new(FLOOD_LIMITS);
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend_from_slice(&frame(8, 0, 0, &1u32.to_be_bytes()));
        assert_eq!(g.inspect(&bytes, Instant::now()), Some(Flood::NoSettingsFirst));
        let mut g = FrameGuard::new(FLOOD_LIMITS);
        bytes.truncate(24);
        bytes.extend_from_slice(&frame(4, 1, 0, &[]));
        assert_eq!(
            g.inspect(&bytes, Instant::now()),
            Some(Flood::NoSettingsFirst),
            "an ACK is not the client's SETTINGS"
        );
    }

    #[test]
    fn counts_start_again_each_second() {
        let mut g = FrameGuard::new(FLOOD_LIMITS);
        g.inspect(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0", Instant::now());
        let rst = frame(3, 0, 1, &[0, 0, 0, 8]);
        let t0 = Instant::now();
        for i in 0..5 {
            let at = t0 + Duration::from_millis(1001 * i);
            for _ in 0..100 {
                assert_eq!(g.inspect(&rst, at), None);
            }
        }
    }
}
