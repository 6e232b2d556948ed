//! Email over SMTP with lettre (tokio, rustls): one message per notification,
//! plain text with an HTML alternative, the image linked (its shareable URL,
//! or where it is stored) or, when asked for and small enough, downloaded
//! from its shareable URL and attached.
//!
//! [`Notifier::check`] connects and logs in before anything is paid for, so a
//! refused password is found at start. One attempt per call: transient SMTP
//! answers (4xx) and connection failures are [`NotifyError::Unavailable`],
//! permanent ones (5xx, a refused login) [`NotifyError::Rejected`]. The
//! password never appears in `Debug`, errors or logs.
//!
//! Settings come from [`EmailConfig`] or from an Apprise-style URL
//! ([`EmailNotifier::from_url`]):
//!
//! - `mailto://user:pass@smtp.example.com[:587]?to=a@example.com,b@example.org&from=me@example.com&attach=yes`
//!   (STARTTLS required, port 587 by default),
//! - `mailtos://user:pass@smtp.example.com[:465]?to=…` (implicit TLS, port 465 by default),
//! - `…&tls=none` for a server on loopback only (tests, a local relay).

use std::net::IpAddr;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use secrecy::{ExposeSecret as _, SecretString};

use super::{Notification, Notifier, NotifierId, NotifyError, clip};
use crate::StoredImage;

/// The default largest image that is attached: 5 MiB.
pub const DEFAULT_ATTACHMENT_CAP: u64 = 5 * 1024 * 1024;

/// The default subject prefix.
pub const DEFAULT_SUBJECT_PREFIX: &str = "[uncensored] ";

mod config;
mod content;

use config::*;
pub use config::{EmailConfig, EmailConfigError, SmtpTls};
pub use content::EmailContent;
use content::*;

/// Sends notifications by email over SMTP. Its password never appears in
/// `Debug`, errors or logs.
pub struct EmailNotifier {
    host: String,
    port: u16,
    mode: SmtpTls,
    tls: Tls,
    user: Option<String>,
    password: Option<SecretString>,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject_prefix: String,
    attach: bool,
    attachment_cap: u64,
    timeout: Duration,
    http: reqwest::Client,
}

impl std::fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.mode)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("from", &self.from.to_string())
            .field(
                "to",
                &self.to.iter().map(ToString::to_string).collect::<Vec<_>>(),
            )
            .field("attach", &self.attach)
            .field("attachment_cap", &self.attachment_cap)
            .finish()
    }
}

/// An image downloaded to be attached.
struct Download {
    filename: String,
    content_type: ContentType,
    bytes: Vec<u8>,
}

impl EmailNotifier {
    /// A notifier with these settings; checks the addresses and the TLS mode
    /// (sending without TLS is only allowed to a server on loopback).
    pub fn new(config: EmailConfig) -> Result<Self, EmailConfigError> {
        let EmailConfig {
            host,
            port,
            tls: mode,
            credentials,
            from,
            to,
            subject_prefix,
            attach,
        } = config;
        if host.is_empty() {
            return Err(EmailConfigError::new("the SMTP host is missing"));
        }
        let port = port.unwrap_or(mode.default_port());
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = match mode {
            SmtpTls::None if !is_loopback(&host) => {
                return Err(EmailConfigError::new(format!(
                    "sending email without TLS is only allowed to a server on loopback, not {host}: use STARTTLS (mailto://) or implicit TLS (mailtos://)"
                )));
            }
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls | SmtpTls::Implicit => {
                let parameters = TlsParameters::new(bare.clone()).map_err(|e| {
                    EmailConfigError::new(format!("cannot set up TLS for {host}: {e}"))
                })?;
                if mode == SmtpTls::StartTls {
                    Tls::Required(parameters)
                } else {
                    Tls::Wrapper(parameters)
                }
            }
        };
        let from = from.ok_or_else(|| {
            EmailConfigError::new("the sender is missing: set from (from=me@example.com)")
        })?;
        let from = parse_mailbox(&from, "from")?;
        if to.is_empty() {
            return Err(EmailConfigError::new(
                "there is no recipient: set to (to=a@example.com,b@example.org)",
            ));
        }
        let to = to
            .iter()
            .map(|address| parse_mailbox(address, "to"))
            .collect::<Result<Vec<_>, _>>()?;
        let (user, password) = match credentials {
            Some((user, password)) => (Some(user), Some(password)),
            None => (None, None),
        };
        Ok(Self {
            host: bare,
            port,
            mode,
            tls,
            user,
            password,
            from,
            to,
            subject_prefix,
            attach,
            attachment_cap: DEFAULT_ATTACHMENT_CAP,
            timeout: Duration::from_secs(30),
            http: super::http_client(Duration::from_secs(30)),
        })
    }

