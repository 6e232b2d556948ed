//! `GET /images/{job_id}.jpg`: a completed job's JPEG, like a public object
//! store serves it, optionally padded to a large size (for benchmarks) and
//! optionally cut short (an injected truncation).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::picture::render_jpeg;
use crate::state::{AppState, JobState};

/// `GET /images/{job_id}.jpg`: the generated image, like a public object store.
pub async fn image(
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
        truncated(parts, length)
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

/// Half of the `length` bytes in `parts`, then the connection is cut.
fn truncated(parts: Vec<Bytes>, length: usize) -> Body {
    // Pending for a moment lets hyper flush the head and that half, so that
    // the client sees a short body rather than no answer at all.
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
