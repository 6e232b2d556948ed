//! The version of `uncensored-api` against the API changes since its release.
//!
//! - `cargo xtask generate` prints what changed since the committed
//!   openapi.yaml (`git show HEAD:openapi.yaml`; skipped without git).
//! - `cargo xtask test` compares openapi.yaml with the record of the last
//!   release, [`RELEASED_SPEC`] and its version in [`RELEASE_STAMP`] (both
//!   committed, so a shallow clone has them), and fails when the crate's
//!   version does not carry the bump the changes need.
//! - `cargo xtask release` writes that record for the current version.
//! - `cargo xtask release-check [--from-record]` runs cargo-semver-checks on
//!   the crate's Rust API against the git revision that wrote the record, or
//!   against the release rebuilt from the record (see [`release_check`]).

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use openapiv3::OpenAPI;

use crate::api_diff::{self, Report, Version};
use crate::codegen;

/// The spec as of the last release, relative to the workspace root.
pub const RELEASED_SPEC: &str = "crates/uncensored-api/openapi.released.yaml";
/// The version that spec was released as.
pub const RELEASE_STAMP: &str = "crates/uncensored-api/release.toml";
const CRATE_MANIFEST: &str = "crates/uncensored-api/Cargo.toml";
const HOW_TO_RELEASE: &str = "\
To release: set the version of uncensored-api (it inherits `[workspace.package] version` of the \
root Cargo.toml; update the `uncensored-api = { path, version }` line of `[workspace.dependencies]` \
to match), run `cargo xtask release` to record openapi.yaml as the new baseline, and commit both.";

/// Prints what changed since the committed openapi.yaml (when there is one)
/// and the version the changes since the recorded release need.
pub fn print_since_head(root: &Path, spec: &OpenAPI) {
    print_changes_since_head(root, spec);
    print_bump(root, spec);
}

fn print_changes_since_head(root: &Path, spec: &OpenAPI) {
    let output = Command::new("git")
        .args(["show", &format!("HEAD:{}", codegen::SPEC)])
        .current_dir(root)
        .output();
    let text = match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => {
            println!(
                "no committed {} to compare with: change report skipped",
                codegen::SPEC
            );
            return;
        }
    };
    match codegen::parse_spec(&text) {
        Ok(committed) => {
            let report = api_diff::compare(&committed, spec);
            print!(
                "API changes since the committed {}: {}",
                codegen::SPEC,
                report.render()
            );
        }
        Err(error) => println!(
            "the committed {} does not parse ({error:#}): change report skipped",
            codegen::SPEC
        ),
    }
}

/// Prints the version the changes since the recorded release need.
fn print_bump(root: &Path, spec: &OpenAPI) {
    let (Ok((released_version, released_spec)), Ok(current)) =
        (released(root), crate_version(root))
    else {
        println!("no release record ({RELEASE_STAMP}) or no crate version: bump not computed");
        return;
    };
    let report = api_diff::compare(&released_spec, spec);
    let needed = released_version.required(report.worst());
    let verdict = if current >= needed {
        "it has that"
    } else {
        "bump it and run `cargo xtask release`, or `cargo xtask test` fails"
    };
    println!(
        "since its release {released_version}, uncensored-api {current} needs version {needed} \
         ({} breaking, {} compatible change(s)): {verdict}",
        report.of(api_diff::Impact::Breaking).count(),
        report.of(api_diff::Impact::Compatible).count(),
    );
}

