//! A process that delivers a numbered batch through the batch engine (a
//! worker on an SQLite journal, leases of 2 s), for the crash test: it loads
//! lines 0..N (a rerun finds them loaded), then works on them, printing
//! `done N` as each line is done.
//!
//! Usage: `batch-worker BASE_URL DIR SLACK_URL WEBHOOK_URL COUNT`

use std::sync::Arc;
use std::time::Duration;

use uncensored::{CancellationToken, Client, GenerateRequest, WaitOptions};
use uncensored_deliver::Deliverer;
use uncensored_deliver::journal::{Journal, LineIds, SqliteJournal};
use uncensored_deliver::notify::{SignedWebhookNotifier, SlackNotifier};
use uncensored_deliver::storage::ObjectStorage;
use uncensored_deliver::worker::{self, Worker};

/// The signing secret the crash test verifies with.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, dir, slack, webhook, count] = args.as_slice() else {
        eprintln!("usage: batch-worker BASE_URL DIR SLACK_URL WEBHOOK_URL COUNT");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    let client = Client::builder()
        .base_url(base)
        .api_key("emulator-key")
        .wait_options(WaitOptions {
            first_poll: Duration::from_millis(10),
            min_interval: Duration::from_millis(20),
            max_interval: Duration::from_millis(50),
            ..WaitOptions::default()
        })
        .build()
        .expect("a client");
    let deliverer = Deliverer::new(
        client,
        Arc::new(ObjectStorage::local(dir.join("images")).expect("the image directory")),
        Arc::new(SqliteJournal::open(&dir.join("journal.sqlite")).expect("the journal opens")),
    )
    .with_notifier(Arc::new(
        SlackNotifier::new(slack).with_min_interval(Duration::from_millis(1)),
    ))
    .with_notifier(Arc::new(
        SignedWebhookNotifier::new(webhook, SECRET).expect("a valid secret"),
    ));

    let count: u64 = count.parse().expect("COUNT is a number");
    let lines = || {
        (0..count).map(|i| {
            Ok((
                i + 1,
                GenerateRequest::new(format!("crash test line {i}")).size(256, 256),
            ))
        })
    };
    let mut ids = LineIds::new("crash.txt");
    for line in lines() {
        ids.next(&line.expect("a line").1);
    }
    let file = ids.file();
    let journal: &dyn Journal = deliverer.journal().as_ref();
    worker::load(journal, &file, lines())
        .await
        .expect("the batch loads");
    let worker = Worker::new(
        Arc::new(deliverer),
        "crash.txt",
        format!("crash-{}", std::process::id()),
    )
    .concurrency(4)
    .lease(Duration::from_secs(2));
    let mut done = 0;
    worker
        .run(CancellationToken::new(), |outcome| {
            outcome.result.expect("a line is delivered");
            done += 1;
            // A reader that went away must not end the work: only a kill does.
            use std::io::Write as _;
            let _ = writeln!(std::io::stdout().lock(), "done {done}");
        })
        .await
        .expect("the journal works");
}
