//! The storage conformance suite (`uncensored_deliver::testing::storage`),
//! run against every store this crate supports: memory, the local file
//! system, S3 (moto), Azure Blob (Azurite) and GCS (gcp-storage-emulator),
//! each a real server on loopback started by `uncensored-test-servers`.
#![cfg(feature = "testing")]

use uncensored_deliver::storage::{ObjectStorage, Storage, StorageError, StorageUrl};
use uncensored_deliver::testing::storage::{
    TestImage, concurrent_claims, conformance, meta, multipart, name, share_urls,
};

fn temp_dir(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "uncensored-{tag}-{}",
        uuid::Uuid::new_v4().simple()
    ))
}

#[tokio::test]
async fn memory_conforms() {
    let storage = StorageUrl::parse("memory://").unwrap().open().unwrap();
    conformance(&storage).await;
    concurrent_claims(&storage).await;
    multipart(&storage).await;
    assert_eq!(storage.share_url(&name("job-a")).await.unwrap(), None);
}

#[cfg(feature = "fs")]
mod fs {
    use super::*;

    #[tokio::test]
    async fn fs_conforms_and_leaves_no_temporary_files() {
        let dir = temp_dir("fs");
        let url = format!("file://{}", dir.display());
        let storage = StorageUrl::parse(&url).unwrap().open().unwrap();
        assert_eq!(
            storage.location(&name("x")),
            dir.join("2026-05-09/x.jpg").display().to_string(),
            "a file location is a path"
        );
        conformance(&storage).await;
        concurrent_claims(&storage).await;
        multipart(&storage).await;
        let day = dir.join("2026-05-09");
        let mut files: Vec<String> = std::fs::read_dir(&day)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                "big.jpg",
                "big.jpg.json",
                "contested.jpg",
                "contested.jpg.json",
                "job-a.jpg",
                "job-a.jpg.json",
                "job-c.jpg",
                "job-c.jpg.json"
            ],
            "no staging files remain"
        );
        let bytes = std::fs::read(day.join("job-a.jpg")).unwrap();
        assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_file_no_sidecar_explains_is_never_overwritten() {
        let dir = temp_dir("fs-foreign");
        let storage = ObjectStorage::local(&dir).unwrap();
        std::fs::create_dir_all(dir.join("2026-05-09")).unwrap();
        std::fs::write(dir.join("2026-05-09/job-z.jpg"), b"someone else's").unwrap();
        let mut source = TestImage::new(9, 1000, 100);
        let error = storage
            .put(&name("job-z"), &mut source, &meta("job-z"))
            .await
            .unwrap_err();
        assert!(matches!(error, StorageError::Conflict { .. }), "{error}");
        assert_eq!(
            std::fs::read(dir.join("2026-05-09/job-z.jpg")).unwrap(),
            b"someone else's"
        );
        assert!(
            !dir.join("2026-05-09/job-z.jpg.json").exists(),
            "the claim is given back"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_bare_directory_is_file_storage() {
        let dir = temp_dir("bare");
        let storage = StorageUrl::parse(&dir.display().to_string())
            .unwrap()
            .open()
            .unwrap();
        storage.check().await.unwrap();
        assert!(dir.is_dir(), "the directory is created");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[cfg(feature = "s3")]
mod s3 {
    use super::*;

    #[tokio::test]
    async fn s3_conforms() {
        let Some(moto) = uncensored_test_servers::moto() else {
            return;
        };
        moto.create_bucket("conformance");
        let storage = StorageUrl::parse("s3://conformance/images")
            .unwrap()
            .open_with(moto.storage_options())
            .unwrap()
            .with_presigned_urls(std::time::Duration::from_secs(600));
        assert_eq!(
            storage.location(&name("x")),
            "s3://conformance/images/2026-05-09/x.jpg"
        );
        assert!(
            !format!("{storage:?}").contains(uncensored_test_servers::S3_SECRET_ACCESS_KEY),
            "Debug shows the secret key"
        );
        conformance(&storage).await;
        concurrent_claims(&storage).await;
        multipart(&storage).await;
        share_urls(&storage).await;
    }

    #[tokio::test]
    async fn a_missing_bucket_fails_the_check_before_anything_is_written() {
        let Some(moto) = uncensored_test_servers::moto() else {
            return;
        };
        let storage = StorageUrl::parse("s3://no-such-bucket/x")
            .unwrap()
            .open_with(moto.storage_options())
            .unwrap();
        let error = storage.check().await.unwrap_err();
        assert!(matches!(error, StorageError::Unusable { .. }), "{error}");
        assert!(
            error.to_string().contains("s3://no-such-bucket/x"),
            "{error}"
        );
        assert!(
            !error
                .to_string()
                .contains(uncensored_test_servers::S3_SECRET_ACCESS_KEY),
            "{error}"
        );
    }
}

#[cfg(feature = "azure")]
mod azure {
    use super::*;

    #[tokio::test]
    async fn azure_conforms() {
        let Some(azurite) = uncensored_test_servers::azurite() else {
            return;
        };
        azurite.create_container("conformance");
        let storage = StorageUrl::parse("az://conformance/images")
            .unwrap()
            .open_with(azurite.storage_options())
            .unwrap()
            .with_presigned_urls(std::time::Duration::from_secs(600));
        assert_eq!(
            storage.location(&name("x")),
            "az://conformance/images/2026-05-09/x.jpg"
        );
        assert!(
            !format!("{storage:?}").contains(uncensored_test_servers::AZURITE_KEY),
            "Debug shows the account key"
        );
        conformance(&storage).await;
        concurrent_claims(&storage).await;
        multipart(&storage).await;
        share_urls(&storage).await;
    }

    #[tokio::test]
    async fn a_missing_container_fails_the_check() {
        let Some(azurite) = uncensored_test_servers::azurite() else {
            return;
        };
        let storage = StorageUrl::parse("az://no-such-container")
            .unwrap()
            .open_with(azurite.storage_options())
            .unwrap();
        let error = storage.check().await.unwrap_err();
        assert!(matches!(error, StorageError::Unusable { .. }), "{error}");
    }
}

#[cfg(feature = "gcs")]
mod gcs {
    use super::*;

    /// gcp-storage-emulator handles single-part put and get only, through
    /// its JSON API; `uncensored_test_servers::gcs()` puts a shim in front of
    /// it that answers object_store's XML requests (put, get, head, delete,
    /// list) from the emulator's storage and enforces
    /// `x-goog-if-generation-match` the way GCS does. What this test cannot
    /// check on it: multipart uploads (the emulator has no XML multipart
    /// API) and signed URLs (nothing verifies a signature). The conditional
    /// create behind `concurrent_claims` is the shim's imitation of GCS, so
    /// that check proves the storage sends the right precondition, not that
    /// GCS honours it.
    #[tokio::test]
    async fn gcs_conforms_where_the_emulator_can_tell() {
        let Some(gcs) = uncensored_test_servers::gcs() else {
            return;
        };
        gcs.create_bucket("conformance");
        let storage = StorageUrl::parse("gs://conformance/images")
            .unwrap()
            .open_with(gcs.storage_options())
            .unwrap();
        assert_eq!(
            storage.location(&name("x")),
            "gs://conformance/images/2026-05-09/x.jpg"
        );
        conformance(&storage).await;
        concurrent_claims(&storage).await;
    }

    #[tokio::test]
    async fn a_missing_bucket_fails_the_check() {
        let Some(gcs) = uncensored_test_servers::gcs() else {
            return;
        };
        let storage = StorageUrl::parse("gs://no-such-bucket/x")
            .unwrap()
            .open_with(gcs.storage_options())
            .unwrap();
        let error = storage.check().await.unwrap_err();
        assert!(matches!(error, StorageError::Unusable { .. }), "{error}");
    }
}
