//! The API's job callbacks, without any web framework: signed callback URLs
//! and the parsing of a callback's payload.
//!
//! The API does not sign its callbacks, so nothing in a payload is trusted: it
//! only says *which* job to read, and the job is then read with your own key.
//! What a receiver can trust is the URL it handed out. [`CallbackSecret`]
//! makes a URL per job, `BASE/callback/NONCE.TAG`, where `NONCE` is 128
//! random bits and `TAG` is HMAC-SHA256 of the nonce under the service's
//! secret (both lowercase hex). A receiver holding the same secret checks the
//! tag in constant time, with no state: a forged or guessed URL is refused
//! before any read of the API or any write, on every replica that shares the
//! secret and across restarts.
//!
//! **Named URLs**: a job that already has a durable name (a batch line's
//! journal entry) can be given the URL of that name instead
//! ([`CallbackSecret::callback_url_named`]), the same on every submission
//! of it, so that a submission sent again after a crash carries the same
//! URL as the first. Its tag is made and checked the same way.
//!
//! **Rotation**: a secret may carry previous ones
//! ([`CallbackSecret::with_previous`]). New URLs are signed with the current
//! secret; a URL signed with any of them verifies, so jobs in flight when the
//! secret changes are still delivered. Drop a previous secret once its URLs
//! can no longer arrive (the API's retries and the service's recovery are
//! over: a day is ample).
//!
//! ```
//! use uncensored::callback::{CallbackSecret, parse_callback};
//!
//! let secret = CallbackSecret::new("0123456789abcdef0123456789abcdef").unwrap();
//! let signed = secret.callback_url("https://hooks.example.com").unwrap();
//! assert!(signed.url.starts_with("https://hooks.example.com/callback/"));
//!
//! // On the receiving side: the path says which nonce, and the tag proves we made it.
//! let path = signed.url.trim_start_matches("https://hooks.example.com");
//! let nonce = secret.verify_path(path).unwrap();
//! assert_eq!(nonce, signed.nonce);
//! assert!(secret.verify_path("/callback/00.00").is_err());
//!
//! let headers = reqwest::header::HeaderMap::new();
//! let callback = parse_callback(&headers, br#"{"request_id":"job-1","status":"success","result":{}}"#).unwrap();
//! assert_eq!(callback.request_id, "job-1");
//! ```

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::download::hex;

/// A parsed callback payload. Unsigned: use it to know *which* job to read,
/// never as the job's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    /// The job the callback is about.
    pub request_id: String,
    /// The outcome as the callback states it (`success` in the API's example).
    pub status: String,
    /// The undocumented `result` object, as sent.
    pub result: Map<String, Value>,
    /// When it was sent.
    pub timestamp: Option<DateTime<Utc>>,
}

/// Why a callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// The body is not JSON, or not the callback's shape.
    #[error("not a callback payload: {0}")]
    Malformed(String),
    /// The path is not a signed callback path (`/callback/NONCE.TAG`, hex).
    #[error("not a signed callback URL: expected /callback/NONCE.TAG")]
    NotSigned,
    /// The URL's tag was not made with this service's secret.
    #[error("the callback URL's signature does not verify")]
    BadSignature,
    /// The URL's nonce was already used for another job.
    #[error("this callback URL belongs to another job than {got}")]
    WrongJob {
        /// The job the payload names.
        got: String,
    },
}

impl CallbackError {
    /// The HTTP status a receiver answers a refused callback with.
    pub fn status(&self) -> StatusCode {
        match self {
            CallbackError::Malformed(_) => StatusCode::BAD_REQUEST,
            CallbackError::NotSigned => StatusCode::NOT_FOUND,
            CallbackError::BadSignature => StatusCode::UNAUTHORIZED,
            CallbackError::WrongJob { .. } => StatusCode::CONFLICT,
        }
    }
}

