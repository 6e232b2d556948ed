//! The SDK against a hostile network: an API that redirects elsewhere or asks
//! for absurd waits, image URLs that point inside the machine or its network,
//! redirects that hop to such addresses. Each test failed before the defence.

use std::time::Duration;

use uncensored::{Client, DownloadError, Error, FailureReason, GenerateRequest, RetryPolicy};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-live-hostile-0123456789";

fn quick() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        ..RetryPolicy::default()
    }
}

fn jpeg() -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.resize(64, 0);
    bytes
}

/// A client whose API is not loopback (never contacted): the download rules
/// apply in full.
fn remote_client(
    configure: impl FnOnce(uncensored::ClientBuilder) -> uncensored::ClientBuilder,
) -> Client {
    configure(
        Client::builder()
            .base_url("https://api.example.invalid")
            .api_key(KEY)
            .retry_policy(quick()),
    )
    .build()
    .unwrap()
}

fn download_error(error: Error) -> DownloadError {
    match error {
        Error::Download(error) => error,
        other => panic!("expected a download error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_not_followed_and_the_key_stays() {
    let api = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/steal", elsewhere.uri()).as_str()),
        )
        .mount(&api)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&elsewhere)
        .await;
    let client = Client::builder()
        .base_url(api.uri())
        .api_key(KEY)
        .retry_policy(quick())
        .build()
        .unwrap();
    let error = client
        .generate(&GenerateRequest::new("a lighthouse").size(256, 256))
        .await
        .unwrap_err();
    match &error {
        Error::Redirected { status, origin } => {
            assert_eq!(*status, 307);
            assert_eq!(*origin, elsewhere.uri());
        }
        other => panic!("expected Redirected, got {other:?}"),
    }
    assert_eq!(error.reason(), FailureReason::Configuration);
    assert!(!error.is_retryable());
    assert!(!error.to_string().contains(KEY));
    let stolen = elsewhere.received_requests().await.unwrap();
    assert!(
        stolen.is_empty(),
        "the other host got {} requests",
        stolen.len()
    );
    assert_eq!(
        api.received_requests().await.unwrap().len(),
        1,
        "not retried"
    );
}

#[tokio::test]
async fn a_redirect_within_the_api_origin_is_followed() {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/images/generation/jobs/job_1"))
        .respond_with(
            ResponseTemplate::new(308)
                .insert_header("location", "/v1/images/generation/jobs/job_2"),
        )
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/images/generation/jobs/job_2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "job_id": "job_2", "status": "processing"
        })))
        .mount(&api)
        .await;
    let client = Client::builder()
        .base_url(api.uri())
        .api_key(KEY)
        .build()
        .unwrap();
    let job = client.job("job_1").await.unwrap();
    assert_eq!(job.job_id, "job_2");
    let followed = &api.received_requests().await.unwrap()[1];
    assert_eq!(
        followed.headers["x-api-key"], KEY,
        "same origin: the key goes along"
    );
}

#[tokio::test]
async fn a_plain_http_base_url_is_refused_unless_loopback_or_allowed() {
    let refused = Client::builder()
        .base_url("http://api.example.com")
        .api_key(KEY)
        .build()
        .unwrap_err();
    assert!(matches!(refused, Error::Config(_)), "{refused:?}");
    assert!(
        refused.to_string().contains("--allow-insecure-http"),
        "{refused}"
    );
    assert!(!refused.to_string().contains(KEY));
    for base in ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9"] {
        Client::builder()
            .base_url(base)
            .api_key(KEY)
            .build()
            .unwrap();
    }
    Client::builder()
        .base_url("http://api.example.com")
        .api_key(KEY)
        .allow_insecure_http(true)
        .build()
        .unwrap();
    let ftp = Client::builder()
        .base_url("ftp://api.example.com")
        .api_key(KEY)
        .allow_insecure_http(true)
        .build()
        .unwrap_err();
    assert!(matches!(ftp, Error::Config(_)));
}

