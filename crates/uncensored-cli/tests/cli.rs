//! The `uncensored` binary, driven as a user would: help texts as snapshots,
//! the main job against the emulator, bad input, exit codes and JSON errors,
//! and batches that survive faults and SIGKILL.

mod support;
use support::uncensored;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use uncensored_emulator::{Config, Emulator, EmulatorHandle};

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("uncensored-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn images_in(dir: &Path) -> (usize, usize) {
    let (mut images, mut partial) = (0, 0);
    if let Ok(days) = std::fs::read_dir(dir) {
        for day in days
            .flatten()
            .filter(|d| d.path().is_dir() && !d.file_name().to_string_lossy().starts_with('.'))
        {
            for file in std::fs::read_dir(day.path()).unwrap().flatten() {
                let name = file.file_name().into_string().unwrap();
                images += usize::from(name.ends_with(".jpg"));
                partial += usize::from(name.ends_with(".part"));
            }
        }
    }
    (images, partial)
}

#[test]
fn every_help_text() {
    for args in [
        vec!["--help"],
        vec!["generate", "--help"],
        vec!["status", "--help"],
        vec!["wait", "--help"],
        vec!["download", "--help"],
        vec!["balance", "--help"],
        vec!["batch", "--help"],
        vec!["emulator", "--help"],
        vec!["gallery", "--help"],
        vec!["webhook", "serve", "--help"],
        vec!["config", "--help"],
        vec!["config", "show", "--help"],
        vec!["webhook", "--help"],
        vec!["mcp", "--help"],
    ] {
        let output = uncensored().args(&args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        let name = format!("help_{}", args.join("_").replace("--", ""));
        insta::assert_snapshot!(name, String::from_utf8(output.stdout).unwrap());
    }
}

#[test]
fn the_main_job_writes_a_jpeg_and_prints_its_path() {
    let dir = temp_dir("main");
    let output = uncensored()
        .current_dir(&dir)
        .args([
            "--emulator",
            "generate",
            "a lighthouse at dusk, oil painting",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    let path = dir.join(printed.trim());
    assert!(
        printed.trim().starts_with("images/") && printed.trim().ends_with(".jpg"),
        "{printed}"
    );
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF]);
    assert!(
        path.with_extension("jpg.json").exists(),
        "the metadata sidecar"
    );

    let json = uncensored()
        .current_dir(&dir)
        .args([
            "--emulator",
            "--json",
            "generate",
            "a forest",
            "--width",
            "512",
            "--height",
            "256",
        ])
        .output()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["sha256"].as_str().unwrap().len(), 64);
    assert!(value["location"].as_str().unwrap().ends_with(".jpg"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_input_names_the_flag_or_line_and_sends_nothing() {
    let dir = temp_dir("bad");
    let out = uncensored()
        .current_dir(&dir)
        .args(["--emulator", "generate", "p", "--width", "1001"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let error = String::from_utf8(out.stderr).unwrap();
    assert!(
        error.contains("--width") && error.contains("256 to 2048 and a multiple of 8"),
        "{error}"
    );

    let long = "x".repeat(2001);
    let out = uncensored()
        .current_dir(&dir)
        .args(["--emulator", "generate", &long])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("prompt"));

    let file = dir.join("batch.jsonl");
    std::fs::write(
        &file,
        "a fine prompt\n{\"prompt\": \"ok\"}\n{\"prompt\": \"broken\"\n",
    )
    .unwrap();
    let out = uncensored()
        .current_dir(&dir)
        .args(["--emulator", "batch", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    let error = String::from_utf8(out.stderr).unwrap();
    assert!(
        error.contains("batch.jsonl:3"),
        "the line is named: {error}"
    );
    std::fs::write(&file, "fine\n{\"prompt\": \"ok\", \"width\": 100}\n").unwrap();
    let out = uncensored()
        .current_dir(&dir)
        .args(["--emulator", "--json", "batch", file.to_str().unwrap()])
        .output()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["error"]["exit_code"], 6);
    assert!(
        value["error"]["message"]
            .as_str()
            .unwrap()
            .contains(":2: invalid `image_width`"),
        "{value}"
    );
    assert_eq!(
        images_in(&dir.join("images")),
        (0, 0),
        "nothing was generated"
    );

    let missing = uncensored()
        .current_dir(&dir)
        .args(["batch", "no-such-file.txt"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(6));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn errors_say_what_to_do_and_secrets_stay_masked() {
    let out = uncensored().args(["status", "abc"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let error = String::from_utf8(out.stderr).unwrap();
    assert!(error.contains("UNCENSORED_API_KEY"), "{error}");

    let secret = "sk-live-secret-0123456789";
    let out = uncensored()
        .env("UNCENSORED_API_KEY", secret)
        .env(
            "UNCENSORED_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .env("UNCENSORED_CALLBACK_SECRET", CALLBACK_SECRET)
        // Rotations in progress: the previous secrets never show either.
        .env(
            "UNCENSORED_WEBHOOK_SECRET_PREVIOUS",
            "whsec_C2VjcmV0LW5ldy1zZWNyZXQtbmV3LXNlY3JldA==",
        )
        .env(
            "UNCENSORED_CALLBACK_SECRET_PREVIOUS",
            "previous-callback-secret-0123456789abcdef",
        )
        .args(["config", "show"])
        .output()
        .unwrap();
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(
        !shown.contains(secret)
            && !shown.contains("MfKQ9r8GKYqr")
            && !shown.contains(&CALLBACK_SECRET[4..])
            && !shown.contains("VjcmV0LW5ldy1")
            && !shown.contains("callback-secret-0123"),
        "{shown}"
    );
    insta::assert_snapshot!("config_show", shown);

    let out = temp_dir("moderated");
    let moderated = uncensored()
        .args([
            "--emulator",
            "--json",
            "generate",
            "a forbidden-term",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(moderated.status.code(), Some(5));
    let value: serde_json::Value = serde_json::from_slice(&moderated.stdout).unwrap();
    assert_eq!(value["error"]["kind"], "moderation");
    assert_eq!(
        images_in(&out),
        (0, 0),
        "nothing is stored for a refused prompt"
    );
    assert!(
        value["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("change the prompt")
    );

    let unknown = uncensored()
        .args(["--emulator", "status", "no-such-job"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(7));
}

async fn faulty_emulator(fail_rate: f64, truncate_rate: f64) -> EmulatorHandle {
    let mut config = Config {
        time_scale: 0.002,
        rate_limit_rpm: 1_000_000,
        seed: 5,
        ..Config::default()
    };
    config.faults.fail_rate = fail_rate;
    config.faults.truncate_rate = truncate_rate;
    Emulator::start(config).await.unwrap()
}

fn batch_file(dir: &Path, lines: usize) -> PathBuf {
    let file = dir.join("prompts.txt");
    let text: String = (0..lines).map(|i| format!("prompt number {i}\n")).collect();
    std::fs::write(&file, text).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_line_batch_with_20_percent_faults_finishes_200_of_200() {
    let emulator = faulty_emulator(0.2, 0.0).await;
    let dir = temp_dir("faults");
    let file = batch_file(&dir, 200);
    let mut command = uncensored();
    command.current_dir(&dir).args([
        "--base-url",
        emulator.base_url(),
        "--api-key",
        "emulator-key",
        "batch",
        file.to_str().unwrap(),
        "--concurrency",
        "16",
    ]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("200 lines: 200 stored"), "{stdout}");
    assert_eq!(images_in(&dir.join("images")), (200, 0));
    let stats = emulator.stats();
    assert_eq!(stats.charges.total, 200);
    assert!(
        stats.faults.server_errors > 20,
        "the faults were injected: {:?}",
        stats.faults
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_killed_halfway_and_rerun_stores_200_files_for_200_charges() {
    let emulator = faulty_emulator(0.0, 0.0).await;
    let dir = temp_dir("kill");
    let file = batch_file(&dir, 200);
    let args = [
        "--base-url",
        emulator.base_url(),
        "--api-key",
        "emulator-key",
        "batch",
        file.to_str().unwrap(),
        "--concurrency",
        "8",
    ];
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("uncensored"))
        .current_dir(&dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        for _ in 0..100 {
            lines.next().expect("progress lines").unwrap();
        }
        lines
    })
    .await
    .unwrap();
    child.kill().unwrap(); // SIGKILL, halfway
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    drop(lines);

    let mut rerun = uncensored();
    rerun.current_dir(&dir).args(args);
    let output = tokio::task::spawn_blocking(move || rerun.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("the batch: 200 done, 0 failed, 0 left"),
        "{stdout}"
    );
    assert_eq!(
        images_in(&dir.join("images")),
        (200, 0),
        "200 files, no partial one"
    );
    assert_eq!(emulator.stats().charges.total, 200, "no line paid twice");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_download_leaves_no_partial_file() {
    let emulator = faulty_emulator(0.0, 1.0).await;
    let dir = temp_dir("cut");
    let mut command = uncensored();
    command.current_dir(&dir).args([
        "--base-url",
        emulator.base_url(),
        "--api-key",
        "emulator-key",
        "generate",
        "always cut short",
    ]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(8), // `download`: the image could not be downloaded
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(images_in(&dir.join("images")), (0, 0));
    assert!(
        emulator.stats().faults.truncated >= 2,
        "the download was retried"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// The callback secret of the tests (as `openssl rand -hex 32` would make one).
const CALLBACK_SECRET: &str = "5f0c1d8e2a7b4c9e8d3f6a1b0c2e4d6f8a9b7c5d3e1f0a2b4c6d8e0f1a3b5c7d";

/// The emulator's reads of jobs so far.
fn job_reads(emulator: &EmulatorHandle) -> u64 {
    emulator
        .stats()
        .requests
        .get("GET /v1/images/generation/jobs/{job_id}")
        .map(|by_status| by_status.values().sum())
        .unwrap_or(0)
}

/// `webhook serve` on a free loopback port, in `dir`, with `env`; its
/// callback URL (the first line) and the rest of its stdout.
async fn webhook_serve(
    emulator: &EmulatorHandle,
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    String,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    webhook_serve_on(emulator, dir, &format!("127.0.0.1:{port}"), args, env).await
}

/// `webhook serve` on `listen`.
async fn webhook_serve_on(
    emulator: &EmulatorHandle,
    dir: &Path,
    listen: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    String,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
) {
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("uncensored"));
    command.env_remove("UNCENSORED_CALLBACK_SECRET");
    command
        .current_dir(dir)
        .args([
            "--base-url",
            emulator.base_url(),
            "--api-key",
            "emulator-key",
        ])
        .args(["webhook", "serve", "--listen", listen])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut server = command.spawn().unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let (first, lines) = tokio::task::spawn_blocking(move || {
        let first = lines.next().unwrap().unwrap();
        (first, lines)
    })
    .await
    .unwrap();
    assert_eq!(first, format!("http://{listen}/callback"));
    (server, first, lines)
}

/// `generate --async --callback-url URL` with `env`; the job id it prints.
async fn generate_async(
    emulator: &EmulatorHandle,
    dir: &Path,
    url: &str,
    env: &[(&str, &str)],
) -> String {
    let mut generate = uncensored();
    generate
        .current_dir(dir)
        .args([
            "--base-url",
            emulator.base_url(),
            "--api-key",
            "emulator-key",
        ])
        .args(["generate", "called back", "--async", "--callback-url", url])
        .envs(env.iter().copied());
    let output = tokio::task::spawn_blocking(move || generate.output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_serve_delivers_callbacks_once_and_refuses_strangers() {
    let emulator = faulty_emulator(0.0, 0.0).await;
    let dir = temp_dir("serve");
    let env = [("UNCENSORED_CALLBACK_SECRET", CALLBACK_SECRET)];
    let (mut server, url, mut lines) = webhook_serve(&emulator, &dir, &[], &env).await;
    let http = reqwest::Client::new();
    let post = |url: String, job_id: &str| {
        http.post(url)
            .json(&serde_json::json!({"request_id": job_id, "status": "success", "result": {"image_url": "https://evil.example/x.jpg"}}))
            .send()
    };

    // Strangers: unsigned, or signed with a guessed tag, refused without a read.
    assert_eq!(
        post(url.clone(), "not-a-job-of-ours")
            .await
            .unwrap()
            .status(),
        404
    );
    let guessed = format!("{url}/{}.{}", "ab".repeat(16), "cd".repeat(32));
    assert_eq!(
        post(guessed, "not-a-job-of-ours").await.unwrap().status(),
        401
    );
    assert_eq!(job_reads(&emulator), 0);

    // A real async job: generate signs its own URL, the emulator calls it.
    let job_id = generate_async(&emulator, &dir, &url, &env).await;
    let stored = tokio::task::spawn_blocking(move || lines.next().unwrap().unwrap())
        .await
        .unwrap();
    assert!(
        stored.starts_with(&format!("{job_id} stored at images/")),
        "{stored}"
    );
    assert_eq!(job_reads(&emulator), 1, "one confirming read");
    // A URL signed with the same secret that no submission made (generate
    // recorded its own in the journal) is refused, without a read.
    let secret = uncensored::callback::CallbackSecret::new(CALLBACK_SECRET).unwrap();
    let unsubmitted = post(secret.callback_url(&url).unwrap().url, &job_id)
        .await
        .unwrap();
    assert_eq!(unsubmitted.status(), 404, "no submission made this URL");
    assert_eq!(job_reads(&emulator), 1);
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(images_in(&dir.join("images")), (1, 0), "stored once");
    assert_eq!(emulator.stats().charges.total, 1);
    std::fs::remove_dir_all(dir).ok();
}

/// The issue's scenarios through the binary: 3 jobs submitted by
/// `generate --async` while `webhook serve` is down, the API giving up on
/// their callbacks (two attempts); then the secret rotates and the service
/// comes up on the same folder and journal, with the old secret as a
/// previous one: its recovery stores every paid image, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_serve_recovers_callbacks_lost_while_it_was_down_across_a_rotation() {
    const JOBS: usize = 3;
    const NEW_SECRET: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
    let mut config = Config {
        time_scale: 0.002,
        rate_limit_rpm: 1_000_000,
        seed: 5,
        ..Config::default()
    };
    config.webhooks.max_attempts = 2;
    let emulator = Emulator::start(config).await.unwrap();
    let dir = temp_dir("serve-recovery");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://{listen}/callback");
    let old = [("UNCENSORED_CALLBACK_SECRET", CALLBACK_SECRET)];
    let mut jobs = std::collections::BTreeSet::new();
    for _ in 0..JOBS {
        jobs.insert(generate_async(&emulator, &dir, &url, &old).await);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while emulator.stats().webhooks.failures < JOBS as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "the API gives up on the callbacks"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(images_in(&dir.join("images")), (0, 0));

    let rotated = [
        ("UNCENSORED_CALLBACK_SECRET", NEW_SECRET),
        ("UNCENSORED_CALLBACK_SECRET_PREVIOUS", CALLBACK_SECRET),
    ];
    let (mut server, _url, mut lines) = webhook_serve_on(
        &emulator,
        &dir,
        &listen,
        &["--recovery-grace", "0s"],
        &rotated,
    )
    .await;
    let stored = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tokio::task::spawn_blocking(move || {
            (0..JOBS)
                .map(|_| lines.next().unwrap().unwrap())
                .collect::<Vec<_>>()
        }),
    )
    .await
    .expect("every lost job is stored within 60 s")
    .unwrap();
    let stored_jobs: std::collections::BTreeSet<String> = stored
        .iter()
        .map(|line| {
            let (job, rest) = line.split_once(' ').unwrap();
            assert!(rest.starts_with("stored at images/"), "{line}");
            job.to_string()
        })
        .collect();
    assert_eq!(stored_jobs, jobs, "every paid image stored");
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(
        images_in(&dir.join("images")),
        (JOBS, 0),
        "each stored once"
    );
    assert_eq!(emulator.stats().charges.total, JOBS as u64);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_serve_with_accept_unsigned_works_as_before() {
    let emulator = faulty_emulator(0.0, 0.0).await;
    let dir = temp_dir("serve-unsigned");
    let (mut server, url, mut lines) =
        webhook_serve(&emulator, &dir, &["--accept-unsigned"], &[]).await;
    let stranger = reqwest::Client::new()
        .post(&url)
        .json(&serde_json::json!({"request_id": "not-a-job-of-ours", "status": "success"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status().as_u16(), 404, "read, and refused");
    let job_id = generate_async(&emulator, &dir, &url, &[]).await;
    let stored = tokio::task::spawn_blocking(move || lines.next().unwrap().unwrap())
        .await
        .unwrap();
    assert!(
        stored.starts_with(&format!("{job_id} stored at images/")),
        "{stored}"
    );
    let again = reqwest::Client::new()
        .post(&url)
        .json(&serde_json::json!({"request_id": job_id, "status": "success"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 200);
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(images_in(&dir.join("images")), (1, 0), "stored once");
    assert_eq!(emulator.stats().charges.total, 1);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn webhook_serve_without_a_secret_refuses_to_start_and_never_shows_one() {
    let dir = temp_dir("serve-refused");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        uncensored()
            .current_dir(&dir)
            .args(["--emulator"])
            .args(args)
            .envs(env.iter().copied())
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap()
    };
    let serve = ["webhook", "serve", "--listen", "127.0.0.1:0"];
    let refused = run(&serve, &[]);
    assert_eq!(refused.status.code(), Some(6));
    let error = String::from_utf8(refused.stderr).unwrap();
    assert!(
        error.contains("UNCENSORED_CALLBACK_SECRET") && error.contains("--accept-unsigned"),
        "{error}"
    );
    let json = run(&["--json", "webhook", "serve"], &[]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["error"]["exit_code"], 6);

    // A weak secret is refused by every command, and never echoed.
    let weak = "weak-callback-secret";
    for args in [&serve[..], &["config", "show"][..]] {
        let out = run(args, &[("UNCENSORED_CALLBACK_SECRET", weak)]);
        assert_eq!(out.status.code(), Some(6), "{args:?}");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("UNCENSORED_CALLBACK_SECRET"), "{text}");
        assert!(!text.contains(weak), "{text}");
    }
    // A weak previous secret is refused too, never echoed.
    let out = run(
        &["config", "show"],
        &[
            ("UNCENSORED_CALLBACK_SECRET", CALLBACK_SECRET),
            ("UNCENSORED_CALLBACK_SECRET_PREVIOUS", weak),
        ],
    );
    assert_eq!(out.status.code(), Some(6));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("UNCENSORED_CALLBACK_SECRET_PREVIOUS"),
        "{text}"
    );
    assert!(
        !text.contains(weak) && !text.contains(&CALLBACK_SECRET[4..]),
        "{text}"
    );
    // A good one never shows in a command's output or errors either.
    let generate = run(
        &[
            "--json",
            "generate",
            "x",
            "--async",
            "--callback-url",
            "ftp://nowhere.example",
        ],
        &[("UNCENSORED_CALLBACK_SECRET", CALLBACK_SECRET)],
    );
    assert_eq!(generate.status.code(), Some(6));
    let text = String::from_utf8_lossy(&generate.stdout);
    assert!(text.contains("--callback-url"), "{text}");
    assert!(!text.contains(&CALLBACK_SECRET[4..]), "{text}");
    std::fs::remove_dir_all(dir).ok();
}

/// Splits a shell line into words (double and single quotes, no escapes).
fn words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut any) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any {
                    words.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            (_, c) => {
                word.push(c);
                any = true;
            }
        }
    }
    if any {
        words.push(word);
    }
    words
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_shell_examples_run_against_the_emulator() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let mut commands = Vec::new();
    let mut in_shell = false;
    for line in readme.lines() {
        match line.trim() {
            "```sh" => in_shell = true,
            "```" => in_shell = false,
            text if in_shell && text.starts_with("uncensored ") => commands.push(text.to_string()),
            _ => {}
        }
    }
    assert!(commands.len() >= 7, "{commands:?}");

    let emulator = faulty_emulator(0.0, 0.0).await;
    let slack = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let dir = temp_dir("readme");
    std::fs::write(
        dir.join("prompts.txt"),
        "a lighthouse\n{\"prompt\": \"a forest\", \"model\": \"model-pro\"}\n",
    )
    .unwrap();
    let mut job_id = String::new();
    for command in commands {
        // Loopback stand-ins for the README's placeholders; nothing leaves the machine.
        let text = command
            .replace(
                "https://hooks.slack.com/services/...",
                &format!("{}/services/T/B/x", slack.uri()),
            )
            .replace("JOB_ID", &job_id)
            .replace(
                "s3://my-bucket/images",
                &format!("file://{}", dir.join("served").display()),
            );
        let mut args = words(&text);
        args.remove(0);
        let mut full = vec![
            "--base-url".to_string(),
            emulator.base_url().to_string(),
            "--api-key".into(),
            "emulator-key".into(),
        ];
        full.extend(args.clone());
        // Servers: started, their first line (the URL) read, then stopped.
        let gallery = args.first().map(String::as_str) == Some("gallery")
            || args.iter().any(|a| a == "--gallery");
        if args.first().map(String::as_str) == Some("webhook") || gallery {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut full: Vec<String> = full
                .iter()
                .map(|a| a.replace("127.0.0.1:8787", &format!("127.0.0.1:{port}")))
                .collect();
            if gallery {
                let flag = if args[0] == "gallery" {
                    "--listen"
                } else {
                    "--gallery-listen"
                };
                full.extend([flag.to_string(), format!("127.0.0.1:{port}")]);
            }
            let mut server = std::process::Command::new(assert_cmd::cargo::cargo_bin("uncensored"))
                .current_dir(&dir)
                .args(&full)
                .env("UNCENSORED_CALLBACK_SECRET", CALLBACK_SECRET)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let stdout = server.stdout.take().unwrap();
            let first = tokio::task::spawn_blocking(move || {
                BufReader::new(stdout).lines().next().unwrap().unwrap()
            })
            .await
            .unwrap();
            if gallery {
                assert_eq!(first, format!("http://127.0.0.1:{port}/"), "{command}");
            } else {
                assert!(first.ends_with("/callback"), "{command}: {first}");
            }
            server.kill().unwrap();
            server.wait().unwrap();
            continue;
        }
        let mut cli = uncensored();
        // The README's `export UNCENSORED_CALLBACK_SECRET=...`.
        cli.current_dir(&dir)
            .args(&full)
            .env("UNCENSORED_CALLBACK_SECRET", CALLBACK_SECRET);
        let output = tokio::task::spawn_blocking(move || cli.output().unwrap())
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if args.iter().any(|a| a == "--async") {
            job_id = String::from_utf8(output.stdout).unwrap().trim().to_string();
        }
    }
    assert!(
        !job_id.is_empty(),
        "the README shows an async job to follow"
    );
    assert!(
        slack.received_requests().await.unwrap().len() >= 2,
        "the batch announced its lines"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// The process id at the end of a worker's name.
fn batch_pid(worker: &str) -> u32 {
    worker
        .rsplit('-')
        .next()
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no process id in {worker}"))
}

#[test]
fn outputs_people_and_programs_read() {
    let dir = temp_dir("outputs");
    std::fs::write(
        dir.join("two.txt"),
        "a lighthouse\n# a comment\n\na forest\n",
    )
    .unwrap();
    let run = |args: &[&str]| uncensored().current_dir(&dir).args(args).output().unwrap();

    let batch = run(&["--emulator", "batch", "two.txt"]);
    assert!(batch.status.success());
    insta::assert_snapshot!(
        "batch_summary_human",
        String::from_utf8(batch.stdout).unwrap()
    );
    let batch = run(&["--emulator", "--json", "batch", "two.txt"]);
    let mut summary: serde_json::Value = serde_json::from_slice(&batch.stdout).unwrap();
    let worker = summary["worker"].as_str().unwrap_or_default().to_string();
    assert!(
        worker.ends_with(&format!("-{}", batch_pid(&worker))),
        "the worker is named by its host and process: {worker}"
    );
    summary["worker"] = "HOST-PID".into();
    insta::assert_snapshot!("batch_summary_json", summary.to_string());

    let moderated = run(&["--emulator", "generate", "a forbidden-term"]);
    insta::assert_snapshot!(
        "moderated_human",
        String::from_utf8(moderated.stderr).unwrap()
    );
    let moderated = run(&["--emulator", "--json", "generate", "a forbidden-term"]);
    insta::assert_snapshot!(
        "moderated_json",
        String::from_utf8(moderated.stdout).unwrap()
    );

    let no_key = run(&["status", "job-1"]);
    insta::assert_snapshot!("no_key_human", String::from_utf8(no_key.stderr).unwrap());
    let no_key = run(&["--json", "status", "job-1"]);
    insta::assert_snapshot!("no_key_json", String::from_utf8(no_key.stdout).unwrap());
    std::fs::remove_dir_all(dir).ok();
}
