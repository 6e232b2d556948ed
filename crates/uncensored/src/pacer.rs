//! Pacing: keeping every request of one API key within its requests-per-minute
//! ceiling instead of running into 429s.
//!
//! [`Pace`] is what the client asks before each request and tells after each
//! answer. [`LocalPacer`] paces one process; a shared implementation (such as
//! `uncensored-deliver`'s PostgreSQL pacer) paces every process that uses the
//! key. Both follow the window the API reports in every answer
//! (`x-ratelimit-remaining-requests`, `x-ratelimit-reset-requests`):
//!
//! - the requests left in the window go at once, counted down as they start
//!   (so that requests in flight, which the API has not counted yet in the
//!   answers read so far, are never spent twice); an answer only ever lowers
//!   the count, to what the API says is left;
//! - when none is left, nothing starts until a second and a quarter after
//!   the reported reset ([`RESET_PRECISION`]: the header has whole seconds,
//!   and a request of the old window may still be on its way);
//! - then a new window begins with the whole ceiling; its first answer tells
//!   when it resets.
//!
//! An answer whose reset is already past by more than [`RESET_PRECISION`]
//! by this machine's clock (a clock ahead of the API's) is no window to
//! follow: the pacer then spaces requests instead, one every
//! [`pace_interval`], which keeps any 60-second window under the ceiling. A
//! 429 pauses every request for its `retry-after`, which is relative and so
//! immune to clock skew.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::response::RateLimit;

/// The share of the ceiling spaced requests use (when no window can be
/// followed): the rest absorbs the jitter between when a request is
/// scheduled and when the API counts it.
pub const PACE_SHARE: f64 = 0.98;

/// The API's rate-limit window (openapi.yaml: "requests left in the current
/// 60-second window"): no reset is believed further away than this.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The margin after a reported reset: `x-ratelimit-reset-requests` has whole
/// seconds, so a window reported to reset at `T` may reset up to a second
/// later, and a request that took its turn just before the reset may reach
/// the API a little after it (a loaded machine): nothing starts between `T`
/// and `T` + this (a second and a quarter).
pub const RESET_PRECISION: Duration = Duration::from_millis(1250);

/// The interval between two spaced requests of a key whose ceiling is
/// `limit` per minute.
pub fn pace_interval(limit: u32) -> Duration {
    Duration::from_secs_f64(60.0 / (f64::from(limit.max(1)) * PACE_SHARE))
}

/// How long until the window of `rate` resets, read at `now` by this
/// machine's clock: at most [`WINDOW`] (a clock behind the API's), zero for
/// a reset less than [`RESET_PRECISION`] ago, and `None` when the reset is
/// further in the past (a clock ahead of the API's: no window to follow).
pub fn time_to_reset(rate: &RateLimit, now: DateTime<Utc>) -> Option<Duration> {
    let ahead = rate.reset.signed_duration_since(now);
    match ahead.to_std() {
        Ok(ahead) => Some(ahead.min(WINDOW)),
        Err(_) => (ahead.abs().to_std().ok()? <= RESET_PRECISION).then_some(Duration::ZERO),
    }
}

/// Decides when each request of one API key may start.
#[async_trait::async_trait]
pub trait Pace: Send + Sync + Debug {
    /// Waits until a request may start, and takes its slot.
    async fn acquire(&self);
    /// Takes in the rate-limit headers of an answer.
    async fn observe(&self, rate: &RateLimit);
    /// The API refused a request with 429 and asked to wait `retry_after`:
    /// every request of the key waits.
    async fn refused(&self, retry_after: Duration);
}

/// Paces the requests of this process.
#[derive(Debug, Default)]
pub struct LocalPacer {
    state: Mutex<State>,
    /// Wakes the requests waiting for an answer (the first one, or one that
    /// tells when the window resets).
    answered: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// The ceiling, once an answer has told it.
    limit: Option<u32>,
    /// Whether the first request (the one that learns the ceiling) is out.
    probing: bool,
    /// When it started: it used the first slot.
    probe_started: Option<Instant>,
    /// The window followed; `None`: requests are spaced.
    window: Option<Window>,
    /// When the next spaced request may start.
    tat: Option<Instant>,
    /// No request starts before this (a 429's retry-after).
    paused_until: Option<Instant>,
}

/// One window of the API's, as this process counts it down.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// The reset its answers report; `None` until the first of them.
    reset: Option<DateTime<Utc>>,
    /// The reset of the window before: its late answers change nothing.
    previous: Option<DateTime<Utc>>,
    /// When the reported reset is (until an answer tells it: a
    /// [`WINDOW`] after the window began here).
    ends: Instant,
    /// Requests that may still start in it.
    remaining: u32,
}

