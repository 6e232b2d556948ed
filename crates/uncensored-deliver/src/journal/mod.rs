//! The durable record of every delivery: what was asked (with its
//! Idempotency-Key) before anything is sent, the job once accepted, where the
//! image was stored, and which notifiers were told. A restarted process reads
//! it to finish every job exactly once.

use std::collections::BTreeSet;
use std::fmt::Debug;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use uncensored::{FailureReason, GenerateRequest};

#[cfg(feature = "postgres")]
pub use postgres::PostgresJournal;
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
#[non_exhaustive]
pub enum JournalError {
    /// The journal's database answered with an error, or its data is unreadable.
    #[error("journal: {0}")]
    Backend(String),
    /// The journal's database cannot be reached (refused, lost, timed out),
    /// after the journal's own reconnection attempts.
    #[error("journal unreachable: {0}")]
    Unavailable(String),
    /// The journal's location cannot be used as written (an unreadable
    /// `postgres://` URL, an unknown `sslmode`, a root certificate file that
    /// cannot be read); found before connecting.
    #[error("journal location: {0}")]
    Location(String),
    /// The journal holds another batch than the file given.
    #[error(
        "this journal holds the batch `{journal}` ({journal_lines} lines), not `{file}`: use another journal (database or schema) for another batch"
    )]
    OtherBatch {
        /// The batch the journal holds.
        journal: String,
        /// Its number of lines.
        journal_lines: u64,
        /// The batch of the file given.
        file: String,
    },
    /// The batch file was edited since the journal loaded it.
    #[error(
        "the batch `{batch}` was edited since this journal loaded it (line {line} differs): restore the file, or start a new batch in another journal"
    )]
    EditedBatch {
        /// The batch.
        batch: String,
        /// The first line (1-based) that differs.
        line: u64,
    },
}

impl JournalError {
    /// A journal error with this description (for third-party journals).
    pub fn new(message: impl Into<String>) -> Self {
        Self::Backend(message.into())
    }
}

/// A batch as a journal holds it: its name and what identifies its lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchManifest {
    /// The batch's name (by default the file's name).
    pub name: String,
    /// The entry id of every line, in file order; an id changes when its line does.
    pub line_ids: Vec<String>,
}

impl BatchManifest {
    /// The first line (1-based) at which `self` and `other` differ.
    pub fn first_difference(&self, other: &BatchManifest) -> Option<u64> {
        let common = self.line_ids.len().min(other.line_ids.len());
        (0..common)
            .find(|&i| self.line_ids[i] != other.line_ids[i])
            .or((self.line_ids.len() != other.line_ids.len()).then_some(common))
            .map(|i| i as u64 + 1)
    }

    /// Checks that `loaded` (what a journal holds) is this batch.
    pub fn check_against(&self, loaded: &BatchManifest) -> Result<(), JournalError> {
        if loaded.name != self.name {
            return Err(JournalError::OtherBatch {
                journal: loaded.name.clone(),
                journal_lines: loaded.line_ids.len() as u64,
                file: self.name.clone(),
            });
        }
        match self.first_difference(loaded) {
            None => Ok(()),
            Some(line) => Err(JournalError::EditedBatch {
                batch: self.name.clone(),
                line,
            }),
        }
    }
}

/// Where a shared batch stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStatus {
    /// Lines delivered (stored and announced).
    pub done: u64,
    /// Lines that ended without an image, for good.
    pub failed: u64,
    /// Lines under a live lease, per holder (worker).
    pub in_flight: std::collections::BTreeMap<String, u64>,
    /// Lines nobody holds and nobody has finished.
    pub left: u64,
}

impl BatchStatus {
    /// Adds `count` entries in `state` (`done`, `failed`, `held`, `left`).
    #[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
    pub(crate) fn add(&mut self, state: &str, holder: Option<String>, count: u64) {
        match (state, holder) {
            ("done", _) => self.done += count,
            ("failed", _) => self.failed += count,
            ("held", Some(holder)) => *self.in_flight.entry(holder).or_default() += count,
            _ => self.left += count,
        }
    }

    /// Lines in flight, all holders together.
    pub fn in_flight_total(&self) -> u64 {
        self.in_flight.values().sum()
    }
}

