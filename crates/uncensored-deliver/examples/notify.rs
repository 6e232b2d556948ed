//! Notifiers: a generated image announced to a Standard Webhooks endpoint
//! (a capture server on loopback here), and the signature verified the way a
//! receiver would.
//!
//! ```sh
//! cargo run -p uncensored-deliver --features webhook-notify --example notify
//! ```

use std::sync::Arc;

use uncensored::{Client, GenerateRequest};
use uncensored_deliver::Deliverer;
use uncensored_deliver::journal::SqliteJournal;
use uncensored_deliver::notify::SignedWebhookNotifier;
use uncensored_deliver::storage::StorageUrl;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let emulator = uncensored_emulator::Emulator::start(uncensored_emulator::Config {
        time_scale: 0.0,
        ..Default::default()
    })
    .await?;
    let client = Client::builder()
        .base_url(emulator.base_url())
        .api_key(uncensored_emulator::DEFAULT_KEY)
        .build()?;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;

    let deliverer = Deliverer::new(
        client,
        Arc::new(StorageUrl::parse("memory://")?.open()?),
        Arc::new(SqliteJournal::in_memory()?),
    )
    .with_notifier(Arc::new(SignedWebhookNotifier::new(
        format!("{}/hooks/images", receiver.uri()),
        SECRET,
    )?));
    deliverer
        .deliver("example-1", &GenerateRequest::new("a lighthouse at dusk"))
        .await?;

    let request = &receiver.received_requests().await.unwrap_or_default()[0];
    standardwebhooks::Webhook::new(SECRET)?.verify(&request.body, &request.headers)?;
    println!(
        "announced and verified: {}",
        String::from_utf8_lossy(&request.body)
    );
    Ok(())
}
