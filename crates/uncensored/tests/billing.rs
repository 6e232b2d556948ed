//! The billing group against the embedded emulator: the balance and its held
//! funds, estimates that equal the charge, the transactions stream over
//! several pages, spend limits ending in 402, the daily reset on an injected
//! clock, and the scope error of a key without `billing:read`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use uncensored::{
    ApiErrorKind, Client, Error, FailureReason, GenerateRequest, Generation, Money, RetryPolicy,
    SpendLimits, TransactionKind, WaitOptions,
};
use uncensored_emulator::{Config, Emulator, EmulatorHandle, KeyConfig, ManualClock};

/// A key with image scopes only.
const IMAGE_ONLY_KEY: &str = "sk-image-only-0123456789";

fn client_for(base_url: &str, key: &str) -> Client {
    Client::builder()
        .base_url(base_url)
        .api_key(key)
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            ..RetryPolicy::default()
        })
        .wait_options(WaitOptions {
            first_poll: Duration::from_millis(5),
            min_interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(40),
            ..WaitOptions::default()
        })
        .build()
        .unwrap()
}

fn config() -> Config {
    let mut config = Config {
        time_scale: 0.001,
        ..Config::default()
    };
    config.keys.push(KeyConfig {
        key: IMAGE_ONLY_KEY.into(),
        name: "images-only".into(),
        scopes: vec!["image:*".into()],
        balance: 1_000,
        rate_limit_rpm: None,
    });
    config
}

async fn start(config: Config) -> (EmulatorHandle, Client) {
    let emulator = Emulator::start(config).await.unwrap();
    let client = client_for(emulator.base_url(), "emulator-key");
    (emulator, client)
}

fn small(prompt: &str) -> GenerateRequest {
    GenerateRequest::new(prompt).size(256, 256)
}

/// Nanos of one credit in the default configuration.
fn credit() -> Money {
    Money::from_nanos(i64::try_from(Config::default().nanos_per_credit).unwrap())
}

#[tokio::test]
async fn the_balance_is_the_configured_credits_in_nanos() {
    let (_emulator, client) = start(config()).await;
    let balance = client.balance().await.unwrap();
    let expected = credit().checked_mul(100_000).unwrap();
    assert_eq!(balance.balance, expected);
    assert_eq!(balance.available, expected);
    assert_eq!(balance.held, Money::ZERO);
    assert_eq!(balance.daily_spend, Money::ZERO);
    assert_eq!(balance.monthly_spend, Money::ZERO);
    assert_eq!(balance.balance.to_string(), "$100.00");
}

#[tokio::test]
async fn an_estimate_is_what_the_generation_then_charges() {
    let (emulator, client) = start(config()).await;
    let request = small("a lighthouse")
        .model("model-flex")
        .resolution("4k")
        .quality("high");
    let estimate = client.estimate(&request).await.unwrap();
    assert_eq!(estimate.model.as_deref(), Some("model-flex"));
    assert_eq!(estimate.cost, credit().checked_mul(2 * 4 * 2).unwrap());
    let before = client.balance().await.unwrap();
    assert_eq!(
        emulator.stats().charges.total,
        0,
        "an estimate charges nothing"
    );

    client.generate(&request).await.unwrap();
    let after = client.balance().await.unwrap();
    assert_eq!(
        before.balance.checked_sub(after.balance),
        Some(estimate.cost)
    );
    assert_eq!(after.daily_spend, estimate.cost);
    let newest = client.transactions().next().await.unwrap().unwrap();
    assert_eq!(newest.kind, TransactionKind::Charge);
    assert_eq!(newest.amount, estimate.cost);
    assert_eq!(newest.model.as_deref(), Some("model-flex"));

    let invalid = client
        .estimate(&GenerateRequest::new(""))
        .await
        .unwrap_err();
    assert!(matches!(invalid, Error::Invalid(_)), "{invalid}");
}

