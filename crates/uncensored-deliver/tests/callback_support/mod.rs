//! Helpers of the callback service's tests: the emulator, a counting
//! journal, a service on loopback, submissions, and payloads.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::mpsc;
use uncensored::callback::CallbackSecret;
use uncensored::{Client, GenerateRequest, Generation, RetryPolicy, WaitOptions};
use uncensored_deliver::callbacks::{
    CallbackService, CallbackServiceBuilder, Submitted, Submitter,
};
use uncensored_deliver::journal::{Entry, Journal, JournalError, SqliteJournal};
use uncensored_deliver::storage::StorageUrl;
use uncensored_deliver::testing::observed::{Call, Observed, Observer};
use uncensored_deliver::{Deliverer, DeliveryError};
use uncensored_emulator::{Config, Emulator, EmulatorHandle};

pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789abcdef";
pub const JOB_READS: &str = "GET /v1/images/generation/jobs/{job_id}";
/// Where callbacks go when the service is down: nothing listens on port 9.
pub const CLOSED: &str = "http://127.0.0.1:9";

/// A journal that counts every call, reads included, around SQLite.
#[derive(Debug, Clone)]
pub struct Counted {
    pub journal: Arc<dyn Journal>,
    calls: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
}

impl Counted {
    pub fn open(path: &std::path::Path) -> Self {
        Self::wrap(Arc::new(SqliteJournal::open(path).unwrap()))
    }

