//! The one HTTP serve loop of every server of the project (`uncensored
//! webhook serve`, the gallery, `uncensored mcp --http`), built to hold
//! against slow and hostile clients, and the access tokens of the servers
//! that may face a network.
//!
//! [`serve`] drives an axum [`Router`] on a listener with hyper's HTTP/1
//! connections, one task each, under [`ServerLimits`]:
//!
//! | limit | what it bounds | default |
//! |---|---|---|
//! | [`header_read_timeout`](ServerLimits::header_read_timeout) | from a request's first byte to its last header | 10 s |
//! | [`body_timeout`](ServerLimits::body_timeout) | the longest silence inside a request body | 10 s |
//! | [`request_timeout`](ServerLimits::request_timeout) | from a request's headers to its response's headers (a 503 then) | 30 s |
//! | [`idle_timeout`](ServerLimits::idle_timeout) | a connection with no request in flight and no byte of the next one | 30 s |
//! | [`write_timeout`](ServerLimits::write_timeout) | a response waiting on a client that does not read it | 30 s |
//! | [`max_connections`](ServerLimits::max_connections) | connections served at once | 256 |
//! | [`shutdown_grace`](ServerLimits::shutdown_grace) | how long requests in flight may finish after the stop | 10 s |
//!
//! How they hold:
//!
//! - **Headers and idle keep-alive.** hyper's own `header_read_timeout`
//!   starts when hyper begins waiting for a request head, so on a keep-alive
//!   connection it measures the idle wait and the header read as one. Here
//!   they are two limits, as in Go's `ReadHeaderTimeout` and `IdleTimeout`: a
//!   watchdog per connection sees when the first byte of a request arrives
//!   (the connection's reads go through it), when the request reaches the
//!   router and when its response ends, and drops the connection when either
//!   limit passes. hyper's timer is switched off.
//! - **Bodies.** A body silent for `body_timeout` fails (tower-http's
//!   `RequestBodyTimeoutLayer`); one dribbled faster is still bounded by
//!   `request_timeout`, since every handler here reads its body before it
//!   answers. A body a handler never reads is not waited for: hyper closes
//!   the connection after the response instead of draining it.
//! - **Time to the response.** `request_timeout` (tower-http's
//!   `TimeoutLayer`) bounds the time until the response's *headers*, never a
//!   streaming body: the gallery's live events and MCP's SSE streams stay
//!   open as long as they have something to say, and a connection with a
//!   response in flight is never idle. A client that stops reading such a
//!   stream is dropped after `write_timeout`.
//! - **The connection cap.** At `max_connections` the loop stops accepting:
//!   the connection just accepted waits for a slot and the others wait in
//!   the kernel's backlog, so the connections under the cap are never
//!   starved by the ones over it. While one waits, the cap is under
//!   pressure: a served connection that has been idle or reading headers
//!   for [`ServerLimits::UNDER_PRESSURE`] (1 s) is closed at once, so slow
//!   clients cannot hold the slots for their full timeouts (real requests
//!   in flight, streams included, are never cut). Accept-and-close would
//!   answer a burst of real clients with refusals instead of a short wait.
//! - **HTTP/1 only.** hyper has no header-read or idle limits for HTTP/2,
//!   and its streams multiplex many requests on one connection, so the
//!   limits above could not be kept; the servers are plain HTTP, where
//!   browsers never speak HTTP/2, and reverse proxies speak HTTP/1 to their
//!   backends. A client that sends the HTTP/2 preface is refused.
//! - **Shutdown.** When `shutdown` resolves the listener is closed, every
//!   connection is asked to finish the request in flight and close, and
//!   whatever is still open after `shutdown_grace` is dropped. Dropping the
//!   [`serve`] future drops every connection at once.
//!
//! The access tokens: [`AccessToken`] (made from 32 random bytes, or given;
//! never shown by `Debug`), compared in constant time, sent as
//! `Authorization: Bearer TOKEN`; [`require_bearer`] guards a router with
//! one, [`AccessToken::for_address`] says when one is needed.

mod access;
mod activity;
mod connection;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use uncensored::CancellationToken;

pub use access::{AccessToken, AccessTokenError, bearer, require_bearer, unauthorized};

/// The limits a server holds its clients to; see the [module](self) for
/// what each bounds. Every setter clamps its value into the documented
/// range, so no value makes a server wait forever or refuse everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    header_read_timeout: Duration,
    body_timeout: Duration,
    request_timeout: Duration,
    idle_timeout: Duration,
    write_timeout: Duration,
    max_connections: usize,
    shutdown_grace: Duration,
}

