//! The journal in PostgreSQL, shared by every worker and callback service
//! that points at the same database: claims with `FOR UPDATE SKIP LOCKED`,
//! leases that expire, one batch per database (or schema).

use std::time::Duration;

use serde_json::Value;
use uncensored::Money;

use super::{
    BatchFile, BatchInfo, BatchLine, BatchSpend, BatchStatus, BatchStop, Batches, Budgets,
    CallbackNonces, Claim, Claimed, Entries, Entry, Fence, JournalError, LoadReport, Reservation,
    Settlement, Stage,
};
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

fn spend_of(row: &tokio_postgres::Row) -> BatchSpend {
    BatchSpend {
        budget: row.get::<_, Option<i64>>(0).map(Money::from_nanos),
        reserved: Money::from_nanos(row.get(1)),
        spent: Money::from_nanos(row.get(2)),
    }
}

const SPEND: &str =
    "SELECT budget_nanos, reserved_nanos, spent_nanos FROM uncensored_batches WHERE name = $1";

#[async_trait::async_trait]
impl Budgets for PostgresJournal {
    async fn set_budget(
        &self,
        batch: &str,
        budget: Option<Money>,
    ) -> Result<Option<BatchSpend>, JournalError> {
        let budget = budget.map(Money::nanos);
        let rows = self
            .database
            .run(|client| async move {
                client
                    .query(
                        "UPDATE uncensored_batches SET budget_nanos = $2 WHERE name = $1
                         RETURNING budget_nanos, reserved_nanos, spent_nanos",
                        &[&batch, &budget],
                    )
                    .await
            })
            .await?;
        Ok(rows.first().map(spend_of))
    }

    async fn spend(&self, batch: &str) -> Result<Option<BatchSpend>, JournalError> {
        let rows = self
            .database
            .run(|client| async move { client.query(SPEND, &[&batch]).await })
            .await?;
        Ok(rows.first().map(spend_of))
    }

