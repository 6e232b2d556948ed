//! The SDK against the embedded emulator and against wiremock (for answers the
//! emulator would not give on demand).

use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};
use uncensored::{
    ApiErrorKind, CancellationToken, Client, DownloadError, Error, GenerateRequest, Generation,
    JobStatus, RetryPolicy, WaitOptions,
};
use uncensored_emulator::{Config, Emulator, EmulatorHandle};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "sk-live-0123456789abcdef";

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 6,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        ..RetryPolicy::default()
    }
}

fn quick_wait() -> WaitOptions {
    WaitOptions {
        first_poll: Duration::from_millis(5),
        min_interval: Duration::from_millis(10),
        max_interval: Duration::from_millis(40),
        ..WaitOptions::default()
    }
}

fn client_for(base_url: &str, key: &str) -> Client {
    Client::builder()
        .base_url(base_url)
        .api_key(key)
        .retry_policy(quick_retries())
        .wait_options(quick_wait())
        .build()
        .unwrap()
}

async fn start(config: Config) -> (EmulatorHandle, Client) {
    let emulator = Emulator::start(Config {
        time_scale: 0.001,
        ..config
    })
    .await
    .unwrap();
    let client = client_for(emulator.base_url(), "emulator-key");
    (emulator, client)
}

fn small(prompt: &str) -> GenerateRequest {
    GenerateRequest::new(prompt).size(256, 256)
}

#[tokio::test]
async fn sync_async_wait_and_download_against_the_emulator() {
    let (emulator, client) = start(Config::default()).await;
    let Generation::Completed(image) = client.generate(&small("a lighthouse")).await.unwrap()
    else {
        panic!("sync generation must complete")
    };
    assert!(
        image
            .meta
            .idempotency_key
            .as_deref()
            .unwrap()
            .starts_with("unc-")
    );
    assert!(!image.meta.replayed);
    assert_eq!(image.meta.rate_limit.unwrap().limit, 600);
    assert_eq!(client.last_rate_limit().unwrap().limit, 600);

    let file = client.download(&image.url).await.unwrap();
    assert_eq!(file.format.extension(), "jpg");
    assert_eq!(file.sha256.len(), 64);
    use sha2::Digest as _;
    let expected: String = sha2::Sha256::digest(&file.bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(file.sha256, expected);

    let hook = "http://127.0.0.1:9/unused"; // loopback; nothing listens: the job still completes
    let queued = client
        .generate(&small("async").callback_url(hook))
        .await
        .unwrap();
    let Generation::Queued(job) = queued else {
        panic!("a callback URL means async")
    };
    assert_eq!(job.status, JobStatus::Processing);
    let done = client.wait(&job.job_id).await.unwrap();
    assert_eq!(done.job_id, job.job_id);
    assert!(done.completed_at.is_some());
    let again = client
        .generate_and_wait(&small("both ways").callback_url(hook))
        .await
        .unwrap();
    assert!(again.url.ends_with(".jpg"));
    assert_eq!(emulator.stats().charges.total, 3);
}

#[tokio::test]
async fn invalid_requests_fail_before_any_network_io() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let client = client_for(&server.uri(), KEY);
    let cases = [
        GenerateRequest::new(""),
        GenerateRequest::new("x".repeat(2001)),
        GenerateRequest::new("p").size(1001, 1024),
        GenerateRequest::new("p").size(1024, 4096),
        GenerateRequest::new("p").model(""),
        GenerateRequest::new("p").callback_url("http://example.com/hook"),
        GenerateRequest::new("p").idempotency_key("no spaces please"),
    ];
    let mut messages = Vec::new();
    for request in cases {
        let error = client.generate(&request).await.unwrap_err();
        let Error::Invalid(invalid) = &error else {
            panic!("{error:?}")
        };
        messages.push(format!("{}: {error}", invalid.field));
    }
    assert!(server.received_requests().await.unwrap().is_empty());
    insta::assert_yaml_snapshot!("validation_errors", messages);
}

/// Answers with `statuses` in turn, then 200 with a completed job.
struct Sequence(std::sync::Mutex<Vec<u16>>);

