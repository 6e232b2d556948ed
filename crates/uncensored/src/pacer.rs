//! An optional pacer that keeps a busy client under its requests-per-minute
//! ceiling, using the rate-limit headers of earlier answers, instead of
//! running into 429s.

use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use crate::response::RateLimit;

/// Counts requests against the window the API reports.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    window: Mutex<Option<Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    /// Requests this client may still start before `reset`.
    left: u32,
    reset: Instant,
}

impl Pacer {
    /// Waits until a request may start without exceeding the window, and takes
    /// its slot. Before the first answer nothing is known, so nothing waits.
    pub(crate) async fn acquire(&self) {
        loop {
            let wait_until = {
                let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
                match window.as_mut() {
                    None => return,
                    Some(w) if Instant::now() >= w.reset => {
                        *window = None;
                        return;
                    }
                    Some(w) if w.left > 0 => {
                        w.left -= 1;
                        return;
                    }
                    Some(w) => w.reset,
                }
            };
            tracing::debug!(wait = ?wait_until.saturating_duration_since(Instant::now()), "pacing: window used up");
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// Takes in the headers of an answer.
    pub(crate) fn observe(&self, rate: &RateLimit) {
        let until_reset = (rate.reset - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        let reset = Instant::now() + until_reset;
        let mut window = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let left = match *window {
            // Requests started since this answer was sent are already counted
            // locally: keep the smaller figure for the same window.
            Some(w) if w.reset >= reset - Duration::from_secs(1) => w.left.min(rate.remaining),
            _ => rate.remaining,
        };
        *window = Some(Window { left, reset });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_for_the_reset_when_the_window_is_used_up() {
        let pacer = Pacer::default();
        pacer.acquire().await; // nothing known: no wait
        pacer.observe(&RateLimit {
            limit: 2,
            remaining: 1,
            reset: Utc::now() + chrono::Duration::seconds(30),
        });
        let start = Instant::now();
        pacer.acquire().await;
        assert_eq!(Instant::now(), start, "one slot was left");
        pacer.acquire().await;
        let waited = Instant::now() - start;
        assert!(waited >= Duration::from_secs(29), "waited {waited:?}");
    }
}