    async fn reserve(
        &self,
        batch: &str,
        fence: &Fence,
        price: Money,
    ) -> Result<Reservation, JournalError> {
        if price.is_negative() {
            return Err(JournalError::new(format!("a negative price: {price}")));
        }
        let (id, holder, token, nanos) = (
            fence.id.as_str(),
            fence.holder.as_str(),
            fence.token,
            price.nanos(),
        );
        // One statement, so that no lock is held between two calls (a
        // worker's lines are futures that wait while it settles another).
        // Repeating it after a lost answer is harmless: a committed
        // reservation is found on the line the second time.
        let rows = self
            .database
            .run(|client| async move {
                client
                    .query(
                        "WITH line AS (
                             SELECT reserved_nanos FROM uncensored_entries
                             WHERE id = $1 AND holder = $2 AND token = $3 AND batch = $4
                         ),
                         fitted AS (
                             UPDATE uncensored_batches
                                 SET reserved_nanos = reserved_nanos + $5
                                 WHERE name = $4 AND budget_nanos IS NOT NULL
                                   AND reserved_nanos + spent_nanos + $5 <= budget_nanos
                                   AND EXISTS (SELECT 1 FROM line WHERE reserved_nanos = 0)
                                 RETURNING 1
                         ),
                         marked AS (
                             UPDATE uncensored_entries SET reserved_nanos = $5
                                 WHERE id = $1 AND EXISTS (SELECT 1 FROM fitted)
                                 RETURNING 1
                         )
                         SELECT (SELECT reserved_nanos FROM line),
                                EXISTS (SELECT 1 FROM fitted),
                                budget_nanos, reserved_nanos, spent_nanos
                         FROM uncensored_batches WHERE name = $4",
                        &[&id, &holder, &token, &batch, &nanos],
                    )
                    .await
            })
            .await?;
        let lost = || JournalError::LeaseLost { id: id.to_string() };
        let row = rows.first().ok_or_else(lost)?;
        let Some(reserved) = row.get::<_, Option<i64>>(0) else {
            return Err(lost());
        };
        // The batch's figures are those from before this statement.
        let spend = BatchSpend {
            budget: row.get::<_, Option<i64>>(2).map(Money::from_nanos),
            reserved: Money::from_nanos(row.get(3)),
            spent: Money::from_nanos(row.get(4)),
        };
        Ok(if reserved > 0 {
            Reservation::Already(Money::from_nanos(reserved))
        } else if row.get::<_, bool>(1) {
            Reservation::Reserved
        } else if spend.budget.is_none() {
            Reservation::NoBudget
        } else {
            Reservation::Exceeds(spend)
        })
    }

    async fn settle(
        &self,
        batch: &str,
        fence: &Fence,
        how: Settlement,
    ) -> Result<Money, JournalError> {
        let (id, holder, token) = (fence.id.as_str(), fence.holder.as_str(), fence.token);
        let paid = how == Settlement::Paid;
        // One statement, as for `reserve`. Repeating it is harmless: a
        // settled line holds no reservation.
        let rows = self
            .database
            .run(|client| async move {
                client
                    .query(
                        "WITH line AS (
                             UPDATE uncensored_entries AS e
                                 SET reserved_nanos = 0,
                                     spent_nanos = e.spent_nanos
                                         + CASE WHEN $5 THEN old.reserved_nanos ELSE 0 END
                                 FROM (SELECT id, reserved_nanos FROM uncensored_entries
                                       WHERE id = $1 AND holder = $2 AND token = $3 AND batch = $4
                                       FOR UPDATE) AS old
                                 WHERE e.id = old.id
                                 RETURNING old.reserved_nanos AS reserved
                         ),
                         moved AS (
                             UPDATE uncensored_batches AS b
                                 SET reserved_nanos = b.reserved_nanos - line.reserved,
                                     spent_nanos = b.spent_nanos
                                         + CASE WHEN $5 THEN line.reserved ELSE 0 END
                                 FROM line
                                 WHERE b.name = $4 AND line.reserved > 0
                                 RETURNING 1
                         )
                         SELECT reserved FROM line",
                        &[&id, &holder, &token, &batch, &paid],
                    )
                    .await
            })
            .await?;
        rows.first()
            .map(|row| Money::from_nanos(row.get::<_, i64>(0).max(0)))
            .ok_or_else(|| JournalError::LeaseLost { id: id.to_string() })
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
}

/// The claims in `rows` (body, token, line), in line order.
fn claims(rows: Vec<tokio_postgres::Row>, holder: &str) -> Result<Vec<Claim>, JournalError> {
    let mut claims = rows
        .into_iter()
        .map(|row| {
            let entry: Entry = serde_json::from_value(row.get::<_, Value>(0)).map_err(error)?;
            Ok(Claim {
                fence: Fence {
                    id: entry.id.clone(),
                    holder: holder.to_string(),
                    token: row.get(1),
                },
                line: row
                    .get::<_, Option<i64>>(2)
                    .and_then(|l| u64::try_from(l).ok()),
                entry,
            })
        })
        .collect::<Result<Vec<_>, JournalError>>()?;
    claims.sort_by_key(|claim| claim.line);
    Ok(claims)
}

fn stop_of(value: Option<Value>) -> Result<Option<BatchStop>, JournalError> {
    value
        .map(|v| serde_json::from_value(v).map_err(error))
        .transpose()
}

/// Lines written per statement while loading.
const LOAD_CHUNK: usize = 5_000;

