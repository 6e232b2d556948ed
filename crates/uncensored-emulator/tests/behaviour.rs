//! The emulator's documented behaviour, driven through the generated client
//! (and raw HTTP where the client would refuse to send bad input).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use uncensored_api::types::{GenerateImageRequest, IdempotencyKey};
use uncensored_api::{Client, Error};
use uncensored_emulator::{Config, Emulator, EmulatorHandle, KeyConfig};

fn key(key: &str, name: &str, scopes: &[&str], balance: u64, rpm: Option<u32>) -> KeyConfig {
    KeyConfig {
        key: key.into(),
        name: name.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        balance,
        rate_limit_rpm: rpm,
    }
}

fn fast() -> Config {
    let mut config = Config {
        time_scale: 0.001,
        ..Config::default()
    };
    config.webhooks.initial_backoff_ms = 10;
    config.webhooks.max_attempts = 4;
    config.webhooks.timeout_secs = 2;
    config
        .keys
        .push(key("poor-key", "poor", &["image:*"], 3, None));
    config
        .keys
        .push(key("files-key", "files", &["files:*"], 100, None));
    config.keys.push(key(
        "dev-only-key",
        "dev-only",
        &["image:gen:model-dev"],
        100,
        None,
    ));
    config
        .keys
        .push(key("slow-key", "slow", &["image:*"], 100, Some(3)));
    config
}

async fn start(config: Config) -> (EmulatorHandle, Client) {
    let emulator = Emulator::start(config).await.unwrap();
    let client = Client::with_api_key(emulator.base_url(), "emulator-key").unwrap();
    (emulator, client)
}

fn request(prompt: &str) -> uncensored_api::types::builder::GenerateImageRequest {
    GenerateImageRequest::builder()
        .prompt(prompt)
        .image_width(256)
        .image_height(256)
}

