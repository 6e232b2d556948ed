//! The generated low-level client against a local wiremock server: what it
//! sends (key, headers, JSON field names) and how it reads what comes back
//! (200, 202, the error envelope for every documented status, headers).

use serde_json::{Value, json};
use uncensored_api::types::{GenerateImageRequest, IdempotencyKey};
use uncensored_api::{Client, Error};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-test-7d1c0ffee";

fn client(server: &MockServer) -> Client {
    Client::with_api_key(&server.uri(), KEY).unwrap()
}

/// A response carrying the rate-limit headers every response has.
fn answer(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-ratelimit-limit-requests", "60")
        .insert_header("x-ratelimit-remaining-requests", "59")
        .insert_header("x-ratelimit-reset-requests", "2026-05-09T10:31:00Z")
        .set_body_json(body)
}

#[tokio::test]
async fn sync_generation_sends_key_and_json_and_parses_200_with_headers() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .and(header("x-api-key", KEY))
        .and(header("content-type", "application/json"))
        .and(header("idempotency-key", "order-42:img-1"))
        .and(body_json(json!({
            "prompt": "a lighthouse at dusk",
            "model": "model-pro",
            "image_width": 768,
            "image_height": 512,
            "quality": "high",
            "additional_settings": {"seed": 7}
        })))
        .respond_with(answer(
            200,
            json!({
                "job_id": "550e8400-e29b-41d4-a716-446655440000",
                "status": "completed",
                "url": "https://storage.example/img/550e8400.jpg",
                "generation_time": 2.5,
                "model": "model-pro"
            }),
        ))
        .expect(1)
        .mount(&server)
        .await;

    let response = client(&server)
        .generate_image()
        .idempotency_key(IdempotencyKey::try_from("order-42:img-1").unwrap())
        .body(
            GenerateImageRequest::builder()
                .prompt("a lighthouse at dusk")
                .model("model-pro")
                .image_width(768)
                .image_height(512)
                .quality(Some("high".try_into().unwrap()))
                .additional_settings(json!({"seed": 7}).as_object().unwrap().clone()),
        )
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-ratelimit-remaining-requests"], "59");
    assert_eq!(
        response.headers()["x-ratelimit-reset-requests"],
        "2026-05-09T10:31:00Z"
    );
    assert_eq!(response.status.as_str(), "completed");
    assert_eq!(
        response.url.as_deref(),
        Some("https://storage.example/img/550e8400.jpg")
    );
    assert_eq!(response.generation_time, Some(2.5));

    let sent = &server.received_requests().await.unwrap()[0];
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    insta::assert_json_snapshot!("sync_request_body", body);
}

#[tokio::test]
async fn async_generation_parses_202_into_the_same_type() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .and(body_json(json!({
            "prompt": "a cyberpunk cityscape at night",
            "model": "model-dev",
            "image_width": 1024,
            "image_height": 1024,
            "callback_url": "https://hooks.example/cb?token=abc"
        })))
        .respond_with(answer(
            202,
            json!({
                "job_id": "j-202",
                "status": "processing",
                "status_url": "https://api.example/v1/images/generation/jobs/j-202",
                "webhook_url": "https://hooks.example/cb?token=abc",
                "created_at": "2026-05-09T10:30:00Z"
            }),
        ))
        .expect(1)
        .mount(&server)
        .await;

    let response = client(&server)
        .generate_image()
        .body(
            GenerateImageRequest::builder()
                .prompt("a cyberpunk cityscape at night")
                .callback_url(Some(
                    "https://hooks.example/cb?token=abc".try_into().unwrap(),
                )),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let job = response.into_inner();
    assert_eq!(job.job_id, "j-202");
    assert_eq!(job.status.as_str(), "processing");
    assert_eq!(
        job.created_at.unwrap().to_rfc3339(),
        "2026-05-09T10:30:00+00:00"
    );
    assert!(job.url.is_none());
}

