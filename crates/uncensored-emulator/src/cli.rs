//! The emulator's command-line flags, shared by its own binary and by the
//! `uncensored emulator` command.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{Config, ConfigError};

/// The emulator's flags: where it listens, its configuration file, and the
/// faults to inject.
#[derive(Debug, Clone, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Seed for every random choice, so that a run's faults repeat.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Probability (0-1) of answering an API request 500 or 503.
    #[arg(long, value_name = "P")]
    pub fail_rate: Option<f64>,
    /// Probability (0-1) of answering an API request 429 (retry after 1 s).
    #[arg(long, value_name = "P")]
    pub throttle_rate: Option<f64>,
    /// Probability (0-1) of cutting an image download short.
    #[arg(long, value_name = "P")]
    pub truncate_rate: Option<f64>,
    /// Probability (0-1) of dropping the connection of an API request.
    #[arg(long, value_name = "P")]
    pub drop_rate: Option<f64>,
    /// Probability (0-1) of delivering a webhook twice.
    #[arg(long, value_name = "P")]
    pub duplicate_webhook_rate: Option<f64>,
    /// Probability (0-1) of holding a webhook back by --webhook-delay-ms.
    #[arg(long, value_name = "P")]
    pub delayed_webhook_rate: Option<f64>,
    /// How long a delayed webhook waits.
    #[arg(long, value_name = "MS")]
    pub webhook_delay_ms: Option<u64>,
    /// Probability (0-1) of a job ending with the undocumented status `failed`.
    #[arg(long, value_name = "P")]
    pub failed_job_rate: Option<f64>,
    /// Latency added to every API request.
    #[arg(long, value_name = "MS")]
    pub latency_ms: Option<u64>,
    /// Requests per minute per key.
    #[arg(long, value_name = "RPM")]
    pub rate_limit: Option<u32>,
    /// Real time per modelled second of generation (modelled jobs take 5-30 s).
    #[arg(long, value_name = "X")]
    pub time_scale: Option<f64>,
    /// On exit, print the final statistics (as `GET /_emulator/stats` shows
    /// them) as one line of JSON on stdout.
    #[arg(long)]
    pub print_stats_on_exit: bool,
}

impl EmulatorArgs {
    /// The configuration these flags describe (the file, then the flags).
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mut config = match &self.config {
            Some(path) => Config::from_toml_file(path)?,
            None => Config::default(),
        };
        config.listen = self.listen;
        let faults = &mut config.faults;
        macro_rules! set {
            ($($flag:ident => $target:expr),* $(,)?) => { $(if let Some(value) = self.$flag { $target = value; })* };
        }
        set! {
            seed => config.seed,
            fail_rate => faults.fail_rate,
            throttle_rate => faults.throttle_rate,
            truncate_rate => faults.truncate_rate,
            drop_rate => faults.drop_rate,
            duplicate_webhook_rate => faults.duplicate_webhook_rate,
            delayed_webhook_rate => faults.delayed_webhook_rate,
            webhook_delay_ms => faults.webhook_delay_ms,
            failed_job_rate => faults.failed_job_rate,
            latency_ms => faults.latency_ms,
            rate_limit => config.rate_limit_rpm,
            time_scale => config.time_scale,
        }
        config.validate()?;
        Ok(config)
    }
}