    /// Counts the calls to `inner`.
    pub fn wrap(inner: Arc<dyn Journal>) -> Self {
        let calls = Arc::new(AtomicU64::new(0));
        let writes = Arc::new(AtomicU64::new(0));
        let (c, w) = (calls.clone(), writes.clone());
        let observer: Observer = Arc::new(move |call: Call, _| {
            if call.name == "counts" {
                return;
            }
            c.fetch_add(1, Ordering::SeqCst);
            if call.write {
                w.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self {
            journal: Arc::new(Observed::new(inner, observer)),
            calls,
            writes,
        }
    }

    /// The journal, for the service.
    pub fn shared(&self) -> Arc<dyn Journal> {
        self.journal.clone()
    }

    pub fn calls(&self) -> (u64, u64) {
        (
            self.calls.load(Ordering::SeqCst),
            self.writes.load(Ordering::SeqCst),
        )
    }

    pub async fn counts(&self) -> Result<(u64, u64), JournalError> {
        self.journal.counts().await
    }
}

/// Where a test's journal is: a fresh SQLite file, or a fresh database on
/// the PostgreSQL server the running tests share.
pub enum Place {
    Sqlite(PathBuf),
    #[cfg(feature = "postgres")]
    Postgres(String, Arc<uncensored_test_servers::Postgres>),
}

impl Place {
    pub fn sqlite(tag: &str) -> Self {
        Self::Sqlite(temp_journal(tag))
    }

    /// A fresh database, on the shared server (started by the first test
    /// that needs it); `None` when PostgreSQL is not installed (outside CI:
    /// in CI the server must start, or the test fails).
    #[cfg(feature = "postgres")]
    pub fn postgres(tag: &str) -> Option<Self> {
        use std::sync::{Mutex, Weak};
        static SHARED: Mutex<Weak<uncensored_test_servers::Postgres>> = Mutex::new(Weak::new());
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let server = {
            let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
            match shared.upgrade() {
                Some(server) => server,
                None => {
                    let server = Arc::new(uncensored_test_servers::postgres()?);
                    *shared = Arc::downgrade(&server);
                    server
                }
            }
        };
        let name = format!("{tag}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        Some(Self::Postgres(server.create_database(&name), server))
    }

    /// Another handle on the journal, as another process would open it.
    pub async fn open(&self) -> Counted {
        match self {
            Self::Sqlite(path) => Counted::open(path),
            #[cfg(feature = "postgres")]
            Self::Postgres(url, _) => Counted::wrap(Arc::new(
                uncensored_deliver::journal::PostgresJournal::connect(url)
                    .await
                    .unwrap_or_else(|e| panic!("cannot connect the journal: {e}")),
            )),
        }
    }

    pub fn remove(&self) {
        if let Self::Sqlite(path) = self {
            std::fs::remove_file(path).ok();
        }
    }
}

pub fn temp_journal(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "callbacks-{tag}-{}-{}.sqlite",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ))
}

pub fn secret() -> CallbackSecret {
    CallbackSecret::new(SECRET).unwrap()
}

pub async fn emulator(config: Config) -> (EmulatorHandle, Client) {
    let emulator = Emulator::start(config).await.unwrap();
    let client = Client::builder()
        .base_url(emulator.base_url())
        .api_key(uncensored_emulator::DEFAULT_KEY)
        .retry_policy(RetryPolicy {
            max_attempts: 12,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        })
        .wait_options(WaitOptions {
            first_poll: Duration::from_millis(5),
            min_interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(50),
            ..WaitOptions::default()
        })
        .build()
        .unwrap();
    (emulator, client)
}

pub fn quiet() -> Config {
    Config {
        seed: 11,
        rate_limit_rpm: 1_000_000,
        ..Config::default()
    }
}

/// The emulator's reads of jobs so far, whatever their status.
pub fn job_reads(emulator: &EmulatorHandle) -> u64 {
    emulator
        .stats()
        .requests
        .get(JOB_READS)
        .map(|by_status| by_status.values().sum())
        .unwrap_or(0)
}

pub type Delivered = mpsc::UnboundedReceiver<(String, Result<Entry, String>)>;

/// A service on a loopback port; the base URL its signed URLs start with,
/// and the channel its deliveries are reported on.
pub async fn serve(
    client: &Client,
    journal: Arc<dyn Journal>,
    configure: impl FnOnce(CallbackServiceBuilder) -> CallbackServiceBuilder,
) -> (CallbackService, String, Delivered) {
    let storage = StorageUrl::parse("memory://").unwrap().open().unwrap();
    let deliverer = Deliverer::new(client.clone(), Arc::new(storage), journal);
    let (sender, delivered) = mpsc::unbounded_channel();
    let builder = CallbackService::builder(client.clone(), deliverer).reporter(
        move |job_id, outcome: &Result<Entry, DeliveryError>| {
            let outcome = outcome.clone_entry();
            let _ = sender.send((job_id.to_string(), outcome));
        },
    );
    let service = configure(builder).build().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = service.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (service, base, delivered)
}

pub trait CloneEntry {
    fn clone_entry(&self) -> Result<Entry, String>;
}

impl CloneEntry for Result<Entry, DeliveryError> {
    fn clone_entry(&self) -> Result<Entry, String> {
        match self {
            Ok(entry) => Ok(entry.clone()),
            Err(error) => Err(error.to_string()),
        }
    }
}

/// An async job whose callback goes to `callback_url`.
pub async fn queue(client: &Client, prompt: &str, callback_url: &str) -> String {
    let request = GenerateRequest::new(prompt)
        .size(256, 256)
        .callback_url(callback_url);
    match client.generate(&request).await.unwrap() {
        Generation::Queued(job) => job.job_id,
        other => panic!("an async job, not {other:?}"),
    }
}

pub fn payload(job_id: &str) -> serde_json::Value {
    json!({"request_id": job_id, "status": "success", "result": {"image_url": "https://evil.example/x.jpg"}})
}

pub async fn post(http: &reqwest::Client, url: &str, body: &serde_json::Value) -> u16 {
    http.post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut text = String::new();
    while text.len() < 2 * bytes {
        text.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    text.truncate(2 * bytes);
    text
}

/// A submitter of jobs whose callbacks go to `base` (the service's, or
/// [`CLOSED`]), recorded in `journal`, signed with `secret`.
pub fn submitter(
    client: &Client,
    journal: Arc<dyn Journal>,
    secret: CallbackSecret,
    base: &str,
) -> Submitter {
    Submitter::new(client.clone(), journal, secret, base).unwrap()
}

/// A small async job, submitted and recorded.
pub async fn submit(submitter: &Submitter, prompt: &str) -> Submitted {
    submitter
        .submit(&GenerateRequest::new(prompt).size(256, 256))
        .await
        .unwrap()
}

/// Waits until `condition` holds, for at most `within`.
pub async fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next `count` deliveries reported on `delivered`, within `within`.
pub async fn deliveries(
    delivered: &mut Delivered,
    count: usize,
    within: Duration,
) -> Vec<(String, Result<Entry, String>)> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < count {
        let next = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            delivered.recv(),
        )
        .await
        .unwrap_or_else(|_| panic!("{} of {count} deliveries within {within:?}", out.len()))
        .expect("the service reports");
        out.push(next);
    }
    out
}
pub type Builder = CallbackServiceBuilder;
