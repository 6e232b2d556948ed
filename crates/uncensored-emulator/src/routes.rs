//! The HTTP surface: the two API operations under `/api`, the image files, and
//! the `/_emulator` admin routes. Cross-cutting behaviour (auth, rate limits,
//! latency and failure injection, statistics) lives in one middleware.

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use crate::config::{KeyConfig, ModelConfig};
use crate::error::ApiError;
use crate::picture::render_jpeg;
use crate::state::{AppState, Begin, Job, JobState};
use crate::webhook::pause;

const GENERATIONS: &str = "/v1/images/generations";
const JOB: &str = "/v1/images/generation/jobs/{job_id}";

/// The emulator's whole router.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route(GENERATIONS, post(generate_image))
        .route(JOB, get(get_job))
        .fallback(api_not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            api_middleware,
        ));
    Router::new()
        .nest("/api", api)
        .route("/images/{file}", get(image))
        .route("/_emulator/stats", get(stats))
        .route("/_emulator/reset", post(reset))
        .fallback(|| async { ApiError::not_found(None, "No such route") })
        .with_state(state)
}

/// The account a request authenticated as, for the handlers.
#[derive(Clone)]
struct Account(KeyConfig);

fn has_scope(account: &KeyConfig, model: Option<&str>) -> bool {
    account.scopes.iter().any(|scope| match scope.as_str() {
        "image:*" | "image:gen:*" => true,
        other => match (other.strip_prefix("image:gen:"), model) {
            (Some(allowed), Some(model)) => allowed == model,
            (Some(_), None) => true,
            _ => false,
        },
    })
}

/// Auth, rate limit, faults, rate-limit headers and statistics for every API request.
async fn api_middleware(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().trim_start_matches("/api").to_string())
        .unwrap_or_else(|| "(unknown route)".into());
    let route = format!("{} {route}", request.method());
    let faults = &state.config.faults;
    if faults.latency_ms > 0 {
        pause(&state, Duration::from_millis(faults.latency_ms)).await;
    }

    let account = request
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .and_then(|key| state.accounts.get(key))
        .cloned();
    let (bucket, limit) = match &account {
        Some(a) => (
            a.name.clone(),
            a.rate_limit_rpm.unwrap_or(state.config.rate_limit_rpm),
        ),
        None => ("(anonymous)".to_string(), state.config.rate_limit_rpm),
    };
    let rate = state.rate_check(&bucket, limit);

    let mut response = if let Some(account) = account {
        authenticated(&state, account, rate, request, next).await
    } else {
        let message = if request.headers().contains_key("x-api-key") {
            "Invalid API key"
        } else {
            "Missing API key: send it in the x-api-key header"
        };
        ApiError::unauthorized(message).into_response()
    };

    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        // axum answers 405 with an empty body; keep its Allow header, add the envelope.
        let allow = response.headers().get(header::ALLOW).cloned();
        response = ApiError::invalid(None, "Method not allowed on this route").into_response();
        *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        if let Some(allow) = allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit-requests", HeaderValue::from(rate.limit));
    headers.insert(
        "x-ratelimit-remaining-requests",
        HeaderValue::from(rate.remaining),
    );
    let reset = rate
        .reset
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    headers.insert(
        "x-ratelimit-reset-requests",
        HeaderValue::from_str(&reset).expect("RFC 3339 is ASCII"),
    );
    let status = response.status().as_u16();
    state.with_stats(|s| {
        *s.requests
            .entry(route)
            .or_default()
            .entry(status)
            .or_default() += 1
    });
    response
}

/// What an authenticated request gets: 429, 403, an injected fault, or the handler.
async fn authenticated(
    state: &AppState,
    account: KeyConfig,
    rate: crate::state::RateInfo,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(retry_after) = rate.retry_after {
        return ApiError::rate_limited(retry_after).into_response();
    }
    if !has_scope(&account, None) {
        return ApiError::forbidden("This API key lacks the image:gen:* scope").into_response();
    }
    let faults = &state.config.faults;
    let (drop, fail, unavailable, throttle) = state.with_rng(|rng| {
        (
            rng.chance(faults.drop_rate),
            rng.chance(faults.fail_rate),
            rng.next_u64() & 1 == 1,
            rng.chance(faults.throttle_rate),
        )
    });
    if drop {
        state.with_stats(|s| s.faults.dropped += 1);
        return dropped_connection();
    }
    if fail {
        state.with_stats(|s| s.faults.server_errors += 1);
        return ApiError::server(unavailable).into_response();
    }
    if throttle {
        state.with_stats(|s| s.faults.throttled += 1);
        return ApiError::rate_limited(1).into_response();
    }
    request.extensions_mut().insert(Account(account));
    next.run(request).await
}

