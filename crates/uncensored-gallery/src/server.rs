//! Starting and stopping the gallery: the checks made before serving, the
//! shared state, the polling task and the HTTP server.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{broadcast, oneshot};
use uncensored::CancellationToken;
use uncensored_deliver::journal::Journal;
use uncensored_deliver::serve::{AccessToken, AccessTokenError, ServerLimits};
use uncensored_deliver::storage::{ObjectStorage, StorageError, StorageUrl};

use crate::access::Access;
use crate::batch::BatchView;
use crate::catalog::Catalog;
use crate::live::{self, Change};
use crate::thumbs::Thumbnails;

/// How the gallery serves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GalleryOptions {
    /// Serve on an address that is not loopback (and answer any Host).
    /// Off by default: the page shows every prompt of the store.
    pub allow_remote: bool,
    /// How often the storage and the journal are read for changes.
    pub poll_interval: Duration,
    /// The side of the square thumbnails fit in, in pixels.
    pub thumbnail_side: u32,
    /// The most bytes of thumbnails kept in memory.
    pub thumbnail_cache_bytes: usize,
    /// The limits its clients are held to (timeouts, the connection cap).
    pub limits: ServerLimits,
    /// The token every request must carry (as a header, the page URL's
    /// `?token=` or the cookie that sets; see the crate's documentation).
    /// Without one, a gallery on an address that is not loopback makes one
    /// ([`GalleryServer::access_token`]); on loopback none is asked.
    pub token: Option<AccessToken>,
}

impl Default for GalleryOptions {
    fn default() -> Self {
        Self {
            allow_remote: false,
            poll_interval: Duration::from_secs(1),
            thumbnail_side: 256,
            thumbnail_cache_bytes: 128 * 1024 * 1024,
            limits: ServerLimits::default(),
            token: None,
        }
    }
}

/// Why the gallery did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GalleryError {
    /// The storage names a directory that does not exist.
    #[error(
        "the image directory {0} does not exist: name the one a batch wrote to (--out DIR or --store URL)"
    )]
    MissingDirectory(String),
    /// The storage cannot be opened or listed.
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// The journal cannot be read.
    #[error("{0}")]
    Journal(#[from] uncensored_deliver::journal::JournalError),
    /// The address is not loopback and remote access was not allowed.
    #[error(
        "{0} is not a loopback address: the gallery shows every prompt of the store; allow it explicitly to serve other machines"
    )]
    NotLoopback(SocketAddr),
    /// No access token could be made for an address that is not loopback.
    #[error("{0}")]
    Token(#[from] AccessTokenError),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) catalog: Catalog,
    pub(crate) journal: Option<Arc<dyn Journal>>,
    pub(crate) batch: RwLock<Arc<BatchView>>,
    pub(crate) thumbnails: Thumbnails,
    pub(crate) changes: broadcast::Sender<Change>,
    pub(crate) options: GalleryOptions,
    /// The token asked of every request, when there is one.
    pub(crate) access: Option<Access>,
    /// Cancelled at shutdown: open event streams end.
    pub(crate) closing: CancellationToken,
}

