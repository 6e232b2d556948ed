//! `uncensored batch FILE --callback-url URL`: every line submitted by the
//! batch's workers with a signed URL of its own, handed off, and delivered
//! by `webhook serve` (its callbacks, or its recovery when they are lost),
//! with no job read by the workers; on the SQLite journal beside the images
//! and on a shared PostgreSQL one. A rerun pays nothing again.

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::batch::*;
use uncensored_emulator::{Config, Emulator, EmulatorHandle};

const SECRET: &str = "batch-callbacks-secret-0123456789abcdef-0123";
const JOB_READS: &str = "GET /v1/images/generation/jobs/{job_id}";
/// Where callbacks go while the service is down: nothing listens on port 9.
const CLOSED: &str = "http://127.0.0.1:9";

/// The emulator, giving up on a callback after `attempts` attempts.
async fn emulator(attempts: u32) -> EmulatorHandle {
    let mut config = Config {
        time_scale: 0.002,
        rate_limit_rpm: 1_000_000,
        seed: 11,
        ..Config::default()
    };
    config.webhooks.max_attempts = attempts;
    Emulator::start(config).await.unwrap()
}

fn job_reads(emulator: &EmulatorHandle) -> u64 {
    emulator
        .stats()
        .requests
        .get(JOB_READS)
        .map(|by_status| by_status.values().sum())
        .unwrap_or(0)
}

