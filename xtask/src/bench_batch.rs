//! Batches at a rate ceiling, for `cargo xtask bench shared` and `cargo
//! xtask bench pace`: one run (worker processes of the release `uncensored
//! batch` against a fresh release emulator at a ceiling), what the
//! emulator's windows allow it at best (the physical limit), and their table.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::bench_shared::{CONCURRENCY, TIME_SCALE, utf8};
use crate::tools::EmulatorProcess;

/// One run of a batch at a ceiling.
pub(crate) struct SharedRun {
    pub(crate) workers: usize,
    pub(crate) lines: usize,
    pub(crate) rpm: u32,
    pub(crate) requests: u64,
    pub(crate) refused: u64,
    /// Requests per minute between the first and the last one.
    pub(crate) rate: f64,
    /// Seconds between the first and the last request the emulator's rate
    /// limiter saw.
    pub(crate) span: f64,
    /// Seconds from the first request of the last window to the last request.
    pub(crate) last_window: f64,
    pub(crate) seconds: f64,
    pub(crate) done: u64,
    pub(crate) charged: u64,
    pub(crate) peak_connections: u64,
}

impl SharedRun {
    /// The physical limit ([`physical_limit`]) of this run.
    pub(crate) fn limit(&self) -> f64 {
        physical_limit(self.lines, self.rpm, self.last_window)
    }

    /// The span as a ratio to the physical limit.
    pub(crate) fn ratio(&self) -> f64 {
        self.span / self.limit()
    }
}

/// The shortest time, in seconds, from the first to the last request of
/// `lines` requests at `rpm` per window, with the emulator's fixed 60-second
/// windows (each begins at the first request after the last one ended):
/// `ceil(lines / rpm) - 1` full windows, plus `last_window`, the time the
/// last window's requests took to send (measured: from the emulator's start
/// of that window to the last request).
pub(crate) fn physical_limit(lines: usize, rpm: u32, last_window: f64) -> f64 {
    let windows = lines.div_ceil(rpm.max(1) as usize);
    60.0 * windows.saturating_sub(1) as f64 + last_window
}

/// The emulator's configuration for the runs at a ceiling (given by
/// `--rate-limit`): the bench's key with credits enough.
pub(crate) fn ceiling_config(work: &Path) -> Result<PathBuf> {
    let config = work.join("emulator-ceiling.toml");
    std::fs::write(
        &config,
        "[[keys]]\nkey = \"emulator-key\"\nname = \"bench\"\nbalance = 1000000000000\n",
    )?;
    Ok(config)
}

/// A batch of the `lines` lines of `file` run by `workers` processes (the
/// release `uncensored batch`, on the PostgreSQL `journal` when given, else
/// each on its own SQLite journal beside the images) against a fresh
/// release emulator at `rpm` requests per minute.
#[allow(clippy::too_many_arguments)]
pub(crate) fn shared_run(
    workers: usize,
    (lines, rpm): (usize, u32),
    journal: Option<&str>,
    config: &Path,
    file: &Path,
    out: &Path,
    logs: &Path,
    release: &Path,
) -> Result<SharedRun> {
    shared_run_with(
        workers,
        (lines, rpm),
        journal,
        config,
        file,
        out,
        logs,
        release,
        CONCURRENCY,
    )
}

