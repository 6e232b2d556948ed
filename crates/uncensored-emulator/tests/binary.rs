//! The `uncensored-emulator` binary: its first line is the base URL, it serves
//! the API there, and it exits cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_uncensored-emulator");

#[test]
fn help_names_the_default_key() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("emulator-key"), "{help}");
    for flag in [
        "--seed",
        "--fail-rate",
        "--truncate-rate",
        "--drop-rate",
        "--duplicate-webhook-rate",
        "--failed-job-rate",
        "--latency-ms",
        "--rate-limit",
        "--time-scale",
        "--config",
        "--listen",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn a_bad_flag_value_is_refused_before_listening() {
    let output = Command::new(BIN)
        .args(["--fail-rate", "2"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8(output.stderr).unwrap();
    assert!(error.contains("fail_rate"), "{error}");
}

#[test]
fn prints_its_base_url_serves_and_stops_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--time-scale", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first.trim().to_string();
    assert!(
        base.starts_with("http://127.0.0.1:") && base.ends_with("/api"),
        "{base}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        let client = uncensored_api::Client::with_api_key(&base, "emulator-key").unwrap();
        let body = uncensored_api::types::GenerateImageRequest::builder().prompt("from the binary");
        client
            .generate_image()
            .body(body)
            .send()
            .await
            .unwrap()
            .status
            .clone()
    });
    assert_eq!(status.as_str(), "completed");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "SIGTERM must end it cleanly: {exit}");
}
