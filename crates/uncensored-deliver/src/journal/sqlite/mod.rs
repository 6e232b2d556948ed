//! The journal in one SQLite file, for one machine.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::OptionalExtension as _;

use super::{BatchStop, CallbackNonces, Entries, Entry, JournalError, Stage, record};

mod batches;
mod budget;

/// The journal in an SQLite file (WAL, synchronous=FULL: a committed record
/// survives the process being killed). The page cache is capped at 256 KiB so
/// that memory does not grow with the number of entries.
#[derive(Debug)]
pub struct SqliteJournal {
    connection: Mutex<rusqlite::Connection>,
}

fn error(e: impl std::fmt::Display) -> JournalError {
    JournalError::Backend(e.to_string())
}

/// Version of the schema this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 6;

/// The schema, as numbered migrations: each runs once, in a transaction
/// that holds the database's write lock (`BEGIN IMMEDIATE`) and reads the
/// version again inside it, so processes opening a new journal together
/// migrate it once. Never edit one that has shipped: add the next.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    "CREATE TABLE IF NOT EXISTS entries (
                         id TEXT PRIMARY KEY,
                         done INTEGER NOT NULL,
                         body TEXT NOT NULL,
                         seq INTEGER NOT NULL
                     );
                     CREATE INDEX IF NOT EXISTS entries_open ON entries (done, seq);
                     CREATE TABLE IF NOT EXISTS callback_nonces (
                         nonce TEXT PRIMARY KEY,
                         job_id TEXT NOT NULL
                     );",
    "ALTER TABLE entries ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;
                     ALTER TABLE entries ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
                     ALTER TABLE entries ADD COLUMN holder TEXT;
                     ALTER TABLE entries ADD COLUMN lease_until INTEGER;
                     UPDATE entries SET changed = seq;
                     CREATE INDEX entries_changed ON entries (changed);
                     CREATE TABLE batch (
                         only INTEGER PRIMARY KEY CHECK (only = 1),
                         manifest TEXT NOT NULL
                     );",
    // Batches known by name, lines by content (`LineIds`), claims with
    // fencing tokens. A batch of the one-batch schema is dropped: its line
    // ids were positions, not contents.
    "ALTER TABLE entries ADD COLUMN batch TEXT;
                     ALTER TABLE entries ADD COLUMN line INTEGER;
                     ALTER TABLE entries ADD COLUMN generation INTEGER;
                     ALTER TABLE entries ADD COLUMN token INTEGER NOT NULL DEFAULT 0;
                     CREATE INDEX entries_seq ON entries (seq);
                     CREATE INDEX entries_batch ON entries (batch, generation, done, line);
                     DROP TABLE batch;
                     CREATE TABLE batches (
                         name TEXT PRIMARY KEY,
                         digest TEXT NOT NULL,
                         lines INTEGER NOT NULL,
                         generation INTEGER NOT NULL,
                         stop TEXT,
                         loaded INTEGER NOT NULL
                     );",
    // Budgets: a batch's budget and totals, and each line's own reservation
    // and spend (the totals change with them, in one transaction).
    "ALTER TABLE entries ADD COLUMN reserved_nanos INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE entries ADD COLUMN spent_nanos INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE batches ADD COLUMN budget_nanos INTEGER;
     ALTER TABLE batches ADD COLUMN reserved_nanos INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE batches ADD COLUMN spent_nanos INTEGER NOT NULL DEFAULT 0;",
    // Batch lines handed off to the callback service (`Batches::hand_off`).
    "ALTER TABLE entries ADD COLUMN handed_off INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX entries_handed_off ON entries (handed_off, done, lease_until);",
    // The nonce bound to a job (`CallbackNonces::callback_job_nonce`).
    "CREATE INDEX callback_nonces_job ON callback_nonces (job_id, nonce);",
];

/// How long opening a journal waits for other processes opening it too.
const OPEN_PATIENCE: Duration = Duration::from_secs(30);

/// Milliseconds since the epoch, the clock of leases on one machine.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn entries(rows: rusqlite::Rows<'_>) -> Result<Vec<Entry>, JournalError> {
    rows.mapped(|row| row.get::<_, String>(0))
        .map(|b| record::from_text(&b.map_err(error)?))
        .collect()
}

