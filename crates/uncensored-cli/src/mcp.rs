//! `uncensored mcp`: the MCP server of `uncensored-mcp`, wired to the same
//! client, storage, notifiers and journal as every other command.

use std::net::SocketAddr;

use clap::Args;
use uncensored::CancellationToken;
use uncensored_deliver::journal::JournalLocation;
use uncensored_mcp::{McpOptions, McpServer};

use crate::cli::{Cli, Output};
use crate::context::{Pacing, connect, default_journal, deliverer, journal};
use crate::failure::Failure;
use crate::settings::Settings;

/// `mcp`.
#[derive(Debug, Args)]
pub struct Mcp {
    /// Serve Streamable HTTP at http://ADDR/mcp instead of stdio (the first
    /// line printed is the URL). Keep it on loopback: there is no authentication.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    #[command(flatten)]
    pub output: Output,
    /// The journal of every delivery, which list_images reads
    /// [default: .uncensored/journal.sqlite beside the images].
    #[arg(long, value_name = "PATH|postgres://…")]
    pub journal: Option<JournalLocation>,
    /// How long generate_image waits when the caller names no timeout, in seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=900))]
    pub wait: u64,
}

/// Serves until the client closes stdio, or until Ctrl-C or SIGTERM over HTTP.
pub async fn run(cli: &Cli, args: &Mcp) -> Result<(), Failure> {
    let settings = Settings::load(cli, Some(&args.output))?;
    let location = args
        .journal
        .clone()
        .unwrap_or_else(|| JournalLocation::File(default_journal(&settings)));
    let journal = journal(&location).await?;
    let connection = connect(&settings, cli.emulator, Pacing::Local).await?;
    let deliverer = deliverer(&settings, connection.client.clone(), journal).await?;
    let options =
        McpOptions::default().with_default_wait(std::time::Duration::from_secs(args.wait));
    let server = McpServer::new(deliverer, options);
    let served = match args.http {
        None => server.serve_stdio().await,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Failure::input(format!("--http {addr}: {e}")))?;
            let local = listener
                .local_addr()
                .map_err(|e| Failure::other(e.to_string()))?;
            println!("http://{local}/mcp");
            let shutdown = CancellationToken::new();
            let stop = shutdown.clone();
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .map_err(|e| Failure::other(e.to_string()))?;
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                stop.cancel();
            });
            server.serve_http(listener, shutdown).await
        }
    };
    served.map_err(|e| Failure::other(e.to_string()))
}
