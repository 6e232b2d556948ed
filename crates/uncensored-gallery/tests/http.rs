//! The gallery over HTTP, as a browser (or an attacker) would talk to it:
//! names that try to leave the store, markup in prompts, the Host check,
//! the paged API, thumbnails, the batch's failures and live events.

mod support;

use std::path::Path;

use futures_util::StreamExt as _;
use uncensored::{FailureReason, ImageFormat};
use uncensored_deliver::storage::{ImageMeta, StorageUrl};
use uncensored_gallery::{Gallery, GalleryError};

use support::{MARKUP, fixture, put, put_image, raw_get, scratch};

#[tokio::test]
async fn no_request_leaves_the_store() {
    let f = fixture().await;
    let addr = f.server.local_addr();
    let host = addr.to_string();
    for target in [
        "/images/..%2F..%2Fetc%2Fpasswd",
        "/images/../../etc/passwd",
        "/images/%2e%2e/%2e%2e/etc/passwd",
        "/images/%2Fetc%2Fpasswd",
        "/images/..%2Fsecret.jpg",
        "/images/..%5Csecret.jpg",
        "/thumbs/..%2F..%2Fetc%2Fpasswd",
        "/thumbs/..%2Fsecret.jpg",
        "/api/image/..%2Fsecret.jpg",
        "/images/2026-05-09/%2e%2e/%2e%2e/secret.jpg",
        "/images/2026-05-09//job-a.jpg",
    ] {
        let (status, body) = raw_get(addr, target, &host).await;
        assert!(status == 400 || status == 404, "{target}: {status} {body}");
        assert!(
            !body.contains("secret") && !body.contains("root:"),
            "{target}: {body}"
        );
    }
    // Only listed images: not a sidecar, not the journal, not bytes that are no image.
    for (target, expected) in [
        ("/images/2026-05-09/job-a.jpg.json", 404),
        ("/images/journal.sqlite", 404),
        ("/images/notes.jpg", 415),
        ("/images/2026-05-09/job-a.jpg", 200),
    ] {
        let (status, _) = raw_get(addr, target, &host).await;
        assert_eq!(status, expected, "{target}");
    }
    f.finish().await;
}

#[tokio::test]
async fn markup_in_a_prompt_is_data_never_code() {
    let f = fixture().await;
    let client = reqwest::Client::new();
    let page = client.get(format!("{}/", f.base)).send().await.unwrap();
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        policy.contains("script-src 'self'") && !policy.contains("unsafe"),
        "{policy}"
    );
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();
    assert!(!html.contains("__pwned"), "the page embeds no data");
    // The JSON carries the prompt as a JSON string, served as JSON.
    let api = client
        .get(format!("{}/api/images?q=quoted", f.base))
        .send()
        .await
        .unwrap();
    assert!(
        api.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let page: serde_json::Value = api.json().await.unwrap();
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["prompt"], MARKUP);
    // The page's script builds the DOM from text only.
    let script = client
        .get(format!("{}/app.js", f.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(script.contains("textContent"));
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!script.contains(sink), "app.js uses {sink}");
    }
    f.finish().await;
}

#[tokio::test]
async fn a_foreign_host_is_refused() {
    let f = fixture().await;
    let addr = f.server.local_addr();
    let (status, _) = raw_get(addr, "/api/images", "attacker.example").await;
    assert_eq!(status, 403, "DNS rebinding: a name that is not loopback");
    let (status, _) = raw_get(addr, "/api/images", &format!("localhost:{}", addr.port())).await;
    assert_eq!(status, 200);
    f.finish().await;
}

