//! `uncensored mcp` driven by MCP clients nobody here wrote, installed by
//! `cargo xtask test`: the official Python SDK (`mcp` from PyPI), one client
//! process per transport running every check of `mcp_client.py`, and the
//! official TypeScript SDK (`@modelcontextprotocol/sdk` from npm, the client
//! of most MCP hosts), which validates every tool result against the tool's
//! output schema, errors included (`mcp_ts_client.mjs`).

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_client.py");
const TS_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_ts_client.mjs");
/// Recognisable secrets that must never appear in a message or a log line.
const API_KEY: &str = "sk-mcp-test-3f9a7c1e5b2d4a6f8e0c";
const WEBHOOK_SECRET: &str = "whsec-mcp-test-9d8c7b6a5f4e3d2c1b0a";
const CALLBACK_SECRET: &str = "cbsec-mcp-test-0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d";

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("uncensored-mcp-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), "").unwrap();
    dir
}

/// Runs the client script; its last stdout line is the JSON summary.
fn client(python: &Path, args: &[String]) -> Value {
    let output = Command::new(python)
        .arg(SCRIPT)
        .args(args)
        .output()
        .expect("the MCP client starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the MCP client failed:\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.lines().last().expect("a summary line")).expect("a JSON summary")
}

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "a secret appeared in {what}");
    }
}

#[test]
fn stdio_with_the_in_process_emulator() {
    let Some(python) = uncensored_test_servers::mcp_python() else {
        return;
    };
    let dir = temp_dir("stdio");
    let errlog = dir.join("stderr.log");
    // The in-process emulator takes only its own key, so the secrets shown
    // to the server here are the signing secrets (and that key).
    let secrets = json!({
        "UNCENSORED_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "UNCENSORED_CALLBACK_SECRET": CALLBACK_SECRET,
        "api_key": uncensored_emulator::DEFAULT_KEY,
    });
    let mut args = vec![
        "stdio".to_string(),
        secrets.to_string(),
        errlog.display().to_string(),
        env!("CARGO_BIN_EXE_uncensored").to_string(),
    ];
    args.extend(
        [
            "--emulator",
            "--verbose",
            "--config",
            &dir.join("config.toml").display().to_string(),
            "mcp",
            "--out",
            &dir.join("images").display().to_string(),
        ]
        .map(String::from),
    );
    let summary = client(&python, &args);
    assert!(summary["messages"].as_u64().unwrap() > 10, "{summary}");
    let log = std::fs::read_to_string(&errlog).unwrap();
    assert!(!log.is_empty(), "--verbose logs something to check");
    assert_no_secret(
        "the server's stderr",
        &log,
        &[
            WEBHOOK_SECRET,
            CALLBACK_SECRET,
            uncensored_emulator::DEFAULT_KEY,
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn streamable_http_against_an_emulator_with_its_own_key() {
    let Some(python) = uncensored_test_servers::mcp_python() else {
        return;
    };
    let mut config = uncensored_emulator::Config::default();
    config.keys[0].key = API_KEY.into();
    let emulator = uncensored_emulator::Emulator::start(config).await.unwrap();
    let dir = temp_dir("http");
    let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_uncensored"))
        .args(["--verbose", "--base-url", emulator.base_url(), "--config"])
        .arg(dir.join("config.toml"))
        .args(["mcp", "--http", "127.0.0.1:0", "--out"])
        .arg(dir.join("images"))
        .env("UNCENSORED_API_KEY", API_KEY)
        .env("UNCENSORED_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("XDG_CONFIG_HOME", &dir)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut url = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "first line: {url:?}");
    let secrets = json!({"api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET});
    let args = vec![
        "http".to_string(),
        secrets.to_string(),
        url.trim().to_string(),
    ];
    let summary = tokio::task::spawn_blocking(move || client(&python, &args))
        .await
        .unwrap();
    server.kill().unwrap();
    server.wait().unwrap();

    // Nothing was paid for refused input, and nothing twice.
    let stats = emulator.stats();
    assert_eq!(
        stats.charges.total,
        summary["charged"].as_u64().unwrap(),
        "{stats:?}"
    );
    assert!(
        stats.charges.by_idempotency_key.values().all(|n| *n == 1),
        "a double charge: {stats:?}"
    );
    let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    assert!(!log.is_empty(), "--verbose logs something to check");
    assert_no_secret("the server's stderr", &log, &[API_KEY, WEBHOOK_SECRET]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the TypeScript client script; its last stdout line is the JSON summary.
fn ts_client(sdk: &Path, args: &[String]) -> Value {
    let output = Command::new("node")
        .arg(TS_SCRIPT)
        .args(args)
        .env("UNCENSORED_MCP_TS_SDK", sdk)
        .stdin(Stdio::null())
        .output()
        .expect("node starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the TypeScript MCP client failed:\n{stdout}\n{stderr}"
    );
    serde_json::from_str(stdout.lines().last().expect("a summary line")).expect("a JSON summary")
}

/// The arguments that start `uncensored --emulator mcp` on a scratch folder.
fn emulator_mcp(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--emulator".to_string(),
        "--config".to_string(),
        dir.join("config.toml").display().to_string(),
        "mcp".to_string(),
        "--out".to_string(),
        dir.join("images").display().to_string(),
    ];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    args
}

/// Every tool error reaches the TypeScript SDK as a tool result with its
/// structured failure, never as the protocol error its output-schema check
/// raises for content that does not match.
#[test]
fn typescript_sdk_over_stdio() {
    let Some(sdk) = uncensored_test_servers::mcp_ts_sdk() else {
        return;
    };
    let dir = temp_dir("ts-stdio");
    let mut args = vec![
        "stdio".to_string(),
        env!("CARGO_BIN_EXE_uncensored").to_string(),
    ];
    args.extend(emulator_mcp(&dir, &[]));
    let summary = ts_client(&sdk, &args);
    assert_eq!(summary["tool_errors"], 6, "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same checks over Streamable HTTP.
#[test]
fn typescript_sdk_over_streamable_http() {
    let Some(sdk) = uncensored_test_servers::mcp_ts_sdk() else {
        return;
    };
    let dir = temp_dir("ts-http");
    let mut server = Command::new(env!("CARGO_BIN_EXE_uncensored"))
        .args(emulator_mcp(&dir, &["--http", "127.0.0.1:0"]))
        .env("XDG_CONFIG_HOME", &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut url = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let outcome = std::panic::catch_unwind(|| {
        assert!(url.starts_with("http://127.0.0.1:"), "first line: {url:?}");
        ts_client(&sdk, &["http".to_string(), url.trim().to_string()])
    });
    server.kill().unwrap();
    server.wait().unwrap();
    let summary = outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert_eq!(summary["tool_errors"], 6, "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}
