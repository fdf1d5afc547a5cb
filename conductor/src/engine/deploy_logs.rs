//! Deploy logs (Ironic's `deploy_logs_collect`): the agent's `log.collect_system_logs`
//! archive, fetched when a deploy, cleaning or inspection fails (or, with `always`, also at
//! the end of a good deploy or cleaning) while the agent still runs, and kept as
//! `<dir>/<node uuid>/<time>_<what>.tar.gz`. The directory is capped: each node keeps its
//! newest [`DeployLogs::keep_per_node`] archives, and the oldest archives of any node go
//! once the whole directory passes [`DeployLogs::max_bytes`]. `api/deploy_logs.rs` serves
//! them; `ferrite node logs` prints them.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::Value;

use super::Conductor;
use crate::model::Node;

/// How long a failing node waits for its agent's logs.
const COLLECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// When logs are collected (Ironic's `[agent]deploy_logs_collect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Collect {
    /// After a failure only (Ironic's default).
    #[default]
    OnFailure,
    /// Also at the end of every deploy and cleaning that went well.
    Always,
    /// Never.
    Never,
}

/// Where and how many.
#[derive(Debug, Clone)]
pub struct DeployLogs {
    pub collect: Collect,
    /// `None`: nowhere to keep them, so none are collected.
    pub dir: Option<PathBuf>,
    /// The whole directory's cap.
    pub max_bytes: u64,
    /// Archives kept per node.
    pub keep_per_node: usize,
}

