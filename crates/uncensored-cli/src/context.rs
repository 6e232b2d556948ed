//! What every command builds from the settings: the client (against the API,
//! or an in-process emulator), the storage and the notifiers.

use std::path::PathBuf;
use std::sync::Arc;

use uncensored::{Client, GenerateRequest, key_fingerprint};
use uncensored_deliver::journal::{Journal, JournalLocation, PostgresJournal};
use uncensored_deliver::notify::{Notifier, NotifierOptions, NotifierUrl};
use uncensored_deliver::storage::{NameTemplate, ObjectStorage, Storage, StorageUrl};
use uncensored_deliver::{Deliverer, PostgresPacer};
use uncensored_emulator::{Emulator, EmulatorHandle};

use crate::cli::RequestFields;
use crate::failure::Failure;
use crate::settings::Settings;

/// A client, and the emulator behind it when --emulator is on.
pub struct Connection {
    /// The client.
    pub client: Client,
    /// Kept alive for the command's duration.
    pub _emulator: Option<EmulatorHandle>,
}

/// How a command paces its requests.
pub enum Pacing {
    /// Not at all: one request at a time needs none.
    Off,
    /// Within this process.
    Local,
    /// With every process on the key that shares this journal's PostgreSQL
    /// database, through the journal's own connection pool.
    Shared(Arc<PostgresJournal>),
}

/// Connects to the API, or starts the in-process emulator.
pub async fn connect(
    settings: &Settings,
    emulator: bool,
    pacing: Pacing,
) -> Result<Connection, Failure> {
    let (base_url, key, handle) = if emulator {
        let handle = Emulator::start(uncensored_emulator::Config::default())
            .await
            .map_err(|e| Failure::other(format!("cannot start the emulator: {e}")))?;
        let key = settings
            .api_key
            .clone()
            .unwrap_or_else(|| uncensored_emulator::DEFAULT_KEY.to_string());
        (Some(handle.base_url().to_string()), Some(key), Some(handle))
    } else {
        (settings.base_url.clone(), settings.api_key.clone(), None)
    };
    let key = key.ok_or_else(|| {
        Failure::from(uncensored::Error::Config(
            "no API key: set UNCENSORED_API_KEY (or --api-key, or api_key in the config file)"
                .into(),
        ))
    })?;
    let mut builder = Client::builder();
    match pacing {
        Pacing::Off => {}
        Pacing::Local => builder = builder.pace_requests(true),
        Pacing::Shared(journal) => {
            let pacer = PostgresPacer::new(&journal, &key_fingerprint(&key));
            builder = builder.pacer(Arc::new(pacer));
        }
    }
    let mut builder = builder
        .api_key(key)
        .allow_insecure_http(settings.allow_insecure_http)
        .download_allow(settings.download_allow.iter().cloned());
    if let Some(url) = base_url {
        builder = builder.base_url(url);
    }
    Ok(Connection {
        client: builder.build()?,
        _emulator: handle,
    })
}

/// Where images go: `--store URL`, else `--out DIR`.
pub fn storage_url(settings: &Settings) -> Result<StorageUrl, Failure> {
    match &settings.store {
        Some(url) => StorageUrl::parse(url).map_err(|e| Failure::input(format!("--store: {e}"))),
        None => StorageUrl::parse(&settings.out.display().to_string())
            .map_err(|e| Failure::input(format!("--out: {e}"))),
    }
}

/// The storage the settings name, checked (the bucket exists, the
/// credentials are accepted) before anything is paid for.
pub async fn storage(settings: &Settings) -> Result<Arc<dyn Storage>, Failure> {
    Ok(Arc::new(object_storage(settings).await?))
}

/// The storage the settings name, checked, as the object storage it is
/// (to share one, a `memory://` store too, between a batch and its gallery).
pub async fn object_storage(settings: &Settings) -> Result<ObjectStorage, Failure> {
    let url = storage_url(settings)?;
    let storage = url.open()?;
    storage.check().await?;
    Ok(storage)
}

