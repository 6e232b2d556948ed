//! The wall clock the ledger reads: daily and monthly spend reset at UTC
//! midnight, and transactions carry the time they happened. Injectable, so
//! that a test crosses midnight by setting the clock instead of waiting.

use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// Where the ledger reads the time from.
pub trait Clock: Send + Sync {
    /// The current time, UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until it is set or advanced: for tests of the
/// spend windows.
///
/// ```
/// use uncensored_emulator::{Clock, ManualClock};
///
/// let clock = ManualClock::new("2026-05-09T23:59:00Z".parse().unwrap());
/// clock.advance(chrono::Duration::minutes(2));
/// assert_eq!(clock.now().to_rfc3339(), "2026-05-10T00:01:00+00:00");
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock showing `at`.
    pub fn new(at: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(at),
        }
    }

    /// Sets the time.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    /// Moves the time forward (or back, with a negative duration).
    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|p| p.into_inner());
        *now = now.checked_add_signed(by).unwrap_or(*now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|p| p.into_inner())
    }
}
