//! HTTP(S) image source: the `urls` tried in order with retries and backoff, connect and
//! read timeouts, and resume with a Range request after a dropped connection.
//! It is a blocking `Read` (the pipeline runs on a blocking thread) over reqwest's async
//! client, driven through the agent's tokio runtime handle.

use std::io::{self, BufRead, Read};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT_RANGES, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE,
};
use reqwest::{Client, Response, StatusCode};
use tokio::runtime::Handle;

use ferrite_proto::error::chain;

use super::decompress::TransportError;
use super::qcow2::RangeRead;

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response.
    pub read_timeout: Duration,
    /// Tries per URL before moving to the next one.
    pub attempts: u32,
    /// First retry delay; doubles each time.
    pub backoff: Duration,
    /// Resumes in a row without progress before giving up.
    pub max_resumes: u32,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            attempts: 4,
            backoff: Duration::from_secs(2),
            max_resumes: 8,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("could not download the image from any URL: {0}; check the URLs and the image server")]
    AllFailed(String),
    #[error("no image URL given: image_info.urls is empty")]
    NoUrls,
    #[error("could not build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// The HTTP client the agent uses for images (rustls, no automatic decompression).
pub fn client(cfg: &HttpConfig) -> Result<Client, HttpError> {
    Client::builder()
        .connect_timeout(cfg.connect_timeout)
        .read_timeout(cfg.read_timeout)
        .build()
        .map_err(HttpError::Client)
}

fn backoff(cfg: &HttpConfig, attempt: u32) -> Duration {
    cfg.backoff.saturating_mul(1 << attempt.min(6))
}

/// Fetch a small document (a checksum file), at most `limit` bytes.
pub fn fetch_text(
    rt: &Handle,
    client: &Client,
    url: &str,
    cfg: &HttpConfig,
    limit: usize,
) -> Result<String, HttpError> {
    let mut src = HttpSource::open(rt, client, &[url.to_owned()], cfg)?;
    let mut out = vec![];
    (&mut src)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| HttpError::AllFailed(format!("{url}: {e}")))?;
    if out.len() > limit {
        return Err(HttpError::AllFailed(format!(
            "{url}: larger than {limit} bytes"
        )));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A download in progress.
pub struct HttpSource {
    rt: Handle,
    client: Client,
    cfg: HttpConfig,
    pub url: String,
    /// The response body, read ahead by a task on the runtime.
    body: Option<Body>,
    /// The batch being read and how far.
    batch: Vec<u8>,
    at: usize,
    pos: u64,
    total: Option<u64>,
    accepts_ranges: bool,
    validator: Option<HeaderValue>,
    /// Why the last connection broke, once its pump said so.
    broken: Option<String>,
    /// The whole body was read: further reads return 0 (and must not reconnect).
    finished: bool,
    failures: u32,
    /// How many times the download was resumed, for reports and tests.
    pub resumes: u32,
}

impl HttpSource {
    /// Start downloading from the first URL that answers with 200.
    pub fn open(
        rt: &Handle,
        client: &Client,
        urls: &[String],
        cfg: &HttpConfig,
    ) -> Result<HttpSource, HttpError> {
        if urls.is_empty() {
            return Err(HttpError::NoUrls);
        }
        let mut failures = vec![];
        for url in urls {
            match get(rt, client, url, cfg, HeaderMap::new()) {
                Ok(resp) => {
                    let headers = resp.headers();
                    let accepts_ranges = headers
                        .get(ACCEPT_RANGES)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"bytes"));
                    let validator = headers
                        .get(ETAG)
                        .filter(|v| !v.as_bytes().starts_with(b"W/"))
                        .or_else(|| headers.get(LAST_MODIFIED))
                        .cloned();
                    tracing::info!(url, length = ?resp.content_length(), accepts_ranges, "image download started");
                    return Ok(HttpSource {
                        rt: rt.clone(),
                        client: client.clone(),
                        cfg: cfg.clone(),
                        url: url.clone(),
                        total: resp.content_length(),
                        body: Some(pump(rt, resp, cfg.read_timeout)),
                        batch: Vec::new(),
                        at: 0,
                        pos: 0,
                        accepts_ranges,
                        validator,
                        broken: None,
                        finished: false,
                        failures: 0,
                        resumes: 0,
                    });
                }
                Err(why) => failures.push(format!("{url}: {why}")),
            }
        }
        Err(HttpError::AllFailed(failures.join("; ")))
    }

    pub fn len(&self) -> Option<u64> {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == Some(0)
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Random access to the same resource, if the server announced Range support.
    pub fn ranges(&self) -> Option<HttpRanges> {
        self.accepts_ranges.then(|| HttpRanges {
            rt: self.rt.clone(),
            client: self.client.clone(),
            cfg: self.cfg.clone(),
            url: self.url.clone(),
            validator: self.validator.clone(),
        })
    }

    fn transport(&self, why: String) -> io::Error {
        io::Error::other(TransportError(format!("downloading {}: {why}", self.url)))
    }

    /// Reconnect and continue at `self.pos`.
    fn resume(&mut self, why: &str) -> io::Result<()> {
        self.body = None;
        loop {
            self.failures += 1;
            if self.failures > self.cfg.max_resumes {
                let of = self.total.map(|t| format!(" of {t}")).unwrap_or_default();
                return Err(self.transport(format!(
                    "the download stopped at byte {}{of} ({why}) and {} attempts to resume it failed",
                    self.pos, self.cfg.max_resumes
                )));
            }
            std::thread::sleep(backoff(&self.cfg, self.failures - 1).min(Duration::from_secs(30)));
            self.resumes += 1;
            tracing::warn!(
                url = self.url,
                pos = self.pos,
                why,
                "resuming image download"
            );
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes={}-", self.pos)) {
                h.insert(RANGE, v);
            }
            if let Some(v) = &self.validator {
                h.insert(IF_RANGE, v.clone());
            }
            let resp = match self
                .rt
                .block_on(async { self.client.get(&self.url).headers(h).send().await })
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = chain(&e), "resume request failed");
                    continue;
                }
            };
            match resp.status() {
                StatusCode::PARTIAL_CONTENT => {
                    let start = resp
                        .headers()
                        .get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("bytes "))
                        .and_then(|v| v.split('-').next())
                        .and_then(|v| v.parse::<u64>().ok());
                    if start != Some(self.pos) {
                        return Err(self.transport(format!(
                            "the server resumed at {start:?}, not at byte {}",
                            self.pos
                        )));
                    }
                    self.body = Some(pump(&self.rt, resp, self.cfg.read_timeout));
                    return Ok(());
                }
                StatusCode::OK => {
                    // No Range support (or the resource changed): read past what we have.
                    self.body = Some(pump(&self.rt, resp, self.cfg.read_timeout));
                    return self.skip(self.pos);
                }
                s if s.is_server_error() => continue,
                s => return Err(self.transport(format!("resuming got HTTP {s}"))),
            }
        }
    }

    fn skip(&mut self, mut n: u64) -> io::Result<()> {
        while n > 0 {
            if self.at == self.batch.len() && !self.next_batch()? {
                return Err(self.transport(
                    "the restarted download broke before reaching the resume point".into(),
                ));
            }
            let k = ((self.batch.len() - self.at) as u64).min(n);
            self.at += k as usize;
            n -= k;
        }
        Ok(())
    }

    /// Take the next batch from the pump, giving the spent one back. False when the
    /// body ended or broke; `self.body` is gone then and the reason is in `self.broken`.
    fn next_batch(&mut self) -> io::Result<bool> {
        let Some(body) = self.body.as_mut() else {
            return Ok(false);
        };
        let spent = std::mem::take(&mut self.batch);
        self.at = 0;
        if spent.capacity() > 0 {
            body.give_back(spent);
        }
        match body.batches.blocking_recv() {
            Some(Ok(b)) => {
                self.batch = b;
                Ok(true)
            }
            Some(Err(why)) => {
                self.body = None;
                self.broken = Some(why);
                Ok(false)
            }
            None => {
                self.body = None;
                self.broken = None;
                Ok(false)
            }
        }
    }
}

