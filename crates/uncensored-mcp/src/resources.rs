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
    /// Its object name.
    pub name: String,
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
        .map_err(|e| ToolFailure::new(FailureReason::Storage, e.to_string()))?
        .ok_or_else(not_found)?;
    let Stage::Stored { name, .. } = &entry.stage else {
        return Err(not_found());
    };
    let object = ObjectName::parse(name)?;
    let bytes = tools
        .deliverer
        .storage()
        .read(&object, max_bytes)
        .await?
        .ok_or_else(not_found)?;
    Ok(Image {
        name: name.clone(),
        mime: mime_of(name),
        bytes,
    })
}

/// A small JPEG of `image` (at most `side` pixels a side), base64-encoded.
pub fn thumbnail(image: &Image, side: u32) -> Result<String, ToolFailure> {
    let decoded = image::load_from_memory(&image.bytes).map_err(|e| {
        ToolFailure::new(
            FailureReason::Other,
            format!("no thumbnail of {}: {e}", image.name),
        )
    })?;
    let small = decoded.thumbnail(side, side).into_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 75)
        .encode_image(&small)
        .map_err(|e| ToolFailure::new(FailureReason::Other, format!("no thumbnail: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(jpeg))
}
