//! The SDK's requests through Prism's validating proxy for openapi.yaml, in
//! front of the emulator: an independent judge of both sides of the wire.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::tools::{self, EmulatorProcess};

/// Starts the emulator and Prism's proxy, runs the SDK's conformance test
/// through it, and fails on any violation Prism reports.
pub fn run(root: &Path, cargo: impl Fn() -> Command) -> Result<()> {
    let prism = tools::ensure_prism(root)?;
    let work = tools::target_dir(root).join("prism-proxy");
    std::fs::create_dir_all(&work)?;
    let emulator = EmulatorProcess::build_and_start(
        root,
        &mut cargo(),
        &["--time-scale", "0.001", "--rate-limit", "100000"],
        work.join("emulator.log"),
    )?;
    let port = tools::free_port()?;
    let log = work.join("prism.log");
    let mut proxy = tools::start_prism(
        &prism,
        &["proxy", "--errors"],
        &[&emulator.base_url],
        root,
        port,
        &log,
    )
    .context("Prism's proxy did not start")?;
    let outcome = tools::run_tests(
        cargo()
            .args([
                "test",
                "--package",
                "uncensored",
                "--test",
                "through_prism",
                "--",
                "--ignored",
            ])
            .env("UNCENSORED_PRISM_URL", format!("http://127.0.0.1:{port}")),
    );
    let _ = proxy.kill();
    let _ = proxy.wait();
    let stopped = emulator.stop();
    let prism_log = std::fs::read_to_string(&log).unwrap_or_default();
    let violations: Vec<&str> = prism_log
        .lines()
        .filter(|line| line.to_lowercase().contains("violation"))
        .collect();
    let counts = outcome.with_context(|| {
        format!("the SDK failed through Prism's proxy; Prism's log:\n{prism_log}")
    })?;
    stopped?;
    if !violations.is_empty() {
        bail!(
            "Prism reported {} violation(s):\n{}",
            violations.len(),
            violations.join("\n")
        );
    }
    if counts.passed == 0 {
        bail!("no test ran through Prism's proxy");
    }
    println!(
        "prism proxy: {} test(s) passed with no violation",
        counts.passed
    );
    Ok(())
}
