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

use crate::cli::{Batch, Cli, RequestFields};
use crate::context::{apply, connect, default_journal, deliverer, journal};
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

/// Runs the batch.
pub async fn run(cli: &Cli, args: &Batch) -> Result<(), Failure> {
    let mut settings = Settings::load(cli, Some(&args.output))?;
    if let Some(concurrency) = args.concurrency {
        settings.concurrency = concurrency;
    }
    let lines = parse(&args.file, &args.fields)?;
    let connection = connect(&settings, cli.emulator, true).await?;
    let journal_path = args
        .journal
        .clone()
        .unwrap_or_else(|| default_journal(&settings));
    let deliverer = deliverer(
        &settings,
        connection.client.clone(),
        journal(&journal_path)?,
    )
    .await?;
    if args.resume {
        // Entries of earlier runs, including lines since removed from the file.
        for result in deliverer.resume().await.map_err(Failure::from)? {
            if let Err(error) = result {
                eprintln!("an earlier line is still unfinished: {error}");
            }
        }
    }

    let total = lines.len();
    let terminal = std::io::stderr().is_terminal() && !cli.json;
    let bar = if terminal {
        ProgressBar::new(total as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} done · {msg} · {per_sec} · ETA {eta}")
            .expect("a valid template"),
    );
    bar.set_message("0 failed");
    let (mut stored, mut failed, mut already) = (0usize, 0usize, 0usize);
    // Each reason's advice is printed once, at the end, however many lines failed for it.
    let mut reasons = std::collections::BTreeMap::<&'static str, (usize, &'static str)>::new();
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
        let (ok, line) = match outcome {
            Ok(entry) => match &entry.stage {
                Stage::Stored { location, .. } => {
                    stored += 1;
                    already += usize::from(was_done);
                    (true, format!("line {number}: stored at {location}"))
                }
                Stage::Failed {
                    reason, message, ..
                } => {
                    failed += 1;
                    reasons
                        .entry(reason.as_str())
                        .or_insert((0, reason.advice()))
                        .0 += 1;
                    (
                        false,
                        format!("line {number}: failed ({reason}): {message}"),
                    )
                }
                other => {
                    failed += 1;
                    (false, format!("line {number}: stopped at {other:?}"))
                }
            },
            Err(error) => {
                failed += 1;
                let reason = error.reason();
                reasons
                    .entry(reason.as_str())
                    .or_insert((0, reason.advice()))
                    .0 += 1;
                (false, format!("line {number}: {error}"))
            }
        };
        bar.inc(1);
        bar.set_message(format!("{failed} failed"));
        if terminal {
            if !ok {
                bar.println(line);
            }
        } else if !cli.json {
            eprintln!("[{}/{total}] {line}", stored + failed);
        }
    }
    bar.finish_and_clear();
    let by_reason: serde_json::Map<String, serde_json::Value> = reasons
        .iter()
        .map(|(reason, (count, _))| (reason.to_string(), json!(count)))
        .collect();
    let summary = json!({"lines": total, "stored": stored, "failed": failed, "failed_by_reason": by_reason, "already_done": already, "journal": journal_path.display().to_string()});
    if cli.json {
        println!("{summary}");
    } else {
        println!(
            "{total} lines: {stored} stored ({already} already done before this run), {failed} failed"
        );
        for (reason, (count, advice)) in &reasons {
            eprintln!("{count} failed with `{reason}`: {advice}");
        }
    }
    if failed > 0 {
        Err(Failure::batch(failed, total))
    } else {
        Ok(())
    }
}
