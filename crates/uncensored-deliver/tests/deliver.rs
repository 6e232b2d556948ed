//! The delivery pipeline end to end against the emulator, local storage and
//! capture servers for the notifiers, including its failure modes.
#![cfg(all(
    feature = "sqlite",
    feature = "fs",
    feature = "slack",
    feature = "webhook-notify"
))]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use uncensored::{Client, FailureReason, GenerateRequest, RetryPolicy, WaitOptions};
use uncensored_deliver::journal::{Entries as _, SqliteJournal, Stage};
use uncensored_deliver::notify::{SignedWebhookNotifier, SlackNotifier};
use uncensored_deliver::storage::ObjectStorage;
use uncensored_deliver::{Deliverer, DeliveryError, StepPolicies};
use uncensored_emulator::{Config, Emulator, EmulatorHandle, KeyConfig};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn quick(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        ..RetryPolicy::default()
    }
}

async fn emulator() -> (EmulatorHandle, Client) {
    let mut config = Config {
        time_scale: 0.0005,
        ..Config::default()
    };
    config.keys.push(KeyConfig {
        key: "poor-key".into(),
        name: "poor".into(),
        scopes: vec!["image:*".into()],
        balance: 0,
        rate_limit_rpm: None,
    });
    let emulator = Emulator::start(config).await.unwrap();
    let client = client_for(&emulator, "emulator-key");
    (emulator, client)
}

fn client_for(emulator: &EmulatorHandle, key: &str) -> Client {
    Client::builder()
        .base_url(emulator.base_url())
        .api_key(key)
        .retry_policy(quick(6))
        .wait_options(WaitOptions {
            first_poll: Duration::from_millis(5),
            min_interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(30),
            ..WaitOptions::default()
        })
        .build()
        .unwrap()
}

fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "uncensored-deliver-{}",
        uuid::Uuid::new_v4().simple()
    ))
}

/// A capture server answering `statuses` in turn (then 200), counting requests.
async fn capture(statuses: Vec<u16>) -> MockServer {
    let server = MockServer::start().await;
    let queue = Arc::new(Mutex::new(statuses.into_iter().rev().collect::<Vec<_>>()));
    Mock::given(method("POST"))
        .respond_with(move |_: &Request| {
            let status = queue.lock().unwrap().pop().unwrap_or(200);
            let template = ResponseTemplate::new(status).set_body_string(if status == 200 {
                "ok"
            } else {
                "rate_limited"
            });
            if status == 429 {
                template.insert_header("retry-after", "0")
            } else {
                template
            }
        })
        .mount(&server)
        .await;
    server
}

fn slack(server: &MockServer) -> Arc<SlackNotifier> {
    Arc::new(
        SlackNotifier::new(format!("{}/services/T/B/secret", server.uri()))
            .with_min_interval(Duration::from_millis(1)),
    )
}

/// Single deliveries of `items`, `concurrency` at a time; one result per item, in order.
async fn deliver_all(
    deliverer: &Deliverer,
    items: Vec<(String, GenerateRequest)>,
    concurrency: usize,
) -> Vec<Result<uncensored_deliver::journal::Entry, uncensored_deliver::DeliveryError>> {
    use futures_util::StreamExt as _;
    futures_util::stream::iter(items)
        .map(|(id, request)| async move { deliverer.deliver(&id, &request).await })
        .buffered(concurrency)
        .collect()
        .await
}

fn policies() -> StepPolicies {
    StepPolicies {
        store: quick(6),
        notify: quick(3),
    }
}

