//! `cargo xtask bench shared` (and the end of `cargo xtask bench`): shared
//! batches. Worker processes (the release `uncensored` binary) sharing one
//! batch through PostgreSQL at a fixed ceiling; the journal's cost per job,
//! SQLite against PostgreSQL, with the API out of the way; the SDK's CPU time
//! per request against raw reqwest; and a paper estimate of a
//! 1,000,000-prompt batch on 50 workers built on those numbers. Writes their
//! sections of BENCHMARKS.md. Nothing here is a test: no assertion on a time.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::bench::write_section;
use crate::bench_batch::{SharedRun, ceiling_config, runs_table, shared_run};
use crate::tools::{self, EmulatorProcess};

/// Lines of the shared batch.
pub(crate) const LINES: usize = 2000;
/// The emulator's ceiling (requests per minute per key) for the shared batch:
/// below [`LINES`], so that the batch fills the emulator's 60-second window
/// and a pacer that overshot would be refused (at 3,000/min, 2,000 lines
/// could never be refused, however they were paced).
pub(crate) const RPM: u32 = 1500;
/// The share of the ceiling a long batch reaches: a window's requests every
/// 61.25 s (the window, then a second and a quarter past its reported reset).
const SHARE: f64 = 60.0 / 61.25;
/// Worker processes per run.
pub(crate) const WORKERS: [usize; 3] = [1, 2, 4];
/// `--concurrency` of each worker.
pub(crate) const CONCURRENCY: &str = "8";
/// The emulator's time scale for the shared batch: generations of 5-30
/// modelled seconds take 10-60 ms.
pub(crate) const TIME_SCALE: &str = "0.002";
/// Worker concurrencies of the journal-cost runs.
const JOURNAL_CONCURRENCY: [&str; 2] = ["1", "8"];
/// Lines loaded alone for the sizes of the table and its indexes, and the
/// loader's peak memory: a million, the batch the target is stated for.
const LOAD_LINES: &str = "1000000";
/// The most a worker may hold while it loads a million lines.
const LOADER_TARGET_MIB: f64 = 256.0;
/// The SDK's CPU run: seconds and concurrent requests (as `cargo xtask bench`'s
/// SDK throughput row).
const SECONDS: &str = "5";
const CONNECTIONS: &str = "64";

pub fn run(root: &Path) -> Result<()> {
    let work = tools::target_dir(root).join("bench/shared");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let postgres = tools::ensure_postgres()?;
    tools::run(cargo(root).args([
        "build",
        "--quiet",
        "--release",
        "--package",
        "uncensored-emulator",
        "--package",
        "uncensored-cli",
    ]))?;
    let release = tools::target_dir(root).join("release");
    let one = crate::bench_pace::one_process(&work, &release)?;
    crate::bench_pace::write_one_process(root, &one)?;
    // Files go to tmpfs when there is one, so that the disk does not pace the runs.
    let shm = Path::new("/dev/shm");
    let scratch = if shm.is_dir() {
        shm.join(format!("uncensored-bench-shared-{}", std::process::id()))
    } else {
        work.join("scratch")
    };
    std::fs::create_dir_all(&scratch)?;
    let outcome = measure(root, &work, &scratch, &release, &postgres);
    let _ = std::fs::remove_dir_all(&scratch);
    let (shared, journal, sizes, cpu) = outcome?;
    write_shared(root, &shared)?;
    write_journal(root, &journal)?;
    write_cpu(root, &cpu)?;
    write_estimate(root, &shared, &journal, &sizes)
}

type Measured = (Vec<SharedRun>, Vec<Value>, Value, Vec<Value>);

