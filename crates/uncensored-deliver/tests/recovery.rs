//! Async jobs that are never lost: the emulator's callbacks fail on purpose
//! (sent to a closed port while the service is "down", with two attempts),
//! and the service's recovery finds every submission in the journal, polls
//! it and stores each paid image once, one poller per job across replicas;
//! and a URL signed before a secret rotation is delivered after it. The
//! lost-callback and replica cases run on SQLite and on PostgreSQL (one
//! server shared by the tests, each on a database of its own).
#![cfg(all(feature = "sqlite", feature = "callbacks", feature = "testing"))]

mod callback_support;

use std::collections::HashSet;
use std::time::Duration;

use callback_support::*;
use futures_util::{StreamExt as _, stream};
use uncensored::FailureReason;
use uncensored::callback::CallbackSecret;
use uncensored_deliver::journal::Stage;
use uncensored_emulator::{Config, EmulatorHandle};

const NEW_SECRET: &str = "the-new-secret-after-the-rotation-0123456789";

/// The emulator gives up on a callback after two attempts.
fn gives_up_soon() -> Config {
    let mut config = quiet();
    config.webhooks.max_attempts = 2;
    config
}

/// Waits until the emulator has given up on `count` callbacks.
async fn callbacks_lost(emulator: &EmulatorHandle, count: u64) {
    wait_until(
        Duration::from_secs(20),
        "the API gives up on the callbacks",
        || emulator.stats().webhooks.failures >= count,
    )
    .await;
}

/// The first scenario: 5 jobs submitted while `webhook serve` is
/// down; the API gives up on their callbacks; the service comes up on the
/// same journal and its recovery stores every paid image, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_lost_while_the_service_is_down_are_recovered() {
    lost_callbacks_are_recovered(Place::sqlite("lost")).await;
}

/// The same on PostgreSQL (the journal shared by replicas).
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_lost_while_the_service_is_down_are_recovered_on_postgres() {
    let Some(place) = Place::postgres("lost") else {
        return;
    };
    lost_callbacks_are_recovered(place).await;
}

async fn lost_callbacks_are_recovered(place: Place) {
    const JOBS: usize = 5;
    let (emulator, client) = emulator(gives_up_soon()).await;
    let journal = place.open().await;
    let submitter = submitter(&client, journal.shared(), secret(), CLOSED);
    let jobs: HashSet<String> = stream::iter(0..JOBS)
        .map(|i| {
            let submitter = submitter.clone();
            async move { submit(&submitter, &format!("lost {i}")).await.job_id }
        })
        .buffer_unordered(JOBS)
        .collect()
        .await;
    callbacks_lost(&emulator, JOBS as u64).await;
    assert_eq!(emulator.stats().webhooks.deliveries, 0);

    // The service comes up (another process would open the same file).
    let (service, _base, mut delivered) = serve(&client, place.open().await.shared(), |b| {
        b.secret(secret())
            .recovery_grace(Duration::from_millis(200))
    })
    .await;
    let _recovery = service.spawn_recovery(Duration::from_millis(20));
    let mut stored = HashSet::new();
    for (job_id, outcome) in deliveries(&mut delivered, JOBS, Duration::from_secs(30)).await {
        let entry = outcome.unwrap_or_else(|e| panic!("{job_id}: {e}"));
        assert!(
            entry.location().unwrap().starts_with("memory:"),
            "{entry:?}"
        );
        assert!(matches!(entry.stage, Stage::Stored { .. }));
        assert!(stored.insert(job_id), "each job delivered once");
    }
    assert_eq!(stored, jobs);
    assert_eq!(service.stats().recovered, JOBS as u64);
    assert_eq!(
        service.recover().await.unwrap(),
        0,
        "nothing left to recover"
    );
    assert_eq!(journal.counts().await.unwrap(), (JOBS as u64, JOBS as u64));
    let stats = emulator.stats();
    assert_eq!(stats.charges.total, JOBS as u64, "each paid once");
    assert!(delivered.try_recv().is_err(), "and delivered once");
    place.remove();
}

/// Two replicas of the service on one journal recover the same lost jobs:
/// each job is polled and delivered by exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_recover_the_same_jobs_with_one_delivery_each() {
    two_replicas_deliver_each_job_once(Place::sqlite("replicas")).await;
}

/// The same on PostgreSQL, where replicas on many machines share the journal.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_recover_the_same_jobs_with_one_delivery_each_on_postgres() {
    let Some(place) = Place::postgres("replicas") else {
        return;
    };
    two_replicas_deliver_each_job_once(place).await;
}

