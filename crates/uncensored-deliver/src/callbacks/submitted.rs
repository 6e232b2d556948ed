//! Callbacks of submitted jobs, and their delivery under a claim: the
//! nonce's binding decides without a read; the submission's entry is
//! claimed, so that the callback, its duplicates, the recovery's poll and
//! other replicas deliver it once, whichever comes first.

use axum::http::StatusCode;
use uncensored::JobStatus;
use uncensored::callback::{Callback, CallbackNonce};

use super::submit::{post_and_bind, submission_id, submission_of_nonce, submitted_job};
use super::{CallbackService, Reply, bump};
use crate::DeliveryError;
use crate::journal::{Claim, Entry, Fence, JournalError, Stage};
use tokio::sync::OwnedSemaphorePermit;

/// Who took a submission over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// Its callback came.
    Callback,
    /// Its callback did not come within the grace period.
    Recovery,
}

impl CallbackService {
    /// A verified nonce's callback: refused without a read unless the
    /// nonce is one this service's submitters handed out for this very job.
    pub(super) async fn accept_signed(&self, nonce: CallbackNonce, callback: Callback) -> Reply {
        let journal = self.inner.deliverer.journal();
        let job_id = callback.request_id;
        let bound = match journal.callback_nonce_job(nonce.as_str()).await {
            Ok(Some(other)) if other != job_id => return self.wrong_job(&nonce, &job_id),
            Ok(bound) => bound,
            Err(error) => return self.unavailable(&error.to_string()),
        };
        let entry = match journal.get(&submission_id(&nonce)).await {
            Ok(entry) => entry,
            Err(error) => return self.unavailable(&error.to_string()),
        };
        let Some(entry) = entry else {
            return match (bound, self.inner.accept_unsigned) {
                // Bound by an earlier version (on its first confirmed
                // callback), or a URL made without a submission while
                // unsigned callbacks are accepted anyway: confirmed by a read.
                (Some(_), _) => self.confirm_by_read(Some(&nonce), &job_id, true).await,
                (None, true) => self.confirm_by_read(Some(&nonce), &job_id, false).await,
                (None, false) => {
                    bump(&self.inner.counters.unknown_nonces);
                    tracing::warn!(%nonce, "refused a callback whose URL no submission made");
                    (
                        StatusCode::NOT_FOUND,
                        "no submission made this callback URL",
                    )
                }
            };
        };
        let Some(submitted) = submitted_job(&entry.stage) else {
            // The POST's answer is not recorded yet (or its submitter died
            // before it was): the API sends the callback again, and the
            // recovery submits again with the same key.
            bump(&self.inner.counters.unavailable);
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the submission is not answered yet",
            );
        };
        if submitted != job_id {
            return self.wrong_job(&nonce, &job_id);
        }
        if bound.is_none() {
            // Submitted again by a resume, which records the job but knows
            // no nonces: bound now from the journal's own record.
            match journal.bind_callback_nonce(nonce.as_str(), &job_id).await {
                Ok(winner) if winner != job_id => return self.wrong_job(&nonce, &job_id),
                Ok(_) => {}
                Err(error) => return self.unavailable(&error.to_string()),
            }
        }
        match self.take_over(&entry.id, Origin::Callback, None).await {
            Ok(true) => {}
            Ok(false) => bump(&self.inner.counters.already_confirmed),
            Err(error) => return self.unavailable(&error.to_string()),
        }
        (StatusCode::OK, "ok")
    }

    /// An unsigned callback: a job a submission made (its nonce bound to it)
    /// is delivered under that submission's claim, exactly as its signed
    /// callback would be, so that it is stored and announced once whichever
    /// of them (or the recovery, or a replica) comes first. A job no
    /// submission made, or whose binding names no submission (bound by an
    /// earlier version on its first callback), is confirmed by a read.
    pub(super) async fn accept_unsigned_job(&self, job_id: &str) -> Reply {
        let journal = self.inner.deliverer.journal();
        let submission = match journal.callback_job_nonce(job_id).await {
            Ok(Some(nonce)) => match journal.get(&submission_of_nonce(&nonce)).await {
                Ok(entry) => entry,
                Err(error) => return self.unavailable(&error.to_string()),
            },
            Ok(None) => None,
            Err(error) => return self.unavailable(&error.to_string()),
        };
        match submission {
            Some(entry) if submitted_job(&entry.stage) == Some(job_id) => {
                match self.take_over(&entry.id, Origin::Callback, None).await {
                    Ok(true) => {}
                    Ok(false) => bump(&self.inner.counters.already_confirmed),
                    Err(error) => return self.unavailable(&error.to_string()),
                }
                (StatusCode::OK, "ok")
            }
            // Bound, its answer not written yet: as for its signed callback.
            Some(entry) if entry.stage == Stage::Pending => {
                bump(&self.inner.counters.unavailable);
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the submission is not answered yet",
                )
            }
            _ => self.confirm_by_read(None, job_id, false).await,
        }
    }

    /// Claims the submission `id` and delivers it in the background; false
    /// when it is done, or someone (a callback, a poll, a replica) holds it.
    pub(super) async fn take_over(
        &self,
        id: &str,
        origin: Origin,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<bool, JournalError> {
        // A holder of its own per claim: a claim by the same holder would
        // succeed again, and fence the first one out.
        let holder = format!("{}-{}", self.inner.holder, uuid::Uuid::new_v4().simple());
        let journal = self.inner.deliverer.journal();
        let Some(claim) = journal.claim_entry(id, &holder, self.inner.lease).await? else {
            return Ok(false);
        };
        let service = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let id = claim.entry.id.clone();
            let fence = claim.fence.clone();
            let line = claim.line.is_some();
            let batch = claim.batch.clone();
            let job_id = submitted_job(&claim.entry.stage).map(str::to_string);
            let outcome = {
                let deliver = service.deliver_claimed(claim, origin);
                tokio::pin!(deliver);
                let renew = service.renew(&holder, &id);
                tokio::pin!(renew);
                tokio::select! {
                    outcome = &mut deliver => outcome,
                    () = &mut renew => deliver.await,
                }
            };
            if let (Some(batch), Some(outcome)) = (&batch, &outcome) {
                // A handed-off line's reservation, settled as its worker
                // would have (under the claim, so before a hand-back).
                let journal = service.inner.deliverer.journal();
                crate::spend::settle_line(journal.as_ref(), batch, &fence, outcome).await;
            }
            if line && !matches!(outcome, Some(Ok(_))) {
                service.hand_back(&fence).await;
            }
            if let Err(error) = service
                .inner
                .deliverer
                .journal()
                .release(&holder, None)
                .await
            {
                tracing::warn!(%error, id, "cannot release a claim; its lease runs out");
            }
            let Some(outcome) = outcome else { return };
            let job_id = match &outcome {
                Ok(entry) => submitted_job(&entry.stage).map(str::to_string),
                Err(_) => job_id,
            }
            .unwrap_or_default();
            match &outcome {
                Ok(_) if origin == Origin::Recovery => bump(&service.inner.counters.recovered),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, job_id, "delivery unfinished; it is tried again")
                }
            }
            if let Some(reporter) = &service.inner.reporter {
                reporter(&job_id, &outcome);
            }
        });
        Ok(true)
    }

    /// Renews a claim's lease every third of it, until it is lost.
    async fn renew(&self, holder: &str, id: &str) {
        let lease = self.inner.lease;
        let ids = [id.to_string()];
        loop {
            tokio::time::sleep(lease / 3).await;
            match self
                .inner
                .deliverer
                .journal()
                .renew(holder, &ids, lease)
                .await
            {
                Ok(1) => {}
                Ok(_) => return,
                Err(error) => tracing::warn!(%error, id, "cannot renew a claim"),
            }
        }
    }

    /// Takes a claimed submission to its end; `None` when it is left for
    /// later (no read slot for a callback's read: the recovery takes it).
    async fn deliver_claimed(
        &self,
        mut claim: Claim,
        origin: Origin,
    ) -> Option<Result<Entry, DeliveryError>> {
        let journal = self.inner.deliverer.journal();
        let fence = claim.fence.clone();
        if claim.entry.stage == Stage::Pending {
            // Its submitter died before the POST's answer was recorded: the
            // same request, with the same Idempotency-Key, is replayed.
            if let Err(error) = self.resubmit(&mut claim).await {
                self.postpone(&fence).await;
                return Some(Err(error));
            }
        }
        if let (Origin::Callback, Stage::Accepted { job_id }) = (origin, &claim.entry.stage) {
            // The callback's read: the payload is never trusted, the job is.
            let slot = self.read_slot().await?;
            bump(&self.inner.counters.reads);
            let read = self.inner.client.job(job_id).await;
            drop(slot);
            match read {
                Ok(job) => {
                    bump(&self.inner.counters.confirmed);
                    if let (JobStatus::Completed, Some(image_url)) = (&job.status, &job.image_url) {
                        claim.entry.stage = Stage::Generated {
                            job_id: job.job_id.clone(),
                            image_url: image_url.clone(),
                            generation_time: job.generation_time,
                            model: job.model.clone(),
                        };
                        claim.entry.updated_at = chrono::Utc::now();
                        if let Err(error) = journal.write_claimed(&claim.entry, &claim.fence).await
                        {
                            return Some(Err(error.into()));
                        }
                    }
                    if let Some(hook) = &self.inner.on_confirmed {
                        hook(&job);
                    }
                }
                // Waited for below, with the SDK's polling.
                Err(error) => tracing::warn!(%error, job_id, "a callback's read failed"),
            }
        }
        let outcome = self.inner.deliverer.continue_claim(claim).await;
        if outcome.is_err() {
            self.postpone(&fence).await;
        }
        Some(outcome)
    }

    /// After a failed attempt: the entry marked as changed now, so that the
    /// recovery tries it again after another grace period, not at once (a
    /// key without funds is not asked every few seconds).
    async fn postpone(&self, fence: &Fence) {
        let journal = self.inner.deliverer.journal();
        if let Ok(Some(mut entry)) = journal.get(&fence.id).await
            && !entry.done
        {
            entry.updated_at = chrono::Utc::now();
            if let Err(error) = journal.write_claimed(&entry, fence).await {
                tracing::debug!(%error, id = fence.id, "cannot postpone a failed delivery");
            }
        }
    }

    /// Submits a pending submission again under its claim, and records and
    /// binds the job the API answers with.
    async fn resubmit(&self, claim: &mut Claim) -> Result<(), DeliveryError> {
        let nonce = self
            .inner
            .secret
            .as_ref()
            .and_then(|secret| super::submit::submission_nonce(&claim.entry, secret));
        let deliverer = &self.inner.deliverer;
        claim.entry.stage = post_and_bind(deliverer, &claim.entry, nonce.as_ref()).await?;
        claim.entry.updated_at = chrono::Utc::now();
        deliverer
            .journal()
            .write_claimed(&claim.entry, &claim.fence)
            .await?;
        Ok(())
    }

    /// A batch line the service could not finish now, handed off again
    /// (instead of released to the batch's workers), so that the recovery
    /// tries it after another grace period.
    async fn hand_back(&self, fence: &Fence) {
        let journal = self.inner.deliverer.journal();
        if let Ok(Some(mut entry)) = journal.get(&fence.id).await
            && !entry.done
        {
            entry.updated_at = chrono::Utc::now();
            if let Err(error) = journal.hand_off(&entry, fence, self.inner.grace).await {
                tracing::debug!(%error, id = fence.id, "cannot hand a batch line back");
            }
        }
    }
}
