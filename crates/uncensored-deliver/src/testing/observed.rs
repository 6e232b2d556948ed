//! A journal that tells an observer of every call it passes on: its name,
//! whether it writes, and how long it took. For tests that count a
//! journal's reads and writes, and benchmarks that time them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use uncensored::Money;

use crate::journal::{
    BatchFile, BatchInfo, BatchLine, BatchSpend, BatchStatus, BatchStop, Batches, Budgets,
    CallbackNonces, Claim, Claimed, Entries, Entry, Fence, Journal, JournalError, LoadReport,
    Reservation, Settlement,
};

/// One call a journal made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The method's name (`get`, `put`, `claim`...).
    pub name: &'static str,
    /// Whether it writes.
    pub write: bool,
}

/// What is told of every call: the call and how long it took.
pub type Observer = Arc<dyn Fn(Call, Duration) + Send + Sync>;

/// Passes every call on to `inner` and tells `observer` of it.
pub struct Observed {
    inner: Arc<dyn Journal>,
    observer: Observer,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Observed {
    /// `inner`, observed by `observer`.
    pub fn new(inner: Arc<dyn Journal>, observer: Observer) -> Self {
        Self { inner, observer }
    }

    async fn call<T>(
        &self,
        name: &'static str,
        write: bool,
        call: impl std::future::Future<Output = T>,
    ) -> T {
        let started = Instant::now();
        let out = call.await;
        (self.observer)(Call { name, write }, started.elapsed());
        out
    }
}

#[async_trait::async_trait]
impl Entries for Observed {
    async fn get(&self, id: &str) -> Result<Option<Entry>, JournalError> {
        self.call("get", false, self.inner.get(id)).await
    }
    async fn put(&self, entry: &Entry) -> Result<(), JournalError> {
        self.call("put", true, self.inner.put(entry)).await
    }
    async fn insert(&self, entry: &Entry) -> Result<bool, JournalError> {
        self.call("insert", true, self.inner.insert(entry)).await
    }
    async fn unfinished(&self) -> Result<Vec<Entry>, JournalError> {
        self.call("unfinished", false, self.inner.unfinished())
            .await
    }
    async fn counts(&self) -> Result<(u64, u64), JournalError> {
        self.call("counts", false, self.inner.counts()).await
    }
    async fn recent(&self, limit: usize) -> Result<Vec<Entry>, JournalError> {
        self.call("recent", false, self.inner.recent(limit)).await
    }
    async fn done_among(&self, ids: &[String]) -> Result<Vec<String>, JournalError> {
        self.call("done_among", false, self.inner.done_among(ids))
            .await
    }
}

#[async_trait::async_trait]
impl Budgets for Observed {
    async fn set_budget(
        &self,
        batch: &str,
        budget: Option<Money>,
    ) -> Result<Option<BatchSpend>, JournalError> {
        self.call("set_budget", true, self.inner.set_budget(batch, budget))
            .await
    }
    async fn spend(&self, batch: &str) -> Result<Option<BatchSpend>, JournalError> {
        self.call("spend", false, self.inner.spend(batch)).await
    }
    async fn reserve(
        &self,
        batch: &str,
        fence: &Fence,
        price: Money,
    ) -> Result<Reservation, JournalError> {
        self.call("reserve", true, self.inner.reserve(batch, fence, price))
            .await
    }
    async fn settle(
        &self,
        batch: &str,
        fence: &Fence,
        how: Settlement,
    ) -> Result<Money, JournalError> {
        self.call("settle", true, self.inner.settle(batch, fence, how))
            .await
    }
}

#[async_trait::async_trait]
impl CallbackNonces for Observed {
    async fn callback_nonce_job(&self, nonce: &str) -> Result<Option<String>, JournalError> {
        self.call(
            "callback_nonce_job",
            false,
            self.inner.callback_nonce_job(nonce),
        )
        .await
    }
    async fn bind_callback_nonce(&self, nonce: &str, job_id: &str) -> Result<String, JournalError> {
        self.call(
            "bind_callback_nonce",
            true,
            self.inner.bind_callback_nonce(nonce, job_id),
        )
        .await
    }
    async fn callback_job_nonce(&self, job_id: &str) -> Result<Option<String>, JournalError> {
        self.call(
            "callback_job_nonce",
            false,
            self.inner.callback_job_nonce(job_id),
        )
        .await
    }
}

#[async_trait::async_trait]
impl Batches for Observed {
    async fn load(
        &self,
        file: &BatchFile,
        lines: &mut (dyn Iterator<Item = Result<BatchLine, JournalError>> + Send),
    ) -> Result<LoadReport, JournalError> {
        self.call("load", true, self.inner.load(file, lines)).await
    }
    async fn batch(&self, name: Option<&str>) -> Result<Option<BatchInfo>, JournalError> {
        self.call("batch", false, self.inner.batch(name)).await
    }
    async fn stop(&self, batch: &str, stop: &BatchStop) -> Result<(), JournalError> {
        self.call("stop", true, self.inner.stop(batch, stop)).await
    }
    async fn status(&self, batch: &str) -> Result<BatchStatus, JournalError> {
        self.call("status", false, self.inner.status(batch)).await
    }
    async fn claim(
        &self,
        batch: &str,
        holder: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Claimed, JournalError> {
        self.call("claim", true, self.inner.claim(batch, holder, limit, lease))
            .await
    }
    async fn claim_entry(
        &self,
        id: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Claim>, JournalError> {
        self.call(
            "claim_entry",
            true,
            self.inner.claim_entry(id, holder, lease),
        )
        .await
    }
    async fn renew(
        &self,
        holder: &str,
        ids: &[String],
        lease: Duration,
    ) -> Result<u64, JournalError> {
        self.call("renew", true, self.inner.renew(holder, ids, lease))
            .await
    }
    async fn write_claimed(&self, entry: &Entry, fence: &Fence) -> Result<(), JournalError> {
        self.call(
            "write_claimed",
            true,
            self.inner.write_claimed(entry, fence),
        )
        .await
    }
    async fn release(&self, holder: &str, id: Option<&str>) -> Result<(), JournalError> {
        self.call("release", true, self.inner.release(holder, id))
            .await
    }
    async fn hand_off(
        &self,
        entry: &Entry,
        fence: &Fence,
        grace: Duration,
    ) -> Result<(), JournalError> {
        self.call("hand_off", true, self.inner.hand_off(entry, fence, grace))
            .await
    }
    async fn handed_off(&self, limit: usize) -> Result<Vec<Entry>, JournalError> {
        self.call("handed_off", false, self.inner.handed_off(limit))
            .await
    }
}