/// A durable store of entries. Kept behind a trait so that a shared database
/// can back it: `SqliteJournal` (feature `sqlite`) is the embedded default for
/// one machine, `PostgresJournal` (feature `postgres`) is shared by many.
///
/// Claims and leases let several workers share the entries: a claim takes a
/// lease on entries nobody holds (or whose lease expired), a worker renews its
/// leases while it works, and a dead worker's leases expire so that another
/// takes its entries over (with the same Idempotency-Keys).
#[async_trait::async_trait]
pub trait Journal: Send + Sync + Debug {
    /// The entry with this id.
    async fn get(&self, id: &str) -> Result<Option<Entry>, JournalError>;
    /// Writes an entry durably (insert or replace) before returning.
    async fn put(&self, entry: &Entry) -> Result<(), JournalError>;
    /// Writes an entry durably unless one with its id exists; returns whether
    /// it was written. Two concurrent calls with one id write exactly one.
    async fn insert(&self, entry: &Entry) -> Result<bool, JournalError>;
    /// Every entry not yet done, oldest first.
    async fn unfinished(&self) -> Result<Vec<Entry>, JournalError>;
    /// How many entries there are, and how many are done.
    async fn counts(&self) -> Result<(u64, u64), JournalError>;
    /// The `limit` most recently changed entries, newest first, done or not.
    async fn recent(&self, limit: usize) -> Result<Vec<Entry>, JournalError>;

    // Callback nonces, for the callback service (`callbacks` feature). A
    // signed callback URL's nonce names one job, the first one confirmed
    // under it; the binding is kept here so that it survives restarts and is
    // shared by every service on the same journal. Separate from entries:
    // a binding is written once and never changes.

    /// The job `nonce` is bound to, if it is.
    async fn callback_nonce_job(&self, nonce: &str) -> Result<Option<String>, JournalError>;

    /// Binds `nonce` to `job_id` durably unless it is bound already, and
    /// returns the job it is bound to now: `job_id`, or the earlier job. Two
    /// concurrent calls with different jobs bind exactly one of them.
    async fn bind_callback_nonce(&self, nonce: &str, job_id: &str) -> Result<String, JournalError>;

    // Shared batches: loading once, claims and leases.

    /// Loads a batch: its manifest and one entry per line, all in one
    /// transaction, unless the journal holds it already (then nothing is
    /// written). Returns how many entries were written. A journal holds one
    /// batch: another one, or this one edited, is refused
    /// ([`JournalError::OtherBatch`], [`JournalError::EditedBatch`]).
    async fn load_batch(
        &self,
        manifest: &BatchManifest,
        entries: &[Entry],
    ) -> Result<u64, JournalError>;

    /// The batch the journal holds, if any.
    async fn batch(&self) -> Result<Option<BatchManifest>, JournalError>;

    /// Takes a lease of `lease` for `holder` on up to `limit` entries that are
    /// not done and that nobody holds (or whose lease expired), oldest first.
    /// Concurrent claims never return the same entry.
    async fn claim(
        &self,
        holder: &str,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<Entry>, JournalError>;

    /// Takes a lease for `holder` on the entry `id` if it is not done and
    /// nobody else holds it; returns it, or `None`.
    async fn claim_entry(
        &self,
        id: &str,
        holder: &str,
        lease: std::time::Duration,
    ) -> Result<Option<Entry>, JournalError>;

    /// Extends `holder`'s leases on the unfinished entries `ids` to `lease`
    /// from now; returns how many of them it still holds (fewer means a
    /// lease expired and another holder took the entry).
    async fn renew(
        &self,
        holder: &str,
        ids: &[String],
        lease: std::time::Duration,
    ) -> Result<u64, JournalError>;

    /// Gives up `holder`'s leases (on `id`, or on all its entries).
    async fn release(&self, holder: &str, id: Option<&str>) -> Result<(), JournalError>;

    /// Done, failed, in flight per holder, and left.
    async fn status(&self) -> Result<BatchStatus, JournalError>;

    /// When the earliest live lease of another holder than `holder` expires,
    /// as a duration from now (`None` when no other holder has one).
    async fn next_expiry(&self, holder: &str) -> Result<Option<std::time::Duration>, JournalError>;
}

/// Whether `location` names a PostgreSQL database (`postgres://`, `postgresql://`).
pub fn is_postgres(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// Where a journal is: an SQLite file, or a PostgreSQL database. Shown (by
/// `Display` and `Debug`) without its password.
#[derive(Clone)]
pub enum JournalLocation {
    /// An SQLite file.
    File(std::path::PathBuf),
    /// A `postgres://` URL.
    Postgres(secrecy::SecretString),
}

impl JournalLocation {
    /// Reads a path or a `postgres://` URL.
    pub fn new(location: &str) -> Self {
        if is_postgres(location) {
            Self::Postgres(location.into())
        } else {
            Self::File(location.into())
        }
    }

    /// Whether several processes and machines can share it.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Opens (or creates and migrates) the journal.
    pub async fn open(&self) -> Result<std::sync::Arc<dyn Journal>, JournalError> {
        use secrecy::ExposeSecret as _;
        match self {
            Self::File(path) => open(&path.to_string_lossy()).await,
            Self::Postgres(url) => open(url.expose_secret()).await,
        }
    }
}

impl std::str::FromStr for JournalLocation {
    type Err = std::convert::Infallible;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self::new(text))
    }
}

