//! Notifications to any HTTP endpoint as JSON, signed per Standard Webhooks
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`) so that the
//! receiver can verify them with any Standard Webhooks library.

use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

use super::{Notification, Notifier, NotifierId, NotifyError};

/// Posts signed JSON notifications. The signing secret never appears in
/// `Debug`, errors or logs.
pub struct SignedWebhookNotifier {
    url: String,
    secret: SecretString,
    http: reqwest::Client,
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
            .finish()
    }
}

impl SignedWebhookNotifier {
    /// A notifier posting to `url`, signing with `secret` (`whsec_` + base64,
    /// as Standard Webhooks secrets are written).
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Result<Self, NotifyError> {
        let secret = SecretString::from(secret.into());
        standardwebhooks::Webhook::new(secret.expose_secret()).map_err(|_| {
            NotifyError::Rejected {
                notifier: "webhook",
                reason: "the signing secret is not `whsec_` followed by base64".into(),
                source: None,
            }
        })?;
        let http = super::http_client(Duration::from_secs(15));
        Ok(Self {
            url: url.into(),
            secret,
            http,
        })
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
        let signer =
            standardwebhooks::Webhook::new(self.secret.expose_secret()).expect("checked in new");
        let signature = signer
            .sign(&id, now.timestamp(), &body)
            .expect("JSON is UTF-8");
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
}
