//! How a pooled connection is opened: TLS with rustls (on aws-lc-rs)
//! through tokio-postgres-rustls, checked as the [`Settings`] ask, with
//! libpq's fallbacks (`prefer` to plaintext, `allow` to TLS); and what a
//! refused handshake means.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::task::JoinHandle;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::settings::{Roots, Settings, SslMode};
use crate::journal::JournalError;

/// Opens the connections of a pool: deadpool's `Connect`, with the TLS
/// connector the settings ask for.
pub(crate) struct Connector {
    mode: SslMode,
    tls: MakeRustlsConnect,
}

impl Connector {
    /// The connector for `settings`: which certificates it accepts follows
    /// from the mode and the root certificates.
    pub(crate) fn new(settings: &Settings) -> Result<Self, JournalError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match (&settings.roots, settings.mode) {
            (Roots::None, _) => Arc::new(NameUnchecked {
                roots: None,
                algorithms: provider.signature_verification_algorithms,
            }),
            (Roots::File(_, roots) | Roots::System(roots), SslMode::VerifyFull) => {
                WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()
                    .map_err(|e| JournalError::Location(format!("root certificates: {e}")))?
            }
            // verify-ca, and require (prefer, allow) given root certificates.
            (Roots::File(_, roots) | Roots::System(roots), _) => Arc::new(NameUnchecked {
                roots: Some(roots.clone()),
                algorithms: provider.signature_verification_algorithms,
            }),
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| JournalError::Location(format!("TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Self {
            mode: settings.mode,
            tls: MakeRustlsConnect::new(config),
        })
    }
}

type Connected = Result<(Client, JoinHandle<()>), tokio_postgres::Error>;

impl deadpool_postgres::Connect for Connector {
    fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> Pin<Box<dyn Future<Output = Connected> + Send + '_>> {
        let with = |mode| {
            let mut config = config.clone();
            config.ssl_mode(mode);
            config
        };
        let (plain, prefer, require) = (
            with(tokio_postgres::config::SslMode::Disable),
            with(tokio_postgres::config::SslMode::Prefer),
            with(tokio_postgres::config::SslMode::Require),
        );
        let tls = self.tls.clone();
        Box::pin(async move {
            match self.mode {
                SslMode::Disable => open(&plain, tokio_postgres::NoTls).await,
                // Plaintext; TLS when the server refuses it (a `hostssl`-only
                // server answers with an error).
                SslMode::Allow => match open(&plain, tokio_postgres::NoTls).await {
                    Err(error) if error.as_db_error().is_some() => open(&require, tls).await,
                    outcome => outcome,
                },
                // TLS if the server has it (else tokio-postgres goes on in
                // plaintext); plaintext again when the handshake fails.
                SslMode::Prefer => match open(&prefer, tls).await {
                    Err(error) if refusal(&error).is_some() => {
                        open(&plain, tokio_postgres::NoTls).await
                    }
                    outcome => outcome,
                },
                SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                    open(&require, tls).await
                }
            }
        })
    }
}

async fn open<T>(config: &tokio_postgres::Config, tls: T) -> Connected
where
    T: MakeTlsConnect<Socket> + Send,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as tokio_postgres::tls::TlsConnect<Socket>>::Future: Send,
{
    let (client, connection) = config.connect(tls).await?;
    let task = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "PostgreSQL connection lost");
        }
    });
    Ok((client, task))
}

/// The TLS layer's reason when a handshake failed: the server's certificate
/// refused, an alert from the server, a protocol error.
pub(crate) fn refusal(error: &tokio_postgres::Error) -> Option<&rustls::Error> {
    std::error::Error::source(error)?
        .downcast_ref::<std::io::Error>()?
        .get_ref()?
        .downcast_ref::<rustls::Error>()
}

/// What a refused handshake means, for people.
pub(crate) fn describe(refusal: &rustls::Error) -> String {
    use rustls::CertificateError as E;
    let meaning = match refusal {
        rustls::Error::InvalidCertificate(E::UnknownIssuer | E::BadSignature) => {
            ": the server's certificate is not signed by a trusted root certificate"
        }
        rustls::Error::InvalidCertificate(
            E::NotValidForName | E::NotValidForNameContext { .. },
        ) => ": the server's certificate does not name the host connected to",
        rustls::Error::InvalidCertificate(E::Expired | E::ExpiredContext { .. }) => {
            ": the server's certificate has expired"
        }
        _ => "",
    };
    format!("the TLS handshake failed ({refusal}){meaning}")
}

/// Never checks the host name. With root certificates it checks the chain
/// up to them with webpki (`verify-ca`, and `require` given roots); without,
/// it accepts any certificate (`require` without roots, as libpq: encrypted,
/// the server unchecked). Either way the handshake's signatures are checked,
/// so the server holds the certificate's key.
#[derive(Debug)]
struct NameUnchecked {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NameUnchecked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let certificate = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &certificate,
            roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
