//! Confirming a job: at most one read per job id in flight (duplicates wait
//! for it), a bounded number of reads at once, and the confirmed job recorded
//! in the journal before anyone is answered.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, watch};
use uncensored::{GenerateRequest, Job, JobStatus};

use super::{CallbackService, bump};
use crate::journal::{Entry, Stage};

/// What became of a job's confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Confirmation {
    /// The job is ours and recorded in the journal; its delivery has started.
    Confirmed,
    /// The API knows no such job of this account.
    Unknown,
    /// Not now: the API or the journal failed, or too many confirmations wait.
    Unavailable,
}

/// The reads in flight, by job id: each waiter holds a receiver that gets
/// the outcome once.
#[derive(Debug, Default)]
pub(super) struct InFlight(Mutex<HashMap<String, watch::Receiver<Option<Confirmation>>>>);

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, watch::Receiver<Option<Confirmation>>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a job from the in-flight map when its confirmation ends, however
/// it ends (a panicking read included: the waiters then see `Unavailable`).
struct Leader {
    service: CallbackService,
    job_id: String,
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.service.inner.in_flight.lock().remove(&self.job_id);
    }
}

/// The journal's id of a job delivered from a callback.
pub(super) fn entry_id(job_id: &str) -> String {
    format!("job-{job_id}")
}

impl CallbackService {
    /// Confirms `job_id`: at once when the journal has it, by joining the
    /// read in flight for it, or by a read of its own.
    pub(super) async fn confirm(&self, job_id: &str) -> Confirmation {
        let mut outcome = {
            let mut in_flight = self.inner.in_flight.lock();
            if let Some(outcome) = in_flight.get(job_id) {
                bump(&self.inner.counters.coalesced);
                outcome.clone()
            } else {
                let (sender, outcome) = watch::channel(None);
                in_flight.insert(job_id.to_string(), outcome.clone());
                let leader = Leader {
                    service: self.clone(),
                    job_id: job_id.to_string(),
                };
                // A task of its own: the read and its record finish even if
                // the callback that started them goes away.
                tokio::spawn(async move {
                    let confirmation = leader.service.look_up_or_read(&leader.job_id).await;
                    drop(leader);
                    sender.send_replace(Some(confirmation));
                });
                outcome
            }
        };
        match outcome.wait_for(Option::is_some).await {
            Ok(confirmation) => confirmation.unwrap_or(Confirmation::Unavailable),
            Err(_) => Confirmation::Unavailable,
        }
    }

    /// The leader's work: the journal first (a leader writes the journal
    /// before it leaves the in-flight map, so a job is either recorded or in
    /// flight, never read twice), else a read of the API.
    async fn look_up_or_read(&self, job_id: &str) -> Confirmation {
        match self.inner.deliverer.journal().get(&entry_id(job_id)).await {
            Ok(Some(_)) => {
                bump(&self.inner.counters.already_confirmed);
                Confirmation::Confirmed
            }
            Ok(None) => self.read_and_record(job_id).await,
            Err(error) => {
                tracing::warn!(%error, "cannot look a callback's job up in the journal");
                Confirmation::Unavailable
            }
        }
    }

    /// A slot for one read: at once, or after waiting in the bounded queue.
    pub(super) async fn read_slot(&self) -> Option<OwnedSemaphorePermit> {
        let inner = &self.inner;
        if let Ok(permit) = inner.reads.clone().try_acquire_owned() {
            return Some(permit);
        }
        if inner.queued.fetch_add(1, Ordering::SeqCst) >= inner.max_queued {
            inner.queued.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let permit = tokio::time::timeout(inner.queue_timeout, inner.reads.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok);
        inner.queued.fetch_sub(1, Ordering::SeqCst);
        permit
    }

    /// Reads the job; when it is ours, records it and starts its delivery.
    async fn read_and_record(&self, job_id: &str) -> Confirmation {
        let counters = &self.inner.counters;
        let Some(slot) = self.read_slot().await else {
            tracing::warn!(job_id, "too many callbacks to confirm; answering 503");
            return Confirmation::Unavailable;
        };
        bump(&counters.reads);
        let read = self.inner.client.job(job_id).await;
        drop(slot);
        let job = match read {
            Ok(job) => job,
            Err(error) if error.api().is_some_and(|api| api.status == 404) => {
                bump(&counters.unknown_jobs);
                return Confirmation::Unknown;
            }
            Err(error) => {
                tracing::warn!(%error, job_id, "cannot confirm a callback; the API will send it again");
                return Confirmation::Unavailable;
            }
        };
        let entry = entry_for(&job);
        // One writer wins, whichever service on the journal read the job: only
        // the one whose record was written delivers it.
        let ours = match self.inner.deliverer.journal().insert(&entry).await {
            Ok(ours) => ours,
            Err(error) => {
                tracing::warn!(%error, job_id, "cannot record a confirmed job");
                return Confirmation::Unavailable;
            }
        };
        if !ours {
            bump(&counters.already_confirmed);
            return Confirmation::Confirmed;
        }
        bump(&counters.confirmed);
        if let Some(hook) = &self.inner.on_confirmed {
            hook(&job);
        }
        let service = self.clone();
        tokio::spawn(async move {
            let job_id = job.job_id;
            let outcome = service
                .inner
                .deliverer
                .deliver_job(&entry.id, &job_id, &entry.request)
                .await;
            if let Err(error) = &outcome {
                tracing::warn!(%error, job_id, "delivery unfinished; it resumes on restart");
            }
            if let Some(reporter) = &service.inner.reporter {
                reporter(&job_id, &outcome);
            }
        });
        Confirmation::Confirmed
    }
}

/// The journal entry of a confirmed job. A finished job's image URL comes
/// from the read (never from the payload), so the deliverer goes straight to
/// storing it; a job still running is waited for like any other.
fn entry_for(job: &Job) -> Entry {
    let stage = match (&job.status, &job.image_url) {
        (JobStatus::Completed, Some(image_url)) => Stage::Generated {
            job_id: job.job_id.clone(),
            image_url: image_url.clone(),
            generation_time: job.generation_time,
            model: job.model.clone(),
        },
        _ => Stage::Accepted {
            job_id: job.job_id.clone(),
        },
    };
    Entry {
        id: entry_id(&job.job_id),
        // The prompt is not in the job record; the metadata says so.
        request: GenerateRequest::new(format!("(job {}: delivered from a callback)", job.job_id)),
        idempotency_key: String::new(),
        stage,
        notified: Default::default(),
        done: false,
        updated_at: chrono::Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(status: &str, image_url: Option<&str>) -> Job {
        Job {
            job_id: "j1".into(),
            status: JobStatus::parse(status),
            image_url: image_url.map(str::to_string),
            model: Some("model-dev".into()),
            created_at: None,
            completed_at: None,
            generation_time: Some(1.5),
            error_message: None,
            error_code: None,
            rate_limit: None,
        }
    }

    #[test]
    fn a_finished_job_goes_straight_to_storing_and_a_running_one_is_waited_for() {
        let done = entry_for(&job("completed", Some("http://127.0.0.1:1/i.jpg")));
        assert_eq!(done.id, "job-j1");
        assert!(matches!(
            done.stage,
            Stage::Generated { ref image_url, .. } if image_url == "http://127.0.0.1:1/i.jpg"
        ));
        let running = entry_for(&job("processing", None));
        assert_eq!(
            running.stage,
            Stage::Accepted {
                job_id: "j1".into()
            }
        );
    }
}
