//! The PostgreSQL journal and pacer on a real PostgreSQL server
//! (`uncensored_test_servers::postgres`): the journal conformance suite
//! (`uncensored_deliver::testing::journal`: entries, batches known by their
//! lines' content, claims, leases, fencing, stops, callback nonces),
//! migrations that run once however many workers start together, a batch of
//! many chunks loaded once, reconnection after a restart, errors that say
//! what is wrong without the password, and one rate limit shared by several
//! pacers.
//!
//! The tests share one server (started by the first, stopped when the last
//! running one ends), each on a fresh database of its own; the restart test
//! has a server of its own.

#![cfg(all(feature = "postgres", feature = "testing"))]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::Utc;
use futures_util::future::join_all;
use tokio::time::Instant;
use uncensored::{GenerateRequest, Pace as _, RateLimit, pace_interval};
use uncensored_deliver::PostgresPacer;
use uncensored_deliver::journal::{
    Batches as _, Entries as _, Entry, Journal, JournalError, LineIds, PostgresJournal, Stage,
};
use uncensored_deliver::worker;
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
        [
            ["1", "1"],
            ["2", "1"],
            ["3", "1"],
            ["4", "1"],
            ["5", "1"],
            ["6", "1"]
        ]
    );
    assert_eq!(
        rows(
            &url,
            "SELECT indexdef FROM pg_indexes
             WHERE indexname = 'uncensored_callback_nonces_job'"
        )
        .await,
        [[
            "CREATE INDEX uncensored_callback_nonces_job ON public.uncensored_callback_nonces USING btree (job_id, nonce)"
        ]],
        "a job finds its nonce by an index"
    );
    assert_eq!(
        rows(
            &url,
            "SELECT COUNT(*)::text FROM pg_tables WHERE tablename LIKE 'uncensored\\_%'"
        )
        .await,
        [["5"]],
        "entries, callback nonces, batches, pacing and migrations"
    );
}

// ------------------------------------------------------------ conformance

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_postgres_journal_passes_the_conformance_suite() {
    let Some(server) = server() else { return };
    let url = database(&server, "conformance");
    uncensored_deliver::testing::journal::conformance(|| {
        let url = url.clone();
        async move { Arc::new(connect(&url).await) as Arc<dyn Journal> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_of_many_chunks_loads_whole_and_once() {
    let Some(server) = server() else { return };
    let url = database(&server, "chunks");
    let (one, two) = (connect(&url).await, connect(&url).await);
    const LINES: u64 = 12_345;
    let lines = || (1..=LINES).map(|n| Ok((n, GenerateRequest::new(format!("prompt {n}")))));
    let mut ids = LineIds::new("big.txt");
    for line in lines() {
        ids.next(&line.unwrap().1);
    }
    let file = ids.file();
    let (a, b) = tokio::join!(
        worker::load(&one, &file, lines()),
        worker::load(&two, &file, lines())
    );
    assert_eq!(
        a.unwrap().added + b.unwrap().added,
        LINES,
        "every line written once"
    );
    let status = one.status("big.txt").await.unwrap();
    assert_eq!(status.left, LINES, "{status:?}");
    // A file that changed while it was read loads nothing.
    let mut edited = LineIds::new("big.txt");
    edited.next(&GenerateRequest::new("a new first line"));
    for line in lines() {
        edited.next(&line.unwrap().1);
    }
    let changed = worker::load(&one, &edited.file(), lines()).await;
    assert!(
        matches!(changed, Err(JournalError::BatchFileChanged { ref batch }) if batch == "big.txt"),
        "the lines read differ from the file: {changed:?}"
    );
    assert_eq!(one.counts().await.unwrap().0, LINES, "nothing was added");
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
