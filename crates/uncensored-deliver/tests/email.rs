//! The email notifier against a real SMTP server on loopback (aiosmtpd,
//! started by `uncensored_test_servers::smtp()`, which requires a login):
//! what arrives (subject, sender, recipients, both bodies, the attachment
//! under the cap and only a link above it), a refused login found by
//! `check()` and named, SMTP's transient and permanent answers typed, an
//! unreachable server retryable, the Apprise-style URLs, and the password
//! never shown.
#![cfg(all(feature = "email", feature = "testing"))]

use std::time::Duration;

use uncensored::FailureReason;
use uncensored_deliver::notify::{EmailConfig, EmailNotifier, Notifier, NotifyError, SmtpTls};
use uncensored_deliver::testing::notify::{failed, stored};
use uncensored_test_servers::{
    SMTP_PASSWORD, SMTP_PERMANENT_FAILURE, SMTP_TRANSIENT_FAILURE, SMTP_USER, SmtpMessage,
    SmtpServer,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SENDER: &str = "Uncensored <images@example.com>";
const TO_A: &str = "a@example.com";
const TO_B: &str = "b+tag@example.org";

fn config(server: &SmtpServer) -> EmailConfig {
    EmailConfig::new(&server.host, SmtpTls::None)
        .port(server.port)
        .credentials(SMTP_USER, SMTP_PASSWORD)
        .from(SENDER)
        .to(TO_A)
        .to(TO_B)
}

fn notifier(config: EmailConfig) -> EmailNotifier {
    EmailNotifier::new(config)
        .unwrap()
        .with_timeout(Duration::from_secs(10))
}

/// The one message the server accepted.
fn only_message(server: &SmtpServer) -> SmtpMessage {
    let mut messages = server.wait_for_messages(1);
    assert_eq!(messages.len(), 1, "one message per notification");
    messages.remove(0)
}

fn text_and_html(message: &SmtpMessage) -> (String, String) {
    (
        message.part("text/plain").expect("a text part").text(),
        message.part("text/html").expect("an HTML part").text(),
    )
}

/// The image a capture server hands out at a shareable URL.
async fn share_server(bytes: &[u8]) -> (MockServer, String) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/images/550e8400.jpg"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(bytes.to_vec(), "image/jpeg"))
        .mount(&server)
        .await;
    let url = format!("{}/images/550e8400.jpg?X-Amz-Signature=abc", server.uri());
    (server, url)
}

fn jpeg(size: usize) -> Vec<u8> {
    let mut bytes = vec![0xff, 0xd8, 0xff, 0xe0];
    bytes.extend((0..size - 4).map(|i| (i % 251) as u8));
    bytes
}

#[test]
fn email_contents_as_snapshots() {
    let notifier = EmailNotifier::new(
        EmailConfig::new("smtp.example.com", SmtpTls::StartTls)
            .from(SENDER)
            .to(TO_A),
    )
    .unwrap();
    for (name, notification) in [
        (
            "email_stored_with_link",
            stored(Some("https://s3.example/x.jpg?X-Amz-Signature=abc")),
        ),
        ("email_stored_location_only", stored(None)),
        ("email_failed", failed()),
    ] {
        let content = notifier.content(&notification);
        insta::assert_snapshot!(
            name,
            format!(
                "Subject: {}\n\n--- text/plain\n{}\n--- text/html\n{}",
                content.subject, content.text, content.html
            )
        );
    }
}

