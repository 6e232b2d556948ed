//! The emulator refuses what openapi.yaml's `GenerateImageRequest` refuses
//! (`minLength: 1` on `model`, `resolution` and `quality`; `pattern`,
//! `maxLength` and `format: uri` on `callback_url`; `type: integer` on the
//! dimensions) with `400
//! invalid_request_error` naming the field, charges nothing for it, and still
//! accepts every valid use of those fields. Raw HTTP, because the typed client
//! refuses to send such bodies.

use serde_json::{Value, json};
use uncensored_emulator::{Config, Emulator, EmulatorHandle};

/// POSTs `body` as JSON with the default key; the status and the JSON answer.
async fn post(emulator: &EmulatorHandle, body: &Value) -> (u16, Value) {
    post_raw(emulator, body.to_string()).await
}

/// POSTs `body` as it is, labelled JSON, with the default key.
async fn post_raw(emulator: &EmulatorHandle, body: String) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/images/generations", emulator.base_url()))
        .header("x-api-key", "emulator-key")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn start() -> EmulatorHandle {
    Emulator::start(Config {
        time_scale: 0.0,
        ..Config::default()
    })
    .await
    .unwrap()
}

/// `prompt: "p"` plus `fields`.
fn with(fields: Value) -> Value {
    let mut body = json!({"prompt": "p"});
    for (name, value) in fields.as_object().unwrap() {
        body[name] = value.clone();
    }
    body
}

#[tokio::test]
async fn empty_model_resolution_and_quality_are_refused_for_every_model() {
    let emulator = start().await;
    for model in [
        None,
        Some("model-dev"),
        Some("model-pro"),
        Some("model-flex"),
    ] {
        for field in ["resolution", "quality"] {
            let mut body = with(json!({ field: "" }));
            if let Some(model) = model {
                body["model"] = json!(model);
            }
            let (status, answer) = post(&emulator, &body).await;
            assert_eq!(status, 400, "{body}");
            assert_eq!(answer["error"]["type"], "invalid_request_error", "{body}");
            assert_eq!(answer["error"]["param"], field, "{body}");
        }
    }
    let (status, answer) = post(&emulator, &with(json!({"model": ""}))).await;
    assert_eq!(
        (status, &answer["error"]["param"]),
        (400, &json!("model")),
        "{answer}"
    );
    assert_eq!(
        emulator.stats().charges.total,
        0,
        "nothing refused is charged"
    );
}

#[tokio::test]
async fn callback_urls_outside_the_spec_are_refused() {
    let emulator = start().await;
    let too_long = format!("http://127.0.0.1:9/{}", "a".repeat(2048));
    for url in [
        // `pattern: ^https?://[^/?#]+` is case-sensitive and needs `//` and a host.
        "HTTP://127.0.0.1:9/cb",
        "Https://127.0.0.1:9/cb",
        "http:127.0.0.1:9/cb",
        "http:/127.0.0.1:9/cb",
        "http:\\\\127.0.0.1:9\\cb",
        "http:///cb",
        " http://127.0.0.1:9/cb",
        // `format: uri`: RFC 3986 characters only.
        "http://127.0.0.1:9/a b",
        "http://127.0.0.1:9/cb\t",
        "http://127.0.0.1:9/%zz",
        "http://127.0.0.1:9/[x]",
        "http://127.0.0.1:9/cb#a#b",
        "http://exämple.com/cb",
        "http://a@b@127.0.0.1:9/cb",
        "http://[;[@@'",
        "http://127.0.0.1:9x/cb",
        // `maxLength: 2048`.
        &too_long,
    ] {
        let body = with(json!({ "callback_url": url }));
        let (status, answer) = post(&emulator, &body).await;
        assert_eq!(status, 400, "{url:?}");
        assert_eq!(answer["error"]["type"], "invalid_request_error", "{url:?}");
        assert_eq!(answer["error"]["param"], "callback_url", "{url:?}");
    }
    assert_eq!(
        emulator.stats().charges.total,
        0,
        "nothing refused is charged"
    );
}

#[tokio::test]
async fn dimensions_are_json_integers() {
    let emulator = start().await;
    for (field, number) in [
        ("image_width", "1024.0"),
        ("image_height", "1e3"),
        ("image_width", "5.12E2"),
    ] {
        let body = format!(r#"{{"prompt": "p", "{field}": {number}}}"#);
        let (status, answer) = post_raw(&emulator, body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(answer["error"]["param"], field, "{body}");
    }
    assert_eq!(
        emulator.stats().charges.total,
        0,
        "nothing refused is charged"
    );
    let body = r#"{"prompt": "p", "image_width": 512, "image_height": 2048}"#;
    let (status, _) = post_raw(&emulator, body.into()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn valid_hints_and_callback_urls_are_still_accepted() {
    let emulator = start().await;
    let before = emulator.balance("default");
    // On a fixed-price model, resolution and quality are hints: accepted, same price.
    let (status, answer) = post(
        &emulator,
        &with(json!({"model": "model-pro", "resolution": "2k", "quality": "high"})),
    )
    .await;
    assert_eq!((status, &answer["status"]), (200, &json!("completed")));
    assert_eq!(before - emulator.balance("default"), 4);
    // On a variable-pricing model they price the job.
    let (status, _) = post(
        &emulator,
        &with(json!({"model": "model-flex", "resolution": "2k", "quality": "high"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(before - emulator.balance("default"), 4 + 2 * 2 * 2);

    // Off loopback, so that the emulator blocks the webhooks instead of sending them.
    let longest = format!("http://example.com/{}", "a".repeat(2048 - 19));
    assert_eq!(longest.chars().count(), 2048);
    for url in [
        "https://example.com",
        "http://example.com:8080/hook",
        "https://user:pw@example.com:8443/a/b?x=1&y=%2F;z=(1)#top",
        "https://[::2]/hook",
        "http://203.0.113.7/cb?~ok=!$'*+,",
        &longest,
    ] {
        let (status, answer) = post(&emulator, &with(json!({ "callback_url": url }))).await;
        assert_eq!(status, 202, "{url:?}: {answer}");
        assert_eq!(
            answer["webhook_url"],
            url::Url::parse(url).unwrap().as_str()
        );
    }
}
