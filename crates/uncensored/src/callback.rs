//! The API's job callbacks, parsed without any web framework.
//!
//! A callback is not signed: nothing in it is trusted. Use it to know *which*
//! job to read, then read the job with your own key.
//!
//! ```
//! use uncensored::callback::parse_callback;
//!
//! let headers = reqwest::header::HeaderMap::new();
//! let callback = parse_callback(&headers, br#"{"request_id":"job-1","status":"success","result":{}}"#).unwrap();
//! assert_eq!(callback.request_id, "job-1");
//! ```

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde_json::{Map, Value};

/// A parsed callback payload. Unsigned: use it to know *which* job to read,
/// never as the job's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    /// The job the callback is about.
    pub request_id: String,
    /// The outcome as the callback states it (`success` in the API's example).
    pub status: String,
    /// The undocumented `result` object, as sent.
    pub result: Map<String, Value>,
    /// When it was sent.
    pub timestamp: Option<DateTime<Utc>>,
}

/// Why a callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// The body is not JSON, or not the callback's shape.
    #[error("not a callback payload: {0}")]
    Malformed(String),
    /// The URL does not name a registration of this receiver.
    #[error("unknown callback registration")]
    UnknownRegistration,
    /// The URL's token does not match its registration.
    #[error("bad callback token")]
    BadToken,
    /// The payload is about a different job than the one registered.
    #[error("the callback is about job {got}, not the registered job")]
    WrongJob {
        /// The job the payload names.
        got: String,
    },
}

impl CallbackError {
    /// The HTTP status a receiver answers a refused callback with.
    pub fn status(&self) -> StatusCode {
        match self {
            CallbackError::Malformed(_) | CallbackError::WrongJob { .. } => StatusCode::BAD_REQUEST,
            CallbackError::UnknownRegistration => StatusCode::NOT_FOUND,
            CallbackError::BadToken => StatusCode::UNAUTHORIZED,
        }
    }
}

/// Parses a callback request, independent of any web framework.
pub fn parse_callback(headers: &HeaderMap, body: &[u8]) -> Result<Callback, CallbackError> {
    if let Some(kind) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let essence = kind.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(CallbackError::Malformed(format!(
                "content type {essence:?} is not application/json"
            )));
        }
    }
    let payload: uncensored_api::types::WebhookPayload =
        serde_json::from_slice(body).map_err(|e| CallbackError::Malformed(e.to_string()))?;
    if payload.request_id.is_empty() {
        return Err(CallbackError::Malformed("empty request_id".into()));
    }
    Ok(Callback {
        request_id: payload.request_id,
        status: payload.status,
        result: payload.result,
        timestamp: payload.timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_parsed_or_refused() {
        let headers = HeaderMap::new();
        let ok = parse_callback(&headers, br#"{"request_id":"j1","status":"success","result":{"x":1},"timestamp":"2026-05-09T10:30:05Z"}"#)
            .unwrap();
        assert_eq!(
            (ok.request_id.as_str(), ok.status.as_str()),
            ("j1", "success")
        );
        assert!(matches!(
            parse_callback(&headers, b"not json"),
            Err(CallbackError::Malformed(_))
        ));
        assert!(matches!(
            parse_callback(&headers, br#"{"status":"success"}"#),
            Err(CallbackError::Malformed(_))
        ));
        let mut text = HeaderMap::new();
        text.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(matches!(
            parse_callback(&text, br#"{"request_id":"j","status":"s"}"#),
            Err(CallbackError::Malformed(_))
        ));
    }
}
