//! Thumbnails: made once on the server (decoded, scaled, encoded as JPEG on
//! a blocking thread, a few at a time), then kept in memory under a bound in
//! bytes, the least recently used dropped first. Nothing is written to the
//! user's storage.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Semaphore;

/// Thumbnails made at once (each decodes a whole image).
const MAKERS: usize = 2;

/// A thumbnail cache bounded by the bytes it holds.
#[derive(Debug)]
pub struct Thumbnails {
    side: u32,
    makers: Semaphore,
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
            side: side.max(16),
            makers: Semaphore::new(MAKERS),
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

    /// The JPEG thumbnail of `image`, cached under `key`; made from `read()`
    /// when not cached. `Ok(None)` when the image cannot be decoded (a format
    /// this build does not read): show the image itself instead.
    pub async fn get_or_make<F, E>(&self, key: &str, read: F) -> Result<Option<Bytes>, E>
    where
        F: std::future::Future<Output = Result<Option<Bytes>, E>>,
    {
        if let Some(hit) = self.cached(key) {
            return Ok(Some(hit));
        }
        let _permit = self.makers.acquire().await.expect("never closed");
        // Another request may have made it while this one waited.
        if let Some(hit) = self.cached(key) {
            return Ok(Some(hit));
        }
        let Some(original) = read.await? else {
            return Ok(None);
        };
        let side = self.side;
        let made = tokio::task::spawn_blocking(move || make(&original, side))
            .await
            .ok()
            .flatten();
        if let Some(thumb) = &made {
            self.lru().insert(key.to_string(), thumb.clone());
        }
        Ok(made)
    }
}

/// Decodes, scales to fit `side` x `side`, encodes as JPEG.
fn make(original: &[u8], side: u32) -> Option<Bytes> {
    let image = image::load_from_memory(original).ok()?;
    let small = image.thumbnail(side, side).into_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&small)
        .ok()?;
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
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
        let reads = std::sync::atomic::AtomicUsize::new(0);
        for _ in 0..2 {
            let read = async {
                reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, ()>(Some(Bytes::from(jpeg.clone())))
            };
            let thumb = cache.get_or_make("k", read).await.unwrap().unwrap();
            let decoded = image::load_from_memory(&thumb).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (64, 32));
        }
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);
        let not_an_image = async { Ok::<_, ()>(Some(Bytes::from_static(b"not an image"))) };
        assert!(
            cache
                .get_or_make("x", not_an_image)
                .await
                .unwrap()
                .is_none()
        );
    }
}
