//! `log.collect_system_logs`: a gzipped tar, base64-encoded, of what exists of the kernel
//! log (`/dev/kmsg`), the agent's log, procfs state and the hardware inventory, read
//! under the configured root.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{json, Value};

use super::{blocking, CommandError, Mode, NoParams, Registry};
use crate::state::AgentState;
use crate::tarball::TarWriter;

/// No single file contributes more than this (a huge agent log stays bounded).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// procfs and log files copied when present, as (path under root, name in the archive).
const FILES: &[(&str, &str)] = &[
    ("proc/cmdline", "proc/cmdline"),
    ("proc/version", "proc/version"),
    ("proc/uptime", "proc/uptime"),
    ("proc/mounts", "proc/mounts"),
    ("proc/meminfo", "proc/meminfo"),
    ("proc/cpuinfo", "proc/cpuinfo"),
    ("proc/partitions", "proc/partitions"),
    ("proc/modules", "proc/modules"),
    ("proc/net/dev", "proc/net/dev"),
    ("proc/net/route", "proc/net/route"),
    ("var/log/messages", "var/log/messages"),
    ("var/log/syslog", "var/log/syslog"),
];

/// The agent's output as the ramdisk's supervisor keeps it (under the root).
const SUPERVISOR_LOG: &str = "var/log/ferrite-agent.log";

pub fn register(r: &mut Registry) {
    r.register("log.collect_system_logs", Mode::Sync, collect_system_logs);
}

async fn collect_system_logs(_: NoParams, state: Arc<AgentState>) -> Result<Value, CommandError> {
    let archive = blocking("log collection", move || {
        collect(&state).map_err(|e| CommandError::failed("collecting the system logs", e))
    })
    .await?;
    Ok(json!({ "system_logs": base64::engine::general_purpose::STANDARD.encode(archive) }))
}

/// The gzipped tar archive (before base64).
pub fn collect(state: &AgentState) -> std::io::Result<Vec<u8>> {
    let root = &state.config.root;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = TarWriter::new(gz);
    let mut notes = String::new();

    match read_kmsg(&root.join("dev/kmsg")) {
        Ok(raw) => tar.append("dmesg.txt", now, format_kmsg(&raw).as_bytes())?,
        Err(e) => notes.push_str(&format!("dmesg: /dev/kmsg not readable: {e}\n")),
    }
    for (path, name) in FILES {
        match read_capped(&root.join(path)) {
            Ok(data) => tar.append(name, now, &data)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => notes.push_str(&format!("{path}: {e}\n")),
        }
    }
    // The configured log file, else where the ramdisk's supervisor appends the agent's
    // output (ramdisk-build's agent-supervisor.sh), when it exists.
    match &state.config.log_file {
        Some(log) => match read_capped(log) {
            Ok(data) => tar.append("ferrite-agent.log", now, &data)?,
            Err(e) => notes.push_str(&format!("agent log {}: {e}\n", log.display())),
        },
        None => match read_capped(&root.join(SUPERVISOR_LOG)) {
            Ok(data) => tar.append("ferrite-agent.log", now, &data)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => notes.push_str(&format!("{SUPERVISOR_LOG}: {e}\n")),
        },
    }
    match crate::inventory::collect(root) {
        Ok(inv) => {
            let text = serde_json::to_vec_pretty(&inv).map_err(std::io::Error::other)?;
            tar.append("hardware_inventory.json", now, &text)?;
        }
        Err(e) => notes.push_str(&format!("hardware inventory: {e:#}\n")),
    }
    let summary = json!({
        "version": state.version(),
        "started_at": state.started_at(),
        "commands": state.commands.list().iter().map(|c| json!({
            "id": c.id, "command_name": c.command_name, "command_status": c.command_status,
        })).collect::<Vec<_>>(),
    });
    let summary = serde_json::to_vec_pretty(&summary).map_err(std::io::Error::other)?;
    tar.append("ferrite-agent-status.json", now, &summary)?;
    if !notes.is_empty() {
        tar.append("collection-notes.txt", now, notes.as_bytes())?;
    }
    let mut gz = tar.finish()?;
    gz.flush()?;
    gz.finish()
}

fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES)
        .read_to_end(&mut data)?;
    Ok(data)
}

/// Reads every record `/dev/kmsg` holds now, without blocking and without consuming it
/// (unlike `/proc/kmsg`). A regular file (a fixture) is read whole.
fn read_kmsg(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while (out.len() as u64) < MAX_FILE_BYTES {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // EPIPE: the record we were at was overwritten; the next read continues.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// `/dev/kmsg` records (`prio,seq,usec,flags;message`) as `dmesg` prints them
/// (`[    5.140900] message`); continuation lines (` KEY=value`) are dropped, lines that
/// are not records are kept as they are.
pub fn format_kmsg(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with(' ') {
            continue;
        }
        let parsed = line.split_once(';').and_then(|(prefix, message)| {
            let usec: u64 = prefix.split(',').nth(2)?.parse().ok()?;
            Some((usec, message))
        });
        match parsed {
            Some((usec, message)) => out.push_str(&format!(
                "[{:5}.{:06}] {message}\n",
                usec / 1_000_000,
                usec % 1_000_000
            )),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmsg_records_format_like_dmesg() {
        let raw = b"6,339,5140900,-;NET: Registered PF_INET6 protocol family\n \
SUBSYSTEM=net\n4,340,12000001,-,caller=T1;virtio_blk virtio2: [vda] 2097152 512-byte blocks\n\
not a record\n";
        assert_eq!(
            format_kmsg(raw),
            "[    5.140900] NET: Registered PF_INET6 protocol family\n\
[   12.000001] virtio_blk virtio2: [vda] 2097152 512-byte blocks\n\
not a record\n"
        );
        assert_eq!(format_kmsg(b""), "");
    }

    #[test]
    fn real_kmsg_is_read_without_blocking() {
        let path = Path::new("/dev/kmsg");
        if !path.exists() {
            return; // containers without /dev/kmsg: nothing to read
        }
        match read_kmsg(path) {
            Ok(raw) => {
                // Returning at all proves the non-blocking read stops at the end.
                let text = format_kmsg(&raw);
                assert!(text.lines().all(|l| l.starts_with('[')), "{text}");
            }
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}"),
        }
    }
}
