//! The steps of a delivery, each recorded by the run loop in `mod.rs`:
//! submit (or take a job), wait, download and store (with the one retry
//! loop of what the storage did not retry itself), and announce (with the
//! one retry loop of a notification, the claim checked before each attempt).

use uncensored::{Error, Generation, ImageFormat};

use crate::StoredImage;
use crate::journal::{BatchStop, Entry, Fence, JournalError, Stage};
use crate::notify::{Notification, Notifier, NotifyError};
use crate::storage::{ImageMeta, ObjectName, StorageError, Stored};

use super::{Deliverer, DeliveryError};

impl Deliverer {
    pub(super) async fn submit(&self, entry: &Entry) -> Result<Stage, DeliveryError> {
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

    pub(super) async fn wait(&self, job_id: &str) -> Result<Stage, DeliveryError> {
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
    pub(super) async fn store(&self, entry: &Entry) -> Result<Stage, DeliveryError> {
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
        if let Some((stored, sidecar)) = self
            .storage
            .stat(&guessed)
            .await
            .map_err(DeliveryError::Storage)?
        {
            return Ok(self.stored_stage(&guessed, sidecar, &stored).await);
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
                    return Ok(self.stored_stage(&name, meta.clone(), &stored).await);
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

    /// The stage after storing: the image's one record, its sidecar's
    /// facts and where the storage put it. A shareable URL is asked for, not
    /// required.
    pub(super) async fn stored_stage(
        &self,
        name: &ObjectName,
        meta: ImageMeta,
        stored: &Stored,
    ) -> Stage {
        let share_url = match self.storage.share_url(name).await {
            Ok(url) => url,
            Err(error) => {
                tracing::warn!(%error, "no shareable URL for the notification");
                None
            }
        };
        Stage::Stored(StoredImage {
            share_url,
            ..StoredImage::new(meta, stored)
        })
    }

    /// Tells every notifier that has not been told yet; records each success
    /// at once. A claimed entry checks its claim before each notifier, so a
    /// worker that stalled past its lease does not announce a line another
    /// worker took over.
    pub(super) async fn announce(
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
            match self
                .notify_with_retries(notifier.as_ref(), &notification, entry, fence)
                .await?
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
    ///
    /// A claimed entry's claim is checked before each attempt, once the
    /// notifier is ready to send at once.
    pub(super) async fn notify_with_retries(
        &self,
        notifier: &dyn Notifier,
        notification: &Notification,
        entry: &Entry,
        fence: Option<&Fence>,
    ) -> Result<Result<(), NotifyError>, JournalError> {
        let policy = &self.policies.notify;
        let mut backoffs = policy.backoffs();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if fence.is_some() {
                notifier.ready().await;
                self.write(entry, fence).await?;
            }
            match notifier.notify(notification).await {
                Ok(()) => return Ok(Ok(())),
                Err(error) if error.is_retryable() && attempt < policy.max_attempts => {
                    let backoff = backoffs.next().unwrap_or_default();
                    let Some(delay) = policy.delay(backoff, error.retry_after()) else {
                        // The receiver asked for a longer pause than the policy allows.
                        return Ok(Err(error));
                    };
                    tracing::warn!(%error, attempt, ?delay, notifier = %notifier.id(), "notify failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(error) => return Ok(Err(error)),
            }
        }
    }
}

/// Turns a client error into a failed stage when it is final for this job
/// (moderation, a failed job...), or a delivery error (to resume later) when
/// it is not. The account's funds and the key ([`BatchStop::stops_batch`])
/// are not the job's fault: the entry stays where it is, to continue once
/// the operator has topped up or fixed the key.
pub(super) fn terminal(job_id: Option<String>, error: Error) -> Result<Stage, DeliveryError> {
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
    match &entry.stage {
        Stage::Stored(image) => Notification::Stored(image.clone()),
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
            Stage::Stored(image) => Some(&image.location),
            _ => None,
        }
    }
}
