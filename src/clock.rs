//! Time for logic that must be testable without sleeping.
//!
//! Pure state machines (pool expiry, limiters, outlier detection) take `now: Instant` as an
//! argument; the I/O shells pass `Instant::now()`, unit tests drive a [`ManualClock`].

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Something that tells the time.
pub trait Clock {
    fn now(&self) -> Instant;
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Cell<Instant>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self { now: Cell::new(Instant::now()) }
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        self.now.set(self.now.get() + by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.now.get()
    }
}
