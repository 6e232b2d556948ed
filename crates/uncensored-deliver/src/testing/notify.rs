//! What every notifier must do: deliver both kinds of notification, once
//! each, and fail retryably, without showing its secret, when the receiver
//! cannot be reached.

use std::sync::Arc;

use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::StoredImage;
use crate::notify::{Notification, Notifier};

/// A stored image, as notifiers announce it (the prompt has markup in it).
pub fn stored(share_url: Option<&str>) -> Notification {
    Notification::Stored(StoredImage {
        job_id: "550e8400-e29b-41d4-a716-446655440000".into(),
        prompt: "a lighthouse at dusk, <oil> & painting".into(),
        model: Some("model-pro".into()),
        width: Some(1024),
        height: Some(768),
        generation_time: Some(12.5),
        name: "2026-05-09/550e8400.jpg".into(),
        location: "s3://images/2026-05-09/550e8400.jpg".into(),
        share_url: share_url.map(str::to_string),
        sha256: "ab".repeat(32),
        size: Some(245_760),
        created_at: chrono::DateTime::from_timestamp(1_778_320_800, 0).unwrap_or_default(),
    })
}

/// A generation that moderation refused.
pub fn failed() -> Notification {
    Notification::Failed {
        job_id: None,
        prompt: "something the moderator refused".into(),
        reason: uncensored::FailureReason::Moderation,
        message: "Content moderation failed (HTTP 403, permission_error)".into(),
    }
}

/// Runs the suite. `make` builds the notifier for a receiver at a base URL
/// (`http://127.0.0.1:PORT`); `secret` is what must never be shown.
pub async fn conformance(make: impl Fn(&str) -> Arc<dyn Notifier>, secret: &str) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    let notifier = make(&server.uri());
    notifier.notify(&stored(None)).await.unwrap();
    notifier.notify(&failed()).await.unwrap();
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        2,
        "one request per notification"
    );
    assert!(
        !format!("{notifier:?}").contains(secret),
        "Debug shows the secret"
    );

    // Port 9 (discard) on loopback: nothing listens there.
    let dead = make("http://127.0.0.1:9");
    let error = dead.notify(&stored(None)).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(
        !format!("{error} {error:?}").contains(secret),
        "the error shows the secret: {error}"
    );
}