fn measure(
    root: &Path,
    work: &Path,
    scratch: &Path,
    release: &Path,
    postgres: &Path,
) -> Result<Measured> {
    // The API out of the way: time scale 0, a ceiling nothing reaches.
    let config = work.join("emulator-unlimited.toml");
    std::fs::write(
        &config,
        "rate_limit_rpm = 4000000000\n[[keys]]\nkey = \"emulator-key\"\nname = \"bench\"\nbalance = 1000000000000\n",
    )?;
    let emulator = EmulatorProcess::start(
        &release.join("uncensored-emulator"),
        &["--time-scale", "0", "--config", utf8(&config)?],
        work.join("emulator-unlimited.log"),
    )?;
    let cpu = cargo_bench(
        root,
        "uncensored",
        "client",
        "",
        &[
            "throughput",
            &emulator.base_url,
            "new",
            SECONDS,
            CONNECTIONS,
        ],
        postgres,
    )?;
    let journal_dir = scratch.join("journal");
    let mut args = vec![
        "journal".to_string(),
        emulator.base_url.clone(),
        LINES.to_string(),
        LOAD_LINES.to_string(),
        utf8(&journal_dir)?.to_string(),
    ];
    args.extend(JOURNAL_CONCURRENCY.map(String::from));
    let lines = cargo_bench(
        root,
        "uncensored-deliver",
        "shared",
        "sqlite,postgres,testing",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        postgres,
    )?;
    emulator.stop()?;
    let journal: Vec<Value> = lines
        .iter()
        .filter(|line| line["bench"] == "journal")
        .cloned()
        .collect();
    let sizes = lines
        .iter()
        .find(|line| line["bench"] == "sizes")
        .cloned()
        .context("the journal bench printed no sizes")?;
    let shared = shared_batches(root, work, scratch, release, postgres)?;
    Ok((shared, journal, sizes, cpu))
}

/// 1, 2 and 4 worker processes on one batch at the ceiling, each run against
/// a fresh emulator and a database of its own on one PostgreSQL server.
fn shared_batches(
    root: &Path,
    work: &Path,
    scratch: &Path,
    release: &Path,
    postgres: &Path,
) -> Result<Vec<SharedRun>> {
    let names: Vec<String> = WORKERS.iter().map(|n| format!("workers{n}")).collect();
    let mut server = cargo(root)
        .args([
            "bench",
            "--quiet",
            "--package",
            "uncensored-deliver",
            "--features",
            "sqlite,postgres,testing",
            "--bench",
            "shared",
            "--",
            "postgres",
        ])
        .args(&names)
        .env("UNCENSORED_POSTGRES_BIN", postgres)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the PostgreSQL bench server")?;
    let stdout = server.stdout.take().context("stdout is piped")?;
    let mut json_lines = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .filter(|line| line.starts_with('{'));
    let outcome = (|| -> Result<Vec<SharedRun>> {
        let first: Value = serde_json::from_str(
            &json_lines
                .next()
                .context("the PostgreSQL bench server did not start")?,
        )?;
        let config = ceiling_config(work)?;
        let file = work.join("prompts.txt");
        std::fs::write(
            &file,
            (0..LINES)
                .map(|i| format!("shared bench prompt {i}: a lighthouse at dusk\n"))
                .collect::<String>(),
        )?;
        let mut runs = Vec::new();
        for (&workers, name) in WORKERS.iter().zip(&names) {
            let url = first["databases"][name.as_str()]
                .as_str()
                .with_context(|| format!("no database {name}"))?;
            runs.push(shared_run(
                workers,
                (LINES, RPM),
                Some(url),
                &config,
                &file,
                &scratch.join(name),
                &work.join(name),
                release,
            )?);
        }
        Ok(runs)
    })();
    // Closing stdin stops the server; it prints its connection peaks first.
    drop(server.stdin.take());
    let peaks: Option<Value> = json_lines
        .next()
        .and_then(|line| serde_json::from_str(&line).ok());
    let _ = server.wait();
    let mut runs: Vec<SharedRun> = outcome?;
    for (run, name) in runs.iter_mut().zip(&names) {
        run.peak_connections = peaks
            .as_ref()
            .and_then(|p| p["peak_connections"][name.as_str()].as_u64())
            .unwrap_or(0);
    }
    Ok(runs)
}

