//! Posting the inventory to `ipa-inspection-callback-url` (CONTRACT.md §2, "Inspection").
//! Connection errors are retried a few times; an HTTP error is final, and the agent goes on
//! to the lookup as IPA does.

use std::time::Duration;

use ferrite_proto::inventory::{Disk, InspectionExtras, Inventory};
use ferrite_proto::lookup::{InspectionData, InspectionResponse};
use reqwest::Url;

use super::{error_message, ConductorError};

#[derive(Debug, Clone, PartialEq)]
pub struct InspectTiming {
    /// Tries when the callback URL cannot be reached (IPA: 5).
    pub attempts: u32,
    /// Pause between those tries (IPA: 5 s).
    pub wait: Duration,
}

impl Default for InspectTiming {
    fn default() -> Self {
        InspectTiming {
            attempts: 5,
            wait: Duration::from_secs(5),
        }
    }
}

/// The `boot_interface`: the PXE MAC from BOOTIF, else what the inventory says.
pub fn boot_interface(bootif: Option<&str>, inventory: &Inventory) -> Option<String> {
    bootif
        .map(str::to_string)
        .or_else(|| inventory.boot.pxe_interface.clone())
}

/// Posts the inventory, with IPA's `pci_devices` and `numa_topology` beside it, with `token`
/// (the one-time inspection token of the kernel command line, or an agent token); returns
/// the conductor's answer (the node UUID, maybe a token).
#[allow(clippy::too_many_arguments)] // one per field of the body, plus where and how
pub async fn post_inventory(
    http: &reqwest::Client,
    url: &Url,
    inventory: &Inventory,
    root_disk: Option<Disk>,
    extras: InspectionExtras,
    bootif: Option<&str>,
    token: Option<&str>,
    timing: &InspectTiming,
) -> Result<InspectionResponse, ConductorError> {
    let body = InspectionData {
        inventory: inventory.clone(),
        root_disk,
        boot_interface: boot_interface(bootif, inventory),
        agent_token: token.map(str::to_string),
        extras,
        ferrite: serde_json::Map::from_iter([(
            "agent_version".to_string(),
            env!("CARGO_PKG_VERSION").into(),
        )]),
    };
    let mut attempt = 1;
    let res = loop {
        match http.post(url.clone()).json(&body).send().await {
            Ok(res) => break res,
            Err(source) if attempt >= timing.attempts.max(1) => {
                return Err(ConductorError::Transport {
                    url: url.to_string(),
                    source,
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "inspection callback unreachable, retrying");
                attempt += 1;
                tokio::time::sleep(timing.wait).await;
            }
        }
    };
    let status = res.status();
    let bytes = res
        .bytes()
        .await
        .map_err(|source| ConductorError::Transport {
            url: url.to_string(),
            source,
        })?;
    if !status.is_success() {
        return Err(ConductorError::Status {
            url: url.to_string(),
            status,
            message: error_message(&bytes),
        });
    }
    serde_json::from_slice(&bytes).map_err(|source| ConductorError::Decode {
        url: url.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootif_wins_over_the_inventory() {
        let mut inv = Inventory::default();
        inv.boot.pxe_interface = Some("52:54:00:00:00:02".into());
        assert_eq!(
            boot_interface(Some("52:54:00:00:00:01"), &inv).as_deref(),
            Some("52:54:00:00:00:01")
        );
        assert_eq!(
            boot_interface(None, &inv).as_deref(),
            Some("52:54:00:00:00:02")
        );
    }

    #[tokio::test]
    async fn unreachable_callback_is_retried_then_reported() {
        // A port that was just free: connections are refused. (Were another process to
        // listen there by then, the posts would get its answers, not ours, and fail too.)
        let port = ferrite_testkit::free_tcp_port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/v1/continue_inspection")).unwrap();
        let timing = InspectTiming {
            attempts: 3,
            wait: Duration::from_millis(10),
        };
        let t0 = std::time::Instant::now();
        let err = post_inventory(
            &reqwest::Client::new(),
            &url,
            &Inventory::default(),
            None,
            InspectionExtras::default(),
            None,
            None,
            &timing,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ConductorError::Transport { .. }), "{err}");
        assert!(t0.elapsed() >= Duration::from_millis(20));
    }
}
