//! Why the API (or this client) ended without an image, as one typed reason
//! with one piece of advice. The SDK's errors name their reason
//! ([`crate::Error::reason`]); the delivery pipeline stores them in its
//! journal and announces them, next to its own reasons (storage,
//! notification, journal), which are its concern, not the SDK's; the CLI
//! turns them into exit codes. Nothing matches strings back.

use serde::{Deserialize, Serialize};

/// The class of a failure. Serialised as a snake_case word
/// (`moderation`, `insufficient_funds`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureReason {
    /// Content moderation refused the prompt.
    Moderation,
    /// The account's balance does not cover the image.
    InsufficientFunds,
    /// The API key is missing, wrong or revoked.
    Unauthorized,
    /// The key lacks the scope for this model.
    #[serde(alias = "permission")]
    Forbidden,
    /// The request breaks a constraint (a field, the body size).
    InvalidRequest,
    /// The Idempotency-Key was already used with another request.
    IdempotencyKeyReuse,
    /// The job does not exist (or belongs to another account).
    NotFound,
    /// The job ended without an image.
    JobFailed,
    /// The API kept failing or could not be reached; the client gave up
    /// after its retries.
    GaveUp,
    /// Waiting for the job passed its deadline.
    TimedOut,
    /// The wait was cancelled.
    Cancelled,
    /// The image could not be downloaded.
    Download,
    /// The client is misconfigured.
    Configuration,
    /// Anything else.
    #[serde(other, alias = "api_error")]
    Other,
}

impl FailureReason {
    /// The reason as its snake_case word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Moderation => "moderation",
            Self::InsufficientFunds => "insufficient_funds",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::InvalidRequest => "invalid_request",
            Self::IdempotencyKeyReuse => "idempotency_key_reuse",
            Self::NotFound => "not_found",
            Self::JobFailed => "job_failed",
            Self::GaveUp => "gave_up",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
            Self::Download => "download",
            Self::Configuration => "configuration",
            Self::Other => "other",
        }
    }

    /// What a person should do next: the one place this advice is written.
    pub fn advice(self) -> &'static str {
        match self {
            Self::Moderation => "change the prompt: content moderation refused it",
            Self::InsufficientFunds => "top up the account's balance, then run the command again",
            Self::Unauthorized => "check the API key (UNCENSORED_API_KEY or --api-key)",
            Self::Forbidden => {
                "use a key with the scope the operation needs: image:gen:* for this model, billing:read for the balance and the transactions"
            }
            Self::InvalidRequest => "fix the request field the message names",
            Self::IdempotencyKeyReuse => "use a new Idempotency-Key for a different request",
            Self::NotFound => "check the job id; jobs of other accounts are not visible",
            Self::JobFailed => "generate again; a failed job is not charged",
            Self::GaveUp => {
                "the API kept failing; run the same command again later (nothing is paid twice)"
            }
            Self::TimedOut => {
                "the job is still running; check it later with `uncensored status JOB`"
            }
            Self::Cancelled => {
                "the job was not cancelled, only the wait; check it with `uncensored status JOB`"
            }
            Self::Download => {
                "the image could not be downloaded; run `uncensored download JOB` later"
            }
            Self::Configuration => {
                "set UNCENSORED_API_KEY, or use --emulator to try without an account"
            }
            Self::Other => "see the message",
        }
    }

    /// Whether the same request, sent again unchanged, can never succeed
    /// (moderation, funds, keys, invalid input): retrying is pointless until
    /// something is changed.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Moderation
                | Self::InsufficientFunds
                | Self::Unauthorized
                | Self::Forbidden
                | Self::InvalidRequest
                | Self::IdempotencyKeyReuse
                | Self::NotFound
                | Self::JobFailed
                | Self::Configuration
        )
    }
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_and_old_journal_words_are_read() {
        for reason in [
            FailureReason::Moderation,
            FailureReason::InsufficientFunds,
            FailureReason::GaveUp,
        ] {
            let text = serde_json::to_string(&reason).unwrap();
            assert_eq!(text, format!("\"{}\"", reason.as_str()));
            assert_eq!(
                serde_json::from_str::<FailureReason>(&text).unwrap(),
                reason
            );
        }
        let old: FailureReason = serde_json::from_str("\"permission\"").unwrap();
        assert_eq!(old, FailureReason::Forbidden);
        let unknown: FailureReason = serde_json::from_str("\"something_new\"").unwrap();
        assert_eq!(unknown, FailureReason::Other);
    }
}
