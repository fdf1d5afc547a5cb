//! A loopback HTTP server for image tests: serves files from memory with or without
//! Range support, can cut connections at random offsets, send slowly, truncate, and fail
//! with a status. Used by the agent's image tests and the conductor's deploy tests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;

/// How a file is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Accept-Ranges: bytes, honours Range.
    Range,
    /// Ignores Range, always 200 with the whole body.
    NoRange,
    /// Honours Range, but every response is cut after a random number of bytes.
    Cut,
    /// Sends the first half of the body then closes; every later request gets 500.
    Truncate,
    /// Always answers with this status.
    Status(u16),
    /// Like `Range`, but sends 64 KiB every `n` milliseconds (a slow link).
    Slow(u64),
    /// Like `Range`, but the server's first response is cut after this many bytes.
    CutFirst(usize),
}

type Body = BoxBody<Bytes, std::io::Error>;

#[derive(Default)]
struct Files(Mutex<HashMap<String, (Bytes, Mode)>>);

/// The running server; its accept task stops when it is dropped.
pub struct ImageServer {
    pub addr: SocketAddr,
    files: Arc<Files>,
    pub requests: Arc<AtomicU64>,
    pub range_requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ImageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ImageServer {
    /// Start on `rt` (for tests that drive a runtime by hand).
    pub fn start(rt: &tokio::runtime::Runtime) -> ImageServer {
        Self::start_on(rt.handle())
    }

    /// Start on the runtime of the calling async code.
    pub fn start_on_current() -> ImageServer {
        Self::start_on(&tokio::runtime::Handle::current())
    }

    /// Start on `handle` (works from inside async tests too).
    pub fn start_on(handle: &tokio::runtime::Handle) -> ImageServer {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().expect("local addr");
        let files = Arc::new(Files::default());
        let requests = Arc::new(AtomicU64::new(0));
        let range_requests = Arc::new(AtomicU64::new(0));
        let (f, r, rr) = (files.clone(), requests.clone(), range_requests.clone());
        let task = handle.spawn(async move {
            let listener = TcpListener::from_std(std_listener).expect("tokio listener");
            let cuts = Arc::new(Mutex::new(rand::rngs::StdRng::seed_from_u64(42)));
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let (f, r, rr, cuts) = (f.clone(), r.clone(), rr.clone(), cuts.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (f, r, rr, cuts) = (f.clone(), r.clone(), rr.clone(), cuts.clone());
                        async move { Ok::<_, Infallible>(serve(&f, &r, &rr, &cuts, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        ImageServer {
            addr,
            files,
            requests,
            range_requests,
            task,
        }
    }

    /// Serve `data` at `/name`; returns the URL.
    pub fn put(&self, name: &str, data: impl Into<Bytes>, mode: Mode) -> String {
        self.files
            .0
            .lock()
            .unwrap()
            .insert(format!("/{name}"), (data.into(), mode));
        format!("http://{}/{name}", self.addr)
    }
}

fn full(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    r
}

/// A body that sends `data` then fails, which makes hyper drop the connection. Before
/// failing it yields once, so hyper flushes what it buffered (a real cut loses only what
/// is in flight, not the whole response).
fn cut_body(data: Bytes) -> Body {
    let chunks: Vec<Bytes> = data.chunks(64 << 10).map(Bytes::copy_from_slice).collect();
    let stream =
        futures_util::stream::unfold((chunks.into_iter(), false), |(mut it, done)| async move {
            if done {
                return None;
            }
            match it.next() {
                Some(c) => Some((Ok(Frame::data(c)), (it, false))),
                None => {
                    tokio::task::yield_now().await;
                    Some((Err(std::io::Error::other("cut")), (it, true)))
                }
            }
        });
    BodyExt::boxed(StreamBody::new(stream))
}

fn serve(
    files: &Files,
    requests: &AtomicU64,
    range_requests: &AtomicU64,
    cuts: &Mutex<rand::rngs::StdRng>,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let n = requests.fetch_add(1, Ordering::SeqCst);
    let Some((data, mode)) = files.0.lock().unwrap().get(req.uri().path()).cloned() else {
        return full(StatusCode::NOT_FOUND, Bytes::from_static(b"not found"));
    };
    let total = data.len() as u64;
    let range = req
        .headers()
        .get(hyper::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| {
            let (a, b) = v.split_once('-')?;
            let a: u64 = a.parse().ok()?;
            let b: u64 = if b.is_empty() {
                total.checked_sub(1)?
            } else {
                b.parse().ok()?
            };
            (a <= b && b < total).then_some((a, b))
        });
    if range.is_some() {
        range_requests.fetch_add(1, Ordering::SeqCst);
    }
    let mut resp = match mode {
        Mode::Status(s) => {
            return full(
                StatusCode::from_u16(s).unwrap(),
                Bytes::from_static(b"nope"),
            )
        }
        Mode::Truncate if n > 0 && range.is_some() => {
            return full(
                StatusCode::INTERNAL_SERVER_ERROR,
                Bytes::from_static(b"gone"),
            )
        }
        Mode::Truncate => {
            let mut r = Response::new(cut_body(data.slice(..data.len() / 2)));
            r.headers_mut()
                .insert(hyper::header::ACCEPT_RANGES, "bytes".parse().unwrap());
            r.headers_mut()
                .insert(hyper::header::CONTENT_LENGTH, total.into());
            return r;
        }
        Mode::NoRange => full(StatusCode::OK, data),
        Mode::CutFirst(k) if n == 0 => {
            let mut r = Response::new(cut_body(data.slice(..k.min(data.len()))));
            r.headers_mut()
                .insert(hyper::header::CONTENT_LENGTH, total.into());
            r
        }
        Mode::Slow(ms) => {
            let chunks: Vec<Bytes> = data.chunks(64 << 10).map(Bytes::copy_from_slice).collect();
            let stream = futures_util::stream::iter(chunks).then(move |c| async move {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                Ok::<_, std::io::Error>(Frame::data(c))
            });
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            r.headers_mut()
                .insert(hyper::header::CONTENT_LENGTH, total.into());
            r
        }
        Mode::Range | Mode::Cut | Mode::CutFirst(_) => {
            let (status, a, b) = match range {
                Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b),
                None => (StatusCode::OK, 0, total.saturating_sub(1)),
            };
            let body = if total == 0 {
                Bytes::new()
            } else {
                data.slice(a as usize..=b as usize)
            };
            let len = body.len() as u64;
            let mut r = if mode == Mode::Cut && len > 4096 {
                let keep = cuts.lock().unwrap().random_range(1024..len.min(6 << 20)) as usize;
                Response::new(cut_body(body.slice(..keep)))
            } else {
                full(StatusCode::OK, body)
            };
            *r.status_mut() = status;
            r.headers_mut()
                .insert(hyper::header::CONTENT_LENGTH, len.into());
            if status == StatusCode::PARTIAL_CONTENT {
                r.headers_mut().insert(
                    hyper::header::CONTENT_RANGE,
                    format!("bytes {a}-{b}/{total}").parse().unwrap(),
                );
            }
            r
        }
    };
    if matches!(mode, Mode::Range | Mode::Cut | Mode::CutFirst(_)) {
        resp.headers_mut()
            .insert(hyper::header::ACCEPT_RANGES, "bytes".parse().unwrap());
        resp.headers_mut()
            .insert(hyper::header::ETAG, "\"v1\"".parse().unwrap());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_ranges_statuses_and_counts_requests() {
        let srv = ImageServer::start_on(&tokio::runtime::Handle::current());
        let data: Vec<u8> = (0..=255u8).collect();
        let ranged = srv.put("r.bin", data.clone(), Mode::Range);
        let whole = srv.put("w.bin", data.clone(), Mode::NoRange);
        let gone = srv.put("g.bin", vec![1], Mode::Status(404));
        let http = reqwest::Client::new();
        let r = http
            .get(&ranged)
            .header("range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(r.headers()["content-range"], "bytes 10-19/256");
        assert_eq!(r.bytes().await.unwrap(), &data[10..20]);
        let r = http
            .get(&whole)
            .header("range", "bytes=10-19")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap(), &data[..]);
        assert_eq!(http.get(&gone).send().await.unwrap().status(), 404);
        let missing = format!("http://{}/nothing", srv.addr);
        assert_eq!(http.get(&missing).send().await.unwrap().status(), 404);
        assert_eq!(srv.requests.load(Ordering::SeqCst), 4);
        assert_eq!(srv.range_requests.load(Ordering::SeqCst), 2);
    }
}
