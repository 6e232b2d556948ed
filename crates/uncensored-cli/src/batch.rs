//! `uncensored batch FILE`: every line a job, `--concurrency` at a time, a
//! progress bar on a terminal (plain lines otherwise), a summary, and a journal
//! so that a rerun of the same command finishes the batch without paying twice.

use std::io::IsTerminal as _;

use futures_util::{StreamExt as _, stream};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::json;
use sha2::Digest as _;
use uncensored::GenerateRequest;
use uncensored_deliver::journal::Stage;

use uncensored_deliver::journal::JournalLocation;

use crate::cli::{Batch, BatchAction, Cli, RequestFields};
use crate::context::{
    Pacing, apply, connect, default_journal, deliverer_on, journal, object_storage,
};
use crate::failure::Failure;
use crate::settings::Settings;

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

/// One line of the batch, checked.
#[derive(Debug)]
pub struct Line {
    /// 1-based line number.
    pub number: usize,
    /// The journal id: the line number and a hash of its text, so an edited
    /// line is a new job and an unchanged one is the same job.
    pub id: String,
    /// The request.
    pub request: GenerateRequest,
}

/// Reads and checks every line before anything is sent; an error names the line.
pub fn parse(file: &std::path::Path, fields: &RequestFields) -> Result<Vec<Line>, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::input(format!("cannot read {}: {e}", file.display())))?;
    let name = file.display();
    let mut lines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let request = if trimmed.starts_with('{') {
            let line: JsonLine = serde_json::from_str(trimmed).map_err(|e| {
                Failure::input(format!("{name}:{number}: not a valid JSON line: {e}"))
            })?;
            let mut request = apply(fields, GenerateRequest::new(line.prompt));
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
            apply(fields, GenerateRequest::new(trimmed))
        };
        request
            .validate()
            .map_err(|e| Failure::input(format!("{name}:{number}: {e}")))?;
        let digest = sha2::Sha256::digest(trimmed.as_bytes());
        let hash: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        lines.push(Line {
            number,
            id: format!("line{number}-{hash}"),
            request,
        });
    }
    if lines.is_empty() {
        return Err(Failure::input(format!("{name} has no prompts")));
    }
    Ok(lines)
}

/// What a run of a batch has seen so far, and how it is shown.
pub struct Tally {
    total: usize,
    stored: usize,
    failed: usize,
    already: usize,
    /// Each reason's advice is printed once, at the end, however many lines failed for it.
    reasons: std::collections::BTreeMap<&'static str, (usize, &'static str)>,
    bar: ProgressBar,
    terminal: bool,
    json: bool,
}

impl Tally {
    /// A tally of `total` lines, with a progress bar on a terminal.
    pub fn new(total: usize, json: bool) -> Self {
        let terminal = std::io::stderr().is_terminal() && !json;
        let bar = if terminal {
            ProgressBar::new(total as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} done · {msg} · {per_sec} · ETA {eta}",
            )
            .expect("a valid template"),
        );
        bar.set_message("0 failed");
        Self {
            total,
            stored: 0,
            failed: 0,
            already: 0,
            reasons: Default::default(),
            bar,
            terminal,
            json,
        }
    }

    /// Records and shows the outcome of line `number`.
    pub fn record(
        &mut self,
        number: usize,
        was_done: bool,
        outcome: &Result<uncensored_deliver::journal::Entry, uncensored_deliver::DeliveryError>,
    ) {
        let (ok, line) = match outcome {
            Ok(entry) => match &entry.stage {
                Stage::Stored { location, .. } => {
                    self.stored += 1;
                    self.already += usize::from(was_done);
                    (true, format!("line {number}: stored at {location}"))
                }
                Stage::Failed {
                    reason, message, ..
                } => {
                    self.failed += 1;
                    self.reasons
                        .entry(reason.as_str())
                        .or_insert((0, reason.advice()))
                        .0 += 1;
                    (
                        false,
                        format!("line {number}: failed ({reason}): {message}"),
                    )
                }
                other => {
                    self.failed += 1;
                    (false, format!("line {number}: stopped at {other:?}"))
                }
            },
            Err(error) => {
                self.failed += 1;
                let reason = error.reason();
                self.reasons
                    .entry(reason.as_str())
                    .or_insert((0, reason.advice()))
                    .0 += 1;
                (false, format!("line {number}: {error}"))
            }
        };
        let line = crate::terminal::safe(&line).into_owned();
        self.bar.inc(1);
        self.bar.set_message(format!("{} failed", self.failed));
        if self.terminal {
            if !ok {
                self.bar.println(line);
            }
        } else if !self.json {
            eprintln!("[{}/{}] {line}", self.stored + self.failed, self.total);
        }
    }

    /// Prints the summary (with `extra` fields in JSON); fails when a line failed.
    pub fn finish(
        self,
        extra: serde_json::Map<String, serde_json::Value>,
        people: &str,
    ) -> Result<(), Failure> {
        self.bar.finish_and_clear();
        let by_reason: serde_json::Map<String, serde_json::Value> = self
            .reasons
            .iter()
            .map(|(reason, (count, _))| (reason.to_string(), json!(count)))
            .collect();
        let mut summary = json!({"lines": self.total, "stored": self.stored, "failed": self.failed, "failed_by_reason": by_reason, "already_done": self.already});
        if let Some(object) = summary.as_object_mut() {
            object.extend(extra);
        }
        if self.json {
            println!("{summary}");
        } else {
            println!(
                "{} lines: {} stored ({} already done before this run), {} failed{people}",
                self.total, self.stored, self.already, self.failed
            );
            for (reason, (count, advice)) in &self.reasons {
                eprintln!("{count} failed with `{reason}`: {advice}");
            }
        }
        if self.failed > 0 {
            Err(Failure::batch(self.failed, self.total))
        } else {
            Ok(())
        }
    }
}

