//! The gallery tests' fixture: a folder of images with sidecars (one prompt
//! with markup, one file that is not an image), a journal with a failed line
//! and one in flight, a file outside the store, and the gallery serving them.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use uncensored::{DownloadedImage, FailureReason, GenerateRequest, ImageFormat};
use uncensored_deliver::journal::{Entries as _, Entry, SqliteJournal, Stage};
use uncensored_deliver::storage::{
    ImageMeta, InMemory, ObjectName, ObjectStorage, Storage as _, StorageUrl,
};
use uncensored_gallery::{Gallery, GalleryOptions, GalleryServer};

pub const MARKUP: &str =
    r#"<script>window.__pwned=1</script><img src=x onerror="alert(1)"> a "quoted" prompt"#;

pub fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "uncensored-gallery-{tag}-{}-{}",
        std::process::id(),
        uuid_like()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn uuid_like() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub async fn put(
    storage: &ObjectStorage,
    job: &str,
    prompt: &str,
    model: &str,
    time: f64,
) -> String {
    let jpeg = uncensored_emulator::render_jpeg(prompt, 7, 320, 240);
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
    put_image(
        storage,
        &format!("2026-05-09/{job}.jpg"),
        jpeg,
        ImageFormat::Jpeg,
        meta,
    )
    .await
}

/// Stores `bytes` as `name` with the sidecar `meta`; returns the name.
pub async fn put_image(
    storage: &ObjectStorage,
    name: &str,
    bytes: Vec<u8>,
    format: ImageFormat,
    meta: ImageMeta,
) -> String {
    let name = ObjectName::parse(name).unwrap();
    let image = DownloadedImage {
        bytes: bytes.into(),
        format,
        sha256: String::new(),
    };
    storage
        .put(&name, &mut InMemory::from(image), &meta)
        .await
        .unwrap();
    name.as_str().to_string()
}

pub fn failed_entry() -> Entry {
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

pub struct Fixture {
    pub dir: PathBuf,
    pub storage: ObjectStorage,
    pub server: GalleryServer,
    pub base: String,
}

pub async fn fixture() -> Fixture {
    fixture_with(GalleryOptions::default(), "127.0.0.1:0").await
}

/// The fixture served with `options` on `addr`.
pub async fn fixture_with(options: GalleryOptions, addr: &str) -> Fixture {
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
        .with_options(options)
        .serve(addr.parse().unwrap())
        .await
        .unwrap();
    // Reached through loopback whatever the address it listens on.
    let base = format!("http://127.0.0.1:{}", server.local_addr().port());
    Fixture {
        dir,
        storage,
        server,
        base,
    }
}

impl Fixture {
    pub async fn finish(self) {
        self.server.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One raw HTTP/1.1 GET, the target sent exactly as written (no client
/// normalises its dots away); returns the status and the body.
pub async fn raw_get(addr: std::net::SocketAddr, target: &str, host: &str) -> (u16, String) {
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
