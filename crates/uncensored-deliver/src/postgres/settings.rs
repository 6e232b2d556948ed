//! A `postgres://` URL read as libpq reads it: `sslmode` and `sslrootcert`
//! (which tokio-postgres's own parser does not know) taken out of the query,
//! the rest handed to tokio-postgres; the root certificates loaded here,
//! before any connection is tried.
//!
//! As libpq (PostgreSQL's documentation, "SSL Support"):
//! - `sslmode` is one of `disable`, `allow`, `prefer` (the default),
//!   `require`, `verify-ca`, `verify-full`; else `PGSSLMODE`.
//! - `sslrootcert` names a PEM file of trusted CA certificates; else
//!   `PGSSLROOTCERT`; else `~/.postgresql/root.crt` when it exists.
//! - `require` (and `prefer`, `allow`) with a root certificate file checks
//!   the server's chain as `verify-ca` does; without one, the connection is
//!   encrypted but the server is not checked.
//! - `verify-ca` and `verify-full` without root certificates are refused.
//! - `sslrootcert=system` trusts the system's root certificates; it makes
//!   `verify-full` the default and refuses any weaker mode.
//! - Over Unix sockets no TLS is used, whatever the mode.
//!
//! Stricter than libpq: a `sslrootcert` named explicitly that cannot be read
//! is an error in every mode that may use TLS (libpq ignores it under
//! `require`, `prefer` and `allow`).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::journal::JournalError;

/// The largest root certificate file read (a system bundle is ~200 KiB).
const MAX_ROOT_FILE: u64 = 4 << 20;

/// How the connection uses TLS: libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SslMode {
    /// Plaintext only.
    Disable,
    /// Plaintext; TLS if the server refuses plaintext.
    Allow,
    /// TLS; plaintext if the server has no TLS or the handshake fails.
    Prefer,
    /// TLS only; the chain checked if there are root certificates.
    Require,
    /// TLS only, the chain checked against the root certificates.
    VerifyCa,
    /// TLS only, the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// Its name in a URL.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(text: &str, from: &str) -> Result<Self, JournalError> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|mode| mode.name()).collect();
                JournalError::Location(format!(
                    "{from} `{text}` is not one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// Whom the connection trusts.
#[derive(Debug, Clone)]
pub(crate) enum Roots {
    /// Nobody: the server's certificate is not checked.
    None,
    /// The certificates of a file (`sslrootcert`, or `~/.postgresql/root.crt`).
    File(PathBuf, Arc<RootCertStore>),
    /// The system's root certificates (`sslrootcert=system`).
    System(Arc<RootCertStore>),
}

/// What a `postgres://` URL asks for, read and checked.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Everything but the TLS settings (tokio-postgres's own).
    pub(crate) config: tokio_postgres::Config,
    pub(crate) mode: SslMode,
    pub(crate) roots: Roots,
}

impl Settings {
    /// Reads `url`, with `env` for `PGSSLMODE`, `PGSSLROOTCERT` and `HOME`.
    /// Every mistake (an unreadable URL, an unknown mode, a root
    /// certificate file that cannot be read) is found here.
    pub(crate) fn read(
        url: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, JournalError> {
        let (rest, mode, root) = take_tls_options(url)?;
        let config: tokio_postgres::Config = rest.parse().map_err(|e| {
            JournalError::Location(format!(
                "not a valid postgres:// URL ({})",
                super::with_causes(&e)
            ))
        })?;
        let env = |name: &str| env(name).filter(|value| !value.is_empty());
        let (mode, mode_given) = match mode
            .map(|m| (m, "sslmode"))
            .or_else(|| env("PGSSLMODE").map(|m| (m, "PGSSLMODE")))
        {
            Some((text, from)) => (Some(SslMode::parse(&text, from)?), from),
            None => (None, "sslmode"),
        };
        let root = root
            .filter(|r| !r.is_empty())
            .map(|r| (r, "sslrootcert"))
            .or_else(|| env("PGSSLROOTCERT").map(|r| (r, "PGSSLROOTCERT")));
        let system = root.as_ref().is_some_and(|(r, _)| r == "system");
        let mode = match mode {
            Some(mode) if system && mode != SslMode::VerifyFull => {
                return Err(JournalError::Location(format!(
                    "sslrootcert=system needs sslmode=verify-full, not {mode_given}={} \
                     (a certificate any public CA signed proves nothing less)",
                    mode.name()
                )));
            }
            Some(mode) => mode,
            None if system => SslMode::VerifyFull,
            None => SslMode::Prefer,
        };
        let unix_only = !config.get_hosts().is_empty()
            && config.get_hostaddrs().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|host| !matches!(host, tokio_postgres::config::Host::Tcp(_)));
        if mode == SslMode::Disable || unix_only {
            return Ok(Self {
                config,
                mode: SslMode::Disable,
                roots: Roots::None,
            });
        }
        let roots = match root {
            Some((root, _)) if root == "system" => Roots::System(system_roots()?),
            Some((root, from)) => {
                let path = PathBuf::from(root);
                Roots::File(path.clone(), Arc::new(read_roots(&path, from)?))
            }
            None => match env("HOME").map(|home| Path::new(&home).join(".postgresql/root.crt")) {
                Some(path) if path.exists() => {
                    Roots::File(path.clone(), Arc::new(read_roots(&path, "sslrootcert")?))
                }
                _ => Roots::None,
            },
        };
        if matches!(roots, Roots::None) && mode >= SslMode::VerifyCa {
            return Err(JournalError::Location(format!(
                "sslmode={} needs root certificates to check the server with: give \
                 sslrootcert=PATH (a PEM file of the CA's certificates) or sslrootcert=system \
                 (there is no ~/.postgresql/root.crt)",
                mode.name()
            )));
        }
        Ok(Self {
            config,
            mode,
            roots,
        })
    }

    /// The mode and what it trusts, for messages: `sslmode=verify-full,
    /// root certificates of /etc/ca.pem`.
    pub(crate) fn describe(&self) -> String {
        let roots = match &self.roots {
            Roots::None if self.mode == SslMode::Disable => String::new(),
            Roots::None => ", the server's certificate unchecked".into(),
            Roots::File(path, _) => format!(", root certificates of {}", path.display()),
            Roots::System(_) => ", the system's root certificates".into(),
        };
        format!("sslmode={}{roots}", self.mode.name())
    }
}

/// `url` without its `sslmode` and `sslrootcert` options, and their
/// (percent-decoded) values; the last one given wins, as in libpq.
fn take_tls_options(url: &str) -> Result<(String, Option<String>, Option<String>), JournalError> {
    let Some((head, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None, None));
    };
    let (mut mode, mut root) = (None, None);
    let mut kept = Vec::new();
    for part in query.split('&') {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let slot = match decode(key)?.as_str() {
            "sslmode" => &mut mode,
            "sslrootcert" => &mut root,
            _ => {
                kept.push(part);
                continue;
            }
        };
        *slot = Some(decode(value)?);
    }
    let rest = match kept.is_empty() {
        true => head.to_string(),
        false => format!("{head}?{}", kept.join("&")),
    };
    Ok((rest, mode, root))
}

