//! Reading a storage back: which images it holds and their sidecars, for
//! programs that show what was stored (the gallery); their bytes come from
//! [`Storage::read`](super::Storage::read). Writing stays in
//! [`Storage::put`](super::Storage::put); nothing here changes the store.

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt as _;

use super::{ImageMeta, ObjectName, ObjectStorage, StorageError};

/// Extensions of the image files a storage holds (see
/// [`uncensored::ImageFormat::extension`]); `jpeg` for files put there by hand.
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp"];

/// An image found in a storage: an image object with its JSON sidecar beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedImage {
    /// Its name inside the storage (without the storage's prefix).
    pub name: ObjectName,
    /// Its size in bytes.
    pub size: u64,
    /// When the store last wrote it.
    pub last_modified: DateTime<Utc>,
}

fn is_image(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(_, ext)| {
        IMAGE_EXTENSIONS
            .iter()
            .any(|known| ext.eq_ignore_ascii_case(known))
    })
}

impl ObjectStorage {
    /// Every image under this storage's prefix that has its sidecar beside
    /// it, sorted by name. One listing of the store (paged by the store);
    /// sidecars are not read: see [`ObjectStorage::image_meta`]. An image
    /// whose put is still running may be listed before its sidecar holds
    /// its SHA-256.
    pub async fn list_images(&self) -> Result<Vec<ListedImage>, StorageError> {
        let prefix = self.prefix().cloned();
        let objects: Vec<object_store::ObjectMeta> = self
            .store()
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(|e| StorageError::Unusable {
                location: self.base(),
                message: e.to_string(),
            })?;
        let strip = |key: &str| -> Option<String> {
            match &prefix {
                Some(prefix) => key
                    .strip_prefix(prefix.as_ref())
                    .and_then(|rest| rest.strip_prefix('/'))
                    .map(str::to_string),
                None => Some(key.to_string()),
            }
        };
        let names: std::collections::HashSet<String> = objects
            .iter()
            .filter_map(|object| strip(object.location.as_ref()))
            .collect();
        let mut images: Vec<ListedImage> = objects
            .into_iter()
            .filter_map(|object| {
                let name = strip(object.location.as_ref())?;
                if !is_image(&name) || !names.contains(&format!("{name}.json")) {
                    return None;
                }
                Some(ListedImage {
                    name: ObjectName::parse(&name).ok()?,
                    size: object.size,
                    last_modified: object.last_modified,
                })
            })
            .collect();
        images.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        Ok(images)
    }

    /// The sidecar of the image `name`, if there is one.
    pub async fn image_meta(&self, name: &ObjectName) -> Result<Option<ImageMeta>, StorageError> {
        self.read_meta(&self.key(&name.sidecar())).await
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use object_store::ObjectStoreExt as _;
    use uncensored::ImageFormat;

    use super::super::{InMemory, Storage as _, StorageUrl};
    use super::*;

    fn meta(job_id: &str) -> ImageMeta {
        ImageMeta {
            job_id: job_id.into(),
            prompt: "a lighthouse".into(),
            model: Some("model-dev".into()),
            width: Some(8),
            height: Some(8),
            generation_time: Some(1.5),
            sha256: None,
            created_at: Utc::now(),
        }
    }

    async fn put(storage: &ObjectStorage, name: &str, bytes: &'static [u8]) {
        let image = uncensored::DownloadedImage {
            bytes: Bytes::from_static(bytes),
            format: ImageFormat::Jpeg,
            sha256: String::new(),
        };
        let name = ObjectName::parse(name).unwrap();
        let job = name.as_str().replace(['/', '.'], "_");
        storage
            .put(&name, &mut InMemory::from(image), &meta(&job))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn images_with_sidecars_are_listed_and_read_back() {
        let storage = StorageUrl::parse("memory://").unwrap().open().unwrap();
        put(&storage, "2026-05-09/b.jpg", b"\xFF\xD8\xFFbbb").await;
        put(&storage, "2026-05-09/a.jpg", b"\xFF\xD8\xFFa").await;
        // An object without a sidecar, and a file that is not an image: not listed.
        let store = storage.store();
        store
            .put(&"loose.jpg".into(), Bytes::from_static(b"x").into())
            .await
            .unwrap();
        store
            .put(&"notes.txt".into(), Bytes::from_static(b"x").into())
            .await
            .unwrap();
        let listed = storage.list_images().await.unwrap();
        let names: Vec<&str> = listed.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["2026-05-09/a.jpg", "2026-05-09/b.jpg"]);
        assert_eq!(listed[1].size, 6);
        let meta = storage.image_meta(&listed[0].name).await.unwrap().unwrap();
        assert_eq!(meta.prompt, "a lighthouse");
        assert!(meta.sha256.is_some(), "a finished put has its SHA-256");
        let missing = ObjectName::parse("none.jpg").unwrap();
        assert!(storage.image_meta(&missing).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_prefix_is_not_part_of_the_names() {
        let url = StorageUrl::parse("memory:///gallery/run").unwrap();
        let storage = url.open().unwrap();
        put(&storage, "x/one.jpg", b"\xFF\xD8\xFF1").await;
        let listed = storage.list_images().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name.as_str(), "x/one.jpg");
    }
}
