//! The callback path, run by `cargo xtask bench` beside the SDK's polling
//! strategies (the `uncensored` crate's `client` benchmark, `wait`), and
//! printed as one JSON line of the same shape.
//!
//! - `wait JOBS TIME_SCALE`: async jobs of 5-30 s (modelled) whose callbacks
//!   go to a [`CallbackService`] on loopback, each with a signed URL of its
//!   own. The lag is the time from a job's end to its detection: the
//!   callback, the tag check and the confirming read, recorded in the journal
//!   (`on_confirmed`); polls are the service's confirming reads per job, as
//!   the emulator counted them. Every job is also stored (in memory) before
//!   the run ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use uncensored::callback::CallbackSecret;
use uncensored::{Client, GenerateRequest, Generation};
use uncensored_deliver::Deliverer;
use uncensored_deliver::callbacks::CallbackService;
use uncensored_deliver::journal::{SqliteJournal, Stage};
use uncensored_deliver::storage::StorageUrl;

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
        ["wait", jobs, scale] => {
            runtime.block_on(wait(jobs.parse().unwrap(), scale.parse().unwrap()))
        }
        _ => eprintln!("usage: callbacks wait JOBS TIME_SCALE"),
    }
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
        .api_key(uncensored_emulator::DEFAULT_KEY)
        .build()
        .unwrap();
    let deliverer = Deliverer::new(
        client.clone(),
        Arc::new(StorageUrl::parse("memory://").unwrap().open().unwrap()),
        Arc::new(SqliteJournal::in_memory().unwrap()),
    );
    let secret = CallbackSecret::new("a benchmark secret of at least 32 characters").unwrap();
    let (confirmed, mut detected) = tokio::sync::mpsc::unbounded_channel();
    let (done, mut stored) = tokio::sync::mpsc::unbounded_channel();
    let service = CallbackService::builder(client.clone(), deliverer)
        .secret(secret.clone())
        .on_confirmed(move |job| {
            let _ = confirmed.send((job.job_id.clone(), Instant::now(), job.generation_time));
        })
        .reporter(move |job_id, outcome| {
            assert!(
                matches!(outcome.as_ref().map(|e| &e.stage), Ok(Stage::Stored { .. })),
                "{job_id} was not stored: {outcome:?}"
            );
            let _ = done.send(());
        })
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = service.router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let mut accepted = HashMap::new();
    for i in 0..jobs {
        let url = secret.callback_url(&base).unwrap().url;
        let request = GenerateRequest::new(format!("hook {i}"))
            .size(256, 256)
            .callback_url(url);
        let Generation::Queued(job) = client.generate(&request).await.unwrap() else {
            panic!("async")
        };
        accepted.insert(job.job_id, Instant::now());
    }
    let mut lags = Vec::new();
    while lags.len() < jobs {
        let (job_id, at, generation) = detected.recv().await.unwrap();
        let detected = at.duration_since(accepted[&job_id]).as_secs_f64();
        lags.push((detected / scale - generation.unwrap()).max(0.0));
    }
    for _ in 0..jobs {
        stored.recv().await.unwrap();
    }
    lags.sort_by(f64::total_cmp);
    let reads: u64 = emulator
        .stats()
        .requests
        .get("GET /v1/images/generation/jobs/{job_id}")
        .map(|by_status| by_status.values().sum())
        .unwrap_or(0);
    // Every stored job was read at least once, so `reads - (jobs - 1)` bounds
    // the reads of any one job (1 when each job was read exactly once).
    let max_reads = reads.saturating_sub(jobs as u64 - 1);
    println!(
        "{}",
        json!({
            "bench": "wait", "name": "callback_service",
            "mean_lag_s": lags.iter().sum::<f64>() / lags.len() as f64,
            "p95_lag_s": lags[(lags.len() * 95 / 100).min(lags.len() - 1)],
            "mean_polls": reads as f64 / jobs as f64, "max_polls": max_reads,
        })
    );
}
