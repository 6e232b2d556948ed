//! One connection: hyper's HTTP/1 state machine over a socket whose reads
//! and writes are watched, the router behind tower-http's timeouts, and the
//! watchdog of [`super::activity`].

use std::convert::Infallible;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;
use tower::ServiceExt as _;
use tower_http::timeout::{RequestBodyTimeout, Timeout};
use uncensored::CancellationToken;

use super::ServerLimits;
use super::activity::{Activity, InFlight, Pressure};

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
            self.activity.set_writing(false);
            return Poll::Ready(written);
        }
        self.activity.set_writing(true);
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
