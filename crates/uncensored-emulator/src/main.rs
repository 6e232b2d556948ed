//! `uncensored-emulator`: the emulator as a process.

use clap::Parser;
use uncensored_emulator::Emulator;
use uncensored_emulator::cli::EmulatorArgs;

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
    #[command(flatten)]
    emulator: EmulatorArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse().emulator;
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
