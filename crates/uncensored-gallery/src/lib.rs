//! A local web gallery of the images an `uncensored` batch stored, with the
//! batch's failures and the lines still in flight, updated live while the
//! batch runs.
//!
//! [`Gallery`] reads any storage `uncensored-deliver` opens (disk, S3, GCS,
//! Azure, memory): every image with its JSON sidecar. Given the batch's
//! journal, it also shows the lines that failed, each with its reason and
//! the reason's advice ([`uncensored::FailureReason::advice`]), and those
//! still in flight. [`Gallery::serve`] starts an HTTP server that needs
//! nothing else (the page, its script and style are embedded):
//!
//! | path | what |
//! |---|---|
//! | `/` | the page: thumbnails, search, filters, sorting, details, failures |
//! | `/api/images?offset=&limit=&q=&model=&from=&to=&batch=journal&sort=` | a page of image records as JSON ([`catalog::Page`]); `sort` is `date`, `date_asc`, `time` or `time_asc` |
//! | `/api/image/NAME` | one image's record: every sidecar field and its SHA-256 |
//! | `/api/batch` | the batch as its journal tells it ([`batch::BatchView`]) |
//! | `/api/events` | server-sent events: `image`, `batch`, `reload` |
//! | `/thumbs/NAME`, `/images/NAME` | a thumbnail (JPEG, made once under decoding limits, cached in memory; 422 for an image it cannot be made of), the image |
//!
//! What it is not: a public web server. It listens on loopback unless told
//! otherwise ([`GalleryOptions::allow_remote`]) and then answers only
//! requests addressed to a loopback name; on any other address every request
//! must carry its access token ([`GalleryServer::access_token`]): programs as
//! `Authorization: Bearer TOKEN`, a browser through the URL printed at start
//! ([`GalleryServer::login_url`], `/?token=TOKEN`), whose answer sets an
//! `HttpOnly`, `SameSite=Strict` cookie, since the page's `EventSource` can
//! send no header. Slow and hostile clients are held to
//! [`GalleryOptions::limits`] (uncensored-deliver's serve loop). It
//! serves only the images it listed, by a name the storage layer checked
//! ([`uncensored_deliver::storage::ObjectName::parse`]); the page builds its
//! DOM with `textContent` under a Content-Security-Policy without inline
//! script, so a prompt is text, whatever it holds. It never writes to the
//! storage or the journal.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use uncensored_deliver::storage::StorageUrl;
//! use uncensored_gallery::Gallery;
//!
//! let storage = StorageUrl::parse("memory://")?;
//! let server = Gallery::open(&storage).await?.serve("127.0.0.1:0".parse()?).await?;
//! println!("gallery at {}", server.url());
//! server.shutdown().await;
//!
//! // Loopback only, unless allowed; a directory that is not there is named.
//! assert!(Gallery::open(&storage).await?.serve("0.0.0.0:0".parse()?).await.is_err());
//! let missing = StorageUrl::parse("/no/such/images")?;
//! assert!(Gallery::open(&missing).await.unwrap_err().to_string().contains("/no/such/images"));
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod access;
pub mod batch;
pub mod catalog;
mod live;
mod routes;
mod server;
mod thumbs;

pub use server::{Gallery, GalleryError, GalleryOptions, GalleryServer};
