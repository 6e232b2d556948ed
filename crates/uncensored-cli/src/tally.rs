//! What a run of a batch has seen, shown as it goes (a progress bar on a
//! terminal, a line per line otherwise) and summed up at the end, with the
//! exit code of what ended it.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use uncensored::FailureReason;
use uncensored_deliver::journal::{BatchSpend, BatchStatus, JournalError, LoadReport, Stage};
use uncensored_deliver::worker::{Ending, Outcome};
use uncensored_deliver::{DeliveryError, DeliveryReason};

use crate::failure::Failure;

/// A line's failure: its number and why.
struct Failed {
    line: Option<u64>,
    reason: DeliveryReason,
}

/// The lines this run has seen. A line is known by its id: when a line
/// failed and then succeeded (taken again after the journal came back),
/// its last outcome counts.
pub struct Tally {
    lines: u64,
    already: u64,
    stored: u64,
    failed: HashMap<String, Failed>,
    /// Lines given back: taken over by another worker, or left pending by the batch's stop.
    handed_back: u64,
    /// Lines submitted and handed off to the callback service (`--callback-url`).
    submitted: u64,
    seen: u64,
    spend: Option<BatchSpend>,
    bar: ProgressBar,
    terminal: bool,
    json: bool,
}

impl Tally {
    /// A tally of a batch of `lines` lines, `already` of them done before this run.
    pub fn new(lines: u64, already: u64, json: bool) -> Self {
        let terminal = std::io::stderr().is_terminal() && !json;
        let bar = if terminal {
            ProgressBar::new(lines)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} done · {msg} · {per_sec} · ETA {eta}",
            )
            .expect("a valid template"),
        );
        bar.set_position(already);
        bar.set_message("0 failed");
        Self {
            lines,
            already,
            stored: 0,
            failed: HashMap::new(),
            handed_back: 0,
            submitted: 0,
            seen: 0,
            spend: None,
            bar,
            terminal,
            json,
        }
    }

    /// Records and shows one line's outcome.
    pub fn record(&mut self, outcome: &Outcome) {
        let number = outcome
            .line
            .map_or_else(|| outcome.id.clone(), |n| n.to_string());
        let (ok, text) = match &outcome.result {
            Ok(entry) => match &entry.stage {
                Stage::Accepted { job_id } if !entry.done => {
                    self.submitted += 1;
                    self.failed.remove(&outcome.id);
                    (
                        true,
                        format!(
                            "line {number}: submitted as job {job_id}, handed to the callback service"
                        ),
                    )
                }
                Stage::Stored(image) => {
                    self.stored += 1;
                    self.failed.remove(&outcome.id);
                    self.bar.inc(1);
                    (true, format!("line {number}: stored at {}", image.location))
                }
                Stage::Failed {
                    reason, message, ..
                } => {
                    self.fail(outcome, (*reason).into());
                    (
                        false,
                        format!("line {number}: failed ({reason}): {message}"),
                    )
                }
                other => {
                    self.fail(outcome, FailureReason::Other.into());
                    (false, format!("line {number}: stopped at {other:?}"))
                }
            },
            Err(error) if error.batch_stop().is_some() => {
                self.handed_back += 1;
                (false, format!("line {number}: left pending: {error}"))
            }
            Err(DeliveryError::Journal(JournalError::LeaseLost { .. })) => {
                self.handed_back += 1;
                (
                    false,
                    format!("line {number}: taken over by another worker, which finishes it"),
                )
            }
            Err(error @ DeliveryError::Journal(JournalError::Unavailable(_))) => (
                false,
                format!("line {number}: {error} (the line is taken again once its lease ends)"),
            ),
            Err(error) => {
                self.fail(outcome, error.reason());
                (false, format!("line {number}: {error}"))
            }
        };
        self.seen += 1;
        let text = crate::terminal::safe(&text).into_owned();
        self.bar
            .set_message(format!("{} failed", self.failed.len()));
        if self.terminal {
            if !ok {
                self.bar.println(text);
            }
        } else if !self.json {
            eprintln!("[{}/{}] {text}", self.seen, self.lines);
        }
    }

    /// The batch's budget and spend at the end, for the summary.
    pub fn spend(&mut self, spend: Option<BatchSpend>) {
        self.spend = spend;
    }

    fn fail(&mut self, outcome: &Outcome, reason: DeliveryReason) {
        self.bar
            .inc(u64::from(!self.failed.contains_key(&outcome.id)));
        self.failed.insert(
            outcome.id.clone(),
            Failed {
                line: outcome.line,
                reason,
            },
        );
    }

    /// Prints the summary (with `extra` fields in JSON) and returns what
    /// ended the run as the command's outcome: the batch's stop with its
    /// reason's exit code and advice, an interruption, failed lines, or
    /// success. `people` ends the summary line.
    pub fn finish(
        self,
        ending: &Ending,
        status: &BatchStatus,
        load: &LoadReport,
        mut extra: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), Failure> {
        self.bar.finish_and_clear();
        let mut by_reason: BTreeMap<&'static str, (DeliveryReason, Vec<Option<u64>>)> =
            BTreeMap::new();
        for failed in self.failed.values() {
            by_reason
                .entry(failed.reason.as_str())
                .or_insert((failed.reason, Vec::new()))
                .1
                .push(failed.line);
        }
        let left = status.left + status.in_flight_total();
        let stop = match ending {
            Ending::Stopped(stop) => Some(stop),
            _ => None,
        };
        let interrupted = matches!(ending, Ending::Interrupted { .. });
        extra.insert("lines".into(), json!(self.lines));
        extra.insert("stored".into(), json!(self.stored));
        extra.insert("failed".into(), json!(self.failed.len()));
        extra.insert(
            "failed_by_reason".into(),
            by_reason
                .iter()
                .map(|(reason, (_, lines))| (reason.to_string(), json!(lines.len())))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        );
        extra.insert("already_done".into(), json!(self.already));
        extra.insert("handed_back".into(), json!(self.handed_back));
        extra.insert("submitted".into(), json!(self.submitted));
        extra.insert("left".into(), json!(left));
        extra.insert("added".into(), json!(load.added));
        extra.insert("no_longer_in_file".into(), json!(load.no_longer_in_file));
        extra.insert(
            "stopped".into(),
            stop.map_or(serde_json::Value::Null, |stop| {
                json!({"reason": stop.reason, "message": stop.message, "worker": stop.holder})
            }),
        );
        extra.insert("interrupted".into(), json!(interrupted));
        extra.insert("batch".into(), json!(status));
        spend_fields(self.spend.as_ref(), &mut extra);
        if self.json {
            println!("{}", serde_json::Value::Object(extra));
        } else {
            let submitted = match self.submitted {
                0 => String::new(),
                n => format!(", {n} submitted to the callback service"),
            };
            let handed_off = match status.handed_off {
                0 => String::new(),
                n => format!(", {n} handed off (submitted, not yet delivered)"),
            };
            println!(
                "{} lines: {} stored by this run{submitted} ({} already done before it), {} failed; the batch: {} done, {} failed{handed_off}, {} left",
                self.lines,
                self.stored,
                self.already,
                self.failed.len(),
                status.done,
                status.failed,
                left
            );
            if let Some(line) = spend_line(self.spend.as_ref()) {
                println!("{line}");
            }
            if load.no_longer_in_file > 0 {
                eprintln!(
                    "{} lines of the journal are no longer in the file (deleted or edited); they are not run",
                    load.no_longer_in_file
                );
            }
            for (reason, lines) in by_reason.values() {
                let mut lines = lines.clone();
                lines.sort();
                let mut numbers: Vec<String> = lines
                    .iter()
                    .flatten()
                    .take(10)
                    .map(u64::to_string)
                    .collect();
                if lines.len() > numbers.len() {
                    numbers.push("…".into());
                }
                eprintln!(
                    "{} failed with `{reason}` (lines {}): {}",
                    lines.len(),
                    numbers.join(", "),
                    reason.advice()
                );
            }
        }
        if let Some(stop) = stop {
            return Err(Failure::stopped(stop, left));
        }
        if interrupted {
            return Err(Failure::interrupted(left));
        }
        match self.failed.len() {
            0 => Ok(()),
            failed => Err(Failure::batch(failed, self.lines as usize)),
        }
    }
}

/// What a batch spent, as its budget counts it, as JSON fields
/// (`spent_nanos`, `reserved_nanos`, `budget_nanos`; null without a
/// budget): the run's summary and `batch status` alike.
pub fn spend_fields(
    spend: Option<&uncensored_deliver::journal::BatchSpend>,
    fields: &mut serde_json::Map<String, serde_json::Value>,
) {
    let tracked = spend.filter(|spend| spend.budget.is_some());
    fields.insert("spent_nanos".into(), json!(tracked.map(|s| s.spent)));
    fields.insert("reserved_nanos".into(), json!(tracked.map(|s| s.reserved)));
    fields.insert("budget_nanos".into(), json!(tracked.and_then(|s| s.budget)));
}

/// What a batch spent, for people; `None` without a budget.
pub fn spend_line(spend: Option<&uncensored_deliver::journal::BatchSpend>) -> Option<String> {
    let spend = spend.filter(|spend| spend.budget.is_some())?;
    let reserved = match spend.reserved.nanos() {
        0 => String::new(),
        _ => format!(" ({} still reserved by lines not finished)", spend.reserved),
    };
    Some(format!(
        "spent {} of the batch's budget of {}{reserved}",
        spend.spent,
        spend.budget.unwrap_or_default()
    ))
}
