//! The servers `cargo xtask bench gallery` measures in a browser: a gallery
//! of 5,000 images and, as the anchor of the same run, one of 50, each in a
//! folder of its own, every thumbnail made (and cached) before the
//! measurement. Not a test: it prints one JSON line per gallery
//! (`{"images": N, "url": "..."}`), then serves until stdin closes.
//!
//! `cargo bench -p uncensored-gallery --bench gallery -- DIR [IMAGES...]`

use std::io::Read as _;
use std::path::Path;

use futures_util::{StreamExt as _, stream};
use uncensored::{DownloadedImage, ImageFormat};
use uncensored_deliver::storage::{ImageMeta, InMemory, ObjectName, ObjectStorage, Storage as _};
use uncensored_gallery::{Gallery, GalleryServer};

/// Writes `count` distinct images (with sidecars) under `dir`.
async fn fill(dir: &Path, count: usize) -> ObjectStorage {
    let _ = std::fs::remove_dir_all(dir);
    let storage = ObjectStorage::local(dir).expect("a scratch folder");
    let models = ["model-dev", "model-pro", "model-flex"];
    stream::iter(0..count)
        .for_each_concurrent(8, |i| {
            let storage = storage.clone();
            async move {
                let prompt = format!("benchmark image {i}, a lighthouse at dusk");
                let bytes = tokio::task::spawn_blocking({
                    let prompt = prompt.clone();
                    move || uncensored_emulator::render_jpeg(&prompt, 1, 384, 384)
                })
                .await
                .expect("rendered");
                let job = format!("bench-{i:05}");
                let name = ObjectName::parse(&format!("2026-05-{:02}/{job}.jpg", 1 + i % 28))
                    .expect("a safe name");
                let meta = ImageMeta {
                    job_id: job,
                    prompt,
                    model: Some(models[i % models.len()].into()),
                    width: Some(384),
                    height: Some(384),
                    generation_time: Some(5.0 + (i % 25) as f64),
                    sha256: None,
                    created_at: chrono::Utc::now() - chrono::Duration::seconds(i as i64),
                };
                let image = DownloadedImage {
                    bytes: bytes.into(),
                    format: ImageFormat::Jpeg,
                    sha256: String::new(),
                };
                storage
                    .put(&name, &mut InMemory::from(image), &meta)
                    .await
                    .expect("stored");
            }
        })
        .await;
    storage
}

/// A gallery of `count` images with every thumbnail already made.
async fn warm_gallery(dir: &Path, count: usize) -> GalleryServer {
    let storage = fill(dir, count).await;
    let server = Gallery::new(storage)
        .serve("127.0.0.1:0".parse().expect("an address"))
        .await
        .expect("the gallery starts");
    let client = reqwest::Client::new();
    let page: serde_json::Value = client
        .get(format!("{}api/images?limit=500", server.url()))
        .send()
        .await
        .expect("the API answers")
        .json()
        .await
        .expect("JSON");
    let mut names: Vec<String> = Vec::new();
    let total = page["total"].as_u64().unwrap_or(0) as usize;
    let mut offset = 0;
    while offset < total {
        let page: serde_json::Value = client
            .get(format!(
                "{}api/images?limit=500&offset={offset}",
                server.url()
            ))
            .send()
            .await
            .expect("the API answers")
            .json()
            .await
            .expect("JSON");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        offset += items.len().max(1);
        names.extend(
            items
                .iter()
                .filter_map(|i| i["name"].as_str().map(str::to_string)),
        );
    }
    stream::iter(names)
        .for_each_concurrent(4, |name| {
            let url = format!("{}thumbs/{name}", server.url());
            let client = client.clone();
            async move {
                let response = client.get(url).send().await.expect("a thumbnail");
                assert!(response.status().is_success());
                let _ = response.bytes().await;
            }
        })
        .await;
    server
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let dir = Path::new(args.first().expect("usage: gallery DIR [IMAGES...]")).to_path_buf();
    let counts: Vec<usize> = match args.get(1..) {
        Some(rest) if !rest.is_empty() => {
            rest.iter().map(|c| c.parse().expect("a count")).collect()
        }
        _ => vec![5000, 50],
    };
    let mut servers = Vec::new();
    for count in counts {
        let server = warm_gallery(&dir.join(count.to_string()), count).await;
        println!(
            "{}",
            serde_json::json!({"images": count, "url": server.url()})
        );
        servers.push(server);
    }
    // Serve until the measuring side closes stdin.
    tokio::task::spawn_blocking(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    })
    .await
    .expect("stdin read");
    for server in servers {
        server.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