/// [`shared_run`] with each worker's `--concurrency`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn shared_run_with(
    workers: usize,
    (lines, rpm): (usize, u32),
    journal: Option<&str>,
    config: &Path,
    file: &Path,
    out: &Path,
    logs: &Path,
    release: &Path,
    concurrency: &str,
) -> Result<SharedRun> {
    std::fs::create_dir_all(logs)?;
    let ceiling = rpm;
    let rpm = rpm.to_string();
    let emulator = EmulatorProcess::start(
        &release.join("uncensored-emulator"),
        &[
            "--time-scale",
            TIME_SCALE,
            "--rate-limit",
            &rpm,
            "--seed",
            "11",
            "--config",
            utf8(config)?,
        ],
        logs.join("emulator.log"),
    )?;
    let bin = release.join("uncensored");
    let started = Instant::now();
    let children: Vec<(Child, PathBuf)> = (0..workers)
        .map(|i| {
            let log = logs.join(format!("worker{i}.log"));
            let mut command = uncensored(&bin);
            command
                .args(["--base-url", &emulator.base_url])
                .args(["--api-key", "emulator-key", "batch"])
                .arg(file)
                .args(
                    journal
                        .map(|journal| ["--journal", journal])
                        .into_iter()
                        .flatten(),
                )
                .arg("--out")
                .arg(out)
                .args(["--width", "256", "--height", "256"])
                .args(["--concurrency", concurrency])
                .stdout(std::fs::File::create(logs.join(format!("worker{i}.out")))?)
                .stderr(std::fs::File::create(&log)?);
            Ok((command.spawn().context("cannot start a worker")?, log))
        })
        .collect::<Result<_>>()?;
    let mut failed = Vec::new();
    for (mut child, log) in children {
        let status = child.wait()?;
        if !status.success() {
            failed.push(format!(
                "a worker failed ({status}):\n{}",
                tail(&std::fs::read_to_string(&log).unwrap_or_default())
            ));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let status = match journal {
        Some(journal) => {
            let status = uncensored(&bin)
                .args(["--json", "batch", "status", "--journal", journal])
                .output()
                .context("cannot run `uncensored batch status`")?;
            Some(status)
        }
        None => None,
    };
    let stats = emulator.stop()?;
    if let Some(failure) = failed.first() {
        bail!("{workers} workers: {failure}");
    }
    let done = match status {
        Some(status) => {
            let status: Value = serde_json::from_slice(&status.stdout)
                .context("`uncensored batch status --json` printed no JSON")?;
            status["done"].as_u64().unwrap_or(0)
        }
        // One process: every line charged once is a line done.
        None => stats["jobs"]["completed"].as_u64().unwrap_or(0),
    };
    let (mut requests, mut refused) = (0, 0);
    for by_status in stats["requests"]
        .as_object()
        .context("no requests in the emulator's statistics")?
        .values()
    {
        for (code, count) in by_status.as_object().into_iter().flatten() {
            let count = count.as_u64().unwrap_or(0);
            requests += count;
            if code == "429" {
                refused += count;
            }
        }
    }
    let span = &stats["rate_limited_span_ms"];
    let span_ms = span[1].as_f64().unwrap_or(0.0) - span[0].as_f64().unwrap_or(0.0);
    let last_window_ms = span[1].as_f64().unwrap_or(0.0)
        - stats["rate_window_started_ms"]
            .as_f64()
            .unwrap_or(span[0].as_f64().unwrap_or(0.0));
    let run = SharedRun {
        workers,
        lines,
        rpm: ceiling,
        requests,
        refused,
        rate: (requests.saturating_sub(1)) as f64 / (span_ms / 60_000.0).max(1e-9),
        span: span_ms / 1000.0,
        last_window: last_window_ms / 1000.0,
        seconds,
        done,
        charged: stats["charges"]["total"].as_u64().unwrap_or(0),
        peak_connections: 0,
    };
    println!(
        "{workers} workers, {lines} lines at {ceiling}/min: {} requests, {} refused, {:.1} s from \
         the first to the last ({:.3} of the physical limit, {:.1} s), {} done, {:.1} s wall",
        run.requests,
        run.refused,
        run.span,
        run.ratio(),
        run.limit(),
        run.done,
        run.seconds
    );
    Ok(run)
}

/// The release `uncensored` binary, clear of the caller's settings.
fn uncensored(bin: &Path) -> Command {
    let mut command = Command::new(bin);
    for (var, _) in std::env::vars() {
        if var.starts_with("UNCENSORED_") {
            command.env_remove(var);
        }
    }
    command
        .env("XDG_CONFIG_HOME", "/nonexistent-config-dir")
        .stdin(Stdio::null());
    command
}

/// A table of batch runs at a ceiling, each as a ratio to the physical limit.
pub(crate) fn runs_table(runs: &[SharedRun]) -> String {
    let mut table = String::from(
        "| workers | lines | ceiling (req/min) | requests | refused (429) | first to last request (s) | physical limit (s) | ratio | achieved rate (req/min) | lines done | charged | wall time (s) | peak connections |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for run in runs {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.3} | {:.0} | {} | {} | {:.1} | {} |\n",
            run.workers,
            run.lines,
            run.rpm,
            run.requests,
            run.refused,
            run.span,
            run.limit(),
            run.ratio(),
            run.rate,
            run.done,
            run.charged,
            run.seconds,
            if run.peak_connections == 0 {
                "-".to_string()
            } else {
                run.peak_connections.to_string()
            },
        ));
    }
    table
}

/// The last lines of a log.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
