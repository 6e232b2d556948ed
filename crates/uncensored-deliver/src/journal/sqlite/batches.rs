//! The SQLite journal's batches and leases: loads in one IMMEDIATE
//! transaction, claims under SQLite's write lock, fencing tokens.

use std::time::Duration;

use rusqlite::OptionalExtension as _;

use super::{SqliteJournal, entries, error, ms, now_ms};
use crate::journal::record;
use crate::journal::{
    BatchFile, BatchInfo, BatchLine, BatchStatus, BatchStop, Batches, Claim, Claimed, Entry, Fence,
    HANDED_OFF, JournalError, LoadReport, Stage,
};

fn claims(rows: rusqlite::Rows<'_>, holder: &str) -> Result<Vec<Claim>, JournalError> {
    rows.mapped(|row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, Option<i64>>(2)?,
            row.get::<_, Option<String>>(3)?,
        ))
    })
    .map(|row| {
        let (body, token, line, batch) = row.map_err(error)?;
        let entry: Entry = record::from_text(&body)?;
        Ok(Claim {
            fence: Fence {
                id: entry.id.clone(),
                holder: holder.to_string(),
                token,
            },
            line: line.and_then(|l| u64::try_from(l).ok()),
            batch,
            entry,
        })
    })
    .collect()
}

