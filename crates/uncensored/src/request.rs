//! A generation request, checked against every documented constraint before
//! anything is sent.

use serde_json::{Map, Value};
use uncensored_api::types;

use crate::error::ValidationError;

/// Smallest and largest image side, in pixels.
pub const SIDE_RANGE: std::ops::RangeInclusive<u32> = 256..=2048;
/// Checks one image side (`image_width` or `image_height`): 256 to 2048
/// pixels, a multiple of 8.
///
/// ```
/// assert!(uncensored::validate_side("image_width", 1024).is_ok());
/// assert!(uncensored::validate_side("image_width", 1001).is_err());
/// ```
pub fn validate_side(field: &'static str, side: u32) -> Result<(), ValidationError> {
    if SIDE_RANGE.contains(&side) && side.is_multiple_of(8) {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!(
                "is {side}; it must be {} to {} and a multiple of 8",
                SIDE_RANGE.start(),
                SIDE_RANGE.end()
            ),
        ))
    }
}

/// The API's default image side, in pixels.
pub const DEFAULT_SIDE: u32 = 1024;
/// Longest prompt, in characters.
pub const MAX_PROMPT_CHARS: usize = 2000;

/// What to generate. Setters never fail; [`GenerateRequest::validate`] (called
/// by the client before any network I/O) reports the first broken constraint.
///
/// ```
/// use uncensored::GenerateRequest;
///
/// let request = GenerateRequest::new("a lighthouse at dusk, oil painting")
///     .model("model-pro")
///     .size(1024, 768);
/// assert!(request.validate().is_ok());
///
/// let error = GenerateRequest::new("x").size(1001, 768).validate().unwrap_err();
/// assert_eq!(error.field, "image_width");
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenerateRequest {
    prompt: String,
    model: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    callback_url: Option<String>,
    resolution: Option<String>,
    quality: Option<String>,
    settings: Map<String, Value>,
    idempotency_key: Option<String>,
}

impl GenerateRequest {
    /// A request for `prompt` with the API's defaults (model `model-dev`, 1024×1024).
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            model: None,
            width: None,
            height: None,
            callback_url: None,
            resolution: None,
            quality: None,
            settings: Map::new(),
            idempotency_key: None,
        }
    }

    /// The model (default `model-dev`).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Width and height in pixels: 256 to 2,048, multiples of 8 (default 1024×1024).
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.width = Some(width);
        self.height = Some(height);
        self
    }

    /// Width in pixels.
    pub fn width(mut self, width: u32) -> Self {
        self.width = Some(width);
        self
    }

    /// Height in pixels.
    pub fn height(mut self, height: u32) -> Self {
        self.height = Some(height);
        self
    }

    /// Async mode: the API answers at once and POSTs the result here when the
    /// job ends. Must be an absolute `https` URL (`http` is accepted only for
    /// loopback hosts, for local development).
    pub fn callback_url(mut self, url: impl Into<String>) -> Self {
        self.callback_url = Some(url.into());
        self
    }

    /// Resolution hint for variable-pricing models (`1k`, `2k`, `4k`, `8k`).
    pub fn resolution(mut self, resolution: impl Into<String>) -> Self {
        self.resolution = Some(resolution.into());
        self
    }

    /// Quality hint for variable-pricing models (`medium`, `high`).
    pub fn quality(mut self, quality: impl Into<String>) -> Self {
        self.quality = Some(quality.into());
        self
    }

    /// One model-specific setting in `additional_settings`.
    pub fn setting(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.settings.insert(key.into(), value.into());
        self
    }

    /// Your own Idempotency-Key (1 to 255 characters from letters, digits and
    /// `_ - . / :`). Without one, the client makes a random key per request.
    /// Reuse a key only to repeat the same request: the API refuses it with a
    /// different body.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// The prompt.
    pub fn prompt(&self) -> &str {
        &self.prompt
    }

    /// The model, if set.
    pub fn model_name(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The image size this request asks for: the given one, or the API's
    /// default of 1024×1024.
    pub fn dimensions(&self) -> (u32, u32) {
        (
            self.width.unwrap_or(DEFAULT_SIDE),
            self.height.unwrap_or(DEFAULT_SIDE),
        )
    }

    /// The callback URL, when async.
    pub fn callback(&self) -> Option<&str> {
        self.callback_url.as_deref()
    }

    /// The Idempotency-Key you set, if any.
    pub fn own_idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// Checks every documented constraint, naming the first field that breaks one.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let chars = self.prompt.chars().count();
        if chars == 0 {
            return Err(ValidationError::new("prompt", "must not be empty"));
        }
        if chars > MAX_PROMPT_CHARS {
            return Err(ValidationError::new(
                "prompt",
                format!("is {chars} characters; at most {MAX_PROMPT_CHARS} are allowed"),
            ));
        }
        for (field, value) in [("image_width", self.width), ("image_height", self.height)] {
            if let Some(side) = value {
                validate_side(field, side)?;
            }
        }
        for (field, value) in [
            ("model", &self.model),
            ("resolution", &self.resolution),
            ("quality", &self.quality),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(ValidationError::new(field, "must not be empty"));
            }
        }
        if let Some(url) = &self.callback_url {
            validate_callback_url(url)?;
        }
        if let Some(key) = &self.idempotency_key {
            validate_idempotency_key(key)?;
        }
        Ok(())
    }

    /// The wire body. Call after [`GenerateRequest::validate`].
    pub(crate) fn to_api(&self) -> Result<types::GenerateImageRequest, ValidationError> {
        let mut builder = types::GenerateImageRequest::builder()
            .prompt(self.prompt.clone())
            .additional_settings(self.settings.clone())
            .callback_url(
                self.callback_url
                    .clone()
                    .map(|u| u.try_into())
                    .transpose()
                    .map_err(|e| ValidationError::new("callback_url", format!("{e}")))?,
            )
            .resolution(
                self.resolution
                    .clone()
                    .map(|r| r.try_into())
                    .transpose()
                    .map_err(|e| ValidationError::new("resolution", format!("{e}")))?,
            )
            .quality(
                self.quality
                    .clone()
                    .map(|q| q.try_into())
                    .transpose()
                    .map_err(|e| ValidationError::new("quality", format!("{e}")))?,
            );
        if let Some(model) = &self.model {
            builder = builder.model(model.clone());
        }
        if let Some(width) = self.width {
            builder = builder.image_width(i64::from(width));
        }
        if let Some(height) = self.height {
            builder = builder.image_height(i64::from(height));
        }
        types::GenerateImageRequest::try_from(builder)
            .map_err(|e| ValidationError::new("body", e.to_string()))
    }
}

