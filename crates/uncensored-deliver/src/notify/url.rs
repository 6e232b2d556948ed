//! Notifiers chosen by URL, in the forms Apprise users know:
//!
//! | URL | notifier |
//! |---|---|
//! | `slack://TOKEN_A/TOKEN_B/TOKEN_C` | Slack incoming webhook `https://hooks.slack.com/services/A/B/C` |
//! | `discord://WEBHOOK_ID/WEBHOOK_TOKEN` | Discord webhook |
//! | `mailto://user:pass@smtp.example.com?to=a@example.com` | email over SMTP with STARTTLS |
//! | `mailtos://user:pass@smtp.example.com?to=a@example.com` | email over SMTP with implicit TLS |
//! | `json://host/path`, `jsons://host/path` | JSON signed per Standard Webhooks, over http / https |
//!
//! plus the older `slack:https://…`, `discord:https://…` and `webhook:https://…`
//! forms. These URLs hold secrets: [`NotifierUrl::redacted`] is the only
//! way they are shown.

use std::sync::Arc;

use secrecy::{ExposeSecret as _, SecretString};

use super::Notifier;

/// What a notification URL needs besides itself.
#[derive(Default)]
pub struct NotifierOptions {
    /// The Standard Webhooks signing secret (`whsec_…`) for `json://`,
    /// `jsons://` and `webhook:` URLs.
    pub webhook_secret: Option<SecretString>,
    /// Previous signing secrets, signed with too while a rotation lasts
    /// (see [`SignedWebhookNotifier::with_previous`](super::SignedWebhookNotifier::with_previous)).
    pub webhook_previous_secrets: Vec<SecretString>,
    /// Where the signing secret comes from, named in errors
    /// (default `UNCENSORED_WEBHOOK_SECRET`).
    pub webhook_secret_setting: Option<&'static str>,
}

impl std::fmt::Debug for NotifierOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifierOptions")
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "webhook_previous_secrets",
                &self.webhook_previous_secrets.len(),
            )
            .finish()
    }
}

/// Why a notification URL cannot be used. Never shows the URL's secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifierUrlError {
    /// The URL is malformed for its kind.
    #[error("notification URL {shown}: {reason}")]
    Invalid {
        /// The URL with its secrets hidden.
        shown: String,
        /// What is wrong and what the form is.
        reason: String,
    },
    /// The kind is unknown.
    #[error(
        "notification URL {shown}: unknown kind; use slack://, discord://, mailto://, mailtos://, json:// or jsons:// (or slack:URL, webhook:URL)"
    )]
    UnknownKind {
        /// The URL with its secrets hidden.
        shown: String,
    },
    /// A signing secret is needed and was not given.
    #[error("notification URL {shown} needs a signing secret: set {setting} (whsec_…)")]
    MissingSecret {
        /// The URL with its secrets hidden.
        shown: String,
        /// The setting to set.
        setting: &'static str,
    },
    /// This build does not include the kind.
    #[error(
        "notification URL {shown}: this build has no {kind} notifier (the `{feature}` feature)"
    )]
    NotBuilt {
        /// The URL with its secrets hidden.
        shown: String,
        /// The kind.
        kind: &'static str,
        /// The cargo feature of uncensored-deliver.
        feature: &'static str,
    },
}

/// A parsed notification URL, secret until built.
pub struct NotifierUrl {
    text: SecretString,
    shown: String,
}

impl std::fmt::Debug for NotifierUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NotifierUrl").field(&self.shown).finish()
    }
}

impl std::fmt::Display for NotifierUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl NotifierUrl {
    /// Keeps a notification URL; nothing is checked until [`NotifierUrl::build`].
    pub fn new(text: impl Into<String>) -> Self {
        let text: String = text.into();
        Self {
            shown: Self::redacted(&text),
            text: SecretString::from(text),
        }
    }

    /// A URL as it may be shown: its kind and host, nothing else
    /// (`slack://…`, `mailto://smtp.example.com/…`, `json://hooks.example.com/…`).
    ///
    /// ```
    /// use uncensored_deliver::notify::NotifierUrl;
    /// assert_eq!(NotifierUrl::redacted("slack://T000/B000/XXXX"), "slack://…");
    /// assert_eq!(NotifierUrl::redacted("mailto://me:hunter2@smtp.example.com?to=a@b.c"), "mailto://smtp.example.com/…");
    /// assert_eq!(NotifierUrl::redacted("slack:https://hooks.slack.com/services/T/B/X"), "slack:https://hooks.slack.com/…");
    /// ```
    pub fn redacted(text: &str) -> String {
        let (kind, rest) = match text.split_once("://") {
            Some((kind, rest)) if !kind.contains(':') => (format!("{kind}://"), rest),
            _ => match text.split_once(':') {
                Some((kind, url)) => match url.split_once("://") {
                    Some((scheme, rest)) => (format!("{kind}:{scheme}://"), rest),
                    None => return format!("{kind}:…"),
                },
                None => return "…".into(),
            },
        };
        // Host only for kinds whose host is not a secret.
        let host_is_public = matches!(
            kind.as_str(),
            "mailto://" | "mailtos://" | "json://" | "jsons://"
        ) || kind.ends_with(":http://")
            || kind.ends_with(":https://");
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        if host_is_public && !host.is_empty() {
            format!("{kind}{host}/…")
        } else {
            format!("{kind}…")
        }
    }

