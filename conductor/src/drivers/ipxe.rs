//! The `ipxe` boot interface: per-MAC iPXE scripts and staged deploy kernel/ramdisk under
//! the conductor's boot directory, served at `/boot/` (see `api::boot`). While a node expects
//! an agent its ports' scripts boot the deploy ramdisk with the kernel parameters of
//! CONTRACT.md §3; once deployed they boot the local disk; cleanup removes them, so an
//! unknown or released MAC gets the "not managed" answer.

use std::path::PathBuf;
use std::sync::Arc;

use ferrite_netboot::ipxe::{self, DeployBoot, KernelParams};
use ferrite_netboot::{BootFiles, Mac};

use super::*;
use crate::db::{Db, PortFilter};
use crate::state::State;

/// What the boot interface needs from the conductor's configuration.
pub struct IpxeSettings {
    pub files: BootFiles,
    /// The conductor's API as the servers reach it (`ipa-api-url`, inspection callback).
    pub api_url: String,
    /// The conductor as BMCs reach it: virtual-media ISOs are inserted as
    /// `{media_url}/boot/<uuid>/boot.iso` (Ironic's `external_http_url`).
    pub media_url: String,
    /// Kernel parameters every deploy ramdisk gets (e.g. `console=ttyS0`).
    pub kernel_params: Vec<String>,
    /// dnsmasq `dhcp-hostsfile` to keep in step with the ports that PXE-boot.
    pub dhcp_hostsfile: Option<PathBuf>,
}

/// The node's own kernel parameters (`driver_info.kernel_append_params`), each checked for
/// what cannot go into an iPXE script or a boot ISO's command line.
pub(crate) fn node_params(node: &Node) -> DResult<Vec<String>> {
    let Some(v) = node.driver_info.get("kernel_append_params") else {
        return Ok(Vec::new());
    };
    let p = v
        .as_str()
        .ok_or_else(|| DriverError::invalid("driver_info.kernel_append_params must be a string"))?;
    let params: Vec<String> = p.split_whitespace().map(String::from).collect();
    for w in &params {
        ipxe::check_word("driver_info.kernel_append_params parameter", w)?;
    }
    Ok(params)
}

/// The deploy ramdisk's parameters (CONTRACT.md §3) for `node` in its current state: the
/// API URL, the inspection callback and token while inspecting, the configured and the
/// node's own extra parameters. Shared by the `ipxe` and `redfish-virtual-media` boot
/// interfaces.
pub(crate) fn ramdisk_params(settings: &IpxeSettings, node: &Node) -> DResult<KernelParams> {
    let inspecting = matches!(node.provision_state, State::Inspecting | State::InspectWait);
    let mut extra = settings.kernel_params.clone();
    extra.extend(node_params(node)?);
    if let Some(t) = node
        .driver_internal_info
        .get(crate::engine::INSPECTION_TOKEN)
        .and_then(|v| v.as_str())
        .filter(|_| inspecting)
    {
        extra.push(format!("ferrite-inspection-token={t}"));
    }
    Ok(KernelParams {
        api_url: settings.api_url.clone(),
        inspection_callback_url: inspecting
            .then(|| format!("{}/v1/continue_inspection", settings.api_url)),
        advertise: None,
        extra,
    })
}

pub struct IpxeBoot {
    pub settings: Arc<IpxeSettings>,
    pub db: Db,
}

pub(crate) fn source<'a>(node: &'a Node, key: &str) -> DResult<&'a str> {
    node.driver_info
        .get(key)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            DriverError::Invalid(format!(
                "driver_info.{key} is missing: set it to the deploy {} (an http(s) URL or an \
                 absolute path on the conductor)",
                key.trim_start_matches("deploy_")
            ))
        })
}

impl IpxeBoot {
    /// The MACs of the PXE-enabled ports `filter` selects.
    async fn pxe_macs(&self, filter: &PortFilter) -> DResult<Vec<Mac>> {
        let ports = self.db.list_ports(filter).await?;
        Ok(ports
            .iter()
            .filter(|p| p.pxe_enabled)
            .filter_map(|p| p.address.parse().ok())
            .collect())
    }

    /// The MACs of the node's PXE-enabled ports.
    async fn macs(&self, node: &Node) -> DResult<Vec<Mac>> {
        let macs = self
            .pxe_macs(&PortFilter {
                node_uuid: Some(node.uuid.clone()),
                ..Default::default()
            })
            .await?;
        if macs.is_empty() {
            return Err(DriverError::Invalid(format!(
                "node {} has no PXE-enabled port: create one with the MAC of the NIC it \
                 network-boots from (`ferrite port create --node {} MAC`)",
                node.uuid, node.uuid
            )));
        }
        Ok(macs)
    }

    /// Rewrites the dnsmasq hosts file from every PXE-enabled port, when one is configured.
    async fn sync_hostsfile(&self) -> DResult<()> {
        let Some(path) = &self.settings.dhcp_hostsfile else {
            return Ok(());
        };
        let macs = self.pxe_macs(&PortFilter::default()).await?;
        ferrite_netboot::dnsmasq::write_hostsfile(path, &macs).map_err(|e| {
            DriverError::failed(format!("writing dhcp hosts file {}", path.display()), e)
        })
    }
}

impl Boot for IpxeBoot {
    fn name(&self) -> &'static str {
        "ipxe"
    }
    fn instance_boots_from_conductor(&self) -> bool {
        true
    }
    fn validate(&self, node: &Node) -> DResult<()> {
        for key in ["deploy_kernel", "deploy_ramdisk"] {
            let src = source(node, key)?;
            if src.starts_with("http://") || src.starts_with("https://") {
                ipxe::check_word(&format!("driver_info.{key}"), src)?;
            }
        }
        node_params(node)?;
        Ok(())
    }
    fn prepare_ramdisk<'a>(&'a self, node: &'a Node) -> BoxFut<'a, DResult<()>> {
        Box::pin(async move {
            let macs = self.macs(node).await?;
            let files = &self.settings.files;
            let kernel =
                files.deploy_url(&node.uuid, "deploy_kernel", source(node, "deploy_kernel")?)?;
            let ramdisk = files.deploy_url(
                &node.uuid,
                "deploy_ramdisk",
                source(node, "deploy_ramdisk")?,
            )?;
            let script = ipxe::deploy_script(&DeployBoot {
                node_uuid: node.uuid.clone(),
                kernel_url: kernel,
                ramdisk_url: ramdisk,
                params: ramdisk_params(&self.settings, node)?,
            })?;
            files.write_node_script(&macs, &script)?;
            self.sync_hostsfile().await
        })
    }
    fn clean_up_ramdisk<'a>(&'a self, node: &'a Node) -> BoxFut<'a, DResult<()>> {
        Box::pin(async move {
            if let Ok(macs) = self.macs(node).await {
                self.settings.files.remove_node_scripts(&macs);
            }
            self.settings.files.remove_node_files(&node.uuid);
            Ok(())
        })
    }
    fn prepare_instance<'a>(&'a self, node: &'a Node) -> BoxFut<'a, DResult<()>> {
        Box::pin(async move {
            let macs = self.macs(node).await?;
            let files = &self.settings.files;
            files.write_node_script(&macs, &ipxe::local_boot_script(&node.uuid))?;
            files.remove_node_files(&node.uuid);
            Ok(())
        })
    }
}
