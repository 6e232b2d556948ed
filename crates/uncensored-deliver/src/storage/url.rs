//! Storage chosen by URL, with object_store's own URL parsing:
//! `file:///path` or a bare directory, `s3://bucket/prefix`,
//! `gs://bucket/prefix`, `az://container/prefix`, `memory://`.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStoreScheme;

#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
use super::object::{store_client_timeouts, store_retry_config};
use super::{ObjectStorage, StorageError};

/// The kinds of storage a URL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageKind {
    /// A directory of the local file system (feature `fs`).
    File,
    /// Memory of this process (for tests and trials).
    Memory,
    /// Amazon S3 or an S3-compatible server (feature `s3`).
    S3,
    /// Google Cloud Storage (feature `gcs`).
    Gcs,
    /// Azure Blob Storage (feature `azure`).
    Azure,
}

impl StorageKind {
    /// The cargo feature that compiles this kind in.
    pub fn feature(self) -> &'static str {
        match self {
            StorageKind::File => "fs",
            StorageKind::Memory => "(none)",
            StorageKind::S3 => "s3",
            StorageKind::Gcs => "gcs",
            StorageKind::Azure => "azure",
        }
    }

    /// The settings that configure this kind, for error messages.
    pub fn settings(self) -> &'static str {
        match self {
            StorageKind::File | StorageKind::Memory => "none",
            StorageKind::S3 => {
                "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION (and AWS_ENDPOINT, AWS_ALLOW_HTTP for an S3-compatible server)"
            }
            StorageKind::Gcs => {
                "GOOGLE_SERVICE_ACCOUNT (a service-account JSON file) or GOOGLE_APPLICATION_CREDENTIALS"
            }
            StorageKind::Azure => {
                "AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY (or AZURE_STORAGE_USE_EMULATOR=true for Azurite)"
            }
        }
    }
}

/// A parsed storage URL: where images go, before anything is opened.
///
/// ```
/// use uncensored_deliver::storage::{StorageKind, StorageUrl};
///
/// assert_eq!(StorageUrl::parse("s3://my-bucket/images").unwrap().kind(), StorageKind::S3);
/// assert_eq!(StorageUrl::parse("images").unwrap().kind(), StorageKind::File);
/// assert!(StorageUrl::parse("ftp://host/x").is_err());
/// assert!(StorageUrl::parse("s3:///no-bucket").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageUrl {
    kind: StorageKind,
    text: String,
    url: Option<url::Url>,
    directory: Option<PathBuf>,
    prefix: String,
}

