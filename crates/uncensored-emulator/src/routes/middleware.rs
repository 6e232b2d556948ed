//! What every request under `/api` goes through before and after its handler:
//! added latency, authentication and scopes, the per-key rate limit, injected
//! faults (server errors, throttling, dropped connections), the envelope on
//! `405`, the `x-ratelimit-*` headers, and the per-route statistics.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::KeyConfig;
use crate::error::ApiError;
use crate::state::{AppState, RateInfo};

/// The account a request authenticated as, for the handlers.
#[derive(Clone)]
pub struct Account(pub KeyConfig);

/// Whether `account` may generate images, with `model` when one is named.
pub fn has_scope(account: &KeyConfig, model: Option<&str>) -> bool {
    account.scopes.iter().any(|scope| match scope.as_str() {
        "image:*" | "image:gen:*" => true,
        other => match (other.strip_prefix("image:gen:"), model) {
            (Some(allowed), Some(model)) => allowed == model,
            (Some(_), None) => true,
            _ => false,
        },
    })
}

/// The scope of the billing group: the balance, the transactions and (an
/// assumption of openapi.yaml) the limits.
pub const BILLING_READ: &str = "billing:read";

/// Whether `account` may read the balance and the transactions.
pub fn has_billing_scope(account: &KeyConfig) -> bool {
    account.scopes.iter().any(|scope| scope == BILLING_READ)
}

/// Auth, rate limit, faults, rate-limit headers and statistics for every API request.
pub async fn api_middleware(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().trim_start_matches("/api").to_string())
        .unwrap_or_else(|| "(unknown route)".into());
    let route = format!("{} {route}", request.method());
    let faults = &state.config.faults;
    if faults.latency_ms > 0 {
        state.pause(Duration::from_millis(faults.latency_ms)).await;
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

    // The billing routes check their own scope (`billing:read`, which
    // `image:*` does not imply); every other route needs an image scope.
    let image_route = !request
        .uri()
        .path()
        .trim_start_matches("/api")
        .starts_with("/v1/billing/");
    let mut response = if let Some(account) = account {
        authenticated(&state, account, rate, image_route, request, next).await
    } else {
        let message = if request.headers().contains_key("x-api-key") {
            "Invalid API key"
        } else {
            "Missing API key: send it in the x-api-key header"
        };
        ApiError::unauthorized(message).into_response()
    };

    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        response = method_not_allowed(&response);
    }
    rate_limit_headers(&mut response, &rate);
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
    rate: RateInfo,
    image_route: bool,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(retry_after) = rate.retry_after {
        return ApiError::rate_limited(retry_after).into_response();
    }
    if image_route && !has_scope(&account, None) {
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

/// axum answers 405 with an empty body: the envelope instead, keeping its
/// `Allow` header.
fn method_not_allowed(plain: &Response) -> Response {
    let allow = plain.headers().get(header::ALLOW).cloned();
    let mut response = ApiError::invalid(None, "Method not allowed on this route").into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    if let Some(allow) = allow {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}

/// The `x-ratelimit-*` headers every API response carries.
fn rate_limit_headers(response: &mut Response, rate: &RateInfo) {
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
