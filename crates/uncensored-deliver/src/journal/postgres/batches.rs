//! The PostgreSQL journal's batches and leases: loads streamed in chunks
//! in one transaction under the batch row's lock, claims with `FOR UPDATE
//! SKIP LOCKED`, fencing tokens.

use std::time::Duration;

use serde_json::Value;

use super::{PostgresJournal, body, error, parse, seconds};
use crate::journal::record;
use crate::journal::{
    BatchFile, BatchInfo, BatchLine, BatchStatus, BatchStop, Batches, Claim, Claimed, Entry, Fence,
    HANDED_OFF, JournalError, LoadReport, Stage,
};

/// The claims in `rows` (body, token, line, batch), in line order.
fn claims(rows: Vec<tokio_postgres::Row>, holder: &str) -> Result<Vec<Claim>, JournalError> {
    let mut claims = rows
        .into_iter()
        .map(|row| {
            let entry: Entry = record::from_value(row.get::<_, Value>(0))?;
            Ok(Claim {
                fence: Fence {
                    id: entry.id.clone(),
                    holder: holder.to_string(),
                    token: row.get(1),
                },
                line: row
                    .get::<_, Option<i64>>(2)
                    .and_then(|l| u64::try_from(l).ok()),
                batch: row.get(3),
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

impl PostgresJournal {
    /// Writes a claimed entry if `fence` still holds it; with `hand_off`,
    /// hands it off to the callback service in the same statement (held
    /// by [`HANDED_OFF`] for the grace, a new token: the worker's claim
    /// ends). Repeating a plain write after a lost answer is harmless: the
    /// token is the same.
    async fn write_fenced(
        &self,
        entry: &Entry,
        fence: &Fence,
        hand_off: Option<Duration>,
    ) -> Result<(), JournalError> {
        let value = body(entry)?;
        let failed = matches!(entry.stage, Stage::Failed { .. });
        let (id, done, holder, token) = (
            fence.id.as_str(),
            entry.done,
            fence.holder.as_str(),
            fence.token,
        );
        let grace = hand_off.map(seconds);
        let written = self
            .database
            .run(|client| {
                let value = &value;
                async move {
                    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                        vec![&id, &holder, &token, &done, &failed, value];
                    let mut sql = String::from(
                        "UPDATE uncensored_entries
                             SET done = $4, failed = $5, body = $6,
                                 changed = nextval('uncensored_changes')",
                    );
                    if let Some(grace) = &grace {
                        sql.push_str(
                            ", holder = $7, lease_until = now() + make_interval(secs => $8),
                               token = token + 1, handed_off = true",
                        );
                        params.extend([
                            &HANDED_OFF as &(dyn tokio_postgres::types::ToSql + Sync),
                            grace,
                        ]);
                    }
                    sql.push_str(" WHERE id = $1 AND holder = $2 AND token = $3");
                    if grace.is_some() {
                        sql.push_str(" AND NOT done");
                    }
                    client.execute(&sql, &params).await
                }
            })
            .await?;
        if written == 0 {
            return Err(JournalError::LeaseLost { id: id.to_string() });
        }
        Ok(())
    }
}

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
                                         WHEN handed_off THEN 'handed_off'
                                         WHEN lease_until >= now() THEN 'held'
                                         ELSE 'left' END,
                                    CASE WHEN NOT done AND NOT handed_off
                                          AND lease_until >= now() THEN holder END,
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
                                 token = e.token + 1, handed_off = false
                             FROM (SELECT id FROM uncensored_entries
                                   WHERE batch = $4 AND generation = $5 AND NOT done
                                     AND (lease_until IS NULL OR lease_until < now())
                                     AND (SELECT stop FROM uncensored_batches WHERE name = $4) IS NULL
                                   ORDER BY line LIMIT $3
                                   FOR UPDATE SKIP LOCKED) AS free
                             WHERE e.id = free.id
                             RETURNING e.body, e.token, e.line, e.batch",
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
                                   AND holder <> $3 AND lease_until >= now()
                                   AND NOT handed_off",
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
                               AND (lease_until IS NULL OR lease_until < now() OR holder = $2
                                    OR (handed_off AND holder = $4))
                             RETURNING body, token, line, batch",
                        &[&id, &holder, &lease, &HANDED_OFF],
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
        self.write_fenced(entry, fence, None).await
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

    async fn hand_off(
        &self,
        entry: &Entry,
        fence: &Fence,
        grace: Duration,
    ) -> Result<(), JournalError> {
        self.write_fenced(entry, fence, Some(grace)).await
    }

    async fn handed_off(&self, limit: usize) -> Result<Vec<Entry>, JournalError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        parse(
            self.database
                .run(|client| async move {
                    client
                        .query(
                            "SELECT body FROM uncensored_entries WHERE handed_off AND NOT done
                                 AND (holder IS NULL OR holder = $2 OR lease_until < now())
                                 ORDER BY lease_until LIMIT $1",
                            &[&limit, &HANDED_OFF],
                        )
                        .await
                })
                .await?,
        )
    }
}
