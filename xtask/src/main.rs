//! Project automation, run as `cargo xtask <command>`.
//!
//! - `generate [--check]`: regenerate the low-level client and its limits module from
//!   openapi.yaml, or fail with a diff when the committed code has drifted from it.
//! - `lint-spec`: validate openapi.yaml with an independent validator and
//!   against the code generator's rules.
//! - `release`: record openapi.yaml as the API of the current version of
//!   uncensored-api (the baseline `test` checks the version bump against).
//! - `release-check`: cargo-semver-checks on uncensored-api against its release.
//! - `test`: every check CI runs, in order. This is THE test command.

mod api_diff;
mod api_release;
mod bench;
mod bench_batch;
mod bench_gallery;
mod bench_pace;
mod bench_shared;
mod codegen;
mod conformance;
mod constraints;
mod docs;
mod limits;
mod prism_check;
mod scratch_spec;
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context as _, Result};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  generate [--check]   regenerate crates/uncensored-api/src/{generated,limits}.rs from openapi.yaml
                       (--check: fail with a diff if the committed file is out of date)
                       (prints the API changes since the committed openapi.yaml)
  release              record openapi.yaml as the API of uncensored-api's current version
  release-check [--from-record]
                       cargo-semver-checks: uncensored-api's Rust API against its release
                       (--from-record, or a shallow clone: the release rebuilt from
                       crates/uncensored-api/openapi.released.yaml)
  lint-spec            validate openapi.yaml (openapi-spec-validator, generator rules)
  bench                measure throughput against anchors run alongside; writes BENCHMARKS.md
  bench gallery        only the gallery's first paint (headless Chromium); writes its section
  bench shared         only the shared-batch rows (workers on PostgreSQL, journal cost, SDK CPU)
  bench pace           only the batches at the ceiling (one process; 1, 2, 4 workers), as ratios to the physical limit
  conformance          run schemathesis against the emulator (part of `test`)
  prism-check          run the SDK through Prism's validating proxy (part of `test`)
  scratch-spec         raise limits in a scratch copy of openapi.yaml, regenerate, check that the
                       SDK and the emulator follow (part of `test`)
  test                 run every check: spec, generated code, fmt, clippy, docs, tests, conformance
";

/// Pinned version of the independent OpenAPI validator (PyPI).
const SPEC_VALIDATOR: &str = "openapi-spec-validator==0.8.4";
/// Each library crate with a feature list, for the feature matrix: each
/// crate builds with no features, each feature alone, and all of them. The
/// SDK (`uncensored`) has no features: its callback receiver moved to
/// uncensored-deliver's `callbacks`.
const FEATURE_MATRIX: &[(&str, &[&str])] = &[(
    "uncensored-deliver",
    &[
        "fs",
        "s3",
        "gcs",
        "azure",
        "sqlite",
        "postgres",
        "slack",
        "webhook-notify",
        "discord",
        "email",
        "callbacks",
        "testing",
        "serve",
        "thumbnail",
    ],
)];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let root = workspace_root();
    let outcome = match args.as_slice() {
        ["generate"] => codegen::run(&root, false),
        ["generate", "--check"] => codegen::run(&root, true),
        ["lint-spec"] => lint_spec(&root),
        ["release"] => api_release::release(&root),
        ["release-check"] => api_release::release_check(&root, false),
        ["release-check", "--from-record"] => api_release::release_check(&root, true),
        ["test"] => test(&root),
        ["bench"] => bench::run(&root),
        ["bench", "gallery"] => bench_gallery::run(&root),
        ["bench", "shared"] => bench_shared::run(&root),
        ["bench", "pace"] => bench_pace::run(&root),
        ["conformance"] => conformance::run(&root, &mut cargo(&[])),
        ["prism-check"] => prism_check::run(&root, || cargo(&[])),
        ["scratch-spec"] => scratch_spec::run(&root, cargo),
        ["help" | "--help" | "-h"] => {
            print!("{USAGE}");
            Ok(())
        }
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn lint_spec(root: &Path) -> Result<()> {
    let spec = codegen::load_spec(&root.join(codegen::SPEC))?;
    codegen::lint_for_progenitor(&spec)?;
    let venv = tools::python_venv(root, "spec-validator", &[SPEC_VALIDATOR])?;
    tools::run(Command::new(venv.join("bin/openapi-spec-validator")).arg(root.join(codegen::SPEC)))
        .context("openapi.yaml is not a valid OpenAPI 3.0 document")
}

/// A command of the test run: a name for the log and what to execute.
struct Step {
    name: String,
    command: Command,
}

fn cargo(args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args);
    command
}