    /// Builds the notifier the URL names.
    pub fn build(&self, options: &NotifierOptions) -> Result<Arc<dyn Notifier>, NotifierUrlError> {
        let text = self.text.expose_secret();
        let shown = || self.shown.clone();
        let invalid = |reason: &str| NotifierUrlError::Invalid {
            shown: shown(),
            reason: reason.into(),
        };
        let (kind, rest) =
            split_kind(text).ok_or_else(|| NotifierUrlError::UnknownKind { shown: shown() })?;
        let _ = (&invalid, &rest, options);
        match kind {
            #[cfg(feature = "slack")]
            Kind::Slack { legacy } => {
                let url = if legacy {
                    http_url(rest)
                        .ok_or_else(|| invalid("use slack:https://hooks.slack.com/services/…"))?
                } else {
                    let tokens = path_tokens(rest);
                    if tokens.len() != 3 {
                        return Err(invalid("use slack://TOKEN_A/TOKEN_B/TOKEN_C"));
                    }
                    format!("https://hooks.slack.com/services/{}", tokens.join("/"))
                };
                Ok(Arc::new(super::SlackNotifier::new(url)))
            }
            #[cfg(feature = "webhook-notify")]
            Kind::Json { legacy, secure } => {
                let url = if legacy {
                    http_url(rest).ok_or_else(|| invalid("use webhook:https://host/path"))?
                } else {
                    let scheme = if secure { "https" } else { "http" };
                    let url = format!("{scheme}://{rest}");
                    http_url(&url)
                        .ok_or_else(|| invalid("use json://host/path or jsons://host/path"))?
                };
                let setting = options
                    .webhook_secret_setting
                    .unwrap_or("UNCENSORED_WEBHOOK_SECRET");
                let secret = options.webhook_secret.as_ref().ok_or_else(|| {
                    NotifierUrlError::MissingSecret {
                        shown: shown(),
                        setting,
                    }
                })?;
                let mut notifier = super::SignedWebhookNotifier::new(url, secret.expose_secret())
                    .map_err(|_| {
                    invalid(&format!("{setting} is not `whsec_` followed by base64"))
                })?;
                for previous in &options.webhook_previous_secrets {
                    notifier = notifier.with_previous(previous.expose_secret()).map_err(|_| {
                        invalid(&format!(
                            "a previous secret of {setting} is not `whsec_` followed by base64, or there are too many"
                        ))
                    })?;
                }
                Ok(Arc::new(notifier))
            }
            #[cfg(feature = "discord")]
            Kind::Discord { legacy } => {
                if legacy {
                    let url = http_url(rest)
                        .ok_or_else(|| invalid("use discord:https://discord.com/api/webhooks/…"))?;
                    Ok(Arc::new(super::DiscordNotifier::new(url)))
                } else {
                    let tokens = path_tokens(rest);
                    if tokens.len() != 2 {
                        return Err(invalid("use discord://WEBHOOK_ID/WEBHOOK_TOKEN"));
                    }
                    Ok(Arc::new(super::DiscordNotifier::from_parts(
                        tokens[0], tokens[1],
                    )))
                }
            }
            #[cfg(feature = "email")]
            Kind::Email => super::EmailNotifier::from_url(text)
                .map(|n| Arc::new(n) as Arc<dyn Notifier>)
                .map_err(|e| invalid(&e.to_string())),
            #[allow(unreachable_patterns)]
            other => Err(NotifierUrlError::NotBuilt {
                shown: shown(),
                kind: other.name(),
                feature: other.feature(),
            }),
        }
    }
}

#[derive(Debug, Clone, Copy)]
// Which fields are read depends on the notifier features compiled in.
#[allow(dead_code)]
enum Kind {
    Slack { legacy: bool },
    Discord { legacy: bool },
    Email,
    Json { legacy: bool, secure: bool },
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Slack { .. } => "Slack",
            Kind::Discord { .. } => "Discord",
            Kind::Email => "email",
            Kind::Json { .. } => "signed webhook",
        }
    }

    fn feature(self) -> &'static str {
        match self {
            Kind::Slack { .. } => "slack",
            Kind::Discord { .. } => "discord",
            Kind::Email => "email",
            Kind::Json { .. } => "webhook-notify",
        }
    }
}

