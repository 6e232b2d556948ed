//! Errors as a person and a program see them: one line saying what happened
//! and what to do next, a distinct exit code per class, and with --json an
//! error object on stdout. Secrets never appear: the SDK's errors carry none.

use uncensored::{ApiErrorKind, Error};
use uncensored_deliver::DeliveryError;
use uncensored_deliver::storage::StorageError;

/// A failure with its exit code and next step.
#[derive(Debug)]
pub struct Failure {
    /// The exit code (see `--help`).
    pub code: u8,
    /// A short class name for JSON (`authentication`, `moderation`...).
    pub kind: &'static str,
    /// What happened.
    pub message: String,
    /// What to do next, when there is something.
    pub hint: Option<&'static str>,
}

impl Failure {
    fn new(
        code: u8,
        kind: &'static str,
        message: impl Into<String>,
        hint: Option<&'static str>,
    ) -> Self {
        Self {
            code,
            kind,
            message: message.into(),
            hint,
        }
    }

    /// Bad input that the command refused before doing anything.
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(6, "invalid_input", message, None)
    }

    /// Anything else.
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(1, "error", message, None)
    }

    /// A batch with failed lines.
    pub fn batch(failed: usize, total: usize) -> Self {
        Self::new(
            11,
            "batch_incomplete",
            format!("{failed} of {total} lines failed"),
            Some(
                "rerun the same command: finished lines are skipped, unfinished ones resume without paying twice",
            ),
        )
    }

    /// Prints the failure (stderr for people, stdout JSON for programs).
    pub fn report(&self, json: bool) {
        if json {
            let value = serde_json::json!({"error": {"kind": self.kind, "message": self.message, "hint": self.hint, "exit_code": self.code}});
            println!("{value}");
        } else {
            eprintln!("error: {}", self.message);
            if let Some(hint) = self.hint {
                eprintln!("hint: {hint}");
            }
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match &error {
            Error::Invalid(_) => Self::new(6, "invalid_request", message, None),
            Error::Config(_) => Self::new(
                3,
                "configuration",
                message,
                Some("set UNCENSORED_API_KEY, or use --emulator to try without an account"),
            ),
            Error::Api(api) if api.is_moderation() => Self::new(
                5,
                "moderation",
                message,
                Some("change the prompt: content moderation refused it"),
            ),
            Error::Api(api) => match api.kind {
                ApiErrorKind::Authentication => Self::new(
                    3,
                    "authentication",
                    message,
                    Some("check UNCENSORED_API_KEY (or --api-key)"),
                ),
                ApiErrorKind::Permission => Self::new(
                    3,
                    "permission",
                    message,
                    Some("use a key with the image:gen:* scope for this model"),
                ),
                ApiErrorKind::InsufficientFunds => Self::new(
                    4,
                    "insufficient_funds",
                    message,
                    Some("top up the account's balance, then run the command again"),
                ),
                ApiErrorKind::NotFound => {
                    Self::new(7, "not_found", message, Some("check the job id"))
                }
                ApiErrorKind::InvalidRequest
                | ApiErrorKind::IdempotencyKeyReuse
                | ApiErrorKind::FileTooLarge => Self::new(6, "invalid_request", message, None),
                _ => Self::new(
                    8,
                    "unavailable",
                    message,
                    Some("the API kept failing; try again later"),
                ),
            },
            Error::Transport { .. }
            | Error::UnexpectedResponse { .. }
            | Error::WaitTimeout { .. } => Self::new(
                8,
                "unavailable",
                message,
                Some("try again later, or check UNCENSORED_BASE_URL"),
            ),
            Error::JobFailed { .. } => Self::new(
                9,
                "job_failed",
                message,
                Some("generate again; the failed job was not charged by the emulator"),
            ),
            Error::Download(_) => Self::new(
                8,
                "unavailable",
                message,
                Some("the image could not be downloaded; run `uncensored download JOB` later"),
            ),
            _ => Self::other(message),
        }
    }
}

impl From<StorageError> for Failure {
    fn from(error: StorageError) -> Self {
        match &error {
            StorageError::Config(_)
            | StorageError::InvalidName(_)
            | StorageError::InvalidUrl { .. } => Self::input(error.to_string()),
            StorageError::Unusable { .. } => Self::new(
                10,
                "storage",
                error.to_string(),
                Some(
                    "check that the bucket or container exists and that the storage credentials (AWS_*, GOOGLE_*, AZURE_*) are set and accepted; nothing was paid for",
                ),
            ),
            _ => Self::new(
                10,
                "storage",
                error.to_string(),
                Some(
                    "check the storage (disk space, permissions, AWS_*, GOOGLE_* or AZURE_* settings)",
                ),
            ),
        }
    }
}

impl From<DeliveryError> for Failure {
    fn from(error: DeliveryError) -> Self {
        match error {
            DeliveryError::Invalid(invalid) => {
                Self::new(6, "invalid_request", invalid.to_string(), None)
            }
            DeliveryError::Api(api) => api.into(),
            DeliveryError::Storage(storage) => storage.into(),
            DeliveryError::Notify(_) => Self::new(
                10,
                "notify",
                error.to_string(),
                Some("the image is stored; rerun to retry the notification"),
            ),
            DeliveryError::Journal(_) => Self::new(10, "journal", error.to_string(), None),
            other => Self::other(other.to_string()),
        }
    }
}
