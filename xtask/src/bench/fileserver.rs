//! A small HTTP/1.1 file server on loopback for benchmarks: GET and HEAD (qemu-img's curl
//! driver asks for the size first) with Range support, keep-alive, one thread per
//! connection, bodies sent with std's sendfile-backed copy.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;

pub struct FileServer {
    pub port: u16,
}

impl FileServer {
    /// Serve the files of `dir` at `/<name>` until the process exits.
    pub fn start(dir: PathBuf) -> anyhow::Result<FileServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &dir);
                });
            }
        });
        Ok(FileServer { port })
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }
}

fn serve(conn: TcpStream, dir: &std::path::Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut words = line.split_whitespace();
        let head_only = words.next() == Some("HEAD");
        let path = words.next().unwrap_or("/").to_owned();
        let mut range: Option<(u64, Option<u64>)> = None;
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
                if k.eq_ignore_ascii_case("range") {
                    if let Some((a, b)) = v
                        .trim()
                        .strip_prefix("bytes=")
                        .and_then(|r| r.split_once('-'))
                    {
                        range = a.parse().ok().map(|a| (a, b.parse().ok()));
                    }
                }
            }
        }
        let name = path.trim_start_matches('/');
        let Ok(mut f) = File::open(dir.join(name)) else {
            out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
            continue;
        };
        let total = f.metadata()?.len();
        let (status, start, end) = match range {
            Some((a, b)) if a < total => (
                "206 Partial Content",
                a,
                b.unwrap_or(total - 1).min(total - 1),
            ),
            _ => ("200 OK", 0, total.saturating_sub(1)),
        };
        let len = if total == 0 { 0 } else { end - start + 1 };
        let mut head =
            format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nAccept-Ranges: bytes\r\n");
        if status.starts_with("206") {
            head.push_str(&format!("Content-Range: bytes {start}-{end}/{total}\r\n"));
        }
        head.push_str("\r\n");
        out.write_all(head.as_bytes())?;
        if !head_only {
            f.seek(SeekFrom::Start(start))?;
            std::io::copy(&mut (&mut f).take(len), &mut out)?;
        }
    }
}