impl Respond for Sequence {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let next = self.0.lock().unwrap().pop();
        match next {
            Some(status) => {
                let kind = match status {
                    409 => "idempotency_key_in_flight",
                    429 => "rate_limit_error",
                    503 => "service_unavailable",
                    _ => "internal_server_error",
                };
                let mut answer = ResponseTemplate::new(status)
                    .set_body_json(json!({"error": {"message": "try again", "type": kind}}));
                if matches!(status, 409 | 429) {
                    answer = answer.insert_header("retry-after", "0");
                }
                answer
            }
            None => ResponseTemplate::new(200).set_body_json(json!({
                "job_id": "j-1", "status": "completed", "url": "https://img.example/j-1.jpg", "generation_time": 3.0
            })),
        }
    }
}

#[tokio::test]
async fn retries_reuse_one_idempotency_key_until_success() {
    let server = MockServer::start().await;
    let sequence = Sequence(std::sync::Mutex::new(vec![500, 409, 429, 503])); // popped from the end
    Mock::given(method("POST"))
        .respond_with(sequence)
        .mount(&server)
        .await;
    let client = client_for(&server.uri(), KEY);
    let generation = client.generate(&small("retry me")).await.unwrap();
    assert_eq!(generation.meta().attempts, 5);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 5);
    let keys: Vec<&str> = requests
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap())
        .collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    assert_eq!(Some(keys[0]), generation.meta().idempotency_key.as_deref());
    let bodies: Vec<Value> = requests
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "the same body on every attempt"
    );
    insta::assert_json_snapshot!("request_body", bodies[0]);

    // A second logical request gets a key of its own; your own key is used as given.
    client.generate(&small("retry me")).await.unwrap();
    client
        .generate(&small("mine").idempotency_key("order-7:image-1"))
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_ne!(requests[5].headers["idempotency-key"], keys[0]);
    assert_eq!(requests[6].headers["idempotency-key"], "order-7:image-1");
}

#[tokio::test]
async fn client_errors_are_never_retried_and_say_what_to_do() {
    let server = MockServer::start().await;
    let client = client_for(&server.uri(), KEY);
    let mut shown = Vec::new();
    for (status, kind, code) in [
        (400, "invalid_request_error", None),
        (401, "authentication_error", None),
        (402, "insufficient_funds", None),
        (403, "permission_error", Some("content_moderation")),
        (403, "permission_error", None),
        (404, "not_found", None),
        (422, "idempotency_key_reuse", None),
    ] {
        server.reset().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).insert_header("x-request-id", "req-42").set_body_json(json!({
                "error": {"message": format!("{kind} happened"), "type": kind, "param": "prompt", "code": code}
            })))
            .mount(&server)
            .await;
        let error = client.generate(&small("p")).await.unwrap_err();
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            1,
            "{status} must not be retried"
        );
        assert!(!error.is_retryable());
        let api = error.api().expect("an API error");
        assert_eq!(
            (api.status, api.kind.as_str(), api.request_id.as_deref()),
            (status, kind, Some("req-42"))
        );
        assert_eq!(api.is_moderation(), code.is_some());
        // What happened (Display), and what to do (the reason's one advice).
        shown.push(format!(
            "{error} => {}: {}",
            error.reason(),
            error.reason().advice()
        ));
    }
    insta::assert_yaml_snapshot!("api_error_messages", shown);
}

#[tokio::test]
async fn retries_stop_at_the_policy_limit() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(
                json!({"error": {"message": "down", "type": "service_unavailable"}}),
            ),
        )
        .mount(&server)
        .await;
    let client = client_for(&server.uri(), KEY);
    let error = client.job("j").await.unwrap_err();
    assert_eq!(error.api().unwrap().kind, ApiErrorKind::ServiceUnavailable);
    assert_eq!(server.received_requests().await.unwrap().len(), 6);
}

