//! The PostgreSQL journal and pacer on a real PostgreSQL server
//! (`uncensored_test_servers::postgres`): migrations that run once however
//! many workers start together, entries, batches loaded once, claims that
//! never hand one entry to two workers, leases that expire and renew,
//! callback nonces, reconnection after a restart, errors that say what is
//! wrong without the password, and one rate limit shared by several pacers.
//!
//! The tests share one server (started by the first, stopped when the last
//! running one ends), each on a fresh database of its own; the restart test
//! has a server of its own.

#![cfg(feature = "postgres")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::Utc;
use futures_util::future::join_all;
use tokio::time::Instant;
use uncensored::{FailureReason, GenerateRequest, Pace as _, RateLimit, pace_interval};
use uncensored_deliver::PostgresPacer;
use uncensored_deliver::journal::{
    BatchManifest, BatchStatus, Entry, Journal as _, JournalError, PostgresJournal, Stage,
};
use uncensored_test_servers::Postgres;

/// The server the running tests share, started when none is running.
fn server() -> Option<Arc<Postgres>> {
    static SHARED: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(server) = shared.upgrade() {
        return Some(server);
    }
    let server = Arc::new(uncensored_test_servers::postgres()?);
    *shared = Arc::downgrade(&server);
    Some(server)
}

/// A name no other database of this process has, after the test's.
fn unique(test: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{test}_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A fresh database on `server`, named after the test; its URL.
fn database(server: &Postgres, test: &str) -> String {
    server.create_database(&unique(test))
}

async fn connect(url: &str) -> PostgresJournal {
    PostgresJournal::connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect the journal: {e}"))
}

fn entry(id: &str, stage: Stage, done: bool) -> Entry {
    Entry {
        id: id.into(),
        request: GenerateRequest::new(format!("prompt of {id}")).size(256, 256),
        idempotency_key: format!("key-{id}"),
        stage,
        notified: BTreeSet::new(),
        done,
        updated_at: Utc::now(),
    }
}

fn ids(entries: &[Entry]) -> Vec<String> {
    entries.iter().map(|e| e.id.clone()).collect()
}

/// A batch of `lines` pending entries `line-0001`...
fn batch(name: &str, lines: usize) -> (BatchManifest, Vec<Entry>) {
    let entries: Vec<Entry> = (1..=lines)
        .map(|n| entry(&format!("line-{n:04}"), Stage::Pending, false))
        .collect();
    let manifest = BatchManifest {
        name: name.into(),
        line_ids: ids(&entries),
    };
    (manifest, entries)
}

/// Rows of `SELECT ...` as text, with a client of its own.
async fn rows(url: &str, sql: &str) -> Vec<Vec<String>> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let rows = client.query(sql, &[]).await.unwrap();
    drop(client);
    let _ = connection.await;
    rows.iter()
        .map(|row| (0..row.len()).map(|i| row.get::<_, String>(i)).collect())
        .collect()
}

// ------------------------------------------------------------- migrations

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_starting_together_migrate_once() {
    let Some(server) = server() else { return };
    let url = database(&server, "migrations");
    let journals = join_all((0..4).map(|_| PostgresJournal::connect(&url))).await;
    for journal in &journals {
        assert!(journal.is_ok(), "{:?}", journal.as_ref().unwrap_err());
    }
    // Later starts find the schema in place.
    connect(&url).await;
    let journal = connect(&url).await;
    assert_eq!(journal.counts().await.unwrap(), (0, 0));
    assert_eq!(
        rows(
            &url,
            "SELECT version::text, COUNT(*)::text FROM uncensored_migrations
             GROUP BY version ORDER BY version"
        )
        .await,
        [["1", "1"], ["2", "1"]]
    );
    assert_eq!(
        rows(
            &url,
            "SELECT COUNT(*)::text FROM pg_tables WHERE tablename LIKE 'uncensored\\_%'"
        )
        .await,
        [["5"]],
        "entries, callback nonces, batch, pacing and migrations"
    );
}