/// The kind of a URL and what follows its kind.
fn split_kind(text: &str) -> Option<(Kind, &str)> {
    if let Some((scheme, rest)) = text.split_once("://")
        && !scheme.contains(':')
    {
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "slack" => Kind::Slack { legacy: false },
            "discord" => Kind::Discord { legacy: false },
            "mailto" | "mailtos" => Kind::Email,
            "json" => Kind::Json {
                legacy: false,
                secure: false,
            },
            "jsons" => Kind::Json {
                legacy: false,
                secure: true,
            },
            _ => return None,
        };
        return Some((kind, rest));
    }
    let (kind, rest) = text.split_once(':')?;
    let kind = match kind.to_ascii_lowercase().as_str() {
        "slack" => Kind::Slack { legacy: true },
        "discord" => Kind::Discord { legacy: true },
        "webhook" => Kind::Json {
            legacy: true,
            secure: false,
        },
        _ => return None,
    };
    Some((kind, rest))
}

/// The non-empty `/`-separated parts of a path (query and fragment dropped).
#[cfg_attr(not(any(feature = "slack", feature = "discord")), allow(dead_code))]
fn path_tokens(rest: &str) -> Vec<&str> {
    rest.split(['?', '#'])
        .next()
        .unwrap_or_default()
        .split('/')
        .filter(|part| !part.is_empty())
        .collect()
}

/// `text` when it is an absolute http(s) URL with a host.
#[cfg_attr(
    not(any(feature = "slack", feature = "webhook-notify")),
    allow(dead_code)
)]
fn http_url(text: &str) -> Option<String> {
    let url = url::Url::parse(text).ok()?;
    (matches!(url.scheme(), "http" | "https") && url.host_str().is_some_and(|h| !h.is_empty()))
        .then(|| text.to_string())
}

#[cfg(all(
    test,
    feature = "slack",
    feature = "webhook-notify",
    feature = "discord",
    feature = "email"
))]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn options() -> NotifierOptions {
        NotifierOptions {
            webhook_secret: Some(SecretString::from(SECRET)),
            webhook_previous_secrets: Vec::new(),
            webhook_secret_setting: None,
        }
    }

    #[test]
    fn apprise_and_older_forms_build_their_notifiers() {
        for (url, kind) in [
            ("slack://T000/B000/XXXXsecret", "slack"),
            (
                "slack:https://hooks.slack.com/services/T/B/XXXXsecret",
                "slack",
            ),
            ("json://hooks.example.com/images", "webhook"),
            ("jsons://hooks.example.com/images", "webhook"),
            ("webhook:https://hooks.example.com/images", "webhook"),
            ("discord://1234/XXXXsecret", "discord"),
            (
                "discord:https://discord.com/api/webhooks/1234/XXXXsecret",
                "discord",
            ),
            (
                "mailto://me:XXXXsecret@smtp.example.com?to=a@example.com&from=me@example.com",
                "email",
            ),
            (
                "mailtos://me:XXXXsecret@smtp.example.com?to=a@example.com&from=me@example.com",
                "email",
            ),
        ] {
            let notifier = NotifierUrl::new(url).build(&options()).unwrap();
            assert_eq!(notifier.kind(), kind, "{url}");
            assert!(!format!("{notifier:?}").contains("XXXXsecret"));
        }
        // The Apprise form and the full URL are one destination.
        let a = NotifierUrl::new("slack://T/B/C").build(&options()).unwrap();
        let b = NotifierUrl::new("slack:https://hooks.slack.com/services/T/B/C")
            .build(&options())
            .unwrap();
        assert_eq!(a.id(), b.id());
    }

    #[test]
    fn mistakes_are_named_without_the_secret() {
        for (url, wanted) in [
            ("slack://only/two", "slack://TOKEN_A/TOKEN_B/TOKEN_C"),
            ("slack:not-a-url-XXXXsecret", "slack:https://"),
            ("teams://XXXXsecret/x", "unknown kind"),
            ("XXXXsecret", "unknown kind"),
            ("json://", "json://host/path"),
            (
                "discord://only-one-XXXXsecret",
                "discord://WEBHOOK_ID/WEBHOOK_TOKEN",
            ),
            ("mailto://me:XXXXsecret@smtp.example.com?nope=1", "nope"),
        ] {
            let error = NotifierUrl::new(url).build(&options()).unwrap_err();
            let text = error.to_string();
            assert!(text.contains(wanted), "{url}: {text}");
            assert!(!text.contains("XXXXsecret"), "{url}: {text}");
        }
        let error = NotifierUrl::new("json://hooks.example.com/x")
            .build(&NotifierOptions::default())
            .unwrap_err();
        assert!(
            matches!(
                error,
                NotifierUrlError::MissingSecret {
                    setting: "UNCENSORED_WEBHOOK_SECRET",
                    ..
                }
            ),
            "{error}"
        );
    }
}
