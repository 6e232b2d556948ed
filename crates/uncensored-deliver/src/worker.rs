//! The one batch engine: a batch loaded into a journal (its lines known by
//! their content), and workers (one, or many on one machine or many) that
//! claim its lines with leases, renew them while they work, take over the
//! lines of a worker that died, stop together when the account or the key
//! cannot go on, and leave cleanly when asked to.
//!
//! The same engine runs on SQLite (one machine) and PostgreSQL (many).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use uncensored::{CancellationToken, GenerateRequest};

use crate::journal::{
    BatchFile, BatchLine, BatchStop, Claim, Entry, Journal, JournalError, LineIds, LoadReport,
};
use crate::spend::Spending;
use crate::{Deliverer, DeliveryError};

/// Loads the lines of `file` into `journal` ([`crate::journal::Batches::load`]):
/// `lines` yields each line's number and request in file order, the same
/// lines that made `file` with [`LineIds`]. Read lazily: a million lines are
/// never in memory at once, and not read at all when the journal holds the
/// batch unchanged. If `lines` turn out to differ from `file` (the file was
/// edited while it was read), nothing is loaded:
/// [`JournalError::BatchFileChanged`].
pub async fn load(
    journal: &dyn Journal,
    file: &BatchFile,
    lines: impl Iterator<Item = Result<(u64, GenerateRequest), JournalError>> + Send,
) -> Result<LoadReport, JournalError> {
    let mut ids = Some(LineIds::new(&file.name));
    let mut lines = lines.fuse();
    let mut checked = std::iter::from_fn(move || {
        let current = ids.as_mut()?;
        match lines.next() {
            Some(Ok((line, request))) => {
                let id = current.next(&request);
                Some(Ok(BatchLine {
                    line,
                    entry: Deliverer::new_entry(&id, &request),
                }))
            }
            Some(Err(error)) => {
                ids = None;
                Some(Err(error))
            }
            None => {
                let read = ids.take()?.file();
                (read != *file).then(|| {
                    Err(JournalError::BatchFileChanged {
                        batch: file.name.clone(),
                    })
                })
            }
        }
    });
    journal.load(file, &mut checked).await
}

/// A name for this process's worker, unique among workers: the host and the
/// process id (`host-1234`).
pub fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{host}-{}", std::process::id())
}

/// Releases the lines of `batch` held by workers of this host (named by
/// [`holder_name`]) whose process no longer exists: a worker killed with
/// SIGKILL on this machine, whose leases would otherwise keep its lines
/// until they expire. A process that still exists (or a worker of another
/// host) keeps its lines. Returns how many holders were released.
pub async fn release_dead_local_holders(
    journal: &dyn Journal,
    batch: &str,
) -> Result<usize, JournalError> {
    let me = holder_name();
    let Some((host, _)) = me.rsplit_once('-') else {
        return Ok(0);
    };
    let mut released = 0;
    for holder in journal.status(batch).await?.in_flight.into_keys() {
        let dead = holder
            .rsplit_once('-')
            .filter(|(h, _)| *h == host)
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
            .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
        if dead && holder != me {
            tracing::info!(%holder, "releasing the lines of a worker of this host that is gone");
            journal.release(&holder, None).await?;
            released += 1;
        }
    }
    Ok(released)
}

/// How often a worker with nothing to claim looks again at the lines other
/// workers hold.
const RECHECK: Duration = Duration::from_millis(500);

/// How a worker takes on each line it claimed. Without one, a worker
/// delivers each line to its end ([`Deliverer::continue_claim`]); the
/// callback service's `HandOff` (feature `callbacks`) submits each line
/// with a callback URL and hands it off instead.
#[async_trait::async_trait]
pub trait LineSteps: Send + Sync + std::fmt::Debug {
    /// Takes the claimed line `claim` on with `deliverer`, writing under
    /// its claim: `Ok` with the entry done, or not done when it was handed
    /// off to whoever finishes it ([`crate::journal::Batches::hand_off`]).
    async fn run(&self, deliverer: &Deliverer, claim: Claim) -> Result<Entry, DeliveryError>;
}

/// What became of one line a worker took.
#[derive(Debug)]
pub struct Outcome {
    /// The line's entry id.
    pub id: String,
    /// Its line number in the batch file.
    pub line: Option<u64>,
    /// The entry at its end (not done: handed off to the callback service,
    /// which delivers it), or why it stopped. An error leaves the line in
    /// the journal, unfinished, for a later run; [`JournalError::LeaseLost`]
    /// means another worker took it over and finishes it.
    pub result: Result<Entry, DeliveryError>,
}

/// How a worker's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// Nothing was left to claim, and no other worker held a line.
    Finished,
    /// The batch stopped for every worker (this one saw it or another did):
    /// untried lines stay pending; a rerun of the same command continues.
    Stopped(BatchStop),
    /// Asked to stop (SIGTERM, Ctrl-C): it stopped claiming, let its lines
    /// finish until the drain deadline, and released the rest (`released`
    /// lines) for another worker or a later run.
    Interrupted {
        /// Lines still in flight at the deadline, released unfinished.
        released: usize,
    },
}

