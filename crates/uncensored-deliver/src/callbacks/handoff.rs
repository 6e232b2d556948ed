//! Batch lines submitted asynchronously: a worker claims a line, submits it
//! with a callback URL of its own and hands it off to the callback service,
//! which delivers it when its callback comes (or its recovery polls it), so
//! that a worker holds no connection per job.
//!
//! The line stays the unit of identity: its entry (its id, its
//! Idempotency-Key) is the submission, and its callback URL is named by
//! that id ([`CallbackSecret::callback_url_named`]), the same on every
//! submission of it. A line sent again after a crash (its answer never
//! recorded) carries the same key and the same URL, and the API's
//! idempotency answers with the same job.

use std::time::Duration;

use uncensored::Error;
use uncensored::callback::{CallbackSecret, SigningError};

use super::submit::post_and_bind;
use crate::journal::{Claim, Entry, Stage};
use crate::worker::LineSteps;
use crate::{Deliverer, DeliveryError};

#[cfg(doc)]
use super::CallbackService;

/// Takes each claimed batch line on for a [`Worker`](crate::worker::Worker)
/// ([`Worker::steps`](crate::worker::Worker::steps)): a pending line is
/// submitted with its signed callback URL (under `base`, the callback
/// service's public URL), the job bound to the URL's nonce, and the line
/// handed off ([`Batches::hand_off`](crate::journal::Batches::hand_off))
/// to the service for `grace`, which is then the service's to deliver (its
/// callback, its recovery, a replica). A line the API answered at once, or
/// refused for good, is finished by the worker; a line claimed past its
/// stage of submission (its hand-off's grace over, the service down) is
/// polled and delivered by the worker, as the service's recovery would.
///
/// ```no_run
/// # async fn run(deliverer: std::sync::Arc<uncensored_deliver::Deliverer>) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use uncensored::callback::CallbackSecret;
/// use uncensored_deliver::callbacks::HandOff;
/// use uncensored_deliver::worker::Worker;
///
/// let secret = CallbackSecret::new(std::env::var("UNCENSORED_CALLBACK_SECRET")?)?;
/// let hand_off = HandOff::new(secret, "https://hooks.example.com", Duration::from_secs(60))?;
/// let worker = Worker::new(deliverer, "prompts.txt", "worker-1").steps(Arc::new(hand_off));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct HandOff {
    secret: CallbackSecret,
    base: String,
    grace: Duration,
}

impl HandOff {
    /// Lines submitted with URLs under `base` signed with `secret`'s
    /// current secret, handed off for `grace` (the callback service's
    /// [`recovery_grace`](super::CallbackServiceBuilder::recovery_grace)).
    /// `base` is checked now ([`SigningError::InvalidBase`]).
    pub fn new(
        secret: CallbackSecret,
        base: impl Into<String>,
        grace: Duration,
    ) -> Result<Self, SigningError> {
        let base = base.into();
        secret.callback_url(&base)?;
        Ok(Self {
            secret,
            base,
            grace,
        })
    }

    /// The line's request with its own signed URL, written under its claim
    /// before it is sent (so that the recovery knows it, and a resubmission
    /// sends the same).
    async fn sign(
        &self,
        deliverer: &Deliverer,
        claim: &mut Claim,
    ) -> Result<uncensored::callback::CallbackNonce, DeliveryError> {
        // Signed by an earlier run (with this secret or a previous one, under
        // this base or another): kept, so that a line sent again carries the
        // body its Idempotency-Key was first sent with.
        if let Some(nonce) = super::submit::submission_nonce(&claim.entry, &self.secret) {
            return Ok(nonce);
        }
        let signed = self
            .secret
            .callback_url_named(&self.base, &claim.entry.id)
            .map_err(|e| DeliveryError::Api(Error::Config(e.to_string())))?;
        if claim.entry.request.callback() != Some(signed.url.as_str()) {
            let request = claim.entry.request.clone().callback_url(signed.url);
            request.validate()?;
            claim.entry.request = request;
            claim.entry.updated_at = chrono::Utc::now();
            deliverer
                .journal()
                .write_claimed(&claim.entry, &claim.fence)
                .await?;
        }
        Ok(signed.nonce)
    }
}

