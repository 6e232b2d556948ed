//! The emulator's memory: accounts and balances, jobs, the idempotency cache,
//! rate-limit windows and the statistics tests read.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Config, KeyConfig, ModelConfig};
use crate::ledger::{Ledger, Refusal, Snapshot};
use crate::rng::Rng;

/// Shared state behind every handler.
pub type AppState = Arc<Shared>;

/// Everything the handlers share.
pub struct Shared {
    /// The configuration the emulator started with.
    pub config: Config,
    /// `http://127.0.0.1:PORT/api`: what clients use as base URL.
    pub base_url: String,
    /// `http://127.0.0.1:PORT`: where images are served.
    pub origin: String,
    /// Accounts by secret key.
    pub accounts: HashMap<String, KeyConfig>,
    /// Cancelled on shutdown; background jobs and webhooks stop with it.
    pub shutdown: CancellationToken,
    /// The client that delivers webhooks.
    pub http: reqwest::Client,
    rng: Mutex<Rng>,
    /// Job ids come from their own source, seeded from the clock: unique
    /// across runs and emulators, without shifting the seeded fault stream.
    ids: Mutex<Rng>,
    /// Balances, holds, spend, limits and transactions.
    ledger: Mutex<Ledger>,
    /// What the ledger reads the time from.
    clock: Arc<dyn Clock>,
    jobs: RwLock<HashMap<String, Job>>,
    idempotency: Mutex<HashMap<(String, String), Cached>>,
    windows: Mutex<HashMap<String, Window>>,
    stats: Mutex<Stats>,
}

/// A generation job.
#[derive(Debug, Clone)]
pub struct Job {
    /// Its id.
    pub id: String,
    /// The account (key name) that owns it.
    pub owner: String,
    /// What was asked for.
    pub prompt: String,
    /// The model.
    pub model: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The image seed (`additional_settings.seed`, default 0).
    pub seed: u64,
    /// Pad the served image to at least this many bytes (0: no padding).
    pub image_bytes: u64,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// Its modelled generation time, in seconds.
    pub generation_time: f64,
    /// Where it stands.
    pub status: JobState,
}

/// Where a job stands.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Still generating.
    Processing,
    /// Done, with the time it completed.
    Completed(DateTime<Utc>),
    /// Ended without an image (an injected fault).
    Failed(DateTime<Utc>),
}

impl JobState {
    /// The wire name of the status.
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Processing => "processing",
            JobState::Completed(_) => "completed",
            JobState::Failed(_) => "failed",
        }
    }
}

/// An idempotency cache entry.
#[derive(Debug, Clone)]
pub enum Cached {
    /// The first request with this key is still running.
    InFlight {
        /// What identifies its body.
        fingerprint: Vec<u8>,
    },
    /// The first request's answer, replayed until `expires`.
    Done {
        /// What identifies its body.
        fingerprint: Vec<u8>,
        /// The status it got.
        status: u16,
        /// The body it got.
        body: bytes::Bytes,
        /// When the entry lapses.
        expires: Instant,
    },
}

/// One key's current rate-limit window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    started_utc: DateTime<Utc>,
    count: u32,
}

/// The rate-limit state a response reports.
#[derive(Debug, Clone, Copy)]
pub struct RateInfo {
    /// Requests per minute.
    pub limit: u32,
    /// Requests left in this window.
    pub remaining: u32,
    /// When the window resets.
    pub reset: DateTime<Utc>,
    /// Seconds to wait, when this request is over the limit.
    pub retry_after: Option<u64>,
}

/// What `GET /_emulator/stats` reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests by route (`POST /v1/images/generations`) and status.
    pub requests: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Jobs by status.
    pub jobs: BTreeMap<String, u64>,
    /// Charges.
    pub charges: Charges,
    /// Responses replayed from the idempotency cache.
    pub idempotent_replays: u64,
    /// Webhook delivery.
    pub webhooks: WebhookStats,
    /// Faults injected.
    pub faults: FaultStats,
    /// When requests reached the rate limiter: the first and the last, in
    /// milliseconds since the epoch (an achieved rate is the count between).
    pub rate_limited_span_ms: Option<(i64, i64)>,
    /// When the latest rate-limit window (of any key) began, in milliseconds
    /// since the epoch: with `rate_limited_span_ms`, how long the requests
    /// of the last window took.
    #[serde(default)]
    pub rate_window_started_ms: Option<i64>,
}

