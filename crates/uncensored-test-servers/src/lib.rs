//! Real storage servers for the integration tests, each started on a free
//! `127.0.0.1` port and killed when its handle is dropped:
//!
//! - [`moto()`]: moto's S3 server (PyPI `moto[server]`),
//! - [`azurite()`]: Azurite's Blob service (npm `azurite`),
//! - [`gcs()`]: `gcp-storage-emulator` (PyPI), behind a shim that fills in
//!   the XML API object_store needs; see [`GcsEmulator`],
//! - [`smtp()`]: an SMTP server on `aiosmtpd` (PyPI) that requires a login and
//!   keeps every message it accepts for the test to read; see [`SmtpServer`],
//! - [`postgres()`]: a PostgreSQL cluster of its own (`initdb`, `pg_ctl`) in a
//!   temporary folder; see [`Postgres`]. Its programs are found through
//!   `UNCENSORED_POSTGRES_BIN` (their `bin` folder), else in Debian's
//!   `/usr/lib/postgresql/<version>/bin`. [`postgres_tls()`]: the same with
//!   TLS only, its certificates made with `openssl`; see [`TestCertificates`].
//! - [`browser()`]: not a server, the headless browser of the page tests:
//!   Debian's `chromium` driven by Playwright (npm `playwright-core`) under
//!   node; see [`Browser`].
//! - [`images`]: not a server either, hostile images for the decoders' tests
//!   (a valid PNG that declares far more pixels than it weighs).
//!
//! `cargo xtask test` installs them into the git-ignored `.tools/` folder and
//! names them in `UNCENSORED_MOTO_SERVER`, `UNCENSORED_AZURITE`,
//! `UNCENSORED_GCS_EMULATOR`, `UNCENSORED_AIOSMTPD` (a Python that has
//! aiosmtpd), `UNCENSORED_MCP_PYTHON` (a Python that has mcp),
//! `UNCENSORED_MCP_TS_SDK` (the `@modelcontextprotocol/sdk` package folder), and the browser
//! in `UNCENSORED_PLAYWRIGHT` (the `playwright-core` package folder) and
//! `UNCENSORED_CHROMIUM`; without those variables the default `.tools/` locations are used. When a server is not installed, a test that asks for it
//! is skipped (it prints `SKIPPED` and gets `None`), except under CI (`CI` set),
//! where that is a failure.
//!
//! Each server's output goes to a temporary log file that a failed start
//! prints. Buckets and containers are created with blocking helpers (a tiny
//! HTTP/1.1 client, [`http::request`]), usable from sync and async tests alike.
//! [`slow::attack`] opens slow and hostile HTTP clients against a server
//! (partial headers, withheld and dribbled bodies, idle keep-alive) and waits
//! for the server to close them.
//! With the features `s3`, `azure` and `gcs` (all on by default) there are
//! `object_store` builders configured for each server.

#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod browser;
mod certificates;
mod gcs_shim;
pub mod http;
pub mod images;
mod postgres;
mod shared_key;
pub mod slow;
mod smtp;

pub use browser::{Browser, browser};
pub use certificates::TestCertificates;
pub use postgres::{Postgres, postgres, postgres_tls};
pub use smtp::{
    MimePart, SMTP_PASSWORD, SMTP_PERMANENT_FAILURE, SMTP_TRANSIENT_FAILURE, SMTP_USER,
    SmtpMessage, SmtpServer, smtp,
};

