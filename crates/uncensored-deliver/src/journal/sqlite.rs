//! The journal in one SQLite file, for one machine.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::OptionalExtension as _;

use uncensored::Money;

use super::{
    BatchFile, BatchInfo, BatchLine, BatchSpend, BatchStatus, BatchStop, Batches, Budgets,
    CallbackNonces, Claim, Claimed, Entries, Entry, Fence, JournalError, LoadReport, Reservation,
    Settlement, Stage,
};

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
const SCHEMA_VERSION: i64 = 4;

/// The migrations, in order: each runs in its own IMMEDIATE transaction
/// that reads the schema's version first, so that processes opening a new
/// journal together migrate it once. Never edit one that has shipped.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
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
    ),
    (
        2,
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
    ),
    (
        3,
        // Batches known by name, lines by content (`LineIds`), claims with
        // fencing tokens. A batch of the one-batch schema is dropped: its
        // line ids were positions, not contents.
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
    ),
    (
        4,
        // Budgets: a batch's budget and totals, and each line's own
        // reservation and spend (the totals change with them, in one
        // transaction).
        "ALTER TABLE entries ADD COLUMN reserved_nanos INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE entries ADD COLUMN spent_nanos INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE batches ADD COLUMN budget_nanos INTEGER;
     ALTER TABLE batches ADD COLUMN reserved_nanos INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE batches ADD COLUMN spent_nanos INTEGER NOT NULL DEFAULT 0;",
    ),
];

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

    fn from_connection(mut connection: rusqlite::Connection) -> Result<Self, JournalError> {
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA busy_timeout = 5000;
                 PRAGMA cache_size = -256;",
            )
            .map_err(error)?;
        // Versioned migrations, each in its own transaction.
        let mut version = 0;
        for (target, sql) in MIGRATIONS {
            let transaction = connection
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(error)?;
            version = transaction
                .query_row("PRAGMA user_version", [], |row| row.get(0))
                .map_err(error)?;
            if version < *target {
                transaction.execute_batch(sql).map_err(error)?;
                transaction
                    .execute_batch(&format!("PRAGMA user_version = {target}"))
                    .map_err(error)?;
                transaction.commit().map_err(error)?;
                version = *target;
            }
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

    /// Inserts `entry` (unless its id exists, when `replace` is false),
    /// or replaces it; returns whether a row was written.
    fn write(
        connection: &rusqlite::Connection,
        entry: &Entry,
        replace: bool,
    ) -> Result<bool, JournalError> {
        let body = serde_json::to_string(entry).map_err(error)?;
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

/// The budget and totals of `batch`.
fn spend_row(
    connection: &rusqlite::Connection,
    batch: &str,
) -> Result<Option<BatchSpend>, JournalError> {
    connection
        .query_row(
            "SELECT budget_nanos, reserved_nanos, spent_nanos FROM batches WHERE name = ?1",
            [batch],
            |row| {
                Ok(BatchSpend {
                    budget: row.get::<_, Option<i64>>(0)?.map(Money::from_nanos),
                    reserved: Money::from_nanos(row.get(1)?),
                    spent: Money::from_nanos(row.get(2)?),
                })
            },
        )
        .optional()
        .map_err(error)
}

/// The reservation of the line under `fence` (of `batch`), when the claim
/// still holds it.
fn reservation_of(
    connection: &rusqlite::Connection,
    batch: &str,
    fence: &Fence,
) -> Result<i64, JournalError> {
    connection
        .query_row(
            "SELECT reserved_nanos FROM entries
             WHERE id = ?1 AND holder = ?2 AND token = ?3 AND batch = ?4",
            rusqlite::params![fence.id, fence.holder, fence.token, batch],
            |row| row.get(0),
        )
        .optional()
        .map_err(error)?
        .ok_or_else(|| JournalError::LeaseLost {
            id: fence.id.clone(),
        })
}

fn claims(rows: rusqlite::Rows<'_>, holder: &str) -> Result<Vec<Claim>, JournalError> {
    rows.mapped(|row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, Option<i64>>(2)?,
        ))
    })
    .map(|row| {
        let (body, token, line) = row.map_err(error)?;
        let entry: Entry = serde_json::from_str(&body).map_err(error)?;
        Ok(Claim {
            fence: Fence {
                id: entry.id.clone(),
                holder: holder.to_string(),
                token,
            },
            line: line.and_then(|l| u64::try_from(l).ok()),
            entry,
        })
    })
    .collect()
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
impl Budgets for SqliteJournal {
    async fn set_budget(
        &self,
        batch: &str,
        budget: Option<Money>,
    ) -> Result<Option<BatchSpend>, JournalError> {
        let connection = self.connection();
        connection
            .execute(
                "UPDATE batches SET budget_nanos = ?2 WHERE name = ?1",
                rusqlite::params![batch, budget.map(Money::nanos)],
            )
            .map_err(error)?;
        spend_row(&connection, batch)
    }

