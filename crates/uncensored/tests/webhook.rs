//! The webhook receiver refuses what it cannot trust, without side effects,
//! and reports each job once, confirmed by a read of the job.
#![cfg(feature = "webhook")]

use std::collections::HashMap;
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::json;
use uncensored::webhook::{CallbackError, CallbackEvent, Registration, WebhookReceiver};
use uncensored::{Client, GenerateRequest, Generation, WaitOptions};
use uncensored_emulator::{Config, Emulator, EmulatorHandle};

async fn setup() -> (
    EmulatorHandle,
    Client,
    WebhookReceiver,
    tokio::sync::mpsc::UnboundedReceiver<CallbackEvent>,
) {
    let emulator = Emulator::start(Config {
        time_scale: 0.0,
        ..Config::default()
    })
    .await
    .unwrap();
    let client = Client::builder()
        .base_url(emulator.base_url())
        .api_key("emulator-key")
        .wait_options(WaitOptions {
            first_poll: Duration::ZERO,
            min_interval: Duration::from_millis(10),
            ..WaitOptions::default()
        })
        .build()
        .unwrap();
    let (receiver, events) =
        WebhookReceiver::new(client.clone(), "https://hooks.example.com/uncensored").unwrap();
    (emulator, client, receiver, events)
}

/// A real async job on the emulator, tied to a fresh registration (its own
/// callback goes to a loopback port where nothing listens).
async fn job(client: &Client, receiver: &WebhookReceiver) -> (Registration, String) {
    let registration = receiver.register();
    let request = GenerateRequest::new("hooked")
        .size(256, 256)
        .callback_url("http://127.0.0.1:9/none");
    let Generation::Queued(job) = client.generate(&request).await.unwrap() else {
        panic!("async")
    };
    receiver.expect(&registration, &job.job_id);
    (registration, job.job_id)
}

fn query(registration: &Registration) -> HashMap<String, String> {
    url::Url::parse(&registration.url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn payload(job_id: &str) -> Vec<u8> {
    json!({"request_id": job_id, "status": "success", "result": {"image_url": "https://evil.example/x.jpg"}})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn callback_urls_are_https_and_carry_an_unguessable_token() {
    let (_emulator, _client, receiver, _events) = setup().await;
    let (a, b) = (receiver.register(), receiver.register());
    assert!(
        a.url
            .starts_with("https://hooks.example.com/uncensored?id=")
    );
    let token = |r: &Registration| query(r)["token"].clone();
    assert_eq!(token(&a).len(), 64, "256 bits of token");
    assert_ne!(token(&a), token(&b));
    assert_ne!(a.id, b.id);
}

#[tokio::test]
async fn bad_tokens_unknown_registrations_and_other_jobs_are_refused_without_effect() {
    let (_emulator, client, receiver, mut events) = setup().await;
    let (registration, job_id) = job(&client, &receiver).await;
    let headers = HeaderMap::new();

    let mut forged = query(&registration);
    forged.insert("token".into(), "00".repeat(32));
    assert_eq!(
        receiver.handle(&forged, &headers, &payload(&job_id)),
        Err(CallbackError::BadToken)
    );
    forged.insert("token".into(), "short".into());
    assert_eq!(
        receiver.handle(&forged, &headers, &payload(&job_id)),
        Err(CallbackError::BadToken)
    );

    let mut unknown = query(&registration);
    unknown.insert("id".into(), "not-registered".into());
    assert_eq!(
        receiver.handle(&unknown, &headers, &payload(&job_id)),
        Err(CallbackError::UnknownRegistration)
    );

    let other = receiver.handle(&query(&registration), &headers, &payload("another-job"));
    assert_eq!(
        other,
        Err(CallbackError::WrongJob {
            got: "another-job".into()
        })
    );
    assert!(matches!(
        receiver.handle(&query(&registration), &headers, b"{}"),
        Err(CallbackError::Malformed(_))
    ));

    // None of that reported anything; the genuine callback still works, once.
    assert!(events.try_recv().is_err());
    receiver
        .handle(&query(&registration), &headers, &payload(&job_id))
        .unwrap();
    receiver
        .handle(&query(&registration), &headers, &payload(&job_id))
        .unwrap();
    let Some(CallbackEvent::Completed(image)) = events.recv().await else {
        panic!("a completed event")
    };
    assert_eq!(image.job_id, job_id);
    assert!(
        image.url.starts_with("http://127.0.0.1:"),
        "the URL comes from the API, not the payload: {}",
        image.url
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        events.try_recv().is_err(),
        "a duplicate is acknowledged but not reported again"
    );
}

#[tokio::test]
async fn a_callback_before_the_job_id_is_known_is_kept_until_it_is() {
    let (_emulator, client, receiver, mut events) = setup().await;
    let registration = receiver.register();
    let request = GenerateRequest::new("early")
        .size(256, 256)
        .callback_url("http://127.0.0.1:9/none");
    let Generation::Queued(job) = client.generate(&request).await.unwrap() else {
        panic!("async")
    };
    receiver
        .handle(
            &query(&registration),
            &HeaderMap::new(),
            &payload(&job.job_id),
        )
        .unwrap();
    assert!(events.try_recv().is_err());
    receiver.expect(&registration, &job.job_id);
    let Some(CallbackEvent::Completed(image)) = events.recv().await else {
        panic!("a completed event")
    };
    assert_eq!(image.job_id, job.job_id);
}

#[tokio::test]
async fn the_router_answers_with_statuses_that_say_why() {
    let (_emulator, client, receiver, _events) = setup().await;
    let (registration, job_id) = job(&client, &receiver).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let router = receiver.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::new();
    let post = |query: String, body: Vec<u8>| {
        let request = http
            .post(format!("{base}?{query}"))
            .header("content-type", "application/json")
            .body(body);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let id = &registration.id;
    let token = &query(&registration)["token"];
    assert_eq!(
        post(
            format!("id={id}&token={}", "0".repeat(64)),
            payload(&job_id)
        )
        .await,
        401
    );
    assert_eq!(
        post(format!("id=nope&token={token}"), payload(&job_id)).await,
        404
    );
    assert_eq!(
        post(format!("id={id}&token={token}"), payload("other")).await,
        400
    );
    assert_eq!(
        post(format!("id={id}&token={token}"), payload(&job_id)).await,
        200
    );
}