// ---------------------------------------------------------------- entries

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_are_kept_in_order_and_inserted_once() {
    let Some(server) = server() else { return };
    let journal = connect(&database(&server, "entries")).await;

    let stored = Entry {
        notified: ["slack".to_string(), "email".to_string()].into(),
        ..entry(
            "a",
            Stage::Stored {
                job_id: "job-a".into(),
                generation_time: Some(1.25),
                model: Some("model-dev".into()),
                name: "a.jpg".into(),
                location: "s3://bucket/a.jpg".into(),
                sha256: "ab".repeat(32),
                share_url: None,
            },
            false,
        )
    };
    journal
        .put(&entry("b", Stage::Pending, false))
        .await
        .unwrap();
    journal.put(&stored).await.unwrap();
    let failed = entry(
        "c",
        Stage::Failed {
            job_id: None,
            reason: FailureReason::Moderation,
            message: "refused".into(),
        },
        true,
    );
    journal.put(&failed).await.unwrap();
    let accepted = entry("b", Stage::Accepted { job_id: "k".into() }, false);
    journal.put(&accepted).await.unwrap();

    assert_eq!(journal.get("a").await.unwrap(), Some(stored.clone()));
    assert_eq!(journal.get("b").await.unwrap(), Some(accepted.clone()));
    assert_eq!(journal.get("c").await.unwrap(), Some(failed.clone()));
    assert_eq!(journal.get("nope").await.unwrap(), None);
    assert_eq!(
        ids(&journal.unfinished().await.unwrap()),
        ["b", "a"],
        "first written first; an update keeps its place"
    );
    assert_eq!(journal.counts().await.unwrap(), (3, 1));
    assert_eq!(
        ids(&journal.recent(2).await.unwrap()),
        ["b", "c"],
        "newest change first"
    );
    assert_eq!(ids(&journal.recent(10).await.unwrap()), ["b", "c", "a"]);

    // Insert-if-absent: an existing entry is left alone.
    assert!(
        !journal
            .insert(&entry("a", Stage::Pending, false))
            .await
            .unwrap()
    );
    assert_eq!(journal.get("a").await.unwrap(), Some(stored));
    assert!(
        journal
            .insert(&entry("d", Stage::Pending, false))
            .await
            .unwrap()
    );
    assert_eq!(journal.counts().await.unwrap(), (4, 1));

    // Eight writers race for one id: exactly one writes, and its entry stays.
    let racers: Vec<Entry> = (0..8)
        .map(|n| Entry {
            idempotency_key: format!("racer-{n}"),
            ..entry("race", Stage::Pending, false)
        })
        .collect();
    let written = join_all(racers.iter().map(|e| journal.insert(e))).await;
    let winners: Vec<&Entry> = racers
        .iter()
        .zip(&written)
        .filter(|(_, written)| *written.as_ref().unwrap())
        .map(|(e, _)| e)
        .collect();
    assert_eq!(winners.len(), 1, "{written:?}");
    assert_eq!(
        journal.get("race").await.unwrap().as_ref(),
        Some(winners[0])
    );
}

