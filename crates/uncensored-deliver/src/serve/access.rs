//! The access token of a server that may face a network: given or made of
//! 32 random bytes, never shown by `Debug` or in an error, compared in
//! constant time, sent as `Authorization: Bearer TOKEN`.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// A server's access token. `Debug` shows `AccessToken(<redacted>)`; the
/// only way to its text is [`AccessToken::expose`], for telling it once to
/// the person who started the server.
#[derive(Clone)]
pub struct AccessToken {
    text: Arc<SecretString>,
    /// Its SHA-256, what candidates are compared with.
    digest: [u8; 32],
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// Why a token was refused or could not be made. Never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccessTokenError {
    /// Shorter than [`AccessToken::MIN_CHARS`].
    #[error(
        "an access token needs at least {min} characters, this one has {chars} (make one with `openssl rand -hex 32`)",
        min = AccessToken::MIN_CHARS
    )]
    TooShort {
        /// How many it has.
        chars: usize,
    },
    /// A character outside `A-Z a-z 0-9 - . _ ~` (what a URL, a header and a
    /// cookie all carry unchanged).
    #[error(
        "an access token may hold only letters, digits and - . _ ~ (make one with `openssl rand -hex 32`)"
    )]
    BadCharacter,
    /// The operating system gave no random bytes.
    #[error("cannot make an access token: {0}")]
    NoRandomness(String),
}

impl AccessToken {
    /// The fewest characters of a given token.
    pub const MIN_CHARS: usize = 32;

    /// A token from a person (a flag, a variable): at least
    /// [`MIN_CHARS`](Self::MIN_CHARS) of `A-Z a-z 0-9 - . _ ~`.
    pub fn new(text: impl Into<String>) -> Result<Self, AccessTokenError> {
        let text = text.into();
        let chars = text.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(AccessTokenError::TooShort { chars });
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return Err(AccessTokenError::BadCharacter);
        }
        Ok(Self::from_text(text))
    }

    /// A new token of 32 random bytes from the operating system (43 characters, base64url).
    pub fn generate() -> Result<Self, AccessTokenError> {
        use base64::Engine as _;
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| AccessTokenError::NoRandomness(e.to_string()))?;
        let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Ok(Self::from_text(text))
    }

    fn from_text(text: String) -> Self {
        let digest = Sha256::digest(text.as_bytes()).into();
        Self {
            text: Arc::new(SecretString::from(text)),
            digest,
        }
    }

    /// The token a server on `ip` requires: the one given, else none on a
    /// loopback address (only this machine can connect), else a new one.
    pub fn for_address(
        ip: IpAddr,
        given: Option<AccessToken>,
    ) -> Result<Option<AccessToken>, AccessTokenError> {
        match given {
            Some(token) => Ok(Some(token)),
            None if ip.is_loopback() => Ok(None),
            None => Self::generate().map(Some),
        }
    }

    /// Whether `candidate` is this token, in time that does not depend on
    /// where they differ (their SHA-256 are compared, so not on their lengths either).
    pub fn verify(&self, candidate: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        bool::from(self.digest.ct_eq(&digest))
    }

    /// The token's text, to tell it once to whoever started the server.
    pub fn expose(&self) -> &str {
        self.text.expose_secret()
    }
}

impl std::str::FromStr for AccessToken {
    type Err = AccessTokenError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::new(text)
    }
}

/// The token of `Authorization: Bearer TOKEN`, if the request has one (the
/// scheme in any case, as RFC 9110 has it).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The answer to a request without the right token: 401 with
/// `WWW-Authenticate: Bearer realm="REALM"` and `why` as its text.
pub fn unauthorized(realm: &'static str, why: &'static str) -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, why).into_response();
    let challenge = format!("Bearer realm=\"{realm}\"");
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// `router` with every request refused (401, [`unauthorized`]) unless it
/// carries `token` as `Authorization: Bearer TOKEN`.
pub fn require_bearer(router: Router, token: AccessToken, realm: &'static str) -> Router {
    router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let allowed = bearer(request.headers()).is_some_and(|t| token.verify(t));
            async move {
                if allowed {
                    next.run(request).await
                } else {
                    unauthorized(
                        realm,
                        "this server needs its access token: send Authorization: Bearer TOKEN (the token printed when it started)",
                    )
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_never_shown_and_compares_exactly() {
        let token = AccessToken::generate().unwrap();
        let text = token.expose().to_string();
        assert_eq!(text.len(), 43);
        assert!(
            AccessToken::new(text.clone()).is_ok(),
            "a made token is a valid token"
        );
        assert!(!format!("{token:?}").contains(&text));
        assert!(token.verify(&text));
        assert!(!token.verify(&text[..42]));
        assert!(!token.verify(&format!("{text}x")));
        assert!(!token.verify(""));
        assert_ne!(AccessToken::generate().unwrap().expose(), text, "random");
    }

    #[test]
    fn a_given_token_is_checked_and_never_echoed() {
        let short = "s3cret-but-short";
        let error = AccessToken::new(short).unwrap_err();
        assert_eq!(error, AccessTokenError::TooShort { chars: 16 });
        assert!(!error.to_string().contains(short));
        let spaced = "a token with spaces that is long enough";
        let error = AccessToken::new(spaced).unwrap_err();
        assert_eq!(error, AccessTokenError::BadCharacter);
        assert!(!error.to_string().contains(spaced));
        assert!(
            "0123456789abcdef0123456789abcdef"
                .parse::<AccessToken>()
                .is_ok()
        );
    }

    #[test]
    fn only_a_loopback_address_goes_without() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(AccessToken::for_address(loopback, None).unwrap().is_none());
        assert!(
            AccessToken::for_address("::1".parse().unwrap(), None)
                .unwrap()
                .is_none()
        );
        for ip in ["0.0.0.0", "::", "192.168.1.10"] {
            assert!(
                AccessToken::for_address(ip.parse().unwrap(), None)
                    .unwrap()
                    .is_some(),
                "{ip}"
            );
        }
        let given = AccessToken::generate().unwrap();
        let kept = AccessToken::for_address(loopback, Some(given.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(kept.expose(), given.expose());
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bEaReR abc"),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&headers), None);
    }
}
