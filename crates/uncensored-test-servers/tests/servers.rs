//! Each server starts, takes a bucket or container, and does what the storage
//! tests need through object_store 0.14, or is shown not to: these tests pin
//! down what each local server really implements, so a test written against it
//! knows what it proves.

use std::time::Duration;

use object_store::path::Path;
use object_store::signer::{Method, Signer as _};
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};
use uncensored_test_servers::http;

const TEN_MINUTES: Duration = Duration::from_secs(600);

async fn read(store: &dyn ObjectStore, path: &str) -> Vec<u8> {
    store
        .get(&Path::from(path))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// Put, get, and `PutMode::Create` twice: the second must be `AlreadyExists`
/// and leave the first object in place.
async fn round_trip_and_create_once(store: &dyn ObjectStore) {
    store
        .put(
            &Path::from("dir/one.txt"),
            PutPayload::from_static(b"hello"),
        )
        .await
        .unwrap();
    assert_eq!(read(store, "dir/one.txt").await, b"hello");
    let head = store.head(&Path::from("dir/one.txt")).await.unwrap();
    assert_eq!(head.size, 5);

    let path = Path::from("dir/claim.json");
    let create = || PutOptions::from(PutMode::Create);
    store
        .put_opts(&path, PutPayload::from_static(b"first"), create())
        .await
        .unwrap();
    let second = store
        .put_opts(&path, PutPayload::from_static(b"second"), create())
        .await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "{second:?}"
    );
    assert_eq!(read(store, "dir/claim.json").await, b"first");
}

/// A presigned GET fetches the object; a presigned PUT stores one.
async fn presigned_urls_work(
    store: &(impl ObjectStore + object_store::signer::Signer),
    put_headers: &[(&str, &str)],
) {
    let get = store
        .signed_url(Method::GET, &Path::from("dir/one.txt"), TEN_MINUTES)
        .await
        .unwrap();
    let response = http::request("GET", get.as_str(), &[], b"").unwrap();
    assert_eq!((response.status, response.text().as_str()), (200, "hello"));

    let put = store
        .signed_url(Method::PUT, &Path::from("dir/signed.txt"), TEN_MINUTES)
        .await
        .unwrap();
    let response = http::request("PUT", put.as_str(), put_headers, b"via a signed URL").unwrap();
    assert!(response.is_success(), "{response:?}");
    assert_eq!(read(store, "dir/signed.txt").await, b"via a signed URL");
}

/// The GET URL signed for `dir/one.txt`, pointed at `dir/claim.json`.
async fn tampered_get(store: &impl object_store::signer::Signer) -> http::Response {
    let url = store
        .signed_url(Method::GET, &Path::from("dir/one.txt"), TEN_MINUTES)
        .await
        .unwrap();
    let tampered = url.as_str().replace("dir/one.txt", "dir/claim.json");
    http::request("GET", &tampered, &[], b"").unwrap()
}

#[tokio::test]
async fn moto_does_conditional_create_and_presigned_urls_with_the_default_s3_config() {
    let Some(moto) = uncensored_test_servers::moto() else {
        return;
    };
    moto.create_bucket("bucket");
    // object_store's default conditional put (S3ConditionalPut::ETagMatch)
    // sends `If-None-Match: *`; moto answers 412, which object_store reports
    // as AlreadyExists. No `with_conditional_put` is needed.
    let store = moto
        .s3_builder()
        .with_bucket_name("bucket")
        .build()
        .unwrap();
    round_trip_and_create_once(&store).await;
    presigned_urls_work(&store, &[]).await;
    // moto does not check SigV4 signatures: a URL signed for another key
    // works. A test cannot rely on moto to reject a bad or expired URL.
    let response = tampered_get(&store).await;
    assert_eq!((response.status, response.text().as_str()), (200, "first"));
}

#[tokio::test]
async fn azurite_does_conditional_create_and_checks_sas_urls() {
    let Some(azurite) = uncensored_test_servers::azurite() else {
        return;
    };
    azurite.create_container("box");
    // object_store sends `If-None-Match: *` for PutMode::Create; Azurite
    // answers 409 BlobAlreadyExists, reported as AlreadyExists.
    let store = azurite.builder("box").build().unwrap();
    round_trip_and_create_once(&store).await;
    // Service SAS signed with the dev account key; a PUT of a block blob needs
    // the `x-ms-blob-type` header.
    presigned_urls_work(&store, &[("x-ms-blob-type", "BlockBlob")]).await;
    // Azurite checks SAS signatures.
    assert_eq!(tampered_get(&store).await.status, 403);
}

