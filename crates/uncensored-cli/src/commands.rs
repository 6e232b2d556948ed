//! The single-job commands: generate, status, wait, download, balance, config show.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::json;
use uncensored::{GenerateRequest, Generation, WaitOptions};
use uncensored_deliver::Deliverer;
use uncensored_deliver::callbacks::Submitter;
use uncensored_deliver::journal::{Entry, JournalLocation, SqliteJournal, Stage};

use crate::cli::{Cli, Generate, Output};
use crate::context::{Pacing, apply, connect, default_journal};
use crate::failure::Failure;
use crate::settings::Settings;
use crate::terminal::safe;

/// A pipeline for one command: single jobs need no journal on disk.
async fn deliverer(settings: &Settings, client: uncensored::Client) -> Result<Deliverer, Failure> {
    let journal = SqliteJournal::in_memory().map_err(|e| Failure::other(e.to_string()))?;
    crate::context::deliverer(settings, client, Arc::new(journal)).await
}

/// Prints a finished entry: its location (or failure), as a line or JSON.
fn print_entry(entry: &Entry, json: bool) -> Result<(), Failure> {
    match &entry.stage {
        Stage::Stored(image) => {
            if json {
                // The image's one record, as the journal and notifiers keep it.
                println!("{}", json!(image));
            } else {
                println!("{}", safe(&image.location));
            }
            Ok(())
        }
        Stage::Failed {
            reason, message, ..
        } => Err(Failure::of(*reason, message.clone())),
        other => Err(Failure::other(format!("the delivery stopped at {other:?}"))),
    }
}

/// `generate`.
pub async fn generate(cli: &Cli, args: &Generate) -> Result<(), Failure> {
    let settings = Settings::load(cli, Some(&args.output))?;
    let mut request = apply(&args.fields, GenerateRequest::new(args.prompt.clone()));
    if let (Some(secret), Some(base), true) = (
        &settings.callback_secret,
        &args.callback_url,
        args.asynchronous,
    ) {
        // A signed URL of its own under `base`, and the submission recorded
        // where `webhook serve` reads it.
        request
            .validate()
            .map_err(|e| Failure::input(e.to_string()))?;
        secret
            .callback_url(base)
            .map_err(|e| Failure::input(format!("--callback-url: {e}")))?;
        let submitter = {
            let connection = connect(&settings, cli.emulator, Pacing::Off).await?;
            let location = args
                .journal
                .clone()
                .unwrap_or_else(|| JournalLocation::File(default_journal(&settings)));
            let journal = crate::context::journal(&location).await?;
            Submitter::new(connection.client, journal, secret.clone(), base)
                .map_err(|e| Failure::input(format!("--callback-url: {e}")))?
        };
        let submitted = submitter.submit(&request).await?;
        if cli.json {
            println!(
                "{}",
                json!({"job_id": submitted.job_id, "status": if submitted.completed { "completed" } else { "processing" },
                       "status_url": submitted.status_url, "journal_id": submitted.id})
            );
        } else {
            println!("{}", safe(&submitted.job_id));
        }
        return Ok(());
    }
    if let Some(url) = &args.callback_url {
        // Without a secret: the URL as given (`webhook serve --accept-unsigned`).
        request = request.callback_url(url.clone());
    }
    request
        .validate()
        .map_err(|e| Failure::input(e.to_string()))?;
    let connection = connect(&settings, cli.emulator, Pacing::Off).await?;
    if args.asynchronous {
        let Generation::Queued(job) = connection.client.generate(&request).await? else {
            return Err(Failure::other(
                "the API answered synchronously despite --callback-url",
            ));
        };
        if cli.json {
            println!(
                "{}",
                json!({"job_id": job.job_id, "status": job.status.as_str(), "status_url": job.status_url})
            );
        } else {
            println!("{}", safe(&job.job_id));
        }
        return Ok(());
    }
    let deliverer = deliverer(&settings, connection.client.clone()).await?;
    let id = format!("generate-{}", uuid_like());
    let entry = deliverer.deliver(&id, &request).await?;
    print_entry(&entry, cli.json)
}

