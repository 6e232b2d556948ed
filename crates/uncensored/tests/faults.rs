//! The SDK under fire: the emulator injects 5xx and 429 answers, cuts image
//! downloads short and delivers webhooks twice. Every one of 200 sync and 200
//! async generations must still end with a verified image, and the emulator
//! must have charged exactly 400 jobs: no retry ever paid twice.
#![cfg(feature = "webhook")]

use std::collections::HashSet;
use std::time::Duration;

use futures_util::{StreamExt as _, stream};
use uncensored::webhook::{CallbackEvent, WebhookReceiver};
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
    config.faults.duplicate_webhook_rate = 0.3;
    config.webhooks.initial_backoff_ms = 10;
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

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/", listener.local_addr().unwrap());
    let (receiver, mut events) = WebhookReceiver::new(client.clone(), &hook_url).unwrap();
    let router = receiver.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

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

    // 200 async generations through the webhook receiver.
    let queued: Vec<String> = stream::iter(0..JOBS)
        .map(|i| {
            let receiver = receiver.clone();
            async move {
                let request = GenerateRequest::new(format!("async {i}")).size(256, 256);
                receiver.submit(&request).await.unwrap().job_id
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut confirmed = Vec::new();
    while confirmed.len() < JOBS {
        let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .expect("every job is reported within a minute")
            .expect("the receiver is alive");
        match event {
            CallbackEvent::Completed(image) => confirmed.push(image),
            CallbackEvent::Failed { job_id, error } => panic!("job {job_id} failed: {error}"),
            other => panic!("{other:?}"),
        }
    }
    let async_ids: HashSet<&str> = confirmed
        .iter()
        .map(|image| image.job_id.as_str())
        .collect();
    assert_eq!(
        async_ids,
        queued.iter().map(String::as_str).collect(),
        "each queued job is reported exactly once"
    );
    for image in &confirmed {
        client.download(&image.url).await.unwrap();
    }

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
    assert!(
        faults.truncated > 0 && faults.duplicate_webhooks > 0,
        "{faults:?}"
    );
}
