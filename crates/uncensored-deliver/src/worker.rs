//! Shared batches: a batch loaded once into a journal, and workers (on one
//! machine or many) that claim its lines with leases, renew them while they
//! work, and take over the lines of a worker that died.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use uncensored::GenerateRequest;

use crate::journal::{BatchManifest, Entry, Journal, JournalError};
use crate::{Deliverer, DeliveryError};

/// Loads a batch into `journal` once: the manifest and a pending entry per
/// line (with its Idempotency-Key), unless the journal holds it already.
/// Another batch, or this one edited, is refused before anything is paid.
/// Returns how many lines were added (0 for a second worker or a rerun).
pub async fn load(
    journal: &dyn Journal,
    name: &str,
    lines: &[(String, GenerateRequest)],
) -> Result<u64, JournalError> {
    let manifest = BatchManifest {
        name: name.to_string(),
        line_ids: lines.iter().map(|(id, _)| id.clone()).collect(),
    };
    // A loaded batch is checked before entries are built for nothing.
    if let Some(loaded) = journal.batch().await? {
        return manifest.check_against(&loaded).map(|()| 0);
    }
    let entries: Vec<Entry> = lines
        .iter()
        .map(|(id, request)| Deliverer::new_entry(id, request))
        .collect();
    journal.load_batch(&manifest, &entries).await
}

/// How often a worker with nothing to claim looks again at the lines other
/// workers hold.
const RECHECK: Duration = Duration::from_millis(500);

/// What became of one line a worker took.
#[derive(Debug)]
pub struct Outcome {
    /// The line's entry id.
    pub id: String,
    /// The entry at its end, or why it stopped (the line stays in the
    /// journal, unfinished, for a later run).
    pub result: Result<Entry, DeliveryError>,
}

/// One worker of a shared batch: claims lines, `concurrency` at a time,
/// under leases of `lease` that it renews every third of it.
#[derive(Debug)]
pub struct Worker {
    deliverer: Arc<Deliverer>,
    holder: String,
    concurrency: usize,
    lease: Duration,
}

impl Worker {
    /// A worker named `holder` (unique per process: host and process id).
    pub fn new(deliverer: Arc<Deliverer>, holder: impl Into<String>) -> Self {
        Self {
            deliverer,
            holder: holder.into(),
            concurrency: 4,
            lease: Duration::from_secs(30),
        }
    }

    /// Lines in flight at once (default 4).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// How long a claim lasts unless renewed (default 30 s): a dead worker's
    /// lines are taken over after at most this long.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(300));
        self
    }

    /// The worker's name in the journal.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Works until no line is left to claim and none is held by a live
    /// worker; reports each line's outcome to `report` as it ends. Lines whose
    /// delivery stopped on an error are released at the end, for a later run.
    pub async fn run(&self, mut report: impl FnMut(Outcome)) -> Result<(), JournalError> {
        let journal = self.deliverer.journal().clone();
        let held: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let renewal = tokio::spawn(renew(
            journal.clone(),
            self.holder.clone(),
            held.clone(),
            self.lease,
        ));
        let outcome = self.work(&journal, &held, &mut report).await;
        renewal.abort();
        let released = journal.release(&self.holder, None).await;
        outcome.and(released)
    }

    async fn work(
        &self,
        journal: &Arc<dyn Journal>,
        held: &Arc<Mutex<BTreeSet<String>>>,
        report: &mut impl FnMut(Outcome),
    ) -> Result<(), JournalError> {
        let mut in_flight = FuturesUnordered::new();
        // Lines that stopped on an error: kept (leased) until the end so that
        // this run does not take them again.
        let mut stopped = 0usize;
        loop {
            let room = self.concurrency - in_flight.len();
            if room > 0 {
                let claimed = journal.claim(&self.holder, room, self.lease).await?;
                for entry in claimed {
                    lock(held).insert(entry.id.clone());
                    let deliverer = self.deliverer.clone();
                    in_flight.push(async move {
                        let id = entry.id.clone();
                        Outcome {
                            id,
                            result: deliverer.continue_entry(entry).await,
                        }
                    });
                }
            }
            match in_flight.next().await {
                Some(outcome) => {
                    if outcome.result.as_ref().is_ok_and(|entry| entry.done) {
                        lock(held).remove(&outcome.id);
                    } else {
                        stopped += 1;
                    }
                    report(outcome);
                }
                None => {
                    // Nothing claimable: lines may still be leased by other
                    // workers; if one dies, its lines come free when its
                    // lease expires.
                    // Looked at again at least twice a second: the lines
                    // usually end (done) long before their leases would.
                    match journal.next_expiry(&self.holder).await? {
                        Some(expiry) => {
                            tracing::debug!(?expiry, "waiting for other workers' lines");
                            tokio::time::sleep((expiry + Duration::from_millis(50)).min(RECHECK))
                                .await;
                        }
                        None => break,
                    }
                }
            }
        }
        if stopped > 0 {
            tracing::warn!(
                stopped,
                "lines stopped on errors; they are released for a later run"
            );
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Renews the worker's leases every third of `lease` until aborted.
async fn renew(
    journal: Arc<dyn Journal>,
    holder: String,
    held: Arc<Mutex<BTreeSet<String>>>,
    lease: Duration,
) {
    let mut every = tokio::time::interval(lease / 3);
    every.tick().await;
    loop {
        every.tick().await;
        let ids: Vec<String> = lock(&held).iter().cloned().collect();
        if ids.is_empty() {
            continue;
        }
        match journal.renew(&holder, &ids, lease).await {
            Ok(kept) if (kept as usize) < ids.len() => tracing::warn!(
                lost = ids.len() - kept as usize,
                "leases expired before renewal; another worker may take those lines"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot renew leases"),
        }
    }
}
