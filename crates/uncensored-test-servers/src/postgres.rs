//! PostgreSQL: a throw-away cluster (`initdb` into a temporary folder, then
//! `pg_ctl start`) on a free loopback port, for the shared journal's tests;
//! with TLS only, when asked ([`postgres_tls`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::certificates::{self, TestCertificates};
use super::{START_DEADLINE, free_port, scratch_paths};

/// The variable `cargo xtask test` sets to PostgreSQL's `bin` folder.
const ENV: &str = "UNCENSORED_POSTGRES_BIN";

/// Where Debian's `postgresql` package puts each version's programs.
const DEBIAN_VERSIONS: &str = "/usr/lib/postgresql";

/// The superuser, reached without a password (see [`Postgres`]).
const SUPERUSER: &str = "postgres";

/// The system user the server runs as when the tests run as root (`initdb`
/// and `postgres` refuse to run as root).
const SYSTEM_USER: &str = "postgres";

/// A PostgreSQL server of its own on a free loopback port, in a temporary
/// folder; stopped (`pg_ctl stop -m immediate`) and removed on drop.
///
/// The superuser `postgres` connects over TCP without a password
/// ([`Postgres::url`]); every other role must give its password (SCRAM), so
/// that a wrong password is refused ([`Postgres::with_password`]). The server
/// trades durability for speed (`fsync`, `full_page_writes` and
/// `synchronous_commit` are off) and allows 200 connections.
///
/// When the tests run as root, the server runs as the system user `postgres`
/// (through `runuser`), which owns its folder.
#[derive(Debug)]
pub struct Postgres {
    /// PostgreSQL's `bin` folder.
    bin: PathBuf,
    /// Owned by the server's user: `data/`, the socket and the log.
    scratch: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    /// The system user to run the server's programs as, when not ourselves.
    run_as: Option<&'static str>,
    /// With TLS only: its certificates.
    tls: Option<TestCertificates>,
}

/// Starts a PostgreSQL server, or explains why not: under CI that is a
/// failure, never a skip.
///
/// Its programs (`initdb`, `pg_ctl`, `psql`) come from the folder named in
/// `UNCENSORED_POSTGRES_BIN` (`cargo xtask test` sets it), else from the
/// newest `/usr/lib/postgresql/<version>/bin` (Debian's `postgresql`
/// package). A start that loses its port to another process is retried on a
/// new one; any other failure panics with the server's log.
pub fn postgres() -> Option<Postgres> {
    start(false)
}

/// [`postgres`] with TLS only (`ssl = on`; `pg_hba.conf` has only
/// `hostssl` lines for TCP, so a plaintext connection is refused): its
/// certificates, made with `openssl` into its temporary folder, are
/// [`Postgres::certificates`]. The server's certificate names `localhost`
/// and `127.0.0.1`. Without `openssl` the test is skipped, except under CI,
/// where that is a failure.
pub fn postgres_tls() -> Option<Postgres> {
    start(true)
}

fn start(tls: bool) -> Option<Postgres> {
    let bin = find()?;
    if tls && !certificates::openssl_found() {
        return None;
    }
    let run_as = is_root().then_some(SYSTEM_USER);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (_, scratch) = scratch_paths("postgres");
        let server = Postgres {
            data: scratch.join("data"),
            log: scratch.join("server.log"),
            tls: tls.then(|| certificates::make(&scratch.join("tls"))),
            scratch,
            bin: bin.clone(),
            port: free_port(),
            run_as,
        };
        server.init();
        match server.try_start() {
            Ok(()) => return Some(server),
            Err(why) => {
                let log = server.read_log();
                let port_taken =
                    log.contains("could not bind") || log.contains("Address already in use");
                if port_taken && attempt < 3 {
                    continue;
                }
                panic!(
                    "PostgreSQL did not start on 127.0.0.1:{}: {why}; its log:\n{log}",
                    server.port
                );
            }
        }
    }
}

impl Postgres {
    /// Its port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its certificates, when it was started with TLS ([`postgres_tls`]).
    pub fn certificates(&self) -> Option<&TestCertificates> {
        self.tls.as_ref()
    }