/// Charges, by account name and by idempotency key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Charges {
    /// Jobs charged.
    pub total: u64,
    /// Credits charged.
    pub credits: u64,
    /// Jobs refunded (failed jobs).
    pub refunds: u64,
    /// Jobs charged per account name (never the key itself).
    pub by_key: BTreeMap<String, u64>,
    /// Jobs charged per idempotency key; a value above 1 is a double charge.
    pub by_idempotency_key: BTreeMap<String, u64>,
}

/// Webhook delivery counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebhookStats {
    /// POSTs attempted.
    pub attempts: u64,
    /// POSTs answered 2xx.
    pub deliveries: u64,
    /// Callbacks given up after every attempt failed.
    pub failures: u64,
    /// Callbacks not sent because the host is not loopback.
    pub blocked: u64,
}

/// Injected fault counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultStats {
    /// 500/503 answers.
    pub server_errors: u64,
    /// 429 answers injected (not counting real rate limiting).
    pub throttled: u64,
    /// Connections cut.
    pub dropped: u64,
    /// Image downloads cut short.
    pub truncated: u64,
    /// Jobs failed.
    pub failed_jobs: u64,
    /// Webhooks sent twice.
    pub duplicate_webhooks: u64,
    /// Webhooks held back.
    pub delayed_webhooks: u64,
}

/// What the idempotency check decided.
pub enum Begin {
    /// Replay this earlier answer.
    Replay {
        /// Its status.
        status: u16,
        /// Its body.
        body: bytes::Bytes,
    },
    /// Same key, different body.
    Reuse,
    /// Same key, still running.
    InFlight,
    /// New: the caller processes the request and then calls [`Shared::idempotency_finish`].
    Started,
}

fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    crate::rng::mix(nanos as u64 ^ u64::from(std::process::id()).rotate_left(32))
}

