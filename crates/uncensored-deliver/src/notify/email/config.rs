//! Email settings: [`EmailConfig`], built by hand or from an Apprise-style
//! `mailto://` / `mailtos://` URL ([`EmailNotifier::from_url`]).

use super::*;

/// How the connection to the SMTP server is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SmtpTls {
    /// Plain connection upgraded with `STARTTLS`, which the server must offer
    /// (port 587 by default; `mailto://`).
    StartTls,
    /// TLS from the first byte, also called SMTPS (port 465 by default; `mailtos://`).
    Implicit,
    /// No encryption: refused unless the server is on loopback (port 25 by default).
    None,
}

impl SmtpTls {
    /// The usual port of this mode: 587, 465 or 25.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        }
    }
}

/// Why email settings cannot be used. Never shows the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct EmailConfigError {
    reason: String,
}

impl EmailConfigError {
    pub(super) fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// What is wrong, naming the setting to change.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// The settings of an [`EmailNotifier`]: the server, how to reach it, who
/// sends and who receives. Build with [`EmailConfig::new`] and its methods.
#[derive(Clone)]
pub struct EmailConfig {
    pub(super) host: String,
    pub(super) port: Option<u16>,
    pub(super) tls: SmtpTls,
    pub(super) credentials: Option<(String, SecretString)>,
    pub(super) from: Option<String>,
    pub(super) to: Vec<String>,
    pub(super) subject_prefix: String,
    pub(super) attach: bool,
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("password", &self.credentials.as_ref().map(|_| "[redacted]"))
            .field("from", &self.from)
            .field("to", &self.to)
            .field("subject_prefix", &self.subject_prefix)
            .field("attach", &self.attach)
            .finish()
    }
}

impl EmailConfig {
    /// Settings for the SMTP server `host`, encrypted as `tls`, on the mode's
    /// usual port, without a login, sending link-only messages.
    pub fn new(host: impl Into<String>, tls: SmtpTls) -> Self {
        Self {
            host: host.into(),
            port: None,
            tls,
            credentials: None,
            from: None,
            to: Vec::new(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.into(),
            attach: false,
        }
    }

    /// The server's port (default: [`SmtpTls::default_port`]).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Logs in as `user` with `password` (kept as a secret).
    pub fn credentials(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user.into(), SecretString::from(password.into())));
        self
    }

    /// The sender, `me@example.com` or `Name <me@example.com>` (required).
    pub fn from(mut self, address: impl Into<String>) -> Self {
        self.from = Some(address.into());
        self
    }

    /// Adds a recipient (at least one is required).
    pub fn to(mut self, address: impl Into<String>) -> Self {
        self.to.push(address.into());
        self
    }

    /// What every subject starts with (default `[uncensored] `).
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }

    /// Attaches the image, downloaded from its shareable URL, when it is not
    /// larger than the cap ([`EmailNotifier::with_attachment_cap`]); otherwise,
    /// and without a shareable URL, the message links to it (default: off).
    pub fn attach(mut self, attach: bool) -> Self {
        self.attach = attach;
        self
    }
}

