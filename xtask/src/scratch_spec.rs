//! `cargo xtask test`'s proof that openapi.yaml is the one source of limits:
//! in a scratch copy of the crates that enforce them (uncensored-api,
//! uncensored, uncensored-emulator), raise `image_width`'s `maximum` and
//! `prompt`'s `maxLength`, run the code generator, build, and check that the
//! SDK and the emulator (a real request through the SDK) follow the new
//! limits with no other edit (xtask/scratch/spec_check.rs).
//!
//! The copy lives in `target/scratch-spec` and builds into
//! `target/scratch-spec-target`; both are kept, and files are written only
//! when their content changes, so a rerun rebuilds only what changed. The
//! root Cargo.lock is reused, so versions match and nothing is downloaded
//! (cargo runs `--offline` when the registry cache has everything).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde_yaml_ng::Value;

/// The crates copied, relative to the workspace root.
const CRATES: &[&str] = &[
    "crates/uncensored-api",
    "crates/uncensored",
    "crates/uncensored-emulator",
];
/// The workspace files copied besides them.
const FILES: &[&str] = &["Cargo.lock", "rust-toolchain.toml", "openapi.yaml"];
/// The check, a binary of its own in the scratch workspace.
const CHECK: &str = include_str!("../scratch/spec_check.rs");

/// The spec edits: a path of keys below `components.schemas`, the keyword, and its new value.
const EDITS: &[(&[&str], u64)] = &[
    (
        &[
            "GenerateImageRequest",
            "properties",
            "image_width",
            "maximum",
        ],
        2560,
    ),
    (
        &["GenerateImageRequest", "properties", "prompt", "maxLength"],
        2500,
    ),
];

/// Copies, edits, regenerates, builds and runs the check.
pub fn run(root: &Path, cargo: impl Fn(&[&str]) -> Command) -> Result<()> {
    let started = Instant::now();
    let scratch = root.join("target/scratch-spec");
    for dir in CRATES {
        sync_dir(&root.join(dir), &scratch.join(dir))?;
    }
    for file in FILES {
        let text = std::fs::read(root.join(file)).with_context(|| format!("cannot read {file}"))?;
        write_if_changed(&scratch.join(file), &text)?;
    }
    write_if_changed(
        &scratch.join("Cargo.toml"),
        workspace_manifest(&std::fs::read_to_string(root.join("Cargo.toml"))?)?.as_bytes(),
    )?;
    write_if_changed(
        &scratch.join("spec-check/Cargo.toml"),
        CHECK_MANIFEST.as_bytes(),
    )?;
    write_if_changed(&scratch.join("spec-check/src/main.rs"), CHECK.as_bytes())?;

    let spec_path = scratch.join(crate::codegen::SPEC);
    let edited = edit_spec(&std::fs::read_to_string(&spec_path)?)?;
    write_if_changed(&spec_path, edited.as_bytes())?;
    crate::codegen::run(&scratch, false).context("the generator on the edited spec")?;
    println!("scratch copy ready in {:.1?}", started.elapsed());

    let offline = offline_possible(root, &cargo);
    let mut args = vec!["run", "--quiet", "--package", "spec-check"];
    if offline {
        args.push("--offline");
    }
    let mut command = cargo(&args);
    command
        .current_dir(&scratch)
        .env("CARGO_TARGET_DIR", root.join("target/scratch-spec-target"));
    crate::tools::run(&mut command).context(
        "with a limit raised in openapi.yaml and the code regenerated, the SDK or the emulator \
         still enforces the old one: a limit is written by hand somewhere",
    )?;
    println!(
        "spec-change check done in {:.1?} (offline: {offline})",
        started.elapsed()
    );
    Ok(())
}

const CHECK_MANIFEST: &str = r#"[package]
name = "spec-check"
version = "0.0.0"
edition.workspace = true
publish = false

[dependencies]
uncensored.workspace = true
uncensored-emulator.workspace = true
tokio.workspace = true
reqwest.workspace = true
serde_json.workspace = true
"#;

