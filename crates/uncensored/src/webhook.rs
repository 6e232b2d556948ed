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
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;
use tokio::sync::mpsc;

use crate::client::Client;
use crate::download::hex;
use crate::error::{Error, Result};
use crate::request::GenerateRequest;
use crate::response::{CompletedImage, Generation, QueuedJob};

/// A parsed callback payload. Unsigned: use it to know *which* job to read,
/// never as the job's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    /// The job the callback is about.
    pub request_id: String,
    /// The outcome as the callback states it (`success` in the API's example).
    pub status: String,
    /// The undocumented `result` object, as sent.
    pub result: Map<String, Value>,
    /// When it was sent.
    pub timestamp: Option<DateTime<Utc>>,
}

/// Why a callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// The body is not JSON, or not the callback's shape.
    #[error("not a callback payload: {0}")]
    Malformed(String),
    /// The URL does not name a registration of this receiver.
    #[error("unknown callback registration")]
    UnknownRegistration,
    /// The URL's token does not match its registration.
    #[error("bad callback token")]
    BadToken,
    /// The payload is about a different job than the one registered.
    #[error("the callback is about job {got}, not the registered job")]
    WrongJob {
        /// The job the payload names.
        got: String,
    },
}

impl CallbackError {
    fn status(&self) -> StatusCode {
        match self {
            CallbackError::Malformed(_) | CallbackError::WrongJob { .. } => StatusCode::BAD_REQUEST,
            CallbackError::UnknownRegistration => StatusCode::NOT_FOUND,
            CallbackError::BadToken => StatusCode::UNAUTHORIZED,
        }
    }
}

/// Parses a callback request, independent of any web framework.
pub fn parse_callback(headers: &HeaderMap, body: &[u8]) -> Result<Callback, CallbackError> {
    if let Some(kind) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let essence = kind.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(CallbackError::Malformed(format!(
                "content type {essence:?} is not application/json"
            )));
        }
    }
    let payload: uncensored_api::types::WebhookPayload =
        serde_json::from_slice(body).map_err(|e| CallbackError::Malformed(e.to_string()))?;
    if payload.request_id.is_empty() {
        return Err(CallbackError::Malformed("empty request_id".into()));
    }
    Ok(Callback {
        request_id: payload.request_id,
        status: payload.status,
        result: payload.result,
        timestamp: payload.timestamp,
    })
}

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

    #[test]
    fn payloads_are_parsed_or_refused() {
        let headers = HeaderMap::new();
        let ok = parse_callback(&headers, br#"{"request_id":"j1","status":"success","result":{"x":1},"timestamp":"2026-05-09T10:30:05Z"}"#)
            .unwrap();
        assert_eq!(
            (ok.request_id.as_str(), ok.status.as_str()),
            ("j1", "success")
        );
        assert!(matches!(
            parse_callback(&headers, b"not json"),
            Err(CallbackError::Malformed(_))
        ));
        assert!(matches!(
            parse_callback(&headers, br#"{"status":"success"}"#),
            Err(CallbackError::Malformed(_))
        ));
        let mut text = HeaderMap::new();
        text.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(matches!(
            parse_callback(&text, br#"{"request_id":"j","status":"s"}"#),
            Err(CallbackError::Malformed(_))
        ));
    }
}
