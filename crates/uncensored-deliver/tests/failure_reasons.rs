//! A delivery's failure named by the step that failed: a journal that
//! cannot be written is `journal`, never `storage`.
#![cfg(all(feature = "sqlite", feature = "fs"))]

use std::sync::Arc;
use std::time::Duration;

use uncensored::{Client, GenerateRequest};
use uncensored_deliver::journal::SqliteJournal;
use uncensored_deliver::storage::ObjectStorage;
use uncensored_deliver::{Deliverer, DeliveryError, DeliveryReason};
use uncensored_emulator::{Config, Emulator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_cannot_be_written_is_the_journals_failure() {
    let dir = std::env::temp_dir().join(format!(
        "uncensored-deliver-reasons-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let path = dir.join("journal.sqlite");
    let journal = SqliteJournal::open(&path).unwrap();
    // Another process holds the database's write lock for the whole
    // delivery: every write of the journal waits its busy timeout, then fails.
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE;").unwrap();

    let emulator = Emulator::start(Config {
        time_scale: 0.0,
        ..Config::default()
    })
    .await
    .unwrap();
    let client = Client::builder()
        .base_url(emulator.base_url())
        .api_key("emulator-key")
        .build()
        .unwrap();
    let deliverer = Deliverer::new(
        client,
        Arc::new(ObjectStorage::local(dir.join("images")).unwrap()),
        Arc::new(journal),
    );
    let error = tokio::time::timeout(
        Duration::from_secs(60),
        deliverer.deliver("locked", &GenerateRequest::new("a lighthouse at dusk")),
    )
    .await
    .expect("a locked journal fails within its busy timeout")
    .unwrap_err();
    assert!(matches!(error, DeliveryError::Journal(_)), "{error:?}");
    assert_eq!(error.reason(), DeliveryReason::Journal);
    assert_eq!(error.reason().as_str(), "journal");
    assert_ne!(error.reason().advice(), DeliveryReason::Storage.advice());
    assert_eq!(
        emulator.stats().charges.total,
        0,
        "nothing is sent before the journal records it"
    );
    holder.execute_batch("ROLLBACK;").unwrap();
    std::fs::remove_dir_all(dir).ok();
}