/// The version of `uncensored-api`, following `version.workspace = true`,
/// checked against the `[workspace.dependencies]` line.
pub fn crate_version(root: &Path) -> Result<Version> {
    let read = |path: &str| -> Result<toml::Table> {
        std::fs::read_to_string(root.join(path))
            .with_context(|| format!("cannot read {path}"))?
            .parse::<toml::Table>()
            .with_context(|| format!("{path} is not valid TOML"))
    };
    let manifest = read(CRATE_MANIFEST)?;
    let workspace = read("Cargo.toml")?;
    let package_version = manifest.get("package").and_then(|p| p.get("version"));
    let text = match package_version {
        Some(toml::Value::String(v)) => v.clone(),
        Some(toml::Value::Table(t)) if t.get("workspace").and_then(toml::Value::as_bool) == Some(true) => workspace
            .get("workspace")
            .and_then(|w| w.get("package"))
            .and_then(|p| p.get("version"))
            .and_then(toml::Value::as_str)
            .context("uncensored-api inherits the workspace version, but the root Cargo.toml has no [workspace.package] version")?
            .to_string(),
        _ => bail!("{CRATE_MANIFEST} has no usable package.version"),
    };
    let version = Version::parse(&text)?;
    let dependency = workspace
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(|d| d.get("uncensored-api"))
        .and_then(|d| d.get("version"))
        .and_then(toml::Value::as_str);
    if let Some(required) = dependency
        && Version::parse(required.trim_start_matches(['^', '='])).ok() != Some(version)
    {
        bail!(
            "uncensored-api is {version} but the root Cargo.toml's [workspace.dependencies] asks for {required}: set that line to version = \"{version}\""
        );
    }
    Ok(version)
}

/// The last release: its version and its spec.
pub fn released(root: &Path) -> Result<(Version, OpenAPI)> {
    let stamp: toml::Table = std::fs::read_to_string(root.join(RELEASE_STAMP))
        .with_context(|| {
            format!("cannot read {RELEASE_STAMP} (record a release with `cargo xtask release`)")
        })?
        .parse()
        .with_context(|| format!("{RELEASE_STAMP} is not valid TOML"))?;
    let version = stamp
        .get("version")
        .and_then(toml::Value::as_str)
        .with_context(|| format!("{RELEASE_STAMP} has no version"))?;
    let version = Version::parse(version)?;
    let spec = codegen::load_spec(&root.join(RELEASED_SPEC))?;
    Ok((version, spec))
}

/// Whether `current` carries the bump that `report` needs since `released`:
/// the error is the message to print.
pub fn verdict(
    released: Version,
    current: Version,
    report: &Report,
) -> std::result::Result<(), String> {
    let needed = released.required(report.worst());
    if current < released {
        return Err(format!(
            "uncensored-api is {current}, older than its last release {released} ({RELEASE_STAMP})"
        ));
    }
    if current >= needed {
        return Ok(());
    }
    let kind = match report.worst() {
        Some(api_diff::Impact::Breaking) => "breaking changes need",
        _ => "compatible changes need",
    };
    Err(format!(
        "uncensored-api is {current}, but openapi.yaml changed since the release {released} \
         ({RELEASED_SPEC}): its {kind} at least {needed}.\n{}{HOW_TO_RELEASE}",
        report.render()
    ))
}

/// `cargo xtask test`'s step: the version carries the bump the changes need.
pub fn check(root: &Path) -> Result<()> {
    let (released_version, released_spec) = released(root)?;
    let current_spec = codegen::load_spec(&root.join(codegen::SPEC))?;
    let current = crate_version(root)?;
    let report = api_diff::compare(&released_spec, &current_spec);
    match verdict(released_version, current, &report) {
        Ok(()) => {
            println!(
                "uncensored-api {current} (released {released_version}): {}",
                report.render().trim_end()
            );
            Ok(())
        }
        Err(message) => bail!(message),
    }
}

