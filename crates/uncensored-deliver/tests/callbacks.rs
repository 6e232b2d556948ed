//! The callback service against the emulator, whose async jobs call it back
//! on loopback: forged callbacks cost no API read and no journal access, a
//! nonce names the one job it was submitted for (a forged job id under it is
//! refused without a read, across restarts), duplicates share one read, and
//! under injected faults every job is paid once and stored once.
#![cfg(all(feature = "sqlite", feature = "callbacks", feature = "testing"))]

mod callback_support;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use callback_support::*;
use futures_util::{StreamExt as _, stream};
use uncensored::callback::{CallbackNonce, CallbackSecret};
use uncensored_deliver::Deliverer;
use uncensored_deliver::callbacks::{CallbackService, CallbackServiceError};
use uncensored_deliver::journal::{CallbackNonces as _, SqliteJournal};
use uncensored_deliver::storage::StorageUrl;
use uncensored_emulator::Config;

/// The acceptance test: 12 real async jobs, whose callbacks the
/// emulator sends to the service on loopback, are all stored while at least
/// 3,000 forged callbacks arrive at the same time; the forged ones cost no
/// read of the API (the emulator counts one GET per real job, no more).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_callbacks_costs_no_read_and_starves_no_job() {
    const JOBS: usize = 12;
    const FORGED: usize = 3_000;
    let started = Instant::now();
    let deadline = Duration::from_secs(30);
    let (emulator, client) = emulator(quiet()).await;
    let path = temp_journal("flood");
    let journal = Counted::open(&path);
    let (service, base, mut delivered) =
        serve(&client, journal.shared(), |b| b.secret(secret())).await;
    let secret = secret();

    // The flood: 64 senders until at least 3,000 forgeries are answered and
    // every real job is stored, so that the real callbacks arrive within it.
    let stored = Arc::new(AtomicUsize::new(0));
    let forged_sent = Arc::new(AtomicUsize::new(0));
    let known_nonce = secret.callback_url(&base).unwrap().nonce;
    let http = reqwest::Client::new();
    let flood: Vec<_> = (0..64)
        .map(|worker| {
            let (http, base, stored, sent) = (
                http.clone(),
                base.clone(),
                stored.clone(),
                forged_sent.clone(),
            );
            let known_nonce = known_nonce.clone();
            tokio::spawn(async move {
                let mut statuses: BTreeMap<(&'static str, u16), u64> = BTreeMap::new();
                loop {
                    let n = sent.fetch_add(1, Ordering::SeqCst);
                    if n >= FORGED && stored.load(Ordering::SeqCst) >= JOBS {
                        break;
                    }
                    let job_id = uuid::Uuid::new_v4().to_string();
                    let (kind, url) = match (n + worker) % 5 {
                        // Random nonce and tag of the right shape.
                        0 | 1 => (
                            "random tag",
                            format!("{base}/callback/{}.{}", random_hex(16), random_hex(32)),
                        ),
                        // A nonce the service did make, with a guessed tag.
                        2 => (
                            "known nonce, guessed tag",
                            format!("{base}/callback/{known_nonce}.{}", random_hex(32)),
                        ),
                        // Not even the shape of a signed URL.
                        3 => (
                            "garbage path",
                            format!("{base}/callback/{}", random_hex(20)),
                        ),
                        // A valid-looking unsigned callback.
                        _ => ("unsigned", format!("{base}/callback")),
                    };
                    let status = post(&http, &url, &payload(&job_id)).await;
                    *statuses.entry((kind, status)).or_default() += 1;
                }
                statuses
            })
        })
        .collect();

    // The real jobs, each submitted with a signed URL of its own.
    let submitter = service.submitter(&base).unwrap();
    let jobs: HashSet<String> = stream::iter(0..JOBS)
        .map(|i| {
            let submitter = submitter.clone();
            async move { submit(&submitter, &format!("real {i}")).await.job_id }
        })
        .buffer_unordered(JOBS)
        .collect()
        .await;
    let mut reported = HashSet::new();
    while reported.len() < JOBS {
        let (job_id, outcome) =
            tokio::time::timeout(deadline.saturating_sub(started.elapsed()), delivered.recv())
                .await
                .expect("every real job is stored within 30 s")
                .unwrap();
        let entry = outcome.unwrap_or_else(|e| panic!("{job_id}: {e}"));
        assert!(
            entry.location().unwrap().starts_with("memory:"),
            "{entry:?}"
        );
        assert!(jobs.contains(&job_id), "{job_id} is one of ours");
        assert!(reported.insert(job_id), "each job delivered once");
        stored.fetch_add(1, Ordering::SeqCst);
    }
    let stored_after = started.elapsed();
    let mut statuses: BTreeMap<(&'static str, u16), u64> = BTreeMap::new();
    for worker in flood {
        for (key, count) in worker.await.unwrap() {
            *statuses.entry(key).or_default() += count;
        }
    }
    let forged: u64 = statuses.values().sum();
    let reads = job_reads(&emulator);
    let stats = service.stats();
    println!(
        "{JOBS} jobs stored in {stored_after:.2?} among {forged} forged callbacks; \
         GET job reads: {reads}; forged answers: {statuses:?}; service: {stats:?}"
    );

    assert!(forged >= FORGED as u64, "{forged}");
    for ((kind, status), count) in &statuses {
        let expected = match *kind {
            "random tag" | "known nonce, guessed tag" => 401,
            _ => 404,
        };
        assert_eq!(
            *status, expected,
            "{count} {kind} callbacks answered {status}"
        );
    }
    assert_eq!(
        reads, JOBS as u64,
        "one confirming read per real job, none for the flood"
    );
    assert_eq!(stats.reads, JOBS as u64);
    assert_eq!(stats.confirmed, JOBS as u64);
    let signed_forgeries: u64 = statuses
        .iter()
        .filter(|((kind, _), _)| *kind != "unsigned")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(stats.bad_signature, signed_forgeries);
    let emulator_stats = emulator.stats();
    assert_eq!(emulator_stats.charges.total, JOBS as u64);
    assert_eq!(emulator_stats.webhooks.deliveries, JOBS as u64);
    // The journal holds the 12 jobs and their 12 nonces, nothing of the flood.
    assert_eq!(journal.counts().await.unwrap(), (JOBS as u64, JOBS as u64));
    std::fs::remove_file(&path).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tag_is_refused_without_a_read_or_any_journal_access() {
    let (emulator, client) = emulator(quiet()).await;
    let path = temp_journal("bad-tag");
    let journal = Counted::open(&path);
    let (service, base, mut delivered) =
        serve(&client, journal.shared(), |b| b.secret(secret())).await;
    // A real job of ours, submitted, its callback going nowhere.
    let submitted = submit(
        &submitter(&client, journal.shared(), secret(), CLOSED),
        "bad tag",
    )
    .await;
    let job_id = submitted.job_id;
    client.wait(&job_id).await.unwrap();
    let reads_before = job_reads(&emulator);
    let journal_before = journal.calls();

    let signed = format!(
        "{base}{}",
        submitted.callback_url.trim_start_matches(CLOSED)
    );
    let (prefix, tag) = signed.rsplit_once('.').unwrap();
    let other = CallbackSecret::new("another secret, just as long as the first")
        .unwrap()
        .callback_url(&base)
        .unwrap()
        .url;
    let http = reqwest::Client::new();
    let body = payload(&job_id);
    let flipped_tag = format!(
        "{prefix}.{}{}",
        if tag.starts_with('0') { '1' } else { '0' },
        &tag[1..]
    );
    assert_eq!(post(&http, &flipped_tag, &body).await, 401);
    assert_eq!(
        post(&http, &other, &body).await,
        401,
        "another secret's URL"
    );
    assert_eq!(
        post(&http, &format!("{prefix}.{}", &tag[..8]), &body).await,
        404
    );
    assert_eq!(post(&http, &format!("{base}/callback"), &body).await, 404);
    // The same through the framework-free entry points.
    let headers = axum::http::HeaderMap::new();
    let bytes = body.to_string().into_bytes();
    let (status, _) = service
        .handle_signed(flipped_tag.rsplit('/').next().unwrap(), &headers, &bytes)
        .await;
    assert_eq!(status, 401);
    let (status, _) = service.handle_unsigned(&headers, &bytes).await;
    assert_eq!(status, 404);

    assert_eq!(job_reads(&emulator), reads_before, "no API read");
    assert_eq!(journal.calls(), journal_before, "no journal access at all");
    assert_eq!(service.stats().bad_signature, 5);
    // The genuine URL still works, once.
    assert_eq!(post(&http, &signed, &body).await, 200);
    let (delivered_job, outcome) = delivered.recv().await.unwrap();
    assert_eq!(delivered_job, job_id);
    outcome.unwrap();
    assert_eq!(job_reads(&emulator), reads_before + 1);
    std::fs::remove_file(&path).ok();
}

/// The hole, closed: a nonce is bound to its job at submission, so
/// whoever holds the URL cannot bind it to another job first, nor spend a
/// read per invented job id; the binding holds after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_names_one_job_even_after_a_restart() {
    let (emulator, client) = emulator(quiet()).await;
    let path = temp_journal("nonce");
    let http = reqwest::Client::new();

    let (nonce, path_of_a, job_a, job_b) = {
        let journal = Counted::open(&path);
        let (service, base, mut delivered) =
            serve(&client, journal.shared(), |b| b.secret(secret())).await;
        // Two real jobs of ours, submitted; their own callbacks go nowhere.
        let submitter = submitter(&client, journal.shared(), secret(), CLOSED);
        let a = submit(&submitter, "job a").await;
        let b = submit(&submitter, "job b").await;
        client.wait(&a.job_id).await.unwrap();
        client.wait(&b.job_id).await.unwrap();
        let path_of_a = a.callback_url.trim_start_matches(CLOSED).to_string();
        let url = format!("{base}{path_of_a}");
        let before = job_reads(&emulator);

        // Before any callback: another real job, or a forged job id, under
        // A's nonce: refused, without a read.
        assert_eq!(post(&http, &url, &payload(&b.job_id)).await, 409);
        assert_eq!(post(&http, &url, &payload("forged-job-id")).await, 409);
        // A URL the secret signed that no submission made: refused too.
        let unsubmitted = secret().callback_url(&base).unwrap().url;
        assert_eq!(post(&http, &unsubmitted, &payload(&a.job_id)).await, 404);
        assert_eq!(job_reads(&emulator), before, "refused without a read");

        // A's real callback is confirmed with one read and delivered.
        assert_eq!(post(&http, &url, &payload(&a.job_id)).await, 200);
        let (delivered_job, outcome) = delivered.recv().await.unwrap();
        assert_eq!(delivered_job, a.job_id);
        outcome.unwrap();
        assert_eq!(job_reads(&emulator), before + 1, "confirmed with a read");
        assert_eq!(post(&http, &url, &payload(&b.job_id)).await, 409);
        assert_eq!(job_reads(&emulator), before + 1);
        let stats = service.stats();
        assert_eq!((stats.wrong_job, stats.unknown_nonces), (3, 1), "{stats:?}");
        (a.nonce, path_of_a, a.job_id, b.job_id)
    };
    assert_eq!(
        SqliteJournal::open(&path)
            .unwrap()
            .callback_nonce_job(nonce.as_str())
            .await
            .unwrap()
            .as_deref(),
        Some(job_a.as_str())
    );

    // A new service (another port) on the same journal: the binding holds.
    let journal = Counted::open(&path);
    let (service, base, mut delivered) =
        serve(&client, journal.shared(), |b| b.secret(secret())).await;
    let before = job_reads(&emulator);
    assert_eq!(
        post(&http, &format!("{base}{path_of_a}"), &payload(&job_b)).await,
        409
    );
    assert_eq!(
        post(&http, &format!("{base}{path_of_a}"), &payload(&job_a)).await,
        200,
        "the job the nonce names is acknowledged"
    );
    assert_eq!(job_reads(&emulator), before, "no read after the restart");
    let stats = service.stats();
    assert_eq!((stats.wrong_job, stats.already_confirmed), (1, 1));
    assert!(delivered.try_recv().is_err(), "and no second delivery");
    check_nonce(&nonce);
    std::fs::remove_file(&path).ok();
}

fn check_nonce(nonce: &CallbackNonce) {
    assert_eq!(nonce.as_str().len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_share_one_read() {
    const DUPLICATES: usize = 50;
    let mut config = quiet();
    // Every API answer takes 300 ms, so the duplicates arrive while the
    // first read is in flight (the count of reads holds either way).
    config.faults.latency_ms = 300;
    let (emulator, client) = emulator(config).await;
    let path = temp_journal("duplicates");
    let journal = Counted::open(&path);
    let (service, base, mut delivered) =
        serve(&client, journal.shared(), |b| b.secret(secret())).await;
    let submitted = submit(
        &submitter(&client, journal.shared(), secret(), CLOSED),
        "duplicated",
    )
    .await;
    let job_id = submitted.job_id;
    client.wait(&job_id).await.unwrap();

    let url = format!(
        "{base}{}",
        submitted.callback_url.trim_start_matches(CLOSED)
    );
    let before = job_reads(&emulator);
    let http = reqwest::Client::new();
    let body = payload(&job_id);
    let statuses: Vec<u16> = stream::iter(0..DUPLICATES)
        .map(|_| post(&http, &url, &body))
        .buffer_unordered(DUPLICATES)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let (delivered_job, outcome) = delivered.recv().await.unwrap();
    assert_eq!(delivered_job, job_id);
    outcome.unwrap();
    assert_eq!(job_reads(&emulator), before + 1, "one read for them all");
    let stats = service.stats();
    println!("{stats:?}");
    assert_eq!(stats.reads, 1);
    assert_eq!(
        stats.coalesced + stats.already_confirmed,
        DUPLICATES as u64 - 1
    );
    // Delivered once: one entry, and no second report.
    assert_eq!(journal.counts().await.unwrap(), (1, 1));
    assert!(delivered.try_recv().is_err());
    std::fs::remove_file(&path).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_callbacks_are_served_only_when_accepted() {
    let (emulator, client) = emulator(quiet()).await;
    let storage = Arc::new(StorageUrl::parse("memory://").unwrap().open().unwrap());
    let journal = Arc::new(SqliteJournal::in_memory().unwrap());
    let deliverer = Deliverer::new(client.clone(), storage, journal);
    let refused = CallbackService::builder(client.clone(), deliverer).build();
    assert!(matches!(refused, Err(CallbackServiceError::NoSecret)));
    let message = refused.unwrap_err().to_string();
    assert!(message.contains("UNCENSORED_CALLBACK_SECRET"), "{message}");

    let path = temp_journal("unsigned");
    let (service, base, mut delivered) = serve(&client, Counted::open(&path).shared(), |b| {
        b.accept_unsigned(true)
    })
    .await;
    let url = format!("{base}/callback");
    // The emulator's own callback, to the plain URL, is confirmed and delivered.
    let job_id = queue(&client, "unsigned", &url).await;
    let (delivered_job, outcome) = delivered.recv().await.unwrap();
    assert_eq!(delivered_job, job_id);
    outcome.unwrap();
    let http = reqwest::Client::new();
    assert_eq!(
        post(&http, &url, &payload("not-a-job-of-ours")).await,
        404,
        "a stranger's job is refused after a read"
    );
    let reads = job_reads(&emulator);
    assert_eq!(
        post(&http, &url, &payload(&job_id)).await,
        200,
        "a duplicate is acknowledged"
    );
    assert_eq!(job_reads(&emulator), reads, "without a read");
    // No secret: no signed route.
    let signed = secret().callback_url(&base).unwrap().url;
    assert_eq!(post(&http, &signed, &payload(&job_id)).await, 404);
    let stats = service.stats();
    assert_eq!((stats.reads, stats.unknown_jobs), (2, 1), "{stats:?}");
    std::fs::remove_file(&path).ok();
}

#[tokio::test]
async fn the_secret_never_shows_in_debug_output() {
    let (_emulator, client) = emulator(quiet()).await;
    let storage = Arc::new(StorageUrl::parse("memory://").unwrap().open().unwrap());
    let journal = Arc::new(SqliteJournal::in_memory().unwrap());
    let builder = CallbackService::builder(
        client.clone(),
        Deliverer::new(client.clone(), storage, journal),
    )
    .secret(secret());
    let shown = format!("{builder:?}");
    let service = builder.build().unwrap();
    let shown = format!("{shown} {service:?} {:?}", secret());
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
}

/// The guarantee of the SDK's fault test, through callbacks: with 5xx and
/// 429 answers, truncated downloads and webhooks delivered twice, each of
/// 100 async jobs is charged once and stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_under_faults_pay_and_store_each_job_once() {
    const JOBS: usize = 100;
    let mut config = Config {
        seed: 7,
        time_scale: 0.001,
        rate_limit_rpm: 1_000_000,
        ..Config::default()
    };
    config.faults.fail_rate = 0.2;
    config.faults.throttle_rate = 0.125;
    config.faults.truncate_rate = 0.3;
    config.faults.duplicate_webhook_rate = 0.3;
    config.webhooks.initial_backoff_ms = 10;
    let (emulator, client) = emulator(config).await;
    let path = temp_journal("faults");
    let journal = Counted::open(&path);
    // A callback that comes before its submission's answer is recorded is
    // refused (503); should the API give up on it, the recovery finds it.
    let (service, base, mut delivered) = serve(&client, journal.shared(), |b| {
        b.secret(secret()).recovery_grace(Duration::from_secs(1))
    })
    .await;
    let _recovery = service.spawn_recovery(Duration::from_millis(100));
    let submitter = service.submitter(&base).unwrap();
    let queued: HashSet<String> = stream::iter(0..JOBS)
        .map(|i| {
            let submitter = submitter.clone();
            async move { submit(&submitter, &format!("async {i}")).await.job_id }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut stored = HashSet::new();
    while stored.len() < JOBS {
        let (job_id, outcome) = tokio::time::timeout(Duration::from_secs(60), delivered.recv())
            .await
            .expect("every job is delivered within a minute")
            .unwrap();
        outcome.unwrap_or_else(|e| panic!("{job_id}: {e}"));
        assert!(stored.insert(job_id), "each job delivered once");
    }
    assert_eq!(stored, queued);
    let stats = emulator.stats();
    assert_eq!(
        stats.charges.total, JOBS as u64,
        "exactly one charge per generation"
    );
    assert!(stats.charges.by_idempotency_key.values().all(|n| *n == 1));
    let faults = &stats.faults;
    assert!(
        faults.server_errors > 0 && faults.throttled > 0,
        "{faults:?}"
    );
    assert!(
        faults.truncated > 0 && faults.duplicate_webhooks > 0,
        "{faults:?}"
    );
    assert_eq!(journal.counts().await.unwrap(), (JOBS as u64, JOBS as u64));
    println!("{:?}", service.stats());
    std::fs::remove_file(&path).ok();
}