impl std::fmt::Display for JournalLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use secrecy::ExposeSecret as _;
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => match url::Url::parse(url.expose_secret()) {
                Ok(mut url) => {
                    if url.password().is_some() {
                        let _ = url.set_password(Some("***"));
                    }
                    let pairs: Vec<(String, String)> = url
                        .query_pairs()
                        .map(|(k, v)| {
                            let secret = k.eq_ignore_ascii_case("password");
                            (
                                k.into_owned(),
                                if secret { "***".into() } else { v.into_owned() },
                            )
                        })
                        .collect();
                    // Rewritten (and so re-encoded) only when it holds a password.
                    if url
                        .query_pairs()
                        .any(|(k, _)| k.eq_ignore_ascii_case("password"))
                    {
                        url.query_pairs_mut().clear().extend_pairs(pairs);
                    }
                    write!(f, "{url}")
                }
                Err(_) => f.write_str("postgres://(unreadable URL)"),
            },
        }
    }
}

impl std::fmt::Debug for JournalLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JournalLocation({self})")
    }
}

/// Opens the journal at `location`: a `postgres://` URL (feature `postgres`)
/// or the path of an SQLite file (feature `sqlite`).
pub async fn open(location: &str) -> Result<std::sync::Arc<dyn Journal>, JournalError> {
    if is_postgres(location) {
        #[cfg(feature = "postgres")]
        return Ok(std::sync::Arc::new(
            PostgresJournal::connect(location).await?,
        ));
        #[cfg(not(feature = "postgres"))]
        return Err(JournalError::new(
            "this build has no PostgreSQL journal (feature `postgres`)",
        ));
    }
    #[cfg(feature = "sqlite")]
    return Ok(std::sync::Arc::new(SqliteJournal::open(
        std::path::Path::new(location),
    )?));
    #[cfg(not(feature = "sqlite"))]
    Err(JournalError::new(
        "this build has no SQLite journal (feature `sqlite`)",
    ))
}

#[cfg(test)]
mod location_tests {
    use super::JournalLocation;

    #[test]
    fn a_postgres_location_never_shows_its_password() {
        for url in [
            "postgres://app:hunter2-secret@db.internal:5432/batches",
            "postgresql://db.internal/batches?user=app&password=hunter2-secret",
        ] {
            let location = JournalLocation::new(url);
            assert!(location.is_shared());
            let shown = format!("{location} {location:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("db.internal"), "{shown}");
        }
        assert_eq!(
            JournalLocation::new(
                "postgres://app:pw@db/jobs?sslmode=verify-full&sslrootcert=/etc/ca.pem"
            )
            .to_string(),
            "postgres://app:***@db/jobs?sslmode=verify-full&sslrootcert=/etc/ca.pem"
        );
        assert_eq!(
            JournalLocation::new("images/.uncensored/journal.sqlite").to_string(),
            "images/.uncensored/journal.sqlite"
        );
    }
}
