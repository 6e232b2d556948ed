//! One retry layer per storage request: an S3 store retries its own requests
//! (object_store's `RetryConfig`, as `StorageUrl` configures it), and the
//! Deliverer's store loop does not send them again on top; a store that does
//! not retry itself is retried by the loop instead.
#![cfg(all(feature = "s3", feature = "sqlite"))]

use std::sync::Arc;
use std::time::Duration;

use object_store::{BackoffConfig, RetryConfig};
use uncensored::{Client, GenerateRequest, RetryPolicy, WaitOptions};
use uncensored_deliver::journal::{SqliteJournal, Stage};
use uncensored_deliver::storage::{ObjectStorage, STORE_ATTEMPTS, Storage, StorageUrl};
use uncensored_deliver::{Deliverer, DeliveryError, DeliveryReason, StepPolicies};
use uncensored_emulator::{Config, Emulator, EmulatorHandle};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The Deliverer's own store loop: many quick attempts, so that retries
/// nested on top of the store's would show at once.
const LOOP_ATTEMPTS: u32 = 10;

async fn emulator() -> (EmulatorHandle, Client) {
    let emulator = Emulator::start(Config {
        time_scale: 0.0005,
        ..Config::default()
    })
    .await
    .unwrap();
    let client = Client::builder()
        .base_url(emulator.base_url())
        .api_key("emulator-key")
        .wait_options(WaitOptions {
            first_poll: Duration::from_millis(5),
            min_interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(30),
            ..WaitOptions::default()
        })
        .build()
        .unwrap();
    (emulator, client)
}

/// An S3 endpoint on loopback where nothing is stored (every GET and HEAD
/// is 404) and every PUT fails with 503.
async fn failing_s3() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(
            ResponseTemplate::new(503).set_body_string("<Error><Code>SlowDown</Code></Error>"),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("HEAD"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    server
}

async fn puts(server: &MockServer) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|request| request.method == wiremock::http::Method::PUT)
        .count()
}

fn deliverer(client: Client, storage: Arc<dyn Storage>) -> Deliverer {
    Deliverer::new(
        client,
        storage,
        Arc::new(SqliteJournal::in_memory().unwrap()),
    )
    .with_policies(StepPolicies {
        store: RetryPolicy {
            max_attempts: LOOP_ATTEMPTS,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..RetryPolicy::default()
        },
        ..StepPolicies::default()
    })
}

async fn fails_with_storage(deliverer: &Deliverer, id: &str) -> DeliveryError {
    let request = GenerateRequest::new("a lighthouse at dusk").size(256, 256);
    let error = deliverer.deliver(id, &request).await.unwrap_err();
    assert!(matches!(error, DeliveryError::Storage(_)), "{error:?}");
    assert_eq!(error.reason(), DeliveryReason::Storage);
    // Resumable: the image waits at the API's URL.
    let entry = deliverer.journal().get(id).await.unwrap().unwrap();
    assert!(matches!(entry.stage, Stage::Generated { .. }), "{entry:?}");
    error
}

#[tokio::test]
async fn a_failing_s3_put_is_sent_the_stores_attempts_not_times_the_deliverers() {
    let server = failing_s3().await;
    let storage = StorageUrl::parse("s3://failing/images")
        .unwrap()
        .open_with(uncensored_test_servers::s3_options(&server.uri()))
        .unwrap();
    let (_emulator, client) = emulator().await;
    let deliverer = deliverer(client, Arc::new(storage));
    let error = fails_with_storage(&deliverer, "s3-503").await;
    let DeliveryError::Storage(storage_error) = &error else {
        unreachable!()
    };
    assert!(
        !storage_error.is_retryable(),
        "already retried by the store: {storage_error}"
    );
    assert_eq!(
        puts(&server).await,
        STORE_ATTEMPTS,
        "the claim's PUT, sent by object_store's retries only"
    );
}

#[tokio::test]
async fn a_store_that_does_not_retry_itself_is_retried_by_the_deliverer() {
    let server = failing_s3().await;
    let store = uncensored_test_servers::s3_builder(&server.uri())
        .with_bucket_name("failing")
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 0,
            retry_timeout: Duration::from_secs(1),
        })
        .build()
        .unwrap();
    // Not marked `retried_by_store`: its errors are the loop's to retry.
    let storage = ObjectStorage::new(Arc::new(store), "s3://failing", "images", true);
    let (_emulator, client) = emulator().await;
    let deliverer = deliverer(client, Arc::new(storage));
    fails_with_storage(&deliverer, "no-store-retries").await;
    assert_eq!(puts(&server).await, LOOP_ATTEMPTS as usize);
}
