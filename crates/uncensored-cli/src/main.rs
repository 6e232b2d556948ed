//! `uncensored`: generate images with the image-generation API (or its local
//! emulator), store them (disk or S3) and announce them (Slack, signed
//! webhooks), one at a time or in batches that survive a crash.

mod batch;
mod cli;
mod commands;
mod context;
mod failure;
mod gallery;
mod limits;
mod mcp;
mod serve;
mod settings;
mod shared;
mod tally;
mod terminal;

use std::process::ExitCode;

use clap::Parser as _;

use cli::{Cli, Command, ConfigAction, WebhookAction};
use failure::Failure;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.verbose {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_writer(std::io::stderr)
            .init();
    }
    let outcome = match &cli.command {
        Command::Generate(args) => commands::generate(&cli, args).await,
        Command::Status { job } => commands::status(&cli, job).await,
        Command::Wait { job, timeout } => commands::wait(&cli, job, *timeout).await,
        Command::Download { job, output } => commands::download(&cli, job, output).await,
        Command::Balance => commands::balance(&cli).await,
        Command::Batch(args) => batch::run(&cli, args).await,
        Command::Webhook {
            action:
                WebhookAction::Serve {
                    listen,
                    accept_unsigned,
                    output,
                    journal,
                    recovery_grace,
                    limits,
                },
        } => {
            let served = serve::Served {
                listen: *listen,
                accept_unsigned: *accept_unsigned,
                output,
                journal: journal.as_ref(),
                recovery_grace: *recovery_grace,
                limits,
            };
            serve::serve(&cli, served).await
        }
        Command::Gallery(args) => gallery::run(&cli, args).await,
        Command::Emulator(args) => emulator(args.clone()).await,
        Command::Mcp(args) => mcp::run(&cli, args).await,
        Command::Config {
            action: ConfigAction::Show,
        } => commands::config_show(&cli),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.report(cli.json);
            ExitCode::from(failure.code)
        }
    }
}

/// `uncensored emulator`: the emulator in the foreground until Ctrl-C or SIGTERM.
async fn emulator(args: uncensored_emulator::cli::EmulatorArgs) -> Result<(), Failure> {
    let config = args
        .into_config()
        .map_err(|e| Failure::input(e.to_string()))?;
    let emulator = uncensored_emulator::Emulator::start(config)
        .await
        .map_err(|e| Failure::other(e.to_string()))?;
    println!("{}", emulator.base_url());
    eprintln!("emulator serving; API key `emulator-key`; stop with Ctrl-C");
    stopped().await?;
    emulator.shutdown().await;
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn stopped() -> Result<(), Failure> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure::other(e.to_string()))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    Ok(())
}
