//! A tool's failure as the caller reads it: the typed reason (the SDK's for
//! the API, the delivery crate's for storage, notification and journal:
//! [`DeliveryReason`]), the message, the one piece of advice the reason
//! gives, and the request field at fault when there is one. The one place
//! this server turns an error into its error object.

use serde::Serialize;
use uncensored::{FailureReason, ValidationError};
use uncensored_deliver::journal::JournalError;
use uncensored_deliver::storage::StorageError;
use uncensored_deliver::thumbnail::ThumbnailError;
use uncensored_deliver::{DeliveryError, DeliveryReason};

/// Why a tool call failed. Sent as `isError: true` with this as structured
/// content (`{"error": …}`) and as text. Its JSON Schema (derived here) is
/// the error shape of every tool's output schema.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema, thiserror::Error)]
#[error("{message}")]
pub struct ToolFailure {
    /// The class of failure (`invalid_request`, `moderation`, `storage`,
    /// `journal`, ...).
    #[schemars(with = "String")]
    pub reason: DeliveryReason,
    /// What happened.
    pub message: String,
    /// What to do next.
    pub advice: &'static str,
    /// The request field at fault (`image_width`, `prompt`, ...), when known.
    pub field: Option<String>,
}

impl ToolFailure {
    /// A failure of `reason`, with its advice. Moderation names the
    /// `prompt`: it is the field the API's moderation judges, and the
    /// journal's record of a refused line keeps the reason, not the field.
    pub fn new(reason: impl Into<DeliveryReason>, message: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            reason,
            message: message.into(),
            advice: reason.advice(),
            field: (reason == DeliveryReason::Api(FailureReason::Moderation))
                .then(|| "prompt".to_string()),
        }
    }

    /// The text a person reads.
    pub fn text(&self) -> String {
        format!("{}\nhint: {}", self.message, self.advice)
    }
}

impl From<ValidationError> for ToolFailure {
    fn from(error: ValidationError) -> Self {
        Self {
            field: Some(error.field.to_string()),
            ..Self::new(FailureReason::InvalidRequest, error.to_string())
        }
    }
}

impl From<uncensored::Error> for ToolFailure {
    fn from(error: uncensored::Error) -> Self {
        let field = error.api().and_then(|api| api.param.clone());
        Self {
            field,
            ..Self::new(error.reason(), error.to_string())
        }
    }
}

impl From<DeliveryError> for ToolFailure {
    fn from(error: DeliveryError) -> Self {
        match error {
            DeliveryError::Invalid(invalid) => invalid.into(),
            DeliveryError::Api(api) => api.into(),
            other => Self::new(other.reason(), other.to_string()),
        }
    }
}

impl From<StorageError> for ToolFailure {
    fn from(error: StorageError) -> Self {
        Self::new(error.reason(), error.to_string())
    }
}

impl From<JournalError> for ToolFailure {
    fn from(error: JournalError) -> Self {
        Self::new(DeliveryReason::Journal, error.to_string())
    }
}

impl From<ThumbnailError> for ToolFailure {
    fn from(error: ThumbnailError) -> Self {
        Self::new(FailureReason::Other, format!("no thumbnail: {error}"))
    }
}
