//! The callback service: an async job whose completion the API (the
//! in-process emulator) reports to a signed callback URL; the service checks
//! the URL's tag, confirms the job with a read, stores the image once and
//! records it in the journal.
//!
//! ```sh
//! cargo run -p uncensored-deliver --features callbacks --example callbacks
//! ```

use std::sync::Arc;
use std::time::Duration;

use uncensored::callback::CallbackSecret;
use uncensored::{Client, GenerateRequest, Generation};
use uncensored_deliver::Deliverer;
use uncensored_deliver::callbacks::CallbackService;
use uncensored_deliver::journal::{Entries as _, SqliteJournal};
use uncensored_deliver::storage::StorageUrl;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let emulator = uncensored_emulator::Emulator::start(uncensored_emulator::Config {
        time_scale: 0.01,
        ..Default::default()
    })
    .await?;
    let client = Client::builder()
        .base_url(emulator.base_url())
        .api_key(uncensored_emulator::DEFAULT_KEY)
        .build()?;
    let journal = Arc::new(SqliteJournal::in_memory()?);
    let deliverer = Deliverer::new(
        client.clone(),
        Arc::new(StorageUrl::parse("memory://")?.open()?),
        journal.clone(),
    );
    // In production: UNCENSORED_CALLBACK_SECRET, from `openssl rand -hex 32`.
    let secret = CallbackSecret::new("an example secret, at least 32 characters long")?;
    let (done, mut delivered) = tokio::sync::mpsc::unbounded_channel();
    let service = CallbackService::builder(client.clone(), deliverer)
        .secret(secret.clone())
        .reporter(move |job_id, outcome| {
            let location = outcome
                .as_ref()
                .ok()
                .and_then(|e| e.location().map(str::to_string));
            let _ = done.send((job_id.to_string(), location));
        })
        .build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(axum::serve(listener, service.router()).into_future());
    // A URL of its own for this job: BASE/callback/NONCE.TAG.
    let callback_url = secret.callback_url(&base)?.url;

    let request = GenerateRequest::new("a cyberpunk city at night").callback_url(&callback_url);
    let Generation::Queued(job) = client.generate(&request).await? else {
        return Err("the emulator answers a callback request with 202".into());
    };
    println!("job {} accepted; waiting for its callback", job.job_id);
    let (job_id, location) = tokio::time::timeout(Duration::from_secs(30), delivered.recv())
        .await?
        .ok_or("the service stopped")?;
    println!("{job_id} stored at {}", location.unwrap_or_default());
    println!("journal: {:?} (entries, done)", journal.counts().await?);
    println!("service: {:?}", service.stats());
    Ok(())
}
