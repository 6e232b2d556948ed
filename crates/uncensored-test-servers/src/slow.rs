//! Slow and hostile HTTP clients, for the tests that show a server closes
//! them: connections that send part of a request's headers and then
//! nothing, that send headers with a `Content-Length` and withhold or
//! dribble the body, and that finish a request and then stay idle on the
//! kept-alive connection. Blocking (`std::net`, a thread per connection),
//! usable from sync and async tests alike (in `spawn_blocking`).

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the slow clients do, and how many of each.
#[derive(Debug, Clone)]
pub struct Attack {
    /// Connections that send a request line and part of the headers, then nothing.
    pub partial_headers: usize,
    /// Connections that send a `POST`'s headers with `Content-Length: 1000`,
    /// a few bytes of the body, then nothing.
    pub withheld_bodies: usize,
    /// Connections that send such a body one byte every [`Attack::dribble_every`].
    pub dribbled_bodies: usize,
    /// How often a dribbled body gets its next byte.
    pub dribble_every: Duration,
    /// Connections that send one whole `GET`, read its whole response, then
    /// keep the connection open and send nothing.
    pub idle_keep_alive: usize,
    /// The target of the partial headers and the idle connections' `GET`
    /// (it must answer with a `Content-Length`).
    pub get_target: String,
    /// The target of the bodies' `POST`.
    pub post_target: String,
    /// Headers every request carries (an `Authorization`, say).
    pub headers: Vec<(String, String)>,
}

impl Default for Attack {
    /// 20 partial headers, 3 withheld bodies, 2 dribbled (a byte every
    /// 300 ms), 1 idle keep-alive; `GET /` and `POST /`.
    fn default() -> Self {
        Self {
            partial_headers: 20,
            withheld_bodies: 3,
            dribbled_bodies: 2,
            dribble_every: Duration::from_millis(300),
            idle_keep_alive: 1,
            get_target: "/".into(),
            post_target: "/".into(),
            headers: Vec::new(),
        }
    }
}

/// Which kind of slow client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slow {
    /// Part of the headers, then nothing.
    PartialHeaders,
    /// The headers, part of the body, then nothing.
    WithheldBody,
    /// The body a byte at a time.
    DribbledBody,
    /// One whole request and response, then idle.
    IdleKeepAlive,
}

/// A slow client the server closed.
#[derive(Debug, Clone)]
pub struct Closed {
    /// Which kind it was.
    pub kind: Slow,
    /// When the server closed it (end of stream or reset).
    pub at: Instant,
    /// How long after it connected.
    pub after: Duration,
    /// The status of the last response it read before the close, if any.
    pub status: Option<u16>,
}

/// The slow clients of one [`attack`], each on its own thread until the
/// server closes it.
#[derive(Debug)]
pub struct Attackers {
    results: mpsc::Receiver<Result<Closed, String>>,
    count: usize,
}

/// How late a slow client's thread may notice that the server closed it
/// (scheduling on a busy machine): [`after_first_close`] allows this much.
pub const NOTICE_SLACK: Duration = Duration::from_millis(200);

/// Whether `at` (a real request's answer, say) came after the first of
/// `closed`, give or take [`NOTICE_SLACK`]: at a full connection cap a real
/// request answered before any slow client went was served over the cap.
pub fn after_first_close(at: Instant, closed: &[Closed]) -> bool {
    closed
        .iter()
        .map(|c| c.at)
        .min()
        .is_some_and(|first| at + NOTICE_SLACK >= first)
}

/// How long a slow client waits for the server to close it before it gives up.
const GIVE_UP: Duration = Duration::from_secs(120);

