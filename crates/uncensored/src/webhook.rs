//! Receiving job callbacks safely.
//!
//! The API's callbacks are not signed, so nothing in them is trusted:
//!
//! - each job gets its own callback URL carrying a registration id and an
//!   unguessable token ([`WebhookReceiver::register`]); the token is compared
//!   in constant time;
//! - a callback for an unknown registration, with a bad token, or about
//!   another job than the one registered is refused without side effects;
//! - the same callback arriving again is acknowledged but reported once;
//! - the handler answers at once (well within the API's 10 seconds) and only
//!   then confirms the job with a GET: the image URL reported comes from that
//!   read, never from the payload.
//!
//! ```no_run
//! # async fn run() -> uncensored::Result<()> {
//! use uncensored::webhook::{CallbackEvent, WebhookReceiver};
//! use uncensored::{Client, GenerateRequest};
//!
//! let client = Client::from_env()?;
//! let (receiver, mut events) = WebhookReceiver::new(client.clone(), "https://example.com/hooks/uncensored")?;
//! // Serve `receiver.router()` at https://example.com/hooks/uncensored, then:
//! receiver.submit(&GenerateRequest::new("a lighthouse at dusk")).await?;
//! match events.recv().await {
//!     Some(CallbackEvent::Completed(image)) => println!("{}", image.url),
//!     Some(CallbackEvent::Failed { job_id, error }) => eprintln!("{job_id}: {error}"),
//!     _ => {}
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use subtle::ConstantTimeEq as _;
use tokio::sync::mpsc;

use crate::client::Client;
use crate::download::hex;
use crate::error::{Error, Result};
use crate::request::GenerateRequest;
use crate::response::{CompletedImage, Generation, QueuedJob};

pub use crate::callback::{Callback, CallbackError, parse_callback};

/// What the receiver reports, once per job, after confirming it with a GET.
#[derive(Debug)]
#[non_exhaustive]
pub enum CallbackEvent {
    /// The job completed; the URL comes from the API's own job record.
    Completed(CompletedImage),
    /// The job failed, or could not be confirmed.
    Failed {
        /// The job.
        job_id: String,
        /// Why.
        error: Error,
    },
}

/// A callback URL made for one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The registration id (not secret).
    pub id: String,
    /// The full callback URL, carrying the secret token.
    pub url: String,
}

#[derive(Debug)]
struct Entry {
    token: [u8; 32],
    job_id: Option<String>,
    /// A callback that arrived before the job id was known.
    early: Option<String>,
    reported: bool,
}

struct Inner {
    client: Client,
    public_url: url::Url,
    entries: Mutex<HashMap<String, Entry>>,
    events: mpsc::UnboundedSender<CallbackEvent>,
}

/// Makes per-job callback URLs and handles the callbacks that reach them.
#[derive(Clone)]
pub struct WebhookReceiver {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookReceiver")
            .field("public_url", &self.inner.public_url.as_str())
            .finish_non_exhaustive()
    }
}

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    bytes[..16].copy_from_slice(a.as_bytes());
    bytes[16..].copy_from_slice(b.as_bytes());
    bytes
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

