//! What the CLI's test files share: the command, with nothing from the
//! machine running the tests leaking in.

#![allow(dead_code)] // each test file uses its part

pub mod batch;

/// The settings a user's environment may hold, removed from every command
/// a test starts.
pub const MACHINE_VARS: [&str; 7] = [
    "UNCENSORED_API_KEY",
    "UNCENSORED_BASE_URL",
    "UNCENSORED_CONFIG",
    "UNCENSORED_WEBHOOK_SECRET",
    "UNCENSORED_CALLBACK_SECRET",
    "UNCENSORED_MCP_TOKEN",
    "UNCENSORED_GALLERY_TOKEN",
];

/// `uncensored`, without the machine's settings and config file.
pub fn uncensored() -> assert_cmd::Command {
    let mut command = assert_cmd::Command::cargo_bin("uncensored").unwrap();
    for var in MACHINE_VARS {
        command.env_remove(var);
    }
    command.env("XDG_CONFIG_HOME", "/nonexistent-config-dir");
    command
}