    /// The largest image that is attached, in bytes (default 5 MiB); a larger
    /// one is linked instead.
    pub fn with_attachment_cap(mut self, bytes: u64) -> Self {
        self.attachment_cap = bytes;
        self
    }

    /// How long connecting, each SMTP command and a download may take (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self.http = super::http_client(timeout);
        self
    }

    /// The subject and bodies this notifier sends for `notification` when the
    /// image is linked, not attached.
    pub fn content(&self, notification: &Notification) -> EmailContent {
        compose(&self.subject_prefix, notification, None)
    }

    /// The transport for one attempt (no pool: each attempt is one
    /// connection, closed after it).
    fn transport(&self) -> AsyncSmtpTransport<Tokio1Executor> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(self.tls.clone())
            .timeout(Some(self.timeout));
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose_secret().to_string(),
            ));
        }
        builder.build()
    }

    /// Downloads the image to attach: `None` (and a link) when attaching is
    /// off, there is no shareable URL, or the image is larger than the cap or
    /// cannot be fetched.
    async fn download(&self, notification: &Notification) -> Option<Download> {
        let Notification::Stored(StoredImage {
            share_url: Some(url),
            location,
            ..
        }) = notification
        else {
            return None;
        };
        if !self.attach {
            return None;
        }
        let too_large = |size: u64| {
            tracing::info!(
                size,
                cap = self.attachment_cap,
                "email: the image is larger than the attachment cap; linking it"
            );
        };
        let mut response = match self.http.get(url).send().await {
            Ok(response) if response.status().is_success() => response,
            Ok(response) => {
                tracing::warn!(status = %response.status(), "email: cannot download the image to attach; linking it");
                return None;
            }
            Err(error) => {
                tracing::warn!(error = %error.without_url(), "email: cannot download the image to attach; linking it");
                return None;
            }
        };
        if let Some(size) = response.content_length()
            && size > self.attachment_cap
        {
            too_large(size);
            return None;
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .filter(|value| value.starts_with("image/"))
            .and_then(|value| ContentType::parse(value).ok());
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() as u64 > self.attachment_cap {
                        too_large(bytes.len() as u64);
                        return None;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(error = %error.without_url(), "email: the image's download broke off; linking it");
                    return None;
                }
            }
        }
        let filename = filename(location, url);
        let content_type = content_type.unwrap_or_else(|| guess_content_type(&filename));
        Some(Download {
            filename,
            content_type,
            bytes,
        })
    }

    /// The message for `notification`, with the image attached when downloaded.
    fn message(
        &self,
        notification: &Notification,
        download: Option<Download>,
    ) -> Result<Message, NotifyError> {
        let attached = download
            .as_ref()
            .map(|d| (d.filename.as_str(), d.bytes.len()));
        let content = compose(&self.subject_prefix, notification, attached);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(content.subject)
            .message_id(message_id(notification));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let alternative = MultiPart::alternative_plain_html(content.text, content.html);
        let body = match download {
            Some(download) => MultiPart::mixed().multipart(alternative).singlepart(
                Attachment::new(download.filename).body(download.bytes, download.content_type),
            ),
            None => alternative,
        };
        builder.multipart(body).map_err(|e| NotifyError::Rejected {
            notifier: "email",
            reason: format!("cannot build the message: {e}"),
            source: None,
        })
    }

    /// Removes the password (as is, and as AUTH PLAIN and LOGIN send it) from text.
    fn scrub(&self, text: &str) -> String {
        let Some(password) = &self.password else {
            return text.to_string();
        };
        let password = password.expose_secret();
        if password.is_empty() {
            return text.to_string();
        }
        let user = self.user.as_deref().unwrap_or_default();
        let mut text = text.replace(password, "[redacted]");
        for form in [
            base64(password.as_bytes()),
            base64(format!("\0{user}\0{password}").as_bytes()),
        ] {
            text = text.replace(&form, "[redacted]");
        }
        text
    }

    /// The typed error of a failed SMTP exchange, naming the setting to fix.
    fn smtp_error(&self, error: lettre::transport::smtp::Error) -> NotifyError {
        let detail = self.scrub(&error.to_string());
        let cause: Option<super::Cause> = Some(Box::new(SmtpCause(detail.clone())));
        let server = format!("{}:{}", self.host, self.port);
        let code = error.status().map(|code| code.to_string());
        let rejected = |reason: String| NotifyError::Rejected {
            notifier: "email",
            reason,
            source: Some(Box::new(SmtpCause(detail.clone()))),
        };
        if error.is_permanent() {
            let code = code.unwrap_or_default();
            let user = self.user.as_deref().unwrap_or_default();
            return rejected(match code.as_str() {
                "535" | "534" => format!(
                    "{server} refused the login of `{user}` ({detail}): check the SMTP user and password (the email credentials, `user:password@` in a mailto:// URL)"
                ),
                "530" => format!(
                    "{server} requires a login ({detail}): set the SMTP credentials (`user:password@` in a mailto:// URL)"
                ),
                "538" => format!(
                    "{server} logs in only over TLS ({detail}): use STARTTLS (mailto://) or implicit TLS (mailtos://)"
                ),
                _ => format!(
                    "{server} refused the message ({detail}): check the sender (from) and the recipients (to)"
                ),
            });
        }
        if error.is_transient() {
            return NotifyError::Unavailable {
                notifier: "email",
                reason: format!("{server} answered {detail}; a later attempt may work"),
                retry_after: None,
                source: cause,
            };
        }
        if error.is_client() {
            // lettre's own refusals: no STARTTLS offered, no usable login mechanism.
            let setting = if detail.contains("STARTTLS") {
                "the TLS mode: mailtos:// for implicit TLS, or a server that offers STARTTLS"
            } else if detail.contains("authentication") {
                "the SMTP credentials: the server offers no login mechanism lettre speaks (PLAIN, LOGIN, XOAUTH2)"
            } else {
                "the email settings"
            };
            return rejected(format!("{server}: {detail}; check {setting}"));
        }
        let reason = if error.is_timeout() {
            format!("{server} timed out")
        } else if error.is_tls() {
            format!(
                "TLS with {server} failed ({detail}); check the TLS mode (STARTTLS on 587, implicit TLS on 465) and the server's certificate"
            )
        } else {
            format!("cannot talk to {server} ({detail})")
        };
        NotifyError::Unavailable {
            notifier: "email",
            reason,
            retry_after: None,
            source: cause,
        }
    }
}

