//! Storage, notifications and a crash-safe delivery pipeline for the
//! [`uncensored`] SDK.
//!
//! - [`storage`]: the [`Storage`](storage::Storage) trait and one
//!   implementation over object_store, chosen by URL: `file:///path` (or a
//!   bare directory), `s3://bucket/prefix`, `gs://bucket/prefix`,
//!   `az://container/prefix`, `memory://`. Names are claimed with the store's
//!   conditional put, images streamed in (multipart when large), a JSON
//!   sidecar beside each image.
//! - [`notify`]: the [`Notifier`](notify::Notifier) trait with Slack,
//!   Discord, email (SMTP) and Standard Webhooks-signed backends.
//! - [`journal`]: the [`Journal`](journal::Journal) trait, the durable
//!   record of every step, in SQLite (one machine) or PostgreSQL (shared),
//!   with the claims and leases that let workers share a batch.
//! - [`worker`]: a batch loaded once into a journal and the workers that
//!   share it.
//! - [`Deliverer`]: generate (or take a job), wait, download, store and
//!   announce, every step in the journal first, so that a restart resumes
//!   without paying, storing or announcing twice.
#![cfg_attr(
    feature = "callbacks",
    doc = "- [`callbacks`]: the callback service that `uncensored webhook serve` wraps: signed callback URLs checked before anything else, jobs confirmed with one read, delivered once through the journal."
)]
#![cfg_attr(
    feature = "serve",
    doc = "- [`serve`]: the one HTTP serve loop of every server of the project (timeouts against slow clients, a connection cap, graceful shutdown) and the access tokens of those that may face a network."
)]
#![cfg_attr(
    feature = "testing",
    doc = "- [`testing`]: the conformance suites every storage and notifier passes; run them on your own backend."
)]
#![cfg_attr(
    feature = "thumbnail",
    doc = "- [`thumbnail`]: JPEG thumbnails of untrusted images, decoded under explicit limits, a few at a time, failures remembered."
)]
//!
//! What it is not: an API client. Requests, retries, waiting and downloads
//! are the [`uncensored`] crate's; this crate uses them.
//!
//! | feature | adds |
//! |---|---|
//! | `postgres` | [`journal::PostgresJournal`] and [`PostgresPacer`]: one journal and one rate limit shared by many workers, over TLS with rustls (`sslmode`, `sslrootcert` as libpq reads them) |
//! | `fs` (default) | the local file system, fsynced |
//! | `s3` | Amazon S3 and S3-compatible servers, presigned URLs |
//! | `gcs` | Google Cloud Storage, signed URLs |
//! | `azure` | Azure Blob Storage, SAS URLs |
//! | `sqlite` (default) | [`journal::SqliteJournal`] |
//! | `slack` | [`notify::SlackNotifier`] |
//! | `webhook-notify` | [`notify::SignedWebhookNotifier`] |
//! | `discord` | [`notify::DiscordNotifier`] |
//! | `email` | [`notify::EmailNotifier`]: SMTP with lettre (STARTTLS, implicit TLS) |
//! | `callbacks` | `callbacks`: the callback service (signed URLs, one read per job) |
//! | `serve` | `serve`: the hardened HTTP serve loop and access tokens |
//! | `testing` | `testing`: the conformance suites |
//! | `thumbnail` | `thumbnail`: thumbnails of untrusted images under explicit decoding limits |
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let emulator = uncensored_emulator::Emulator::start(Default::default()).await?;
//! use std::sync::Arc;
//! use uncensored::{Client, GenerateRequest};
//! use uncensored_deliver::Deliverer;
//! use uncensored_deliver::journal::SqliteJournal;
//! use uncensored_deliver::storage::StorageUrl;
//!
//! let client = Client::builder().base_url(emulator.base_url()).api_key("emulator-key").build()?;
//! let storage = StorageUrl::parse("memory://")?.open()?;
//! let deliverer = Deliverer::new(client, Arc::new(storage), Arc::new(SqliteJournal::in_memory()?));
//! let entry = deliverer.deliver("line-1", &GenerateRequest::new("a lighthouse at dusk")).await?;
//! assert!(entry.location().unwrap().starts_with("memory://"));
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

#[cfg(feature = "callbacks")]
pub mod callbacks;
mod deliverer;
mod failure;
mod image;
pub mod journal;
pub mod notify;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "serve")]
pub mod serve;
pub mod spend;
pub mod storage;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "thumbnail")]
pub mod thumbnail;
pub mod worker;

pub use deliverer::{Deliverer, DeliveryError, StepPolicies};
pub use failure::DeliveryReason;
pub use image::StoredImage;
#[cfg(feature = "postgres")]
pub use postgres::PostgresPacer;

/// The README's Rust examples, compiled as doctests so that they never rot.
#[cfg(all(
    doctest,
    feature = "fs",
    feature = "s3",
    feature = "slack",
    feature = "sqlite"
))]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeExamples;