/// The root manifest with only the copied crates and the check as members,
/// and without the path dependencies on crates that are not copied.
fn workspace_manifest(root_manifest: &str) -> Result<String> {
    let members: Vec<String> = CRATES
        .iter()
        .map(|c| format!("{c:?}"))
        .chain(std::iter::once("\"spec-check\"".to_string()))
        .collect();
    let mut out = String::new();
    let mut replaced = 0;
    for line in root_manifest.lines() {
        if line.starts_with("members = ") {
            out.push_str(&format!("members = [{}]\n", members.join(", ")));
            replaced += 1;
        } else if line.starts_with("default-members = ") {
            continue;
        } else if let Some(path) = line
            .split_once("path = \"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(path, _)| path)
            && !CRATES.contains(&path)
        {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if replaced != 1 {
        bail!("the root Cargo.toml has no single `members = [...]` line to replace");
    }
    Ok(out)
}

/// The spec with [`EDITS`] applied; each must find its keyword.
fn edit_spec(text: &str) -> Result<String> {
    let mut spec: Value = serde_yaml_ng::from_str(text).context("openapi.yaml")?;
    for (path, new) in EDITS {
        let mut place = spec
            .get_mut("components")
            .and_then(|c| c.get_mut("schemas"))
            .context("openapi.yaml has no components.schemas")?;
        for key in *path {
            place = place
                .get_mut(*key)
                .with_context(|| format!("openapi.yaml has no {}", path.join(".")))?;
        }
        *place = Value::from(*new);
    }
    serde_yaml_ng::to_string(&spec).context("the edited spec serialises")
}

/// Whether the local registry cache has every package this platform builds
/// (`cargo tree --offline`; `cargo fetch` would want every platform's).
fn offline_possible(root: &Path, cargo: &impl Fn(&[&str]) -> Command) -> bool {
    cargo(&["tree", "--offline", "--quiet"])
        .current_dir(root.join("target/scratch-spec"))
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Makes `to` hold the files of `from` (and nothing else), writing only what differs.
fn sync_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let mut wanted = Vec::new();
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        let (source, target) = (entry.path(), to.join(&name));
        wanted.push(name);
        if entry.file_type()?.is_dir() {
            sync_dir(&source, &target)?;
        } else {
            write_if_changed(&target, &std::fs::read(&source)?)?;
        }
    }
    for entry in std::fs::read_dir(to)? {
        let entry = entry?;
        if !wanted.contains(&entry.file_name()) {
            let path: PathBuf = entry.path();
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` unless it already holds them (keeping the
/// modification time cargo's fingerprints read).
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_keeps_only_the_copied_crates() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let manifest =
            workspace_manifest(&std::fs::read_to_string(root.join("Cargo.toml")).unwrap()).unwrap();
        assert!(manifest.contains(
            "members = [\"crates/uncensored-api\", \"crates/uncensored\", \"crates/uncensored-emulator\", \"spec-check\"]"
        ));
        assert!(!manifest.contains("default-members"));
        assert!(!manifest.contains("crates/uncensored-deliver"));
        assert!(manifest.contains("uncensored-emulator = { path = \"crates/uncensored-emulator\""));
        assert!(manifest.contains("[workspace.dependencies]"));
    }

    #[test]
    fn the_spec_edits_apply_and_change_the_limits() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let text = std::fs::read_to_string(root.join(crate::codegen::SPEC)).unwrap();
        let edited = edit_spec(&text).unwrap();
        let limits = crate::limits::render(&crate::codegen::parse_spec(&edited).unwrap()).unwrap();
        assert!(
            limits.contains("pub const IMAGE_WIDTH_MAXIMUM: u32 = 2560;"),
            "{limits}"
        );
        assert!(
            limits.contains("pub const IMAGE_HEIGHT_MAXIMUM: u32 = 2048;"),
            "{limits}"
        );
        assert!(
            limits.contains("pub const PROMPT_MAX_LENGTH: usize = 2500;"),
            "{limits}"
        );
    }
}
