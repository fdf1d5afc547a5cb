//! Standalone iSCSI target: serves a file or block device named on the command line as
//! LUN 0 until SIGINT/SIGTERM (`ferrite-agent iscsi-target`); and [`Export`], the target
//! `iscsi.start_iscsi_target` runs for an agent, held in its state.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Context;
use ferrite_iscsi::{Credentials, Target, TargetConfig};

/// A target started by `iscsi.start_iscsi_target`.
pub(crate) struct Running {
    /// Sending (or dropping) this stops the target and closes its connections.
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub done: tokio::task::JoinHandle<()>,
    pub iqn: String,
}

/// The one target an agent serves at a time; a field of `AgentState`.
#[derive(Default)]
pub struct Export {
    running: Mutex<Option<Running>>,
}

impl Export {
    /// Keeps the target `r` as this agent's (the caller stopped any earlier one).
    pub(crate) fn set(&self, r: Running) {
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    }

    /// Takes the running target, if any, to stop it.
    pub(crate) fn take(&self) -> Option<Running> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// Options of `ferrite-agent iscsi-target`.
#[derive(Debug, Clone, clap::Args)]
pub struct IscsiTargetArgs {
    /// File or block device to export as LUN 0 (its size must be a multiple of 512 bytes).
    #[arg(long)]
    pub backing: PathBuf,
    /// Target name, e.g. iqn.2026-01.org.example:disk0.
    #[arg(long)]
    pub iqn: String,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:3260")]
    pub listen: SocketAddr,
    /// Open the backing store with O_DIRECT (bypass the page cache).
    #[arg(long)]
    pub direct: bool,
    /// Require CHAP with this user name (needs --chap-secret or FERRITE_ISCSI_CHAP_SECRET).
    #[arg(long, requires = "chap_secret")]
    pub chap_user: Option<String>,
    /// CHAP secret (12 to 16 characters are what most initiators accept).
    #[arg(long, env = "FERRITE_ISCSI_CHAP_SECRET", hide_env_values = true)]
    pub chap_secret: Option<String>,
}

pub fn run(args: IscsiTargetArgs) -> anyhow::Result<()> {
    let mut cfg = TargetConfig::new(args.iqn.clone(), args.backing.clone());
    cfg.direct = args.direct;
    if let (Some(user), Some(secret)) = (args.chap_user, args.chap_secret) {
        cfg.chap = Some(Credentials { user, secret });
    }
    let target = Target::new(cfg).with_context(|| {
        format!(
            "setting up target {} on {}",
            args.iqn,
            args.backing.display()
        )
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        eprintln!(
            "ferrite-agent: serving {} as {} on {}",
            args.backing.display(),
            args.iqn,
            listener.local_addr()?
        );
        target
            .serve(listener, shutdown_signal())
            .await
            .context("serving iSCSI")
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