fn test(root: &Path) -> Result<()> {
    let started = Instant::now();
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0");

    section("spec: openapi-spec-validator and generator rules");
    lint_spec(root)?;
    section("generated code matches openapi.yaml");
    codegen::run(root, true)?;
    section("a limit changed in a scratch copy of openapi.yaml reaches the SDK and the emulator");
    scratch_spec::run(root, cargo)?;
    section("uncensored-api's version carries the bump the API changes need");
    api_release::check(root)?;

    let mut doc = cargo(&["doc", "--workspace", "--no-deps", "--all-features"]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    let mut tests = cargo(&["test", "--workspace", "--all-features", "--no-fail-fast"]);
    // Under CI a missing or changed snapshot fails instead of being written.
    tests.env("INSTA_UPDATE", if ci { "no" } else { "new" });
    tests.env_remove("INSTA_FORCE_PASS");
    // The bounded fuzz run: the property tests over every parser of network
    // and user input (crates/*/tests/parsers.rs) draw this many cases each.
    tests.env("UNCENSORED_FUZZ_CASES", "4000");
    // The storage, SMTP and PostgreSQL servers that crates/uncensored-test-servers starts.
    section(
        "tools for the tests: moto (S3), Azurite (Azure Blob), gcp-storage-emulator (GCS), aiosmtpd (SMTP), PostgreSQL, mcp and @modelcontextprotocol/sdk (MCP clients)",
    );
    let moto = tools::python_venv(root, "moto", &[tools::MOTO])?;
    tests.env("UNCENSORED_MOTO_SERVER", moto.join("bin/moto_server"));
    tests.env("UNCENSORED_AZURITE", tools::ensure_azurite(root)?);
    let gcs = tools::python_venv(root, "gcs", &[tools::GCS_EMULATOR])?;
    tests.env(
        "UNCENSORED_GCS_EMULATOR",
        gcs.join("bin/gcp-storage-emulator"),
    );
    let smtp = tools::python_venv(root, "smtp", &[tools::AIOSMTPD])?;
    tests.env("UNCENSORED_AIOSMTPD", smtp.join("bin/python"));
    tests.env("UNCENSORED_POSTGRES_BIN", tools::ensure_postgres()?);
    let mcp = tools::python_venv(root, "mcp", &[tools::MCP])?;
    tests.env("UNCENSORED_MCP_PYTHON", mcp.join("bin/python"));
    tests.env("UNCENSORED_MCP_TS_SDK", tools::ensure_mcp_ts(root)?);
    section("tools for the browser tests: Chromium (Debian) and playwright-core (npm)");
    tests.env("UNCENSORED_CHROMIUM", tools::ensure_chromium()?);
    tests.env("UNCENSORED_PLAYWRIGHT", tools::ensure_playwright(root)?);

    let steps = [
        Step {
            name: "cargo fmt --check".into(),
            command: cargo(&["fmt", "--all", "--", "--check"]),
        },
        Step {
            name: "uncensored-api builds on its own".into(),
            command: cargo(&["build", "--package", "uncensored-api"]),
        },
        Step {
            name: "cargo package: every library crate is publishable".into(),
            command: cargo(&[
                "package",
                "--quiet",
                "--no-verify",
                "--allow-dirty",
                "--package",
                "uncensored-api",
                "--package",
                "uncensored",
                "--package",
                "uncensored-emulator",
                "--package",
                "uncensored-deliver",
                "--package",
                "uncensored-mcp",
                "--package",
                "uncensored-gallery",
            ]),
        },
        Step {
            name: "clippy -D warnings".into(),
            command: cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ]),
        },
        Step {
            name: "rustdoc -D warnings".into(),
            command: doc,
        },
    ];
    let mut steps: Vec<Step> = steps.into_iter().collect();
    for (package, features) in FEATURE_MATRIX {
        let all = features.join(",");
        let sets = std::iter::once(None)
            .chain(features.iter().map(|f| Some(f.to_string())))
            .chain(std::iter::once(Some(all)));
        for set in sets {
            let mut args = vec![
                "check".to_string(),
                "--quiet".into(),
                "--package".into(),
                package.to_string(),
                "--no-default-features".into(),
            ];
            if let Some(list) = &set {
                args.extend(["--features".into(), list.clone()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            steps.push(Step {
                name: format!(
                    "feature matrix: {package} with {}",
                    set.as_deref().unwrap_or("no features")
                ),
                command: cargo(&args),
            });
        }
    }
    for Step { name, mut command } in steps {
        section(&name);
        command.current_dir(root);
        tools::run(&mut command).with_context(|| format!("step `{name}` failed"))?;
    }
    section("the SDK's default build holds no database and no cloud storage");
    sdk_stays_small(root)?;
    section("tests (unit, integration, snapshots, doctests)");
    let counts = tools::run_tests(tests.current_dir(root)).context("step `tests` failed")?;
    for example in ["store", "notify", "callbacks"] {
        section(&format!("uncensored-deliver's example `{example}` runs"));
        tools::run(
            cargo(&[
                "run",
                "--quiet",
                "--package",
                "uncensored-deliver",
                "--all-features",
                "--example",
                example,
            ])
            .current_dir(root),
        )
        .with_context(|| format!("step `example {example}` failed"))?;
    }
    section("conformance: schemathesis against the emulator");
    conformance::run(root, cargo(&[]).current_dir(root)).context("step `conformance` failed")?;
    section("the SDK through Prism's validating proxy");
    prism_check::run(root, || {
        let mut command = cargo(&[]);
        command.current_dir(root);
        command
    })
    .context("step `prism proxy` failed")?;
    println!(
        "\nxtask test: all checks passed in {:.0?}",
        started.elapsed()
    );
    // The closing line CI reads.
    println!(
        "tests: {} passed, {} failed, {} skipped",
        counts.passed, counts.failed, counts.ignored
    );
    Ok(())
}

/// `cargo tree` of the SDK with its default features must name no SQLite
/// and no object_store: those belong to `uncensored-deliver`.
fn sdk_stays_small(root: &Path) -> Result<()> {
    let output = cargo(&[
        "tree",
        "--package",
        "uncensored",
        "--edges",
        "normal,build",
        "--prefix",
        "none",
    ])
    .current_dir(root)
    .output()
    .context("cannot run cargo tree")?;
    anyhow::ensure!(output.status.success(), "cargo tree failed");
    let tree = String::from_utf8_lossy(&output.stdout);
    let unwanted: Vec<&str> = tree
        .lines()
        .filter(|line| {
            ["rusqlite ", "libsqlite3-sys ", "object_store "]
                .iter()
                .any(|name| line.starts_with(name))
        })
        .collect();
    anyhow::ensure!(
        unwanted.is_empty(),
        "the SDK's default build pulls in {unwanted:?}; they belong to uncensored-deliver"
    );
    println!("cargo tree -p uncensored: no rusqlite, libsqlite3-sys or object_store");
    Ok(())
}

fn section(name: &str) {
    println!("\n==> {name}");
}
