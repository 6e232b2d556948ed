//! The one batch engine as `uncensored batch` runs it, on the SQLite journal
//! beside the images and on a shared PostgreSQL one: lines known by their
//! content (an edited file pays only for its new lines), stops that hold for
//! every worker (the account out of funds, a revoked key), two runs of one
//! batch at once, SIGTERM, and a worker stopped past its lease (SIGSTOP)
//! whose late writes are refused.

mod support;

use std::path::Path;
use std::process::Child;

use support::batch::*;
use uncensored_emulator::{Config, Emulator, EmulatorHandle, KeyConfig};

/// Where a test's batch journal lives: the SQLite file beside the images,
/// or a fresh PostgreSQL database.
enum Journal {
    Sqlite,
    Postgres(Box<uncensored_test_servers::Postgres>),
}

impl Journal {
    /// Each kind, PostgreSQL when its server starts (in CI it must).
    fn each() -> Vec<Journal> {
        let mut kinds = vec![Journal::Sqlite];
        kinds.extend(postgres().map(|server| Journal::Postgres(Box::new(server))));
        kinds
    }

    fn location(&self, dir: &Path, name: &str) -> String {
        match self {
            Journal::Sqlite => dir.join("journal.sqlite").display().to_string(),
            Journal::Postgres(server) => server.create_database(name),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Journal::Sqlite => "sqlite",
            Journal::Postgres(_) => "postgres",
        }
    }
}

/// The emulator with its default key and `poor-key`, whose balance pays for
/// `images` images of the default model (1 credit each).
async fn emulator_with_poor_key(images: u64, time_scale: f64) -> EmulatorHandle {
    let mut config = Config {
        time_scale,
        seed: 7,
        ..Config::default()
    };
    let mut poor: KeyConfig = config.keys[0].clone();
    poor.key = "poor-key".into();
    poor.name = "poor".into();
    poor.balance = images;
    config.keys.push(poor);
    Emulator::start(config).await.unwrap()
}

