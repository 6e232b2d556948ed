//! Helpers shared by the integration tests: local servers on loopback.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// moto_server on a free loopback port, stopped on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto_server, or explains why not: under CI that is a failure, never a skip.
pub fn moto() -> Option<Moto> {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = std::env::var_os("UNCENSORED_MOTO_SERVER")
        .map(std::path::PathBuf::from)
        .or_else(|| Some(workspace.join(".tools/moto/bin/moto_server")).filter(|p| p.exists()));
    let Some(bin) = bin else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the S3 tests: run them through `cargo xtask test`, which installs moto"
        );
        eprintln!(
            "SKIPPED: no moto_server (run `cargo xtask test` to install it into .tools/moto)"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "moto_server did not listen within 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Some(moto)
}

/// Creates `bucket` on an S3-compatible endpoint that accepts unsigned requests.
pub async fn create_bucket(endpoint: &str, bucket: &str) {
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "creating the bucket: {}",
        created.status()
    );
}

/// An object_store builder for a local S3-compatible endpoint.
#[cfg(feature = "s3")]
pub fn s3_builder(endpoint: &str) -> object_store::aws::AmazonS3Builder {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("test-access-key")
        .with_secret_access_key("test-secret-key")
}

/// A TCP forwarder on loopback that can be switched off: while off, every
/// connection is cut at once, as if the server were unreachable.
#[derive(Clone)]
pub struct Gate {
    open: Arc<AtomicBool>,
    refused: Arc<std::sync::atomic::AtomicU64>,
    closed: tokio::sync::watch::Sender<bool>,
    pub endpoint: String,
}

impl Gate {
    /// Forwards a new loopback port to `target` (`127.0.0.1:PORT`).
    pub async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (closed, _) = tokio::sync::watch::channel(false);
        let gate = Gate {
            open: Arc::new(AtomicBool::new(true)),
            refused: Arc::default(),
            closed,
            endpoint: format!("http://{}", listener.local_addr().unwrap()),
        };
        let open = gate.open.clone();
        let cut = gate.closed.clone();
        let refused = gate.refused.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !open.load(Ordering::SeqCst) {
                    refused.fetch_add(1, Ordering::SeqCst);
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let mut cut = cut.subscribe();
                tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        // Pooled connections are cut too when the gate closes.
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                            _ = cut.wait_for(|closed| *closed) => {}
                        }
                    }
                });
            }
        });
        gate
    }

    /// Connections refused while closed.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    /// Cuts (false) or restores (true) the connection.
    pub fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::SeqCst);
        self.closed.send_replace(!open);
    }
}
