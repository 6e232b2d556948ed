//! A generation request, checked against every documented constraint before
//! anything is sent.

use std::sync::LazyLock;

use serde_json::{Map, Value};
use uncensored_api::limits::{generate_image_request as spec, idempotency_key};
use uncensored_api::types;

use crate::error::ValidationError;

/// An image side, with the limits openapi.yaml gives it (through the
/// generated [`uncensored_api::limits`]).
///
/// ```
/// use uncensored::Side;
///
/// assert_eq!(Side::Width.field(), "image_width");
/// assert!(Side::Width.validate(1024).is_ok());
/// assert!(Side::Width.validate(1001).is_err());
/// assert!(Side::Height.validate(Side::Height.maximum() + Side::Height.multiple_of()).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `image_width`.
    Width,
    /// `image_height`.
    Height,
}

impl Side {
    /// The request field: `image_width` or `image_height`.
    pub const fn field(self) -> &'static str {
        match self {
            Side::Width => "image_width",
            Side::Height => "image_height",
        }
    }

    /// The smallest side allowed, in pixels.
    pub const fn minimum(self) -> u32 {
        match self {
            Side::Width => spec::IMAGE_WIDTH_MINIMUM,
            Side::Height => spec::IMAGE_HEIGHT_MINIMUM,
        }
    }

    /// The largest side allowed, in pixels.
    pub const fn maximum(self) -> u32 {
        match self {
            Side::Width => spec::IMAGE_WIDTH_MAXIMUM,
            Side::Height => spec::IMAGE_HEIGHT_MAXIMUM,
        }
    }

    /// The side must be a multiple of this.
    pub const fn multiple_of(self) -> u32 {
        match self {
            Side::Width => spec::IMAGE_WIDTH_MULTIPLE_OF,
            Side::Height => spec::IMAGE_HEIGHT_MULTIPLE_OF,
        }
    }

    /// The API's default for this side, in pixels.
    pub const fn default_pixels(self) -> u32 {
        match self {
            Side::Width => spec::IMAGE_WIDTH_DEFAULT,
            Side::Height => spec::IMAGE_HEIGHT_DEFAULT,
        }
    }

    /// The rule in words, such as `256 to 2048 and a multiple of 8`.
    pub fn rule(self) -> String {
        format!(
            "{} to {} and a multiple of {}",
            self.minimum(),
            self.maximum(),
            self.multiple_of()
        )
    }

    /// Checks `pixels` against this side's limits.
    pub fn validate(self, pixels: u32) -> Result<(), ValidationError> {
        if (self.minimum()..=self.maximum()).contains(&pixels)
            && pixels.is_multiple_of(self.multiple_of())
        {
            Ok(())
        } else {
            Err(ValidationError::new(
                self.field(),
                format!("is {pixels}; it must be {}", self.rule()),
            ))
        }
    }
}

