//! HTTP basic auth under load, over a real socket: bcrypt (cost 10) runs off the
//! runtime's workers, so a flood of wrong passwords leaves the rest of the API
//! answering, and an unknown user costs as much as a wrong password.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{wait_until, Backend, Server};

const COST: u32 = 10;
/// A prompt answer while bcrypt is busy; one check at cost 10 takes ~50–100 ms here.
const PROMPT: Duration = Duration::from_secs(1);

async fn status(http: &reqwest::Client, url: &str, user: Option<(&str, &str)>) -> u16 {
    let mut rb = http.get(url);
    if let Some((u, p)) = user {
        rb = rb.basic_auth(u, Some(p));
    }
    rb.send().await.unwrap().status().as_u16()
}

async fn timed(http: &reqwest::Client, url: &str, user: Option<(&str, &str)>) -> (u16, Duration) {
    let t = Instant::now();
    let s = status(http, url, user).await;
    (s, t.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The fastest try: what the work itself costs, least disturbed by a busy machine.
fn fastest(v: &[Duration]) -> Duration {
    v.iter().copied().min().unwrap()
}

async fn server_with_admin() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let hash = bcrypt::hash("pw", COST).unwrap();
    std::fs::write(&file, format!("admin:{hash}\n")).unwrap();
    let server = Server::start(Backend::Sqlite, move |c| c.htpasswd = Some(file)).await;
    (server, dir)
}

/// One test, two phases in turn: the timing comparison must not share the machine with
/// the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcrypt_is_off_the_runtime_and_hides_which_users_exist() {
    let (server, _dir) = server_with_admin().await;
    let http = reqwest::Client::new();
    let nodes = format!("{}/v1/nodes", server.url);
    unknown_user_costs_as_much_as_a_wrong_password(&http, &nodes).await;
    wrong_password_flood_leaves_the_api_answering(&http, &server.url).await;
    server.stop().await;
}

async fn unknown_user_costs_as_much_as_a_wrong_password(http: &reqwest::Client, nodes: &str) {
    // Warm the connection pool so neither side pays for a TCP handshake.
    status(http, nodes, None).await;
    let (mut wrong, mut unknown) = (vec![], vec![]);
    for _ in 0..7 {
        let (s, t) = timed(http, nodes, Some(("admin", "nope"))).await;
        assert_eq!(s, 401);
        wrong.push(t);
        let (s, t) = timed(http, nodes, Some(("nobody", "nope"))).await;
        assert_eq!(s, 401);
        unknown.push(t);
    }
    eprintln!(
        "median wrong password {:?}, unknown user {:?}",
        median(wrong.clone()),
        median(unknown.clone())
    );
    let (wrong, unknown) = (fastest(&wrong), fastest(&unknown));
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    eprintln!("fastest wrong password {wrong:?}, unknown user {unknown:?}, ratio {ratio:.2}");
    assert!(
        (0.5..=2.0).contains(&ratio),
        "an unknown user took {unknown:?}, a wrong password {wrong:?}: the time tells them apart"
    );
}

async fn wrong_password_flood_leaves_the_api_answering(http: &reqwest::Client, base: &str) {
    let nodes = format!("{base}/v1/nodes");
    // The CLI sends the same header on every request: verified once, then remembered.
    assert_eq!(status(http, &nodes, Some(("admin", "pw"))).await, 200);

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let flood = 24 * cores;
    let answered = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..flood {
        let (http, nodes, answered) = (http.clone(), nodes.clone(), answered.clone());
        tasks.spawn(async move {
            let s = status(&http, &nodes, Some(("admin", &format!("wrong{i}")))).await;
            answered.fetch_add(1, Ordering::SeqCst);
            s
        });
    }
    // bcrypt is busy once the first wrong password has been answered.
    wait_until("a wrong password answered", Duration::from_secs(30), || {
        let answered = answered.clone();
        async move { answered.load(Ordering::SeqCst) > 0 }
    })
    .await;
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let (s, t) = timed(http, &format!("{base}/v1"), None).await;
        assert_eq!(s, 200);
        assert!(t < PROMPT, "GET /v1 took {t:?} during the flood");
        slowest = slowest.max(t);
        let (s, t) = timed(http, &nodes, Some(("admin", "pw"))).await;
        assert_eq!(s, 200);
        assert!(
            t < PROMPT,
            "an authenticated GET took {t:?} during the flood"
        );
        slowest = slowest.max(t);
    }
    let during = answered.load(Ordering::SeqCst);
    assert!(
        during < flood,
        "the flood ({flood} requests) was over before the probes ended: nothing was measured"
    );
    while let Some(s) = tasks.join_next().await {
        assert_eq!(s.unwrap(), 401);
    }
    eprintln!(
        "{flood} wrong passwords answered in {:?}; 10 probes during it, slowest {slowest:?} \
         ({during} of the flood answered when the probes ended)",
        started.elapsed()
    );
}
