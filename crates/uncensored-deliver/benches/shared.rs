//! Shared batches, run by `cargo xtask bench shared` (and `cargo xtask
//! bench`), which writes BENCHMARKS.md. Prints JSON lines on stdout.
//!
//! - `postgres NAME...`: starts a PostgreSQL server of its own (as the tests
//!   do: `uncensored_test_servers::postgres`), creates the databases NAME...,
//!   prints `{"databases": {NAME: URL}}` and keeps the server until stdin
//!   closes; then stops it and removes its folder.
//! - `journal BASE_URL LINES LOAD_LINES DIR CONCURRENCY...`: the journal's cost
//!   per job. For each concurrency, a batch of LINES lines is loaded and run
//!   by one `Worker` (claims, leases, `Deliverer`, memory:// storage) against
//!   the emulator at BASE_URL (time scale 0, no ceiling), once with
//!   `SqliteJournal` (a file in DIR) and once with `PostgresJournal` (a fresh
//!   database), every journal call counted and timed. Then LOAD_LINES lines
//!   are loaded alone into PostgreSQL, for the sizes of the table and its
//!   indexes.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use uncensored::{CancellationToken, Client, GenerateRequest};
use uncensored_deliver::Deliverer;
use uncensored_deliver::journal::{
    BatchFile, Entries as _, Journal, JournalError, LineIds, PostgresJournal, SqliteJournal,
};
use uncensored_deliver::storage::StorageUrl;
use uncensored_deliver::testing::observed::{Call, Observed, Observer};
use uncensored_deliver::worker::{self, Worker};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["postgres", names @ ..] => serve_postgres(names),
        ["journal", base, lines, load_lines, dir, concurrency @ ..] => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(journal_cost(
                base,
                lines.parse().unwrap(),
                load_lines.parse().unwrap(),
                dir,
                &concurrency
                    .iter()
                    .map(|c| c.parse().unwrap())
                    .collect::<Vec<usize>>(),
            ));
        }
        _ => eprintln!(
            "usage: shared postgres NAME... | shared journal BASE_URL LINES LOAD_LINES DIR CONCURRENCY..."
        ),
    }
}

fn start_postgres() -> uncensored_test_servers::Postgres {
    uncensored_test_servers::postgres()
        .expect("PostgreSQL is installed (set UNCENSORED_POSTGRES_BIN to its bin folder)")
}

