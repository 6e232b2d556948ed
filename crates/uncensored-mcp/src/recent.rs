//! The most recent deliveries, for `list_images` and the resource list.

use uncensored::FailureReason;
use uncensored_deliver::journal::Entry;

use crate::failure::ToolFailure;
use crate::tools::Tools;

/// Up to `limit` deliveries, most recently updated first.
///
/// Until the journal can list its recent entries itself, this reads the
/// deliveries this server started.
pub fn recent(tools: &Tools, limit: usize) -> Result<Vec<Entry>, ToolFailure> {
    let journal = tools.deliverer.journal();
    let mut entries = Vec::new();
    for id in tools.started() {
        if let Some(entry) = journal
            .get(&id)
            .map_err(|e| ToolFailure::new(FailureReason::Storage, e.to_string()))?
        {
            entries.push(entry);
        }
    }
    entries.sort_by_key(|entry| std::cmp::Reverse(entry.updated_at));
    entries.truncate(limit);
    Ok(entries)
}