fn uuid_like() -> String {
    use sha2::Digest as _;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let digest = sha2::Sha256::digest(format!("{nanos}-{}", std::process::id()));
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// `status`.
pub async fn status(cli: &Cli, job: &str) -> Result<(), Failure> {
    let settings = Settings::load(cli, None)?;
    let connection = connect(&settings, cli.emulator, Pacing::Off).await?;
    let job = connection.client.job(job).await?;
    if cli.json {
        println!(
            "{}",
            json!({"job_id": job.job_id, "status": job.status.as_str(), "image_url": job.image_url, "model": job.model,
                   "generation_time": job.generation_time, "error": job.error_message})
        );
    } else {
        println!("{}", safe(&job.status.to_string()));
    }
    Ok(())
}

/// `wait`: progress on stderr, the image URL on stdout.
pub async fn wait(cli: &Cli, job: &str, timeout: u64) -> Result<(), Failure> {
    let settings = Settings::load(cli, None)?;
    let connection = connect(&settings, cli.emulator, Pacing::Off).await?;
    let options = WaitOptions::default().with_deadline(Duration::from_secs(timeout));
    let events = connection.client.watch(job, options);
    futures_util::pin_mut!(events);
    let mut last = None;
    while let Some(event) = events.next().await {
        let event = event?;
        if event.changed && !cli.json {
            eprintln!(
                "{}: {} after {:.0?}",
                safe(&event.job.job_id),
                safe(&event.job.status.to_string()),
                event.elapsed
            );
        }
        last = Some(event);
    }
    let job = last.expect("a watch ends with an event or an error").job;
    let image = job.into_image(0)?;
    if cli.json {
        println!(
            "{}",
            json!({"job_id": image.job_id, "status": "completed", "image_url": image.url})
        );
    } else {
        println!("{}", safe(&image.url));
    }
    Ok(())
}

/// `download`: stores a finished job's image like `generate` does.
pub async fn download(cli: &Cli, job: &str, output: &Output) -> Result<(), Failure> {
    let settings = Settings::load(cli, Some(output))?;
    let connection = connect(&settings, cli.emulator, Pacing::Off).await?;
    let found = connection.client.job(job).await?;
    let deliverer = deliverer(&settings, connection.client.clone()).await?;
    // The prompt is not in the job record; the metadata says so.
    let described = GenerateRequest::new(format!("(job {job}: prompt unknown to `download`)"));
    let entry = deliverer
        .deliver_job(&format!("download-{job}"), &found.job_id, &described)
        .await?;
    print_entry(&entry, cli.json)
}

/// `balance`: the SDK's [`uncensored::Balance`], in USD or (`--json`) nanos.
pub async fn balance(cli: &Cli) -> Result<(), Failure> {
    let settings = Settings::load(cli, None)?;
    let connection = connect(&settings, cli.emulator, Pacing::Off).await?;
    let balance = connection.client.balance().await?;
    if cli.json {
        println!("{}", json!(balance));
    } else {
        for (label, amount) in [
            ("balance", balance.balance),
            ("held", balance.held),
            ("available", balance.available),
            ("daily spend", balance.daily_spend),
            ("monthly spend", balance.monthly_spend),
        ] {
            println!("{label:<14} {amount}");
        }
    }
    Ok(())
}

/// `config show`.
pub fn config_show(cli: &Cli) -> Result<(), Failure> {
    let settings = Settings::load(cli, None)?;
    let shown = settings.shown();
    if cli.json {
        println!("{shown}");
    } else {
        for (key, value) in shown.as_object().expect("an object") {
            let text = match value {
                serde_json::Value::Null => "(not set)".to_string(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("{key:<14} {}", safe(&text));
        }
    }
    Ok(())
}
