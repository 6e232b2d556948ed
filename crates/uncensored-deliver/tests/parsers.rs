//! Property tests over the plugin crate's parsers of user input: object
//! names (which must never leave the store), storage and journal locations,
//! notifier URLs (whose secrets must never be printed). Part of the bounded
//! fuzz run of `cargo xtask test` (`UNCENSORED_FUZZ_CASES`).

use proptest::prelude::*;
use uncensored_deliver::journal::JournalLocation;
use uncensored_deliver::notify::NotifierUrl;
use uncensored_deliver::storage::{ObjectName, StorageUrl};

fn config() -> ProptestConfig {
    let cases = std::env::var("UNCENSORED_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Path-ish text: segments, dots, slashes, backslashes, control characters.
fn path_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "([a-z0-9]{0,4}|\\.|\\.\\.|%2e|%2f)(/([a-z0-9]{0,4}|\\.|\\.\\.|%2e|%2f)){0,5}",
        "[ -~]{0,60}",
        "\\PC{0,30}",
        "[\\x00-\\x1f/\\\\.a]{0,20}",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn object_names_never_leave_the_store(name in path_text()) {
        if let Ok(parsed) = ObjectName::parse(&name) {
            let text = parsed.as_str();
            prop_assert!(!text.is_empty());
            prop_assert!(!text.starts_with('/'));
            prop_assert!(!text.contains('\\'));
            prop_assert!(!text.chars().any(char::is_control));
            prop_assert!(text.split('/').all(|segment| !segment.is_empty() && segment != "." && segment != ".."));
        }
    }

    #[test]
    fn storage_urls_parse_or_fail_typed(text in prop_oneof![
        "(s3|gs|az|file|memory|ftp)://[ -~]{0,40}",
        "[ -~]{0,60}",
    ]) {
        let _ = StorageUrl::parse(&text);
    }

    #[test]
    fn journal_locations_never_show_a_password(
        user in "[a-z]{1,8}",
        password in "[A-Za-z0-9]{12,20}",
        rest in "[ -~]{0,40}",
    ) {
        let url = format!("postgres://{user}:{password}@db.example.com/{rest}");
        let location: JournalLocation = url.parse().unwrap();
        prop_assert!(!location.to_string().contains(&password));
        let shown = format!("{location:?}");
        prop_assert!(!shown.contains(&password));
    }

    #[test]
    fn notifier_urls_are_redacted_whatever_they_hold(
        kind in "(slack|discord|webhook|email|smtp|x)",
        secret in "[A-Za-z0-9]{24,32}",
        rest in "[ -~]{0,30}",
    ) {
        let text = format!("{kind}:https://hooks.example.com/services/{secret}{rest}");
        prop_assert!(!NotifierUrl::redacted(&text).contains(&secret));
        let parsed = NotifierUrl::new(text);
        let shown = format!("{parsed:?}");
        prop_assert!(!shown.contains(&secret));
    }
}
