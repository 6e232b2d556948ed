//! Waiting for a job: poll soon, then back off into the documented 2-5 s band,
//! with a deadline, cancellation, and a stream of events for progress displays.

use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::request::GenerateRequest;
use crate::response::{CompletedImage, Generation, Job, JobStatus, ResponseMeta};

/// How to wait for a job.
#[derive(Debug, Clone)]
pub struct WaitOptions {
    /// Delay before the first poll.
    pub first_poll: Duration,
    /// The interval after the first poll; it grows by `growth` each poll.
    pub min_interval: Duration,
    /// The interval never exceeds this (the API asks for 2-5 s).
    pub max_interval: Duration,
    /// Factor by which the interval grows after each poll.
    pub growth: f64,
    /// Give up after this long, with [`Error::WaitTimeout`].
    pub deadline: Duration,
    /// Cancel the wait from elsewhere; it ends with [`Error::Cancelled`].
    pub cancel: Option<CancellationToken>,
}

impl Default for WaitOptions {
    /// First poll after 1 s, then every 2 s growing by 1.25× up to 5 s, for up
    /// to 10 minutes.
    fn default() -> Self {
        Self {
            first_poll: Duration::from_secs(1),
            min_interval: Duration::from_secs(2),
            max_interval: Duration::from_secs(5),
            growth: 1.25,
            deadline: Duration::from_secs(600),
            cancel: None,
        }
    }
}

impl WaitOptions {
    /// The delay before poll number `poll` (from 1).
    pub fn delay_before(&self, poll: u32) -> Duration {
        if poll <= 1 {
            return self.first_poll;
        }
        let grown = self.min_interval.as_secs_f64() * self.growth.max(1.0).powi(poll as i32 - 2);
        Duration::try_from_secs_f64(grown)
            .unwrap_or(self.max_interval)
            .min(self.max_interval)
    }

    /// With a cancellation token.
    pub fn with_cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// With a deadline.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }
}

/// One poll of a job, for progress displays.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    /// The job as this poll read it.
    pub job: Job,
    /// Which poll this was (from 1).
    pub poll: u32,
    /// Time since the wait began.
    pub elapsed: Duration,
    /// Whether the status differs from the previous poll's.
    pub changed: bool,
}

struct Watch {
    client: Client,
    job_id: String,
    options: WaitOptions,
    started: Instant,
    poll: u32,
    last: Option<JobStatus>,
    done: bool,
}

impl Client {
    /// Polls a job until it ends, yielding an event per poll; the last event
    /// is the terminal one. Errors (the API's, a deadline, a cancellation)
    /// end the stream.
    pub fn watch(
        &self,
        job_id: &str,
        options: WaitOptions,
    ) -> impl Stream<Item = Result<JobEvent>> + Send + 'static {
        let state = Watch {
            client: self.clone(),
            job_id: job_id.to_string(),
            options,
            started: Instant::now(),
            poll: 0,
            last: None,
            done: false,
        };
        futures_util::stream::unfold(state, |mut state| async move {
            if state.done {
                return None;
            }
            let event = state.next_event().await;
            state.done = match &event {
                Ok(event) => event.job.is_terminal(),
                Err(_) => true,
            };
            Some((event, state))
        })
    }

    /// Waits for a job with the client's default [`WaitOptions`] and returns
    /// the image; a failed job is [`Error::JobFailed`].
    pub async fn wait(&self, job_id: &str) -> Result<CompletedImage> {
        self.wait_with(job_id, self.wait_defaults().clone()).await
    }

    /// Waits for a job with `options`.
    pub async fn wait_with(&self, job_id: &str, options: WaitOptions) -> Result<CompletedImage> {
        let events = self.watch(job_id, options);
        futures_util::pin_mut!(events);
        let mut last = None;
        while let Some(event) = events.next().await {
            last = Some(event?);
        }
        let event = last.expect("a watch yields at least one event or an error");
        finished(event)
    }

    /// Generates and, for an async request, waits for the job.
    pub async fn generate_and_wait(&self, request: &GenerateRequest) -> Result<CompletedImage> {
        match self.generate(request).await? {
            Generation::Completed(image) => Ok(image),
            Generation::Queued(job) => {
                let mut image = self.wait(&job.job_id).await?;
                image.meta.idempotency_key = job.meta.idempotency_key;
                Ok(image)
            }
        }
    }
}

/// The image of a terminal event, or why there is none.
fn finished(event: JobEvent) -> Result<CompletedImage> {
    let attempts = event.poll;
    event.job.into_image(attempts)
}

impl crate::response::Job {
    /// The image of a finished job: [`Error::JobFailed`] for a failed (or
    /// unknown terminal) status, an unexpected-response error for a
    /// completed job without an image. `attempts` is how many reads it took.
    pub fn into_image(self, attempts: u32) -> Result<CompletedImage> {
        let job = self;
        match (&job.status, job.image_url) {
            (JobStatus::Completed, Some(url)) => Ok(CompletedImage {
                job_id: job.job_id,
                url,
                generation_time: job.generation_time,
                model: job.model,
                completed_at: job.completed_at,
                meta: ResponseMeta {
                    idempotency_key: None,
                    replayed: false,
                    rate_limit: job.rate_limit,
                    request_id: None,
                    attempts,
                },
            }),
            (JobStatus::Completed, None) => Err(Error::UnexpectedResponse {
                status: 200,
                detail: format!("job {} is completed but has no image_url", job.job_id),
            }),
            (status, _) => Err(Error::JobFailed {
                job_id: job.job_id,
                status: status.to_string(),
                message: job.error_message,
                code: job.error_code,
            }),
        }
    }
}

impl Watch {
    async fn next_event(&mut self) -> Result<JobEvent> {
        let cancel = self.options.cancel.clone().unwrap_or_default();
        let deadline = self.started + self.options.deadline;
        self.poll += 1;
        let wake = (Instant::now() + self.options.delay_before(self.poll)).min(deadline);
        tokio::select! {
            _ = cancel.cancelled() => return Err(Error::Cancelled { job_id: self.job_id.clone() }),
            _ = tokio::time::sleep_until(wake) => {}
        }
        let job = tokio::select! {
            _ = cancel.cancelled() => return Err(Error::Cancelled { job_id: self.job_id.clone() }),
            job = self.client.job(&self.job_id) => job?,
        };
        let elapsed = self.started.elapsed();
        if !job.is_terminal() && Instant::now() >= deadline {
            return Err(Error::WaitTimeout {
                job_id: self.job_id.clone(),
                status: job.status.to_string(),
                elapsed,
                polls: self.poll,
            });
        }
        let changed = self.last.as_ref() != Some(&job.status);
        self.last = Some(job.status.clone());
        tracing::debug!(job_id = %self.job_id, status = %job.status, poll = self.poll, ?elapsed, "polled");
        Ok(JobEvent {
            job,
            poll: self.poll,
            elapsed,
            changed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_starts_soon_and_settles_in_the_documented_band() {
        let options = WaitOptions::default();
        let delays: Vec<f64> = (1..=10)
            .map(|poll| options.delay_before(poll).as_secs_f64())
            .collect();
        assert_eq!(delays[0], 1.0);
        assert_eq!(delays[1], 2.0);
        assert!(
            delays[1..].iter().all(|d| (2.0..=5.0).contains(d)),
            "{delays:?}"
        );
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        assert_eq!(*delays.last().unwrap(), 5.0);
    }
}
