//! The journal in one SQLite file, for one machine.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::OptionalExtension as _;

use super::{BatchManifest, BatchStatus, Entry, Journal, JournalError, Stage};

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
const SCHEMA_VERSION: i64 = 2;

/// Milliseconds since the epoch, the clock of leases on one machine.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn entries(rows: rusqlite::Rows<'_>) -> Result<Vec<Entry>, JournalError> {
    rows.mapped(|row| row.get::<_, String>(0))
        .map(|b| serde_json::from_str(&b.map_err(error)?).map_err(error))
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
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA busy_timeout = 5000;
                 PRAGMA cache_size = -256;",
            )
            .map_err(error)?;
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(error)?;
        // Versioned migrations, each in its own transaction.
        if version < 1 {
            connection
                .execute_batch(
                    "BEGIN;
                     CREATE TABLE IF NOT EXISTS entries (
                         id TEXT PRIMARY KEY,
                         done INTEGER NOT NULL,
                         body TEXT NOT NULL,
                         seq INTEGER NOT NULL
                     );
                     CREATE INDEX IF NOT EXISTS entries_open ON entries (done, seq);
                     CREATE TABLE IF NOT EXISTS callback_nonces (
                         nonce TEXT PRIMARY KEY,
                         job_id TEXT NOT NULL
                     );
                     PRAGMA user_version = 1;
                     COMMIT;",
                )
                .map_err(error)?;
        }
        if version < 2 {
            connection
                .execute_batch(
                    "BEGIN;
                     ALTER TABLE entries ADD COLUMN failed INTEGER NOT NULL DEFAULT 0;
                     ALTER TABLE entries ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
                     ALTER TABLE entries ADD COLUMN holder TEXT;
                     ALTER TABLE entries ADD COLUMN lease_until INTEGER;
                     UPDATE entries SET changed = seq;
                     CREATE INDEX entries_changed ON entries (changed);
                     CREATE TABLE batch (
                         only INTEGER PRIMARY KEY CHECK (only = 1),
                         manifest TEXT NOT NULL
                     );
                     PRAGMA user_version = 2;
                     COMMIT;",
                )
                .map_err(error)?;
        }
        if version > SCHEMA_VERSION {
            return Err(JournalError::new(format!(
                "this journal was written by a newer version (schema {version}, this one knows {SCHEMA_VERSION})"
            )));
        }
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(
        connection: &rusqlite::Connection,
        entry: &Entry,
        replace: bool,
    ) -> Result<bool, JournalError> {
        let body = serde_json::to_string(entry).map_err(error)?;
        let failed = matches!(entry.stage, Stage::Failed { .. });
        let conflict = if replace {
            "ON CONFLICT (id) DO UPDATE SET done = excluded.done, failed = excluded.failed, body = excluded.body, changed = excluded.changed"
        } else {
            "ON CONFLICT (id) DO NOTHING"
        };
        let written = connection
            .execute(
                &format!(
                    "INSERT INTO entries (id, done, failed, body, seq, changed)
                     VALUES (?1, ?2, ?3, ?4,
                             (SELECT COALESCE(MAX(seq), 0) + 1 FROM entries),
                             (SELECT COALESCE(MAX(changed), 0) + 1 FROM entries))
                     {conflict}"
                ),
                rusqlite::params![entry.id, entry.done, failed, body],
            )
            .map_err(error)?;
        Ok(written > 0)
    }
}

