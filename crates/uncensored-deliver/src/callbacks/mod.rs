//! The callback service: an axum router that receives the API's job
//! callbacks and delivers each job once. `uncensored webhook serve` wraps it.
//!
//! The API does not sign its callbacks; this service signs the URLs it hands
//! out instead. Each job is submitted with its own
//! `BASE/callback/NONCE.TAG` (made by
//! [`CallbackSecret::callback_url`](uncensored::callback::CallbackSecret::callback_url)),
//! and a callback is handled in this order, cheapest refusal first:
//!
//! 1. **The tag**: `POST /callback/{signed}` whose tag does not verify under
//!    the service's secret is refused at once (401; 404 when the path is not
//!    even of the signed shape), before the body is read, with no API read and
//!    no journal access. The check is stateless, so it holds across restarts
//!    and on every replica that shares the secret; a flood of forgeries costs
//!    one HMAC each.
//! 2. **The nonce**: a nonce names one job, bound at submission. Jobs are
//!    submitted with a [`Submitter`] (or [`CallbackService::submitter`]),
//!    which records the submission in the journal (nonce, Idempotency-Key,
//!    request) before the POST, and the accepted job, bound to the nonce
//!    ([`CallbackNonces::bind_callback_nonce`](crate::journal::CallbackNonces::bind_callback_nonce)),
//!    after it. A callback whose nonce no submission made (404), or that
//!    names another job than its nonce's (409), is refused without a read,
//!    after restarts too and on every replica of the journal.
//! 3. **The claim**: the submission's entry is claimed (a lease with a
//!    fencing token), so that duplicates, the recovery's poll and other
//!    replicas leave it to one holder; a callback finding it claimed or done
//!    is answered 200 at once, without a read. The holder reads the job with
//!    the service's key (the payload is never trusted), then stores and
//!    announces it.
//!
//! **Batch lines** are submitted by the batch's workers with a [`HandOff`]:
//! each line's entry is its submission, its URL named by the entry's id
//! ([`CallbackSecret::callback_url_named`](uncensored::callback::CallbackSecret::callback_url_named)),
//! and the line handed off to the service once the API accepted it; the
//! steps above then deliver it exactly like a [`Submitter`]'s job.
//!
//! **Recovery**: when a callback never comes (the service was down while
//! the API gave up on it), [`CallbackService::recover`] (run every few
//! seconds by [`CallbackService::spawn_recovery`]) claims each submission
//! unchanged for the grace period ([`CallbackServiceBuilder::recovery_grace`],
//! 60 s by default) and polls its job until it ends; it is then delivered
//! exactly as its callback would have been.
//!
//! **Unsigned callbacks** (only with
//! [`CallbackServiceBuilder::accept_unsigned`]) of a job a submission made
//! (found from the job by its nonce's binding,
//! [`CallbackNonces::callback_job_nonce`](crate::journal::CallbackNonces::callback_job_nonce))
//! are delivered under that submission's claim, like its signed callback:
//! once, whichever comes first. Unsigned callbacks of other jobs, and URLs
//! signed without a submission (again only with `accept_unsigned`), go
//! through the older path:
//! 4. **The read**: anything else is confirmed by reading the job with the
//!    service's key; the payload is never trusted (a job of another account,
//!    or none, is a 404 and the callback is refused). At most one read per job
//!    id is in flight (concurrent duplicates wait for it), and at most
//!    [`CallbackServiceBuilder::max_concurrent_reads`] reads at once: further
//!    confirmations wait in a bounded queue for at most
//!    [`CallbackServiceBuilder::queue_timeout`], and beyond the queue's bound
//!    they are answered 503 at once (the API sends a callback again).
//!
//! A confirmed job is recorded in the journal before the answer (the read's
//! image URL, when it is finished), then stored and announced by the
//! [`Deliverer`] behind the answer; a restart resumes it
//! ([`CallbackService::resume`]).
//!
//! A plain `POST /callback` (no signature: each callback confirmed by a read,
//! steps 4 and 5 only) is served only when the service is built with
//! [`CallbackServiceBuilder::accept_unsigned`].
//!
//! ```no_run
//! # async fn run(deliverer: uncensored_deliver::Deliverer) -> Result<(), Box<dyn std::error::Error>> {
//! use uncensored::callback::CallbackSecret;
//! use uncensored::GenerateRequest;
//! use uncensored_deliver::callbacks::CallbackService;
//!
//! let client = uncensored::Client::from_env()?;
//! let secret = CallbackSecret::new(std::env::var("UNCENSORED_CALLBACK_SECRET")?)?;
//! let service = CallbackService::builder(client.clone(), deliverer)
//!     .secret(secret)
//!     .build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8787").await?;
//! // POST /callback/{signed}; facing a network, serve it with the feature `serve`'s
//! // `serve::serve` instead, as `webhook serve` does: it times out slow clients.
//! tokio::spawn(axum::serve(listener, service.router()).into_future());
//! // Lost callbacks: polled once the grace period has passed.
//! service.spawn_recovery(std::time::Duration::from_secs(5));
//!
//! // Each job gets a URL of its own, served by the router above (behind HTTPS),
//! // and is recorded in the journal before it is sent.
//! let submitter = service.submitter("https://hooks.example.com")?;
//! submitter.submit(&GenerateRequest::new("a lighthouse at dusk")).await?;
//! # Ok(())
//! # }
//! ```

