//! Effective settings: flags first, then the environment (clap reads both),
//! then the TOML configuration file, then defaults.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uncensored::callback::CallbackSecret;

use crate::cli::{Cli, Output};
use crate::failure::Failure;

/// The configuration file's fields.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// The API key.
    pub api_key: Option<String>,
    /// The API's base URL.
    pub base_url: Option<String>,
    /// Directory for images.
    pub out: Option<PathBuf>,
    /// Storage URL (file:// or s3://).
    pub store: Option<String>,
    /// Object name template.
    pub name_template: Option<String>,
    /// Notification targets (slack:URL, webhook:URL).
    pub notify: Vec<String>,
    /// The signing secret of webhook notifications.
    pub webhook_secret: Option<String>,
    /// The secret that signs and verifies callback URLs.
    pub callback_secret: Option<String>,
    /// Batch concurrency.
    pub concurrency: Option<u16>,
}

/// Everything a command needs to know, merged.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The API key, if any.
    pub api_key: Option<String>,
    /// The base URL, if not production.
    pub base_url: Option<String>,
    /// Where the file came from, when there was one.
    pub config_file: Option<PathBuf>,
    /// Image directory.
    pub out: PathBuf,
    /// Storage URL, overriding `out`.
    pub store: Option<String>,
    /// Object name template.
    pub name_template: Option<String>,
    /// Notification targets.
    pub notify: Vec<String>,
    /// Webhook signing secret.
    pub webhook_secret: Option<String>,
    /// The secret of signed callback URLs (never shown in Debug).
    pub callback_secret: Option<CallbackSecret>,
    /// Batch concurrency.
    pub concurrency: u16,
}

/// The default configuration file: `$XDG_CONFIG_HOME/uncensored/config.toml`,
/// else `~/.config/uncensored/config.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(base.join("uncensored/config.toml"))
}

impl Settings {
    /// Merges the command line (with environment) over the file over defaults.
    pub fn load(cli: &Cli, output: Option<&Output>) -> Result<Self, Failure> {
        let (file, config_file) = match &cli.config {
            Some(path) => (read(path)?, Some(path.clone())),
            None => match default_config_path().filter(|p| p.exists()) {
                Some(path) => (read(&path)?, Some(path)),
                None => (FileConfig::default(), None),
            },
        };
        let notify = match output.map(|o| o.notify.clone()).filter(|n| !n.is_empty()) {
            Some(flags) => flags,
            None => file.notify.clone(),
        };
        Ok(Self {
            api_key: cli.api_key.clone().or(file.api_key),
            base_url: cli.base_url.clone().or(file.base_url),
            config_file,
            out: output
                .and_then(|o| o.out.clone())
                .or(file.out)
                .unwrap_or_else(|| PathBuf::from("images")),
            store: output.and_then(|o| o.store.clone()).or(file.store),
            name_template: output
                .and_then(|o| o.name_template.clone())
                .or(file.name_template),
            notify,
            webhook_secret: std::env::var("UNCENSORED_WEBHOOK_SECRET")
                .ok()
                .or(file.webhook_secret),
            callback_secret: callback_secret(file.callback_secret)?,
            concurrency: file.concurrency.unwrap_or(4),
        })
    }

    /// The settings as `config show` prints them, secrets masked.
    pub fn shown(&self) -> serde_json::Value {
        let mask = |secret: &Option<String>| secret.as_ref().map(|s| mask(s));
        serde_json::json!({
            "config_file": self.config_file.as_ref().map(|p| p.display().to_string()),
            "api_key": mask(&self.api_key),
            "base_url": self.base_url.clone().unwrap_or_else(|| uncensored::DEFAULT_BASE_URL.to_string()),
            "out": self.out.display().to_string(),
            "store": self.store,
            "name_template": self.name_template.clone().unwrap_or_else(|| "{date}/{job_id}.{ext}".into()),
            "notify": self.notify.iter().map(|target| uncensored_deliver::notify::NotifierUrl::redacted(target)).collect::<Vec<_>>(),
            "webhook_secret": mask(&self.webhook_secret),
            "callback_secret": self.callback_secret.as_ref().map(|s| crate::settings::mask(s.expose_secret())),
            "concurrency": self.concurrency,
        })
    }
}

/// `UNCENSORED_CALLBACK_SECRET`, else the file's `callback_secret`; an empty
/// variable counts as unset. A weak secret is refused, never echoed.
fn callback_secret(from_file: Option<String>) -> Result<Option<CallbackSecret>, Failure> {
    let text = std::env::var("UNCENSORED_CALLBACK_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .or(from_file);
    text.map(|text| {
        CallbackSecret::new(text).map_err(|e| {
            Failure::input(format!(
                "UNCENSORED_CALLBACK_SECRET (or callback_secret in the config file): {e}"
            ))
        })
    })
    .transpose()
}

fn read(path: &Path) -> Result<FileConfig, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::input(format!(
            "cannot read the configuration file {}: {e}",
            path.display()
        ))
    })?;
    toml::from_str(&text).map_err(|e| {
        Failure::input(format!(
            "{} is not a valid configuration: {e}",
            path.display()
        ))
    })
}

/// `sk-live-1234abcd` → `sk-l…(16 characters)`: enough to tell keys apart, not to use one.
pub fn mask(secret: &str) -> String {
    let shown: String = secret.chars().take(4).collect();
    format!("{shown}…({} characters)", secret.chars().count())
}
