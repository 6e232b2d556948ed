//! `uncensored webhook serve`: the API's callbacks, delivered by the plugin
//! crate's callback service (see `uncensored_deliver::callbacks`). Callback
//! URLs are signed with `UNCENSORED_CALLBACK_SECRET`; without it the command
//! refuses to start unless `--accept-unsigned` says to confirm every callback
//! by reading its job.

use uncensored_deliver::callbacks::CallbackService;
use uncensored_deliver::journal::JournalLocation;
use uncensored_deliver::serve::ServerLimits;

use crate::terminal::safe;

use crate::cli::{Cli, Output};
use crate::limits::ServerFlags;

use crate::context::{self, Pacing, connect, default_journal, deliverer};
use crate::failure::Failure;
use crate::settings::Settings;

/// What `webhook serve` was told.
pub struct Served<'a> {
    /// `--listen`.
    pub listen: std::net::SocketAddr,
    /// `--accept-unsigned`.
    pub accept_unsigned: bool,
    /// Where images go and who hears about them.
    pub output: &'a Output,
    /// `--journal`.
    pub journal: Option<&'a JournalLocation>,
    /// `--recovery-grace`.
    pub recovery_grace: std::time::Duration,
    /// The limits on its clients.
    pub limits: &'a ServerFlags,
}

/// Runs the service until Ctrl-C or SIGTERM (then lets the callbacks in
/// flight finish within the shutdown grace).
pub async fn serve(cli: &Cli, served: Served<'_>) -> Result<(), Failure> {
    let Served {
        listen,
        accept_unsigned,
        output,
        journal,
        recovery_grace,
        limits,
    } = served;
    let settings = Settings::load(cli, Some(output))?;
    let secret = settings.callback_secret.clone();
    if secret.is_none() && !accept_unsigned {
        return Err(Failure::input(
            "`webhook serve` needs a callback secret: set UNCENSORED_CALLBACK_SECRET (at least 32 \
             characters, e.g. from `openssl rand -hex 32`; or callback_secret in the config file) \
             here and wherever `generate --async --callback-url` runs, or pass --accept-unsigned \
             to confirm every unsigned callback by reading its job",
        ));
    }
    let connection = connect(&settings, cli.emulator, Pacing::Off).await?;
    let journal = journal
        .cloned()
        .unwrap_or_else(|| JournalLocation::File(default_journal(&settings)));
    let deliverer = deliverer(
        &settings,
        connection.client.clone(),
        context::journal(&journal).await?,
    )
    .await?;
    let mut builder = CallbackService::builder(connection.client.clone(), deliverer)
        .accept_unsigned(accept_unsigned)
        .recovery_grace(recovery_grace)
        .reporter(|job_id, outcome| match outcome {
            Ok(entry) => match entry.location() {
                Some(location) => println!("{} stored at {}", safe(job_id), safe(location)),
                None => eprintln!("{}: ended without an image", safe(job_id)),
            },
            Err(error) => eprintln!(
                "{}: {} (it is tried again: by a callback, the recovery, or a restart)",
                safe(job_id),
                safe(&error.to_string())
            ),
        });
    if let Some(secret) = secret.clone() {
        builder = builder.secret(secret);
    }
    let service = builder.build().map_err(|e| Failure::input(e.to_string()))?;
    // Finish what a previous run had started (reported like any delivery),
    // behind the listener: a resumed job may take its generation's time.
    let resumed = service.clone();
    tokio::spawn(async move {
        if let Err(error) = resumed.resume().await {
            eprintln!(
                "cannot resume the deliveries of an earlier run: {}",
                safe(&error.to_string())
            );
        }
    });
    // Submissions whose callback is lost: looked for a few times per grace.
    let _recovery = service.spawn_recovery((recovery_grace / 4).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(5),
    ));
    let app = service.router();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::other(format!("cannot listen on {listen}: {e}")))?;
    let address = listener
        .local_addr()
        .map_err(|e| Failure::other(e.to_string()))?;
    // The first line is what `generate --async --callback-url` takes.
    println!("http://{address}/callback");
    match (&secret, accept_unsigned) {
        (Some(_), false) => {
            eprintln!("receiving signed callbacks (POST /callback/NONCE.TAG); stop with Ctrl-C")
        }
        (Some(_), true) => eprintln!(
            "receiving signed callbacks (POST /callback/NONCE.TAG) and unsigned ones (POST /callback); stop with Ctrl-C"
        ),
        (None, _) => eprintln!(
            "receiving unsigned callbacks (POST /callback), each confirmed by a read; stop with Ctrl-C"
        ),
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Failure::other(e.to_string()))?;
    let limits = limits.limits(ServerLimits::default());
    uncensored_deliver::serve::serve(listener, app, limits, async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    })
    .await;
    Ok(())
}
