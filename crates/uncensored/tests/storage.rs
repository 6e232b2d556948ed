//! One conformance suite, run against every Storage backend: the file system
//! (always) and S3 (moto_server on loopback, when the `s3` feature is on).

use std::sync::Arc;

use bytes::Bytes;
use sha2::Digest as _;
use uncensored::storage::{
    ImageMeta, ImageSource, NameTemplate, ObjectName, Storage, StorageError,
};
use uncensored::{DownloadError, ImageFormat};

mod support;

/// An image from chunks, optionally failing (as a cut download) at one of them.
struct Chunks {
    chunks: Vec<Bytes>,
    fail_at: Option<usize>,
    next: usize,
}

#[async_trait::async_trait]
impl ImageSource for Chunks {
    fn format(&self) -> ImageFormat {
        ImageFormat::Jpeg
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>, DownloadError> {
        if self.fail_at == Some(self.next) {
            return Err(DownloadError::Truncated {
                received: 1,
                expected: 2,
            });
        }
        self.next += 1;
        Ok(self.chunks.get(self.next - 1).cloned())
    }
}

fn image(seed: u8, size: usize, chunk: usize) -> (Chunks, String) {
    let mut bytes = vec![0xFF, 0xD8, 0xFF];
    bytes
        .extend((0..size.saturating_sub(3)).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let chunks = bytes.chunks(chunk).map(Bytes::copy_from_slice).collect();
    (
        Chunks {
            chunks,
            fail_at: None,
            next: 0,
        },
        sha,
    )
}

fn meta(job_id: &str) -> ImageMeta {
    ImageMeta {
        job_id: job_id.into(),
        prompt: "a lighthouse at dusk".into(),
        model: Some("model-dev".into()),
        width: Some(256),
        height: Some(256),
        generation_time: Some(12.5),
        sha256: None,
        created_at: chrono::Utc::now(),
    }
}

fn name(job_id: &str) -> ObjectName {
    let date = chrono::NaiveDate::from_ymd_opt(2026, 5, 9).unwrap();
    NameTemplate::default()
        .render(job_id, ImageFormat::Jpeg, None, date)
        .unwrap()
}

/// What every backend must do.
async fn conformance(storage: Arc<dyn Storage>) {
    // A new image is stored whole, with its metadata.
    let (mut source, sha) = image(1, 300_000, 64 * 1024);
    let stored = storage
        .put(&name("job-a"), &mut source, &meta("job-a"))
        .await
        .unwrap();
    assert_eq!(
        (stored.sha256.as_str(), stored.size, stored.already_stored),
        (sha.as_str(), 300_000, false)
    );
    assert_eq!(stored.location, storage.location(&name("job-a")));
    let (found, found_meta) = storage.stat(&name("job-a")).await.unwrap().expect("stored");
    assert_eq!(found.sha256, sha);
    assert_eq!(found_meta.job_id, "job-a");
    assert_eq!(found_meta.sha256.as_deref(), Some(sha.as_str()));
    assert_eq!(found_meta.prompt, "a lighthouse at dusk");

    // The same job again changes nothing and says so, without reading the source.
    let (mut again, _) = image(1, 300_000, 64 * 1024);
    let repeat = storage
        .put(&name("job-a"), &mut again, &meta("job-a"))
        .await
        .unwrap();
    assert!(repeat.already_stored);
    assert_eq!(repeat.sha256, sha);
    assert_eq!(again.next, 0, "a no-op must not download the image again");

    // Another job's image under the same name is refused; the first stays.
    let (mut other, _) = image(2, 1000, 100);
    let error = storage
        .put(&name("job-a"), &mut other, &meta("job-b"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StorageError::Conflict { ref other_job, .. } if other_job == "job-a"),
        "{error}"
    );
    assert_eq!(
        storage
            .stat(&name("job-a"))
            .await
            .unwrap()
            .unwrap()
            .0
            .sha256,
        sha
    );

    // A source that fails halfway leaves no image; a retry then stores it.
    let (mut broken, sha_c) = image(3, 200_000, 10_000);
    broken.fail_at = Some(7);
    let error = storage
        .put(&name("job-c"), &mut broken, &meta("job-c"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StorageError::Source(_)) && error.is_retryable(),
        "{error}"
    );
    assert!(storage.stat(&name("job-c")).await.unwrap().is_none());
    let (mut fixed, _) = image(3, 200_000, 10_000);
    let stored = storage
        .put(&name("job-c"), &mut fixed, &meta("job-c"))
        .await
        .unwrap();
    assert_eq!((stored.sha256, stored.already_stored), (sha_c, false));

    assert!(storage.stat(&name("never-stored")).await.unwrap().is_none());
}

#[cfg(feature = "fs")]
#[tokio::test]
async fn fs_storage_conforms_and_leaves_no_temporary_files() {
    let dir = std::env::temp_dir().join(format!("uncensored-fs-{}", uuid::Uuid::new_v4().simple()));
    let storage = Arc::new(uncensored::storage::FsStorage::new(&dir));
    conformance(storage.clone()).await;
    let day = dir.join("2026-05-09");
    let mut files: Vec<String> = std::fs::read_dir(&day)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["job-a.jpg", "job-a.jpg.json", "job-c.jpg", "job-c.jpg.json"],
        "no .part files remain"
    );
    let bytes = std::fs::read(day.join("job-a.jpg")).unwrap();
    assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF]);
    // A file that no sidecar explains is never overwritten.
    std::fs::write(day.join("job-z.jpg"), b"someone else's").unwrap();
    let (mut source, _) = image(9, 1000, 100);
    let error = storage
        .put(&name("job-z"), &mut source, &meta("job-z"))
        .await
        .unwrap_err();
    assert!(matches!(error, StorageError::Conflict { .. }), "{error}");
    assert_eq!(
        std::fs::read(day.join("job-z.jpg")).unwrap(),
        b"someone else's"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[cfg(feature = "s3")]
mod s3 {
    use super::support::{self, Moto};
    use super::*;
    use uncensored::storage::S3Storage;

    async fn bucket(moto: &Moto, bucket: &str, prefix: &str) -> S3Storage {
        support::create_bucket(&moto.endpoint, bucket).await;
        S3Storage::from_url_with(
            &format!("s3://{bucket}/{prefix}"),
            support::s3_builder(&moto.endpoint),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn s3_storage_conforms() {
        let Some(moto) = support::moto() else { return };
        let storage = bucket(&moto, "conformance", "images").await;
        assert_eq!(
            storage.location(&name("x")),
            "s3://conformance/images/2026-05-09/x.jpg"
        );
        conformance(Arc::new(storage)).await;
    }

    #[tokio::test]
    async fn large_images_go_up_in_parts_and_can_be_shared() {
        let Some(moto) = support::moto() else { return };
        let storage = bucket(&moto, "large", "")
            .await
            .with_presigned_urls(std::time::Duration::from_secs(600));
        let (mut source, sha) = image(4, 12 * 1024 * 1024 + 17, 256 * 1024);
        let stored = storage
            .put(&name("big"), &mut source, &meta("big"))
            .await
            .unwrap();
        assert_eq!(
            (stored.sha256.as_str(), stored.size),
            (sha.as_str(), 12 * 1024 * 1024 + 17)
        );
        let url = storage
            .share_url(&name("big"))
            .await
            .unwrap()
            .expect("presigned");
        let body = reqwest::get(&url).await.unwrap();
        assert!(body.status().is_success(), "{}", body.status());
        let bytes = body.bytes().await.unwrap();
        let got: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, sha);
    }
}