/// Runs the batch (or `batch status`).
pub async fn run(cli: &Cli, args: &Batch) -> Result<(), Failure> {
    if let Some(BatchAction::Status { journal }) = &args.action {
        return crate::shared::status(cli, journal).await;
    }
    let file = args
        .file
        .as_deref()
        .ok_or_else(|| Failure::input("batch: name the batch file"))?;
    let mut settings = Settings::load(cli, Some(&args.output))?;
    if let Some(concurrency) = args.concurrency {
        settings.concurrency = concurrency;
    }
    let lines = parse(file, &args.fields)?;
    let location = args
        .journal
        .clone()
        .unwrap_or_else(|| JournalLocation::File(default_journal(&settings)));
    if location.is_shared() {
        if args.gallery {
            return Err(Failure::input(
                "--gallery serves batches with a local journal; beside a shared batch run `uncensored gallery --journal URL`",
            ));
        }
        return crate::shared::run(cli, args, &settings, file, lines, &location).await;
    }
    let journal = journal(&location).await?;
    let connection = connect(&settings, cli.emulator, Pacing::Local).await?;
    let storage = object_storage(&settings).await?;
    let deliverer = deliverer_on(
        &settings,
        connection.client.clone(),
        journal,
        std::sync::Arc::new(storage.clone()),
    )
    .await?;
    let gallery = match args.gallery {
        true => Some(
            crate::gallery::start_for_batch(
                storage,
                deliverer.journal().clone(),
                args.gallery_listen,
                cli.json,
            )
            .await?,
        ),
        false => None,
    };
    if args.resume {
        // Entries of earlier runs, including lines since removed from the file.
        for result in deliverer.resume().await.map_err(Failure::from)? {
            if let Err(error) = result {
                eprintln!(
                    "an earlier line is still unfinished: {}",
                    crate::terminal::safe(&error.to_string())
                );
            }
        }
    }

    let mut tally = Tally::new(lines.len(), cli.json);
    let mut outcomes = stream::iter(lines)
        .map(|line| {
            let deliverer = &deliverer;
            async move {
                let before = deliverer
                    .journal()
                    .get(&line.id)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|e| e.done);
                (
                    line.number,
                    before,
                    deliverer.deliver(&line.id, &line.request).await,
                )
            }
        })
        .buffer_unordered(usize::from(settings.concurrency.max(1)));
    while let Some((number, was_done, outcome)) = outcomes.next().await {
        tally.record(number, was_done, &outcome);
    }
    let mut extra = serde_json::Map::new();
    extra.insert("journal".into(), json!(location.to_string()));
    let outcome = tally.finish(extra, "");
    if let Some(server) = gallery {
        crate::gallery::keep_serving(server).await;
    }
    outcome
}
