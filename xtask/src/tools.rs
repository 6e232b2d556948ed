//! External tools the checks need, installed on demand into git-ignored
//! folders under `.tools/` and reused when already present.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// A Python virtual environment under `.tools/<name>`, holding exactly the
/// pinned `requirements`. It is (re)built when missing or when the pins change.
pub fn python_venv(root: &Path, name: &str, requirements: &[&str]) -> Result<PathBuf> {
    let venv = root.join(".tools").join(name);
    let stamp = venv.join("xtask-requirements.txt");
    let wanted = requirements.join("\n");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(venv);
    }
    eprintln!(
        "xtask: installing {} into .tools/{name}",
        requirements.join(" ")
    );
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .with_context(|| format!("cannot remove stale {}", venv.display()))?;
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    run(Command::new(&python).args(["-m", "venv"]).arg(&venv)).with_context(|| {
        format!("cannot create a Python venv with {python} (set PYTHON to a Python 3.9+)")
    })?;
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(requirements))
    .with_context(|| format!("cannot install {} from PyPI", requirements.join(" ")))?;
    std::fs::write(&stamp, wanted)?;
    Ok(venv)
}

/// Runs a command to completion, failing with its name when it fails.
pub fn run(command: &mut Command) -> Result<()> {
    // Name the program, not where this machine keeps it.
    let program = Path::new(command.get_program())
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let status = command
        .status()
        .with_context(|| format!("cannot start {program}"))?;
    if !status.success() {
        bail!("{program} failed ({status})");
    }
    Ok(())
}

/// Counts of a `cargo test` run, summed over its `test result:` lines.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TestCounts {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed.
    pub failed: u64,
    /// Tests that were ignored.
    pub ignored: u64,
}

impl TestCounts {
    /// Adds one `test result: ok. 5 passed; 0 failed; 2 ignored; ...` line.
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(['.', ';']) {
            let mut words = part.split_whitespace();
            if let (Some(count), Some(kind)) = (words.next(), words.next()) {
                let Ok(count) = count.parse::<u64>() else {
                    continue;
                };
                match kind {
                    "passed" => self.passed += count,
                    "failed" => self.failed += count,
                    "ignored" => self.ignored += count,
                    _ => {}
                }
            }
        }
    }
}

/// Runs `cargo test`, echoing its output, and sums its result lines.
pub fn run_tests(command: &mut Command) -> Result<TestCounts> {
    use std::io::{BufRead as _, BufReader};
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot start cargo test")?;
    let mut counts = TestCounts::default();
    for line in BufReader::new(child.stdout.take().expect("stdout is piped")).lines() {
        let line = line.context("cannot read cargo test's output")?;
        println!("{line}");
        counts.add_line(&line);
    }
    let status = child.wait().context("cargo test did not finish")?;
    if !status.success() || counts.failed > 0 {
        bail!(
            "{} passed, {} failed: cargo test failed ({status})",
            counts.passed,
            counts.failed
        );
    }
    Ok(counts)
}

/// The emulator binary running as a child process, stopped when dropped.
pub struct EmulatorProcess {
    child: std::process::Child,
    /// The base URL it printed.
    pub base_url: String,
    log: PathBuf,
    lines: std::sync::mpsc::Receiver<String>,
}

impl EmulatorProcess {
    /// Builds the emulator's debug binary with `cargo`, then starts it.
    pub fn build_and_start(
        root: &Path,
        cargo: &mut Command,
        args: &[&str],
        log: PathBuf,
    ) -> Result<Self> {
        run(cargo.args([
            "build",
            "--quiet",
            "--package",
            "uncensored-emulator",
            "--bin",
            "uncensored-emulator",
        ]))
        .context("cannot build the emulator")?;
        Self::start(
            &target_dir(root).join("debug/uncensored-emulator"),
            args,
            log,
        )
    }

    /// Starts `bin` with `args` and waits (30 s at most) for its base URL.
    /// Fails loudly when it cannot start: no check is ever skipped for that.
    pub fn start(bin: &Path, args: &[&str], log: PathBuf) -> Result<Self> {
        use std::io::{BufRead as _, BufReader};
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--print-stats-on-exit"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(
                std::fs::File::create(&log)
                    .with_context(|| format!("cannot create {}", log.display()))?,
            )
            .spawn()
            .with_context(|| format!("cannot start the emulator ({})", bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(line) if line.starts_with("http://") => line.trim().to_string(),
            outcome => {
                let _ = child.kill();
                let _ = child.wait();
                let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("the emulator did not start (first line {outcome:?}); its log:\n{log_text}");
            }
        };
        Ok(Self {
            child,
            base_url: line,
            log,
            lines: rx,
        })
    }

