//! Notifications to any HTTP endpoint as JSON, signed per Standard Webhooks
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`) so that the
//! receiver can verify them with any Standard Webhooks library.
//!
//! **Rotation**: a notifier may sign with previous secrets too
//! ([`SignedWebhookNotifier::with_previous`]). Standard Webhooks lets one
//! header carry several signatures (`v1,SIG v1,SIG`, space-separated); a
//! receiver accepts the request when any of them verifies, so receivers
//! still holding the old secret and those already given the new one both
//! accept every request while the rotation lasts.

use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

use super::{Notification, Notifier, NotifierId, NotifyError};

/// Posts signed JSON notifications. The signing secret never appears in
/// `Debug`, errors or logs.
pub struct SignedWebhookNotifier {
    url: String,
    secret: SecretString,
    previous: Vec<SecretString>,
    http: reqwest::Client,
}

/// The most previous secrets a [`SignedWebhookNotifier`] signs with.
pub const MAX_PREVIOUS_WEBHOOK_SECRETS: usize = 8;

fn bad_secret(reason: &str) -> NotifyError {
    NotifyError::Rejected {
        notifier: "webhook",
        reason: reason.into(),
        source: None,
    }
}

/// `secret`, when Standard Webhooks can sign with it.
fn signing_secret(secret: String) -> Result<SecretString, NotifyError> {
    let secret = SecretString::from(secret);
    standardwebhooks::Webhook::new(secret.expose_secret())
        .map_err(|_| bad_secret("the signing secret is not `whsec_` followed by base64"))?;
    Ok(secret)
}

impl std::fmt::Debug for SignedWebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL's path and query often carry a token of their own: only
        // its origin is shown.
        let origin = url::Url::parse(&self.url)
            .map(|url| format!("{}/…", url.origin().ascii_serialization()))
            .unwrap_or_else(|_| "…".into());
        f.debug_struct("SignedWebhookNotifier")
            .field("url", &origin)
            .field("secret", &"[redacted]")
            .field("previous", &self.previous.len())
            .finish()
    }
}

impl SignedWebhookNotifier {
    /// A notifier posting to `url`, signing with `secret` (`whsec_` + base64,
    /// as Standard Webhooks secrets are written).
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Result<Self, NotifyError> {
        let secret = signing_secret(secret.into())?;
        let http = super::http_client(Duration::from_secs(15));
        Ok(Self {
            url: url.into(),
            secret,
            previous: Vec::new(),
            http,
        })
    }

    /// Also signs with `previous` (one more signature in the header), so
    /// that receivers not yet given the current secret still verify. At
    /// most [`MAX_PREVIOUS_WEBHOOK_SECRETS`]; one equal to a secret already
    /// held is ignored.
    pub fn with_previous(mut self, previous: impl Into<String>) -> Result<Self, NotifyError> {
        let previous = signing_secret(previous.into())?;
        let known = std::iter::once(&self.secret)
            .chain(&self.previous)
            .any(|s| s.expose_secret() == previous.expose_secret());
        if known {
            return Ok(self);
        }
        if self.previous.len() >= MAX_PREVIOUS_WEBHOOK_SECRETS {
            return Err(bad_secret(&format!(
                "at most {MAX_PREVIOUS_WEBHOOK_SECRETS} previous signing secrets are kept"
            )));
        }
        self.previous.push(previous);
        Ok(self)
    }

    /// The `webhook-signature` header: one `v1,SIG` per secret, the
    /// current one first, space-separated.
    fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        std::iter::once(&self.secret)
            .chain(&self.previous)
            .map(|secret| {
                standardwebhooks::Webhook::new(secret.expose_secret())
                    .expect("checked when added")
                    .sign(id, timestamp, body)
                    .expect("JSON is UTF-8")
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[async_trait::async_trait]
impl Notifier for SignedWebhookNotifier {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn id(&self) -> NotifierId {
        NotifierId::new("webhook", &self.url)
    }

    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        let now = chrono::Utc::now();
        let body = serde_json::to_vec(&json!({
            "type": format!("image.{}", notification.kind()),
            "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "data": notification,
        }))
        .expect("a notification serialises");
        // The same id for the same job and event, so a receiver can drop repeats.
        let id = format!(
            "msg_{}_{}",
            notification.job_id().unwrap_or("none"),
            notification.kind()
        );
        let signature = self.signature(&id, now.timestamp(), &body);
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(standardwebhooks::HEADER_WEBHOOK_ID, &id)
            .header(
                standardwebhooks::HEADER_WEBHOOK_TIMESTAMP,
                now.timestamp().to_string(),
            )
            .header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| NotifyError::unreachable("webhook", e))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(NotifyError::from_status(
                "webhook",
                status,
                response.headers(),
                format!("HTTP {status}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_neither_the_secret_nor_the_url_token() {
        let notifier = SignedWebhookNotifier::new(
            "https://hooks.example.com/in/T0KEN-IN-PATH?key=T0KEN-IN-QUERY",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .unwrap();
        let shown = format!("{notifier:?}");
        for secret in [
            "T0KEN-IN-PATH",
            "T0KEN-IN-QUERY",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("https://hooks.example.com"), "{shown}");
    }

    const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NEW: &str = "whsec_C2VjcmV0LW5ldy1zZWNyZXQtbmV3LXNlY3JldA==";

    #[test]
    fn a_rotated_notifier_is_verified_by_the_old_secret_and_by_the_new() {
        let notifier = SignedWebhookNotifier::new("https://h.example/hook", NEW)
            .unwrap()
            .with_previous(OLD)
            .unwrap()
            .with_previous(NEW)
            .unwrap();
        let body = br#"{"type":"image.stored"}"#;
        let now = chrono::Utc::now().timestamp();
        let signature = notifier.signature("msg_1", now, body);
        assert_eq!(signature.split(' ').count(), 2, "{signature}");
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("webhook-id", "msg_1".parse().unwrap());
        headers.insert("webhook-timestamp", now.to_string().parse().unwrap());
        headers.insert("webhook-signature", signature.parse().unwrap());
        for secret in [OLD, NEW] {
            standardwebhooks::Webhook::new(secret)
                .unwrap()
                .verify(body, &headers)
                .unwrap_or_else(|e| panic!("{secret}: {e:?}"));
        }
        let other = "whsec_b3RoZXItb3RoZXItb3RoZXItb3RoZXI=";
        assert!(
            standardwebhooks::Webhook::new(other)
                .unwrap()
                .verify(body, &headers)
                .is_err()
        );
        let shown = format!("{notifier:?}");
        assert!(
            !shown.contains("MfKQ9r8") && !shown.contains("C2Vjcm"),
            "{shown}"
        );
        let bad = SignedWebhookNotifier::new("https://h.example/hook", NEW)
            .unwrap()
            .with_previous("whsec_not base64!")
            .unwrap_err();
        assert!(!bad.to_string().contains("not base64"), "{bad}");
    }
}