impl WebhookReceiver {
    /// A receiver whose callbacks arrive at `public_url` (where you serve
    /// [`WebhookReceiver::router`]), and the channel its events come out of.
    pub fn new(
        client: Client,
        public_url: &str,
    ) -> Result<(Self, mpsc::UnboundedReceiver<CallbackEvent>)> {
        let public_url = url::Url::parse(public_url).map_err(|e| {
            Error::Config(format!("the webhook URL {public_url:?} is not a URL: {e}"))
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Inner {
            client,
            public_url,
            entries: Mutex::new(HashMap::new()),
            events: tx,
        };
        Ok((
            Self {
                inner: Arc::new(inner),
            },
            rx,
        ))
    }

    /// A fresh callback URL for one job.
    pub fn register(&self) -> Registration {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let token = random_bytes();
        let mut url = self.inner.public_url.clone();
        url.query_pairs_mut()
            .append_pair("id", &id)
            .append_pair("token", &hex(&token));
        self.entries().insert(
            id.clone(),
            Entry {
                token,
                job_id: None,
                early: None,
                reported: false,
            },
        );
        Registration {
            id,
            url: url.into(),
        }
    }

    /// Ties a registration to the job the API created for it.
    pub fn expect(&self, registration: &Registration, job_id: &str) {
        let early = {
            let mut entries = self.entries();
            let Some(entry) = entries.get_mut(&registration.id) else {
                return;
            };
            entry.job_id = Some(job_id.to_string());
            entry.early.take()
        };
        match early {
            Some(seen) if seen == job_id => self.accept(&registration.id, job_id.to_string()),
            Some(seen) => {
                tracing::warn!(%seen, expected = %job_id, "dropping an early callback about another job")
            }
            None => {}
        }
    }

    /// Registers a callback URL, sends `request` with it, and ties the job to it.
    pub async fn submit(&self, request: &GenerateRequest) -> Result<QueuedJob> {
        let registration = self.register();
        let outcome = self
            .inner
            .client
            .generate(&request.clone().callback_url(registration.url.clone()))
            .await;
        match outcome {
            Ok(Generation::Queued(job)) => {
                self.expect(&registration, &job.job_id);
                Ok(job)
            }
            Ok(Generation::Completed(image)) => Err(Error::UnexpectedResponse {
                status: 200,
                detail: format!(
                    "job {} completed synchronously despite a callback URL",
                    image.job_id
                ),
            }),
            Err(error) => {
                self.entries().remove(&registration.id);
                Err(error)
            }
        }
    }

    /// Handles one callback: `query` is the URL's query string. Answers at
    /// once; the job is confirmed with a GET in the background.
    pub fn handle(
        &self,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), CallbackError> {
        let id = query.get("id").ok_or(CallbackError::UnknownRegistration)?;
        let token = query.get("token").and_then(|t| unhex(t));
        let callback = parse_callback(headers, body)?;
        let job_id = {
            let mut entries = self.entries();
            let entry = entries
                .get_mut(id)
                .ok_or(CallbackError::UnknownRegistration)?;
            let matches = token.is_some_and(|t| bool::from(t.ct_eq(&entry.token)));
            if !matches {
                return Err(CallbackError::BadToken);
            }
            match &entry.job_id {
                None => {
                    entry.early.get_or_insert(callback.request_id);
                    return Ok(());
                }
                Some(job_id) if *job_id != callback.request_id => {
                    return Err(CallbackError::WrongJob {
                        got: callback.request_id,
                    });
                }
                Some(_) if entry.reported => return Ok(()), // a duplicate: acknowledged, reported once
                Some(job_id) => job_id.clone(),
            }
        };
        self.accept(id, job_id);
        Ok(())
    }

    /// Marks a registration reported and confirms its job in the background.
    fn accept(&self, id: &str, job_id: String) {
        if let Some(entry) = self.entries().get_mut(id) {
            if entry.reported {
                return;
            }
            entry.reported = true;
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let event = match inner
                .client
                .wait_with(&job_id, confirm_options(&inner.client))
                .await
            {
                Ok(image) => CallbackEvent::Completed(image),
                Err(error) => CallbackEvent::Failed { job_id, error },
            };
            let _ = inner.events.send(event);
        });
    }

    /// An axum router that handles callbacks at its root (`POST /`).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", post(handler))
            .with_state(self.clone())
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.inner.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The confirming read happens at once; if the job is not finished yet (a
/// callback that came early), it is waited for like any other.
fn confirm_options(client: &Client) -> crate::WaitOptions {
    crate::WaitOptions {
        first_poll: std::time::Duration::ZERO,
        ..client.wait_defaults().clone()
    }
}

async fn handler(
    State(receiver): State<WebhookReceiver>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    match receiver.handle(&query, &headers, &body) {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(error) => {
            tracing::warn!(%error, "refused a callback");
            (error.status(), "refused")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_hex() {
        let token = random_bytes();
        assert_eq!(unhex(&hex(&token)), Some(token));
        assert_eq!(unhex("zz"), None);
        assert_ne!(random_bytes(), random_bytes());
    }
}
