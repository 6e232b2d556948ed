//! Lost callbacks: the API documents no redelivery once it gives up, so each
//! replica of the service looks, every few seconds, for submissions whose
//! callback has not come within the grace period, claims each (one poller
//! per job across replicas) and polls it as the API asks (the SDK's wait:
//! every 2-5 s, backing off) until it ends; then it is stored and announced
//! exactly as its callback would have done it.

use std::time::Duration;

use super::CallbackService;
use super::submit::submission_nonce;
use super::submitted::Origin;
use crate::journal::JournalError;

impl CallbackService {
    /// One pass of the recovery: claims every unfinished submission (made by
    /// a [`Submitter`](super::Submitter), or a batch line handed off by a
    /// [`HandOff`](super::HandOff), with this service's secret, current
    /// or previous) unchanged for the grace period
    /// ([`CallbackServiceBuilder::recovery_grace`](super::CallbackServiceBuilder::recovery_grace))
    /// and nobody else holds, and delivers each in the background (at most
    /// [`CallbackServiceBuilder::max_recoveries`](super::CallbackServiceBuilder::max_recoveries)
    /// at once; the others wait for a later pass). Returns how many it took
    /// over. A job that ended without an image is recorded
    /// with its reason and announced as failed.
    pub async fn recover(&self) -> Result<usize, JournalError> {
        let Some(secret) = &self.inner.secret else {
            return Ok(0);
        };
        let grace = chrono::Duration::from_std(self.inner.grace).unwrap_or(chrono::Duration::MAX);
        let due = chrono::Utc::now()
            .checked_sub_signed(grace)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        let journal = self.inner.deliverer.journal();
        let mut open = journal.unfinished().await?;
        // Batch lines handed off by workers (`HandOff`), as many as could
        // be polled now.
        open.extend(
            journal
                .handed_off(self.inner.recoveries.available_permits())
                .await?,
        );
        let mut taken = 0;
        for entry in open {
            if entry.updated_at > due || submission_nonce(&entry, secret).is_none() {
                continue;
            }
            // At most so many polls at once; the rest wait for a next pass.
            let Ok(permit) = self.inner.recoveries.clone().try_acquire_owned() else {
                break;
            };
            if self
                .take_over(&entry.id, Origin::Recovery, Some(permit))
                .await?
            {
                taken += 1;
            }
        }
        Ok(taken)
    }

    /// Runs [`recover`](Self::recover) now and then every `every` (clamped
    /// to 10 ms - 60 s), until the task is aborted. `webhook serve` runs it
    /// on every replica.
    pub fn spawn_recovery(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let every = every.clamp(Duration::from_millis(10), Duration::from_secs(60));
        let service = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match service.recover().await {
                    Ok(0) => {}
                    Ok(taken) => {
                        tracing::info!(taken, "polling submissions whose callback is late")
                    }
                    Err(error) => tracing::warn!(%error, "cannot look for lost callbacks now"),
                }
            }
        })
    }
}
