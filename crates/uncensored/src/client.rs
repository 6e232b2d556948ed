//! The client: configuration, the retry loop, and the image operations (the
//! billing ones are in `billing.rs`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use progenitor_client::{Error as WireError, ResponseValue};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret as _, SecretString};
use tracing::Instrument as _;
use uncensored_api::types::{self, ErrorEnvelope};

use crate::address::{DownloadPolicy, same_origin_redirects};
use crate::error::{ApiError, ApiErrorKind, Error, Result};
use crate::pacer::{LocalPacer, Pace};
use crate::request::GenerateRequest;
use crate::response::{Generation, Job, RateLimit, ResponseMeta, generation_from_api};
use crate::retry::RetryPolicy;
use crate::wait::WaitOptions;

/// The production base URL.
pub const DEFAULT_BASE_URL: &str = uncensored_api::PRODUCTION_BASE_URL;
/// Largest image [`Client::download`] accepts by default: 64 MiB.
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 64 * 1024 * 1024;

/// A client for the image-generation API. Cheap to clone; clones share
/// connections, the pacer and the last rate-limit reading.
///
/// ```no_run
/// # async fn run() -> uncensored::Result<()> {
/// use uncensored::{Client, GenerateRequest};
///
/// let client = Client::from_env()?; // UNCENSORED_API_KEY, UNCENSORED_BASE_URL
/// let image = client
///     .generate_and_wait(&GenerateRequest::new("a lighthouse at dusk").size(1024, 768))
///     .await?;
/// let bytes = client.download(&image.url).await?;
/// std::fs::write(format!("{}.{}", image.job_id, bytes.format.extension()), &bytes.bytes).unwrap();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    api: uncensored_api::Client,
    /// For downloads: no API key, so that it never reaches image storage.
    http: reqwest::Client,
    base_url: String,
    retry: RetryPolicy,
    wait: WaitOptions,
    max_download_bytes: u64,
    downloads: DownloadPolicy,
    pacer: Option<Arc<dyn Pace>>,
    last_rate_limit: Mutex<Option<RateLimit>>,
    /// A fingerprint of the API key (never the key).
    key_id: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url)
            .field("api_key", &"[redacted]")
            .field("retry", &self.inner.retry)
            .field("pacing", &self.inner.pacer.is_some())
            .finish_non_exhaustive()
    }
}

type HttpConfig = Box<dyn Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder + Send + Sync>;

/// Configures a [`Client`].
pub struct ClientBuilder {
    base_url: String,
    api_key: Option<SecretString>,
    connect_timeout: Duration,
    request_timeout: Option<Duration>,
    user_agent: String,
    http_config: Option<HttpConfig>,
    retry: RetryPolicy,
    wait: WaitOptions,
    max_download_bytes: u64,
    pacer: Option<Arc<dyn Pace>>,
    allow_insecure_http: bool,
    download_allow: Vec<String>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.into(),
            api_key: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Some(Duration::from_secs(120)),
            user_agent: concat!("uncensored-rust/", env!("CARGO_PKG_VERSION")).into(),
            http_config: None,
            retry: RetryPolicy::default(),
            wait: WaitOptions::default(),
            max_download_bytes: DEFAULT_MAX_DOWNLOAD_BYTES,
            pacer: None,
            allow_insecure_http: false,
            download_allow: Vec::new(),
        }
    }
}

