//! Certificates for a TLS server on loopback, made with the `openssl`
//! program in the test run: a CA, a server certificate it signs (for
//! `localhost` and `127.0.0.1`), and a second CA that signed nothing the
//! server has.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where a TLS test server's certificates are (PEM files in its temporary
/// folder, removed with it).
#[derive(Debug, Clone)]
pub struct TestCertificates {
    /// The CA that signed the server's certificate: what a client trusts.
    pub ca: PathBuf,
    /// Another CA, which signed nothing the server has: trusting only it,
    /// a client must refuse the server.
    pub other_ca: PathBuf,
    /// The server's certificate, for `localhost` and `127.0.0.1` only.
    pub server_certificate: PathBuf,
    /// The server's private key (unencrypted).
    pub server_key: PathBuf,
}

/// Whether `openssl` runs; says so when it does not, and panics under CI
/// (CI never skips the TLS tests).
pub(crate) fn openssl_found() -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the TLS tests: the `openssl` program is missing (Debian's `openssl` package; `postgresql` depends on it)"
        );
        eprintln!("SKIPPED: no `openssl` program to make the test certificates with");
    }
    found
}

/// Makes the certificates in `dir` (created). Panics with openssl's
/// message if it cannot.
pub(crate) fn make(dir: &Path) -> TestCertificates {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let certificates = TestCertificates {
        ca: dir.join("ca.crt"),
        other_ca: dir.join("other-ca.crt"),
        server_certificate: dir.join("server.crt"),
        server_key: dir.join("server.key"),
    };
    authority(dir, "ca", "uncensored test CA");
    authority(dir, "other-ca", "uncensored other test CA");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature, keyEncipherment\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = DNS:localhost, IP:127.0.0.1\n",
    )
    .unwrap_or_else(|e| panic!("cannot write server.ext: {e}"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
    certificates
}

/// A self-signed CA: `NAME.key` and `NAME.crt` in `dir`.
fn authority(dir: &Path, name: &str, common_name: &str) {
    let (key, certificate) = (format!("{name}.key"), format!("{name}.crt"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &certificate,
            "-days",
            "2",
            "-subj",
            &format!("/CN={common_name}"),
            "-addext",
            "basicConstraints = critical, CA:TRUE",
            "-addext",
            "keyUsage = critical, keyCertSign, cRLSign",
        ],
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
    if !output.status.success() {
        panic!(
            "openssl {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
}
