//! Slack incoming webhooks: a Block Kit message per notification, an image
//! block when a shareable URL exists, about one message per second (a 429's
//! Retry-After holds every later message back too), and Slack's plain-text
//! errors as typed errors. One attempt per call: the Deliverer retries.

use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::ERROR_BODY_BYTES;
use super::{Notification, Notifier, NotifierId, NotifyError, clip};
use crate::StoredImage;

/// Slack's documented error answers of incoming webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlackError {
    /// `invalid_payload`: the message is malformed.
    InvalidPayload,
    /// `no_service`: the webhook was disabled or removed.
    NoService,
    /// `channel_not_found`.
    ChannelNotFound,
    /// `channel_is_archived`.
    ChannelIsArchived,
    /// `action_prohibited`: an admin restriction.
    ActionProhibited,
    /// Any other text Slack answered.
    Other(String),
}

impl SlackError {
    /// Reads Slack's error text.
    pub fn parse(text: &str) -> Self {
        match text.trim() {
            "invalid_payload" => Self::InvalidPayload,
            "no_service" => Self::NoService,
            "channel_not_found" => Self::ChannelNotFound,
            "channel_is_archived" => Self::ChannelIsArchived,
            "action_prohibited" => Self::ActionProhibited,
            other => Self::Other(other.chars().take(100).collect()),
        }
    }

    /// What to do about it.
    pub fn advice(&self) -> &'static str {
        match self {
            Self::InvalidPayload => "invalid_payload: Slack refused the message's format",
            Self::NoService => {
                "no_service: the webhook URL was disabled or removed; create a new incoming webhook"
            }
            Self::ChannelNotFound => "channel_not_found: the webhook's channel no longer exists",
            Self::ChannelIsArchived => {
                "channel_is_archived: unarchive the channel or use another webhook"
            }
            Self::ActionProhibited => "action_prohibited: a workspace admin restricts this webhook",
            Self::Other(_) => "Slack refused the message",
        }
    }
}

/// Posts notifications to a Slack incoming webhook. The URL is a secret: it
/// never appears in `Debug`, errors or logs.
pub struct SlackNotifier {
    url: SecretString,
    http: reqwest::Client,
    min_interval: Duration,
    next_slot: Mutex<Instant>,
    /// Turns taken by [`Notifier::ready`] and not yet used by `notify`.
    ready: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for SlackNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackNotifier")
            .field("url", &"[redacted]")
            .field("min_interval", &self.min_interval)
            .finish()
    }
}

impl SlackNotifier {
    /// A notifier for an incoming webhook URL, sending at most one message per second.
    pub fn new(webhook_url: impl Into<String>) -> Self {
        Self {
            url: SecretString::from(webhook_url.into()),
            http: super::http_client(Duration::from_secs(15)),
            min_interval: Duration::from_secs(1),
            next_slot: Mutex::new(Instant::now()),
            ready: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The pause between messages (default 1 s, Slack's documented pace).
    pub fn with_min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// The Block Kit message this notifier sends for `notification`.
    pub fn message(notification: &Notification) -> Value {
        payload(notification)
    }

    /// Waits for this message's turn (about one per `min_interval`).
    async fn pace(&self) {
        let slot = {
            let mut next = self.next_slot.lock().await;
            let slot = (*next).max(Instant::now());
            *next = slot + self.min_interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// Escapes text for Slack's mrkdwn.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Block Kit message for a notification.
fn payload(notification: &Notification) -> Value {
    match notification {
        Notification::Stored(StoredImage {
            job_id,
            prompt,
            model,
            width,
            height,
            generation_time,
            location,
            share_url,
            ..
        }) => {
            let mut facts = Vec::new();
            if let Some(model) = model {
                facts.push(format!("`{}`", escape(model)));
            }
            if let (Some(w), Some(h)) = (width, height) {
                facts.push(format!("{w}×{h}"));
            }
            if let Some(seconds) = generation_time {
                facts.push(format!("{seconds:.1} s"));
            }
            let mut blocks = vec![
                json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Image ready* · {}", facts.join(" · "))}}),
                json!({"type": "section", "text": {"type": "mrkdwn", "text": format!(">{}", clip(&escape(prompt), 2900))}}),
            ];
            if let Some(url) = share_url {
                blocks.push(
                    json!({"type": "image", "image_url": url, "alt_text": clip(prompt, 1900)}),
                );
            }
            let place = match share_url {
                Some(url) => format!("<{url}|Open the image> · stored at `{}`", escape(location)),
                None => format!("Stored at `{}`", escape(location)),
            };
            blocks.push(json!({"type": "context", "elements": [
                {"type": "mrkdwn", "text": format!("{place} · job `{}`", escape(job_id))}
            ]}));
            json!({"text": clip(&format!("Image ready: {}", escape(prompt)), 2900), "blocks": blocks})
        }
        Notification::Failed {
            job_id,
            prompt,
            reason,
            message,
        } => {
            let job = job_id
                .as_deref()
                .map(|id| format!(" · job `{}`", escape(id)))
                .unwrap_or_default();
            json!({
                "text": clip(&format!("Generation failed ({reason}): {}", escape(prompt)), 2900),
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": format!(":warning: *Generation failed* · `{}`", reason.as_str())}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": format!(">{}", clip(&escape(prompt), 2900))}},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("{}{job}", clip(&escape(message), 2800))}]},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("Next: {}", reason.advice())}]}
                ]
            })
        }
    }
}

