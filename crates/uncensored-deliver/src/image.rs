//! The one record of a stored image: what the journal keeps once an image
//! is stored ([`Stage::Stored`](crate::journal::Stage::Stored)), what
//! notifiers announce ([`Notification::Stored`](crate::notify::Notification::Stored)),
//! what the gallery lists and what the CLI and the MCP server show. Its
//! sidecar beside the image is the part the storage keeps
//! ([`ImageMeta`], through [`StoredImage::meta`] and [`StoredImage::from_meta`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::storage::{ImageMeta, Stored};

/// A stored image: the job that made it, where it is, its bytes' digest,
/// and the facts of its request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredImage {
    /// The job that made it.
    pub job_id: String,
    /// The prompt.
    pub prompt: String,
    /// The model: as the API reported it, else as requested.
    pub model: Option<String>,
    /// Width in pixels.
    pub width: Option<u32>,
    /// Height in pixels.
    pub height: Option<u32>,
    /// Seconds the generation took.
    pub generation_time: Option<f64>,
    /// Its name inside the storage (`2026-05-09/abc.jpg`).
    pub name: String,
    /// Where it is, for people: a file path, `s3://bucket/key`.
    pub location: String,
    /// SHA-256 of the stored bytes.
    pub sha256: String,
    /// Its size in bytes (unknown in journal records written before it was
    /// kept).
    pub size: Option<u64>,
    /// A URL anyone can open for a while (presigned), when the storage made
    /// one.
    pub share_url: Option<String>,
    /// When it was stored (its sidecar's time).
    pub created_at: DateTime<Utc>,
}

impl StoredImage {
    /// The part of the record the storage keeps beside the image.
    pub fn meta(&self) -> ImageMeta {
        ImageMeta {
            job_id: self.job_id.clone(),
            prompt: self.prompt.clone(),
            model: self.model.clone(),
            width: self.width,
            height: self.height,
            generation_time: self.generation_time,
            sha256: Some(self.sha256.clone()),
            created_at: self.created_at,
        }
    }

    /// The record of an image the storage has just stored (or found
    /// stored): the facts of `meta`, and where and what `stored` says.
    pub fn new(meta: ImageMeta, stored: &Stored) -> Self {
        Self::of(
            meta,
            stored.sha256.clone(),
            stored.name.clone(),
            stored.location.clone(),
            Some(stored.size),
        )
    }

    /// The record of the image named `name` at `location` whose sidecar is
    /// `meta`; `None` while its sidecar has no digest (the image is still
    /// being written, or its writer died).
    pub fn from_meta(
        meta: ImageMeta,
        name: impl Into<String>,
        location: impl Into<String>,
        size: Option<u64>,
    ) -> Option<Self> {
        let sha256 = meta.sha256.clone()?;
        Some(Self::of(meta, sha256, name.into(), location.into(), size))
    }

    fn of(
        meta: ImageMeta,
        sha256: String,
        name: String,
        location: String,
        size: Option<u64>,
    ) -> Self {
        Self {
            job_id: meta.job_id,
            prompt: meta.prompt,
            model: meta.model,
            width: meta.width,
            height: meta.height,
            generation_time: meta.generation_time,
            name,
            location,
            sha256,
            size,
            share_url: None,
            created_at: meta.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sidecar_is_the_records_own_part() {
        let image = StoredImage {
            job_id: "job-1".into(),
            prompt: "a lighthouse".into(),
            model: Some("model-pro".into()),
            width: Some(1024),
            height: Some(768),
            generation_time: Some(3.5),
            name: "2026-11-30/job-1.jpg".into(),
            location: "images/2026-11-30/job-1.jpg".into(),
            sha256: "ab".repeat(32),
            size: Some(1234),
            share_url: None,
            created_at: Utc::now(),
        };
        let back = StoredImage::from_meta(image.meta(), &image.name, &image.location, image.size);
        assert_eq!(back.as_ref(), Some(&image));
        let unfinished = ImageMeta {
            sha256: None,
            ..image.meta()
        };
        assert_eq!(StoredImage::from_meta(unfinished, "n", "l", None), None);
    }
}
