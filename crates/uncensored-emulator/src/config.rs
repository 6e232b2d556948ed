//! What the emulator accepts and how it misbehaves: keys, models, prices,
//! moderation, rate limits, timing and faults. Loaded from TOML or built in code.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The key that works out of the box.
pub const DEFAULT_KEY: &str = "emulator-key";

/// The whole configuration. Every field has a default, so an empty TOML file
/// (or `Config::default()`) is a working emulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where to listen. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Seed for every random choice (faults, job ids, generation times).
    pub seed: u64,
    /// Requests per minute per key, unless the key sets its own.
    pub rate_limit_rpm: u32,
    /// The length of a key's rate-limit window, in seconds: the API's 60
    /// (openapi.yaml); tests shorten it, and the ceiling is then per window.
    pub rate_window_secs: u64,
    /// Largest request body accepted, in bytes; larger gets `413 file_too_large`.
    pub max_body_bytes: usize,
    /// How long an idempotent response is replayed, in seconds (24 hours).
    pub idempotency_ttl_secs: u64,
    /// Simulated generation time, in modelled seconds (the API documents 5-30 s).
    pub generation_seconds: Range,
    /// Real time = modelled time × `time_scale`. The default makes a modelled
    /// 5-30 s job take 50-300 ms; tests use smaller values still.
    pub time_scale: f64,
    /// Case-insensitive terms that fail moderation (`403`, code `content_moderation`).
    pub blocked_terms: Vec<String>,
    /// API keys. The default holds `emulator-key` with every scope.
    pub keys: Vec<KeyConfig>,
    /// Models and their prices. The default holds `model-dev`, `model-pro` and
    /// the variable-pricing `model-flex`.
    pub models: Vec<ModelConfig>,
    /// The model used when a request names none.
    pub default_model: String,
    /// Faults to inject, each with a probability.
    pub faults: Faults,
    /// Webhook delivery.
    pub webhooks: WebhookConfig,
    /// What a credit is worth, in nanos (1 USD = 1,000,000,000 nanos): the
    /// rate at which balances and prices in credits appear on the billing
    /// endpoints. The default, 1,000,000, makes a credit $0.001.
    pub nanos_per_credit: u64,
    /// Transactions kept per account; the oldest go first.
    pub max_transactions: usize,
}

/// A closed range of numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

/// An API key the emulator accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The secret sent as `x-api-key`.
    pub key: String,
    /// A label for stats, so that stats never show the key itself.
    pub name: String,
    /// Scopes, such as `image:*`, `image:gen:*`, `image:gen:model-pro` or
    /// `billing:read` (the balance, the transactions and the limits; `image:*`
    /// does not imply it). The default is `image:*` and `billing:read`.
    #[serde(default = "all_scopes")]
    pub scopes: Vec<String>,
    /// Starting balance, in credits.
    #[serde(default = "default_balance")]
    pub balance: u64,
    /// This key's requests per minute, overriding `rate_limit_rpm`.
    #[serde(default)]
    pub rate_limit_rpm: Option<u32>,
}

/// A model and its price.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name requests use.
    pub name: String,
    /// Credits per image.
    pub price: u64,
    /// For variable-pricing models: price multiplier per `resolution`. A model
    /// with any entry here requires `resolution` to be one of them.
    #[serde(default)]
    pub resolutions: BTreeMap<String, u64>,
    /// For variable-pricing models: price multiplier per `quality`.
    #[serde(default)]
    pub qualities: BTreeMap<String, u64>,
}

/// Injected faults. Each probability is in `[0, 1]` and drawn from the seeded
/// random source, so a run with the same seed and requests fails the same way.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability that an API request is answered `500` or `503` instead.
    pub fail_rate: f64,
    /// Probability that an image download stops halfway (Content-Length larger
    /// than the bytes sent).
    pub truncate_rate: f64,
    /// Probability that an API request is answered `429` (retry after 1 s)
    /// although the key is within its rate limit.
    pub throttle_rate: f64,
    /// Probability that the connection is cut instead of answering an API request.
    pub drop_rate: f64,
    /// Probability that a webhook is delivered twice.
    pub duplicate_webhook_rate: f64,
    /// Probability that a webhook is held back by `webhook_delay_ms`.
    pub delayed_webhook_rate: f64,
    /// How long a delayed webhook waits, in milliseconds.
    pub webhook_delay_ms: u64,
    /// Probability that a job ends with the undocumented status `failed`.
    pub failed_job_rate: f64,
    /// Latency added to every API request, in milliseconds.
    pub latency_ms: u64,
}

/// How webhooks are delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Per-attempt timeout, in seconds (the API gives receivers 10).
    pub timeout_secs: u64,
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// First retry delay in milliseconds, doubling each attempt (scaled by `time_scale`).
    pub initial_backoff_ms: u64,
    /// Deliver to hosts other than loopback. Off by default, so that a stray
    /// `callback_url` never makes the emulator send traffic off this machine.
    pub allow_remote_hosts: bool,
}

