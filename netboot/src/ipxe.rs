//! iPXE scripts: the chain script every server fetches first, the per-node deploy-ramdisk
//! script with the agent's kernel parameters (CONTRACT.md §3), local-disk boot, and the
//! answer for MACs Ferrite does not manage.

use crate::mac::Mac;

/// A URL or kernel parameter that cannot go into an iPXE script as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} {why}; fix the node's driver_info or the conductor's configuration")]
pub struct ScriptError {
    pub what: String,
    pub value: String,
    pub why: &'static str,
}

/// Checks one word of an iPXE script line (a URL, one kernel parameter): a space would
/// start another argument and a newline or other control character another command, so
/// a value with either could run anything in the server's boot firmware.
pub fn check_word(what: &str, value: &str) -> Result<(), ScriptError> {
    let err = |why| {
        Err(ScriptError {
            what: what.into(),
            value: value.into(),
            why,
        })
    };
    if value.is_empty() {
        return err("is empty");
    }
    if value.chars().any(char::is_whitespace) {
        return err("contains whitespace");
    }
    if value.chars().any(char::is_control) {
        return err("contains a control character");
    }
    Ok(())
}

/// The agent's kernel command line, in CONTRACT.md §3 terms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KernelParams {
    /// `ipa-api-url`: the conductor's API as the server reaches it.
    pub api_url: String,
    /// `ipa-inspection-callback-url`, only while inspecting.
    pub inspection_callback_url: Option<String>,
    /// `ipa-advertise-host` / `ipa-advertise-port`, when the agent must announce an address
    /// other than its own (NAT, QEMU user networking).
    pub advertise: Option<(String, u16)>,
    /// Extra parameters appended verbatim (e.g. `console=ttyS0`), from configuration.
    pub extra: Vec<String>,
}

impl KernelParams {
    /// Checks every part with [`check_word`].
    pub fn check(&self) -> Result<(), ScriptError> {
        check_word("ipa-api-url", &self.api_url)?;
        if let Some(u) = &self.inspection_callback_url {
            check_word("ipa-inspection-callback-url", u)?;
        }
        if let Some((host, _)) = &self.advertise {
            check_word("ipa-advertise-host", host)?;
        }
        for p in &self.extra {
            check_word("kernel parameter", p)?;
        }
        Ok(())
    }

    /// The command line for an iPXE script; `BOOTIF` uses iPXE's own idea of the booting
    /// MAC.
    pub fn render(&self) -> String {
        self.cmdline(Some("${mac:hexhyp}"))
    }

    /// The command line with `BOOTIF=01-{bootif}` (a MAC as `aa-bb-…`, or an iPXE variable)
    /// when given: a boot ISO has no iPXE to fill it in, so it names the node's port, or
    /// leaves `BOOTIF` out.
    pub fn cmdline(&self, bootif: Option<&str>) -> String {
        let mut p = vec![format!("ipa-api-url={}", self.api_url)];
        if let Some(url) = &self.inspection_callback_url {
            p.push(format!("ipa-inspection-callback-url={url}"));
        }
        if let Some((host, port)) = &self.advertise {
            p.push(format!("ipa-advertise-host={host}"));
            p.push(format!("ipa-advertise-port={port}"));
        }
        if let Some(mac) = bootif {
            p.push(format!("BOOTIF=01-{mac}"));
        }
        p.extend(self.extra.iter().cloned());
        p.join(" ")
    }
}

/// Where the deploy kernel and ramdisk come from (URLs as the server's iPXE fetches them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployBoot {
    pub node_uuid: String,
    pub kernel_url: String,
    pub ramdisk_url: String,
    pub params: KernelParams,
}

/// `/boot/boot.ipxe`: chains to the MAC-named script of each NIC in turn; a NIC whose MAC
/// no node owns gets [`not_managed_script`], which fails, so the next NIC is tried.
pub fn chain_script(base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    format!(
        "#!ipxe
# Ferrite: chain to the boot script of the first NIC whose MAC the conductor knows.
set netid:int32 -1
:next_nic
inc netid
isset ${{net${{netid}}/mac}} || goto no_script
chain --autofree {base}/boot/${{net${{netid}}/mac:hexhyp}}.ipxe || goto next_nic
:no_script
echo Ferrite: no boot script for any NIC of this machine
sleep 10
exit 1
"
    )
}

/// The per-node script while the node expects an agent: boot the deploy ramdisk, retrying
/// downloads a few times, and power off if they never succeed. Every URL and parameter is
/// checked with [`check_word`] first.
pub fn deploy_script(boot: &DeployBoot) -> Result<String, ScriptError> {
    check_word("node UUID", &boot.node_uuid)?;
    check_word("deploy kernel URL", &boot.kernel_url)?;
    check_word("deploy ramdisk URL", &boot.ramdisk_url)?;
    boot.params.check()?;
    Ok(format!(
        "#!ipxe
# Ferrite: deploy ramdisk for node {uuid}
set attempts:int32 10
set i:int32 0
:deploy
imgfree
kernel --name kernel {kernel} initrd=ramdisk {params} || goto retry
initrd --name ramdisk {ramdisk} || goto retry
boot || goto retry
:retry
iseq ${{i}} ${{attempts}} && goto fail ||
inc i
echo Ferrite: download failed, retry ${{i}} of ${{attempts}}
sleep ${{i}}
goto deploy
:fail
echo Ferrite: cannot load the deploy ramdisk of node {uuid}; powering off in 30 s
sleep 30
# Not every iPXE build has poweroff (Debian's ROMs lack it): then leave to the firmware.
poweroff || exit 1
",
        uuid = boot.node_uuid,
        kernel = boot.kernel_url,
        ramdisk = boot.ramdisk_url,
        params = boot.params.render(),
    ))
}

/// The per-node script once the node is deployed: boot the first local disk.
pub fn local_boot_script(node_uuid: &str) -> String {
    format!(
        "#!ipxe
# Ferrite: node {node_uuid} is deployed; boot from its local disk
sanboot --no-describe --drive 0x80 || exit
"
    )
}

/// The answer for a MAC no node owns: say so on the console, then let the firmware go on
/// with its next boot device.
pub fn not_managed_script(mac: &Mac) -> String {
    format!(
        "#!ipxe
# Ferrite: {mac} belongs to no enrolled node
echo Ferrite: this machine ({mac}) is not managed by Ferrite: enroll it with a port for this MAC
sleep 10
exit 1
"
    )
}
