//! One rate limit shared by every process that uses an API key: GCRA with
//! its state in one PostgreSQL row per key, moved on atomically by each
//! request.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use uncensored::{LocalPacer, PROBE_PATIENCE, Pace, RateLimit, pace_interval};

use super::Database;
use crate::journal::{JournalError, PostgresJournal};

/// Paces every process that shares a database and an API key: each request
/// takes the key's next slot from one row (`uncensored_pacing`), so all of
/// them together stay under the key's ceiling, and a 429's `retry-after`
/// pauses all of them. When the database cannot be reached the process
/// paces itself alone (logged) rather than stopping.
#[derive(Debug)]
pub struct PostgresPacer {
    database: Database,
    /// The key's fingerprint (`uncensored::Client::key_id`), never the key.
    key: String,
    state: Mutex<State>,
    first_answer: Notify,
    fallback: LocalPacer,
}

#[derive(Debug, Default)]
struct State {
    limit: Option<u32>,
    probing: bool,
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

impl PostgresPacer {
    /// A pacer for the key with fingerprint `key_id` on the journal's database.
    pub fn new(journal: &PostgresJournal, key_id: &str) -> Self {
        Self::on(journal.database().clone(), key_id)
    }

    /// A pacer on the database at `url` (its own small pool, connected as
    /// [`PostgresJournal::connect`] connects, TLS included), for the key
    /// with fingerprint `key_id` (`uncensored::key_fingerprint`).
    pub async fn connect(url: &str, key_id: &str) -> Result<Self, JournalError> {
        Ok(Self::on(Database::connect(url).await?, key_id))
    }

