//! A [Model Context Protocol](https://modelcontextprotocol.io) server for the
//! image-generation API: what `uncensored mcp` serves.
//!
//! - Tools, each with an input schema carrying the API's constraints (taken
//!   from the generated request type's schema) and an output schema:
//!   `generate_image` (validate, generate, wait with a deadline and progress
//!   notifications, store through a [`Deliverer`], answer with a
//!   `resource_link`, structured content and, on request, a JPEG thumbnail),
//!   `submit_generation` and `get_job` for long jobs, and `list_images`.
//! - Resources: each stored image at `uncensored://images/{id}`, with its MIME
//!   type, refused above [`McpOptions::max_resource_bytes`].
//! - Errors are tool errors (`isError: true`) with the reason and advice of
//!   [`uncensored_deliver::DeliveryReason`] (the API's
//!   [`uncensored::FailureReason`], or storage, notification, journal) and
//!   the field at fault, in structured
//!   content (`{"error": ToolFailure}`) that every tool's output schema
//!   admits beside its success shape: clients that validate error results
//!   too (the TypeScript SDK does) pass the failure on. Bad input is refused
//!   before anything is sent, so nothing is paid for it.
//! - A cancelled or timed-out wait stops waiting only: the delivery goes on in
//!   the background, in the journal, and `get_job` finds it.
//! - Over Streamable HTTP ([`McpServer::serve_http`]) slow and hostile clients
//!   are held to [`HttpOptions::limits`] (uncensored-deliver's serve loop),
//!   and on an address that is not loopback every request must carry the
//!   access token as `Authorization: Bearer TOKEN`.
//!
//! What it is not: a client, a storage or a journal. Generation, storage and
//! notifications are the [`Deliverer`]'s; this crate only speaks MCP. The
//! `rmcp` SDK is used by one private module, so its major versions change
//! nothing here.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use uncensored::Client;
//! use uncensored_deliver::Deliverer;
//! use uncensored_deliver::journal::SqliteJournal;
//! use uncensored_deliver::storage::StorageUrl;
//! use uncensored_mcp::{McpOptions, McpServer};
//!
//! let storage = Arc::new(StorageUrl::parse("images")?.open()?);
//! let journal = Arc::new(SqliteJournal::open("images/.uncensored/journal.sqlite".as_ref())?);
//! let deliverer = Deliverer::new(Client::from_env()?, storage, journal);
//! McpServer::new(deliverer, McpOptions::default()).serve_stdio().await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod args;
mod failure;
mod protocol;
mod resources;
mod schema;
mod tools;

use std::sync::Arc;
use std::time::Duration;

pub use failure::ToolFailure;
use uncensored::CancellationToken;
use uncensored_deliver::Deliverer;
use uncensored_deliver::serve::{AccessToken, ServerLimits};

/// Limits of the server.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct McpOptions {
    /// How long `generate_image` waits when the caller names no timeout.
    pub default_wait: Duration,
    /// The longest wait a caller may ask for.
    pub max_wait: Duration,
    /// The largest image served as a resource (or made into a thumbnail).
    pub max_resource_bytes: u64,
    /// The largest side of a thumbnail, in pixels.
    pub thumbnail_side: u32,
    /// The most deliveries `list_images` returns.
    pub max_list: usize,
    /// Where `submit_generation`'s jobs call back (see
    /// [`with_callbacks`](Self::with_callbacks)); without it the server
    /// runs each delivery itself.
    pub callbacks: Option<CallbackTarget>,
}

/// The callback service `submit_generation` submits to: its public base URL
/// and the secret its URLs are signed with (never shown in `Debug`).
#[derive(Debug, Clone)]
pub struct CallbackTarget {
    /// The callback service's base URL (`https://host`, or `…/callback`).
    pub base: String,
    /// The secret of its signed URLs.
    pub secret: uncensored::callback::CallbackSecret,
}

impl Default for McpOptions {
    fn default() -> Self {
        Self {
            default_wait: Duration::from_secs(120),
            max_wait: Duration::from_secs(900),
            max_resource_bytes: 8 * 1024 * 1024,
            thumbnail_side: 128,
            max_list: 100,
            callbacks: None,
        }
    }
}