#[tokio::test]
async fn transactions_stream_over_several_pages_newest_first() {
    let (emulator, client) = start(config()).await;
    let mut jobs = Vec::new();
    for n in 0..7 {
        let Generation::Completed(image) = client.generate(&small(&format!("p{n}"))).await.unwrap()
        else {
            panic!("sync generation completes")
        };
        jobs.push(image.job_id);
    }
    let all: Vec<_> = client
        .transactions_paged(3)
        .map(Result::unwrap)
        .collect()
        .await;
    let seen: Vec<&str> = all.iter().filter_map(|t| t.job_id.as_deref()).collect();
    let newest_first: Vec<&str> = jobs.iter().rev().map(String::as_str).collect();
    assert_eq!(seen, newest_first);
    assert!(all.iter().all(|t| t.amount == credit()));
    let pages = emulator.stats().requests["GET /v1/billing/transactions"][&200u16];
    assert_eq!(pages, 3, "7 transactions in pages of 3");

    let refused = client.transactions_paged(0).next().await.unwrap();
    assert!(matches!(refused, Err(Error::Invalid(_))));
    assert!(
        client
            .transactions_paged(101)
            .next()
            .await
            .unwrap()
            .is_err()
    );
}

#[tokio::test]
async fn a_spend_limit_stops_generations_with_402() {
    let (_emulator, client) = start(config()).await;
    let limit = credit().checked_mul(3).unwrap();
    let set = client
        .set_limits(&SpendLimits::none().daily(limit))
        .await
        .unwrap();
    assert_eq!(set, SpendLimits::none().daily(limit));
    for n in 0..3 {
        client.generate(&small(&format!("p{n}"))).await.unwrap();
    }
    let error = client.generate(&small("one too many")).await.unwrap_err();
    let api = error.api().expect("an API error");
    assert_eq!(
        (api.status, &api.kind),
        (402, &ApiErrorKind::InsufficientFunds)
    );
    assert_eq!(error.reason(), FailureReason::InsufficientFunds);
    let balance = client.balance().await.unwrap();
    assert_eq!(balance.daily_spend, limit);
    assert!(
        balance.available > limit,
        "the limit stopped it, not the funds"
    );

    let lifted = client.set_limits(&SpendLimits::none()).await.unwrap();
    assert_eq!(lifted, SpendLimits::none());
    client.generate(&small("allowed again")).await.unwrap();

    let negative = SpendLimits::none().monthly(Money::from_nanos(-1));
    let invalid = client.set_limits(&negative).await.unwrap_err();
    assert!(matches!(invalid, Error::Invalid(_)), "{invalid}");
}

#[tokio::test]
async fn an_async_job_holds_its_price_until_it_ends() {
    let (_emulator, client) = start(config()).await;
    let before = client.balance().await.unwrap();
    let price = credit().checked_mul(4).unwrap();
    // 3,000 modelled seconds at time_scale 0.001: pending for 3 s.
    let request = small("slow")
        .model("model-pro")
        .callback_url("http://127.0.0.1:9/unused")
        .setting("emulator_generation_seconds", 3_000);
    let Generation::Queued(job) = client.generate(&request).await.unwrap() else {
        panic!("a callback URL means async")
    };
    let pending = client.balance().await.unwrap();
    assert_eq!(pending.held, price);
    assert_eq!(pending.balance, before.balance, "held, not yet charged");
    assert_eq!(pending.available.checked_add(price), Some(before.available));
    assert_eq!(pending.daily_spend, Money::ZERO);

    client.wait(&job.job_id).await.unwrap();
    let settled = client.balance().await.unwrap();
    assert_eq!(settled.held, Money::ZERO);
    assert_eq!(settled.balance.checked_add(price), Some(before.balance));
    assert_eq!(settled.available, settled.balance);
    assert_eq!(settled.daily_spend, price);
}

#[tokio::test]
async fn a_failed_async_job_releases_its_hold_and_charges_nothing() {
    let mut config = config();
    config.faults.failed_job_rate = 1.0;
    let (_emulator, client) = start(config).await;
    let before = client.balance().await.unwrap();
    let request = small("doomed").callback_url("http://127.0.0.1:9/unused");
    let Generation::Queued(job) = client.generate(&request).await.unwrap() else {
        panic!("a callback URL means async")
    };
    let failed = client.wait(&job.job_id).await.unwrap_err();
    assert_eq!(failed.reason(), FailureReason::JobFailed);
    let after = client.balance().await.unwrap();
    assert_eq!(after, before);
    assert!(client.transactions().next().await.is_none(), "no charge");
}

