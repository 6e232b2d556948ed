//! External tools the checks need, installed on demand into git-ignored
//! folders under `.tools/` and reused when already present.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

/// A Python virtual environment under `.tools/<name>`, holding exactly the
/// pinned `requirements`. It is (re)built when missing or when the pins change.
pub fn python_venv(root: &Path, name: &str, requirements: &[&str]) -> Result<PathBuf> {
    let venv = root.join(".tools").join(name);
    let stamp = venv.join("xtask-requirements.txt");
    let wanted = requirements.join("\n");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(venv);
    }
    eprintln!(
        "xtask: installing {} into .tools/{name}",
        requirements.join(" ")
    );
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .with_context(|| format!("cannot remove stale {}", venv.display()))?;
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    run(Command::new(&python).args(["-m", "venv"]).arg(&venv)).with_context(|| {
        format!("cannot create a Python venv with {python} (set PYTHON to a Python 3.9+)")
    })?;
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(requirements))
    .with_context(|| format!("cannot install {} from PyPI", requirements.join(" ")))?;
    std::fs::write(&stamp, wanted)?;
    Ok(venv)
}

/// Runs a command to completion, failing with its name when it fails.
pub fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{:?} failed ({status})", command.get_program());
    }
    Ok(())
}
