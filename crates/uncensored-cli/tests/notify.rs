//! `--notify URL` end to end: every destination told once (two Slack
//! webhooks are two notifiers), email through a real SMTP server on
//! loopback, and notification mistakes refused before anything is paid.

use assert_cmd::Command;
use uncensored_emulator::{Config, Emulator, EmulatorHandle};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn uncensored(emulator: &EmulatorHandle, dir: &std::path::Path) -> Command {
    let mut command = Command::cargo_bin("uncensored").unwrap();
    for (var, _) in std::env::vars() {
        if var.starts_with("UNCENSORED_") {
            command.env_remove(var);
        }
    }
    command
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", "/nonexistent-config-dir")
        .env("UNCENSORED_BASE_URL", emulator.base_url())
        .env("UNCENSORED_API_KEY", "emulator-key");
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

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "uncensored-cli-notify-{tag}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn run(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

async fn capture() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_slack_webhooks_are_both_told() {
    let emulator = emulator().await;
    let (a, b) = (capture().await, capture().await);
    let dir = temp_dir("two");
    let mut command = uncensored(&emulator, &dir);
    command
        .args([
            "generate",
            "a lighthouse at dusk",
            "--width",
            "256",
            "--height",
            "256",
        ])
        .args([
            "--notify",
            &format!("slack:{}/services/T/A/secretA", a.uri()),
        ])
        .args([
            "--notify",
            &format!("slack:{}/services/T/B/secretB", b.uri()),
        ]);
    let output = run(command).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        a.received_requests().await.unwrap().len(),
        1,
        "channel A told once"
    );
    assert_eq!(
        b.received_requests().await.unwrap().len(),
        1,
        "channel B told once"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_through_a_real_smtp_server() {
    let Some(smtp) = uncensored_test_servers::smtp() else {
        return;
    };
    let emulator = emulator().await;
    let dir = temp_dir("email");
    let url = format!(
        "mailto://{}:{}@{}?to=team@example.com&from=images@example.com&tls=none",
        uncensored_test_servers::SMTP_USER,
        uncensored_test_servers::SMTP_PASSWORD,
        smtp.address()
    );
    let mut command = uncensored(&emulator, &dir);
    command
        .args([
            "generate",
            "a harbour at noon",
            "--width",
            "256",
            "--height",
            "256",
        ])
        .args(["--notify", &url]);
    let output = run(command).await;
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{stderr}");
    let messages = smtp.wait_for_messages(1);
    assert_eq!(messages[0].rcpt_tos, ["team@example.com"]);
    let text = messages[0]
        .part("text/plain")
        .expect("a plain-text part")
        .text();
    assert!(text.contains("a harbour at noon"), "{text}");
    assert!(!stderr.contains(uncensored_test_servers::SMTP_PASSWORD));
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_mistakes_are_named_before_anything_is_paid() {
    let emulator = emulator().await;
    let dir = temp_dir("bad");
    let mut cases = vec![
        ("teams://XXXXsecret/x".to_string(), "unknown kind"),
        (
            "slack://two/XXXXsecret".into(),
            "slack://TOKEN_A/TOKEN_B/TOKEN_C",
        ),
        (
            "json://hooks.example.com/x".into(),
            "UNCENSORED_WEBHOOK_SECRET",
        ),
        (
            "discord://XXXXsecret".into(),
            "discord://WEBHOOK_ID/WEBHOOK_TOKEN",
        ),
        (
            "mailto://me:XXXXsecret@smtp.example.com?to=a@example.com&from=b@example.com&tls=none"
                .into(),
            "tls",
        ),
    ];
    let smtp = uncensored_test_servers::smtp();
    if let Some(smtp) = &smtp {
        cases.push((
            format!(
                "mailto://{}:XXXXsecret@{}?to=a@example.com&from=b@example.com&tls=none",
                uncensored_test_servers::SMTP_USER,
                smtp.address()
            ),
            "password",
        ));
    }
    for (url, wanted) in cases {
        let mut command = uncensored(&emulator, &dir);
        command.args(["generate", "a lighthouse", "--notify", &url]);
        let output = run(command).await;
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert_eq!(output.status.code(), Some(6), "{url}: {stderr}");
        assert!(
            stderr.contains("--notify") && stderr.to_lowercase().contains(&wanted.to_lowercase()),
            "{url}: {stderr}"
        );
        assert!(!stderr.contains("XXXXsecret"), "{url}: {stderr}");
    }
    assert_eq!(
        emulator.stats().charges.total,
        0,
        "a notification mistake is found before any image is paid for"
    );
    std::fs::remove_dir_all(dir).ok();
}