impl ClientBuilder {
    /// The API's base URL (default: production).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into().trim_end_matches('/').to_string();
        self
    }

    /// The API key. Held as a secret: never in `Debug`, errors or logs.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(SecretString::from(key.into()));
        self
    }

    /// How long to wait for a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one request may take (default 120 s: a sync generation can
    /// take 30 s or more). `None` for no limit.
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The User-Agent header.
    pub fn user_agent(mut self, agent: impl Into<String>) -> Self {
        self.user_agent = agent.into();
        self
    }

    /// Adjusts the reqwest clients (proxies, TLS roots, pools...). It is applied
    /// to both the API client and the download client, which are kept apart so
    /// that the API key never travels to image storage.
    pub fn http_config(
        mut self,
        configure: impl Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder + Send + Sync + 'static,
    ) -> Self {
        self.http_config = Some(Box::new(configure));
        self
    }

    /// When and how often to retry.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How [`Client::wait`] polls by default.
    pub fn wait_options(mut self, options: WaitOptions) -> Self {
        self.wait = options;
        self
    }

    /// Largest image [`Client::download`] accepts (default 64 MiB).
    pub fn max_download_bytes(mut self, bytes: u64) -> Self {
        self.max_download_bytes = bytes;
        self
    }

    /// Allows a plain-http base URL that is not loopback, and plain-http
    /// image downloads (default: refused; the key and the images would cross
    /// the network in the clear). A loopback base URL (the emulator) needs
    /// no permission.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Hosts (names, addresses or CIDR blocks such as `10.0.0.0/8`) that
    /// image downloads may reach although they are not public: storage that
    /// is private on purpose. Everything else must resolve to a public
    /// address (see [`is_public`](crate::is_public)).
    pub fn download_allow(mut self, hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.download_allow = hosts.into_iter().map(Into::into).collect();
        self
    }

    /// Paces requests to stay under the key's requests-per-minute ceiling, as
    /// the rate-limit headers report it, instead of running into 429s.
    /// The pacer is this process's own ([`LocalPacer`]); for several
    /// processes on one key use [`ClientBuilder::pacer`] with a shared one.
    pub fn pace_requests(mut self, pace: bool) -> Self {
        self.pacer = pace.then(|| Arc::new(LocalPacer::new()) as Arc<dyn Pace>);
        self
    }

    /// Paces requests with `pacer` (shared by every process on the key, for
    /// example uncensored-deliver's PostgreSQL pacer).
    pub fn pacer(mut self, pacer: Arc<dyn Pace>) -> Self {
        self.pacer = Some(pacer);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client> {
        let key = self.api_key.ok_or_else(|| {
            Error::Config(
                "no API key: set UNCENSORED_API_KEY or call ClientBuilder::api_key".into(),
            )
        })?;
        let parsed = url::Url::parse(&self.base_url).map_err(|e| {
            Error::Config(format!(
                "the base URL {:?} is not a URL: {e}",
                self.base_url
            ))
        })?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_insecure_http || crate::address::is_loopback_url(&parsed) => {}
            "http" => {
                return Err(Error::Config(format!(
                    "the base URL {:?} is plain http: the API key would cross the network in the \
                     clear; use https, or allow it with --allow-insecure-http \
                     (ClientBuilder::allow_insecure_http)",
                    self.base_url
                )));
            }
            _ => {
                return Err(Error::Config(format!(
                    "the base URL {:?} must be https (or http on loopback)",
                    self.base_url
                )));
            }
        }
        let downloads =
            DownloadPolicy::new(&parsed, self.allow_insecure_http, &self.download_allow)
                .map_err(Error::Config)?;
        let configure = |builder: reqwest::ClientBuilder| {
            let mut builder = builder
                .connect_timeout(self.connect_timeout)
                .user_agent(&self.user_agent);
            if let Some(timeout) = self.request_timeout {
                builder = builder.timeout(timeout);
            }
            match &self.http_config {
                Some(config) => config(builder),
                None => builder,
            }
        };
        let api = uncensored_api::Client::with_api_key_and_builder(
            &self.base_url,
            key.expose_secret(),
            configure(reqwest::Client::builder()).redirect(same_origin_redirects(&parsed)),
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        let mut http = configure(reqwest::Client::builder()).redirect(downloads.redirects());
        if let Some(resolver) = downloads.resolver() {
            http = http.dns_resolver(resolver);
        }
        let http = http
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                api,
                http,
                base_url: self.base_url,
                retry: self.retry,
                wait: self.wait,
                max_download_bytes: self.max_download_bytes,
                downloads,
                key_id: key_fingerprint(key.expose_secret()),
                pacer: self.pacer,
                last_rate_limit: Mutex::new(None),
            }),
        })
    }
}

/// What one attempt of an operation produced.
type Attempt<T> = std::result::Result<ResponseValue<T>, WireError<ErrorEnvelope>>;