async fn two_replicas_deliver_each_job_once(place: Place) {
    const JOBS: usize = 8;
    let (emulator, client) = emulator(gives_up_soon()).await;
    let submitter = submitter(&client, place.open().await.shared(), secret(), CLOSED);
    let jobs: HashSet<String> = stream::iter(0..JOBS)
        .map(|i| {
            let submitter = submitter.clone();
            async move { submit(&submitter, &format!("replicated {i}")).await.job_id }
        })
        .buffer_unordered(JOBS)
        .collect()
        .await;
    callbacks_lost(&emulator, JOBS as u64).await;

    // Two replicas, each with its own connection to the journal and its own
    // storage: a job delivered twice would be reported twice.
    // No grace: the callbacks are lost already.
    let grace = |b: callback_support::Builder| b.secret(secret()).recovery_grace(Duration::ZERO);
    let (first, _, mut first_delivered) = serve(&client, place.open().await.shared(), grace).await;
    let (second, _, mut second_delivered) =
        serve(&client, place.open().await.shared(), grace).await;
    // Both look at once; then both keep looking.
    let (a, b) = tokio::join!(first.recover(), second.recover());
    assert_eq!(
        a.unwrap() + b.unwrap(),
        JOBS,
        "each job claimed by one replica"
    );
    let _first = first.spawn_recovery(Duration::from_millis(10));
    let _second = second.spawn_recovery(Duration::from_millis(10));

    let mut stored = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stored.len() < JOBS {
        let (job_id, outcome) = tokio::select! {
            Some(next) = first_delivered.recv() => next,
            Some(next) = second_delivered.recv() => next,
            () = tokio::time::sleep_until(deadline) => panic!("{} of {JOBS} delivered", stored.len()),
        };
        outcome.unwrap_or_else(|e| panic!("{job_id}: {e}"));
        assert!(stored.insert(job_id), "each job delivered once");
    }
    assert_eq!(stored, jobs);
    // Both kept looking; neither finds anything left, nor delivered more.
    assert_eq!(first.recover().await.unwrap(), 0);
    assert_eq!(second.recover().await.unwrap(), 0);
    assert!(first_delivered.try_recv().is_err() && second_delivered.try_recv().is_err());
    let (a, b) = (first.stats().recovered, second.stats().recovered);
    println!("recovered by the first replica: {a}, by the second: {b}");
    assert_eq!(a + b, JOBS as u64);
    assert_eq!(emulator.stats().charges.total, JOBS as u64);
    place.remove();
}

/// A job that ended without an image, its callback lost: recorded with its
/// reason, once, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_job_that_failed_is_recorded_with_its_reason() {
    let mut config = gives_up_soon();
    config.faults.failed_job_rate = 1.0;
    let (emulator, client) = emulator(config).await;
    let path = temp_journal("failed");
    let journal = Counted::open(&path);
    let submitted = submit(
        &submitter(&client, journal.shared(), secret(), CLOSED),
        "fails",
    )
    .await;
    callbacks_lost(&emulator, 1).await;
    let (service, _base, mut delivered) = serve(&client, journal.shared(), |b| {
        b.secret(secret())
            .recovery_grace(Duration::from_millis(100))
    })
    .await;
    let _recovery = service.spawn_recovery(Duration::from_millis(20));
    let (job_id, outcome) = deliveries(&mut delivered, 1, Duration::from_secs(30))
        .await
        .remove(0);
    assert_eq!(job_id, submitted.job_id);
    let entry = outcome.unwrap();
    let Stage::Failed {
        job_id: failed_job,
        reason,
        message,
    } = &entry.stage
    else {
        panic!("a failed job is recorded as failed: {entry:?}");
    };
    assert_eq!(failed_job.as_deref(), Some(submitted.job_id.as_str()));
    assert_eq!(*reason, FailureReason::JobFailed, "{message}");
    assert!(entry.done && entry.location().is_none());
    let recorded = journal.journal.get(&submitted.id).await.unwrap().unwrap();
    assert_eq!(recorded.stage, entry.stage);
    std::fs::remove_file(&path).ok();
}

