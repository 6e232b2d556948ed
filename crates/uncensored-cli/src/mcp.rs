//! `uncensored mcp`: the MCP server of `uncensored-mcp`, wired to the same
//! client, storage, notifiers and journal as every other command.

use std::net::SocketAddr;

use clap::Args;
use uncensored::CancellationToken;
use uncensored_deliver::journal::JournalLocation;
use uncensored_deliver::serve::AccessToken;
use uncensored_mcp::{McpOptions, McpServer};

use crate::cli::{Cli, Output};
use crate::context::{Pacing, connect, default_journal, deliverer, journal};
use crate::failure::Failure;
use crate::limits::{GivenToken, ServerFlags, given_token};
use crate::settings::Settings;

/// `mcp`.
#[derive(Debug, Args)]
pub struct Mcp {
    /// Serve Streamable HTTP at http://ADDR/mcp instead of stdio (the first
    /// line printed is the URL). On an address that is not loopback every
    /// request must carry the access token as "Authorization: Bearer TOKEN".
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// With --http, the access token every request must carry when ADDR is not loopback (at least 32 of A-Z a-z 0-9 - . _ ~; given, it is asked on loopback too) [default: a new one, printed once on stderr].
    #[arg(long, env = "UNCENSORED_MCP_TOKEN", hide_env_values = true, value_name = "TOKEN", value_parser = given_token)]
    pub token: Option<GivenToken>,
    #[command(flatten)]
    pub output: Output,
    /// The journal of every delivery, which list_images reads
    /// [default: .uncensored/journal.sqlite beside the images].
    #[arg(long, value_name = "PATH|postgres://…")]
    pub journal: Option<JournalLocation>,
    /// submit_generation submits async jobs whose callbacks go to `webhook serve` at this URL
    /// (https; the same journal and UNCENSORED_CALLBACK_SECRET), each recorded first; it stores
    /// them, or polls them when a callback is lost [default: the server delivers them itself].
    #[arg(long, value_name = "URL")]
    pub callback_url: Option<String>,
    /// How long generate_image waits when the caller names no timeout, in seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=900))]
    pub wait: u64,
    #[command(flatten)]
    pub limits: ServerFlags,
}

/// Serves until the client closes stdio, or until Ctrl-C or SIGTERM over HTTP.
pub async fn run(cli: &Cli, args: &Mcp) -> Result<(), Failure> {
    let given = match (&args.http, &args.token) {
        (Some(_), Some(token)) => Some(token.token("--token")?),
        _ => None,
    };
    let settings = Settings::load(cli, Some(&args.output))?;
    let location = args
        .journal
        .clone()
        .unwrap_or_else(|| JournalLocation::File(default_journal(&settings)));
    let journal = journal(&location).await?;
    let connection = connect(&settings, cli.emulator, Pacing::Local).await?;
    let deliverer = deliverer(&settings, connection.client.clone(), journal).await?;
    let mut options =
        McpOptions::default().with_default_wait(std::time::Duration::from_secs(args.wait));
    if let Some(base) = &args.callback_url {
        let Some(secret) = settings.callback_secret.clone() else {
            return Err(Failure::input(
                "--callback-url needs UNCENSORED_CALLBACK_SECRET (or callback_secret in the \
                 config file), the same as `webhook serve`'s",
            ));
        };
        options = options
            .with_callbacks(secret, base)
            .map_err(|e| Failure::input(format!("--callback-url: {e}")))?;
    }
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
            let told = given.is_none();
            let token = AccessToken::for_address(local.ip(), given)
                .map_err(|e| Failure::other(e.to_string()))?;
            let mut http = server.http_options();
            http.limits = args.limits.limits(http.limits);
            http.token = token.clone();
            println!("http://{local}/mcp");
            match &token {
                Some(token) if told => eprintln!(
                    "{local} is not loopback, so every request needs the header \"Authorization: Bearer {}\" (keep it secret; UNCENSORED_MCP_TOKEN chooses the token)",
                    token.expose()
                ),
                Some(_) => eprintln!(
                    "every request needs the header \"Authorization: Bearer TOKEN\" with the token of --token or UNCENSORED_MCP_TOKEN"
                ),
                None => {}
            }
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
            server.serve_http(listener, http, shutdown).await
        }
    };
    served.map_err(|e| Failure::other(e.to_string()))
}
