//! Telling people about images: a small object-safe [`Notifier`] trait with a
//! backend per cargo feature (`slack`, `discord`, `email`, `webhook-notify`).
//! Failures are announced too (moderation, insufficient funds, failed jobs).

#[cfg(feature = "discord")]
mod discord;
#[cfg(feature = "email")]
mod email;
#[cfg(feature = "slack")]
mod slack;
mod url;
#[cfg(feature = "webhook-notify")]
mod webhook;

use std::fmt::Debug;
use std::time::Duration;

use serde::Serialize;
use uncensored::FailureReason;

use crate::StoredImage;

#[cfg(feature = "discord")]
pub use discord::DiscordNotifier;
#[cfg(feature = "email")]
pub use email::{
    DEFAULT_ATTACHMENT_CAP, DEFAULT_SUBJECT_PREFIX, EmailConfig, EmailConfigError, EmailContent,
    EmailNotifier, SmtpTls,
};
#[cfg(feature = "slack")]
pub use slack::{SlackError, SlackNotifier};
pub use url::{NotifierOptions, NotifierUrl, NotifierUrlError};
#[cfg(feature = "webhook-notify")]
pub use webhook::{MAX_PREVIOUS_WEBHOOK_SECRETS, SignedWebhookNotifier};

/// What happened to a job, as notifiers announce it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Notification {
    /// An image was generated and stored: its one record, serialised
    /// with its fields beside `"type": "stored"`.
    Stored(StoredImage),
    /// A generation did not produce a stored image.
    Failed {
        /// The job, when one was created.
        job_id: Option<String>,
        /// The prompt.
        prompt: String,
        /// Why, as a typed reason (serialised as `moderation`,
        /// `insufficient_funds`, `job_failed`, ...).
        reason: FailureReason,
        /// The full explanation.
        message: String,
    },
}

impl Notification {
    /// The job id, if any.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            Notification::Stored(image) => Some(&image.job_id),
            Notification::Failed { job_id, .. } => job_id.as_deref(),
        }
    }

    /// A short kind for ids and logs: `stored` or `failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Notification::Stored(_) => "stored",
            Notification::Failed { .. } => "failed",
        }
    }
}

/// A boxed error kept as the cause of a [`NotifyError`].
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why one attempt to deliver a notification failed. The notifier tried
/// once; whether and when to try again is the [`crate::Deliverer`]'s call,
/// guided by [`NotifyError::is_retryable`] and [`NotifyError::retry_after`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The receiver refused the message for good (a bad payload, a deleted
    /// channel, a revoked URL, a refused login): retrying cannot help.
    #[error("{notifier} refused the message: {reason}")]
    Rejected {
        /// Which kind of notifier.
        notifier: &'static str,
        /// The receiver's reason, and what to do about it.
        reason: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Cause>,
    },
    /// The receiver asked to slow down.
    #[error("{notifier} is rate limiting{}", .retry_after.map(|d| format!("; retry after {d:?}")).unwrap_or_default())]
    RateLimited {
        /// Which kind of notifier.
        notifier: &'static str,
        /// How long it asked to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// The receiver failed or could not be reached; a later attempt may work.
    #[error("{notifier} is unavailable: {reason}")]
    Unavailable {
        /// Which kind of notifier.
        notifier: &'static str,
        /// What went wrong (never a secret URL).
        reason: String,
        /// How long the receiver asked to wait, when it said.
        retry_after: Option<Duration>,
        /// The underlying error (URLs stripped), when there is one.
        #[source]
        source: Option<Cause>,
    },
}

