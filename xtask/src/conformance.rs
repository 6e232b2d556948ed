//! Conformance of the emulator with openapi.yaml, judged by schemathesis: it
//! generates requests from the spec (valid and invalid), sends them to a fresh
//! emulator, and checks every answer against the spec. Several runs with
//! fixed seeds: one with every phase, then fuzzing with invalid data only
//! (what finds an emulator that accepts what the spec refuses) and with
//! valid data only.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::tools::{self, EmulatorProcess};

/// Pinned schemathesis (PyPI).
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// The emulator as schemathesis meets it: instant jobs, no effective rate
/// limit, a balance that never runs short (so `402` is never a valid answer
/// here), and no idempotency cache. Schemathesis sends one `Idempotency-Key`
/// (the spec's example, or a short generated one) with many different bodies;
/// with a cache those get `422 idempotency_key_reuse` before their body is
/// even validated, which once hid that `"quality": ""` was accepted.
const EMULATOR_CONFIG: &str = r#"# Written by `cargo xtask conformance`.
seed = 1
time_scale = 0.0
rate_limit_rpm = 1000000
idempotency_ttl_secs = 0

[[keys]]
key = "emulator-key"
name = "default"
balance = 1000000000000
"#;

/// The operation that changes what the others may answer: a spend limit set
/// by a generated request would make later generations rightly refused with
/// `402`. The runs before the last leave it out; the last tests it alone.
const LIMITS_OPERATION: &str = "set_billing_limits";

/// One schemathesis run.
struct Run {
    /// `--mode`: `all`, `negative` (invalid data only) or `positive`.
    mode: &'static str,
    /// `--phases`.
    phases: &'static str,
    /// `--seed`.
    seed: u64,
    /// `--max-examples`: generated cases per operation in the fuzzing phase.
    max_examples: u32,
    /// Whether this run tests [`LIMITS_OPERATION`] alone (else everything but it).
    limits_only: bool,
}

/// The runs, in order (the limits one last).
const RUNS: &[Run] = &[
    Run {
        mode: "all",
        phases: "examples,coverage,fuzzing,stateful",
        seed: 42,
        max_examples: 200,
        limits_only: false,
    },
    Run {
        mode: "negative",
        phases: "fuzzing",
        seed: 1,
        max_examples: 500,
        limits_only: false,
    },
    Run {
        mode: "negative",
        phases: "fuzzing",
        seed: 2,
        max_examples: 500,
        limits_only: false,
    },
    Run {
        mode: "negative",
        phases: "fuzzing",
        seed: 3,
        max_examples: 500,
        limits_only: false,
    },
    Run {
        mode: "positive",
        phases: "fuzzing",
        seed: 4,
        max_examples: 300,
        limits_only: false,
    },
    Run {
        mode: "all",
        phases: "examples,coverage,fuzzing",
        seed: 5,
        max_examples: 200,
        limits_only: true,
    },
];

/// The operations of openapi.yaml, as the emulator's statistics name them,
/// with the fewest requests schemathesis must have sent each: the runs ask
/// for 200 cases of an operation with inputs; one without any (the balance:
/// 9 requests measured, 5 of them the missing-key checks) has few to make.
const OPERATIONS: &[(&str, u64)] = &[
    ("POST /v1/images/generations", 200),
    ("GET /v1/images/generation/jobs/{job_id}", 200),
    ("GET /v1/billing/balance", 5),
    ("GET /v1/billing/transactions", 200),
    ("POST /v1/billing/estimate", 200),
    ("PUT /v1/billing/limits", 200),
];

/// Builds the emulator, starts it, runs schemathesis against it, and stops it.
pub fn run(root: &Path, cargo: &mut Command) -> Result<()> {
    let venv = tools::python_venv(root, "schemathesis", &[SCHEMATHESIS])?;
    let work = tools::target_dir(root).join("schemathesis");
    std::fs::create_dir_all(&work)?;
    let config = work.join("emulator.toml");
    std::fs::write(&config, EMULATOR_CONFIG)?;
    let config = config
        .to_str()
        .context("the target directory is not UTF-8")?;
    let emulator = EmulatorProcess::build_and_start(
        root,
        cargo,
        &["--config", config],
        work.join("emulator.log"),
    )?;

    let started = Instant::now();
    let mut failed = Vec::new();
    for (index, run) in RUNS.iter().enumerate() {
        let number = index + 1;
        let filter = if run.limits_only {
            "--include-operation-id"
        } else {
            "--exclude-operation-id"
        };
        let shown = format!(
            "--mode {} --phases {} --seed {} --max-examples {} {filter} {LIMITS_OPERATION}",
            run.mode, run.phases, run.seed, run.max_examples
        );
        println!("conformance: run {number}/{}: st run {shown}", RUNS.len());
        let began = Instant::now();
        let outcome = tools::run(
            Command::new(venv.join("bin/st"))
                .arg("--config-file")
                .arg(root.join("xtask/schemathesis.toml"))
                .arg("run")
                .arg(root.join("openapi.yaml"))
                .args(["--url", &emulator.base_url])
                .args(["--header", "x-api-key: emulator-key"])
                .args(["--mode", run.mode])
                .args(["--phases", run.phases])
                .args(["--seed", &run.seed.to_string()])
                .args(["--max-examples", &run.max_examples.to_string()])
                .args([filter, LIMITS_OPERATION])
                .args(["--workers", "2", "--request-timeout", "10", "--no-color"])
                .arg("--report")
                .arg("junit")
                .arg("--report-junit-path")
                .arg(work.join(format!("junit-{number}.xml")))
                .current_dir(&work)
                .env("TTY_INTERACTIVE", "0")
                .env_remove("SCHEMATHESIS_BASE_URL")
                .env_remove("SCHEMATHESIS_ORIGIN")
                .env_remove("SCHEMATHESIS_HOOKS"),
        );
        let verdict = if outcome.is_ok() { "passed" } else { "FAILED" };
        println!(
            "conformance: run {number}/{} {verdict} in {:.1} s",
            RUNS.len(),
            began.elapsed().as_secs_f64()
        );
        if outcome.is_err() {
            failed.push(format!("run {number} (st run {shown})"));
        }
    }
    println!(
        "conformance: {} schemathesis runs in {:.1} s",
        RUNS.len(),
        started.elapsed().as_secs_f64()
    );
    let stopped = emulator.stop();
    if !failed.is_empty() {
        bail!(
            "schemathesis found answers of the emulator that break openapi.yaml in {}",
            failed.join(", ")
        );
    }
    let stats = stopped?;
    // Schemathesis caps cases per operation; check the emulator really saw at
    // least as many as each operation's minimum, and never answered 5xx (no
    // faults are injected here).
    for (operation, minimum) in OPERATIONS {
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
        if total < *minimum {
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
