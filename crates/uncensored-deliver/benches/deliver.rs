//! Memory of the delivery pipeline, run by `cargo xtask bench` (which writes
//! BENCHMARKS.md). Each run is its own process, so that its peak RSS is its own.
//! Prints one JSON line.
//!
//! - `large fs|s3 BASE_URL DIR [S3_ENDPOINT]`: one 64 MiB image delivered to
//!   storage; peak RSS above the baseline taken just before it.
//! - `batch N BASE_URL DIR`: N small jobs delivered to fs, 16 at a time.

use std::sync::Arc;

use serde_json::json;
use uncensored::{CancellationToken, Client, GenerateRequest};
use uncensored_deliver::Deliverer;
use uncensored_deliver::journal::{LineIds, SqliteJournal};
use uncensored_deliver::storage::{ObjectStorage, Storage, StorageUrl};
use uncensored_deliver::worker::{self, Worker};

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

/// Resets the peak RSS (VmHWM) to the current RSS (Linux clear_refs 5).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs");
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["large", kind, base, dir, rest @ ..] => {
            runtime.block_on(large(kind, base, dir, rest.first().copied()))
        }
        ["batch", count, base, dir] => runtime.block_on(batch(count.parse().unwrap(), base, dir)),
        _ => eprintln!(
            "usage: deliver large fs|s3 BASE_URL DIR [S3_ENDPOINT] | deliver batch N BASE_URL DIR"
        ),
    }
}

fn client(base: &str) -> Client {
    // Room for a 64 MiB image (padding rounds it up a little past the default cap).
    Client::builder()
        .base_url(base)
        .api_key("emulator-key")
        .max_download_bytes(128 * 1024 * 1024)
        .build()
        .unwrap()
}

async fn large(kind: &str, base: &str, dir: &str, endpoint: Option<&str>) {
    let storage: Arc<dyn Storage> = match kind {
        "fs" => Arc::new(ObjectStorage::local(format!("{dir}/images")).unwrap()),
        "s3" => Arc::new(
            StorageUrl::parse("s3://bench/images")
                .unwrap()
                .open_with([
                    ("aws_endpoint", endpoint.expect("an S3 endpoint")),
                    ("aws_allow_http", "true"),
                    ("aws_region", "us-east-1"),
                    ("aws_access_key_id", "bench"),
                    ("aws_secret_access_key", "bench"),
                ])
                .unwrap(),
        ),
        other => panic!("unknown storage {other}"),
    };
    let journal =
        Arc::new(SqliteJournal::open(format!("{dir}/journal-{kind}.sqlite").as_ref()).unwrap());
    let deliverer = Deliverer::new(client(base), storage, journal);
    // Warm up every path (connections, TLS-free pools, SQLite) with a small image.
    deliverer
        .deliver(
            &format!("warm-{kind}"),
            &GenerateRequest::new("warm up").size(256, 256),
        )
        .await
        .unwrap();
    reset_peak();
    let baseline = status_kib("VmRSS:");
    let bytes: u64 = 64 * 1024 * 1024;
    let request = GenerateRequest::new("a very large image")
        .size(2048, 2048)
        .setting("emulator_image_bytes", bytes);
    let entry = deliverer
        .deliver(&format!("large-{kind}"), &request)
        .await
        .unwrap();
    let peak = status_kib("VmHWM:");
    assert!(entry.done);
    println!(
        "{}",
        json!({"bench": "large", "storage": kind, "image_bytes": bytes, "baseline_kib": baseline, "peak_kib": peak, "above_baseline_kib": peak.saturating_sub(baseline)})
    );
}

async fn batch(count: usize, base: &str, dir: &str) {
    let journal =
        Arc::new(SqliteJournal::open(format!("{dir}/journal-{count}.sqlite").as_ref()).unwrap());
    let deliverer = Deliverer::new(
        client(base),
        Arc::new(ObjectStorage::local(format!("{dir}/batch-{count}")).unwrap()),
        journal,
    );
    deliverer
        .deliver(
            &format!("warm-{count}"),
            &GenerateRequest::new("warm up").size(256, 256),
        )
        .await
        .unwrap();
    reset_peak();
    let baseline = status_kib("VmRSS:");
    let started = std::time::Instant::now();
    // The batch engine, as `uncensored batch` runs it: lines made as they
    // are read, loaded in one streamed transaction, then claimed 16 at a time.
    let name = format!("batch-{count}.txt");
    let lines = || {
        (0..count as u64).map(|i| {
            Ok((
                i + 1,
                GenerateRequest::new(format!("batch line {i}")).size(256, 256),
            ))
        })
    };
    let mut ids = LineIds::new(&name);
    for line in lines() {
        ids.next(&line.unwrap().1);
    }
    let file = ids.file();
    worker::load(deliverer.journal().as_ref(), &file, lines())
        .await
        .unwrap();
    Worker::new(Arc::new(deliverer), name, "bench")
        .concurrency(16)
        .run(CancellationToken::new(), |outcome| {
            assert!(outcome.result.unwrap().done)
        })
        .await
        .unwrap();
    let peak = status_kib("VmHWM:");
    println!(
        "{}",
        json!({"bench": "batch", "jobs": count, "baseline_kib": baseline, "peak_kib": peak, "above_baseline_kib": peak.saturating_sub(baseline), "seconds": started.elapsed().as_secs_f64()})
    );
}
