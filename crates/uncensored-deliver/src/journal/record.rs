//! How an [`Entry`] is written in a journal: a versioned record of the
//! journal's own types. The SDK's structures are never serialised as they
//! are: [`RequestRecord`] names every field of a request itself and is
//! converted through the SDK's public builder and getters, so renaming a
//! field inside the SDK leaves every journal on disk readable.
//!
//! - Version 1 (no `v` field): records written before versions existed. A
//!   stored image then kept its job, name, location, digest, model,
//!   generation time and shareable URL only; reading one fills the rest of
//!   [`StoredImage`] from the entry's own request and time.
//! - Version 2: a stored image is the whole [`StoredImage`].
//!
//! The same record is what SQLite keeps in `entries.body` (text) and
//! PostgreSQL in `uncensored_entries.body` (jsonb).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uncensored::{FailureReason, GenerateRequest};

use super::{Entry, JournalError, Stage, StoredImage};

/// The version of the records this build writes. A journal record of a
/// later version (written by a newer build) is refused, never misread.
pub const RECORD_VERSION: u32 = 2;

/// A request as the journal writes it. The names are the journal's: they
/// are the ones version 1 records carry, whatever the SDK calls its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RequestRecord {
    prompt: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    width: Option<u32>,
    #[serde(default)]
    height: Option<u32>,
    #[serde(default)]
    callback_url: Option<String>,
    #[serde(default)]
    resolution: Option<String>,
    #[serde(default)]
    quality: Option<String>,
    #[serde(default)]
    settings: Map<String, Value>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

impl From<&GenerateRequest> for RequestRecord {
    fn from(request: &GenerateRequest) -> Self {
        let (width, height) = request.asked_size();
        Self {
            prompt: request.prompt().to_string(),
            model: request.model_name().map(str::to_string),
            width,
            height,
            callback_url: request.callback().map(str::to_string),
            resolution: request.resolution_hint().map(str::to_string),
            quality: request.quality_hint().map(str::to_string),
            settings: request.settings().clone(),
            idempotency_key: request.own_idempotency_key().map(str::to_string),
        }
    }
}

impl From<RequestRecord> for GenerateRequest {
    fn from(record: RequestRecord) -> Self {
        let mut request = GenerateRequest::new(record.prompt);
        if let Some(model) = record.model {
            request = request.model(model);
        }
        if let Some(width) = record.width {
            request = request.width(width);
        }
        if let Some(height) = record.height {
            request = request.height(height);
        }
        if let Some(url) = record.callback_url {
            request = request.callback_url(url);
        }
        if let Some(resolution) = record.resolution {
            request = request.resolution(resolution);
        }
        if let Some(quality) = record.quality {
            request = request.quality(quality);
        }
        for (key, value) in record.settings {
            request = request.setting(key, value);
        }
        if let Some(key) = record.idempotency_key {
            request = request.idempotency_key(key);
        }
        request
    }
}

/// The JSON of a request as the journal spells it: what a batch line's
/// content id is computed from, so that ids do not change with the SDK.
pub(crate) fn request_value(request: &GenerateRequest) -> Value {
    serde_json::to_value(RequestRecord::from(request)).unwrap_or_default()
}

/// Where a delivery stands, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum StageRecord {
    Pending,
    Accepted {
        job_id: String,
    },
    Generated {
        job_id: String,
        image_url: String,
        #[serde(default)]
        generation_time: Option<f64>,
        #[serde(default)]
        model: Option<String>,
    },
    Stored {
        job_id: String,
        #[serde(default)]
        generation_time: Option<f64>,
        #[serde(default)]
        model: Option<String>,
        name: String,
        location: String,
        sha256: String,
        #[serde(default)]
        share_url: Option<String>,
        // Version 2 on.
        #[serde(default)]
        prompt: Option<String>,
        #[serde(default)]
        width: Option<u32>,
        #[serde(default)]
        height: Option<u32>,
        #[serde(default)]
        size: Option<u64>,
        #[serde(default)]
        created_at: Option<DateTime<Utc>>,
    },
    Failed {
        #[serde(default)]
        job_id: Option<String>,
        /// The API's error vocabulary; a reason this build does not know
        /// reads as `other`.
        reason: FailureReason,
        message: String,
    },
}

