//! Errors: one enum for everything that can go wrong, with the API's error
//! envelope as a typed [`ApiError`], and [`Error::is_retryable`] saying which
//! failures the client retries on its own.

use std::time::Duration;

use crate::response::RateLimit;

/// Everything that can go wrong. Messages say what happened and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request breaks a documented constraint; nothing was sent.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The API answered with its error envelope.
    #[error(transparent)]
    Api(Box<ApiError>),
    /// The request did not get an answer (connection refused or cut, timeout).
    #[error("no answer from the API after {attempts} attempt(s): {source}")]
    Transport {
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: reqwest::Error,
    },
    /// The API answered with a redirect to another origin, which the client
    /// does not follow: the API key goes to the base URL's origin only.
    #[error(
        "the API redirected (HTTP {status}) to {origin}, another origin than the base URL's; not followed, so that the API key stays with the API (check --base-url)"
    )]
    Redirected {
        /// The HTTP status (301, 302, 303, 307, 308).
        status: u16,
        /// The origin (scheme, host, port) of the `Location`, or `(none)`.
        origin: String,
    },
    /// The API answered something that is not in its documentation.
    #[error("unexpected answer from the API (HTTP {status}): {detail}")]
    UnexpectedResponse {
        /// The HTTP status.
        status: u16,
        /// The start of the body, or why it could not be read.
        detail: String,
    },
    /// A job ended without an image.
    #[error("job {job_id} ended with status `{status}`{}", .message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    JobFailed {
        /// The job.
        job_id: String,
        /// Its final status as the API reported it.
        status: String,
        /// The reason, when the API gave one.
        message: Option<String>,
        /// A machine-readable reason, when the API gave one.
        code: Option<String>,
    },
    /// Waiting for a job took longer than its deadline.
    #[error(
        "job {job_id} was still `{status}` after {elapsed:?} ({polls} polls); wait longer or check it later with `status`"
    )]
    WaitTimeout {
        /// The job.
        job_id: String,
        /// Its last status.
        status: String,
        /// How long the wait lasted.
        elapsed: Duration,
        /// How many times it was polled.
        polls: u32,
    },
    /// The wait was cancelled by its cancellation token.
    #[error("waiting for job {job_id} was cancelled")]
    Cancelled {
        /// The job.
        job_id: String,
    },
    /// Downloading an image failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// The client is misconfigured (for example, no API key).
    #[error("{0}")]
    Config(String),
}

impl From<ApiError> for Error {
    fn from(error: ApiError) -> Self {
        Error::Api(Box::new(error))
    }
}

impl Error {
    /// Whether trying the same request again may succeed. The client already
    /// retries these (within its retry policy) before returning them.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api(error) => error.is_retryable(),
            Error::Transport { .. } => true,
            Error::UnexpectedResponse { status, .. } => *status == 429 || *status >= 500,
            Error::Download(error) => error.is_retryable(),
            _ => false,
        }
    }

    /// The class of this failure, with its advice
    /// ([`FailureReason::advice`](crate::FailureReason::advice)).
    pub fn reason(&self) -> crate::FailureReason {
        use crate::FailureReason as R;
        match self {
            Error::Invalid(_) => R::InvalidRequest,
            Error::Api(api) => api.reason(),
            Error::Transport { .. } | Error::UnexpectedResponse { .. } => R::GaveUp,
            Error::Redirected { .. } => R::Configuration,
            Error::JobFailed { .. } => R::JobFailed,
            Error::WaitTimeout { .. } => R::TimedOut,
            Error::Cancelled { .. } => R::Cancelled,
            Error::Download(_) => R::Download,
            Error::Config(_) => R::Configuration,
        }
    }

    /// The API error, when the API answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(error) => Some(error),
            _ => None,
        }
    }
}

/// A request field that breaks a documented constraint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {problem}")]
pub struct ValidationError {
    /// The field, as the API names it (`prompt`, `image_width`, `Idempotency-Key`, ...).
    pub field: &'static str,
    /// What is wrong and what is allowed.
    pub problem: String,
}

impl ValidationError {
    pub(crate) fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}

/// The error classes the API documents, plus any it may add later.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// 400 `invalid_request_error`.
    InvalidRequest,
    /// 401 `authentication_error`.
    Authentication,
    /// 402 `insufficient_funds`.
    InsufficientFunds,
    /// 403 `permission_error` (scope, or content moderation: see [`ApiError::is_moderation`]).
    Permission,
    /// 404 `not_found`.
    NotFound,
    /// 409 `idempotency_key_in_flight`.
    IdempotencyKeyInFlight,
    /// 413 `file_too_large`.
    FileTooLarge,
    /// 422 `idempotency_key_reuse`.
    IdempotencyKeyReuse,
    /// 429 `rate_limit_error`.
    RateLimit,
    /// 500 `internal_server_error`.
    InternalServer,
    /// 503 `service_unavailable`.
    ServiceUnavailable,
    /// A type the documentation does not list.
    Other(String),
}

impl ApiErrorKind {
    /// The kind for an envelope's `type`.
    pub fn from_type(kind: &str) -> Self {
        match kind {
            "invalid_request_error" => Self::InvalidRequest,
            "authentication_error" => Self::Authentication,
            "insufficient_funds" => Self::InsufficientFunds,
            "permission_error" => Self::Permission,
            "not_found" => Self::NotFound,
            "idempotency_key_in_flight" => Self::IdempotencyKeyInFlight,
            "file_too_large" => Self::FileTooLarge,
            "idempotency_key_reuse" => Self::IdempotencyKeyReuse,
            "rate_limit_error" => Self::RateLimit,
            "internal_server_error" => Self::InternalServer,
            "service_unavailable" => Self::ServiceUnavailable,
            other => Self::Other(other.to_string()),
        }
    }

