//! A batch as its journal tells it: the lines that failed, with their
//! reason and the reason's advice, and the lines still in flight.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uncensored_deliver::journal::{Entry, Journal, JournalError, Stage};

/// Entries read from the journal at most.
pub const MAX_ENTRIES: usize = 100_000;

/// A line that ended without an image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedLine {
    /// The journal id (`line12-…` for a batch line).
    pub id: String,
    /// The prompt.
    pub prompt: String,
    /// The reason, as its word (`moderation`).
    pub reason: String,
    /// What to do next, from the reason.
    pub advice: String,
    /// The full explanation.
    pub message: String,
    /// The job, when one was created.
    pub job_id: Option<String>,
    /// When it failed.
    pub updated_at: DateTime<Utc>,
}

/// A line still in flight.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InFlightLine {
    /// The journal id.
    pub id: String,
    /// The prompt.
    pub prompt: String,
    /// Where it stands (`pending`, `accepted`, `generated`, `stored`: not yet announced).
    pub stage: String,
    /// When it last moved.
    pub updated_at: DateTime<Utc>,
}

/// The batch state the page shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchView {
    /// Whether a journal was given.
    pub journal: bool,
    /// The batch's name (its file's), when the journal loaded one.
    pub name: Option<String>,
    /// Lines recorded.
    pub lines: usize,
    /// Lines stored.
    pub stored: usize,
    /// Failed lines, most recent first.
    pub failed: Vec<FailedLine>,
    /// Lines in flight, most recent first.
    pub in_flight: Vec<InFlightLine>,
    /// Jobs the journal stored (for the batch filter).
    #[serde(skip)]
    pub stored_jobs: Arc<HashSet<String>>,
}

impl BatchView {
    /// The view of `entries` (most recently updated first).
    pub fn from_entries(entries: &[Entry]) -> Self {
        let mut view = Self {
            journal: true,
            lines: entries.len(),
            ..Self::default()
        };
        let mut jobs = HashSet::new();
        for entry in entries {
            match &entry.stage {
                Stage::Stored(image) => {
                    view.stored += 1;
                    jobs.insert(image.job_id.clone());
                }
                Stage::Failed {
                    job_id,
                    reason,
                    message,
                } => {
                    view.failed.push(FailedLine {
                        id: entry.id.clone(),
                        prompt: entry.request.prompt().to_string(),
                        reason: reason.as_str().to_string(),
                        advice: reason.advice().to_string(),
                        message: message.clone(),
                        job_id: job_id.clone(),
                        updated_at: entry.updated_at,
                    });
                    continue;
                }
                _ => {}
            }
            let stage = entry.stage.name();
            if !entry.done {
                view.in_flight.push(InFlightLine {
                    id: entry.id.clone(),
                    prompt: entry.request.prompt().to_string(),
                    stage: stage.to_string(),
                    updated_at: entry.updated_at,
                });
            }
        }
        view.stored_jobs = Arc::new(jobs);
        view
    }

    /// Reads the journal.
    pub async fn read(journal: &Arc<dyn Journal>) -> Result<Self, JournalError> {
        let mut view = Self::from_entries(&entries(journal).await?);
        view.name = journal.batch(None).await?.map(|batch| batch.name);
        Ok(view)
    }
}

/// The journal's entries, most recently updated first.
async fn entries(journal: &Arc<dyn Journal>) -> Result<Vec<Entry>, JournalError> {
    journal.recent(MAX_ENTRIES).await
}
