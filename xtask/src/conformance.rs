//! Conformance of the emulator with openapi.yaml, judged by schemathesis: it
//! generates requests from the spec (valid and invalid), sends them to a fresh
//! emulator, and checks every answer against the spec.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::tools::{self, EmulatorProcess};

/// Pinned schemathesis (PyPI).
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// Generated cases per operation (the fuzzing phase).
const CASES_PER_OPERATION: &str = "200";
/// The operations of openapi.yaml, as the emulator's statistics name them.
const OPERATIONS: &[&str] = &[
    "POST /v1/images/generations",
    "GET /v1/images/generation/jobs/{job_id}",
];

/// Builds the emulator, starts it, runs schemathesis against it, and stops it.
pub fn run(root: &Path, cargo: &mut Command) -> Result<()> {
    let venv = tools::python_venv(root, "schemathesis", &[SCHEMATHESIS])?;
    let work = tools::target_dir(root).join("schemathesis");
    std::fs::create_dir_all(&work)?;
    let emulator = EmulatorProcess::build_and_start(
        root,
        cargo,
        &[
            "--time-scale",
            "0",
            "--rate-limit",
            "1000000",
            "--seed",
            "1",
        ],
        work.join("emulator.log"),
    )?;
    let outcome = tools::run(
        Command::new(venv.join("bin/st"))
            .arg("--config-file")
            .arg(root.join("xtask/schemathesis.toml"))
            .arg("run")
            .arg(root.join("openapi.yaml"))
            .args(["--url", &emulator.base_url])
            .args(["--header", "x-api-key: emulator-key"])
            .args(["--max-examples", CASES_PER_OPERATION])
            .args(["--phases", "examples,coverage,fuzzing,stateful"])
            .args([
                "--seed",
                "42",
                "--workers",
                "2",
                "--request-timeout",
                "10",
                "--no-color",
            ])
            .arg("--report")
            .arg("junit")
            .arg("--report-junit-path")
            .arg(work.join("junit.xml"))
            .current_dir(&work)
            .env("TTY_INTERACTIVE", "0")
            .env_remove("SCHEMATHESIS_BASE_URL")
            .env_remove("SCHEMATHESIS_ORIGIN")
            .env_remove("SCHEMATHESIS_HOOKS"),
    )
    .context("schemathesis found answers of the emulator that break openapi.yaml");
    let stopped = emulator.stop();
    outcome?;
    let stats = stopped?;
    // Schemathesis caps cases per operation; check the emulator really saw at
    // least that many, and never answered 5xx (no faults are injected here).
    let minimum: u64 = CASES_PER_OPERATION.parse().expect("a number");
    for operation in OPERATIONS {
        let statuses = stats["requests"][operation]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let total: u64 = statuses
            .values()
            .filter_map(serde_json::Value::as_u64)
            .sum();
        let server_errors: u64 = statuses
            .iter()
            .filter(|(status, _)| status.starts_with('5'))
            .filter_map(|(_, count)| count.as_u64())
            .sum();
        println!(
            "conformance: {operation}: {total} requests, statuses {}",
            serde_json::Value::Object(statuses)
        );
        if total < minimum {
            bail!(
                "schemathesis sent only {total} requests to {operation}; at least {minimum} are required"
            );
        }
        if server_errors > 0 {
            bail!("the emulator answered {server_errors} requests to {operation} with 5xx");
        }
    }
    Ok(())
}
