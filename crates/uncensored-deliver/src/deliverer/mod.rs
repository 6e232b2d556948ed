//! The delivery pipeline: generate (or take a job), wait, download and verify,
//! store, notify, with every step recorded in a durable [`Journal`] first, so
//! that a restarted process finishes each job exactly once: an accepted job is
//! never submitted again (a pending one is resubmitted with the same
//! Idempotency-Key, which the API replays), a stored image is never stored
//! again, and a notifier that already announced a job is not asked again.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use uncensored::{Client, GenerateRequest};
//! use uncensored_deliver::Deliverer;
//! use uncensored_deliver::journal::SqliteJournal;
//! use uncensored_deliver::storage::ObjectStorage;
//!
//! let deliverer = Deliverer::new(
//!     Client::from_env()?,
//!     Arc::new(ObjectStorage::local("images")?),
//!     Arc::new(SqliteJournal::open("images/journal.sqlite".as_ref())?),
//! );
//! let done = deliverer.deliver("order-42", &GenerateRequest::new("a lighthouse at dusk")).await?;
//! println!("stored at {}", done.location().unwrap_or("?"));
//! deliverer.resume().await; // after a crash: finish whatever was left
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use futures_util::{StreamExt as _, stream};

use uncensored::{
    Client, Error, FailureReason, GenerateRequest, RetryPolicy, validate_idempotency_key,
};

use crate::DeliveryReason;
use crate::journal::{BatchStop, Claim, Entry, Fence, Journal, JournalError, Stage};
use crate::notify::{Notifier, NotifyError};
use crate::storage::{NameTemplate, Storage, StorageError};

mod steps;