mod confirm;
mod handoff;
mod recover;
mod submit;
mod submitted;

pub use handoff::HandOff;
pub use submit::{Submitted, Submitter, submission_id};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::sync::Semaphore;
use uncensored::callback::{
    CallbackError, CallbackNonce, CallbackSecret, SigningError, parse_callback,
};
use uncensored::{Client, Job};

use crate::journal::Entry;
#[cfg(doc)]
use crate::journal::Journal;
use crate::{Deliverer, DeliveryError};

use confirm::{Confirmation, InFlight};

/// Told about each delivery the service finished (or could not finish).
pub type Reporter = Arc<dyn Fn(&str, &Result<Entry, DeliveryError>) + Send + Sync>;

/// Told about each job a confirming read found, once it is recorded.
pub type ConfirmHook = Arc<dyn Fn(&Job) + Send + Sync>;

/// The answer to a callback: a status and a short text body.
pub type Reply = (StatusCode, &'static str);

/// The largest callback body read (the API's payload is a few hundred bytes).
const MAX_BODY_BYTES: usize = 64 * 1024;
/// The longest job id considered; anything longer is not a job of the API.
const MAX_JOB_ID_CHARS: usize = 256;

/// Why a [`CallbackServiceBuilder`] cannot build a service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackServiceError {
    /// Neither a secret nor `accept_unsigned`: the service would refuse everything.
    #[error(
        "the callback service needs a secret to verify signed callback URLs (set UNCENSORED_CALLBACK_SECRET), or accept_unsigned to confirm unsigned callbacks by reading each job"
    )]
    NoSecret,
}

/// What the service did with the callbacks it received, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallbackStats {
    /// Callbacks received, on every route.
    pub received: u64,
    /// Refused because the URL's tag did not verify, or the path was not signed.
    pub bad_signature: u64,
    /// Refused because the body was not a callback.
    pub malformed: u64,
    /// Refused because their nonce was bound to another job.
    pub wrong_job: u64,
    /// Refused because no submission made their (verified) URL.
    pub unknown_nonces: u64,
    /// Submissions delivered by the recovery, their callback lost.
    pub recovered: u64,
    /// Answered at once from the journal: the job was already confirmed.
    pub already_confirmed: u64,
    /// Joined a confirming read already in flight for the same job.
    pub coalesced: u64,
    /// Confirming reads of the API.
    pub reads: u64,
    /// Reads that found no such job (a stranger's callback).
    pub unknown_jobs: u64,
    /// Answered 503 because too many confirmations were waiting, or the API
    /// or the journal failed.
    pub unavailable: u64,
    /// Jobs confirmed and handed to the deliverer.
    pub confirmed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    bad_signature: AtomicU64,
    malformed: AtomicU64,
    wrong_job: AtomicU64,
    unknown_nonces: AtomicU64,
    recovered: AtomicU64,
    already_confirmed: AtomicU64,
    coalesced: AtomicU64,
    reads: AtomicU64,
    unknown_jobs: AtomicU64,
    unavailable: AtomicU64,
    confirmed: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Builds a [`CallbackService`]: a secret, or an explicit
/// [`accept_unsigned`](Self::accept_unsigned), is required.
#[must_use]
pub struct CallbackServiceBuilder {
    client: Client,
    deliverer: Deliverer,
    secret: Option<CallbackSecret>,
    accept_unsigned: bool,
    max_concurrent_reads: usize,
    max_queued: usize,
    queue_timeout: Duration,
    answer_within: Duration,
    grace: Duration,
    lease: Duration,
    max_recoveries: usize,
    reporter: Option<Reporter>,
    on_confirmed: Option<ConfirmHook>,
}