/// Where the journal of a batch lives by default: beside the images when
/// they are files, else in `.uncensored/` of the working directory.
pub fn default_journal(settings: &Settings) -> PathBuf {
    let directory = storage_url(settings)
        .ok()
        .and_then(|url| url.directory().map(PathBuf::from));
    directory
        .unwrap_or_default()
        .join(".uncensored/journal.sqlite")
}

/// The object name template.
pub fn template(settings: &Settings) -> Result<NameTemplate, Failure> {
    match &settings.name_template {
        Some(text) => Ok(NameTemplate::new(text.clone())?),
        None => Ok(NameTemplate::default()),
    }
}

/// The notifiers of every `--notify URL` (see `uncensored_deliver::notify::NotifierUrl`),
/// each checked (an SMTP login, ...) before anything is paid for.
pub async fn notifiers(settings: &Settings) -> Result<Vec<Arc<dyn Notifier>>, Failure> {
    let options = NotifierOptions {
        webhook_secret: settings.webhook_secret.clone().map(Into::into),
        webhook_previous_secrets: settings
            .webhook_secret_previous
            .iter()
            .cloned()
            .map(Into::into)
            .collect(),
        webhook_secret_setting: Some("UNCENSORED_WEBHOOK_SECRET"),
    };
    let mut notifiers = Vec::new();
    for target in &settings.notify {
        let url = NotifierUrl::new(target.clone());
        let notifier = url
            .build(&options)
            .map_err(|e| Failure::input(format!("--notify: {e}")))?;
        notifier
            .check()
            .await
            .map_err(|e| Failure::input(format!("--notify {url}: {e}")))?;
        notifiers.push(notifier);
    }
    Ok(notifiers)
}

/// Applies the request flags to a request.
pub fn apply(fields: &RequestFields, mut request: GenerateRequest) -> GenerateRequest {
    if let Some(model) = &fields.model {
        request = request.model(model.clone());
    }
    if let Some(width) = fields.width {
        request = request.width(width);
    }
    if let Some(height) = fields.height {
        request = request.height(height);
    }
    if let Some(resolution) = &fields.resolution {
        request = request.resolution(resolution.clone());
    }
    if let Some(quality) = &fields.quality {
        request = request.quality(quality.clone());
    }
    for (key, value) in &fields.settings {
        request = request.setting(key.clone(), value.clone());
    }
    request
}

/// The pipeline the settings describe: their storage, template and notifiers.
pub async fn deliverer(
    settings: &Settings,
    client: Client,
    journal: Arc<dyn Journal>,
) -> Result<Deliverer, Failure> {
    deliverer_on(settings, client, journal, storage(settings).await?).await
}

/// The pipeline the settings describe, storing into `storage`.
pub async fn deliverer_on(
    settings: &Settings,
    client: Client,
    journal: Arc<dyn Journal>,
    storage: Arc<dyn Storage>,
) -> Result<Deliverer, Failure> {
    let mut deliverer = Deliverer::new(client, storage, journal).with_template(template(settings)?);
    for notifier in notifiers(settings).await? {
        deliverer = deliverer.with_notifier(notifier);
    }
    Ok(deliverer)
}

/// The journal of a batch shared by workers, opened (and its schema
/// migrated) before anything is paid for, and how its requests are paced:
/// on PostgreSQL with every worker of the key, through the journal's pool
/// (one pool per worker), else within this process.
pub async fn shared_journal(
    location: &JournalLocation,
) -> Result<(Arc<dyn Journal>, Pacing), Failure> {
    match location {
        JournalLocation::Postgres(url) => {
            use secrecy::ExposeSecret as _;
            let journal = PostgresJournal::connect(url.expose_secret())
                .await
                .map_err(|e| Failure::journal(location, e))?;
            let journal = Arc::new(journal);
            Ok((journal.clone(), Pacing::Shared(journal)))
        }
        JournalLocation::File(_) => Ok((self::journal(location).await?, Pacing::Local)),
    }
}

/// The journal at `location`, opened (and its schema migrated) before
/// anything is paid for.
pub async fn journal(location: &JournalLocation) -> Result<Arc<dyn Journal>, Failure> {
    location
        .open()
        .await
        .map_err(|e| Failure::journal(location, e))
}
