//! Unsigned callbacks (`accept_unsigned`) of jobs a submission made: the
//! job is found from its nonce's binding and delivered under the
//! submission's claim, so that it is stored and announced once whichever of
//! its unsigned callback, its signed one, the recovery or a replica comes
//! first; a job no submission made is still confirmed by a read of its own.
#![cfg(all(feature = "sqlite", feature = "callbacks", feature = "testing"))]

mod callback_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callback_support::*;
use uncensored_deliver::callbacks::CallbackService;
use uncensored_deliver::journal::{Journal, Stage};
use uncensored_deliver::notify::{Notification, Notifier, NotifierId, NotifyError};
use uncensored_deliver::storage::{ObjectStorage, StorageUrl};
use uncensored_deliver::{Deliverer, DeliveryError};

/// Counts the announcements of each job.
#[derive(Debug, Default)]
struct Announced(Mutex<BTreeMap<String, u32>>);

impl Announced {
    fn counts(&self) -> BTreeMap<String, u32> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Notifier for Announced {
    fn kind(&self) -> &'static str {
        "counted"
    }
    fn id(&self) -> NotifierId {
        NotifierId::new("counted", "test")
    }
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        let job_id = match notification {
            Notification::Stored(image) => image.job_id.clone(),
            other => panic!("only images are stored here: {other:?}"),
        };
        *self.0.lock().unwrap().entry(job_id).or_default() += 1;
        Ok(())
    }
}

/// A replica of the service on `journal`, storing into `storage` and
/// announcing to `announced`, accepting signed and unsigned callbacks.
async fn replica(
    client: &uncensored::Client,
    journal: Arc<dyn Journal>,
    storage: &Arc<ObjectStorage>,
    announced: &Arc<Announced>,
) -> (CallbackService, String, Delivered) {
    let deliverer =
        Deliverer::new(client.clone(), storage.clone(), journal).with_notifier(announced.clone());
    let (sender, delivered) = tokio::sync::mpsc::unbounded_channel();
    let service = CallbackService::builder(client.clone(), deliverer)
        .secret(secret())
        .accept_unsigned(true)
        .recovery_grace(Duration::ZERO)
        .reporter(move |job_id, outcome: &Result<_, DeliveryError>| {
            let _ = sender.send((job_id.to_string(), outcome.clone_entry()));
        })
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = service.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (service, base, delivered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_job_called_back_unsigned_is_delivered_once_under_its_submission() {
    let mut config = quiet();
    // The API's own callbacks go nowhere (port 9): this test sends them.
    config.webhooks.max_attempts = 1;
    let (emulator, client) = emulator(config).await;
    let path = temp_journal("unsigned-submitted");
    let journal = Counted::open(&path);
    let storage = Arc::new(StorageUrl::parse("memory://").unwrap().open().unwrap());
    let announced = Arc::new(Announced::default());
    let (first, first_base, mut first_delivered) =
        replica(&client, Counted::open(&path).shared(), &storage, &announced).await;
    let (second, second_base, mut second_delivered) =
        replica(&client, Counted::open(&path).shared(), &storage, &announced).await;

    let submitted = submit(
        &submitter(&client, journal.shared(), secret(), CLOSED),
        "submitted, called back unsigned",
    )
    .await;
    // A job no submission made, whose callback URL was a plain one.
    let plain = queue(&client, "no submission", &format!("{CLOSED}/callback")).await;

    let http = reqwest::Client::new();
    let signed_path = submitted.callback_url.trim_start_matches(CLOSED);
    // Its unsigned callback on one replica, its signed one on the other, at once.
    let (unsigned_url, signed_url) = (
        format!("{first_base}/callback"),
        format!("{second_base}{signed_path}"),
    );
    let body = payload(&submitted.job_id);
    let (unsigned, signed) = tokio::join!(
        post(&http, &unsigned_url, &body),
        post(&http, &signed_url, &body),
    );
    assert_eq!((unsigned, signed), (200, 200));
    let (a, b) = (first.stats(), second.stats());
    assert_eq!(
        a.already_confirmed + b.already_confirmed,
        1,
        "one of them delivers it, the other finds it taken: {a:?} {b:?}"
    );
    let (job_id, outcome) = tokio::select! {
        Some(next) = first_delivered.recv() => next,
        Some(next) = second_delivered.recv() => next,
        () = tokio::time::sleep(Duration::from_secs(30)) => panic!("not delivered within 30 s"),
    };
    assert_eq!(job_id, submitted.job_id);
    let entry = outcome.unwrap();
    assert_eq!(entry.id, submitted.id, "under its submission's entry");
    assert!(matches!(entry.stage, Stage::Stored { .. }), "{entry:?}");

    // Then everything else comes too: nothing is delivered again.
    assert_eq!(first.recover().await.unwrap(), 0);
    assert_eq!(second.recover().await.unwrap(), 0);
    for base in [&first_base, &second_base] {
        let unsigned = format!("{base}/callback");
        assert_eq!(
            post(&http, &unsigned, &payload(&submitted.job_id)).await,
            200
        );
        let signed = format!("{base}{signed_path}");
        assert_eq!(post(&http, &signed, &payload(&submitted.job_id)).await, 200);
    }
    let (a, b) = (first.stats(), second.stats());
    assert_eq!(a.already_confirmed + b.already_confirmed, 5, "{a:?} {b:?}");
    assert_eq!(
        journal
            .journal
            .get(&format!("job-{}", submitted.job_id))
            .await
            .unwrap(),
        None,
        "the unsigned path recorded no entry of its own"
    );

    // A job without a submission: confirmed by a read, as before.
    let reads = job_reads(&emulator);
    assert_eq!(
        post(&http, &format!("{first_base}/callback"), &payload(&plain)).await,
        200
    );
    assert_eq!(job_reads(&emulator), reads + 1, "confirmed by one read");
    let (job_id, outcome) = deliveries(&mut first_delivered, 1, Duration::from_secs(30))
        .await
        .remove(0);
    assert_eq!(job_id, plain);
    assert_eq!(outcome.unwrap().id, format!("job-{plain}"));

    assert_eq!(journal.counts().await.unwrap(), (2, 2), "two entries, done");
    assert_eq!(
        storage.list_images().await.unwrap().len(),
        2,
        "each stored once"
    );
    assert_eq!(
        announced.counts(),
        BTreeMap::from([(submitted.job_id.clone(), 1), (plain.clone(), 1)]),
        "each announced once"
    );
    assert_eq!(emulator.stats().charges.total, 2);
    assert!(first_delivered.try_recv().is_err() && second_delivered.try_recv().is_err());
    std::fs::remove_file(&path).ok();
}
