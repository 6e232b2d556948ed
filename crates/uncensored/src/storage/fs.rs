//! Images as files: written to a temporary file in the same directory,
//! fsynced, linked into place (which fails rather than replace an existing
//! file), and the directory fsynced, so that a crash leaves either the whole
//! image or none. A `.json` sidecar holds the metadata and claims the name
//! for its job before the image is written.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use crate::download::hex;

use super::{ImageMeta, ImageSource, ObjectName, Storage, StorageError, Stored};

/// Storage in a directory of the local file system.
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: PathBuf,
}

impl FsStorage {
    /// Stores under `root` (created when missing).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

fn backend(location: &Path, error: std::io::Error) -> StorageError {
    // Full disks and permissions do not heal by themselves; interruptions may.
    let retryable = matches!(
        error.kind(),
        ErrorKind::Interrupted | ErrorKind::TimedOut | ErrorKind::WouldBlock
    );
    StorageError::Backend {
        location: location.display().to_string(),
        message: error.to_string(),
        retryable,
    }
}

async fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let owned = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&owned)?.sync_all())
        .await
        .expect("the fsync task does not panic")
        .map_err(|e| backend(dir, e))
}

/// A unique temporary name in the same directory as `path`.
fn temporary(path: &Path) -> PathBuf {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{file}.{}.part", uuid::Uuid::new_v4().simple()))
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync dir).
async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let temp = temporary(path);
    let outcome = async {
        let mut file = tokio::fs::File::create(&temp).await?;
        file.write_all(bytes).await?;
        file.sync_all().await?;
        tokio::fs::rename(&temp, path).await
    }
    .await;
    if let Err(error) = outcome {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(backend(path, error));
    }
    sync_dir(path.parent().expect("a file has a directory")).await
}

async fn read_meta(path: &Path) -> Result<Option<ImageMeta>, StorageError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StorageError::Backend {
                location: path.display().to_string(),
                message: format!("unreadable metadata sidecar: {e}"),
                retryable: false,
            }),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
        Err(error) => Err(backend(path, error)),
    }
}

async fn sha256_of(path: &Path) -> Result<(String, u64), StorageError> {
    use tokio::io::AsyncReadExt as _;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| backend(path, e))?;
    let (mut hasher, mut size, mut buffer) = (Sha256::new(), 0u64, vec![0u8; 64 * 1024]);
    loop {
        let read = file.read(&mut buffer).await.map_err(|e| backend(path, e))?;
        if read == 0 {
            return Ok((hex(&hasher.finalize()), size));
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
}

impl FsStorage {
    /// Streams `image` into a temporary file beside `path`; returns it with
    /// the SHA-256 and size. The temporary file is removed on failure.
    async fn spool(
        &self,
        path: &Path,
        image: &mut dyn ImageSource,
    ) -> Result<(PathBuf, String, u64), StorageError> {
        let temp = temporary(path);
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| backend(&temp, e))?;
        let (mut hasher, mut size) = (Sha256::new(), 0u64);
        let outcome: Result<(), StorageError> = async {
            while let Some(chunk) = image.next_chunk().await? {
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(|e| backend(path, e))?;
            }
            file.sync_all().await.map_err(|e| backend(path, e))
        }
        .await;
        drop(file);
        match outcome {
            Ok(()) => Ok((temp, hex(&hasher.finalize()), size)),
            Err(error) => {
                let _ = tokio::fs::remove_file(&temp).await;
                Err(error)
            }
        }
    }
}

#[async_trait::async_trait]
impl Storage for FsStorage {
    async fn put(
        &self,
        name: &ObjectName,
        image: &mut dyn ImageSource,
        meta: &ImageMeta,
    ) -> Result<Stored, StorageError> {
        let path = self.path(name.as_str());
        let sidecar = self.path(&name.sidecar());
        let location = path.display().to_string();
        let dir = path.parent().expect("a name has a directory").to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| backend(&dir, e))?;

        // Whose name is this? The sidecar says, before any image byte is written.
        match read_meta(&sidecar).await? {
            Some(existing) if existing.job_id != meta.job_id => {
                return Err(StorageError::Conflict {
                    location,
                    other_job: existing.job_id,
                });
            }
            Some(existing) => {
                if let (Some(sha256), Ok(found)) =
                    (&existing.sha256, tokio::fs::metadata(&path).await)
                {
                    return Ok(Stored {
                        name: name.to_string(),
                        location,
                        sha256: sha256.clone(),
                        size: found.len(),
                        already_stored: true,
                    });
                }
            }
            None if tokio::fs::try_exists(&path).await.unwrap_or(false) => {
                return Err(StorageError::Conflict {
                    location,
                    other_job: "unknown".into(),
                });
            }
            None => {
                let claim = serde_json::to_vec_pretty(&ImageMeta {
                    sha256: None,
                    ..meta.clone()
                })
                .expect("metadata serialises");
                write_atomically(&sidecar, &claim).await?;
            }
        }

        let (temp, sha256, size) = self.spool(&path, image).await?;
        // A hard link never replaces an existing file: it is the atomic
        // "create if absent" that rename lacks.
        let linked = tokio::fs::hard_link(&temp, &path).await;
        let _ = tokio::fs::remove_file(&temp).await;
        match linked {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                let (existing, _) = sha256_of(&path).await?;
                if existing != sha256 {
                    return Err(StorageError::Conflict {
                        location,
                        other_job: "unknown".into(),
                    });
                }
            }
            Err(error) => return Err(backend(&path, error)),
        }
        sync_dir(&dir).await?;
        let complete = ImageMeta {
            sha256: Some(sha256.clone()),
            ..meta.clone()
        };
        write_atomically(
            &sidecar,
            &serde_json::to_vec_pretty(&complete).expect("metadata serialises"),
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
        let path = self.path(name.as_str());
        let Some(meta) = read_meta(&self.path(&name.sidecar())).await? else {
            return Ok(None);
        };
        let Ok(found) = tokio::fs::metadata(&path).await else {
            return Ok(None);
        };
        let Some(sha256) = meta.sha256.clone() else {
            return Ok(None);
        };
        let stored = Stored {
            name: name.to_string(),
            location: path.display().to_string(),
            sha256,
            size: found.len(),
            already_stored: true,
        };
        Ok(Some((stored, meta)))
    }

    fn location(&self, name: &ObjectName) -> String {
        self.path(name.as_str()).display().to_string()
    }
}