#[tokio::test]
async fn sync_and_async_jobs_are_stored_and_announced_once() {
    let (emulator, client) = emulator().await;
    let (slack_server, hook_server) = (capture(vec![]).await, capture(vec![]).await);
    let dir = temp_dir();
    let deliverer = Deliverer::new(
        client,
        Arc::new(ObjectStorage::local(&dir).unwrap()),
        Arc::new(SqliteJournal::in_memory().unwrap()),
    )
    .with_notifier(slack(&slack_server))
    .with_notifier(Arc::new(
        SignedWebhookNotifier::new(format!("{}/hook", hook_server.uri()), SECRET).unwrap(),
    ))
    .with_policies(policies());
    let items: Vec<(String, GenerateRequest)> = (0..6)
        .map(|i| {
            let request = GenerateRequest::new(format!("prompt {i}")).size(256, 256);
            let request = if i % 2 == 0 {
                request
            } else {
                request.callback_url("http://127.0.0.1:9/unused")
            };
            (format!("line-{i}"), request)
        })
        .collect();
    let results = deliver_all(&deliverer, items.clone(), 3).await;
    for result in &results {
        let entry = result.as_ref().unwrap();
        assert!(entry.done && entry.notified.len() == 2, "{entry:?}");
        let location = entry.location().unwrap();
        assert!(std::path::Path::new(location).exists(), "{location}");
        assert!(std::path::Path::new(&format!("{location}.json")).exists());
    }
    assert_eq!(slack_server.received_requests().await.unwrap().len(), 6);
    assert_eq!(hook_server.received_requests().await.unwrap().len(), 6);
    assert_eq!(deliverer.journal().counts().await.unwrap(), (6, 6));

    // Delivering the same ids again pays nothing, stores and announces nothing.
    let again = deliver_all(&deliverer, items, 3).await;
    assert!(again.iter().all(|r| r.as_ref().unwrap().done));
    assert_eq!(emulator.stats().charges.total, 6);
    assert_eq!(slack_server.received_requests().await.unwrap().len(), 6);
    std::fs::remove_dir_all(dir).ok();
}

/// A job's own failure (moderation) is final and announced; the account's
/// (insufficient funds) is not the job's: it stays pending, unannounced, to
/// continue once the account is topped up.
#[tokio::test]
async fn failures_are_announced_too() {
    let (emulator, client) = emulator().await;
    let slack_server = capture(vec![]).await;
    let journal = Arc::new(SqliteJournal::in_memory().unwrap());
    let storage = Arc::new(ObjectStorage::local(temp_dir()).unwrap());
    let deliverer = Deliverer::new(client, storage.clone(), journal.clone())
        .with_notifier(slack(&slack_server))
        .with_policies(policies());
    let moderated = deliverer
        .deliver(
            "bad",
            &GenerateRequest::new("a forbidden-term").size(256, 256),
        )
        .await
        .unwrap();
    assert!(
        matches!(&moderated.stage, Stage::Failed { reason, .. } if *reason == FailureReason::Moderation),
        "{moderated:?}"
    );
    let poor = Deliverer::new(client_for(&emulator, "poor-key"), storage, journal.clone())
        .with_notifier(slack(&slack_server))
        .with_policies(policies());
    let broke = poor
        .deliver("poor", &GenerateRequest::new("fine").size(256, 256))
        .await
        .unwrap_err();
    assert_eq!(
        broke.batch_stop(),
        Some(FailureReason::InsufficientFunds.into()),
        "{broke}"
    );
    let pending = journal.get("poor").await.unwrap().unwrap();
    assert!(
        pending.stage == Stage::Pending && !pending.done,
        "{pending:?}"
    );
    let bodies: Vec<String> = slack_server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(
        bodies[0].contains("Generation failed") && bodies[0].contains("moderation"),
        "{}",
        bodies[0]
    );
    assert_eq!(emulator.stats().charges.total, 0);
}