impl Default for ServerLimits {
    /// Defaults fit for a public endpoint; see the [module](self).
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 256,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl ServerLimits {
    /// The shortest timeout: 100 ms.
    pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
    /// The longest timeout: one hour.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
    /// The most connections a server may serve at once.
    pub const MAX_CONNECTIONS: usize = 65_536;
    /// The longest shutdown grace: ten minutes (zero is allowed: drop at once).
    pub const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(600);
    /// While a connection waits for a slot at the cap: the longest a served
    /// connection may be idle or read its headers (if its own limits are longer).
    pub const UNDER_PRESSURE: Duration = Duration::from_secs(1);

    fn timeout(value: Duration) -> Duration {
        value.clamp(Self::MIN_TIMEOUT, Self::MAX_TIMEOUT)
    }

    /// The longest from a request's first byte to its last header.
    pub fn header_read_timeout(&self) -> Duration {
        self.header_read_timeout
    }

    /// The longest silence inside a request body.
    pub fn body_timeout(&self) -> Duration {
        self.body_timeout
    }

    /// The longest from a request's headers to its response's headers.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The longest a connection stays open with no request in flight and no
    /// byte of the next one.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The longest a response write waits for a client that does not read.
    pub fn write_timeout(&self) -> Duration {
        self.write_timeout
    }

    /// The most connections served at once.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// How long requests in flight may finish after the stop.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }

    /// With another header-read timeout, clamped to
    /// [`MIN_TIMEOUT`](Self::MIN_TIMEOUT)..=[`MAX_TIMEOUT`](Self::MAX_TIMEOUT).
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = Self::timeout(timeout);
        self
    }

    /// With another body timeout, clamped like every timeout.
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = Self::timeout(timeout);
        self
    }

    /// With another request timeout, clamped like every timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Self::timeout(timeout);
        self
    }

    /// With another idle timeout, clamped like every timeout.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Self::timeout(timeout);
        self
    }

    /// With another write timeout, clamped like every timeout.
    pub fn with_write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = Self::timeout(timeout);
        self
    }

    /// With another connection cap, clamped to 1..=[`MAX_CONNECTIONS`](Self::MAX_CONNECTIONS).
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.clamp(1, Self::MAX_CONNECTIONS);
        self
    }

    /// With another shutdown grace, at most [`MAX_SHUTDOWN_GRACE`](Self::MAX_SHUTDOWN_GRACE).
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace.min(Self::MAX_SHUTDOWN_GRACE);
        self
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown` resolves, then
/// lets the requests in flight finish for at most
/// [`ServerLimits::shutdown_grace`] and returns. Failures to accept are
/// logged and retried, never fatal: a full file table (EMFILE) waits a
/// second for connections to close.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let pressure = Arc::new(activity::Pressure::default());
    // `graceful`: finish and close; `abort` (also when this future is dropped): close now.
    let graceful = CancellationToken::new();
    let abort = CancellationToken::new();
    let _abort_on_drop = abort.clone().drop_guard();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) if is_connection_error(&error) => continue,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a connection; trying again in a second");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        // At the cap this one waits, and nothing more is accepted (the
        // backlog waits); meanwhile connections waiting for a request give way.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                pressure.set(true);
                let slot = tokio::select! {
                    () = &mut shutdown => break,
                    slot = slots.clone().acquire_owned() => slot,
                };
                pressure.set(false);
                match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                }
            }
        };
        // Small answers and event streams go out at once.
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection::serve_connection(
            stream,
            app.clone(),
            limits.clone(),
            pressure.clone(),
            connection::Stop {
                graceful: graceful.clone(),
                abort: abort.clone(),
            },
            slot,
        ));
    }
    drop(listener);
    graceful.cancel();
    // Every connection holds a slot until it ends, at most the grace after the stop.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// Errors that concern one connection only (it went away before it was accepted).
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_clamped() {
        let limits = ServerLimits::default()
            .with_header_read_timeout(Duration::ZERO)
            .with_body_timeout(Duration::MAX)
            .with_request_timeout(Duration::from_nanos(1))
            .with_idle_timeout(Duration::from_secs(u64::MAX))
            .with_write_timeout(Duration::from_secs(5))
            .with_max_connections(0)
            .with_shutdown_grace(Duration::MAX);
        assert_eq!(limits.header_read_timeout(), ServerLimits::MIN_TIMEOUT);
        assert_eq!(limits.body_timeout(), ServerLimits::MAX_TIMEOUT);
        assert_eq!(limits.request_timeout(), ServerLimits::MIN_TIMEOUT);
        assert_eq!(limits.idle_timeout(), ServerLimits::MAX_TIMEOUT);
        assert_eq!(limits.write_timeout(), Duration::from_secs(5));
        assert_eq!(limits.max_connections(), 1);
        assert_eq!(limits.shutdown_grace(), ServerLimits::MAX_SHUTDOWN_GRACE);
        let many = ServerLimits::default().with_max_connections(usize::MAX);
        assert_eq!(many.max_connections(), ServerLimits::MAX_CONNECTIONS);
        assert_eq!(
            ServerLimits::default()
                .with_shutdown_grace(Duration::ZERO)
                .shutdown_grace(),
            Duration::ZERO
        );
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        let limits = ServerLimits::default();
        assert_eq!(limits.header_read_timeout(), Duration::from_secs(10));
        assert_eq!(limits.body_timeout(), Duration::from_secs(10));
        assert_eq!(limits.request_timeout(), Duration::from_secs(30));
        assert_eq!(limits.idle_timeout(), Duration::from_secs(30));
        assert_eq!(limits.write_timeout(), Duration::from_secs(30));
        assert_eq!(limits.max_connections(), 256);
        assert_eq!(limits.shutdown_grace(), Duration::from_secs(10));
    }
}