impl std::fmt::Debug for CallbackServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackServiceBuilder")
            .field("secret", &self.secret)
            .field("accept_unsigned", &self.accept_unsigned)
            .field("max_concurrent_reads", &self.max_concurrent_reads)
            .field("max_queued", &self.max_queued)
            .finish_non_exhaustive()
    }
}

impl CallbackServiceBuilder {
    /// Serves `POST /callback/{signed}` and verifies each URL's tag with `secret`.
    pub fn secret(mut self, secret: CallbackSecret) -> Self {
        self.secret = Some(secret);
        self
    }

    /// Also serves a plain `POST /callback` (default: no): unsigned callbacks,
    /// each confirmed by reading its job. Every forged callback about an
    /// unknown job then costs a read (bounded by the limits below).
    pub fn accept_unsigned(mut self, accept: bool) -> Self {
        self.accept_unsigned = accept;
        self
    }

    /// Confirming reads of the API in flight at once (default 16).
    pub fn max_concurrent_reads(mut self, reads: usize) -> Self {
        self.max_concurrent_reads = reads.max(1);
        self
    }

    /// Confirmations that may wait for a read slot (default 256); beyond
    /// them a callback is answered 503 at once, and the API sends it again.
    pub fn max_queued(mut self, queued: usize) -> Self {
        self.max_queued = queued;
        self
    }

    /// How long a confirmation waits for a read slot before it is answered
    /// 503 (default 5 s).
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.queue_timeout = timeout;
        self
    }

    /// How long a callback waits for its confirmation before it is answered
    /// 503 (default 8 s, inside the API's 10 s); the read goes on, and the
    /// API's next attempt finds the job confirmed.
    pub fn answer_within(mut self, timeout: Duration) -> Self {
        self.answer_within = timeout;
        self
    }

    /// How long after its submission (the last change of its entry) a job
    /// whose callback has not come is polled by [`CallbackService::recover`]
    /// (default 60 s: the API documents 5-30 s generations).
    pub fn recovery_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The lease on a submission being delivered (default 5 min, renewed
    /// every third of it while its holder works): a replica that dies
    /// leaves its jobs to another once it runs out.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// Submissions the recovery polls at once, on this service (default 64).
    pub fn max_recoveries(mut self, recoveries: usize) -> Self {
        self.max_recoveries = recoveries.max(1);
        self
    }

    /// Calls `reporter` with the job id and the outcome of each delivery.
    pub fn reporter(
        mut self,
        reporter: impl Fn(&str, &Result<Entry, DeliveryError>) + Send + Sync + 'static,
    ) -> Self {
        self.reporter = Some(Arc::new(reporter));
        self
    }

    /// Calls `hook` with each job a callback's read confirmed, once it is
    /// recorded and before the callback is answered (for metrics, or to know
    /// when a job was detected; its delivery is reported to the reporter).
    pub fn on_confirmed(mut self, hook: impl Fn(&Job) + Send + Sync + 'static) -> Self {
        self.on_confirmed = Some(Arc::new(hook));
        self
    }

    /// The service, or [`CallbackServiceError::NoSecret`] when it has neither
    /// a secret nor `accept_unsigned`.
    pub fn build(self) -> Result<CallbackService, CallbackServiceError> {
        if self.secret.is_none() && !self.accept_unsigned {
            return Err(CallbackServiceError::NoSecret);
        }
        Ok(CallbackService {
            inner: Arc::new(Inner {
                client: self.client,
                deliverer: self.deliverer,
                secret: self.secret,
                accept_unsigned: self.accept_unsigned,
                reads: Arc::new(Semaphore::new(self.max_concurrent_reads)),
                max_queued: self.max_queued,
                queued: AtomicUsize::new(0),
                queue_timeout: self.queue_timeout,
                answer_within: self.answer_within,
                grace: self.grace,
                lease: self.lease,
                recoveries: Arc::new(Semaphore::new(self.max_recoveries)),
                holder: format!("callbacks-{}", uuid::Uuid::new_v4().simple()),
                in_flight: InFlight::default(),
                reporter: self.reporter,
                on_confirmed: self.on_confirmed,
                counters: Counters::default(),
            }),
        })
    }
}

