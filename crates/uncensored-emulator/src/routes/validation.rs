//! What `POST /v1/images/generations` accepts, and what it costs.
//!
//! The body is checked against every keyword of openapi.yaml's
//! `GenerateImageRequest` (`type`, `required`, `additionalProperties: false`,
//! `minLength`, `maxLength`, `minimum`, `maximum`, `multipleOf`, `pattern`,
//! `format: uri`), then against the emulator's model catalogue and its price
//! tables. Every refusal is `400 invalid_request_error` with `param` naming
//! the field.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, header};
use serde_json::{Map, Value};

use uncensored_api::limits::generate_image_request as spec;

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
    /// `additional_settings.emulator_generation_seconds`: this job's modelled
    /// generation time instead of a random one from the configured range.
    pub generation_seconds: Option<f64>,
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

/// Emulator-only: the largest `additional_settings.emulator_image_bytes` honoured.
const IMAGE_BYTES_MAX: u64 = 1 << 30;

/// Emulator-only: the longest `additional_settings.emulator_generation_seconds` honoured (a day).
const GENERATION_SECONDS_MAX: f64 = 86_400.0;

/// Checks the request's content type and body, and prices it.
pub fn validate<'a>(
    state: &'a Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Valid<'a>, ApiError> {
    let fields = json_object(headers, body)?;
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            Some(unknown),
            format!("Unsupported parameter: {unknown}"),
        ));
    }
    validate_fields(state, &fields)
}

/// A JSON request body: `Content-Type: application/json` and an object.
pub fn json_object(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
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
    match value {
        Value::Object(fields) => Ok(fields),
        _ => Err(ApiError::invalid(
            None,
            "The request body must be a JSON object",
        )),
    }
}

/// The fields of a `GenerateImageRequest`, checked and priced.
fn validate_fields<'a>(
    state: &'a Shared,
    fields: &Map<String, Value>,
) -> Result<Valid<'a>, ApiError> {
    let prompt = string(fields, "prompt")?
        .ok_or_else(|| ApiError::invalid(Some("prompt"), "prompt is required"))?;
    let length = prompt.chars().count();
    let (min, max) = (spec::PROMPT_MIN_LENGTH, spec::PROMPT_MAX_LENGTH);
    if !(min..=max).contains(&length) {
        return Err(ApiError::invalid(
            Some("prompt"),
            format!("prompt must be {min} to {max} characters, not {length}"),
        ));
    }
    let model_name =
        min_length(fields, "model", spec::MODEL_MIN_LENGTH)?.unwrap_or(&state.config.default_model);
    let model = state
        .model(model_name)
        .ok_or_else(|| ApiError::invalid(Some("model"), format!("Unknown model: {model_name}")))?;
    let width = dimension(
        fields,
        "image_width",
        Side {
            minimum: spec::IMAGE_WIDTH_MINIMUM,
            maximum: spec::IMAGE_WIDTH_MAXIMUM,
            multiple_of: spec::IMAGE_WIDTH_MULTIPLE_OF,
            default: spec::IMAGE_WIDTH_DEFAULT,
        },
    )?;
    let height = dimension(
        fields,
        "image_height",
        Side {
            minimum: spec::IMAGE_HEIGHT_MINIMUM,
            maximum: spec::IMAGE_HEIGHT_MAXIMUM,
            multiple_of: spec::IMAGE_HEIGHT_MULTIPLE_OF,
            default: spec::IMAGE_HEIGHT_DEFAULT,
        },
    )?;
    let callback_url = match string(fields, "callback_url")? {
        None => None,
        Some(text) => Some(callback_url(text).ok_or_else(|| {
            ApiError::invalid(
                Some("callback_url"),
                format!(
                    "callback_url must be an absolute http(s) URL of at most {} characters",
                    spec::CALLBACK_URL_MAX_LENGTH
                ),
            )
        })?),
    };
    let resolution = min_length(fields, "resolution", spec::RESOLUTION_MIN_LENGTH)?;
    let quality = min_length(fields, "quality", spec::QUALITY_MIN_LENGTH)?;
    let price = model.price
        * multiplier(model, "resolution", resolution, &model.resolutions)?
        * multiplier(model, "quality", quality, &model.qualities)?;
    let (seed, image_bytes, generation_seconds) = match fields.get("additional_settings") {
        None => (0, 0, None),
        Some(Value::Object(settings)) => (
            settings.get("seed").and_then(Value::as_u64).unwrap_or(0),
            // Emulator-only: pad the served JPEG to at least this many bytes
            // (capped at 1 GiB), for download and storage benchmarks.
            settings
                .get("emulator_image_bytes")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .min(IMAGE_BYTES_MAX),
            // Emulator-only: a slow (or instant) job on demand, for tests of
            // waiting, progress and cancellation; scaled by `time_scale`.
            settings
                .get("emulator_generation_seconds")
                .and_then(Value::as_f64)
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| s.min(GENERATION_SECONDS_MAX)),
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
        generation_seconds,
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

/// The string field `name`, if present, of at least `min` characters (its `minLength`).
fn min_length<'f>(
    fields: &'f Map<String, Value>,
    name: &str,
    min: usize,
) -> Result<Option<&'f str>, ApiError> {
    match string(fields, name)? {
        Some("") if min > 0 => Err(ApiError::invalid(
            Some(name),
            format!("{name} must not be empty"),
        )),
        Some(text) if text.chars().count() < min => Err(ApiError::invalid(
            Some(name),
            format!("{name} must be at least {min} characters"),
        )),
        other => Ok(other),
    }
}