#[tokio::test]
async fn the_daily_spend_and_limit_reset_at_utc_midnight() {
    let clock = Arc::new(ManualClock::new("2026-05-09T23:59:00Z".parse().unwrap()));
    let emulator = Emulator::start_with_clock(config(), clock.clone())
        .await
        .unwrap();
    let client = client_for(emulator.base_url(), "emulator-key");
    client
        .set_limits(&SpendLimits::none().daily(credit()))
        .await
        .unwrap();
    client.generate(&small("before midnight")).await.unwrap();
    let late = client.balance().await.unwrap();
    assert_eq!((late.daily_spend, late.monthly_spend), (credit(), credit()));
    let refused = client.generate(&small("too much today")).await.unwrap_err();
    assert_eq!(refused.reason(), FailureReason::InsufficientFunds);

    clock.advance(chrono::Duration::minutes(2));
    let next_day = client.balance().await.unwrap();
    assert_eq!(next_day.daily_spend, Money::ZERO);
    assert_eq!(next_day.monthly_spend, credit(), "the same month");
    client.generate(&small("after midnight")).await.unwrap();
    let newest = client.transactions().next().await.unwrap().unwrap();
    assert_eq!(newest.created_at, clock_now(&clock));

    clock.set("2026-06-01T00:00:00Z".parse().unwrap());
    let next_month = client.balance().await.unwrap();
    assert_eq!(
        (next_month.daily_spend, next_month.monthly_spend),
        (Money::ZERO, Money::ZERO)
    );
}

fn clock_now(clock: &ManualClock) -> chrono::DateTime<chrono::Utc> {
    uncensored_emulator::Clock::now(clock)
}

#[tokio::test]
async fn a_key_without_billing_read_gets_the_typed_scope_error() {
    let (emulator, _) = start(config()).await;
    let client = client_for(emulator.base_url(), IMAGE_ONLY_KEY);
    let error = client.balance().await.unwrap_err();
    let api = error.api().expect("an API error");
    assert_eq!((api.status, &api.kind), (403, &ApiErrorKind::Permission));
    assert!(!api.is_moderation());
    assert_eq!(error.reason(), FailureReason::Forbidden);
    assert!(error.reason().advice().contains("billing:read"));
    assert!(!error.is_retryable());
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(IMAGE_ONLY_KEY), "the key leaked: {shown}");

    let listed = client.transactions().next().await.unwrap().unwrap_err();
    assert_eq!(listed.api().map(|a| a.status), Some(403));
    let limits = client.set_limits(&SpendLimits::none()).await.unwrap_err();
    assert_eq!(limits.api().map(|a| a.status), Some(403));
    // The key still generates, and an estimate needs no billing scope.
    client.generate(&small("allowed")).await.unwrap();
    assert_eq!(
        client.estimate(&small("priced")).await.unwrap().cost,
        credit()
    );
}

#[tokio::test]
async fn a_page_that_makes_no_progress_ends_the_stream_with_an_error() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    let page = serde_json::json!({
        "data": [{"id": "t1", "type": "refund", "amount_usd": -0.5, "amount_nanos": -500_000_000,
                  "created_at": "2026-05-09T10:30:05Z"}],
        "next_cursor": "same-cursor",
    });
    Mock::given(method("GET"))
        .and(path("/v1/billing/transactions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page))
        .mount(&server)
        .await;
    let client = client_for(&server.uri(), "sk-test");
    let items: Vec<_> = client.transactions().collect().await;
    // The first page's transaction, then the error (the second page names
    // the cursor it was read with), and the stream ends instead of asking
    // forever.
    assert_eq!(items.len(), 2, "{items:?}");
    let first = items[0].as_ref().unwrap();
    assert_eq!(first.kind, TransactionKind::Other("refund".into()));
    assert_eq!(first.amount.to_string(), "-$0.50");
    assert!(matches!(items[1], Err(Error::UnexpectedResponse { .. })));
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}