/// Whether `host` is this machine: `localhost` or a loopback address.
pub(super) fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl EmailNotifier {
    /// A notifier from an Apprise-style URL:
    /// `mailto://user:pass@host[:port]?to=a@x.org,b@y.org&from=me@x.org&attach=yes`
    /// (STARTTLS, port 587 by default) or `mailtos://…` (implicit TLS, port
    /// 465 by default). Recipients may also be path segments
    /// (`mailto://user:pass@host/a@x.org`). Without `from=`, a user name that
    /// is an address sends; without `to=`, the sender receives. `tls=none`
    /// (no encryption, port 25 by default) is only allowed for loopback hosts.
    /// User and password are percent-decoded. Errors never show the password.
    pub fn from_url(text: &str) -> Result<Self, EmailConfigError> {
        let invalid = |reason: &str| EmailConfigError::new(reason);
        let url = url::Url::parse(text).map_err(|_| {
            invalid("not a URL: use mailto://user:password@smtp.example.com?to=a@example.com")
        })?;
        let mode = match url.scheme() {
            "mailto" => SmtpTls::StartTls,
            "mailtos" => SmtpTls::Implicit,
            _ => {
                return Err(invalid(
                    "use mailto:// (STARTTLS) or mailtos:// (implicit TLS)",
                ));
            }
        };
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| {
                invalid("the SMTP host is missing: mailto://user:password@smtp.example.com")
            })?
            .to_string();
        let user = percent_decode(url.username())
            .ok_or_else(|| invalid("the user name is not valid percent-encoded UTF-8"))?;
        let password = url
            .password()
            .map(percent_decode)
            .map(|password| {
                password.ok_or_else(|| invalid("the password is not valid percent-encoded UTF-8"))
            })
            .transpose()?;
        let mut config = EmailConfig::new(host.clone(), mode);
        if let Some(port) = url.port() {
            config = config.port(port);
        }
        match (user.is_empty(), password) {
            (true, None) => {}
            (false, Some(password)) => config = config.credentials(user.clone(), password),
            (false, None) => {
                return Err(invalid(
                    "the password is missing: mailto://user:password@host (percent-encode `@`, `:` and `/` in it)",
                ));
            }
            (true, Some(_)) => {
                return Err(invalid(
                    "the user name is missing: mailto://user:password@host",
                ));
            }
        }
        let mut recipients: Vec<String> = url
            .path_segments()
            .into_iter()
            .flatten()
            .filter(|part| !part.is_empty())
            .map(|part| percent_decode(part).unwrap_or_default())
            .collect();
        let mut from = None;
        // Not `query_pairs`, which reads `+` as a space: `a+tag@example.org` is an address.
        for pair in url.query().unwrap_or_default().split('&') {
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (Some(key), Some(value)) = (percent_decode(key), percent_decode(value)) else {
                return Err(invalid("a setting is not valid percent-encoded UTF-8"));
            };
            match key.as_str() {
                "to" => recipients.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(str::to_string),
                ),
                "from" => from = Some(value.trim().to_string()),
                "attach" => {
                    config = config.attach(match value.to_ascii_lowercase().as_str() {
                        "yes" | "true" | "1" | "on" => true,
                        "no" | "false" | "0" | "off" => false,
                        _ => return Err(invalid("attach= takes yes or no")),
                    });
                }
                "tls" => {
                    if !value.eq_ignore_ascii_case("none") {
                        return Err(invalid(
                            "tls= only takes none (for a server on loopback); use mailto:// for STARTTLS and mailtos:// for implicit TLS",
                        ));
                    }
                    config.tls = SmtpTls::None;
                }
                other => {
                    return Err(EmailConfigError::new(format!(
                        "unknown setting `{}`: use to=, from=, attach= or tls=none",
                        clip(other, 40)
                    )));
                }
            }
        }
        let from = match from {
            Some(from) => from,
            None if user.contains('@') => user,
            None => {
                return Err(invalid(
                    "the sender is missing: add from=me@example.com (or log in with a user name that is an address)",
                ));
            }
        };
        if recipients.is_empty() {
            recipients.push(from.clone());
        }
        let mut config = config.from(from);
        for recipient in recipients {
            config = config.to(recipient);
        }
        Self::new(config)
    }
}

pub(super) fn parse_mailbox(address: &str, setting: &str) -> Result<Mailbox, EmailConfigError> {
    address.trim().parse::<Mailbox>().map_err(|_| {
        EmailConfigError::new(format!(
            "{setting}: `{}` is not an email address",
            clip(address, 100)
        ))
    })
}

/// `text` with its `%XX` escapes decoded; `None` when that is not UTF-8.
pub(super) fn percent_decode(text: &str) -> Option<String> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}
