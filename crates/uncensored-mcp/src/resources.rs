//! Stored images as MCP resources: `uncensored://images/{id}` names the image
//! of delivery `id` in the journal; only images the journal records as stored
//! are readable, and none above the size cap.

use base64::Engine as _;
use uncensored::{FailureReason, ImageFormat};
use uncensored_deliver::journal::Stage;
use uncensored_deliver::storage::ObjectName;

use crate::failure::ToolFailure;
use crate::tools::Tools;

/// The URI scheme and prefix of stored images.
pub const PREFIX: &str = "uncensored://images/";

/// The resource URI of delivery `id`'s image.
pub fn uri(id: &str) -> String {
    format!("{PREFIX}{id}")
}

/// A stored image, read back.
#[derive(Debug)]
pub struct Image {
    /// Its MIME type.
    pub mime: &'static str,
    /// The bytes.
    pub bytes: bytes::Bytes,
}

/// The MIME type of an object name, from its extension.
pub fn mime_of(name: &str) -> &'static str {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".png") {
        ImageFormat::Png.mime()
    } else if lower.ends_with(".webp") {
        ImageFormat::Webp.mime()
    } else {
        ImageFormat::Jpeg.mime()
    }
}

/// Reads the image behind `uri`, refusing one above `max_bytes`.
pub async fn read(tools: &Tools, uri: &str, max_bytes: u64) -> Result<Image, ToolFailure> {
    let not_found = || {
        ToolFailure::new(
            FailureReason::NotFound,
            format!("no stored image at {uri}; list them with list_images"),
        )
    };
    let id = uri.strip_prefix(PREFIX).ok_or_else(not_found)?;
    let entry = tools
        .deliverer
        .journal()
        .get(id)
        .await
        .map_err(ToolFailure::from)?
        .ok_or_else(not_found)?;
    let Stage::Stored(image) = &entry.stage else {
        return Err(not_found());
    };
    let object = ObjectName::parse(&image.name)?;
    let bytes = tools
        .deliverer
        .storage()
        .read(&object, max_bytes)
        .await?
        .ok_or_else(not_found)?;
    Ok(Image {
        mime: mime_of(&image.name),
        bytes,
    })
}

/// A small JPEG of the image behind `uri` (at most
/// [`McpOptions::thumbnail_side`](crate::McpOptions) pixels a side),
/// base64-encoded: made by the server's one
/// [`Thumbnailer`](uncensored_deliver::thumbnail::Thumbnailer), under its
/// decoding limits, and not tried again for an image that failed.
pub async fn thumbnail(tools: &Tools, uri: &str) -> Result<String, ToolFailure> {
    let read = async {
        read(tools, uri, tools.options.max_resource_bytes)
            .await
            .map(|image| image.bytes)
    };
    let jpeg = tools.thumbnailer.make(uri, read).await?;
    Ok(base64::engine::general_purpose::STANDARD.encode(jpeg))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use uncensored::{Client, DownloadedImage, GenerateRequest, ImageFormat};
    use uncensored_deliver::Deliverer;
    use uncensored_deliver::journal::{Entries as _, SqliteJournal, Stage};
    use uncensored_deliver::storage::{ImageMeta, InMemory, ObjectName, Storage, StorageUrl};

    use super::*;
    use crate::McpOptions;

    /// A server whose journal has delivery `id` stored as `bytes`.
    async fn tools_with(id: &str, bytes: Vec<u8>, format: ImageFormat) -> Tools {
        let storage: Arc<dyn Storage> =
            Arc::new(StorageUrl::parse("memory://").unwrap().open().unwrap());
        let journal = Arc::new(SqliteJournal::in_memory().unwrap());
        let name = ObjectName::parse(&format!("{id}.{}", format.extension())).unwrap();
        let meta = ImageMeta {
            job_id: format!("job-{id}"),
            prompt: "a prompt".into(),
            model: None,
            width: None,
            height: None,
            generation_time: None,
            sha256: None,
            created_at: chrono::Utc::now(),
        };
        let image = DownloadedImage {
            bytes: bytes.into(),
            format,
            sha256: String::new(),
        };
        let stored = storage
            .put(&name, &mut InMemory::from(image), &meta)
            .await
            .unwrap();
        let mut entry = Deliverer::new_entry(id, &GenerateRequest::new("a prompt"));
        entry.stage = Stage::Stored(uncensored_deliver::StoredImage::new(meta, &stored));
        entry.done = true;
        journal.put(&entry).await.unwrap();
        let client = Client::builder()
            .base_url("http://127.0.0.1:9")
            .api_key("unused")
            .build()
            .unwrap();
        Tools::new(
            Deliverer::new(client, storage, journal),
            McpOptions::default(),
        )
    }

    #[tokio::test]
    async fn a_thumbnail_fits_its_side_and_an_oversized_image_is_refused_once() {
        let jpeg = uncensored_emulator::render_jpeg("a lighthouse", 1, 512, 256);
        let tools = tools_with("fine", jpeg, ImageFormat::Jpeg).await;
        let data = thumbnail(&tools, &uri("fine")).await.unwrap();
        let jpeg = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        assert_eq!(&jpeg[..2], b"\xff\xd8");

        let bomb = uncensored_test_servers::images::blank_png(11_000, 11_000);
        let tools = tools_with("bomb", bomb, ImageFormat::Png).await;
        for _ in 0..2 {
            let refused = thumbnail(&tools, &uri("bomb")).await.unwrap_err();
            assert!(
                refused.message.contains("over the decoding limits"),
                "{refused:?}"
            );
        }
        assert_eq!(tools.thumbnailer.decodes(), 1, "decoded once");
        let missing = thumbnail(&tools, &uri("nothing")).await.unwrap_err();
        assert_eq!(missing.reason, FailureReason::NotFound.into());
    }
}
