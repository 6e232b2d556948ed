//! Run by `cargo xtask test` in a scratch copy of the workspace whose
//! openapi.yaml has `image_width`'s `maximum` raised to 2560 and `prompt`'s
//! `maxLength` to 2500, after `cargo xtask generate` on that copy and no
//! other edit: the SDK and the emulator must both follow the new limits.

use uncensored::{Client, GenerateRequest, Generation, Side};
use uncensored_emulator::{Config, DEFAULT_KEY, Emulator};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let limits = uncensored::api::limits::generate_image_request::IMAGE_WIDTH_MAXIMUM;
    assert_eq!(limits, 2560, "the generated limits follow the edited spec");

    // The SDK, before any I/O.
    GenerateRequest::new("p")
        .width(2560)
        .validate()
        .expect("the SDK accepts 2560");
    let refused = GenerateRequest::new("p")
        .width(2568)
        .validate()
        .unwrap_err();
    assert_eq!(refused.field, "image_width");
    assert!(
        refused.problem.contains("256 to 2560"),
        "{}",
        refused.problem
    );
    assert!(
        GenerateRequest::new("p").height(2560).validate().is_err(),
        "height keeps 2048"
    );
    GenerateRequest::new("x".repeat(2500))
        .validate()
        .expect("the SDK accepts 2,500 characters");
    assert!(GenerateRequest::new("x".repeat(2501)).validate().is_err());
    assert_eq!(Side::Width.maximum(), 2560);

    // A real request through the SDK to the emulator, started in-process.
    let emulator = Emulator::start(Config {
        time_scale: 0.001,
        ..Config::default()
    })
    .await
    .expect("the emulator starts on loopback");
    let client = Client::builder()
        .base_url(emulator.base_url())
        .api_key(DEFAULT_KEY)
        .build()
        .expect("a client");
    let request = GenerateRequest::new("x".repeat(2500)).size(2560, 256);
    match client.generate(&request).await {
        Ok(Generation::Completed(image)) => {
            println!("the emulator made {} at 2560 px", image.job_id)
        }
        Ok(other) => panic!("a sync generation must complete: {other:?}"),
        Err(error) => panic!("the emulator refused what the edited spec allows: {error}"),
    }
    // And refuses what it does not, when the SDK's check is bypassed.
    let raw = reqwest::Client::new()
        .post(format!("{}/v1/images/generations", emulator.base_url()))
        .header("x-api-key", DEFAULT_KEY)
        .json(&serde_json::json!({"prompt": "p", "image_width": 2568}))
        .send()
        .await
        .expect("the emulator answers");
    assert_eq!(
        raw.status().as_u16(),
        400,
        "2568 is over the edited maximum"
    );
    emulator.shutdown().await;
    println!("spec change reached the SDK and the emulator");
}
