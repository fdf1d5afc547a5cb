//! HTTP basic auth from an htpasswd file with bcrypt hashes (Ironic's `http_basic`).
//! Without a file the API runs `noauth`, which the server allows on loopback only.
//!
//! bcrypt is slow by design (tens of milliseconds at cost 10), so verification runs on
//! the blocking pool, a few at a time, never on the runtime's workers: a flood of wrong
//! passwords must not stop the rest of the API from answering. An unknown user is
//! verified against a dummy hash of the same cost, so the time taken does not tell
//! which user names exist.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::sync::Semaphore;

use super::{ApiError, Shared};

/// Credentials verified once are remembered (CLI clients send the same header on every
/// request); at this many the memory is emptied and refilled by the next requests.
const MAX_CACHED: usize = 1024;
/// Longer `user:password` pairs are refused unverified: bcrypt reads 72 bytes of a
/// password, and nothing this long is worth caching.
const MAX_CREDENTIALS: usize = 1024;
/// Requests queued for a bcrypt check beyond this many get 503 at once instead of
/// holding a connection for seconds.
const MAX_WAITING: usize = 256;
/// Salt and digest of a syntactically valid bcrypt hash that no password is known to
/// match; the cost is put in front at load time.
const DUMMY_SALT_AND_HASH: &str = "N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";

#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    #[error("cannot read the htpasswd file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("htpasswd file {path} line {line}: expected user:$2y$… (bcrypt); create it with `htpasswd -B`")]
    Line { path: String, line: usize },
}

/// What a request's `Authorization` header earned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    /// Too many checks already waiting for a bcrypt slot.
    Busy,
}

pub struct Htpasswd {
    users: HashMap<String, String>,
    /// Verified against when the user is unknown: same cost as the real hashes.
    dummy_hash: String,
    /// `user:password` pairs already verified.
    verified: Mutex<HashSet<String>>,
    /// bcrypt checks running at once: fewer than the cores, so the runtime keeps one.
    verifying: Semaphore,
    waiting: AtomicUsize,
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, HtpasswdError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text, &p)
    }

    pub fn parse(text: &str, path: &str) -> Result<Htpasswd, HtpasswdError> {
        let mut users = HashMap::new();
        let mut cost = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = || HtpasswdError::Line {
                path: path.into(),
                line: i + 1,
            };
            let (user, hash) = line.split_once(':').ok_or_else(bad)?;
            if !hash.starts_with("$2") {
                return Err(bad());
            }
            let parts = hash.parse::<bcrypt::HashParts>().map_err(|_| bad())?;
            cost = cost.max(Some(parts.get_cost()));
            users.insert(user.to_string(), hash.to_string());
        }
        let cost = cost.unwrap_or(bcrypt::DEFAULT_COST);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Htpasswd {
            users,
            dummy_hash: format!("$2b${cost:02}${DUMMY_SALT_AND_HASH}"),
            verified: Mutex::new(HashSet::new()),
            verifying: Semaphore::new(cores.saturating_sub(1).max(1)),
            waiting: AtomicUsize::new(0),
        })
    }

    /// Checks an `Authorization` header value.
    pub async fn check(&self, authorization: &str) -> Verdict {
        let Some(credentials) = decode_basic(authorization) else {
            return Verdict::Denied;
        };
        if self.is_cached(&credentials) {
            return Verdict::Allowed;
        }
        let Some((user, password)) = credentials.split_once(':') else {
            return Verdict::Denied;
        };
        let known = self.users.get(user);
        let hash = known.unwrap_or(&self.dummy_hash).clone();
        let password = password.to_string();

        let waiting = WaitingGuard::enter(&self.waiting);
        if waiting.ahead >= MAX_WAITING {
            return Verdict::Busy;
        }
        let Ok(_slot) = self.verifying.acquire().await else {
            return Verdict::Denied;
        };
        let matches =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if !(matches && known.is_some()) {
            return Verdict::Denied;
        }
        if let Ok(mut v) = self.verified.lock() {
            if v.len() >= MAX_CACHED {
                v.clear();
            }
            v.insert(credentials);
        }
        Verdict::Allowed
    }

    fn is_cached(&self, credentials: &str) -> bool {
        self.verified
            .lock()
            .map(|v| v.contains(credentials))
            .unwrap_or(false)
    }

    /// How many credentials are remembered as verified.
    pub fn cached(&self) -> usize {
        self.verified.lock().map(|v| v.len()).unwrap_or(0)
    }
}

