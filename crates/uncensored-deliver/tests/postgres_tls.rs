//! The PostgreSQL journal and pacer over TLS, against a real PostgreSQL
//! that accepts TCP connections over TLS only
//! (`uncensored_test_servers::postgres_tls`, certificates made with
//! `openssl`): `sslmode` and `sslrootcert` as libpq reads them, a
//! certificate of another CA or for another name refused, plaintext refused
//! by the server, `prefer` falling back to plaintext on a server without
//! TLS, and no password in any error.
//!
//! The TLS tests share one server (started by the first, stopped when the
//! last running one ends), each on a fresh database of its own.

#![cfg(feature = "postgres")]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::Utc;
use uncensored::{GenerateRequest, Pace as _, RateLimit};
use uncensored_deliver::PostgresPacer;
use uncensored_deliver::journal::{
    Batches as _, Entries as _, Entry, JournalError, PostgresJournal, Stage,
};
use uncensored_test_servers::Postgres;

const PASSWORD: &str = "tls-Secret-Pa55word";

/// The TLS-only server the running tests share, started when none is running.
fn server() -> Option<Arc<Postgres>> {
    static SHARED: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(server) = shared.upgrade() {
        return Some(server);
    }
    let server = Arc::new(uncensored_test_servers::postgres_tls()?);
    *shared = Arc::downgrade(&server);
    Some(server)
}

/// A fresh database owned by a role of its own that logs in with
/// [`PASSWORD`] (SCRAM, over TLS); its URL, without options.
fn database(server: &Postgres, test: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("{test}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    server.create_database(&name);
    let role = format!("{name}_worker");
    let url = server.with_password(&role, PASSWORD);
    server.execute(
        "postgres",
        &format!("ALTER DATABASE {name} OWNER TO {role}"),
    );
    url.replace("/postgres", &format!("/{name}"))
}

/// `url` with these options.
fn with(url: &str, options: &str) -> String {
    format!("{url}?{options}")
}

fn root(path: &Path) -> String {
    format!("sslrootcert={}", path.display())
}

/// `url` with these options, connecting to 127.0.0.1 while naming the host
/// `name` (libpq's `hostaddr`): what the TLS handshake checks the
/// certificate against.
fn named(url: &str, name: &str, options: &str) -> String {
    url.replace("@127.0.0.1:", &format!("@{name}:")) + "?hostaddr=127.0.0.1&" + options
}

/// The journal connects; it migrates, writes and claims.
async fn works(url: &str) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let id = format!("line-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let journal = PostgresJournal::connect(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: cannot connect: {e}"));
    let shown = format!("{journal:?}");
    assert!(
        shown.contains("sslmode=") && !shown.contains(PASSWORD),
        "{shown}"
    );
    let entry = Entry {
        id: id.clone(),
        request: GenerateRequest::new("a prompt over TLS").size(256, 256),
        idempotency_key: format!("key-{id}"),
        stage: Stage::Pending,
        notified: Default::default(),
        done: false,
        updated_at: Utc::now(),
    };
    assert!(journal.insert(&entry).await.unwrap());
    let claimed = journal
        .claim_entry(&id, &format!("worker-{id}"), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        claimed.map(|claim| claim.entry.id),
        Some(id.clone()),
        "{url}"
    );
}

