//! Batches shared by several worker processes through a real PostgreSQL:
//! a worker SIGKILLed mid-batch, the database restarted mid-batch, one rate
//! limit for all, mistakes refused before anything is paid, and a journal
//! over TLS whose certificate is checked first.

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use support::batch::*;
use uncensored_emulator::{Config, Emulator, EmulatorHandle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_one_killed_store_and_announce_every_line_once() {
    let Some(pg) = postgres() else { return };
    let journal = pg.create_database("killed");
    let emulator = emulator(0.1, 1_000_000).await;
    let slack = slack().await;
    let dir = temp_dir("killed");
    let file = batch_file(&dir, "prompts.txt", 300);
    let notify = format!("slack:{}/hook", slack.uri());
    let extra = ["--concurrency", "4", "--lease", "2", "--notify", &notify];
    let mut doomed = worker(&emulator, &dir, &file, &journal, &extra);
    let others = [
        worker(&emulator, &dir, &file, &journal, &extra),
        worker(&emulator, &dir, &file, &journal, &extra),
    ];
    let reader = progress(&mut doomed, 20).await;
    doomed.kill().unwrap(); // SIGKILL, with lines in flight
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(doomed.wait().unwrap().signal(), Some(9));
    drop(reader);
    for other in others {
        let (ok, stdout, stderr) = finish(other).await;
        assert!(ok, "{stdout}\n{stderr}");
    }
    assert_eq!(
        images_in(&dir.join("images")),
        300,
        "every line stored once"
    );
    let stats = emulator.stats();
    assert_eq!(
        stats.charges.total,
        300,
        "no line paid twice: {:?}",
        stats
            .charges
            .by_idempotency_key
            .values()
            .filter(|n| **n > 1)
            .count()
    );
    assert!(
        stats.faults.server_errors > 10,
        "faults were injected: {:?}",
        stats.faults
    );
    let told = announcements(&slack).await;
    assert_eq!(told.len(), 300, "every job announced");
    assert!(
        told.values().all(|n| *n == 1),
        "announced twice: {:?}",
        told.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );

    let status = std::process::Command::new(assert_cmd::cargo::cargo_bin("uncensored"))
        .args(["--json", "batch", "status", "--journal", &journal])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["done"], 300, "{status}");
    assert_eq!(status["left"], 0, "{status}");
    assert_eq!(status["batch"], "prompts.txt", "{status}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_batch_loses_and_pays_nothing() {
    let Some(pg) = postgres() else { return };
    let journal = pg.create_database("restarted");
    let emulator = emulator(0.0, 1_000_000).await;
    let dir = temp_dir("restarted");
    let file = batch_file(&dir, "prompts.txt", 150);
    let extra = ["--concurrency", "4"];
    let mut first = worker(&emulator, &dir, &file, &journal, &extra);
    let second = worker(&emulator, &dir, &file, &journal, &extra);
    let mut reader = progress(&mut first, 25).await;
    pg.restart();
    let rest = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
        rest
    });
    let (ok, stdout, _) = finish(first).await;
    let log = rest.await.unwrap();
    assert!(ok, "{stdout}\n{log}");
    let (ok, stdout, stderr) = finish(second).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(images_in(&dir.join("images")), 150);
    assert_eq!(emulator.stats().charges.total, 150, "nothing paid twice");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_one_rate_limit_without_a_refusal() {
    let Some(pg) = postgres() else { return };
    let journal = pg.create_database("paced");
    // 30 lines at 6 per window: the workers spend 5 windows together, each
    // shortened to 2 seconds so that the test crosses 4 resets quickly.
    const PER_WINDOW: u32 = 6;
    let emulator = Emulator::start(Config {
        time_scale: 0.002,
        rate_limit_rpm: PER_WINDOW,
        rate_window_secs: 2,
        seed: 11,
        ..Config::default()
    })
    .await
    .unwrap();
    let dir = temp_dir("paced");
    let file = batch_file(&dir, "prompts.txt", 30);
    let extra = ["--concurrency", "4"];
    let workers: Vec<Child> = (0..3)
        .map(|_| worker(&emulator, &dir, &file, &journal, &extra))
        .collect();
    for child in workers {
        let (ok, stdout, stderr) = finish(child).await;
        assert!(ok, "{stdout}\n{stderr}");
    }
    let stats = emulator.stats();
    let statuses = stats
        .requests
        .values()
        .flat_map(|by_status| by_status.iter());
    let (mut requests, mut refused) = (0u64, 0u64);
    for (status, count) in statuses {
        requests += count;
        if *status == 429 {
            refused += count;
        }
    }
    assert_eq!(refused, 0, "no request refused: {:?}", stats.requests);
    assert_eq!(requests, 30, "one request a line: {:?}", stats.requests);
    assert_eq!(stats.charges.total, 30);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_journals_are_refused_before_anything_is_paid() {
    let Some(pg) = postgres() else { return };
    let emulator = emulator(0.0, 1_000_000).await;
    let dir = temp_dir("refused");
    let file = batch_file(&dir, "prompts.txt", 5);
    let journal = pg.create_database("refused");
    let (ok, stdout, stderr) = finish(worker(&emulator, &dir, &file, &journal, &[])).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(emulator.stats().charges.total, 5);

    // Nothing listens there; a password in the URL is never shown.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = format!("postgres://app:pg-secret-word@127.0.0.1:{port}/db");
    let unusable = format!("{journal}?sslmode=sometimes");
    let cases = [
        (unreachable.as_str(), file.clone(), "127.0.0.1"),
        (unusable.as_str(), file.clone(), "sslmode"),
    ];
    for (url, file, expected) in cases {
        let (ok, stdout, stderr) = finish(worker(&emulator, &dir, &file, url, &[])).await;
        assert!(!ok, "{stdout}");
        assert!(stderr.contains("--journal"), "{stderr}");
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
        assert!(
            !stderr.contains("pg-secret-word") && !stdout.contains("pg-secret-word"),
            "{stderr}"
        );
    }
    assert_eq!(emulator.stats().charges.total, 5, "nothing more paid");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_over_tls_is_checked_before_anything_is_paid() {
    let Some(pg) = uncensored_test_servers::postgres_tls() else {
        return;
    };
    let certificates = pg.certificates().unwrap();
    let emulator = emulator(0.0, 1_000_000).await;
    let dir = temp_dir("tls");
    let file = batch_file(&dir, "prompts.txt", 3);
    pg.create_database("tls_batch");
    let password = "tls-Batch-Pa55word";
    let url = pg
        .with_password("tls_worker", password)
        .replace("/postgres", "/tls_batch");
    pg.execute("postgres", "ALTER DATABASE tls_batch OWNER TO tls_worker");
    let journal = |ca: &Path| format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display());

    // The server's certificate is not of the CA trusted: refused, nothing paid.
    let other = journal(&certificates.other_ca);
    let (ok, stdout, stderr) = finish(worker(&emulator, &dir, &file, &other, &[])).await;
    assert!(!ok, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("--journal")
            && stderr.contains("sslmode=verify-full")
            && stderr.contains("not signed by a trusted root certificate"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(password) && !stdout.contains(password),
        "{stderr}"
    );
    assert_eq!(emulator.stats().charges.total, 0, "nothing paid");

    // The right CA: the journal and the shared pacer over TLS.
    let right = journal(&certificates.ca);
    let (ok, stdout, stderr) = finish(worker(&emulator, &dir, &file, &right, &[])).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(!stderr.contains(password), "{stderr}");
    assert_eq!(images_in(&dir.join("images")), 3);
    assert_eq!(emulator.stats().charges.total, 3);

    // What the URL does not say, libpq's variables do: here the system's
    // roots (which SSL_CERT_FILE names, as for OpenSSL), then another CA.
    for (roots, works) in [(&certificates.ca, true), (&certificates.other_ca, false)] {
        let mut rerun = worker_command(&emulator, &dir, &file, &url, &[]);
        rerun
            .env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", "system")
            .env("SSL_CERT_FILE", roots)
            .env_remove("SSL_CERT_DIR");
        let (ok, stdout, stderr) = finish(rerun.spawn().unwrap()).await;
        assert_eq!(ok, works, "{stdout}\n{stderr}");
        assert!(
            works
                || stderr.contains("sslmode=verify-full, the system's root certificates")
                    && stderr.contains("not signed by a trusted root certificate"),
            "{stderr}"
        );
    }
    assert_eq!(emulator.stats().charges.total, 3, "nothing paid twice");
    std::fs::remove_dir_all(dir).ok();
}

const CALLBACK_SECRET: &str = "replicas-share-this-callback-secret-0123456789";

/// `webhook serve --journal URL` on a free port: the child and its base URL.
async fn replica(
    emulator: &EmulatorHandle,
    dir: &Path,
    journal: &str,
    notify: &str,
) -> (
    Child,
    String,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("uncensored"));
    for (var, _) in std::env::vars() {
        if var.starts_with("UNCENSORED_") {
            command.env_remove(var);
        }
    }
    let mut child = command
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", "/nonexistent-config-dir")
        .env("UNCENSORED_CALLBACK_SECRET", CALLBACK_SECRET)
        .args([
            "--base-url",
            emulator.base_url(),
            "--api-key",
            "emulator-key",
        ])
        .args([
            "webhook",
            "serve",
            "--listen",
            &listen,
            "--journal",
            journal,
        ])
        .args([
            "--out",
            dir.join("images").to_str().unwrap(),
            "--notify",
            notify,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (first, lines) =
        tokio::task::spawn_blocking(move || (lines.next().unwrap().unwrap(), lines))
            .await
            .unwrap();
    assert_eq!(first, format!("http://{listen}/callback"));
    (child, first, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_given_every_callback_store_and_announce_each_job_once() {
    let Some(pg) = postgres() else { return };
    let journal = pg.create_database("replicas");
    let emulator = emulator(0.0, 1_000_000).await;
    let slack = slack().await;
    let dir = temp_dir("replicas");
    let notify = format!("slack:{}/hook", slack.uri());
    let (mut a, base_a, lines_a) = replica(&emulator, &dir, &journal, &notify).await;
    let (mut b, base_b, lines_b) = replica(&emulator, &dir, &journal, &notify).await;
    // Each replica reports the jobs it delivered, one line each.
    let (sender, mut delivered) = tokio::sync::mpsc::unbounded_channel::<String>();
    for lines in [lines_a, lines_b] {
        let sender = sender.clone();
        tokio::task::spawn_blocking(move || {
            for line in lines.map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
    }
    drop(sender);

    const JOBS: usize = 10;
    let client = uncensored::Client::builder()
        .base_url(emulator.base_url())
        .api_key("emulator-key")
        .build()
        .unwrap();
    let secret = uncensored::callback::CallbackSecret::new(CALLBACK_SECRET).unwrap();
    // Jobs are submitted as `generate --async` does: recorded in the shared
    // journal, each nonce bound to its job.
    let submitter = uncensored_deliver::callbacks::Submitter::new(
        client,
        uncensored_deliver::journal::open(&journal).await.unwrap(),
        secret,
        &base_a,
    )
    .unwrap();
    let http = reqwest::Client::new();
    for i in 0..JOBS {
        // The API calls replica A back; the same callback reaches replica B too.
        let request = uncensored::GenerateRequest::new(format!("shared prompt {i}"))
            .width(256)
            .height(256);
        let submitted = submitter.submit(&request).await.unwrap();
        let (signed, job_id) = (submitted.callback_url, submitted.job_id);
        let answer = http
            .post(signed.replace(&base_a, &base_b))
            .json(&serde_json::json!({"request_id": job_id, "status": "success", "result": {}}))
            .send()
            .await
            .unwrap();
        assert!(
            answer.status().is_success() || answer.status() == 503,
            "{}",
            answer.status()
        );
    }
    let mut stored = Vec::new();
    while stored.len() < JOBS {
        let line = delivered.recv().await.expect("a replica ended early");
        assert!(line.contains(" stored at "), "{line}");
        stored.push(line);
    }
    a.kill().unwrap();
    b.kill().unwrap();
    a.wait().unwrap();
    b.wait().unwrap();
    // Whatever the replicas printed after the tenth line: no more deliveries.
    while let Some(line) = delivered.recv().await {
        assert!(!line.contains(" stored at "), "stored twice: {line}");
    }
    assert_eq!(images_in(&dir.join("images")), JOBS, "each job stored once");
    let told = announcements(&slack).await;
    assert_eq!(told.len(), JOBS, "{told:?}");
    assert!(told.values().all(|n| *n == 1), "announced twice: {told:?}");
    assert_eq!(emulator.stats().charges.total, JOBS as u64);
    std::fs::remove_dir_all(dir).ok();
}
