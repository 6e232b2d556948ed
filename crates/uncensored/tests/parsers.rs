//! Property tests over every parser of what the network or a user hands the
//! SDK: header values, callback requests, signed callback paths, image bytes,
//! request fields, addresses. Each must answer (a value or a typed error) for
//! any input, never panic, and keep its documented bounds.
//!
//! The same properties are the bounded fuzz run of `cargo xtask test`: it sets
//! `UNCENSORED_FUZZ_CASES` (default here 256 cases a property).

use std::time::Duration;

use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use uncensored::callback::{CallbackSecret, parse_callback};
use uncensored::{GenerateRequest, ImageFormat, MAX_WAIT, RateLimit, parse_retry_after};

fn config() -> ProptestConfig {
    let cases = std::env::var("UNCENSORED_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Header-ish text: digits, dates, signs, exponents and noise.
fn header_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,40}",
        "[-+]?[0-9]{0,25}(\\.[0-9]{0,10})?([eE][-+]?[0-9]{0,5})?",
        "(Mon|Tue|Sun|Sunday), [0-9]{1,2}[ -](Jan|Nov|Dec)[ -][0-9]{2,5} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT",
        "[0-9]{1,6}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})",
        "[ -~]{0,80}",
    ]
}

fn headers(pairs: &[(&'static str, Vec<u8>)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            map.insert(HeaderName::from_static(name), value);
        }
    }
    map
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn retry_after_is_bounded_for_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        if let Some(wait) = parse_retry_after(&bytes) {
            prop_assert!(wait <= MAX_WAIT);
        }
    }

    #[test]
    fn retry_after_is_bounded_for_header_like_text(text in header_text()) {
        if let Some(wait) = parse_retry_after(text.as_bytes()) {
            prop_assert!(wait <= MAX_WAIT);
        }
    }

    #[test]
    fn retry_after_reads_every_whole_number(seconds in any::<u64>()) {
        let wait = parse_retry_after(seconds.to_string().as_bytes());
        prop_assert_eq!(wait, Some(Duration::from_secs(seconds).min(MAX_WAIT)));
    }

    #[test]
    fn any_float_is_a_bounded_wait_or_none(seconds in any::<f64>()) {
        match uncensored::wait_from_seconds(seconds) {
            Some(wait) => prop_assert!(wait <= MAX_WAIT && seconds >= 0.0),
            None => prop_assert!(seconds.is_nan() || seconds < 0.0),
        }
    }

    #[test]
    fn rate_limit_headers_are_sane_or_absent(
        limit in header_text(),
        remaining in header_text(),
        reset in header_text(),
    ) {
        let now = chrono::Utc::now();
        let map = headers(&[
            ("x-ratelimit-limit-requests", limit.into_bytes()),
            ("x-ratelimit-remaining-requests", remaining.into_bytes()),
            ("x-ratelimit-reset-requests", reset.into_bytes()),
        ]);
        if let Some(rate) = RateLimit::parse_at(&map, now) {
            prop_assert!(rate.limit > 0 && rate.remaining <= rate.limit);
            let ahead = (rate.reset - now).abs();
            prop_assert!(ahead <= chrono::Duration::from_std(uncensored::MAX_RESET_AHEAD).unwrap());
        }
    }

    #[test]
    fn callbacks_parse_or_fail_typed(
        content_type in "[ -~]{0,40}",
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let map = headers(&[("content-type", content_type.into_bytes())]);
        let _ = parse_callback(&map, &body);
    }

    #[test]
    fn callback_json_of_any_shape_is_handled(
        request_id in "[ -~]{0,40}",
        status in "[a-z_]{0,12}",
        image in proptest::option::of("[ -~]{0,60}"),
        timestamp in any::<i64>(),
    ) {
        let body = serde_json::json!({
            "request_id": request_id,
            "status": status,
            "result": image.map(|url| serde_json::json!({"image_url": url})),
            "timestamp": timestamp,
        });
        let map = headers(&[("content-type", b"application/json".to_vec())]);
        if let Ok(callback) = parse_callback(&map, body.to_string().as_bytes()) {
            prop_assert!(!callback.request_id.is_empty());
        }
    }

    #[test]
    fn signed_paths_of_any_shape_are_refused_unless_signed(path in "[ -~]{0,120}") {
        let secret = CallbackSecret::new("a-callback-secret-of-at-least-32-characters").unwrap();
        prop_assert!(secret.verify_path(&path).is_err());
        prop_assert!(secret.verify(&path).is_err());
    }

    #[test]
    fn image_sniffing_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
        if let Some(format) = ImageFormat::sniff(&bytes) {
            prop_assert!(!format.extension().is_empty());
        }
    }

    #[test]
    fn requests_validate_without_panicking(
        prompt in "\\PC{0,40}",
        width in any::<u32>(),
        height in any::<u32>(),
        key in "[ -~]{0,300}",
        callback in "[ -~]{0,80}",
    ) {
        let request = GenerateRequest::new(prompt)
            .size(width, height)
            .idempotency_key(key)
            .callback_url(callback);
        let _ = request.validate();
    }

    #[test]
    fn any_address_is_classified(octets in any::<[u8; 16]>()) {
        let v6 = std::net::Ipv6Addr::from(octets);
        let v4 = std::net::Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]);
        // An IPv4 address reads the same inside an IPv6 one.
        prop_assert_eq!(
            uncensored::is_public(v4.into()),
            uncensored::is_public(v4.to_ipv6_mapped().into())
        );
        let _ = uncensored::is_public(v6.into());
    }
}