// ---------------------------------------------------------------- batches

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_is_loaded_once_and_edits_are_refused() {
    let Some(server) = server() else { return };
    let journal = connect(&database(&server, "batches")).await;
    let (manifest, entries) = batch("prompts.jsonl", 5);

    assert_eq!(journal.batch().await.unwrap(), None);
    assert_eq!(journal.load_batch(&manifest, &entries).await.unwrap(), 5);
    assert_eq!(journal.batch().await.unwrap(), Some(manifest.clone()));
    assert_eq!(
        ids(&journal.unfinished().await.unwrap()),
        manifest.line_ids,
        "file order"
    );
    assert_eq!(
        journal.get("line-0003").await.unwrap(),
        Some(entries[2].clone())
    );
    assert_eq!(journal.load_batch(&manifest, &entries).await.unwrap(), 0);
    assert_eq!(journal.counts().await.unwrap(), (5, 0));

    let other = BatchManifest {
        name: "other.jsonl".into(),
        ..manifest.clone()
    };
    match journal.load_batch(&other, &entries).await {
        Err(JournalError::OtherBatch {
            journal: held,
            journal_lines: 5,
            file,
        }) => assert_eq!(
            (held.as_str(), file.as_str()),
            ("prompts.jsonl", "other.jsonl")
        ),
        outcome => panic!("another batch: {outcome:?}"),
    }

    let mut edited = manifest.clone();
    edited.line_ids[3] = "line-0004-edited".into();
    match journal.load_batch(&edited, &entries).await {
        Err(JournalError::EditedBatch { batch, line: 4 }) => assert_eq!(batch, "prompts.jsonl"),
        outcome => panic!("an edited line 4: {outcome:?}"),
    }
    let mut longer = manifest.clone();
    longer.line_ids.push("line-0006".into());
    match journal.load_batch(&longer, &entries).await {
        Err(JournalError::EditedBatch { line: 6, .. }) => {}
        outcome => panic!("an added line 6: {outcome:?}"),
    }
    assert_eq!(journal.counts().await.unwrap(), (5, 0), "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_loading_one_batch_together_write_it_once() {
    let Some(server) = server() else { return };
    let url = database(&server, "batch_race");
    let journals = join_all((0..4).map(|_| connect(&url))).await;
    let (manifest, entries) = batch("shared.jsonl", 120);
    let written: Vec<u64> = join_all(journals.iter().map(|j| j.load_batch(&manifest, &entries)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut sorted = written.clone();
    sorted.sort();
    assert_eq!(sorted, [0, 0, 0, 120], "{written:?}");
    assert_eq!(journals[0].counts().await.unwrap(), (120, 0));
}

// ------------------------------------------------------- claims and leases

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_take_every_entry_exactly_once() {
    let Some(server) = server() else { return };
    let url = database(&server, "claims");
    let (manifest, entries) = batch("big.jsonl", 300);
    assert_eq!(
        connect(&url)
            .await
            .load_batch(&manifest, &entries)
            .await
            .unwrap(),
        300
    );
    let journals = join_all((0..6).map(|_| connect(&url))).await;
    let claimed: Vec<Vec<String>> =
        join_all(journals.iter().enumerate().map(|(n, journal)| async move {
            let holder = format!("worker-{n}");
            let mut mine = Vec::new();
            loop {
                let batch = journal
                    .claim(&holder, 10, Duration::from_secs(60))
                    .await
                    .unwrap();
                if batch.is_empty() {
                    return mine;
                }
                assert!(batch.len() <= 10);
                let seqs = ids(&batch);
                let mut sorted = seqs.clone();
                sorted.sort();
                assert_eq!(seqs, sorted, "oldest first");
                for mut entry in batch {
                    assert!(!entry.done);
                    entry.done = true;
                    journal.put(&entry).await.unwrap();
                    mine.push(entry.id);
                }
            }
        }))
        .await;
    let mut all: Vec<String> = claimed.iter().flatten().cloned().collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total, "an entry was claimed twice");
    assert_eq!(all, manifest.line_ids, "every entry, once");
    let status = journals[0].status().await.unwrap();
    assert_eq!(
        status,
        BatchStatus {
            done: 300,
            ..BatchStatus::default()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_hold_expire_renew_and_release() {
    let Some(server) = server() else { return };
    let journal = connect(&database(&server, "leases")).await;
    let (manifest, entries) = batch("leases.jsonl", 5);
    journal.load_batch(&manifest, &entries).await.unwrap();
    let short = Duration::from_millis(300);
    let long = Duration::from_secs(60);

    // A holds line 1; B cannot take it until the lease expires.
    let held = journal.claim_entry("line-0001", "A", short).await.unwrap();
    assert_eq!(held.map(|e| e.id).as_deref(), Some("line-0001"));
    assert_eq!(
        journal.claim_entry("line-0001", "B", long).await.unwrap(),
        None
    );
    assert_eq!(journal.next_expiry("A").await.unwrap(), None, "A's own");
    let expiry = journal.next_expiry("B").await.unwrap().expect("A's lease");
    assert!(expiry <= short, "{expiry:?}");
    while let Some(left) = journal.next_expiry("B").await.unwrap() {
        tokio::time::sleep(left).await;
    }
    let taken = journal.claim_entry("line-0001", "B", long).await.unwrap();
    assert_eq!(taken.map(|e| e.id).as_deref(), Some("line-0001"));
    assert_eq!(
        journal.claim_entry("line-0001", "A", long).await.unwrap(),
        None,
        "B holds it now"
    );
    assert_eq!(
        journal
            .renew("A", &["line-0001".into()], long)
            .await
            .unwrap(),
        0,
        "A lost it"
    );

    // A renews line 2 past its first lease: nobody else takes it.
    assert!(
        journal
            .claim_entry("line-0002", "A", short)
            .await
            .unwrap()
            .is_some()
    );
    let first_lease = journal.next_expiry("C").await.unwrap().expect("A's lease");
    let renewed = journal
        .renew(
            "A",
            &["line-0002".into(), "line-0003".into(), "nope".into()],
            long,
        )
        .await
        .unwrap();
    assert_eq!(renewed, 1, "A holds line 2 only");
    tokio::time::sleep(first_lease).await;
    assert_eq!(
        journal.claim_entry("line-0002", "C", long).await.unwrap(),
        None,
        "the renewed lease holds"
    );
    // B's lease on line 1 expires first now (A's runs for a minute).
    assert!(journal.next_expiry("C").await.unwrap().unwrap() > Duration::from_secs(50));

    // Done and failed entries; one left nobody holds.
    let mut done = entries[3].clone();
    done.done = true;
    journal.put(&done).await.unwrap();
    let failed = Entry {
        stage: Stage::Failed {
            job_id: Some("job-5".into()),
            reason: FailureReason::Moderation,
            message: "refused".into(),
        },
        done: true,
        ..entries[4].clone()
    };
    journal.put(&failed).await.unwrap();
    assert_eq!(
        journal.status().await.unwrap(),
        BatchStatus {
            done: 1,
            failed: 1,
            in_flight: BTreeMap::from([("A".into(), 1), ("B".into(), 1)]),
            left: 1,
        }
    );
    assert_eq!(
        journal
            .renew("A", &["line-0004".into()], long)
            .await
            .unwrap(),
        0,
        "a done entry is held by nobody"
    );
    assert_eq!(
        ids(&journal.claim("C", 10, long).await.unwrap()),
        ["line-0003"],
        "only the free, unfinished entry"
    );

    // Releasing frees one entry, or all of a holder's.
    journal.release("A", Some("line-0002")).await.unwrap();
    assert!(
        journal
            .claim_entry("line-0002", "B", long)
            .await
            .unwrap()
            .is_some()
    );
    journal.release("B", None).await.unwrap();
    let status = journal.status().await.unwrap();
    assert_eq!(status.in_flight, BTreeMap::from([("C".into(), 1)]));
    assert_eq!(status.left, 2);
    assert_eq!(
        ids(&journal.claim("D", 10, long).await.unwrap()),
        ["line-0001", "line-0002"]
    );
}

// --------------------------------------------------------- callback nonces

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_callback_nonce_binds_one_job() {
    let Some(server) = server() else { return };
    let url = database(&server, "nonces");
    let journal = connect(&url).await;
    assert_eq!(journal.callback_nonce_job("n1").await.unwrap(), None);
    assert_eq!(
        journal.bind_callback_nonce("n1", "job-a").await.unwrap(),
        "job-a"
    );
    assert_eq!(
        journal.bind_callback_nonce("n1", "job-b").await.unwrap(),
        "job-a",
        "the first binding wins"
    );
    assert_eq!(
        journal.callback_nonce_job("n1").await.unwrap().as_deref(),
        Some("job-a")
    );

    let journals = join_all((0..4).map(|_| connect(&url))).await;
    let bound: Vec<String> = join_all((0..16).map(|n| {
        journals[n % 4].bind_callback_nonce("n2", ["job-w", "job-x", "job-y", "job-z"][n % 4])
    }))
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    let winner = journal.callback_nonce_job("n2").await.unwrap().unwrap();
    assert!(bound.iter().all(|job| *job == winner), "{bound:?}");
    assert_eq!(
        journal.counts().await.unwrap(),
        (0, 0),
        "nonces are not entries"
    );
}

// -------------------------------------------------------------- reconnect

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_reconnects_after_a_restart() {
    // A server of its own: the others' connections are not cut.
    let Some(server) = uncensored_test_servers::postgres() else {
        return;
    };
    let journal = connect(&server.create_database("reconnect")).await;
    journal
        .put(&entry("before", Stage::Pending, false))
        .await
        .unwrap();
    tokio::task::block_in_place(|| server.restart());
    journal
        .put(&entry("after", Stage::Pending, false))
        .await
        .unwrap();
    assert!(journal.get("before").await.unwrap().is_some());

    // A call made while the server is down completes once it is back.
    tokio::task::block_in_place(|| server.stop());
    let waiting = tokio::spawn({
        let journal = journal.clone();
        async move { journal.put(&entry("during", Stage::Pending, false)).await }
    });
    tokio::task::block_in_place(|| server.start());
    waiting.await.unwrap().unwrap();
    assert_eq!(journal.counts().await.unwrap(), (3, 0));
}

// ----------------------------------------------------------------- errors

#[tokio::test]
async fn nothing_listening_is_unavailable_and_names_where() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres:hunter2-secret@127.0.0.1:{port}/journal");
    match PostgresJournal::connect(&url).await {
        Err(JournalError::Unavailable(text)) => {
            assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
            assert!(!text.contains("hunter2-secret"), "{text}");
        }
        outcome => panic!("nothing listens: {outcome:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_is_reported_without_it() {
    let Some(server) = server() else { return };
    let name = unique("auth");
    server.create_database(&name);
    let role = format!("{name}_worker");
    let url = server
        .with_password(&role, "right-Pa55word")
        .replace("/postgres", &format!("/{name}"));
    server.execute(
        "postgres",
        &format!("ALTER DATABASE {name} OWNER TO {role}"),
    );
    // The right password connects (and may migrate its own database).
    connect(&url).await;

    let secret = "wrong-Pa55word-XYZ";
    let wrong = url.replace("right-Pa55word", secret);
    let error = PostgresJournal::connect(&wrong).await.unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(secret), "{shown}");
    assert!(shown.contains("password authentication failed"), "{shown}");
    assert!(shown.contains(&role), "names the user: {shown}");
}

#[tokio::test]
async fn a_missing_database_is_named() {
    let Some(server) = server() else { return };
    let url = server.database_url("no_such_journal");
    let error = PostgresJournal::connect(&url).await.unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("no_such_journal") && text.contains("does not exist"),
        "{text}"
    );
}

// ------------------------------------------------------------------ pacer

/// A reading of a window of `limit` with `remaining` left that resets
/// `seconds` from now.
fn rate(limit: u32, remaining: u32, seconds: i64) -> RateLimit {
    RateLimit {
        limit,
        remaining,
        reset: Utc::now() + chrono::Duration::seconds(seconds),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pacers_sharing_a_key_spend_one_window_then_wait_for_its_reset() {
    let Some(server) = server() else { return };
    let url = database(&server, "pacer_window");
    let journals = join_all((0..2).map(|_| connect(&url))).await;
    let pacers: Vec<Arc<PostgresPacer>> = journals
        .iter()
        .map(|journal| Arc::new(PostgresPacer::new(journal, "key-id")))
        .collect();
    let window = rate(10, 6, 5);
    pacers[0].acquire().await; // the probe, counted in the 4 used
    for pacer in &pacers {
        pacer.observe(&window).await;
    }
    // 8 requests, 4 through each pacer: 6 are left in the window.
    let (sender, mut started) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..8 {
        let (pacer, sender) = (pacers[i % 2].clone(), sender.clone());
        tokio::spawn(async move {
            pacer.acquire().await;
            sender.send(Utc::now()).unwrap();
        });
    }
    drop(sender);
    let mut times = Vec::new();
    while let Some(at) = tokio::time::timeout(Duration::from_secs(30), started.recv())
        .await
        .expect("every request goes within a window")
    {
        times.push(at);
    }
    let before = times.iter().filter(|at| **at < window.reset).count();
    assert_eq!(before, 6, "{times:?} against a reset at {}", window.reset);
    assert_eq!(times.len(), 8);
    // The seventh began the next window; 8 are left in it, and nobody has
    // answered in it yet.
    let row = rows(
        &url,
        "SELECT window_remaining::text, (window_reset IS NULL)::text,
                (window_previous IS NOT NULL)::text
         FROM uncensored_pacing",
    )
    .await;
    assert_eq!(row, [["8", "true", "true"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_lower_the_shared_window_and_late_ones_change_nothing() {
    let Some(server) = server() else { return };
    let url = database(&server, "pacer_answers");
    let (one, other) = (connect(&url).await, connect(&url).await);
    let (first, second) = (
        PostgresPacer::new(&one, "key-id"),
        PostgresPacer::new(&other, "key-id"),
    );
    let window = rate(100, 50, 30);
    first.acquire().await;
    first.observe(&window).await;
    let left =
        || async { rows(&url, "SELECT window_remaining::text FROM uncensored_pacing").await };
    assert_eq!(left().await, [["50"]]);
    second.acquire().await;
    first.acquire().await;
    assert_eq!(left().await, [["48"]]);
    // Another client of the key spent most of it.
    second
        .observe(&RateLimit {
            remaining: 3,
            ..window
        })
        .await;
    assert_eq!(left().await, [["3"]]);
    // An answer that says more is left lowers nothing.
    first
        .observe(&RateLimit {
            remaining: 40,
            ..window
        })
        .await;
    assert_eq!(left().await, [["3"]]);
    // Nor does a late answer of an earlier window.
    let earlier = RateLimit {
        remaining: 99,
        reset: window.reset - chrono::Duration::seconds(60),
        ..window
    };
    second.observe(&earlier).await;
    assert_eq!(left().await, [["3"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pacers_sharing_a_key_space_its_requests_when_no_window_can_be_followed() {
    let Some(server) = server() else { return };
    let url = database(&server, "pacer");
    let journals = join_all((0..3).map(|_| connect(&url))).await;
    let pacers: Vec<PostgresPacer> = journals
        .iter()
        .map(|journal| PostgresPacer::new(journal, "key-id"))
        .collect();
    // A reset already past by this clock: no window to follow.
    for pacer in &pacers {
        pacer.observe(&rate(600, 500, -30)).await;
    }
    let started = Instant::now();
    join_all(pacers.iter().map(|pacer| async move {
        for _ in 0..10 {
            pacer.acquire().await;
        }
    }))
    .await;
    let elapsed = started.elapsed();
    // 30 slots, one interval apart: the last is 29 intervals after the first.
    let spaced = pace_interval(600) * 29;
    assert!(
        elapsed + Duration::from_millis(5) >= spaced,
        "30 slots in {elapsed:?}, under {spaced:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_seen_by_one_pacer_pauses_the_others() {
    let Some(server) = server() else { return };
    let url = database(&server, "pacer_429");
    let (one, other) = (connect(&url).await, connect(&url).await);
    let (first, second) = (
        PostgresPacer::new(&one, "key-id"),
        PostgresPacer::new(&other, "key-id"),
    );
    first.observe(&rate(600, 500, 60)).await;
    second.observe(&rate(600, 500, 60)).await;
    first.acquire().await;
    second.acquire().await;

    first.refused(Duration::from_secs(1)).await;
    let asked = Instant::now();
    second.acquire().await;
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "the other pacer went after {waited:?}"
    );
}
