//! The gallery's access token, asked of every request when it listens on an
//! address that is not loopback, in one of three forms:
//!
//! - `Authorization: Bearer TOKEN`, for programs;
//! - `?token=TOKEN` on any page address, for a person: the URL printed when
//!   the gallery starts carries it once;
//! - the cookie the answer to such a URL sets, for everything the page does
//!   after that.
//!
//! Why a cookie: the page's script fetches `/api/...` with `fetch`, its
//! thumbnails and images are `<img src>`, and its live updates an
//! `EventSource`, which cannot send headers at all, so a header-only token
//! would leave the page blind. The cookie is `HttpOnly` (no script reads
//! it), `SameSite=Strict` (no other site's page makes the browser send it)
//! and `Path=/`, named after the gallery's port so that two galleries on
//! one host keep theirs apart. The page answers `/?token=` itself rather
//! than redirecting to `/`: a `Strict` cookie does not follow a redirect
//! that began on another site (a link clicked in a chat), so a redirect
//! would lose it there; the page's script then drops the token from the
//! address bar (`history.replaceState`), and `Referrer-Policy: no-referrer`
//! keeps it out of every request's `Referer`. Plain HTTP carries the token
//! in clear: on a network that is not trusted, put TLS in front.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use uncensored_deliver::serve::{AccessToken, bearer, unauthorized};

/// The token a gallery asks for and the cookie that carries it.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    pub(crate) token: AccessToken,
    cookie: String,
}

/// How a request proved it has the token.
pub(crate) enum Proof {
    /// By its header or its cookie.
    Carried,
    /// By the page URL's `?token=`: the answer sets the cookie.
    Query,
}

impl Access {
    /// The access of the gallery on `port`.
    pub(crate) fn new(token: AccessToken, port: u16) -> Self {
        Self {
            token,
            cookie: format!("uncensored-gallery-{port}"),
        }
    }

    /// How the request proves the token, if it does.
    pub(crate) fn check(&self, headers: &HeaderMap, query: Option<&str>) -> Option<Proof> {
        if bearer(headers).is_some_and(|t| self.token.verify(t)) || self.cookie_matches(headers) {
            return Some(Proof::Carried);
        }
        query_token(query)
            .is_some_and(|t| self.token.verify(t))
            .then_some(Proof::Query)
    }

    /// The answer to a request that does not prove the token.
    pub(crate) fn refused() -> Response {
        unauthorized(
            "uncensored gallery",
            "this gallery needs its token: open the URL with ?token= that it printed when it started, or send Authorization: Bearer TOKEN",
        )
    }

    fn cookie_matches(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == self.cookie && self.token.verify(value))
    }

    /// The `Set-Cookie` that lets the page's later requests in.
    pub(crate) fn set_cookie(&self) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            self.cookie,
            self.token.expose()
        ))
        .ok()
    }
}

/// The value of `token=` in a query (tokens need no percent-decoding: they
/// hold only characters a URL carries as they are).
fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_taken_from_a_header_a_cookie_or_the_query() {
        let token = AccessToken::generate().unwrap();
        let access = Access::new(token.clone(), 8788);
        let text = token.expose();
        let mut headers = HeaderMap::new();
        assert!(access.check(&headers, None).is_none());
        assert!(matches!(
            access.check(&headers, Some(&format!("a=1&token={text}"))),
            Some(Proof::Query)
        ));
        assert!(access.check(&headers, Some("token=nope")).is_none());
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; uncensored-gallery-8788={text}")).unwrap(),
        );
        assert!(matches!(access.check(&headers, None), Some(Proof::Carried)));
        // Another gallery's cookie (another port) is not this one's.
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("uncensored-gallery-9999={text}")).unwrap(),
        );
        assert!(access.check(&headers, None).is_none());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {text}")).unwrap(),
        );
        assert!(matches!(access.check(&headers, None), Some(Proof::Carried)));
        let cookie = access.set_cookie().unwrap();
        let cookie = cookie.to_str().unwrap();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        assert!(!format!("{access:?}").contains(text));
    }
}