#[tokio::test]
async fn a_failing_notifier_keeps_the_image_and_is_retried_on_resume() {
    let (emulator, client) = emulator().await;
    let down = capture(vec![500; 100]).await;
    let dir = temp_dir();
    let journal = Arc::new(SqliteJournal::in_memory().unwrap());
    let storage = Arc::new(ObjectStorage::local(&dir).unwrap());
    let first = Deliverer::new(client.clone(), storage.clone(), journal.clone())
        .with_notifier(slack(&down))
        .with_policies(policies());
    let error = first
        .deliver("one", &GenerateRequest::new("keep me").size(256, 256))
        .await
        .unwrap_err();
    assert!(matches!(error, DeliveryError::Notify(_)), "{error}");
    let entry = journal.get("one").await.unwrap().unwrap();
    assert!(
        !entry.done && matches!(entry.stage, Stage::Stored { .. }),
        "{entry:?}"
    );
    assert!(
        std::path::Path::new(entry.location().unwrap()).exists(),
        "the image is stored although Slack is down"
    );

    let up = capture(vec![]).await;
    let later = Deliverer::new(client, storage, journal.clone())
        .with_notifier(slack(&up))
        .with_policies(policies());
    let resumed = later.resume().await.unwrap();
    assert_eq!(resumed.len(), 1);
    assert!(resumed[0].as_ref().unwrap().done);
    assert_eq!(up.received_requests().await.unwrap().len(), 1);
    assert_eq!(
        emulator.stats().charges.total,
        1,
        "resuming never pays again"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_pending_entry_is_resubmitted_with_its_key_and_replayed() {
    let (emulator, client) = emulator().await;
    let journal = Arc::new(SqliteJournal::in_memory().unwrap());
    let dir = temp_dir();
    let deliverer = Deliverer::new(
        client.clone(),
        Arc::new(ObjectStorage::local(&dir).unwrap()),
        journal.clone(),
    )
    .with_policies(policies());
    // As if the process died right after the POST left: the API has the job,
    // the journal only says "pending".
    deliverer
        .deliver("crash", &GenerateRequest::new("p").size(256, 256))
        .await
        .unwrap();
    let mut entry = journal.get("crash").await.unwrap().unwrap();
    entry.stage = Stage::Pending;
    entry.done = false;
    journal.put(&entry).await.unwrap();
    let resumed = deliverer.resume().await.unwrap();
    assert!(resumed[0].as_ref().unwrap().done);
    let stats = emulator.stats();
    assert_eq!((stats.charges.total, stats.idempotent_replays), (1, 1));
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn an_existing_job_is_taken_waited_for_stored_and_announced() {
    let (emulator, client) = emulator().await;
    let slack_server = capture(vec![]).await;
    let request = GenerateRequest::new("made elsewhere")
        .size(256, 256)
        .callback_url("http://127.0.0.1:9/none");
    let uncensored::Generation::Queued(job) = client.generate(&request).await.unwrap() else {
        panic!("async")
    };
    let deliverer = Deliverer::new(
        client,
        Arc::new(ObjectStorage::local(temp_dir()).unwrap()),
        Arc::new(SqliteJournal::in_memory().unwrap()),
    )
    .with_notifier(slack(&slack_server))
    .with_policies(policies());
    let entry = deliverer
        .deliver_job("taken", &job.job_id, &request)
        .await
        .unwrap();
    assert!(
        entry.done && matches!(&entry.stage, Stage::Stored(image) if image.job_id == job.job_id),
        "{entry:?}"
    );
    assert_eq!(slack_server.received_requests().await.unwrap().len(), 1);
    assert_eq!(
        emulator.stats().charges.total,
        1,
        "taking a job never submits it again"
    );
}

#[tokio::test]
async fn a_slack_429_storm_still_sends_every_notification_once() {
    let (_emulator, client) = emulator().await;
    let stormy = capture(vec![429; 12]).await;
    let deliverer = Deliverer::new(
        client,
        Arc::new(ObjectStorage::local(temp_dir()).unwrap()),
        Arc::new(SqliteJournal::in_memory().unwrap()),
    )
    .with_notifier(slack(&stormy))
    .with_policies(StepPolicies {
        store: quick(6),
        notify: quick(20),
    });
    let items = (0..5)
        .map(|i| {
            (
                format!("storm-{i}"),
                GenerateRequest::new(format!("storm {i}")).size(256, 256),
            )
        })
        .collect();
    let results = deliver_all(&deliverer, items, 5).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().map(|e| e.done).unwrap_or(false)),
        "{results:?}"
    );
    let requests = stormy.received_requests().await.unwrap();
    let delivered = requests.len() - 12;
    assert_eq!(
        delivered, 5,
        "every notification sent exactly once after the storm"
    );
}

#[tokio::test]
async fn an_endpoint_that_always_fails_gets_exactly_the_policys_attempts() {
    let (_emulator, client) = emulator().await;
    let broken = capture(vec![500; 1000]).await;
    let deliverer = Deliverer::new(
        client,
        Arc::new(ObjectStorage::local(temp_dir()).unwrap()),
        Arc::new(SqliteJournal::in_memory().unwrap()),
    )
    .with_notifier(slack(&broken))
    .with_policies(StepPolicies {
        store: quick(6),
        notify: quick(4),
    });
    let error = deliverer
        .deliver(
            "always-500",
            &GenerateRequest::new("a lighthouse").size(256, 256),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, DeliveryError::Notify(_)), "{error}");
    assert_eq!(
        error.reason(),
        uncensored_deliver::DeliveryReason::Notification
    );
    assert_eq!(
        broken.received_requests().await.unwrap().len(),
        4,
        "one retry owner: the policy's 4 attempts, not attempts × attempts"
    );
}

