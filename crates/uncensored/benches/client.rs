//! Benchmarks of the SDK, run by `cargo xtask bench` (which writes BENCHMARKS.md).
//! Each prints one JSON line per measurement on stdout.
//!
//! - `throughput BASE_URL JOB_ID SECONDS CONCURRENCY`: GET job status through
//!   this client and through raw reqwest, against the same running emulator;
//!   for each, the rate and this process's CPU time per request (its own
//!   rusage, from /proc/self/stat). JOB_ID `new` makes a job first.
//! - `wait JOBS TIME_SCALE`: detection lag and polls per job for simulated
//!   5-30 s jobs, with this client's default schedule, fixed 2 s and fixed
//!   0.5 s polling. The callback path is measured beside them by
//!   `uncensored-deliver`'s `callbacks` benchmark (the callback service).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt as _, stream};
use serde_json::json;
use uncensored::{Client, GenerateRequest, Generation, RetryPolicy, WaitOptions};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["throughput", base, job, seconds, concurrency] => runtime.block_on(throughput(
            base,
            job,
            Duration::from_secs(seconds.parse().unwrap()),
            concurrency.parse().unwrap(),
        )),
        ["wait", jobs, scale] => {
            runtime.block_on(wait(jobs.parse().unwrap(), scale.parse().unwrap()))
        }
        _ => eprintln!(
            "usage: client throughput BASE_URL JOB_ID SECONDS CONCURRENCY | client wait JOBS TIME_SCALE"
        ),
    }
}

