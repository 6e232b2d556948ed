//! The Rust SDK for the image-generation API.
//!
//! What it adds to the wire-level [`uncensored_api`] crate:
//!
//! - **Validation before any network I/O**: every documented constraint of a
//!   [`GenerateRequest`] is checked client-side and reported as a typed
//!   [`ValidationError`] naming the field.
//! - **Retries that never pay twice**: every POST carries an Idempotency-Key
//!   that stays the same across its retries, so a retried request replays the
//!   first answer instead of starting (and charging) a second job. Retries use
//!   capped exponential backoff with full jitter and honour `retry-after`;
//!   400, 401, 402, 403, 404 and 422 are never retried.
//! - **Typed answers and errors**: the 200/202 answer is a [`Generation`] enum,
//!   unknown job statuses are kept as data, and API errors carry their type,
//!   message, param, code, status, rate limit and request id.
//! - **Waiting**: [`Client::wait`] polls soon, then backs off into the
//!   documented 2-5 s band, with a deadline and cancellation; [`Client::watch`]
//!   streams progress events.
//! - **Downloads**: streamed, size-capped, truncation-checked and retried, with
//!   the format sniffed and a SHA-256 computed on the way. The API key is never
//!   sent to image storage.
//! - **Billing**: [`Client::balance`], [`Client::estimate`] (what a request
//!   would cost), [`Client::transactions`] (a stream over the pages) and
//!   [`Client::set_limits`], every amount a [`Money`]: integer nanos,
//!   printed as USD, never a float.
//! - **Callbacks**: [`callback::CallbackSecret`] signs a callback URL per
//!   job (`BASE/callback/NONCE.TAG`, HMAC-SHA256) and verifies one in
//!   constant time with no state; [`callback::parse_callback`] reads the
//!   API's (unsigned) payload without any web framework. The service that
//!   receives them is `uncensored_deliver::callbacks::CallbackService`.
//!
//! What it is not: storage, notifications and the journaled delivery
//! pipeline live in the `uncensored-deliver` crate, so that a plain API
//! client compiles no database and no cloud SDK. With default features this
//! crate compiles no C code.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> uncensored::Result<()> {
//! # let emulator = uncensored_emulator::Emulator::start(Default::default()).await.unwrap();
//! use uncensored::{Client, GenerateRequest};
//!
//! let client = Client::builder()
//!     .base_url(emulator.base_url()) // default: the production API
//!     .api_key("emulator-key")
//!     .build()?;
//! let image = client
//!     .generate_and_wait(&GenerateRequest::new("a lighthouse at dusk, oil painting").size(768, 512))
//!     .await?;
//! let file = client.download(&image.url).await?;
//! assert_eq!(file.format.extension(), "jpg");
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod address;
mod billing;
pub mod callback;
mod client;
mod download;
mod error;
mod failure;
mod money;
mod pacer;
mod request;
mod response;
mod retry;
mod wait;

pub use address::{MAX_DOWNLOAD_REDIRECTS, is_loopback_url, is_public};
pub use billing::{Balance, Estimate, SpendLimits, Transaction, TransactionKind};
pub use client::{
    Client, ClientBuilder, DEFAULT_BASE_URL, DEFAULT_MAX_DOWNLOAD_BYTES, key_fingerprint,
};
pub use download::{DownloadedImage, ImageFormat, ImageStream, body_prefix};
pub use error::{ApiError, ApiErrorKind, DownloadError, Error, Result, ValidationError};
pub use failure::FailureReason;
pub use money::{Money, MoneyParseError, NANOS_PER_USD};
pub use pacer::{
    LocalPacer, PACE_SHARE, PROBE_PATIENCE, Pace, RESET_PRECISION, WINDOW, pace_interval,
    time_to_reset,
};
pub use request::{GenerateRequest, Side, validate_idempotency_key, validate_side};
pub use response::{
    CompletedImage, Generation, Job, JobStatus, MAX_RESET_AHEAD, QueuedJob, RateLimit, ResponseMeta,
};
pub use retry::{MAX_WAIT, RetryPolicy, parse_retry_after, retry_after, wait_from_seconds};
pub use tokio_util::sync::CancellationToken;
pub use wait::{JobEvent, WaitOptions};

/// The wire-level client and types this crate is built on.
pub use uncensored_api as api;
