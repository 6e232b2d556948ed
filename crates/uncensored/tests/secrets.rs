//! Secrets never appear in Debug, Display, errors or logs. A test binary of its
//! own: it installs the process-wide tracing subscriber that captures the logs.

use std::time::Duration;

use serde_json::json;
use uncensored::{Client, GenerateRequest, RetryPolicy};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-live-0123456789abcdef";

#[tokio::test]
async fn the_key_never_shows_in_debug_errors_or_logs() {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": "Invalid API key", "type": "authentication_error"}}),
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(
                json!({"error": {"message": "boom", "type": "internal_server_error"}}),
            ),
        )
        .mount(&server)
        .await;
    let builder = Client::builder()
        .base_url(server.uri())
        .api_key(KEY)
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(5),
            ..RetryPolicy::default()
        });
    let builder_debug = format!("{builder:?}");
    let client = builder.build().unwrap();
    let e1 = client
        .generate(&GenerateRequest::new("p"))
        .await
        .unwrap_err();
    let e2 = client.job("j").await.unwrap_err();
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let logs = logs
        .replace("\u{1b}[3m", "")
        .replace("\u{1b}[0m", "")
        .replace("\u{1b}[2m", "");
    assert!(
        logs.contains("uncensored.request"),
        "the spans must be logged for this test to mean anything"
    );
    for text in [
        format!("{client:?}"),
        builder_debug,
        format!("{e1} {e1:?}"),
        format!("{e2} {e2:?}"),
        logs,
    ] {
        assert!(!text.contains(KEY), "the key leaked: {text}");
    }
    assert!(
        e1.reason().advice().contains("UNCENSORED_API_KEY"),
        "a 401 says what to check: {e1}"
    );
}
