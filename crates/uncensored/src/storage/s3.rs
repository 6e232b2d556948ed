//! Images in S3 or an S3-compatible server, through object_store: streamed
//! with its buffered writer (one PUT for small images, multipart above the part
//! size, at most two parts in flight, so memory stays bounded), a `.json`
//! sidecar object claiming the name for its job, and optional presigned GET
//! URLs to show the image in notifications.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::signer::Signer as _;
use object_store::{Attribute, Attributes, ObjectStoreExt as _, PutPayload};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::{ImageMeta, ImageSource, ObjectName, Storage, StorageError, Stored};

/// Storage in an S3 bucket, under an optional prefix.
#[derive(Debug, Clone)]
pub struct S3Storage {
    store: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
    part_size: usize,
    presign: Option<Duration>,
}

/// Part size for multipart uploads (S3's minimum is 5 MiB).
pub const DEFAULT_PART_SIZE: usize = 5 * 1024 * 1024;

impl S3Storage {
    /// Storage for `s3://bucket/prefix`, configured from the environment as
    /// `AmazonS3Builder::from_env` reads it (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
    /// `AWS_ALLOW_HTTP`...).
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        Self::from_url_with(url, AmazonS3Builder::from_env())
    }

    /// Like [`S3Storage::from_url`], with a builder you configured (endpoint,
    /// credentials, `with_allow_http(true)` for a local S3-compatible server).
    pub fn from_url_with(url: &str, builder: AmazonS3Builder) -> Result<Self, StorageError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| StorageError::Config(format!("{url:?} is not a URL: {e}")))?;
        if parsed.scheme() != "s3" {
            return Err(StorageError::Config(format!(
                "{url:?} is not an s3://bucket/prefix URL"
            )));
        }
        let bucket = parsed
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| StorageError::Config(format!("{url:?} names no bucket")))?;
        let prefix = parsed.path().trim_matches('/').to_string();
        let store = builder
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| StorageError::Config(format!("cannot configure S3 for {url}: {e}")))?;
        Ok(Self {
            store: Arc::new(store),
            bucket: bucket.to_string(),
            prefix,
            part_size: DEFAULT_PART_SIZE,
            presign: None,
        })
    }

    /// The part size of multipart uploads; images up to this size go in one PUT.
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(DEFAULT_PART_SIZE);
        self
    }

    /// Makes [`Storage::share_url`] return presigned GET URLs valid for `expires_in`.
    pub fn with_presigned_urls(mut self, expires_in: Duration) -> Self {
        self.presign = Some(expires_in);
        self
    }

    fn key(&self, name: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(name)
        } else {
            Path::from(format!("{}/{name}", self.prefix))
        }
    }

    fn location_of(&self, key: &Path) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    async fn read_meta(&self, key: &Path) -> Result<Option<ImageMeta>, StorageError> {
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

    async fn write_meta(&self, key: &Path, meta: &ImageMeta) -> Result<(), StorageError> {
        let body = serde_json::to_vec_pretty(meta).expect("metadata serialises");
        self.store
            .put(key, PutPayload::from(body))
            .await
            .map_err(|e| self.error(key, e))?;
        Ok(())
    }

    fn error(&self, key: &Path, error: object_store::Error) -> StorageError {
        let retryable = matches!(error, object_store::Error::Generic { .. });
        StorageError::Backend {
            location: self.location_of(key),
            message: error.to_string(),
            retryable,
        }
    }
}

#[async_trait::async_trait]
impl Storage for S3Storage {
    async fn put(
        &self,
        name: &ObjectName,
        image: &mut dyn ImageSource,
        meta: &ImageMeta,
    ) -> Result<Stored, StorageError> {
        let key = self.key(name.as_str());
        let sidecar = self.key(&name.sidecar());
        let location = self.location_of(&key);
        match self.read_meta(&sidecar).await? {
            Some(existing) if existing.job_id != meta.job_id => {
                return Err(StorageError::Conflict {
                    location,
                    other_job: existing.job_id,
                });
            }
            Some(existing) => {
                if let (Some(sha256), Ok(found)) = (&existing.sha256, self.store.head(&key).await) {
                    return Ok(Stored {
                        name: name.to_string(),
                        location,
                        sha256: sha256.clone(),
                        size: found.size,
                        already_stored: true,
                    });
                }
            }
            None => {
                if self.store.head(&key).await.is_ok() {
                    return Err(StorageError::Conflict {
                        location,
                        other_job: "unknown".into(),
                    });
                }
                self.write_meta(
                    &sidecar,
                    &ImageMeta {
                        sha256: None,
                        ..meta.clone()
                    },
                )
                .await?;
            }
        }

        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, image.format().mime().into());
        attributes.insert(
            Attribute::Metadata("job-id".into()),
            meta.job_id.clone().into(),
        );
        let mut writer = BufWriter::with_capacity(self.store.clone(), key.clone(), self.part_size)
            .with_max_concurrency(2)
            .with_attributes(attributes);
        let (mut hasher, mut size) = (Sha256::new(), 0u64);
        let outcome: Result<(), StorageError> = async {
            while let Some(chunk) = image.next_chunk().await? {
                hasher.update(&chunk);
                size += chunk.len() as u64;
                writer.put(chunk).await.map_err(|e| self.error(&key, e))?;
            }
            writer.shutdown().await.map_err(|e| StorageError::Backend {
                location: location.clone(),
                message: e.to_string(),
                retryable: true,
            })
        }
        .await;
        if let Err(error) = outcome {
            // Nothing half-written stays behind: a multipart upload is aborted.
            let _ = writer.abort().await;
            return Err(error);
        }
        let sha256 = crate::download::hex(&hasher.finalize());
        self.write_meta(
            &sidecar,
            &ImageMeta {
                sha256: Some(sha256.clone()),
                ..meta.clone()
            },
        )
        .await?;
        Ok(Stored {
            name: name.to_string(),
            location,
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

    async fn share_url(&self, name: &ObjectName) -> Result<Option<String>, StorageError> {
        let Some(expires_in) = self.presign else {
            return Ok(None);
        };
        let key = self.key(name.as_str());
        let url = self
            .store
            .signed_url(object_store::signer::Method::GET, &key, expires_in)
            .await
            .map_err(|e| self.error(&key, e))?;
        Ok(Some(url.to_string()))
    }
}
