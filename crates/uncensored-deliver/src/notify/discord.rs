//! Discord incoming webhooks: one message per notification with a short
//! `content` line and one embed (the prompt escaped for Discord's markdown and
//! clipped to Discord's limits, the facts as fields, the image when a
//! shareable URL exists, green for stored and red for failed). Nobody is ever
//! pinged (`allowed_mentions` is empty). Discord's JSON errors become typed
//! errors; a 429's wait is read from `Retry-After` by the shared parser, or
//! from the body's `retry_after` when the header is missing. One attempt per
//! call: the Deliverer retries.

use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use super::ERROR_BODY_BYTES;
use super::{Notification, Notifier, NotifierId, NotifyError, clip};
use crate::StoredImage;

/// Discord's own address, where webhooks live.
const DISCORD: &str = "https://discord.com";

/// The embed colour of a stored image (green).
const STORED_COLOUR: u32 = 0x2e_cc_71;
/// The embed colour of a failure (red).
const FAILED_COLOUR: u32 = 0xe7_4c_3c;

/// Discord's limits, in characters.
mod limit {
    /// A message's `content`.
    pub const CONTENT: usize = 2000;
    /// An embed's title.
    pub const TITLE: usize = 256;
    /// An embed's description.
    pub const DESCRIPTION: usize = 4096;
    /// A field's value.
    pub const FIELD_VALUE: usize = 1024;
    /// A footer's text.
    pub const FOOTER: usize = 2048;
    /// The short line this notifier puts in `content`.
    pub const SUMMARY: usize = 150;
}

/// Posts notifications to a Discord incoming webhook
/// (`https://discord.com/api/webhooks/{id}/{token}`). The URL holds the
/// webhook's token, a secret: it never appears in `Debug`, errors or logs.
pub struct DiscordNotifier {
    url: SecretString,
    wait: bool,
    http: reqwest::Client,
}

impl std::fmt::Debug for DiscordNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordNotifier")
            .field("url", &"[redacted]")
            .field("wait", &self.wait)
            .finish()
    }
}

impl DiscordNotifier {
    /// A notifier for a webhook URL as Discord shows it
    /// (`https://discord.com/api/webhooks/{id}/{token}`; any base URL works,
    /// such as a capture server's in tests).
    pub fn new(webhook_url: impl Into<String>) -> Self {
        Self {
            url: SecretString::from(webhook_url.into()),
            wait: false,
            http: super::http_client(Duration::from_secs(15)),
        }
    }

    /// A notifier for the webhook with this id and token (the two last parts
    /// of its URL, as in Apprise's `discord://WEBHOOK_ID/WEBHOOK_TOKEN`).
    pub fn from_parts(webhook_id: &str, webhook_token: &str) -> Self {
        Self::new(format!(
            "{DISCORD}/api/webhooks/{webhook_id}/{webhook_token}"
        ))
    }

    /// Sends to the same webhook path on another server (`http://127.0.0.1:PORT`
    /// for a capture server): everything before `/api/webhooks/` is replaced.
    pub fn with_base_url(mut self, base_url: &str) -> Self {
        let url = self.url.expose_secret();
        let path = url
            .find("/api/webhooks/")
            .map(|at| &url[at..])
            .unwrap_or_default();
        self.url = SecretString::from(format!("{}{path}", base_url.trim_end_matches('/')));
        self
    }

    /// Asks Discord to answer only once the message is posted (`?wait=true`),
    /// so that a message Discord cannot post is an error here rather than lost.
    pub fn with_wait(mut self, wait: bool) -> Self {
        self.wait = wait;
        self
    }

    /// The JSON message this notifier sends for `notification`.
    pub fn message(notification: &Notification) -> Value {
        payload(notification)
    }

    /// The URL to post to, with `wait=true` added when asked for.
    fn post_url(&self) -> String {
        let url = self.url.expose_secret();
        if !self.wait {
            return url.to_string();
        }
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}wait=true")
    }
}

