//! The one [`Storage`] implementation, over any [`ObjectStore`]: the local
//! file system, S3, GCS, Azure or memory, chosen by URL (see [`StorageUrl`]).
//!
//! How a put works, whatever the store:
//!
//! 1. **Claim** the name: the JSON sidecar (`NAME.json`, metadata without a
//!    SHA-256) is created with the store's conditional put
//!    ([`PutMode::Create`]). Of two writers, exactly one creates it; the other
//!    reads it and either finds its own job (and continues or returns) or
//!    another job's (and fails with [`StorageError::Conflict`]). Nothing is
//!    checked first and written after.
//! 2. **Stream** the image through object_store's buffered writer, hashing it
//!    on the way: one PUT for a small image, a multipart upload above the part
//!    size (at most two parts in flight, so memory stays bounded). The store
//!    publishes it atomically (a staged file renamed into place, a completed
//!    multipart upload); a failed upload is aborted.
//! 3. **Finalise** the sidecar with the SHA-256: from then on the name is
//!    complete, and a second put of the same job changes nothing.
//!
//! On the local file system every write is fsynced, file and directory, so
//! an image is durable once `put` returns; a crash leaves the whole image or
//! none under its name.
//!
//! # Retries: one layer per request
//!
//! S3, GCS and Azure stores retry each of their HTTP requests themselves
//! (5xx answers, 429, dropped or refused connections), as
//! [`store_retry_config`] and [`STORE_CLIENT_TIMEOUTS`] configure them: at
//! most [`STORE_ATTEMPTS`] attempts per request, within
//! [`STORE_RETRY_TIMEOUT`]. An error such a store returns has been retried
//! already, so it is not retryable ([`StorageError::is_retryable`]): the
//! [`Deliverer`](crate::Deliverer) does not send the same failing request
//! again on top. Errors of stores that do not retry (the local file system,
//! memory, a store given to [`ObjectStorage::new`] without
//! [`ObjectStorage::retried_by_store`]) stay retryable when transient.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::buffered::BufWriter;
use object_store::path::Path;
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
use object_store::signer::Signer;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload,
};
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
use object_store::{BackoffConfig, ClientConfigKey, RetryConfig};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::{ImageMeta, ImageSource, ObjectName, Storage, StorageError, Stored};

/// Part size of multipart uploads (S3's minimum is 5 MiB); smaller images go
/// in one PUT.
pub const DEFAULT_PART_SIZE: usize = 5 * 1024 * 1024;

/// How many times an S3, GCS or Azure store sends one request at most: the
/// first attempt and [`STORE_ATTEMPTS`]` - 1` retries (object_store's
/// `RetryConfig::max_retries`).
pub const STORE_ATTEMPTS: usize = 6;

/// How long after a request's first attempt an S3, GCS or Azure store still
/// retries it (object_store's `RetryConfig::retry_timeout`); an attempt
/// started before it may take up to its own timeout
/// ([`STORE_CLIENT_TIMEOUTS`]).
pub const STORE_RETRY_TIMEOUT: Duration = Duration::from_secs(60);

/// The HTTP timeouts of S3, GCS and Azure stores, as object_store
/// configuration keys: a request (a PUT of one multipart part included) may
/// take 60 s, a connection 5 s. Keys given to
/// [`StorageUrl::open_with`](super::StorageUrl::open_with) (`timeout`,
/// `connect_timeout`) replace them.
pub const STORE_CLIENT_TIMEOUTS: [(&str, &str); 2] =
    [("timeout", "60s"), ("connect_timeout", "5s")];

/// The retries of each request to S3, GCS or Azure: [`STORE_ATTEMPTS`]
/// attempts at most, the pause between two starting at 100 ms and doubling
/// (with jitter) up to 5 s, none started after [`STORE_RETRY_TIMEOUT`].
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
pub fn store_retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: STORE_ATTEMPTS - 1,
        retry_timeout: STORE_RETRY_TIMEOUT,
    }
}

/// [`STORE_CLIENT_TIMEOUTS`] as object_store client keys.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
pub(super) fn store_client_timeouts() -> impl Iterator<Item = (ClientConfigKey, &'static str)> {
    STORE_CLIENT_TIMEOUTS.into_iter().map(|(key, value)| {
        (
            key.parse()
                .expect("the timeouts are object_store client keys"),
            value,
        )
    })
}

