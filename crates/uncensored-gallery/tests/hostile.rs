//! The gallery in a hostile world: slow clients closed by its limits while
//! real requests and an open page's event stream go on, the connection cap,
//! and the access token of a gallery on an address that is not loopback
//! (header, the printed URL, the cookie it sets; never shown).

// The shared fixture; this file uses only part of it.
#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use uncensored_deliver::serve::{AccessToken, ServerLimits};
use uncensored_gallery::GalleryOptions;
use uncensored_test_servers::http;
use uncensored_test_servers::slow::{self, Attack, Slow};

use support::{fixture_with, put};

fn short() -> ServerLimits {
    ServerLimits::default()
        .with_header_read_timeout(Duration::from_secs(1))
        .with_body_timeout(Duration::from_secs(1))
        .with_request_timeout(Duration::from_secs(2))
        .with_idle_timeout(Duration::from_secs(1))
        .with_write_timeout(Duration::from_secs(1))
        .with_shutdown_grace(Duration::from_secs(1))
}

fn options(limits: ServerLimits) -> GalleryOptions {
    let mut options = GalleryOptions::default();
    options.limits = limits;
    options
}

async fn get(url: String, headers: Vec<(String, String)>) -> http::Response {
    tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        http::request("GET", &url, &headers, b"")
    })
    .await
    .unwrap()
    .expect("a real request is answered")
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
async fn slow_clients_are_closed_while_pages_and_their_events_go_on() {
    let f = fixture_with(options(short()), "127.0.0.1:0").await;
    let addr = f.server.local_addr();
    // An open page's event stream, from before the attack to after it.
    let events = reqwest::get(format!("{}/api/events", f.base))
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut events = events.bytes_stream();
    let attack = Attack {
        get_target: "/app.css".into(),
        post_target: "/api/images".into(),
        ..Attack::default()
    };
    let attackers = open(addr, attack).await;
    let page = get(format!("{}/api/images", f.base), vec![]).await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("job-a"));
    let closed = all_closed(attackers).await;
    assert_eq!(closed.len(), 26);
    for one in &closed {
        if one.kind == Slow::PartialHeaders {
            assert!(one.after >= Duration::from_millis(900), "{one:?}");
        }
        if one.kind == Slow::IdleKeepAlive {
            assert_eq!(one.status, Some(200), "{one:?}");
        }
    }
    // The stream outlived the request and idle timeouts (every slow client
    // took at least the header timeout to go) and still tells what changes.
    put(&f.storage, "job-late", "after the attack", "model-dev", 3.0).await;
    f.server.refresh().await;
    let mut seen = String::new();
    while !seen.contains("after the attack") {
        let chunk = tokio::time::timeout(Duration::from_secs(20), events.next())
            .await
            .expect("the event stream goes on")
            .expect("the stream stays open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_a_page_waits_for_the_slow_clients_to_go() {
    let f = fixture_with(options(short().with_max_connections(4)), "127.0.0.1:0").await;
    let attack = Attack {
        partial_headers: 4,
        withheld_bodies: 0,
        dribbled_bodies: 0,
        idle_keep_alive: 0,
        ..Attack::default()
    };
    let attackers = open(f.server.local_addr(), attack).await;
    let page = get(format!("{}/", f.base), vec![]).await;
    let answered = Instant::now();
    assert_eq!(page.status, 200);
    let closed = all_closed(attackers).await;
    assert!(
        slow::after_first_close(answered, &closed),
        "served over the cap"
    );
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_gallery_wants_its_token_from_programs_and_browsers() {
    let mut remote = options(ServerLimits::default());
    remote.allow_remote = true;
    // 0.0.0.0 is not loopback; the tests reach it through 127.0.0.1.
    let f = fixture_with(remote, "0.0.0.0:0").await;
    let token = f.server.access_token().expect("a token is made").clone();
    let secret = token.expose().to_string();
    assert!(secret.len() >= 43, "32 random bytes");
    let api = format!("{}/api/images", f.base);
    let none = get(api.clone(), vec![]).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Bearer realm=\"uncensored gallery\"")
    );
    let bearer = |t: &str| vec![("Authorization".to_string(), format!("Bearer {t}"))];
    let wrong = get(api.clone(), bearer(&format!("{secret}x"))).await;
    assert_eq!(wrong.status, 401);
    assert!(!wrong.text().contains(&secret));
    let right = get(api.clone(), bearer(&secret)).await;
    assert_eq!(right.status, 200);
    assert!(right.text().contains("job-a"));
    // A wrong ?token= is refused too.
    let guessed = get(format!("{}/?token=AAAA{}", f.base, &secret[4..]), vec![]).await;
    assert_eq!(guessed.status, 401);
    assert!(guessed.header("set-cookie").is_none());

    // A browser: the printed URL answers the page and sets the cookie that
    // its fetches, images and event stream (no headers there) carry.
    let login = f.server.login_url().unwrap();
    assert!(login.ends_with(&format!("/?token={secret}")), "{login}");
    let port = f.server.local_addr().port();
    let page = get(format!("{}/?token={secret}", f.base), vec![]).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text().contains("<html"),
        "the page itself, no redirect"
    );
    let cookie = page.header("set-cookie").expect("a cookie").to_string();
    assert_eq!(
        cookie,
        format!("uncensored-gallery-{port}={secret}; HttpOnly; SameSite=Strict; Path=/")
    );
    let jar = vec![(
        "Cookie".to_string(),
        format!("uncensored-gallery-{port}={secret}"),
    )];
    assert_eq!(get(api.clone(), jar.clone()).await.status, 200);
    assert_eq!(
        get(
            format!("{}/thumbs/2026-05-09/job-a.jpg", f.base),
            jar.clone()
        )
        .await
        .status,
        200
    );
    let events = reqwest::Client::new()
        .get(format!("{}/api/events", f.base))
        .header("Cookie", &jar[0].1)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    drop(events);

    // Never shown: not by Debug, not in an answer.
    assert!(!format!("{:?}", f.server).contains(&secret));
    assert!(!format!("{token:?}").contains(&secret));
    assert!(!none.text().contains(&secret));
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_token_is_the_one_asked_and_loopback_asks_none() {
    let given = AccessToken::new("0123456789abcdef0123456789abcdef-given").unwrap();
    let mut remote = options(ServerLimits::default());
    remote.allow_remote = true;
    remote.token = Some(given.clone());
    assert!(!format!("{remote:?}").contains(given.expose()));
    let f = fixture_with(remote, "0.0.0.0:0").await;
    assert_eq!(f.server.access_token().unwrap().expose(), given.expose());
    let api = format!("{}/api/images", f.base);
    assert_eq!(get(api.clone(), vec![]).await.status, 401);
    let header = vec![(
        "Authorization".to_string(),
        format!("Bearer {}", given.expose()),
    )];
    assert_eq!(get(api, header).await.status, 200);
    f.finish().await;

    let local = fixture_with(GalleryOptions::default(), "127.0.0.1:0").await;
    assert!(local.server.access_token().is_none());
    assert!(local.server.login_url().is_none());
    let page = get(format!("{}/api/images", local.base), vec![]).await;
    assert_eq!(page.status, 200);
    local.finish().await;
}
