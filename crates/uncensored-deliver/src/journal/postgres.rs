//! The journal in PostgreSQL, shared by every worker and callback service
//! that points at the same database: claims with `FOR UPDATE SKIP LOCKED`,
//! leases that expire, one batch per database (or schema).

use std::time::Duration;

use serde_json::Value;

use super::{BatchManifest, BatchStatus, Entry, Journal, JournalError, Stage};
use crate::postgres::Database;

/// The journal in a PostgreSQL database. The schema is created and migrated
/// by [`PostgresJournal::connect`]; tables are prefixed `uncensored_`. Put a
/// batch in a database (or a schema, with `?options=-csearch_path%3Dname`)
/// of its own: a journal holds one batch.
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
    serde_json::to_value(entry).map_err(error)
}

fn parse(rows: Vec<tokio_postgres::Row>) -> Result<Vec<Entry>, JournalError> {
    rows.into_iter()
        .map(|row| serde_json::from_value(row.get::<_, Value>(0)).map_err(error))
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
impl Journal for PostgresJournal {
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
                            "SELECT body FROM uncensored_entries WHERE NOT done ORDER BY seq",
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

    async fn load_batch(
        &self,
        manifest: &BatchManifest,
        lines: &[Entry],
    ) -> Result<u64, JournalError> {
        let manifest_value = serde_json::to_value(manifest).map_err(error)?;
        let mut ids = Vec::with_capacity(lines.len());
        let mut bodies = Vec::with_capacity(lines.len());
        for entry in lines {
            ids.push(entry.id.clone());
            bodies.push(body(entry)?);
        }
        let (loaded, written) = self
            .database
            .run(|client| {
                let (manifest_value, ids, bodies) = (&manifest_value, &ids, &bodies);
                async move {
                    let mut client = client;
                    let transaction = client.transaction().await?;
                    // One loader at a time; a second finds the batch loaded.
                    transaction
                        .execute("LOCK TABLE uncensored_batch IN EXCLUSIVE MODE", &[])
                        .await?;
                    let loaded = transaction
                        .query("SELECT manifest FROM uncensored_batch", &[])
                        .await?;
                    if let Some(row) = loaded.first() {
                        let value: Value = row.get(0);
                        transaction.rollback().await?;
                        return Ok((Some(value), 0));
                    }
                    transaction
                        .execute(
                            "INSERT INTO uncensored_batch (only_one, manifest) VALUES (1, $1)",
                            &[manifest_value],
                        )
                        .await?;
                    let mut written = 0;
                    for (ids, bodies) in ids.chunks(5_000).zip(bodies.chunks(5_000)) {
                        written += transaction
                            .execute(
                                "INSERT INTO uncensored_entries (id, body)
                                 SELECT l.id, l.body FROM unnest($1::text[], $2::jsonb[]) WITH ORDINALITY AS l(id, body, n)
                                 ORDER BY n
                                 ON CONFLICT (id) DO NOTHING",
                                &[&ids, &bodies],
                            )
                            .await?;
                    }
                    transaction.commit().await?;
                    Ok((None, written))
                }
            })
            .await?;
        match loaded {
            Some(value) => {
                let loaded: BatchManifest = serde_json::from_value(value).map_err(error)?;
                manifest.check_against(&loaded).map(|()| 0)
            }
            None => Ok(written),
        }
    }

    async fn batch(&self) -> Result<Option<BatchManifest>, JournalError> {
        let rows = self
            .database
            .run(|client| async move {
                client
                    .query("SELECT manifest FROM uncensored_batch", &[])
                    .await
            })
            .await?;
        rows.first()
            .map(|row| serde_json::from_value(row.get::<_, Value>(0)).map_err(error))
            .transpose()
    }

    async fn claim(
        &self,
        holder: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Entry>, JournalError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let lease = seconds(lease);
        let mut rows = self
            .database
            .run(|client| async move {
                client
                    .query(
                        "UPDATE uncensored_entries AS e
                             SET holder = $1, lease_until = now() + make_interval(secs => $2)
                             FROM (SELECT id FROM uncensored_entries
                                   WHERE NOT done AND (lease_until IS NULL OR lease_until < now())
                                   ORDER BY seq LIMIT $3
                                   FOR UPDATE SKIP LOCKED) AS free
                             WHERE e.id = free.id
                             RETURNING e.body, e.seq",
                        &[&holder, &lease, &limit],
                    )
                    .await
            })
            .await?;
        rows.sort_by_key(|row| row.get::<_, i64>(1));
        parse(rows)
    }

    async fn claim_entry(
        &self,
        id: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Entry>, JournalError> {
        let lease = seconds(lease);
        let rows = self
            .database
            .run(|client| async move {
                client
                    .query(
                        "UPDATE uncensored_entries
                             SET holder = $2, lease_until = now() + make_interval(secs => $3)
                             WHERE id = $1 AND NOT done
                               AND (lease_until IS NULL OR lease_until < now() OR holder = $2)
                             RETURNING body",
                        &[&id, &holder, &lease],
                    )
                    .await
            })
            .await?;
        Ok(parse(rows)?.pop())
    }

    async fn renew(
        &self,
        holder: &str,
        ids: &[String],
        lease: Duration,
    ) -> Result<u64, JournalError> {
        let lease = seconds(lease);
        self.database
            .run(|client| async move {
                client
                    .execute(
                        "UPDATE uncensored_entries
                             SET lease_until = now() + make_interval(secs => $3)
                             WHERE id = ANY($2) AND holder = $1 AND NOT done",
                        &[&holder, &ids, &lease],
                    )
                    .await
            })
            .await
    }

    async fn release(&self, holder: &str, id: Option<&str>) -> Result<(), JournalError> {
        self.database
            .run(|client| async move {
                client
                    .execute(
                        "UPDATE uncensored_entries SET holder = NULL, lease_until = NULL
                             WHERE holder = $1 AND ($2::text IS NULL OR id = $2)",
                        &[&holder, &id],
                    )
                    .await
            })
            .await
            .map(drop)
    }

    async fn status(&self) -> Result<BatchStatus, JournalError> {
        let rows = self
            .database
            .run(|client| async move {
                client
                    .query(
                        "SELECT CASE WHEN done AND failed THEN 'failed'
                                         WHEN done THEN 'done'
                                         WHEN lease_until >= now() THEN 'held'
                                         ELSE 'left' END,
                                    CASE WHEN NOT done AND lease_until >= now() THEN holder END,
                                    COUNT(*)
                             FROM uncensored_entries GROUP BY 1, 2",
                        &[],
                    )
                    .await
            })
            .await?;
        let mut status = BatchStatus::default();
        for row in rows {
            status.add(
                row.get::<_, &str>(0),
                row.get::<_, Option<String>>(1),
                row.get::<_, i64>(2) as u64,
            );
        }
        Ok(status)
    }

    async fn next_expiry(&self, holder: &str) -> Result<Option<Duration>, JournalError> {
        let row = self
            .database
            .run(|client| async move {
                client
                    .query_one(
                        "SELECT EXTRACT(EPOCH FROM MIN(lease_until) - now())::float8
                             FROM uncensored_entries
                             WHERE NOT done AND holder <> $1 AND lease_until >= now()",
                        &[&holder],
                    )
                    .await
            })
            .await?;
        Ok(row
            .get::<_, Option<f64>>(0)
            .map(|s| Duration::from_secs_f64(s.max(0.0))))
    }
}
