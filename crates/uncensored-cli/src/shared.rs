//! `uncensored batch status`: where a batch stands, in any journal (the
//! SQLite one beside the images, or a shared PostgreSQL one).

use serde_json::json;
use uncensored_deliver::journal::JournalLocation;

use crate::cli::Cli;
use crate::context::journal;
use crate::failure::Failure;

/// `uncensored batch status --journal … [--name NAME]`.
pub async fn status(
    cli: &Cli,
    location: &JournalLocation,
    name: Option<&str>,
) -> Result<(), Failure> {
    let journal = journal(location).await?;
    let failed = |e: uncensored_deliver::journal::JournalError| Failure::journal(location, e);
    let Some(batch) = journal.batch(name).await.map_err(failed)? else {
        return Err(Failure::input(match name {
            Some(name) => format!("--journal {location} holds no batch `{name}`"),
            None => format!("--journal {location} holds no batch"),
        }));
    };
    let status = journal.status(&batch.name).await.map_err(failed)?;
    let spend = journal.spend(&batch.name).await.map_err(failed)?;
    if cli.json {
        let mut value = json!({
            "batch": batch.name,
            "lines": batch.lines,
            "done": status.done,
            "failed": status.failed,
            "in_flight": status.in_flight,
            "handed_off": status.handed_off,
            "left": status.left,
            "stopped": batch.stop,
        });
        if let Some(fields) = value.as_object_mut() {
            crate::tally::spend_fields(spend.as_ref(), fields);
        }
        println!("{value}");
        return Ok(());
    }
    println!(
        "batch `{}`: {} lines",
        crate::terminal::safe(&batch.name),
        batch.lines
    );
    println!("done:      {}", status.done);
    println!("failed:    {}", status.failed);
    println!("in flight: {}", status.in_flight_total());
    for (worker, count) in &status.in_flight {
        println!("  {}: {count}", crate::terminal::safe(worker));
    }
    if status.handed_off > 0 {
        // Submitted with --callback-url: paid, the callback service delivers them.
        println!(
            "handed off to the callback service (submitted, not yet delivered): {}",
            status.handed_off
        );
    }
    println!("left:      {}", status.left);
    if let Some(line) = crate::tally::spend_line(spend.as_ref()) {
        println!("{line}");
    }
    if let Some(stop) = &batch.stop {
        println!(
            "stopped:   {} ({}); {}",
            stop.reason,
            crate::terminal::safe(&stop.message),
            stop.reason.advice()
        );
    }
    Ok(())
}