impl Client {
    /// A builder with the defaults (production URL, no key yet).
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client from `UNCENSORED_API_KEY` and `UNCENSORED_BASE_URL` (default:
    /// production), with default settings.
    pub fn from_env() -> Result<Self> {
        let key = std::env::var("UNCENSORED_API_KEY").map_err(|_| {
            Error::Config("UNCENSORED_API_KEY is not set: export your API key".into())
        })?;
        let mut builder = Self::builder().api_key(key);
        if let Ok(url) = std::env::var("UNCENSORED_BASE_URL") {
            builder = builder.base_url(url);
        }
        builder.build()
    }

    /// A fingerprint of the API key: 16 hex digits of its SHA-256, the
    /// same in every process that uses the key, never the key itself (a
    /// shared pacer's row, a log line).
    pub fn key_id(&self) -> &str {
        &self.inner.key_id
    }

    /// The API's base URL.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    pub(crate) fn wait_defaults(&self) -> &WaitOptions {
        &self.inner.wait
    }

    pub(crate) fn api(&self) -> &uncensored_api::Client {
        &self.inner.api
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    pub(crate) fn download_policy(&self) -> &DownloadPolicy {
        &self.inner.downloads
    }

    pub(crate) fn max_download_bytes(&self) -> u64 {
        self.inner.max_download_bytes
    }

    /// The rate-limit headers of the latest answer, if any.
    pub fn last_rate_limit(&self) -> Option<RateLimit> {
        *self
            .inner
            .last_rate_limit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a generation: validates `request` (no network I/O if it is
    /// invalid), then POSTs it with an Idempotency-Key that stays the same
    /// across retries, so that a retried request never creates or pays for a
    /// second job. Sync requests answer [`Generation::Completed`]; requests
    /// with a callback URL answer [`Generation::Queued`].
    pub async fn generate(&self, request: &GenerateRequest) -> Result<Generation> {
        request.validate()?;
        let body = request.to_api()?;
        let key = request
            .own_idempotency_key()
            .map(str::to_string)
            .unwrap_or_else(|| format!("unc-{}", uuid::Uuid::new_v4()));
        let typed_key = types::IdempotencyKey::try_from(key.as_str())
            .map_err(|e| crate::ValidationError::new("Idempotency-Key", e.to_string()))?;
        let (response, mut meta) = self
            .send("POST", "/v1/images/generations", || {
                self.inner
                    .api
                    .generate_image()
                    .idempotency_key(typed_key.clone())
                    .body(body.clone())
                    .send()
            })
            .await?;
        meta.idempotency_key = Some(key);
        let status = response.status().as_u16();
        generation_from_api(response.into_inner(), status, meta)
    }

    /// Reads a job once.
    pub async fn job(&self, job_id: &str) -> Result<Job> {
        if job_id.is_empty() {
            return Err(crate::ValidationError::new("job_id", "must not be empty").into());
        }
        let (response, meta) = self
            .send("GET", "/v1/images/generation/jobs/{job_id}", || {
                self.inner.api.get_generation_job().job_id(job_id).send()
            })
            .await?;
        Ok(Job::from_api(response.into_inner(), meta.rate_limit))
    }

    /// Runs `attempt` under the retry policy and the pacer, with a tracing span
    /// per attempt.
    pub(crate) async fn send<T, F, Fut>(
        &self,
        method: &'static str,
        route: &'static str,
        attempt: F,
    ) -> Result<(ResponseValue<T>, ResponseMeta)>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let policy = &self.inner.retry;
        let mut backoffs = policy.backoffs();
        let mut number = 0;
        loop {
            number += 1;
            if let Some(pacer) = &self.inner.pacer {
                pacer.acquire().await;
            }
            let span = tracing::info_span!(
                "uncensored.request",
                method,
                route,
                attempt = number,
                status = tracing::field::Empty,
                request_id = tracing::field::Empty,
            );
            let outcome = attempt().instrument(span.clone()).await;
            let error = match outcome {
                Ok(response) => {
                    let rate_limit = self.observe(response.headers()).await;
                    let request_id = request_id(response.headers());
                    span.record("status", response.status().as_u16());
                    if let Some(id) = &request_id {
                        span.record("request_id", id.as_str());
                    }
                    let replayed = response
                        .headers()
                        .get("idempotent-replay")
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
                    let meta = ResponseMeta {
                        idempotency_key: None,
                        replayed,
                        rate_limit,
                        request_id,
                        attempts: number,
                    };
                    return Ok((response, meta));
                }
                Err(error) => self.classify(error, number).await,
            };
            if let Some(api) = error.api() {
                span.record("status", api.status);
            }
            let retry_after = error.api().and_then(|api| api.retry_after);
            if let (Some(pacer), Some(429)) = (&self.inner.pacer, error.api().map(|api| api.status))
            {
                // Every request on the key pauses, for at most as long as
                // this client would wait itself.
                let pause = retry_after
                    .unwrap_or(Duration::from_secs(1))
                    .min(policy.max_retry_after);
                pacer.refused(pause).await;
            }
            let delay = backoffs
                .next()
                .and_then(|backoff| policy.delay(backoff, retry_after));
            match delay {
                Some(delay) if error.is_retryable() && number < policy.max_attempts => {
                    span.in_scope(|| tracing::warn!(%error, ?delay, "retrying"));
                    tokio::time::sleep(delay).await;
                }
                _ => {
                    span.in_scope(|| tracing::debug!(%error, "giving up"));
                    return Err(error);
                }
            }
        }
    }

    async fn observe(&self, headers: &HeaderMap) -> Option<RateLimit> {
        let rate = RateLimit::from_headers(headers)?;
        *self
            .inner
            .last_rate_limit
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(rate);
        if let Some(pacer) = &self.inner.pacer {
            pacer.observe(&rate).await;
        }
        Some(rate)
    }

    async fn classify(&self, error: WireError<ErrorEnvelope>, attempts: u32) -> Error {
        match error {
            WireError::ErrorResponse(response) => {
                let rate_limit = self.observe(response.headers()).await;
                let status = response.status().as_u16();
                let request_id = request_id(response.headers());
                let retry_after = crate::retry::retry_after(response.headers());
                let detail = response.into_inner().error;
                Error::from(ApiError {
                    kind: ApiErrorKind::from_type(&detail.type_),
                    status,
                    message: detail.message,
                    param: detail.param,
                    code: detail.code,
                    request_id,
                    rate_limit,
                    retry_after,
                })
            }
            WireError::UnexpectedResponse(response) if response.status().is_redirection() => {
                let status = response.status().as_u16();
                let origin = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|location| location.to_str().ok())
                    .and_then(|location| response.url().join(location).ok())
                    .map_or_else(
                        || "(none)".to_string(),
                        |url| url.origin().ascii_serialization(),
                    );
                Error::Redirected { status, origin }
            }
            WireError::UnexpectedResponse(response) => {
                self.observe(response.headers()).await;
                let status = response.status().as_u16();
                let detail = crate::download::body_prefix(response, 800)
                    .await
                    .chars()
                    .take(200)
                    .collect();
                Error::UnexpectedResponse { status, detail }
            }
            WireError::CommunicationError(source) | WireError::ResponseBodyError(source) => {
                Error::Transport { attempts, source }
            }
            WireError::InvalidResponsePayload(_, source) => Error::UnexpectedResponse {
                status: 200,
                detail: format!("the body does not match the API's schema: {source}"),
            },
            WireError::InvalidRequest(message) => {
                Error::Invalid(crate::ValidationError::new("request", message))
            }
            other => Error::UnexpectedResponse {
                status: 0,
                detail: other.to_string(),
            },
        }
    }
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    ["x-request-id", "request-id"]
        .iter()
        .find_map(|name| headers.get(*name)?.to_str().ok().map(str::to_string))
}

/// A fingerprint of an API key: 16 hex digits of its SHA-256. Every process
/// that uses the key computes the same one, and it tells nothing of the key
/// (a shared pacer's row is named by it).
pub fn key_fingerprint(key: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(key.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}