/// Parses a callback request, independent of any web framework.
pub fn parse_callback(headers: &HeaderMap, body: &[u8]) -> Result<Callback, CallbackError> {
    if let Some(kind) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let essence = kind.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(CallbackError::Malformed(format!(
                "content type {essence:?} is not application/json"
            )));
        }
    }
    let payload: uncensored_api::types::WebhookPayload =
        serde_json::from_slice(body).map_err(|e| CallbackError::Malformed(e.to_string()))?;
    if payload.request_id.is_empty() {
        return Err(CallbackError::Malformed("empty request_id".into()));
    }
    Ok(Callback {
        request_id: payload.request_id,
        status: payload.status,
        result: payload.result,
        timestamp: payload.timestamp,
    })
}

/// Why a secret or a base URL cannot be used for signing. The message never
/// contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// The secret is too short to resist guessing.
    #[error(
        "the callback secret has {length} characters; it needs at least {MIN_SECRET_CHARS} (make one with `openssl rand -hex 32`)"
    )]
    WeakSecret {
        /// How many characters it has.
        length: usize,
    },
    /// More previous secrets than [`MAX_PREVIOUS_SECRETS`].
    #[error("at most {max} previous callback secrets are kept (each costs one HMAC per callback)")]
    TooManyPrevious {
        /// The most there may be.
        max: usize,
    },
    /// A name given to [`CallbackSecret::callback_url_named`] cannot be a
    /// nonce.
    #[error("a callback URL cannot be named {name:?}: {problem}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The base URL cannot carry a callback path.
    #[error("the callback base URL {base:?} {problem}")]
    InvalidBase {
        /// The URL as given.
        base: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// The fewest characters a [`CallbackSecret`] may have.
pub const MIN_SECRET_CHARS: usize = 32;
/// The most previous secrets a [`CallbackSecret`] keeps.
pub const MAX_PREVIOUS_SECRETS: usize = 8;
/// Random bytes in a nonce (128 bits).
const NONCE_BYTES: usize = 16;
/// The longest nonce: a random one, or a name
/// ([`CallbackSecret::callback_url_named`]).
pub const MAX_NONCE_CHARS: usize = 96;
/// Bytes of an HMAC-SHA256 tag.
const TAG_BYTES: usize = 32;

/// The secret that signs and verifies callback URLs. Its bytes are the HMAC
/// key as given (a hex string from `openssl rand -hex 32` is used as text,
/// not decoded). It may carry previous secrets that still verify
/// ([`with_previous`](Self::with_previous)). None of them ever shows in
/// `Debug`, and it has no `Display`.
#[derive(Clone)]
pub struct CallbackSecret {
    secret: SecretString,
    previous: Vec<SecretString>,
}

impl std::fmt::Debug for CallbackSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CallbackSecret([redacted], {} previous)",
            self.previous.len()
        )
    }
}

/// A fresh signed callback URL and the nonce it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCallbackUrl {
    /// `BASE/callback/NONCE.TAG`: give it to the API as the job's `callback_url`.
    pub url: String,
    /// The nonce (not secret; it names the URL).
    pub nonce: CallbackNonce,
}

/// A nonce that was made, or verified, with a [`CallbackSecret`]: 32
/// random lowercase hex characters, or a name its signer chose (1 to
/// [`MAX_NONCE_CHARS`] of `a-z`, `0-9` and `-`, never of the random
/// shape). Only this module makes one, so holding one means its tag
/// verified.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallbackNonce(String);

impl CallbackNonce {
    /// The nonce as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it is a random nonce ([`CallbackSecret::callback_url`]),
    /// not a name ([`CallbackSecret::callback_url_named`]).
    pub fn is_random(&self) -> bool {
        is_random_nonce(&self.0)
    }
}

/// Whether `nonce`, a nonce as text (kept in a journal), is of the shape of
/// a random nonce ([`CallbackSecret::callback_url`]) rather than a name
/// ([`CallbackSecret::callback_url_named`]): what
/// [`CallbackNonce::is_random`] says of a verified one.
pub fn is_random_nonce(nonce: &str) -> bool {
    random_shape(nonce)
}

/// 32 lowercase hex characters: the shape of a random nonce.
fn random_shape(nonce: &str) -> bool {
    nonce.len() == 2 * NONCE_BYTES && unhex(nonce).is_some()
}

