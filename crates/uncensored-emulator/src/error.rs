//! The error envelope, the only shape an API error ever has here: no plain-text
//! rejection from axum reaches a client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An API error, rendered as `{"error": {message, type, param, code}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The envelope's `type`.
    pub kind: &'static str,
    /// The envelope's `message`.
    pub message: String,
    /// The envelope's `param`.
    pub param: Option<String>,
    /// The envelope's `code`.
    pub code: Option<&'static str>,
    /// Seconds for a `retry-after` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// `400 invalid_request_error` about `param`.
    pub fn invalid(param: Option<&str>, message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        error.param = param.map(str::to_string);
        error
    }

    /// `401 authentication_error`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
    }

    /// `402 insufficient_funds`.
    pub fn insufficient_funds(price: u64, balance: u64) -> Self {
        Self::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_funds",
            format!(
                "Insufficient balance: this generation costs {price} credits, the balance is {balance}"
            ),
        )
    }

    /// `402 insufficient_funds` for a price the ledger would not hold: funds
    /// short, or a spend limit passed (the service documents no error of its
    /// own for a limit; `code` says which, an assumption of this emulator).
    pub fn refused(refusal: crate::ledger::Refusal) -> Self {
        use crate::ledger::Refusal;
        match refusal {
            Refusal::Funds { price, available } => Self::insufficient_funds(price, available),
            Refusal::DailyLimit => Self::new(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_funds",
                "The daily spend limit would be passed",
            )
            .with_code("daily_spend_limit"),
            Refusal::MonthlyLimit => Self::new(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_funds",
                "The monthly spend limit would be passed",
            )
            .with_code("monthly_spend_limit"),
        }
    }

    /// `403 permission_error`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", message)
    }

    /// `404 not_found`.
    pub fn not_found(param: Option<&str>, message: impl Into<String>) -> Self {
        let mut error = Self::new(StatusCode::NOT_FOUND, "not_found", message);
        error.param = param.map(str::to_string);
        error
    }

    /// `413 file_too_large`.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            format!("Request body larger than {limit} bytes"),
        )
    }

    /// `409 idempotency_key_in_flight`, retry after 2 seconds.
    pub fn in_flight() -> Self {
        let mut error = Self::new(
            StatusCode::CONFLICT,
            "idempotency_key_in_flight",
            "A request with this Idempotency-Key is still being processed",
        );
        error.retry_after = Some(2);
        error
    }

    /// `422 idempotency_key_reuse`.
    pub fn key_reuse() -> Self {
        let mut error = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reuse",
            "This Idempotency-Key was already used with a different request body",
        );
        error.param = Some("Idempotency-Key".into());
        error
    }

    /// `429 rate_limit_error`.
    pub fn rate_limited(retry_after: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!("Rate limit exceeded; retry after {retry_after} seconds"),
        );
        error.retry_after = Some(retry_after);
        error
    }

    /// `500 internal_server_error` or `503 service_unavailable` (injected).
    pub fn server(unavailable: bool) -> Self {
        if unavailable {
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "Upstream provider temporarily unavailable",
            )
        } else {
            Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_server_error",
                "Internal server error",
            )
        }
    }

    /// Adds a machine-readable code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Adds the parameter at fault.
    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    /// The envelope as JSON.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