#[tokio::test]
async fn a_stored_image_arrives_with_its_subject_recipients_and_both_bodies() {
    let Some(server) = uncensored_test_servers::smtp() else {
        return;
    };
    let email = notifier(config(&server));
    email.check().await.expect("the login is accepted");
    let notification = stored(Some("https://s3.example/x.jpg?X-Amz-Signature=abc"));
    email.notify(&notification).await.unwrap();

    let message = only_message(&server);
    assert_eq!(message.login.as_deref(), Some(SMTP_USER));
    assert_eq!(message.mail_from, "images@example.com");
    assert_eq!(message.rcpt_tos, [TO_A, TO_B]);
    assert_eq!(
        message.header("Subject").as_deref(),
        Some("[uncensored] Image ready: a lighthouse at dusk, <oil> & painting")
    );
    assert_eq!(message.header("From").as_deref(), Some(SENDER));
    let to = message.header("To").unwrap();
    assert!(to.contains(TO_A) && to.contains(TO_B), "{to}");
    assert_eq!(
        message.header("Message-ID").as_deref(),
        Some("<550e8400-e29b-41d4-a716-446655440000.stored@uncensored.notify>"),
        "one Message-ID per job and event, so a repeat is one message"
    );
    let (text, html) = text_and_html(&message);
    for fact in [
        "a lighthouse at dusk, <oil> & painting",
        "Model: model-pro",
        "Size: 1024×768",
        "Time: 12.5 s",
        "Stored at: s3://images/2026-05-09/550e8400.jpg",
        "Open the image: https://s3.example/x.jpg?X-Amz-Signature=abc",
    ] {
        assert!(text.contains(fact), "{fact} in:\n{text}");
    }
    assert!(html.contains("a lighthouse at dusk, &lt;oil&gt; &amp; painting"));
    assert!(!html.contains("<oil>"), "the prompt is escaped in HTML");
    assert!(html.contains("href=\"https://s3.example/x.jpg?X-Amz-Signature=abc\""));
    assert!(message.part("image/").is_none(), "linked, not attached");
}

#[tokio::test]
async fn a_failure_carries_its_reason_message_and_advice() {
    let Some(server) = uncensored_test_servers::smtp() else {
        return;
    };
    notifier(config(&server)).notify(&failed()).await.unwrap();
    let message = only_message(&server);
    assert_eq!(
        message.header("Subject").as_deref(),
        Some("[uncensored] Generation failed (moderation): something the moderator refused")
    );
    let (text, html) = text_and_html(&message);
    let advice = FailureReason::Moderation.advice();
    for part in [&text, &html] {
        assert!(part.contains("moderation"), "{part}");
        assert!(part.contains("Content moderation failed (HTTP 403, permission_error)"));
    }
    assert!(text.contains(&format!("What to do: {advice}")), "{text}");
}

#[tokio::test]
async fn the_image_is_attached_under_the_cap_and_linked_above_it() {
    let Some(server) = uncensored_test_servers::smtp() else {
        return;
    };
    let image = jpeg(20_000);
    let (share, url) = share_server(&image).await;
    let email = notifier(config(&server).attach(true)).with_attachment_cap(20_000);
    email.notify(&stored(Some(&url))).await.unwrap();
    let message = only_message(&server);
    let attachment = message.part("image/jpeg").expect("the image is attached");
    assert_eq!(attachment.filename.as_deref(), Some("550e8400.jpg"));
    assert!(
        attachment.body == image,
        "the attachment is the image, byte for byte"
    );
    let (text, _) = text_and_html(&message);
    assert!(
        text.contains("The image is attached: 550e8400.jpg (19.5 KiB)."),
        "{text}"
    );
    assert!(text.contains(&url), "the link stays: {text}");
    assert_eq!(share.received_requests().await.unwrap().len(), 1);

    // One byte over the cap: a link only.
    let server = uncensored_test_servers::smtp().unwrap();
    let email = notifier(config(&server).attach(true)).with_attachment_cap(19_999);
    email.notify(&stored(Some(&url))).await.unwrap();
    let message = only_message(&server);
    assert!(
        message.part("image/").is_none(),
        "above the cap, linked only"
    );
    let (text, _) = text_and_html(&message);
    assert!(text.contains(&format!("Open the image: {url}")), "{text}");
    assert!(!text.contains("attached"), "{text}");

    // A share URL that fails: still sent, with the link.
    let server = uncensored_test_servers::smtp().unwrap();
    let missing = format!("{}/images/missing.jpg", share.uri());
    notifier(config(&server).attach(true))
        .notify(&stored(Some(&missing)))
        .await
        .unwrap();
    let message = only_message(&server);
    assert!(message.part("image/").is_none());
    assert!(text_and_html(&message).0.contains(&missing));
}

