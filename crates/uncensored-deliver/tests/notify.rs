//! Notifiers against local capture servers with the receivers' real answers:
//! one conformance suite every notifier passes, Slack's payloads as snapshots
//! and its error answers as typed errors, and signatures verified with the
//! Standard Webhooks crate.
#![cfg(all(feature = "slack", feature = "webhook-notify", feature = "testing"))]

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use uncensored_deliver::notify::{Notifier, NotifyError, SignedWebhookNotifier, SlackNotifier};
use uncensored_deliver::testing::notify::{conformance, failed, stored};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const SLACK_PATH: &str = "/services/T000/B000/XXXXsecretXXXX";
const SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn slack(base: &str) -> SlackNotifier {
    SlackNotifier::new(format!("{base}{SLACK_PATH}")).with_min_interval(Duration::from_millis(1))
}

#[tokio::test]
async fn slack_conforms() {
    conformance(|base| Arc::new(slack(base)), "XXXXsecretXXXX").await;
}

#[tokio::test]
async fn signed_webhook_conforms() {
    conformance(
        |base| {
            Arc::new(SignedWebhookNotifier::new(format!("{base}/hook"), SIGNING_SECRET).unwrap())
        },
        SIGNING_SECRET,
    )
    .await;
}

#[test]
fn slack_messages_are_block_kit() {
    insta::assert_json_snapshot!(
        "slack_stored_with_image",
        SlackNotifier::message(&stored(Some(
            "https://s3.example/x.jpg?X-Amz-Signature=abc"
        )))
    );
    insta::assert_json_snapshot!(
        "slack_stored_link_only",
        SlackNotifier::message(&stored(None))
    );
    insta::assert_json_snapshot!("slack_failed", SlackNotifier::message(&failed()));
}

#[tokio::test]
async fn slack_errors_are_typed_and_not_retried() {
    for (status, text) in [
        (400, "invalid_payload"),
        (403, "action_prohibited"),
        (404, "no_service"),
        (404, "channel_not_found"),
        (410, "channel_is_archived"),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_string(text))
            .mount(&server)
            .await;
        let error = slack(&server.uri())
            .notify(&stored(None))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, NotifyError::Rejected { reason, .. } if reason.starts_with(text)),
            "{error}"
        );
        assert!(!error.is_retryable());
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            1,
            "{text} must not be retried"
        );
    }
}

#[tokio::test]
async fn one_call_is_one_attempt_and_says_when_to_retry() {
    for (status, retry_after, expected) in [
        (429u16, Some("7"), Some(Duration::from_secs(7))),
        (503, Some("2"), Some(Duration::from_secs(2))),
        (500, None, None),
    ] {
        let server = MockServer::start().await;
        let mut answer = ResponseTemplate::new(status).set_body_string("busy");
        if let Some(value) = retry_after {
            answer = answer.insert_header("retry-after", value);
        }
        Mock::given(method("POST"))
            .respond_with(answer)
            .mount(&server)
            .await;
        for notifier in [
            Arc::new(slack(&server.uri())) as Arc<dyn Notifier>,
            Arc::new(
                SignedWebhookNotifier::new(format!("{}/hook", server.uri()), SIGNING_SECRET)
                    .unwrap(),
            ),
        ] {
            let error = notifier.notify(&stored(None)).await.unwrap_err();
            assert!(error.is_retryable(), "{status}: {error}");
            assert_eq!(error.retry_after(), expected, "{status}: {error}");
            assert_eq!(
                matches!(error, NotifyError::RateLimited { .. }),
                status == 429
            );
        }
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            2,
            "HTTP {status}: one POST per call and notifier, no retry inside"
        );
    }

    // An HTTP date is read by the same parser as seconds.
    let server = MockServer::start().await;
    let later = (chrono::Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", later.as_str()))
        .mount(&server)
        .await;
    let error = slack(&server.uri())
        .notify(&stored(None))
        .await
        .unwrap_err();
    let wait = error.retry_after().expect("an HTTP date is understood");
    assert!(
        wait > Duration::from_secs(80) && wait <= Duration::from_secs(90),
        "{wait:?}"
    );
}

#[test]
fn a_notifier_is_known_by_its_destination_not_its_kind() {
    let a = slack("https://hooks.example.com/A");
    let b = slack("https://hooks.example.com/B");
    assert_ne!(a.id(), b.id(), "two Slack webhooks are two notifiers");
    assert_eq!(a.id(), slack("https://hooks.example.com/A").id());
    assert!(a.id().as_str().starts_with("slack:"));
    assert!(
        !a.id().as_str().contains("hooks.example.com") && !a.id().as_str().contains(SLACK_PATH),
        "the id never shows the secret URL"
    );
}

#[tokio::test]
async fn signed_webhooks_verify_with_the_standard_webhooks_crate() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let notifier =
        SignedWebhookNotifier::new(format!("{}/hook", server.uri()), SIGNING_SECRET).unwrap();
    notifier
        .notify(&stored(Some("https://s3.example/x.jpg")))
        .await
        .unwrap();
    let request = &server.received_requests().await.unwrap()[0];
    let verifier = standardwebhooks::Webhook::new(SIGNING_SECRET).unwrap();
    verifier
        .verify(&request.body, &request.headers)
        .expect("a valid Standard Webhooks signature");
    assert_eq!(
        request.headers["webhook-id"],
        "msg_550e8400-e29b-41d4-a716-446655440000_stored"
    );
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["type"], "image.stored");
    assert_eq!(body["data"]["sha256"], "ab".repeat(32));

    // A tampered body fails verification.
    let mut tampered = request.body.clone();
    tampered[10] ^= 1;
    assert!(verifier.verify(&tampered, &request.headers).is_err());
    assert!(SignedWebhookNotifier::new("http://x", "not base64!").is_err());
}

/// A rotation of the signing secret: the request carries one signature per
/// secret, so a receiver that verifies with only the old secret and one that
/// verifies with only the new both accept it, and a third secret does not.
#[tokio::test]
async fn a_rotated_signing_secret_is_accepted_by_old_and_new_receivers() {
    const NEW_SECRET: &str = "whsec_C2VjcmV0LW5ldy1zZWNyZXQtbmV3LXNlY3JldA==";
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let notifier = SignedWebhookNotifier::new(format!("{}/hook", server.uri()), NEW_SECRET)
        .unwrap()
        .with_previous(SIGNING_SECRET)
        .unwrap();
    notifier
        .notify(&stored(Some("https://s3.example/x.jpg")))
        .await
        .unwrap();
    let request = &server.received_requests().await.unwrap()[0];
    let header = request.headers["webhook-signature"].to_str().unwrap();
    assert_eq!(header.split(' ').count(), 2, "{header}");
    assert!(header.split(' ').all(|s| s.starts_with("v1,")), "{header}");
    for secret in [SIGNING_SECRET, NEW_SECRET] {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&request.body, &request.headers)
            .unwrap_or_else(|e| panic!("a receiver with one of the secrets: {e:?}"));
    }
    let stranger =
        standardwebhooks::Webhook::new("whsec_b3RoZXItb3RoZXItb3RoZXItb3RoZXI=").unwrap();
    assert!(stranger.verify(&request.body, &request.headers).is_err());
    let shown = format!("{notifier:?}");
    assert!(
        !shown.contains("MfKQ9r8") && !shown.contains("C2VjcmV0"),
        "{shown}"
    );
}