#[tokio::test]
async fn a_container_that_exists_is_refused() {
    let Some(azurite) = uncensored_test_servers::azurite() else {
        return;
    };
    azurite.create_container("twice");
    let again = std::panic::catch_unwind(|| azurite.create_container("twice"));
    assert!(again.is_err(), "a second create must fail (409)");
}

#[tokio::test]
async fn gcs_emulator_takes_json_api_uploads_but_ignores_preconditions() {
    let Some(gcs) = uncensored_test_servers::gcs() else {
        return;
    };
    gcs.create_bucket("bucket");
    let upload = |body: &'static [u8]| {
        http::request(
            "POST",
            &format!(
                "{}/upload/storage/v1/b/bucket/o?uploadType=media&name=dir%2Fa.txt&ifGenerationMatch=0",
                gcs.endpoint
            ),
            &[("Content-Type", "text/plain")],
            body,
        )
        .unwrap()
    };
    assert!(upload(b"first").is_success());
    // ifGenerationMatch=0 ("only if absent") is ignored: the second upload
    // replaces the first instead of failing with 412.
    assert!(upload(b"second").is_success());
    let download = http::request(
        "GET",
        &format!(
            "{}/download/storage/v1/b/bucket/o/dir%2Fa.txt?alt=media",
            gcs.endpoint
        ),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(download.text(), "second");
}

#[tokio::test]
async fn gcs_emulator_is_not_enough_for_object_store() {
    let Some(gcs) = uncensored_test_servers::gcs() else {
        return;
    };
    gcs.create_bucket("bucket");
    let via_file = gcs.builder("bucket").build().unwrap();
    let via_url = uncensored_test_servers::gcs_builder(&gcs.endpoint)
        .with_bucket_name("bucket")
        .build()
        .unwrap();
    for store in [&via_file, &via_url] {
        // object_store's XML-API PUT reaches the emulator and the object is
        // stored, but the response has no ETag, so the put is an error...
        let put = store
            .put(
                &Path::from("dir/one.txt"),
                PutPayload::from_static(b"hello"),
            )
            .await;
        assert!(
            put.as_ref()
                .is_err_and(|e| e.to_string().contains("ETag") || format!("{e:?}").contains("Etag")),
            "{put:?}"
        );
        // ...and a GET's response has no Last-Modified, so reading fails too.
        let get = store.get(&Path::from("dir/one.txt")).await;
        assert!(
            get.as_ref()
                .is_err_and(|e| e.to_string().contains("Last-Modified")),
            "{:?}",
            get.map(|_| ())
        );
        // PutMode::Create cannot be checked: every put fails the same way,
        // and the emulator ignores `x-goog-if-generation-match` (it has no
        // precondition support at all). HEAD is not implemented (501).
    }
    // Signed URLs: with the stand-in signer they are made offline and the
    // emulator serves them, without checking the signature at all.
    let url = via_url
        .signed_url(Method::GET, &Path::from("dir/one.txt"), TEN_MINUTES)
        .await
        .unwrap();
    let response = http::request("GET", url.as_str(), &[], b"").unwrap();
    assert_eq!((response.status, response.text().as_str()), (200, "hello"));
    let mut forged = url.clone();
    forged.set_query(Some("X-Goog-Signature=00"));
    let response = http::request("GET", forged.as_str(), &[], b"").unwrap();
    assert_eq!(response.status, 200, "the emulator checks no signature");
}

#[test]
fn the_service_account_file_points_at_the_emulator() {
    let Some(gcs) = uncensored_test_servers::gcs() else {
        return;
    };
    let text = std::fs::read_to_string(&gcs.service_account).unwrap();
    assert!(text.contains(&format!("\"gcs_base_url\": \"{}\"", gcs.endpoint)));
    assert!(text.contains("\"disable_oauth\": true"));
    let file = gcs.service_account.clone();
    drop(gcs);
    assert!(!file.exists(), "removed with the emulator");
}

#[test]
fn servers_are_killed_on_drop() {
    let Some(moto) = uncensored_test_servers::moto() else {
        return;
    };
    let address = moto.endpoint.trim_start_matches("http://").to_string();
    assert!(std::net::TcpStream::connect(&address).is_ok());
    drop(moto);
    assert!(std::net::TcpStream::connect(&address).is_err());
}
