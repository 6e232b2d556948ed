//! The pacer's decisions under tokio's paused clock: no test here waits for
//! real time, and every time compared is the paused clock's.

use std::sync::Arc;

use super::*;

/// A reading of a window of `limit` with `remaining` left that resets
/// `seconds` from now.
fn rate(limit: u32, remaining: u32, seconds: i64) -> RateLimit {
    RateLimit {
        limit,
        remaining,
        reset: Utc::now() + chrono::Duration::seconds(seconds),
    }
}

/// Whether `elapsed` is `expected`, give or take the real clock's drift
/// between a reading and its observation (the reset is read from `Utc::now`).
fn about(elapsed: Duration, expected: Duration) -> bool {
    let slack = Duration::from_millis(250);
    elapsed + slack >= expected && elapsed <= expected + slack
}

/// A pacer that has learned the ceiling from its probe's answer `rate`.
async fn probed(rate: &RateLimit) -> Arc<LocalPacer> {
    let pacer = Arc::new(LocalPacer::new());
    pacer.acquire().await;
    pacer.observe(rate).await;
    pacer
}

/// Starts an acquire of its own, and reports whether it is still waiting
/// once everything else has run.
async fn blocked(pacer: &Arc<LocalPacer>) -> tokio::task::JoinHandle<Instant> {
    let handle = tokio::spawn({
        let pacer = pacer.clone();
        async move {
            pacer.acquire().await;
            Instant::now()
        }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    handle
}

#[tokio::test(start_paused = true)]
async fn the_remaining_requests_go_at_once_and_the_next_waits_for_the_reset() {
    let start = Instant::now();
    let pacer = probed(&rate(40, 3, 30)).await;
    for _ in 0..3 {
        pacer.acquire().await;
    }
    assert_eq!(Instant::now(), start, "3 left: all 3 go at once");
    let next = blocked(&pacer).await;
    assert!(!next.is_finished(), "the fourth waits");
    let went = next.await.unwrap() - start;
    assert!(
        about(went, Duration::from_secs(30) + RESET_PRECISION),
        "the fourth went after {went:?}, not a second after the reset"
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_window_has_the_whole_ceiling_until_its_first_answer_says_otherwise() {
    let start = Instant::now();
    let pacer = probed(&rate(5, 0, 10)).await;
    pacer.acquire().await;
    let reset = Instant::now() - start;
    assert!(about(reset, Duration::from_secs(11)), "{reset:?}");
    // The one above began the new window: 4 more go at once.
    for _ in 0..4 {
        pacer.acquire().await;
    }
    assert_eq!(Instant::now() - start, reset);
    let sixth = blocked(&pacer).await;
    assert!(!sixth.is_finished());
    // A late answer of the window before changes nothing...
    pacer
        .observe(&RateLimit {
            limit: 5,
            remaining: 5,
            reset: Utc::now() - chrono::Duration::seconds(1),
        })
        .await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!sixth.is_finished());
    // ...the new window's first answer tells when it resets.
    pacer.observe(&rate(5, 3, 20)).await;
    let went = sixth.await.unwrap() - start;
    assert!(
        about(went, reset + Duration::from_secs(20) + RESET_PRECISION),
        "{went:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_window_with_nothing_reported_left_ends_at_a_full_window() {
    let start = Instant::now();
    let pacer = probed(&rate(2, 0, 0)).await;
    pacer.acquire().await; // a second after the reset: the new window's first
    let began = Instant::now() - start;
    pacer.acquire().await;
    // No answer tells the new window's reset: it ends a whole window later.
    let third = blocked(&pacer).await.await.unwrap() - start;
    assert!(
        about(third, began + WINDOW + RESET_PRECISION),
        "{third:?} after a window began at {began:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn answers_lower_what_is_left_never_raise_it() {
    let start = Instant::now();
    let reset = Utc::now() + chrono::Duration::seconds(30);
    let read = |remaining| RateLimit {
        limit: 100,
        remaining,
        reset,
    };
    let pacer = probed(&read(10)).await;
    pacer.acquire().await;
    // Another client of the key spent most of the window.
    pacer.observe(&read(2)).await;
    pacer.acquire().await;
    pacer.acquire().await;
    // An older answer says more is left: not believed.
    pacer.observe(&read(8)).await;
    let next = blocked(&pacer).await;
    assert!(!next.is_finished(), "2 were left, 3 went");
    assert_eq!(Instant::now(), start);
    let went = next.await.unwrap() - start;
    assert!(about(went, Duration::from_secs(31)), "{went:?}");
}

#[tokio::test(start_paused = true)]
async fn a_reset_already_past_is_no_window_and_requests_are_spaced() {
    let pacer = probed(&rate(60, 59, -30)).await;
    let start = Instant::now();
    let mut starts = Vec::new();
    for _ in 0..5 {
        pacer.acquire().await;
        starts.push(Instant::now() - start);
    }
    let interval = pace_interval(60);
    // The probe took the first slot: the next starts an interval after it.
    // Tokio's timer counts whole milliseconds.
    let close = |a: Duration, b: Duration| {
        a + Duration::from_millis(1) >= b && a <= b + Duration::from_millis(1)
    };
    assert!(close(starts[0], interval), "{:?}", starts[0]);
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(close(gap, interval), "{gap:?} apart, not {interval:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn others_wait_for_the_first_answer() {
    let pacer = Arc::new(LocalPacer::new());
    pacer.acquire().await;
    let waiting = blocked(&pacer).await;
    assert!(!waiting.is_finished(), "no ceiling known yet");
    pacer.observe(&rate(600, 599, 30)).await;
    waiting.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_refusal_pauses_every_request() {
    let pacer = probed(&rate(6000, 10, 30)).await;
    pacer.refused(Duration::from_secs(7)).await;
    let start = Instant::now();
    pacer.acquire().await;
    assert_eq!(Instant::now() - start, Duration::from_secs(7));
}

#[test]
fn the_time_to_a_reset_is_clamped_to_a_window() {
    let now = Utc::now();
    let at = |ms: i64| RateLimit {
        limit: 10,
        remaining: 1,
        reset: now + chrono::Duration::milliseconds(ms),
    };
    assert_eq!(
        time_to_reset(&at(30_000), now),
        Some(Duration::from_secs(30))
    );
    assert_eq!(time_to_reset(&at(600_000), now), Some(WINDOW));
    assert_eq!(time_to_reset(&at(-500), now), Some(Duration::ZERO));
    assert_eq!(time_to_reset(&at(-1_250), now), Some(Duration::ZERO));
    assert_eq!(time_to_reset(&at(-1_251), now), None);
}
