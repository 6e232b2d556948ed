//! The journal in PostgreSQL, shared by every worker and callback service
//! that points at the same database: claims with `FOR UPDATE SKIP LOCKED`,
//! leases that expire, one batch per database (or schema).

use std::time::Duration;

use serde_json::Value;

use super::{CallbackNonces, Entries, Entry, JournalError, Stage, record};

mod batches;
mod budget;
use crate::postgres::Database;

/// The journal in a PostgreSQL database. The schema is created and migrated
/// by [`PostgresJournal::connect`]; tables are prefixed `uncensored_` (use a
/// schema of their own with `?options=-csearch_path%3Dname`). A journal holds
/// any number of batches, each known by its name.
///
/// A lost connection is retried on a new one for up to a minute (a server
/// restart), then reported as [`JournalError::Unavailable`].
#[derive(Debug, Clone)]
pub struct PostgresJournal {
    database: Database,
}

fn error(e: impl std::fmt::Display) -> JournalError {
    JournalError::Backend(e.to_string())
}

fn body(entry: &Entry) -> Result<Value, JournalError> {
    record::to_value(entry)
}

fn parse(rows: Vec<tokio_postgres::Row>) -> Result<Vec<Entry>, JournalError> {
    rows.into_iter()
        .map(|row| record::from_value(row.get::<_, Value>(0)))
        .collect()
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

impl PostgresJournal {
    /// Connects to `url` (`postgres://user:password@host:port/dbname`) and
    /// migrates the schema. TLS follows libpq's `sslmode` and `sslrootcert`
    /// (`?sslmode=verify-full&sslrootcert=/path/ca.pem`; else `PGSSLMODE`,
    /// `PGSSLROOTCERT`, `~/.postgresql/root.crt`), with rustls. A mistake in
    /// the URL or an unreadable root certificate file is reported
    /// ([`JournalError::Location`]) before connecting; an unreachable server,
    /// a refused certificate or credentials, or a missing database are
    /// reported here, before anything else happens; the error never holds
    /// the password.
    pub async fn connect(url: &str) -> Result<Self, JournalError> {
        Ok(Self {
            database: Database::connect(url).await?,
        })
    }

    /// `user@host:port/dbname`: where the journal is, for people.
    pub fn target(&self) -> &str {
        &self.database.target
    }

    pub(crate) fn database(&self) -> &Database {
        &self.database
    }

    async fn write(&self, entry: &Entry, replace: bool) -> Result<bool, JournalError> {
        let body = body(entry)?;
        let failed = matches!(entry.stage, Stage::Failed { .. });
        let statement = if replace {
            "INSERT INTO uncensored_entries (id, done, failed, body) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET done = excluded.done, failed = excluded.failed,
                 body = excluded.body, changed = nextval('uncensored_changes')"
        } else {
            "INSERT INTO uncensored_entries (id, done, failed, body) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO NOTHING"
        };
        let id = entry.id.as_str();
        let done = entry.done;
        let written = self
            .database
            .run(|client| {
                let body = &body;
                async move {
                    client
                        .execute(statement, &[&id, &done, &failed, &body])
                        .await
                }
            })
            .await?;
        Ok(written > 0)
    }
}

#[async_trait::async_trait]
impl Entries for PostgresJournal {
    async fn get(&self, id: &str) -> Result<Option<Entry>, JournalError> {
        let rows = self
            .database
            .run(|client| async move {
                client
                    .query("SELECT body FROM uncensored_entries WHERE id = $1", &[&id])
                    .await
            })
            .await?;
        Ok(parse(rows)?.pop())
    }

    async fn put(&self, entry: &Entry) -> Result<(), JournalError> {
        self.write(entry, true).await.map(drop)
    }

    async fn insert(&self, entry: &Entry) -> Result<bool, JournalError> {
        self.write(entry, false).await
    }

    async fn unfinished(&self) -> Result<Vec<Entry>, JournalError> {
        parse(
            self.database
                .run(|client| async move {
                    client
                        .query(
                            "SELECT body FROM uncensored_entries WHERE NOT done AND batch IS NULL ORDER BY seq",
                            &[],
                        )
                        .await
                })
                .await?,
        )
    }

    async fn counts(&self) -> Result<(u64, u64), JournalError> {
        let row = self
            .database
            .run(|client| async move {
                client
                    .query_one(
                        "SELECT COUNT(*), COUNT(*) FILTER (WHERE done) FROM uncensored_entries",
                        &[],
                    )
                    .await
            })
            .await?;
        Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
    }

    async fn recent(&self, limit: usize) -> Result<Vec<Entry>, JournalError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        parse(
            self.database
                .run(|client| async move {
                    client
                        .query(
                            "SELECT body FROM uncensored_entries ORDER BY changed DESC LIMIT $1",
                            &[&limit],
                        )
                        .await
                })
                .await?,
        )
    }

    async fn done_among(&self, ids: &[String]) -> Result<Vec<String>, JournalError> {
        let rows = self
            .database
            .run(|client| async move {
                client
                    .query(
                        "SELECT id FROM uncensored_entries WHERE id = ANY($1) AND done",
                        &[&ids],
                    )
                    .await
            })
            .await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}

#[async_trait::async_trait]
impl CallbackNonces for PostgresJournal {
    async fn callback_nonce_job(&self, nonce: &str) -> Result<Option<String>, JournalError> {
        let rows = self
            .database
            .run(|client| async move {
                client
                    .query(
                        "SELECT job_id FROM uncensored_callback_nonces WHERE nonce = $1",
                        &[&nonce],
                    )
                    .await
            })
            .await?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    async fn bind_callback_nonce(&self, nonce: &str, job_id: &str) -> Result<String, JournalError> {
        // Insert-if-absent and read back the winner in one statement.
        let row = self
            .database
            .run(|client| {
                async move {
                    client
                        .query_one(
                            "WITH inserted AS (
                                 INSERT INTO uncensored_callback_nonces (nonce, job_id) VALUES ($1, $2)
                                 ON CONFLICT (nonce) DO NOTHING RETURNING job_id)
                             SELECT job_id FROM inserted
                             UNION ALL
                             SELECT job_id FROM uncensored_callback_nonces WHERE nonce = $1
                             LIMIT 1",
                            &[&nonce, &job_id],
                        )
                        .await
                }
            })
            .await?;
        Ok(row.get(0))
    }

    async fn callback_job_nonce(&self, job_id: &str) -> Result<Option<String>, JournalError> {
        let row = self
            .database
            .run(|client| async move {
                client
                    .query_one(
                        "SELECT MIN(nonce) FROM uncensored_callback_nonces WHERE job_id = $1",
                        &[&job_id],
                    )
                    .await
            })
            .await?;
        Ok(row.get(0))
    }
}
