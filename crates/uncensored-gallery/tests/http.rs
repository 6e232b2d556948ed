//! The gallery over HTTP, as a browser (or an attacker) would talk to it:
//! names that try to leave the store, markup in prompts, the Host check,
//! the paged API, thumbnails, the batch's failures and live events.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use uncensored::{DownloadedImage, FailureReason, GenerateRequest, ImageFormat};
use uncensored_deliver::journal::{Entry, Journal, SqliteJournal, Stage};
use uncensored_deliver::storage::{
    ImageMeta, InMemory, ObjectName, ObjectStorage, Storage as _, StorageUrl,
};
use uncensored_gallery::{Gallery, GalleryError, GalleryServer};

const MARKUP: &str =
    r#"<script>window.__pwned=1</script><img src=x onerror="alert(1)"> a "quoted" prompt"#;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "uncensored-gallery-{tag}-{}-{}",
        std::process::id(),
        uuid_like()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

async fn put(storage: &ObjectStorage, job: &str, prompt: &str, model: &str, time: f64) -> String {
    let jpeg = uncensored_emulator::render_jpeg(prompt, 7, 320, 240);
    let name = ObjectName::parse(&format!("2026-05-09/{job}.jpg")).unwrap();
    let meta = ImageMeta {
        job_id: job.into(),
        prompt: prompt.into(),
        model: Some(model.into()),
        width: Some(320),
        height: Some(240),
        generation_time: Some(time),
        sha256: None,
        created_at: chrono::Utc::now(),
    };
    let image = DownloadedImage {
        bytes: jpeg.into(),
        format: ImageFormat::Jpeg,
        sha256: String::new(),
    };
    storage
        .put(&name, &mut InMemory::from(image), &meta)
        .await
        .unwrap();
    name.as_str().to_string()
}

fn failed_entry() -> Entry {
    Entry {
        id: "line7-abc".into(),
        request: GenerateRequest::new("a forbidden-term scene"),
        idempotency_key: "key-7".into(),
        stage: Stage::Failed {
            job_id: None,
            reason: FailureReason::Moderation,
            message: "Content moderation failed".into(),
        },
        notified: BTreeSet::new(),
        done: true,
        updated_at: chrono::Utc::now(),
    }
}

struct Fixture {
    dir: PathBuf,
    storage: ObjectStorage,
    server: GalleryServer,
    base: String,
}

async fn fixture() -> Fixture {
    let dir = scratch("http");
    let store = dir.join("images");
    let storage = ObjectStorage::local(&store).unwrap();
    put(&storage, "job-a", "a lighthouse at dusk", "model-dev", 12.0).await;
    put(&storage, "job-b", "a cyberpunk city", "model-pro", 25.0).await;
    put(&storage, "job-m", MARKUP, "model-dev", 7.0).await;
    // A file outside the store, and one inside it that is not an image.
    std::fs::write(dir.join("secret.jpg"), b"\xFF\xD8\xFFsecret").unwrap();
    std::fs::write(store.join("notes.jpg"), b"plain text, not an image").unwrap();
    std::fs::write(
        store.join("notes.jpg.json"),
        serde_json::to_vec(&ImageMeta {
            job_id: "notes".into(),
            prompt: "notes".into(),
            model: None,
            width: None,
            height: None,
            generation_time: None,
            sha256: Some("0".repeat(64)),
            created_at: chrono::Utc::now(),
        })
        .unwrap(),
    )
    .unwrap();
    let journal = SqliteJournal::open(&dir.join("journal.sqlite")).unwrap();
    journal.put(&failed_entry()).await.unwrap();
    journal
        .put(&Entry {
            id: "line8-def".into(),
            request: GenerateRequest::new("a harbour, still waiting"),
            idempotency_key: "key-8".into(),
            stage: Stage::Accepted {
                job_id: "job-w".into(),
            },
            done: false,
            ..failed_entry()
        })
        .await
        .unwrap();
    let server = Gallery::open(&StorageUrl::parse(store.to_str().unwrap()).unwrap())
        .await
        .unwrap()
        .with_journal(Arc::new(journal))
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", server.local_addr());
    Fixture {
        dir,
        storage,
        server,
        base,
    }
}

impl Fixture {
    async fn finish(self) {
        self.server.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One raw HTTP/1.1 GET, the target sent exactly as written (no client
/// normalises its dots away); returns the status and the body.
async fn raw_get(addr: std::net::SocketAddr, target: &str, host: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

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
