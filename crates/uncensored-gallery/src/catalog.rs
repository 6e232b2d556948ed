//! What the storage holds, as the page shows it: one record per finished
//! image (its sidecar and size), kept in memory, refreshed by listing the
//! store, and queried a page at a time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use chrono::NaiveDate;
use futures_util::{StreamExt as _, stream};
use serde::{Deserialize, Serialize};
use uncensored_deliver::storage::{ObjectStorage, StorageError};

/// Sidecars read at once while refreshing.
const SIDECAR_READS: usize = 16;
/// The largest page the API returns.
pub const MAX_PAGE: usize = 500;

/// A stored image as the page shows it: the delivery crate's one record
/// of a stored image, built from its sidecar, its name and its size.
pub type ImageRecord = uncensored_deliver::StoredImage;

/// How a page of images is sorted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Newest first.
    #[default]
    Date,
    /// Oldest first.
    DateAsc,
    /// Longest generation first.
    Time,
    /// Shortest generation first.
    TimeAsc,
}

/// Which images, in which order, from where: the query of `/api/images`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Query {
    /// Words the prompt contains (case-insensitive), all of them.
    pub q: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Made on or after this day (UTC).
    pub from: Option<NaiveDate>,
    /// Made on or before this day (UTC).
    pub to: Option<NaiveDate>,
    /// `journal`: only the images the batch's journal stored.
    pub batch: Option<String>,
    /// The order.
    pub sort: Sort,
    /// How many matching images to skip.
    pub offset: usize,
    /// How many to return (at most [`MAX_PAGE`]; 100 when 0).
    pub limit: usize,
}

/// One page of matching images.
#[derive(Debug, Serialize)]
pub struct Page {
    /// How many images match.
    pub total: usize,
    /// How many the storage holds.
    pub stored: usize,
    /// The offset asked for.
    pub offset: usize,
    /// The images of this page.
    pub items: Vec<ImageRecord>,
    /// Every model of the stored images, for the filter.
    pub models: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    records: Vec<Arc<ImageRecord>>,
    by_name: HashMap<String, Arc<ImageRecord>>,
}

/// The images of one storage, in memory.
#[derive(Debug)]
pub struct Catalog {
    storage: ObjectStorage,
    state: RwLock<State>,
}

impl Catalog {
    /// An empty catalog of `storage`; fill it with [`Catalog::refresh`].
    pub fn new(storage: ObjectStorage) -> Self {
        Self {
            storage,
            state: RwLock::default(),
        }
    }

    /// The storage.
    pub fn storage(&self) -> &ObjectStorage {
        &self.storage
    }

    /// Lists the store and adds every finished image not yet known (one
    /// whose sidecar has its SHA-256); returns the new ones. An image whose
    /// put is still running is picked up by a later refresh.
    pub async fn refresh(&self) -> Result<Vec<Arc<ImageRecord>>, StorageError> {
        let listed = self.storage.list_images().await?;
        let unknown: Vec<_> = {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            listed
                .into_iter()
                .filter(|image| !state.by_name.contains_key(image.name.as_str()))
                .collect()
        };
        let read: Vec<Result<Option<ImageRecord>, StorageError>> = stream::iter(unknown)
            .map(|image| async move {
                let Some(meta) = self.storage.image_meta(&image.name).await? else {
                    return Ok(None);
                };
                let location =
                    uncensored_deliver::storage::Storage::location(&self.storage, &image.name);
                Ok(ImageRecord::from_meta(
                    meta,
                    image.name.as_str(),
                    location,
                    Some(image.size),
                ))
            })
            .buffer_unordered(SIDECAR_READS)
            .collect()
            .await;
        let mut added = Vec::new();
        for record in read {
            // One unreadable sidecar must not hide every other image.
            match record {
                Ok(Some(record)) => added.push(Arc::new(record)),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, "skipping an image whose sidecar cannot be read")
                }
            }
        }
        added.sort_by_key(|record| record.created_at);
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        for record in &added {
            state.by_name.insert(record.name.clone(), record.clone());
            state.records.push(record.clone());
        }
        Ok(added)
    }

    /// The image named `name`, if the catalog holds it: only these are served.
    pub fn get(&self, name: &str) -> Option<Arc<ImageRecord>> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.by_name.get(name).cloned()
    }

    /// How many images the catalog holds.
    pub fn len(&self) -> usize {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .records
            .len()
    }

    /// Whether the catalog holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The page `query` asks for. `in_batch` holds the job ids of the
    /// journal's stored lines, for `batch=journal`.
    pub fn page(&self, query: &Query, in_batch: &HashSet<String>) -> Page {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let words: Vec<String> = query
            .q
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_lowercase)
            .collect();
        let model = query.model.as_deref().filter(|m| !m.is_empty());
        let only_batch = query.batch.as_deref() == Some("journal");
        let mut items: Vec<Arc<ImageRecord>> = state
            .records
            .iter()
            .filter(|r| {
                let day = r.created_at.date_naive();
                let prompt = r.prompt.to_lowercase();
                words.iter().all(|w| prompt.contains(w.as_str()))
                    && model.is_none_or(|m| r.model.as_deref() == Some(m))
                    && query.from.is_none_or(|from| day >= from)
                    && query.to.is_none_or(|to| day <= to)
                    && (!only_batch || in_batch.contains(&r.job_id))
            })
            .cloned()
            .collect();
        let time = |r: &ImageRecord| r.generation_time.unwrap_or(-1.0);
        match query.sort {
            Sort::Date => items.sort_by_key(|r| std::cmp::Reverse(r.created_at)),
            Sort::DateAsc => items.sort_by_key(|r| r.created_at),
            Sort::Time => items.sort_by(|a, b| time(b).total_cmp(&time(a))),
            Sort::TimeAsc => items.sort_by(|a, b| time(a).total_cmp(&time(b))),
        }
        let total = items.len();
        let limit = match query.limit {
            0 => 100,
            n => n.min(MAX_PAGE),
        };
        let items = items
            .into_iter()
            .skip(query.offset)
            .take(limit)
            .map(|r| r.as_ref().clone())
            .collect();
        let models: Vec<String> = state
            .records
            .iter()
            .filter_map(|r| r.model.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        Page {
            total,
            stored: state.records.len(),
            offset: query.offset,
            items,
            models,
        }
    }
}
