//! Delivers the callback of an async job, as the service documents it: a JSON
//! POST to `callback_url`, retried with backoff when the receiver fails. The
//! payload itself is [`crate::wire::webhook_payload`].

use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use crate::state::{AppState, Job};

/// Whether the emulator may send to `url`'s host: loopback only, unless the
/// configuration allows remote hosts.
pub fn host_allowed(url: &url::Url, allow_remote: bool) -> bool {
    allow_remote
        || match url.host() {
            Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
            None => false,
        }
}

/// Sends the callback for `job` to `url`, with the injected faults.
pub async fn deliver(state: AppState, job: Job, url: url::Url) {
    if !host_allowed(&url, state.config.webhooks.allow_remote_hosts) {
        tracing::warn!(host = ?url.host_str(), "not delivering a webhook off this machine");
        state.with_stats(|s| s.webhooks.blocked += 1);
        return;
    }
    let faults = &state.config.faults;
    let (duplicate, delayed) = state.with_rng(|rng| {
        (
            rng.chance(faults.duplicate_webhook_rate),
            rng.chance(faults.delayed_webhook_rate),
        )
    });
    if delayed {
        state.with_stats(|s| s.faults.delayed_webhooks += 1);
        if !state
            .pause(Duration::from_millis(faults.webhook_delay_ms))
            .await
        {
            return;
        }
    }
    if duplicate {
        state.with_stats(|s| s.faults.duplicate_webhooks += 1);
    }
    let body = crate::wire::webhook_payload(&state, &job);
    for _ in 0..(1 + usize::from(duplicate)) {
        send_with_retries(&state, &url, &body).await;
    }
}

async fn send_with_retries(state: &AppState, url: &url::Url, body: &Value) {
    let config = &state.config.webhooks;
    let mut backoff =
        Duration::from_millis(config.initial_backoff_ms).mul_f64(state.config.time_scale.max(0.0));
    for attempt in 1..=config.max_attempts {
        state.with_stats(|s| s.webhooks.attempts += 1);
        let outcome = state.http.post(url.clone()).json(body).send().await;
        match outcome {
            Ok(response) if response.status().is_success() => {
                state.with_stats(|s| s.webhooks.deliveries += 1);
                return;
            }
            Ok(response) => {
                tracing::debug!(attempt, status = %response.status(), "webhook refused")
            }
            Err(error) => tracing::debug!(attempt, %error, "webhook failed"),
        }
        if attempt < config.max_attempts {
            if !state.pause(backoff.max(Duration::from_millis(10))).await {
                return;
            }
            backoff *= 2;
        }
    }
    state.with_stats(|s| s.webhooks.failures += 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_by_default() {
        for (url, ok) in [
            ("http://127.0.0.1:9/cb", true),
            ("http://127.8.0.1/cb", true),
            ("http://[::1]:9/cb", true),
            ("http://localhost/cb", true),
            ("https://example.com/cb", false),
            ("http://10.0.0.1/cb", false),
            ("http://192.168.1.1/cb", false),
        ] {
            assert_eq!(
                host_allowed(&url::Url::parse(url).unwrap(), false),
                ok,
                "{url}"
            );
        }
        assert!(host_allowed(
            &url::Url::parse("https://example.com").unwrap(),
            true
        ));
    }
}