/// Raw POST, for input the typed client refuses to send.
async fn raw_post(
    emulator: &EmulatorHandle,
    key: Option<&str>,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/images/generations", emulator.base_url()))
        .header("content-type", content_type)
        .body(body);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

fn envelope(
    error: Error<uncensored_api::types::ErrorEnvelope>,
) -> (u16, String, Option<String>, Option<String>) {
    match error {
        Error::ErrorResponse(response) => {
            let status = response.status().as_u16();
            let e = response.into_inner().error;
            (status, e.type_, e.param, e.code)
        }
        other => panic!("expected an error envelope, got {other:?}"),
    }
}

#[tokio::test]
async fn keys_are_checked_and_scoped() {
    let (emulator, _) = start(fast()).await;
    let (status, headers, body) =
        raw_post(&emulator, None, "application/json", r#"{"prompt":"p"}"#).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (401, Some("authentication_error"))
    );
    assert!(
        headers.contains_key("x-ratelimit-limit-requests"),
        "rate-limit headers on a 401 too"
    );
    let (status, _, _) = raw_post(
        &emulator,
        Some("nope"),
        "application/json",
        r#"{"prompt":"p"}"#,
    )
    .await;
    assert_eq!(status, 401);
    let files = Client::with_api_key(emulator.base_url(), "files-key").unwrap();
    let error = files
        .generate_image()
        .body(request("p"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(envelope(error).1, "permission_error");
    let dev_only = Client::with_api_key(emulator.base_url(), "dev-only-key").unwrap();
    dev_only
        .generate_image()
        .body(request("p"))
        .send()
        .await
        .unwrap();
    let error = dev_only
        .generate_image()
        .body(request("p").model("model-pro"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        envelope(error),
        (403, "permission_error".into(), Some("model".into()), None)
    );
    assert_eq!(emulator.stats().charges.total, 1);
}

#[tokio::test]
async fn every_field_is_validated_with_param_named() {
    let (emulator, _) = start(fast()).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "prompt"),
        (json!({"prompt": ""}), "prompt"),
        (json!({"prompt": "x".repeat(2001)}), "prompt"),
        (json!({"prompt": 7}), "prompt"),
        (json!({"prompt": "p", "image_width": 500}), "image_width"),
        (json!({"prompt": "p", "image_width": 248}), "image_width"),
        (json!({"prompt": "p", "image_height": 2056}), "image_height"),
        (
            json!({"prompt": "p", "image_height": "1024"}),
            "image_height",
        ),
        (json!({"prompt": "p", "model": "model-nope"}), "model"),
        (
            json!({"prompt": "p", "callback_url": "ftp://example.com/x"}),
            "callback_url",
        ),
        (
            json!({"prompt": "p", "callback_url": "not a url"}),
            "callback_url",
        ),
        (
            json!({"prompt": "p", "model": "model-flex", "resolution": "3k"}),
            "resolution",
        ),
        (
            json!({"prompt": "p", "model": "model-flex", "quality": "ultra"}),
            "quality",
        ),
        (
            json!({"prompt": "p", "additional_settings": [1]}),
            "additional_settings",
        ),
        (json!({"prompt": "p", "colour": "red"}), "colour"),
    ];
    for (body, param) in cases {
        let (status, _, answer) = raw_post(
            &emulator,
            Some("emulator-key"),
            "application/json",
            body.to_string(),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(answer["error"]["param"], param, "{body}");
    }
    let (status, _, answer) = raw_post(
        &emulator,
        Some("emulator-key"),
        "application/json",
        "{not json",
    )
    .await;
    assert_eq!(
        (status, answer["error"]["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    let (status, _, answer) = raw_post(
        &emulator,
        Some("emulator-key"),
        "text/plain",
        r#"{"prompt":"p"}"#,
    )
    .await;
    assert_eq!(
        (status, answer["error"]["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    let huge = format!(
        r#"{{"prompt":"p","additional_settings":{{"pad":"{}"}}}}"#,
        "x".repeat(200_000)
    );
    let (status, _, answer) =
        raw_post(&emulator, Some("emulator-key"), "application/json", huge).await;
    assert_eq!(
        (status, answer["error"]["type"].as_str()),
        (413, Some("file_too_large"))
    );
    assert_eq!(
        emulator.stats().charges.total,
        0,
        "nothing invalid is charged"
    );
}

#[tokio::test]
async fn prices_balances_and_moderation() {
    let (emulator, client) = start(fast()).await;
    let before = emulator.balance("default");
    client
        .generate_image()
        .body(request("p").model("model-pro"))
        .send()
        .await
        .unwrap();
    client
        .generate_image()
        .body(
            request("p")
                .model("model-flex")
                .resolution(Some("4k".try_into().unwrap()))
                .quality(Some("high".try_into().unwrap())),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(before - emulator.balance("default"), 4 + 2 * 4 * 2);

    let poor = Client::with_api_key(emulator.base_url(), "poor-key").unwrap();
    let error = poor
        .generate_image()
        .body(request("p").model("model-pro"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(envelope(error).1, "insufficient_funds");
    assert_eq!(emulator.balance("poor"), 3, "a refused job costs nothing");

    let error = client
        .generate_image()
        .body(request("a FORBIDDEN-TERM here"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        envelope(error),
        (
            403,
            "permission_error".into(),
            Some("prompt".into()),
            Some("content_moderation".into())
        )
    );
    assert_eq!(emulator.stats().charges.total, 2);
}

#[tokio::test]
async fn rate_limit_headers_on_every_response_and_429_with_retry_after() {
    let (emulator, _) = start(fast()).await;
    let slow = Client::with_api_key(emulator.base_url(), "slow-key").unwrap();
    for remaining in [2, 1, 0] {
        let response = slow
            .get_generation_job()
            .job_id("missing")
            .send()
            .await
            .unwrap_err();
        let Error::ErrorResponse(response) = response else {
            panic!()
        };
        assert_eq!(response.status().as_u16(), 404);
        assert_eq!(response.headers()["x-ratelimit-limit-requests"], "3");
        assert_eq!(
            response.headers()["x-ratelimit-remaining-requests"],
            remaining.to_string().as_str()
        );
        let reset = response.headers()["x-ratelimit-reset-requests"]
            .to_str()
            .unwrap();
        chrono::DateTime::parse_from_rfc3339(reset).unwrap();
    }
    let Error::ErrorResponse(limited) = slow
        .get_generation_job()
        .job_id("missing")
        .send()
        .await
        .unwrap_err()
    else {
        panic!()
    };
    assert_eq!(limited.status().as_u16(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(limited.error.type_, "rate_limit_error");
}

#[tokio::test]
async fn idempotency_replays_refuses_reuse_and_charges_once() {
    let (emulator, client) = start(fast()).await;
    let key = || IdempotencyKey::try_from("order-1:image-1").unwrap();
    let first = client
        .generate_image()
        .idempotency_key(key())
        .body(request("same"))
        .send()
        .await
        .unwrap();
    assert!(first.headers().get("idempotent-replay").is_none());
    let again = client
        .generate_image()
        .idempotency_key(key())
        .body(request("same"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.headers()["idempotent-replay"], "true");
    assert_eq!(again.job_id, first.job_id);
    let error = client
        .generate_image()
        .idempotency_key(key())
        .body(request("different"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(envelope(error).1, "idempotency_key_reuse");
    let stats = emulator.stats();
    assert_eq!(stats.charges.total, 1);
    assert_eq!(stats.charges.by_idempotency_key["order-1:image-1"], 1);
    assert_eq!(stats.idempotent_replays, 1);

    let response = reqwest::Client::new()
        .post(format!("{}/v1/images/generations", emulator.base_url()))
        .header("x-api-key", "emulator-key")
        .header("idempotency-key", "has space")
        .json(&json!({"prompt": "p"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"], "Idempotency-Key");
}

#[tokio::test]
async fn a_key_in_flight_gets_409_with_retry_after_2() {
    let mut config = fast();
    config.time_scale = 0.2; // a modelled 5-30 s job takes 1-6 s: a wide window
    let (emulator, client) = start(config).await;
    let key = || IdempotencyKey::try_from("in-flight-1").unwrap();
    let first = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .generate_image()
                .idempotency_key(key())
                .body(request("slow"))
                .send()
                .await
        }
    });
    // Wait until the first request is being processed: its job exists.
    let mut second = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        if emulator.stats().jobs.get("processing") == Some(&1) {
            second = Some(
                client
                    .generate_image()
                    .idempotency_key(key())
                    .body(request("slow"))
                    .send()
                    .await,
            );
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let Error::ErrorResponse(conflict) = second.expect("the first request started").unwrap_err()
    else {
        panic!()
    };
    assert_eq!(conflict.status().as_u16(), 409);
    assert_eq!(conflict.headers()["retry-after"], "2");
    assert_eq!(conflict.error.type_, "idempotency_key_in_flight");
    assert_eq!(first.await.unwrap().unwrap().status.as_str(), "completed");
    assert_eq!(emulator.stats().charges.total, 1);
}

#[tokio::test]
async fn sync_generation_serves_a_real_jpeg_of_the_requested_size() {
    let (emulator, client) = start(fast()).await;
    let done = client
        .generate_image()
        .body(
            GenerateImageRequest::builder()
                .prompt("a lighthouse")
                .image_width(512)
                .image_height(264),
        )
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.status.as_str(), "completed");
    assert!((5.0..=30.0).contains(&done.generation_time.unwrap()));
    let bytes = reqwest::get(done.url.unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let picture = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((picture.width(), picture.height()), (512, 264));
    let job = client
        .get_generation_job()
        .job_id(done.job_id.as_str())
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.status.as_str(), "completed");
    assert!(job.completed_at.is_some() && job.image_url.is_some());
    // Jobs are private to their key.
    let other = Client::with_api_key(emulator.base_url(), "poor-key").unwrap();
    let error = other
        .get_generation_job()
        .job_id(done.job_id.as_str())
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        envelope(error),
        (404, "not_found".into(), Some("job_id".into()), None)
    );
}

/// A local webhook receiver that answers with `statuses` in turn (then 200)
/// and hands every payload to the test.
async fn receiver(statuses: Vec<u16>) -> (String, mpsc::UnboundedReceiver<Value>) {
    use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
    use std::sync::{Arc, Mutex};
    type Shared = (mpsc::UnboundedSender<Value>, Arc<Mutex<Vec<u16>>>);
    let (tx, rx) = mpsc::unbounded_channel();
    let statuses = Arc::new(Mutex::new(statuses.into_iter().rev().collect::<Vec<_>>()));
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State((tx, statuses)): State<Shared>, Json(body): Json<Value>| async move {
                    let status = statuses.lock().unwrap().pop().unwrap_or(200);
                    let _ = tx.send(body);
                    StatusCode::from_u16(status).unwrap()
                },
            ),
        )
        .with_state((tx, statuses));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx)
}

/// Waits (10 s at most) until the emulator's stats satisfy `done`: the
/// emulator records a delivery only after the receiver has answered, so a test
/// that has seen the payload must still wait for the bookkeeping.
async fn stats_until(
    emulator: &EmulatorHandle,
    done: impl Fn(&uncensored_emulator::Stats) -> bool,
) -> uncensored_emulator::Stats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = emulator.stats();
        if done(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stats never reached the expected state: {stats:#?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a webhook within 10 s")
        .unwrap()
}

#[tokio::test]
async fn async_jobs_run_in_the_background_and_call_back_with_retries() {
    let (emulator, client) = start(fast()).await;
    let (hook, mut payloads) = receiver(vec![500, 503]).await;
    let queued = client
        .generate_image()
        .body(request("async please").callback_url(Some(hook.as_str().try_into().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status().as_u16(), 202);
    let queued = queued.into_inner();
    assert_eq!(queued.status.as_str(), "processing");
    assert_eq!(queued.webhook_url.as_deref(), Some(hook.as_str()));
    assert!(
        queued
            .status_url
            .unwrap()
            .ends_with(&format!("/v1/images/generation/jobs/{}", queued.job_id))
    );
    assert!(queued.created_at.is_some());

    let mut attempts = Vec::new();
    for _ in 0..3 {
        attempts.push(next(&mut payloads).await);
    }
    assert!(
        attempts.iter().all(|p| p == &attempts[0]),
        "each retry carries the same payload"
    );
    let payload = &attempts[0];
    assert_eq!(payload["request_id"], queued.job_id.as_str());
    assert_eq!(payload["status"], "success");
    assert_eq!(payload["result"]["status"], "completed");
    assert!(
        payload["result"]["image_url"]
            .as_str()
            .unwrap()
            .ends_with(".jpg")
    );
    chrono::DateTime::parse_from_rfc3339(payload["timestamp"].as_str().unwrap()).unwrap();
    let job = client
        .get_generation_job()
        .job_id(queued.job_id.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(job.status.as_str(), "completed");
    let stats = stats_until(&emulator, |s| s.webhooks.deliveries == 1).await;
    assert_eq!(stats.webhooks.attempts, 3);
}

#[tokio::test]
async fn injected_duplicate_webhooks_and_failed_jobs() {
    let mut config = fast();
    config.faults.duplicate_webhook_rate = 1.0;
    config.faults.failed_job_rate = 1.0;
    let (emulator, client) = start(config).await;
    let (hook, mut payloads) = receiver(vec![]).await;
    let queued = client
        .generate_image()
        .body(request("doomed").callback_url(Some(hook.try_into().unwrap())))
        .send()
        .await
        .unwrap();
    let (a, b) = (next(&mut payloads).await, next(&mut payloads).await);
    assert_eq!(a, b);
    assert_eq!(a["status"], "failed");
    let job = client
        .get_generation_job()
        .job_id(queued.job_id.as_str())
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.status.as_str(), "failed");
    assert!(job.image_url.is_none() && job.error.is_some());
    let sync = client
        .generate_image()
        .body(request("doomed too"))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sync.status.as_str(), "failed");
    let stats = emulator.stats();
    assert_eq!((stats.charges.total, stats.charges.refunds), (2, 2));
    assert_eq!(stats.faults.duplicate_webhooks, 1);
}

#[tokio::test]
async fn a_delayed_webhook_still_arrives_once() {
    let mut config = fast();
    config.faults.delayed_webhook_rate = 1.0;
    config.faults.webhook_delay_ms = 50;
    let (emulator, client) = start(config).await;
    let (hook, mut payloads) = receiver(vec![]).await;
    let queued = client
        .generate_image()
        .body(request("late").callback_url(Some(hook.as_str().try_into().unwrap())))
        .send()
        .await
        .unwrap();
    assert_eq!(
        next(&mut payloads).await["request_id"],
        queued.job_id.as_str()
    );
    let stats = stats_until(&emulator, |s| s.webhooks.deliveries == 1).await;
    assert_eq!(stats.faults.delayed_webhooks, 1);
}

#[tokio::test]
async fn webhooks_never_leave_loopback_by_default() {
    let (emulator, client) = start(fast()).await;
    client
        .generate_image()
        .body(request("p").callback_url(Some("https://hooks.example.com/cb".try_into().unwrap())))
        .send()
        .await
        .unwrap();
    let stats = stats_until(&emulator, |s| s.webhooks.blocked == 1).await;
    assert_eq!(stats.webhooks.attempts, 0);
}

#[tokio::test]
async fn server_errors_drops_and_truncation_on_demand() {
    let mut config = fast();
    config.faults.fail_rate = 1.0;
    let (emulator, client) = start(config).await;
    let error = client
        .generate_image()
        .body(request("p"))
        .send()
        .await
        .unwrap_err();
    let (status, kind, ..) = envelope(error);
    assert!(matches!(
        (status, kind.as_str()),
        (500, "internal_server_error") | (503, "service_unavailable")
    ));
    assert_eq!(emulator.stats().charges.total, 0);

    let mut config = fast();
    config.faults.drop_rate = 1.0;
    let (emulator, client) = start(config).await;
    let error = client
        .get_generation_job()
        .job_id("x")
        .send()
        .await
        .unwrap_err();
    assert!(
        !matches!(error, Error::ErrorResponse(_)),
        "a cut connection is not an answer: {error:?}"
    );
    assert_eq!(emulator.stats().faults.dropped, 1);

    let mut config = fast();
    config.faults.truncate_rate = 1.0;
    let (emulator, client) = start(config).await;
    let done = client
        .generate_image()
        .body(request("p"))
        .send()
        .await
        .unwrap()
        .into_inner();
    let response = reqwest::get(done.url.unwrap()).await.unwrap();
    let promised = response.content_length().unwrap();
    let outcome = response.bytes().await;
    assert!(
        outcome.is_err() || (outcome.unwrap().len() as u64) < promised,
        "the download must come up short"
    );
    assert_eq!(emulator.stats().faults.truncated, 1);
}

#[tokio::test]
async fn the_same_seed_fails_the_same_requests() {
    async fn pattern(seed: u64) -> Vec<u16> {
        let mut config = fast();
        config.seed = seed;
        config.faults.fail_rate = 0.5;
        let (_emulator, client) = start(config).await;
        let mut statuses = Vec::new();
        for _ in 0..16 {
            let status = match client.get_generation_job().job_id("x").send().await {
                Ok(r) => r.status().as_u16(),
                Err(e) => e.status().unwrap().as_u16(),
            };
            statuses.push(status);
        }
        statuses
    }
    let a = pattern(11).await;
    assert_eq!(a, pattern(11).await);
    assert_ne!(a, pattern(12).await);
    assert!(a.contains(&404) && a.iter().any(|s| *s >= 500), "{a:?}");
}

#[tokio::test]
async fn stats_and_reset_over_http() {
    let (emulator, client) = start(fast()).await;
    client
        .generate_image()
        .body(request("p"))
        .send()
        .await
        .unwrap();
    let origin = emulator.base_url().trim_end_matches("/api").to_string();
    let stats: Value = reqwest::get(format!("{origin}/_emulator/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["charges"]["total"], 1);
    assert_eq!(stats["requests"]["POST /v1/images/generations"]["200"], 1);
    assert_eq!(stats["jobs"]["completed"], 1);
    let reset = reqwest::Client::new()
        .post(format!("{origin}/_emulator/reset"))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status().as_u16(), 204);
    assert_eq!(emulator.stats(), uncensored_emulator::Stats::default());
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_envelope() {
    let (emulator, _) = start(fast()).await;
    let http = reqwest::Client::new();
    let response = http
        .get(format!("{}/v2/nothing", emulator.base_url()))
        .header("x-api-key", "emulator-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    assert!(
        response
            .headers()
            .contains_key("x-ratelimit-remaining-requests")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "not_found");
    let response = http
        .delete(format!("{}/v1/images/generations", emulator.base_url()))
        .header("x-api-key", "emulator-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert!(response.headers().contains_key("allow"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn images_can_be_padded_to_a_large_size_and_still_decode() {
    let (_emulator, client) = start(fast()).await;
    let mut settings = serde_json::Map::new();
    settings.insert("emulator_image_bytes".into(), json!(3_000_000));
    let done = client
        .generate_image()
        .body(request("large").additional_settings(settings))
        .send()
        .await
        .unwrap()
        .into_inner();
    let response = reqwest::get(done.url.unwrap()).await.unwrap();
    let announced = response.content_length().unwrap();
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, announced);
    assert!(bytes.len() >= 3_000_000, "{}", bytes.len());
    let picture = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((picture.width(), picture.height()), (256, 256));
}

#[tokio::test]
async fn a_client_that_goes_away_does_not_cancel_its_paid_job() {
    let mut config = fast();
    config.time_scale = 0.05; // 0.25 to 1.5 s of generation
    let (emulator, client) = start(config).await;
    let first = tokio::spawn(
        reqwest::Client::new()
            .post(format!("{}/v1/images/generations", emulator.base_url()))
            .header("x-api-key", "emulator-key")
            .header("idempotency-key", "gone-away-1")
            .json(&json!({"prompt": "patience", "model": "model-dev", "image_width": 256, "image_height": 256}))
            .send(),
    );
    // Once the job is being generated (and paid), the client goes away.
    stats_until(&emulator, |s| s.jobs.get("processing") == Some(&1)).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    // The retry with the same key gets the first job's answer (once it is
    // ready: 409 while in flight), and pays nothing more.
    let key = IdempotencyKey::try_from("gone-away-1").unwrap();
    let body = || request("patience");
    let answer = loop {
        match client
            .generate_image()
            .idempotency_key(key.clone())
            .body(body())
            .send()
            .await
        {
            Ok(answer) => break answer,
            Err(Error::ErrorResponse(busy)) if busy.status().as_u16() == 409 => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("{other:?}"),
        }
    };
    assert_eq!(answer.headers()["idempotent-replay"], "true");
    assert_eq!(emulator.stats().charges.total, 1);
}
