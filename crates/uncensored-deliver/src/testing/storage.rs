//! What every storage must do: store whole images with their metadata,
//! treat a second put of the same job as a no-op, never replace another
//! job's image (also when two writers race for one name), leave nothing
//! under a name when the source fails, stream large images in parts, and
//! hand out working signed URLs when it makes them.

use bytes::Bytes;
use sha2::Digest as _;
use uncensored::{DownloadError, ImageFormat};

use crate::storage::{ImageMeta, ImageSource, NameTemplate, ObjectName, Storage, StorageError};

/// A deterministic JPEG-looking image in chunks, which can fail (as a cut
/// download does) at a chosen chunk.
#[derive(Debug, Clone)]
pub struct TestImage {
    chunks: Vec<Bytes>,
    sha256: String,
    size: u64,
    fail_at: Option<usize>,
    next: usize,
}

impl TestImage {
    /// `size` bytes derived from `seed`, handed out `chunk` bytes at a time.
    pub fn new(seed: u8, size: usize, chunk: usize) -> Self {
        let mut bytes = vec![0xFF, 0xD8, 0xFF];
        bytes.extend(
            (0..size.saturating_sub(3)).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)),
        );
        Self {
            sha256: format!("{:x}", sha2::Sha256::digest(&bytes)),
            size: bytes.len() as u64,
            chunks: bytes
                .chunks(chunk.max(1))
                .map(Bytes::copy_from_slice)
                .collect(),
            fail_at: None,
            next: 0,
        }
    }

    /// Fails when chunk `index` is asked for.
    pub fn failing_at(mut self, index: usize) -> Self {
        self.fail_at = Some(index);
        self
    }

    /// The SHA-256 of the whole image, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// How many chunks were read.
    pub fn chunks_read(&self) -> usize {
        self.next
    }
}