/// `Basic <base64(user:password)>` → `user:password`, when short enough to check.
fn decode_basic(authorization: &str) -> Option<String> {
    let b64 = authorization.strip_prefix("Basic ")?.trim();
    if b64.len() > MAX_CREDENTIALS * 4 / 3 + 4 {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(raw).ok()
}

/// Counts a request waiting for (or holding) a bcrypt slot while it lives.
struct WaitingGuard<'a> {
    count: &'a AtomicUsize,
    /// How many were counted before this one.
    ahead: usize,
}

impl<'a> WaitingGuard<'a> {
    fn enter(count: &'a AtomicUsize) -> WaitingGuard<'a> {
        let ahead = count.fetch_add(1, Ordering::SeqCst);
        WaitingGuard { count, ahead }
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

pub async fn require(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let Some(auth) = &state.auth else {
        return next.run(req).await;
    };
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    match auth.check(header).await {
        Verdict::Allowed => return next.run(req).await,
        Verdict::Busy => {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many authentication attempts are being verified: retry in a few seconds",
            )
            .into_response()
        }
        Verdict::Denied => {}
    }
    let mut r = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "Authentication required: send HTTP basic credentials of a user in the htpasswd file",
    )
    .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Basic realm=\"Baremetal API\""),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(credentials: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    #[tokio::test]
    async fn bcrypt_users_are_checked() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let h = Htpasswd::parse(&format!("# comment\nadmin:{hash}\n"), "f").unwrap();
        assert_eq!(h.check(&basic("admin:secret")).await, Verdict::Allowed);
        assert_eq!(h.check(&basic("admin:secret")).await, Verdict::Allowed); // cached
        assert_eq!(h.cached(), 1);
        assert_eq!(h.check(&basic("admin:wrong")).await, Verdict::Denied);
        assert_eq!(h.check(&basic("nobody:secret")).await, Verdict::Denied);
        assert_eq!(h.check("Bearer x").await, Verdict::Denied);
        assert_eq!(h.check("Basic !!!").await, Verdict::Denied);
        let long = format!("admin:{}", "x".repeat(MAX_CREDENTIALS * 2));
        assert_eq!(h.check(&basic(&long)).await, Verdict::Denied);
    }

    #[test]
    fn the_dummy_hash_has_the_users_cost_and_verifies() {
        let hash = bcrypt::hash("secret", 5).unwrap();
        let h = Htpasswd::parse(&format!("admin:{hash}\n"), "f").unwrap();
        let parts: bcrypt::HashParts = h.dummy_hash.parse().unwrap();
        assert_eq!(parts.get_cost(), 5);
        // A well-formed hash: verify runs the full bcrypt rather than failing fast.
        assert!(!bcrypt::verify("secret", &h.dummy_hash).unwrap());
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        // Every password of this user is "right" for the cache test: bcrypt truncates
        // at 72 bytes, so distinct suffixes past it all verify.
        let base = "p".repeat(72);
        let hash = bcrypt::hash(&base, 4).unwrap();
        let h = Htpasswd::parse(&format!("admin:{hash}\n"), "f").unwrap();
        for i in 0..MAX_CACHED + 10 {
            let creds = format!("admin:{base}{i}");
            assert_eq!(h.check(&basic(&creds)).await, Verdict::Allowed);
            assert!(h.cached() <= MAX_CACHED);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_beyond_the_queue_bound_are_busy_at_once() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let h = std::sync::Arc::new(Htpasswd::parse(&format!("admin:{hash}\n"), "f").unwrap());
        // Every bcrypt slot taken: checks queue behind them.
        let slots = h.verifying.available_permits() as u32;
        let held = h.verifying.acquire_many(slots).await.unwrap();
        let mut queued = tokio::task::JoinSet::new();
        for _ in 0..MAX_WAITING {
            let h = h.clone();
            queued.spawn(async move { h.check(&basic("admin:wrong")).await });
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while h.waiting.load(Ordering::SeqCst) < MAX_WAITING {
            assert!(
                std::time::Instant::now() < deadline,
                "the checks did not queue"
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(h.check(&basic("admin:secret")).await, Verdict::Busy);
        drop(held);
        while let Some(v) = queued.join_next().await {
            assert_eq!(v.unwrap(), Verdict::Denied);
        }
        assert_eq!(h.waiting.load(Ordering::SeqCst), 0);
        assert_eq!(h.check(&basic("admin:secret")).await, Verdict::Allowed);
    }

    #[test]
    fn bad_lines_name_the_line() {
        let e = Htpasswd::parse("admin:plain\n", "f")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = Htpasswd::parse("# c\nadmin:$2y$10$short\n", "f")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