/// The spec's limits of one image side.
struct Side {
    minimum: u32,
    maximum: u32,
    multiple_of: u32,
    default: u32,
}

/// `image_width` or `image_height`: an integer within `side`'s `minimum`,
/// `maximum` and `multipleOf`, its `default` when absent. An integer is a
/// JSON number without a fraction or exponent (`type: integer` in the JSON
/// Schema of OpenAPI 3.0): not `1024.0`.
fn dimension(fields: &Map<String, Value>, name: &str, side: Side) -> Result<u32, ApiError> {
    let Some(value) = fields.get(name) else {
        return Ok(side.default);
    };
    if !(value.is_i64() || value.is_u64()) {
        return Err(ApiError::invalid(
            Some(name),
            format!("{name} must be an integer"),
        ));
    }
    match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
        Some(n)
            if (side.minimum..=side.maximum).contains(&n) && n.is_multiple_of(side.multiple_of) =>
        {
            Ok(n)
        }
        _ => Err(ApiError::invalid(
            Some(name),
            format!(
                "{name} must be {} to {} and a multiple of {}",
                side.minimum, side.maximum, side.multiple_of
            ),
        )),
    }
}

/// The spec's `callback_url` pattern, compiled once (`None` if it does not
/// compile: then nothing matches, as the generated client refuses everything).
static CALLBACK_URL_PATTERN: std::sync::LazyLock<Option<regress::Regex>> =
    std::sync::LazyLock::new(|| regress::Regex::new(spec::CALLBACK_URL_PATTERN).ok());

/// `callback_url` as openapi.yaml has it: at most its `maxLength` characters,
/// matching its `pattern` (today a lower-case `http`/`https` scheme and a
/// non-empty authority), and a URI (RFC 3986), which also has a host to send
/// to. `url::Url::parse` alone is more forgiving (it takes `HTTP:`,
/// `http:host`, spaces, backslashes).
fn callback_url(text: &str) -> Option<url::Url> {
    if text.chars().count() > spec::CALLBACK_URL_MAX_LENGTH {
        return None;
    }
    let pattern = CALLBACK_URL_PATTERN.as_ref()?;
    pattern.find(text)?;
    let rest = text.split_once("://")?.1;
    let (authority, after) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if !uri_characters(text) || !authority_syntax(authority) || after.contains(['[', ']']) {
        return None;
    }
    url::Url::parse(text)
        .ok()
        .filter(|url| url.host().is_some())
}

/// Whether `text` uses only the characters RFC 3986 allows in a URI: ASCII
/// letters, digits, `-._~`, the delimiters, and `%` with two hex digits; and
/// one `#` at most.
fn uri_characters(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut fragment = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 2;
            }
            b'#' if fragment => return false,
            b'#' => fragment = true,
            b if b.is_ascii_alphanumeric() || b"-._~:/?[]@!$&'()*+,;=".contains(&b) => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

/// Whether a non-empty `authority` (of URI characters) is RFC 3986's
/// `[ userinfo "@" ] host [ ":" port ]`: no `@` or brackets in the userinfo,
/// brackets only around an IP literal, and a port of digits.
fn authority_syntax(authority: &str) -> bool {
    let host_port = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) if !userinfo.contains(['@', '[', ']']) => host_port,
        Some(_) => return false,
        None => authority,
    };
    let port = if let Some(literal) = host_port.strip_prefix('[') {
        let Some((address, port)) = literal.split_once(']') else {
            return false;
        };
        if !address
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match port {
            "" => "",
            _ => match port.strip_prefix(':') {
                Some(port) => port,
                None => return false,
            },
        }
    } else {
        let (host, port) = host_port.split_once(':').unwrap_or((host_port, ""));
        if host.contains(['[', ']']) {
            return false;
        }
        port
    };
    !authority.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls_follow_the_spec_keywords() {
        for (text, ok) in [
            ("http://127.0.0.1:9/cb", true),
            ("https://example.com/hook?x=1&y=%2F#top", true),
            ("https://user:pw@[::1]:8443/a/b", true),
            ("https://example.com", true),
            ("HTTP://example.com/cb", false),
            ("http:example.com/cb", false),
            ("http:\\\\example.com\\cb", false),
            ("http:///cb", false),
            ("http://", false),
            ("http://example.com/a b", false),
            (" http://example.com/cb", false),
            ("http://example.com/%zz", false),
            ("http://example.com/[x]", false),
            ("http://example.com/#a#b", false),
            ("http://exämple.com/", false),
            ("ftp://example.com/", false),
            ("http://:80/", false),
            ("http://[;[@@'", false),
            ("http://a@b@example.com/", false),
            ("http://u[1]@example.com/", false),
            ("http://example.com:8x/", false),
            ("http://[::1]x/", false),
            ("http://ex[a]mple.com/", false),
            ("http://user@example.com:80/", true),
            ("http://[::1]/", true),
        ] {
            assert_eq!(callback_url(text).is_some(), ok, "{text}");
        }
        let max = spec::CALLBACK_URL_MAX_LENGTH;
        let long = format!("http://example.com/{}", "a".repeat(max));
        assert!(callback_url(&long).is_none());
        assert!(callback_url(&long[..max]).is_some());
    }
}
