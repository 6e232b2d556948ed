//! `uncensored webhook serve`: the API's callbacks, delivered.
//!
//! A callback is unsigned, so it only says which job to look at: the job is
//! read with this service's API key (a job of another account, or none, is a
//! 404 and the callback is refused), and only a completed job is stored and
//! announced. The journal, keyed by job id, makes repeated callbacks and
//! restarts harmless. The handler answers at once; delivery runs behind it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use uncensored::deliver::Deliverer;
use uncensored::webhook::parse_callback;
use uncensored::{Client, GenerateRequest};

use crate::cli::{Cli, Output};
use crate::context::{self, connect, default_journal, deliverer};
use crate::failure::Failure;
use crate::settings::Settings;

#[derive(Clone)]
struct Service {
    client: Client,
    deliverer: Deliverer,
}

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
    )?;
    // Finish what a previous run had started.
    if let Ok(results) = deliverer.resume().await {
        for error in results.into_iter().filter_map(Result::err) {
            eprintln!("a delivery from an earlier run is still unfinished: {error}");
        }
    }
    let service = Service {
        client: connection.client.clone(),
        deliverer,
    };
    let app = Router::new()
        .route("/callback", post(callback))
        .with_state(service);
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

async fn callback(
    State(service): State<Service>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let callback = match parse_callback(&headers, &body) {
        Ok(callback) => callback,
        Err(error) => {
            tracing::warn!(%error, "refused a callback");
            return (StatusCode::BAD_REQUEST, "not a callback");
        }
    };
    // Is it a job of ours? Only the API can say; the payload cannot be trusted.
    let job = match service.client.job(&callback.request_id).await {
        Ok(job) => job,
        Err(error) if error.api().is_some_and(|api| api.status == 404) => {
            return (StatusCode::NOT_FOUND, "unknown job");
        }
        Err(error) => {
            tracing::warn!(%error, "cannot confirm a callback; the API will send it again");
            return (StatusCode::SERVICE_UNAVAILABLE, "try again");
        }
    };
    let id = format!("job-{}", job.job_id);
    let described =
        GenerateRequest::new(format!("(job {}: delivered from a callback)", job.job_id));
    tokio::spawn(async move {
        match service
            .deliverer
            .deliver_job(&id, &job.job_id, &described)
            .await
        {
            Ok(entry) => match entry.location() {
                Some(location) => println!("{} stored at {location}", job.job_id),
                None => eprintln!("{}: ended without an image", job.job_id),
            },
            Err(error) => eprintln!(
                "{}: {error} (it will be retried when the service restarts)",
                job.job_id
            ),
        }
    });
    (StatusCode::OK, "ok")
}
