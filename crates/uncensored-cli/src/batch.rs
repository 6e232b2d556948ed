//! `uncensored batch FILE`: every line a job, run by the one batch engine
//! (`uncensored_deliver::worker`) on the journal beside the images (SQLite)
//! or a shared one (PostgreSQL): lines known by their content, claimed under
//! leases, stopped for every worker when the account or the key cannot go
//! on, drained on SIGTERM or Ctrl-C. A rerun of the same command finishes
//! the batch without paying twice.

use std::io::BufRead as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use uncensored::{CancellationToken, GenerateRequest};
use uncensored_deliver::callbacks::HandOff;
use uncensored_deliver::journal::{JournalError, JournalLocation, LineIds};
use uncensored_deliver::spend::{self, Prices, Spending};
use uncensored_deliver::worker::{self, Worker};

use crate::cli::{Batch, BatchAction, Cli, RequestFields};
use crate::context::{
    Pacing, apply, connect, default_journal, deliverer_on, journal, object_storage, shared_journal,
};
use crate::failure::Failure;
use crate::settings::Settings;
use crate::tally::Tally;

/// The longest line a batch file may have (a prompt and its JSON fields fit
/// many times over): a longer one is refused, never read whole.
const MAX_LINE: usize = 1 << 20;

/// A JSON Lines line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLine {
    prompt: String,
    model: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    resolution: Option<String>,
    quality: Option<String>,
    #[serde(default)]
    settings: serde_json::Map<String, serde_json::Value>,
}

/// The lines of a batch file, read one at a time and checked: each is its
/// 1-based line number and its request; an error names the line.
pub struct Lines<'a> {
    reader: std::io::BufReader<std::fs::File>,
    name: String,
    fields: &'a RequestFields,
    number: u64,
    buffer: Vec<u8>,
}

impl<'a> Lines<'a> {
    /// Opens `file`.
    pub fn open(file: &Path, fields: &'a RequestFields) -> Result<Self, Failure> {
        let opened = std::fs::File::open(file)
            .map_err(|e| Failure::input(format!("cannot read {}: {e}", file.display())))?;
        Ok(Self {
            reader: std::io::BufReader::new(opened),
            name: file.display().to_string(),
            fields,
            number: 0,
            buffer: Vec::new(),
        })
    }

    /// The next raw line, at most [`MAX_LINE`] bytes; `None` at the end.
    fn raw(&mut self) -> Option<Result<String, Failure>> {
        self.buffer.clear();
        let limit = (MAX_LINE + 1) as u64;
        let read = std::io::Read::take(&mut self.reader, limit).read_until(b'\n', &mut self.buffer);
        self.number += 1;
        let name = &self.name;
        let number = self.number;
        match read {
            Ok(0) => None,
            Err(e) => Some(Err(Failure::input(format!("cannot read {name}: {e}")))),
            Ok(_) if self.buffer.len() > MAX_LINE => Some(Err(Failure::input(format!(
                "{name}:{number}: the line is longer than {MAX_LINE} bytes"
            )))),
            Ok(_) => Some(
                String::from_utf8(std::mem::take(&mut self.buffer))
                    .map_err(|_| Failure::input(format!("{name}:{number}: not UTF-8 text"))),
            ),
        }
    }

    fn request(&self, trimmed: &str) -> Result<GenerateRequest, Failure> {
        let (name, number) = (&self.name, self.number);
        let request = if trimmed.starts_with('{') {
            let line: JsonLine = serde_json::from_str(trimmed).map_err(|e| {
                Failure::input(format!("{name}:{number}: not a valid JSON line: {e}"))
            })?;
            let mut request = apply(self.fields, GenerateRequest::new(line.prompt));
            if let Some(model) = line.model {
                request = request.model(model);
            }
            if let Some(width) = line.width {
                request = request.width(width);
            }
            if let Some(height) = line.height {
                request = request.height(height);
            }
            if let Some(resolution) = line.resolution {
                request = request.resolution(resolution);
            }
            if let Some(quality) = line.quality {
                request = request.quality(quality);
            }
            for (key, value) in line.settings {
                request = request.setting(key, value);
            }
            request
        } else {
            apply(self.fields, GenerateRequest::new(trimmed))
        };
        request
            .validate()
            .map_err(|e| Failure::input(format!("{name}:{number}: {e}")))?;
        Ok(request)
    }
}

impl Iterator for Lines<'_> {
    type Item = Result<(u64, GenerateRequest), Failure>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let raw = match self.raw()? {
                Ok(raw) => raw,
                Err(error) => return Some(Err(error)),
            };
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            return Some(self.request(trimmed).map(|request| (self.number, request)));
        }
    }
}