/// `cargo xtask release`: records openapi.yaml as the spec of the current version.
pub fn release(root: &Path) -> Result<()> {
    codegen::run(root, true).context("regenerate the client before releasing")?;
    let current = crate_version(root)?;
    if root.join(RELEASE_STAMP).exists() {
        check(root)?;
    }
    let spec = std::fs::read_to_string(root.join(codegen::SPEC))
        .with_context(|| format!("cannot read {}", codegen::SPEC))?;
    std::fs::write(root.join(RELEASED_SPEC), spec)
        .with_context(|| format!("cannot write {RELEASED_SPEC}"))?;
    std::fs::write(
        root.join(RELEASE_STAMP),
        format!(
            "# Written by `cargo xtask release`: the version of uncensored-api whose API\n\
             # openapi.released.yaml describes. `cargo xtask test` compares openapi.yaml with it.\n\
             version = \"{current}\"\n"
        ),
    )
    .with_context(|| format!("cannot write {RELEASE_STAMP}"))?;
    println!(
        "recorded openapi.yaml as the API of uncensored-api {current}: commit {RELEASED_SPEC} and {RELEASE_STAMP}"
    );
    Ok(())
}

/// `cargo xtask release-check [--from-record]`: cargo-semver-checks on the
/// crate's Rust API against its release. The baseline is the commit that last
/// wrote [`RELEASE_STAMP`] when the history has it; in a shallow clone, without
/// git, or with `--from-record`, it is rebuilt from the record instead: the
/// crate's current sources with generated.rs rendered from [`RELEASED_SPEC`]
/// and the released version (so only the generated API is compared then).
pub fn release_check(root: &Path, from_record: bool) -> Result<()> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let full_history = git(&["rev-parse", "--is-shallow-repository"]).as_deref() == Some("false");
    let rev = full_history
        .then(|| git(&["log", "-1", "--format=%H", "--", RELEASE_STAMP]))
        .flatten()
        .filter(|rev| !rev.is_empty() && !from_record);
    let tool = crate::tools::ensure_semver_checks(root)?;
    let mut command = Command::new(tool);
    command
        .args([
            "semver-checks",
            "check-release",
            "--package",
            "uncensored-api",
        ])
        .current_dir(root);
    match rev {
        Some(rev) => {
            println!("cargo-semver-checks: uncensored-api against the release at {rev}");
            command.args(["--baseline-rev", &rev]);
        }
        None => {
            let baseline = rebuild_release(root)?;
            println!(
                "cargo-semver-checks: uncensored-api against its release rebuilt from {RELEASED_SPEC} \
                 (no full git history, or --from-record)"
            );
            command.arg("--baseline-root").arg(baseline);
        }
    }
    crate::tools::run(&mut command)
        .context("uncensored-api's Rust API needs a bigger version bump than it has")
}

/// A workspace under the target folder holding only uncensored-api as
/// released: its sources with generated.rs from the released spec, and the
/// released version.
fn rebuild_release(root: &Path) -> Result<std::path::PathBuf> {
    let (version, spec) = released(root)?;
    let dir = crate::tools::target_dir(root).join("semver-baseline");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    let krate = dir.join("crates/uncensored-api");
    std::fs::create_dir_all(krate.join("src"))?;
    std::fs::copy(root.join(CRATE_MANIFEST), krate.join("Cargo.toml"))?;
    for entry in std::fs::read_dir(root.join("crates/uncensored-api/src"))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), krate.join("src").join(entry.file_name()))?;
        }
    }
    std::fs::write(dir.join(codegen::GENERATED), codegen::render(&spec)?)?;
    let mut manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))?.parse()?;
    let workspace = manifest
        .get_mut("workspace")
        .and_then(toml::Value::as_table_mut)
        .context("the root Cargo.toml has no [workspace]")?;
    workspace.insert(
        "members".into(),
        toml::Value::Array(vec!["crates/uncensored-api".into()]),
    );
    workspace.remove("default-members");
    if let Some(package) = workspace
        .get_mut("package")
        .and_then(toml::Value::as_table_mut)
    {
        package.insert("version".into(), version.to_string().into());
    }
    std::fs::write(dir.join("Cargo.toml"), toml::to_string(&manifest)?)?;
    if root.join("Cargo.lock").exists() {
        std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    }
    Ok(dir)
}