impl NotifyError {
    /// Whether sending the same message later may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, NotifyError::Rejected { .. })
    }

    /// How long the receiver asked to wait before the next attempt.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            NotifyError::RateLimited { retry_after, .. }
            | NotifyError::Unavailable { retry_after, .. } => *retry_after,
            NotifyError::Rejected { .. } => None,
        }
    }

    /// The error of a request that got no answer, without its URL (which
    /// may be a secret, such as a Slack webhook), with its cause chain.
    pub fn unreachable(notifier: &'static str, error: reqwest::Error) -> Self {
        let error = error.without_url();
        let reason = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "cannot connect"
        } else {
            "the request failed"
        };
        NotifyError::Unavailable {
            notifier,
            reason: reason.into(),
            retry_after: None,
            source: Some(Box::new(error)),
        }
    }

    /// The error for an HTTP answer that is not a success: 429 is rate
    /// limiting, other 5xx and 408 are unavailability (both with the
    /// answer's `Retry-After`), anything else is a refusal described by
    /// `reason`.
    pub fn from_status(
        notifier: &'static str,
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
        reason: impl Into<String>,
    ) -> Self {
        let retry_after = uncensored::retry_after(headers);
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            NotifyError::RateLimited {
                notifier,
                retry_after,
            }
        } else if status.is_server_error() || status == reqwest::StatusCode::REQUEST_TIMEOUT {
            NotifyError::Unavailable {
                notifier,
                reason: reason.into(),
                retry_after,
                source: None,
            }
        } else {
            NotifyError::Rejected {
                notifier,
                reason: reason.into(),
                source: None,
            }
        }
    }
}

/// Who a notifier tells: its kind and a digest of its destination (never
/// the destination itself, which may be a secret). Two Slack webhooks are
/// two notifiers; a changed URL is a new destination. The journal records
/// which ids announced each job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NotifierId(String);

impl NotifierId {
    /// The id of a notifier of `kind` sending to `destination` (a URL, an
    /// address list...): `kind:` and 16 hex digits of its SHA-256.
    pub fn new(kind: &str, destination: &str) -> Self {
        use sha2::Digest as _;
        let digest = format!("{:x}", sha2::Sha256::digest(destination.as_bytes()));
        Self(format!("{kind}:{}", &digest[..16]))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NotifierId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A place to announce jobs. Object-safe: use it as `Arc<dyn Notifier>`.
///
/// `notify` makes one attempt and says whether another may help; it never
/// retries by itself (the Deliverer does, with one policy for every step).
#[async_trait::async_trait]
pub trait Notifier: Send + Sync + Debug {
    /// The kind of notifier (`slack`, `webhook`, `discord`, `email`).
    fn kind(&self) -> &'static str;

    /// Who it tells: see [`NotifierId`].
    fn id(&self) -> NotifierId;

    /// Checks, before anything is paid for, that the notifier can work
    /// (an SMTP server that accepts the login...). Sends nothing.
    async fn check(&self) -> Result<(), NotifyError> {
        Ok(())
    }

    /// Waits for this notifier's own pace (a chat webhook's messages per
    /// second), so that the `notify` that follows sends at once. The
    /// Deliverer checks a claimed line's lease between the two: a worker
    /// that stalled while it waited does not announce a line another worker
    /// took over. The default waits for nothing.
    async fn ready(&self) {}

    /// Makes one attempt to deliver one notification (after waiting for its
    /// pace, unless [`Notifier::ready`] just did).
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError>;
}

/// The most of a receiver's error body a notifier reads: 16 KiB.
#[cfg(any(feature = "slack", feature = "discord"))]
pub(crate) const ERROR_BODY_BYTES: usize = 16 * 1024;

/// The HTTP client of the notifiers: a timeout, and no redirects (chat
/// webhooks never redirect; a receiver that does could send the request to
/// an address inside the machine's network).
#[cfg(any(
    feature = "slack",
    feature = "webhook-notify",
    feature = "discord",
    feature = "email"
))]
pub(crate) fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a plain reqwest client builds")
}

/// `text` clipped to `max` characters, ending in `…` when clipped.
#[cfg(any(feature = "slack", feature = "discord", feature = "email"))]
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut clipped: String = text.chars().take(max.saturating_sub(1)).collect();
        clipped.push('…');
        clipped
    }
}