#[async_trait::async_trait]
impl ImageSource for TestImage {
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

/// Metadata for a test job.
pub fn meta(job_id: &str) -> ImageMeta {
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

/// The default template's name for a test job (`2026-05-09/JOB.jpg`).
pub fn name(job_id: &str) -> ObjectName {
    let date = chrono::NaiveDate::from_ymd_opt(2026, 5, 9).expect("a date");
    NameTemplate::default()
        .render(job_id, ImageFormat::Jpeg, None, date)
        .expect("a valid test name")
}

/// Every single-part guarantee: put, stat, the no-op repeat, the refused
/// other job, a failed source leaving nothing, and `check`.
pub async fn conformance(storage: &dyn Storage) {
    storage
        .check()
        .await
        .expect("check passes on a usable storage");

    // A new image is stored whole, with its metadata.
    let mut source = TestImage::new(1, 300_000, 64 * 1024);
    let stored = storage
        .put(&name("job-a"), &mut source, &meta("job-a"))
        .await
        .expect("a first put succeeds");
    assert_eq!(
        (stored.sha256.as_str(), stored.size, stored.already_stored),
        (source.sha256(), 300_000, false)
    );
    assert_eq!(stored.location, storage.location(&name("job-a")));
    let (found, found_meta) = storage
        .stat(&name("job-a"))
        .await
        .unwrap()
        .expect("stat finds a stored image");
    assert_eq!(found.sha256, source.sha256());
    assert_eq!(found.size, 300_000);
    assert_eq!(found_meta.job_id, "job-a");
    assert_eq!(found_meta.sha256.as_deref(), Some(source.sha256()));
    assert_eq!(found_meta.prompt, "a lighthouse at dusk");

    // The same job again changes nothing and says so, without reading the source.
    let mut again = TestImage::new(1, 300_000, 64 * 1024);
    let repeat = storage
        .put(&name("job-a"), &mut again, &meta("job-a"))
        .await
        .unwrap();
    assert!(repeat.already_stored, "a repeat must say already_stored");
    assert_eq!(repeat.sha256, source.sha256());
    assert_eq!(
        again.chunks_read(),
        0,
        "a no-op must not download the image again"
    );

    // Another job's image under the same name is refused; the first stays.
    let mut other = TestImage::new(2, 1000, 100);
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
        source.sha256()
    );

    // A source that fails halfway leaves no image; a retry then stores it.
    let mut broken = TestImage::new(3, 200_000, 10_000).failing_at(7);
    let error = storage
        .put(&name("job-c"), &mut broken, &meta("job-c"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StorageError::Source(_)) && error.is_retryable(),
        "{error}"
    );
    assert!(
        storage.stat(&name("job-c")).await.unwrap().is_none(),
        "a failed put must leave no image"
    );
    let mut fixed = TestImage::new(3, 200_000, 10_000);
    let stored = storage
        .put(&name("job-c"), &mut fixed, &meta("job-c"))
        .await
        .unwrap();
    assert_eq!(
        (stored.sha256.as_str(), stored.already_stored),
        (fixed.sha256(), false)
    );

    assert!(storage.stat(&name("never-stored")).await.unwrap().is_none());
}

/// Eight jobs race for one name: exactly one stores its image, the seven
/// others are refused with a conflict naming the winner, and the name holds
/// the winner's image and metadata. Needs a store with conditional puts.
pub async fn concurrent_claims(storage: &dyn Storage) {
    let target = name("contested");
    let puts = (0..8u8).map(|i| {
        let target = target.clone();
        async move {
            let mut image = TestImage::new(10 + i, 50_000, 8 * 1024);
            let job = format!("racer-{i}");
            let outcome = storage.put(&target, &mut image, &meta(&job)).await;
            (job, image.sha256().to_string(), outcome)
        }
    });
    let outcomes = futures_util::future::join_all(puts).await;
    let winners: Vec<_> = outcomes.iter().filter(|(_, _, o)| o.is_ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one of eight racing jobs may store under one name: {:?}",
        outcomes
            .iter()
            .map(|(j, _, o)| (j, o.as_ref().map(|_| ()).map_err(|e| e.to_string())))
            .collect::<Vec<_>>()
    );
    let (winner, winner_sha, _) = winners[0];
    for (job, _, outcome) in &outcomes {
        if job != winner {
            match outcome {
                Err(StorageError::Conflict { other_job, .. }) => assert_eq!(other_job, winner),
                other => panic!("{job} should have been refused: {other:?}"),
            }
        }
    }
    let (stored, meta) = storage.stat(&target).await.unwrap().expect("stored");
    assert_eq!(
        (meta.job_id.as_str(), stored.sha256.as_str()),
        (winner.as_str(), winner_sha.as_str())
    );
}

/// A 12 MiB image goes up in parts (bounded memory) and comes back whole.
pub async fn multipart(storage: &dyn Storage) {
    let mut source = TestImage::new(4, 12 * 1024 * 1024 + 17, 256 * 1024);
    let stored = storage
        .put(&name("big"), &mut source, &meta("big"))
        .await
        .unwrap();
    assert_eq!(
        (stored.sha256.as_str(), stored.size),
        (source.sha256(), source.size())
    );
    let (found, _) = storage.stat(&name("big")).await.unwrap().expect("stored");
    assert_eq!(found.size, source.size());
}

/// A signed URL, when the storage makes one, serves the stored bytes to a
/// client holding nothing else.
pub async fn share_urls(storage: &dyn Storage) {
    let mut source = TestImage::new(5, 70_000, 16 * 1024);
    storage
        .put(&name("shared"), &mut source, &meta("shared"))
        .await
        .unwrap();
    let url = storage
        .share_url(&name("shared"))
        .await
        .unwrap()
        .expect("this storage makes signed URLs");
    let response = reqwest::get(&url).await.expect("the signed URL answers");
    assert!(
        response.status().is_success(),
        "signed URL: {}",
        response.status()
    );
    let bytes = response.bytes().await.unwrap();
    assert_eq!(
        format!("{:x}", sha2::Sha256::digest(&bytes)),
        source.sha256()
    );
}