/// One entry, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EntryRecord {
    /// The record's version; records without one are version 1.
    #[serde(default = "first_version")]
    v: u32,
    id: String,
    request: RequestRecord,
    idempotency_key: String,
    stage: StageRecord,
    #[serde(default)]
    notified: BTreeSet<String>,
    done: bool,
    updated_at: DateTime<Utc>,
}

fn first_version() -> u32 {
    1
}

impl From<&Stage> for StageRecord {
    fn from(stage: &Stage) -> Self {
        match stage.clone() {
            Stage::Pending => Self::Pending,
            Stage::Accepted { job_id } => Self::Accepted { job_id },
            Stage::Generated {
                job_id,
                image_url,
                generation_time,
                model,
            } => Self::Generated {
                job_id,
                image_url,
                generation_time,
                model,
            },
            Stage::Stored(image) => Self::Stored {
                job_id: image.job_id,
                generation_time: image.generation_time,
                model: image.model,
                name: image.name,
                location: image.location,
                sha256: image.sha256,
                share_url: image.share_url,
                prompt: Some(image.prompt),
                width: image.width,
                height: image.height,
                size: image.size,
                created_at: Some(image.created_at),
            },
            Stage::Failed {
                job_id,
                reason,
                message,
            } => Self::Failed {
                job_id,
                reason,
                message,
            },
        }
    }
}

impl StageRecord {
    /// The stage, with what a version 1 record of a stored image did not
    /// keep taken from its entry: the request's prompt and size, the
    /// entry's time.
    fn into_stage(self, request: &GenerateRequest, updated_at: DateTime<Utc>) -> Stage {
        match self {
            Self::Pending => Stage::Pending,
            Self::Accepted { job_id } => Stage::Accepted { job_id },
            Self::Generated {
                job_id,
                image_url,
                generation_time,
                model,
            } => Stage::Generated {
                job_id,
                image_url,
                generation_time,
                model,
            },
            Self::Stored {
                job_id,
                generation_time,
                model,
                name,
                location,
                sha256,
                share_url,
                prompt,
                width,
                height,
                size,
                created_at,
            } => {
                let (asked_width, asked_height) = request.dimensions();
                Stage::Stored(StoredImage {
                    job_id,
                    prompt: prompt.unwrap_or_else(|| request.prompt().to_string()),
                    model: model.or_else(|| request.model_name().map(str::to_string)),
                    width: width.or(Some(asked_width)),
                    height: height.or(Some(asked_height)),
                    generation_time,
                    name,
                    location,
                    sha256,
                    size,
                    share_url,
                    created_at: created_at.unwrap_or(updated_at),
                })
            }
            Self::Failed {
                job_id,
                reason,
                message,
            } => Stage::Failed {
                job_id,
                reason,
                message,
            },
        }
    }
}

fn unreadable(error: impl std::fmt::Display) -> JournalError {
    JournalError::Backend(format!("unreadable journal record: {error}"))
}

/// The record the journal writes for `entry`.
fn record_of(entry: &Entry) -> EntryRecord {
    EntryRecord {
        v: RECORD_VERSION,
        id: entry.id.clone(),
        request: RequestRecord::from(&entry.request),
        idempotency_key: entry.idempotency_key.clone(),
        stage: StageRecord::from(&entry.stage),
        notified: entry.notified.clone(),
        done: entry.done,
        updated_at: entry.updated_at,
    }
}

/// The record of `entry`, as a JSON value (PostgreSQL's jsonb).
pub(crate) fn to_value(entry: &Entry) -> Result<Value, JournalError> {
    serde_json::to_value(record_of(entry)).map_err(unreadable)
}

/// The record of `entry`, as text (SQLite's `body`), written in one pass.
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub(crate) fn to_text(entry: &Entry) -> Result<String, JournalError> {
    serde_json::to_string(&record_of(entry)).map_err(unreadable)
}

/// The entry a record holds, of any version this build knows.
pub(crate) fn from_value(value: Value) -> Result<Entry, JournalError> {
    entry_of(serde_json::from_value(value).map_err(unreadable)?)
}

/// The entry a record's text holds, read in one pass.
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub(crate) fn from_text(text: &str) -> Result<Entry, JournalError> {
    entry_of(serde_json::from_str(text).map_err(unreadable)?)
}

