//! The headless browser of the page tests: Debian's `chromium`, driven by a
//! node script through Playwright (`playwright-core`, which never downloads
//! a browser of its own).

use std::path::PathBuf;
use std::process::Command;

use crate::Tool;

const PLAYWRIGHT: Tool = Tool {
    what: "browser",
    program: "playwright-core",
    env: "UNCENSORED_PLAYWRIGHT",
    default: ".tools/playwright/node_modules/playwright-core",
    package: "playwright-core",
};

const CHROMIUM: Tool = Tool {
    what: "browser",
    program: "chromium",
    env: "UNCENSORED_CHROMIUM",
    default: "/usr/bin/chromium",
    package: "chromium (Debian)",
};

/// What a page test needs: node, Playwright and Chromium.
#[derive(Debug, Clone)]
pub struct Browser {
    /// The `playwright-core` package folder (a script `require`s it).
    pub playwright: PathBuf,
    /// The Chromium executable.
    pub chromium: PathBuf,
}

impl Browser {
    /// `node SCRIPT` with `UNCENSORED_PLAYWRIGHT`, `UNCENSORED_CHROMIUM` and
    /// `UNCENSORED_CHROMIUM_ARGS` ([`Browser::CHROMIUM_ARGS`], space-separated:
    /// launch Chromium with exactly these) set for it.
    pub fn node(&self, script: &std::path::Path) -> Command {
        let mut command = Command::new("node");
        command
            .arg(script)
            .env("UNCENSORED_PLAYWRIGHT", &self.playwright)
            .env("UNCENSORED_CHROMIUM", &self.chromium)
            .env("UNCENSORED_CHROMIUM_ARGS", Self::CHROMIUM_ARGS.join(" "))
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1");
        command
    }

    /// How Chromium runs in the tests: headless, no sandbox (containers),
    /// no GPU, no traffic of its own.
    pub const CHROMIUM_ARGS: &[&str] = &[
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
    ];
}

/// Playwright and Chromium, or `None` (after saying `SKIPPED`) when either
/// is missing; panics under CI instead. `cargo xtask test` installs both.
pub fn browser() -> Option<Browser> {
    Some(Browser {
        playwright: PLAYWRIGHT.find()?,
        chromium: CHROMIUM.find()?,
    })
}
