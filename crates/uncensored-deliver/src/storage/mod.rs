//! Where images go: a small object-safe [`Storage`] trait, one
//! implementation over object_store ([`ObjectStorage`]) for the local file
//! system, S3, GCS, Azure and memory (each store a cargo feature: `fs`, `s3`,
//! `gcs`, `azure`), chosen by URL ([`StorageUrl`]), object names from a
//! template, and metadata stored next to each image.
//!
//! A backend streams an image in (never holding it whole), computes its
//! SHA-256 on the way, treats storing the same job again as a no-op, and never
//! silently replaces a different image.

mod browse;
mod object;
mod url;

use std::fmt::Debug;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use uncensored::{DownloadError, DownloadedImage, ImageFormat, ImageStream};

pub use browse::ListedImage;
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
pub use object::store_retry_config;
pub use object::{
    DEFAULT_PART_SIZE, ObjectStorage, STORE_ATTEMPTS, STORE_CLIENT_TIMEOUTS, STORE_RETRY_TIMEOUT,
};
pub use url::{StorageKind, StorageUrl};

/// Facts about an image, stored beside it (a `.json` sidecar, or object metadata).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageMeta {
    /// The job that made it; the identity storage checks before writing.
    pub job_id: String,
    /// The prompt.
    pub prompt: String,
    /// The model.
    pub model: Option<String>,
    /// Width in pixels.
    pub width: Option<u32>,
    /// Height in pixels.
    pub height: Option<u32>,
    /// Seconds the generation took.
    pub generation_time: Option<f64>,
    /// SHA-256 of the image, once stored.
    pub sha256: Option<String>,
    /// When the job completed, or when it was stored.
    pub created_at: DateTime<Utc>,
}

/// Where an image was stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The object name inside the storage (`2026-05-09/abc.jpg`).
    pub name: String,
    /// Where it is, for people: a file path or `s3://bucket/key`.
    pub location: String,
    /// SHA-256 of the stored bytes.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Whether this put found the image already stored (and changed nothing).
    pub already_stored: bool,
}

/// Why storing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The job id or template would make an unsafe or invalid object name.
    #[error("invalid object name: {0}")]
    InvalidName(String),
    /// A different image is already stored under this name; nothing was changed.
    #[error("{location} already holds another job's image ({other_job}); refusing to overwrite it")]
    Conflict {
        /// Where.
        location: String,
        /// The job the stored image belongs to (or `unknown`).
        other_job: String,
    },
    /// Reading the image failed (it may be retried from the start).
    #[error("the image could not be read: {0}")]
    Source(#[from] DownloadError),
    /// The backend failed (I/O error, unreachable server...).
    #[error("storage backend error at {location}: {message}")]
    Backend {
        /// Where.
        location: String,
        /// What went wrong.
        message: String,
        /// Whether trying again may succeed and nothing tried again already:
        /// false for the error of a store that retries its own requests (S3,
        /// GCS, Azure: see [`STORE_ATTEMPTS`]), returned after its retries.
        retryable: bool,
    },
    /// The storage is misconfigured.
    #[error("storage configuration: {0}")]
    Config(String),
    /// A storage URL that cannot be used (credentials in it are never shown).
    #[error("storage URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, without any user information.
        url: String,
        /// What is wrong and what to use instead.
        reason: String,
    },
    /// The image is larger than the reader accepts; nothing was read.
    #[error("{location} is {size} bytes, more than the {limit}-byte cap for reading it back")]
    TooLarge {
        /// Where.
        location: String,
        /// Its size in bytes.
        size: u64,
        /// The cap, in bytes.
        limit: u64,
    },
    /// The storage cannot be used as configured: a bucket or container that
    /// does not exist, credentials that are missing or refused.
    #[error("storage {location} cannot be used: {message}")]
    Unusable {
        /// Where.
        location: String,
        /// What the store said.
        message: String,
    },
}

impl StorageError {
    /// The class of this failure: a download that could not be read (the
    /// SDK's [`Download`](uncensored::FailureReason::Download)), else
    /// storage, its configuration included.
    pub fn reason(&self) -> crate::DeliveryReason {
        match self {
            StorageError::Source(_) => uncensored::FailureReason::Download.into(),
            _ => crate::DeliveryReason::Storage,
        }
    }