/// How long a server may take to listen.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A server process on loopback, killed (and its scratch files removed) on drop.
#[derive(Debug)]
struct Process {
    child: Child,
    log: PathBuf,
    scratch: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// One of the servers: where to find it and what to say when it is missing.
struct Tool {
    /// What the tests that need it test, for messages ("S3").
    what: &'static str,
    /// Its executable's name, for messages.
    program: &'static str,
    /// The variable `cargo xtask test` sets to its path.
    env: &'static str,
    /// Its path under the workspace when installed by xtask.
    default: &'static str,
    /// The package xtask installs, for messages.
    package: &'static str,
}

const MOTO: Tool = Tool {
    what: "S3",
    program: "moto_server",
    env: "UNCENSORED_MOTO_SERVER",
    default: ".tools/moto/bin/moto_server",
    package: "moto",
};

const AZURITE: Tool = Tool {
    what: "Azure Blob",
    program: "azurite-blob",
    env: "UNCENSORED_AZURITE",
    default: ".tools/azurite/node_modules/.bin/azurite-blob",
    package: "azurite",
};

const AIOSMTPD: Tool = Tool {
    what: "SMTP",
    program: "aiosmtpd",
    env: "UNCENSORED_AIOSMTPD",
    default: ".tools/smtp/bin/python",
    package: "aiosmtpd",
};

const MCP_CLIENT: Tool = Tool {
    what: "MCP client",
    program: "python with mcp",
    env: "UNCENSORED_MCP_PYTHON",
    default: ".tools/mcp/bin/python",
    package: "mcp",
};

/// A Python that has the official MCP SDK (`mcp` from PyPI), the independent
/// client `uncensored mcp` is tested with; `None` (after saying SKIPPED) when
/// it is not installed, a panic under CI.
pub fn mcp_python() -> Option<PathBuf> {
    MCP_CLIENT.find()
}

const MCP_TS_SDK: Tool = Tool {
    what: "MCP client (TypeScript)",
    program: "@modelcontextprotocol/sdk",
    env: "UNCENSORED_MCP_TS_SDK",
    default: ".tools/mcp-ts/node_modules/@modelcontextprotocol/sdk",
    package: "@modelcontextprotocol/sdk (npm)",
};

/// The package folder of the official MCP TypeScript SDK
/// (`@modelcontextprotocol/sdk` from npm, the client inside most MCP hosts),
/// for a node script to load; `None` (after saying SKIPPED) when it or
/// `node` is not installed, a panic under CI.
pub fn mcp_ts_sdk() -> Option<PathBuf> {
    let sdk = MCP_TS_SDK.find()?;
    let node = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    if !node.is_ok_and(|output| output.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the {} tests: node is not installed (Debian's `nodejs`)",
            MCP_TS_SDK.what
        );
        eprintln!("SKIPPED: no node to run the {} with", MCP_TS_SDK.program);
        return None;
    }
    Some(sdk)
}

const GCS: Tool = Tool {
    what: "GCS",
    program: "gcp-storage-emulator",
    env: "UNCENSORED_GCS_EMULATOR",
    default: ".tools/gcs/bin/gcp-storage-emulator",
    package: "gcp-storage-emulator",
};

impl Tool {
    /// The executable, or `None` (after saying so) when it is not installed.
    /// Panics under CI instead: CI never skips these tests.
    fn find(&self) -> Option<PathBuf> {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let found = std::env::var_os(self.env)
            .map(PathBuf::from)
            .or_else(|| Some(workspace.join(self.default)).filter(|path| path.exists()));
        if found.is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the {} tests: run them through `cargo xtask test`, which installs {}",
                self.what,
                self.package
            );
            eprintln!(
                "SKIPPED: no {} (run `cargo xtask test` to install it into {}, or set {})",
                self.program,
                Path::new(self.default)
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                self.env
            );
        }
        found
    }

    /// Starts the server with `args(port, scratch folder)` on a free port and
    /// waits until it listens. A start that loses its port to another process
    /// is retried on a new one; any other failure panics with the server's log.
    fn start(&self, args: impl Fn(u16, &Path) -> Vec<String>) -> Option<(Process, u16)> {
        let bin = self.find()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            let (log, scratch) = scratch_paths(self.program);
            std::fs::create_dir_all(&scratch)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", scratch.display()));
            let log_file = std::fs::File::create(&log)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
            let child = Command::new(&bin)
                .args(args(port, &scratch))
                .current_dir(&scratch)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("the log file can be shared"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut process = Process {
                child,
                log,
                scratch,
            };
            match wait_for_port(&mut process, port) {
                Ok(()) => return Some((process, port)),
                Err(why) => {
                    let log = std::fs::read_to_string(&process.log).unwrap_or_default();
                    let port_taken = log.contains("EADDRINUSE") || log.contains("in use");
                    if port_taken && attempt < 3 {
                        continue;
                    }
                    panic!(
                        "{} did not start on 127.0.0.1:{port}: {why}; its log:\n{log}",
                        self.program
                    );
                }
            }
        }
    }
}

