//! `cargo xtask bench`: throughput of the emulator against an anchor measured
//! in the same run (Prism's mock server for the same openapi.yaml), both driven
//! by wrk over loopback. Writes BENCHMARKS.md. Nothing here is a test: no
//! assertion depends on a time.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};

use crate::tools::{self, EmulatorProcess};

/// wrk settings: threads, connections, seconds per run.
const THREADS: &str = "2";
const CONNECTIONS: &str = "64";
const SECONDS: &str = "5";

/// One wrk measurement.
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_second: f64,
    non_2xx: u64,
    errors: u64,
}

pub fn run(root: &Path) -> Result<()> {
    let work = tools::target_dir(root).join("bench");
    std::fs::create_dir_all(&work)?;
    let wrk = ensure_wrk()?;
    let prism = tools::ensure_prism(root)?;
    tools::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root)
            .args([
                "build",
                "--quiet",
                "--release",
                "--package",
                "uncensored-emulator",
            ]),
    )?;

    // A key with room for any number of requests: this measures speed, not limits.
    let config = work.join("emulator.toml");
    std::fs::write(
        &config,
        "rate_limit_rpm = 4000000000\n[[keys]]\nkey = \"emulator-key\"\nname = \"bench\"\nbalance = 1000000000000\n",
    )?;
    let emulator = EmulatorProcess::start(
        &tools::target_dir(root).join("release/uncensored-emulator"),
        &[
            "--time-scale",
            "0",
            "--config",
            config.to_str().context("a UTF-8 path")?,
        ],
        work.join("emulator.log"),
    )?;
    let emulator_addr = authority(&emulator.base_url)?;
    let job_id = create_job(emulator_addr)?;
    let prism_port = tools::free_port()?;
    let mut prism_child = tools::start_prism(
        &prism,
        &["mock"],
        &[],
        root,
        prism_port,
        &work.join("prism.log"),
    )?;
    // Prism mocks the paths without the server's base path.
    let prism_base = format!("http://127.0.0.1:{prism_port}");

    let post_script = work.join("post.lua");
    std::fs::write(
        &post_script,
        "wrk.method = \"POST\"\n\
         wrk.body = '{\"prompt\":\"a lighthouse at dusk\",\"image_width\":512,\"image_height\":512}'\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n",
    )?;
    let get = |base: &str, id: &str| format!("{base}/v1/images/generation/jobs/{id}");
    let post = |base: &str| format!("{base}/v1/images/generations");

    let started = Instant::now();
    let rows = [
        (
            "GET job status",
            measure(&wrk, &get(&emulator.base_url, &job_id), None)?,
            measure(
                &wrk,
                &get(&prism_base, "550e8400-e29b-41d4-a716-446655440000"),
                None,
            )?,
        ),
        (
            "POST sync 512x512",
            measure(&wrk, &post(&emulator.base_url), Some(&post_script))?,
            measure(&wrk, &post(&prism_base), Some(&post_script))?,
        ),
    ];
    let _ = prism_child.kill();
    let _ = prism_child.wait();
    let wrk_get = rows[0].1;
    let sdk = sdk_bench(
        root,
        &[
            "throughput",
            &emulator.base_url,
            &job_id,
            SECONDS,
            CONNECTIONS,
        ],
    )?;
    let memory = delivery_memory(root, &emulator.base_url, &work)?;
    emulator.stop()?;
    // A rate of error answers measures the wrong thing: refuse to report it.
    for (name, ours, anchor) in &rows {
        for (who, rate) in [("emulator", ours), ("Prism", anchor)] {
            if rate.non_2xx > 0 {
                bail!(
                    "{name}: {who} answered {} requests with non-2xx",
                    rate.non_2xx
                );
            }
        }
    }

    let mut table = String::from(
        "| scenario | emulator req/s | Prism mock req/s | ratio | socket errors (emulator / Prism) |\n\
         |---|---:|---:|---:|---:|\n",
    );
    for (name, ours, anchor) in &rows {
        table.push_str(&format!(
            "| {name} | {:.0} | {:.0} | {:.1}x | {} / {} |\n",
            ours.per_second,
            anchor.per_second,
            ours.per_second / anchor.per_second.max(1e-9),
            ours.errors,
            anchor.errors,
        ));
    }
    print!("{table}");
    let prism_name = tools::PRISM;
    write_section(
        root,
        "Emulator throughput",
        &format!(
            "Measured by `cargo xtask bench` ({:.0?} of load): wrk with {THREADS} threads and {CONNECTIONS} \
             connections for {SECONDS} s per row over loopback, against the release build of \
             `uncensored-emulator` (time scale 0, so a sync POST answers at once) and against \
             Prism's mock server ({prism_name}) for the same openapi.yaml, in the same run on the same \
             machine. Every answer was 2xx on both sides (the run fails otherwise); wrk's socket errors (timeouts, resets) are shown. Ratio = \
             emulator / Prism. Target: at least 20x on GET.\n\n{table}",
            started.elapsed()
        ),
    )?;

    let rate = |name: &str| -> Result<f64> {
        sdk.iter()
            .find(|line| line["name"] == name)
            .and_then(|line| line["per_second"].as_f64())
            .with_context(|| format!("the SDK bench printed no `{name}` line"))
    };
    let (ours, raw) = (rate("sdk")?, rate("raw_reqwest")?);
    write_section(
        root,
        "SDK throughput",
        &format!(
            "GET job status against the same release emulator, {CONNECTIONS} concurrent requests for \
             {SECONDS} s each, in the same run: this SDK (`Client::job`: typed errors, retry loop, \
             rate-limit parsing, a tracing span per attempt) against raw reqwest (one shared client, \
             JSON parsed into `serde_json::Value`) and wrk (C, no parsing). Target: at least 0.9x raw \
             reqwest.\n\n| client | req/s | vs raw reqwest |\n|---|---:|---:|\n\
             | uncensored SDK | {ours:.0} | {:.2}x |\n| raw reqwest | {raw:.0} | 1.00x |\n\
             | wrk | {:.0} | {:.2}x |\n",
            ours / raw,
            wrk_get.per_second,
            wrk_get.per_second / raw,
        ),
    )?;

    let scale = "0.05";
    let mut waits = sdk_bench(root, &["wait", "200", scale])?;
    waits.extend(cargo_bench(
        root,
        "uncensored-deliver",
        "callbacks",
        "sqlite,callbacks",
        &["wait", "200", scale],
    )?);
    let mut table = String::from(
        "| strategy | mean lag (s) | p95 lag (s) | mean polls | max polls |\n|---|---:|---:|---:|---:|\n",
    );
    for line in &waits {
        table.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.1} | {} |\n",
            line["name"].as_str().unwrap_or("?"),
            line["mean_lag_s"].as_f64().unwrap_or(f64::NAN),
            line["p95_lag_s"].as_f64().unwrap_or(f64::NAN),
            line["mean_polls"].as_f64().unwrap_or(f64::NAN),
            line["max_polls"].as_u64().unwrap_or(0),
        ));
    }
    write_section(
        root,
        "Waiting for jobs",
        &format!(
            "200 async jobs whose generation takes 5-30 s (uniformly, as the emulator models them), run \
             against the emulator at time scale {scale} and reported in modelled seconds. Lag is the time \
             from a job's end to its detection. `sdk_default` is `WaitOptions::default()` (first poll at \
             1 s, then 2 s growing 1.25x per poll up to 5 s); `fixed_*` poll at a constant interval; \
             `callback_service` is `uncensored_deliver::callbacks::CallbackService` on loopback, each job \
             with a signed URL of its own: detection is the job confirmed (the callback, its tag checked, one \
             read, recorded in the journal), polls are its reads per job. Target: lag under 1 s with at most 8 polls per job. No polling schedule can \
             meet both: with ends spread evenly over 25 s, k polls inside that window leave a mean lag of \
             at least 25/(2k) s, 1.56 s for k = 8; only the callback path does.\n\n{table}"
        ),
    )?;

    let field =
        |line: &serde_json::Value, name: &str| line[name].as_u64().unwrap_or(0) as f64 / 1024.0;
    let mut table = String::from(
        "| run | baseline RSS (MiB) | peak RSS (MiB) | peak above baseline (MiB) |\n|---|---:|---:|---:|\n",
    );
    for line in &memory {
        let run = match line["bench"].as_str() {
            Some("large") => format!(
                "64 MiB image to {}",
                line["storage"].as_str().unwrap_or("?")
            ),
            _ => format!("batch of {} jobs to fs", line["jobs"]),
        };
        table.push_str(&format!(
            "| {run} | {:.1} | {:.1} | {:.1} |\n",
            field(line, "baseline_kib"),
            field(line, "peak_kib"),
            field(line, "above_baseline_kib")
        ));
    }
    let peak_of = |jobs: u64| {
        memory
            .iter()
            .find(|l| l["jobs"] == jobs)
            .map(|l| field(l, "peak_kib"))
    };
    let growth = match (peak_of(1000), peak_of(10000)) {
        (Some(small), Some(large)) => format!("{:+.1}%", (large / small - 1.0) * 100.0),
        _ => "n/a".into(),
    };
    write_section(
        root,
        "Delivery memory",
        &format!(
            "Peak resident memory of `Deliverer` (journal in SQLite, fs or S3 storage), each run a process \
             of its own against the release emulator, peak read from VmHWM after resetting it at the \
             baseline (just before the measured work, after a warm-up delivery). The 64 MiB image is \
             streamed from download to storage (S3: moto on loopback, multipart in 5 MiB parts, two in \
             flight). Targets: under 32 MiB above the baseline for 64 MiB; the 10,000-job batch's peak \
             within 10% of the 1,000-job batch's (this run: {growth}).\n\n{table}"
        ),
    )?;
    crate::bench_gallery::run(root)?;
    crate::bench_shared::run(root)
}