/// Checks one image side: [`Side::validate`].
///
/// ```
/// use uncensored::Side;
///
/// assert!(uncensored::validate_side(Side::Width, 1024).is_ok());
/// assert!(uncensored::validate_side(Side::Width, 1001).is_err());
/// ```
pub fn validate_side(side: Side, pixels: u32) -> Result<(), ValidationError> {
    side.validate(pixels)
}

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
    /// A request for `prompt` with the API's defaults (model and size: see
    /// [`uncensored_api::limits::generate_image_request`]).
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

    /// The model (default [`uncensored_api::limits::generate_image_request::MODEL_DEFAULT`]).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Width and height in pixels, within the limits of [`Side`].
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

    /// Your own Idempotency-Key (it must match
    /// [`uncensored_api::limits::idempotency_key::PATTERN`]). Without one, the client makes a random key per request.
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
    /// default ([`Side::default_pixels`]).
    pub fn dimensions(&self) -> (u32, u32) {
        (
            self.width.unwrap_or(Side::Width.default_pixels()),
            self.height.unwrap_or(Side::Height.default_pixels()),
        )
    }

    /// The width and height as asked, each `None` when left to the API's
    /// default (unlike [`dimensions`](Self::dimensions), which fills them in).
    pub fn asked_size(&self) -> (Option<u32>, Option<u32>) {
        (self.width, self.height)
    }

    /// The resolution hint, if set.
    pub fn resolution_hint(&self) -> Option<&str> {
        self.resolution.as_deref()
    }

    /// The quality hint, if set.
    pub fn quality_hint(&self) -> Option<&str> {
        self.quality.as_deref()
    }

    /// The model-specific settings (`additional_settings`), empty when none.
    pub fn settings(&self) -> &Map<String, Value> {
        &self.settings
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
        if chars == 0 && spec::PROMPT_MIN_LENGTH > 0 {
            return Err(ValidationError::new("prompt", "must not be empty"));
        }
        if chars < spec::PROMPT_MIN_LENGTH {
            return Err(ValidationError::new(
                "prompt",
                format!(
                    "is {chars} characters; at least {} are required",
                    spec::PROMPT_MIN_LENGTH
                ),
            ));
        }
        if chars > spec::PROMPT_MAX_LENGTH {
            return Err(ValidationError::new(
                "prompt",
                format!(
                    "is {chars} characters; at most {} are allowed",
                    spec::PROMPT_MAX_LENGTH
                ),
            ));
        }
        for (side, value) in [(Side::Width, self.width), (Side::Height, self.height)] {
            if let Some(pixels) = value {
                side.validate(pixels)?;
            }
        }
        // Blank counts as empty: a name of spaces is no more a model than "".
        for (field, value, min) in [
            ("model", &self.model, spec::MODEL_MIN_LENGTH),
            ("resolution", &self.resolution, spec::RESOLUTION_MIN_LENGTH),
            ("quality", &self.quality, spec::QUALITY_MIN_LENGTH),
        ] {
            if let Some(value) = value.as_deref() {
                if min > 0 && value.trim().is_empty() {
                    return Err(ValidationError::new(field, "must not be empty"));
                }
                if value.chars().count() < min {
                    return Err(ValidationError::new(
                        field,
                        format!("must be at least {min} characters"),
                    ));
                }
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
    if text.chars().count() > spec::CALLBACK_URL_MAX_LENGTH {
        return problem(&format!(
            "is longer than {} characters",
            spec::CALLBACK_URL_MAX_LENGTH
        ));
    }
    if !matches(&CALLBACK_URL_PATTERN, text) {
        return problem(&format!(
            "must be an absolute http(s) URL (matching {})",
            spec::CALLBACK_URL_PATTERN
        ));
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

/// The spec's `callback_url` pattern, compiled once.
static CALLBACK_URL_PATTERN: LazyLock<Option<regress::Regex>> =
    LazyLock::new(|| regress::Regex::new(spec::CALLBACK_URL_PATTERN).ok());
/// The spec's Idempotency-Key pattern, compiled once.
static IDEMPOTENCY_KEY_PATTERN: LazyLock<Option<regress::Regex>> =
    LazyLock::new(|| regress::Regex::new(idempotency_key::PATTERN).ok());

/// Whether `text` matches a pattern of the spec (ECMAScript syntax, unanchored
/// unless the pattern says so, as JSON Schema has it). A pattern that does
/// not compile matches nothing: the generated client refuses it too.
fn matches(pattern: &LazyLock<Option<regress::Regex>>, text: &str) -> bool {
    pattern
        .as_ref()
        .is_some_and(|regex| regex.find(text).is_some())
}

/// Checks the documented Idempotency-Key rules: the length and the pattern
/// of [`uncensored_api::limits::idempotency_key`].
pub fn validate_idempotency_key(key: &str) -> Result<(), ValidationError> {
    let (min, max) = (idempotency_key::MIN_LENGTH, idempotency_key::MAX_LENGTH);
    let length = key.chars().count();
    if !(min..=max).contains(&length) {
        return Err(ValidationError::new(
            "Idempotency-Key",
            format!("is {length} characters; {min} to {max} are allowed"),
        ));
    }
    if !matches(&IDEMPOTENCY_KEY_PATTERN, key) {
        // Name the first character the pattern does not take, where one alone
        // tells (the pattern is a character class with a length).
        let bad = key.chars().find(|c| {
            let one = c.to_string();
            !matches(&IDEMPOTENCY_KEY_PATTERN, &one.repeat(min.max(1)))
        });
        let problem = match bad {
            Some(bad) => format!(
                "contains {bad:?}; it must match {}",
                idempotency_key::PATTERN
            ),
            None => format!("must match {}", idempotency_key::PATTERN),
        };
        return Err(ValidationError::new("Idempotency-Key", problem));
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
        let max = spec::PROMPT_MAX_LENGTH;
        assert_eq!(field(GenerateRequest::new("é".repeat(max + 1))), "prompt");
        assert!(
            GenerateRequest::new("é".repeat(max)).validate().is_ok(),
            "characters, not bytes"
        );
        let (low, high) = (Side::Width.minimum(), Side::Width.maximum());
        assert_eq!(
            field(GenerateRequest::new("p").width(low - 1)),
            "image_width"
        );
        assert_eq!(
            field(GenerateRequest::new("p").width(high + Side::Width.multiple_of())),
            "image_width"
        );
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
            field(
                GenerateRequest::new("p")
                    .idempotency_key("k".repeat(idempotency_key::MAX_LENGTH + 1))
            ),
            "Idempotency-Key"
        );
        let fine = GenerateRequest::new("p")
            .size(Side::Width.minimum(), Side::Height.maximum())
            .callback_url("http://127.0.0.1:9/cb")
            .idempotency_key("batch-1:line/7.v2_x");
        fine.validate().unwrap();
        fine.to_api().unwrap();
    }

    #[test]
    fn messages_state_the_spec_range() {
        let error = GenerateRequest::new("p")
            .width(1001)
            .validate()
            .unwrap_err();
        assert_eq!(
            error.problem,
            format!(
                "is 1001; it must be {} to {} and a multiple of {}",
                spec::IMAGE_WIDTH_MINIMUM,
                spec::IMAGE_WIDTH_MAXIMUM,
                spec::IMAGE_WIDTH_MULTIPLE_OF
            )
        );
        let error = validate_idempotency_key("a b").unwrap_err();
        assert!(
            error.problem.starts_with("contains ' '"),
            "{}",
            error.problem
        );
        assert!(error.problem.contains(idempotency_key::PATTERN));
        let long = "x".repeat(spec::PROMPT_MAX_LENGTH + 1);
        let error = GenerateRequest::new(long).validate().unwrap_err();
        assert!(
            error
                .problem
                .ends_with(&format!("{} are allowed", spec::PROMPT_MAX_LENGTH)),
            "{}",
            error.problem
        );
    }
}
