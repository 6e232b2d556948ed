//! The pacer against the emulator's real windows: a client that paces its
//! requests spends each window the emulator reports, waits for its reset and
//! is never refused, however many requests it has in flight. The emulator's
//! window is shortened to 2 seconds (its `rate_window_secs`) so that the
//! test crosses several resets quickly; nothing here compares a time.

use futures_util::{StreamExt as _, stream};
use uncensored::{Client, GenerateRequest, RetryPolicy};
use uncensored_emulator::{Config, Emulator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_client_spends_each_window_without_a_refusal() {
    const LINES: usize = 24;
    const PER_WINDOW: u32 = 5;
    let emulator = Emulator::start(Config {
        seed: 3,
        time_scale: 0.002,
        rate_limit_rpm: PER_WINDOW,
        rate_window_secs: 2,
        ..Config::default()
    })
    .await
    .unwrap();
    let client = Client::builder()
        .base_url(emulator.base_url())
        .api_key("emulator-key")
        .retry_policy(RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        })
        .pace_requests(true)
        .build()
        .unwrap();
    // Twice as many in flight as a window allows.
    let results: Vec<_> = stream::iter(0..LINES)
        .map(|i| {
            let client = client.clone();
            async move {
                client
                    .generate(&GenerateRequest::new(format!("paced prompt {i}")).size(256, 256))
                    .await
            }
        })
        .buffer_unordered(2 * PER_WINDOW as usize)
        .collect()
        .await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "no request refused, none retried: {failed:?}"
    );
    let stats = emulator.stats();
    let route = &stats.requests["POST /v1/images/generations"];
    assert_eq!(route.get(&429), None, "{:?}", stats.requests);
    assert_eq!(
        route.get(&200),
        Some(&(LINES as u64)),
        "{:?}",
        stats.requests
    );
    assert_eq!(stats.charges.total, LINES as u64);
}
