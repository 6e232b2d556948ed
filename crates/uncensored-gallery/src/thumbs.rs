//! Thumbnails: made once on the server by `uncensored_deliver`'s
//! [`Thumbnailer`] (decoded under explicit limits on a blocking thread, a few
//! at a time, failures remembered), then kept in memory under a bound in
//! bytes, the least recently used dropped first. Nothing is written to the
//! user's storage.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;

use bytes::Bytes;
use uncensored_deliver::storage::StorageError;
use uncensored_deliver::thumbnail::{ThumbnailError, Thumbnailer};

/// Why a listed image has no thumbnail to serve.
#[derive(Debug, thiserror::Error)]
pub enum NoThumbnail {
    /// The image is gone from the storage.
    #[error("no such image")]
    Missing,
    /// The storage could not be read.
    #[error(transparent)]
    Storage(StorageError),
    /// The image could not be made into a thumbnail (over the decoding
    /// limits, not an image): remembered, not tried again.
    #[error("no thumbnail: {0}")]
    Thumbnail(#[from] ThumbnailError),
}

/// A thumbnail cache bounded by the bytes it holds.
#[derive(Debug)]
pub struct Thumbnails {
    thumbnailer: Thumbnailer,
    lru: Mutex<Lru>,
}

#[derive(Debug)]
struct Lru {
    capacity: usize,
    bytes: usize,
    tick: u64,
    entries: HashMap<String, (Bytes, u64)>,
    order: BTreeMap<u64, String>,
}

impl Lru {
    fn get(&mut self, key: &str) -> Option<Bytes> {
        self.tick += 1;
        let tick = self.tick;
        let (bytes, used) = self.entries.get_mut(key)?;
        self.order.remove(used);
        *used = tick;
        self.order.insert(tick, key.to_string());
        Some(bytes.clone())
    }

    fn insert(&mut self, key: String, value: Bytes) {
        if value.len() > self.capacity {
            return;
        }
        if let Some((old, used)) = self.entries.remove(&key) {
            self.order.remove(&used);
            self.bytes -= old.len();
        }
        while self.bytes + value.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((old, _)) = self.entries.remove(&oldest) {
                self.bytes -= old.len();
            }
        }
        self.tick += 1;
        self.bytes += value.len();
        self.order.insert(self.tick, key.clone());
        self.entries.insert(key, (value, self.tick));
    }
}

impl Thumbnails {
    /// Thumbnails that fit in `side` x `side` pixels, at most `capacity`
    /// bytes of them kept.
    pub fn new(side: u32, capacity: usize) -> Self {
        Self {
            thumbnailer: Thumbnailer::new(side),
            lru: Mutex::new(Lru {
                capacity,
                bytes: 0,
                tick: 0,
                entries: HashMap::new(),
                order: BTreeMap::new(),
            }),
        }
    }

    fn lru(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The thumbnail cached under `key` (the image's SHA-256), if it is.
    pub fn cached(&self, key: &str) -> Option<Bytes> {
        self.lru().get(key)
    }

    /// The JPEG thumbnail of the image under `key` (its SHA-256), made from
    /// `read()` when not cached. An image that failed before is refused at
    /// once, without reading it again.
    pub async fn get_or_make<F>(&self, key: &str, read: F) -> Result<Bytes, NoThumbnail>
    where
        F: Future<Output = Result<Option<Bytes>, StorageError>>,
    {
        if let Some(hit) = self.cached(key) {
            return Ok(hit);
        }
        let read = async {
            match read.await {
                Ok(Some(original)) => Ok(original),
                Ok(None) => Err(NoThumbnail::Missing),
                Err(error) => Err(NoThumbnail::Storage(error)),
            }
        };
        let made = self.thumbnailer.make(key, read).await?;
        self.lru().insert(key.to_string(), made.clone());
        Ok(made)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn the_least_recently_used_goes_first_and_the_bound_holds() {
        let cache = Thumbnails::new(64, 10);
        let mut lru = cache.lru();
        lru.insert("a".into(), Bytes::from_static(b"aaaa"));
        lru.insert("b".into(), Bytes::from_static(b"bbbb"));
        assert!(lru.get("a").is_some());
        lru.insert("c".into(), Bytes::from_static(b"cccc"));
        assert!(lru.get("b").is_none(), "b was the least recently used");
        assert!(lru.get("a").is_some() && lru.get("c").is_some());
        assert!(lru.bytes <= 10);
        lru.insert("huge".into(), Bytes::from(vec![0; 11]));
        assert!(lru.get("huge").is_none(), "larger than the whole cache");
    }

    #[tokio::test]
    async fn a_thumbnail_is_made_once_and_fits_its_side() {
        let jpeg = uncensored_emulator::render_jpeg("a lighthouse", 1, 512, 256);
        let cache = Thumbnails::new(64, 1 << 20);
        let reads = AtomicUsize::new(0);
        for _ in 0..2 {
            let read = async {
                reads.fetch_add(1, Ordering::SeqCst);
                Ok(Some(Bytes::from(jpeg.clone())))
            };
            let thumb = cache.get_or_make("k", read).await.unwrap();
            let decoded = image::load_from_memory(&thumb).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (64, 32));
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(cache.thumbnailer.decodes(), 1);
        let missing = cache.get_or_make("gone", async { Ok(None) }).await;
        assert!(matches!(missing, Err(NoThumbnail::Missing)), "{missing:?}");
    }

    #[tokio::test]
    async fn an_image_over_the_limits_is_refused_once_and_never_read_again() {
        let bomb = Bytes::from(uncensored_test_servers::images::blank_png(11_000, 11_000));
        let cache = Thumbnails::new(64, 1 << 20);
        let reads = AtomicUsize::new(0);
        for _ in 0..2 {
            let read = async {
                reads.fetch_add(1, Ordering::SeqCst);
                Ok(Some(bomb.clone()))
            };
            let refused = cache.get_or_make("sha-of-the-bomb", read).await;
            assert!(
                matches!(
                    refused,
                    Err(NoThumbnail::Thumbnail(ThumbnailError::OverLimits(_)))
                ),
                "{refused:?}"
            );
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1, "read once");
        assert_eq!(cache.thumbnailer.decodes(), 1, "decoded once");
        let text = cache
            .get_or_make("notes", async {
                Ok(Some(Bytes::from_static(b"not an image")))
            })
            .await;
        assert!(
            matches!(
                text,
                Err(NoThumbnail::Thumbnail(ThumbnailError::Unsupported(_)))
            ),
            "{text:?}"
        );
    }
}
