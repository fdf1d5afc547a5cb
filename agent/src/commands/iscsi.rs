//! `iscsi.start_iscsi_target` (CONTRACT.md §1): exports the install disk as LUN 0 of an
//! iSCSI target on the advertised address, so the conductor can write the image with its
//! initiator. Ferrite extensions: CHAP credentials (`ferrite_chap_user`/`_secret`) and
//! `iscsi.stop_iscsi_target`. The running target belongs to its agent's state
//! ([`Export`](crate::iscsi_target::Export)), so agents sharing a process (the conductor's tests) never stop each
//! other's, and it stops when that state is dropped.

use std::net::{Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ferrite_iscsi::{Credentials, Target, TargetConfig};
use ferrite_proto::commands::{
    StartIscsiTargetParams, StartIscsiTargetResult, StopIscsiTargetResult, START_ISCSI_TARGET,
    STOP_ISCSI_TARGET,
};
use serde_json::Value;

use super::{CommandError, Mode, NoParams, Registry};
use crate::disk::safety;
use crate::iscsi_target::Running;
use crate::state::AgentState;

pub fn register(r: &mut Registry) {
    r.register(START_ISCSI_TARGET, Mode::Sync, start);
    r.register(STOP_ISCSI_TARGET, Mode::Sync, stop);
}

async fn start(p: StartIscsiTargetParams, state: Arc<AgentState>) -> Result<Value, CommandError> {
    if !ferrite_iscsi::target::valid_name(&p.iqn) {
        return Err(CommandError::invalid_params(
            "iqn",
            format!("{:?} is not an iSCSI name (iqn.YYYY-MM.domain:name)", p.iqn),
        ));
    }
    let chap = match (p.ferrite_chap_user, p.ferrite_chap_secret) {
        (Some(user), Some(secret)) => Some(Credentials { user, secret }),
        (None, None) => None,
        _ => {
            return Err(CommandError::invalid_params(
                "ferrite_chap_secret",
                "ferrite_chap_user and ferrite_chap_secret go together",
            ))
        }
    };
    stop_running(&state).await;
    let disk = crate::install::target_disk(&state, None)?;
    safety::authorize(&disk.path, disk.choice)
        .map_err(|e| CommandError::failed("exporting the disk is not allowed", e))?;
    if p.wipe_disk_metadata {
        let path = disk.path.clone();
        super::blocking("wiping disk metadata", move || {
            let target = crate::image::writer::Target::open(&path)
                .map_err(|e| CommandError::failed("opening the disk failed", e))?;
            let mut sink = crate::image::writer::DirectWriter::new(target, false);
            ferrite_image::disk::wipe::wipe_partition_signatures(&mut sink)
                .map_err(|e| CommandError::failed("wiping partition signatures failed", e))
        })
        .await?;
    }
    let mut cfg = TargetConfig::new(p.iqn.clone(), disk.path.clone());
    cfg.chap = chap;
    let target = Target::new(cfg)
        .map_err(|e| CommandError::failed("starting the iSCSI target failed", e))?;
    let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, p.portal_port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CommandError::failed(format!("cannot listen on port {}", p.portal_port), e))?;
    let port = listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(p.portal_port);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = target.serve(listener, shutdown).await {
            tracing::warn!(error = %e, "iSCSI target stopped");
        }
    });
    state.iscsi.set(Running {
        stop,
        done,
        iqn: p.iqn.clone(),
    });
    tracing::info!(iqn = %p.iqn, port, disk = %disk.path.display(), "iSCSI target started");
    // A regular file (tests, standalone use) deallocates on UNMAP at no cost, so the
    // writer may unmap it whole and skip zero runs, as a local deploy does with a file.
    let is_file = std::fs::metadata(&disk.path).is_ok_and(|m| m.is_file());
    let started = StartIscsiTargetResult {
        iscsi_target_iqn: p.iqn,
        ferrite_portal_port: Some(port),
        ferrite_device: Some(disk.path.display().to_string()),
        ferrite_device_is_file: is_file,
    };
    Ok(serde_json::to_value(started).unwrap_or(Value::Null))
}

/// Stops the target `state`'s agent is running, if any, and returns its IQN.
pub(crate) async fn stop_running(state: &AgentState) -> Option<String> {
    let r = state.iscsi.take()?;
    let _ = r.stop.send(());
    let _ = r.done.await;
    Some(r.iqn)
}

async fn stop(_: NoParams, state: Arc<AgentState>) -> Result<Value, CommandError> {
    let stopped = StopIscsiTargetResult {
        ferrite_stopped: stop_running(&state).await,
    };
    Ok(serde_json::to_value(stopped).unwrap_or(Value::Null))
}
