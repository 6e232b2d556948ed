//! Helpers shared by the integration tests (the storage servers themselves
//! come from `uncensored-test-servers`).
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
