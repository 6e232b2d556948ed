//! `uncensored webhook serve`: the API's callbacks, delivered by the plugin
//! crate's callback service (see `uncensored_deliver::callbacks`).

use uncensored_deliver::callbacks::CallbackService;

use crate::cli::{Cli, Output};
use crate::context::{self, connect, default_journal, deliverer};
use crate::failure::Failure;
use crate::settings::Settings;

/// Runs the service until Ctrl-C or SIGTERM.
pub async fn serve(
    cli: &Cli,
    listen: std::net::SocketAddr,
    output: &Output,
    journal: Option<&std::path::Path>,
) -> Result<(), Failure> {
    let settings = Settings::load(cli, Some(output))?;
    let connection = connect(&settings, cli.emulator, false).await?;
    let journal_path = journal
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| default_journal(&settings));
    let deliverer = deliverer(
        &settings,
        connection.client.clone(),
        context::journal(&journal_path)?,
    )
    .await?;
    let service = CallbackService::new(connection.client.clone(), deliverer).with_reporter(
        |job_id, outcome| match outcome {
            Ok(entry) => match entry.location() {
                Some(location) => println!("{job_id} stored at {location}"),
                None => eprintln!("{job_id}: ended without an image"),
            },
            Err(error) => {
                eprintln!("{job_id}: {error} (it will be retried when the service restarts)")
            }
        },
    );
    // Finish what a previous run had started.
    if let Ok(results) = service.resume().await {
        for error in results.into_iter().filter_map(Result::err) {
            eprintln!("a delivery from an earlier run is still unfinished: {error}");
        }
    }
    let app = service.router();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::other(format!("cannot listen on {listen}: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| Failure::other(e.to_string()))?;
    println!("http://{address}/callback");
    eprintln!("receiving callbacks; stop with Ctrl-C");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure::other(e.to_string()))?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        })
        .await
        .map_err(|e| Failure::other(e.to_string()))
}
