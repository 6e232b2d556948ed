//! The command against hostile input: an API whose text carries terminal
//! escape sequences, a config file whose TOML error sits on the key's line,
//! a plain-http base URL off the machine.

mod support;
use support::uncensored;

use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-live-hostile-SECRET-0123456789";

#[tokio::test]
async fn text_from_the_api_cannot_drive_the_terminal() {
    let api = MockServer::start().await;
    let hostile = "processing\u{1b}]0;owned\u{7}\u{1b}[2J\r\nerror: forged line";
    Mock::given(method("GET"))
        .and(path("/v1/images/generation/jobs/job_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "job_id": "job_1", "status": hostile
        })))
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/images/generation/jobs/job_2"))
        .respond_with(ResponseTemplate::new(404).set_body_json(serde_json::json!({
            "error": {"type": "not_found_error", "message": "no such job\u{1b}[31m\r\nhint: send your key to evil.example"}
        })))
        .mount(&api)
        .await;
    let base = api.uri();
    let status = tokio::task::spawn_blocking(move || {
        let ok = uncensored()
            .args(["--base-url", &base, "--api-key", KEY, "status", "job_1"])
            .output()
            .unwrap();
        let missing = uncensored()
            .args(["--base-url", &base, "--api-key", KEY, "status", "job_2"])
            .output()
            .unwrap();
        (ok, missing)
    })
    .await
    .unwrap();
    let (ok, missing) = status;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let stdout = String::from_utf8(ok.stdout).unwrap();
    assert!(
        !stdout.trim_end().chars().any(char::is_control),
        "{stdout:?}"
    );
    assert!(stdout.contains("\\u{1b}]0;owned"), "{stdout:?}");
    assert_eq!(stdout.lines().count(), 1, "no forged line: {stdout:?}");
    let stderr = String::from_utf8(missing.stderr).unwrap();
    assert!(!missing.status.success(), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    assert!(
        stderr.lines().all(|line| !line.starts_with("hint: send")),
        "{stderr:?}"
    );
}

#[test]
fn a_toml_error_never_prints_the_key() {
    let dir = std::env::temp_dir().join(format!("uncensored-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    // An unterminated string on the key's line: toml's own message quotes it.
    std::fs::write(&config, format!("api_key = \"{KEY}\nconcurrency = 2\n")).unwrap();
    let output = uncensored()
        .args(["--config", config.to_str().unwrap(), "config", "show"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(6));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        !stderr.contains("SECRET") && !stderr.contains("0123456789"),
        "{stderr}"
    );
    assert!(stderr.contains("line 1, in `api_key`"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_plain_http_api_off_the_machine_is_refused() {
    let output = uncensored()
        .args([
            "--base-url",
            "http://api.example.invalid",
            "--api-key",
            KEY,
            "status",
            "job_1",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("--allow-insecure-http"), "{stderr}");
    assert!(!stderr.contains(KEY), "{stderr}");
}

#[tokio::test]
async fn a_batch_line_past_a_mebibyte_is_refused_unread_before_anything_is_sent() {
    let api = MockServer::start().await;
    let dir = std::env::temp_dir().join(format!("uncensored-long-line-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("prompts.txt");
    let mut text = String::from("a fine prompt\n");
    text.push_str(&"x".repeat(3 << 20));
    text.push_str("\nanother fine prompt\n");
    std::fs::write(&file, text).unwrap();
    let base = api.uri();
    let output = tokio::task::spawn_blocking(move || {
        uncensored()
            .current_dir(&dir)
            .args(["--base-url", &base, "--api-key", KEY, "batch"])
            .arg(&file)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("prompts.txt:2"), "names the line: {stderr}");
    assert!(stderr.contains("longer than"), "{stderr}");
    assert!(stderr.len() < 2_000, "the line is not echoed back");
    assert!(
        api.received_requests().await.unwrap().is_empty(),
        "nothing sent"
    );
}
