//! The durable record of every delivery: what was asked (with its
//! Idempotency-Key) before anything is sent, the job once accepted, where the
//! image was stored, and which notifiers were told. A restarted process reads
//! it to finish every job exactly once.

use std::collections::BTreeSet;
use std::fmt::Debug;

mod batch;
mod budget;
#[cfg(feature = "postgres")]
mod postgres;
mod record;
#[cfg(feature = "sqlite")]
mod sqlite;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use uncensored::{FailureReason, GenerateRequest};

pub use crate::image::StoredImage;

pub use batch::{
    BatchFile, BatchInfo, BatchLine, BatchStatus, BatchStop, Claim, Claimed, Fence, LineIds,
    LoadReport,
};
pub use budget::{BatchSpend, Budgets, Reservation, Settlement};
#[cfg(feature = "postgres")]
pub use postgres::PostgresJournal;
pub use record::RECORD_VERSION;
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
    /// The image is in storage: the one record of it
    /// ([`StoredImage`]), as notifiers announce it.
    Stored(StoredImage),
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

impl Stage {
    /// The stage as one word, the one list of them: `pending`, `accepted`,
    /// `generated`, `stored` or `failed` (also the `state` its journal
    /// record is tagged with).
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Pending => "pending",
            Stage::Accepted { .. } => "accepted",
            Stage::Generated { .. } => "generated",
            Stage::Stored(_) => "stored",
            Stage::Failed { .. } => "failed",
        }
    }

    /// The job, once the API has answered with one.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            Stage::Pending => None,
            Stage::Accepted { job_id }
            | Stage::Generated { job_id, .. }
            | Stage::Stored(StoredImage { job_id, .. }) => Some(job_id),
            Stage::Failed { job_id, .. } => job_id.as_deref(),
        }
    }
}

/// One delivery's record. The journal stores it as a versioned record of
/// its own types (see [`RECORD_VERSION`]), not as the SDK's structures, so
/// that a field renamed in the SDK leaves the journals on disk readable.
#[derive(Debug, Clone, PartialEq)]
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

impl Entry {
    /// The record a journal writes for this entry: a JSON object of the
    /// journal's own types, with its version ([`RECORD_VERSION`]). A journal
    /// of your own stores this, and reads it back with
    /// [`from_record`](Self::from_record).
    pub fn to_record(&self) -> Result<serde_json::Value, JournalError> {
        record::to_value(self)
    }

    /// The entry a record holds, of this build's version or an earlier one;
    /// a record written by a newer build is refused.
    pub fn from_record(record: serde_json::Value) -> Result<Self, JournalError> {
        record::from_value(record)
    }
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
    /// Another claim took this entry over since it was claimed (its lease
    /// ran out while its holder was stalled): the write was refused, the
    /// new holder finishes it.
    #[error("the lease on `{id}` was taken over by another worker; it finishes the line")]
    LeaseLost {
        /// The entry.
        id: String,
    },
    /// The lines of a batch file, read again to be loaded, differ from the
    /// ones its [`BatchFile`] was made from (the file was edited while it
    /// was read): nothing was loaded. A fault of the input, not of the
    /// journal ([`worker::load`](crate::worker::load)).
    #[error("the batch file `{batch}` changed while it was read; nothing was loaded")]
    BatchFileChanged {
        /// The batch (the file's name).
        batch: String,
    },
}

impl JournalError {
    /// A journal error with this description (for third-party journals).
    pub fn new(message: impl Into<String>) -> Self {
        Self::Backend(message.into())
    }
}

/// The entries of a journal: one record per delivery, written durably
/// before each step.
#[async_trait::async_trait]
pub trait Entries: Send + Sync + Debug {
    /// The entry with this id.
    async fn get(&self, id: &str) -> Result<Option<Entry>, JournalError>;
    /// Writes an entry durably (insert or replace) before returning. Entries
    /// under a claim are written with [`Batches::write_claimed`] instead.
    async fn put(&self, entry: &Entry) -> Result<(), JournalError>;
    /// Writes an entry durably unless one with its id exists; returns whether
    /// it was written. Two concurrent calls with one id write exactly one.
    async fn insert(&self, entry: &Entry) -> Result<bool, JournalError>;
    /// Every entry not yet done that belongs to no batch, oldest first
    /// (single deliveries and async jobs; batch lines are claimed instead).
    async fn unfinished(&self) -> Result<Vec<Entry>, JournalError>;
    /// How many entries there are, and how many are done.
    async fn counts(&self) -> Result<(u64, u64), JournalError>;
    /// The `limit` most recently changed entries, newest first, done or not.
    async fn recent(&self, limit: usize) -> Result<Vec<Entry>, JournalError>;
    /// The ids among `ids` whose entries exist and are done (in any order):
    /// what an estimate of a batch leaves out. Callers pass a few thousand
    /// at a time.
    async fn done_among(&self, ids: &[String]) -> Result<Vec<String>, JournalError>;
}

/// Callback nonces, for the callback service (`callbacks` feature). A
/// signed callback URL's nonce names one job; the binding is kept in the
/// journal so that it survives restarts and is shared by every service on
/// the same journal. A binding is written once and never changes.
#[async_trait::async_trait]
pub trait CallbackNonces: Send + Sync + Debug {
    /// The job `nonce` is bound to, if it is.
    async fn callback_nonce_job(&self, nonce: &str) -> Result<Option<String>, JournalError>;