/// This process's CPU time (user + system) in seconds, from /proc/self/stat
/// (fields 14 and 15, in clock ticks of 1/100 s): the client's own cost,
/// steadier than a wall-clock rate on a machine the server shares.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("Linux /proc");
    // The command name (field 2) may hold spaces: count from its closing parenthesis.
    let rest = &stat[stat.rfind(')').expect("a /proc stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    let ticks = |field: usize| fields[field - 3].parse::<u64>().expect("clock ticks");
    (ticks(14) + ticks(15)) as f64 / 100.0
}

/// What [`hammer`] measured.
struct Load {
    per_second: f64,
    /// This process's CPU time per call, in microseconds.
    cpu_us_per_call: f64,
}

/// Runs `call` from `concurrency` tasks for `duration`: calls per second, and CPU time per call.
async fn hammer<F, Fut>(duration: Duration, concurrency: usize, call: F) -> Load
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let cpu = cpu_seconds();
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (call, done, failed) = (call.clone(), done.clone(), failed.clone());
            tokio::spawn(async move {
                while start.elapsed() < duration {
                    if call().await {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "a benchmark of failures measures nothing"
    );
    let calls = done.load(Ordering::Relaxed) as f64;
    Load {
        per_second: calls / start.elapsed().as_secs_f64(),
        cpu_us_per_call: (cpu_seconds() - cpu) * 1e6 / calls.max(1.0),
    }
}

async fn throughput(base: &str, job: &str, duration: Duration, concurrency: usize) {
    let client = Client::builder()
        .base_url(base)
        .api_key("emulator-key")
        .retry_policy(RetryPolicy::never())
        .build()
        .unwrap();
    let job_id = match job {
        "new" => match client
            .generate(&GenerateRequest::new("benchmark job").size(512, 512))
            .await
            .unwrap()
        {
            Generation::Completed(image) => image.job_id,
            other => panic!("a sync job (time scale 0): {other:?}"),
        },
        job => job.to_string(),
    };
    let url = format!("{base}/v1/images/generation/jobs/{job_id}");
    let sdk = hammer(duration, concurrency, move || {
        let (client, job_id) = (client.clone(), job_id.clone());
        async move { client.job(&job_id).await.is_ok() }
    })
    .await;
    println!(
        "{}",
        json!({"bench": "throughput", "name": "sdk", "per_second": sdk.per_second, "cpu_us_per_request": sdk.cpu_us_per_call})
    );

    let raw = reqwest::Client::new();
    let baseline = hammer(duration, concurrency, move || {
        let (raw, url) = (raw.clone(), url.clone());
        async move {
            match raw
                .get(&url)
                .header("x-api-key", "emulator-key")
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => {
                    response.json::<serde_json::Value>().await.is_ok()
                }
                _ => false,
            }
        }
    })
    .await;
    println!(
        "{}",
        json!({"bench": "throughput", "name": "raw_reqwest", "per_second": baseline.per_second, "cpu_us_per_request": baseline.cpu_us_per_call})
    );
}

/// One waiting strategy's results, in modelled seconds.
struct Outcome {
    mean_lag: f64,
    p95_lag: f64,
    mean_polls: f64,
    max_polls: u32,
}

async fn wait(jobs: usize, scale: f64) {
    let config = uncensored_emulator::Config {
        time_scale: scale,
        seed: 1,
        rate_limit_rpm: 1_000_000,
        ..Default::default()
    };
    let emulator = uncensored_emulator::Emulator::start(config).await.unwrap();
    let client = Client::builder()
        .base_url(emulator.base_url())
        .api_key("emulator-key")
        .build()
        .unwrap();
    let scaled = |options: WaitOptions| WaitOptions {
        first_poll: options.first_poll.mul_f64(scale),
        min_interval: options.min_interval.mul_f64(scale),
        max_interval: options.max_interval.mul_f64(scale),
        ..options
    };
    let fixed = |seconds: f64| WaitOptions {
        first_poll: Duration::from_secs_f64(seconds),
        min_interval: Duration::from_secs_f64(seconds),
        max_interval: Duration::from_secs_f64(seconds),
        growth: 1.0,
        ..WaitOptions::default()
    };
    for (name, options) in [
        ("sdk_default", scaled(WaitOptions::default())),
        ("fixed_2s", scaled(fixed(2.0))),
        ("fixed_0.5s", scaled(fixed(0.5))),
    ] {
        let outcome = polling(&client, jobs, scale, options).await;
        report(name, &outcome);
    }
}

fn report(name: &str, outcome: &Outcome) {
    println!(
        "{}",
        json!({
            "bench": "wait", "name": name, "mean_lag_s": outcome.mean_lag, "p95_lag_s": outcome.p95_lag,
            "mean_polls": outcome.mean_polls, "max_polls": outcome.max_polls,
        })
    );
}

fn summarise(mut lags: Vec<f64>, polls: Vec<u32>) -> Outcome {
    lags.sort_by(f64::total_cmp);
    Outcome {
        mean_lag: lags.iter().sum::<f64>() / lags.len() as f64,
        p95_lag: lags[(lags.len() * 95 / 100).min(lags.len() - 1)],
        mean_polls: polls.iter().map(|p| f64::from(*p)).sum::<f64>() / polls.len() as f64,
        max_polls: polls.into_iter().max().unwrap_or(0),
    }
}

/// Submits async jobs and waits for each with `options`. The lag is the time
/// from the job's end (accepted + its generation time) to its detection.
async fn polling(client: &Client, jobs: usize, scale: f64, options: WaitOptions) -> Outcome {
    let results: Vec<(f64, u32)> = stream::iter(0..jobs)
        .map(|i| {
            let (client, options) = (client.clone(), options.clone());
            async move {
                let request = GenerateRequest::new(format!("wait {i}"))
                    .size(256, 256)
                    .callback_url("http://127.0.0.1:9/none");
                let Generation::Queued(job) = client.generate(&request).await.unwrap() else {
                    panic!("async")
                };
                let accepted = Instant::now();
                let events: Vec<_> = client.watch(&job.job_id, options).collect().await;
                let detected = accepted.elapsed().as_secs_f64();
                let last = events.last().unwrap().as_ref().unwrap();
                let generation = last.job.generation_time.unwrap();
                ((detected / scale - generation).max(0.0), last.poll)
            }
        })
        .buffer_unordered(jobs)
        .collect()
        .await;
    let (lags, polls) = results.into_iter().unzip();
    summarise(lags, polls)
}
