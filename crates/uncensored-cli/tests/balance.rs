//! `uncensored balance`: the SDK's balance printed in USD, or in nanos with
//! `--json`; a key without `billing:read` exits with the scope code and never
//! shows the key.

mod support;
use support::uncensored;

use uncensored_emulator::{Config, Emulator, KeyConfig};

const IMAGE_ONLY_KEY: &str = "sk-image-only-cli-0123456789";

#[test]
fn balance_prints_usd_for_people() {
    let output = uncensored()
        .args(["--emulator", "balance"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(
        lines,
        [
            "balance        $100.00",
            "held           $0.00",
            "available      $100.00",
            "daily spend    $0.00",
            "monthly spend  $0.00",
        ]
    );
}

#[test]
fn balance_json_is_in_nanos() {
    let output = uncensored()
        .args(["--emulator", "--json", "balance"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let nanos = 100_000 * i64::try_from(Config::default().nanos_per_credit).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "balance_nanos": nanos,
            "held_nanos": 0,
            "available_nanos": nanos,
            "daily_spend_nanos": 0,
            "monthly_spend_nanos": 0,
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_without_billing_read_exits_with_the_scope_code() {
    let mut config = Config::default();
    config.keys.push(KeyConfig {
        key: IMAGE_ONLY_KEY.into(),
        name: "images-only".into(),
        scopes: vec!["image:*".into()],
        balance: 10,
        rate_limit_rpm: None,
    });
    let emulator = Emulator::start(config).await.unwrap();
    for json in [false, true] {
        let mut command = uncensored();
        command.args([
            "--base-url",
            emulator.base_url(),
            "--api-key",
            IMAGE_ONLY_KEY,
        ]);
        if json {
            command.arg("--json");
        }
        command.arg("balance");
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(3), "authentication or scope");
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(shown.contains("billing:read"), "{shown}");
        assert!(!shown.contains(IMAGE_ONLY_KEY), "the key leaked: {shown}");
    }
}