    /// Whether the caller should try the same put again: a download that
    /// failed or was cut short (each download is one attempt), or a
    /// transient error of a store that does not retry itself (the local file
    /// system). An S3, GCS or Azure error is not: the store already retried
    /// the request ([`STORE_ATTEMPTS`] times at most).
    pub fn is_retryable(&self) -> bool {
        match self {
            StorageError::Backend { retryable, .. } => *retryable,
            StorageError::Source(error) => error.is_retryable(),
            _ => false,
        }
    }
}

/// An image arriving in chunks. Implemented by [`ImageStream`] (a download in
/// progress) and [`DownloadedImage`] (bytes in memory).
#[async_trait::async_trait]
pub trait ImageSource: Send {
    /// The image format.
    fn format(&self) -> ImageFormat;
    /// The next chunk, or `None` at the end (after the source checked its length).
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, DownloadError>;
}

#[async_trait::async_trait]
impl ImageSource for ImageStream {
    fn format(&self) -> ImageFormat {
        ImageStream::format(self)
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, DownloadError> {
        ImageStream::next_chunk(self).await
    }
}

/// A [`DownloadedImage`] as a one-chunk source.
#[derive(Debug)]
pub struct InMemory {
    image: Option<DownloadedImage>,
    format: ImageFormat,
}

impl From<DownloadedImage> for InMemory {
    fn from(image: DownloadedImage) -> Self {
        Self {
            format: image.format,
            image: Some(image),
        }
    }
}

#[async_trait::async_trait]
impl ImageSource for InMemory {
    fn format(&self) -> ImageFormat {
        self.format
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, DownloadError> {
        Ok(self.image.take().map(|image| image.bytes))
    }
}

/// A place to store images. Object-safe: use it as `Arc<dyn Storage>`.
#[async_trait::async_trait]
pub trait Storage: Send + Sync + Debug {
    /// Streams `image` in under `name`, with `meta` beside it. If `name`
    /// already holds this job's image, changes nothing and says so; if it
    /// holds another job's, fails with [`StorageError::Conflict`].
    async fn put(
        &self,
        name: &ObjectName,
        image: &mut dyn ImageSource,
        meta: &ImageMeta,
    ) -> Result<Stored, StorageError>;

    /// What is stored under `name`, if anything (with its metadata).
    async fn stat(&self, name: &ObjectName) -> Result<Option<(Stored, ImageMeta)>, StorageError>;

    /// Where `name` is, for people (a path, `s3://bucket/key`).
    fn location(&self, name: &ObjectName) -> String;

    /// A URL that shows the image to anyone holding it for a while (an S3
    /// presigned GET), when the backend can make one.
    async fn share_url(&self, _name: &ObjectName) -> Result<Option<String>, StorageError> {
        Ok(None)
    }

    /// Reads the image stored under `name` back whole (for a viewer, an MCP
    /// resource), refusing one larger than `max_bytes` with
    /// [`StorageError::TooLarge`] before reading it. `None` when nothing is
    /// stored there. Backends that cannot read back say so.
    async fn read(&self, name: &ObjectName, max_bytes: u64) -> Result<Option<Bytes>, StorageError> {
        let _ = (name, max_bytes);
        Err(StorageError::Config(
            "this storage cannot read images back".into(),
        ))
    }

