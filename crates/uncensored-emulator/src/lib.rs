//! A faithful local implementation of the image-generation API.
//!
//! It serves exactly the operations `openapi.yaml` describes, with the
//! behaviour the service documents: API keys with scopes, validation with the
//! error envelope, balances and prices (and the billing endpoints over them:
//! the balance with the funds held for async jobs, daily and monthly spend
//! reset at UTC midnight, spend limits, a transaction per charge), moderation, per-key rate limits with
//! the `x-ratelimit-*` headers, `Idempotency-Key` replay, sync and async jobs,
//! webhooks, and real JPEGs. On top of that it injects faults on demand
//! (server errors, dropped connections, truncated downloads, duplicate or late
//! webhooks, failed jobs), each with a probability drawn from a seed, and
//! reports what happened at `GET /_emulator/stats`.
//!
//! It is for development and tests, not production: all state is in memory.
//! It never delivers a webhook off this machine unless configured to.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use uncensored_emulator::{Config, Emulator};
//!
//! let emulator = Emulator::start(Config::default()).await.unwrap();
//! let client = uncensored_api::Client::with_api_key(emulator.base_url(), "emulator-key").unwrap();
//! let response = client
//!     .generate_image()
//!     .body(uncensored_api::types::GenerateImageRequest::builder().prompt("a lighthouse"))
//!     .send()
//!     .await
//!     .unwrap();
//! assert_eq!(response.status.as_str(), "completed");
//! assert_eq!(emulator.stats().charges.total, 1);
//! emulator.shutdown().await;
//! # }
//! ```
#![deny(missing_docs)]

pub mod cli;
mod clock;
pub mod config;
mod error;
mod ledger;
mod picture;
mod rng;
mod routes;
mod state;
mod webhook;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, ConfigError, DEFAULT_KEY, Faults, KeyConfig, ModelConfig};
pub use picture::render_jpeg;
pub use state::{Charges, FaultStats, Stats, WebhookStats};

use state::Shared;

/// Starts emulators.
pub struct Emulator;

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Emulator {
    /// Binds `config.listen` and serves in the background until the handle is
    /// shut down or dropped.
    pub async fn start(config: Config) -> Result<EmulatorHandle, StartError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Like [`Emulator::start`], with the ledger reading the time from
    /// `clock` (for example a [`ManualClock`], to cross UTC midnight in a test
    /// without waiting for it).
    pub async fn start_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<EmulatorHandle, StartError> {
        config.validate()?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let state = Arc::new(Shared::with_clock(config, format!("http://{addr}"), clock));
        let app = routes::router(state.clone());
        let token = state.shutdown.clone();
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the emulator's server stopped");
            }
        });
        Ok(EmulatorHandle {
            state,
            addr,
            server: Some(server),
        })
    }
}

/// A running emulator. Dropping it stops the server.
pub struct EmulatorHandle {
    state: Arc<Shared>,
    addr: SocketAddr,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl EmulatorHandle {
    /// The base URL to give a client: `http://127.0.0.1:PORT/api`.
    pub fn base_url(&self) -> &str {
        &self.state.base_url
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What has happened so far (also at `GET /_emulator/stats`).
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// What the account named `name` can spend now, in credits: its balance
    /// less the funds held for jobs still running.
    pub fn balance(&self, name: &str) -> u64 {
        self.state.balance(name)
    }

    /// Forgets jobs, cached responses, rate windows and statistics, and restores
    /// balances (also `POST /_emulator/reset`).
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Stops accepting connections, lets requests in progress finish, stops
    /// background jobs and webhooks, and waits for the server to end.
    pub async fn shutdown(mut self) {
        self.state.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.state.shutdown.cancel();
    }
}

impl std::fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorHandle")
            .field("base_url", &self.state.base_url)
            .finish_non_exhaustive()
    }
}