    /// Stops it with SIGTERM, checks that it exited cleanly without panicking,
    /// and returns its final statistics.
    pub fn stop(mut self) -> Result<serde_json::Value> {
        run(Command::new("kill").args(["-TERM", &self.child.id().to_string()]))?;
        let status = self.child.wait().context("cannot wait for the emulator")?;
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        if !status.success() || log.contains("panicked") {
            bail!("the emulator did not stop cleanly ({status}); its log:\n{log}");
        }
        let last = self
            .lines
            .iter()
            .last()
            .context("the emulator printed no statistics")?;
        serde_json::from_str(&last).context("the emulator's statistics are not JSON")
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Where cargo puts build output.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Pinned cargo-semver-checks (crates.io), for `cargo xtask release-check`.
pub const SEMVER_CHECKS: &str = "0.51.0";

/// cargo-semver-checks under `.tools/cargo/bin`, installed with `cargo
/// install --locked` when missing or of another version (a long build: it
/// is run by `cargo xtask release-check` only).
pub fn ensure_semver_checks(root: &Path) -> Result<PathBuf> {
    let install_root = root.join(".tools/cargo");
    let bin = install_root.join("bin/cargo-semver-checks");
    let installed = Command::new(&bin)
        .args(["semver-checks", "--version"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
    if installed.is_some_and(|v| v.split_whitespace().any(|word| word == SEMVER_CHECKS)) {
        return Ok(bin);
    }
    eprintln!(
        "xtask: installing cargo-semver-checks {SEMVER_CHECKS} into .tools/cargo (several minutes)"
    );
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["install", "--locked", "--root"])
            .arg(&install_root)
            .args(["cargo-semver-checks", "--version", SEMVER_CHECKS]),
    )
    .context("cannot install cargo-semver-checks from crates.io")?;
    Ok(bin)
}

/// Pinned moto, the S3-compatible server the storage tests and benches use (PyPI).
pub const MOTO: &str = "moto[server]==5.2.5";

/// Pinned Prism (npm), the independent OpenAPI mock and validating proxy.
pub const PRISM: &str = "@stoplight/prism-cli@5.16.0";

/// Prism under `.tools/prism`, installed from npm when missing or when the
/// pin changes.
pub fn ensure_prism(root: &Path) -> Result<PathBuf> {
    npm_tool(root, "prism", PRISM, "prism")
}

/// Pinned Azurite (npm), the Azure Blob Storage emulator the storage tests use.
pub const AZURITE: &str = "azurite@3.37.0";

/// Azurite's Blob service (`azurite-blob`) under `.tools/azurite`, installed
/// from npm when missing or when the pin changes.
pub fn ensure_azurite(root: &Path) -> Result<PathBuf> {
    npm_tool(root, "azurite", AZURITE, "azurite-blob")
}

/// Pinned Playwright's core (npm), the driver of the gallery's browser test.
/// It never downloads a browser: the tests launch Debian's Chromium.
pub const PLAYWRIGHT: &str = "playwright-core@1.65.1";

/// The `playwright-core` package folder under `.tools/playwright` (what a
/// test script `require`s), installed from npm when missing or when the pin changes.
pub fn ensure_playwright(root: &Path) -> Result<PathBuf> {
    npm_tool(root, "playwright", PLAYWRIGHT, "playwright-core")?;
    Ok(root.join(".tools/playwright/node_modules/playwright-core"))
}

/// Debian's Chromium (`/usr/bin/chromium`), installed with apt-get when
/// missing and running as root; otherwise a clear error naming the package.
pub fn ensure_chromium() -> Result<PathBuf> {
    let chromium = PathBuf::from("/usr/bin/chromium");
    if chromium.exists() {
        return Ok(chromium);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    if !root {
        bail!(
            "the browser tests need Chromium: install Debian's package (`sudo apt-get install --no-install-recommends chromium`) and run again"
        );
    }
    eprintln!("xtask: installing chromium (apt-get)");
    run(Command::new("apt-get").args(["update", "-qq"])).context("apt-get update failed")?;
    run(Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "chromium",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("cannot install chromium")?;
    if !chromium.exists() {
        bail!("the chromium package installed no {}", chromium.display());
    }
    Ok(chromium)
}

/// Pinned gcp-storage-emulator (PyPI), the GCS emulator the storage tests use.
pub const GCS_EMULATOR: &str = "gcp-storage-emulator==2026.7.19";

/// Pinned aiosmtpd (PyPI), the SMTP server the email notifier's tests send to;
/// `uncensored-test-servers` runs its own handler script with this venv's Python.
pub const AIOSMTPD: &str = "aiosmtpd==1.4.6";

/// Where Debian's `postgresql` package puts each version's programs.
const POSTGRES_VERSIONS: &str = "/usr/lib/postgresql";

/// PostgreSQL's `bin` folder (`initdb`, `pg_ctl`, `psql`) for the shared
/// journal's tests: `UNCENSORED_POSTGRES_BIN` when set, else the newest
/// `/usr/lib/postgresql/<version>/bin`. When there is none and xtask runs as
/// root, the `postgresql` package is installed with apt-get first.
pub fn ensure_postgres() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("UNCENSORED_POSTGRES_BIN") {
        return Ok(PathBuf::from(bin));
    }
    if let Some(bin) = newest_postgres(Path::new(POSTGRES_VERSIONS)) {
        return Ok(bin);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0");
    if !root {
        bail!(
            "PostgreSQL is not installed: install the `postgresql` package \
             (`sudo apt-get install postgresql`), or set UNCENSORED_POSTGRES_BIN \
             to the folder that holds initdb, pg_ctl and psql"
        );
    }
    eprintln!("xtask: installing PostgreSQL and openssl (for the TLS tests' certificates)");
    run(Command::new("apt-get").arg("update")).context("cannot update apt's package lists")?;
    run(Command::new("apt-get")
        .args([
            "install",
            "-y",
            "--no-install-recommends",
            "postgresql",
            "openssl",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("cannot install the postgresql package")?;
    newest_postgres(Path::new(POSTGRES_VERSIONS)).with_context(|| {
        format!("the postgresql package installed no {POSTGRES_VERSIONS}/<version>/bin/initdb")
    })
}

/// The `bin` folder of the newest version under `versions` that has `initdb`.
fn newest_postgres(versions: &Path) -> Option<PathBuf> {
    std::fs::read_dir(versions)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: Vec<u32> = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<_>>()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

/// Pinned official MCP Python SDK (PyPI), the independent MCP client that
/// `uncensored mcp` is tested with over stdio and Streamable HTTP.
pub const MCP: &str = "mcp==2.3.0";

/// Pinned official MCP TypeScript SDK (npm), the client inside most MCP
/// hosts, which `uncensored mcp` is tested with too: it validates every tool
/// result against the tool's output schema.
pub const MCP_TS: &str = "@modelcontextprotocol/sdk@1.32.2";

/// The `@modelcontextprotocol/sdk` package folder under `.tools/mcp-ts` (what
/// a test script loads), installed from npm when missing or when the pin changes.
pub fn ensure_mcp_ts(root: &Path) -> Result<PathBuf> {
    npm_package(
        root,
        "mcp-ts",
        MCP_TS,
        Path::new("node_modules/@modelcontextprotocol/sdk"),
    )
}

/// The npm `package` (pinned as `name@version`) under `.tools/<name>`, and the
/// path of its executable `bin`. It is (re)installed when missing or when the
/// pin changes; the pin is recorded beside it.
pub fn npm_tool(root: &Path, name: &str, package: &str, bin: &str) -> Result<PathBuf> {
    npm_package(
        root,
        name,
        package,
        &Path::new("node_modules/.bin").join(bin),
    )
}

/// The npm `package` (pinned as `name@version`) under `.tools/<name>`, and
/// the path `installs` (relative to that folder) it must have put there.
/// It is (re)installed when that is missing or when the pin changes; the pin
/// is recorded beside it.
fn npm_package(root: &Path, name: &str, package: &str, installs: &Path) -> Result<PathBuf> {
    let prefix = root.join(".tools").join(name);
    let bin = prefix.join(installs);
    let stamp = prefix.join("xtask-package.txt");
    if bin.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(package) {
        return Ok(bin);
    }
    eprintln!("xtask: installing {package} into .tools/{name}");
    if prefix.exists() {
        std::fs::remove_dir_all(&prefix)
            .with_context(|| format!("cannot remove stale {}", prefix.display()))?;
    }
    std::fs::create_dir_all(&prefix)?;
    run(Command::new("npm")
        // Playwright fetches no browser of its own: the tests use the system's.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .arg("install")
        .arg("--prefix")
        .arg(&prefix)
        .args(["--no-audit", "--no-fund", "--loglevel=error", package]))
    .with_context(|| format!("cannot install {package} (needs node and npm)"))?;
    if !bin.exists() {
        bail!("{package} installed no {}", bin.display());
    }
    std::fs::write(&stamp, package)?;
    Ok(bin)
}

/// Starts Prism as `prism MODE... --host 127.0.0.1 --port PORT openapi.yaml AFTER...`
/// and waits (60 s at most) until it listens.
pub fn start_prism(
    bin: &Path,
    mode: &[&str],
    after_spec: &[&str],
    root: &Path,
    port: u16,
    log_path: &Path,
) -> Result<Child> {
    let log = std::fs::File::create(log_path)?;
    let mut child = Command::new(bin)
        .args(mode)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg(root.join("openapi.yaml"))
        .args(after_spec)
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .context("cannot start Prism")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            bail!("Prism did not start listening within 60 s:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(child)
}

/// Waits until something listens on 127.0.0.1:`port`.
pub fn wait_for_port(port: u16, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listened on 127.0.0.1:{port} within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A free loopback port.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_summed() {
        let mut counts = TestCounts::default();
        counts.add_line("test result: ok. 5 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.02s");
        counts.add_line(
            "test result: FAILED. 1 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        counts.add_line("running 4 tests");
        assert_eq!(
            counts,
            TestCounts {
                passed: 6,
                failed: 3,
                ignored: 2
            }
        );
    }

    #[test]
    fn the_newest_postgres_with_initdb_is_chosen() {
        let root = std::env::temp_dir().join(format!("xtask-postgres-{}", std::process::id()));
        for (version, initdb) in [("9.6", true), ("15", true), ("16", false), ("13", true)] {
            let bin = root.join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            if initdb {
                std::fs::write(bin.join("initdb"), "").unwrap();
            }
        }
        let found = newest_postgres(&root);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(found, Some(root.join("15").join("bin")));
        assert_eq!(newest_postgres(&root), None);
    }
}