impl SqliteJournal {
    /// Opens (or creates) the journal at `path`.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(error)?;
        }
        Self::from_connection(rusqlite::Connection::open(path).map_err(error)?)
    }

    /// A journal that lives in memory (for tests and one-off runs).
    pub fn in_memory() -> Result<Self, JournalError> {
        Self::from_connection(rusqlite::Connection::open_in_memory().map_err(error)?)
    }

    fn from_connection(connection: rusqlite::Connection) -> Result<Self, JournalError> {
        // Processes opening a new journal together meet SQLite's locks
        // (switching to WAL takes one that waits for no busy handler): a
        // busy database is tried again for up to `OPEN_PATIENCE`.
        let started = std::time::Instant::now();
        let version = loop {
            match Self::prepare(&connection) {
                Ok(version) => break version,
                Err(rusqlite::Error::SqliteFailure(failure, _))
                    if failure.code == rusqlite::ErrorCode::DatabaseBusy
                        && started.elapsed() < OPEN_PATIENCE =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(error(e)),
            }
        };
        if version > SCHEMA_VERSION {
            return Err(JournalError::new(format!(
                "this journal was written by a newer version (schema {version}, this one knows {SCHEMA_VERSION})"
            )));
        }
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    /// The connection's settings and the migrations (each under the write
    /// lock, the version read again inside it); returns the schema version.
    fn prepare(connection: &rusqlite::Connection) -> Result<i64, rusqlite::Error> {
        connection.execute_batch(
            "PRAGMA busy_timeout = 5000;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA cache_size = -256;",
        )?;
        let mut version = 0;
        for (number, sql) in (1..).zip(MIGRATIONS) {
            let transaction = rusqlite::Transaction::new_unchecked(
                connection,
                rusqlite::TransactionBehavior::Immediate,
            )?;
            version = transaction.query_row("PRAGMA user_version", [], |row| row.get(0))?;
            if version < number {
                transaction.execute_batch(sql)?;
                transaction.execute_batch(&format!("PRAGMA user_version = {number}"))?;
                version = number;
            }
            transaction.commit()?;
            if version > SCHEMA_VERSION {
                break;
            }
        }
        Ok(version)
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Inserts `entry` (unless its id exists, when `replace` is false),
    /// or replaces it; returns whether a row was written.
    fn write(
        connection: &rusqlite::Connection,
        entry: &Entry,
        replace: bool,
    ) -> Result<bool, JournalError> {
        let body = record::to_text(entry)?;
        let failed = matches!(entry.stage, Stage::Failed { .. });
        if replace {
            let updated = connection
                .execute(
                    "UPDATE entries SET done = ?2, failed = ?3, body = ?4,
                         changed = (SELECT COALESCE(MAX(changed), 0) + 1 FROM entries)
                     WHERE id = ?1",
                    rusqlite::params![entry.id, entry.done, failed, body],
                )
                .map_err(error)?;
            if updated > 0 {
                return Ok(true);
            }
        }
        let written = connection
            .execute(
                "INSERT INTO entries (id, done, failed, body, seq, changed)
                 VALUES (?1, ?2, ?3, ?4,
                         (SELECT COALESCE(MAX(seq), 0) + 1 FROM entries),
                         (SELECT COALESCE(MAX(changed), 0) + 1 FROM entries))
                 ON CONFLICT (id) DO NOTHING",
                rusqlite::params![entry.id, entry.done, failed, body],
            )
            .map_err(error)?;
        Ok(written > 0)
    }

    /// The batch row: its generation and stop.
    fn batch_row(
        connection: &rusqlite::Connection,
        name: &str,
    ) -> Result<Option<(String, i64, Option<BatchStop>)>, JournalError> {
        let row: Option<(String, i64, Option<String>)> = connection
            .query_row(
                "SELECT digest, generation, stop FROM batches WHERE name = ?1",
                [name],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(error)?;
        row.map(|(digest, generation, stop)| {
            let stop = stop
                .map(|s| serde_json::from_str(&s).map_err(error))
                .transpose()?;
            Ok((digest, generation, stop))
        })
        .transpose()
    }
}

#[async_trait::async_trait]
impl Entries for SqliteJournal {
    async fn get(&self, id: &str) -> Result<Option<Entry>, JournalError> {
        let connection = self.connection();
        let body: Option<String> = connection
            .query_row("SELECT body FROM entries WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()
            .map_err(error)?;
        body.map(|b| record::from_text(&b)).transpose()
    }

    async fn put(&self, entry: &Entry) -> Result<(), JournalError> {
        Self::write(&self.connection(), entry, true).map(drop)
    }

    async fn insert(&self, entry: &Entry) -> Result<bool, JournalError> {
        Self::write(&self.connection(), entry, false)
    }

    async fn unfinished(&self) -> Result<Vec<Entry>, JournalError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare("SELECT body FROM entries WHERE done = 0 AND batch IS NULL ORDER BY seq")
            .map_err(error)?;
        entries(statement.query([]).map_err(error)?)
    }

    async fn counts(&self) -> Result<(u64, u64), JournalError> {
        self.connection()
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(done), 0) FROM entries",
                [],
                |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)),
            )
            .map_err(error)
    }

    async fn recent(&self, limit: usize) -> Result<Vec<Entry>, JournalError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare("SELECT body FROM entries ORDER BY changed DESC LIMIT ?1")
            .map_err(error)?;
        entries(
            statement
                .query([i64::try_from(limit).unwrap_or(i64::MAX)])
                .map_err(error)?,
        )
    }

    async fn done_among(&self, ids: &[String]) -> Result<Vec<String>, JournalError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached("SELECT id FROM entries WHERE id = ?1 AND done = 1")
            .map_err(error)?;
        let mut done = Vec::new();
        for id in ids {
            if let Some(id) = statement
                .query_row([id], |row| row.get::<_, String>(0))
                .optional()
                .map_err(error)?
            {
                done.push(id);
            }
        }
        Ok(done)
    }
}