/// Escapes text for Discord's markdown: a backslash before every character
/// that could start emphasis, a code span, a spoiler, a quote, a masked link
/// or a mention, and before a heading's `#` or a list's `-`, `+` at the start
/// of a line; the text is clipped to `max` characters (with `…`) without
/// cutting an escape in two.
fn escape(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    let total = text.chars().count();
    let mut line_start = true;
    for (index, c) in text.chars().enumerate() {
        let escaped = matches!(
            c,
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '<' | '[' | ']' | '@'
        ) || (line_start && matches!(c, '#' | '-' | '+'));
        line_start = c == '\n' || (line_start && c == ' ');
        let width = if escaped { 2 } else { 1 };
        // Keep room for the ellipsis unless this is the text's last character.
        let room = if index + 1 == total {
            max
        } else {
            max.saturating_sub(1)
        };
        if count + width > room {
            out.push('…');
            return out;
        }
        if escaped {
            out.push('\\');
        }
        out.push(c);
        count += width;
    }
    out
}

fn field(name: &str, value: String, inline: bool) -> Value {
    json!({"name": name, "value": value, "inline": inline})
}

/// The webhook message for a notification.
fn payload(notification: &Notification) -> Value {
    let (content, embed) = match notification {
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
            let mut fields = Vec::new();
            if let Some(model) = model {
                fields.push(field("Model", escape(model, 256), true));
            }
            if let (Some(w), Some(h)) = (width, height) {
                fields.push(field("Size", format!("{w}×{h}"), true));
            }
            if let Some(seconds) = generation_time {
                fields.push(field("Time", format!("{seconds:.1} s"), true));
            }
            fields.push(field(
                "Stored at",
                escape(location, limit::FIELD_VALUE),
                false,
            ));
            let mut embed = json!({
                "title": clip("Image ready", limit::TITLE),
                "description": escape(prompt, limit::DESCRIPTION),
                "color": STORED_COLOUR,
                "fields": fields,
                "footer": {"text": clip(&format!("job {job_id}"), limit::FOOTER)},
            });
            if let Some(url) = share_url {
                embed["url"] = json!(url);
                embed["image"] = json!({"url": url});
            }
            let content = format!("Image ready: {}", escape(prompt, limit::SUMMARY));
            (content, embed)
        }
        Notification::Failed {
            job_id,
            prompt,
            reason,
            message,
        } => {
            let mut embed = json!({
                "title": clip("Generation failed", limit::TITLE),
                "description": escape(prompt, limit::DESCRIPTION),
                "color": FAILED_COLOUR,
                "fields": [
                    field("Reason", reason.as_str().to_string(), true),
                    field("What happened", escape(message, limit::FIELD_VALUE), false),
                    field("What to do", escape(reason.advice(), 512), false),
                ],
            });
            if let Some(job_id) = job_id {
                embed["footer"] = json!({"text": clip(&format!("job {job_id}"), limit::FOOTER)});
            }
            let content = format!(
                "Generation failed ({}): {}",
                reason.as_str(),
                escape(prompt, limit::SUMMARY)
            );
            (content, embed)
        }
    };
    json!({
        "content": clip(&content, limit::CONTENT),
        "embeds": [embed],
        // Never ping anyone, whatever the prompt says.
        "allowed_mentions": {"parse": []},
    })
}

/// Discord's JSON error body: `{"message": "Unknown Webhook", "code": 10015}`
/// (and `retry_after` in seconds on a 429).
fn discord_error(body: &str) -> (Option<String>, Option<u64>, Option<Duration>) {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return (None, None, None);
    };
    let message = value["message"].as_str().map(|m| clip(m, 200));
    let code = value["code"].as_u64();
    let retry_after = value["retry_after"]
        .as_f64()
        .and_then(uncensored::wait_from_seconds);
    (message, code, retry_after)
}