pub(crate) fn write_shared(root: &Path, runs: &[SharedRun]) -> Result<()> {
    let table = runs_table(runs);
    print!("{table}");
    write_section(
        root,
        "Shared batch at the ceiling",
        &format!(
            "One batch of {LINES} lines shared by 1, 2 and 4 worker processes (the release \
             `uncensored batch FILE --journal postgres://… --concurrency {CONCURRENCY} --width 256 \
             --height 256`, images to tmpfs) through one PostgreSQL server on loopback (a database \
             per run; the test servers' settings: fsync off), against a fresh release emulator per \
             run with a ceiling of {RPM} requests per minute for the key and time scale {TIME_SCALE} \
             (generations of 10-60 ms). The ceiling is below the batch's {LINES} lines, so that the \
             batch spends one whole window of the emulator's and waits for its reset: the emulator \
             counts fixed 60-second windows, each from the first request after the last one ended, \
             and reports what is left and the reset in every answer. The workers follow that \
             window together on one row per key in PostgreSQL (`postgres/pacer.rs`): they spend \
             what is left, wait until a second and a quarter past the reported reset (the header has whole \
             seconds), and spend the next. The physical limit is the shortest time from the first \
             to the last request that the windows allow: ceil(lines / ceiling) - 1 full windows, \
             plus the time the last window's requests took to send (measured: from the start of \
             the emulator's last window, `rate_window_started_ms`, to the last request). \
             First to last: the emulator's `rate_limited_span_ms`, 429s included. Peak \
             connections: to the run's database, sampled five times a second (one pool per \
             worker, shared by its journal and pacer). Targets: at most 1.05 of the physical \
             limit, no 429.\n\n{table}"
        ),
    )
}

fn number(line: &Value, field: &str) -> f64 {
    line[field].as_f64().unwrap_or(f64::NAN)
}