#[tokio::test]
async fn two_slack_webhooks_are_both_told_once_across_restarts() {
    let (_emulator, client) = emulator().await;
    let (first, second) = (capture(vec![]).await, capture(vec![500; 3]).await);
    let dir = temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let journal_path = dir.join("journal.sqlite");
    let items: Vec<(String, GenerateRequest)> = (0..3)
        .map(|i| {
            (
                format!("two-{i}"),
                GenerateRequest::new(format!("two channels {i}")).size(256, 256),
            )
        })
        .collect();
    let run = |policy: RetryPolicy| {
        Deliverer::new(
            client.clone(),
            Arc::new(ObjectStorage::local(dir.join("images")).unwrap()),
            Arc::new(SqliteJournal::open(&journal_path).unwrap()),
        )
        .with_notifier(slack(&first))
        .with_notifier(slack(&second))
        .with_policies(StepPolicies {
            store: quick(6),
            notify: policy,
        })
    };
    // The second channel fails its first three POSTs, with one attempt each:
    // the first run ends with the first channel told and the second not.
    let outcomes = deliver_all(&run(quick(1)), items.clone(), 1).await;
    assert_eq!(outcomes.iter().filter(|o| o.is_err()).count(), 3);
    // A restart on the same journal tells only whom it has not told.
    let rerun = deliver_all(&run(quick(3)), items.clone(), 3).await;
    assert!(
        rerun.iter().all(|r| r.as_ref().is_ok_and(|e| e.done)),
        "{rerun:?}"
    );
    let again = deliver_all(&run(quick(3)), items, 3).await;
    assert!(again.iter().all(|r| r.is_ok()));
    assert_eq!(
        first.received_requests().await.unwrap().len(),
        3,
        "each job once"
    );
    assert_eq!(
        second.received_requests().await.unwrap().len(),
        3 + 3,
        "three refusals, then each job once"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[cfg(feature = "s3")]
#[tokio::test]
async fn s3_unreachable_for_a_while_mid_batch_then_every_job_completes() {
    let Some(moto) = uncensored_test_servers::moto() else {
        return;
    };
    moto.create_bucket("outage");
    let gate = support::Gate::start(moto.endpoint.trim_start_matches("http://").to_string()).await;
    let storage = uncensored_deliver::storage::StorageUrl::parse("s3://outage/images")
        .unwrap()
        .open_with(uncensored_test_servers::s3_options(&gate.endpoint))
        .unwrap();
    let (emulator, client) = emulator().await;
    let deliverer = Deliverer::new(
        client,
        Arc::new(storage),
        Arc::new(SqliteJournal::in_memory().unwrap()),
    )
    .with_policies(StepPolicies {
        store: RetryPolicy {
            max_attempts: 40,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            ..RetryPolicy::default()
        },
        notify: quick(3),
    });
    let items: Vec<_> = (0..12)
        .map(|i| {
            (
                format!("s3-{i}"),
                GenerateRequest::new(format!("outage {i}")).size(256, 256),
            )
        })
        .collect();
    let (first, rest) = items.split_at(4);
    let before = deliver_all(&deliverer, first.to_vec(), 4).await;
    assert!(before.iter().all(|r| r.is_ok()));
    gate.set_open(false);
    let during = tokio::spawn({
        let (deliverer, rest) = (deliverer.clone(), rest.to_vec());
        async move { deliver_all(&deliverer, rest, 4).await }
    });
    // Let the stores of the second half run into the outage (several refused
    // connections), then end it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while gate.refused() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outage was never felt"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gate.set_open(true);
    let after = during.await.unwrap();
    assert!(
        after
            .iter()
            .all(|r| r.as_ref().map(|e| e.done).unwrap_or(false)),
        "{after:?}"
    );
    assert_eq!(deliverer.journal().counts().await.unwrap(), (12, 12));
    assert_eq!(emulator.stats().charges.total, 12);
}