/// Peak memory of the delivery pipeline: a 64 MiB image to fs and to S3
/// (moto on loopback), and a 1,000-job against a 10,000-job batch. Each run
/// is a process of its own. Files go to tmpfs when there is one, so that disk
/// speed does not stretch the batches.
fn delivery_memory(root: &Path, base_url: &str, work: &Path) -> Result<Vec<serde_json::Value>> {
    let moto = tools::python_venv(root, "moto", &[tools::MOTO])?.join("bin/moto_server");
    let port = tools::free_port()?;
    let mut server = Command::new(&moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot start moto_server")?;
    let outcome = (|| {
        tools::wait_for_port(port, std::time::Duration::from_secs(60))
            .context("moto_server did not listen")?;
        http_put(SocketAddr::from(([127, 0, 0, 1], port)), "/bench")?;
        let shm = Path::new("/dev/shm");
        let scratch = if shm.is_dir() {
            shm.join(format!("uncensored-bench-{}", std::process::id()))
        } else {
            work.join("deliver")
        };
        std::fs::create_dir_all(&scratch)?;
        let dir = scratch.to_str().context("a UTF-8 path")?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let mut lines = Vec::new();
        for args in [
            vec!["large", "fs", base_url, dir],
            vec!["large", "s3", base_url, dir, &endpoint],
            vec!["batch", "1000", base_url, dir],
            vec!["batch", "10000", base_url, dir],
        ] {
            lines.extend(cargo_bench(
                root,
                "uncensored-deliver",
                "deliver",
                "fs,s3,sqlite",
                &args,
            )?);
        }
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(lines)
    })();
    let _ = server.kill();
    let _ = server.wait();
    outcome
}

/// A bodiless HTTP/1.1 PUT (to create a bucket), failing unless it answers 2xx.
fn http_put(addr: SocketAddr, path: &str) -> Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    if !response.starts_with("HTTP/1.1 2") {
        bail!(
            "PUT {path} failed: {}",
            response.lines().next().unwrap_or("")
        );
    }
    Ok(())
}

