//! What one connection is doing, as its reads, its router and its
//! responses tell it, and the watchdog that drops it when it waits too long
//! for a request (longer than its limits, or than the cap's pressure allows).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::ServerLimits;

/// Whether a new connection waits for a slot at the cap: then connections
/// that wait for a request give way after [`ServerLimits::UNDER_PRESSURE`].
#[derive(Default)]
pub(super) struct Pressure {
    on: AtomicBool,
    changed: Notify,
}

impl Pressure {
    pub(super) fn set(&self, on: bool) {
        if self.on.swap(on, Ordering::AcqRel) != on {
            self.changed.notify_waiters();
        }
    }

    fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }
}

/// Why the watchdog dropped a connection.
#[derive(Debug, Clone, Copy)]
pub(super) enum Expired {
    Headers(Duration),
    Idle(Duration),
}

impl std::fmt::Display for Expired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Headers(limit) => write!(f, "a request's headers took longer than {limit:?}"),
            Self::Idle(limit) => write!(f, "no request for {limit:?}"),
        }
    }
}

/// What a connection is doing, as its reads, its router and its responses tell it.
pub(super) struct Activity {
    state: Mutex<State>,
    changed: Notify,
    /// Whether a read should tell [`Activity::first_byte`]: no request in
    /// flight and no byte of the next one yet (a read's cheap check).
    awaiting_first_byte: AtomicBool,
    /// Whether the last write waited for the socket: bytes of a response
    /// may still be on their way out.
    writing: AtomicBool,
}

struct State {
    /// Requests handed to the router whose response has not ended.
    in_flight: usize,
    /// A byte of the next request arrived (its headers are being read).
    reading: bool,
    /// When the present phase (idle or reading headers) began.
    since: Instant,
    /// Bumped at every change, so that a deadline of a past phase is ignored.
    generation: u64,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                in_flight: 0,
                reading: false,
                since: Instant::now(),
                generation: 0,
            }),
            changed: Notify::new(),
            awaiting_first_byte: AtomicBool::new(true),
            writing: AtomicBool::new(false),
        }
    }

    /// Whether the last write waited for the socket.
    pub(super) fn set_writing(&self, writing: bool) {
        self.writing.store(writing, Ordering::Release);
    }

    /// No request in flight and every byte of the responses written.
    pub(super) fn at_rest(&self) -> bool {
        self.lock().in_flight == 0 && !self.writing.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self, mut state: MutexGuard<'_, State>) {
        state.generation += 1;
        drop(state);
        self.changed.notify_waiters();
    }

    /// Bytes arrived.
    pub(super) fn first_byte(&self) {
        if !self.awaiting_first_byte.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.lock();
        if state.in_flight == 0 && !state.reading {
            state.reading = true;
            state.since = Instant::now();
            self.awaiting_first_byte.store(false, Ordering::Release);
            self.changed(state);
        }
    }

    /// A request reached the router; it is in flight until the guard drops
    /// with its response's body.
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        let mut state = self.lock();
        state.in_flight += 1;
        self.awaiting_first_byte.store(false, Ordering::Release);
        self.changed(state);
        InFlight(self.clone())
    }

    fn end(&self) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.reading = false;
            state.since = Instant::now();
            self.awaiting_first_byte.store(true, Ordering::Release);
        }
        self.changed(state);
    }

    /// Resolves when the connection has waited too long for a request: for
    /// its headers since their first byte, or idle since the last response
    /// ended (or since it was accepted); under `pressure` sooner. Never while
    /// a request is in flight.
    pub(super) async fn watchdog(&self, limits: &ServerLimits, pressure: &Pressure) -> Expired {
        loop {
            let changed = self.changed.notified();
            let pressed = pressure.changed.notified();
            tokio::pin!(changed, pressed);
            // Registered before the state is read: no change is missed.
            changed.as_mut().enable();
            pressed.as_mut().enable();
            let squeezed = pressure.is_on();
            let squeeze = |limit: Duration| match squeezed {
                true => limit.min(ServerLimits::UNDER_PRESSURE),
                false => limit,
            };
            let (deadline, generation) = {
                let state = self.lock();
                let deadline = if state.in_flight > 0 {
                    None
                } else if state.reading {
                    let limit = squeeze(limits.header_read_timeout);
                    Some((state.since + limit, Expired::Headers(limit)))
                } else {
                    let limit = squeeze(limits.idle_timeout);
                    Some((state.since + limit, Expired::Idle(limit)))
                };
                (deadline, state.generation)
            };
            match deadline {
                None => tokio::select! {
                    () = changed => {}
                    () = pressed => {}
                },
                Some((at, expired)) => tokio::select! {
                    () = changed => {}
                    () = pressed => {}
                    () = tokio::time::sleep_until(at) => {
                        let eased = squeezed && !pressure.is_on();
                        if self.lock().generation == generation && !eased {
                            return expired;
                        }
                    }
                },
            }
        }
    }
}

/// A request in flight; its drop (with the response's body, or the
/// connection) ends it.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}