/// How locations are shown to people.
#[derive(Debug, Clone)]
enum Locations {
    /// Files under a directory: `ROOT/NAME`.
    #[cfg_attr(not(feature = "fs"), allow(dead_code))]
    Directory(PathBuf),
    /// Objects: `BASE/KEY` (`s3://bucket/prefix/2026-05-09/x.jpg`).
    Url(String),
}

/// Storage in any object store, under an optional prefix.
#[derive(Clone)]
pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
    signer: Option<Arc<dyn Signer>>,
    prefix: Option<Path>,
    locations: Locations,
    attributes: bool,
    part_size: usize,
    presign: Option<Duration>,
    /// Whether the store retries its own requests (S3, GCS, Azure).
    retried_by_store: bool,
}

impl std::fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The store's own Debug may show configuration; say only where.
        f.debug_struct("ObjectStorage")
            .field("at", &self.base())
            .field("presign", &self.presign)
            .finish_non_exhaustive()
    }
}

impl ObjectStorage {
    /// Storage in `store`, under `prefix` (`""` for none). `base` is how a
    /// location starts for people, such as `s3://bucket`; keys are appended
    /// after a `/`. Object metadata (content type, job id) is set when
    /// `attributes` is true; stores that refuse attributes (the local file
    /// system) need false.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        base: impl Into<String>,
        prefix: &str,
        attributes: bool,
    ) -> Self {
        let prefix = prefix.trim_matches('/');
        Self {
            store,
            #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
            signer: None,
            prefix: (!prefix.is_empty()).then(|| Path::from(prefix)),
            locations: Locations::Url({
                let base = base.into();
                // `memory://` keeps its slashes; `s3://bucket/` loses the last one.
                if base.ends_with("://") {
                    base
                } else {
                    base.trim_end_matches('/').to_string()
                }
            }),
            attributes,
            part_size: DEFAULT_PART_SIZE,
            presign: None,
            retried_by_store: false,
        }
    }

    /// Says that the store retries each of its requests itself (an S3, GCS
    /// or Azure store of object_store, which [`StorageUrl`](super::StorageUrl)
    /// configures with [`store_retry_config`]): its errors are then final,
    /// never retried again on top ([`StorageError::is_retryable`] is false).
    pub fn retried_by_store(mut self) -> Self {
        self.retried_by_store = true;
        self
    }

    /// Files in the directory `root` (created when missing), through
    /// object_store's local store with fsync on every write.
    #[cfg(feature = "fs")]
    pub fn local(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| {
            StorageError::Config(format!(
                "cannot create the image directory {}: {e}",
                root.display()
            ))
        })?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| StorageError::Config(format!("cannot use {}: {e}", root.display())))?
            .with_fsync(true);
        let mut storage = Self::new(Arc::new(store), "", "", false);
        storage.locations = Locations::Directory(root);
        Ok(storage)
    }

    /// Makes [`Storage::share_url`] sign GET URLs with `signer` (the S3,
    /// GCS or Azure store itself), once [`ObjectStorage::with_presigned_urls`]
    /// says for how long.
    #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
    pub fn with_signer(mut self, signer: Arc<dyn Signer>) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Makes [`Storage::share_url`] return signed GET URLs valid for
    /// `expires_in`, when the store can sign them (S3, GCS, Azure).
    pub fn with_presigned_urls(mut self, expires_in: Duration) -> Self {
        self.presign = Some(expires_in);
        self
    }

    /// The part size of multipart uploads (at least [`DEFAULT_PART_SIZE`]).
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(DEFAULT_PART_SIZE);
        self
    }

    /// Whether this storage can make signed URLs.
    pub fn can_sign(&self) -> bool {
        #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
        return self.signer.is_some();
        #[cfg(not(any(feature = "s3", feature = "gcs", feature = "azure")))]
        false
    }

    /// The object store underneath.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The prefix every key of this storage starts with, if any.
    pub(super) fn prefix(&self) -> Option<&Path> {
        self.prefix.as_ref()
    }

    pub(super) fn base(&self) -> String {
        match &self.locations {
            Locations::Directory(root) => root.display().to_string(),
            Locations::Url(base) => match &self.prefix {
                Some(prefix) if base.ends_with('/') => format!("{base}{prefix}"),
                Some(prefix) => format!("{base}/{prefix}"),
                None => base.clone(),
            },
        }
    }

    pub(super) fn key(&self, name: &str) -> Path {
        match &self.prefix {
            Some(prefix) => Path::from(format!("{prefix}/{name}")),
            None => Path::from(name),
        }
    }

    fn location_of(&self, key: &Path) -> String {
        match &self.locations {
            Locations::Directory(root) => root.join(key.as_ref()).display().to_string(),
            Locations::Url(base) if base.ends_with('/') => format!("{base}{key}"),
            Locations::Url(base) => format!("{base}/{key}"),
        }
    }

    pub(super) fn error(&self, key: &Path, error: object_store::Error) -> StorageError {
        backend_error(self.location_of(key), error, self.retried_by_store)
    }

    pub(super) async fn read_meta(&self, key: &Path) -> Result<Option<ImageMeta>, StorageError> {
        match self.store.get(key).await {
            Ok(result) => {
                let bytes = result.bytes().await.map_err(|e| self.error(key, e))?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StorageError::Backend {
                        location: self.location_of(key),
                        message: format!("unreadable metadata sidecar: {e}"),
                        retryable: false,
                    })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.error(key, error)),
        }
    }

    async fn write_meta(&self, key: &Path, meta: &ImageMeta, mode: PutMode) -> PutOutcome {
        let body = serde_json::to_vec_pretty(meta).expect("metadata serialises");
        let mut options = PutOptions::from(mode);
        if self.attributes {
            options.attributes =
                Attributes::from_iter([(Attribute::ContentType, "application/json")]);
        }
        match self
            .store
            .put_opts(key, PutPayload::from(body), options)
            .await
        {
            Ok(_) => PutOutcome::Written,
            Err(object_store::Error::AlreadyExists { .. }) => PutOutcome::Exists,
            Err(error) => PutOutcome::Failed(self.error(key, error)),
        }
    }

    /// Claims `name` for `meta.job_id`. `Ok(None)` when this put owns the
    /// name and must write the image; `Ok(Some(stored))` when the job's
    /// image is already complete.
    async fn claim(
        &self,
        name: &ObjectName,
        key: &Path,
        sidecar: &Path,
        meta: &ImageMeta,
    ) -> Result<Option<Stored>, StorageError> {
        let location = self.location_of(key);
        let claim = ImageMeta {
            sha256: None,
            ..meta.clone()
        };
        match self.write_meta(sidecar, &claim, PutMode::Create).await {
            PutOutcome::Written => {
                // A fresh claim: an image under the name can only have been
                // put there by something that does not claim first. Never
                // replace it; give the name back.
                match self.store.head(key).await {
                    Ok(_) => {
                        let _ = self.store.delete(sidecar).await;
                        Err(StorageError::Conflict {
                            location,
                            other_job: "unknown".into(),
                        })
                    }
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(error) => Err(self.error(key, error)),
                }
            }
            PutOutcome::Failed(error) => Err(error),
            PutOutcome::Exists => {
                let existing =
                    self.read_meta(sidecar)
                        .await?
                        .ok_or_else(|| StorageError::Backend {
                            location: location.clone(),
                            message: "the name's sidecar vanished while it was being claimed"
                                .into(),
                            retryable: true,
                        })?;
                if existing.job_id != meta.job_id {
                    return Err(StorageError::Conflict {
                        location,
                        other_job: existing.job_id,
                    });
                }
                let Some(sha256) = existing.sha256 else {
                    // This job's own unfinished put (a crash, a failed
                    // upload): write its image again.
                    return Ok(None);
                };
                match self.store.head(key).await {
                    Ok(found) => Ok(Some(Stored {
                        name: name.to_string(),
                        location,
                        sha256,
                        size: found.size,
                        already_stored: true,
                    })),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(error) => Err(self.error(key, error)),
                }
            }
        }
    }

    /// Streams the image to `key`; returns its SHA-256 and size.
    async fn upload(
        &self,
        key: &Path,
        image: &mut dyn ImageSource,
        job_id: &str,
    ) -> Result<(String, u64), StorageError> {
        let location = self.location_of(key);
        let mut writer = BufWriter::with_capacity(self.store.clone(), key.clone(), self.part_size)
            .with_max_concurrency(2);
        if self.attributes {
            let mut attributes = Attributes::new();
            attributes.insert(Attribute::ContentType, image.format().mime().into());
            attributes.insert(
                Attribute::Metadata("job_id".into()),
                job_id.to_string().into(),
            );
            writer = writer.with_attributes(attributes);
        }
        let (mut hasher, mut size) = (Sha256::new(), 0u64);
        let streamed: Result<(), StorageError> = async {
            while let Some(chunk) = image.next_chunk().await? {
                hasher.update(&chunk);
                size += chunk.len() as u64;
                writer.put(chunk).await.map_err(|e| self.error(key, e))?;
            }
            Ok(())
        }
        .await;
        if let Err(error) = streamed {
            // Nothing half-written stays under the name: the upload is aborted.
            let _ = writer.abort().await;
            return Err(error);
        }
        // A failed completion publishes nothing either (the writer cleans up
        // after itself; it cannot be aborted once shut down).
        writer.shutdown().await.map_err(|e| StorageError::Backend {
            location: location.clone(),
            message: e.to_string(),
            // The last part and the completion are requests of the store.
            retryable: !self.retried_by_store,
        })?;
        Ok((format!("{:x}", hasher.finalize()), size))
    }
}