#[async_trait::async_trait]
impl LineSteps for HandOff {
    async fn run(&self, deliverer: &Deliverer, mut claim: Claim) -> Result<Entry, DeliveryError> {
        if claim.entry.stage != Stage::Pending {
            // Submitted before, and its hand-off's grace is over: the
            // service's recovery, by the worker (it polls the job).
            return deliverer.continue_claim(claim).await;
        }
        let nonce = self.sign(deliverer, &mut claim).await?;
        let stage = post_and_bind(deliverer, &claim.entry, Some(&nonce)).await?;
        claim.entry.stage = stage;
        claim.entry.updated_at = chrono::Utc::now();
        if let Stage::Accepted { .. } = claim.entry.stage {
            // The answer and the hand-off in one write: a callback finds
            // the line either unanswered (503, the API sends it again) or
            // handed off (the service takes it), never held by the worker.
            deliverer
                .journal()
                .hand_off(&claim.entry, &claim.fence, self.grace)
                .await?;
            return Ok(claim.entry);
        }
        // Answered at once, or refused for good: stored or announced here.
        deliverer
            .journal()
            .write_claimed(&claim.entry, &claim.fence)
            .await?;
        deliverer.continue_claim(claim).await
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use std::sync::Arc;

    use uncensored::GenerateRequest;

    use super::*;
    use crate::journal::{Batches as _, LineIds, SqliteJournal};
    use crate::storage::StorageUrl;

    #[tokio::test]
    async fn a_line_signed_before_a_rotation_keeps_its_url() {
        let old = CallbackSecret::new("o".repeat(40)).unwrap();
        let new = CallbackSecret::new("n".repeat(40))
            .unwrap()
            .with_previous("o".repeat(40))
            .unwrap();
        let journal = Arc::new(SqliteJournal::in_memory().unwrap());
        let request = GenerateRequest::new("a lighthouse");
        let mut ids = LineIds::new("prompts.txt");
        ids.next(&request);
        crate::worker::load(
            journal.as_ref(),
            &ids.file(),
            std::iter::once(Ok((1, request))),
        )
        .await
        .unwrap();
        let client = uncensored::Client::builder()
            .base_url("http://127.0.0.1:9")
            .api_key("unused")
            .build()
            .unwrap();
        let storage = Arc::new(StorageUrl::parse("memory://").unwrap().open().unwrap());
        let deliverer = Deliverer::new(client, storage, journal.clone());
        let lease = Duration::from_secs(60);
        let base = "https://hooks.example.com";

        // An earlier run signed it with the old secret, then died before
        // the answer was recorded.
        let mut claim = journal
            .claim("prompts.txt", "w-1", 1, lease)
            .await
            .unwrap()
            .lines
            .remove(0);
        let first = HandOff::new(old, base, lease).unwrap();
        let nonce = first.sign(&deliverer, &mut claim).await.unwrap();
        let url = claim.entry.request.callback().unwrap().to_string();
        journal.release("w-1", None).await.unwrap();

        // After the rotation, and under another base, it is sent as it was.
        let mut claim = journal
            .claim("prompts.txt", "w-2", 1, lease)
            .await
            .unwrap()
            .lines
            .remove(0);
        let second = HandOff::new(new.clone(), "https://other.example.com", lease).unwrap();
        assert_eq!(second.sign(&deliverer, &mut claim).await.unwrap(), nonce);
        assert_eq!(claim.entry.request.callback(), Some(url.as_str()));

        // A URL that does not verify is replaced by one of the current secret.
        claim.entry.request = claim
            .entry
            .request
            .clone()
            .callback_url("https://hooks.example.com/callback/forged.00");
        second.sign(&deliverer, &mut claim).await.unwrap();
        let signed = claim.entry.request.callback().unwrap();
        assert!(
            signed.starts_with("https://other.example.com/callback/"),
            "{signed}"
        );
        assert!(super::super::submit::submission_nonce(&claim.entry, &new).is_some());
    }
}
