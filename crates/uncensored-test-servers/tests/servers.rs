//! Each server starts, takes a bucket or container, and does what the storage
//! tests need through object_store 0.14, or is shown not to: these tests pin
//! down what each local server really implements, so a test written against it
//! knows what it proves.

use std::time::Duration;

use object_store::path::Path;
use object_store::signer::Method;
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
async fn gcs_json_api_uploads_are_forwarded_and_their_preconditions_ignored() {
    let Some(gcs) = uncensored_test_servers::gcs() else {
        return;
    };
    gcs.create_bucket("bucket");
    // Through the shim, which forwards the JSON API unchanged.
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
    // ifGenerationMatch=0 ("only if absent") is ignored by the emulator, and
    // the shim only implements the XML API's x-goog-if-generation-match: the
    // second upload replaces the first instead of failing with 412.
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
async fn the_gcs_emulator_alone_is_not_enough_for_object_store() {
    let Some(gcs) = uncensored_test_servers::gcs() else {
        return;
    };
    gcs.create_bucket("bucket");
    // Straight at the emulator, without the shim.
    let store = uncensored_test_servers::gcs_builder(&gcs.emulator)
        .with_bucket_name("bucket")
        .build()
        .unwrap();
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
    // HEAD is not implemented, nor is the XML listing.
    let head = http::request(
        "HEAD",
        &format!("{}/bucket/dir/one.txt", gcs.emulator),
        &[],
        b"",
    );
    assert_eq!(head.unwrap().status, 501);
    let list = http::request(
        "GET",
        &format!("{}/bucket?list-type=2", gcs.emulator),
        &[],
        b"",
    );
    assert_eq!(list.unwrap().status, 501);
}

#[tokio::test]
async fn gcs_through_the_shim_does_what_object_store_needs() {
    let Some(gcs) = uncensored_test_servers::gcs() else {
        return;
    };
    gcs.create_bucket("file");
    gcs.create_bucket("url");
    // The service-account file (as the CLI would use it) and the base URL
    // both point at the shim.
    let via_file = gcs.builder("file").build().unwrap();
    let via_url = uncensored_test_servers::gcs_builder(&gcs.endpoint)
        .with_bucket_name("url")
        .build()
        .unwrap();
    for store in [&via_file, &via_url] {
        // Put, get, head; PutMode::Create twice: AlreadyExists (412 from the
        // shim's x-goog-if-generation-match check), the first one kept.
        round_trip_and_create_once(store).await;

        let path = Path::from("dir/one.txt");
        let head = store.head(&path).await.unwrap();
        assert!(head.e_tag.is_some() && head.version.is_some(), "{head:?}");
        let ranged = store.get_range(&path, 1..4).await.unwrap();
        assert_eq!(&ranged[..], b"ell");
        let suffix = store
            .get_opts(
                &path,
                object_store::GetOptions {
                    range: Some(object_store::GetRange::Suffix(2)),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(&suffix.bytes().await.unwrap()[..], b"lo");

        // Attributes travel, and a JSON body is stored byte for byte (the
        // emulator's own XML PUT would parse it).
        let attributes = object_store::Attributes::from_iter([
            (object_store::Attribute::ContentType, "application/json"),
            (object_store::Attribute::Metadata("job-id".into()), "42"),
        ]);
        let options = PutOptions {
            attributes,
            ..PutMode::Overwrite.into()
        };
        let json = Path::from("dir/meta.json");
        store
            .put_opts(&json, PutPayload::from_static(b"{\"a\": 1}"), options)
            .await
            .unwrap();
        let got = store.get(&json).await.unwrap();
        assert_eq!(
            got.attributes.get(&object_store::Attribute::ContentType),
            Some(&"application/json".into())
        );
        assert_eq!(
            got.attributes
                .get(&object_store::Attribute::Metadata("job-id".into())),
            Some(&"42".into())
        );
        assert_eq!(&got.bytes().await.unwrap()[..], b"{\"a\": 1}");

        // An empty object.
        store
            .put(&Path::from("empty"), PutPayload::default())
            .await
            .unwrap();
        assert_eq!(read(store, "empty").await, b"");

        // PutMode::Update with the generation from a put.
        let claim = Path::from("dir/claim.json");
        let version = store.head(&claim).await.unwrap();
        let update = |version: &object_store::ObjectMeta| {
            PutOptions::from(PutMode::Update(object_store::UpdateVersion {
                e_tag: version.e_tag.clone(),
                version: version.version.clone(),
            }))
        };
        store
            .put_opts(
                &claim,
                PutPayload::from_static(b"updated"),
                update(&version),
            )
            .await
            .unwrap();
        let stale = store
            .put_opts(&claim, PutPayload::from_static(b"stale"), update(&version))
            .await;
        assert!(
            matches!(stale, Err(object_store::Error::Precondition { .. })),
            "{stale:?}"
        );
        assert_eq!(read(store, "dir/claim.json").await, b"updated");

        // Listing with a delimiter.
        let listed = store
            .list_with_delimiter(Some(&Path::from("dir")))
            .await
            .unwrap();
        let mut names: Vec<_> = listed
            .objects
            .iter()
            .map(|o| o.location.to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["dir/claim.json", "dir/meta.json", "dir/one.txt"]);
        assert!(listed.objects.iter().all(|o| o.e_tag.is_some()));
        let top = store.list_with_delimiter(None).await.unwrap();
        assert_eq!(top.common_prefixes, [Path::from("dir")]);
        assert_eq!(top.objects.len(), 1, "{top:?}");

        // Delete: gone for get and head; a second delete is NotFound.
        store.delete(&path).await.unwrap();
        let get = store.get(&path).await;
        assert!(
            matches!(get, Err(object_store::Error::NotFound { .. })),
            "{:?}",
            get.map(|_| ())
        );
        let head = store.head(&path).await;
        assert!(
            matches!(head, Err(object_store::Error::NotFound { .. })),
            "{head:?}"
        );
        let again = store.delete(&path).await;
        assert!(
            matches!(again, Err(object_store::Error::NotFound { .. })),
            "{again:?}"
        );
    }

    // Signed URLs: with the stand-in signer they are made offline and served,
    // but neither the shim nor the emulator checks a signature (or expiry),
    // so a test cannot rely on them to reject a bad or expired URL.
    via_url
        .put(
            &Path::from("dir/one.txt"),
            PutPayload::from_static(b"hello"),
        )
        .await
        .unwrap();
    presigned_urls_work(&via_url, &[]).await;
    let response = tampered_get(&via_url).await;
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "updated")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_concurrent_creates_have_exactly_one_winner() {
    let Some(gcs) = uncensored_test_servers::gcs() else {
        return;
    };
    gcs.create_bucket("bucket");
    let store: std::sync::Arc<dyn ObjectStore> =
        std::sync::Arc::new(gcs.builder("bucket").build().unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            let body = format!("writer {writer}");
            let outcome = store
                .put_opts(
                    &Path::from("claim"),
                    PutPayload::from(body.clone().into_bytes()),
                    PutMode::Create.into(),
                )
                .await;
            (body, outcome)
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            (body, Ok(_)) => winners.push(body),
            (_, Err(object_store::Error::AlreadyExists { .. })) => {}
            (_, Err(other)) => panic!("{other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(read(store.as_ref(), "claim").await, winners[0].as_bytes());
}

#[tokio::test]
async fn gcs_listing_tells_a_missing_bucket_from_an_empty_one() {
    let Some(gcs) = uncensored_test_servers::gcs() else {
        return;
    };
    gcs.create_bucket("empty");
    let prefix = Path::from("some/prefix");
    let missing = gcs.builder("missing").build().unwrap();
    let listed = missing.list_with_delimiter(Some(&prefix)).await;
    assert!(listed.is_err(), "{listed:?}");
    let empty = gcs.builder("empty").build().unwrap();
    let listed = empty.list_with_delimiter(Some(&prefix)).await.unwrap();
    assert!(listed.objects.is_empty() && listed.common_prefixes.is_empty());
    // A put into a missing bucket fails too.
    let put = missing
        .put(&Path::from("a"), PutPayload::from_static(b"a"))
        .await;
    assert!(put.is_err(), "{put:?}");
}

#[test]
fn the_service_account_file_points_at_the_shim() {
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
