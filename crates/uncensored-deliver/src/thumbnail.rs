//! Thumbnails of images nobody vouches for: whatever a storage holds, from
//! the API or from anyone who could write there. A PNG of half a megabyte
//! can declare 11,000 x 11,000 pixels and make a decoder with the `image`
//! crate's default limits (no side limit, 512 MiB an allocation) take
//! ~480 MiB; here the header is checked against explicit limits before any
//! pixel buffer exists.
//!
//! - Every decode has [`MAX_SIDE`] pixels a side and [`MAX_ALLOC`] bytes at
//!   most, and runs on a blocking thread (`tokio::task::spawn_blocking`).
//! - At most [`DECODERS`] images are read and decoded at once per
//!   [`Thumbnailer`], whatever the number of requests: the peak memory of
//!   decoding is bounded by `DECODERS * MAX_ALLOC`.
//! - A failure is remembered under the caller's key (the image's SHA-256 or
//!   name), the last [`REMEMBERED_FAILURES`] of them: the same bad image is
//!   not read nor decoded again on every request.
//!
//! The gallery's thumbnails and the MCP server's optional one both come from
//! here. JPEG, PNG and WebP are read, the formats the API returns.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::Cursor;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use image::{DynamicImage, ImageError, ImageReader, Limits};
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

/// The widest and the tallest image decoded, in pixels: four times the
/// API's largest side (2,048), so every image it makes passes.
pub const MAX_SIDE: u32 = 8192;

/// The most bytes one decode may allocate (its pixel buffer): 128 MiB,
/// eight times a 2,048 x 2,048 RGBA image.
pub const MAX_ALLOC: u64 = 128 * 1024 * 1024;

/// Images read and decoded at once by one [`Thumbnailer`].
pub const DECODERS: usize = 2;

/// Failures a [`Thumbnailer`] remembers; the oldest is forgotten first.
pub const REMEMBERED_FAILURES: usize = 4096;

/// The smallest and the largest side a thumbnail can be asked to fit in.
pub const THUMBNAIL_SIDES: std::ops::RangeInclusive<u32> = 16..=1024;

/// The JPEG quality of thumbnails.
const QUALITY: u8 = 80;

/// Why an image has no thumbnail. The same bytes fail the same way, so a
/// [`Thumbnailer`] remembers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ThumbnailError {
    /// The image declares more pixels, or needs more memory, than
    /// [`MAX_SIDE`] and [`MAX_ALLOC`] allow; nothing was decoded.
    #[error("the image is over the decoding limits ({MAX_SIDE} pixels a side, {mib} MiB): {0}", mib = MAX_ALLOC >> 20)]
    OverLimits(String),
    /// Not an image this build reads (an unknown format, or a feature of
    /// one it does not support).
    #[error("not an image this build can read: {0}")]
    Unsupported(String),
    /// The bytes are not a valid image (truncated, corrupt), or the
    /// thumbnail could not be encoded.
    #[error("the image cannot be decoded: {0}")]
    Invalid(String),
}

impl From<ImageError> for ThumbnailError {
    fn from(error: ImageError) -> Self {
        match error {
            ImageError::Limits(limit) => Self::OverLimits(limit.to_string()),
            ImageError::Unsupported(unsupported) => Self::Unsupported(unsupported.to_string()),
            other => Self::Invalid(other.to_string()),
        }
    }
}

/// The limits every decode runs under.
fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    limits
}

/// Decodes `bytes` under [`limits`]: the format is guessed from the
/// content, the header checked before the pixel buffer is allocated.
fn decode(bytes: &[u8]) -> Result<DynamicImage, ThumbnailError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|error| ThumbnailError::Invalid(error.to_string()))?;
    reader.limits(limits());
    Ok(reader.decode()?)
}

/// Decodes, scales to fit `side` x `side`, encodes as JPEG. Blocking.
fn thumbnail_jpeg(bytes: &[u8], side: u32) -> Result<Bytes, ThumbnailError> {
    let small = decode(bytes)?.thumbnail(side, side).into_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, QUALITY).encode_image(&small)?;
    Ok(Bytes::from(jpeg))
}

