//! Pacing: keeping every request of one API key under its requests-per-minute
//! ceiling instead of running into 429s.
//!
//! [`Pace`] is what the client asks before each request and tells after each
//! answer. [`LocalPacer`] paces one process; a shared implementation (such as
//! `uncensored-deliver`'s PostgreSQL pacer) paces every process that uses the
//! key. Both use the same rule, GCRA: request *n* may start at the key's
//! theoretical arrival time, which then moves on by one interval, 60 s /
//! ([`PACE_SHARE`] × ceiling). Spaced requests never put more than the ceiling
//! into any 60-second window, whichever way the API counts its windows.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::response::RateLimit;

/// The share of the ceiling a pacer uses: the rest absorbs the jitter between
/// when a request is scheduled and when the API counts it.
pub const PACE_SHARE: f64 = 0.98;

/// The interval between two requests of a key whose ceiling is `limit` per minute.
pub fn pace_interval(limit: u32) -> Duration {
    Duration::from_secs_f64(60.0 / (f64::from(limit.max(1)) * PACE_SHARE))
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
    /// Wakes the requests waiting for the first answer.
    first_answer: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// The ceiling, once an answer has told it.
    limit: Option<u32>,
    /// Whether the first request (the one that learns the ceiling) is out.
    probing: bool,
    /// When it started: it used the first slot.
    probe_started: Option<Instant>,
    /// When the next request may start.
    tat: Option<Instant>,
    /// No request starts before this (a 429's retry-after, a used-up window).
    paused_until: Option<Instant>,
}

impl LocalPacer {
    /// A pacer that knows nothing yet: the first request goes at once and its
    /// answer tells the ceiling; the others wait for it.
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
            let notified = self.first_answer.notified();
            let slot = {
                let mut state = self.lock();
                let now = Instant::now();
                match state.limit {
                    None if !state.probing => {
                        state.probing = true;
                        state.probe_started = Some(now);
                        return;
                    }
                    None => None,
                    Some(limit) => {
                        let slot = [state.tat, state.paused_until]
                            .into_iter()
                            .flatten()
                            .fold(now, Instant::max);
                        state.tat = Some(slot + pace_interval(limit));
                        Some(slot)
                    }
                }
            };
            match slot {
                Some(slot) => {
                    tokio::time::sleep_until(slot).await;
                    return;
                }
                None => self.wait_for_first_answer(notified).await,
            }
        }
    }

    async fn observe(&self, rate: &RateLimit) {
        {
            let mut state = self.lock();
            if state.limit.is_none() {
                // The probe used the first slot: the next one is an interval later.
                let after_probe = state
                    .probe_started
                    .map(|started| started + pace_interval(rate.limit));
                state.tat = state.tat.max(after_probe);
            }
            state.limit = Some(rate.limit);
            if rate.remaining == 0 {
                // The window is used up (by others too): wait for its reset,
                // plus a second for the header's whole-second precision.
                let until_reset = (rate.reset - Utc::now()).to_std().unwrap_or_default();
                let reset = Instant::now() + until_reset + Duration::from_secs(1);
                state.paused_until = Some(state.paused_until.map_or(reset, |p| p.max(reset)));
            }
        }
        self.first_answer.notify_waiters();
    }

    async fn refused(&self, retry_after: Duration) {
        let until = Instant::now() + retry_after.min(crate::MAX_WAIT);
        let mut state = self.lock();
        state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(limit: u32, remaining: u32) -> RateLimit {
        RateLimit {
            limit,
            remaining,
            reset: Utc::now() + chrono::Duration::seconds(30),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_by_the_ceiling_once_it_is_known() {
        let pacer = LocalPacer::new();
        let start = Instant::now();
        pacer.acquire().await; // the probe: no wait
        pacer.observe(&rate(60, 59)).await;
        let mut starts = Vec::new();
        for _ in 0..5 {
            pacer.acquire().await;
            starts.push(Instant::now() - start);
        }
        let interval = pace_interval(60);
        // The probe took the first slot: the next starts an interval after it.
        assert!(
            starts[0] + Duration::from_millis(1) >= interval
                && starts[0] <= interval + Duration::from_millis(1),
            "{:?}",
            starts[0]
        );
        // Tokio's timer counts whole milliseconds.
        for pair in starts.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap + Duration::from_millis(1) >= interval
                    && gap <= interval + Duration::from_millis(1),
                "{gap:?} apart, not {interval:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn others_wait_for_the_first_answer() {
        let pacer = std::sync::Arc::new(LocalPacer::new());
        pacer.acquire().await;
        let waiting = tokio::spawn({
            let pacer = pacer.clone();
            async move { pacer.acquire().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "no ceiling known yet");
        pacer.observe(&rate(600, 599)).await;
        waiting.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_or_a_used_up_window_pauses_every_request() {
        let pacer = LocalPacer::new();
        pacer.acquire().await;
        pacer.observe(&rate(6000, 10)).await;
        pacer.refused(Duration::from_secs(7)).await;
        let start = Instant::now();
        pacer.acquire().await;
        assert!(Instant::now() - start >= Duration::from_secs(7));
        pacer.observe(&rate(6000, 0)).await;
        let start = Instant::now();
        pacer.acquire().await;
        assert!(Instant::now() - start >= Duration::from_secs(30));
    }
}