#[async_trait::async_trait]
impl Notifier for SlackNotifier {
    fn kind(&self) -> &'static str {
        "slack"
    }

    fn id(&self) -> NotifierId {
        NotifierId::new("slack", self.url.expose_secret())
    }

    async fn ready(&self) {
        self.pace().await;
        self.ready.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        // A turn waited for by `ready` is used at once; else this waits for one.
        let prepaid = self
            .ready
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok();
        if !prepaid {
            self.pace().await;
        }
        let response = self
            .http
            .post(self.url.expose_secret())
            .json(&payload(notification))
            .send()
            .await
            .map_err(|e| NotifyError::unreachable("slack", e))?;
        let (status, headers) = (response.status(), response.headers().clone());
        if status.is_success() {
            return Ok(());
        }
        let text = uncensored::body_prefix(response, ERROR_BODY_BYTES).await;
        let error = NotifyError::from_status(
            "slack",
            status,
            &headers,
            if status.is_server_error() {
                format!("HTTP {status}: {}", clip(&text, 100))
            } else {
                SlackError::parse(&text).advice().to_string()
            },
        );
        if let NotifyError::RateLimited { retry_after, .. } = &error {
            // Hold every later message back too, for five minutes at most
            // (the Deliverer decides whether this message waits that long).
            let wait = retry_after
                .unwrap_or(self.min_interval)
                .min(Duration::from_secs(300));
            tracing::warn!(?wait, "slack: rate limited");
            *self.next_slot.lock().await = Instant::now() + wait;
        }
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn messages_are_paced_one_interval_apart() {
        let slack =
            SlackNotifier::new("http://127.0.0.1:9/hook").with_min_interval(Duration::from_secs(1));
        let start = Instant::now();
        let mut turns = Vec::new();
        for _ in 0..3 {
            slack.pace().await;
            turns.push(Instant::now() - start);
        }
        assert_eq!(
            turns,
            [
                Duration::ZERO,
                Duration::from_secs(1),
                Duration::from_secs(2)
            ]
        );
    }

    #[test]
    fn the_fallback_text_cannot_ping_or_link() {
        let prompt = "<!channel> <!here> <@U123> <https://evil.example|click> & more";
        for notification in [
            Notification::Failed {
                job_id: None,
                prompt: prompt.into(),
                reason: uncensored::FailureReason::Moderation,
                message: "<!everyone>".into(),
            },
            Notification::Stored(StoredImage {
                job_id: "job-1".into(),
                prompt: prompt.into(),
                name: "a.jpg".into(),
                location: "file:///images/a.jpg".into(),
                share_url: None,
                sha256: "00".repeat(32),
                size: None,
                model: None,
                width: None,
                height: None,
                generation_time: None,
                created_at: chrono::Utc::now(),
            }),
        ] {
            let body = payload(&notification).to_string();
            for control in ["<!", "<@", "<https://evil"] {
                assert!(!body.contains(control), "{control} in {body}");
            }
            assert!(body.contains("&lt;!channel&gt;"), "{body}");
        }
    }

    #[test]
    fn slack_error_texts_are_typed() {
        assert_eq!(
            SlackError::parse("invalid_payload"),
            SlackError::InvalidPayload
        );
        assert_eq!(SlackError::parse("no_service\n"), SlackError::NoService);
        assert_eq!(
            SlackError::parse("channel_is_archived"),
            SlackError::ChannelIsArchived
        );
        assert!(matches!(
            SlackError::parse("something_new"),
            SlackError::Other(_)
        ));
    }
}
