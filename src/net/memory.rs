//! An in-memory stream for driver tests without sockets: reads follow a script (bytes, end of
//! stream, or nothing ever again), writes are recorded where the test can read them, and writing
//! can be made to fail (an upstream that stopped reading).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::BufResult;

/// One scripted read.
#[derive(Debug, Clone)]
pub enum Step {
    /// These bytes arrive (split over reads when the reader's buffer is smaller).
    Data(Vec<u8>),
    /// The peer closed.
    Eof,
    /// Nothing ever arrives (a silent peer): the read waits until it is dropped.
    Hang,
}

/// What a test sees of a stream after the exchange.
#[derive(Debug, Clone, Default)]
pub struct Recorded(Rc<RefCell<Vec<u8>>>);

impl Recorded {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.borrow()).into_owned()
    }
}

/// A scripted stream.
#[derive(Debug, Default)]
pub struct MemoryIo {
    reads: VecDeque<Step>,
    written: Recorded,
    /// Writes fail with a broken pipe (the peer stopped reading and reset).
    pub fail_writes: bool,
    /// The gateway shut down its sending side.
    pub shut: bool,
}

impl MemoryIo {
    /// A stream that reads `steps` in order (then nothing more arrives); returns it with the
    /// handle to what is written to it.
    pub fn new(steps: Vec<Step>) -> (Self, Recorded) {
        let written = Recorded::default();
        (Self { reads: steps.into(), written: written.clone(), fail_writes: false, shut: false }, written)
    }

    pub(super) async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        match self.reads.pop_front() {
            Some(Step::Data(mut d)) => {
                let n = d.len().min(buf.bytes_total());
                // SAFETY: `n` fits the buffer's free space, and those bytes are then initialised
                unsafe {
                    std::ptr::copy_nonoverlapping(d.as_ptr(), buf.write_ptr(), n);
                    buf.set_init(n);
                }
                if n < d.len() {
                    self.reads.push_front(Step::Data(d.split_off(n)));
                }
                (Ok(n), buf)
            }
            Some(Step::Eof) => (Ok(0), buf),
            Some(Step::Hang) | None => std::future::pending().await,
        }
    }

    pub(super) fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        if self.fail_writes {
            return (Err(io::Error::from(io::ErrorKind::BrokenPipe)), buf);
        }
        // SAFETY: the buffer's first `bytes_init` bytes are initialised
        let bytes = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        self.written.0.borrow_mut().extend_from_slice(bytes);
        let n = bytes.len();
        (Ok(n), buf)
    }
}