/// Waits until `condition` holds, for at most `within`.
async fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `webhook serve` as a child process on a free loopback port, on the
/// batch's images and journal; the lines it prints, as they come.
struct Service {
    child: Child,
    url: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Service {
    async fn start(emulator: &EmulatorHandle, dir: &Path, journal: &str, extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("uncensored"));
        for var in support::MACHINE_VARS {
            command.env_remove(var);
        }
        let mut child = command
            .current_dir(dir)
            .env("XDG_CONFIG_HOME", "/nonexistent-config-dir")
            .env("UNCENSORED_CALLBACK_SECRET", SECRET)
            .args([
                "--base-url",
                emulator.base_url(),
                "--api-key",
                "emulator-key",
            ])
            .args(["webhook", "serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--journal", journal])
            .args(["--out", dir.join("images").to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let (url, stdout) = tokio::task::spawn_blocking(move || {
            let url = stdout.next().unwrap().unwrap();
            (url, stdout)
        })
        .await
        .unwrap();
        assert_eq!(url, format!("http://127.0.0.1:{port}/callback"));
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = lines.clone();
        std::thread::spawn(move || {
            for line in stdout.map_while(Result::ok) {
                seen.lock().unwrap().push(line);
            }
        });
        Self { child, url, lines }
    }

    fn stored(&self) -> usize {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|l| l.contains(" stored at ")).count()
    }

    async fn wait_stored(&self, count: usize) {
        wait_until(
            Duration::from_secs(60),
            "the service stores every line",
            || self.stored() >= count,
        )
        .await;
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `uncensored batch FILE --callback-url URL --json` to its end: its exit
/// code and JSON summary.
async fn batch(
    emulator: &EmulatorHandle,
    dir: &Path,
    file: &Path,
    journal: &str,
    url: &str,
    extra: &[&str],
) -> (Option<i32>, serde_json::Value, String) {
    let child = worker_command(
        emulator,
        dir,
        file,
        journal,
        &[&["--json", "--callback-url", url], extra].concat(),
    )
    .env("UNCENSORED_CALLBACK_SECRET", SECRET)
    .spawn()
    .unwrap();
    let (code, stdout, stderr) = outcome(child).await;
    let summary = match code {
        Some(0) => summary(&stdout),
        _ => serde_json::Value::Null,
    };
    (code, summary, stderr)
}

/// `batch status --journal J --json`.
fn status(dir: &Path, journal: &str) -> serde_json::Value {
    let output = support::uncensored()
        .current_dir(dir)
        .args(["batch", "status", "--journal", journal, "--json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    summary(&String::from_utf8_lossy(&output.stdout))
}

/// The journals a test runs on: the SQLite file beside the images, and a
/// fresh PostgreSQL database when its server starts (in CI it must).
fn journals() -> Vec<Option<uncensored_test_servers::Postgres>> {
    let mut kinds = vec![None];
    if let Some(server) = postgres() {
        kinds.push(Some(server));
    }
    kinds
}

/// Where one run of a test on `server`'s journal (SQLite without one)
/// keeps its files: its kind (`sqlite`, `postgres`), its folder under
/// `dir`, and its journal's location (a fresh database named `database`).
fn place(
    server: &Option<uncensored_test_servers::Postgres>,
    dir: &Path,
    database: &str,
) -> (&'static str, PathBuf, String) {
    let kind = if server.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let dir = dir.join(kind);
    std::fs::create_dir_all(&dir).unwrap();
    let journal = match server {
        Some(server) => server.create_database(database),
        None => dir.join("journal.sqlite").display().to_string(),
    };
    (kind, dir, journal)
}

/// A batch whose callbacks come: every line submitted by the worker and
/// handed off, then stored and announced once by the service, which made
/// the only job reads (one confirming read per callback); a rerun pays
/// nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_callbacks_is_delivered_by_the_service_without_a_read_by_its_workers() {
    const LINES: usize = 6;
    let emulator = emulator(5).await;
    let dir = temp_dir("callbacks-come");
    let journal = dir
        .join("images/.uncensored/journal.sqlite")
        .display()
        .to_string();
    let file = batch_file(&dir, "prompts.txt", LINES);
    let slack = slack().await;
    let notify = format!("slack:{}/hook", slack.uri());
    let service = Service::start(&emulator, &dir, &journal, &["--notify", &notify]).await;

    let started = Instant::now();
    let (code, summary, stderr) = batch(
        &emulator,
        &dir,
        &file,
        &journal,
        &service.url,
        &["--concurrency", "3"],
    )
    .await;
    let submitted_in = started.elapsed();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(summary["submitted"], LINES, "{summary}");
    assert_eq!(summary["failed"], 0, "{summary}");

    service.wait_stored(LINES).await;
    println!(
        "{LINES} lines submitted in {submitted_in:?}, delivered by the service within {:?}; callbacks: {:?}",
        started.elapsed(),
        emulator.stats().webhooks
    );
    assert_eq!(images_in(&dir.join("images")), LINES, "each stored once");
    let stats = emulator.stats();
    assert_eq!(stats.charges.total, LINES as u64, "each paid once");
    assert_eq!(
        job_reads(&emulator),
        LINES as u64,
        "one confirming read per line, by the service; none by the worker"
    );
    let told = announcements(&slack).await;
    assert_eq!(told.len(), LINES, "{told:?}");
    assert!(told.values().all(|&n| n == 1), "announced once: {told:?}");
    wait_until(Duration::from_secs(10), "the journal says done", || {
        status(&dir, &journal)["done"] == LINES
    })
    .await;
    assert_eq!(status(&dir, &journal)["handed_off"], 0);

    // The same command again: every line is done, nothing is sent.
    let (code, summary, stderr) = batch(&emulator, &dir, &file, &journal, &service.url, &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(summary["submitted"], 0, "{summary}");
    assert_eq!(summary["already_done"], LINES, "{summary}");
    assert_eq!(
        emulator.stats().charges.total,
        LINES as u64,
        "nothing paid again"
    );
    assert_eq!(images_in(&dir.join("images")), LINES);
    drop(service);
    std::fs::remove_dir_all(dir).ok();
}

/// The scenario for batches, on both journals: the lines are
/// submitted while the service is down and the API gives up on their
/// callbacks; `batch status` shows them handed off, not delivered; the
/// service comes up on the same journal and its recovery stores every paid
/// line once; a rerun of the batch pays nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_lost_while_the_service_is_down_are_recovered_for_every_line() {
    const LINES: usize = 5;
    let dir = temp_dir("callbacks-lost");
    for server in journals() {
        let emulator = emulator(2).await;
        let (kind, dir, journal) = place(&server, &dir, "callbacks_lost");
        let file = batch_file(&dir, "prompts.txt", LINES);
        let (code, summary, stderr) = batch(&emulator, &dir, &file, &journal, CLOSED, &[]).await;
        assert_eq!(code, Some(0), "{kind}: {stderr}");
        assert_eq!(summary["submitted"], LINES, "{kind}: {summary}");
        assert_eq!(summary["batch"]["handed_off"], LINES, "{kind}: {summary}");
        let shown = status(&dir, &journal);
        assert_eq!(shown["handed_off"], LINES, "{kind}: {shown}");
        assert_eq!(shown["done"], 0, "{kind}: {shown}");
        assert_eq!(shown["left"], 0, "{kind}: {shown}");
        wait_until(
            Duration::from_secs(30),
            "the API gives up on the callbacks",
            || emulator.stats().webhooks.failures >= LINES as u64,
        )
        .await;
        assert_eq!(emulator.stats().webhooks.deliveries, 0);
        assert_eq!(job_reads(&emulator), 0, "{kind}: the worker read no job");

        let service = Service::start(&emulator, &dir, &journal, &["--recovery-grace", "0s"]).await;
        service.wait_stored(LINES).await;
        assert_eq!(images_in(&dir.join("images")), LINES, "{kind}: stored once");
        assert_eq!(
            emulator.stats().charges.total,
            LINES as u64,
            "{kind}: paid once"
        );
        wait_until(Duration::from_secs(10), "the journal says done", || {
            status(&dir, &journal)["done"] == LINES
        })
        .await;

        let (code, summary, stderr) =
            batch(&emulator, &dir, &file, &journal, &service.url, &[]).await;
        assert_eq!(code, Some(0), "{kind}: {stderr}");
        assert_eq!(summary["already_done"], LINES, "{kind}: {summary}");
        assert_eq!(
            emulator.stats().charges.total,
            LINES as u64,
            "{kind}: a rerun pays nothing again"
        );
        assert_eq!(service.stored(), LINES, "{kind}: delivered once");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// `--max-spend` with `--callback-url`: each line's price is reserved by
/// its worker before its POST and settled by the service that delivers it
/// (the worker hands it off before it ends), on both journals: once every
/// line is stored the batch's spend holds them spent, what the account
/// paid, with nothing still reserved; and a rerun pays nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_is_settled_by_the_service_that_delivers_the_lines() {
    const LINES: usize = 4;
    let dir = temp_dir("callbacks-budget");
    for server in journals() {
        let emulator = emulator(5).await;
        let (kind, dir, journal) = place(&server, &dir, "callbacks_budget");
        let file = batch_file(&dir, "prompts.txt", LINES);
        let service = Service::start(&emulator, &dir, &journal, &[]).await;
        let budget = ["--max-spend", "1"];
        let (code, summary, stderr) =
            batch(&emulator, &dir, &file, &journal, &service.url, &budget).await;
        assert_eq!(code, Some(0), "{kind}: {stderr}");
        assert_eq!(summary["submitted"], LINES, "{kind}: {summary}");
        // A line is reported stored once its reservation is settled.
        service.wait_stored(LINES).await;

        let (code, summary, stderr) =
            batch(&emulator, &dir, &file, &journal, &service.url, &budget).await;
        assert_eq!(code, Some(0), "{kind}: {stderr}");
        assert_eq!(summary["already_done"], LINES, "{kind}: {summary}");
        assert_eq!(summary["submitted"], 0, "{kind}: {summary}");
        let stats = emulator.stats();
        assert_eq!(
            stats.charges.total, LINES as u64,
            "{kind}: a rerun pays nothing"
        );
        let paid = uncensored::Client::builder()
            .base_url(emulator.base_url())
            .api_key("emulator-key")
            .build()
            .unwrap()
            .balance()
            .await
            .unwrap()
            .daily_spend;
        assert!(paid > uncensored::Money::ZERO);
        assert_eq!(
            summary["spent_nanos"].as_i64(),
            Some(paid.nanos()),
            "{kind}: every line spent, as the account paid: {summary}"
        );
        assert_eq!(
            summary["reserved_nanos"].as_i64(),
            Some(0),
            "{kind}: nothing still reserved: {summary}"
        );
        assert_eq!(service.stored(), LINES, "{kind}: delivered once");
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Bad input is refused before anything is sent or written: no secret, a
/// weak one (never echoed), a callback URL that is not absolute http(s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_callback_settings_are_refused_before_anything_is_sent_or_written() {
    let emulator = emulator(5).await;
    let dir = temp_dir("callbacks-refused");
    let file = batch_file(&dir, "prompts.txt", 2);
    let journal = dir.join("journal.sqlite").display().to_string();
    let weak = "weak-secret-123";
    for (secret, url, expected) in [
        (
            None,
            "http://127.0.0.1:1/hooks",
            "UNCENSORED_CALLBACK_SECRET",
        ),
        (Some(weak), "http://127.0.0.1:1/hooks", "at least 32"),
        (Some(SECRET), "/relative/callback", "--callback-url"),
        (Some(SECRET), "ftp://127.0.0.1/callback", "http or https"),
    ] {
        let mut command =
            worker_command(&emulator, &dir, &file, &journal, &["--callback-url", url]);
        if let Some(secret) = secret {
            command.env("UNCENSORED_CALLBACK_SECRET", secret);
        }
        let (code, _, stderr) = outcome(command.spawn().unwrap()).await;
        assert_eq!(code, Some(6), "{url}: {stderr}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
        assert!(!stderr.contains(weak), "a secret is never echoed: {stderr}");
        assert!(
            !stderr.contains(SECRET),
            "a secret is never echoed: {stderr}"
        );
    }
    assert!(emulator.stats().requests.is_empty(), "nothing was sent");
    assert!(!Path::new(&journal).exists(), "no journal was written");
    std::fs::remove_dir_all(dir).ok();
}