#[async_trait::async_trait]
impl Batches for PostgresJournal {
    async fn load(
        &self,
        file: &BatchFile,
        lines: &mut (dyn Iterator<Item = Result<BatchLine, JournalError>> + Send),
    ) -> Result<LoadReport, JournalError> {
        let name = file.name.as_str();
        let digest = file.digest.as_str();
        let count = i64::try_from(file.lines).unwrap_or(i64::MAX);
        // Lines are read once: the load is not repeated on a lost
        // connection (the worker reports the journal unreachable; nothing
        // was paid).
        self.database
            .run_once(|client| async move {
                let mut client = client;
                let transaction = client.transaction().await?;
                transaction
                    .execute(
                        "INSERT INTO uncensored_batches (name, digest, lines, generation)
                         VALUES ($1, '', 0, 0) ON CONFLICT (name) DO NOTHING",
                        &[&name],
                    )
                    .await?;
                // One loader per batch at a time; a second finds it loaded.
                let row = transaction
                    .query_one(
                        "SELECT digest, generation, stop FROM uncensored_batches
                         WHERE name = $1 FOR UPDATE",
                        &[&name],
                    )
                    .await?;
                let lifted = match stop_of(row.get(2)) {
                    Ok(stop) => stop,
                    Err(e) => return Ok(Err(e)),
                };
                let mut generation: i64 = row.get(1);
                let mut added = 0u64;
                if row.get::<_, &str>(0) != digest {
                    generation += 1;
                    loop {
                        let mut ids = Vec::with_capacity(LOAD_CHUNK);
                        let mut bodies = Vec::with_capacity(LOAD_CHUNK);
                        let mut numbers = Vec::with_capacity(LOAD_CHUNK);
                        for line in (&mut *lines).take(LOAD_CHUNK) {
                            let line = match line.and_then(|l| Ok((body(&l.entry)?, l))) {
                                Ok(line) => line,
                                Err(e) => return Ok(Err(e)),
                            };
                            let (value, line) = line;
                            ids.push(line.entry.id);
                            bodies.push(value);
                            numbers.push(i64::try_from(line.line).unwrap_or(i64::MAX));
                        }
                        if ids.is_empty() {
                            break;
                        }
                        let inserted = transaction
                            .query(
                                "INSERT INTO uncensored_entries (id, body, batch, line, generation)
                                 SELECT l.id, l.body, $4, l.line, $5
                                 FROM unnest($1::text[], $2::jsonb[], $3::bigint[])
                                      WITH ORDINALITY AS l(id, body, line, n)
                                 ORDER BY n
                                 ON CONFLICT (id) DO UPDATE SET batch = excluded.batch,
                                     line = excluded.line, generation = excluded.generation
                                 RETURNING xmax = 0",
                                &[&ids, &bodies, &numbers, &name, &generation],
                            )
                            .await?;
                        added += inserted.iter().filter(|row| row.get::<_, bool>(0)).count() as u64;
                    }
                }
                transaction
                    .execute(
                        "UPDATE uncensored_batches SET digest = $2, lines = $3, generation = $4,
                             stop = NULL, loaded = nextval('uncensored_loads')
                         WHERE name = $1",
                        &[&name, &digest, &count, &generation],
                    )
                    .await?;
                let gone: i64 = transaction
                    .query_one(
                        "SELECT COUNT(*) FROM uncensored_entries
                         WHERE batch = $1 AND generation < $2",
                        &[&name, &generation],
                    )
                    .await?
                    .get(0);
                transaction.commit().await?;
                Ok(Ok(LoadReport {
                    added,
                    no_longer_in_file: gone as u64,
                    lifted,
                }))
            })
            .await?
    }

    async fn batch(&self, name: Option<&str>) -> Result<Option<BatchInfo>, JournalError> {
        let rows = self
            .database
            .run(|client| async move {
                client
                    .query(
                        "SELECT name, lines, stop FROM uncensored_batches
                         WHERE $1::text IS NULL OR name = $1
                         ORDER BY loaded DESC LIMIT 1",
                        &[&name],
                    )
                    .await
            })
            .await?;
        rows.first()
            .map(|row| {
                Ok(BatchInfo {
                    name: row.get(0),
                    lines: row.get::<_, i64>(1) as u64,
                    stop: stop_of(row.get(2))?,
                })
            })
            .transpose()
    }

    async fn stop(&self, batch: &str, stop: &BatchStop) -> Result<(), JournalError> {
        let value = serde_json::to_value(stop).map_err(error)?;
        self.database
            .run(|client| {
                let value = &value;
                async move {
                    client
                        .execute(
                            "UPDATE uncensored_batches SET stop = $2
                             WHERE name = $1 AND stop IS NULL",
                            &[&batch, value],
                        )
                        .await
                }
            })
            .await
            .map(drop)
    }