/// Remembered failures, by the SHA-256 of their key (a fixed size whatever
/// the key), the oldest forgotten first.
#[derive(Debug)]
struct Failures {
    capacity: usize,
    by_key: HashMap<[u8; 32], ThumbnailError>,
    order: VecDeque<[u8; 32]>,
}

impl Failures {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            by_key: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn digest(key: &str) -> [u8; 32] {
        Sha256::digest(key.as_bytes()).into()
    }

    fn get(&self, key: &str) -> Option<ThumbnailError> {
        self.by_key.get(&Self::digest(key)).cloned()
    }

    fn insert(&mut self, key: &str, failure: ThumbnailError) {
        let digest = Self::digest(key);
        if self.by_key.insert(digest, failure).is_some() {
            return;
        }
        self.order.push_back(digest);
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.by_key.remove(&oldest);
            }
        }
    }
}

/// Makes JPEG thumbnails of untrusted images under explicit limits, a few at
/// a time, remembering the images that failed. Share one per process part
/// (a server): its bound on concurrent decodes holds across its callers.
#[derive(Debug)]
pub struct Thumbnailer {
    side: u32,
    decoders: Semaphore,
    failures: Mutex<Failures>,
    decodes: AtomicU64,
}

impl Thumbnailer {
    /// Thumbnails that fit in `side` x `side` pixels (clamped to
    /// [`THUMBNAIL_SIDES`]).
    pub fn new(side: u32) -> Self {
        Self {
            side: side.clamp(*THUMBNAIL_SIDES.start(), *THUMBNAIL_SIDES.end()),
            decoders: Semaphore::new(DECODERS),
            failures: Mutex::new(Failures::new(REMEMBERED_FAILURES)),
            decodes: AtomicU64::new(0),
        }
    }

    /// The side thumbnails fit in, in pixels.
    pub fn side(&self) -> u32 {
        self.side
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, Failures> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The failure remembered for the image under `key`, if there is one.
    pub fn failure(&self, key: &str) -> Option<ThumbnailError> {
        self.failures().get(key)
    }

    /// How many images this thumbnailer has decoded (or tried to), for
    /// statistics and tests: a remembered failure does not count again.
    pub fn decodes(&self) -> u64 {
        self.decodes.load(Ordering::Relaxed)
    }

    /// The JPEG thumbnail of the image that `read` yields, `key` naming that
    /// image (its SHA-256, or a name that always means the same bytes).
    /// A failure remembered for `key` is answered at once, without reading;
    /// otherwise `read` runs (once a decoder is free: reads are bounded like
    /// decodes), then the decode. A read error is the caller's and is not
    /// remembered; a [`ThumbnailError`] is.
    pub async fn make<F, E>(&self, key: &str, read: F) -> Result<Bytes, E>
    where
        F: Future<Output = Result<Bytes, E>>,
        E: From<ThumbnailError>,
    {
        if let Some(failure) = self.failure(key) {
            return Err(failure.into());
        }
        let _permit = self.decoders.acquire().await.expect("never closed");
        // Another call may have failed on it while this one waited.
        if let Some(failure) = self.failure(key) {
            return Err(failure.into());
        }
        let original = read.await?;
        self.decodes.fetch_add(1, Ordering::Relaxed);
        let side = self.side;
        let made = tokio::task::spawn_blocking(move || thumbnail_jpeg(&original, side))
            .await
            .unwrap_or_else(|_| Err(ThumbnailError::Invalid("the decoder panicked".into())));
        if let Err(failure) = &made {
            tracing::debug!(%failure, "no thumbnail");
            self.failures().insert(key, failure.clone());
        }
        made.map_err(E::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_failure_is_forgotten_first_and_the_bound_holds() {
        let mut failures = Failures::new(2);
        let failure = ThumbnailError::Invalid("x".into());
        failures.insert("a", failure.clone());
        failures.insert("b", failure.clone());
        failures.insert("a", failure.clone());
        assert_eq!(failures.order.len(), 2, "a key is kept once");
        failures.insert("c", failure.clone());
        assert_eq!(failures.get("a"), None, "a was the oldest");
        assert_eq!(failures.get("b"), Some(failure.clone()));
        assert_eq!(failures.get("c"), Some(failure));
        assert_eq!((failures.by_key.len(), failures.order.len()), (2, 2));
    }
}