fn decode(text: &str) -> Result<String, JournalError> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| {
            JournalError::Location("not a valid postgres:// URL (an option is not UTF-8)".into())
        })
}

/// The certificates of the PEM file at `path`. `from` names the setting.
fn read_roots(path: &Path, from: &str) -> Result<RootCertStore, JournalError> {
    let unreadable =
        |why: String| JournalError::Location(format!("{from} {}: {why}", path.display()));
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_ROOT_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| unreadable(format!("cannot read it ({e})")))?;
    if bytes.len() as u64 > MAX_ROOT_FILE {
        return Err(unreadable(format!(
            "larger than {} MiB: not a file of root certificates",
            MAX_ROOT_FILE >> 20
        )));
    }
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| unreadable(format!("not a PEM file of certificates ({e})")))?;
    if certificates.is_empty() {
        return Err(unreadable(
            "holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for (n, certificate) in certificates.into_iter().enumerate() {
        roots
            .add(certificate)
            .map_err(|e| unreadable(format!("certificate {} is unusable ({e})", n + 1)))?;
    }
    Ok(roots)
}

/// The system's root certificates (as OpenSSL finds them: `SSL_CERT_FILE`,
/// `SSL_CERT_DIR`, else the platform's store).
fn system_roots() -> Result<Arc<RootCertStore>, JournalError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        return Err(JournalError::Location(format!(
            "sslrootcert=system: no system root certificates found{}",
            match errors.is_empty() {
                true => String::new(),
                false => format!(" ({})", errors.join("; ")),
            }
        )));
    }
    Ok(Arc::new(roots))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn read(url: &str) -> Result<Settings, JournalError> {
        Settings::read(url, &no_env)
    }

    fn location_error(outcome: Result<Settings, JournalError>) -> String {
        match outcome {
            Err(JournalError::Location(text)) => text,
            other => panic!("expected a location error, got {other:?}"),
        }
    }

    #[test]
    fn the_default_is_prefer_and_nothing_is_checked_without_roots() {
        let settings = read("postgres://app:pw@db.internal:5433/jobs?application_name=w1").unwrap();
        assert_eq!(settings.mode, SslMode::Prefer);
        assert!(matches!(settings.roots, Roots::None));
        assert_eq!(settings.config.get_application_name(), Some("w1"));
        assert_eq!(settings.config.get_ports(), [5433]);
        assert_eq!(settings.config.get_password(), Some(&b"pw"[..]));
    }

    #[test]
    fn tls_options_are_taken_out_and_the_rest_kept() {
        let (rest, mode, root) = take_tls_options(
            "postgres://u@h/db?sslmode=require&application_name=a%20b&sslrootcert=%2Ftmp%2Fca.pem&sslmode=verify-full",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u@h/db?application_name=a%20b");
        assert_eq!(mode.as_deref(), Some("verify-full"), "the last one wins");
        assert_eq!(root.as_deref(), Some("/tmp/ca.pem"));
        let (rest, mode, root) = take_tls_options("postgres://u@h/db?sslmode=disable").unwrap();
        assert_eq!(
            (rest.as_str(), mode.as_deref(), root),
            ("postgres://u@h/db", Some("disable"), None)
        );
    }

    #[test]
    fn every_libpq_mode_is_read_and_others_are_refused() {
        for mode in SslMode::ALL {
            let url = format!("postgres://u@h/db?sslmode={}", mode.name());
            match mode >= SslMode::VerifyCa {
                false => assert_eq!(read(&url).unwrap().mode, mode),
                true => assert!(location_error(read(&url)).contains("sslrootcert=PATH")),
            }
        }
        let text = location_error(read("postgres://u:hunter2@h/db?sslmode=verify_full"));
        assert!(
            text.contains("`verify_full`") && text.contains("verify-full"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn an_unreadable_root_file_is_named() {
        let text = location_error(read(
            "postgres://u:hunter2@h/db?sslmode=require&sslrootcert=/nonexistent/ca.pem",
        ));
        assert!(
            text.contains("/nonexistent/ca.pem") && text.contains("cannot read"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");

        let dir = std::env::temp_dir().join(format!("uncensored-pg-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let text = location_error(read(&format!(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert={}",
            empty.display()
        )));
        assert!(text.contains("holds no certificate"), "{text}");
        let garbled = dir.join("garbled.pem");
        std::fs::write(
            &garbled,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let text = location_error(read(&format!(
            "postgres://u@h/db?sslmode=verify-ca&sslrootcert={}",
            garbled.display()
        )));
        assert!(text.contains("certificate 1 is unusable"), "{text}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn system_roots_need_verify_full() {
        let text = location_error(read("postgres://u@h/db?sslmode=require&sslrootcert=system"));
        assert!(text.contains("needs sslmode=verify-full"), "{text}");
        let text = location_error(read(
            "postgres://u@h/db?sslmode=verify-ca&sslrootcert=system",
        ));
        assert!(text.contains("not sslmode=verify-ca"), "{text}");
    }

    #[test]
    fn the_environment_fills_in_what_the_url_does_not_say() {
        let env = |name: &str| match name {
            "PGSSLMODE" => Some("verify-full".to_string()),
            "PGSSLROOTCERT" => Some("/nonexistent/env-ca.pem".to_string()),
            _ => None,
        };
        let text = location_error(Settings::read("postgres://u@h/db", &env));
        assert!(
            text.contains("PGSSLROOTCERT /nonexistent/env-ca.pem"),
            "{text}"
        );
        // The URL wins over the environment.
        let settings = Settings::read("postgres://u@h/db?sslmode=disable", &env).unwrap();
        assert_eq!(settings.mode, SslMode::Disable);
        let bad = |name: &str| (name == "PGSSLMODE").then(|| "strict".to_string());
        let text = location_error(Settings::read("postgres://u@h/db", &bad));
        assert!(text.starts_with("PGSSLMODE `strict`"), "{text}");
    }

    #[test]
    fn the_default_root_file_is_read_when_it_exists() {
        let home = std::env::temp_dir().join(format!("uncensored-pg-home-{}", std::process::id()));
        std::fs::create_dir_all(home.join(".postgresql")).unwrap();
        let env = |name: &str| (name == "HOME").then(|| home.display().to_string());
        // No root.crt: require connects unchecked, verify-ca is refused.
        let settings = Settings::read("postgres://u@h/db?sslmode=require", &env).unwrap();
        assert!(matches!(settings.roots, Roots::None));
        assert!(
            location_error(Settings::read("postgres://u@h/db?sslmode=verify-ca", &env))
                .contains("no ~/.postgresql/root.crt")
        );
        // A root.crt that is not one is an error, as in libpq.
        std::fs::write(home.join(".postgresql/root.crt"), "junk").unwrap();
        let text = location_error(Settings::read("postgres://u@h/db?sslmode=require", &env));
        assert!(text.contains(".postgresql/root.crt"), "{text}");
        std::fs::remove_dir_all(home).ok();
    }

    #[test]
    fn unix_sockets_use_no_tls() {
        let settings =
            read("postgres:///db?host=%2Fvar%2Frun%2Fpostgresql&sslmode=verify-full").unwrap();
        assert_eq!(settings.mode, SslMode::Disable);
    }
}
