//! The journal in one SQLite file, for one machine.

use std::path::Path;
use std::sync::Mutex;

#[cfg(test)]
use super::Stage;
use super::{Entry, Journal, JournalError};

/// The journal in an SQLite file (WAL, synchronous=FULL: a committed record
/// survives the process being killed). The page cache is capped at 256 KiB so
/// that memory does not grow with the number of entries.
#[derive(Debug)]
pub struct SqliteJournal {
    connection: Mutex<rusqlite::Connection>,
}

fn error(e: impl std::fmt::Display) -> JournalError {
    JournalError(e.to_string())
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
                 PRAGMA cache_size = -256;
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
                 );",
            )
            .map_err(error)?;
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    fn connection(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Journal for SqliteJournal {
    fn get(&self, id: &str) -> Result<Option<Entry>, JournalError> {
        let connection = self.connection();
        let body: Option<String> = connection
            .query_row("SELECT body FROM entries WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .map(Some)
            .or_else(|e| {
                if matches!(e, rusqlite::Error::QueryReturnedNoRows) {
                    Ok(None)
                } else {
                    Err(e)
                }
            })
            .map_err(error)?;
        body.map(|b| serde_json::from_str(&b).map_err(error))
            .transpose()
    }

    fn put(&self, entry: &Entry) -> Result<(), JournalError> {
        let body = serde_json::to_string(entry).map_err(error)?;
        self.connection()
            .execute(
                "INSERT INTO entries (id, done, body, seq) VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(seq), 0) + 1 FROM entries))
                 ON CONFLICT (id) DO UPDATE SET done = excluded.done, body = excluded.body",
                rusqlite::params![entry.id, entry.done, body],
            )
            .map_err(error)?;
        Ok(())
    }

    fn unfinished(&self) -> Result<Vec<Entry>, JournalError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare("SELECT body FROM entries WHERE done = 0 ORDER BY seq")
            .map_err(error)?;
        let bodies = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(error)?;
        bodies
            .map(|b| serde_json::from_str(&b.map_err(error)?).map_err(error))
            .collect()
    }

    fn counts(&self) -> Result<(u64, u64), JournalError> {
        self.connection()
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(done), 0) FROM entries",
                [],
                |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)),
            )
            .map_err(error)
    }

    fn callback_nonce_job(&self, nonce: &str) -> Result<Option<String>, JournalError> {
        self.connection()
            .query_row(
                "SELECT job_id FROM callback_nonces WHERE nonce = ?1",
                [nonce],
                |row| row.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(error(e)),
            })
    }

    fn bind_callback_nonce(&self, nonce: &str, job_id: &str) -> Result<String, JournalError> {
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

    #[test]
    fn entries_survive_reopening_and_unfinished_keeps_order() {
        let path =
            std::env::temp_dir().join(format!("journal-{}.sqlite", uuid::Uuid::new_v4().simple()));
        {
            let journal = SqliteJournal::open(&path).unwrap();
            journal.put(&entry("b", Stage::Pending, false)).unwrap();
            journal
                .put(&entry("a", Stage::Accepted { job_id: "j".into() }, false))
                .unwrap();
            journal.put(&entry("c", Stage::Pending, true)).unwrap();
            journal
                .put(&entry("b", Stage::Accepted { job_id: "k".into() }, false))
                .unwrap();
        }
        let journal = SqliteJournal::open(&path).unwrap();
        let open: Vec<String> = journal
            .unfinished()
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
            journal.get("b").unwrap().unwrap().stage,
            Stage::Accepted { job_id: "k".into() }
        );
        assert_eq!(journal.counts().unwrap(), (3, 1));
        assert!(journal.get("zzz").unwrap().is_none());
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn a_callback_nonce_binds_its_first_job_for_good() {
        let path =
            std::env::temp_dir().join(format!("journal-{}.sqlite", uuid::Uuid::new_v4().simple()));
        {
            let journal = SqliteJournal::open(&path).unwrap();
            assert_eq!(journal.callback_nonce_job("n1").unwrap(), None);
            assert_eq!(journal.bind_callback_nonce("n1", "job-a").unwrap(), "job-a");
            assert_eq!(journal.bind_callback_nonce("n1", "job-b").unwrap(), "job-a");
            assert_eq!(journal.bind_callback_nonce("n2", "job-b").unwrap(), "job-b");
        }
        let journal = SqliteJournal::open(&path).unwrap();
        assert_eq!(
            journal.callback_nonce_job("n1").unwrap().as_deref(),
            Some("job-a")
        );
        assert_eq!(journal.bind_callback_nonce("n1", "job-c").unwrap(), "job-a");
        assert_eq!(
            journal.counts().unwrap(),
            (0, 0),
            "bindings are not entries"
        );
        std::fs::remove_file(&path).ok();
    }
}