#[tokio::test]
async fn a_refused_login_is_found_by_check_and_names_the_setting() {
    let Some(server) = uncensored_test_servers::smtp() else {
        return;
    };
    let wrong = "WRONGpassword-s3cr3t";
    let email = notifier(
        EmailConfig::new(&server.host, SmtpTls::None)
            .port(server.port)
            .credentials(SMTP_USER, wrong)
            .from(SENDER)
            .to(TO_A),
    );
    let error = email.check().await.unwrap_err();
    let NotifyError::Rejected { reason, .. } = &error else {
        panic!("a refused login is final, not {error:?}");
    };
    assert!(reason.contains("535"), "{reason}");
    assert!(
        reason.contains("password") && reason.contains("credentials"),
        "{reason}"
    );
    assert!(reason.contains(SMTP_USER), "the user is named: {reason}");
    assert!(!error.is_retryable());
    let shown = format!("{error} {error:?} {email:?}");
    assert!(!shown.contains(wrong), "the password shows: {shown}");
    // And sending fails the same way, sending nothing.
    let error = email.notify(&stored(None)).await.unwrap_err();
    assert!(matches!(error, NotifyError::Rejected { .. }), "{error}");
    assert!(!format!("{error} {error:?}").contains(wrong));
    assert!(server.messages().is_empty());

    // Without credentials, the server's 530 names the setting to add.
    let anonymous = notifier(
        EmailConfig::new(&server.host, SmtpTls::None)
            .port(server.port)
            .from(SENDER)
            .to(TO_A),
    );
    anonymous.check().await.expect("connecting needs no login");
    let error = anonymous.notify(&stored(None)).await.unwrap_err();
    assert!(
        matches!(&error, NotifyError::Rejected { reason, .. } if reason.contains("530") && reason.contains("credentials")),
        "{error}"
    );
}