/// Whether `nonce` can be a nonce: 1 to [`MAX_NONCE_CHARS`] of `a-z`,
/// `0-9` and `-` (a random nonce is of this shape too).
fn nonce_shape(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce.len() <= MAX_NONCE_CHARS
        && nonce
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

impl std::fmt::Display for CallbackNonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl CallbackSecret {
    /// A secret from its text; at least [`MIN_SECRET_CHARS`] characters.
    pub fn new(secret: impl Into<String>) -> Result<Self, SigningError> {
        Ok(Self {
            secret: strong(secret.into())?,
            previous: Vec::new(),
        })
    }

    /// Adds a previous secret: URLs signed with it still verify, new ones
    /// are signed with the current secret only. At least
    /// [`MIN_SECRET_CHARS`] characters; at most [`MAX_PREVIOUS_SECRETS`] of
    /// them. A previous secret equal to the current one is ignored.
    pub fn with_previous(mut self, previous: impl Into<String>) -> Result<Self, SigningError> {
        let previous = strong(previous.into())?;
        let known = std::iter::once(&self.secret)
            .chain(&self.previous)
            .any(|s| s.expose_secret() == previous.expose_secret());
        if known {
            return Ok(self);
        }
        if self.previous.len() >= MAX_PREVIOUS_SECRETS {
            return Err(SigningError::TooManyPrevious {
                max: MAX_PREVIOUS_SECRETS,
            });
        }
        self.previous.push(previous);
        Ok(self)
    }

    /// How many previous secrets still verify.
    pub fn previous_count(&self) -> usize {
        self.previous.len()
    }

    /// The secret's text, for masking it or handing it on. Never log it.
    pub fn expose_secret(&self) -> &str {
        self.secret.expose_secret()
    }

    /// A new signed URL for one job: `BASE/callback/NONCE.TAG`. A `base`
    /// whose path already ends in `/callback` gets `/NONCE.TAG` only, so
    /// `https://host` and `https://host/callback` name the same service.
    /// `base` must be an absolute http(s) URL without query or fragment.
    pub fn callback_url(&self, base: &str) -> Result<SignedCallbackUrl, SigningError> {
        self.signed(base, CallbackNonce(hex(&random_nonce())))
    }

    /// The signed URL named `name`: `BASE/callback/NAME.TAG`, the same
    /// every time for one name, base and current secret. For a caller whose
    /// job already has a durable name (a batch line's journal entry), so
    /// that every submission of it carries the same URL. `name` is 1 to
    /// [`MAX_NONCE_CHARS`] of `a-z`, `0-9` and `-`, and not 32 hex
    /// characters (the shape of a random nonce):
    /// [`SigningError::InvalidName`] otherwise.
    pub fn callback_url_named(
        &self,
        base: &str,
        name: &str,
    ) -> Result<SignedCallbackUrl, SigningError> {
        let invalid = |problem: &str| SigningError::InvalidName {
            name: name.chars().take(MAX_NONCE_CHARS).collect(),
            problem: problem.to_string(),
        };
        if !nonce_shape(name) {
            return Err(invalid(&format!(
                "a name is 1 to {MAX_NONCE_CHARS} of a-z, 0-9 and -"
            )));
        }
        if random_shape(name) {
            return Err(invalid("32 hex characters are the shape of a random nonce"));
        }
        self.signed(base, CallbackNonce(name.to_string()))
    }

    /// `BASE/callback/NONCE.TAG` for `nonce`, once `base` is checked.
    fn signed(&self, base: &str, nonce: CallbackNonce) -> Result<SignedCallbackUrl, SigningError> {
        let invalid = |problem: &str| SigningError::InvalidBase {
            base: base.to_string(),
            problem: problem.to_string(),
        };
        let parsed = url::Url::parse(base).map_err(|e| invalid(&format!("is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("must be an http or https URL"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("must have no query or fragment"));
        }
        let signed = format!("{nonce}.{}", hex(&tag(&self.secret, nonce.as_str())));
        let root = base.trim_end_matches('/');
        let url = if parsed.path().trim_end_matches('/').ends_with("/callback") {
            format!("{root}/{signed}")
        } else {
            format!("{root}/callback/{signed}")
        };
        Ok(SignedCallbackUrl { url, nonce })
    }

    /// Checks a signed path segment, `NONCE.TAG`, and returns its nonce. The
    /// tag is compared in constant time with the current secret's and each
    /// previous secret's (all of them, whichever matches); a segment of the
    /// wrong shape is [`CallbackError::NotSigned`], a tag that verifies
    /// under none of them [`CallbackError::BadSignature`].
    pub fn verify(&self, signed: &str) -> Result<CallbackNonce, CallbackError> {
        let (nonce, tag) = signed.split_once('.').ok_or(CallbackError::NotSigned)?;
        let nonce_ok = nonce_shape(nonce);
        let tag = unhex(tag).filter(|t| t.len() == TAG_BYTES);
        let (true, Some(tag)) = (nonce_ok, tag) else {
            return Err(CallbackError::NotSigned);
        };
        let verified = std::iter::once(&self.secret)
            .chain(&self.previous)
            .fold(false, |found, secret| {
                mac(secret, nonce).verify_slice(&tag).is_ok() | found
            });
        if !verified {
            return Err(CallbackError::BadSignature);
        }
        Ok(CallbackNonce(nonce.to_string()))
    }

    /// Checks a request path that ends in `/callback/NONCE.TAG` (any prefix
    /// before it) and returns its nonce.
    pub fn verify_path(&self, path: &str) -> Result<CallbackNonce, CallbackError> {
        let (before, signed) = path.rsplit_once('/').ok_or(CallbackError::NotSigned)?;
        if !before.ends_with("/callback") && before != "callback" {
            return Err(CallbackError::NotSigned);
        }
        self.verify(signed)
    }
}

/// `secret`, when it has at least [`MIN_SECRET_CHARS`] characters.
fn strong(secret: String) -> Result<SecretString, SigningError> {
    let length = secret.chars().count();
    if length < MIN_SECRET_CHARS {
        return Err(SigningError::WeakSecret { length });
    }
    Ok(SecretString::from(secret))
}

fn mac(secret: &SecretString, nonce: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(nonce.as_bytes());
    mac
}

fn tag(secret: &SecretString, nonce: &str) -> [u8; TAG_BYTES] {
    mac(secret, nonce).finalize().into_bytes().into()
}

/// 128 bits from the operating system's generator (through two v4 UUIDs,
/// 244 random bits hashed down, so that no fixed version bits remain).
fn random_nonce() -> [u8; NONCE_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update(uuid::Uuid::new_v4().as_bytes());
    hasher.update(uuid::Uuid::new_v4().as_bytes());
    let digest = hasher.finalize();
    let mut nonce = [0u8; NONCE_BYTES];
    nonce.copy_from_slice(&digest[..NONCE_BYTES]);
    nonce
}

/// Lowercase hex to bytes; `None` for anything else (uppercase included, so
/// that a URL has one spelling).
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t";

    #[test]
    fn payloads_are_parsed_or_refused() {
        let headers = HeaderMap::new();
        let ok = parse_callback(&headers, br#"{"request_id":"j1","status":"success","result":{"x":1},"timestamp":"2026-05-09T10:30:05Z"}"#)
            .unwrap();
        assert_eq!(
            (ok.request_id.as_str(), ok.status.as_str()),
            ("j1", "success")
        );
        assert!(matches!(
            parse_callback(&headers, b"not json"),
            Err(CallbackError::Malformed(_))
        ));
        assert!(matches!(
            parse_callback(&headers, br#"{"status":"success"}"#),
            Err(CallbackError::Malformed(_))
        ));
        let mut text = HeaderMap::new();
        text.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(matches!(
            parse_callback(&text, br#"{"request_id":"j","status":"s"}"#),
            Err(CallbackError::Malformed(_))
        ));
    }

    #[test]
    fn signed_urls_verify_and_forgeries_do_not() {
        let secret = CallbackSecret::new(SECRET).unwrap();
        let a = secret.callback_url("https://hooks.example.com/").unwrap();
        let b = secret.callback_url("https://hooks.example.com").unwrap();
        assert_ne!(a.nonce, b.nonce);
        let signed = a.url.rsplit('/').next().unwrap();
        assert_eq!(signed.len(), 32 + 1 + 64);
        assert_eq!(
            a.url,
            format!("https://hooks.example.com/callback/{signed}")
        );
        assert_eq!(secret.verify(signed), Ok(a.nonce.clone()));
        assert_eq!(
            secret.verify_path(&format!("/callback/{signed}")),
            Ok(a.nonce.clone())
        );
        assert_eq!(
            secret.verify_path(&format!("/hooks/callback/{signed}")),
            Ok(a.nonce.clone())
        );

        // Another secret, a changed nonce, a changed tag: bad signatures.
        let other = CallbackSecret::new(SECRET.to_uppercase()).unwrap();
        assert_eq!(other.verify(signed), Err(CallbackError::BadSignature));
        let (nonce, tag) = signed.split_once('.').unwrap();
        let flipped = |text: &str| {
            let mut bytes = text.as_bytes().to_vec();
            bytes[0] = if bytes[0] == b'0' { b'1' } else { b'0' };
            String::from_utf8(bytes).unwrap()
        };
        assert_eq!(
            secret.verify(&format!("{}.{tag}", flipped(nonce))),
            Err(CallbackError::BadSignature)
        );
        assert_eq!(
            secret.verify(&format!("{nonce}.{}", flipped(tag))),
            Err(CallbackError::BadSignature)
        );
        // The wrong shape is not a signed URL at all.
        for bad in [
            "",
            "nodot",
            &format!("{nonce}.{}", &tag[..10]),
            &format!("{}.{tag}", nonce.to_uppercase()),
            &format!("{nonce}X.{tag}"),
            &format!("{nonce}_.{tag}"),
        ] {
            assert_eq!(secret.verify(bad), Err(CallbackError::NotSigned), "{bad}");
        }
        assert_eq!(
            secret.verify_path(&format!("/elsewhere/{signed}")),
            Err(CallbackError::NotSigned)
        );
        assert_eq!(
            CallbackError::BadSignature.status(),
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn a_base_that_names_the_callback_path_is_not_doubled() {
        let secret = CallbackSecret::new(SECRET).unwrap();
        let url = secret
            .callback_url("http://127.0.0.1:8787/callback")
            .unwrap()
            .url;
        assert!(url.starts_with("http://127.0.0.1:8787/callback/"), "{url}");
        assert_eq!(url.matches("callback").count(), 1);
        let prefixed = secret.callback_url("https://h.example/hooks").unwrap().url;
        assert!(prefixed.starts_with("https://h.example/hooks/callback/"));
        for base in ["not a url", "ftp://h.example", "https://h.example/?a=b"] {
            assert!(
                matches!(
                    secret.callback_url(base),
                    Err(SigningError::InvalidBase { .. })
                ),
                "{base}"
            );
        }
    }

    #[test]
    fn the_secret_never_shows() {
        let short = CallbackSecret::new("short-secret").unwrap_err();
        assert_eq!(short, SigningError::WeakSecret { length: 12 });
        assert!(!short.to_string().contains("short-secret"), "{short}");
        let secret = CallbackSecret::new(SECRET).unwrap();
        let shown = format!("{secret:?} {:?}", secret.callback_url("https://h.example"));
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert_eq!(secret.expose_secret(), SECRET);
        let rotated = CallbackSecret::new(SECRET.to_uppercase())
            .unwrap()
            .with_previous(SECRET)
            .unwrap();
        let shown = format!("{rotated:?}");
        assert!(!shown.to_lowercase().contains("s3cr3t"), "{shown}");
        assert!(shown.contains("1 previous"), "{shown}");
        let weak = rotated.clone().with_previous("weak-previous").unwrap_err();
        assert!(!weak.to_string().contains("weak-previous"), "{weak}");
    }

    #[test]
    fn a_url_signed_before_a_rotation_verifies_after_it() {
        const NEW: &str = "n3w-s3cr3t-n3w-s3cr3t-n3w-s3cr3t-n3w";
        let old = CallbackSecret::new(SECRET).unwrap();
        let before = old.callback_url("https://h.example").unwrap();
        let signed_before = before.url.rsplit('/').next().unwrap().to_string();

        let rotated = CallbackSecret::new(NEW)
            .unwrap()
            .with_previous(SECRET)
            .unwrap();
        assert_eq!(rotated.verify(&signed_before), Ok(before.nonce));
        // New URLs use the new secret only: the old one alone refuses them.
        let after = rotated.callback_url("https://h.example").unwrap();
        let signed_after = after.url.rsplit('/').next().unwrap();
        assert_eq!(rotated.verify(signed_after), Ok(after.nonce.clone()));
        assert_eq!(old.verify(signed_after), Err(CallbackError::BadSignature));
        let new_only = CallbackSecret::new(NEW).unwrap();
        assert_eq!(new_only.verify(signed_after), Ok(after.nonce));
        // Once the old secret is dropped, its URLs stop verifying.
        assert_eq!(
            new_only.verify(&signed_before),
            Err(CallbackError::BadSignature)
        );

        // The current secret as a previous one is ignored; the count is capped.
        let same = CallbackSecret::new(NEW)
            .unwrap()
            .with_previous(NEW)
            .unwrap();
        assert_eq!(same.previous_count(), 0);
        let mut many = CallbackSecret::new(NEW).unwrap();
        for i in 0..MAX_PREVIOUS_SECRETS {
            many = many.with_previous(format!("{SECRET}-{i}")).unwrap();
        }
        assert_eq!(
            many.with_previous(format!("{SECRET}-last")).unwrap_err(),
            SigningError::TooManyPrevious {
                max: MAX_PREVIOUS_SECRETS
            }
        );
    }

    #[test]
    fn a_named_url_is_the_same_every_time_and_verifies() {
        let secret = CallbackSecret::new(SECRET).unwrap();
        let name = "b-0123456789abcdef0123456789abcdef-2";
        let first = secret
            .callback_url_named("https://hooks.example.com", name)
            .unwrap();
        let again = secret
            .callback_url_named("https://hooks.example.com/callback", name)
            .unwrap();
        assert_eq!(first, again, "one URL per name");
        assert_eq!(first.nonce.as_str(), name);
        assert!(!first.nonce.is_random());
        let path = first.url.trim_start_matches("https://hooks.example.com");
        assert_eq!(secret.verify_path(path).unwrap(), first.nonce);
        // Random nonces still verify, and are told apart.
        let random = secret.callback_url("https://hooks.example.com").unwrap();
        assert!(random.nonce.is_random());
        // Another secret's tag for the same name does not verify.
        let other = CallbackSecret::new("another-secret-another-secret-0123456789").unwrap();
        let forged = other.callback_url_named("https://h", name).unwrap();
        let signed = forged.url.rsplit('/').next().unwrap();
        assert_eq!(secret.verify(signed), Err(CallbackError::BadSignature));
        // Names that are not of the shape are refused, on both sides.
        for bad in [
            "",
            "UPPER",
            "has.dot",
            "has/slash",
            "0123456789abcdef0123456789abcdef",
            &"x".repeat(MAX_NONCE_CHARS + 1),
        ] {
            assert!(
                matches!(
                    secret.callback_url_named("https://h", bad),
                    Err(SigningError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
        let tag = signed.split_once('.').unwrap().1;
        assert_eq!(
            secret.verify(&format!("{}.{tag}", "x".repeat(MAX_NONCE_CHARS + 1))),
            Err(CallbackError::NotSigned)
        );
        assert_eq!(
            secret.verify(&format!("a_b.{tag}")),
            Err(CallbackError::NotSigned)
        );
        assert!(matches!(
            secret.callback_url_named("ftp://h", name),
            Err(SigningError::InvalidBase { .. })
        ));
    }
}