fn write_journal(root: &Path, lines: &[Value]) -> Result<()> {
    let mut table = String::from(
        "| journal | worker concurrency | µs per job (wall) | jobs/s | client CPU µs per job | journal call time µs per job | journal writes per job | calls per job | rows per claim | load of the batch (ms) |\n\
         |---|---:|---:|---:|---:|---:|---:|---|---:|---:|\n",
    );
    for line in lines {
        let calls = line["calls_per_job"]
            .as_object()
            .map(|calls| {
                calls
                    .iter()
                    .filter(|(_, n)| n.as_f64().unwrap_or(0.0) >= 0.005)
                    .map(|(name, n)| format!("{name} {:.2}", n.as_f64().unwrap_or(0.0)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        table.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {calls} | {:.2} | {:.0} |\n",
            line["journal"].as_str().unwrap_or("?"),
            line["concurrency"],
            number(line, "wall_us_per_job"),
            number(line, "jobs_per_second"),
            number(line, "cpu_us_per_job"),
            number(line, "journal_us_per_job"),
            number(line, "writes_per_job"),
            number(line, "rows_claimed_per_claim"),
            number(line, "load_ms"),
        ));
    }
    print!("{table}");
    write_section(
        root,
        "Journal cost per job",
        &format!(
            "The journal with the API out of the way: one `uncensored_deliver::worker::Worker` \
             (claims under leases, then `Deliverer`: generate, store, record) delivers a loaded \
             batch of {LINES} lines (prompts of ~200 characters, 256x256) into memory:// storage \
             against the release emulator at time scale 0 with no ceiling, once with \
             `SqliteJournal` and once with `PostgresJournal`, in the same process and run \
             (`crates/uncensored-deliver/benches/shared.rs`). Both journals skip the disk: the \
             SQLite file (WAL, synchronous=FULL) is on tmpfs and PostgreSQL (loopback, a fresh \
             database per run) runs with fsync off, so this is the cost of the calls, not of the \
             disk. Every journal call is counted and timed through a wrapper \
             (`uncensored_deliver::testing::observed`): the call time is the sum of the calls' \
             latencies per job (at concurrency 8 they overlap); writes are the calls that write \
             (claim, write_claimed under the claim's fencing token, renew, release, put, insert; \
             the batch's load is timed apart and not counted per job). Client CPU is the bench process's own (/proc/self/stat), which \
             holds SQLite but not the PostgreSQL server. The emulator, the bench and PostgreSQL \
             share the machine's 2 cores.\n\n{table}"
        ),
    )
}

fn write_cpu(root: &Path, lines: &[Value]) -> Result<()> {
    let find = |name: &str| {
        lines
            .iter()
            .find(|line| line["name"] == name)
            .with_context(|| format!("the SDK bench printed no `{name}` line"))
    };
    let (sdk, raw) = (find("sdk")?, find("raw_reqwest")?);
    let cpu = |line: &Value| number(line, "cpu_us_per_request");
    let rate = |line: &Value| number(line, "per_second");
    let table = format!(
        "| client | CPU µs per request | vs raw reqwest | req/s (wall clock) | vs raw reqwest |\n\
         |---|---:|---:|---:|---:|\n\
         | uncensored SDK | {:.1} | {:.2}x | {:.0} | {:.2}x |\n\
         | raw reqwest | {:.1} | 1.00x | {:.0} | 1.00x |\n",
        cpu(sdk),
        cpu(sdk) / cpu(raw),
        rate(sdk),
        rate(sdk) / rate(raw),
        cpu(raw),
        rate(raw),
    );
    print!("{table}");
    write_section(
        root,
        "SDK CPU per request",
        &format!(
            "The SDK throughput row measured again (`crates/uncensored/benches/client.rs`: GET job \
             status, {CONNECTIONS} concurrent requests for {SECONDS} s each, this SDK then raw \
             reqwest, against the release emulator at time scale 0), with the client process's \
             own CPU time (user + system, /proc/self/stat) divided by its requests. The \
             wall-clock ratio swings on 2 cores, where the emulator competes with the client; \
             CPU per request is the client's own cost. Target: at most 1/0.9 = 1.11x raw \
             reqwest's CPU per request.\n\n{table}"
        ),
    )
}

fn write_estimate(
    root: &Path,
    shared: &[SharedRun],
    journal: &[Value],
    sizes: &Value,
) -> Result<()> {
    const PROMPTS: f64 = 1_000_000.0;
    const WORKERS_1M: f64 = 50.0;
    let find = |kind: &str, concurrency: u64| {
        journal
            .iter()
            .find(|line| line["journal"] == kind && line["concurrency"] == concurrency)
            .with_context(|| format!("no {kind} journal row at concurrency {concurrency}"))
    };
    let pg = find("postgres", 8)?;
    let pg_serial = find("postgres", 1)?;
    let sqlite = find("sqlite", 8)?;
    let loaded = number(sizes, "lines");
    let per_row = |field: &str| number(sizes, field) / loaded;
    let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
    let table_1m = per_row("table_bytes") * PROMPTS;
    let pkey_1m = per_row("pkey_bytes") * PROMPTS;
    let open_1m = per_row("open_index_bytes") * PROMPTS;
    let changed_1m = per_row("changed_index_bytes") * PROMPTS;
    let load_1m = number(sizes, "load_seconds") / loaded * PROMPTS;
    let loader_peak = number(sizes, "loader_peak_kib") / 1024.0;
    let second_load_ms = number(sizes, "second_load_ms");
    let calls = |field: &str| pg["calls_per_job"][field].as_f64().unwrap_or(0.0);
    let writes = number(pg, "writes_per_job");
    let jobs_per_second = SHARE * f64::from(RPM) / 60.0;
    let rows_per_claim = number(pg, "rows_claimed_per_claim");
    let worst = shared.iter().map(SharedRun::ratio).fold(f64::NAN, f64::max);
    let refused: u64 = shared.iter().map(|run| run.refused).sum();
    let peak_per_worker = shared
        .iter()
        .map(|run| run.peak_connections as f64 / run.workers as f64)
        .fold(0.0, f64::max);
    let hours = PROMPTS / (SHARE * f64::from(RPM)) / 60.0;
    // Little's law: lines in flight = rate x time per line.
    let mean_generation = 17.5;
    let in_flight = jobs_per_second * mean_generation;
    let default_rpm = WORKERS_1M * 4.0 / mean_generation * 60.0;
    let body = format!(
        "A paper estimate of a batch of 1,000,000 prompts shared by 50 worker processes, from the \
         rows above and from the code (`worker.rs`, `deliverer.rs`, `journal/postgres.rs`, \
         `postgres/pacer.rs`, `postgres/mod.rs`); every measured number is this run's. The API \
         ceiling is taken as the bench's {RPM} requests per minute for one key; every figure \
         scales with it.\n\n\
         | quantity | estimate for 1,000,000 prompts, 50 workers | from |\n|---|---|---|\n\
         | rows in `uncensored_entries` | 1,000,000, {body_bytes:.0} B of jsonb each (~{body_text:.0} B as text); table {table:.0} MiB | {loaded:.0} lines loaded alone: {table_row:.0} B per row on disk (Journal cost: a done entry is {done_json} B of JSON) |\n\
         | indexes | primary key {pkey:.0} MiB, open lines (partial, `WHERE NOT done`) {open:.0} MiB at the start and shrinking to nothing, `changed` {changed:.0} MiB | the same load, `pg_relation_size` |\n\
         | row versions | every write is an UPDATE of the line's row: a put moves `changed` (indexed), so it is never a HOT update and adds an entry to each index; a claim touches only unindexed columns: ~{writes:.1} dead versions per job for autovacuum, ~{dead_per_s:.0} dead rows/s at the ceiling; the table stays near its loaded size only while autovacuum keeps up | journal writes per job below |\n\
         | load (first worker) | ~{load:.0} s in one transaction (5,000 lines a statement, read as they are made); the loading process peaks at {loader_peak:.0} MiB ({loader_small:.0} MiB above its baseline; target: under {LOADER_TARGET_MIB:.0} MiB) | {loaded:.0} lines loaded in {load_small:.2} s, measured |\n\
         | every other worker's start | the batch is found loaded by its digest (one row): {second_load_ms:.1} ms, no line read; a worker keeps one counter per distinct line while it reads the file to check it (about 30 MB for a million) | measured on the same database |\n\
         | journal writes per job | {writes:.2}: claim {claim:.2} (rows per claim {rows_per_claim:.2}), write_claimed {put:.2} (generated, stored, done, each under the claim's fencing token; +2 per notifier: the claim checked before it, and its record after; +1 for an async job's accepted), renew {renew:.3} (one UPDATE per worker every lease/3 = 10 s for all its lines), release at the end; the load is one bulk write | Journal cost, PostgreSQL, concurrency 8 (counted) |\n\
         | claims per second needed | API rate / rows per claim = {jobs_per_second:.1} / {rows_per_claim:.2} = ~{claims:.0} claims/s: a worker claims as many lines as it has free slots, and at steady state one slot frees at a time | the ceiling at {share} |\n\
         | database statements per second | ~{statements:.0}/s: {jobs_per_second:.1} jobs/s x {calls_all:.1} journal calls per job, + {pacer:.1} pacer statements/s (per API request: one to take it from the key's one row, one to record its answer's window) | Journal cost; `postgres/pacer.rs` |\n\
         | journal capacity | one worker with PostgreSQL delivered {pg_rate:.0} jobs/s at concurrency 8 ({pg_serial:.0} µs per job serially, {pg_journal:.0} µs of it in journal calls; SQLite: {sqlite_rate:.0} jobs/s) with the emulator and the server on the same 2 cores: {margin:.0}x the {jobs_per_second:.1} jobs/s the ceiling allows | Journal cost |\n\
         | pacing | {worst:.3} of the physical limit at worst over 1, 2 and 4 workers, {refused} 429s; 50 workers take their requests from the same row and record every answer's window in it ({pacer:.1} statements/s) | Shared batch at the ceiling |\n\
         | connections | each worker opens one pool of up to 8, shared by its journal and its pacer; measured peak {peak:.1} per worker at `--concurrency {CONCURRENCY}`; 50 workers: ~{conns:.0} to 400, against PostgreSQL's default `max_connections` of 100: raise it, or put PgBouncer (transaction mode) in front | Shared batch at the ceiling; `postgres/mod.rs` (`max_size(8)`) |\n\
         | lines in flight needed | rate x time per line: {jobs_per_second:.1}/s x ~{mean_generation} s (the emulator's model: generations of 5-30 s) = ~{in_flight:.0}, so `--concurrency {per_worker:.0}` per worker on 50 workers; at the default 4 (200 in flight) the batch would run at ~{default_rpm:.0}/min ({default_vs} the ceiling) | Little's law |\n\
         | what bounds the run | the API ceiling: {hours:.1} h at {share} of {RPM}/min, whatever the number of workers beyond those needed to keep ~{in_flight:.0} lines in flight; the journal and the pacer need a small fraction of one PostgreSQL | all of the above |\n",
        body_bytes = number(sizes, "body_stored_bytes"),
        body_text = number(sizes, "body_text_bytes"),
        table = mib(table_1m),
        table_row = per_row("table_bytes"),
        done_json = pg["done_entry_json_bytes"],
        pkey = mib(pkey_1m),
        open = mib(open_1m),
        changed = mib(changed_1m),
        dead_per_s = writes * jobs_per_second,
        load = load_1m,
        load_small = number(sizes, "load_seconds"),
        loader_small = number(sizes, "loader_above_baseline_kib") / 1024.0,
        claim = calls("claim"),
        put = calls("write_claimed"),
        renew = calls("renew"),
        claims = jobs_per_second / rows_per_claim.max(1e-9),
        share = "60/61.25 (a window's requests every 61.25 s: the window, then a second and a quarter past its reset)",
        statements = jobs_per_second
            * (pg["calls_per_job"]
                .as_object()
                .map(|calls| calls.values().filter_map(Value::as_f64).sum::<f64>())
                .unwrap_or(f64::NAN)
                + 2.0),
        pacer = 2.0 * jobs_per_second,
        calls_all = pg["calls_per_job"]
            .as_object()
            .map(|calls| calls.values().filter_map(Value::as_f64).sum::<f64>())
            .unwrap_or(f64::NAN),
        pg_rate = number(pg, "jobs_per_second"),
        pg_serial = number(pg_serial, "wall_us_per_job"),
        pg_journal = number(pg_serial, "journal_us_per_job"),
        sqlite_rate = number(sqlite, "jobs_per_second"),
        margin = number(pg, "jobs_per_second") / jobs_per_second,
        peak = peak_per_worker,
        conns = peak_per_worker * WORKERS_1M,
        per_worker = (in_flight / WORKERS_1M).ceil(),
        default_rpm = default_rpm.min(SHARE * f64::from(RPM)),
        default_vs = if default_rpm < SHARE * f64::from(RPM) {
            "below"
        } else {
            "held to"
        },
    );
    print!("{body}");
    write_section(root, "Estimate: 1,000,000 prompts on 50 workers", &body)
}

/// `cargo`, as this xtask was run with.
fn cargo(root: &Path) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root);
    command
}

/// Runs one benchmark binary of `package` (with `features`, none when
/// empty) and returns its JSON lines.
fn cargo_bench(
    root: &Path,
    package: &str,
    bench: &str,
    features: &str,
    args: &[&str],
    postgres: &Path,
) -> Result<Vec<Value>> {
    let output = cargo(root)
        .args(["bench", "--quiet", "--package", package])
        .args(
            Some(["--features", features])
                .filter(|_| !features.is_empty())
                .into_iter()
                .flatten(),
        )
        .args(["--bench", bench, "--"])
        .args(args)
        .env("UNCENSORED_POSTGRES_BIN", postgres)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run the {bench} benchmark"))?;
    if !output.status.success() {
        bail!("the {bench} benchmark failed ({})", output.status);
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| {
            serde_json::from_str(line).context("a benchmark printed a line that is not JSON")
        })
        .collect()
}

pub(crate) fn utf8(path: &Path) -> Result<&str> {
    path.to_str().context("a UTF-8 path")
}