/// The rotation scenario: jobs submitted with URLs signed by the old
/// secret; the service restarted with a new secret and the old one as
/// previous; the API's callbacks to the old URLs are delivered (by the
/// callbacks themselves, not the recovery), and new URLs use the new secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_signed_before_a_rotation_is_delivered_after_it() {
    const JOBS: usize = 3;
    let (emulator, client) = emulator(quiet()).await;
    let path = temp_journal("rotation");
    let rotated = CallbackSecret::new(NEW_SECRET)
        .unwrap()
        .with_previous(SECRET)
        .unwrap();
    let (service, base, mut delivered) = serve(&client, Counted::open(&path).shared(), |b| {
        b.secret(rotated)
    })
    .await;
    // Submitted before the rotation: signed with the old secret alone.
    let before = submitter(&client, Counted::open(&path).shared(), secret(), &base);
    let jobs: HashSet<String> = stream::iter(0..JOBS)
        .map(|i| {
            let before = before.clone();
            async move { submit(&before, &format!("in flight {i}")).await.job_id }
        })
        .buffer_unordered(JOBS)
        .collect()
        .await;
    let mut stored = HashSet::new();
    for (job_id, outcome) in deliveries(&mut delivered, JOBS, Duration::from_secs(30)).await {
        outcome.unwrap_or_else(|e| panic!("{job_id}: {e}"));
        assert!(stored.insert(job_id));
    }
    assert_eq!(stored, jobs, "3 of 3 stored across the rotation");
    let stats = service.stats();
    assert_eq!((stats.bad_signature, stats.recovered), (0, 0), "{stats:?}");
    assert_eq!(emulator.stats().webhooks.deliveries, JOBS as u64);

    // After it, new URLs are signed with the new secret: the old one alone
    // no longer verifies them.
    let after = service.submitter(&base).unwrap();
    let submitted = submit(&after, "after the rotation").await;
    let signed = submitted.callback_url.rsplit('/').next().unwrap();
    assert!(secret().verify(signed).is_err());
    assert!(
        CallbackSecret::new(NEW_SECRET)
            .unwrap()
            .verify(signed)
            .is_ok()
    );
    let (job_id, outcome) = deliveries(&mut delivered, 1, Duration::from_secs(30))
        .await
        .remove(0);
    assert_eq!(job_id, submitted.job_id);
    outcome.unwrap();
    std::fs::remove_file(&path).ok();
}

/// A submitter that never got the POST's answer (the API unreachable from
/// it) leaves its submission pending; the recovery sends it again with the
/// same Idempotency-Key, binds the nonce to the job, and stores the image:
/// paid once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_without_an_answer_is_sent_again_with_its_key() {
    let (emulator, client) = emulator(gives_up_soon()).await;
    let path = temp_journal("pending");
    let journal = Counted::open(&path);
    let unreachable = uncensored::Client::builder()
        .base_url("http://127.0.0.1:9/api")
        .api_key(uncensored_emulator::DEFAULT_KEY)
        .retry_policy(uncensored::RetryPolicy {
            max_attempts: 1,
            ..uncensored::RetryPolicy::default()
        })
        .build()
        .unwrap();
    let lost = submitter(&unreachable, journal.shared(), secret(), CLOSED)
        .submit(&uncensored::GenerateRequest::new("never answered").size(256, 256))
        .await;
    assert!(lost.is_err(), "the API cannot be reached");
    let pending = journal.journal.unfinished().await.unwrap();
    assert_eq!(pending.len(), 1);
    let entry = pending[0].clone();
    assert_eq!(entry.stage, Stage::Pending, "kept for the recovery");
    assert_eq!(emulator.stats().charges.total, 0);

    let (service, _base, mut delivered) = serve(&client, journal.shared(), |b| {
        b.secret(secret()).recovery_grace(Duration::ZERO)
    })
    .await;
    assert_eq!(service.recover().await.unwrap(), 1);
    let (job_id, outcome) = deliveries(&mut delivered, 1, Duration::from_secs(30))
        .await
        .remove(0);
    let stored = outcome.unwrap();
    assert!(stored.location().is_some(), "{stored:?}");
    let stats = emulator.stats();
    assert_eq!(stats.charges.total, 1);
    assert_eq!(
        stats.charges.by_idempotency_key.get(&entry.idempotency_key),
        Some(&1),
        "sent with the submission's own key"
    );
    let url = entry.request.callback().unwrap();
    let nonce = secret()
        .verify_path(url.trim_start_matches(CLOSED))
        .unwrap();
    assert_eq!(
        journal
            .journal
            .callback_nonce_job(nonce.as_str())
            .await
            .unwrap()
            .as_deref(),
        Some(job_id.as_str()),
        "the nonce is bound to the job the resubmission got"
    );
    std::fs::remove_file(&path).ok();
}
