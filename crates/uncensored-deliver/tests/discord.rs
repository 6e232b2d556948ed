//! The Discord notifier against a local capture server with Discord's real
//! answers: the conformance suite, the messages as snapshots, Discord's limits
//! and markdown, its JSON errors and rate limits as typed errors, and the
//! webhook token kept out of `Debug`, errors and ids.
#![cfg(all(feature = "discord", feature = "testing"))]

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use uncensored_deliver::notify::{DiscordNotifier, Notification, Notifier, NotifyError};
use uncensored_deliver::testing::notify::{conformance, failed, stored};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const WEBHOOK_ID: &str = "112233445566778899";
const TOKEN: &str = "XXXXdiscordSecretTokenXXXX";

fn discord(base: &str) -> DiscordNotifier {
    DiscordNotifier::new(format!("{base}/api/webhooks/{WEBHOOK_ID}/{TOKEN}"))
}

async fn answering(status: u16, body: &str, retry_after: Option<&str>) -> MockServer {
    let server = MockServer::start().await;
    let mut answer =
        ResponseTemplate::new(status).set_body_raw(body.as_bytes().to_vec(), "application/json");
    if let Some(value) = retry_after {
        answer = answer.insert_header("retry-after", value);
    }
    Mock::given(method("POST"))
        .respond_with(answer)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn discord_conforms() {
    conformance(|base| Arc::new(discord(base)), TOKEN).await;
}

#[test]
fn discord_messages_are_embeds() {
    insta::assert_json_snapshot!(
        "discord_stored_with_image",
        DiscordNotifier::message(&stored(Some(
            "https://s3.example/x.jpg?X-Amz-Signature=abc"
        )))
    );
    insta::assert_json_snapshot!(
        "discord_stored_link_only",
        DiscordNotifier::message(&stored(None))
    );
    insta::assert_json_snapshot!("discord_failed", DiscordNotifier::message(&failed()));
}

#[tokio::test]
async fn the_message_is_posted_to_the_webhook_and_waits_when_asked() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/api/webhooks/{WEBHOOK_ID}/{TOKEN}")))
        .and(query_param("wait", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"id": "1"}"#))
        .expect(1)
        .mount(&server)
        .await;
    let notification = stored(Some("https://s3.example/x.jpg"));
    // The Apprise parts and another base URL: the same webhook path.
    DiscordNotifier::from_parts(WEBHOOK_ID, TOKEN)
        .with_base_url(&server.uri())
        .with_wait(true)
        .notify(&notification)
        .await
        .unwrap();
    let request = &server.received_requests().await.unwrap()[0];
    assert_eq!(request.headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body, DiscordNotifier::message(&notification));
    assert_eq!(
        body["embeds"][0]["image"]["url"],
        "https://s3.example/x.jpg"
    );
}

#[test]
fn prompts_are_escaped_clipped_and_never_ping() {
    let long = Notification::Failed {
        job_id: Some("job-1".into()),
        prompt: format!("@everyone **bold** [link](https://x) {}", "y".repeat(6000)),
        reason: uncensored::FailureReason::Moderation,
        message: "m".repeat(3000),
    };
    let message = DiscordNotifier::message(&long);
    let embed = &message["embeds"][0];
    let description = embed["description"].as_str().unwrap();
    assert!(description.starts_with(r"\@everyone \*\*bold\*\* \[link\](https://x) "));
    assert_eq!(description.chars().count(), 4096);
    assert!(description.ends_with('…'));
    assert!(message["content"].as_str().unwrap().chars().count() <= 2000);
    assert_eq!(message["allowed_mentions"]["parse"], serde_json::json!([]));
    let mut total = embed["title"].as_str().unwrap().chars().count() + description.chars().count();
    for field in embed["fields"].as_array().unwrap() {
        let value = field["value"].as_str().unwrap().chars().count();
        assert!(value <= 1024, "{field}");
        total += value + field["name"].as_str().unwrap().chars().count();
    }
    total += embed["footer"]["text"].as_str().unwrap().chars().count();
    assert!(
        total <= 6000,
        "an embed holds at most 6000 characters, not {total}"
    );
    assert_eq!(embed["fields"][0]["value"], "moderation");
    assert_eq!(
        embed["fields"][2]["value"]
            .as_str()
            .unwrap()
            .replace('\\', ""),
        uncensored::FailureReason::Moderation.advice()
    );
}

#[tokio::test]
async fn discord_refusals_are_typed_and_not_retried() {
    for (status, body, wanted) in [
        (
            404,
            r#"{"message": "Unknown Webhook", "code": 10015}"#,
            "Unknown Webhook (code 10015); the webhook was deleted",
        ),
        (
            401,
            r#"{"message": "Invalid Webhook Token", "code": 50027}"#,
            "Invalid Webhook Token (code 50027); the webhook's token is wrong",
        ),
        (
            400,
            r#"{"message": "Invalid Form Body", "code": 50035, "errors": {}}"#,
            "Invalid Form Body (code 50035)",
        ),
        (403, "<html>forbidden</html>", "HTTP 403 Forbidden"),
    ] {
        let server = answering(status, body, None).await;
        let error = discord(&server.uri())
            .notify(&stored(None))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, NotifyError::Rejected { reason, .. } if reason.contains(wanted)),
            "{status}: {error}"
        );
        assert!(!error.is_retryable());
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn rate_limits_and_outages_say_when_to_retry() {
    for (status, body, header, expected, limited) in [
        // Discord sends both; the header, read by the shared parser, wins.
        (
            429,
            r#"{"message": "You are being rate limited.", "retry_after": 9.5, "global": false}"#,
            Some("3"),
            Some(Duration::from_secs(3)),
            true,
        ),
        // Without the header, the body's seconds (fractions too).
        (
            429,
            r#"{"message": "You are being rate limited.", "retry_after": 1.25, "global": true}"#,
            None,
            Some(Duration::from_millis(1250)),
            true,
        ),
        (429, "", None, None, true),
        (503, "", Some("2"), Some(Duration::from_secs(2)), false),
        (
            500,
            r#"{"message": "500: Internal Server Error", "code": 0}"#,
            None,
            None,
            false,
        ),
        (502, "bad gateway", None, None, false),
    ] {
        let server = answering(status, body, header).await;
        let error = discord(&server.uri()).notify(&failed()).await.unwrap_err();
        assert!(error.is_retryable(), "{status}: {error}");
        assert_eq!(error.retry_after(), expected, "{status} {body}: {error}");
        assert_eq!(
            matches!(error, NotifyError::RateLimited { .. }),
            limited,
            "{error}"
        );
        assert!(matches!(
            error,
            NotifyError::RateLimited { .. } | NotifyError::Unavailable { .. }
        ));
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            1,
            "HTTP {status}: one POST per call"
        );
    }
}