/// The error of connecting to `url`, which must fail; never with the password.
async fn refused(url: &str) -> (JournalError, String) {
    let error = PostgresJournal::connect(url)
        .await
        .err()
        .unwrap_or_else(|| panic!("{url} connected"));
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(PASSWORD), "{shown}");
    (error, shown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_the_right_ca_migrates_writes_and_claims() {
    let Some(server) = server() else { return };
    let ca = &server.certificates().unwrap().ca;
    let url = database(&server, "full");
    let tls = with(&url, &format!("sslmode=verify-full&{}", root(ca)));
    works(&tls).await;
    // The pacer uses the journal's pool, connected the same way.
    let journal = PostgresJournal::connect(&tls).await.unwrap();
    let pacer = PostgresPacer::new(&journal, "key-id");
    pacer.acquire().await;
    pacer
        .observe(&RateLimit {
            limit: 10,
            remaining: 9,
            reset: Utc::now() + chrono::Duration::seconds(60),
        })
        .await;
    pacer.acquire().await;
    // By the certificate's other name, too.
    works(&named(
        &url,
        "localhost",
        &format!("sslmode=verify-full&{}", root(ca)),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_ca_checks_the_chain_and_verify_full_the_name_too() {
    let Some(server) = server() else { return };
    let ca = &server.certificates().unwrap().ca;
    let url = database(&server, "ca");
    let name = "journal.not-in-the-certificate.test";
    works(&named(
        &url,
        name,
        &format!("sslmode=verify-ca&{}", root(ca)),
    ))
    .await;
    let (error, shown) = refused(&named(
        &url,
        name,
        &format!("sslmode=verify-full&{}", root(ca)),
    ))
    .await;
    assert!(
        matches!(error, JournalError::Backend(_)),
        "not retried: {shown}"
    );
    assert!(
        shown.contains("does not name the host connected to")
            && shown.contains("journal.not-in-the-certificate.test"),
        "{shown}"
    );
    assert!(shown.contains("sslmode=verify-full"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_another_ca_is_refused() {
    let Some(server) = server() else { return };
    let other = &server.certificates().unwrap().other_ca;
    let url = database(&server, "other");
    // require with a root certificate file checks the chain, as libpq does.
    for mode in ["verify-full", "verify-ca", "require"] {
        let tls = with(&url, &format!("sslmode={mode}&{}", root(other)));
        let (error, shown) = refused(&tls).await;
        assert!(
            matches!(error, JournalError::Backend(_)),
            "not retried: {shown}"
        );
        assert!(
            shown.contains("not signed by a trusted root certificate"),
            "{mode}: {shown}"
        );
        assert!(shown.contains(&other.display().to_string()), "{shown}");
    }
    // prefer falls back to plaintext when the handshake fails, as libpq
    // does: this server refuses that.
    let (_, shown) = refused(&with(&url, &format!("sslmode=prefer&{}", root(other)))).await;
    assert!(shown.contains("no encryption"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_refused_and_require_encrypts_unchecked() {
    let Some(server) = server() else { return };
    let url = database(&server, "modes");
    let (error, shown) = refused(&with(&url, "sslmode=disable")).await;
    assert!(matches!(error, JournalError::Backend(_)), "{shown}");
    assert!(
        shown.contains("no pg_hba.conf entry") && shown.contains("no encryption"),
        "the server's own message: {shown}"
    );
    assert!(shown.contains("sslmode=disable"), "{shown}");
    // Encrypted, the server unchecked (no root certificates given).
    works(&with(&url, "sslmode=require")).await;
    // allow: plaintext first, TLS when the server refuses it.
    works(&with(&url, "sslmode=allow")).await;
    // The default, prefer.
    works(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_falls_back_to_plaintext_without_tls() {
    let Some(server) = uncensored_test_servers::postgres() else {
        return;
    };
    let url = server.create_database("plain");
    works(&with(&url, "sslmode=prefer")).await;
    let (error, shown) = refused(&with(&url, "sslmode=require")).await;
    assert!(shown.contains("server does not support TLS"), "{error}");
}

#[tokio::test]
async fn mistakes_are_refused_before_connecting() {
    // Nothing listens there: a connection would be `Unavailable`.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:{port}/journal");
    let cases = [
        (
            "sslmode=verify_full",
            "`verify_full` is not one of disable, allow, prefer",
        ),
        (
            "sslmode=verify-full&sslrootcert=/nonexistent/ca.crt",
            "sslrootcert /nonexistent/ca.crt: cannot read it",
        ),
        ("sslmode=verify-ca&sslrootcert=", "needs root certificates"),
        (
            "sslmode=require&sslrootcert=system",
            "needs sslmode=verify-full",
        ),
        ("sslcert=client.crt", "unknown option"),
    ];
    for (options, expected) in cases {
        let (error, shown) = refused(&with(&url, options)).await;
        assert!(
            matches!(error, JournalError::Location(_)),
            "{options}: {shown}"
        );
        assert!(
            shown.contains(expected),
            "{options}: {expected:?} in {shown}"
        );
    }
}
