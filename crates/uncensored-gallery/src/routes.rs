//! The HTTP surface: the page and its assets (embedded), the paged JSON API,
//! thumbnails and full images, and the event stream. Only images the
//! catalog listed are served, by a name checked by the storage layer: a
//! request can never name anything else.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use uncensored::ImageFormat;
use uncensored_deliver::storage::{ObjectName, Storage as _};

use crate::access::{Access, Proof};
use crate::catalog::{self, ImageRecord};
use crate::live;
use crate::server::Shared;
use crate::thumbs::NoThumbnail;

const INDEX: &str = include_str!("../assets/index.html");
const SCRIPT: &str = include_str!("../assets/app.js");
const STYLE: &str = include_str!("../assets/app.css");

/// No inline script or style, nothing from elsewhere: data can only ever be text.
/// The largest image served (and thumbnailed): far above any the API makes.
const MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024;

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(script))
        .route("/app.css", get(style))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/api/images", get(images))
        .route("/api/image/{*name}", get(image_record))
        .route("/api/batch", get(batch))
        .route("/api/events", get(events))
        .route("/thumbs/{*name}", get(thumbnail))
        .route("/images/{*name}", get(full_image))
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

/// Headers every answer carries, the Host check (a page on another site
/// cannot read this server through a name that resolves to loopback), and
/// the access token when there is one (see [`crate::access`]).
async fn guard(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    if !shared.options.allow_remote {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if !is_local_host(host) {
            return (
                StatusCode::FORBIDDEN,
                "this gallery answers on loopback only",
            )
                .into_response();
        }
    }
    let proof = match &shared.access {
        Some(access) => match access.check(request.headers(), request.uri().query()) {
            Some(proof) => Some(proof),
            None => return with_policy(Access::refused()),
        },
        None => None,
    };
    let mut response = next.run(request).await;
    if let (Some(Proof::Query), Some(access)) = (proof, &shared.access)
        && let Some(cookie) = access.set_cookie()
    {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    with_policy(response)
}

fn with_policy(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn images(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<catalog::Query>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return (StatusCode::BAD_REQUEST, "bad query").into_response();
    };
    let jobs = shared.batch_view().stored_jobs.clone();
    axum::Json(shared.catalog.page(&query, &jobs)).into_response()
}

async fn batch(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.batch_view().as_ref().clone()).into_response()
}

async fn events(State(shared): State<Arc<Shared>>) -> Response {
    live::events(shared.changes.subscribe(), shared.closing.clone()).into_response()
}

/// The record of a listed image, or the answer to give instead: 400 for a
/// name that is not a safe relative name, 404 for one the catalog does not hold.
fn listed(
    shared: &Shared,
    name: &str,
) -> Result<(ObjectName, Arc<ImageRecord>), (StatusCode, &'static str)> {
    let Ok(object) = ObjectName::parse(name) else {
        return Err((StatusCode::BAD_REQUEST, "not a safe image name"));
    };
    match shared.catalog.get(object.as_str()) {
        Some(record) => Ok((object, record)),
        None => Err((StatusCode::NOT_FOUND, "no such image")),
    }
}

async fn image_record(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    match listed(&shared, &name) {
        Ok((_, record)) => axum::Json(record.as_ref()).into_response(),
        Err(refused) => refused.into_response(),
    }
}

fn image_response(bytes: bytes::Bytes, cache: &'static str) -> Response {
    // Only images leave: bytes that are not one are refused, whatever their name.
    let Some(format) = ImageFormat::sniff(&bytes) else {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not an image").into_response();
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.mime()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    (headers, bytes).into_response()
}

fn storage_failure(error: impl std::fmt::Display) -> Response {
    tracing::warn!(%error, "cannot read an image");
    (StatusCode::BAD_GATEWAY, "the storage could not be read").into_response()
}

async fn full_image(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let (object, _) = match listed(&shared, &name) {
        Ok(found) => found,
        Err(refused) => return refused.into_response(),
    };
    match shared
        .catalog
        .storage()
        .read(&object, MAX_IMAGE_BYTES)
        .await
    {
        Ok(Some(bytes)) => image_response(bytes, "private, max-age=3600"),
        Ok(None) => (StatusCode::NOT_FOUND, "no such image").into_response(),
        Err(error) => storage_failure(error),
    }
}

async fn thumbnail(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let (object, record) = match listed(&shared, &name) {
        Ok(found) => found,
        Err(refused) => return refused.into_response(),
    };
    let storage = shared.catalog.storage();
    let made = shared
        .thumbnails
        .get_or_make(&record.sha256, storage.read(&object, MAX_IMAGE_BYTES))
        .await;
    match made {
        Ok(thumb) => image_response(thumb, "private, max-age=86400"),
        Err(NoThumbnail::Missing) => (StatusCode::NOT_FOUND, "no such image").into_response(),
        Err(NoThumbnail::Storage(error)) => storage_failure(error),
        // Over the decoding limits, or not an image: the page shows the
        // prompt instead, and nothing is decoded for this image again.
        Err(refused @ NoThumbnail::Thumbnail(_)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, refused.to_string()).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_loopback_hosts_are_local() {
        for host in [
            "127.0.0.1:8788",
            "localhost:1",
            "[::1]:80",
            "LOCALHOST",
            "127.0.0.2",
        ] {
            assert!(super::is_local_host(host), "{host}");
        }
        for host in [
            "example.com",
            "evil.localhost.example:80",
            "10.0.0.1:8788",
            "",
            "[fe80::1]:1",
        ] {
            assert!(!super::is_local_host(host), "{host}");
        }
    }
}