/// What to do about the Discord error codes a webhook meets.
fn advice(code: Option<u64>) -> Option<&'static str> {
    Some(match code? {
        10015 => "the webhook was deleted; create a new one and use its URL",
        50027 => "the webhook's token is wrong; copy the webhook URL again",
        50035 => "Discord refused the message's format",
        50006 => "Discord refused an empty message",
        _ => return None,
    })
}

#[async_trait::async_trait]
impl Notifier for DiscordNotifier {
    fn kind(&self) -> &'static str {
        "discord"
    }

    fn id(&self) -> NotifierId {
        NotifierId::new("discord", self.url.expose_secret())
    }

    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        let response = self
            .http
            .post(self.post_url())
            .json(&payload(notification))
            .send()
            .await
            .map_err(|e| NotifyError::unreachable("discord", e))?;
        let (status, headers) = (response.status(), response.headers().clone());
        if status.is_success() {
            return Ok(());
        }
        let body = uncensored::body_prefix(response, ERROR_BODY_BYTES).await;
        let (message, code, body_retry_after) = discord_error(&body);
        let mut reason = format!("HTTP {status}");
        if let Some(message) = &message {
            reason.push_str(&format!(": {message}"));
        }
        if let Some(code) = code {
            reason.push_str(&format!(" (code {code})"));
        }
        if let Some(advice) = advice(code) {
            reason.push_str(&format!("; {advice}"));
        }
        // Discord's text never holds the token, but make sure.
        let url = self.url.expose_secret();
        let token = url
            .split(['?', '#'])
            .next()
            .and_then(|path| path.trim_end_matches('/').rsplit('/').next())
            .unwrap_or_default();
        if token.len() >= 8 {
            reason = reason.replace(token, "[redacted]");
        }
        let mut error = NotifyError::from_status("discord", status, &headers, reason);
        if let NotifyError::RateLimited { retry_after, .. }
        | NotifyError::Unavailable { retry_after, .. } = &mut error
        {
            // The header, read by the shared parser, wins; the body is the fallback.
            if retry_after.is_none() {
                *retry_after = body_retry_after;
            }
        }
        if let NotifyError::RateLimited { retry_after, .. } = &error {
            tracing::warn!(?retry_after, "discord: rate limited");
        }
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_is_escaped_and_clipped_without_cutting_an_escape() {
        assert_eq!(escape("a *b* _c_", 100), "a \\*b\\* \\_c\\_");
        assert_eq!(escape("@everyone", 100), "\\@everyone");
        assert_eq!(escape("[x](http://y)", 100), "\\[x\\](http://y)");
        assert_eq!(escape("# a-b\n- c\n  + d", 100), "\\# a-b\n\\- c\n  \\+ d");
        assert_eq!(escape("abcdef", 6), "abcdef");
        assert_eq!(escape("abcdefg", 6), "abcde…");
        // `*` needs two characters; with one left there is only the ellipsis.
        assert_eq!(escape("abcd*efg", 6), "abcd…");
        let long = "x".repeat(5000);
        assert_eq!(escape(&long, limit::DESCRIPTION).chars().count(), 4096);
    }

    #[test]
    fn base_url_keeps_the_webhook_path_and_wait_is_a_query() {
        let discord =
            DiscordNotifier::from_parts("123", "tok").with_base_url("http://127.0.0.1:9/");
        assert_eq!(
            discord.post_url(),
            "http://127.0.0.1:9/api/webhooks/123/tok"
        );
        assert_eq!(
            discord.with_wait(true).post_url(),
            "http://127.0.0.1:9/api/webhooks/123/tok?wait=true"
        );
    }

    #[test]
    fn discord_errors_are_read() {
        let (message, code, wait) = discord_error(
            r#"{"message": "You are being rate limited.", "retry_after": 1.5, "global": false}"#,
        );
        assert_eq!(message.as_deref(), Some("You are being rate limited."));
        assert_eq!(code, None);
        assert_eq!(wait, Some(Duration::from_millis(1500)));
        assert_eq!(discord_error("not json"), (None, None, None));
    }
}
