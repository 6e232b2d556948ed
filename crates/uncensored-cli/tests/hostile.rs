//! The command's servers in a hostile world, started as a user starts them:
//! `webhook serve` and `mcp --http` close slow clients (partial headers,
//! withheld and dribbled bodies, idle keep-alive) under short limits given
//! by flags while real requests are answered; at the connection cap the
//! API's real callback waits its turn and is delivered; `webhook serve`
//! stops on SIGTERM with slow clients open. `mcp --http` and `gallery` on an
//! address that is not loopback ask for their access token, printed once on
//! stderr and nowhere else.

mod support;

use std::io::{BufRead as _, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use uncensored_test_servers::http;
use uncensored_test_servers::slow::{self, Attack, Slow};

const BIN: &str = env!("CARGO_BIN_EXE_uncensored");
/// Short limits, so that slow clients go within seconds.
const SHORT: [&str; 12] = [
    "--header-timeout",
    "1s",
    "--body-timeout",
    "1s",
    "--request-timeout",
    "2s",
    "--idle-timeout",
    "1s",
    "--write-timeout",
    "1s",
    "--shutdown-grace",
    "1s",
];

static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "hostile-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("images")).unwrap();
    dir
}

/// A server process, killed when the test ends however it ends; its stdout
/// and stderr lines as they come.
struct Server {
    child: Child,
    url: String,
    addr: SocketAddr,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    receiver
}

/// Starts `uncensored ARGS` in `dir`; its first stdout line is the URL it serves.
fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut command = Command::new(BIN);
    for var in support::MACHINE_VARS {
        command.env_remove(var);
    }
    let mut child = command
        .current_dir(dir)
        .env("XDG_CONFIG_HOME", dir)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let stdout = lines(child.stdout.take().unwrap());
    let stderr = lines(child.stderr.take().unwrap());
    let url = match stdout.recv_timeout(Duration::from_secs(60)) {
        Ok(url) => url,
        Err(_) => {
            let _ = child.kill();
            let said: Vec<String> = stderr.try_iter().collect();
            panic!("{args:?} printed no URL: {said:?}");
        }
    };
    let authority = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("not a URL: {url}"));
    let listening: SocketAddr = authority.parse().unwrap();
    // Reached through loopback, whatever the address it listens on.
    let addr = SocketAddr::from(([127, 0, 0, 1], listening.port()));
    Server {
        child,
        url,
        addr,
        stdout,
        stderr,
    }
}

impl Server {
    /// The next stderr line that `wanted` picks, waiting at most a minute.
    fn stderr_line(&self, wanted: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let line = tokio::task::block_in_place(|| self.stderr.recv_timeout(left))
                .expect("the line comes on stderr");
            if wanted(&line) {
                return line;
            }
        }
    }

    /// Stops it with SIGKILL; everything it wrote on stdout and stderr after
    /// what was already read.
    fn kill(mut self) -> (Vec<String>, Vec<String>) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The pipes close with the process: each drain ends at their end.
        let drain = |lines: &mpsc::Receiver<String>| {
            let mut all = Vec::new();
            while let Ok(line) = lines.recv_timeout(Duration::from_secs(10)) {
                all.push(line);
            }
            all
        };
        tokio::task::block_in_place(|| (drain(&self.stdout), drain(&self.stderr)))
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.unwrap()
}

async fn attack(addr: SocketAddr, attack: Attack) -> slow::Attackers {
    blocking(move || slow::attack(addr, &attack))
        .await
        .expect("the slow clients connect")
}

async fn all_closed(attackers: slow::Attackers) -> Vec<slow::Closed> {
    blocking(move || attackers.wait_all_closed(Duration::from_secs(30)))
        .await
        .unwrap_or_else(|problem| panic!("{problem}"))
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

async fn request(
    method: &'static str,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> http::Response {
    blocking(move || {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        http::request(method, &url, &headers, &body)
    })
    .await
    .expect("a real request is answered")
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"hostile-test","version":"1"}}}"#;

/// An MCP `initialize` over Streamable HTTP, with `extra` headers.
async fn initialize(url: &str, extra: &[(&str, &str)]) -> http::Response {
    let mut headers = vec![
        ("Content-Type".to_string(), "application/json".to_string()),
        (
            "Accept".to_string(),
            "application/json, text/event-stream".to_string(),
        ),
    ];
    headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    request(
        "POST",
        url.to_string(),
        headers,
        INITIALIZE.as_bytes().to_vec(),
    )
    .await
}

