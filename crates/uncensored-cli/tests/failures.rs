//! Each failure of a delivery's own steps reported with its own reason and
//! exit code: a journal that cannot be written or reached is `journal` (12),
//! never `storage`; a storage that fails is `storage` (10), after the
//! store's own retries only.

mod support;

use std::path::PathBuf;

use uncensored_emulator::{Config, Emulator, EmulatorHandle};
use wiremock::matchers::{method, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn temp_dir(tag: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("uncensored-failures-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn emulator() -> EmulatorHandle {
    Emulator::start(Config {
        time_scale: 0.0,
        ..Config::default()
    })
    .await
    .unwrap()
}

/// Runs `uncensored --json ARGS` against `emulator`; returns the exit code
/// and the JSON error object.
async fn run(
    emulator: &EmulatorHandle,
    env: Vec<(String, String)>,
    args: Vec<String>,
) -> (Option<i32>, serde_json::Value) {
    let mut command = support::uncensored();
    for (var, _) in std::env::vars() {
        if var.starts_with("AWS_") {
            command.env_remove(var);
        }
    }
    command
        .args([
            "--json",
            "--base-url",
            emulator.base_url(),
            "--api-key",
            "emulator-key",
        ])
        .envs(env)
        .args(args);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    let value: serde_json::Value = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|value| value.get("error").is_some())
        .unwrap_or_else(|| panic!("no JSON error in {stdout:?}; stderr {stderr:?}"));
    (output.status.code(), value["error"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_cannot_be_written_or_reached_is_the_journals_failure() {
    let emulator = emulator().await;
    let dir = temp_dir("journal");
    let file = dir.join("prompts.txt");
    std::fs::write(&file, "a lighthouse at dusk\na harbour at noon\n").unwrap();
    // A journal under a regular file: no directory can be made there, not
    // even by root.
    let blocker = dir.join("not-a-directory");
    std::fs::write(&blocker, "a file").unwrap();
    let unwritable = blocker.join("journal.sqlite");
    // PostgreSQL stopped: nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let stopped = format!("postgres://app:pg-secret-word@127.0.0.1:{port}/db");
    for journal in [unwritable.display().to_string(), stopped] {
        let (code, error) = run(
            &emulator,
            Vec::new(),
            vec![
                "batch".into(),
                file.display().to_string(),
                "--journal".into(),
                journal.clone(),
                "--out".into(),
                dir.join("images").display().to_string(),
            ],
        )
        .await;
        assert_eq!(code, Some(12), "{journal}: {error}");
        assert_eq!(error["kind"], "journal", "{error}");
        assert_eq!(error["exit_code"], 12, "{error}");
        let hint = error["hint"].as_str().unwrap();
        assert!(
            hint.contains("check the journal") && !hint.contains("bucket"),
            "{hint}"
        );
        assert!(
            error["message"].as_str().unwrap().contains("--journal"),
            "{error}"
        );
        assert!(!error.to_string().contains("pg-secret-word"), "{error}");
    }
    assert_eq!(
        emulator.stats().charges.total,
        0,
        "a journal failure is found before anything is paid for"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// An S3 endpoint on loopback that lists an empty bucket (the storage check
/// passes), holds nothing (404) and fails every PUT with 503.
async fn s3_failing_puts() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(query_param("list-type", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>failing</Name><Prefix>images/</Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><Delimiter>/</Delimiter><IsTruncated>false</IsTruncated></ListBucketResult>"#,
        ))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    Mock::given(method("HEAD"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failing_during_a_delivery_is_the_storages_failure() {
    let emulator = emulator().await;
    let server = s3_failing_puts().await;
    let env = uncensored_test_servers::s3_options(&server.uri())
        .into_iter()
        .map(|(key, value)| (key.to_ascii_uppercase(), value))
        .collect();
    let (code, error) = run(
        &emulator,
        env,
        vec![
            "generate".into(),
            "a lighthouse at dusk".into(),
            "--store".into(),
            "s3://failing/images".into(),
        ],
    )
    .await;
    assert_eq!(code, Some(10), "{error}");
    assert_eq!(error["kind"], "storage", "{error}");
    assert!(
        error["hint"]
            .as_str()
            .unwrap()
            .contains("bucket or container exists"),
        "{error}"
    );
    assert!(
        !error
            .to_string()
            .contains(uncensored_test_servers::S3_SECRET_ACCESS_KEY),
        "{error}"
    );
    assert_eq!(
        emulator.stats().charges.total,
        1,
        "generated, then not stored"
    );
    let puts = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|request| request.method == wiremock::http::Method::PUT)
        .count();
    assert_eq!(
        puts,
        uncensored_deliver::storage::STORE_ATTEMPTS,
        "the store's retries only, none on top"
    );
}