impl Read for HttpSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let data = self.fill_buf()?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// The pipeline reads the pump's batches in place: no copy into a reader buffer.
impl BufRead for HttpSource {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.at == self.batch.len() {
            if self.finished {
                return Ok(&[]);
            }
            if self.body.is_none() {
                self.resume("no connection")?;
                continue;
            }
            if self.next_batch()? {
                self.failures = 0;
                continue;
            }
            match self.broken.take() {
                Some(why) => self.resume(&why)?,
                None => match self.total {
                    Some(t) if self.pos < t => self.resume("connection closed early")?,
                    _ => self.finished = true,
                },
            }
        }
        Ok(&self.batch[self.at..])
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.batch.len() - self.at);
        self.at += n;
        self.pos += n as u64;
    }
}

/// Size of the batches the pump hands over: one wake-up of the reader per MiB instead
/// of one per network chunk (which costs dearly on a loaded machine).
const BATCH: usize = 1 << 20;
/// Batches in circulation per download: filling, queued, being read.
const POOL: usize = 6;
/// The least a connection must deliver before its bytes count (see the pump): more than
/// any magic number the pipeline sniffs (gzip, xz, zstd, qcow2).
const SNIFF_BYTES: usize = 64;

/// The response body as batches of up to [`BATCH`] bytes, read ahead by a task on the
/// runtime, ending with an error message if the body breaks or stalls.
///
/// The pump copies each network chunk into a batch from a small pool and drops the chunk
/// at once, on the thread that received it: hyper then reads the next chunk into the same
/// buffer. Handing hyper's chunks over instead made it allocate a fresh ~400 KiB buffer per
/// read, which musl's allocator maps and unmaps: one page fault per 4 KiB of image, ~40%
/// of the pipeline's time.
struct Body {
    batches: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
    free: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
}

impl Body {
    fn give_back(&self, mut spent: Vec<u8>) {
        spent.clear();
        // The pump may have finished; the buffer is dropped then.
        let _ = self.free.send(spent);
    }
}

