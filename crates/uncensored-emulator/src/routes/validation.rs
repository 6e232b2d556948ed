//! What `POST /v1/images/generations` accepts, and what it costs.
//!
//! The body is checked against openapi.yaml's `GenerateImageRequest`, then
//! against the emulator's model catalogue and its price tables. Every refusal
//! is `400 invalid_request_error` with `param` naming the field.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, header};
use serde_json::{Map, Value};

use crate::config::ModelConfig;
use crate::error::ApiError;
use crate::state::Shared;

/// A request that passed validation, priced.
pub struct Valid<'a> {
    /// The prompt.
    pub prompt: String,
    /// The model it runs on.
    pub model: &'a ModelConfig,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Where to POST the result: async mode.
    pub callback_url: Option<url::Url>,
    /// Credits it costs.
    pub price: u64,
    /// `additional_settings.seed`, or 0.
    pub seed: u64,
    /// `additional_settings.emulator_image_bytes`, or 0: pad the image to this size.
    pub image_bytes: u64,
}

/// The properties of `GenerateImageRequest`; any other is refused.
const FIELDS: &[&str] = &[
    "prompt",
    "model",
    "image_width",
    "image_height",
    "callback_url",
    "resolution",
    "quality",
    "additional_settings",
];

/// `prompt`'s `maxLength`, in characters.
const PROMPT_MAX: usize = 2000;
/// Emulator-only: the largest `additional_settings.emulator_image_bytes` honoured.
const IMAGE_BYTES_MAX: u64 = 1 << 30;

/// Checks the request's content type and body, and prices it.
pub fn validate<'a>(
    state: &'a Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Valid<'a>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::invalid(
            None,
            "Content-Type must be application/json",
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(None, format!("Malformed JSON body: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::invalid(
            None,
            "The request body must be a JSON object",
        ));
    };
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            Some(unknown),
            format!("Unsupported parameter: {unknown}"),
        ));
    }

    let prompt = string(&fields, "prompt")?
        .ok_or_else(|| ApiError::invalid(Some("prompt"), "prompt is required"))?;
    let length = prompt.chars().count();
    if !(1..=PROMPT_MAX).contains(&length) {
        return Err(ApiError::invalid(
            Some("prompt"),
            format!("prompt must be 1 to {PROMPT_MAX} characters, not {length}"),
        ));
    }
    let model_name = string(&fields, "model")?.unwrap_or(&state.config.default_model);
    let model = state
        .model(model_name)
        .ok_or_else(|| ApiError::invalid(Some("model"), format!("Unknown model: {model_name}")))?;
    let width = dimension(&fields, "image_width")?;
    let height = dimension(&fields, "image_height")?;
    let callback_url = match string(&fields, "callback_url")? {
        None => None,
        Some(text) => Some(callback_url(text).ok_or_else(|| {
            ApiError::invalid(
                Some("callback_url"),
                "callback_url must be an absolute http(s) URL of at most 2048 characters",
            )
        })?),
    };
    let resolution = string(&fields, "resolution")?;
    let quality = string(&fields, "quality")?;
    let price = model.price
        * multiplier(model, "resolution", resolution, &model.resolutions)?
        * multiplier(model, "quality", quality, &model.qualities)?;
    let (seed, image_bytes) = match fields.get("additional_settings") {
        None => (0, 0),
        Some(Value::Object(settings)) => (
            settings.get("seed").and_then(Value::as_u64).unwrap_or(0),
            // Emulator-only: pad the served JPEG to at least this many bytes
            // (capped at 1 GiB), for download and storage benchmarks.
            settings
                .get("emulator_image_bytes")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .min(IMAGE_BYTES_MAX),
        ),
        Some(_) => {
            return Err(ApiError::invalid(
                Some("additional_settings"),
                "additional_settings must be an object",
            ));
        }
    };
    Ok(Valid {
        prompt: prompt.to_string(),
        model,
        width,
        height,
        callback_url,
        price,
        seed,
        image_bytes,
    })
}

/// The string field `name`, if present (`type: string`).
fn string<'f>(fields: &'f Map<String, Value>, name: &str) -> Result<Option<&'f str>, ApiError> {
    match fields.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid(
            Some(name),
            format!("{name} must be a string"),
        )),
    }
}

/// `image_width` or `image_height`: an integer from 256 to 2048, a multiple
/// of 8, 1024 when absent.
fn dimension(fields: &Map<String, Value>, name: &str) -> Result<u32, ApiError> {
    let Some(value) = fields.get(name) else {
        return Ok(1024);
    };
    let number = value.as_f64().filter(|n| n.fract() == 0.0);
    match number {
        Some(n) if (256.0..=2048.0).contains(&n) && n % 8.0 == 0.0 => Ok(n as u32),
        Some(_) => Err(ApiError::invalid(
            Some(name),
            format!("{name} must be 256 to 2048 and a multiple of 8"),
        )),
        None => Err(ApiError::invalid(
            Some(name),
            format!("{name} must be an integer"),
        )),
    }
}

/// `callback_url`: an absolute http(s) URL with a host.
fn callback_url(text: &str) -> Option<url::Url> {
    url::Url::parse(text)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
}

/// The price multiplier for `resolution` or `quality`. A variable-pricing
/// model (one with a table) takes only the values in its table; for a
/// fixed-price model the field is a hint that does not change the price.
fn multiplier(
    model: &ModelConfig,
    name: &str,
    choice: Option<&str>,
    table: &BTreeMap<String, u64>,
) -> Result<u64, ApiError> {
    match choice {
        None => Ok(1),
        Some(_) if table.is_empty() => Ok(1),
        Some(choice) => table.get(choice).copied().ok_or_else(|| {
            let allowed: Vec<&str> = table.keys().map(String::as_str).collect();
            ApiError::invalid(
                Some(name),
                format!(
                    "{name} for {} must be one of {}",
                    model.name,
                    allowed.join(", ")
                ),
            )
        }),
    }
}