enum PutOutcome {
    Written,
    Exists,
    Failed(StorageError),
}

/// An object_store error as a storage error at `location`. Retryable when
/// it is transient (a `Generic` error: I/O, a server error) and the store
/// did not retry it already (`retried_by_store` false).
pub(crate) fn backend_error(
    location: String,
    error: object_store::Error,
    retried_by_store: bool,
) -> StorageError {
    let retryable = !retried_by_store && matches!(error, object_store::Error::Generic { .. });
    StorageError::Backend {
        location,
        message: error.to_string(),
        retryable,
    }
}

#[async_trait::async_trait]
impl Storage for ObjectStorage {
    async fn put(
        &self,
        name: &ObjectName,
        image: &mut dyn ImageSource,
        meta: &ImageMeta,
    ) -> Result<Stored, StorageError> {
        let key = self.key(name.as_str());
        let sidecar = self.key(&name.sidecar());
        if let Some(stored) = self.claim(name, &key, &sidecar, meta).await? {
            return Ok(stored);
        }
        let (sha256, size) = self.upload(&key, image, &meta.job_id).await?;
        let complete = ImageMeta {
            sha256: Some(sha256.clone()),
            ..meta.clone()
        };
        if let PutOutcome::Failed(error) = self
            .write_meta(&sidecar, &complete, PutMode::Overwrite)
            .await
        {
            return Err(error);
        }
        Ok(Stored {
            name: name.to_string(),
            location: self.location_of(&key),
            sha256,
            size,
            already_stored: false,
        })
    }

