//! Effective settings: flags first, then the environment (clap reads both),
//! then the TOML configuration file, then defaults.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uncensored::callback::CallbackSecret;

use crate::cli::{Cli, Output};
use crate::failure::Failure;

/// The configuration file's fields. `Debug` masks the secrets.
#[derive(Default, Clone, Serialize, Deserialize)]
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
    /// Previous signing secrets of webhook notifications: each request is
    /// signed with them too, so receivers not yet updated still verify it.
    pub webhook_secret_previous: Vec<String>,
    /// The secret that signs and verifies callback URLs.
    pub callback_secret: Option<String>,
    /// Previous callback secrets: URLs signed with them still verify.
    pub callback_secret_previous: Vec<String>,
    /// Batch concurrency.
    pub concurrency: Option<u16>,
    /// Plain http allowed for a base URL that is not loopback, and for
    /// image downloads.
    pub allow_insecure_http: Option<bool>,
    /// Hosts, addresses or CIDR blocks that downloads may reach although they
    /// are not public (storage private on purpose).
    pub download_allow: Vec<String>,
}

impl std::fmt::Debug for FileConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = |secret: &Option<String>| secret.as_deref().map(mask);
        f.debug_struct("FileConfig")
            .field("api_key", &masked(&self.api_key))
            .field("base_url", &self.base_url)
            .field("out", &self.out)
            .field("store", &self.store.as_deref().map(redacted_store))
            .field("name_template", &self.name_template)
            .field("notify", &redacted_targets(&self.notify))
            .field("webhook_secret", &masked(&self.webhook_secret))
            .field(
                "webhook_secret_previous",
                &masked_all(&self.webhook_secret_previous),
            )
            .field("callback_secret", &masked(&self.callback_secret))
            .field(
                "callback_secret_previous",
                &masked_all(&self.callback_secret_previous),
            )
            .field("concurrency", &self.concurrency)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("download_allow", &self.download_allow)
            .finish()
    }
}

/// Everything a command needs to know, merged. `Debug` masks the secrets.
#[derive(Clone)]
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
    /// Previous webhook signing secrets, still signed with.
    pub webhook_secret_previous: Vec<String>,
    /// The secret of signed callback URLs, with its previous ones (never
    /// shown in Debug).
    pub callback_secret: Option<CallbackSecret>,
    /// Batch concurrency.
    pub concurrency: u16,
    /// Plain http allowed (`--allow-insecure-http`).
    pub allow_insecure_http: bool,
    /// The download allow-list (`--download-allow`, or the file's).
    pub download_allow: Vec<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("api_key", &self.api_key.as_deref().map(mask))
            .field("base_url", &self.base_url)
            .field("config_file", &self.config_file)
            .field("out", &self.out)
            .field("store", &self.store.as_deref().map(redacted_store))
            .field("name_template", &self.name_template)
            .field("notify", &redacted_targets(&self.notify))
            .field("webhook_secret", &self.webhook_secret.as_deref().map(mask))
            .field(
                "webhook_secret_previous",
                &masked_all(&self.webhook_secret_previous),
            )
            .field("callback_secret", &self.callback_secret)
            .field("concurrency", &self.concurrency)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("download_allow", &self.download_allow)
            .finish()
    }
}

fn masked_all(secrets: &[String]) -> Vec<String> {
    secrets.iter().map(|s| mask(s)).collect()
}

/// A list of previous secrets: `variable` (comma-separated) when it is set
/// and not empty, else the file's list.
fn previous_secrets(variable: &str, from_file: Vec<String>) -> Vec<String> {
    match std::env::var(variable)
        .ok()
        .filter(|s| !s.trim().is_empty())
    {
        Some(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None => from_file,
    }
}

fn redacted_targets(targets: &[String]) -> Vec<String> {
    targets
        .iter()
        .map(|target| uncensored_deliver::notify::NotifierUrl::redacted(target))
        .collect()
}

/// A storage URL as it may be shown (credentials in it, if any, removed).
fn redacted_store(store: &str) -> String {
    match url::Url::parse(store) {
        Ok(mut url) if url.password().is_some() || !url.username().is_empty() => {
            let _ = url.set_password(None);
            let _ = url.set_username("");
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => store.to_string(),
    }
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
            webhook_secret_previous: previous_secrets(
                "UNCENSORED_WEBHOOK_SECRET_PREVIOUS",
                file.webhook_secret_previous,
            ),
            callback_secret: callback_secret(
                file.callback_secret,
                previous_secrets(
                    "UNCENSORED_CALLBACK_SECRET_PREVIOUS",
                    file.callback_secret_previous,
                ),
            )?,
            concurrency: file.concurrency.unwrap_or(4),
            allow_insecure_http: cli.allow_insecure_http
                || file.allow_insecure_http.unwrap_or(false),
            download_allow: if cli.download_allow.is_empty() {
                file.download_allow
            } else {
                cli.download_allow.clone()
            },
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
            "webhook_secret_previous": masked_all(&self.webhook_secret_previous),
            "callback_secret": self.callback_secret.as_ref().map(|s| crate::settings::mask(s.expose_secret())),
            "callback_secret_previous": self.callback_secret.as_ref().map_or(0, CallbackSecret::previous_count),
            "concurrency": self.concurrency,
        })
    }
}

