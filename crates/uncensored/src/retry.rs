//! How the client retries: capped exponential backoff with full jitter, never
//! shorter than what the API asks for with `retry-after`.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};

/// When and how often to retry a failed request.
///
/// Only failures for which [`crate::Error::is_retryable`] is true are retried:
/// 409 in flight, 429, 500, 503 (any 5xx), connection failures and timeouts.
/// POSTs are safe to retry because each logical request keeps one
/// Idempotency-Key across all its attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 means never retry).
    pub max_attempts: u32,
    /// The first backoff step.
    pub initial_backoff: Duration,
    /// The largest backoff step (before jitter).
    pub max_backoff: Duration,
    /// The longest `retry-after` honoured; a longer one ends the retries.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The backoff before each retry: `min(max_backoff, initial × 2ⁿ)`, then
    /// full jitter (uniform between zero and that).
    pub fn backoffs(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(self.initial_backoff)
            .with_max_delay(self.max_backoff)
            .with_factor(2.0)
            .without_max_times()
            .build()
            .map(|step| step.mul_f64(fastrand::f64()))
    }

    /// How long to wait before retry number `retry` (from 1), given the
    /// jittered backoff and the API's `retry-after`; `None` to stop retrying.
    pub fn delay(&self, backoff: Duration, retry_after: Option<Duration>) -> Option<Duration> {
        match retry_after {
            Some(wait) if wait > self.max_retry_after => None,
            Some(wait) => Some(wait.max(backoff)),
            None => Some(backoff),
        }
    }
}

/// A `Retry-After` header as a wait: seconds (`120`, `1.5`) or an HTTP date
/// (`Wed, 21 Oct 2026 07:28:00 GMT`, a past date being no wait). The one
/// parser of this header for the client and every notifier.
///
/// ```
/// let mut headers = reqwest::header::HeaderMap::new();
/// headers.insert("retry-after", "2".parse().unwrap());
/// assert_eq!(uncensored::retry_after(&headers), Some(std::time::Duration::from_secs(2)));
/// ```
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    Some(
        (when.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered_below_the_cap() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(800),
            ..RetryPolicy::default()
        };
        let steps: Vec<Duration> = policy.backoffs().take(50).collect();
        let caps = [100, 200, 400, 800, 800];
        for (i, step) in steps.iter().enumerate() {
            let cap = Duration::from_millis(caps[i.min(4)]);
            assert!(*step <= cap, "step {i}: {step:?} > {cap:?}");
        }
        assert!(
            steps.iter().any(|s| *s < Duration::from_millis(400)),
            "full jitter reaches low"
        );
        assert!(steps.windows(2).any(|w| w[0] != w[1]), "jitter varies");
    }

    #[test]
    fn retry_after_is_a_floor_and_a_too_long_one_stops() {
        let policy = RetryPolicy::default();
        let ms = Duration::from_millis;
        assert_eq!(policy.delay(ms(100), Some(ms(2000))), Some(ms(2000)));
        assert_eq!(policy.delay(ms(3000), Some(ms(2000))), Some(ms(3000)));
        assert_eq!(policy.delay(ms(100), None), Some(ms(100)));
        assert_eq!(policy.delay(ms(100), Some(Duration::from_secs(3600))), None);
    }
}
