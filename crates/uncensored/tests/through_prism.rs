//! An independent check of what the SDK sends: the same calls as a user would
//! make (image generation and the billing group), through Prism's validating proxy for openapi.yaml in front of the
//! emulator. Prism answers a violation (of a request or a response) with an
//! error, so every call here must succeed or fail exactly as the API would.
//!
//! `cargo xtask test` starts the emulator and Prism and runs this with
//! `UNCENSORED_PRISM_URL` set; run alone, it is ignored.

use std::time::Duration;

use futures_util::StreamExt as _;
use uncensored::{
    ApiErrorKind, Client, GenerateRequest, Generation, RetryPolicy, SpendLimits, WaitOptions,
};

fn client_with(key: &str) -> Client {
    let base =
        std::env::var("UNCENSORED_PRISM_URL").expect("UNCENSORED_PRISM_URL names Prism's proxy");
    Client::builder()
        .base_url(base)
        .api_key(key)
        .retry_policy(RetryPolicy::never())
        .wait_options(WaitOptions {
            first_poll: Duration::from_millis(10),
            min_interval: Duration::from_millis(20),
            max_interval: Duration::from_millis(50),
            ..WaitOptions::default()
        })
        .build()
        .unwrap()
}

#[tokio::test]
#[ignore = "run by `cargo xtask test` through Prism's validating proxy"]
async fn sdk_calls_conform_to_the_spec() {
    let client = client_with("emulator-key");
    let sync = GenerateRequest::new("a lighthouse at dusk, oil painting")
        .model("model-pro")
        .size(768, 512)
        .setting("seed", 7)
        .idempotency_key("prism-check:1");
    let Generation::Completed(image) = client.generate(&sync).await.unwrap() else {
        panic!("sync")
    };
    // The same request again is replayed, still conforming.
    let replay = client.generate(&sync).await.unwrap();
    assert!(replay.meta().replayed);
    assert_eq!(replay.job_id(), image.job_id);

    let flex = GenerateRequest::new("a forest")
        .model("model-flex")
        .resolution("2k")
        .quality("high");
    client.generate(&flex).await.unwrap();

    let queued = GenerateRequest::new("a cyberpunk cityscape at night")
        .callback_url("http://127.0.0.1:9/hook");
    let Generation::Queued(job) = client.generate(&queued).await.unwrap() else {
        panic!("async")
    };
    let done = client.wait(&job.job_id).await.unwrap();
    assert!(done.url.ends_with(".jpg"));
    client.job(&image.job_id).await.unwrap();

    // Errors pass through the proxy as the spec describes them.
    let unknown_job = client.job("no-such-job").await.unwrap_err();
    assert_eq!(unknown_job.api().unwrap().kind, ApiErrorKind::NotFound);
    let unknown_model = client
        .generate(&GenerateRequest::new("p").model("model-nope"))
        .await
        .unwrap_err();
    assert_eq!(
        unknown_model.api().unwrap().kind,
        ApiErrorKind::InvalidRequest
    );
    let moderated = client
        .generate(&GenerateRequest::new("a forbidden-term"))
        .await
        .unwrap_err();
    assert!(moderated.api().unwrap().is_moderation());
    let reuse = client
        .generate(&GenerateRequest::new("other").idempotency_key("prism-check:1"))
        .await
        .unwrap_err();
    assert_eq!(reuse.api().unwrap().kind, ApiErrorKind::IdempotencyKeyReuse);
    let wrong_key = client_with("not-a-key")
        .job(&image.job_id)
        .await
        .unwrap_err();
    assert_eq!(wrong_key.api().unwrap().kind, ApiErrorKind::Authentication);

    // The billing group, in the same test: a limit must not stop another
    // test's generations.
    let estimate = client.estimate(&flex).await.unwrap();
    let before = client.balance().await.unwrap();
    client.generate(&flex).await.unwrap();
    let after = client.balance().await.unwrap();
    assert_eq!(
        before.balance.checked_sub(after.balance),
        Some(estimate.cost)
    );
    let pages: Vec<_> = client.transactions_paged(2).collect().await;
    assert!(pages.len() >= 4, "several pages of transactions");
    assert!(pages.iter().all(Result::is_ok), "{pages:?}");
    let limits = SpendLimits::none().daily(after.daily_spend);
    assert_eq!(client.set_limits(&limits).await.unwrap(), limits);
    let stopped = client.generate(&flex).await.unwrap_err();
    assert_eq!(stopped.api().unwrap().kind, ApiErrorKind::InsufficientFunds);
    let invalid = client
        .estimate(&GenerateRequest::new("p").model("model-nope"))
        .await
        .unwrap_err();
    assert_eq!(invalid.api().unwrap().kind, ApiErrorKind::InvalidRequest);
    assert_eq!(
        client.set_limits(&SpendLimits::none()).await.unwrap(),
        SpendLimits::none()
    );
}
