//! `uncensored generate --store URL` end to end on every kind of storage,
//! each a real server on loopback (moto for S3, Azurite for Azure Blob,
//! gcp-storage-emulator for GCS), and storage mistakes refused before
//! anything is paid for.

use assert_cmd::Command;
use object_store::ObjectStoreExt as _;
use uncensored_emulator::{Config, Emulator, EmulatorHandle};

fn uncensored() -> Command {
    let mut command = Command::cargo_bin("uncensored").unwrap();
    for (var, _) in std::env::vars() {
        if var.starts_with("UNCENSORED_")
            || var.starts_with("AWS_")
            || var.starts_with("AZURE_")
            || var.starts_with("AZURITE_")
            || var.starts_with("GOOGLE_")
        {
            command.env_remove(var);
        }
    }
    command.env("XDG_CONFIG_HOME", "/nonexistent-config-dir");
    command
}

async fn emulator() -> EmulatorHandle {
    Emulator::start(Config {
        time_scale: 0.0,
        ..Config::default()
    })
    .await
    .unwrap()
}

/// Runs `generate PROMPT --store URL` against `emulator` with `env`; returns
/// (success, stdout, stderr).
async fn generate(
    emulator: &EmulatorHandle,
    store: &str,
    env: Vec<(String, String)>,
    extra: &[&str],
) -> (bool, String, String) {
    let mut command = uncensored();
    command
        .env("UNCENSORED_BASE_URL", emulator.base_url())
        .env("UNCENSORED_API_KEY", "emulator-key")
        .envs(env)
        .args(["generate", "a harbour at noon", "--store", store])
        .args(extra);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap().trim().to_string(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// The object at `location` (`SCHEME://BUCKET/KEY`) through `store`.
async fn fetch(store: &dyn object_store::ObjectStore, location: &str, bucket: &str) -> Vec<u8> {
    let key = location
        .split_once("://")
        .and_then(|(_, rest)| rest.strip_prefix(&format!("{bucket}/")))
        .unwrap_or_else(|| panic!("{location} is not in {bucket}"));
    assert!(
        key.starts_with("images/") && key.ends_with(".jpg"),
        "{location}"
    );
    store
        .get(&object_store::path::Path::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_to_s3_with_a_slack_message() {
    let Some(moto) = uncensored_test_servers::moto() else {
        return;
    };
    moto.create_bucket("gallery");
    let emulator = emulator().await;
    let slack = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&slack)
        .await;
    let notify = format!("slack:{}/services/T/B/secret", slack.uri());
    let (ok, location, stderr) = generate(
        &emulator,
        "s3://gallery/images",
        moto.env(),
        &["--notify", &notify],
    )
    .await;
    assert!(ok, "{stderr}");
    let store = moto
        .s3_builder()
        .with_bucket_name("gallery")
        .build()
        .unwrap();
    let object = fetch(&store, &location, "gallery").await;
    assert_eq!(&object[..3], &[0xFF, 0xD8, 0xFF]);
    let messages = slack.received_requests().await.unwrap();
    assert_eq!(messages.len(), 1);
    let body = String::from_utf8_lossy(&messages[0].body);
    assert!(
        body.contains("Image ready") && body.contains(&location),
        "{body}"
    );
    assert!(!stderr.contains("secret"));
    assert_eq!(emulator.stats().charges.total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_to_azure_blob_storage() {
    let Some(azurite) = uncensored_test_servers::azurite() else {
        return;
    };
    azurite.create_container("gallery");
    let emulator = emulator().await;
    let (ok, location, stderr) =
        generate(&emulator, "az://gallery/images", azurite.env(), &[]).await;
    assert!(ok, "{stderr}");
    assert!(location.starts_with("az://gallery/images/"), "{location}");
    let store = azurite.builder("gallery").build().unwrap();
    let object = fetch(&store, &location, "gallery").await;
    assert_eq!(&object[..3], &[0xFF, 0xD8, 0xFF]);
    assert!(!stderr.contains(uncensored_test_servers::AZURITE_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_to_google_cloud_storage() {
    let Some(gcs) = uncensored_test_servers::gcs() else {
        return;
    };
    gcs.create_bucket("gallery");
    let emulator = emulator().await;
    let (ok, location, stderr) = generate(&emulator, "gs://gallery/images", gcs.env(), &[]).await;
    assert!(ok, "{stderr}");
    assert!(location.starts_with("gs://gallery/images/"), "{location}");
    let store = gcs.builder("gallery").build().unwrap();
    let object = fetch(&store, &location, "gallery").await;
    assert_eq!(&object[..3], &[0xFF, 0xD8, 0xFF]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_mistakes_are_named_before_anything_is_paid() {
    let emulator = emulator().await;
    for (store, wanted) in [
        ("s3://", "no bucket"),
        ("ftp://host/images", "unknown storage scheme"),
        ("https://example.com/images", "unsupported storage URL"),
        ("s3://user:hunter2@bucket/x", "credentials do not belong"),
    ] {
        let (ok, _, stderr) = generate(&emulator, store, Vec::new(), &[]).await;
        assert!(!ok, "{store} was accepted");
        assert!(
            stderr.contains("--store") && stderr.contains(wanted),
            "{store}: {stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
    if let Some(moto) = uncensored_test_servers::moto() {
        let (ok, _, stderr) =
            generate(&emulator, "s3://no-such-bucket/images", moto.env(), &[]).await;
        assert!(!ok);
        assert!(
            stderr.contains("s3://no-such-bucket/images")
                && stderr.contains("bucket or container exists"),
            "{stderr}"
        );
        assert!(!stderr.contains(uncensored_test_servers::S3_SECRET_ACCESS_KEY));
    }
    if let Some(azurite) = uncensored_test_servers::azurite() {
        let (ok, _, stderr) =
            generate(&emulator, "az://no-such-container", azurite.env(), &[]).await;
        assert!(!ok);
        assert!(stderr.contains("az://no-such-container"), "{stderr}");
    }
    assert_eq!(
        emulator.stats().charges.total,
        0,
        "a storage mistake must be found before any image is paid for"
    );
}