    async fn status(&self, batch: &str) -> Result<BatchStatus, JournalError> {
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
                             FROM uncensored_entries
                             WHERE batch = $1
                               AND generation = (SELECT generation FROM uncensored_batches
                                                 WHERE name = $1)
                             GROUP BY 1, 2",
                        &[&batch],
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

    async fn claim(
        &self,
        batch: &str,
        holder: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Claimed, JournalError> {
        let rows = self
            .database
            .run(|client| async move {
                client
                    .query(
                        "SELECT generation, stop FROM uncensored_batches WHERE name = $1",
                        &[&batch],
                    )
                    .await
            })
            .await?;
        let Some(row) = rows.first() else {
            return Ok(Claimed::default());
        };
        let generation: i64 = row.get(0);
        if let Some(stop) = stop_of(row.get(1))? {
            return Ok(Claimed {
                stop: Some(stop),
                ..Claimed::default()
            });
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let lease = seconds(lease);
        let rows = self
            .database
            .run(|client| async move {
                client
                    .query(
                        "UPDATE uncensored_entries AS e
                             SET holder = $1, lease_until = now() + make_interval(secs => $2),
                                 token = e.token + 1
                             FROM (SELECT id FROM uncensored_entries
                                   WHERE batch = $4 AND generation = $5 AND NOT done
                                     AND (lease_until IS NULL OR lease_until < now())
                                     AND (SELECT stop FROM uncensored_batches WHERE name = $4) IS NULL
                                   ORDER BY line LIMIT $3
                                   FOR UPDATE SKIP LOCKED) AS free
                             WHERE e.id = free.id
                             RETURNING e.body, e.token, e.line",
                        &[&holder, &lease, &limit, &batch, &generation],
                    )
                    .await
            })
            .await?;
        let lines = claims(rows, holder)?;
        let others_expire_in = if lines.is_empty() {
            let row = self
                .database
                .run(|client| async move {
                    client
                        .query_one(
                            "SELECT EXTRACT(EPOCH FROM MIN(lease_until) - now())::float8
                                 FROM uncensored_entries
                                 WHERE batch = $1 AND generation = $2 AND NOT done
                                   AND holder <> $3 AND lease_until >= now()",
                            &[&batch, &generation, &holder],
                        )
                        .await
                })
                .await?;
            row.get::<_, Option<f64>>(0)
                .map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX))
        } else {
            None
        };
        Ok(Claimed {
            lines,
            stop: None,
            others_expire_in,
        })
    }

    async fn claim_entry(
        &self,
        id: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Claim>, JournalError> {
        let lease = seconds(lease);
        let rows = self
            .database
            .run(|client| async move {
                client
                    .query(
                        "UPDATE uncensored_entries
                             SET holder = $2, lease_until = now() + make_interval(secs => $3),
                                 token = token + 1
                             WHERE id = $1 AND NOT done
                               AND (lease_until IS NULL OR lease_until < now() OR holder = $2)
                             RETURNING body, token, line",
                        &[&id, &holder, &lease],
                    )
                    .await
            })
            .await?;
        Ok(claims(rows, holder)?.pop())
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

    async fn write_claimed(&self, entry: &Entry, fence: &Fence) -> Result<(), JournalError> {
        let value = body(entry)?;
        let failed = matches!(entry.stage, Stage::Failed { .. });
        let (id, done, holder, token) = (
            entry.id.as_str(),
            entry.done,
            fence.holder.as_str(),
            fence.token,
        );
        // Repeating it after a lost answer is harmless: the token is the same.
        let written = self
            .database
            .run(|client| {
                let value = &value;
                async move {
                    client
                        .execute(
                            "UPDATE uncensored_entries
                                 SET done = $2, failed = $3, body = $4,
                                     changed = nextval('uncensored_changes')
                                 WHERE id = $1 AND holder = $5 AND token = $6",
                            &[&id, &done, &failed, value, &holder, &token],
                        )
                        .await
                }
            })
            .await?;
        if written == 0 {
            return Err(JournalError::LeaseLost { id: id.to_string() });
        }
        Ok(())
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
}