/// Why a delivery stopped before it was done. Its entry stays in the journal;
/// [`Deliverer::resume`] picks it up again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The request is invalid; nothing was recorded or sent.
    #[error(transparent)]
    Invalid(#[from] uncensored::ValidationError),
    /// The API could not be reached or kept failing (the entry can be resumed).
    #[error("generation did not finish: {0}")]
    Api(Error),
    /// Storing failed after every retry (the image is safe at the API's URL).
    #[error("storing failed: {0}")]
    Storage(StorageError),
    /// One or more notifiers failed after every retry (the image is stored).
    #[error("notifying failed: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Notify(Vec<NotifyError>),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The line's price does not fit in the batch's budget: nothing was
    /// sent, and the batch stops ([`DeliveryReason::Budget`]).
    #[error(transparent)]
    OverBudget(#[from] crate::spend::OverBudget),
}

impl DeliveryError {
    /// The reason this failure stops a whole batch, when it does (the
    /// account's funds, the key: [`BatchStop::stops_batch`]; the batch's
    /// budget reached).
    pub fn batch_stop(&self) -> Option<DeliveryReason> {
        match self {
            DeliveryError::Api(error) => Some(error.reason())
                .filter(|reason| BatchStop::stops_batch(*reason))
                .map(DeliveryReason::from),
            DeliveryError::OverBudget(_) => Some(DeliveryReason::Budget),
            _ => None,
        }
    }

    /// The class of this failure, with its advice: the API's reason, or
    /// the step's own (storage, notification, journal).
    pub fn reason(&self) -> DeliveryReason {
        match self {
            DeliveryError::Invalid(_) => FailureReason::InvalidRequest.into(),
            DeliveryError::Api(error) => error.reason().into(),
            DeliveryError::Storage(error) => error.reason(),
            DeliveryError::Notify(_) => DeliveryReason::Notification,
            DeliveryError::Journal(_) => DeliveryReason::Journal,
            DeliveryError::OverBudget(_) => DeliveryReason::Budget,
        }
    }
}

/// How each step retries what no other layer retried: a download (one
/// attempt each) and a notification (one attempt per call).
#[derive(Debug, Clone)]
pub struct StepPolicies {
    /// Download and store, again from the start: after a failed or truncated
    /// download, or a transient error of a store that does not retry itself
    /// (the local file system). Never after an S3, GCS or Azure error: the
    /// store retried that request already
    /// ([`STORE_ATTEMPTS`](crate::storage::STORE_ATTEMPTS)).
    pub store: RetryPolicy,
    /// Each notifier.
    pub notify: RetryPolicy,
}

impl Default for StepPolicies {
    fn default() -> Self {
        Self {
            store: RetryPolicy {
                max_attempts: 10,
                ..RetryPolicy::default()
            },
            notify: RetryPolicy {
                max_attempts: 6,
                ..RetryPolicy::default()
            },
        }
    }
}

/// Generates, stores and announces images, durably.
#[derive(Debug, Clone)]
pub struct Deliverer {
    client: Client,
    storage: Arc<dyn Storage>,
    notifiers: Vec<Arc<dyn Notifier>>,
    journal: Arc<dyn Journal>,
    template: NameTemplate,
    policies: StepPolicies,
    /// This deliverer's name when it claims entries to resume them.
    holder: String,
}

/// How long a resumed entry stays claimed: other deliverers on a shared
/// journal (replicas of a callback service) leave it alone meanwhile.
const RESUME_LEASE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

impl Deliverer {
    /// A deliverer with no notifiers, the default object names and policies.
    pub fn new(client: Client, storage: Arc<dyn Storage>, journal: Arc<dyn Journal>) -> Self {
        Self {
            client,
            storage,
            notifiers: Vec::new(),
            journal,
            template: NameTemplate::default(),
            policies: StepPolicies::default(),
            holder: format!("resume-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Adds a notifier.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.push(notifier);
        self
    }

    /// Object names from `template` (default `{date}/{job_id}.{ext}`).
    pub fn with_template(mut self, template: NameTemplate) -> Self {
        self.template = template;
        self
    }

    /// Retry policies per step.
    pub fn with_policies(mut self, policies: StepPolicies) -> Self {
        self.policies = policies;
        self
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    /// The client it generates with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The storage it stores into.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Delivers `request` under the caller's `id`. A second call with the same
    /// id continues (or returns) the first delivery instead of paying again.
    pub async fn deliver(
        &self,
        id: &str,
        request: &GenerateRequest,
    ) -> Result<Entry, DeliveryError> {
        request.validate()?;
        let entry = self.open_entry(id, || Self::new_entry(id, request)).await?;
        self.run(entry, None).await
    }

    /// The journal entry a first delivery of `request` under `id` starts
    /// from: pending, with the Idempotency-Key every attempt of it sends
    /// (the request's own, else one made from the id). Shared batches load
    /// these before any worker starts, so every worker sends the same key.
    pub fn new_entry(id: &str, request: &GenerateRequest) -> Entry {
        let key = match request.own_idempotency_key() {
            Some(key) => key.to_string(),
            None if validate_idempotency_key(id).is_ok() && id.len() <= 200 => {
                format!("dlv-{id}")
            }
            None => format!("dlv-{}", uuid::Uuid::new_v4()),
        };
        Entry {
            id: id.to_string(),
            request: request.clone().idempotency_key(key.clone()),
            idempotency_key: key,
            stage: Stage::Pending,
            notified: Default::default(),
            done: false,
            updated_at: chrono::Utc::now(),
        }
    }

    /// Takes a claimed entry (a line of a batch) to its end, from the stage
    /// it is at. Every write carries the claim's fencing token: once another
    /// worker has taken the line over, this one stops with
    /// [`JournalError::LeaseLost`] before it stores or announces anything
    /// more.
    pub async fn continue_claim(&self, claim: Claim) -> Result<Entry, DeliveryError> {
        self.run(claim.entry, Some(&claim.fence)).await
    }

    /// Delivers a job that already exists (created elsewhere, or reported by a
    /// `crate::callbacks::CallbackService` callback): waits for it if needed,
    /// then stores and announces it. `request` describes it for the metadata
    /// and notifications; it is not sent.
    pub async fn deliver_job(
        &self,
        id: &str,
        job_id: &str,
        request: &GenerateRequest,
    ) -> Result<Entry, DeliveryError> {
        let entry = self
            .open_entry(id, || Entry {
                id: id.to_string(),
                request: request.clone(),
                idempotency_key: String::new(),
                stage: Stage::Accepted {
                    job_id: job_id.to_string(),
                },
                notified: Default::default(),
                done: false,
                updated_at: chrono::Utc::now(),
            })
            .await?;
        self.run(entry, None).await
    }

    /// The submit step alone, for an entry its caller holds (the callback
    /// service submitting a pending submission again): the next stage,
    /// not yet written.
    #[cfg_attr(not(feature = "callbacks"), allow(dead_code))]
    pub(crate) async fn submit_claimed(&self, entry: &Entry) -> Result<Stage, DeliveryError> {
        self.submit(entry).await
    }

    /// Finishes every unfinished entry of the journal that belongs to no batch
    /// (batch lines are claimed by a [`crate::worker::Worker`]), 8 at a time. Each is
    /// claimed first, so that deliverers sharing a journal (replicas) do not
    /// finish the same entry twice; entries another one holds are left to it.
    pub async fn resume(&self) -> Result<Vec<Result<Entry, DeliveryError>>, DeliveryError> {
        let open = self.journal.unfinished().await?;
        let results = stream::iter(open)
            .map(|entry| async move {
                match self
                    .journal
                    .claim_entry(&entry.id, &self.holder, RESUME_LEASE)
                    .await
                {
                    Ok(Some(claim)) => Some(self.continue_claim(claim).await),
                    Ok(None) => None,
                    Err(error) => Some(Err(error.into())),
                }
            })
            .buffered(8)
            .filter_map(|result| async move { result })
            .collect()
            .await;
        self.journal.release(&self.holder, None).await?;
        Ok(results)
    }

    /// The journal's entry for `id`, or a new one, written durably before
    /// anything is sent: a crash from then on is resumable.
    async fn open_entry(
        &self,
        id: &str,
        new: impl FnOnce() -> Entry,
    ) -> Result<Entry, DeliveryError> {
        if let Some(entry) = self.journal.get(id).await? {
            return Ok(entry);
        }
        let entry = new();
        self.journal.put(&entry).await?;
        Ok(entry)
    }

    /// Moves an entry forward until it is done, recording every step (under
    /// `fence` when the entry is claimed).
    async fn run(&self, mut entry: Entry, fence: Option<&Fence>) -> Result<Entry, DeliveryError> {
        while !entry.done {
            let next = match &entry.stage {
                Stage::Pending => self.submit(&entry).await?,
                Stage::Accepted { job_id } => self.wait(job_id).await?,
                Stage::Generated { .. } => self.store(&entry).await?,
                Stage::Stored { .. } | Stage::Failed { .. } => {
                    let outcome = self.announce(&mut entry, fence).await;
                    entry.done = outcome.is_ok();
                    entry.updated_at = chrono::Utc::now();
                    self.write(&entry, fence).await?;
                    outcome?;
                    continue;
                }
            };
            entry.stage = next;
            entry.updated_at = chrono::Utc::now();
            self.write(&entry, fence).await?;
        }
        Ok(entry)
    }

    /// Writes `entry`: under its claim's fence when it has one.
    async fn write(&self, entry: &Entry, fence: Option<&Fence>) -> Result<(), JournalError> {
        match fence {
            Some(fence) => self.journal.write_claimed(entry, fence).await,
            None => self.journal.put(entry).await,
        }
    }
}
