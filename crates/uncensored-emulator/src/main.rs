//! `uncensored-emulator`: the emulator as a process.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use uncensored_emulator::{Config, Emulator};

/// A local emulator of the image-generation API, for development and tests.
///
/// Out of the box it accepts the API key `emulator-key` (every scope, a balance
/// of 100,000 credits: 100,000 `model-dev` images) and the models `model-dev`,
/// `model-pro` and the variable-pricing `model-flex`. The first line it prints
/// is its base URL, to be given to a client as is. Keys, scopes, balances,
/// models, prices and blocked terms come from a TOML file (`--config`); the
/// flags below override it.
#[derive(Debug, Parser)]
#[command(name = "uncensored-emulator", version)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed for every random choice, so that a run's faults repeat.
    #[arg(long)]
    seed: Option<u64>,
    /// Probability (0-1) of answering an API request 500 or 503.
    #[arg(long, value_name = "P")]
    fail_rate: Option<f64>,
    /// Probability (0-1) of answering an API request 429 (retry after 1 s).
    #[arg(long, value_name = "P")]
    throttle_rate: Option<f64>,
    /// Probability (0-1) of cutting an image download short.
    #[arg(long, value_name = "P")]
    truncate_rate: Option<f64>,
    /// Probability (0-1) of dropping the connection of an API request.
    #[arg(long, value_name = "P")]
    drop_rate: Option<f64>,
    /// Probability (0-1) of delivering a webhook twice.
    #[arg(long, value_name = "P")]
    duplicate_webhook_rate: Option<f64>,
    /// Probability (0-1) of holding a webhook back by --webhook-delay-ms.
    #[arg(long, value_name = "P")]
    delayed_webhook_rate: Option<f64>,
    /// How long a delayed webhook waits.
    #[arg(long, value_name = "MS")]
    webhook_delay_ms: Option<u64>,
    /// Probability (0-1) of a job ending with the undocumented status `failed`.
    #[arg(long, value_name = "P")]
    failed_job_rate: Option<f64>,
    /// Latency added to every API request.
    #[arg(long, value_name = "MS")]
    latency_ms: Option<u64>,
    /// Requests per minute per key.
    #[arg(long, value_name = "RPM")]
    rate_limit: Option<u32>,
    /// Real time per modelled second of generation (modelled jobs take 5-30 s).
    #[arg(long, value_name = "X")]
    time_scale: Option<f64>,
    /// On exit, print the final statistics (as `GET /_emulator/stats` shows
    /// them) as one line of JSON on stdout.
    #[arg(long)]
    print_stats_on_exit: bool,
}

impl Args {
    fn into_config(self) -> Result<Config, uncensored_emulator::ConfigError> {
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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let print_stats = args.print_stats_on_exit;
    let config = match args.into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("uncensored-emulator: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let emulator = match Emulator::start(config).await {
        Ok(emulator) => emulator,
        Err(error) => {
            eprintln!("uncensored-emulator: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("{}", emulator.base_url());
    eprintln!("uncensored-emulator: serving; API key `emulator-key`; stop with Ctrl-C");
    wait_for_signal().await;
    let stats = emulator.stats();
    emulator.shutdown().await;
    if print_stats {
        println!(
            "{}",
            serde_json::to_string(&stats).expect("stats serialise")
        );
    }
    std::process::ExitCode::SUCCESS
}

async fn wait_for_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