impl McpOptions {
    /// These options with another default wait (capped by `max_wait`).
    pub fn with_default_wait(mut self, wait: Duration) -> Self {
        self.default_wait = wait.min(self.max_wait);
        self
    }

    /// `submit_generation` submits async jobs whose callbacks go to the
    /// callback service at `base` (`webhook serve` on the same journal),
    /// each with a URL signed with `secret`, recorded in the journal before
    /// the POST (nonce, Idempotency-Key, request) and bound to its job after
    /// it: the service stores each, or polls it when its callback is lost.
    pub fn with_callbacks(
        mut self,
        secret: uncensored::callback::CallbackSecret,
        base: impl Into<String>,
    ) -> Result<Self, uncensored::callback::SigningError> {
        let base = base.into();
        secret.callback_url(&base)?;
        self.callbacks = Some(CallbackTarget { base, secret });
        Ok(self)
    }

    /// These options with another resource size cap.
    pub fn with_max_resource_bytes(mut self, bytes: u64) -> Self {
        self.max_resource_bytes = bytes;
        self
    }
}

/// Why serving stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum McpError {
    /// The transport failed (stdio closed mid-message, the listener failed...).
    #[error("MCP transport: {0}")]
    Transport(String),
    /// Streamable HTTP on an address that is not loopback, without an access token.
    #[error(
        "{0} is not a loopback address: serving MCP there needs an access token (HttpOptions::token)"
    )]
    Unprotected(std::net::SocketAddr),
}

/// How [`McpServer::serve_http`] serves: the limits its clients are held to
/// and the token they must send as `Authorization: Bearer TOKEN`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpOptions {
    /// Timeouts and the connection cap ([`McpServer::http_options`] has the defaults).
    pub limits: ServerLimits,
    /// The token every request must carry; required on an address that is
    /// not loopback (see [`AccessToken::for_address`]). `Debug` never shows it.
    pub token: Option<AccessToken>,
}

/// The MCP server over one [`Deliverer`].
#[derive(Debug, Clone)]
pub struct McpServer {
    tools: Arc<tools::Tools>,
}

impl McpServer {
    /// A server that generates, stores and announces through `deliverer`
    /// (its journal records every delivery; `list_images` reads it).
    pub fn new(deliverer: Deliverer, options: McpOptions) -> Self {
        Self {
            tools: Arc::new(tools::Tools::new(deliverer, options)),
        }
    }

    /// The tools as `tools/list` describes them (name, title, description,
    /// input and output schemas), as JSON.
    pub fn tool_list(&self) -> serde_json::Value {
        serde_json::to_value(protocol::tool_list(&self.tools)).expect("tools serialize")
    }

    /// Serves MCP on stdin and stdout until the client closes them.
    pub async fn serve_stdio(self) -> Result<(), McpError> {
        protocol::serve_stdio(protocol::Handler(self.tools)).await
    }

    /// The HTTP options of this server by default: the serve loop's limits,
    /// except the request timeout, which covers the longest wait a tool may
    /// take plus 30 s (a client of MCP 2026-07-28 gets its response's headers
    /// with the first message, the result when there is no progress to tell),
    /// and no token.
    pub fn http_options(&self) -> HttpOptions {
        let limits = ServerLimits::default()
            .with_request_timeout(self.tools.options.max_wait + Duration::from_secs(30));
        HttpOptions {
            limits,
            token: None,
        }
    }

    /// Serves MCP over Streamable HTTP at `/mcp` on `listener` until
    /// `shutdown` is cancelled, under `http`'s limits (uncensored-deliver's
    /// serve loop) and token. Refuses an address that is not loopback
    /// without a token ([`McpError::Unprotected`]).
    pub async fn serve_http(
        self,
        listener: tokio::net::TcpListener,
        http: HttpOptions,
        shutdown: CancellationToken,
    ) -> Result<(), McpError> {
        protocol::serve_http(protocol::Handler(self.tools), listener, http, shutdown).await
    }
}
