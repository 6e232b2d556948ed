//! The conformance suites: what every [`Storage`](crate::storage::Storage)
//! and every [`Notifier`](crate::notify::Notifier) must do. This crate runs
//! them on each of its backends against real servers; run them on yours:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use uncensored_deliver::storage::StorageUrl;
//! use uncensored_deliver::testing::storage;
//!
//! let memory = StorageUrl::parse("memory://").unwrap().open().unwrap();
//! storage::conformance(&memory).await;
//! # }
//! ```
//!
//! Each suite panics with a message naming the broken guarantee.

pub mod journal;
pub mod notify;
pub mod observed;
pub mod storage;