fn write(path: &Path, prompts: &[String]) {
    let text: String = prompts.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_file_pays_only_for_its_new_lines() {
    for journal in Journal::each() {
        let emulator = emulator_with_poor_key(0, 0.0).await;
        let dir = temp_dir(&format!("edited-{}", journal.name()));
        let location = journal.location(&dir, "edited");
        let file = dir.join("prompts.txt");
        let mut prompts: Vec<String> = (0..12).map(|i| format!("shared prompt {i}")).collect();
        write(&file, &prompts);
        let run = || worker(&emulator, &dir, &file, &location, &["--json"]);
        let (code, stdout, stderr) = outcome(run()).await;
        assert_eq!(code, Some(0), "{stdout}\n{stderr}");
        assert_eq!(emulator.stats().charges.total, 12);

        // Edited as people edit files: a line inserted at the top, one
        // deleted from the middle, one reworded, two swapped, one written twice.
        prompts.insert(0, "shared prompt new".into());
        prompts.remove(6);
        prompts[3] = "shared prompt 2, reworded".into();
        prompts.swap(8, 9);
        prompts.push("shared prompt 11".into());
        write(&file, &prompts);
        let (code, stdout, stderr) = outcome(run()).await;
        assert_eq!(code, Some(0), "{stdout}\n{stderr}");
        let summary = summary(&stdout);
        assert_eq!(summary["added"], 3, "{summary}");
        assert_eq!(summary["stored"], 3, "{summary}");
        assert_eq!(
            summary["no_longer_in_file"], 2,
            "the deleted and the reworded line: {summary}"
        );
        assert_eq!(
            emulator.stats().charges.total,
            15,
            "{}: only the new lines are paid for",
            journal.name()
        );
        assert_eq!(images_in(&dir.join("images")), 15);

        // A third run finds the batch as it left it: nothing read, nothing paid.
        let (code, stdout, _) = outcome(run()).await;
        assert_eq!(code, Some(0));
        assert_eq!(summary_of(&stdout, "added"), 0);
        assert_eq!(emulator.stats().charges.total, 15);
        std::fs::remove_dir_all(dir).ok();
    }
}

fn summary_of(stdout: &str, field: &str) -> u64 {
    summary(stdout)[field].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_funds_stops_every_worker_and_a_rerun_continues() {
    for journal in Journal::each() {
        const LINES: usize = 40;
        const FUNDS: u64 = 10;
        let emulator = emulator_with_poor_key(FUNDS, 0.002).await;
        let dir = temp_dir(&format!("funds-{}", journal.name()));
        let location = journal.location(&dir, "funds");
        let file = batch_file(&dir, "prompts.txt", LINES);
        let workers: Vec<Child> = (0..3)
            .map(|_| {
                worker_as(
                    &emulator,
                    "poor-key",
                    &dir,
                    &file,
                    &location,
                    &["--concurrency", "2"],
                )
                .spawn()
                .unwrap()
            })
            .collect();
        for child in workers {
            let (code, stdout, stderr) = outcome(child).await;
            assert_eq!(
                code,
                Some(4),
                "{}: every worker ends with the funds' exit code\n{stdout}\n{stderr}",
                journal.name()
            );
            assert!(stderr.contains("top up"), "the advice: {stderr}");
            assert!(stderr.contains("none of them failed"), "{stderr}");
        }
        assert_eq!(emulator.stats().charges.total, FUNDS);
        let refused = answered(&emulator, 402);
        assert!(
            (1..=6).contains(&refused),
            "{}: the stop holds for every worker at once: {refused} answers 402, at most the 6 lines in flight",
            journal.name()
        );
        let status = support::uncensored()
            .args(["--json", "batch", "status", "--journal", &location])
            .output()
            .unwrap();
        let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(status["done"], FUNDS, "{status}");
        assert_eq!(
            status["failed"], 0,
            "untried lines are not failed: {status}"
        );
        assert_eq!(status["left"], LINES as u64 - FUNDS, "{status}");
        assert_eq!(
            status["stopped"]["reason"], "insufficient_funds",
            "{status}"
        );

        // Topped up (here: a key with funds), the same command continues.
        let (code, stdout, stderr) =
            outcome(worker(&emulator, &dir, &file, &location, &["--json"])).await;
        assert_eq!(code, Some(0), "{stdout}\n{stderr}");
        assert_eq!(summary_of(&stdout, "stored"), LINES as u64 - FUNDS);
        assert_eq!(emulator.stats().charges.total, LINES as u64);
        assert_eq!(images_in(&dir.join("images")), LINES);
        std::fs::remove_dir_all(dir).ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_without_the_scope_stops_the_batch_at_once_with_its_advice() {
    let mut config = Config {
        time_scale: 0.0,
        ..Config::default()
    };
    let mut narrow: KeyConfig = config.keys[0].clone();
    narrow.key = "narrow-key".into();
    narrow.name = "narrow".into();
    narrow.scopes = vec!["image:gen:model-pro".into()];
    config.keys.push(narrow);
    let emulator = Emulator::start(config).await.unwrap();
    let dir = temp_dir("scope");
    let location = dir.join("journal.sqlite").display().to_string();
    let file = batch_file(&dir, "prompts.txt", 30);
    let (code, stdout, stderr) = outcome(
        worker_as(
            &emulator,
            "narrow-key",
            &dir,
            &file,
            &location,
            &["--concurrency", "3"],
        )
        .spawn()
        .unwrap(),
    )
    .await;
    assert_eq!(code, Some(3), "{stdout}\n{stderr}");
    assert!(stderr.contains("forbidden"), "{stderr}");
    assert!(stderr.contains("scope"), "the advice: {stderr}");
    assert!(
        answered(&emulator, 403) <= 3,
        "{:?}",
        emulator.stats().requests
    );
    assert_eq!(status(&location)["left"], 30);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stops_the_batch_at_once_with_its_advice() {
    let emulator = emulator_with_poor_key(0, 0.0).await;
    let dir = temp_dir("revoked");
    let location = dir.join("journal.sqlite").display().to_string();
    let file = batch_file(&dir, "prompts.txt", 30);
    let (code, stdout, stderr) = outcome(
        worker_as(
            &emulator,
            "revoked-key",
            &dir,
            &file,
            &location,
            &["--concurrency", "3"],
        )
        .spawn()
        .unwrap(),
    )
    .await;
    assert_eq!(code, Some(3), "{stdout}\n{stderr}");
    assert!(stderr.contains("unauthorized"), "{stderr}");
    assert!(stderr.contains("check the API key"), "{stderr}");
    assert!(
        answered(&emulator, 401) <= 3,
        "no more than the lines in flight were sent: {:?}",
        emulator.stats().requests
    );
    let status = support::uncensored()
        .args(["--json", "batch", "status", "--journal", &location])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        (status["left"].as_u64(), status["failed"].as_u64()),
        (Some(30), Some(0))
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_local_runs_of_one_batch_at_once_deliver_and_announce_each_line_once() {
    const LINES: usize = 60;
    let emulator = emulator_with_poor_key(0, 0.002).await;
    let slack = slack().await;
    let dir = temp_dir("twice");
    let location = dir.join("journal.sqlite").display().to_string();
    let file = batch_file(&dir, "prompts.txt", LINES);
    let notify = format!("slack:{}/hook", slack.uri());
    let runs: Vec<Child> = (0..2)
        .map(|_| {
            worker(
                &emulator,
                &dir,
                &file,
                &location,
                &["--concurrency", "4", "--notify", &notify],
            )
        })
        .collect();
    for child in runs {
        let (code, stdout, stderr) = outcome(child).await;
        assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    }
    assert_eq!(emulator.stats().charges.total, LINES as u64);
    assert_eq!(images_in(&dir.join("images")), LINES);
    let told = announcements(&slack).await;
    assert_eq!(told.len(), LINES, "every line announced");
    assert!(told.values().all(|n| *n == 1), "announced twice: {told:?}");
    std::fs::remove_dir_all(dir).ok();
}

/// Sends `signal` (`-TERM`, `-STOP`, `-CONT`) to `child`.
fn signal(child: &Child, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal}");
}

fn status(location: &str) -> serde_json::Value {
    let status = support::uncensored()
        .args(["--json", "batch", "status", "--journal", location])
        .output()
        .unwrap();
    serde_json::from_slice(&status.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_what_is_in_flight_and_a_rerun_pays_nothing_twice() {
    for journal in Journal::each() {
        const LINES: usize = 30;
        // Generations of 0.25-1.5 s: lines are in flight when the signal comes.
        let emulator = emulator_with_poor_key(0, 0.05).await;
        let dir = temp_dir(&format!("sigterm-{}", journal.name()));
        let location = journal.location(&dir, "sigterm");
        let file = batch_file(&dir, "prompts.txt", LINES);
        let mut first = worker(
            &emulator,
            &dir,
            &file,
            &location,
            &["--concurrency", "4", "--drain", "0"],
        );
        let reader = progress(&mut first, 3).await;
        signal(&first, "-TERM");
        let rest = tokio::task::spawn_blocking(move || {
            std::io::read_to_string(reader).unwrap_or_default()
        });
        let (code, stdout, _) = outcome(first).await;
        let stderr = rest.await.unwrap();
        assert_eq!(code, Some(130), "{}: {stdout}\n{stderr}", journal.name());
        assert!(stdout.contains("lines:"), "a summary: {stdout}");
        assert!(stderr.contains("stopped on request"), "{stderr}");
        let now = status(&location);
        assert_eq!(
            now["in_flight"],
            serde_json::json!({}),
            "what was in flight is released: {now}"
        );
        assert!(now["left"].as_u64().unwrap() > 0, "{now}");

        let (code, stdout, stderr) = outcome(worker(&emulator, &dir, &file, &location, &[])).await;
        assert_eq!(code, Some(0), "{stdout}\n{stderr}");
        assert_eq!(
            emulator.stats().charges.total,
            LINES as u64,
            "{}: the interrupted lines resume with their keys",
            journal.name()
        );
        assert_eq!(images_in(&dir.join("images")), LINES);
        std::fs::remove_dir_all(dir).ok();
    }
}

/// On PostgreSQL: a worker stopped on SQLite may be stopped inside one of
/// its writes, holding the file's write lock, and then no other process can
/// write until it resumes (SQLite's locks are the file's). The fencing
/// itself is checked on both journals by the conformance suite
/// (`uncensored_deliver::testing::journal`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_past_its_lease_cannot_announce_what_another_finished() {
    let Some(server) = postgres() else { return };
    {
        let journal = Journal::Postgres(Box::new(server));
        const LINES: usize = 12;
        let emulator = emulator_with_poor_key(0, 0.05).await;
        let slack = slack().await;
        let notify = format!("slack:{}/hook", slack.uri());
        let dir = temp_dir(&format!("fenced-{}", journal.name()));
        let location = journal.location(&dir, "fenced");
        let file = batch_file(&dir, "prompts.txt", LINES);
        let extra = ["--concurrency", "4", "--lease", "1", "--notify", &notify];
        let mut stalled = worker(&emulator, &dir, &file, &location, &extra);
        let reader = progress(&mut stalled, 2).await;
        // Paused as a stalled process or a paused virtual machine would be,
        // with lines in flight; another worker takes them over and finishes.
        signal(&stalled, "-STOP");
        let (code, stdout, stderr) =
            outcome(worker(&emulator, &dir, &file, &location, &extra)).await;
        assert_eq!(code, Some(0), "{stdout}\n{stderr}");
        assert_eq!(status(&location)["done"], LINES as u64);
        signal(&stalled, "-CONT");
        let rest = tokio::task::spawn_blocking(move || {
            std::io::read_to_string(reader).unwrap_or_default()
        });
        let (code, stdout, _) = outcome(stalled).await;
        let stderr = rest.await.unwrap();
        assert_eq!(code, Some(0), "{}: {stdout}\n{stderr}", journal.name());
        assert!(
            stderr.contains("taken over by another worker"),
            "its late writes were refused: {stderr}"
        );
        let told = announcements(&slack).await;
        assert_eq!(told.len(), LINES, "every line announced");
        assert!(
            told.values().all(|n| *n == 1),
            "{}: announced twice: {told:?}",
            journal.name()
        );
        assert_eq!(images_in(&dir.join("images")), LINES);
        assert_eq!(emulator.stats().charges.total, LINES as u64);
        std::fs::remove_dir_all(dir).ok();
    }
}
