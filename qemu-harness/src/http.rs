//! A small HTTP/1.1 server on 127.0.0.1 for tests, the demo and the benchmarks: serves files
//! from a directory (iPXE script, kernel, initramfs, images) with HEAD and single-range GET
//! (qemu-img's curl driver needs both), streamed from the file (sendfile-backed copy),
//! records every request, and answers other paths with a fixed status and body so agent
//! calls can be captured before a conductor exists.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::Error;

/// One request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    body: Vec<u8>,
}

#[derive(Debug, Default)]
struct Shared {
    requests: Mutex<Vec<Request>>,
    replies: Mutex<BTreeMap<String, Reply>>,
    stop: AtomicBool,
}

/// The running server; stops (and joins its thread) on drop.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

const MAX_BODY: usize = 64 * 1024 * 1024;

impl HttpServer {
    /// Serves `root` on a free port of 127.0.0.1.
    pub fn start(root: impl Into<PathBuf>) -> Result<HttpServer, Error> {
        let root = root.into();
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| Error::Io("binding the HTTP server".into(), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Io("reading the HTTP server's address".into(), e))?;
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (s, root) = (s.clone(), root.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &root, &s);
                });
            }
        });
        Ok(HttpServer {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The URL of `path` (a file under the root, or a reply) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Answers requests whose path (without query) is `path` with `status` and `body`.
    pub fn reply(&self, path: &str, status: u16, body: &str) {
        self.shared.replies.lock().expect("lock").insert(
            path.into(),
            Reply {
                status,
                body: body.as_bytes().to_vec(),
            },
        );
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().expect("lock").clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, root: &Path, shared: &Shared) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return respond(&mut conn, 400, b"bad request line", false);
        };
        let (method, target) = (method.to_string(), target.to_string());
        let mut length = 0usize;
        let mut close = false;
        let mut range = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    "connection" => close = v.trim().eq_ignore_ascii_case("close"),
                    "range" => range = parse_range(v.trim()),
                    _ => {}
                }
            }
        }
        if length > MAX_BODY {
            return respond(&mut conn, 413, b"body too large", false);
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        shared.requests.lock().expect("lock").push(Request {
            method: method.clone(),
            target: target.clone(),
            body,
        });
        // A proxy client sends the absolute form (`GET http://host:port/path`): serve it
        // like the origin form, so this server can also be a client's HTTP proxy for URLs
        // that name another address of the same files (the guest's 10.0.2.2).
        let origin = target
            .strip_prefix("http://")
            .map(|rest| rest.find('/').map_or("/", |i| &rest[i..]))
            .unwrap_or(&target);
        let path = origin.split('?').next().unwrap_or("/").to_string();
        let reply = shared.replies.lock().expect("lock").get(&path).cloned();
        let head = method == "HEAD";
        match reply {
            Some(r) => respond_head(&mut conn, r.status, &r.body, !close, head)?,
            None => match file_under(root, &path).and_then(|p| File::open(p).ok()) {
                Some(file) => send_file(&mut conn, file, range, !close, head)?,
                None => respond_head(&mut conn, 404, b"not found", !close, head)?,
            },
        }
        if close {
            return Ok(());
        }
    }
}

/// `bytes=A-` or `bytes=A-B` as (A, B); other forms (suffix, several ranges) are ignored
/// and the whole file is sent.
fn parse_range(v: &str) -> Option<(u64, Option<u64>)> {
    let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
    let b = if b.is_empty() {
        None
    } else {
        Some(b.parse().ok()?)
    };
    Some((a.parse().ok()?, b))
}

/// Sends `file`, or the part `range` asks for (206) when it starts inside the file.
fn send_file(
    conn: &mut TcpStream,
    mut file: File,
    range: Option<(u64, Option<u64>)>,
    keep: bool,
    head_only: bool,
) -> std::io::Result<()> {
    let total = file.metadata()?.len();
    let (partial, start, end) = match range {
        Some((a, b)) if a < total => (true, a, b.unwrap_or(total - 1).min(total - 1)),
        _ => (false, 0, total.saturating_sub(1)),
    };
    let len = if total == 0 || end < start {
        0
    } else {
        end - start + 1
    };
    let mut header = format!(
        "HTTP/1.1 {}\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\n\
         Accept-Ranges: bytes\r\nConnection: {}\r\n",
        if partial {
            "206 Partial Content"
        } else {
            "200 OK"
        },
        if keep { "keep-alive" } else { "close" }
    );
    if partial {
        header.push_str(&format!("Content-Range: bytes {start}-{end}/{total}\r\n"));
    }
    header.push_str("\r\n");
    conn.write_all(header.as_bytes())?;
    if !head_only {
        file.seek(SeekFrom::Start(start))?;
        std::io::copy(&mut (&mut file).take(len), conn)?;
    }
    conn.flush()
}