/// The ledger as `config` starts it: each key's balance, no limits.
fn fresh_ledger(config: &Config) -> Ledger {
    Ledger::new(
        config.keys.iter().map(|k| (k.name.clone(), k.balance)),
        config.nanos_per_credit,
        config.max_transactions,
    )
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in one handler must not wedge the emulator for the others.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Fresh state for `config`, serving at `origin`, on the system's clock.
    #[cfg(test)]
    pub fn new(config: Config, origin: String) -> Self {
        Self::with_clock(config, origin, Arc::new(crate::clock::SystemClock))
    }

    /// Fresh state for `config`, serving at `origin`, reading time from `clock`.
    pub fn with_clock(config: Config, origin: String, clock: Arc<dyn Clock>) -> Self {
        let accounts = config
            .keys
            .iter()
            .map(|k| (k.key.clone(), k.clone()))
            .collect();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.webhooks.timeout_secs))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a plain reqwest client builds");
        Self {
            base_url: format!("{origin}/api"),
            origin,
            accounts,
            shutdown: CancellationToken::new(),
            http,
            rng: Mutex::new(Rng::new(config.seed)),
            ids: Mutex::new(Rng::new(clock_seed())),
            ledger: Mutex::new(fresh_ledger(&config)),
            clock,
            jobs: RwLock::new(HashMap::new()),
            idempotency: Mutex::new(HashMap::new()),
            windows: Mutex::new(HashMap::new()),
            stats: Mutex::new(Stats::default()),
            config,
        }
    }

    /// Sleeps for `duration`, or returns `false` at once when the emulator
    /// shuts down: every wait of a handler, job or webhook goes through here.
    pub async fn pause(&self, duration: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(duration) => true,
            _ = self.shutdown.cancelled() => false,
        }
    }

    /// Runs `f` with the seeded random source.
    pub fn with_rng<T>(&self, f: impl FnOnce(&mut Rng) -> T) -> T {
        f(&mut lock(&self.rng))
    }

    /// A fresh, unique job id.
    pub fn new_job_id(&self) -> String {
        lock(&self.ids).uuid()
    }

    /// Runs `f` with the statistics.
    pub fn with_stats(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut lock(&self.stats))
    }

    /// A copy of the statistics, with job counts filled in.
    pub fn stats(&self) -> Stats {
        let mut stats = lock(&self.stats).clone();
        for job in self.jobs.read().unwrap_or_else(|p| p.into_inner()).values() {
            *stats.jobs.entry(job.status.name().to_string()).or_default() += 1;
        }
        stats
    }

    /// Forgets jobs, cached responses, windows and statistics; restores balances.
    pub fn reset(&self) {
        *lock(&self.rng) = Rng::new(self.config.seed);
        *lock(&self.ledger) = fresh_ledger(&self.config);
        self.jobs.write().unwrap_or_else(|p| p.into_inner()).clear();
        lock(&self.idempotency).clear();
        lock(&self.windows).clear();
        *lock(&self.stats) = Stats::default();
    }

    /// Counts a request against `bucket`'s window and reports the window.
    pub fn rate_check(&self, bucket: &str, limit: u32) -> RateInfo {
        let now = Instant::now();
        {
            let at = Utc::now().timestamp_millis();
            let mut stats = lock(&self.stats);
            let first = stats.rate_limited_span_ms.map_or(at, |(first, _)| first);
            stats.rate_limited_span_ms = Some((first, at));
        }
        let length = Duration::from_secs(self.config.rate_window_secs);
        let mut windows = lock(&self.windows);
        let begun = Window {
            started: now,
            started_utc: Utc::now(),
            count: 0,
        };
        let over = windows
            .get(bucket)
            .is_none_or(|window| now.duration_since(window.started) >= length);
        if over {
            windows.insert(bucket.to_string(), begun);
            lock(&self.stats).rate_window_started_ms = Some(begun.started_utc.timestamp_millis());
        }
        let window = windows.entry(bucket.to_string()).or_insert(begun);
        let reset = window.started_utc
            + chrono::Duration::from_std(length).unwrap_or(chrono::Duration::seconds(60));
        if window.count >= limit {
            let left = length.saturating_sub(now.duration_since(window.started));
            let retry_after = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            return RateInfo {
                limit,
                remaining: 0,
                reset,
                retry_after: Some(retry_after.max(1)),
            };
        }
        window.count += 1;
        RateInfo {
            limit,
            remaining: limit - window.count,
            reset,
            retry_after: None,
        }
    }

    /// The time on the ledger's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Holds `price` credits of `owner` for `job` until it ends, or says why
    /// not (funds short, a spend limit passed).
    pub fn hold(
        &self,
        owner: &str,
        job: &str,
        price: u64,
        model: &str,
        idempotency_key: Option<&str>,
    ) -> Result<(), Refusal> {
        let now = self.now();
        lock(&self.ledger).hold(owner, job, price, model, now)?;
        self.with_stats(|s| {
            s.charges.total += 1;
            s.charges.credits += price;
            *s.charges.by_key.entry(owner.to_string()).or_default() += 1;
            if let Some(key) = idempotency_key {
                *s.charges
                    .by_idempotency_key
                    .entry(key.to_string())
                    .or_default() += 1;
            }
        });
        Ok(())
    }

    /// Charges what `job` holds (it completed), with a transaction.
    pub fn settle(&self, owner: &str, job: &str) {
        let now = self.now();
        lock(&self.ledger).settle(owner, job, now);
    }

    /// Gives back what `job` holds (it failed): nothing is charged.
    pub fn release(&self, owner: &str, job: &str) {
        if lock(&self.ledger).release(owner, job).is_some() {
            self.with_stats(|s| s.charges.refunds += 1);
        }
    }

    /// What `owner` can spend now, in credits.
    pub fn balance(&self, owner: &str) -> u64 {
        self.billing(owner).available
    }

    /// `owner`'s balance, holds and spend now, in credits.
    pub fn billing(&self, owner: &str) -> Snapshot {
        let now = self.now();
        lock(&self.ledger).snapshot(owner, now)
    }

    /// Runs `f` with the ledger.
    pub fn with_ledger<T>(&self, f: impl FnOnce(&mut Ledger) -> T) -> T {
        f(&mut lock(&self.ledger))
    }

    /// Stores a new job.
    pub fn insert_job(&self, job: Job) {
        self.jobs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.id.clone(), job);
    }

    /// A copy of a job.
    pub fn job(&self, id: &str) -> Option<Job> {
        self.jobs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Ends a job and returns it.
    pub fn finish_job(&self, id: &str, state: JobState) -> Option<Job> {
        let mut jobs = self.jobs.write().unwrap_or_else(|p| p.into_inner());
        let job = jobs.get_mut(id)?;
        job.status = state;
        Some(job.clone())
    }

    /// Looks up `(owner, key)` in the idempotency cache and, for a new key,
    /// marks it in flight.
    pub fn idempotency_begin(&self, owner: &str, key: &str, fingerprint: &[u8]) -> Begin {
        let mut cache = lock(&self.idempotency);
        let slot = (owner.to_string(), key.to_string());
        match cache.get(&slot) {
            Some(Cached::InFlight { .. }) => return Begin::InFlight,
            Some(Cached::Done {
                fingerprint: seen,
                status,
                body,
                expires,
            }) if *expires > Instant::now() => {
                return if seen == fingerprint {
                    Begin::Replay {
                        status: *status,
                        body: body.clone(),
                    }
                } else {
                    Begin::Reuse
                };
            }
            _ => {}
        }
        cache.insert(
            slot,
            Cached::InFlight {
                fingerprint: fingerprint.to_vec(),
            },
        );
        Begin::Started
    }

    /// Records the answer to an idempotent request: cached for the TTL, unless
    /// it is a server error or its body is over 1 MiB (or `answer` is `None`:
    /// the request was abandoned), in which case the key is released.
    pub fn idempotency_finish(&self, owner: &str, key: &str, answer: Option<(u16, bytes::Bytes)>) {
        let mut cache = lock(&self.idempotency);
        let slot = (owner.to_string(), key.to_string());
        let fingerprint = match cache.remove(&slot) {
            Some(Cached::InFlight { fingerprint }) => fingerprint,
            _ => return,
        };
        if let Some((status, body)) = answer
            && status < 500
            && body.len() <= 1024 * 1024
        {
            let expires = Instant::now() + Duration::from_secs(self.config.idempotency_ttl_secs);
            cache.insert(
                slot,
                Cached::Done {
                    fingerprint,
                    status,
                    body,
                    expires,
                },
            );
        }
    }

    /// The model called `name`.
    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.config.models.iter().find(|m| m.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared::new(Config::default(), "http://127.0.0.1:1".into())
    }

    #[test]
    fn answers_are_cached_but_not_server_errors_or_huge_bodies() {
        let state = shared();
        for (key, status, size, cached) in [
            ("a", 200, 10, true),
            ("b", 402, 10, true),
            ("c", 500, 10, false),
            ("d", 503, 10, false),
            ("e", 200, 1024 * 1024 + 1, false),
        ] {
            assert!(matches!(
                state.idempotency_begin("o", key, b"x"),
                Begin::Started
            ));
            assert!(matches!(
                state.idempotency_begin("o", key, b"x"),
                Begin::InFlight
            ));
            state.idempotency_finish(
                "o",
                key,
                Some((status, bytes::Bytes::from(vec![b'0'; size]))),
            );
            let again = state.idempotency_begin("o", key, b"x");
            assert_eq!(
                matches!(again, Begin::Replay { .. }),
                cached,
                "{key}: {status}"
            );
        }
        assert!(matches!(
            state.idempotency_begin("o", "a", b"y"),
            Begin::Reuse
        ));
        assert!(
            matches!(state.idempotency_begin("other", "a", b"y"), Begin::Started),
            "keys are per account"
        );
    }

    #[test]
    fn an_abandoned_request_releases_its_key() {
        let state = shared();
        assert!(matches!(
            state.idempotency_begin("o", "k", b"x"),
            Begin::Started
        ));
        state.idempotency_finish("o", "k", None);
        assert!(matches!(
            state.idempotency_begin("o", "k", b"x"),
            Begin::Started
        ));
    }

    #[test]
    fn the_window_counts_down_and_then_refuses() {
        let state = shared();
        assert_eq!(state.stats().rate_window_started_ms, None);
        assert_eq!(state.rate_check("k", 2).remaining, 1);
        let begun = state.stats().rate_window_started_ms;
        assert!(begun.is_some());
        assert_eq!(state.rate_check("k", 2).remaining, 0);
        let refused = state.rate_check("k", 2);
        assert!(refused.retry_after.is_some_and(|s| (1..=60).contains(&s)));
        assert_eq!(
            state.stats().rate_window_started_ms,
            begun,
            "the same window"
        );
        assert!(state.rate_check("other", 2).retry_after.is_none());
    }
}