impl Default for DeployLogs {
    fn default() -> Self {
        DeployLogs {
            collect: Collect::OnFailure,
            dir: None,
            max_bytes: 1 << 30,
            keep_per_node: 5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("the agent's log collection failed")]
    Agent(#[source] crate::drivers::agent::AgentCallError),
    #[error("the agent's log collection answered no base64 system_logs")]
    BadAnswer,
    #[error("this conductor has no deploy logs directory")]
    NoDir,
    #[error("the agent did not send its logs within {} s", COLLECT_TIMEOUT.as_secs())]
    Timeout,
    #[error("cannot store the deploy logs in {path}")]
    Store {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One kept archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub name: String,
    pub size: u64,
    /// RFC 3339.
    pub created_at: String,
}

/// A file name this module could have written (no path separators, no dot files).
pub fn valid_name(name: &str) -> bool {
    name.ends_with(".tar.gz")
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn node_dir(dir: &Path, node: &str) -> PathBuf {
    dir.join(node)
}

/// The node's archives, newest first.
pub fn list(dir: &Path, node: &str) -> std::io::Result<Vec<Archive>> {
    let d = node_dir(dir, node);
    let entries = match std::fs::read_dir(&d) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e),
    };
    let mut out = vec![];
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !valid_name(&name) {
            continue;
        }
        let meta = e.metadata()?;
        let created_at = meta
            .modified()
            .ok()
            .map(|t| {
                time::OffsetDateTime::from(t)
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        out.push(Archive {
            name,
            size: meta.len(),
            created_at,
        });
    }
    // Names start with the time they were written.
    out.sort_by(|a, b| b.name.cmp(&a.name));
    Ok(out)
}

/// The bytes of one archive of the node (`None`: no such archive).
pub fn read(dir: &Path, node: &str, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    if !valid_name(name) || !crate::model::is_uuid_like(node) {
        return Ok(None);
    }
    match std::fs::read(node_dir(dir, node).join(name)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `archive` as the node's newest, then trims the node's and the directory's.
pub fn store(
    cfg: &DeployLogs,
    dir: &Path,
    node: &str,
    what: &str,
    archive: &[u8],
) -> std::io::Result<String> {
    let d = node_dir(dir, node);
    std::fs::create_dir_all(&d)?;
    // 20261203T151000.123456789Z: sorts by time.
    let stamp: String = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let what: String = what
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = format!("{stamp}_{what}.tar.gz");
    let tmp = d.join(format!(".{name}.part"));
    std::fs::write(&tmp, archive)?;
    std::fs::rename(&tmp, d.join(&name))?;
    for old in list(dir, node)?.iter().skip(cfg.keep_per_node.max(1)) {
        std::fs::remove_file(d.join(&old.name))?;
    }
    trim(dir, cfg.max_bytes)?;
    Ok(name)
}

/// Removes the oldest archives (of any node) until the directory holds at most `max`.
fn trim(dir: &Path, max: u64) -> std::io::Result<()> {
    let mut all = vec![];
    for node in std::fs::read_dir(dir)? {
        let node = node?;
        if !node.file_type()?.is_dir() {
            continue;
        }
        let uuid = node.file_name().to_string_lossy().into_owned();
        for a in list(dir, &uuid)? {
            all.push((a.name.clone(), uuid.clone(), a.size));
        }
    }
    let mut total: u64 = all.iter().map(|(_, _, s)| s).sum();
    // Oldest first: names start with the time.
    all.sort();
    for (name, uuid, size) in all {
        if total <= max {
            break;
        }
        std::fs::remove_file(dir.join(&uuid).join(&name))?;
        total -= size;
    }
    Ok(())
}

impl Conductor {
    /// Whether logs are collected after a failure (`failed`) or a good run.
    pub(crate) fn collects_logs(&self, failed: bool) -> bool {
        self.cfg.deploy_logs.dir.is_some()
            && match self.cfg.deploy_logs.collect {
                Collect::Always => true,
                Collect::OnFailure => failed,
                Collect::Never => false,
            }
    }

    /// Fetches the agent's logs and keeps them; returns the archive's name. The node must
    /// still have its agent (URL and token).
    pub(crate) async fn collect_logs(&self, node: &Node, what: &str) -> Result<String, LogsError> {
        let Some(dir) = self.cfg.deploy_logs.dir.clone() else {
            return Err(LogsError::NoDir);
        };
        let r: Value =
            crate::drivers::agent::run(self.agent.as_ref(), node, "log.collect_system_logs", &())
                .await
                .map_err(LogsError::Agent)?;
        let archive = r
            .get("system_logs")
            .and_then(Value::as_str)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .ok_or(LogsError::BadAnswer)?;
        let cfg = self.cfg.deploy_logs.clone();
        let uuid = node.uuid.clone();
        let what = what.to_string();
        let d = dir.clone();
        tokio::task::spawn_blocking(move || store(&cfg, &d, &uuid, &what, &archive))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(|source| LogsError::Store { path: dir, source })
    }

    /// After a failure of a node whose agent runs: collects its logs and names them in
    /// `last_error` (or says why there are none).
    pub(crate) async fn collect_logs_after_failure(&self, node: &mut Node) {
        if node.agent_url.is_none() || !self.collects_logs(true) {
            return;
        }
        let what = format!(
            "{}-failed",
            super::history::event_type(node.provision_state)
        );
        let note = match self.collect_logs(node, &what).await {
            Ok(name) => format!(
                " Deploy logs: ferrite node logs {} (archive {name}).",
                node.uuid
            ),
            Err(e) => {
                tracing::warn!(node = %node.uuid, error = %crate::error_chain(&e), "no deploy logs");
                format!(" No deploy logs: {}.", crate::error_chain(&e))
            }
        };
        let last = node.last_error.take().unwrap_or_default();
        node.last_error = Some(format!("{}{note}", last.trim_end()));
    }

    /// At the end of a good run with `always`: collects the logs (a failure is only
    /// logged).
    pub(crate) async fn collect_logs_after_success(&self, node: &Node, what: &str) {
        if node.agent_url.is_none() || !self.collects_logs(false) {
            return;
        }
        if let Err(e) = self.collect_logs(node, what).await {
            tracing::warn!(node = %node.uuid, error = %crate::error_chain(&e), "no deploy logs");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_rotate_per_node_and_under_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = DeployLogs {
            collect: Collect::Always,
            dir: Some(dir.path().to_path_buf()),
            max_bytes: 2500,
            keep_per_node: 2,
        };
        let a = "11111111-1111-1111-1111-111111111111";
        let b = "22222222-2222-2222-2222-222222222222";
        let mut names = vec![];
        for i in 0..3 {
            names.push(store(&cfg, dir.path(), a, "deploy failed", &[i; 1000]).unwrap());
        }
        assert!(names[0].ends_with("_deploy-failed.tar.gz"), "{names:?}");
        let kept = list(dir.path(), a).unwrap();
        assert_eq!(
            kept.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
            [names[2].as_str(), names[1].as_str()],
            "the node's newest two, newest first"
        );
        assert_eq!(read(dir.path(), a, &names[2]).unwrap().unwrap(), [2; 1000]);
        assert_eq!(read(dir.path(), a, &names[0]).unwrap(), None);
        // Over the cap: the oldest archive of any node goes.
        store(&cfg, dir.path(), b, "clean", &[9; 1000]).unwrap();
        assert_eq!(list(dir.path(), a).unwrap().len(), 1);
        assert_eq!(list(dir.path(), b).unwrap().len(), 1);
        // Names that could leave the directory are refused.
        assert_eq!(read(dir.path(), a, "../x.tar.gz").unwrap(), None);
        assert_eq!(read(dir.path(), "..", &names[2]).unwrap(), None);
        assert!(!valid_name(".hidden.tar.gz"));
    }
}
