//! The tools' arguments, read into typed values and checked by the SDK
//! (`uncensored::GenerateRequest::validate`) before anything is sent.

use serde::Deserialize;
use serde_json::{Map, Value};
use uncensored::{FailureReason, GenerateRequest};

use crate::failure::ToolFailure;

/// The request fields every generating tool takes, named as the API names them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestArgs {
    prompt: String,
    model: Option<String>,
    image_width: Option<i64>,
    image_height: Option<i64>,
    resolution: Option<String>,
    quality: Option<String>,
    #[serde(default)]
    additional_settings: Map<String, Value>,
}

/// `generate_image`'s arguments.
#[derive(Debug, Deserialize)]
pub struct GenerateArgs {
    #[serde(flatten)]
    request: Map<String, Value>,
    /// Whether to return a thumbnail too.
    #[serde(default)]
    pub thumbnail: bool,
    /// How long to wait, in seconds.
    pub timeout_seconds: Option<u64>,
}

/// `get_job`'s arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetJobArgs {
    /// A delivery id or an API job id.
    pub id: String,
}

/// `list_images`' arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListArgs {
    /// How many.
    pub limit: Option<usize>,
}

/// `get_balance`'s arguments: none.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceArgs {}

/// Reads a tool's arguments; a wrong shape is the caller's to fix.
pub fn parse<T: serde::de::DeserializeOwned>(
    arguments: Map<String, Value>,
) -> Result<T, ToolFailure> {
    serde_json::from_value(Value::Object(arguments)).map_err(|e| {
        ToolFailure::new(
            FailureReason::InvalidRequest,
            format!("invalid arguments: {e}"),
        )
    })
}

impl GenerateArgs {
    /// The request these arguments describe, validated.
    pub fn request(&self) -> Result<GenerateRequest, ToolFailure> {
        parse::<RequestArgs>(self.request.clone())?.request()
    }
}

impl RequestArgs {
    /// The request, validated by the SDK: the first broken constraint is
    /// refused with its field's name.
    pub fn request(self) -> Result<GenerateRequest, ToolFailure> {
        let mut request = GenerateRequest::new(self.prompt);
        if let Some(model) = self.model {
            request = request.model(model);
        }
        if let Some(width) = self.image_width {
            request = request.width(side(uncensored::Side::Width, width)?);
        }
        if let Some(height) = self.image_height {
            request = request.height(side(uncensored::Side::Height, height)?);
        }
        if let Some(resolution) = self.resolution {
            request = request.resolution(resolution);
        }
        if let Some(quality) = self.quality {
            request = request.quality(quality);
        }
        for (key, value) in self.additional_settings {
            request = request.setting(key, value);
        }
        request.validate()?;
        Ok(request)
    }
}

/// A side given as any integer: one that does not fit is refused by the
/// SDK's own rule, with the field's name.
fn side(side: uncensored::Side, value: i64) -> Result<u32, ToolFailure> {
    let pixels = u32::try_from(value).unwrap_or(0);
    uncensored::validate_side(side, pixels)?;
    Ok(pixels)
}
