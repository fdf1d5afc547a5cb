//! `ferrite node logs NODE`: the agent logs the conductor kept for the node
//! (`/v1/nodes/{node}/deploy_logs`), listed, printed from the gzipped tar, or saved.

use std::io::Read;

use anyhow::{bail, Context};
use serde_json::Value;

use super::client::Client;
use super::output;

/// The files of a ustar archive: (name, bytes). Stops at the end marker; an archive cut
/// short is an error.
pub fn untar(data: &[u8]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    const BLOCK: usize = 512;
    let mut out = vec![];
    let mut at = 0;
    while at + BLOCK <= data.len() {
        let h = &data[at..at + BLOCK];
        if h.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        let field = |r: std::ops::Range<usize>| {
            let f = &h[r];
            let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
            String::from_utf8_lossy(&f[..end]).into_owned()
        };
        let mut name = field(0..100);
        let prefix = field(345..500);
        if h[257..262] == *b"ustar" && !prefix.is_empty() {
            name = format!("{prefix}/{name}");
        }
        let size_text = field(124..136);
        let size = u64::from_str_radix(size_text.trim(), 8)
            .with_context(|| format!("tar entry {name:?} has a bad size {size_text:?}"))?
            as usize;
        at += BLOCK;
        if at + size > data.len() {
            bail!("the archive is cut short inside {name:?}");
        }
        // Regular files only ('0' or NUL); directories and links carry no text.
        if h[156] == b'0' || h[156] == 0 {
            out.push((name, data[at..at + size].to_vec()));
        }
        at += size.div_ceil(BLOCK) * BLOCK;
    }
    bail!("the archive has no end marker")
}

/// `gzip` → files.
pub fn unpack(gz: &[u8]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut raw = vec![];
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .context("the deploy log is not gzip")?;
    untar(&raw)
}

/// The files as text, each under a `==> name <==` line (as `tail` heads them), the last
/// `tail` lines of each when given.
pub fn render(files: &[(String, Vec<u8>)], tail: Option<usize>) -> String {
    let mut s = String::new();
    for (name, data) in files {
        s.push_str(&format!("==> {name} <==\n"));
        let text = String::from_utf8_lossy(data);
        let lines: Vec<&str> = text.lines().collect();
        let from = tail.map_or(0, |t| lines.len().saturating_sub(t));
        for l in &lines[from..] {
            s.push_str(l);
            s.push('\n');
        }
        s.push('\n');
    }
    s
}

pub struct Args {
    pub node: String,
    pub list: bool,
    pub archive: Option<String>,
    pub file: Option<String>,
    pub tail: Option<usize>,
    pub save: Option<std::path::PathBuf>,
}

pub async fn logs(c: &Client, a: Args, json_out: bool) -> anyhow::Result<()> {
    let node = &a.node;
    let listing = c
        .call("GET", &format!("/v1/nodes/{node}/deploy_logs"), None)
        .await?;
    let archives = listing["deploy_logs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if a.list {
        if json_out {
            println!("{}", serde_json::to_string_pretty(&archives)?);
        } else {
            print!(
                "{}",
                output::list(
                    &archives,
                    &[
                        ("name", "Archive"),
                        ("size", "Bytes"),
                        ("created_at", "Created")
                    ]
                )
            );
        }
        return Ok(());
    }
    let name = match &a.archive {
        Some(n) => n.clone(),
        None => match archives.first().and_then(|x| x["name"].as_str()) {
            Some(n) => n.to_string(),
            None => bail!(
                "node {node} has no deploy logs: the conductor keeps the agent's logs when a \
                 deploy, cleaning or inspection fails while the agent runs \
                 (--deploy-logs-collect always keeps them after every deploy)"
            ),
        },
    };
    let gz = c
        .get_bytes(&format!("/v1/nodes/{node}/deploy_logs/{name}"))
        .await?;
    if let Some(path) = &a.save {
        std::fs::write(path, &gz).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("saved {name} ({} bytes) to {}", gz.len(), path.display());
        return Ok(());
    }
    let mut files = unpack(&gz)?;
    if let Some(f) = &a.file {
        files.retain(|(n, _)| n == f);
        if files.is_empty() {
            bail!("archive {name} has no file {f:?}: see `ferrite node logs {node}` for all");
        }
    }
    if json_out {
        let v: Vec<Value> = files
            .iter()
            .map(|(n, d)| serde_json::json!({"name": n, "text": String::from_utf8_lossy(d)}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        eprintln!("archive {name}");
        print!("{}", render(&files, a.tail));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: usize) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let s = format!("{size:011o}\0");
        h[124..136].copy_from_slice(s.as_bytes());
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h
    }

    #[test]
    fn archives_read_back_and_render() {
        let mut tar = vec![];
        for (name, body) in [("dmesg.txt", "a\nb\nc\n"), ("proc/cmdline", "x=1\n")] {
            tar.extend_from_slice(&header(name, body.len()));
            tar.extend_from_slice(body.as_bytes());
            tar.resize(tar.len().div_ceil(512) * 512, 0);
        }
        let whole = tar.clone();
        tar.extend_from_slice(&[0; 1024]);
        let files = untar(&tar).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[1], ("proc/cmdline".to_string(), b"x=1\n".to_vec()));
        assert_eq!(render(&files[..1], Some(2)), "==> dmesg.txt <==\nb\nc\n\n");
        assert!(untar(&whole[..600]).is_err(), "cut short");
        assert!(untar(&whole).is_err(), "no end marker");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        assert_eq!(unpack(&gz.finish().unwrap()).unwrap(), files);
        assert!(unpack(b"not gzip").is_err());
    }
}