fn assert_initialized(answer: &http::Response) {
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        answer.text().contains("\"serverInfo\""),
        "{}",
        answer.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_serve_closes_slow_clients_and_stops_on_sigterm() {
    let emulator = uncensored_emulator::Emulator::start(Default::default())
        .await
        .unwrap();
    let dir = scratch();
    let mut args = vec![
        "--base-url",
        emulator.base_url(),
        "--api-key",
        uncensored_emulator::DEFAULT_KEY,
        "webhook",
        "serve",
        "--accept-unsigned",
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend(SHORT);
    let server = start(&dir, &args, &[]);
    let attack_plan = Attack {
        get_target: "/callback".into(),
        post_target: "/callback".into(),
        ..Attack::default()
    };
    let attackers = attack(server.addr, attack_plan).await;
    // A callback about a job that is not ours: read from the API and refused.
    let stranger = request(
        "POST",
        server.url.clone(),
        vec![("Content-Type".into(), "application/json".into())],
        br#"{"request_id": "not-a-job-of-ours", "status": "success"}"#.to_vec(),
    )
    .await;
    assert_eq!(stranger.status, 404, "{}", stranger.text());
    let closed = all_closed(attackers).await;
    assert_eq!(closed.len(), 26);
    for one in &closed {
        match one.kind {
            Slow::PartialHeaders => assert!(one.after >= Duration::from_millis(900), "{one:?}"),
            Slow::IdleKeepAlive => assert_eq!(one.status, Some(405), "{one:?}"),
            // The callback's body went silent, or came too slowly.
            Slow::WithheldBody | Slow::DribbledBody => assert!(one.status.is_some(), "{one:?}"),
        }
    }
    // SIGTERM with a slow client open: it stops within its grace, cleanly.
    let _lingering = attack(server.addr, only_partial_headers(1)).await;
    let pid = server.child.id().to_string();
    let signal = |name: &str| {
        Command::new("kill")
            .args([name, &pid])
            .status()
            .unwrap()
            .success()
    };
    assert!(signal("-TERM"));
    let mut server = server;
    let exited = tokio::time::timeout(
        Duration::from_secs(20),
        blocking(move || server.child.wait().unwrap()),
    )
    .await;
    let Ok(status) = exited else {
        signal("-KILL");
        panic!("webhook serve still runs 20 s after SIGTERM");
    };
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_its_connection_cap_webhook_serve_still_gets_the_apis_callback() {
    let emulator = uncensored_emulator::Emulator::start(Default::default())
        .await
        .unwrap();
    let dir = scratch();
    let mut args = vec![
        "--base-url",
        emulator.base_url(),
        "--api-key",
        uncensored_emulator::DEFAULT_KEY,
        "webhook",
        "serve",
        "--accept-unsigned",
        "--listen",
        "127.0.0.1:0",
        "--max-connections",
        "4",
    ];
    args.extend(SHORT);
    let server = start(&dir, &args, &[]);
    let attackers = attack(server.addr, only_partial_headers(4)).await;
    // The API calls back; its connection waits until a slow client is evicted.
    let mut generate = Command::new(BIN);
    generate
        .current_dir(&dir)
        .env("XDG_CONFIG_HOME", &dir)
        .env_remove("UNCENSORED_CALLBACK_SECRET")
        .args([
            "--base-url",
            emulator.base_url(),
            "--api-key",
            uncensored_emulator::DEFAULT_KEY,
            "generate",
            "called back through a full server",
            "--async",
            "--callback-url",
            &server.url,
        ]);
    let generate = blocking(move || generate.output().unwrap()).await;
    assert!(
        generate.status.success(),
        "{}",
        String::from_utf8_lossy(&generate.stderr)
    );
    let job = String::from_utf8(generate.stdout)
        .unwrap()
        .trim()
        .to_string();
    let stored =
        tokio::task::block_in_place(|| server.stdout.recv_timeout(Duration::from_secs(60)))
            .expect("the callback is delivered");
    let delivered = Instant::now();
    assert!(stored.starts_with(&format!("{job} stored at ")), "{stored}");
    let closed = all_closed(attackers).await;
    assert!(
        slow::after_first_close(delivered, &closed),
        "served over the cap"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_http_closes_slow_clients_and_answers_real_ones() {
    let dir = scratch();
    let mut args = vec![
        "--emulator",
        "mcp",
        "--http",
        "127.0.0.1:0",
        "--out",
        "images",
        "--max-connections",
        "64",
    ];
    args.extend(SHORT);
    let server = start(&dir, &args, &[]);
    let attackers = attack(
        server.addr,
        Attack {
            post_target: "/mcp".into(),
            ..Attack::default()
        },
    )
    .await;
    // On loopback no token is asked.
    assert_initialized(&initialize(&server.url, &[]).await);
    // On loopback the Host check stays: a page whose name resolves to
    // loopback (DNS rebinding) is refused.
    let rebound = initialize(&server.url, &[("Host", "rebound.example.com")]).await;
    assert_eq!(rebound.status, 403, "{}", rebound.text());
    let closed = all_closed(attackers).await;
    assert_eq!(closed.len(), 26);
    for one in &closed {
        if one.kind == Slow::PartialHeaders {
            assert!(one.after >= Duration::from_millis(900), "{one:?}");
        }
    }
    assert_initialized(&initialize(&server.url, &[]).await);

    // At a cap of 4, a real client waits for the slow ones to go.
    let mut capped = vec![
        "--emulator",
        "mcp",
        "--http",
        "127.0.0.1:0",
        "--out",
        "images",
    ];
    capped.extend(["--max-connections", "4"]);
    capped.extend(SHORT);
    let full = start(&dir, &capped, &[]);
    let attackers = attack(full.addr, only_partial_headers(4)).await;
    let answer = initialize(&full.url, &[]).await;
    let answered = Instant::now();
    assert_initialized(&answer);
    let closed = all_closed(attackers).await;
    assert!(
        slow::after_first_close(answered, &closed),
        "served over the cap"
    );
    drop((server, full));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_http_on_a_public_address_wants_its_token_printed_once() {
    let dir = scratch();
    let server = start(
        &dir,
        &[
            "--emulator",
            "--verbose",
            "mcp",
            "--http",
            "0.0.0.0:0",
            "--out",
            "images",
        ],
        &[],
    );
    let line = server.stderr_line(|line| line.contains("Authorization: Bearer"));
    let token = line
        .split("Authorization: Bearer ")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    assert!(token.len() >= 43, "32 random bytes: {line}");
    let url = format!("http://{}/mcp", server.addr);
    let none = initialize(&url, &[]).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Bearer realm=\"uncensored mcp\"")
    );
    let wrong = format!("Bearer {}", &token[..token.len() - 1]);
    let refused = initialize(&url, &[("Authorization", &wrong)]).await;
    assert_eq!(refused.status, 401);
    assert!(!refused.text().contains(&token));
    let right = format!("Bearer {token}");
    assert_initialized(&initialize(&url, &[("Authorization", &right)]).await);
    // Another machine names the server as it knows it: the token, not the
    // loopback-only Host check, decides.
    let remote = [
        ("Host", "mcp.example.com:8080"),
        ("Authorization", right.as_str()),
    ];
    assert_initialized(&initialize(&url, &remote).await);
    let anonymous = initialize(&url, &[("Host", "mcp.example.com:8080")]).await;
    assert_eq!(anonymous.status, 401);
    let (stdout, stderr) = server.kill();
    // Told once: the line above, never again in its output or logs.
    for line in stdout.iter().chain(&stderr) {
        assert!(!line.contains(&token), "the token again: {line}");
    }

    // A given token is asked and never printed; a bad one is refused without being shown.
    let given = "a-given-token-0123456789abcdef0123456789";
    let server = start(
        &dir,
        &[
            "--emulator",
            "mcp",
            "--http",
            "0.0.0.0:0",
            "--out",
            "images",
        ],
        &[("UNCENSORED_MCP_TOKEN", given)],
    );
    let url = format!("http://{}/mcp", server.addr);
    assert_eq!(initialize(&url, &[]).await.status, 401);
    let right = format!("Bearer {given}");
    assert_initialized(&initialize(&url, &[("Authorization", &right)]).await);
    let (stdout, stderr) = server.kill();
    assert!(
        stdout.iter().chain(&stderr).all(|l| !l.contains(given)),
        "{stderr:?}"
    );
    let short = "short-secret-token";
    let mut bad = Command::new(BIN);
    bad.current_dir(&dir)
        .env("XDG_CONFIG_HOME", &dir)
        .env("UNCENSORED_MCP_TOKEN", short)
        .args([
            "--emulator",
            "mcp",
            "--http",
            "0.0.0.0:0",
            "--out",
            "images",
        ]);
    let refused = blocking(move || bad.output().unwrap()).await;
    assert_eq!(refused.status.code(), Some(6));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("--token") && !said.contains(short), "{said}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_gallery_prints_its_login_url_once() {
    let dir = scratch();
    let server = start(
        &dir,
        &[
            "--verbose",
            "gallery",
            "--allow-remote",
            "--listen",
            "0.0.0.0:0",
            "--out",
            "images",
        ],
        &[],
    );
    let line = server.stderr_line(|line| line.contains("?token="));
    let login = line
        .split_whitespace()
        .find(|word| word.contains("?token="))
        .unwrap();
    let token = login.split("?token=").nth(1).unwrap().to_string();
    assert!(token.len() >= 43, "{line}");
    let base = format!("http://{}", server.addr);
    let none = request("GET", format!("{base}/api/images"), vec![], vec![]).await;
    assert_eq!(none.status, 401);
    assert!(
        none.header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer"))
    );
    let page = request("GET", format!("{base}/?token={token}"), vec![], vec![]).await;
    assert_eq!(page.status, 200);
    let cookie = page.header("set-cookie").unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let jar = cookie.split(';').next().unwrap().to_string();
    let api = request(
        "GET",
        format!("{base}/api/images"),
        vec![("Cookie".into(), jar)],
        vec![],
    )
    .await;
    assert_eq!(api.status, 200);
    let (stdout, stderr) = server.kill();
    for line in stdout.iter().chain(&stderr) {
        assert!(!line.contains(&token), "the token again: {line}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
