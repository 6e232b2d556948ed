//! `uncensored gallery` in a real browser: a 50-line batch made by the
//! emulator (a few lines moderated, one prompt with markup), the gallery of
//! its folder, and `gallery_browser.mjs` driving headless Chromium through
//! Playwright: thumbnails load, search, one image's details, the failures
//! with their reasons, and an image of a second batch appearing live.
//! Screenshots go to the target folder (`tmp/gallery-*/screenshots`).
//! Skipped (SKIPPED) without Chromium and playwright-core, except under CI.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_uncensored");
const MODERATED: usize = 3;
const MARKUP: &str =
    r#"an <img src=x onerror="window.__pwned=1"> <script>window.__pwned=1</script> markup-probe"#;

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "gallery-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_gallery_in_a_browser() {
    let Some(browser) = uncensored_test_servers::browser() else {
        return;
    };
    let dir = scratch();
    let store = dir.join("images");
    let mut lines: Vec<String> = (1..=46)
        .map(|i| format!("a lighthouse at dusk, study number-{i:02}"))
        .collect();
    lines.extend((1..=MODERATED).map(|i| format!("a forbidden-term scene {i}")));
    lines.push(MARKUP.to_string());
    assert_eq!(lines.len(), 50);
    let batch_file = dir.join("prompts.txt");
    std::fs::write(&batch_file, lines.join("\n")).unwrap();
    let made = Command::new(BIN)
        .args(["--emulator", "batch"])
        .arg(&batch_file)
        .arg("--out")
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(
        made.status.code(),
        Some(11),
        "the moderated lines fail the batch: {}",
        String::from_utf8_lossy(&made.stderr)
    );

    let mut gallery = Command::new(BIN)
        .args(["gallery", "--listen", "127.0.0.1:0", "--out"])
        .arg(&store)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = gallery.stdout.take().unwrap();
    let gallery = Running(gallery);
    let mut url = String::new();
    BufReader::new(stdout).read_line(&mut url).unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url:?}");

    let live_prompt = "a live arrival, live-probe";
    let live_batch = dir.join("live.txt");
    std::fs::write(&live_batch, live_prompt).unwrap();
    let shots = dir.join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gallery_browser.mjs");
    let output = browser
        .node(&script)
        .env("GALLERY_URL", url.trim())
        .env("SCREENSHOT_DIR", &shots)
        .env("EXPECTED_IMAGES", (50 - MODERATED).to_string())
        .env("EXPECTED_FAILURES", MODERATED.to_string())
        .env("SEARCH_PROMPT", "number-17")
        .env("MARKUP_PROMPT", MARKUP)
        .env("LIVE_PROMPT", live_prompt)
        .env("LIVE_BATCH", &live_batch)
        .env("STORE", &store)
        .env("LIVE_JOURNAL", dir.join("live-journal.sqlite"))
        .env("UNCENSORED_BIN", BIN)
        .output()
        .unwrap();
    drop(gallery);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the browser test failed (screenshots in {}):\n{report}",
        shots.display()
    );
    assert!(report.contains("gallery browser test: ok"), "{report}");
    // The screenshots stay (test artefacts); the images go.
    let _ = std::fs::remove_dir_all(&store);
    println!("screenshots in {}", shots.display());
}

#[test]
fn a_missing_store_is_named_before_anything_is_served() {
    let missing = scratch().join("no-such-images");
    let output = Command::new(BIN)
        .args(["gallery", "--listen", "127.0.0.1:0", "--out"])
        .arg(&missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(6), "{stderr}");
    assert!(output.stdout.is_empty(), "no URL was printed");
    assert!(stderr.contains(missing.to_str().unwrap()), "{stderr}");
    assert!(!missing.exists(), "nothing was created");
}