/// Waits until `process` listens on 127.0.0.1:`port`, polling, with a deadline.
fn wait_for_port(process: &mut Process, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Some(status)) = process.child.try_wait() {
            return Err(format!("it exited ({status})"));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("it did not listen within {START_DEADLINE:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A free loopback port (free when asked; the server binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A fresh log file path and scratch folder in the temporary folder.
fn scratch_paths(program: &str) -> (PathBuf, PathBuf) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let unique = format!(
        "uncensored-test-servers-{program}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let base = std::env::temp_dir();
    (
        base.join(format!("{unique}.log")),
        base.join(format!("{unique}.d")),
    )
}

/// Fails with the response when a setup request did not succeed.
fn expect_success(what: &str, response: std::io::Result<http::Response>) {
    match response {
        Ok(response) if response.is_success() => {}
        Ok(response) => panic!(
            "{what}: HTTP {}: {}",
            response.status,
            response.text().trim()
        ),
        Err(error) => panic!("{what}: {error}"),
    }
}

// ---------------------------------------------------------------- S3: moto

/// The access key the S3 builders use (moto accepts any).
pub const S3_ACCESS_KEY_ID: &str = "test-access-key";
/// The secret key the S3 builders use (moto accepts any).
pub const S3_SECRET_ACCESS_KEY: &str = "test-secret-key";
/// The region the S3 builders use.
pub const S3_REGION: &str = "us-east-1";

/// moto's S3 server on a free loopback port, stopped on drop.
#[derive(Debug)]
pub struct Moto {
    _process: Process,
    /// Its base URL, `http://127.0.0.1:PORT` (path-style S3 endpoint).
    pub endpoint: String,
}

/// Starts moto_server, or explains why not: under CI that is a failure, never a skip.
pub fn moto() -> Option<Moto> {
    let (process, port) = MOTO.start(|port, _| {
        ["-H", "127.0.0.1", "-p", &port.to_string()]
            .map(String::from)
            .to_vec()
    })?;
    Some(Moto {
        _process: process,
        endpoint: format!("http://127.0.0.1:{port}"),
    })
}

impl Moto {
    /// object_store configuration keys that reach this server, for
    /// `StorageUrl::open_with`.
    pub fn storage_options(&self) -> Vec<(String, String)> {
        s3_options(&self.endpoint)
    }

    /// The environment a child process (the CLI) needs to reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        self.storage_options()
            .into_iter()
            .map(|(key, value)| (key.to_ascii_uppercase(), value))
            .collect()
    }

    /// Creates `bucket` (panics if it cannot).
    pub fn create_bucket(&self, bucket: &str) {
        create_s3_bucket(&self.endpoint, bucket);
    }

    /// An object_store builder for this server (bucket not yet set), as
    /// [`s3_builder`] makes it.
    #[cfg(feature = "s3")]
    pub fn s3_builder(&self) -> object_store::aws::AmazonS3Builder {
        s3_builder(&self.endpoint)
    }
}

/// object_store configuration keys for an S3-compatible endpoint (moto, or
/// a proxy in front of it), as [`s3_builder`] sets them.
pub fn s3_options(endpoint: &str) -> Vec<(String, String)> {
    [
        ("aws_endpoint", endpoint),
        ("aws_allow_http", "true"),
        ("aws_region", S3_REGION),
        ("aws_access_key_id", S3_ACCESS_KEY_ID),
        ("aws_secret_access_key", S3_SECRET_ACCESS_KEY),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec()
}

/// Creates `bucket` with an unsigned `PUT /bucket` on an S3-compatible
/// endpoint that accepts those, such as moto (panics if it cannot).
pub fn create_s3_bucket(endpoint: &str, bucket: &str) {
    expect_success(
        &format!("creating the S3 bucket {bucket}"),
        http::request("PUT", &format!("{endpoint}/{bucket}"), &[], b""),
    );
}

/// An object_store builder for a local S3-compatible endpoint (moto, or a
/// proxy in front of it): path-style URLs over plain HTTP, dummy credentials.
/// object_store's default conditional put (`If-None-Match: *`) is what moto
/// implements, so `PutMode::Create` needs no further setting.
#[cfg(feature = "s3")]
pub fn s3_builder(endpoint: &str) -> object_store::aws::AmazonS3Builder {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region(S3_REGION)
        .with_access_key_id(S3_ACCESS_KEY_ID)
        .with_secret_access_key(S3_SECRET_ACCESS_KEY)
}

// ---------------------------------------------------------- Azure: Azurite

/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development account key (public, documented by Microsoft).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Azurite's Blob service on a free loopback port, in memory, stopped on drop.
#[derive(Debug)]
pub struct Azurite {
    _process: Process,
    /// The account's base URL, `http://127.0.0.1:PORT/devstoreaccount1`
    /// (containers are `{endpoint}/{container}`).
    pub endpoint: String,
}

/// Starts Azurite's Blob service, or explains why not: under CI that is a
/// failure, never a skip.
pub fn azurite() -> Option<Azurite> {
    let (process, port) = AZURITE.start(|port, _| {
        [
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--silent",
        ]
        .map(String::from)
        .to_vec()
    })?;
    Some(Azurite {
        _process: process,
        endpoint: format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
    })
}

impl Azurite {
    /// object_store configuration keys that reach this server (account,
    /// key, endpoint, plain HTTP), for `StorageUrl::open_with`.
    pub fn storage_options(&self) -> Vec<(String, String)> {
        [
            ("azure_storage_account_name", AZURITE_ACCOUNT),
            ("azure_storage_account_key", AZURITE_KEY),
            ("azure_storage_endpoint", self.endpoint.as_str()),
            ("azure_allow_http", "true"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    }

    /// The environment a child process (the CLI) needs to reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        self.storage_options()
            .into_iter()
            .map(|(key, value)| (key.to_ascii_uppercase(), value))
            .collect()
    }

    /// Creates `container` (3 to 63 lowercase letters, digits and dashes) with
    /// a SharedKey-signed `PUT ?restype=container` (panics if it cannot).
    pub fn create_container(&self, container: &str) {
        let url = format!("{}/{container}?restype=container", self.endpoint);
        let path = format!("/{AZURITE_ACCOUNT}/{container}");
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let ms_headers = [
            ("x-ms-date", date.as_str()),
            ("x-ms-version", shared_key::API_VERSION),
        ];
        let authorization = shared_key::authorization(
            AZURITE_ACCOUNT,
            AZURITE_KEY,
            "PUT",
            &path,
            &[("restype", "container")],
            &ms_headers,
        );
        let mut headers = ms_headers.to_vec();
        headers.push(("Authorization", &authorization));
        expect_success(
            &format!("creating the Azure container {container}"),
            http::request("PUT", &url, &headers, b""),
        );
    }

    /// An object_store builder for `container` on this server, as
    /// [`azure_builder`] makes it.
    #[cfg(feature = "azure")]
    pub fn builder(&self, container: &str) -> object_store::azure::MicrosoftAzureBuilder {
        azure_builder(&self.endpoint).with_container_name(container)
    }
}

/// An object_store builder for Azurite's account at `endpoint`
/// (`http://127.0.0.1:PORT/devstoreaccount1`, or a proxy in front of it):
/// the dev account and key, plain HTTP, container not yet set.
///
/// It names the endpoint instead of using `with_use_emulator(true)`, which
/// reads the port from the process-wide `AZURITE_BLOB_STORAGE_URL`.
#[cfg(feature = "azure")]
pub fn azure_builder(endpoint: &str) -> object_store::azure::MicrosoftAzureBuilder {
    object_store::azure::MicrosoftAzureBuilder::new()
        .with_account(AZURITE_ACCOUNT)
        .with_access_key(AZURITE_KEY)
        .with_endpoint(endpoint.to_string())
        .with_allow_http(true)
}

// -------------------------------------------------- GCS: gcp-storage-emulator

/// The project the GCS helpers create buckets in.
pub const GCS_PROJECT: &str = "test-project";

/// gcp-storage-emulator on a free loopback port, in memory, behind a small
/// shim on another loopback port; both stopped on drop.
///
/// object_store 0.14 speaks GCS's XML API, which the emulator barely has: its
/// responses carry no `ETag` and no `Last-Modified`, it answers `HEAD`, XML
/// `DELETE` and XML listings with 501, and it ignores every precondition. The
/// shim (see the `gcs_shim` module's source for exactly what it adds) answers
/// object_store's put (overwrite, and `PutMode::Create` through
/// `x-goog-if-generation-match`, atomically), get (also ranged), head, delete
/// and `list_with_delimiter` from the emulator's JSON API, and forwards the
/// JSON API unchanged. Not covered: XML multipart uploads and copies (501),
/// and signed URLs, whose signatures neither checks.
#[derive(Debug)]
pub struct GcsEmulator {
    // Stopped before the emulator is killed.
    _shim: gcs_shim::GcsShim,
    _process: Process,
    /// The shim's base URL, `http://127.0.0.1:PORT`: object_store's XML API
    /// (`/{bucket}/{object}`), and the emulator's JSON API (`/storage/v1`,
    /// `/upload/storage/v1`, `/download/storage/v1`) forwarded as is.
    pub endpoint: String,
    /// The emulator's own base URL, without the shim, for tests that pin down
    /// what the emulator itself does.
    pub emulator: String,
    /// A service-account JSON file for object_store
    /// (`GoogleCloudStorageBuilder::with_service_account_path`, or the
    /// `GOOGLE_SERVICE_ACCOUNT` variable): `gcs_base_url` is the shim
    /// ([`GcsEmulator::endpoint`]) and `disable_oauth` is set, so requests
    /// carry an empty bearer token and no key is ever used. Removed when the
    /// emulator is dropped.
    pub service_account: PathBuf,
}

/// Starts gcp-storage-emulator, or explains why not: under CI that is a
/// failure, never a skip.
pub fn gcs() -> Option<GcsEmulator> {
    let (process, port) = GCS.start(|port, _| {
        [
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--in-memory",
        ]
        .map(String::from)
        .to_vec()
    })?;
    let emulator = format!("http://127.0.0.1:{port}");
    let shim = gcs_shim::GcsShim::start(emulator.clone())
        .unwrap_or_else(|e| panic!("cannot start the GCS emulator's shim: {e}"));
    let endpoint = shim.endpoint();
    let service_account = process.scratch.join("service-account.json");
    std::fs::write(&service_account, service_account_json(&endpoint))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", service_account.display()));
    Some(GcsEmulator {
        _shim: shim,
        _process: process,
        endpoint,
        emulator,
        service_account,
    })
}

/// A service-account JSON that points object_store at a GCS emulator at
/// `base_url` without OAuth. The key fields must be present but are never
/// read when `disable_oauth` is set.
pub fn service_account_json(base_url: &str) -> String {
    format!(
        concat!(
            "{{\n",
            "  \"type\": \"service_account\",\n",
            "  \"client_email\": \"{email}\",\n",
            "  \"private_key_id\": \"unused\",\n",
            "  \"private_key\": \"unused: disable_oauth is set\",\n",
            "  \"gcs_base_url\": \"{base_url}\",\n",
            "  \"disable_oauth\": true\n",
            "}}\n"
        ),
        email = GCS_CLIENT_EMAIL,
        base_url = base_url
    )
}

/// The service account the GCS helpers claim to be.
pub const GCS_CLIENT_EMAIL: &str = "tests@test-project.iam.gserviceaccount.com";

impl GcsEmulator {
    /// object_store configuration keys that reach this server (the
    /// service-account file), for `StorageUrl::open_with`.
    pub fn storage_options(&self) -> Vec<(String, String)> {
        vec![(
            "google_service_account".to_string(),
            self.service_account.display().to_string(),
        )]
    }

    /// The environment a child process (the CLI) needs to reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![(
            "GOOGLE_SERVICE_ACCOUNT".to_string(),
            self.service_account.display().to_string(),
        )]
    }

    /// Creates `bucket` with the JSON API's `POST /storage/v1/b` (panics if it cannot).
    pub fn create_bucket(&self, bucket: &str) {
        expect_success(
            &format!("creating the GCS bucket {bucket}"),
            http::request(
                "POST",
                &format!("{}/storage/v1/b?project={GCS_PROJECT}", self.endpoint),
                &[("Content-Type", "application/json")],
                format!("{{\"name\": \"{bucket}\"}}").as_bytes(),
            ),
        );
    }

    /// An object_store builder for `bucket` on this emulator, configured
    /// through [`GcsEmulator::service_account`], with a stand-in URL signer
    /// (see [`gcs_builder`]).
    #[cfg(feature = "gcs")]
    pub fn builder(&self, bucket: &str) -> object_store::gcp::GoogleCloudStorageBuilder {
        object_store::gcp::GoogleCloudStorageBuilder::new()
            .with_service_account_path(self.service_account.to_string_lossy())
            .with_signing_credentials(stand_in_signing_credentials())
            .with_bucket_name(bucket)
    }
}