#[tokio::test]
async fn an_absurd_retry_after_neither_panics_nor_waits() {
    let reset = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc3339();
    for value in [
        "1e20",
        "99999999999999999999",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "-5",
        "NaN",
        "inf",
    ] {
        let api = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("retry-after", value)
                    .insert_header("x-ratelimit-limit-requests", "600")
                    .insert_header("x-ratelimit-remaining-requests", "500")
                    .insert_header("x-ratelimit-reset-requests", reset.as_str())
                    .set_body_json(serde_json::json!({"error": {
                        "type": "rate_limit_error", "message": "slow down"
                    }})),
            )
            .mount(&api)
            .await;
        let client = Client::builder()
            .base_url(api.uri())
            .api_key(KEY)
            .retry_policy(RetryPolicy {
                max_attempts: 2,
                ..quick()
            })
            .pace_requests(true)
            .build()
            .unwrap();
        let error = tokio::time::timeout(
            Duration::from_secs(20),
            client.generate(&GenerateRequest::new("a lighthouse").size(256, 256)),
        )
        .await
        .unwrap_or_else(|_| panic!("Retry-After {value:?}: the client hung"))
        .unwrap_err();
        let api_error = error
            .api()
            .unwrap_or_else(|| panic!("{value:?}: {error:?}"));
        assert_eq!(api_error.status, 429, "{value:?}");
        if let Some(wait) = api_error.retry_after {
            assert!(wait <= uncensored::MAX_WAIT, "{value:?}: {wait:?}");
        }
    }
}

