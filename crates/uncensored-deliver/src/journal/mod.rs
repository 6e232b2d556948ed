//! The durable record of every delivery: what was asked (with its
//! Idempotency-Key) before anything is sent, the job once accepted, where the
//! image was stored, and which notifiers were told. A restarted process reads
//! it to finish every job exactly once.

use std::collections::BTreeSet;
use std::fmt::Debug;

#[cfg(feature = "sqlite")]
mod sqlite;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use uncensored::{FailureReason, GenerateRequest};

#[cfg(feature = "sqlite")]
pub use sqlite::SqliteJournal;

/// Where a delivery stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Stage {
    /// Recorded before the POST; the answer is not known yet.
    Pending,
    /// The API accepted the job (async); its image is not known yet.
    Accepted {
        /// The job.
        job_id: String,
    },
    /// The image exists at the API's URL.
    Generated {
        /// The job.
        job_id: String,
        /// The API's image URL.
        image_url: String,
        /// Seconds the generation took.
        generation_time: Option<f64>,
        /// The model.
        model: Option<String>,
    },
    /// The image is in storage.
    Stored {
        /// The job.
        job_id: String,
        /// Seconds the generation took.
        generation_time: Option<f64>,
        /// The model.
        model: Option<String>,
        /// The object name.
        name: String,
        /// Where it is, for people.
        location: String,
        /// SHA-256 of the stored image.
        sha256: String,
        /// A shareable URL, when the storage made one.
        share_url: Option<String>,
    },
    /// The generation ended without an image, for good.
    Failed {
        /// The job, when one was created.
        job_id: Option<String>,
        /// Why, as a typed reason with its advice.
        reason: FailureReason,
        /// The full explanation.
        message: String,
    },
}

/// One delivery's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The caller's id for this delivery (a batch line, an order...).
    pub id: String,
    /// What was asked.
    pub request: GenerateRequest,
    /// The Idempotency-Key every POST for this entry carries.
    pub idempotency_key: String,
    /// Where it stands.
    pub stage: Stage,
    /// Notifiers that have announced it.
    pub notified: BTreeSet<String>,
    /// Whether nothing is left to do.
    pub done: bool,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// Why the journal failed.
#[derive(Debug, thiserror::Error)]
#[error("journal: {0}")]
pub struct JournalError(pub(crate) String);

impl JournalError {
    /// A journal error with this description (for third-party journals).
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// A durable store of entries. Kept behind a trait so that a shared database
/// can back it; `SqliteJournal` (feature `sqlite`) is the embedded default.
pub trait Journal: Send + Sync + Debug {
    /// The entry with this id.
    fn get(&self, id: &str) -> Result<Option<Entry>, JournalError>;
    /// Writes an entry durably (insert or replace) before returning.
    fn put(&self, entry: &Entry) -> Result<(), JournalError>;
    /// Every entry not yet done, oldest first.
    fn unfinished(&self) -> Result<Vec<Entry>, JournalError>;
    /// How many entries there are, and how many are done.
    fn counts(&self) -> Result<(u64, u64), JournalError>;

    // Callback nonces, for the callback service (`callbacks` feature). A
    // signed callback URL's nonce names one job, the first one confirmed
    // under it; the binding is kept here so that it survives restarts and is
    // shared by every service on the same journal. Separate from entries:
    // a binding is written once and never changes.

    /// The job `nonce` is bound to, if it is.
    fn callback_nonce_job(&self, nonce: &str) -> Result<Option<String>, JournalError>;

    /// Binds `nonce` to `job_id` durably unless it is bound already, and
    /// returns the job it is bound to now: `job_id`, or the earlier job. Two
    /// concurrent calls with different jobs bind exactly one of them.
    fn bind_callback_nonce(&self, nonce: &str, job_id: &str) -> Result<String, JournalError>;
}
