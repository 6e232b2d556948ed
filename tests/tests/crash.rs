//! The pipeline survives SIGKILL: a worker is killed mid-batch, started again,
//! and in the end every image is stored once, every notification was sent,
//! and the emulator charged exactly one job per line.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use uncensored_emulator::{Config, Emulator};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const WORKER: &str = env!("CARGO_BIN_EXE_batch-worker");
const LINES: usize = 40;

fn worker(base: &str, dir: &std::path::Path, slack: &str, hook: &str) -> Command {
    let mut command = Command::new(WORKER);
    command
        .args([base, dir.to_str().unwrap(), slack, hook, &LINES.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_killed_with_sigkill_and_rerun_pays_stores_and_announces_each_line_once() {
    // Jobs of 5-30 modelled seconds take 10-60 ms here.
    let emulator = Emulator::start(Config {
        time_scale: 0.002,
        ..Config::default()
    })
    .await
    .unwrap();
    let (slack, hooks) = (MockServer::start().await, MockServer::start().await);
    for server in [&slack, &hooks] {
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
            .mount(server)
            .await;
    }
    let slack_url = format!("{}/services/T/B/secret", slack.uri());
    let hook_url = format!("{}/hook", hooks.uri());
    let dir = std::env::temp_dir().join(format!("uncensored-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    // First run: kill it once a third of the batch is done.
    let mut first = worker(emulator.base_url(), &dir, &slack_url, &hook_url)
        .spawn()
        .unwrap();
    let stdout = first.stdout.take().unwrap();
    let killed_after = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut done = 0;
        while done < LINES / 3 {
            done = lines
                .next()
                .expect("the worker reports progress")
                .unwrap()
                .trim_start_matches("done ")
                .parse()
                .unwrap();
        }
        done
    })
    .await
    .unwrap();
    first.kill().unwrap(); // SIGKILL
    let status = first.wait().unwrap();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(
        status.signal(),
        Some(9),
        "the first run ended by SIGKILL, not by itself: {status}"
    );
    assert!(killed_after < LINES);

    // Second run: resume, then the rest of the batch.
    let second = worker(emulator.base_url(), &dir, &slack_url, &hook_url)
        .output()
        .unwrap();
    assert!(second.status.success(), "the rerun finishes");

    let stats = emulator.stats();
    assert_eq!(stats.charges.total, LINES as u64, "one charge per line");
    assert!(stats.charges.by_idempotency_key.values().all(|n| *n == 1));

    let mut images = 0;
    for day in std::fs::read_dir(dir.join("images")).unwrap() {
        for file in std::fs::read_dir(day.unwrap().path()).unwrap() {
            let name = file.unwrap().file_name().into_string().unwrap();
            assert!(
                !name.ends_with(".part"),
                "a partial file was left behind: {name}"
            );
            if name.ends_with(".jpg") {
                images += 1;
            }
        }
    }
    assert_eq!(images, LINES, "every image stored, once");

    // Webhook receivers dedupe by webhook-id: each job's id arrives, and
    // (with a kill outside a send) exactly once.
    let ids: Vec<String> = hooks
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers["webhook-id"].to_str().unwrap().to_string())
        .collect();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for id in &ids {
        *per_id.entry(id).or_default() += 1;
    }
    assert_eq!(per_id.len(), LINES, "every job announced");
    let slack_messages = slack.received_requests().await.unwrap().len();
    let repeats = ids.len() - LINES + slack_messages - LINES;
    assert!(
        repeats <= 2,
        "at most the notifications in flight at the kill repeat: {repeats}"
    );
    eprintln!("killed after {killed_after} lines; repeated notifications: {repeats}");
    std::fs::remove_dir_all(&dir).ok();
}