/// Cancels `shutdown` on the first SIGTERM or Ctrl-C (the worker drains);
/// the second one ends the process at once (the journal keeps it safe).
fn on_signals(shutdown: CancellationToken, drain: u64) {
    tokio::spawn(async move {
        if crate::stopped().await.is_err() {
            return;
        }
        eprintln!(
            "stopping: no more lines are claimed; lines in flight get {drain} s to finish (again to stop at once)"
        );
        shutdown.cancel();
        if crate::stopped().await.is_ok() {
            std::process::exit(130);
        }
    });
}

/// Runs the batch (or `batch status`).
pub async fn run(cli: &Cli, args: &Batch) -> Result<(), Failure> {
    if let Some(BatchAction::Status { journal, name }) = &args.action {
        return crate::shared::status(cli, journal, name.as_deref()).await;
    }
    let file = args
        .file
        .as_deref()
        .ok_or_else(|| Failure::input("batch: name the batch file"))?;
    let mut settings = Settings::load(cli, Some(&args.output))?;
    // Refused before anything is read, opened or sent.
    let hand_off = match &args.callback_url {
        Some(base) => Some(hand_off(&settings, base, args.recovery_grace)?),
        None => None,
    };
    if let Some(concurrency) = args.concurrency {
        settings.concurrency = concurrency;
    }
    let name = args.name.clone().unwrap_or_else(|| {
        file.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.display().to_string())
    });
    // Every line is read and checked before anything is opened or sent.
    let mut ids = LineIds::new(&name);
    for line in Lines::open(file, &args.fields)? {
        ids.next(&line?.1);
    }
    let batch = ids.file();
    if batch.lines == 0 {
        return Err(Failure::input(format!("{} has no prompts", file.display())));
    }
    let location = args
        .journal
        .clone()
        .unwrap_or_else(|| JournalLocation::File(default_journal(&settings)));
    if location.is_shared() && args.gallery {
        return Err(Failure::input(
            "--gallery serves batches with a local journal; beside a shared batch run `uncensored gallery --journal URL`",
        ));
    }
    if args.estimate {
        return estimate(cli, args, &settings, &location, file, &name).await;
    }
    // Everything that can be refused is refused before the first request:
    // the database, the storage, the notifiers.
    // One pool per worker: a shared journal's pacer uses the journal's.
    let (journal, pacing) = shared_journal(&location).await?;
    let connection = connect(&settings, cli.emulator, pacing).await?;
    let storage = object_storage(&settings).await?;
    let deliverer = deliverer_on(
        &settings,
        connection.client.clone(),
        journal.clone(),
        Arc::new(storage.clone()),
    )
    .await?;
    let reread = reread(file, &args.fields, &batch.name)?;
    let load = worker::load(journal.as_ref(), &batch, reread)
        .await
        .map_err(|e| Failure::journal(&location, e))?;
    let gallery = match args.gallery {
        true => Some(
            crate::gallery::start_for_batch(
                storage,
                journal.clone(),
                args.gallery_listen,
                cli.json,
            )
            .await?,
        ),
        false => None,
    };
    if args.resume {
        // Single deliveries of earlier runs (batch lines are claimed below).
        for result in deliverer.resume().await.map_err(Failure::from)? {
            if let Err(error) = result {
                eprintln!(
                    "an earlier delivery is still unfinished: {}",
                    crate::terminal::safe(&error.to_string())
                );
            }
        }
    }
    let journal_error = |e: JournalError| Failure::journal(&location, e);
    if let Some(budget) = args.max_spend {
        journal
            .set_budget(&name, Some(budget))
            .await
            .map_err(journal_error)?;
    }
    let before = journal.status(&name).await.map_err(journal_error)?;
    worker::release_dead_local_holders(journal.as_ref(), &name)
        .await
        .map_err(journal_error)?;
    let spending = Spending::new(Prices::new(connection.client.clone()));
    let mut worker = Worker::new(Arc::new(deliverer), &name, worker::holder_name());
    if let Some(hand_off) = hand_off {
        worker = worker.steps(Arc::new(hand_off));
    }
    let worker = worker
        .spending(Arc::new(spending))
        .concurrency(usize::from(settings.concurrency.max(1)))
        .lease(Duration::from_secs(args.lease))
        .drain(Duration::from_secs(args.drain));
    if !cli.json {
        let gone = match load.no_longer_in_file {
            0 => String::new(),
            n => format!("; {n} lines of the journal are no longer in the file"),
        };
        eprintln!(
            "worker {} on the batch `{}` ({} lines, {} added by this worker{gone}) in {location}",
            worker.holder(),
            crate::terminal::safe(&name),
            batch.lines,
            load.added,
        );
        if let Some(lifted) = &load.lifted {
            eprintln!(
                "the batch had stopped ({}: {}); continuing where it stopped",
                lifted.reason,
                crate::terminal::safe(&lifted.message)
            );
        }
    }
    let shutdown = CancellationToken::new();
    on_signals(shutdown.clone(), args.drain);
    let mut tally = Tally::new(batch.lines, before.done + before.failed, cli.json);
    let ending = worker
        .run(shutdown, |outcome| tally.record(&outcome))
        .await
        .map_err(journal_error)?;
    let status = journal.status(&name).await.map_err(journal_error)?;
    tally.spend(journal.spend(&name).await.map_err(journal_error)?);
    let mut extra = serde_json::Map::new();
    extra.insert("journal".into(), json!(location.to_string()));
    extra.insert("worker".into(), json!(worker.holder()));
    extra.insert("name".into(), json!(name));
    let outcome = tally.finish(&ending, &status, &load, extra);
    if let Some(server) = gallery {
        crate::gallery::keep_serving(server).await;
    }
    outcome
}