fn all_scopes() -> Vec<String> {
    vec!["image:*".into(), "billing:read".into()]
}

fn default_balance() -> u64 {
    100_000
}

impl Default for Config {
    fn default() -> Self {
        let flex = ModelConfig {
            name: "model-flex".into(),
            price: 2,
            resolutions: [("1k", 1), ("2k", 2), ("4k", 4), ("8k", 8)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            qualities: [("medium", 1), ("high", 2)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        };
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: 0,
            rate_limit_rpm: 600,
            rate_window_secs: 60,
            max_body_bytes: 64 * 1024,
            idempotency_ttl_secs: 24 * 60 * 60,
            generation_seconds: Range {
                min: 5.0,
                max: 30.0,
            },
            time_scale: 0.01,
            blocked_terms: vec!["forbidden-term".into()],
            keys: vec![KeyConfig {
                key: DEFAULT_KEY.into(),
                name: "default".into(),
                scopes: all_scopes(),
                balance: default_balance(),
                rate_limit_rpm: None,
            }],
            models: vec![
                ModelConfig {
                    name: "model-dev".into(),
                    price: 1,
                    resolutions: BTreeMap::new(),
                    qualities: BTreeMap::new(),
                },
                ModelConfig {
                    name: "model-pro".into(),
                    price: 4,
                    resolutions: BTreeMap::new(),
                    qualities: BTreeMap::new(),
                },
                flex,
            ],
            default_model: uncensored_api::limits::generate_image_request::MODEL_DEFAULT.into(),
            faults: Faults::default(),
            webhooks: WebhookConfig::default(),
            nanos_per_credit: 1_000_000,
            max_transactions: 100_000,
        }
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            timeout_secs: 10,
            max_attempts: 5,
            initial_backoff_ms: 1_000,
            allow_remote_hosts: false,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("{path} is not a valid emulator configuration: {source}")]
    Parse {
        /// The file.
        path: String,
        /// What TOML said, with the line.
        source: Box<toml::de::Error>,
    },
    /// A value is out of its range.
    #[error("invalid emulator configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML file; fields it omits keep their defaults.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: shown,
            source: Box::new(source),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and references between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let f = &self.faults;
        for (name, p) in [
            ("fail_rate", f.fail_rate),
            ("throttle_rate", f.throttle_rate),
            ("truncate_rate", f.truncate_rate),
            ("drop_rate", f.drop_rate),
            ("duplicate_webhook_rate", f.duplicate_webhook_rate),
            ("delayed_webhook_rate", f.delayed_webhook_rate),
            ("failed_job_rate", f.failed_job_rate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(ConfigError::Invalid(format!(
                    "faults.{name} must be between 0 and 1, not {p}"
                )));
            }
        }
        if !(self.time_scale >= 0.0 && self.time_scale.is_finite()) {
            return Err(ConfigError::Invalid(format!(
                "time_scale must be 0 or more, not {}",
                self.time_scale
            )));
        }
        let g = self.generation_seconds;
        if !(g.min >= 0.0 && g.min <= g.max && g.max.is_finite()) {
            return Err(ConfigError::Invalid(format!(
                "generation_seconds needs 0 <= min <= max, not {} to {}",
                g.min, g.max
            )));
        }
        if self.rate_limit_rpm == 0 || self.keys.iter().any(|k| k.rate_limit_rpm == Some(0)) {
            return Err(ConfigError::Invalid(
                "a rate limit must allow at least 1 request per minute".into(),
            ));
        }
        if self.nanos_per_credit == 0 {
            return Err(ConfigError::Invalid(
                "nanos_per_credit must be at least 1".into(),
            ));
        }
        if let Some(key) = self.keys.iter().find(|k| {
            k.balance
                .checked_mul(self.nanos_per_credit)
                .is_none_or(|nanos| nanos > i64::MAX as u64)
        }) {
            return Err(ConfigError::Invalid(format!(
                "the balance of key {:?} ({} credits at {} nanos each) does not fit the API's 64-bit nanos",
                key.name, key.balance, self.nanos_per_credit
            )));
        }
        if !(1..=3600).contains(&self.rate_window_secs) {
            return Err(ConfigError::Invalid(format!(
                "rate_window_secs must be 1 to 3600, not {}",
                self.rate_window_secs
            )));
        }
        if !self.models.iter().any(|m| m.name == self.default_model) {
            return Err(ConfigError::Invalid(format!(
                "default_model {:?} is not among models",
                self.default_model
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_default() {
        let config: Config = toml::from_str("").unwrap();
        assert_eq!(config.keys[0].key, DEFAULT_KEY);
        config.validate().unwrap();
    }

    #[test]
    fn a_typo_is_named() {
        let error = toml::from_str::<Config>("rate_limit_rmp = 5")
            .unwrap_err()
            .to_string();
        assert!(error.contains("rate_limit_rmp"), "{error}");
    }

    #[test]
    fn out_of_range_probabilities_are_refused() {
        let config: Config = toml::from_str("[faults]\nfail_rate = 1.5").unwrap();
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("faults.fail_rate")
        );
    }
}
