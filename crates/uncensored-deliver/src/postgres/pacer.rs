//! One rate limit shared by every process that uses an API key: the key's
//! window as the API reports it, in one PostgreSQL row per key, counted down
//! atomically by each request (the rule of `uncensored::LocalPacer`, for all
//! processes together); spaced slots (GCRA on the same row) when no window
//! can be followed.

use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use uncensored::{
    LocalPacer, PROBE_PATIENCE, Pace, RESET_PRECISION, RateLimit, WINDOW, pace_interval,
    time_to_reset,
};

use super::Database;
use crate::journal::{JournalError, PostgresJournal};

/// Paces every process that shares a database and an API key: the key's
/// row (`uncensored_pacing`) holds the window the API reports (what is left
/// in it, when it resets), each request takes one of what is left, and every
/// answer lowers it to what the API says; so all processes together spend
/// the window, then wait for its reset (a second and a quarter after it: the header has
/// whole seconds), then begin the next. The reset is turned into the
/// database's clock by the process that reads it (its own clock against the
/// API's; the database's clock against no one's). A 429's `retry-after`
/// pauses all of them. When the database cannot be reached the process paces
/// itself alone (logged) rather than stopping.
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

/// How often a request waiting for a window begun by a worker, none of
/// whose requests has been answered yet, asks the row again (another
/// process may learn when it resets).
const UNANSWERED_POLL: Duration = Duration::from_millis(100);

/// What the key's row answers a request.
enum Take {
    /// It starts now.
    Now,
    /// It starts after this wait (a spaced slot, taken).
    At(Duration),
    /// It asks again after this wait.
    Later(Duration),
}

impl PostgresPacer {
    /// A pacer for the key with fingerprint `key_id` on the journal's database.
    pub fn new(journal: &PostgresJournal, key_id: &str) -> Self {
        Self::on(journal.database().clone(), key_id)
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

    /// Asks the key's row whether a request may start, and takes its place
    /// when it may; `None` when the row is not there yet.
    async fn take(&self) -> Result<Option<Take>, JournalError> {
        let key = self.key.as_str();
        let rows = self
            .database
            .run(|client| async move {
                client
                    .query(
                        // 0: paused (a 429); 1: a spaced slot (no window
                        // followed); 2: one of what is left in the window;
                        // 3: none left, or between the reset and a second
                        // after it; 4: past that, a new window, begun here.
                        "WITH d AS (
                             SELECT key, now() AS t, tat, paused_until, interval_ms, window_limit,
                                    window_reset, window_ends, window_remaining,
                                    CASE WHEN paused_until > now() THEN 0
                                         WHEN window_ends IS NULL THEN 1
                                         WHEN now() < window_ends AND window_remaining > 0 THEN 2
                                         WHEN now() < window_ends + make_interval(secs => $2) THEN 3
                                         ELSE 4 END AS action
                             FROM uncensored_pacing WHERE key = $1 FOR UPDATE)
                         UPDATE uncensored_pacing p SET
                             tat = CASE d.action WHEN 1
                                 THEN GREATEST(d.tat, d.t) + make_interval(secs => d.interval_ms / 1000)
                                 ELSE d.tat END,
                             window_remaining = CASE d.action
                                 WHEN 2 THEN d.window_remaining - 1
                                 WHEN 4 THEN GREATEST(d.window_limit - 1, 0)
                                 ELSE d.window_remaining END,
                             window_previous = CASE d.action WHEN 4
                                 THEN COALESCE(d.window_reset, p.window_previous)
                                 ELSE p.window_previous END,
                             window_reset = CASE d.action WHEN 4 THEN NULL ELSE d.window_reset END,
                             window_ends = CASE d.action WHEN 4
                                 THEN d.t + make_interval(secs => $3) ELSE d.window_ends END
                         FROM d WHERE p.key = d.key
                         RETURNING d.action, EXTRACT(EPOCH FROM CASE d.action
                             WHEN 0 THEN d.paused_until - d.t
                             WHEN 1 THEN GREATEST(d.tat, d.t) - d.t
                             WHEN 3 THEN d.window_ends + make_interval(secs => $2) - d.t
                             ELSE interval '0' END)::float8,
                             d.window_reset IS NULL",
                        &[
                            &key,
                            &seconds(RESET_PRECISION),
                            &seconds(WINDOW),
                        ],
                    )
                    .await
            })
            .await?;
        Ok(rows.first().map(|row| {
            let wait = Duration::try_from_secs_f64(row.get::<_, f64>(1).max(0.0))
                .unwrap_or(uncensored::MAX_WAIT)
                .min(uncensored::MAX_WAIT);
            match (row.get::<_, i32>(0), row.get::<_, bool>(2)) {
                (0, _) => Take::Later(wait),
                (1, _) => Take::At(wait),
                // Until an answer tells the window's reset, another process
                // may learn it: asked again soon.
                (3, true) => Take::Later(wait.min(UNANSWERED_POLL)),
                (3, false) => Take::Later(wait),
                _ => Take::Now,
            }
        }))
    }