    async fn spend(&self, batch: &str) -> Result<Option<BatchSpend>, JournalError> {
        spend_row(&self.connection(), batch)
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
        let mut connection = self.connection();
        // IMMEDIATE: the check and the update are one step, across processes.
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(error)?;
        let reserved = reservation_of(&transaction, batch, fence)?;
        if reserved > 0 {
            return Ok(Reservation::Already(Money::from_nanos(reserved)));
        }
        let fitted = transaction
            .execute(
                "UPDATE batches SET reserved_nanos = reserved_nanos + ?2
                 WHERE name = ?1 AND budget_nanos IS NOT NULL
                   AND reserved_nanos + spent_nanos + ?2 <= budget_nanos",
                rusqlite::params![batch, price.nanos()],
            )
            .map_err(error)?;
        if fitted == 0 {
            let spend = spend_row(&transaction, batch)?.unwrap_or_default();
            return Ok(match spend.budget {
                None => Reservation::NoBudget,
                Some(_) => Reservation::Exceeds(spend),
            });
        }
        transaction
            .execute(
                "UPDATE entries SET reserved_nanos = ?2 WHERE id = ?1",
                rusqlite::params![fence.id, price.nanos()],
            )
            .map_err(error)?;
        transaction.commit().map_err(error)?;
        Ok(Reservation::Reserved)
    }

    async fn settle(
        &self,
        batch: &str,
        fence: &Fence,
        how: Settlement,
    ) -> Result<Money, JournalError> {
        let mut connection = self.connection();
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(error)?;
        let reserved = reservation_of(&transaction, batch, fence)?;
        if reserved <= 0 {
            return Ok(Money::ZERO);
        }
        let paid = i64::from(how == Settlement::Paid) * reserved;
        transaction
            .execute(
                "UPDATE entries SET reserved_nanos = 0, spent_nanos = spent_nanos + ?2 WHERE id = ?1",
                rusqlite::params![fence.id, paid],
            )
            .map_err(error)?;
        transaction
            .execute(
                "UPDATE batches SET reserved_nanos = reserved_nanos - ?2,
                     spent_nanos = spent_nanos + ?3
                 WHERE name = ?1",
                rusqlite::params![batch, reserved, paid],
            )
            .map_err(error)?;
        transaction.commit().map_err(error)?;
        Ok(Money::from_nanos(reserved))
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
                    let body = serde_json::to_string(&line.entry).map_err(error)?;
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
                             WHEN lease_until >= ?1 THEN 'held'
                             ELSE 'left' END AS state,
                        CASE WHEN done = 0 AND lease_until >= ?1 THEN holder END,
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
                    "UPDATE entries SET holder = ?1, lease_until = ?2, token = token + 1
                     WHERE id IN (SELECT id FROM entries
                                  WHERE batch = ?5 AND generation = ?6 AND done = 0
                                    AND (lease_until IS NULL OR lease_until < ?3)
                                  ORDER BY line LIMIT ?4)
                     RETURNING body, token, line",
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
                       AND holder != ?3 AND lease_until >= ?4",
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
                   AND (lease_until IS NULL OR lease_until < ?4 OR holder = ?1)
                 RETURNING body, token, line",
            )
            .map_err(error)?;
        let rows = statement
            .query(rusqlite::params![holder, now + ms(lease), id, now])
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
        let body = serde_json::to_string(entry).map_err(error)?;
        let failed = matches!(entry.stage, Stage::Failed { .. });
        let written = self
            .connection()
            .execute(
                "UPDATE entries SET done = ?2, failed = ?3, body = ?4,
                     changed = (SELECT COALESCE(MAX(changed), 0) + 1 FROM entries)
                 WHERE id = ?1 AND holder = ?5 AND token = ?6",
                rusqlite::params![
                    entry.id,
                    entry.done,
                    failed,
                    body,
                    fence.holder,
                    fence.token
                ],
            )
            .map_err(error)?;
        if written == 0 {
            return Err(JournalError::LeaseLost {
                id: entry.id.clone(),
            });
        }
        Ok(())
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