#[async_trait::async_trait]
impl CallbackNonces for SqliteJournal {
    async fn callback_nonce_job(&self, nonce: &str) -> Result<Option<String>, JournalError> {
        self.connection()
            .query_row(
                "SELECT job_id FROM callback_nonces WHERE nonce = ?1",
                [nonce],
                |row| row.get(0),
            )
            .optional()
            .map_err(error)
    }

    async fn bind_callback_nonce(&self, nonce: &str, job_id: &str) -> Result<String, JournalError> {
        // One statement under the connection's lock: insert-if-absent, then
        // read back whichever binding won.
        let connection = self.connection();
        connection
            .execute(
                "INSERT INTO callback_nonces (nonce, job_id) VALUES (?1, ?2) ON CONFLICT (nonce) DO NOTHING",
                [nonce, job_id],
            )
            .map_err(error)?;
        connection
            .query_row(
                "SELECT job_id FROM callback_nonces WHERE nonce = ?1",
                [nonce],
                |row| row.get(0),
            )
            .map_err(error)
    }

    async fn callback_job_nonce(&self, job_id: &str) -> Result<Option<String>, JournalError> {
        self.connection()
            .query_row(
                "SELECT MIN(nonce) FROM callback_nonces WHERE job_id = ?1",
                [job_id],
                |row| row.get(0),
            )
            .map_err(error)
    }
}

#[cfg(test)]
mod migration_tests {
    use super::*;

    #[test]
    fn processes_opening_a_new_journal_together_migrate_it_once() {
        let dir = std::env::temp_dir().join(format!("journal-{}", uuid::Uuid::new_v4().simple()));
        let path = dir.join("journal.sqlite");
        let barrier = std::sync::Barrier::new(6);
        std::thread::scope(|scope| {
            let opened: Vec<_> = (0..6)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        SqliteJournal::open(&path).map(drop)
                    })
                })
                .collect();
            for opened in opened {
                opened.join().unwrap().expect("every opener succeeds");
            }
        });
        let version: i64 = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_job_finds_its_nonce_by_an_index() {
        let journal = SqliteJournal::in_memory().unwrap();
        let plan: Vec<String> = {
            let connection = journal.connection();
            let mut statement = connection
                .prepare(
                    "EXPLAIN QUERY PLAN SELECT MIN(nonce) FROM callback_nonces WHERE job_id = ?1",
                )
                .unwrap();
            statement
                .query_map(["j"], |row| row.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert!(
            plan.iter()
                .any(|step| step.contains("INDEX callback_nonces_job")),
            "{plan:?}"
        );
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sqlite_journal_passes_the_conformance_suite() {
        let dir = std::env::temp_dir().join(format!("journal-{}", uuid::Uuid::new_v4().simple()));
        let path = dir.join("journal.sqlite");
        crate::testing::journal::conformance(|| async {
            std::sync::Arc::new(SqliteJournal::open(&path).unwrap())
                as std::sync::Arc<dyn crate::journal::Journal>
        })
        .await;
        std::fs::remove_dir_all(&dir).ok();
    }
}
