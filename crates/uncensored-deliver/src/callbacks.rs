//! The callback service: an axum router that receives the API's job
//! callbacks and delivers each job once. `uncensored webhook serve` wraps it.
//!
//! A callback is unsigned, so it only says which job to look at: the job is
//! read with this service's API key (a job of another account, or none, is a
//! 404 and the callback is refused), and only then stored and announced by
//! the [`Deliverer`], whose journal, keyed by job id, makes repeated
//! callbacks and restarts harmless. The handler answers at once; delivery
//! runs behind it.
//!
//! ```no_run
//! # async fn run(deliverer: uncensored_deliver::Deliverer) -> Result<(), Box<dyn std::error::Error>> {
//! use uncensored_deliver::callbacks::CallbackService;
//!
//! let client = uncensored::Client::from_env()?;
//! let app = CallbackService::new(client, deliverer).router(); // POST /callback
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8787").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use uncensored::callback::parse_callback;
use uncensored::{Client, GenerateRequest};

use crate::journal::Entry;
use crate::{Deliverer, DeliveryError};

/// Told about each delivery the service finished (or could not finish).
pub type Reporter = Arc<dyn Fn(&str, &Result<Entry, DeliveryError>) + Send + Sync>;

/// Receives callbacks and delivers their jobs.
#[derive(Clone)]
pub struct CallbackService {
    client: Client,
    deliverer: Deliverer,
    reporter: Option<Reporter>,
}

impl std::fmt::Debug for CallbackService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackService")
            .field("deliverer", &self.deliverer)
            .finish_non_exhaustive()
    }
}

impl CallbackService {
    /// A service that confirms jobs with `client` and delivers them with `deliverer`.
    pub fn new(client: Client, deliverer: Deliverer) -> Self {
        Self {
            client,
            deliverer,
            reporter: None,
        }
    }

    /// Calls `reporter` with the job id and the outcome of each delivery.
    pub fn with_reporter(
        mut self,
        reporter: impl Fn(&str, &Result<Entry, DeliveryError>) + Send + Sync + 'static,
    ) -> Self {
        self.reporter = Some(Arc::new(reporter));
        self
    }

    /// Finishes the deliveries an earlier run left unfinished.
    pub async fn resume(&self) -> Result<Vec<Result<Entry, DeliveryError>>, DeliveryError> {
        self.deliverer.resume().await
    }

    /// The router: `POST /callback`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/callback", post(callback))
            .with_state(self.clone())
    }

    /// Handles one callback: refuses what is not a callback or not a job of
    /// this account, and starts the delivery of the rest.
    pub async fn handle(&self, headers: &HeaderMap, body: &[u8]) -> (StatusCode, &'static str) {
        let callback = match parse_callback(headers, body) {
            Ok(callback) => callback,
            Err(error) => {
                tracing::warn!(%error, "refused a callback");
                return (StatusCode::BAD_REQUEST, "not a callback");
            }
        };
        // Is it a job of ours? Only the API can say; the payload cannot be trusted.
        let job = match self.client.job(&callback.request_id).await {
            Ok(job) => job,
            Err(error) if error.api().is_some_and(|api| api.status == 404) => {
                return (StatusCode::NOT_FOUND, "unknown job");
            }
            Err(error) => {
                tracing::warn!(%error, "cannot confirm a callback; the API will send it again");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again");
            }
        };
        let id = format!("job-{}", job.job_id);
        let described =
            GenerateRequest::new(format!("(job {}: delivered from a callback)", job.job_id));
        let service = self.clone();
        tokio::spawn(async move {
            let outcome = service
                .deliverer
                .deliver_job(&id, &job.job_id, &described)
                .await;
            if let Err(error) = &outcome {
                tracing::warn!(%error, job_id = job.job_id, "delivery unfinished; it resumes on restart");
            }
            if let Some(reporter) = &service.reporter {
                reporter(&job.job_id, &outcome);
            }
        });
        (StatusCode::OK, "ok")
    }
}

async fn callback(
    State(service): State<CallbackService>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    service.handle(&headers, &body).await
}
