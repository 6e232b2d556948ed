//! `uncensored batch FILE --journal postgres://…`: a batch shared by every
//! worker that runs the same command (uncensored_deliver::worker), and
//! `uncensored batch status`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use uncensored_deliver::journal::{BatchStatus, JournalLocation};
use uncensored_deliver::worker::{self, Worker};

use crate::batch::{Line, Tally};
use crate::cli::{Batch, Cli};
use crate::context::{connect, deliverer, journal, shared_journal};
use crate::failure::Failure;
use crate::settings::Settings;

/// This worker's name in the journal: the host and the process.
fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{host}-{}", std::process::id())
}

/// Loads the batch (once, whoever comes first), then works on it with the
/// others until nothing is left.
pub async fn run(
    cli: &Cli,
    args: &Batch,
    settings: &Settings,
    file: &Path,
    lines: Vec<Line>,
    location: &JournalLocation,
) -> Result<(), Failure> {
    // Everything that can be refused is refused before the first request:
    // the database, the batch it holds, the storage, the notifiers.
    let (journal, pacing) = shared_journal(location).await?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.display().to_string());
    let items: Vec<(String, uncensored::GenerateRequest)> = lines
        .iter()
        .map(|line| (line.id.clone(), line.request.clone()))
        .collect();
    let added = worker::load(journal.as_ref(), &name, &items)
        .await
        .map_err(|e| Failure::input(format!("--journal {location}: {e}")))?;
    let numbers: HashMap<String, usize> = lines
        .iter()
        .map(|line| (line.id.clone(), line.number))
        .collect();
    let connection = connect(settings, cli.emulator, pacing).await?;
    let deliverer = deliverer(settings, connection.client.clone(), journal.clone()).await?;
    let worker = Worker::new(Arc::new(deliverer), holder())
        .concurrency(usize::from(settings.concurrency.max(1)))
        .lease(Duration::from_secs(args.lease));
    if !cli.json {
        eprintln!(
            "worker {} on the batch `{name}` ({} lines, {added} added by this worker) in {location}",
            worker.holder(),
            lines.len()
        );
    }
    let mut tally = Tally::new(lines.len(), cli.json);
    worker
        .run(|outcome| {
            let number = numbers.get(&outcome.id).copied().unwrap_or(0);
            tally.record(number, false, &outcome.result);
        })
        .await
        .map_err(|e| Failure::other(format!("--journal {location}: {e}")))?;
    let status = journal
        .status()
        .await
        .map_err(|e| Failure::other(format!("--journal {location}: {e}")))?;
    let mut extra = serde_json::Map::new();
    extra.insert("journal".into(), json!(location.to_string()));
    extra.insert("worker".into(), json!(worker.holder()));
    extra.insert("batch".into(), json!(status));
    tally.finish(
        extra,
        &format!(
            " by this worker; the batch: {} done, {} failed, {} left",
            status.done,
            status.failed,
            status.left + status.in_flight_total()
        ),
    )
}

/// `uncensored batch status --journal …`.
pub async fn status(cli: &Cli, location: &JournalLocation) -> Result<(), Failure> {
    let journal = journal(location).await?;
    let failed = |e: uncensored_deliver::journal::JournalError| {
        Failure::other(format!("--journal {location}: {e}"))
    };
    let batch = journal.batch().await.map_err(failed)?;
    let status: BatchStatus = journal.status().await.map_err(failed)?;
    if cli.json {
        println!(
            "{}",
            json!({
                "batch": batch.as_ref().map(|b| &b.name),
                "lines": batch.as_ref().map(|b| b.line_ids.len()),
                "done": status.done,
                "failed": status.failed,
                "in_flight": status.in_flight,
                "left": status.left,
            })
        );
        return Ok(());
    }
    match &batch {
        Some(batch) => println!("batch `{}`: {} lines", batch.name, batch.line_ids.len()),
        None => println!("no batch loaded (entries of single deliveries only)"),
    }
    println!("done:      {}", status.done);
    println!("failed:    {}", status.failed);
    println!("in flight: {}", status.in_flight_total());
    for (worker, count) in &status.in_flight {
        println!("  {worker}: {count}");
    }
    println!("left:      {}", status.left);
    Ok(())
}
