//! `batch --max-spend` and `batch --estimate` against the emulator, read
//! back from its ledger: several workers sharing one batch (PostgreSQL, and
//! two local processes on SQLite) never spend more than the budget and fall
//! short of it by less than one line's price; a rerun with a larger budget
//! continues; an estimate pays nothing and equals what the batch then pays.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use uncensored::{Client, GenerateRequest, Money};
use uncensored_emulator::{Config, Emulator, EmulatorHandle};

fn temp_dir(tag: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("uncensored-cli-spend-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn emulator() -> EmulatorHandle {
    Emulator::start(Config {
        time_scale: 0.002,
        rate_limit_rpm: 1_000_000,
        seed: 5,
        ..Config::default()
    })
    .await
    .unwrap()
}

fn client(emulator: &EmulatorHandle) -> Client {
    Client::builder()
        .base_url(emulator.base_url())
        .api_key("emulator-key")
        .build()
        .unwrap()
}

/// What the account has spent, from the emulator's documented balance.
async fn spent(emulator: &EmulatorHandle) -> Money {
    let balance = client(emulator).balance().await.unwrap();
    assert_eq!(balance.held, Money::ZERO, "no job is pending");
    balance.daily_spend
}

/// One line's price (every line of these files has the default shape).
async fn line_price(emulator: &EmulatorHandle) -> Money {
    let request = GenerateRequest::new("p").size(256, 256);
    client(emulator).estimate(&request).await.unwrap().cost
}

/// `uncensored --json batch FILE --out DIR/images …` as a child process.
fn batch(emulator: &EmulatorHandle, dir: &Path, file: &Path, extra: &[&str]) -> Child {
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("uncensored"));
    for (var, _) in std::env::vars() {
        if var.starts_with("UNCENSORED_") {
            command.env_remove(var);
        }
    }
    command
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", "/nonexistent-config-dir")
        .args([
            "--base-url",
            emulator.base_url(),
            "--api-key",
            "emulator-key",
            "--json",
        ])
        .args(["batch", file.to_str().unwrap()])
        .args(["--out", dir.join("images").to_str().unwrap()])
        .args(["--width", "256", "--height", "256"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A finished run: its exit code, the JSON objects it printed, its stderr.
struct Run {
    code: Option<i32>,
    printed: Vec<serde_json::Value>,
    stderr: String,
}

impl Run {
    /// The first object printed (the summary, or the estimate).
    fn summary(&self) -> &serde_json::Value {
        self.printed
            .first()
            .unwrap_or_else(|| panic!("{}", self.stderr))
    }
}

async fn finish(child: Child) -> Run {
    tokio::task::spawn_blocking(move || {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        Run {
            code: output.status.code(),
            printed: stdout
                .lines()
                .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
                .collect(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

fn prompts(dir: &Path, lines: usize) -> PathBuf {
    let file = dir.join("prompts.txt");
    let text: String = (0..lines).map(|i| format!("budget prompt {i}\n")).collect();
    std::fs::write(&file, text).unwrap();
    file
}

fn nanos(value: &serde_json::Value) -> Money {
    Money::from_nanos(value.as_i64().unwrap_or_else(|| panic!("nanos: {value}")))
}

/// Runs `workers` workers of one batch of 40 lines with a budget of ten and
/// a half lines, then one with a budget for all of it.
async fn workers_share_a_budget(
    emulator: &EmulatorHandle,
    dir: &Path,
    workers: usize,
    journal: &[&str],
) {
    const LINES: usize = 40;
    let file = prompts(dir, LINES);
    let price = line_price(emulator).await;
    assert!(price > Money::ZERO);
    let budget = price
        .checked_mul(10)
        .unwrap()
        .checked_add(Money::from_nanos(price.nanos() / 2))
        .unwrap();
    let budget_text = budget.to_string().trim_start_matches('$').to_string();
    let mut extra = vec!["--concurrency", "4", "--max-spend", &budget_text];
    extra.extend_from_slice(journal);
    let children: Vec<Child> = (0..workers)
        .map(|_| batch(emulator, dir, &file, &extra))
        .collect();
    let mut runs = Vec::new();
    for child in children {
        runs.push(finish(child).await);
    }
    let paid = spent(emulator).await;
    assert!(paid <= budget, "spent {paid} of a budget of {budget}");
    assert!(
        budget.saturating_sub(paid) < price,
        "spent {paid} of {budget}: short of it by a line's price ({price}) or more"
    );
    assert_eq!(
        emulator.stats().charges.total,
        u64::try_from(paid.nanos() / price.nanos()).unwrap(),
        "each line paid once"
    );
    for run in &runs {
        assert_eq!(
            run.code,
            Some(13),
            "the budget's exit code: {:?} {}",
            run.printed,
            run.stderr
        );
        let error = &run.printed.last().unwrap()["error"];
        assert_eq!(error["kind"], "budget_reached", "{error}");
        assert!(
            error["hint"].as_str().unwrap().contains("--max-spend"),
            "{error}"
        );
    }
    // The last worker to end saw the whole batch's spend.
    let summaries: Vec<Money> = runs
        .iter()
        .map(|r| nanos(&r.summary()["spent_nanos"]))
        .collect();
    assert!(summaries.contains(&paid), "{summaries:?} against {paid}");
    assert!(summaries.iter().all(|s| *s <= paid));
    let done = runs[0].summary()["batch"]["done"].as_u64().unwrap();
    assert!(done <= 10);

    // A rerun with a larger budget continues, and pays only the rest.
    let mut extra = vec!["--max-spend", "1"];
    extra.extend_from_slice(journal);
    let rerun = finish(batch(emulator, dir, &file, &extra)).await;
    assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
    let summary = rerun.summary();
    assert_eq!(summary["batch"]["done"], LINES as u64, "{summary}");
    let total = price.checked_mul(LINES as u64).unwrap();
    assert_eq!(spent(emulator).await, total, "every line paid once");
    assert_eq!(nanos(&summary["spent_nanos"]), total, "{summary}");
    assert_eq!(nanos(&summary["reserved_nanos"]), Money::ZERO, "{summary}");
    assert_eq!(nanos(&summary["budget_nanos"]), Money::from_usd(1).unwrap());

    // `batch status` tells the same spend, from the journal alone.
    let location = match journal {
        ["--journal", location, ..] => location.to_string(),
        _ => dir
            .join("images/.uncensored/journal.sqlite")
            .display()
            .to_string(),
    };
    let output = std::process::Command::new(assert_cmd::cargo::cargo_bin("uncensored"))
        .env("XDG_CONFIG_HOME", "/nonexistent-config-dir")
        .args(["--json", "batch", "status", "--journal", &location])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(nanos(&status["spent_nanos"]), total, "{status}");
    assert_eq!(nanos(&status["reserved_nanos"]), Money::ZERO, "{status}");
    assert_eq!(nanos(&status["budget_nanos"]), Money::from_usd(1).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shared_workers_never_pass_the_budget() {
    let Some(pg) = uncensored_test_servers::postgres() else {
        return;
    };
    let journal = pg.create_database("budget");
    let emulator = emulator().await;
    let dir = temp_dir("postgres");
    workers_share_a_budget(&emulator, &dir, 3, &["--journal", &journal, "--lease", "5"]).await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_local_workers_never_pass_the_budget() {
    let emulator = emulator().await;
    let dir = temp_dir("sqlite");
    workers_share_a_budget(&emulator, &dir, 2, &[]).await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_estimate_pays_nothing_and_is_what_the_batch_pays() {
    let emulator = emulator().await;
    let dir = temp_dir("estimate");
    let file = dir.join("mixed.jsonl");
    let mut text = String::new();
    for i in 0..6 {
        text.push_str(&format!("{{\"prompt\": \"plain {i}\"}}\n"));
    }
    for i in 0..3 {
        text.push_str(&format!(
            "{{\"prompt\": \"pro {i}\", \"model\": \"model-pro\"}}\n"
        ));
        text.push_str(&format!(
            "{{\"prompt\": \"flex {i}\", \"model\": \"model-flex\", \"quality\": \"high\"}}\n"
        ));
    }
    std::fs::write(&file, text).unwrap();
    let journal_file = dir.join("images/.uncensored/journal.sqlite");

    let first = finish(batch(&emulator, &dir, &file, &["--estimate"])).await;
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let estimate = first.summary().clone();
    assert_eq!(estimate["lines"], 12, "{estimate}");
    assert_eq!(estimate["pending"], 12, "{estimate}");
    assert_eq!(
        estimate["shapes"].as_array().unwrap().len(),
        3,
        "{estimate}"
    );
    assert_eq!(
        estimate["estimate_calls"], 3,
        "one estimate per shape, not per line"
    );
    assert!(
        estimate["method"]
            .as_str()
            .unwrap()
            .contains("per distinct request shape"),
        "{estimate}"
    );
    let cost = nanos(&estimate["cost_nanos"]);
    let mut expected = Money::ZERO;
    for (request, count) in [
        (GenerateRequest::new("a"), 6),
        (GenerateRequest::new("b").model("model-pro"), 3),
        (
            GenerateRequest::new("c")
                .model("model-flex")
                .quality("high"),
            3,
        ),
    ] {
        let one = client(&emulator)
            .estimate(&request.size(256, 256))
            .await
            .unwrap()
            .cost;
        expected = expected
            .checked_add(one.checked_mul(count).unwrap())
            .unwrap();
    }
    assert_eq!(cost, expected);
    assert_eq!(
        spent(&emulator).await,
        Money::ZERO,
        "an estimate pays nothing"
    );
    assert_eq!(emulator.stats().charges.total, 0, "no line submitted");
    assert!(!journal_file.exists(), "an estimate writes no journal");

    // People read USD and how it was computed.
    let mut people = std::process::Command::new(assert_cmd::cargo::cargo_bin("uncensored"));
    people
        .env("XDG_CONFIG_HOME", "/nonexistent-config-dir")
        .args([
            "--base-url",
            emulator.base_url(),
            "--api-key",
            "emulator-key",
        ])
        .args(["batch", file.to_str().unwrap(), "--estimate"])
        .args(["--out", dir.join("images").to_str().unwrap()])
        .args(["--width", "256", "--height", "256"]);
    let output = tokio::task::spawn_blocking(move || people.output().unwrap())
        .await
        .unwrap();
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        shown.starts_with(&format!("12 of 12 lines not yet done: {cost}")),
        "{shown}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("nothing was sent or paid"));

    // Part of it runs (a budget stops it); the estimate is then of the rest.
    let part = finish(batch(
        &emulator,
        &dir,
        &file,
        &["--max-spend", "0.008", "--concurrency", "1"],
    ))
    .await;
    assert_eq!(part.code, Some(13), "{}", part.stderr);
    let paid = spent(&emulator).await;
    assert!(paid > Money::ZERO && paid <= Money::parse_usd("0.008").unwrap());
    let rest = finish(batch(&emulator, &dir, &file, &["--estimate"])).await;
    let rest = rest.summary();
    assert_eq!(
        nanos(&rest["cost_nanos"]),
        cost.checked_sub(paid).unwrap(),
        "the lines done are not counted: {rest}"
    );
    assert!(rest["done"].as_u64().unwrap() > 0, "{rest}");

    // The budget stays with the batch: a rerun without --max-spend stops too.
    let kept = finish(batch(&emulator, &dir, &file, &["--concurrency", "1"])).await;
    assert_eq!(kept.code, Some(13), "{}", kept.stderr);
    assert_eq!(spent(&emulator).await, paid, "nothing more paid");

    let all = finish(batch(&emulator, &dir, &file, &["--max-spend", "5"])).await;
    assert_eq!(all.code, Some(0), "{}", all.stderr);
    assert_eq!(
        spent(&emulator).await,
        cost,
        "the estimate is what the batch paid"
    );
    assert_eq!(nanos(&all.summary()["spent_nanos"]), cost);
    std::fs::remove_dir_all(dir).ok();
}