struct Inner {
    client: Client,
    deliverer: Deliverer,
    secret: Option<CallbackSecret>,
    accept_unsigned: bool,
    reads: Arc<Semaphore>,
    max_queued: usize,
    queued: AtomicUsize,
    queue_timeout: Duration,
    answer_within: Duration,
    grace: Duration,
    lease: Duration,
    /// Slots for the recovery's polls.
    recoveries: Arc<Semaphore>,
    /// The prefix of this service's claims.
    holder: String,
    in_flight: InFlight,
    reporter: Option<Reporter>,
    on_confirmed: Option<ConfirmHook>,
    counters: Counters,
}

/// Receives callbacks, confirms their jobs and delivers them. Cheap to clone.
#[derive(Clone)]
pub struct CallbackService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CallbackService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackService")
            .field("deliverer", &self.inner.deliverer)
            .field("secret", &self.inner.secret)
            .field("accept_unsigned", &self.inner.accept_unsigned)
            .finish_non_exhaustive()
    }
}

impl CallbackService {
    /// A builder for a service that confirms jobs with `client` and delivers
    /// them with `deliverer`.
    pub fn builder(client: Client, deliverer: Deliverer) -> CallbackServiceBuilder {
        CallbackServiceBuilder {
            client,
            deliverer,
            secret: None,
            accept_unsigned: false,
            max_concurrent_reads: 16,
            max_queued: 256,
            queue_timeout: Duration::from_secs(5),
            answer_within: Duration::from_secs(8),
            grace: Duration::from_secs(60),
            lease: Duration::from_secs(5 * 60),
            max_recoveries: 64,
            reporter: None,
            on_confirmed: None,
        }
    }

    /// Finishes the deliveries an earlier run left unfinished (each claimed
    /// first: replicas resume each once), and tells the reporter about each
    /// (with an empty job id when the job is not known).
    pub async fn resume(&self) -> Result<Vec<Result<Entry, DeliveryError>>, DeliveryError> {
        let results = self.inner.deliverer.resume().await?;
        if let Some(reporter) = &self.inner.reporter {
            for result in &results {
                let job_id = match result {
                    Ok(entry) => entry.stage.job_id().unwrap_or_default(),
                    Err(_) => "",
                };
                reporter(job_id, result);
            }
        }
        Ok(results)
    }

    /// A [`Submitter`] of jobs whose callbacks come to this service at
    /// `base` (its public URL), signed with its current secret and recorded
    /// in its journal. [`SigningError::InvalidBase`] when `base` is
    /// unusable, or the service has no secret to sign with.
    pub fn submitter(&self, base: &str) -> Result<Submitter, SigningError> {
        let Some(secret) = &self.inner.secret else {
            return Err(SigningError::InvalidBase {
                base: base.to_string(),
                problem: "cannot be signed for: the service has no secret".into(),
            });
        };
        Submitter::new(
            self.inner.client.clone(),
            self.inner.deliverer.journal().clone(),
            secret.clone(),
            base,
        )
    }

    /// What the service did so far.
    pub fn stats(&self) -> CallbackStats {
        let c = &self.inner.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        CallbackStats {
            received: get(&c.received),
            bad_signature: get(&c.bad_signature),
            malformed: get(&c.malformed),
            wrong_job: get(&c.wrong_job),
            unknown_nonces: get(&c.unknown_nonces),
            recovered: get(&c.recovered),
            already_confirmed: get(&c.already_confirmed),
            coalesced: get(&c.coalesced),
            reads: get(&c.reads),
            unknown_jobs: get(&c.unknown_jobs),
            unavailable: get(&c.unavailable),
            confirmed: get(&c.confirmed),
        }
    }

    /// The router: `POST /callback/{signed}` with a secret, `POST /callback`
    /// with `accept_unsigned`. Anything else is a 404.
    pub fn router(&self) -> Router {
        let mut router = Router::new();
        if self.inner.secret.is_some() {
            router = router.route("/callback/{signed}", post(signed_route));
        }
        if self.inner.accept_unsigned {
            router = router.route("/callback", post(unsigned_route));
        }
        router.with_state(self.clone())
    }

    /// Handles a callback to `/callback/{signed}`: `signed` is the path's
    /// last segment, `NONCE.TAG`. Refused at once when the tag does not
    /// verify (or the service has no secret).
    pub async fn handle_signed(&self, signed: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
        bump(&self.inner.counters.received);
        let nonce = match self.verify(signed) {
            Ok(nonce) => nonce,
            Err(reply) => return reply,
        };
        self.accept(Some(nonce), headers, body).await
    }