/// One worker of a batch: claims lines, `concurrency` at a time, under
/// leases of `lease` that it renews every third of it.
#[derive(Debug)]
pub struct Worker {
    deliverer: Arc<Deliverer>,
    batch: String,
    holder: String,
    concurrency: usize,
    lease: Duration,
    drain: Duration,
    spending: Option<Arc<Spending>>,
    steps: Option<Arc<dyn LineSteps>>,
}

impl Worker {
    /// A worker of the batch `batch`, named `holder` (unique per process:
    /// host and process id).
    pub fn new(
        deliverer: Arc<Deliverer>,
        batch: impl Into<String>,
        holder: impl Into<String>,
    ) -> Self {
        Self {
            deliverer,
            batch: batch.into(),
            holder: holder.into(),
            concurrency: 4,
            lease: Duration::from_secs(30),
            drain: Duration::from_secs(30),
            spending: None,
            steps: None,
        }
    }

    /// Takes each claimed line on with `steps` instead of delivering it to
    /// its end (the budget, when there is one, still reserves each line's
    /// price before it is sent).
    pub fn steps(mut self, steps: Arc<dyn LineSteps>) -> Self {
        self.steps = Some(steps);
        self
    }

    /// Keeps the batch within the budget its journal holds for it, if it
    /// holds one ([`crate::journal::Budgets`]): each line's price is
    /// reserved before it is sent, and a line that does not fit stops the
    /// batch for every worker ([`crate::DeliveryReason::Budget`]).
    pub fn spending(mut self, spending: Arc<Spending>) -> Self {
        self.spending = Some(spending);
        self
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

    /// How long lines in flight may take to finish once the worker is asked
    /// to stop (default 30 s); the rest are released unfinished.
    pub fn drain(mut self, drain: Duration) -> Self {
        self.drain = drain;
        self
    }

    /// The worker's name in the journal.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Works until no line is left to claim and none is held by a live
    /// worker, the batch stops, or `shutdown` is cancelled; reports each
    /// line's outcome to `report` as it ends. Lines that stopped on an error
    /// are kept (so this run does not take them again) and released at the
    /// end, for a later run.
    pub async fn run(
        &self,
        shutdown: CancellationToken,
        mut report: impl FnMut(Outcome),
    ) -> Result<Ending, JournalError> {
        let journal = self.deliverer.journal().clone();
        let held: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let renewal = tokio::spawn(renew(
            journal.clone(),
            self.holder.clone(),
            held.clone(),
            self.lease,
        ));
        let ending = self.work(&journal, &held, &shutdown, &mut report).await;
        renewal.abort();
        let released = journal.release(&self.holder, None).await;
        let ending = ending?;
        released?;
        Ok(ending)
    }

    async fn work(
        &self,
        journal: &Arc<dyn Journal>,
        held: &Arc<Mutex<BTreeSet<String>>>,
        shutdown: &CancellationToken,
        report: &mut impl FnMut(Outcome),
    ) -> Result<Ending, JournalError> {
        let mut in_flight = FuturesUnordered::new();
        let mut stop: Option<BatchStop> = None;
        let mut drain_until: Option<tokio::time::Instant> = None;
        // Lines that stopped on an error: kept (leased) until the end.
        let mut kept = 0usize;
        loop {
            let mut idle = None;
            if stop.is_none() && drain_until.is_none() {
                let room = self.concurrency - in_flight.len();
                if room > 0 {
                    let claimed = journal
                        .claim(&self.batch, &self.holder, room, self.lease)
                        .await?;
                    if let Some(seen) = claimed.stop {
                        tracing::warn!(reason = %seen.reason, by = %seen.holder, "the batch stopped; claiming no more lines");
                        stop = Some(seen);
                    } else if claimed.lines.is_empty() && in_flight.is_empty() {
                        // Nothing claimable: lines may still be leased by
                        // other workers; if one dies, its lines come free
                        // when its lease expires. Looked at again at least
                        // twice a second: lines usually end long before.
                        match claimed.others_expire_in {
                            Some(expiry) => {
                                idle = Some(
                                    expiry
                                        .saturating_add(Duration::from_millis(50))
                                        .min(RECHECK),
                                )
                            }
                            None => return Ok(Ending::Finished),
                        }
                    }
                    for claim in claimed.lines {
                        lock(held).insert(claim.entry.id.clone());
                        let deliverer = self.deliverer.clone();
                        let spending = self.spending.clone();
                        let steps = self.steps.clone();
                        let batch = self.batch.clone();
                        in_flight.push(async move {
                            let id = claim.entry.id.clone();
                            let line = claim.line;
                            let result = match (spending, steps) {
                                (Some(spending), steps) => {
                                    spending
                                        .take_on(&deliverer, &batch, claim, steps.as_deref())
                                        .await
                                }
                                (None, Some(steps)) => steps.run(&deliverer, claim).await,
                                (None, None) => deliverer.continue_claim(claim).await,
                            };
                            Outcome { id, line, result }
                        });
                    }
                }
            }
            if in_flight.is_empty() && idle.is_none() {
                // Stopped or draining, and nothing left in flight.
                return Ok(match (stop, drain_until) {
                    (Some(stop), _) => Ending::Stopped(stop),
                    (None, _) => Ending::Interrupted { released: 0 },
                });
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled(), if drain_until.is_none() => {
                    tracing::info!(in_flight = in_flight.len(), drain = ?self.drain, "asked to stop: claiming no more lines");
                    drain_until = Some(tokio::time::Instant::now() + self.drain);
                }
                () = tokio::time::sleep_until(drain_until.unwrap_or_else(far_future)), if drain_until.is_some() => {
                    let released = in_flight.len();
                    tracing::warn!(released, "lines still in flight at the drain deadline are released unfinished");
                    return Ok(Ending::Interrupted { released });
                }
                Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                    if let Some(seen) = self.settle(journal, held, &outcome, &mut kept).await {
                        stop.get_or_insert(seen);
                    }
                    report(outcome);
                }
                () = tokio::time::sleep(idle.unwrap_or_default()), if in_flight.is_empty() && idle.is_some() => {}
            }
        }
    }