/// `--callback-url`: the lines' submissions signed with the callback secret
/// `generate --async` uses (from the settings), under `base`.
fn hand_off(settings: &Settings, base: &str, grace: Duration) -> Result<HandOff, Failure> {
    let Some(secret) = settings.callback_secret.clone() else {
        return Err(Failure::input(
            "--callback-url needs UNCENSORED_CALLBACK_SECRET (or callback_secret in the config \
             file), the same as `webhook serve`'s",
        ));
    };
    HandOff::new(secret, base, grace).map_err(|e| Failure::input(format!("--callback-url: {e}")))
}

/// `batch FILE --estimate`: what the lines the journal has not done will
/// cost ([`spend::estimate`]); nothing is written, sent or paid. A local
/// journal that does not exist yet is not created: every line is pending.
async fn estimate(
    cli: &Cli,
    args: &Batch,
    settings: &Settings,
    location: &JournalLocation,
    file: &Path,
    name: &str,
) -> Result<(), Failure> {
    let journal = match location {
        JournalLocation::File(path) if !path.exists() => None,
        _ => Some(journal(location).await?),
    };
    let connection = connect(settings, cli.emulator, Pacing::Local).await?;
    let prices = Prices::new(connection.client.clone());
    let lines = reread(file, &args.fields, name)?;
    let estimate = spend::estimate(&prices, journal.as_deref(), name, lines)
        .await
        .map_err(|error| match error {
            uncensored_deliver::DeliveryError::Journal(e) => Failure::journal(location, e),
            other => other.into(),
        })?;
    if cli.json {
        let mut value = serde_json::to_value(&estimate).unwrap_or_default();
        value["name"] = json!(name);
        value["method"] = json!(estimate.method());
        println!("{value}");
    } else {
        println!(
            "{} of {} lines not yet done: {}",
            estimate.pending, estimate.lines, estimate.cost
        );
        for shape in &estimate.shapes {
            let mut asked = String::new();
            for (field, value) in [
                ("resolution", &shape.resolution),
                ("quality", &shape.quality),
            ] {
                if let Some(value) = value {
                    asked.push_str(&format!(", {field} {}", crate::terminal::safe(value)));
                }
            }
            println!(
                "  {} × {} {}x{}{asked} at {} each",
                shape.lines,
                crate::terminal::safe(&shape.model),
                shape.width,
                shape.height,
                shape.price
            );
        }
        eprintln!("{}", estimate.method());
    }
    Ok(())
}

/// The second read of a batch file, whose every line the first read
/// checked: a line that no longer reads means the file changed in between
/// (bad input, exit 6, run the command again), not a journal failure.
fn reread(
    file: &Path,
    fields: &crate::cli::RequestFields,
    batch: &str,
) -> Result<impl Iterator<Item = Result<(u64, GenerateRequest), JournalError>> + Send, Failure> {
    let batch = batch.to_string();
    Ok(Lines::open(file, fields)?.map(move |line| {
        line.map_err(|_| JournalError::BatchFileChanged {
            batch: batch.clone(),
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_no_longer_reads_on_the_second_read_is_a_changed_file() {
        let dir = std::env::temp_dir().join(format!("uncensored-reread-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("prompts.jsonl");
        // Checked by the first read, then edited into a line that does not read.
        std::fs::write(
            &file,
            "a lighthouse\n{\"prompt\": \"a fox\", \"width\": \"wide\"}\n",
        )
        .unwrap();
        let fields = RequestFields {
            model: None,
            width: None,
            height: None,
            resolution: None,
            quality: None,
            settings: Vec::new(),
        };
        let lines: Vec<_> = reread(&file, &fields, "prompts.jsonl").unwrap().collect();
        assert!(lines[0].is_ok());
        let error = lines[1].as_ref().unwrap_err();
        assert!(
            matches!(error, JournalError::BatchFileChanged { batch } if batch == "prompts.jsonl"),
            "{error:?}"
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