    /// Checks, without writing anything, that the storage can be used (the
    /// bucket exists, the credentials are accepted), so that a mistake is
    /// found before any image is paid for.
    async fn check(&self) -> Result<(), StorageError> {
        Ok(())
    }
}

/// A safe object name, made from a template. Keys are `/`-separated and
/// relative; no part is empty, `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectName(String);

impl ObjectName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name read back from a record (the journal's `Stage::Stored::name`)
    /// or asked for in a request (the gallery), checked as a rendered name
    /// is: relative, `/`-separated, at most 1,024 bytes, no empty, `.` or
    /// `..` part, no backslash, no control character. A name that would
    /// leave the storage is refused, never cleaned up into something else.
    ///
    /// ```
    /// use uncensored_deliver::storage::ObjectName;
    ///
    /// assert_eq!(ObjectName::parse("2026-05-09/abc.jpg").unwrap().as_str(), "2026-05-09/abc.jpg");
    /// for bad in ["../etc/passwd", "/etc/passwd", "a//b.jpg", "a/./b", "a\\b", "", "a\nb"] {
    ///     assert!(ObjectName::parse(bad).is_err(), "{bad:?}");
    /// }
    /// ```
    pub fn parse(name: &str) -> Result<Self, StorageError> {
        check_relative(name)?;
        Ok(Self(name.to_string()))
    }

    /// The name of the metadata sidecar beside it.
    pub fn sidecar(&self) -> String {
        format!("{}.json", self.0)
    }
}

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Makes object names from a template such as the default
/// `{date}/{job_id}.{ext}`. Placeholders: `{date}` (YYYY-MM-DD), `{job_id}`,
/// `{ext}` (from the sniffed format), `{model}`.
///
/// ```
/// use uncensored_deliver::storage::NameTemplate;
/// use uncensored::ImageFormat;
///
/// let template = NameTemplate::default();
/// let date = chrono::NaiveDate::from_ymd_opt(2026, 5, 9).unwrap();
/// let name = template.render("550e8400-e29b", ImageFormat::Jpeg, Some("model-pro"), date).unwrap();
/// assert_eq!(name.as_str(), "2026-05-09/550e8400-e29b.jpg");
/// assert!(template.render("../../etc/passwd", ImageFormat::Jpeg, None, date).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTemplate(String);

impl Default for NameTemplate {
    fn default() -> Self {
        Self("{date}/{job_id}.{ext}".into())
    }
}

impl NameTemplate {
    /// A template; checked when rendered.
    pub fn new(template: impl Into<String>) -> Result<Self, StorageError> {
        let template = Self(template.into());
        // Render with sample values to refuse a bad template at once.
        let date = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("a valid date");
        template.render("sample", ImageFormat::Jpeg, Some("model"), date)?;
        if !template.0.contains("{job_id}") {
            return Err(StorageError::InvalidName(format!(
                "template {:?} lacks {{job_id}}",
                template.0
            )));
        }
        Ok(template)
    }

    /// The name for a job. The job id and model are checked against an
    /// allow-list (letters, digits, `-`, `_`, 1 to 128 characters): a job id
    /// such as `../../x` is refused, never cleaned up into something else.
    pub fn render(
        &self,
        job_id: &str,
        format: ImageFormat,
        model: Option<&str>,
        date: chrono::NaiveDate,
    ) -> Result<ObjectName, StorageError> {
        let safe = |what: &str, value: &str| -> Result<(), StorageError> {
            let ok = (1..=128).contains(&value.len())
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if ok {
                Ok(())
            } else {
                Err(StorageError::InvalidName(format!(
                    "{what} {value:?} is not [A-Za-z0-9_-]{{1,128}}"
                )))
            }
        };
        safe("job id", job_id)?;
        let model = model.unwrap_or("unknown-model");
        safe("model", model)?;
        let name = self
            .0
            .replace("{date}", &date.format("%Y-%m-%d").to_string())
            .replace("{job_id}", job_id)
            .replace("{ext}", format.extension())
            .replace("{model}", model);
        if name.contains('{') || name.contains('}') {
            return Err(StorageError::InvalidName(format!(
                "unknown placeholder in template {:?}",
                self.0
            )));
        }
        check_relative(&name)?;
        Ok(ObjectName(name))
    }
}

/// Refuses a name that is not a safe relative object name.
fn check_relative(name: &str) -> Result<(), StorageError> {
    if name.is_empty()
        || name.len() > 1024
        || name.chars().any(char::is_control)
        || name.starts_with('/')
        || name.contains('\\')
        || name
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(StorageError::InvalidName(format!(
            "{name:?} is not a safe relative name"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2026, 5, 9).unwrap()
    }

    #[test]
    fn job_ids_are_allow_listed_not_cleaned() {
        let template = NameTemplate::default();
        for bad in [
            "../../x",
            "a/b",
            "",
            "a b",
            "x.jpg",
            ".",
            "..",
            &"a".repeat(129),
        ] {
            assert!(
                template.render(bad, ImageFormat::Png, None, day()).is_err(),
                "{bad:?}"
            );
        }
        let ok = template
            .render("Job_1-x", ImageFormat::Png, None, day())
            .unwrap();
        assert_eq!(ok.as_str(), "2026-05-09/Job_1-x.png");
        assert_eq!(ok.sidecar(), "2026-05-09/Job_1-x.png.json");
    }

    #[test]
    fn templates_are_checked() {
        assert!(NameTemplate::new("{model}/{job_id}.{ext}").is_ok());
        assert!(NameTemplate::new("/abs/{job_id}.{ext}").is_err());
        assert!(NameTemplate::new("a/../{job_id}").is_err());
        assert!(NameTemplate::new("{date}/{nope}.{ext}").is_err());
        assert!(
            NameTemplate::new("{date}/fixed.{ext}").is_err(),
            "every job would collide"
        );
    }
}