/// An object_store builder for a GCS emulator at `base_url` (or a proxy in
/// front of it), with no service-account file: an empty bearer token, and a
/// stand-in signer so that `Signer::signed_url` works offline (object_store
/// would otherwise ask Google's IAM `signBlob` API to sign). The emulator does
/// not check signatures, so the URLs it signs are only well-formed, not valid
/// for real GCS. Bucket not yet set.
#[cfg(feature = "gcs")]
pub fn gcs_builder(base_url: &str) -> object_store::gcp::GoogleCloudStorageBuilder {
    use object_store::gcp::GcpCredential;
    object_store::gcp::GoogleCloudStorageBuilder::new()
        .with_base_url(base_url)
        .with_credentials(std::sync::Arc::new(
            object_store::StaticCredentialProvider::new(GcpCredential {
                bearer: String::new(),
            }),
        ))
        .with_signing_credentials(stand_in_signing_credentials())
}

#[cfg(feature = "gcs")]
fn stand_in_signing_credentials() -> object_store::gcp::GcpSigningCredentialProvider {
    /// Signs everything with the same 256 bytes (an RS256 signature's size).
    struct StandIn;
    impl object_store::client::Signer for StandIn {
        fn sign(&self, _: &[u8]) -> object_store::Result<Vec<u8>> {
            Ok(vec![0x5a; 256])
        }
    }
    std::sync::Arc::new(object_store::StaticCredentialProvider::new(
        object_store::gcp::GcpSigningCredential {
            email: GCS_CLIENT_EMAIL.to_string(),
            private_key: Some(object_store::gcp::ServiceAccountKey::new(Box::new(StandIn))),
        },
    ))
}