    /// Handles a plain callback to `/callback`: confirmed by a read. Refused
    /// (404) unless the service accepts unsigned callbacks.
    pub async fn handle_unsigned(&self, headers: &HeaderMap, body: &[u8]) -> Reply {
        bump(&self.inner.counters.received);
        if !self.inner.accept_unsigned {
            bump(&self.inner.counters.bad_signature);
            return (StatusCode::NOT_FOUND, "unsigned callbacks are not accepted");
        }
        self.accept(None, headers, body).await
    }

    /// The tag check: pure computation, no I/O.
    fn verify(&self, signed: &str) -> Result<CallbackNonce, Reply> {
        let Some(secret) = &self.inner.secret else {
            bump(&self.inner.counters.bad_signature);
            return Err((StatusCode::NOT_FOUND, "signed callbacks are not served"));
        };
        secret.verify(signed).map_err(|error| {
            bump(&self.inner.counters.bad_signature);
            tracing::debug!(%error, "refused a callback");
            (error.status(), "refused")
        })
    }

    /// The payload, then a signed callback's submission (see
    /// `submitted.rs`), or an unsigned one's read.
    async fn accept(
        &self,
        nonce: Option<CallbackNonce>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Reply {
        let callback = match parse_callback(headers, body) {
            Ok(callback) if callback.request_id.chars().count() <= MAX_JOB_ID_CHARS => callback,
            Ok(_) | Err(_) => {
                bump(&self.inner.counters.malformed);
                return (StatusCode::BAD_REQUEST, "not a callback");
            }
        };
        match nonce {
            Some(nonce) => self.accept_signed(nonce, callback).await,
            None => self.accept_unsigned_job(&callback.request_id).await,
        }
    }

    /// The older path (an unsigned callback of a job no submission made, or
    /// a URL signed without a submission): the job confirmed by a read (at most one per job id
    /// in flight), then `nonce`, unless already `bound`, bound to it.
    async fn confirm_by_read(
        &self,
        nonce: Option<&CallbackNonce>,
        job_id: &str,
        bound: bool,
    ) -> Reply {
        let confirmation =
            match tokio::time::timeout(self.inner.answer_within, self.confirm(job_id)).await {
                Ok(confirmation) => confirmation,
                Err(_) => Confirmation::Unavailable,
            };
        match confirmation {
            Confirmation::Confirmed => {}
            Confirmation::Unknown => {
                return (StatusCode::NOT_FOUND, "unknown job");
            }
            Confirmation::Unavailable => {
                bump(&self.inner.counters.unavailable);
                return (StatusCode::SERVICE_UNAVAILABLE, "try again");
            }
        }
        if let (Some(nonce), false) = (nonce, bound) {
            let journal = self.inner.deliverer.journal();
            match journal.bind_callback_nonce(nonce.as_str(), job_id).await {
                Ok(winner) if winner != job_id => return self.wrong_job(nonce, job_id),
                Ok(_) => {}
                Err(error) => return self.unavailable(&error.to_string()),
            }
        }
        (StatusCode::OK, "ok")
    }

    fn wrong_job(&self, nonce: &CallbackNonce, job_id: &str) -> Reply {
        bump(&self.inner.counters.wrong_job);
        let error = CallbackError::WrongJob {
            got: job_id.to_string(),
        };
        tracing::warn!(%error, %nonce, "refused a callback");
        (error.status(), "this callback URL belongs to another job")
    }

    fn unavailable(&self, why: &str) -> Reply {
        bump(&self.inner.counters.unavailable);
        tracing::warn!(
            why,
            "cannot confirm a callback now; the API will send it again"
        );
        (StatusCode::SERVICE_UNAVAILABLE, "try again")
    }
}

async fn signed_route(
    State(service): State<CallbackService>,
    Path(signed): Path<String>,
    request: Request,
) -> Reply {
    bump(&service.inner.counters.received);
    // The tag first: a forgery is refused before its body is read.
    let nonce = match service.verify(&signed) {
        Ok(nonce) => nonce,
        Err(reply) => return reply,
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        bump(&service.inner.counters.malformed);
        return (StatusCode::PAYLOAD_TOO_LARGE, "not a callback");
    };
    service.accept(Some(nonce), &parts.headers, &body).await
}

async fn unsigned_route(State(service): State<CallbackService>, request: Request) -> Reply {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        bump(&service.inner.counters.received);
        bump(&service.inner.counters.malformed);
        return (StatusCode::PAYLOAD_TOO_LARGE, "not a callback");
    };
    service.handle_unsigned(&parts.headers, &body).await
}