impl SqliteJournal {
    /// Writes a claimed entry if `fence` still holds it; with `hand_off`,
    /// hands it off to the callback service in the same statement (held
    /// by [`HANDED_OFF`] for the grace, a new token: the worker's claim ends).
    fn write_fenced(
        &self,
        entry: &Entry,
        fence: &Fence,
        hand_off: Option<Duration>,
    ) -> Result<(), JournalError> {
        let body = record::to_text(entry)?;
        let failed = matches!(entry.stage, Stage::Failed { .. });
        let until = hand_off.map(|grace| now_ms().saturating_add(ms(grace)));
        let mut params: Vec<&dyn rusqlite::ToSql> = vec![
            &fence.id,
            &fence.holder,
            &fence.token,
            &entry.done,
            &failed,
            &body,
        ];
        let mut sql = String::from(
            "UPDATE entries SET done = ?4, failed = ?5, body = ?6,
                 changed = (SELECT COALESCE(MAX(changed), 0) + 1 FROM entries)",
        );
        if let Some(until) = &until {
            sql.push_str(", holder = ?7, lease_until = ?8, token = token + 1, handed_off = 1");
            params.extend([&HANDED_OFF as &dyn rusqlite::ToSql, until]);
        }
        sql.push_str(" WHERE id = ?1 AND holder = ?2 AND token = ?3");
        if until.is_some() {
            sql.push_str(" AND done = 0");
        }
        let written = self
            .connection()
            .execute(&sql, params.as_slice())
            .map_err(error)?;
        if written == 0 {
            return Err(JournalError::LeaseLost {
                id: fence.id.clone(),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Batches for SqliteJournal {
    async fn load(
        &self,
        file: &BatchFile,
        lines: &mut (dyn Iterator<Item = Result<BatchLine, JournalError>> + Send),
    ) -> Result<LoadReport, JournalError> {
        let mut connection = self.connection();
        // IMMEDIATE: one loader at a time, across processes too.
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(error)?;
        let loaded: i64 = transaction
            .query_row(
                "SELECT COALESCE(MAX(loaded), 0) + 1 FROM batches",
                [],
                |r| r.get(0),
            )
            .map_err(error)?;
        let row = Self::batch_row(&transaction, &file.name)?;
        let lifted = row.as_ref().and_then(|(_, _, stop)| stop.clone());
        let mut added = 0u64;
        let generation = match row {
            Some((digest, generation, _)) if digest == file.digest => generation,
            row => {
                let generation = row.map_or(1, |(_, g, _)| g + 1);
                let (mut seq, mut changed): (i64, i64) = transaction
                    .query_row(
                        "SELECT COALESCE(MAX(seq), 0), COALESCE(MAX(changed), 0) FROM entries",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .map_err(error)?;
                let mut insert = transaction
                    .prepare(
                        "INSERT INTO entries (id, done, failed, body, seq, changed, batch, line, generation)
                         VALUES (?1, 0, 0, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
                    )
                    .map_err(error)?;
                let mut keep = transaction
                    .prepare(
                        "UPDATE entries SET batch = ?2, line = ?3, generation = ?4 WHERE id = ?1",
                    )
                    .map_err(error)?;
                for line in lines {
                    let line = line?;
                    let body = record::to_text(&line.entry)?;
                    let number = i64::try_from(line.line).unwrap_or(i64::MAX);
                    seq += 1;
                    changed += 1;
                    let written = insert
                        .execute(rusqlite::params![
                            line.entry.id,
                            body,
                            seq,
                            changed,
                            file.name,
                            number,
                            generation
                        ])
                        .map_err(error)?;
                    if written > 0 {
                        added += 1;
                    } else {
                        keep.execute(rusqlite::params![
                            line.entry.id,
                            file.name,
                            number,
                            generation
                        ])
                        .map_err(error)?;
                    }
                }
                generation
            }
        };
        transaction
            .execute(
                "INSERT INTO batches (name, digest, lines, generation, stop, loaded)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5)
                 ON CONFLICT (name) DO UPDATE SET digest = excluded.digest, lines = excluded.lines,
                     generation = excluded.generation, stop = NULL, loaded = excluded.loaded",
                rusqlite::params![
                    file.name,
                    file.digest,
                    i64::try_from(file.lines).unwrap_or(i64::MAX),
                    generation,
                    loaded
                ],
            )
            .map_err(error)?;
        let no_longer_in_file: i64 = transaction
            .query_row(
                "SELECT COUNT(*) FROM entries WHERE batch = ?1 AND generation < ?2",
                rusqlite::params![file.name, generation],
                |r| r.get(0),
            )
            .map_err(error)?;
        transaction.commit().map_err(error)?;
        Ok(LoadReport {
            added,
            no_longer_in_file: no_longer_in_file as u64,
            lifted,
        })
    }

    async fn batch(&self, name: Option<&str>) -> Result<Option<BatchInfo>, JournalError> {
        let row: Option<(String, i64, Option<String>)> = self
            .connection()
            .query_row(
                "SELECT name, lines, stop FROM batches WHERE ?1 IS NULL OR name = ?1
                 ORDER BY loaded DESC LIMIT 1",
                [name],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(error)?;
        row.map(|(name, lines, stop)| {
            Ok(BatchInfo {
                name,
                lines: lines as u64,
                stop: stop
                    .map(|s| serde_json::from_str(&s).map_err(error))
                    .transpose()?,
            })
        })
        .transpose()
    }

    async fn stop(&self, batch: &str, stop: &BatchStop) -> Result<(), JournalError> {
        self.connection()
            .execute(
                "UPDATE batches SET stop = ?2 WHERE name = ?1 AND stop IS NULL",
                [batch, &serde_json::to_string(stop).map_err(error)?],
            )
            .map_err(error)?;
        Ok(())
    }

    async fn status(&self, batch: &str) -> Result<BatchStatus, JournalError> {
        let connection = self.connection();
        let now = now_ms();
        let mut status = BatchStatus::default();
        let mut statement = connection
            .prepare(
                "SELECT CASE WHEN done = 1 AND failed = 1 THEN 'failed'
                             WHEN done = 1 THEN 'done'
                             WHEN handed_off = 1 THEN 'handed_off'
                             WHEN lease_until >= ?1 THEN 'held'
                             ELSE 'left' END AS state,
                        CASE WHEN done = 0 AND handed_off = 0 AND lease_until >= ?1 THEN holder END,
                        COUNT(*)
                 FROM entries
                 WHERE batch = ?2
                   AND generation = (SELECT generation FROM batches WHERE name = ?2)
                 GROUP BY 1, 2",
            )
            .map_err(error)?;
        let rows = statement
            .query_map(rusqlite::params![now, batch], |row| {
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

    async fn claim(
        &self,
        batch: &str,
        holder: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Claimed, JournalError> {
        // The connection's lock and SQLite's write lock (IMMEDIATE) make the
        // select-then-update one step, across processes too.
        let mut connection = self.connection();
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(error)?;
        let Some((_, generation, stop)) = Self::batch_row(&transaction, batch)? else {
            return Ok(Claimed::default());
        };
        if stop.is_some() {
            return Ok(Claimed {
                stop,
                ..Claimed::default()
            });
        }
        let now = now_ms();
        let mut lines = {
            let mut statement = transaction
                .prepare(
                    "UPDATE entries SET holder = ?1, lease_until = ?2, token = token + 1,
                         handed_off = 0
                     WHERE id IN (SELECT id FROM entries
                                  WHERE batch = ?5 AND generation = ?6 AND done = 0
                                    AND (lease_until IS NULL OR lease_until < ?3)
                                  ORDER BY line LIMIT ?4)
                     RETURNING body, token, line, batch",
                )
                .map_err(error)?;
            claims(
                statement
                    .query(rusqlite::params![
                        holder,
                        now + ms(lease),
                        now,
                        i64::try_from(limit).unwrap_or(i64::MAX),
                        batch,
                        generation
                    ])
                    .map_err(error)?,
                holder,
            )?
        };
        lines.sort_by_key(|claim| claim.line);
        let others_expire_in = if lines.is_empty() {
            let until: Option<i64> = transaction
                .query_row(
                    "SELECT MIN(lease_until) FROM entries
                     WHERE batch = ?1 AND generation = ?2 AND done = 0
                       AND holder != ?3 AND lease_until >= ?4 AND handed_off = 0",
                    rusqlite::params![batch, generation, holder, now],
                    |row| row.get(0),
                )
                .map_err(error)?;
            until.map(|u| Duration::from_millis(u64::try_from(u - now).unwrap_or(0)))
        } else {
            None
        };
        transaction.commit().map_err(error)?;
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
        let now = now_ms();
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "UPDATE entries SET holder = ?1, lease_until = ?2, token = token + 1
                 WHERE id = ?3 AND done = 0
                   AND (lease_until IS NULL OR lease_until < ?4 OR holder = ?1
                        OR (handed_off = 1 AND holder = ?5))
                 RETURNING body, token, line, batch",
            )
            .map_err(error)?;
        let rows = statement
            .query(rusqlite::params![
                holder,
                now + ms(lease),
                id,
                now,
                HANDED_OFF
            ])
            .map_err(error)?;
        Ok(claims(rows, holder)?.pop())
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

    async fn write_claimed(&self, entry: &Entry, fence: &Fence) -> Result<(), JournalError> {
        self.write_fenced(entry, fence, None)
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

    async fn hand_off(
        &self,
        entry: &Entry,
        fence: &Fence,
        grace: Duration,
    ) -> Result<(), JournalError> {
        self.write_fenced(entry, fence, Some(grace))
    }

    async fn handed_off(&self, limit: usize) -> Result<Vec<Entry>, JournalError> {
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "SELECT body FROM entries WHERE handed_off = 1 AND done = 0
                   AND (holder IS NULL OR holder = ?2 OR lease_until < ?3)
                 ORDER BY lease_until LIMIT ?1",
            )
            .map_err(error)?;
        let rows = statement
            .query(rusqlite::params![
                i64::try_from(limit).unwrap_or(i64::MAX),
                HANDED_OFF,
                now_ms()
            ])
            .map_err(error)?;
        entries(rows)
    }
}
