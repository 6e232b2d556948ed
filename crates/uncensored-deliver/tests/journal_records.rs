//! A journal on disk outlives the build that wrote it. `fixtures/journal-v1.sqlite`
//! was written by the build before journal records had versions (the SDK's
//! request written as it was, a stored image's facts in the stage): this
//! build reads every entry of it, its batch (the same lines keep their ids,
//! so nothing is loaded or paid again) and its nonce bindings, and writes
//! them back as records of its own version.

#![cfg(feature = "sqlite")]

use std::collections::BTreeSet;

use chrono::TimeZone as _;
use uncensored::{FailureReason, GenerateRequest};
use uncensored_deliver::journal::{
    Batches as _, CallbackNonces as _, Entries as _, LineIds, SqliteJournal, Stage,
};

/// A copy of the fixture, so that the test never changes it.
fn fixture() -> (SqliteJournal, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "uncensored-records-{}-{}",
        std::process::id(),
        uuid_like()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("journal.sqlite");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/journal-v1.sqlite"
        ),
        &path,
    )
    .unwrap();
    (SqliteJournal::open(&path).unwrap(), dir)
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn at(minute: u32) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 30, 12, minute, 0)
        .unwrap()
}

#[tokio::test]
async fn a_journal_written_before_record_versions_reads_whole() {
    let (journal, dir) = fixture();
    assert_eq!(journal.counts().await.unwrap(), (9, 2));

    // Every field of a request, as the SDK had them then.
    let pending = journal.get("order-1").await.unwrap().unwrap();
    assert_eq!(
        pending.request,
        GenerateRequest::new("a lighthouse at dusk, oil painting")
            .model("model-pro")
            .size(1024, 768)
            .resolution("2k")
            .quality("high")
            .setting("seed", 42)
            .idempotency_key("order-1-key")
    );
    assert_eq!(pending.idempotency_key, "order-1-key");
    assert_eq!(pending.stage, Stage::Pending);
    assert_eq!(pending.updated_at, at(1));

    let accepted = journal.get("order-2").await.unwrap().unwrap();
    assert_eq!(
        accepted.stage,
        Stage::Accepted {
            job_id: "job-2".into()
        }
    );
    assert_eq!(accepted.request.asked_size(), (None, None));

    let generated = journal.get("order-3").await.unwrap().unwrap();
    assert_eq!(
        generated.stage,
        Stage::Generated {
            job_id: "job-3".into(),
            image_url: "https://cdn.example.com/job-3.png".into(),
            generation_time: Some(7.5),
            model: Some("model-lite".into()),
        }
    );

    // A stored image of then: its record completed from its entry.
    let stored = journal.get("order-4").await.unwrap().unwrap();
    let Stage::Stored(image) = &stored.stage else {
        panic!("{:?}", stored.stage)
    };
    assert_eq!(image.job_id, "job-4");
    assert_eq!(image.prompt, "a quiet harbour");
    assert_eq!((image.width, image.height), (Some(512), Some(512)));
    assert_eq!(image.model.as_deref(), Some("model-pro"));
    assert_eq!(image.generation_time, Some(12.25));
    assert_eq!(image.name, "2026-11-30/job-4.jpg");
    assert_eq!(image.location, "images/2026-11-30/job-4.jpg");
    assert_eq!(
        image.sha256,
        "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
    );
    assert_eq!(
        image.share_url.as_deref(),
        Some("https://share.example.com/job-4.jpg?sig=abc")
    );
    assert_eq!(image.size, None);
    assert_eq!(image.created_at, at(4));
    assert!(stored.done);
    assert_eq!(
        stored.notified,
        BTreeSet::from([
            "slack:hooks.slack.com/…/T0".to_string(),
            "webhook:hooks.example.com".to_string()
        ])
    );

    let failed = journal.get("order-5").await.unwrap().unwrap();
    assert!(matches!(
        &failed.stage,
        Stage::Failed { job_id: Some(job), reason: FailureReason::Moderation, message }
            if job == "job-5" && message == "the prompt was refused by moderation"
    ));

    // An async submission and its nonce's binding.
    let nonce = "0123456789abcdef0123456789abcdef";
    let submission = journal
        .get(&format!("callback-{nonce}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        submission.request.callback(),
        Some("https://hooks.example.com/callback/0123456789abcdef0123456789abcdef.00")
    );
    assert_eq!(
        journal.callback_nonce_job(nonce).await.unwrap().as_deref(),
        Some("job-6")
    );
    // Single deliveries left to finish, oldest first; batch lines are not among them.
    let open: Vec<String> = journal
        .unfinished()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        open,
        [
            "order-1",
            "order-2",
            "order-3",
            &format!("callback-{nonce}")
        ]
    );

    // Its batch: the same file has the same line ids today, so loading it
    // again reads nothing and pays nothing.
    let lines = [
        GenerateRequest::new("line one"),
        GenerateRequest::new("line two").model("model-pro"),
        GenerateRequest::new("line one"),
    ];
    let mut ids = LineIds::new("prompts.jsonl");
    let line_ids: Vec<String> = lines.iter().map(|l| ids.next(l)).collect();
    assert_eq!(line_ids[1], "b-84c2250ad6994c67d62a7957d44945e2-1");
    let file = ids.file();
    let batch = journal.batch(Some("prompts.jsonl")).await.unwrap().unwrap();
    assert_eq!(batch.lines, 3);
    let report = uncensored_deliver::worker::load(
        &journal,
        &file,
        lines
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, r)| Ok((i as u64 + 1, r))),
    )
    .await
    .unwrap();
    assert_eq!((report.added, report.no_longer_in_file), (0, 0));
    assert_eq!(journal.status("prompts.jsonl").await.unwrap().left, 3);
    for id in &line_ids {
        let line = journal.get(id).await.unwrap().unwrap();
        assert_eq!(line.idempotency_key, format!("dlv-{id}"));
    }

    // Written back by this build, each reads the same.
    for id in ["order-1", "order-4", "order-5"] {
        let entry = journal.get(id).await.unwrap().unwrap();
        journal.put(&entry).await.unwrap();
        assert_eq!(journal.get(id).await.unwrap().unwrap(), entry);
    }
    drop(journal);
    let _ = std::fs::remove_dir_all(dir);
}