/// Serves PostgreSQL until stdin closes, sampling the connections open to
/// each database five times a second; prints the peaks at the end.
fn serve_postgres(names: &[&str]) {
    let server = start_postgres();
    let databases: BTreeMap<&str, String> = names
        .iter()
        .map(|name| (*name, server.create_database(name)))
        .collect();
    println!("{}", json!({ "databases": databases }));
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = closed.clone();
    std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut rest);
        flag.store(true, Ordering::SeqCst);
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let peaks = runtime.block_on(async {
        let (db, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut peaks: BTreeMap<String, i64> = BTreeMap::new();
        while !closed.load(Ordering::SeqCst) {
            let rows = db
                .query(
                    "SELECT datname::text, COUNT(*) FROM pg_stat_activity
                     WHERE datname IS NOT NULL AND datname <> 'postgres' GROUP BY 1",
                    &[],
                )
                .await
                .unwrap();
            for row in rows {
                let peak = peaks.entry(row.get(0)).or_default();
                *peak = (*peak).max(row.get(1));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        peaks
    });
    println!("{}", json!({ "peak_connections": peaks }));
    drop(server);
}

/// Process CPU time (user + system) from /proc/self/stat, in seconds
/// (fields 14 and 15, in clock ticks of 1/100 s).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("Linux /proc");
    // The command name (field 2) may hold spaces: count from its closing parenthesis.
    let rest = &stat[stat.rfind(')').expect("a /proc stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    let ticks = |field: usize| fields[field - 3].parse::<u64>().expect("clock ticks");
    (ticks(14) + ticks(15)) as f64 / 100.0
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find_map(|line| {
            line.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// A prompt of about the length people write (~200 characters).
fn prompt(i: usize) -> String {
    format!(
        "shared prompt {i}: a lighthouse on a basalt cliff at dusk, long exposure, \
         waves breaking below, warm light in the lantern room, gulls, fine mist, \
         35 mm film grain, muted teal and amber palette"
    )
}

/// The batch's lines, numbered from 1, made as they are read (a file of a
/// million lines is never in memory).
fn lines(
    count: usize,
) -> impl Iterator<Item = Result<(u64, GenerateRequest), JournalError>> + Send {
    (1..=count).map(|n| Ok((n as u64, GenerateRequest::new(prompt(n)).size(256, 256))))
}

/// The batch file of `count` lines named `name`, as a run reads it first.
fn batch_file(name: &str, count: usize) -> BatchFile {
    let mut ids = LineIds::new(name);
    for line in lines(count) {
        ids.next(&line.unwrap().1);
    }
    ids.file()
}

/// Calls and time spent per journal method, and the lines claimed.
#[derive(Debug, Default)]
struct Tally {
    calls: BTreeMap<&'static str, (u64, Duration)>,
    writes: u64,
}

/// A journal that counts and times every call to the one it wraps.
fn counted(inner: Arc<dyn Journal>) -> (Arc<dyn Journal>, Arc<Mutex<Tally>>) {
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let seen = tally.clone();
    let observer: Observer = Arc::new(move |call: Call, spent| {
        let mut tally = seen.lock().unwrap();
        let slot = tally.calls.entry(call.name).or_default();
        slot.0 += 1;
        slot.1 += spent;
        tally.writes += u64::from(call.write);
    });
    (Arc::new(Observed::new(inner, observer)), tally)
}

async fn journal_cost(
    base: &str,
    count: usize,
    load_count: usize,
    dir: &str,
    concurrency: &[usize],
) {
    std::fs::create_dir_all(dir).unwrap();
    let server = start_postgres();
    let client = Client::builder()
        .base_url(base)
        .api_key("emulator-key")
        .build()
        .unwrap();
    // Warm the client's connections (and its pacer's probe) first.
    client
        .generate(&GenerateRequest::new("warm up").size(256, 256))
        .await
        .unwrap();
    for &concurrency in concurrency {
        for kind in ["sqlite", "postgres"] {
            let tag = format!("{kind}-c{concurrency}");
            let inner: Arc<dyn Journal> = match kind {
                "sqlite" => {
                    let path = format!("{dir}/journal-{tag}.sqlite");
                    for suffix in ["", "-wal", "-shm"] {
                        let _ = std::fs::remove_file(format!("{path}{suffix}"));
                    }
                    Arc::new(SqliteJournal::open(path.as_ref()).unwrap())
                }
                _ => Arc::new(
                    PostgresJournal::connect(&server.create_database(&tag.replace('-', "_")))
                        .await
                        .unwrap(),
                ),
            };
            let (journal, tally) = counted(inner.clone());
            let file = batch_file("bench.txt", count);
            let started = Instant::now();
            let added = worker::load(journal.as_ref(), &file, lines(count))
                .await
                .unwrap()
                .added;
            let load_ms = started.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(added as usize, count);
            *tally.lock().unwrap() = Tally::default();
            let claimed = Arc::new(AtomicU64::new(0));
            let storage = StorageUrl::parse("memory://").unwrap().open().unwrap();
            let deliverer = Deliverer::new(client.clone(), Arc::new(storage), journal.clone());
            let cpu = cpu_seconds();
            let started = Instant::now();
            let mut done = 0usize;
            Worker::new(Arc::new(deliverer), "bench.txt", "bench-worker")
                .concurrency(concurrency)
                .run(CancellationToken::new(), |outcome| {
                    assert!(outcome.result.unwrap().done);
                    claimed.fetch_add(1, Ordering::Relaxed);
                    done += 1;
                })
                .await
                .unwrap();
            let seconds = started.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu;
            assert_eq!(done, count);
            let tally = std::mem::take(&mut *tally.lock().unwrap());
            let per_job = |n: f64| n / count as f64;
            let calls: BTreeMap<&str, f64> = tally
                .calls
                .iter()
                .map(|(name, (n, _))| (*name, per_job(*n as f64)))
                .collect();
            let writes = tally.writes;
            let journal_time: Duration = tally.calls.values().map(|(_, t)| *t).sum();
            let done_entry = inner.recent(1).await.unwrap().pop().unwrap();
            println!(
                "{}",
                json!({
                    "bench": "journal", "journal": kind, "concurrency": concurrency, "jobs": count,
                    "load_ms": load_ms,
                    "wall_us_per_job": seconds * 1e6 / count as f64,
                    "jobs_per_second": count as f64 / seconds,
                    "cpu_us_per_job": cpu * 1e6 / count as f64,
                    "journal_us_per_job": journal_time.as_secs_f64() * 1e6 / count as f64,
                    "writes_per_job": per_job(writes as f64),
                    "calls_per_job": calls,
                    "rows_claimed_per_claim": claimed.load(Ordering::Relaxed) as f64
                        / tally.calls.get("claim").map_or(1, |(n, _)| *n).max(1) as f64,
                    "done_entry_json_bytes": done_entry.to_record().unwrap().to_string().len(),
                })
            );
        }
    }

    // The sizes of a loaded batch, before any line is done, and the
    // loader's memory: the lines are made as they are read, as the CLI
    // reads a file, and streamed into one transaction.
    let url = server.create_database("sizes");
    let journal = PostgresJournal::connect(&url).await.unwrap();
    let file = batch_file("sizes.txt", load_count);
    std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs");
    let baseline_kib = status_kib("VmRSS:");
    let started = Instant::now();
    let report = worker::load(&journal, &file, lines(load_count))
        .await
        .unwrap();
    assert_eq!(report.added as usize, load_count);
    let load_seconds = started.elapsed().as_secs_f64();
    let peak_kib = status_kib("VmHWM:");
    // Another worker's start: the batch is found loaded, no line is read.
    let started = Instant::now();
    let again = worker::load(&journal, &file, lines(0)).await.unwrap();
    assert_eq!(again.added, 0);
    let second_load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (db, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    db.batch_execute("VACUUM ANALYZE uncensored_entries")
        .await
        .unwrap();
    let row = db
        .query_one(
            "SELECT pg_table_size('uncensored_entries'),
                    pg_relation_size('uncensored_entries_pkey'),
                    pg_relation_size('uncensored_entries_batch'),
                    pg_relation_size('uncensored_entries_changed'),
                    (SELECT AVG(pg_column_size(body))::float8 FROM uncensored_entries),
                    (SELECT AVG(octet_length(body::text))::float8 FROM uncensored_entries)",
            &[],
        )
        .await
        .unwrap();
    let pending = journal.recent(1).await.unwrap().pop().unwrap();
    println!(
        "{}",
        json!({
            "bench": "sizes", "lines": load_count, "load_seconds": load_seconds,
            "loader_above_baseline_kib": peak_kib.saturating_sub(baseline_kib),
            "loader_peak_kib": peak_kib,
            "second_load_ms": second_load_ms,
            "table_bytes": row.get::<_, i64>(0),
            "pkey_bytes": row.get::<_, i64>(1),
            "open_index_bytes": row.get::<_, i64>(2),
            "changed_index_bytes": row.get::<_, i64>(3),
            "body_stored_bytes": row.get::<_, f64>(4),
            "body_text_bytes": row.get::<_, f64>(5),
            "pending_entry_json_bytes": pending.to_record().unwrap().to_string().len(),
        })
    );
    drop(server);
}
