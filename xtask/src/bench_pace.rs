//! `cargo xtask bench pace` (and a row of `cargo xtask bench shared`):
//! batches at the rate ceiling, each as a ratio to the physical limit the
//! emulator's windows allow. `bench pace` runs only these rows: the one
//! process row, then the shared rows (1, 2 and 4 workers) on a PostgreSQL
//! server of its own (`uncensored_test_servers::postgres`), and writes their
//! sections of BENCHMARKS.md. Nothing here is a test: no assertion on a time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context as _, Result};

use crate::bench::write_section;
use crate::bench_batch::{self, SharedRun};
use crate::bench_shared;
use crate::tools;

/// The one process row: lines, and the emulator's ceiling per minute.
const ONE_PROCESS: (usize, u32) = (60, 40);
/// `--concurrency` of the one process.
const CONCURRENCY: &str = "8";

pub fn run(root: &Path) -> Result<()> {
    let release = build(root)?;
    let work = tools::target_dir(root).join("bench/pace");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let one = one_process(&work, &release)?;
    write_one_process(root, &one)?;
    tools::ensure_postgres()?;
    let server = uncensored_test_servers::postgres()
        .context("PostgreSQL is installed (set UNCENSORED_POSTGRES_BIN to its bin folder)")?;
    let psql = tools::ensure_postgres()?.join("psql");
    let mut runs = Vec::new();
    let file = prompts(&work, bench_shared::LINES)?;
    for workers in bench_shared::WORKERS {
        let name = format!("workers{workers}");
        let url = server.create_database(&name);
        let peak = Peak::sample(&psql, &server.url(), &name);
        let mut run = bench_batch::shared_run(
            workers,
            (bench_shared::LINES, bench_shared::RPM),
            Some(&url),
            &bench_batch::ceiling_config(&work)?,
            &file,
            &scratch(&work).join(&name),
            &work.join(&name),
            &release,
        )?;
        run.peak_connections = peak.stop();
        runs.push(run);
    }
    bench_shared::write_shared(root, &runs)
}

/// The release emulator and CLI.
pub(crate) fn build(root: &Path) -> Result<PathBuf> {
    tools::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root)
            .args(["build", "--quiet", "--release", "--package"])
            .args(["uncensored-emulator", "--package", "uncensored-cli"]),
    )?;
    Ok(tools::target_dir(root).join("release"))
}

/// Images go to tmpfs when there is one, so that the disk does not pace the runs.
fn scratch(work: &Path) -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join(format!("uncensored-bench-pace-{}", std::process::id()))
    } else {
        work.join("scratch")
    }
}

/// A file of `lines` prompts.
fn prompts(work: &Path, lines: usize) -> Result<PathBuf> {
    let file = work.join(format!("prompts-{lines}.txt"));
    std::fs::write(
        &file,
        (0..lines)
            .map(|i| format!("paced bench prompt {i}: a lighthouse at dusk\n"))
            .collect::<String>(),
    )?;
    Ok(file)
}

/// 60 lines at 40/min, one process (its journal is SQLite beside the images).
pub(crate) fn one_process(work: &Path, release: &Path) -> Result<SharedRun> {
    let (lines, rpm) = ONE_PROCESS;
    let scratch = scratch(work).join("one-process");
    let outcome = bench_batch::shared_run_with(
        1,
        (lines, rpm),
        None,
        &bench_batch::ceiling_config(work)?,
        &prompts(work, lines)?,
        &scratch,
        &work.join("one-process"),
        release,
        CONCURRENCY,
    );
    let _ = std::fs::remove_dir_all(&scratch);
    outcome
}

pub(crate) fn write_one_process(root: &Path, run: &SharedRun) -> Result<()> {
    let table = bench_batch::runs_table(std::slice::from_ref(run));
    print!("{table}");
    let (lines, rpm) = ONE_PROCESS;
    write_section(
        root,
        "One process at the ceiling",
        &format!(
            "{lines} lines at {rpm}/min (one process): the release `uncensored batch FILE --out \
             DIR --concurrency {CONCURRENCY} --width 256 --height 256` (its journal SQLite beside \
             the images on tmpfs) against the release emulator with a ceiling of {rpm} requests \
             per minute and time scale {scale}. The SDK's pacer (`uncensored::LocalPacer`) follows \
             the window each answer reports: the first request learns it, the {left} left in it \
             go at once, the rest wait until a second and a quarter past the reported reset (the header has \
             whole seconds), then go. The physical limit: ceil({lines} / {rpm}) - 1 = 1 full \
             window of 60 s from the first request (the emulator's window begins there), plus \
             the time the last window's requests took to send (from the start of the emulator's \
             last window, `rate_window_started_ms`, to the last request). \
             Pacing at 0.98 of the ceiling instead, one request every 1.53 s, took about 91 s, \
             1.51x. Targets: at most 1.05 of the physical limit, no 429.\n\n{table}",
            scale = bench_shared::TIME_SCALE,
            left = rpm - 1,
        ),
    )
}

/// The connections open to one database, sampled five times a second with
/// `psql` until stopped.
struct Peak {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Peak {
    fn sample(psql: &Path, url: &str, database: &str) -> Self {
        let (stop, peak) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (psql, url) = (psql.to_path_buf(), url.to_string());
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}'",
            database.replace('\'', "''")
        );
        let thread = std::thread::spawn({
            let (stop, peak) = (stop.clone(), peak.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let count = Command::new(&psql)
                        .args(["-X", "-A", "-t", "-c", &sql, &url])
                        .stdin(Stdio::null())
                        .stderr(Stdio::null())
                        .output()
                        .ok()
                        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok());
                    if let Some(count) = count {
                        peak.fetch_max(count, Ordering::Relaxed);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            }
        });
        Self { stop, peak, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak.load(Ordering::Relaxed)
    }
}
