//! One connection: hyper's HTTP/1 state machine over a socket whose reads
//! and writes are watched, the router behind tower-http's timeouts, and a
//! watchdog that drops the connection when it waits too long for a request.

use std::convert::Infallible;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;
use tower_http::timeout::{RequestBodyTimeout, Timeout};
use uncensored::CancellationToken;

use super::ServerLimits;

/// Whether a new connection waits for a slot at the cap: then connections
/// that wait for a request give way after [`ServerLimits::UNDER_PRESSURE`].
#[derive(Default)]
pub(super) struct Pressure {
    on: AtomicBool,
    changed: Notify,
}

impl Pressure {
    pub(super) fn set(&self, on: bool) {
        if self.on.swap(on, Ordering::AcqRel) != on {
            self.changed.notify_waiters();
        }
    }

    fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }
}

/// How the serve loop stops its connections.
pub(super) struct Stop {
    /// Finish the request in flight, then close (at most the grace later).
    pub(super) graceful: CancellationToken,
    /// Close now.
    pub(super) abort: CancellationToken,
}

/// Serves one connection until it ends, a limit drops it, or the stop;
/// `_slot` (its place under the connection cap) is given back on return.
pub(super) async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: Arc<ServerLimits>,
    pressure: Arc<Pressure>,
    stop: Stop,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
        write_timeout: limits.write_timeout,
        stall: None,
    });
    // Time to the response's headers (a streaming body is never cut), and
    // the longest silence inside a request body.
    let stack = Timeout::with_status_code(
        RequestBodyTimeout::new(app, limits.body_timeout),
        StatusCode::SERVICE_UNAVAILABLE,
        limits.request_timeout,
    );
    let tracker = activity.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let in_flight = tracker.begin();
        let stack = stack.clone();
        async move {
            let response = stack.oneshot(request).await?;
            Ok::<_, Infallible>(response.map(|body| Tracked {
                body,
                _in_flight: in_flight,
            }))
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    // hyper's header timer would count the idle wait too: the watchdog keeps both.
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    let connection = http.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(error) = served {
                tracing::debug!(%error, "a connection ended with an error");
            }
            return;
        }
        expired = activity.watchdog(&limits, &pressure) => {
            tracing::debug!("closed a connection: {expired}");
            return;
        }
        () = stop.abort.cancelled() => return,
        () = stop.graceful.cancelled() => {}
    }
    // Nothing to finish (idle, or the headers of a request not yet made): close now.
    if activity.at_rest() {
        return;
    }
    connection.as_mut().graceful_shutdown();
    tokio::select! {
        _ = connection => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {}
        () = stop.abort.cancelled() => {}
    }
}

/// Why the watchdog dropped a connection.
#[derive(Debug, Clone, Copy)]
enum Expired {
    Headers(Duration),
    Idle(Duration),
}

impl std::fmt::Display for Expired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Headers(limit) => write!(f, "a request's headers took longer than {limit:?}"),
            Self::Idle(limit) => write!(f, "no request for {limit:?}"),
        }
    }
}

/// What a connection is doing, as its reads, its router and its responses tell it.
struct Activity {
    state: Mutex<State>,
    changed: Notify,
    /// Whether a read should tell [`Activity::first_byte`]: no request in
    /// flight and no byte of the next one yet (a read's cheap check).
    awaiting_first_byte: AtomicBool,
    /// Whether the last write waited for the socket: bytes of a response
    /// may still be on their way out.
    writing: AtomicBool,
}

