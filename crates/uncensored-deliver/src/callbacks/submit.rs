//! Submitting an async job so that it can never be lost: the submission is
//! in the journal (its nonce, Idempotency-Key and request) before the POST,
//! and the job the API accepted, bound to the nonce, after it. The callback
//! service then refuses any callback whose nonce it did not hand out, or
//! that names another job, without a read; and it finds the submission again
//! when the callback never comes ([`CallbackService::recover`]).

use std::sync::Arc;

use uncensored::callback::{CallbackNonce, CallbackSecret, SigningError};
use uncensored::{Client, Error, GenerateRequest, Generation};

use crate::journal::{Claim, Entry, Journal, JournalError, Stage};
use crate::{Deliverer, DeliveryError};

#[cfg(doc)]
use super::CallbackService;

/// How long a submitter holds its submission while the POST is in flight.
const SUBMIT_LEASE: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// The journal id of the submission whose callback URL carries `nonce`:
/// `callback-NONCE` for a random nonce ([`Submitter`]), the nonce itself
/// for a named one (a batch line's entry, submitted by [`super::HandOff`]).
pub fn submission_id(nonce: &CallbackNonce) -> String {
    submission_of_nonce(nonce.as_str())
}

/// [`submission_id`] of a nonce as the journal keeps it (text, its tag long
/// checked): the submission a job's binding names.
pub(super) fn submission_of_nonce(nonce: &str) -> String {
    if uncensored::callback::is_random_nonce(nonce) {
        format!("callback-{nonce}")
    } else {
        nonce.to_string()
    }
}

/// Binds `nonce` to the job `stage` names, when it names one: before the
/// answer is written, so that a callback that finds the answer finds the
/// binding too.
pub(super) async fn bind(
    journal: &dyn Journal,
    nonce: Option<&CallbackNonce>,
    stage: &Stage,
) -> Result<(), JournalError> {
    if let (Some(nonce), Some(job_id)) = (nonce, submitted_job(stage)) {
        journal.bind_callback_nonce(nonce.as_str(), job_id).await?;
    }
    Ok(())
}

/// The POST of a claimed submission (its request carries the signed URL
/// of `nonce`), with the Deliverer's outcomes (a final refusal is a failed
/// stage; the account's funds and the key leave it pending, an error), and
/// the job it created bound to `nonce`: the next stage, for the caller to
/// write under its claim.
pub(super) async fn post_and_bind(
    deliverer: &Deliverer,
    entry: &Entry,
    nonce: Option<&CallbackNonce>,
) -> Result<Stage, DeliveryError> {
    let stage = deliverer.submit_claimed(entry).await?;
    bind(deliverer.journal().as_ref(), nonce, &stage).await?;
    Ok(stage)
}

/// The nonce of a submission's entry: the one its callback URL carries,
/// when that URL verifies under `secret` and the entry is that nonce's.
pub(super) fn submission_nonce(entry: &Entry, secret: &CallbackSecret) -> Option<CallbackNonce> {
    let url = entry.request.callback()?;
    let path = url::Url::parse(url).ok()?.path().to_string();
    let nonce = secret.verify_path(&path).ok()?;
    (entry.id == submission_id(&nonce)).then_some(nonce)
}

/// The job a recorded submission was accepted as, when the API answered.
pub(super) fn submitted_job(stage: &Stage) -> Option<&str> {
    stage.job_id()
}

/// A submission the API accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Submitted {
    /// Its journal entry ([`submission_id`]).
    pub id: String,
    /// The nonce of its callback URL, bound to its job.
    pub nonce: CallbackNonce,
    /// Its signed callback URL, as the API was given it.
    pub callback_url: String,
    /// The job.
    pub job_id: String,
    /// Where the job can be polled, when the API said.
    pub status_url: Option<String>,
    /// Whether the API answered with the finished image at once (it was
    /// asked for a callback): the entry is then `Generated`, and the callback
    /// service's recovery stores it.
    pub completed: bool,
}

/// Submits async jobs with signed callback URLs of their own, recorded in
/// the journal that the callback service reads.
///
/// ```no_run
/// # async fn run(journal: std::sync::Arc<dyn uncensored_deliver::journal::Journal>) -> Result<(), Box<dyn std::error::Error>> {
/// use uncensored::callback::CallbackSecret;
/// use uncensored::GenerateRequest;
/// use uncensored_deliver::callbacks::Submitter;
///
/// let secret = CallbackSecret::new(std::env::var("UNCENSORED_CALLBACK_SECRET")?)?;
/// let submitter = Submitter::new(uncensored::Client::from_env()?, journal, secret, "https://hooks.example.com")?;
/// let submitted = submitter.submit(&GenerateRequest::new("a lighthouse at dusk")).await?;
/// println!("job {} (its callback goes to the service)", submitted.job_id);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Submitter {
    client: Client,
    journal: Arc<dyn Journal>,
    secret: CallbackSecret,
    base: String,
}