/// A response whose body fails at once, so that the connection is cut.
fn dropped_connection() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<Bytes, _>(std::io::Error::other("injected drop"))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(failing))
        .expect("a static response builds")
}

async fn api_not_found() -> ApiError {
    ApiError::not_found(None, "No such API route")
}

/// `POST /v1/images/generations`.
async fn generate_image(
    State(state): State<AppState>,
    axum::Extension(Account(account)): axum::Extension<Account>,
    request: Request,
) -> Response {
    let headers = request.headers().clone();
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => match value.to_str().ok().filter(|k| valid_idempotency_key(k)) {
            Some(key) => Some(key.to_string()),
            None => {
                return ApiError::invalid(
                    Some("Idempotency-Key"),
                    "Idempotency-Key must be 1 to 255 characters from letters, digits and _ - . / :",
                )
                .into_response();
            }
        },
    };
    let body = match axum::body::to_bytes(request.into_body(), state.config.max_body_bytes).await {
        Ok(body) => body,
        Err(_) => return ApiError::too_large(state.config.max_body_bytes).into_response(),
    };

    let Some(key) = idempotency_key else {
        let (status, body) = run_detached(&state, account, headers, body, None).await;
        return json_response(status, body, false);
    };
    // Same body means the same JSON value; bytes when it is not JSON.
    let fingerprint = match serde_json::from_slice::<Value>(&body) {
        Ok(value) => serde_json::to_vec(&value).expect("a JSON value serialises"),
        Err(_) => body.to_vec(),
    };
    match state.idempotency_begin(&account.name, &key, &fingerprint) {
        Begin::Replay { status, body } => {
            state.with_stats(|s| s.idempotent_replays += 1);
            json_response(status, body, true)
        }
        Begin::Reuse => ApiError::key_reuse().into_response(),
        Begin::InFlight => ApiError::in_flight().into_response(),
        Begin::Started => {
            let (status, body) = run_detached(&state, account, headers, body, Some(key)).await;
            json_response(status, body, false)
        }
    }
}

/// Processes a generation in a task of its own, as the service does: a client
/// that goes away (a dropped connection, a killed process) does not cancel a
/// job that may already be charged, and its answer is still cached for the
/// retry that carries the same Idempotency-Key.
async fn run_detached(
    state: &AppState,
    account: KeyConfig,
    headers: HeaderMap,
    body: Bytes,
    key: Option<String>,
) -> (u16, Bytes) {
    let task = tokio::spawn({
        let state = state.clone();
        let (account, key) = (account.clone(), key.clone());
        async move {
            let outcome = answer(process(&state, &account, &headers, &body, key.as_deref()).await);
            if let Some(key) = &key {
                state.idempotency_finish(&account.name, key, Some(outcome.clone()));
            }
            outcome
        }
    });
    match task.await {
        Ok(outcome) => outcome,
        Err(_) => {
            if let Some(key) = &key {
                state.idempotency_finish(&account.name, key, None);
            }
            answer(Err(ApiError::server(false)))
        }
    }
}

fn answer(outcome: Result<(StatusCode, Value), ApiError>) -> (u16, Bytes) {
    let (status, value) = match outcome {
        Ok((status, value)) => (status, value),
        Err(error) => (error.status, error.body()),
    };
    (
        status.as_u16(),
        Bytes::from(serde_json::to_vec(&value).expect("a JSON value serialises")),
    )
}

fn json_response(status: u16, body: Bytes, replay: bool) -> Response {
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("a JSON response builds");
    if replay {
        response
            .headers_mut()
            .insert("idempotent-replay", HeaderValue::from_static("true"));
    }
    response
}

/// Whether `key` follows the documented Idempotency-Key rules.
pub fn valid_idempotency_key(key: &str) -> bool {
    (1..=255).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b':'))
}

/// A request that passed validation.
struct Valid<'a> {
    prompt: String,
    model: &'a ModelConfig,
    width: u32,
    height: u32,
    callback_url: Option<url::Url>,
    price: u64,
    seed: u64,
    image_bytes: u64,
}

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