struct State {
    /// Requests handed to the router whose response has not ended.
    in_flight: usize,
    /// A byte of the next request arrived (its headers are being read).
    reading: bool,
    /// When the present phase (idle or reading headers) began.
    since: Instant,
    /// Bumped at every change, so that a deadline of a past phase is ignored.
    generation: u64,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(State {
                in_flight: 0,
                reading: false,
                since: Instant::now(),
                generation: 0,
            }),
            changed: Notify::new(),
            awaiting_first_byte: AtomicBool::new(true),
            writing: AtomicBool::new(false),
        }
    }

    /// No request in flight and every byte of the responses written.
    fn at_rest(&self) -> bool {
        self.lock().in_flight == 0 && !self.writing.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self, mut state: MutexGuard<'_, State>) {
        state.generation += 1;
        drop(state);
        self.changed.notify_waiters();
    }

    /// Bytes arrived.
    fn first_byte(&self) {
        if !self.awaiting_first_byte.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.lock();
        if state.in_flight == 0 && !state.reading {
            state.reading = true;
            state.since = Instant::now();
            self.awaiting_first_byte.store(false, Ordering::Release);
            self.changed(state);
        }
    }

    /// A request reached the router; it is in flight until the guard drops
    /// with its response's body.
    fn begin(self: &Arc<Self>) -> InFlight {
        let mut state = self.lock();
        state.in_flight += 1;
        self.awaiting_first_byte.store(false, Ordering::Release);
        self.changed(state);
        InFlight(self.clone())
    }

    fn end(&self) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.reading = false;
            state.since = Instant::now();
            self.awaiting_first_byte.store(true, Ordering::Release);
        }
        self.changed(state);
    }

    /// Resolves when the connection has waited too long for a request: for
    /// its headers since their first byte, or idle since the last response
    /// ended (or since it was accepted); under `pressure` sooner. Never while
    /// a request is in flight.
    async fn watchdog(&self, limits: &ServerLimits, pressure: &Pressure) -> Expired {
        loop {
            let changed = self.changed.notified();
            let pressed = pressure.changed.notified();
            tokio::pin!(changed, pressed);
            // Registered before the state is read: no change is missed.
            changed.as_mut().enable();
            pressed.as_mut().enable();
            let squeezed = pressure.is_on();
            let squeeze = |limit: Duration| match squeezed {
                true => limit.min(ServerLimits::UNDER_PRESSURE),
                false => limit,
            };
            let (deadline, generation) = {
                let state = self.lock();
                let deadline = if state.in_flight > 0 {
                    None
                } else if state.reading {
                    let limit = squeeze(limits.header_read_timeout);
                    Some((state.since + limit, Expired::Headers(limit)))
                } else {
                    let limit = squeeze(limits.idle_timeout);
                    Some((state.since + limit, Expired::Idle(limit)))
                };
                (deadline, state.generation)
            };
            match deadline {
                None => tokio::select! {
                    () = changed => {}
                    () = pressed => {}
                },
                Some((at, expired)) => tokio::select! {
                    () = changed => {}
                    () = pressed => {}
                    () = tokio::time::sleep_until(at) => {
                        let eased = squeezed && !pressure.is_on();
                        if self.lock().generation == generation && !eased {
                            return expired;
                        }
                    }
                },
            }
        }
    }
}

/// A request in flight; its drop (with the response's body, or the
/// connection) ends it.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body that keeps its request in flight while it is sent.
struct Tracked {
    body: axum::body::Body,
    _in_flight: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket as hyper sees it: reads tell the watchdog when a request
/// begins; a write that makes no progress for the write timeout fails.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
    write_timeout: Duration,
    /// Armed while a write waits for the client to read.
    stall: Option<Pin<Box<Sleep>>>,
}

impl Watched {
    fn write_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if let Poll::Ready(written) = write(Pin::new(&mut self.stream), cx) {
            self.stall = None;
            self.activity.writing.store(false, Ordering::Release);
            return Poll::Ready(written);
        }
        self.activity.writing.store(true, Ordering::Release);
        let timeout = self.write_timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(stall.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading its response",
        )))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.first_byte();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .write_with(cx, |stream, cx| stream.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .write_with(cx, |stream, cx| stream.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .write_with(cx, |stream, cx| stream.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut()
            .write_with(cx, |stream, cx| stream.poll_shutdown(cx))
    }
}