impl std::fmt::Debug for Submitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submitter")
            .field("base", &self.base)
            .field("secret", &self.secret)
            .field("journal", &self.journal)
            .finish_non_exhaustive()
    }
}

impl Submitter {
    /// Submits with `client`, records in `journal`, signs callback URLs
    /// under `base` (the callback service's URL) with `secret`'s current
    /// secret. `base` is checked now.
    pub fn new(
        client: Client,
        journal: Arc<dyn Journal>,
        secret: CallbackSecret,
        base: impl Into<String>,
    ) -> Result<Self, SigningError> {
        let base = base.into();
        secret.callback_url(&base)?;
        Ok(Self {
            client,
            journal,
            secret,
            base,
        })
    }

    /// Submits `request` (its own callback URL, if any, is replaced by a
    /// signed one). The submission is in the journal before the POST; the
    /// accepted job is recorded and bound to the URL's nonce after it.
    ///
    /// When the API refuses the request (any 4xx), the entry is recorded as
    /// failed and nothing remains to do. When the outcome is unknown (the
    /// API kept failing, the connection broke), the entry stays pending and
    /// the callback service's recovery submits it again with the same
    /// Idempotency-Key, so that a job the API did create is found, never
    /// paid twice.
    pub async fn submit(&self, request: &GenerateRequest) -> Result<Submitted, DeliveryError> {
        let signed = self
            .secret
            .callback_url(&self.base)
            .map_err(|e| DeliveryError::Api(Error::Config(e.to_string())))?;
        let callback_url = signed.url;
        let request = request.clone().callback_url(callback_url.clone());
        request.validate()?;
        let id = submission_id(&signed.nonce);
        let entry = Deliverer::new_entry(&id, &request);
        self.journal.put(&entry).await?;
        // Held while the POST is in flight: a recovery (or a resume) leaves
        // it alone meanwhile, and cannot be overwritten by this answer once
        // it has taken over (the lease ran out: `LeaseLost`).
        let holder = format!("submit-{}", uuid::Uuid::new_v4().simple());
        let claim = self
            .journal
            .claim_entry(&id, &holder, SUBMIT_LEASE)
            .await?
            .ok_or_else(|| JournalError::LeaseLost { id: id.clone() })?;
        let outcome = self.post(claim, signed.nonce, callback_url).await;
        if let Err(error) = self.journal.release(&holder, None).await {
            tracing::warn!(%error, id, "cannot release a submission; its lease runs out");
        }
        outcome
    }

    /// The POST of a claimed submission, and its answer recorded.
    async fn post(
        &self,
        claim: Claim,
        nonce: CallbackNonce,
        callback_url: String,
    ) -> Result<Submitted, DeliveryError> {
        let Claim {
            mut entry, fence, ..
        } = claim;
        let id = entry.id.clone();
        let (stage, status_url, completed) = match self.client.generate(&entry.request).await {
            Ok(Generation::Queued(job)) => (
                Stage::Accepted { job_id: job.job_id },
                job.status_url,
                false,
            ),
            Ok(Generation::Completed(image)) => (
                Stage::Generated {
                    job_id: image.job_id,
                    image_url: image.url,
                    generation_time: image.generation_time,
                    model: image.model,
                },
                None,
                true,
            ),
            Ok(other) => {
                return Err(DeliveryError::Api(Error::Config(format!(
                    "an answer this version does not know: {other:?}"
                ))));
            }
            Err(error) => {
                if error.api().is_some_and(|api| api.status < 500) {
                    entry.stage = Stage::Failed {
                        job_id: None,
                        reason: error.reason(),
                        message: error.to_string(),
                    };
                    entry.done = true;
                    entry.updated_at = chrono::Utc::now();
                    self.journal.write_claimed(&entry, &fence).await?;
                }
                return Err(DeliveryError::Api(error));
            }
        };
        let job_id = submitted_job(&stage).unwrap_or_default().to_string();
        bind(self.journal.as_ref(), Some(&nonce), &stage).await?;
        entry.stage = stage;
        entry.updated_at = chrono::Utc::now();
        self.journal.write_claimed(&entry, &fence).await?;
        Ok(Submitted {
            id,
            nonce,
            callback_url,
            job_id,
            status_url,
            completed,
        })
    }
}