/// Opens the slow clients of `attack` on `addr`, in order (partial headers,
/// withheld bodies, dribbled bodies, idle), each connected and with its
/// first bytes sent when this returns.
pub fn attack(addr: SocketAddr, attack: &Attack) -> std::io::Result<Attackers> {
    let (sender, results) = mpsc::channel();
    let mut extra = String::new();
    for (name, value) in &attack.headers {
        extra.push_str(&format!("{name}: {value}\r\n"));
    }
    let post = format!(
        "POST {} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"a\":",
        attack.post_target
    );
    let plan = [
        (
            Slow::PartialHeaders,
            attack.partial_headers,
            format!(
                "GET {} HTTP/1.1\r\nHost: {addr}\r\n{extra}X-Slow: ",
                attack.get_target
            ),
        ),
        (Slow::WithheldBody, attack.withheld_bodies, post.clone()),
        (Slow::DribbledBody, attack.dribbled_bodies, post),
        (
            Slow::IdleKeepAlive,
            attack.idle_keep_alive,
            format!(
                "GET {} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n",
                attack.get_target
            ),
        ),
    ];
    let mut count = 0;
    for (kind, how_many, first_bytes) in plan {
        for _ in 0..how_many {
            let mut stream = TcpStream::connect(addr)?;
            let connected = Instant::now();
            stream.write_all(first_bytes.as_bytes())?;
            let sender = sender.clone();
            let every = attack.dribble_every;
            std::thread::spawn(move || {
                let closed = linger(stream, kind, connected, every);
                let _ = sender.send(closed);
            });
            count += 1;
        }
    }
    Ok(Attackers { results, count })
}

impl Attackers {
    /// Waits until the server has closed every slow client, for at most
    /// `deadline`; the closes in the order they happened, or what went wrong
    /// (a client still open at the deadline, an idle client whose response
    /// said `Connection: close`, so that it tested nothing).
    pub fn wait_all_closed(mut self, deadline: Duration) -> Result<Vec<Closed>, String> {
        let count = self.count;
        self.wait_closed(count, deadline)
    }

    /// Waits until the server has closed `count` more of the slow clients
    /// (at most as many as are still open), for at most `deadline`; those
    /// closes in order, or what went wrong (as [`Attackers::wait_all_closed`]).
    pub fn wait_closed(&mut self, count: usize, deadline: Duration) -> Result<Vec<Closed>, String> {
        let count = count.min(self.count);
        let until = Instant::now() + deadline;
        let mut closed = Vec::with_capacity(count);
        while closed.len() < count {
            let left = until.saturating_duration_since(Instant::now());
            match self.results.recv_timeout(left) {
                Ok(Ok(one)) => closed.push(one),
                Ok(Err(problem)) => return Err(problem),
                Err(_) => {
                    return Err(format!(
                        "{} of {} slow clients still open after {deadline:?}; closed: {closed:?}",
                        self.count - closed.len(),
                        self.count
                    ));
                }
            }
        }
        self.count -= count;
        Ok(closed)
    }
}

/// Keeps the connection as `kind` does until the server closes it.
fn linger(
    mut stream: TcpStream,
    kind: Slow,
    connected: Instant,
    every: Duration,
) -> Result<Closed, String> {
    let give_up = connected + GIVE_UP;
    let mut received = Vec::new();
    let mut status = None;
    loop {
        let now = Instant::now();
        if now >= give_up {
            return Err(format!("a {kind:?} client was never closed"));
        }
        let wait = match kind {
            Slow::DribbledBody => every,
            _ => give_up - now,
        };
        let _ = stream.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        let mut buffer = [0u8; 4096];
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                received.extend_from_slice(&buffer[..n]);
                if let Some(answer) = last_status(&received) {
                    status = Some(answer);
                }
                if kind == Slow::IdleKeepAlive && says_close(&received) {
                    return Err(format!(
                        "the idle client's response closes the connection itself: {}",
                        String::from_utf8_lossy(&received)
                    ));
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if kind == Slow::DribbledBody && stream.write_all(b" ").is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                ) =>
            {
                break;
            }
            Err(e) => return Err(format!("a {kind:?} client failed to read: {e}")),
        }
    }
    let at = Instant::now();
    Ok(Closed {
        kind,
        at,
        after: at - connected,
        status,
    })
}

/// The status of the last response head in `received`.
fn last_status(received: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(received);
    let at = text.rfind("HTTP/1.")?;
    text[at..].split_whitespace().nth(1)?.parse().ok()
}

fn says_close(received: &[u8]) -> bool {
    String::from_utf8_lossy(received)
        .to_ascii_lowercase()
        .contains("\r\nconnection: close\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_of_the_last_response_is_read() {
        let two =
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nHTTP/1.1 503 Service Unavailable\r\n\r\n";
        assert_eq!(last_status(two), Some(503));
        assert_eq!(last_status(b"garbage"), None);
        assert!(says_close(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"));
        assert!(!says_close(b"HTTP/1.1 200 OK\r\n\r\n"));
    }
}