fn pump(rt: &Handle, mut resp: Response, timeout: Duration) -> Body {
    let (tx, batches) = tokio::sync::mpsc::channel(POOL);
    let (free, mut free_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    rt.spawn(async move {
        let mut made = 0;
        let mut sent_any = false;
        let mut cur: Vec<u8> = Vec::new();
        loop {
            let end = match tokio::time::timeout(timeout, resp.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    let mut data = &chunk[..];
                    while !data.is_empty() {
                        if cur.capacity() == 0 {
                            cur = match free_rx.try_recv() {
                                Ok(b) => b,
                                Err(_) if made < POOL => {
                                    made += 1;
                                    Vec::with_capacity(BATCH)
                                }
                                Err(_) => match free_rx.recv().await {
                                    Some(b) => b,
                                    None => return,
                                },
                            };
                        }
                        let n = (BATCH - cur.len()).min(data.len());
                        cur.extend_from_slice(&data[..n]);
                        data = &data[n..];
                        if cur.len() == BATCH {
                            sent_any = true;
                            if tx.send(Ok(std::mem::take(&mut cur))).await.is_err() {
                                return;
                            }
                        }
                    }
                    continue;
                }
                Ok(Ok(None)) => None,
                Ok(Err(e)) => Some(chain(&e)),
                Err(_) => Some("read timed out".to_string()),
            };
            // A connection that broke before SNIFF_BYTES arrived delivers nothing: the
            // resume fetches those bytes again, so the pipeline's format sniffing always
            // sees a whole magic number (a cut after one byte of a gzip image once made
            // it look raw, and the compressed bytes went to the disk).
            let too_short = end.is_some() && !sent_any && cur.len() < SNIFF_BYTES;
            if !cur.is_empty() && !too_short && tx.send(Ok(cur)).await.is_err() {
                return;
            }
            if let Some(why) = end {
                let _ = tx.send(Err(why)).await;
            }
            return;
        }
    });
    Body { batches, free }
}

type Chunk = Result<Result<Option<Bytes>, reqwest::Error>, tokio::time::error::Elapsed>;

/// The next piece of a response body, waiting at most `timeout`.
fn next_chunk(rt: &Handle, timeout: Duration, resp: &mut Response) -> Chunk {
    rt.block_on(async { tokio::time::timeout(timeout, resp.chunk()).await })
}

/// Send a GET, retrying connection errors and 5xx with backoff; other statuses fail.
fn get(
    rt: &Handle,
    client: &Client,
    url: &str,
    cfg: &HttpConfig,
    headers: HeaderMap,
) -> Result<Response, String> {
    let mut last = String::new();
    for attempt in 0..cfg.attempts.max(1) {
        if attempt > 0 {
            std::thread::sleep(backoff(cfg, attempt - 1));
        }
        match rt.block_on(async { client.get(url).headers(headers.clone()).send().await }) {
            Ok(r) if r.status().is_success() => return Ok(r),
            Ok(r)
                if r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS =>
            {
                last = format!("HTTP {}", r.status());
            }
            Ok(r) => return Err(format!("HTTP {}", r.status())),
            Err(e) => last = chain(&e),
        }
    }
    Err(format!("{last} (after {} attempts)", cfg.attempts.max(1)))
}

/// Range reads of an image whose server supports them.
pub struct HttpRanges {
    rt: Handle,
    client: Client,
    cfg: HttpConfig,
    url: String,
    validator: Option<HeaderValue>,
}

impl HttpRanges {
    fn once(&mut self, offset: u64, len: usize, out: &mut Vec<u8>) -> io::Result<()> {
        let mut h = HeaderMap::new();
        let v = HeaderValue::from_str(&format!("bytes={}-{}", offset, offset + len as u64 - 1))
            .map_err(io::Error::other)?;
        h.insert(RANGE, v);
        if let Some(v) = &self.validator {
            h.insert(IF_RANGE, v.clone());
        }
        let mut resp = get(&self.rt, &self.client, &self.url, &self.cfg, h).map_err(|why| {
            io::Error::other(TransportError(format!("range read of {}: {why}", self.url)))
        })?;
        if resp.status() != StatusCode::PARTIAL_CONTENT {
            return Err(io::Error::other(TransportError(format!(
                "range read of {} got HTTP {} instead of 206",
                self.url,
                resp.status()
            ))));
        }
        let want = out.len() + len;
        while out.len() < want {
            match next_chunk(&self.rt, self.cfg.read_timeout, &mut resp) {
                Ok(Ok(Some(b))) => out.extend_from_slice(&b[..b.len().min(want - out.len())]),
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => break,
            }
        }
        Ok(())
    }
}

impl RangeRead for HttpRanges {
    /// Read `len` bytes at `offset`; a cut response is continued where it stopped. Fewer
    /// bytes come back only when the resource ends first.
    fn read_range(&mut self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        let mut stalls = 0;
        while out.len() < len {
            let before = out.len();
            self.once(offset + before as u64, len - before, &mut out)?;
            if out.len() == before {
                stalls += 1;
                if stalls >= self.cfg.attempts.max(1) {
                    break;
                }
            }
        }
        Ok(out)
    }
}
