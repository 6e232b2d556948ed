//! `cargo xtask bench gallery` (and the last row of `cargo xtask bench`): time
//! to first paint of a 5,000-image gallery, measured in headless Chromium
//! against a 50-image gallery served by the same process in the same run
//! (the anchor: a gallery should not get slower with its size). Thumbnails
//! are made before the measurement. Writes its section of BENCHMARKS.md.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::bench::write_section;
use crate::tools;

/// The gallery sizes: the measured one, then the anchor.
const SIZES: [usize; 2] = [5000, 50];
/// Page loads per gallery (after one warm-up), the median reported.
const RUNS: &str = "7";

pub fn run(root: &Path) -> Result<()> {
    let chromium = tools::ensure_chromium()?;
    let playwright = tools::ensure_playwright(root)?;
    let work = tools::target_dir(root).join("bench/gallery");
    let mut servers = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args([
            "bench",
            "--quiet",
            "--package",
            "uncensored-gallery",
            "--bench",
            "gallery",
            "--",
        ])
        .arg(&work)
        .args(SIZES.map(|n| n.to_string()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the gallery bench servers")?;
    let outcome = (|| {
        let stdout = servers.stdout.take().context("stdout is piped")?;
        let galleries: Vec<serde_json::Value> = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter(|line| line.starts_with('{'))
            .take(SIZES.len())
            .map(|line| serde_json::from_str(&line).context("a JSON line"))
            .collect::<Result<_>>()?;
        if galleries.len() != SIZES.len() {
            bail!("the gallery bench servers did not start");
        }
        let output = Command::new("node")
            .arg(root.join("crates/uncensored-gallery/benches/first_paint.mjs"))
            .env("UNCENSORED_PLAYWRIGHT", &playwright)
            .env("UNCENSORED_CHROMIUM", &chromium)
            .env(
                "UNCENSORED_CHROMIUM_ARGS",
                "--headless --no-sandbox --disable-gpu --disable-background-networking",
            )
            .env("GALLERIES", serde_json::to_string(&galleries)?)
            .env("RUNS", RUNS)
            .stderr(Stdio::inherit())
            .output()
            .context("cannot run node")?;
        if !output.status.success() {
            bail!("the first-paint measurement failed ({})", output.status);
        }
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.starts_with('{'))
            .map(|line| serde_json::from_str(line).context("a JSON line"))
            .collect::<Result<Vec<serde_json::Value>>>()
    })();
    // Closing stdin stops the servers.
    drop(servers.stdin.take());
    let _ = servers.wait();
    let rows = outcome?;
    let number = |row: &serde_json::Value, field: &str| row[field].as_f64().unwrap_or(f64::NAN);
    let anchor = rows
        .iter()
        .find(|row| row["images"] == SIZES[1])
        .context("no anchor row")?;
    let mut table = String::from(
        "| gallery | first contentful paint (ms) | first screen of thumbnails (ms) | thumbnails on it | vs 50 images |\n|---|---:|---:|---:|---:|\n",
    );
    for row in &rows {
        table.push_str(&format!(
            "| {} images | {:.0} | {:.0} | {} | {:.2}x |\n",
            row["images"],
            number(row, "first_contentful_paint_ms"),
            number(row, "first_screen_ms"),
            row["thumbnails_on_screen"],
            number(row, "first_screen_ms") / number(anchor, "first_screen_ms"),
        ));
    }
    print!("{table}");
    write_section(
        root,
        "Gallery first paint",
        &format!(
            "The gallery (`uncensored-gallery` in a release build, as `uncensored gallery` serves it) of 5,000 images on the local file system, measured in \
             headless Chromium ({chromium_name}, Playwright {playwright_pin}) against a 50-image gallery \
             served by the same process in the same run, every thumbnail made beforehand (the server's \
             cache), the median of {RUNS} fresh page loads (no browser cache) after a warm-up, a \
             1280x900 viewport. First contentful paint is the Performance API's; the first screen is \
             the moment every thumbnail in the viewport has decoded. Target: the 5,000-image gallery \
             within 1.5x of the 50-image one (the page loads one page of 120 records, thumbnails \
             lazily).\n\n{table}",
            chromium_name = "Debian chromium",
            playwright_pin = tools::PLAYWRIGHT,
        ),
    )
}