/// Runs the SDK's throughput and wait benchmark and returns its JSON lines.
fn sdk_bench(root: &Path, args: &[&str]) -> Result<Vec<serde_json::Value>> {
    cargo_bench(root, "uncensored", "client", "", args)
}

/// Runs one benchmark binary of `package` (with `features`, none when empty) and returns its JSON lines.
fn cargo_bench(
    root: &Path,
    package: &str,
    bench: &str,
    features: &str,
    args: &[&str],
) -> Result<Vec<serde_json::Value>> {
    let output = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(["bench", "--quiet", "--package", package])
        .args(
            Some(["--features", features])
                .filter(|_| !features.is_empty())
                .into_iter()
                .flatten(),
        )
        .args(["--bench", bench, "--"])
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot run the SDK benchmark")?;
    if !output.status.success() {
        bail!("the SDK benchmark failed ({})", output.status);
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| {
            serde_json::from_str(line).context("the SDK benchmark printed a line that is not JSON")
        })
        .collect()
}

/// Runs wrk once and reads its summary.
fn measure(wrk: &Path, url: &str, script: Option<&Path>) -> Result<Rate> {
    let mut command = Command::new(wrk);
    command.args([
        "-t",
        THREADS,
        "-c",
        CONNECTIONS,
        "-d",
        &format!("{SECONDS}s"),
        "--latency",
    ]);
    command.args(["-H", "x-api-key: emulator-key"]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command.arg(url).output().context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed on {url}:\n{text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("cannot read wrk's summary:\n{text}"))
}

fn parse_wrk(text: &str) -> Option<Rate> {
    let number_after = |label: &str| -> Option<f64> {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .and_then(|rest| rest.trim().parse().ok())
    };
    let errors = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Socket errors:"))
        .map(|rest| {
            rest.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Some(Rate {
        per_second: number_after("Requests/sec:")?,
        non_2xx: number_after("Non-2xx or 3xx responses:").unwrap_or(0.0) as u64,
        errors,
    })
}

/// wrk from Debian's packages, installed when missing.
fn ensure_wrk() -> Result<PathBuf> {
    let found = |dir: &str| Path::new(dir).join("wrk");
    if let Some(path) = ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|d| found(d))
        .find(|p| p.exists())
    {
        return Ok(path);
    }
    eprintln!("xtask: installing wrk (apt-get)");
    tools::run(Command::new("apt-get").arg("update").arg("-qq"))
        .context("apt-get update failed")?;
    tools::run(Command::new("apt-get").args(["install", "-y", "-qq", "wrk"]))
        .context("cannot install wrk")?;
    Ok(found("/usr/bin"))
}

/// `127.0.0.1:PORT` from `http://127.0.0.1:PORT/api`.
fn authority(base_url: &str) -> Result<SocketAddr> {
    let rest = base_url
        .strip_prefix("http://")
        .context("an http base URL")?;
    rest.split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .context("a socket address in the base URL")
}

/// Creates one sync job with a plain HTTP/1.1 request and returns its id.
fn create_job(addr: SocketAddr) -> Result<String> {
    let body = r#"{"prompt":"benchmark job","image_width":512,"image_height":512}"#;
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "POST /api/v1/images/generations HTTP/1.1\r\nHost: {addr}\r\nx-api-key: emulator-key\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let json = response
        .split("\r\n\r\n")
        .nth(1)
        .context("an HTTP response with a body")?;
    let value: serde_json::Value = serde_json::from_str(json).context("a JSON body")?;
    value["job_id"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("no job_id in {json}"))
}

/// Replaces (or appends) the `## {title}` section of BENCHMARKS.md.
pub fn write_section(root: &Path, title: &str, body: &str) -> Result<()> {
    let path = root.join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        "# Benchmarks\n\nWritten by `cargo xtask bench`; every number is measured against an anchor in the same run.\n"
            .into()
    });
    let heading = format!("## {title}\n");
    let section = format!("{heading}\n{}\n", body.trim_end());
    let new = match old.find(&heading) {
        Some(start) => {
            let end = old[start + heading.len()..]
                .find("\n## ")
                .map(|i| start + heading.len() + i + 1)
                .unwrap_or(old.len());
            format!(
                "{}{section}{}",
                &old[..start],
                if end < old.len() {
                    format!("\n{}", &old[end..])
                } else {
                    String::new()
                }
            )
        }
        None => format!(
            "{}\n{section}",
            old.trim_end_matches('\n').to_string() + "\n"
        ),
    };
    std::fs::write(&path, new).context("cannot write BENCHMARKS.md")?;
    println!("wrote BENCHMARKS.md ({title})");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_summary_is_read() {
        let text = "Running 5s test @ http://x\n  2 threads and 64 connections\n  Socket errors: connect 0, read 3, write 0, timeout 2\n  Non-2xx or 3xx responses: 17\nRequests/sec:  12345.67\nTransfer/sec:      1.2MB\n";
        let rate = parse_wrk(text).unwrap();
        assert_eq!(rate.per_second, 12345.67);
        assert_eq!((rate.non_2xx, rate.errors), (17, 5));
    }

    #[test]
    fn sections_are_replaced_in_place() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_section(&dir, "A", "one").unwrap();
        write_section(&dir, "B", "two").unwrap();
        write_section(&dir, "A", "three").unwrap();
        let text = std::fs::read_to_string(dir.join("BENCHMARKS.md")).unwrap();
        assert!(
            text.contains("## A\n\nthree\n")
                && text.contains("## B\n\ntwo\n")
                && !text.contains("one"),
            "{text}"
        );
        assert!(text.find("## A").unwrap() < text.find("## B").unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