fn validate<'a>(
    state: &'a AppState,
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
    let string = |name: &str| -> Result<Option<&str>, ApiError> {
        match fields.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid(
                Some(name),
                format!("{name} must be a string"),
            )),
        }
    };
    let prompt =
        string("prompt")?.ok_or_else(|| ApiError::invalid(Some("prompt"), "prompt is required"))?;
    let length = prompt.chars().count();
    if !(1..=2000).contains(&length) {
        return Err(ApiError::invalid(
            Some("prompt"),
            format!("prompt must be 1 to 2000 characters, not {length}"),
        ));
    }
    let model_name = string("model")?.unwrap_or(&state.config.default_model);
    let model = state
        .model(model_name)
        .ok_or_else(|| ApiError::invalid(Some("model"), format!("Unknown model: {model_name}")))?;
    let dimension = |name: &str| -> Result<u32, ApiError> {
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
    };
    let (width, height) = (dimension("image_width")?, dimension("image_height")?);
    let callback_url = match string("callback_url")? {
        None => None,
        Some(text) => match url::Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Some(url)
            }
            _ => {
                return Err(ApiError::invalid(
                    Some("callback_url"),
                    "callback_url must be an absolute http(s) URL of at most 2048 characters",
                ));
            }
        },
    };
    let multiplier =
        |name: &str, table: &std::collections::BTreeMap<String, u64>| -> Result<u64, ApiError> {
            match (string(name)?, table.is_empty()) {
                (None, _) | (Some(_), true) => Ok(1),
                (Some(choice), false) => table.get(choice).copied().ok_or_else(|| {
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
        };
    let price = model.price
        * multiplier("resolution", &model.resolutions)?
        * multiplier("quality", &model.qualities)?;
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
                .min(1 << 30),
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

/// Validates, checks scope, moderation and balance, charges, and runs the job.
async fn process(
    state: &AppState,
    account: &KeyConfig,
    headers: &HeaderMap,
    body: &[u8],
    idempotency_key: Option<&str>,
) -> Result<(StatusCode, Value), ApiError> {
    let valid = validate(state, headers, body)?;
    if !has_scope(account, Some(&valid.model.name)) {
        return Err(ApiError::forbidden(format!(
            "This API key's scopes do not permit {}",
            valid.model.name
        ))
        .with_param("model"));
    }
    let lowered = valid.prompt.to_lowercase();
    if state
        .config
        .blocked_terms
        .iter()
        .any(|term| lowered.contains(&term.to_lowercase()))
    {
        return Err(ApiError::forbidden("Content moderation failed")
            .with_param("prompt")
            .with_code("content_moderation"));
    }
    state
        .charge(&account.name, valid.price, idempotency_key)
        .map_err(|balance| ApiError::insufficient_funds(valid.price, balance))?;

    let g = state.config.generation_seconds;
    let (generation_time, fails) = state.with_rng(|rng| {
        let seconds = (rng.between(g.min, g.max) * 10.0).round() / 10.0;
        (seconds, rng.chance(state.config.faults.failed_job_rate))
    });
    let id = state.new_job_id();
    let job = Job {
        id: id.clone(),
        owner: account.name.clone(),
        prompt: valid.prompt,
        model: valid.model.name.clone(),
        width: valid.width,
        height: valid.height,
        seed: valid.seed,
        image_bytes: valid.image_bytes,
        created_at: chrono::Utc::now(),
        generation_time,
        status: JobState::Processing,
    };
    state.insert_job(job.clone());
    let real_time = Duration::from_secs_f64(generation_time * state.config.time_scale);
    let price = valid.price;

    match valid.callback_url {
        Some(url) => {
            let background = state.clone();
            let target = url.clone();
            tokio::spawn(async move {
                if pause(&background, real_time).await
                    && let Some(job) = complete(&background, &id, fails, price)
                {
                    crate::webhook::deliver(background, job, target).await;
                }
            });
            Ok((
                StatusCode::ACCEPTED,
                json!({
                    "job_id": job.id,
                    "status": "processing",
                    "status_url": format!("{}/v1/images/generation/jobs/{}", state.base_url, job.id),
                    "webhook_url": url.as_str(),
                    "created_at": job.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                }),
            ))
        }
        None => {
            if !pause(state, real_time).await {
                return Err(ApiError::server(true));
            }
            let job = complete(state, &id, fails, price).expect("the job was just inserted");
            let mut body =
                json!({"job_id": job.id, "status": job.status.name(), "model": job.model});
            match job.status {
                JobState::Completed(_) => {
                    body["url"] = json!(image_url(state, &job));
                    body["generation_time"] = json!(job.generation_time);
                }
                _ => body["error"] = failure(),
            }
            Ok((StatusCode::OK, body))
        }
    }
}

fn failure() -> Value {
    json!({"message": "The generation failed upstream", "code": "generation_failed"})
}

/// Ends a job as completed or failed (refunding a failed one).
fn complete(state: &AppState, id: &str, fails: bool, price: u64) -> Option<Job> {
    let now = chrono::Utc::now();
    let job = state.finish_job(
        id,
        if fails {
            JobState::Failed(now)
        } else {
            JobState::Completed(now)
        },
    )?;
    if fails {
        state.refund(&job.owner, price);
        state.with_stats(|s| s.faults.failed_jobs += 1);
    }
    Some(job)
}

fn image_url(state: &AppState, job: &Job) -> String {
    format!("{}/images/{}.jpg", state.origin, job.id)
}

/// A job as `GET /v1/images/generation/jobs/{job_id}` shows it.
pub fn job_json(state: &AppState, job: &Job) -> Value {
    let secs = chrono::SecondsFormat::Secs;
    let mut body = Map::new();
    body.insert("job_id".into(), json!(job.id));
    body.insert("status".into(), json!(job.status.name()));
    body.insert("model".into(), json!(job.model));
    body.insert(
        "created_at".into(),
        json!(job.created_at.to_rfc3339_opts(secs, true)),
    );
    match &job.status {
        JobState::Processing => {}
        JobState::Completed(at) => {
            body.insert("image_url".into(), json!(image_url(state, job)));
            body.insert("completed_at".into(), json!(at.to_rfc3339_opts(secs, true)));
            body.insert("generation_time".into(), json!(job.generation_time));
        }
        JobState::Failed(_) => {
            body.insert("error".into(), failure());
        }
    }
    Value::Object(body)
}

/// `GET /v1/images/generation/jobs/{job_id}`: only the owner sees a job.
async fn get_job(
    State(state): State<AppState>,
    axum::Extension(Account(account)): axum::Extension<Account>,
    Path(job_id): Path<String>,
) -> Response {
    match state.job(&job_id).filter(|job| job.owner == account.name) {
        Some(job) => axum::Json(job_json(&state, &job)).into_response(),
        None => {
            ApiError::not_found(Some("job_id"), format!("No job with id {job_id}")).into_response()
        }
    }
}

/// `GET /images/{job_id}.jpg`: the generated image, like a public object store.
async fn image(
    State(state): State<AppState>,
    method: Method,
    Path(file): Path<String>,
) -> Response {
    let job = file
        .strip_suffix(".jpg")
        .and_then(|id| state.job(id))
        .filter(|job| matches!(job.status, JobState::Completed(_)));
    let Some(job) = job else {
        return ApiError::not_found(None, "No such image").into_response();
    };
    let jpeg = Bytes::from(render_jpeg(&job.prompt, job.seed, job.width, job.height));
    let (parts, length) = padded(jpeg, job.image_bytes);
    let truncate = method == Method::GET
        && state.with_rng(|rng| rng.chance(state.config.faults.truncate_rate));
    let body = if truncate {
        state.with_stats(|s| s.faults.truncated += 1);
        // Half the bytes, then the connection is cut. Pending for a moment lets
        // hyper flush the head and that half, so that the client sees a short
        // body rather than no answer at all.
        let mut left = length / 2;
        let half: Vec<Result<Bytes, std::io::Error>> = parts
            .into_iter()
            .map_while(|part| {
                (left > 0).then(|| {
                    let take = part.len().min(left);
                    left -= take;
                    Ok(part.slice(..take))
                })
            })
            .collect();
        let cut = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err(std::io::Error::other("injected truncation"))
        };
        Body::from_stream(futures_util::StreamExt::chain(
            futures_util::stream::iter(half),
            futures_util::stream::once(cut),
        ))
    } else {
        Body::from_stream(futures_util::stream::iter(
            parts.into_iter().map(Ok::<Bytes, std::io::Error>),
        ))
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "image/jpeg")
        .header(header::CONTENT_LENGTH, length)
        .body(body)
        .expect("an image response builds")
}

/// The JPEG as chunks, padded with comment segments to at least `at_least`
/// bytes (streamed: one 64 KiB segment shared by every chunk), and its length.
fn padded(jpeg: Bytes, at_least: u64) -> (Vec<Bytes>, usize) {
    const SEGMENT: usize = 65_537; // FF FE, a two-byte length of 65535, 65533 bytes of comment
    let missing = (at_least as usize).saturating_sub(jpeg.len());
    if missing == 0 {
        let length = jpeg.len();
        return (vec![jpeg], length);
    }
    let mut segment = vec![0u8; SEGMENT];
    segment[..4].copy_from_slice(&[0xFF, 0xFE, 0xFF, 0xFF]);
    let segment = Bytes::from(segment);
    let count = missing.div_ceil(SEGMENT);
    let mut parts = Vec::with_capacity(count + 2);
    parts.push(jpeg.slice(..2)); // SOI
    parts.extend(std::iter::repeat_n(segment, count));
    parts.push(jpeg.slice(2..));
    (parts, jpeg.len() + count * SEGMENT)
}

async fn stats(State(state): State<AppState>) -> axum::Json<crate::state::Stats> {
    axum::Json(state.stats())
}

async fn reset(State(state): State<AppState>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}