fn validate_callback_url(text: &str) -> Result<(), ValidationError> {
    let problem = |p: &str| Err(ValidationError::new("callback_url", p.to_string()));
    if text.len() > 2048 {
        return problem("is longer than 2048 characters");
    }
    let Ok(url) = url::Url::parse(text) else {
        return problem("is not an absolute URL");
    };
    let loopback = match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return problem("has no host"),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => problem(
            "must use https (the API asks for HTTPS callbacks; http is allowed for loopback only)",
        ),
        _ => problem("must be an https URL"),
    }
}

/// Checks the documented Idempotency-Key rules.
pub fn validate_idempotency_key(key: &str) -> Result<(), ValidationError> {
    if !(1..=255).contains(&key.len()) {
        return Err(ValidationError::new(
            "Idempotency-Key",
            format!("is {} characters; 1 to 255 are allowed", key.len()),
        ));
    }
    if let Some(bad) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-./:".contains(*c)))
    {
        return Err(ValidationError::new(
            "Idempotency-Key",
            format!("contains {bad:?}; only letters, digits and _ - . / : are allowed"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(request: GenerateRequest) -> &'static str {
        request.validate().unwrap_err().field
    }

    #[test]
    fn every_constraint_names_its_field() {
        assert_eq!(field(GenerateRequest::new("")), "prompt");
        assert_eq!(field(GenerateRequest::new("é".repeat(2001))), "prompt");
        assert!(
            GenerateRequest::new("é".repeat(2000)).validate().is_ok(),
            "characters, not bytes"
        );
        assert_eq!(field(GenerateRequest::new("p").width(255)), "image_width");
        assert_eq!(field(GenerateRequest::new("p").width(2056)), "image_width");
        assert_eq!(
            field(GenerateRequest::new("p").height(1001)),
            "image_height"
        );
        assert_eq!(field(GenerateRequest::new("p").model(" ")), "model");
        assert_eq!(field(GenerateRequest::new("p").quality("")), "quality");
        assert_eq!(
            field(GenerateRequest::new("p").callback_url("http://example.com/cb")),
            "callback_url"
        );
        assert_eq!(
            field(GenerateRequest::new("p").callback_url("ftp://example.com/cb")),
            "callback_url"
        );
        assert_eq!(
            field(GenerateRequest::new("p").callback_url("/relative")),
            "callback_url"
        );
        assert_eq!(
            field(GenerateRequest::new("p").idempotency_key("")),
            "Idempotency-Key"
        );
        assert_eq!(
            field(GenerateRequest::new("p").idempotency_key("a b")),
            "Idempotency-Key"
        );
        assert_eq!(
            field(GenerateRequest::new("p").idempotency_key("k".repeat(256))),
            "Idempotency-Key"
        );
        let fine = GenerateRequest::new("p")
            .size(256, 2048)
            .callback_url("http://127.0.0.1:9/cb")
            .idempotency_key("batch-1:line/7.v2_x");
        fine.validate().unwrap();
        fine.to_api().unwrap();
    }
}
