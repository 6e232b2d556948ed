//! Errors as a person and a program see them: one line saying what happened
//! and what to do next, a distinct exit code per class, and with --json an
//! error object on stdout. Secrets never appear: the SDK's errors carry none.
//!
//! Every failure has one typed reason ([`DeliveryReason`]: the SDK's for the
//! API, the delivery crate's for storage, notification and journal); its
//! word and its advice come from the reason's owner, its exit code from the
//! one table here ([`exit_code`]).

use uncensored::{Error, FailureReason};
use uncensored_deliver::journal::JournalError;
use uncensored_deliver::storage::StorageError;
use uncensored_deliver::{DeliveryError, DeliveryReason};

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

    /// A batch that stopped for every worker (the account's funds, the key,
    /// its budget): the reason's exit code and advice.
    pub fn stopped(stop: &uncensored_deliver::journal::BatchStop, left: u64) -> Self {
        Self::new(
            exit_code(stop.reason),
            stop.reason.as_str(),
            format!(
                "the batch stopped for every worker ({}): {}; {left} lines are left pending, none of them failed",
                stop.reason, stop.message
            ),
            Some(stop.reason.advice()),
        )
    }

    /// A batch run stopped by SIGTERM or Ctrl-C.
    pub fn interrupted(left: u64) -> Self {
        Self::new(
            130,
            "interrupted",
            format!("stopped on request; {left} lines are left"),
            Some("rerun the same command to continue: finished lines are skipped"),
        )
    }

    /// Prints the failure (stderr for people, stdout JSON for programs).
    pub fn report(&self, json: bool) {
        if json {
            let value = serde_json::json!({"error": {"kind": self.kind, "message": self.message, "hint": self.hint, "exit_code": self.code}});
            println!("{value}");
        } else {
            eprintln!("error: {}", crate::terminal::safe(&self.message));
            if let Some(hint) = self.hint {
                eprintln!("hint: {hint}");
            }
        }
    }
}

/// The exit code of each failure reason: the one table behind `--help`'s
/// list ([`crate::cli::EXIT_CODES`]) and the README's. A journal failure
/// has its own code (12): progress may not be recorded, and the fix is the
/// journal's database, not the storage (10) nor the API (8).
pub fn exit_code(reason: DeliveryReason) -> u8 {
    use FailureReason as R;
    match reason {
        DeliveryReason::Api(api) => match api {
            R::Unauthorized | R::Forbidden | R::Configuration => 3,
            R::InsufficientFunds => 4,
            R::Moderation => 5,
            R::InvalidRequest | R::IdempotencyKeyReuse => 6,
            R::NotFound => 7,
            R::GaveUp | R::TimedOut | R::Cancelled | R::Download => 8,
            R::JobFailed => 9,
            _ => 1,
        },
        DeliveryReason::Storage | DeliveryReason::Notification => 10,
        DeliveryReason::Journal => 12,
        DeliveryReason::Budget => 13,
        _ => 1,
    }
}

impl Failure {
    /// A failure of a typed reason: its exit code (from [`exit_code`]), its
    /// word and its advice (from the reason).
    pub fn of(reason: impl Into<DeliveryReason>, message: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::new(
            exit_code(reason),
            reason.as_str(),
            message,
            Some(reason.advice()),
        )
    }

    /// A journal at `location` that failed: a location or batch that cannot
    /// be used as given is bad input; a database that failed or cannot be
    /// reached is the journal's failure.
    pub fn journal(location: impl std::fmt::Display, error: JournalError) -> Self {
        match error {
            JournalError::Location(_) => Self::input(format!("--journal {location}: {error}")),
            // The input's fault, not the journal's: nothing was loaded.
            JournalError::BatchFileChanged { .. } => Self {
                hint: Some("the file changed while it was read: run the command again"),
                ..Self::input(error.to_string())
            },
            _ => Self::of(
                DeliveryReason::Journal,
                format!("--journal {location}: {error}"),
            ),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self::of(error.reason(), error.to_string())
    }
}

impl From<StorageError> for Failure {
    fn from(error: StorageError) -> Self {
        match &error {
            StorageError::Config(_)
            | StorageError::InvalidName(_)
            | StorageError::InvalidUrl { .. } => Self::input(error.to_string()),
            _ => Self::of(error.reason(), error.to_string()),
        }
    }
}

impl From<DeliveryError> for Failure {
    fn from(error: DeliveryError) -> Self {
        match error {
            DeliveryError::Storage(storage) => storage.into(),
            other => Self::of(other.reason(), other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_file_changed_while_it_was_read_is_bad_input_and_the_journal_failing_is_not() {
        let changed = Failure::journal(
            "images/.uncensored/journal.sqlite",
            JournalError::BatchFileChanged {
                batch: "prompts.txt".into(),
            },
        );
        assert_eq!((changed.code, changed.kind), (6, "invalid_input"));
        assert!(
            changed.message.contains("prompts.txt"),
            "{}",
            changed.message
        );
        assert_eq!(
            changed.hint,
            Some("the file changed while it was read: run the command again")
        );
        let failed = Failure::journal("j.sqlite", JournalError::new("disk I/O error"));
        assert_eq!(failed.code, 12, "{failed:?}");
        assert!(
            failed.message.starts_with("--journal j.sqlite: "),
            "{}",
            failed.message
        );
    }
}