#[async_trait::async_trait]
impl Journal for SqliteJournal {
    async fn get(&self, id: &str) -> Result<Option<Entry>, JournalError> {
        let connection = self.connection();
        let body: Option<String> = connection
            .query_row("SELECT body FROM entries WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()
            .map_err(error)?;
        body.map(|b| serde_json::from_str(&b).map_err(error))
            .transpose()
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
            .prepare("SELECT body FROM entries WHERE done = 0 ORDER BY seq")
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

    async fn load_batch(
        &self,
        manifest: &BatchManifest,
        lines: &[Entry],
    ) -> Result<u64, JournalError> {
        let mut connection = self.connection();
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(error)?;
        let loaded: Option<String> = transaction
            .query_row("SELECT manifest FROM batch", [], |row| row.get(0))
            .optional()
            .map_err(error)?;
        if let Some(loaded) = loaded {
            let loaded: BatchManifest = serde_json::from_str(&loaded).map_err(error)?;
            return manifest.check_against(&loaded).map(|()| 0);
        }
        transaction
            .execute(
                "INSERT INTO batch (only, manifest) VALUES (1, ?1)",
                [serde_json::to_string(manifest).map_err(error)?],
            )
            .map_err(error)?;
        let mut written = 0;
        for entry in lines {
            written += u64::from(Self::write(&transaction, entry, false)?);
        }
        transaction.commit().map_err(error)?;
        Ok(written)
    }

    async fn batch(&self) -> Result<Option<BatchManifest>, JournalError> {
        let manifest: Option<String> = self
            .connection()
            .query_row("SELECT manifest FROM batch", [], |row| row.get(0))
            .optional()
            .map_err(error)?;
        manifest
            .map(|m| serde_json::from_str(&m).map_err(error))
            .transpose()
    }

    async fn claim(
        &self,
        holder: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Entry>, JournalError> {
        // The connection's lock and SQLite's write lock (IMMEDIATE) make the
        // select-then-update one step, across processes too.
        let mut connection = self.connection();
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(error)?;
        let now = now_ms();
        let claimed = {
            let mut statement = transaction
                .prepare(
                    "UPDATE entries SET holder = ?1, lease_until = ?2
                     WHERE id IN (SELECT id FROM entries
                                  WHERE done = 0 AND (lease_until IS NULL OR lease_until < ?3)
                                  ORDER BY seq LIMIT ?4)
                     RETURNING body",
                )
                .map_err(error)?;
            entries(
                statement
                    .query(rusqlite::params![
                        holder,
                        now + ms(lease),
                        now,
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ])
                    .map_err(error)?,
            )?
        };
        transaction.commit().map_err(error)?;
        Ok(claimed)
    }

    async fn claim_entry(
        &self,
        id: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Entry>, JournalError> {
        let now = now_ms();
        let body: Option<String> = self
            .connection()
            .query_row(
                "UPDATE entries SET holder = ?1, lease_until = ?2
                 WHERE id = ?3 AND done = 0
                   AND (lease_until IS NULL OR lease_until < ?4 OR holder = ?1)
                 RETURNING body",
                rusqlite::params![holder, now + ms(lease), id, now],
                |row| row.get(0),
            )
            .optional()
            .map_err(error)?;
        body.map(|b| serde_json::from_str(&b).map_err(error))
            .transpose()
    }

    async fn renew(
        &self,
        holder: &str,
        ids: &[String],
        lease: Duration,
    ) -> Result<u64, JournalError> {
        let connection = self.connection();
        let until = now_ms() + ms(lease);
        let mut renewed = 0;
        for id in ids {
            renewed += connection
                .execute(
                    "UPDATE entries SET lease_until = ?3 WHERE id = ?2 AND holder = ?1 AND done = 0",
                    rusqlite::params![holder, id, until],
                )
                .map_err(error)?;
        }
        Ok(renewed as u64)
    }

    async fn release(&self, holder: &str, id: Option<&str>) -> Result<(), JournalError> {
        self.connection()
            .execute(
                "UPDATE entries SET holder = NULL, lease_until = NULL
                 WHERE holder = ?1 AND (?2 IS NULL OR id = ?2)",
                rusqlite::params![holder, id],
            )
            .map_err(error)?;
        Ok(())
    }

    async fn status(&self) -> Result<BatchStatus, JournalError> {
        let connection = self.connection();
        let now = now_ms();
        let mut status = BatchStatus::default();
        let mut statement = connection
            .prepare(
                "SELECT CASE WHEN done = 1 AND failed = 1 THEN 'failed'
                             WHEN done = 1 THEN 'done'
                             WHEN lease_until >= ?1 THEN 'held'
                             ELSE 'left' END AS state,
                        CASE WHEN done = 0 AND lease_until >= ?1 THEN holder END,
                        COUNT(*)
                 FROM entries GROUP BY 1, 2",
            )
            .map_err(error)?;
        let rows = statement
            .query_map([now], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, i64>(2)? as u64,
                ))
            })
            .map_err(error)?;
        for row in rows {
            let (state, holder, count) = row.map_err(error)?;
            status.add(&state, holder, count);
        }
        Ok(status)
    }

    async fn next_expiry(&self, holder: &str) -> Result<Option<Duration>, JournalError> {
        let now = now_ms();
        let until: Option<i64> = self
            .connection()
            .query_row(
                "SELECT MIN(lease_until) FROM entries WHERE done = 0 AND holder != ?1 AND lease_until >= ?2",
                rusqlite::params![holder, now],
                |row| row.get(0),
            )
            .map_err(error)?;
        Ok(until.map(|u| Duration::from_millis(u64::try_from(u - now).unwrap_or(0))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use std::collections::BTreeSet;
    use uncensored::GenerateRequest;

    fn entry(id: &str, stage: Stage, done: bool) -> Entry {
        Entry {
            id: id.into(),
            request: GenerateRequest::new("p"),
            idempotency_key: format!("key-{id}"),
            stage,
            notified: BTreeSet::new(),
            done,
            updated_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn entries_survive_reopening_and_unfinished_keeps_order() {
        let path =
            std::env::temp_dir().join(format!("journal-{}.sqlite", uuid::Uuid::new_v4().simple()));
        {
            let journal = SqliteJournal::open(&path).unwrap();
            journal
                .put(&entry("b", Stage::Pending, false))
                .await
                .unwrap();
            journal
                .put(&entry("a", Stage::Accepted { job_id: "j".into() }, false))
                .await
                .unwrap();
            journal
                .put(&entry("c", Stage::Pending, true))
                .await
                .unwrap();
            journal
                .put(&entry("b", Stage::Accepted { job_id: "k".into() }, false))
                .await
                .unwrap();
        }
        let journal = SqliteJournal::open(&path).unwrap();
        let open: Vec<String> = journal
            .unfinished()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(
            open,
            ["b", "a"],
            "insertion order, updates keep their place"
        );
        assert_eq!(
            journal.get("b").await.unwrap().unwrap().stage,
            Stage::Accepted { job_id: "k".into() }
        );
        assert_eq!(journal.counts().await.unwrap(), (3, 1));
        assert!(journal.get("zzz").await.unwrap().is_none());
        std::fs::remove_file(&path).ok();
    }

    #[tokio::test]
    async fn a_callback_nonce_binds_its_first_job_for_good() {
        let path =
            std::env::temp_dir().join(format!("journal-{}.sqlite", uuid::Uuid::new_v4().simple()));
        {
            let journal = SqliteJournal::open(&path).unwrap();
            assert_eq!(journal.callback_nonce_job("n1").await.unwrap(), None);
            assert_eq!(
                journal.bind_callback_nonce("n1", "job-a").await.unwrap(),
                "job-a"
            );
            assert_eq!(
                journal.bind_callback_nonce("n1", "job-b").await.unwrap(),
                "job-a"
            );
            assert_eq!(
                journal.bind_callback_nonce("n2", "job-b").await.unwrap(),
                "job-b"
            );
        }
        let journal = SqliteJournal::open(&path).unwrap();
        assert_eq!(
            journal.callback_nonce_job("n1").await.unwrap().as_deref(),
            Some("job-a")
        );
        assert_eq!(
            journal.bind_callback_nonce("n1", "job-c").await.unwrap(),
            "job-a"
        );
        assert_eq!(
            journal.counts().await.unwrap(),
            (0, 0),
            "bindings are not entries"
        );
        std::fs::remove_file(&path).ok();
    }
}