    /// Keeps the journal right after a line ended; returns the batch's stop
    /// when the line's failure stops the batch.
    async fn settle(
        &self,
        journal: &Arc<dyn Journal>,
        held: &Arc<Mutex<BTreeSet<String>>>,
        outcome: &Outcome,
        kept: &mut usize,
    ) -> Option<BatchStop> {
        let error = match &outcome.result {
            // Done, or handed off (its claim passed on): not held any more.
            Ok(_) => {
                lock(held).remove(&outcome.id);
                return None;
            }
            Err(error) => error,
        };
        if let Some(reason) = error.batch_stop() {
            // Written first, so that every worker stops claiming; the line
            // itself goes back, untried for good, for the rerun.
            let stop = BatchStop {
                reason,
                message: error.to_string(),
                holder: self.holder.clone(),
                at: chrono::Utc::now(),
            };
            if let Err(error) = journal.stop(&self.batch, &stop).await {
                tracing::warn!(%error, "cannot record the batch's stop; the other workers will meet it themselves");
            }
            lock(held).remove(&outcome.id);
            if let Err(error) = journal.release(&self.holder, Some(&outcome.id)).await {
                tracing::warn!(%error, "cannot release the line; its lease will expire");
            }
            return Some(stop);
        }
        match error {
            // Another worker finishes it; or the journal was lost for a
            // while: the lease expires and the line is claimed again (by
            // this worker too), with its Idempotency-Key.
            DeliveryError::Journal(JournalError::LeaseLost { .. })
            | DeliveryError::Journal(JournalError::Unavailable(_)) => {
                lock(held).remove(&outcome.id);
            }
            _ => *kept += 1,
        }
        None
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
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
                "leases expired before renewal; another worker may have taken those lines (their writes from here are refused)"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot renew leases"),
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod load_tests {
    use super::*;
    use crate::journal::{Entries as _, SqliteJournal};

    fn requests(prompts: &[&str]) -> Vec<(u64, GenerateRequest)> {
        (1..)
            .zip(prompts)
            .map(|(n, prompt)| (n, GenerateRequest::new(*prompt)))
            .collect()
    }

    #[tokio::test]
    async fn lines_that_differ_from_their_file_are_refused_with_their_own_error() {
        let journal = SqliteJournal::in_memory().unwrap();
        let read_first = requests(&["a cat", "a dog"]);
        let mut ids = LineIds::new("prompts.txt");
        for (_, request) in &read_first {
            ids.next(request);
        }
        let file = ids.file();
        // The file was edited before its second read.
        let read_again = requests(&["a cat", "a bird"]);
        let refused = load(&journal, &file, read_again.into_iter().map(Ok)).await;
        assert!(
            matches!(&refused, Err(JournalError::BatchFileChanged { batch }) if batch == "prompts.txt"),
            "{refused:?}"
        );
        assert_eq!(journal.counts().await.unwrap(), (0, 0), "nothing loaded");
        // A line fewer is a change too; the same lines load.
        let shorter = requests(&["a cat"]);
        let refused = load(&journal, &file, shorter.into_iter().map(Ok)).await;
        assert!(matches!(
            refused,
            Err(JournalError::BatchFileChanged { .. })
        ));
        let loaded = load(&journal, &file, read_first.into_iter().map(Ok)).await;
        assert_eq!(loaded.unwrap().added, 2);
    }
}
