//! `uncensored gallery` and `batch --gallery`: the gallery crate
//! (`uncensored_gallery`) on the storage and journal the settings name.

use std::net::SocketAddr;
use std::sync::Arc;

use uncensored_deliver::journal::{Journal, JournalLocation};
use uncensored_deliver::serve::ServerLimits;
use uncensored_deliver::storage::ObjectStorage;
use uncensored_gallery::{Gallery, GalleryError, GalleryOptions, GalleryServer};

use crate::cli::{self, Cli, Output};
use crate::context::{default_journal, storage_url};
use crate::failure::Failure;
use crate::settings::Settings;

impl From<GalleryError> for Failure {
    fn from(error: GalleryError) -> Self {
        match error {
            GalleryError::Storage(storage) => storage.into(),
            GalleryError::Bind { .. } => Failure::other(error.to_string()),
            other => Failure::input(other.to_string()),
        }
    }
}

/// `uncensored gallery`: serves until Ctrl-C or SIGTERM.
pub async fn run(cli: &Cli, args: &cli::Gallery) -> Result<(), Failure> {
    let output = Output {
        out: args.out.clone(),
        store: args.store.clone(),
        name_template: None,
        notify: Vec::new(),
    };
    let token = args
        .token
        .as_ref()
        .map(|t| t.token("--token"))
        .transpose()?;
    let settings = Settings::load(cli, Some(&output))?;
    let mut gallery = Gallery::open(&storage_url(&settings)?).await?;
    if let Some(journal) = batch_journal(&settings, args.journal.as_deref()).await? {
        gallery = gallery.with_journal(journal);
    }
    let mut options = GalleryOptions::default();
    options.allow_remote = args.allow_remote;
    options.limits = args.limits.limits(ServerLimits::default());
    let given = token.is_some();
    options.token = token;
    let server = gallery.with_options(options).serve(args.listen).await?;
    announce(&server, "stop with Ctrl-C", cli.json);
    tell_access(&server, given);
    crate::stopped().await?;
    server.shutdown().await;
    Ok(())
}

/// The journal `--journal` names (which must exist), else the one `batch`
/// keeps beside the images when there is one.
async fn batch_journal(
    settings: &Settings,
    named: Option<&str>,
) -> Result<Option<Arc<dyn Journal>>, Failure> {
    let location = match named {
        Some(location) => JournalLocation::new(location),
        None => {
            let path = default_journal(settings);
            if !path.exists() {
                return Ok(None);
            }
            JournalLocation::File(path)
        }
    };
    if let JournalLocation::File(path) = &location
        && !path.exists()
    {
        return Err(Failure::input(format!(
            "--journal: there is no journal at {}",
            path.display()
        )));
    }
    // Shown without its password.
    let shown = location.to_string();
    location
        .open()
        .await
        .map(Some)
        .map_err(|e| Failure::other(format!("cannot open the journal {shown}: {e}")))
}

/// `batch --gallery`: the gallery of the batch's own storage and journal,
/// started before the first line is sent.
pub async fn start_for_batch(
    storage: ObjectStorage,
    journal: Arc<dyn Journal>,
    listen: SocketAddr,
    json: bool,
) -> Result<GalleryServer, Failure> {
    let server = Gallery::new(storage)
        .with_journal(journal)
        .serve(listen)
        .await?;
    announce(&server, "it stays up after the batch until Ctrl-C", json);
    Ok(server)
}

/// After the batch: the page stays up (a person is still looking) until Ctrl-C or SIGTERM.
pub async fn keep_serving(server: GalleryServer) {
    eprintln!(
        "batch finished; the gallery stays at {} until Ctrl-C",
        server.url()
    );
    server.refresh().await;
    let _ = crate::stopped().await;
    server.shutdown().await;
}

/// How to get in, when a token is asked: the token made here is printed
/// this once (on stderr, never with --json's stdout); a given one never.
fn tell_access(server: &GalleryServer, given: bool) {
    let Some(login) = server.login_url() else {
        return;
    };
    let elsewhere = if server.local_addr().ip().is_unspecified() {
        " (with this machine's name in place of the address)"
    } else {
        ""
    };
    if given {
        eprintln!(
            "every request needs the access token of --token or UNCENSORED_GALLERY_TOKEN: open {}?token=TOKEN once in a browser{elsewhere} (a cookie keeps it), or send \"Authorization: Bearer TOKEN\"",
            server.url()
        );
    } else {
        eprintln!(
            "every request needs this gallery's access token (keep it secret; UNCENSORED_GALLERY_TOKEN chooses one): open {login} once in a browser{elsewhere} (a cookie keeps it), or send it as \"Authorization: Bearer\""
        );
    }
}

fn announce(server: &GalleryServer, stop: &str, json: bool) {
    // The URL first on stdout, alone (or as JSON with --json): scripts and tests read it.
    if json {
        println!("{}", serde_json::json!({"gallery": server.url()}));
    } else {
        println!("{}", server.url());
    }
    eprintln!(
        "gallery of {} images at {} ({stop})",
        server.images(),
        server.url()
    );
}