#[tokio::test]
async fn the_token_never_shows() {
    // Even an answer that repeats the URL does not bring the token into the error.
    let server = answering(
        400,
        &format!(r#"{{"message": "bad webhook /api/webhooks/{WEBHOOK_ID}/{TOKEN}", "code": 1}}"#),
        None,
    )
    .await;
    let notifier = discord(&server.uri());
    let error = notifier.notify(&stored(None)).await.unwrap_err();
    let shown = format!("{error} {error:?} {notifier:?} {}", notifier.id());
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");

    let dead = discord("http://127.0.0.1:9");
    let error = dead.notify(&stored(None)).await.unwrap_err();
    assert!(!format!("{error} {error:?}").contains(TOKEN));
}

#[test]
fn a_discord_notifier_is_known_by_its_webhook() {
    let a = DiscordNotifier::from_parts("1", "token-a");
    assert_eq!(
        a.id(),
        DiscordNotifier::new("https://discord.com/api/webhooks/1/token-a").id(),
        "the Apprise parts and the full URL are one destination"
    );
    assert_ne!(a.id(), DiscordNotifier::from_parts("1", "token-b").id());
    assert!(a.id().as_str().starts_with("discord:"));
    assert!(!a.id().as_str().contains("token-a"));
    assert_eq!(a.kind(), "discord");
}
