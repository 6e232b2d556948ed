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
    Client, Error, FailureReason, GenerateRequest, Generation, ImageFormat, RetryPolicy,
    validate_idempotency_key,
};

use crate::DeliveryReason;
use crate::journal::{BatchStop, Claim, Entry, Fence, Journal, JournalError, Stage};
use crate::notify::{Notification, Notifier, NotifyError};
use crate::storage::{ImageMeta, NameTemplate, ObjectName, Storage, StorageError};

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

    /// Finishes every unfinished entry of the journal, 8 at a time. Each is
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

    async fn submit(&self, entry: &Entry) -> Result<Stage, DeliveryError> {
        match self.client.generate(&entry.request).await {
            Ok(Generation::Completed(image)) => Ok(Stage::Generated {
                job_id: image.job_id,
                image_url: image.url,
                generation_time: image.generation_time,
                model: image.model,
            }),
            Ok(Generation::Queued(job)) => Ok(Stage::Accepted { job_id: job.job_id }),
            Ok(other) => Err(DeliveryError::Api(Error::Config(format!(
                "an answer this version does not know: {other:?}"
            )))),
            Err(error) => terminal(None, error),
        }
    }

    async fn wait(&self, job_id: &str) -> Result<Stage, DeliveryError> {
        match self.client.wait(job_id).await {
            Ok(image) => Ok(Stage::Generated {
                job_id: image.job_id,
                image_url: image.url,
                generation_time: image.generation_time,
                model: image.model,
            }),
            Err(error) => terminal(Some(job_id.to_string()), error),
        }
    }

    /// Downloads (streamed) and stores the image, retrying the pair.
    async fn store(&self, entry: &Entry) -> Result<Stage, DeliveryError> {
        let Stage::Generated {
            job_id,
            image_url,
            generation_time,
            model,
        } = &entry.stage
        else {
            unreachable!("store runs on generated entries")
        };
        let (width, height) = entry.request.dimensions();
        let meta = ImageMeta {
            job_id: job_id.clone(),
            prompt: entry.request.prompt().to_string(),
            model: entry.model(model),
            width: Some(width),
            height: Some(height),
            generation_time: *generation_time,
            sha256: None,
            created_at: chrono::Utc::now(),
        };
        let date = entry.updated_at.date_naive();
        let model_name = meta
            .model
            .as_deref()
            .map(|m| m.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"));
        let name_for = |format: ImageFormat| {
            self.template
                .render(job_id, format, model_name.as_deref(), date)
        };

        // Stored before a crash kept the journal from saying so? Then nothing to download.
        let guessed = name_for(guess_format(image_url)).map_err(DeliveryError::Storage)?;
        if let Some((stored, _)) = self
            .storage
            .stat(&guessed)
            .await
            .map_err(DeliveryError::Storage)?
        {
            return Ok(self
                .stored_stage(entry, &guessed, &stored.location, &stored.sha256)
                .await);
        }

        let policy = &self.policies.store;
        let mut backoffs = policy.backoffs();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = async {
                let mut image = self.client.download_stream(image_url).await?;
                let name = name_for(image.format())?;
                let stored = self.storage.put(&name, &mut image, &meta).await?;
                Ok::<_, StorageError>((name, stored))
            }
            .await;
            match outcome {
                Ok((name, stored)) => {
                    return Ok(self
                        .stored_stage(entry, &name, &stored.location, &stored.sha256)
                        .await);
                }
                Err(error) if error.is_retryable() && attempt < policy.max_attempts => {
                    let delay = backoffs.next().unwrap_or_default();
                    tracing::warn!(%error, attempt, ?delay, job_id, "store failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(error) => return Err(DeliveryError::Storage(error)),
            }
        }
    }

    /// The stage after storing; a shareable URL is asked for, not required.
    async fn stored_stage(
        &self,
        entry: &Entry,
        name: &ObjectName,
        location: &str,
        sha256: &str,
    ) -> Stage {
        let Stage::Generated {
            job_id,
            generation_time,
            model,
            ..
        } = &entry.stage
        else {
            unreachable!("stored_stage follows a generated entry")
        };
        let share_url = match self.storage.share_url(name).await {
            Ok(url) => url,
            Err(error) => {
                tracing::warn!(%error, "no shareable URL for the notification");
                None
            }
        };
        Stage::Stored {
            job_id: job_id.clone(),
            generation_time: *generation_time,
            model: model.clone(),
            name: name.to_string(),
            location: location.to_string(),
            sha256: sha256.to_string(),
            share_url,
        }
    }

    /// Tells every notifier that has not been told yet; records each success
    /// at once. A claimed entry checks its claim before each notifier, so a
    /// worker that stalled past its lease does not announce a line another
    /// worker took over.
    async fn announce(
        &self,
        entry: &mut Entry,
        fence: Option<&Fence>,
    ) -> Result<(), DeliveryError> {
        let notification = notification(entry);
        let mut failures = Vec::new();
        for notifier in &self.notifiers {
            let name = notifier.id().to_string();
            if entry.notified.contains(&name) {
                continue;
            }
            if fence.is_some() {
                self.write(entry, fence).await?;
            }
            match self
                .notify_with_retries(notifier.as_ref(), &notification)
                .await
            {
                Ok(()) => {
                    entry.notified.insert(name);
                    self.write(entry, fence).await?;
                }
                Err(error) => failures.push(error),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(DeliveryError::Notify(failures))
        }
    }

    /// The one retry loop of a notification: the notifier makes one
    /// attempt per call; this waits between attempts with the step's policy,
    /// never sooner than the receiver's `Retry-After`.
    async fn notify_with_retries(
        &self,
        notifier: &dyn Notifier,
        notification: &Notification,
    ) -> Result<(), NotifyError> {
        let policy = &self.policies.notify;
        let mut backoffs = policy.backoffs();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match notifier.notify(notification).await {
                Ok(()) => return Ok(()),
                Err(error) if error.is_retryable() && attempt < policy.max_attempts => {
                    let backoff = backoffs.next().unwrap_or_default();
                    let Some(delay) = policy.delay(backoff, error.retry_after()) else {
                        // The receiver asked for a longer pause than the policy allows.
                        return Err(error);
                    };
                    tracing::warn!(%error, attempt, ?delay, notifier = %notifier.id(), "notify failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

/// Turns a client error into a failed stage when it is final for this job
/// (moderation, a failed job...), or a delivery error (to resume later) when
/// it is not. The account's funds and the key ([`BatchStop::stops_batch`])
/// are not the job's fault: the entry stays where it is, to continue once
/// the operator has topped up or fixed the key.
fn terminal(job_id: Option<String>, error: Error) -> Result<Stage, DeliveryError> {
    let reason = error.reason();
    if !reason.is_final() || BatchStop::stops_batch(reason) {
        return Err(DeliveryError::Api(error));
    }
    Ok(Stage::Failed {
        job_id,
        reason,
        message: error.to_string(),
    })
}

fn guess_format(url: &str) -> ImageFormat {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    if path.ends_with(".png") {
        ImageFormat::Png
    } else if path.ends_with(".webp") {
        ImageFormat::Webp
    } else {
        ImageFormat::Jpeg
    }
}

fn notification(entry: &Entry) -> Notification {
    let (width, height) = entry.request.dimensions();
    match &entry.stage {
        Stage::Stored {
            job_id,
            generation_time,
            model,
            location,
            sha256,
            share_url,
            ..
        } => Notification::Stored {
            job_id: job_id.clone(),
            prompt: entry.request.prompt().to_string(),
            model: entry.model(model),
            width: Some(width),
            height: Some(height),
            generation_time: *generation_time,
            location: location.clone(),
            share_url: share_url.clone(),
            sha256: sha256.clone(),
        },
        Stage::Failed {
            job_id,
            reason,
            message,
        } => Notification::Failed {
            job_id: job_id.clone(),
            prompt: entry.request.prompt().to_string(),
            reason: *reason,
            message: message.clone(),
        },
        _ => unreachable!("only finished entries are announced"),
    }
}

impl Entry {
    /// The model that made the image: as the API reported it, else as requested.
    fn model(&self, reported: &Option<String>) -> Option<String> {
        reported
            .clone()
            .or_else(|| self.request.model_name().map(str::to_string))
    }

    /// Where the image is stored, once it is.
    pub fn location(&self) -> Option<&str> {
        match &self.stage {
            Stage::Stored { location, .. } => Some(location),
            _ => None,
        }
    }
}