#[tokio::test]
async fn unknown_and_failed_statuses_end_the_wait_with_a_typed_error() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/images/generation/jobs/j-failed"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "job_id": "j-failed", "status": "failed", "error": {"message": "upstream refused", "code": "upstream"}
        })))
        .mount(&server)
        .await;
    Mock::given(path("/v1/images/generation/jobs/j-odd"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "job_id": "j-odd", "status": "archived", "completed_at": "2026-05-09T10:30:05Z"
        })))
        .mount(&server)
        .await;
    let client = client_for(&server.uri(), KEY);
    match client.wait("j-failed").await.unwrap_err() {
        Error::JobFailed {
            status,
            message,
            code,
            ..
        } => {
            assert_eq!(
                (status.as_str(), message.as_deref(), code.as_deref()),
                ("failed", Some("upstream refused"), Some("upstream"))
            );
        }
        other => panic!("{other:?}"),
    }
    match client.wait("j-odd").await.unwrap_err() {
        Error::JobFailed { status, .. } => assert_eq!(status, "archived"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn watch_streams_progress_and_waits_end_on_deadline_or_cancel() {
    let server = MockServer::start().await;
    let polls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = polls.clone();
    Mock::given(path("/v1/images/generation/jobs/j-slow"))
        .respond_with(move |_: &Request| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let body = if n < 3 {
                json!({"job_id": "j-slow", "status": "processing"})
            } else {
                json!({"job_id": "j-slow", "status": "completed", "image_url": "https://img.example/x.png"})
            };
            ResponseTemplate::new(200).set_body_json(body)
        })
        .mount(&server)
        .await;
    Mock::given(path("/v1/images/generation/jobs/j-stuck"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"job_id": "j-stuck", "status": "processing"})),
        )
        .mount(&server)
        .await;
    let client = client_for(&server.uri(), KEY);

    let events: Vec<_> = client.watch("j-slow", quick_wait()).collect().await;
    let events: Vec<_> = events.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        events.iter().map(|e| e.poll).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert_eq!(
        events.iter().map(|e| e.changed).collect::<Vec<_>>(),
        vec![true, false, false, true]
    );
    assert_eq!(events[3].job.status, JobStatus::Completed);
    assert!(events.windows(2).all(|w| w[0].elapsed <= w[1].elapsed));

    let deadline = quick_wait().with_deadline(Duration::from_millis(100));
    match client.wait_with("j-stuck", deadline).await.unwrap_err() {
        Error::WaitTimeout { status, polls, .. } => assert!(status == "processing" && polls >= 1),
        other => panic!("{other:?}"),
    }

    let token = CancellationToken::new();
    let waiting = tokio::spawn({
        let client = client.clone();
        let options = quick_wait().with_cancel(token.clone());
        async move { client.wait_with("j-stuck", options).await }
    });
    token.cancel();
    assert!(matches!(
        waiting.await.unwrap().unwrap_err(),
        Error::Cancelled { .. }
    ));
}

