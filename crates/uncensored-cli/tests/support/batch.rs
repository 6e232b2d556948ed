//! What the batch tests share: a batch file, the emulator, `uncensored
//! batch` as a child process with its progress read as it goes, the images
//! it stored, a Slack receiver that counts announcements, PostgreSQL.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use uncensored_emulator::{Config, Emulator, EmulatorHandle};
use uncensored_test_servers::Postgres;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "uncensored-cli-shared-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn batch_file(dir: &Path, name: &str, lines: usize) -> PathBuf {
    let file = dir.join(name);
    let text: String = (0..lines).map(|i| format!("shared prompt {i}\n")).collect();
    std::fs::write(&file, text).unwrap();
    file
}

pub async fn emulator(fail_rate: f64, rpm: u32) -> EmulatorHandle {
    let mut config = Config {
        time_scale: 0.002,
        rate_limit_rpm: rpm,
        seed: 11,
        ..Config::default()
    };
    config.faults.fail_rate = fail_rate;
    Emulator::start(config).await.unwrap()
}

/// `uncensored batch FILE --journal URL …` as a child process.
pub fn worker(
    emulator: &EmulatorHandle,
    dir: &Path,
    file: &Path,
    journal: &str,
    extra: &[&str],
) -> Child {
    worker_command(emulator, dir, file, journal, extra)
        .spawn()
        .unwrap()
}

/// The command of [`worker`], to add to before it starts.
pub fn worker_command(
    emulator: &EmulatorHandle,
    dir: &Path,
    file: &Path,
    journal: &str,
    extra: &[&str],
) -> std::process::Command {
    worker_as(emulator, "emulator-key", dir, file, journal, extra)
}

/// The command of [`worker`] with the API key `key`.
pub fn worker_as(
    emulator: &EmulatorHandle,
    key: &str,
    dir: &Path,
    file: &Path,
    journal: &str,
    extra: &[&str],
) -> std::process::Command {
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("uncensored"));
    for (var, _) in std::env::vars() {
        if var.starts_with("UNCENSORED_") {
            command.env_remove(var);
        }
    }
    command
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", "/nonexistent-config-dir")
        .args(["--base-url", emulator.base_url(), "--api-key", key])
        .args(["batch", file.to_str().unwrap(), "--journal", journal])
        .args(["--out", dir.join("images").to_str().unwrap()])
        // Small images: the emulator draws each one, and the tests are about
        // the journal, not about drawing.
        .args(["--width", "256", "--height", "256"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits for a worker; returns (success, stdout, stderr).
pub async fn finish(child: Child) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let output = child.wait_with_output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// Reads `count` progress lines of a worker's stderr (it has done that many lines).
pub async fn progress(child: &mut Child, count: usize) -> BufReader<std::process::ChildStderr> {
    let stderr = child.stderr.take().unwrap();
    tokio::task::spawn_blocking(move || {
        let mut reader = BufReader::new(stderr);
        let mut seen = 0;
        let mut line = String::new();
        while seen < count {
            line.clear();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "the worker ended early"
            );
            seen += usize::from(line.starts_with('['));
        }
        reader
    })
    .await
    .unwrap()
}

pub fn images_in(dir: &Path) -> usize {
    fn walk(dir: &Path, count: &mut usize) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with(".uncensored") {
                    walk(&path, count);
                }
            } else if path.extension().is_some_and(|e| e == "jpg" || e == "png") {
                *count += 1;
            }
        }
    }
    let mut count = 0;
    walk(dir, &mut count);
    count
}

pub async fn slack() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    server
}

/// Slack messages per line (a message quotes its prompt, unique per line).
pub async fn announcements(server: &MockServer) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for request in server.received_requests().await.unwrap() {
        let body = String::from_utf8_lossy(&request.body);
        let line = body
            .split("shared prompt ")
            .nth(1)
            .map(|rest| rest.chars().take_while(char::is_ascii_digit).collect())
            .unwrap_or_else(|| body.to_string());
        *counts.entry(line).or_insert(0) += 1;
    }
    counts
}

pub fn postgres() -> Option<Postgres> {
    uncensored_test_servers::postgres()
}

/// Waits for a worker; returns (exit code, stdout, stderr).
pub async fn outcome(child: Child) -> (Option<i32>, String, String) {
    tokio::task::spawn_blocking(move || {
        let output = child.wait_with_output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// The last JSON object a `--json` run printed on stdout.
pub fn summary(stdout: &str) -> serde_json::Value {
    stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON summary in {stdout}"))
}

/// Requests the emulator answered with `status`, on any route.
pub fn answered(emulator: &EmulatorHandle, status: u16) -> u64 {
    emulator
        .stats()
        .requests
        .values()
        .filter_map(|by_status| by_status.get(&status))
        .sum()
}