    fn on(database: Database, key_id: &str) -> Self {
        Self {
            database,
            key: key_id.to_string(),
            state: Mutex::default(),
            first_answer: Notify::new(),
            fallback: LocalPacer::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the key's next slot; returns how long to wait for it.
    async fn take_slot(&self, interval: Duration) -> Result<Duration, JournalError> {
        let key = self.key.as_str();
        let interval_ms = interval.as_secs_f64() * 1000.0;
        let row = self
            .database
            .run(|client| async move {
                client
                    .query_one(
                        "INSERT INTO uncensored_pacing AS p (key, interval_ms, tat)
                         VALUES ($1, $2, now() + make_interval(secs => $2::float8 / 1000))
                         ON CONFLICT (key) DO UPDATE
                         SET tat = GREATEST(p.tat, now(), p.paused_until)
                                   + make_interval(secs => p.interval_ms / 1000)
                         RETURNING EXTRACT(EPOCH FROM
                             p.tat - make_interval(secs => p.interval_ms / 1000) - now())::float8",
                        &[&key, &interval_ms],
                    )
                    .await
            })
            .await?;
        Ok(Duration::from_secs_f64(row.get::<_, f64>(0).max(0.0)))
    }

    /// Nobody starts before `delay` from now (the database's now).
    async fn pause(&self, delay: Duration) -> Result<(), JournalError> {
        let key = self.key.as_str();
        let delay = seconds(delay);
        self.database
            .run(|client| async move {
                client
                    .execute(
                        "UPDATE uncensored_pacing
                         SET paused_until = GREATEST(paused_until, now() + make_interval(secs => $2))
                         WHERE key = $1",
                        &[&key, &delay],
                    )
                    .await
            })
            .await
            .map(drop)
    }

    async fn set_limit(&self, limit: u32) -> Result<(), JournalError> {
        let key = self.key.as_str();
        let interval_ms = pace_interval(limit).as_secs_f64() * 1000.0;
        self.database
            .run(|client| async move {
                // Learned by the probe (the row said 0): the probe used the
                // first slot, so the next is an interval after it.
                client
                    .execute(
                        "INSERT INTO uncensored_pacing AS p (key, interval_ms, tat)
                         VALUES ($1, $2::float8, now() + make_interval(secs => $2::float8 / 1000))
                         ON CONFLICT (key) DO UPDATE
                         SET interval_ms = excluded.interval_ms,
                             tat = CASE WHEN p.interval_ms = 0
                                        THEN GREATEST(p.tat, excluded.tat) ELSE p.tat END
                         WHERE p.interval_ms <> excluded.interval_ms",
                        &[&key, &interval_ms],
                    )
                    .await
            })
            .await
            .map(drop)
    }

    /// This process's first request: the ceiling's interval when another
    /// process knows it already, or `None` when this request is the probe
    /// that learns it. While another process probes, waits for its answer
    /// (checked every 50 ms, at most `PROBE_PATIENCE`, then probes itself).
    async fn probe(&self) -> Result<Option<Duration>, JournalError> {
        let key = self.key.as_str();
        let started = tokio::time::Instant::now();
        loop {
            let rows = self
                .database
                .run(|client| async move {
                    client
                        .query(
                            "WITH claimed AS (
                                 INSERT INTO uncensored_pacing (key, interval_ms) VALUES ($1, 0)
                                 ON CONFLICT (key) DO NOTHING RETURNING interval_ms)
                             SELECT interval_ms, true FROM claimed
                             UNION ALL
                             SELECT interval_ms, false FROM uncensored_pacing WHERE key = $1
                             LIMIT 1",
                            &[&key],
                        )
                        .await
                })
                .await?;
            let (interval_ms, ours): (f64, bool) = rows
                .first()
                .map(|row| (row.get(0), row.get(1)))
                .unwrap_or((0.0, true));
            if ours {
                return Ok(None);
            }
            if interval_ms > 0.0 {
                return Ok(Some(Duration::from_secs_f64(interval_ms / 1000.0)));
            }
            if started.elapsed() >= PROBE_PATIENCE {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[async_trait::async_trait]
impl Pace for PostgresPacer {
    async fn acquire(&self) {
        loop {
            let notified = self.first_answer.notified();
            // (limit, wait for the first answer)
            let (limit, wait) = {
                let mut state = self.lock();
                match state.limit {
                    Some(limit) => (Some(limit), false),
                    None if !state.probing => {
                        state.probing = true;
                        (None, false)
                    }
                    None => (None, true),
                }
            };
            if wait {
                if tokio::time::timeout(PROBE_PATIENCE, notified)
                    .await
                    .is_err()
                {
                    // The probe got no answer with headers: the next one probes.
                    let mut state = self.lock();
                    if state.limit.is_none() {
                        state.probing = false;
                    }
                }
                continue;
            }
            let interval = match limit {
                Some(limit) => pace_interval(limit),
                // The probe: one process of all learns the ceiling (its row
                // says 0 until then); the others wait for the row.
                None => match self.probe().await {
                    Ok(Some(interval)) => interval,
                    Ok(None) => return,
                    Err(error) => {
                        tracing::warn!(%error, "shared pacing unavailable; pacing this process alone");
                        return self.fallback.acquire().await;
                    }
                },
            };
            match self.take_slot(interval).await {
                Ok(wait) => {
                    tokio::time::sleep(wait).await;
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "shared pacing unavailable; pacing this process alone");
                    return self.fallback.acquire().await;
                }
            }
        }
    }

    async fn observe(&self, rate: &RateLimit) {
        self.fallback.observe(rate).await;
        let known = self.lock().limit.replace(rate.limit);
        if known != Some(rate.limit)
            && let Err(error) = self.set_limit(rate.limit).await
        {
            tracing::warn!(%error, "cannot share the key's ceiling");
        }
        self.first_answer.notify_waiters();
        if rate.remaining == 0 {
            let until_reset = (rate.reset - chrono::Utc::now())
                .to_std()
                .unwrap_or_default();
            if let Err(error) = self.pause(until_reset + Duration::from_secs(1)).await {
                tracing::warn!(%error, "cannot share a used-up window");
            }
        }
    }

    async fn refused(&self, retry_after: Duration) {
        self.fallback.refused(retry_after).await;
        if let Err(error) = self.pause(retry_after).await {
            tracing::warn!(%error, "cannot share a 429's retry-after");
        }
    }
}