    /// The envelope's `type` for this kind.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request_error",
            Self::Authentication => "authentication_error",
            Self::InsufficientFunds => "insufficient_funds",
            Self::Permission => "permission_error",
            Self::NotFound => "not_found",
            Self::IdempotencyKeyInFlight => "idempotency_key_in_flight",
            Self::FileTooLarge => "file_too_large",
            Self::IdempotencyKeyReuse => "idempotency_key_reuse",
            Self::RateLimit => "rate_limit_error",
            Self::InternalServer => "internal_server_error",
            Self::ServiceUnavailable => "service_unavailable",
            Self::Other(other) => other,
        }
    }
}

/// The API's error envelope, with the HTTP context around it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} (HTTP {status}, {}{})", .message, .kind.as_str(), .param.as_deref().map(|p| format!(", param `{p}`")).unwrap_or_default())]
pub struct ApiError {
    /// The class of error.
    pub kind: ApiErrorKind,
    /// The HTTP status.
    pub status: u16,
    /// The API's explanation.
    pub message: String,
    /// The request field at fault, when the API named one.
    pub param: Option<String>,
    /// A finer-grained code, when the API gave one (`content_moderation`, ...).
    pub code: Option<String>,
    /// The request id, when the API sent one (`x-request-id`).
    pub request_id: Option<String>,
    /// The rate-limit headers of the answer.
    pub rate_limit: Option<RateLimit>,
    /// How long the API asked to wait (`retry-after`).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    /// Whether the client retries this: 409 in flight, 429, 500 and 503 (and
    /// any other 5xx). Never 400, 401, 402, 403, 404, 413 or 422.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ApiErrorKind::IdempotencyKeyInFlight
                | ApiErrorKind::RateLimit
                | ApiErrorKind::InternalServer
                | ApiErrorKind::ServiceUnavailable
        ) || (matches!(self.kind, ApiErrorKind::Other(_))
            && (self.status == 429 || self.status >= 500))
    }

    /// Whether content moderation refused the prompt.
    pub fn is_moderation(&self) -> bool {
        self.kind == ApiErrorKind::Permission
            && self
                .code
                .as_deref()
                .is_some_and(|code| code.contains("moderation"))
    }

    /// The class of this error, with its advice.
    pub fn reason(&self) -> crate::FailureReason {
        use crate::FailureReason as R;
        match self.kind {
            _ if self.is_moderation() => R::Moderation,
            ApiErrorKind::Authentication => R::Unauthorized,
            ApiErrorKind::InsufficientFunds => R::InsufficientFunds,
            ApiErrorKind::Permission => R::Forbidden,
            ApiErrorKind::InvalidRequest | ApiErrorKind::FileTooLarge => R::InvalidRequest,
            ApiErrorKind::IdempotencyKeyReuse => R::IdempotencyKeyReuse,
            ApiErrorKind::NotFound => R::NotFound,
            _ if self.is_retryable() => R::GaveUp,
            _ => R::Other,
        }
    }
}

/// Why an image download failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    /// The URL is not a URL, or its scheme is not allowed: https only, plain
    /// http too when the base URL is loopback or insecure http was allowed.
    /// The URL itself is not shown: an image URL is often signed.
    #[error(
        "refusing to download from a `{scheme}` URL: images are fetched over https only (plain http only from a loopback API or with --allow-insecure-http)"
    )]
    Scheme {
        /// The URL's scheme (empty when it is not a URL).
        scheme: String,
    },
    /// The host is, or resolves only to, an address that is not public
    /// (loopback, private, link-local, ...), and is not on the download
    /// allow-list.
    #[error(
        "refusing to download from {host}: not a public address (add it to the download allow-list if this storage is private on purpose)"
    )]
    NotPublic {
        /// The host or address.
        host: String,
    },
    /// A redirect was refused: too many, or to a URL the rules above refuse.
    #[error("refusing a redirect of the download: {reason}")]
    Redirect {
        /// Why.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("downloading the image failed with HTTP {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// The image is larger than the configured cap.
    #[error("the image is larger than the {limit}-byte download cap")]
    TooLarge {
        /// The cap, in bytes.
        limit: u64,
    },
    /// Fewer bytes arrived than the server announced.
    #[error("the download was cut short: {received} of {expected} bytes")]
    Truncated {
        /// Bytes received.
        received: u64,
        /// Bytes announced by Content-Length.
        expected: u64,
    },
    /// The bytes are not an image format the client knows (JPEG, PNG, WebP).
    #[error("the downloaded bytes are not a JPEG, PNG or WebP image")]
    NotAnImage,
    /// The connection failed. The error carries no URL (image URLs are
    /// often signed).
    #[error("the download failed: {0}")]
    Transport(reqwest::Error),
}

impl From<reqwest::Error> for DownloadError {
    /// Sorts a reqwest failure: a refused address or redirect (found in its
    /// cause chain) is not retried; anything else is a transport failure,
    /// kept without its URL.
    fn from(error: reqwest::Error) -> Self {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(current) = cause {
            if let Some(blocked) = current.downcast_ref::<crate::address::Blocked>() {
                return DownloadError::NotPublic {
                    host: blocked.host.clone(),
                };
            }
            if let Some(refused) = current.downcast_ref::<DownloadError>() {
                return DownloadError::Redirect {
                    reason: refused.to_string(),
                };
            }
            if current
                .downcast_ref::<crate::address::TooManyRedirects>()
                .is_some()
            {
                return DownloadError::Redirect {
                    reason: current.to_string(),
                };
            }
            cause = current.source();
        }
        DownloadError::Transport(error.without_url())
    }
}

impl DownloadError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            DownloadError::Truncated { .. } | DownloadError::Transport(_) => true,
            DownloadError::Status { status } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
