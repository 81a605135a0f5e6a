//! Time source for logic that must be testable without sleeping.
//!
//! Pure state machines (pool expiry, later limiters and outlier detection) take `now: Instant` as an
//! argument; I/O shells read it from [`Clock`]. Tests drive [`ManualClock`].

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Something that tells the time.
pub trait Clock {
    fn now(&self) -> Instant;
}

/// The monotonic system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct MonoClock;

impl Clock for MonoClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
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