    /// The superuser's URL for the database `postgres`:
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.database_url("postgres")
    }

    /// The superuser's URL for the database `name`.
    pub fn database_url(&self, name: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{}/{}",
            self.port,
            encode(name)
        )
    }

    /// Creates the database `name` and returns its (superuser's) URL.
    /// Panics if it cannot.
    pub fn create_database(&self, name: &str) -> String {
        self.execute(
            "postgres",
            &format!("CREATE DATABASE {}", quote_identifier(name)),
        );
        self.database_url(name)
    }

    /// Creates the role `user` that logs in with `password` (checked with
    /// SCRAM over TCP) and returns its URL for the database `postgres`,
    /// `postgres://user:password@127.0.0.1:PORT/postgres`. The role has no
    /// other privilege: make it a database's owner
    /// (`ALTER DATABASE name OWNER TO user`, with [`Postgres::execute`]) to
    /// let it create tables there. Panics if it cannot.
    pub fn with_password(&self, user: &str, password: &str) -> String {
        self.execute(
            "postgres",
            &format!(
                "CREATE ROLE {} LOGIN PASSWORD {}",
                quote_identifier(user),
                quote_literal(password)
            ),
        );
        format!(
            "postgres://{}:{}@127.0.0.1:{}/postgres",
            encode(user),
            encode(password),
            self.port
        )
    }

    /// Runs `sql` (one or more statements) as the superuser in `database`,
    /// with `psql` over the server's Unix socket. Panics with `psql`'s
    /// message if it fails.
    pub fn execute(&self, database: &str, sql: &str) {
        let output = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(&self.scratch)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                database,
            ])
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env_remove("PGPASSWORD")
            .env_remove("PGOPTIONS")
            .env_remove("PGSERVICE")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
        if !output.status.success() {
            panic!(
                "psql failed ({}) running {sql:?} in {database}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }

    /// Stops the server (`pg_ctl stop -m fast`: open connections are cut)
    /// and waits until it is down. Panics if it cannot.
    pub fn stop(&self) {
        let output = self.pg_ctl(&["stop", "-m", "fast", "-w"]);
        if !output.status.success() {
            panic!(
                "PostgreSQL did not stop ({}): {}; its log:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                self.read_log()
            );
        }
    }

    /// Starts the stopped server again (same folder, same port) and waits
    /// until it accepts connections. Panics with its log if it cannot.
    pub fn start(&self) {
        if let Err(why) = self.try_start() {
            panic!(
                "PostgreSQL did not start again on 127.0.0.1:{}: {why}; its log:\n{}",
                self.port,
                self.read_log()
            );
        }
    }

    /// [`Postgres::stop`], then [`Postgres::start`].
    pub fn restart(&self) {
        self.stop();
        self.start();
    }

    /// Creates the scratch folder (owned by the server's user) and the
    /// cluster in it, with its settings. Panics with initdb's output if it
    /// cannot.
    fn init(&self) {
        std::fs::create_dir_all(&self.scratch)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", self.scratch.display()));
        if let Some(user) = self.run_as {
            let (uid, gid) = (id(user, "-u"), id(user, "-g"));
            std::os::unix::fs::chown(&self.scratch, Some(uid), Some(gid)).unwrap_or_else(|e| {
                panic!(
                    "cannot give {} to the user {user}: {e}",
                    self.scratch.display()
                )
            });
        }
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(&self.data)
            .args(["-U", SUPERUSER, "-E", "UTF8", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
        if !output.status.success() {
            panic!(
                "initdb failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // Rewritten in place, so that the files keep their owner. With TLS,
        // TCP connections must use it (`hostssl`).
        let host = if self.tls.is_some() {
            "hostssl"
        } else {
            "host"
        };
        write(
            &self.data.join("pg_hba.conf"),
            &[
                "# TYPE DATABASE USER ADDRESS METHOD",
                "local all all trust",
                &format!("{host} all {SUPERUSER} 127.0.0.1/32 trust"),
                &format!("{host} all all 127.0.0.1/32 scram-sha-256"),
                "",
            ]
            .join("\n"),
        );
        let conf = self.data.join("postgresql.conf");
        let mut settings = std::fs::read_to_string(&conf)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", conf.display()));
        settings.push_str(&format!(
            "\n# uncensored-test-servers\n\
             listen_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\n\
             max_connections = 200\n\
             fsync = off\n\
             full_page_writes = off\n\
             synchronous_commit = off\n",
            self.scratch.display()
        ));
        if let Some(tls) = &self.tls {
            // The server's key must be its user's alone.
            for file in [&tls.server_key, &tls.server_certificate] {
                if let Some(user) = self.run_as {
                    std::os::unix::fs::chown(file, Some(id(user, "-u")), Some(id(user, "-g")))
                        .unwrap_or_else(|e| {
                            panic!("cannot give {} to {user}: {e}", file.display())
                        });
                }
            }
            std::fs::set_permissions(
                &tls.server_key,
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .unwrap_or_else(|e| panic!("cannot protect {}: {e}", tls.server_key.display()));
            settings.push_str(&format!(
                "ssl = on\n\
                 ssl_cert_file = '{}'\n\
                 ssl_key_file = '{}'\n",
                tls.server_certificate.display(),
                tls.server_key.display()
            ));
        }
        write(&conf, &settings);
    }

    /// `pg_ctl start` on [`Postgres::port`], waiting until the server
    /// accepts connections.
    fn try_start(&self) -> Result<(), String> {
        let output = self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            &START_DEADLINE.as_secs().to_string(),
            "-o",
            &format!("-p {}", self.port),
        ]);
        if !output.status.success() {
            return Err(format!(
                "pg_ctl start failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let deadline = std::time::Instant::now() + START_DEADLINE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(format!("it did not listen within {START_DEADLINE:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        self.command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run pg_ctl: {e}"))
    }

    /// One of PostgreSQL's programs, run as the server's user.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        command.current_dir(&self.scratch).stdin(Stdio::null());
        command
    }

    fn read_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// PostgreSQL's `bin` folder, or `None` (after saying so) when there is
/// none. Panics under CI instead: CI never skips these tests.
fn find() -> Option<PathBuf> {
    let found = std::env::var_os(ENV)
        .map(PathBuf::from)
        .or_else(|| newest_debian_bin(Path::new(DEBIAN_VERSIONS)));
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the PostgreSQL tests: run them through `cargo xtask test`, which installs postgresql"
        );
        eprintln!(
            "SKIPPED: no PostgreSQL (run `cargo xtask test` to install the `postgresql` package, or set {ENV} to its bin folder)"
        );
    }
    found
}

/// The `bin` folder of the newest version under `versions` (Debian's
/// `/usr/lib/postgresql/<version>/bin`) that has `initdb`.
fn newest_debian_bin(versions: &Path) -> Option<PathBuf> {
    std::fs::read_dir(versions)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: Vec<u32> = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<_>>()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max()
        .map(|(_, bin)| bin)
}

/// Whether this process runs as root (`id -u` is 0).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// `id FLAG user`: a user's uid (`-u`) or gid (`-g`). Panics if there is no such user.
fn id(user: &str, flag: &str) -> u32 {
    let output = Command::new("id")
        .args([flag, user])
        .output()
        .unwrap_or_else(|e| panic!("cannot run id: {e}"));
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| {
            panic!(
                "running as root, the PostgreSQL server needs the system user {user} \
                 (the `postgresql` package creates it): {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })
}

/// Writes `text` over `path` (keeping its owner). Panics if it cannot.
fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// `"name"`, with its double quotes doubled.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, with its single quotes doubled.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Percent-encodes all but URL-unreserved characters, for a URL's user,
/// password or path.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_version_with_initdb_is_chosen() {
        let root = std::env::temp_dir().join(format!(
            "uncensored-test-servers-versions-{}",
            std::process::id()
        ));
        for (version, initdb) in [("9.6", true), ("15", true), ("16", false), ("13", true)] {
            let bin = root.join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            if initdb {
                std::fs::write(bin.join("initdb"), "").unwrap();
            }
        }
        std::fs::create_dir_all(root.join("not-a-version/bin")).unwrap();
        let found = newest_debian_bin(&root);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(found, Some(root.join("15").join("bin")));
    }

    #[test]
    fn names_are_quoted_and_encoded() {
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(encode("p@ss:w/rd é"), "p%40ss%3Aw%2Frd%20%C3%A9");
    }
}