impl std::fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for StorageUrl {
    type Err = StorageError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl StorageUrl {
    /// Parses a storage URL, or a bare directory path. Refuses an unknown
    /// scheme or a URL without its bucket or container, naming what to use.
    pub fn parse(text: &str) -> Result<Self, StorageError> {
        let invalid = |reason: String| StorageError::InvalidUrl {
            url: redacted(text),
            reason,
        };
        if text.trim().is_empty() {
            return Err(invalid("it is empty".into()));
        }
        let looks_like_url = text
            .split_once("://")
            .is_some_and(|(scheme, _)| !scheme.is_empty() && !scheme.contains('/'));
        if !looks_like_url {
            return Ok(Self {
                kind: StorageKind::File,
                text: text.to_string(),
                url: None,
                directory: Some(PathBuf::from(text)),
                prefix: String::new(),
            });
        }
        let url = url::Url::parse(text).map_err(|e| invalid(e.to_string()))?;
        let supported = "use file:///path, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix or memory://";
        let cloud = match url.scheme() {
            "s3" | "s3a" | "gs" => Some("bucket"),
            "az" | "azure" => Some("container"),
            _ => None,
        };
        if let Some(what) = cloud
            && url.host_str().is_none_or(str::is_empty)
        {
            return Err(invalid(format!("it names no {what}")));
        }
        let (scheme, path) = ObjectStoreScheme::parse(&url)
            .map_err(|_| invalid(format!("unknown storage scheme; {supported}")))?;
        let kind = match scheme {
            ObjectStoreScheme::Local => StorageKind::File,
            ObjectStoreScheme::Memory => StorageKind::Memory,
            ObjectStoreScheme::AmazonS3 if url.scheme() == "s3" || url.scheme() == "s3a" => {
                StorageKind::S3
            }
            ObjectStoreScheme::GoogleCloudStorage if url.scheme() == "gs" => StorageKind::Gcs,
            ObjectStoreScheme::MicrosoftAzure
                if url.scheme() == "az" || url.scheme() == "azure" =>
            {
                StorageKind::Azure
            }
            _ => return Err(invalid(format!("unsupported storage URL; {supported}"))),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "credentials do not belong in a storage URL; use the environment".into(),
            ));
        }
        let directory = (kind == StorageKind::File).then(|| PathBuf::from(url.path()));
        Ok(Self {
            kind,
            text: text.to_string(),
            prefix: if kind == StorageKind::File {
                String::new()
            } else {
                path.to_string()
            },
            url: Some(url),
            directory,
        })
    }

    /// The kind of storage.
    pub fn kind(&self) -> StorageKind {
        self.kind
    }

    /// The local directory, for `file://` URLs and bare paths.
    pub fn directory(&self) -> Option<&std::path::Path> {
        self.directory.as_deref()
    }

    /// Opens the storage, configured from the environment as object_store's
    /// builders read it (see [`StorageKind::settings`]). S3, GCS and Azure
    /// stores retry each request themselves, bounded as
    /// [`store_retry_config`](super::store_retry_config) and
    /// [`STORE_CLIENT_TIMEOUTS`](super::STORE_CLIENT_TIMEOUTS) say; their
    /// errors are not retried again on top.
    pub fn open(&self) -> Result<ObjectStorage, StorageError> {
        self.open_with(std::iter::empty::<(String, String)>())
    }

    /// Opens the storage with object_store configuration keys on top of the
    /// environment, such as `("aws_endpoint", "http://127.0.0.1:9000")` or
    /// `("azure_storage_use_emulator", "true")`. A key the backend does not
    /// know is an error.
    pub fn open_with<K, V>(
        &self,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<ObjectStorage, StorageError>
    where
        K: AsRef<str>,
        V: Into<String>,
    {
        let options: Vec<(String, String)> = options
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.into()))
            .collect();
        let config = |e: &dyn std::fmt::Display| StorageError::Config(format!("{self}: {e}"));
        let missing = || {
            StorageError::Config(format!(
                "{self}: this build has no {kind:?} storage; enable the `{feature}` feature of uncensored-deliver",
                kind = self.kind,
                feature = self.kind.feature()
            ))
        };
        let _ = (&config, &missing, &options);
        match self.kind {
            StorageKind::Memory => Ok(ObjectStorage::new(
                Arc::new(object_store::memory::InMemory::new()),
                "memory://",
                &self.prefix,
                true,
            )),
            #[cfg(feature = "fs")]
            StorageKind::File => {
                ObjectStorage::local(self.directory.clone().expect("a file URL has a directory"))
            }
            #[cfg(feature = "s3")]
            StorageKind::S3 => {
                let mut builder = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(self.url_text())
                    .with_retry(store_retry_config());
                for (key, value) in store_client_timeouts() {
                    builder = builder
                        .with_config(object_store::aws::AmazonS3ConfigKey::Client(key), value);
                }
                for (key, value) in options {
                    builder = builder.with_config(key.parse().map_err(|e| config(&e))?, value);
                }
                let store = Arc::new(builder.build().map_err(|e| config(&e))?);
                Ok(self.signed(store.clone(), store))
            }
            #[cfg(feature = "gcs")]
            StorageKind::Gcs => {
                let mut builder = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(self.url_text())
                    .with_retry(store_retry_config());
                for (key, value) in store_client_timeouts() {
                    builder =
                        builder.with_config(object_store::gcp::GoogleConfigKey::Client(key), value);
                }
                for (key, value) in options {
                    builder = builder.with_config(key.parse().map_err(|e| config(&e))?, value);
                }
                let store = Arc::new(builder.build().map_err(|e| config(&e))?);
                Ok(self.signed(store.clone(), store))
            }
            #[cfg(feature = "azure")]
            StorageKind::Azure => {
                let mut builder = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(self.url_text())
                    .with_retry(store_retry_config());
                for (key, value) in store_client_timeouts() {
                    builder = builder
                        .with_config(object_store::azure::AzureConfigKey::Client(key), value);
                }
                for (key, value) in options {
                    builder = builder.with_config(key.parse().map_err(|e| config(&e))?, value);
                }
                let store = Arc::new(builder.build().map_err(|e| config(&e))?);
                Ok(self.signed(store.clone(), store))
            }
            #[allow(unreachable_patterns)]
            _ => Err(missing()),
        }
    }

    #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
    fn url_text(&self) -> String {
        self.url.as_ref().map(|u| u.to_string()).unwrap_or_default()
    }

    #[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
    fn signed(
        &self,
        store: Arc<dyn object_store::ObjectStore>,
        signer: Arc<dyn object_store::signer::Signer>,
    ) -> ObjectStorage {
        let url = self.url.as_ref().expect("a cloud storage URL is a URL");
        let base = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
        ObjectStorage::new(store, base, &self.prefix, true)
            .with_signer(signer)
            .retried_by_store()
    }
}

/// `text` with any user information (`user:password@`) replaced by `***`.
fn redacted(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => text.to_string(),
            }
        }
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_kind_and_prefix() {
        for (text, kind, prefix) in [
            ("s3://bucket/a/b", StorageKind::S3, "a/b"),
            ("s3://bucket", StorageKind::S3, ""),
            ("gs://bucket/p", StorageKind::Gcs, "p"),
            ("az://container/p/q", StorageKind::Azure, "p/q"),
            ("memory://", StorageKind::Memory, ""),
            ("file:///tmp/images", StorageKind::File, ""),
            ("./images", StorageKind::File, ""),
            ("/abs/images", StorageKind::File, ""),
        ] {
            let url = StorageUrl::parse(text).unwrap();
            assert_eq!((url.kind(), url.prefix.as_str()), (kind, prefix), "{text}");
        }
        assert_eq!(
            StorageUrl::parse("file:///tmp/images")
                .unwrap()
                .directory()
                .unwrap(),
            std::path::Path::new("/tmp/images")
        );
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("ftp://host/x", "scheme"),
            ("https://example.com/x", "unsupported"),
            ("s3:///x", "no bucket"),
            ("az:///x", "no container"),
            ("s3://key:secret@bucket/x", "credentials"),
        ] {
            let error = StorageUrl::parse(text).unwrap_err();
            assert!(
                matches!(&error, StorageError::InvalidUrl { .. }),
                "{text}: {error}"
            );
            assert!(error.to_string().contains(reason), "{text}: {error}");
            assert!(
                !error.to_string().contains("secret"),
                "never echo credentials"
            );
        }
    }
}