/// `UNCENSORED_CALLBACK_SECRET`, else the file's `callback_secret`; an empty
/// variable counts as unset; with its `previous` ones. A weak secret is
/// refused, never echoed.
fn callback_secret(
    from_file: Option<String>,
    previous: Vec<String>,
) -> Result<Option<CallbackSecret>, Failure> {
    let text = std::env::var("UNCENSORED_CALLBACK_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
        .or(from_file);
    let Some(text) = text else {
        if !previous.is_empty() {
            return Err(Failure::input(
                "UNCENSORED_CALLBACK_SECRET_PREVIOUS (or callback_secret_previous) is set without \
                 a current UNCENSORED_CALLBACK_SECRET (or callback_secret)",
            ));
        }
        return Ok(None);
    };
    let mut secret = CallbackSecret::new(text).map_err(|e| {
        Failure::input(format!(
            "UNCENSORED_CALLBACK_SECRET (or callback_secret in the config file): {e}"
        ))
    })?;
    for (number, old) in (1..).zip(previous) {
        secret = secret.with_previous(old).map_err(|e| {
            Failure::input(format!(
                "UNCENSORED_CALLBACK_SECRET_PREVIOUS (or callback_secret_previous), secret {number}: {e}"
            ))
        })?;
    }
    Ok(Some(secret))
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
            "{} is not a valid configuration: {}",
            path.display(),
            toml_error(&text, &e)
        ))
    })
}

/// A TOML error as it may be printed: where it is and what is wrong, never
/// the offending line (toml's own message quotes it, and with it the API key
/// when the error is on the `api_key` line), nor any value of that line.
fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let Some(span) = error.span() else {
        return scrub(error.message(), "");
    };
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or("");
    let line_number = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let line = &text[line_start..line_end];
    let key = line
        .split_once('=')
        .map(|(key, _)| key.trim().trim_matches('"'))
        .filter(|key| {
            !key.is_empty()
                && key.len() <= 40
                && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    let place = match key {
        Some(key) => format!("line {line_number}, in `{key}`"),
        None => format!("line {line_number}"),
    };
    format!("{place}: {}", scrub(error.message(), line))
}

/// `message` with every word of `line` that could be a value removed.
fn scrub(message: &str, line: &str) -> String {
    let value = line.split_once('=').map_or(line, |(_, value)| value);
    let mut scrubbed = message.lines().next().unwrap_or("").to_string();
    for word in value
        .split(|c: char| c.is_whitespace() || "\"'`[]{},=".contains(c))
        .filter(|word| word.len() >= 3)
    {
        scrubbed = scrubbed.replace(word, "…");
    }
    scrubbed.chars().take(200).collect()
}

/// `sk-live-1234abcd` → `sk-l…(16 characters)`: enough to tell keys apart, not to use one.
pub fn mask(secret: &str) -> String {
    let shown: String = secret.chars().take(4).collect();
    format!("{shown}…({} characters)", secret.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-live-abcdef0123456789SECRET";

    #[test]
    fn a_toml_error_on_the_key_line_does_not_print_the_key() {
        for text in [
            format!("api_key = \"{KEY}\nbase_url = \"https://x\"\n"),
            format!("api_key = {KEY}\n"),
            format!("api_key = [\"{KEY}\"]\n"),
            format!("api_key = \"{KEY}\" extra\n"),
            format!("concurrency = 4\napi_key = 12{KEY}\n"),
        ] {
            let error = toml::from_str::<FileConfig>(&text).unwrap_err();
            let shown = toml_error(&text, &error);
            assert!(
                !shown.contains("SECRET") && !shown.contains("abcdef"),
                "{shown}"
            );
            assert!(shown.starts_with("line "), "{shown}");
        }
        let text = "concurrency = \"many\"\n";
        let error = toml::from_str::<FileConfig>(text).unwrap_err();
        assert!(toml_error(text, &error).starts_with("line 1, in `concurrency`"));
    }

    #[test]
    fn debug_masks_every_secret() {
        let file = FileConfig {
            api_key: Some(KEY.into()),
            webhook_secret: Some("whsec_SECRETSECRETSECRET".into()),
            callback_secret: Some("SECRET-callback-0123456789012345678901".into()),
            callback_secret_previous: vec!["SECRET-previous-0123456789012345678901".into()],
            webhook_secret_previous: vec!["whsec_SECRETPREVIOUS".into()],
            notify: vec!["slack:https://hooks.slack.com/services/T0/B0/SECRETTOKEN".into()],
            store: Some("s3://AKIDEXAMPLE:SECRETKEY@bucket/prefix".into()),
            ..FileConfig::default()
        };
        let shown = format!("{file:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        let settings = Settings {
            api_key: file.api_key.clone(),
            base_url: None,
            config_file: None,
            out: PathBuf::from("images"),
            store: file.store.clone(),
            name_template: None,
            notify: file.notify.clone(),
            webhook_secret: file.webhook_secret.clone(),
            webhook_secret_previous: file.webhook_secret_previous.clone(),
            callback_secret: Some(
                CallbackSecret::new("SECRET-callback-0123456789012345678901")
                    .unwrap()
                    .with_previous("SECRET-previous-0123456789012345678901")
                    .unwrap(),
            ),
            concurrency: 4,
            allow_insecure_http: false,
            download_allow: Vec::new(),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