impl Shared {
    pub(crate) fn batch_view(&self) -> Arc<BatchView> {
        self.batch.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A gallery of one storage, and optionally of the batch journal that filled it.
#[derive(Debug)]
pub struct Gallery {
    storage: ObjectStorage,
    journal: Option<Arc<dyn Journal>>,
    options: GalleryOptions,
}

impl Gallery {
    /// The gallery of the storage at `url`, which must exist: a directory
    /// that is not there is an error (never created), and a bucket or
    /// container is listed once to check it and its credentials.
    pub async fn open(url: &StorageUrl) -> Result<Self, GalleryError> {
        if let Some(directory) = url.directory()
            && !directory.is_dir()
        {
            return Err(GalleryError::MissingDirectory(
                directory.display().to_string(),
            ));
        }
        Ok(Self::new(url.open()?))
    }

    /// The gallery of an opened storage (one a batch writes to, shared).
    pub fn new(storage: ObjectStorage) -> Self {
        Self {
            storage,
            journal: None,
            options: GalleryOptions::default(),
        }
    }

    /// Shows the batch this journal records: failures, lines in flight, the batch filter.
    pub fn with_journal(mut self, journal: Arc<dyn Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Sets the options.
    pub fn with_options(mut self, options: GalleryOptions) -> Self {
        self.options = options;
        self
    }

    /// Checks the storage (and journal), reads what they hold, then serves on
    /// `addr` (port 0 for any free port) until [`GalleryServer::shutdown`].
    /// Refuses an address that is not loopback unless
    /// [`GalleryOptions::allow_remote`] is set; there, every request must
    /// carry the access token ([`GalleryOptions::token`], else a new one).
    pub async fn serve(self, addr: SocketAddr) -> Result<GalleryServer, GalleryError> {
        if !addr.ip().is_loopback() && !self.options.allow_remote {
            return Err(GalleryError::NotLoopback(addr));
        }
        use uncensored_deliver::storage::Storage as _;
        self.storage.check().await?;
        let batch = match &self.journal {
            Some(journal) => BatchView::read(journal).await?,
            None => BatchView::default(),
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| GalleryError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| GalleryError::Bind { addr, source })?;
        let access = AccessToken::for_address(local.ip(), self.options.token.clone())?
            .map(|token| Access::new(token, local.port()));
        let limits = self.options.limits.clone();
        let (changes, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            catalog: Catalog::new(self.storage),
            journal: self.journal,
            batch: RwLock::new(Arc::new(batch)),
            thumbnails: Thumbnails::new(
                self.options.thumbnail_side,
                self.options.thumbnail_cache_bytes,
            ),
            changes,
            options: self.options,
            access,
            closing: CancellationToken::new(),
        });
        shared.catalog.refresh().await?;
        let (stop_poll, poll_stopped) = oneshot::channel::<()>();
        let poller = tokio::spawn(live::poll(shared.clone(), async move {
            let _ = poll_stopped.await;
        }));
        let (stop_http, http_stopped) = oneshot::channel::<()>();
        let app = crate::routes::router(shared.clone());
        let http = tokio::spawn(uncensored_deliver::serve::serve(
            listener,
            app,
            limits,
            async move {
                let _ = http_stopped.await;
            },
        ));
        Ok(GalleryServer {
            addr: local,
            shared,
            stop: Some((stop_poll, stop_http)),
            tasks: vec![poller, http],
        })
    }
}

/// A running gallery.
#[derive(Debug)]
pub struct GalleryServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<(oneshot::Sender<()>, oneshot::Sender<()>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl GalleryServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's URL, `http://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// The token every request must carry, if any: the one given in
    /// [`GalleryOptions::token`], or the one made for an address that is not
    /// loopback. Tell it only to whoever started the gallery.
    pub fn access_token(&self) -> Option<&AccessToken> {
        self.shared.access.as_ref().map(|access| &access.token)
    }

    /// The page's URL with the token, `http://ADDR/?token=TOKEN`, when one is
    /// asked: opened once in a browser, it lets the page in (a cookie keeps
    /// the token). A secret, like the token.
    pub fn login_url(&self) -> Option<String> {
        let token = self.access_token()?;
        Some(format!("{}?token={}", self.url(), token.expose()))
    }

    /// How many images it shows now.
    pub fn images(&self) -> usize {
        self.shared.catalog.len()
    }

    /// Reads the storage and the journal now instead of at the next poll.
    pub async fn refresh(&self) {
        live::refresh(&self.shared).await;
    }

    /// Stops polling and serving: open event streams end (the page stays
    /// on screen in the browser, without updates), requests in flight
    /// finish within [`ServerLimits::shutdown_grace`].
    pub async fn shutdown(mut self) {
        self.shared.closing.cancel();
        if let Some((poll, http)) = self.stop.take() {
            let _ = poll.send(());
            let _ = http.send(());
        }
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for GalleryServer {
    /// A gallery dropped without [`GalleryServer::shutdown`] stops too, at
    /// once (its connections are dropped).
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