    /// Writes an answer's window into the key's row: what is left only ever
    /// goes down; a later reset moves the window on (a first answer of a
    /// window begun by a worker tells when it ends); an earlier one is a
    /// late answer and changes nothing. `left`: the time to the reset by
    /// this machine's clock (`None`: no window to follow, requests spaced).
    async fn record_window(
        &self,
        rate: &RateLimit,
        left: Option<Duration>,
    ) -> Result<(), JournalError> {
        let key = self.key.as_str();
        let limit = i32::try_from(rate.limit).unwrap_or(i32::MAX);
        let remaining = i32::try_from(rate.remaining).unwrap_or(i32::MAX);
        let reset = rate.reset;
        let left = left.map(seconds);
        self.database
            .run(|client| async move {
                client
                    .execute(
                        // 0: nothing changes; 1: the first window followed;
                        // 2: the same window; 3: the first answer of a window
                        // begun by a worker; 4: a later reset while the window
                        // runs (over at the later of the two); 5: no window to
                        // follow.
                        "WITH r AS (
                             SELECT key,
                                    CASE WHEN window_ends IS NULL
                                              THEN CASE WHEN $5::float8 IS NULL THEN 0 ELSE 1 END
                                         WHEN window_reset = $4 THEN 2
                                         WHEN window_reset > $4 THEN 0
                                         WHEN window_reset IS NULL AND window_previous >= $4 THEN 0
                                         WHEN $5::float8 IS NULL THEN 5
                                         WHEN window_reset IS NULL THEN 3
                                         ELSE 4 END AS c
                             FROM uncensored_pacing WHERE key = $1 FOR UPDATE)
                         UPDATE uncensored_pacing p SET
                             window_limit = $2,
                             window_reset = CASE WHEN r.c IN (1, 3, 4) THEN $4
                                                 WHEN r.c = 5 THEN NULL ELSE p.window_reset END,
                             window_previous = CASE WHEN r.c IN (1, 5) THEN NULL
                                                    ELSE p.window_previous END,
                             window_ends = CASE r.c
                                 WHEN 1 THEN now() + make_interval(secs => $5::float8)
                                 WHEN 3 THEN now() + make_interval(secs => $5::float8)
                                 WHEN 4 THEN GREATEST(p.window_ends,
                                                      now() + make_interval(secs => $5::float8))
                                 WHEN 5 THEN NULL
                                 ELSE p.window_ends END,
                             window_remaining = CASE r.c
                                 WHEN 0 THEN p.window_remaining
                                 WHEN 1 THEN $3
                                 ELSE LEAST(p.window_remaining, $3) END
                         FROM r WHERE p.key = r.key",
                        &[&key, &limit, &remaining, &reset, &left],
                    )
                    .await
            })
            .await
            .map(drop)
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

    /// Takes a place from the key's row, waiting as it says; paces this
    /// process alone when the database cannot be reached.
    async fn take_place(&self) {
        loop {
            match self.take().await {
                Ok(Some(Take::Now)) => return,
                Ok(Some(Take::At(wait))) => return tokio::time::sleep(wait).await,
                Ok(Some(Take::Later(wait))) => tokio::time::sleep(wait).await,
                // No row (removed by hand): written again from the ceiling.
                Ok(None) => {
                    let Some(limit) = self.lock().limit else {
                        return;
                    };
                    if let Err(error) = self.set_limit(limit).await {
                        tracing::warn!(%error, "shared pacing unavailable; pacing this process alone");
                        return self.fallback.acquire().await;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "shared pacing unavailable; pacing this process alone");
                    return self.fallback.acquire().await;
                }
            }
        }
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
            if limit.is_none() {
                // The probe: one process of all learns the ceiling (its row
                // says 0 until then); the others wait for the row.
                match self.probe().await {
                    Ok(Some(_)) => {}
                    Ok(None) => return,
                    Err(error) => {
                        tracing::warn!(%error, "shared pacing unavailable; pacing this process alone");
                        return self.fallback.acquire().await;
                    }
                }
            }
            return self.take_place().await;
        }
    }

    async fn observe(&self, rate: &RateLimit) {
        self.fallback.observe(rate).await;
        let left = time_to_reset(rate, Utc::now());
        let known = self.lock().limit.replace(rate.limit);
        // The window first: the ceiling written by the probe's answer is
        // what lets the other processes start, and a request taken before
        // the row knows the window would go uncounted in it (a spaced slot),
        // so the window's first count would be one too many.
        if let Err(error) = self.record_window(rate, left).await {
            tracing::warn!(%error, "cannot share the key's window");
        }
        if known != Some(rate.limit) {
            if let Err(error) = self.set_limit(rate.limit).await {
                tracing::warn!(%error, "cannot share the key's ceiling");
            } else if let Err(error) = self.record_window(rate, left).await {
                // Written again, for a row that set_limit has just made.
                tracing::warn!(%error, "cannot share the key's window");
            }
        }
        self.first_answer.notify_waiters();
    }

    async fn refused(&self, retry_after: Duration) {
        self.fallback.refused(retry_after).await;
        if let Err(error) = self.pause(retry_after).await {
            tracing::warn!(%error, "cannot share a 429's retry-after");
        }
    }
}