#[tokio::test]
async fn image_urls_must_be_https_and_public() {
    let client = remote_client(|b| b);
    let cases = [
        "http://images.example.com/a.jpg",
        "https://169.254.169.254/latest/meta-data/",
        "https://127.0.0.1:1/admin",
        "https://[::1]:1/admin",
        "https://[::ffff:169.254.169.254]/",
        "https://10.0.0.5/bucket/a.jpg",
        "https://100.64.1.1/a.jpg",
        "file:///etc/passwd",
    ];
    for url in cases {
        let error = download_error(client.download(url).await.unwrap_err());
        assert!(
            matches!(
                error,
                DownloadError::Scheme { .. } | DownloadError::NotPublic { .. }
            ),
            "{url}: {error:?}"
        );
        assert!(!error.is_retryable(), "{url}");
    }
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused() {
    let storage = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(jpeg()))
        .mount(&storage)
        .await;
    let port = storage.address().port();
    let client = remote_client(|b| b.allow_insecure_http(true));
    let error = download_error(
        client
            .download(&format!("http://localhost:{port}/a.jpg"))
            .await
            .unwrap_err(),
    );
    assert!(
        matches!(&error, DownloadError::NotPublic { host } if host == "localhost"),
        "{error:?}"
    );
    assert!(storage.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn each_redirect_hop_is_checked_again() {
    let storage = MockServer::start().await;
    let port = storage.address().port();
    Mock::given(path("/to-metadata"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", "http://169.254.169.254/latest/meta-data/"),
        )
        .mount(&storage)
        .await;
    Mock::given(path("/to-private"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("http://[::1]:{port}/a.jpg").as_str()),
        )
        .mount(&storage)
        .await;
    Mock::given(path("/a.jpg"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(jpeg()))
        .mount(&storage)
        .await;
    // Storage private on purpose: this address is allowed, nothing else
    // (a name is checked where it resolves: see the test above).
    let client = remote_client(|b| b.allow_insecure_http(true).download_allow(["127.0.0.1"]));
    let image = client
        .download(&format!("http://127.0.0.1:{port}/a.jpg"))
        .await
        .unwrap();
    assert_eq!(
        image.bytes.len(),
        64,
        "the allow-list lets private storage through"
    );
    for hop in ["to-metadata", "to-private"] {
        let error = download_error(
            client
                .download(&format!("http://127.0.0.1:{port}/{hop}"))
                .await
                .unwrap_err(),
        );
        assert!(
            matches!(
                error,
                DownloadError::Redirect { .. } | DownloadError::NotPublic { .. }
            ),
            "{hop}: {error:?}"
        );
        assert!(!error.is_retryable());
    }
    let fetched: Vec<String> = storage
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_string())
        .collect();
    assert_eq!(
        fetched,
        ["/a.jpg", "/to-metadata", "/to-private"],
        "no hop reached"
    );
}

#[tokio::test]
async fn a_transport_error_does_not_show_the_signed_url() {
    // Nothing listens on port 1 of loopback; the allow-list lets the client try.
    let client = remote_client(|b| b.allow_insecure_http(true).download_allow(["127.0.0.0/8"]));
    let url = "http://127.0.0.1:1/a.jpg?X-Amz-Signature=deadbeefsecret";
    let error = client.download(url).await.unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("deadbeefsecret"), "{shown}");
    assert!(matches!(download_error(error), DownloadError::Transport(_)));
}

#[test]
fn a_bad_allow_list_entry_is_a_configuration_error() {
    let error = Client::builder()
        .base_url("https://api.example.invalid")
        .api_key(KEY)
        .download_allow(["10.0.0.0/99"])
        .build()
        .unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error:?}");
}

#[test]
fn absurd_rate_limit_headers_are_no_reading() {
    let now = chrono::Utc::now();
    let headers = |limit: &str, remaining: &str, reset: &str| {
        let mut map = reqwest::header::HeaderMap::new();
        map.insert("x-ratelimit-limit-requests", limit.parse().unwrap());
        map.insert("x-ratelimit-remaining-requests", remaining.parse().unwrap());
        map.insert("x-ratelimit-reset-requests", reset.parse().unwrap());
        map
    };
    let soon = (now + chrono::Duration::seconds(30)).to_rfc3339();
    assert!(uncensored::RateLimit::parse_at(&headers("40", "3", &soon), now).is_some());
    for (limit, remaining, reset) in [
        ("99999999999999999999", "0", soon.as_str()),
        ("40", "41", soon.as_str()),
        ("0", "0", soon.as_str()),
        ("40", "0", "9999-12-31T23:59:59Z"),
        ("40", "0", "0001-01-01T00:00:00Z"),
        ("40", "-1", soon.as_str()),
    ] {
        assert_eq!(
            uncensored::RateLimit::parse_at(&headers(limit, remaining, reset), now),
            None,
            "{limit} {remaining} {reset}"
        );
    }
}

/// A storage server that answers every request with `head` and then holds
/// the connection open.
async fn raw_server(head: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(head.as_bytes()).await;
                // Hold the connection: the client must decide on the head alone.
                let _ = socket.read(&mut request).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_absurd_content_length_is_refused_before_any_body() {
    // 100 GB announced: over the cap, refused on the head. u64::MAX: not a
    // length hyper accepts, a transport failure. Neither allocates or waits.
    for (head, too_large) in [
        (
            "HTTP/1.1 200 OK\r\ncontent-type: image/jpeg\r\ncontent-length: 100000000000\r\n\r\n\u{ff}",
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\ncontent-type: image/jpeg\r\ncontent-length: 18446744073709551615\r\n\r\n\u{ff}",
            false,
        ),
    ] {
        let addr = raw_server(head).await;
        let client = Client::builder()
            .base_url(format!("http://{addr}"))
            .api_key(KEY)
            .retry_policy(quick())
            .build()
            .unwrap();
        let error = tokio::time::timeout(
            Duration::from_secs(10),
            client.download(&format!("http://{addr}/a.jpg")),
        )
        .await
        .expect("decided on the head, not after waiting for the body")
        .unwrap_err();
        let error = download_error(error);
        if too_large {
            assert!(matches!(error, DownloadError::TooLarge { .. }), "{error:?}");
        } else {
            assert!(matches!(error, DownloadError::Transport(_)), "{error:?}");
        }
    }
}
