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

/// The longest wait any header or body of the network can ask for: a day.
/// A longer one (or an absurd one: `1e20`, a date in the year 9999) is read
/// as this, so that arithmetic on it can never overflow, and the retry
/// policy's [`RetryPolicy::max_retry_after`] then declines to wait that long.
pub const MAX_WAIT: Duration = Duration::from_secs(86_400);

/// A number of seconds from the network (a `Retry-After` value, a JSON
/// `retry_after`) as a wait: `None` when negative or not a number, clamped to
/// [`MAX_WAIT`]. Never panics, whatever the number.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(uncensored::wait_from_seconds(1.5), Some(Duration::from_millis(1500)));
/// assert_eq!(uncensored::wait_from_seconds(1e20), Some(uncensored::MAX_WAIT));
/// assert_eq!(uncensored::wait_from_seconds(f64::NAN), None);
/// ```
pub fn wait_from_seconds(seconds: f64) -> Option<Duration> {
    if seconds.is_nan() || seconds < 0.0 {
        return None;
    }
    Some(
        Duration::try_from_secs_f64(seconds)
            .unwrap_or(MAX_WAIT)
            .min(MAX_WAIT),
    )
}

/// A `Retry-After` header as a wait: delta-seconds (`120`, leniently also
/// `1.5`) or an HTTP date in any of its three forms (IMF-fixdate
/// `Wed, 21 Oct 2026 07:28:00 GMT`, RFC 850, asctime), a past date being no
/// wait. Clamped to [`MAX_WAIT`]; a value that is none of these is `None`.
/// The one parser of this header for the client and every notifier.
///
/// ```
/// let mut headers = reqwest::header::HeaderMap::new();
/// headers.insert("retry-after", "2".parse().unwrap());
/// assert_eq!(uncensored::retry_after(&headers), Some(std::time::Duration::from_secs(2)));
/// ```
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(reqwest::header::RETRY_AFTER)?.as_bytes())
}

/// [`retry_after`] on the header's raw bytes (any bytes: never panics).
pub fn parse_retry_after(value: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if text.is_empty() || text.len() > 64 {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        // Delta-seconds of any length: 99999999999999999999 is a (long) wait.
        return Some(text.parse::<u64>().map_or(MAX_WAIT, |seconds| {
            Duration::from_secs(seconds).min(MAX_WAIT)
        }));
    }
    if text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return wait_from_seconds(text.parse::<f64>().ok()?);
    }
    // An HTTP date; leniently also RFC 2822 (`Tue, 1 Dec 2026 07:41:00 +0000`).
    let when = httpdate::parse_http_date(text).ok().or_else(|| {
        let date = chrono::DateTime::parse_from_rfc2822(text).ok()?;
        let seconds = u64::try_from(date.timestamp()).ok()?;
        std::time::UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
    })?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
            .min(MAX_WAIT),
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
    fn retry_after_reads_every_form_and_clamps() {
        let ms = Duration::from_millis;
        assert_eq!(parse_retry_after(b"120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(b" 1.5 "), Some(ms(1500)));
        assert_eq!(parse_retry_after(b"1e20"), Some(MAX_WAIT));
        assert_eq!(parse_retry_after(b"99999999999999999999"), Some(MAX_WAIT));
        assert_eq!(parse_retry_after(b"-1"), None);
        assert_eq!(parse_retry_after(b"inf"), None);
        assert_eq!(parse_retry_after(b"NaN"), None);
        assert_eq!(parse_retry_after(b""), None);
        assert_eq!(parse_retry_after(b"\xff\xfe"), None);
        // The three HTTP-date forms, all in the past: no wait.
        for past in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(past.as_bytes()),
                Some(Duration::ZERO),
                "{past}"
            );
        }
        assert_eq!(
            parse_retry_after(b"Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(MAX_WAIT)
        );
        assert_eq!(
            parse_retry_after(b"Tue, 1 Dec 1998 07:41:00 +0000"),
            Some(Duration::ZERO)
        );
        let soon = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
        let wait = parse_retry_after(soon.as_bytes()).expect("a date");
        assert!(
            wait <= Duration::from_secs(30) && wait >= Duration::from_secs(28),
            "{wait:?}"
        );
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
