//! The `redfish-virtual-media` boot interface: when a node must boot the deploy ramdisk
//! (inspection, cleaning, deploy), the conductor builds a bootable ISO of the deploy kernel
//! and ramdisk with the node's kernel parameters baked in (the same ones the `ipxe` script
//! carries, from [`super::ipxe::ramdisk_params`]), keeps it under the boot directory as
//! `<uuid>/boot.iso`, serves it at `{media_url}/boot/<uuid>/boot.iso` and inserts that URL
//! into the BMC's virtual CD through Redfish; the engine then sets the boot device to `cdrom`.
//! When the node leaves the ramdisk the CD is ejected and the files are removed. No DHCP
//! boot file, TFTP or iPXE is involved; with static IPv4 networks in the node's
//! `network_data` the ramdisk needs no DHCP server at all (`ferrite-net=` parameters,
//! [`ferrite_netboot::network_data`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrite_netboot::files::ISO_NAME;
use ferrite_netboot::iso::{self, BootIso};
use ferrite_netboot::Mac;

use super::ipxe::{node_params, ramdisk_params, source, IpxeSettings};
use super::redfish::RedfishClients;
use super::*;
use crate::db::{Db, PortFilter};

pub struct VirtualMediaBoot {
    pub settings: Arc<IpxeSettings>,
    pub db: Db,
    pub clients: Arc<RedfishClients>,
}

impl VirtualMediaBoot {
    /// The MAC of the node's first PXE-enabled port, for `BOOTIF` (the agent prefers that
    /// NIC); none when the node has no port yet (the agent then tries every NIC).
    async fn bootif(&self, node: &Node) -> DResult<Option<Mac>> {
        let ports = self
            .db
            .list_ports(&PortFilter {
                node_uuid: Some(node.uuid.clone()),
                ..Default::default()
            })
            .await?;
        Ok(ports
            .iter()
            .filter(|p| p.pxe_enabled)
            .find_map(|p| p.address.parse().ok()))
    }

    /// The node's deploy kernel or ramdisk as a file under its boot directory: a local
    /// source is staged (confined as for `ipxe`), an http(s) one downloaded.
    async fn fetch(&self, node: &Node, name: &str) -> DResult<PathBuf> {
        let src = source(node, name)?;
        let files = &self.settings.files;
        if !(src.starts_with("http://") || src.starts_with("https://")) {
            return Ok(files.stage_local(&node.uuid, name, src)?);
        }
        let dest = files.node_path(&node.uuid, name)?;
        download(src, &dest)
            .await
            .map_err(|e| DriverError::failed(format!("downloading driver_info.{name} {src}"), e))?;
        Ok(dest)
    }

    /// The URL the BMC fetches the node's ISO from.
    fn iso_url(&self, node: &Node) -> String {
        format!(
            "{}/boot/{}/{ISO_NAME}",
            self.settings.media_url.trim_end_matches('/'),
            node.uuid
        )
    }

    /// Ejects the virtual CD and removes the node's ISO and staged files (the files go
    /// even when the BMC cannot be reached).
    async fn eject(&self, node: &Node) -> DResult<()> {
        self.settings.files.remove_node_files(&node.uuid);
        let (client, sys) = self.clients.system(node).await?;
        client.eject_media(&sys).await.map_err(DriverError::Redfish)
    }
}

/// The ramdisk's static addressing from the node's `network_data` (none: DHCP).
fn network_params(node: &Node) -> DResult<Vec<String>> {
    ferrite_netboot::network_data::static_params(&node.ext("network_data"))
        .map_err(|e| DriverError::Invalid(e.to_string()))
}

async fn download(url: &str, dest: &Path) -> Result<(), BoxError> {
    use tokio::io::AsyncWriteExt;
    let mut resp = reqwest::get(url).await?.error_for_status()?;
    let tmp = dest.with_extension("part");
    let mut f = tokio::fs::File::create(&tmp).await?;
    while let Some(chunk) = resp.chunk().await? {
        f.write_all(&chunk).await?;
    }
    f.sync_all().await?;
    tokio::fs::rename(&tmp, dest).await?;
    Ok(())
}

impl Boot for VirtualMediaBoot {
    fn name(&self) -> &'static str {
        "redfish-virtual-media"
    }
    fn ramdisk_boot_device(&self) -> &'static str {
        "cdrom"
    }
    fn validate(&self, node: &Node) -> DResult<()> {
        super::redfish::info(node).map_err(|e| {
            DriverError::Invalid(format!(
                "boot interface redfish-virtual-media inserts its ISO through the node's \
                 Redfish BMC, and its driver_info does not name one: {}; set \
                 driver_info.redfish_address (and redfish_system_id, redfish_username, \
                 redfish_password)",
                crate::error_chain(&e)
            ))
        })?;
        for key in ["deploy_kernel", "deploy_ramdisk"] {
            source(node, key)?;
        }
        node_params(node)?;
        network_params(node)?;
        Ok(())
    }
    fn prepare_ramdisk<'a>(&'a self, node: &'a Node) -> BoxFut<'a, DResult<()>> {
        Box::pin(async move {
            let mut params = ramdisk_params(&self.settings, node)?;
            params.extra.extend(network_params(node)?);
            params.check()?;
            let bootif = self.bootif(node).await?.map(|m| m.hexhyp());
            let cmdline = params.cmdline(bootif.as_deref());
            let kernel = self.fetch(node, "deploy_kernel").await?;
            let ramdisk = self.fetch(node, "deploy_ramdisk").await?;
            let files = &self.settings.files;
            let out = files.node_path(&node.uuid, ISO_NAME)?;
            let uuid = node.uuid.clone();
            let built = tokio::task::spawn_blocking(move || {
                let work = out.parent().unwrap_or(Path::new(".")).to_path_buf();
                let tmp = out.with_extension("iso.part");
                let label = format!("FERRITE-{}", &uuid[..uuid.len().min(8)]);
                iso::build(
                    &BootIso {
                        kernel: &kernel,
                        ramdisk: &ramdisk,
                        cmdline: &cmdline,
                        label: &label,
                    },
                    &work,
                    &tmp,
                )?;
                std::fs::rename(&tmp, &out).map_err(|source| iso::IsoError::Io {
                    what: "moving the boot ISO in place",
                    path: out.clone(),
                    source,
                })
            })
            .await
            .map_err(|e| DriverError::failed("the ISO build task", e))?;
            built.map_err(|e| {
                DriverError::failed(format!("building the boot ISO of node {}", node.uuid), e)
            })?;
            let (client, sys) = self.clients.system(node).await?;
            let url = self.iso_url(node);
            tracing::info!(node = %node.uuid, %url, "inserting the boot ISO as virtual media");
            client
                .insert_media(&sys, &url)
                .await
                .map_err(DriverError::Redfish)
        })
    }
    fn clean_up_ramdisk<'a>(&'a self, node: &'a Node) -> BoxFut<'a, DResult<()>> {
        Box::pin(self.eject(node))
    }
    fn prepare_instance<'a>(&'a self, node: &'a Node) -> BoxFut<'a, DResult<()>> {
        Box::pin(self.eject(node))
    }
}