/// The entry of a record read, unless a newer build wrote it.
fn entry_of(record: EntryRecord) -> Result<Entry, JournalError> {
    if record.v > RECORD_VERSION {
        return Err(JournalError::Backend(format!(
            "the journal record `{}` is of version {}, written by a newer build (this one \
             reads versions up to {RECORD_VERSION}): upgrade it to read this journal",
            record.id, record.v
        )));
    }
    let request = GenerateRequest::from(record.request);
    let stage = record.stage.into_stage(&request, record.updated_at);
    Ok(Entry {
        id: record.id,
        request,
        idempotency_key: record.idempotency_key,
        stage,
        notified: record.notified,
        done: record.done,
        updated_at: record.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 1 record, as journals before versions wrote it.
    const V1_STORED: &str = r#"{"id":"order-4","request":{"prompt":"a quiet harbour","model":null,"width":512,"height":512,"callback_url":null,"resolution":null,"quality":null,"settings":{},"idempotency_key":"dlv-order-4"},"idempotency_key":"dlv-order-4","stage":{"state":"stored","job_id":"job-4","generation_time":12.25,"model":"model-pro","name":"2026-11-30/job-4.jpg","location":"images/2026-11-30/job-4.jpg","sha256":"5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef","share_url":null},"notified":["slack"],"done":true,"updated_at":"2026-11-30T12:04:00Z"}"#;

    #[test]
    fn a_version_1_record_reads_with_its_facts_taken_from_its_entry() {
        let entry = from_text(V1_STORED).unwrap();
        let Stage::Stored(image) = &entry.stage else {
            panic!("{:?}", entry.stage)
        };
        assert_eq!(image.prompt, "a quiet harbour");
        assert_eq!((image.width, image.height), (Some(512), Some(512)));
        assert_eq!(image.created_at, entry.updated_at);
        assert_eq!(image.size, None);
        assert_eq!(entry.request.own_idempotency_key(), Some("dlv-order-4"));
        // Written again, it is a version 2 record that reads the same.
        let again = to_value(&entry).unwrap();
        assert_eq!(again["v"], RECORD_VERSION);
        assert_eq!(from_value(again).unwrap(), entry);
    }

    #[test]
    fn a_record_is_tagged_with_its_stage_name() {
        let entry = from_text(V1_STORED).unwrap();
        for stage in [
            Stage::Pending,
            Stage::Accepted { job_id: "j".into() },
            Stage::Generated {
                job_id: "j".into(),
                image_url: "https://cdn.example.com/j.png".into(),
                generation_time: None,
                model: None,
            },
            entry.stage.clone(),
            Stage::Failed {
                job_id: None,
                reason: FailureReason::Moderation,
                message: "m".into(),
            },
        ] {
            let value = serde_json::to_value(StageRecord::from(&stage)).unwrap();
            assert_eq!(value["state"], stage.name());
        }
    }

    #[test]
    fn every_request_field_survives_the_record() {
        let request = GenerateRequest::new("a lighthouse")
            .model("model-pro")
            .size(1024, 768)
            .callback_url("https://hooks.example.com/callback/x")
            .resolution("2k")
            .quality("high")
            .setting("seed", 42)
            .idempotency_key("key-1");
        let back = GenerateRequest::from(RequestRecord::from(&request));
        assert_eq!(back, request);
        // Unset fields stay unset: a replay sends the same body as the POST.
        let bare = GenerateRequest::new("x");
        assert_eq!(GenerateRequest::from(RequestRecord::from(&bare)), bare);
    }

    #[test]
    fn a_record_of_a_newer_build_is_refused_not_misread() {
        let mut value: Value = serde_json::from_str(V1_STORED).unwrap();
        value["v"] = (RECORD_VERSION + 1).into();
        let error = from_value(value).unwrap_err().to_string();
        assert!(error.contains("newer build"), "{error}");
        assert!(error.contains("order-4"), "{error}");
    }

    #[test]
    fn an_unknown_failure_reason_reads_as_other() {
        let text = V1_STORED.replace(
            r#"{"state":"stored","job_id":"job-4","generation_time":12.25,"model":"model-pro","name":"2026-11-30/job-4.jpg","location":"images/2026-11-30/job-4.jpg","sha256":"5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef","share_url":null}"#,
            r#"{"state":"failed","job_id":null,"reason":"a_reason_of_the_future","message":"m"}"#,
        );
        let entry = from_text(&text).unwrap();
        assert!(matches!(
            entry.stage,
            Stage::Failed {
                reason: FailureReason::Other,
                ..
            }
        ));
    }
}