#[tokio::test]
async fn pages_filter_sort_and_thumbnails() {
    let f = fixture().await;
    let client = reqwest::Client::new();
    let get = |query: &str| {
        let url = format!("{}/api/images?{query}", f.base);
        let client = client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let prompts = |page: &serde_json::Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["prompt"].as_str().unwrap().to_string())
            .collect()
    };
    let all = get("sort=time").await;
    assert_eq!(all["stored"], 4, "the three images and the non-image");
    let times: Vec<f64> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["generation_time"].as_f64())
        .collect();
    assert_eq!(times, [25.0, 12.0, 7.0]);
    assert_eq!(
        prompts(&get("q=LIGHTHOUSE%20dusk").await),
        ["a lighthouse at dusk"]
    );
    assert_eq!(prompts(&get("model=model-pro").await), ["a cyberpunk city"]);
    let second = get("sort=time_asc&offset=1&limit=1").await;
    assert_eq!(
        (second["total"].as_u64(), prompts(&second).len()),
        (Some(4), 1)
    );
    assert_eq!(get("to=2000-01-01").await["total"], 0);
    assert_eq!(
        get("batch=journal").await["total"],
        0,
        "the journal stored none of them"
    );
    assert_eq!(
        get("models=x").await["models"],
        serde_json::json!(["model-dev", "model-pro"])
    );
    let thumb = client
        .get(format!("{}/thumbs/2026-05-09/job-a.jpg", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(thumb.headers()["content-type"], "image/jpeg");
    let bytes = thumb.bytes().await.unwrap();
    let image = image::load_from_memory(&bytes).unwrap();
    assert_eq!((image.width(), image.height()), (256, 192));
    let detail: serde_json::Value = client
        .get(format!("{}/api/image/2026-05-09/job-a.jpg", f.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["job_id"], "job-a");
    assert_eq!(detail["sha256"].as_str().unwrap().len(), 64);
    f.finish().await;
}

#[tokio::test]
async fn an_image_that_declares_too_many_pixels_gets_no_thumbnail() {
    let f = fixture().await;
    // 3 MB of PNG that decodes to 11,000 x 11,000 pixels (461 MiB).
    let bomb = uncensored_test_servers::images::blank_png(11_000, 11_000);
    let meta = ImageMeta {
        job_id: "job-bomb".into(),
        prompt: "a very large nothing".into(),
        model: None,
        width: Some(11_000),
        height: Some(11_000),
        generation_time: None,
        sha256: None,
        created_at: chrono::Utc::now(),
    };
    let name = put_image(
        &f.storage,
        "2026-05-09/job-bomb.png",
        bomb,
        ImageFormat::Png,
        meta,
    )
    .await;
    f.server.refresh().await;
    let client = reqwest::Client::new();
    // Refused from its header, and again (remembered, not decoded again).
    for _ in 0..2 {
        let thumb = client
            .get(format!("{}/thumbs/{name}", f.base))
            .send()
            .await
            .unwrap();
        assert_eq!(thumb.status(), 422);
        let text = thumb.text().await.unwrap();
        assert!(text.contains("over the decoding limits"), "{text}");
    }
    // The other thumbnails and the image itself are served as before.
    let other = client
        .get(format!("{}/thumbs/2026-05-09/job-a.jpg", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(other.headers()["content-type"], "image/jpeg");
    let image = client
        .get(format!("{}/images/{name}", f.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            image.status().as_u16(),
            image.headers()["content-type"].to_str().unwrap()
        ),
        (200, "image/png")
    );
    f.finish().await;
}

#[tokio::test]
async fn failures_come_with_their_advice_and_lines_in_flight_show() {
    let f = fixture().await;
    let batch: serde_json::Value = reqwest::get(format!("{}/api/batch", f.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(batch["journal"], true);
    let failed = &batch["failed"][0];
    assert_eq!(failed["reason"], "moderation");
    assert_eq!(failed["advice"], FailureReason::Moderation.advice());
    assert_eq!(failed["prompt"], "a forbidden-term scene");
    assert_eq!(batch["failed"].as_array().unwrap().len(), 1);
    let waiting = &batch["in_flight"];
    assert_eq!(waiting.as_array().unwrap().len(), 1, "{batch}");
    assert_eq!(waiting[0]["prompt"], "a harbour, still waiting");
    assert_eq!(waiting[0]["stage"], "accepted");
    assert_eq!(batch["lines"], 2);
    f.finish().await;
}

#[tokio::test]
async fn a_new_image_is_pushed_to_open_pages() {
    let f = fixture().await;
    let response = reqwest::get(format!("{}/api/events", f.base))
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = response.bytes_stream();
    put(&f.storage, "job-new", "a new arrival", "model-dev", 3.0).await;
    // Read now rather than at the next poll: no waiting on time.
    f.server.refresh().await;
    let mut seen = String::new();
    while !(seen.contains("event: image") && seen.contains("a new arrival")) {
        let chunk = events.next().await.expect("the stream stays open").unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        !seen.contains("job-a"),
        "only new images are pushed: {seen}"
    );
    f.finish().await;
}

#[tokio::test]
async fn a_missing_store_or_a_public_address_is_refused_before_serving() {
    let missing = scratch("missing").join("not-there");
    let error = Gallery::open(&StorageUrl::parse(missing.to_str().unwrap()).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(error, GalleryError::MissingDirectory(_)),
        "{error}"
    );
    assert!(
        error.to_string().contains(missing.to_str().unwrap()),
        "{error}"
    );
    assert!(!Path::new(&missing).exists(), "the gallery creates nothing");
    let memory = StorageUrl::parse("memory://").unwrap();
    let error = Gallery::open(&memory)
        .await
        .unwrap()
        .serve("0.0.0.0:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(error, GalleryError::NotLoopback(_)), "{error}");
}