    /// Binds `nonce` to `job_id` durably unless it is bound already, and
    /// returns the job it is bound to now: `job_id`, or the earlier job. Two
    /// concurrent calls with different jobs bind exactly one of them.
    async fn bind_callback_nonce(&self, nonce: &str, job_id: &str) -> Result<String, JournalError>;

    /// The nonce bound to `job_id`, if one is (the least, should several
    /// be): how a callback that names only its job (an unsigned one) finds
    /// the submission that made it. Looked up by an index, not a scan.
    async fn callback_job_nonce(&self, job_id: &str) -> Result<Option<String>, JournalError>;
}

/// Batches and the leases on their lines. A batch is a named set of lines,
/// each an entry known by its content ([`LineIds`]); workers on one machine
/// or many claim lines under leases, renew them while they work, and take
/// over the lines of a worker whose lease ran out. Every claim carries a
/// fencing token: a write from a holder whose claim was taken over is
/// refused ([`JournalError::LeaseLost`]).
#[async_trait::async_trait]
pub trait Batches: Send + Sync + Debug {
    /// Loads the lines of `file` into its batch, in one transaction, read
    /// from `lines` as they come (a million lines are never all in memory).
    /// Nothing is read when the journal holds these exact lines already
    /// (same [`BatchFile::digest`]); otherwise lines not yet in the journal
    /// are added, the others keep their state, and lines of the journal
    /// missing from the file are no longer claimed. A stop recorded by an
    /// earlier run is lifted (this run continues where it stopped). Two
    /// workers loading together write each line once.
    async fn load(
        &self,
        file: &BatchFile,
        lines: &mut (dyn Iterator<Item = Result<BatchLine, JournalError>> + Send),
    ) -> Result<LoadReport, JournalError>;

    /// The batch named `name`, or (for `None`) the one loaded last.
    async fn batch(&self, name: Option<&str>) -> Result<Option<BatchInfo>, JournalError>;

    /// Records that `batch` stops: no worker claims its lines until a run
    /// loads it again. The first stop recorded is kept.
    async fn stop(&self, batch: &str, stop: &BatchStop) -> Result<(), JournalError>;

    /// Done, failed, in flight per holder, and left, of `batch`'s lines in
    /// its file.
    async fn status(&self, batch: &str) -> Result<BatchStatus, JournalError>;

    /// Takes a lease of `lease` for `holder` on up to `limit` lines of
    /// `batch` that are not done and that nobody holds (or whose lease
    /// expired), in file order, unless the batch is stopped. Concurrent
    /// claims never return the same line.
    async fn claim(
        &self,
        batch: &str,
        holder: &str,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Claimed, JournalError>;

    /// Takes a lease for `holder` on the entry `id` (of a batch or not) if
    /// it is not done and nobody else holds it.
    async fn claim_entry(
        &self,
        id: &str,
        holder: &str,
        lease: std::time::Duration,
    ) -> Result<Option<Claim>, JournalError>;

    /// Extends `holder`'s leases on the unfinished entries `ids` to `lease`
    /// from now; returns how many of them it still holds (fewer means a
    /// lease was taken over).
    async fn renew(
        &self,
        holder: &str,
        ids: &[String],
        lease: std::time::Duration,
    ) -> Result<u64, JournalError>;

    /// Writes a claimed entry durably, if the claim `fence` still holds it:
    /// [`JournalError::LeaseLost`] when another claim took it over since.
    async fn write_claimed(&self, entry: &Entry, fence: &Fence) -> Result<(), JournalError>;

    /// Gives up `holder`'s leases (on `id`, or on all its entries).
    async fn release(&self, holder: &str, id: Option<&str>) -> Result<(), JournalError>;

    /// Writes `entry` (a batch line submitted with a callback URL) under
    /// the claim `fence` and hands it off to the callback service, in one
    /// step: the claim ends (its later writes are refused), and the entry is
    /// held by [`HANDED_OFF`] for `grace`. Meanwhile [`claim`](Self::claim)
    /// leaves it alone (and does not wait for it), while
    /// [`claim_entry`](Self::claim_entry) takes it over at once (the
    /// callback service, when its callback or its recovery comes); after
    /// `grace` a worker's claim may take it too. It stays handed off (so
    /// counted by [`status`](Self::status), and never waited for by
    /// workers) until it is done or a worker's claim takes it back, also
    /// while the callback service holds it.
    /// [`JournalError::LeaseLost`] when the claim no longer holds it.
    async fn hand_off(
        &self,
        entry: &Entry,
        fence: &Fence,
        grace: std::time::Duration,
    ) -> Result<(), JournalError>;

    /// Up to `limit` entries handed off ([`hand_off`](Self::hand_off)),
    /// not done, that nobody holds (no claim since, or its lease ran out),
    /// the earliest hand-off first: what the callback service's recovery
    /// looks at besides [`Entries::unfinished`].
    async fn handed_off(&self, limit: usize) -> Result<Vec<Entry>, JournalError>;
}

/// The holder of the entries handed off to the callback service
/// ([`Batches::hand_off`]).
pub const HANDED_OFF: &str = "handed-off";

/// A durable store of deliveries: [`Entries`], [`Batches`] with their
/// leases and their [`Budgets`], and [`CallbackNonces`]. Kept behind traits so that a shared
/// database can back it: `SqliteJournal` (feature `sqlite`) is the embedded
/// default for one machine, `PostgresJournal` (feature `postgres`) is
/// shared by many. Every journal passes
/// [`testing::journal::conformance`](crate::testing::journal::conformance).
pub trait Journal: Entries + Batches + Budgets + CallbackNonces {}

impl<T: Entries + Batches + Budgets + CallbackNonces + ?Sized> Journal for T {}

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