/// `root/<path>` when `path` has only normal components (no `..`).
fn file_under(root: &Path, path: &str) -> Option<PathBuf> {
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.as_os_str().is_empty() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

fn respond(conn: &mut TcpStream, status: u16, body: &[u8], keep: bool) -> std::io::Result<()> {
    respond_head(conn, status, body, keep, false)
}

fn respond_head(
    conn: &mut TcpStream,
    status: u16,
    body: &[u8],
    keep: bool,
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Payload Too Large",
        _ => "Status",
    };
    let header = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: \
         application/octet-stream\r\nConnection: {}\r\n\r\n",
        body.len(),
        if keep { "keep-alive" } else { "close" }
    );
    conn.write_all(header.as_bytes())?;
    if !head_only {
        conn.write_all(body)?;
    }
    conn.flush()
}

/// A one-shot HTTP/1.1 client call (Connection: close): returns status and body.
pub fn call(
    addr: SocketAddr,
    method: &str,
    target: &str,
    json_body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    call_with_headers(addr, method, target, &[], json_body)
}

/// [`call`] with extra request headers (e.g. an API microversion).
pub fn call_with_headers(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    json_body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut c = TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))?;
    c.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    let body = json_body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: \
         application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes())?;
    let mut out = vec![];
    c.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:?}")))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            unchunk(body)
        } else {
            body.to_string()
        },
    ))
}

fn unchunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, req: &str) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_files_replies_and_records() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("boot.ipxe"), "#!ipxe\n").unwrap();
        let s = HttpServer::start(dir.path()).unwrap();
        s.reply("/v1/lookup", 404, "{}");
        let r = get(
            s.addr(),
            "GET /boot.ipxe HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("#!ipxe\n"),
            "{r}"
        );
        let r = get(
            s.addr(),
            "GET /v1/lookup?addresses=aa HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(r.starts_with("HTTP/1.1 404") && r.ends_with("{}"), "{r}");
        let r = get(
            s.addr(),
            "GET /../etc/passwd HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        get(
            s.addr(),
            "POST /x HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        );
        assert_eq!(s.url("boot.ipxe"), format!("http://{}/boot.ipxe", s.addr()));
        let r = get(
            s.addr(),
            "GET http://10.0.2.2:1234/boot.ipxe HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(r.ends_with("#!ipxe\n"), "absolute form: {r}");
        let (status, body) = call(s.addr(), "GET", "/boot.ipxe", None).unwrap();
        assert_eq!((status, body.as_str()), (200, "#!ipxe\n"));
        assert_eq!(unchunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
        let reqs = s.requests();
        assert_eq!(reqs[1].target, "/v1/lookup?addresses=aa");
        assert_eq!(reqs[3].body, b"abc");
    }

    #[test]
    fn serves_ranges_and_head_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..256u32).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(dir.path().join("disk.raw"), &data).unwrap();
        let s = HttpServer::start(dir.path()).unwrap();
        let r = get(
            s.addr(),
            "GET /disk.raw HTTP/1.1\r\nRange: bytes=10-19\r\nConnection: close\r\n\r\n",
        );
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 206"), "{head}");
        assert!(head.contains("Content-Range: bytes 10-19/256"), "{head}");
        assert!(head.contains("Content-Length: 10"), "{head}");
        assert_eq!(body.as_bytes(), &data[10..20]);
        let r = get(
            s.addr(),
            "GET /disk.raw HTTP/1.1\r\nRange: bytes=250-\r\nConnection: close\r\n\r\n",
        );
        assert!(r.contains("Content-Range: bytes 250-255/256"), "{r}");
        let r = get(
            s.addr(),
            "HEAD /disk.raw HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.contains("Content-Length: 256") && r.contains("Accept-Ranges: bytes"));
        assert!(r.ends_with("\r\n\r\n"), "HEAD sent a body: {r}");
        // A range past the end gets the whole file.
        let r = get(
            s.addr(),
            "GET /disk.raw HTTP/1.1\r\nRange: bytes=300-\r\nConnection: close\r\n\r\n",
        );
        assert!(
            r.starts_with("HTTP/1.1 200") && r.contains("Content-Length: 256"),
            "{r}"
        );
        assert_eq!(parse_range("bytes=5-"), Some((5, None)));
        assert_eq!(parse_range("bytes=-5"), None);
    }
}