#[tokio::test]
async fn job_status_reads_the_job_and_encodes_the_path() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/images/generation/jobs/job%201"))
        .and(header("x-api-key", KEY))
        .respond_with(answer(
            200,
            json!({"job_id": "job 1", "status": "failed", "error": {"message": "upstream refused"}}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let job = client(&server)
        .get_generation_job()
        .job_id("job 1")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        job.status.as_str(),
        "failed",
        "an undocumented status is kept as data"
    );
    assert_eq!(
        job.error.unwrap().message.as_deref(),
        Some("upstream refused")
    );
}

/// Every documented error status, with the envelope the service sends.
const ERRORS: &[(u16, &str, Option<&str>, Option<&str>)] = &[
    (400, "invalid_request_error", Some("image_width"), None),
    (401, "authentication_error", None, None),
    (402, "insufficient_funds", None, None),
    (
        403,
        "permission_error",
        Some("prompt"),
        Some("content_moderation"),
    ),
    (404, "not_found", Some("job_id"), None),
    (409, "idempotency_key_in_flight", None, None),
    (413, "file_too_large", None, None),
    (422, "idempotency_key_reuse", None, None),
    (429, "rate_limit_error", None, None),
    (500, "internal_server_error", None, None),
    (503, "service_unavailable", None, None),
];

#[tokio::test]
async fn every_error_status_parses_into_the_envelope_with_its_headers() {
    let server = MockServer::start().await;
    let client = client(&server);
    let mut seen = Vec::new();
    for &(status, kind, param, code) in ERRORS {
        server.reset().await;
        let mut template = answer(
            status,
            json!({"error": {"message": format!("{kind} happened"), "type": kind, "param": param, "code": code}}),
        );
        if matches!(status, 409 | 429) {
            template = template.insert_header("retry-after", "2");
        }
        Mock::given(method("POST"))
            .respond_with(template)
            .expect(1)
            .mount(&server)
            .await;

        let error = client
            .generate_image()
            .body(GenerateImageRequest::builder().prompt("p"))
            .send()
            .await
            .unwrap_err();
        let Error::ErrorResponse(response) = error else {
            panic!("status {status} did not parse into the envelope: {error:?}");
        };
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(response.headers()["x-ratelimit-limit-requests"], "60");
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let detail = &response.error;
        assert_eq!(detail.type_, kind);
        assert_eq!(detail.param.as_deref(), param);
        assert_eq!(detail.code.as_deref(), code);
        seen.push(json!({
            "status": status,
            "type": detail.type_,
            "message": detail.message,
            "param": detail.param,
            "code": detail.code,
            "retry_after": retry_after,
        }));
    }
    insta::assert_json_snapshot!("error_envelopes", seen);
}

#[tokio::test]
async fn an_error_body_that_is_not_the_envelope_is_reported_not_hidden() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>bad gateway</html>"))
        .mount(&server)
        .await;
    let error = client(&server)
        .get_generation_job()
        .job_id("j")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error.status().map(|s| s.as_u16()), Some(502));
}

#[tokio::test]
async fn the_api_key_never_shows_in_debug_output() {
    let server = MockServer::start().await;
    let client = client(&server);
    let debug = format!("{client:?} {client:#?}");
    assert!(!debug.contains(KEY), "the key leaked into Debug: {debug}");
    assert!(
        debug.contains("Sensitive"),
        "the key header should be marked sensitive: {debug}"
    );
}

#[test]
fn an_unsendable_key_is_refused_without_echoing_it() {
    let key = "sk-secret\nsecond-line";
    let error = Client::with_api_key("http://127.0.0.1:1", key).unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(!text.contains("sk-secret"), "{text}");
    assert!(text.contains("API key"), "{text}");
}

#[tokio::test]
async fn a_bad_idempotency_key_or_prompt_fails_before_any_request() {
    let server = MockServer::start().await;
    assert!(IdempotencyKey::try_from("white space").is_err());
    let error = client(&server)
        .generate_image()
        .body(GenerateImageRequest::builder().prompt("x".repeat(2001)))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidRequest(_)), "{error:?}");
    assert!(server.received_requests().await.unwrap().is_empty());
}
