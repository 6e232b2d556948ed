//! The hardened serve loop against slow and hostile clients, on a small
//! router of its own: each limit closes the clients it is for, real requests
//! are answered meanwhile, the connection cap makes the others wait their
//! turn, long responses outlive every timeout, a client that stops reading
//! is dropped, shutdown lets requests in flight finish, and the bearer guard.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::get;
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{Notify, mpsc, oneshot};
use uncensored_deliver::serve::{AccessToken, ServerLimits, require_bearer, serve};
use uncensored_test_servers::http;
use uncensored_test_servers::slow::{self, Attack, Slow};

fn app() -> Router {
    Router::new().route(
        "/",
        get(|| async { "ok" }).post(|body: Body| async move {
            match axum::body::to_bytes(body, 1 << 20).await {
                Ok(bytes) => (axum::http::StatusCode::OK, format!("{} bytes", bytes.len())),
                Err(_) => (axum::http::StatusCode::BAD_REQUEST, "no body".to_string()),
            }
        }),
    )
}

fn short() -> ServerLimits {
    ServerLimits::default()
        .with_header_read_timeout(Duration::from_secs(1))
        .with_body_timeout(Duration::from_secs(1))
        .with_request_timeout(Duration::from_secs(2))
        .with_idle_timeout(Duration::from_secs(1))
        .with_write_timeout(Duration::from_secs(1))
        .with_shutdown_grace(Duration::from_secs(1))
}

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(app: Router, limits: ServerLimits) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(serve(listener, app, limits, async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

impl Running {
    async fn get(&self, target: &str) -> http::Response {
        let url = format!("http://{}{target}", self.addr);
        tokio::task::spawn_blocking(move || http::request("GET", &url, &[], b""))
            .await
            .unwrap()
            .expect("a real request is answered")
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the server stops within its grace")
            .unwrap();
    }
}

async fn open(addr: SocketAddr, attack: Attack) -> slow::Attackers {
    tokio::task::spawn_blocking(move || slow::attack(addr, &attack))
        .await
        .unwrap()
        .expect("the slow clients connect")
}

async fn all_closed(attackers: slow::Attackers) -> Vec<slow::Closed> {
    tokio::task::spawn_blocking(move || attackers.wait_all_closed(Duration::from_secs(30)))
        .await
        .unwrap()
        .unwrap_or_else(|problem| panic!("{problem}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_closes_its_slow_clients_and_real_requests_are_answered() {
    let limits = short();
    let server = start(app(), limits.clone()).await;
    let attackers = open(server.addr, Attack::default()).await;
    // With 26 slow clients open, real ones are answered.
    for _ in 0..3 {
        let answer = server.get("/").await;
        assert_eq!((answer.status, answer.text().as_str()), (200, "ok"));
    }
    let closed = all_closed(attackers).await;
    assert_eq!(closed.len(), 26);
    // Each was closed by its own limit, never earlier (timers do not fire early).
    let at_least = |limit: Duration| limit.mul_f64(0.9);
    for one in &closed {
        match one.kind {
            Slow::PartialHeaders => {
                assert!(
                    one.after >= at_least(limits.header_read_timeout()),
                    "{one:?}"
                );
                assert_eq!(one.status, None, "{one:?}");
            }
            // The body's silence: the handler sees its body fail and answers.
            Slow::WithheldBody => assert_eq!(one.status, Some(400), "{one:?}"),
            // A byte every 300 ms never trips the body timeout: the request timeout ends it.
            Slow::DribbledBody => {
                assert!(one.after >= at_least(limits.request_timeout()), "{one:?}");
                assert_eq!(one.status, Some(503), "{one:?}");
            }
            Slow::IdleKeepAlive => {
                assert!(one.after >= at_least(limits.idle_timeout()), "{one:?}");
                assert_eq!(one.status, Some(200), "{one:?}");
            }
        }
    }
    assert_eq!(server.get("/").await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_real_clients_wait_for_the_slow_ones_to_go() {
    let server = start(app(), short().with_max_connections(4)).await;
    let attackers = open(server.addr, only_partial_headers(4)).await;
    // The fifth connection waits in the backlog until a slot is free.
    let answer = server.get("/").await;
    let answered = Instant::now();
    assert_eq!(answer.status, 200);
    let closed = all_closed(attackers).await;
    assert!(
        slow::after_first_close(answered, &closed),
        "the real request was served over the cap: answered before any slow client was evicted"
    );
    server.stop().await;
}

/// A router with `/events`: one stream that says "open", then each line pushed.
fn streaming() -> (Router, mpsc::Sender<&'static str>) {
    let (push, pushed) = mpsc::channel::<&'static str>(4);
    let pushed = Arc::new(tokio::sync::Mutex::new(Some(pushed)));
    let app = app().route(
        "/events",
        get(move || {
            let pushed = pushed.clone();
            async move {
                let receiver = pushed.lock().await.take().expect("one stream");
                let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
                    let line = receiver.recv().await?;
                    Some((Ok::<_, std::io::Error>(Bytes::from(line)), receiver))
                });
                let open = futures_util::stream::once(async { Ok(Bytes::from("open\n")) });
                Body::from_stream(open.chain(stream))
            }
        }),
    );
    (app, push)
}

async fn open_stream(addr: SocketAddr) -> (tokio::net::TcpStream, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "open").await;
    (stream, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_pressure_at_the_cap_slow_clients_give_way_and_streams_stay() {
    // Limits far longer than the test's deadlines: only the pressure can evict in time.
    let limits = ServerLimits::default()
        .with_header_read_timeout(Duration::from_secs(120))
        .with_idle_timeout(Duration::from_secs(120))
        .with_max_connections(3);
    let (app, push) = streaming();
    let server = start(app, limits).await;
    let (mut stream, mut seen) = open_stream(server.addr).await;
    let mut attackers = open(server.addr, only_partial_headers(2)).await;
    let asked = Instant::now();
    let answer = server.get("/").await;
    let answered = Instant::now();
    assert_eq!(answer.status, 200);
    assert!(
        answered - asked < Duration::from_secs(60),
        "the real request waited for the slow clients' own timeouts"
    );
    // As many give way as the waiting connections need: one here.
    let evicted = blocking(move || {
        let first = attackers.wait_closed(1, Duration::from_secs(30));
        (first, attackers)
    })
    .await;
    let (first, attackers) = (evicted.0.unwrap_or_else(|p| panic!("{p}")), evicted.1);
    assert!(
        slow::after_first_close(answered, &first),
        "served over the cap"
    );
    assert!(first[0].after >= Duration::from_millis(900), "{first:?}");
    // The stream in flight was never cut.
    push.send("still here\n").await.unwrap();
    read_until(&mut stream, &mut seen, "still here").await;
    drop(stream);
    server.stop().await;
    // The other slow client went with the server.
    all_closed(attackers).await;
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.unwrap()
}

fn only_partial_headers(count: usize) -> Attack {
    Attack {
        partial_headers: count,
        withheld_bodies: 0,
        dribbled_bodies: 0,
        idle_keep_alive: 0,
        ..Attack::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_response_outlives_the_request_and_idle_timeouts() {
    let (app, push) = streaming();
    let limits = short()
        .with_request_timeout(Duration::from_millis(300))
        .with_idle_timeout(Duration::from_millis(300));
    let server = start(app, limits).await;
    let (mut stream, mut seen) = open_stream(server.addr).await;
    // The server's own clock: a partial header is closed after 1 s, three
    // times the request and idle timeouts.
    let closed = all_closed(open(server.addr, only_partial_headers(1)).await).await;
    assert!(closed[0].after >= Duration::from_millis(900));
    push.send("still here\n").await.unwrap();
    read_until(&mut stream, &mut seen, "still here").await;
    drop(stream);
    server.stop().await;
}

async fn read_until(stream: &mut tokio::net::TcpStream, seen: &mut String, what: &str) {
    let mut buffer = [0u8; 1024];
    while !seen.contains(what) {
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buffer))
            .await
            .expect("the stream goes on")
            .unwrap();
        assert!(n > 0, "the stream was closed: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
}

/// Tells when it is dropped.
struct Dropped(Arc<Notify>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped() {
    let dropped = Arc::new(Notify::new());
    let signal = dropped.clone();
    let app = Router::new().route(
        "/endless",
        get(move || {
            let guard = Dropped(signal.clone());
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_util::stream::repeat(chunk).map(move |chunk| {
                let _ = &guard;
                Ok::<_, std::io::Error>(chunk)
            });
            async move { Body::from_stream(stream) }
        }),
    );
    let server = start(app, short()).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Never read: the server's writes stall once the socket buffers are full.
    tokio::time::timeout(Duration::from_secs(30), dropped.notified())
        .await
        .expect("the server drops the response of a client that does not read");
    drop(stream);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_request_in_flight_finish_and_closes_the_rest() {
    let entered = Arc::new(Notify::new());
    let (release, released) = oneshot::channel::<()>();
    let released = Arc::new(tokio::sync::Mutex::new(Some(released)));
    let signal = entered.clone();
    let app = app().route(
        "/slow",
        get(move || {
            let (signal, released) = (signal.clone(), released.clone());
            async move {
                signal.notify_one();
                let released = released.lock().await.take().unwrap();
                let _ = released.await;
                "done"
            }
        }),
    );
    let limits = short()
        .with_shutdown_grace(Duration::from_secs(20))
        .with_header_read_timeout(Duration::from_secs(60))
        .with_idle_timeout(Duration::from_secs(60));
    let server = start(app, limits).await;
    let addr = server.addr;
    // A kept-alive connection, idle after its request.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut idle, &mut String::new(), "ok").await;
    let in_flight = tokio::task::spawn_blocking(move || {
        http::request("GET", &format!("http://{addr}/slow"), &[], b"")
    });
    entered.notified().await;
    // A slow client in the middle of its headers.
    let slow = open(addr, only_partial_headers(1)).await;
    // The idle connection and the slow one go at once (long before their
    // timeouts and the grace); the request in flight finishes.
    let stopping = tokio::spawn(server.stop());
    let closed = blocking(move || slow.wait_all_closed(Duration::from_secs(10)))
        .await
        .expect("a slow client is closed at the stop, not after the grace");
    assert_eq!(closed.len(), 1);
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buffer))
        .await
        .expect("an idle connection is closed at the stop");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    release.send(()).unwrap();
    let answer = in_flight.await.unwrap().unwrap();
    assert_eq!((answer.status, answer.text().as_str()), (200, "done"));
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the server stops once the request is answered")
        .unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "nothing listens after the stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_refused() {
    let server = start(app(), short()).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("the connection is closed");
    let text = String::from_utf8_lossy(&received);
    assert!(!text.contains(" 200 "), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_guard_wants_the_one_token() {
    let token = AccessToken::generate().unwrap();
    let server = start(require_bearer(app(), token.clone(), "test"), short()).await;
    let url = format!("http://{}/", server.addr);
    let ask = |authorization: Option<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let headers: Vec<(&str, &str)> = authorization
                .as_deref()
                .map(|a| vec![("Authorization", a)])
                .unwrap_or_default();
            http::request("GET", &url, &headers, b"").unwrap()
        })
    };
    let none = ask(None).await.unwrap();
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Bearer realm=\"test\"")
    );
    let wrong = ask(Some(format!("Bearer {}x", token.expose())))
        .await
        .unwrap();
    assert_eq!(wrong.status, 401);
    assert!(!wrong.text().contains(token.expose()));
    let right = ask(Some(format!("Bearer {}", token.expose())))
        .await
        .unwrap();
    assert_eq!((right.status, right.text().as_str()), (200, "ok"));
    server.stop().await;
}
