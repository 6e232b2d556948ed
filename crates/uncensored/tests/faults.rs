//! The SDK under fire: the emulator injects 5xx and 429 answers and cuts
//! image downloads short. Every one of 200 sync and 200 async generations
//! (waited for by polling) must still end with a verified image, and the
//! emulator must have charged exactly 400 jobs: no retry ever paid twice.
//! The same guarantee through callbacks, with duplicated webhooks, is
//! `uncensored-deliver`'s `callbacks_under_faults` test.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::{StreamExt as _, stream};
use uncensored::{Client, GenerateRequest, Generation, RetryPolicy, WaitOptions};
use uncensored_emulator::{Config, Emulator};

const JOBS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_hundred_generations_under_faults_are_each_paid_once() {
    let mut config = Config {
        seed: 7,
        time_scale: 0.001,
        rate_limit_rpm: 1_000_000,
        ..Config::default()
    };
    // 20% 5xx, then 12.5% of the rest 429: 30% of API answers are faults.
    config.faults.fail_rate = 0.2;
    config.faults.throttle_rate = 0.125;
    config.faults.truncate_rate = 0.3;
    let emulator = Emulator::start(config).await.unwrap();
    let client = Client::builder()
        .base_url(emulator.base_url())
        .api_key("emulator-key")
        .retry_policy(RetryPolicy {
            max_attempts: 12,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        })
        .wait_options(WaitOptions {
            first_poll: Duration::from_millis(5),
            min_interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(50),
            ..WaitOptions::default()
        })
        .build()
        .unwrap();

    // 200 sync generations, each downloaded and checked.
    let sync_ids: Vec<String> = stream::iter(0..JOBS)
        .map(|i| {
            let client = client.clone();
            async move {
                let request = GenerateRequest::new(format!("sync {i}")).size(256, 256);
                let Generation::Completed(image) = client.generate(&request).await.unwrap() else {
                    panic!("sync generation {i} did not complete")
                };
                let file = client.download(&image.url).await.unwrap();
                assert_eq!(file.format.extension(), "jpg");
                image.job_id
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;

    // 200 async generations, each waited for by polling (their callbacks go
    // to a loopback port where nothing listens).
    let queued: Vec<String> = stream::iter(0..JOBS)
        .map(|i| {
            let client = client.clone();
            async move {
                let request = GenerateRequest::new(format!("async {i}"))
                    .size(256, 256)
                    .callback_url("http://127.0.0.1:9/none");
                let Generation::Queued(job) = client.generate(&request).await.unwrap() else {
                    panic!("async generation {i} was not queued")
                };
                let image = client.wait(&job.job_id).await.unwrap();
                assert_eq!(image.job_id, job.job_id);
                client.download(&image.url).await.unwrap();
                job.job_id
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;

    let all: HashSet<&str> = sync_ids.iter().chain(&queued).map(String::as_str).collect();
    assert_eq!(all.len(), 2 * JOBS);
    let stats = emulator.stats();
    assert_eq!(
        stats.charges.total,
        2 * JOBS as u64,
        "exactly one charge per generation"
    );
    assert_eq!(stats.charges.by_idempotency_key.len(), 2 * JOBS);
    assert!(stats.charges.by_idempotency_key.values().all(|n| *n == 1));
    let faults = &stats.faults;
    assert!(
        faults.server_errors > 0 && faults.throttled > 0,
        "{faults:?}"
    );
    assert!(faults.truncated > 0, "{faults:?}");
}