#[tokio::test]
async fn downloads_check_scheme_size_format_and_keep_the_key_away() {
    let server = MockServer::start().await;
    let jpeg = uncensored_emulator::render_jpeg("x", 0, 256, 256);
    Mock::given(path("/img.jpg"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(jpeg.clone()))
        .mount(&server)
        .await;
    Mock::given(path("/page.html"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>not an image</html>"))
        .mount(&server)
        .await;
    Mock::given(path("/loop"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/loop"))
        .mount(&server)
        .await;
    Mock::given(path("/gone"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let client = client_for(&server.uri(), KEY);

    let image = client
        .download(&format!("{}/img.jpg", server.uri()))
        .await
        .unwrap();
    assert_eq!(image.bytes.as_ref(), jpeg.as_slice());
    let requests = server.received_requests().await.unwrap();
    assert!(
        requests
            .iter()
            .all(|r| !r.headers.contains_key("x-api-key")),
        "the API key must not reach image storage"
    );

    let err = |e: Error| match e {
        Error::Download(d) => d,
        other => panic!("{other:?}"),
    };
    assert!(matches!(
        err(client
            .download(&format!("{}/page.html", server.uri()))
            .await
            .unwrap_err()),
        DownloadError::NotAnImage
    ));
    assert!(matches!(
        err(client.download("file:///etc/passwd").await.unwrap_err()),
        DownloadError::Scheme { .. }
    ));
    assert!(matches!(
        err(client
            .download(&format!("{}/gone", server.uri()))
            .await
            .unwrap_err()),
        DownloadError::Status { status: 404 }
    ));
    assert!(matches!(
        err(client
            .download(&format!("{}/loop", server.uri()))
            .await
            .unwrap_err()),
        DownloadError::Redirect { .. }
    ));
    let capped = Client::builder()
        .base_url(server.uri())
        .api_key(KEY)
        .max_download_bytes(1000)
        .build()
        .unwrap();
    assert!(matches!(
        err(capped
            .download(&format!("{}/img.jpg", server.uri()))
            .await
            .unwrap_err()),
        DownloadError::TooLarge { limit: 1000 }
    ));
}

#[tokio::test]
async fn truncated_downloads_are_detected_and_retried() {
    let mut config = Config::default();
    config.faults.truncate_rate = 0.5;
    config.seed = 3;
    let (emulator, client) = start(config).await;
    for i in 0..6 {
        let Generation::Completed(image) =
            client.generate(&small(&format!("cut {i}"))).await.unwrap()
        else {
            panic!()
        };
        let file = client.download(&image.url).await.unwrap();
        assert_eq!(file.format.extension(), "jpg");
    }
    assert!(
        emulator.stats().faults.truncated > 0,
        "the fault must have been exercised"
    );

    let mut always = Config::default();
    always.faults.truncate_rate = 1.0;
    let (_emulator, client) = start(always).await;
    let Generation::Completed(image) = client.generate(&small("always cut")).await.unwrap() else {
        panic!()
    };
    let mut stream = client.download_stream(&image.url).await.unwrap();
    let outcome = loop {
        match stream.next_chunk().await {
            Ok(Some(_)) => continue,
            other => break other,
        }
    };
    assert!(
        matches!(
            outcome,
            Err(DownloadError::Truncated { .. }) | Err(DownloadError::Transport(_))
        ),
        "{outcome:?}"
    );
}

#[test]
fn a_client_without_a_key_or_with_a_bad_url_is_a_config_error() {
    assert!(matches!(Client::builder().build(), Err(Error::Config(_))));
    assert!(matches!(
        Client::builder().api_key("k").base_url("not a url").build(),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Client::builder()
            .api_key("k")
            .base_url("ftp://host/api")
            .build(),
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn the_pacer_waits_for_the_window_to_reset_instead_of_hitting_429() {
    use std::sync::{Arc, Mutex};
    let server = MockServer::start().await;
    // Every answer says: no request left in this window, which resets in 1 s.
    // Each entry: when a request arrived, and the reset its answer announced.
    type Time = chrono::DateTime<chrono::Utc>;
    let seen: Arc<Mutex<Vec<(Time, Time)>>> = Arc::default();
    let record = seen.clone();
    Mock::given(method("GET"))
        .respond_with(move |_: &Request| {
            let now = chrono::Utc::now();
            // As announced: the header has millisecond precision.
            let announced = (now + chrono::Duration::seconds(1))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let reset = chrono::DateTime::parse_from_rfc3339(&announced)
                .unwrap()
                .with_timezone(&chrono::Utc);
            record.lock().unwrap().push((now, reset));
            ResponseTemplate::new(200)
                .insert_header("x-ratelimit-limit-requests", "1")
                .insert_header("x-ratelimit-remaining-requests", "0")
                .insert_header("x-ratelimit-reset-requests", announced)
                .set_body_json(json!({"job_id": "j", "status": "processing"}))
        })
        .mount(&server)
        .await;
    let client = Client::builder()
        .base_url(server.uri())
        .api_key(KEY)
        .pace_requests(true)
        .build()
        .unwrap();
    client.job("j").await.unwrap();
    client.job("j").await.unwrap();
    let seen = seen.lock().unwrap();
    let (arrived, announced_reset) = (seen[1].0, seen[0].1);
    assert!(
        arrived >= announced_reset,
        "the second request came at {arrived}, before the window reset at {announced_reset}"
    );
}