#[tokio::test]
async fn transient_smtp_answers_are_retryable_and_permanent_ones_are_not() {
    let Some(server) = uncensored_test_servers::smtp() else {
        return;
    };
    let to = |recipient: &str| {
        notifier(
            EmailConfig::new(&server.host, SmtpTls::None)
                .port(server.port)
                .credentials(SMTP_USER, SMTP_PASSWORD)
                .from(SENDER)
                .to(recipient),
        )
    };
    let error = to(SMTP_TRANSIENT_FAILURE)
        .notify(&stored(None))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, NotifyError::Unavailable { reason, .. } if reason.contains("451")),
        "{error}"
    );
    assert!(error.is_retryable());
    let error = to(SMTP_PERMANENT_FAILURE)
        .notify(&stored(None))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, NotifyError::Rejected { reason, .. } if reason.contains("550") && reason.contains("recipients")),
        "{error}"
    );
    assert!(!error.is_retryable());
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn starttls_that_the_server_does_not_offer_is_refused_by_check() {
    let Some(server) = uncensored_test_servers::smtp() else {
        return;
    };
    let email = notifier(
        EmailConfig::new(&server.host, SmtpTls::StartTls)
            .port(server.port)
            .credentials(SMTP_USER, SMTP_PASSWORD)
            .from(SENDER)
            .to(TO_A),
    );
    let error = email.check().await.unwrap_err();
    assert!(
        matches!(&error, NotifyError::Rejected { reason, .. } if reason.contains("STARTTLS") && reason.contains("TLS mode")),
        "{error}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_retryable_and_keeps_the_password() {
    // Port 9 (discard) on loopback: nothing listens there.
    let email = EmailNotifier::from_url(
        "mailto://mailer:XXXXsmtpSecretXXXX@127.0.0.1:9?to=a@example.com&from=me@example.com&tls=none",
    )
    .unwrap()
    .with_timeout(Duration::from_secs(5));
    for error in [
        email.check().await.unwrap_err(),
        email.notify(&stored(None)).await.unwrap_err(),
        email.notify(&failed()).await.unwrap_err(),
    ] {
        assert!(error.is_retryable(), "{error}");
        assert!(matches!(error, NotifyError::Unavailable { .. }), "{error}");
        let shown = format!("{error} {error:?} {email:?}");
        assert!(!shown.contains("XXXXsmtpSecretXXXX"), "{shown}");
    }
}

#[tokio::test]
async fn an_apprise_url_sends_with_its_settings() {
    let Some(server) = uncensored_test_servers::smtp() else {
        return;
    };
    let image = jpeg(1000);
    let (_share, url) = share_server(&image).await;
    let email = EmailNotifier::from_url(&format!(
        "mailto://{SMTP_USER}:{SMTP_PASSWORD}@{}?to={TO_A},{}&from=Me%20%3Cme@example.com%3E&attach=yes&tls=none",
        server.address(),
        TO_B.replace('+', "%2B")
    ))
    .unwrap();
    email.check().await.unwrap();
    email.notify(&stored(Some(&url))).await.unwrap();
    let message = only_message(&server);
    assert_eq!(message.mail_from, "me@example.com");
    assert_eq!(message.rcpt_tos, [TO_A, TO_B]);
    assert_eq!(
        message.header("From").as_deref(),
        Some("Me <me@example.com>")
    );
    assert!(message.part("image/jpeg").is_some(), "attach=yes attaches");
}

#[test]
fn apprise_urls_are_read_and_mistakes_named_without_the_password() {
    let secret = "hunter2SECRET";
    for url in [
        format!("mailto://me%40example.com:{secret}@smtp.example.com"),
        format!(
            "mailto://user:{secret}@smtp.example.com:2525?to=a@example.com&from=me@example.com"
        ),
        format!("mailtos://user:{secret}@smtp.example.com/a@example.com?from=me@example.com"),
        "mailto://relay.example.com?to=a@example.com&from=me@example.com".to_string(),
    ] {
        let email = EmailNotifier::from_url(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(email.kind(), "email");
        assert!(!format!("{email:?}").contains(secret));
        assert!(!email.id().as_str().contains(secret));
    }
    for (url, wanted) in [
        (
            format!(
                "mailto://user:{secret}@smtp.example.com?to=a@example.com&from=me@example.com&tls=none"
            ),
            "only allowed to a server on loopback",
        ),
        (
            format!("mailto://user:{secret}@smtp.example.com?to=a@example.com"),
            "from=",
        ),
        (
            format!(
                "mailto://user:{secret}@smtp.example.com?to=a@example.com&from=me@example.com&cc=x@example.com"
            ),
            "unknown setting `cc`",
        ),
        (
            format!(
                "mailto://user:{secret}@smtp.example.com?to=not-an-address&from=me@example.com"
            ),
            "to: `not-an-address` is not an email address",
        ),
        (
            format!(
                "mailto://user:{secret}@smtp.example.com?to=a@example.com&from=me@example.com&attach=maybe"
            ),
            "attach= takes yes or no",
        ),
        (
            format!("smtp://user:{secret}@smtp.example.com?to=a@example.com"),
            "use mailto://",
        ),
        (format!("mailto://user:{secret}@"), "not a URL"),
        (
            "mailto://user@smtp.example.com?to=a@example.com".to_string(),
            "password is missing",
        ),
    ] {
        let error = EmailNotifier::from_url(&url).unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(shown.contains(wanted), "{url}: {shown}");
        assert!(!shown.contains(secret), "{url}: {shown}");
    }
}

#[test]
fn an_email_notifier_is_known_by_its_server_and_recipients() {
    let id = |url: &str| EmailNotifier::from_url(url).unwrap().id();
    let a = id("mailto://u:p1@smtp.example.com?to=a@example.com,b@example.com&from=me@example.com");
    assert_eq!(
        a,
        id(
            "mailto://u:p2@smtp.example.com:587?to=b@example.com,A@example.com&from=other@example.com"
        ),
        "the same server and recipients, whatever the order, password or sender"
    );
    assert_ne!(
        a,
        id("mailtos://u:p1@smtp.example.com?to=a@example.com,b@example.com&from=me@example.com")
    );
    assert_ne!(
        a,
        id("mailto://u:p1@smtp.example.com?to=a@example.com&from=me@example.com")
    );
    assert!(a.as_str().starts_with("email:"));
}