    async fn stat(&self, name: &ObjectName) -> Result<Option<(Stored, ImageMeta)>, StorageError> {
        let key = self.key(name.as_str());
        let Some(meta) = self.read_meta(&self.key(&name.sidecar())).await? else {
            return Ok(None);
        };
        let Some(sha256) = meta.sha256.clone() else {
            return Ok(None);
        };
        match self.store.head(&key).await {
            Ok(found) => Ok(Some((
                Stored {
                    name: name.to_string(),
                    location: self.location_of(&key),
                    sha256,
                    size: found.size,
                    already_stored: true,
                },
                meta,
            ))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.error(&key, error)),
        }
    }

    fn location(&self, name: &ObjectName) -> String {
        self.location_of(&self.key(name.as_str()))
    }

    async fn read(&self, name: &ObjectName, max_bytes: u64) -> Result<Option<Bytes>, StorageError> {
        let key = self.key(name.as_str());
        let size = match self.store.head(&key).await {
            Ok(found) => found.size,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(self.error(&key, error)),
        };
        let too_large = |size| StorageError::TooLarge {
            location: self.location_of(&key),
            size,
            limit: max_bytes,
        };
        if size > max_bytes {
            return Err(too_large(size));
        }
        let bytes = match self.store.get(&key).await {
            Ok(result) => result.bytes().await.map_err(|e| self.error(&key, e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(self.error(&key, error)),
        };
        // Replaced by a larger object between the two requests? Still refused.
        if bytes.len() as u64 > max_bytes {
            return Err(too_large(bytes.len() as u64));
        }
        Ok(Some(bytes))
    }

    async fn share_url(&self, name: &ObjectName) -> Result<Option<String>, StorageError> {
        #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
        if let (Some(expires_in), Some(signer)) = (self.presign, &self.signer) {
            let key = self.key(name.as_str());
            let url = signer
                .signed_url(object_store::signer::Method::GET, &key, expires_in)
                .await
                .map_err(|e| self.error(&key, e))?;
            return Ok(Some(url.to_string()));
        }
        let _ = name;
        Ok(None)
    }

    async fn check(&self) -> Result<(), StorageError> {
        // Listing the prefix needs the container to exist and the
        // credentials to be accepted, and changes nothing.
        match self.store.list_with_delimiter(self.prefix.as_ref()).await {
            Ok(_) => Ok(()),
            Err(error) => Err(StorageError::Unusable {
                location: self.base(),
                message: error.to_string(),
            }),
        }
    }
}