/// An SMTP failure's text, password removed, kept as an error's cause.
#[derive(Debug)]
struct SmtpCause(String);

impl std::fmt::Display for SmtpCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SmtpCause {}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[async_trait::async_trait]
impl Notifier for EmailNotifier {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn id(&self) -> NotifierId {
        let mut recipients: Vec<String> = self
            .to
            .iter()
            .map(|mailbox| mailbox.email.to_string().to_ascii_lowercase())
            .collect();
        recipients.sort();
        recipients.dedup();
        NotifierId::new(
            "email",
            &format!("{}:{}|{}", self.host, self.port, recipients.join(",")),
        )
    }

    /// Connects, and logs in when there are credentials; sends nothing.
    async fn check(&self) -> Result<(), NotifyError> {
        match self.transport().test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(NotifyError::Unavailable {
                notifier: "email",
                reason: format!("{}:{} closed the connection", self.host, self.port),
                retry_after: None,
                source: None,
            }),
            Err(error) => Err(self.smtp_error(error)),
        }
    }

    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        let download = self.download(notification).await;
        let message = self.message(notification, download)?;
        self.transport()
            .send(message)
            .await
            .map(drop)
            .map_err(|error| self.smtp_error(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_and_loopback() {
        assert_eq!(
            percent_decode("p%40ss%3Aw%2Fd").as_deref(),
            Some("p@ss:w/d")
        );
        assert_eq!(
            percent_decode("bad%zz").as_deref(),
            Some("bad%zz"),
            "kept as written"
        );
        assert_eq!(percent_decode("%FF"), None, "not UTF-8");
        for host in ["localhost", "127.0.0.1", "127.8.9.10", "[::1]", "::1"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["smtp.example.com", "10.0.0.1", "localhost.example.com"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn attachments_are_named_after_the_stored_object() {
        assert_eq!(
            filename("s3://images/2026/abc.jpg", "https://x/y.png?sig=1"),
            "abc.jpg"
        );
        assert_eq!(filename("", "https://x/dir/y.png?sig=1"), "y.png");
        assert_eq!(filename("", "https://x/"), "image.jpg");
        assert_eq!(filename("/tmp/../a b;c.webp", ""), "abc.webp");
    }
}