/// What a request does now.
enum Decision {
    /// Starts.
    Go,
    /// Starts at this instant (a spaced slot, taken).
    GoAt(Instant),
    /// Asks again at this instant, or at the next answer.
    Wait(Instant),
    /// Waits for the answer that tells the ceiling.
    WaitForProbe,
}

impl State {
    fn decide(&mut self, now: Instant) -> Decision {
        let Some(limit) = self.limit else {
            if self.probing {
                return Decision::WaitForProbe;
            }
            self.probing = true;
            self.probe_started = Some(now);
            return Decision::Go;
        };
        if let Some(until) = self.paused_until.filter(|until| *until > now) {
            return Decision::Wait(until);
        }
        match &mut self.window {
            Some(window) if now < window.ends && window.remaining > 0 => {
                window.remaining -= 1;
                Decision::Go
            }
            Some(window) if now < window.ends + RESET_PRECISION => {
                Decision::Wait(window.ends + RESET_PRECISION)
            }
            Some(window) => {
                // Past the reset: a new window, this request its first.
                *window = Window {
                    reset: None,
                    previous: window.reset.or(window.previous),
                    ends: now + WINDOW,
                    remaining: limit.saturating_sub(1),
                };
                Decision::Go
            }
            None => {
                let slot = self.tat.map_or(now, |tat| tat.max(now));
                self.tat = Some(slot + pace_interval(limit));
                Decision::GoAt(slot)
            }
        }
    }

    fn observe(&mut self, rate: &RateLimit, now: Instant, left: Option<Duration>) {
        if self.limit.is_none() {
            // The probe used the first slot: a spaced one is an interval later.
            let after_probe = self
                .probe_started
                .map(|started| started + pace_interval(rate.limit));
            self.tat = self.tat.max(after_probe);
        }
        self.limit = Some(rate.limit);
        self.window = match self.window {
            None => left.map(|left| Window {
                reset: Some(rate.reset),
                previous: None,
                ends: now + left,
                remaining: rate.remaining,
            }),
            Some(mut window) => match window.reset {
                Some(reset) if rate.reset == reset => {
                    window.remaining = window.remaining.min(rate.remaining);
                    Some(window)
                }
                // A late answer of an earlier window.
                Some(reset) if rate.reset < reset => Some(window),
                None if window
                    .previous
                    .is_some_and(|previous| rate.reset <= previous) =>
                {
                    Some(window)
                }
                _ => match (window.reset, left) {
                    // A window this machine's clock cannot follow: spaced requests.
                    (_, None) => None,
                    // A later reset while this window runs (a clock behind
                    // the API's, or an API that moves its reset): still
                    // counted down, and over at the later of the two.
                    (Some(_), Some(left)) => {
                        window.reset = Some(rate.reset);
                        window.ends = window.ends.max(now + left);
                        window.remaining = window.remaining.min(rate.remaining);
                        Some(window)
                    }
                    // The first answer of the window this process began.
                    (None, Some(left)) => {
                        window.reset = Some(rate.reset);
                        window.ends = now + left;
                        window.remaining = window.remaining.min(rate.remaining);
                        Some(window)
                    }
                },
            },
        };
    }
}

impl LocalPacer {
    /// A pacer that knows nothing yet: the first request goes at once and its
    /// answer tells the ceiling and the window; the others wait for it.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the probe's answer; when none comes (the probe failed
    /// without rate-limit headers), lets the next request probe instead.
    async fn wait_for_first_answer(&self, notified: tokio::sync::futures::Notified<'_>) {
        if tokio::time::timeout(PROBE_PATIENCE, notified)
            .await
            .is_err()
        {
            let mut state = self.lock();
            if state.limit.is_none() {
                state.probing = false;
            }
        }
    }
}

/// How long requests wait for the first answer before another one probes.
pub const PROBE_PATIENCE: Duration = Duration::from_secs(5);

#[async_trait::async_trait]
impl Pace for LocalPacer {
    async fn acquire(&self) {
        loop {
            let notified = self.answered.notified();
            let decision = self.lock().decide(Instant::now());
            match decision {
                Decision::Go => return,
                Decision::GoAt(slot) => {
                    tokio::time::sleep_until(slot).await;
                    return;
                }
                Decision::Wait(until) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        () = notified => {}
                    }
                }
                Decision::WaitForProbe => self.wait_for_first_answer(notified).await,
            }
        }
    }

    async fn observe(&self, rate: &RateLimit) {
        let left = time_to_reset(rate, Utc::now());
        self.lock().observe(rate, Instant::now(), left);
        self.answered.notify_waiters();
    }

    async fn refused(&self, retry_after: Duration) {
        let until = Instant::now() + retry_after.min(crate::MAX_WAIT);
        let mut state = self.lock();
        state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
    }
}

#[cfg(test)]
#[path = "pacer_tests.rs"]
mod tests;
