//! `image.install_bootloader`, as IPA answers it. Booted in BIOS mode, a whole-disk image
//! boots with its own loader: nothing to do. Booted in UEFI mode, the loader on the
//! written disk's EFI system partition becomes the first NVRAM boot entry (written
//! through efivarfs, see `efivars`; IPA runs efibootmgr). A partition image brings its
//! own loader in its root filesystem (`from_image`): UEFI copies its EFI files to the new
//! ESP first; BIOS sets up its GRUB boot.img and core.img as grub-setup does (IPA chroots
//! and runs grub-install instead).

pub mod efivars;
pub mod esp;
pub mod from_image;
pub mod grub_setup;

use std::sync::Arc;

use ferrite_proto::commands::{InstallBootloaderParams, INSTALL_BOOTLOADER};
use serde_json::{json, Value};

use crate::job::{blocking, CommandError};
use crate::state::registry::{Mode, Registry};
use crate::state::AgentState;

/// The description of the boot entry the agent adds.
pub const ENTRY_DESCRIPTION: &str = "ferrite-deployed";

pub fn register(r: &mut Registry) {
    r.register(INSTALL_BOOTLOADER, Mode::Async, install_bootloader);
}

async fn install_bootloader(
    p: InstallBootloaderParams,
    state: Arc<AgentState>,
) -> Result<Value, CommandError> {
    let ignore = p.ignore_bootloader_failure.unwrap_or(false);
    match blocking("installing the boot loader", move || install(&state, &p)).await {
        Err(e) if ignore => {
            tracing::warn!(error = %e.details(), "boot loader not installed; ignored as asked");
            Ok(Value::Null)
        }
        other => other,
    }
}

/// The root UUID of a partition image: the one Ironic sent, else the one this agent
/// reported after writing the image. Whole-disk images have none (their "root uuid" is the
/// MBR disk identifier, `0x…`).
fn partition_root_uuid(state: &AgentState, p: &InstallBootloaderParams) -> Option<String> {
    let reported = state
        .partition_uuids
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .filter(|u| u.get("partitions").is_some())
        .and_then(|u| {
            u.get("root uuid")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    p.root_uuid
        .clone()
        .or(reported)
        .filter(|u| !u.is_empty() && !u.starts_with("0x"))
}

fn install(state: &AgentState, p: &InstallBootloaderParams) -> Result<Value, CommandError> {
    let root = &state.config.root;
    let uefi = root.join("sys/firmware/efi").is_dir();
    if let Some(target) = p.target_boot_mode.as_deref() {
        let current = if uefi { "uefi" } else { "bios" };
        if target != current {
            tracing::warn!(
                target,
                current,
                "boot mode mismatch: installing the boot loader may fail or not boot"
            );
        }
    }
    let partition_image = state
        .partition_uuids
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|u| u.get("partitions").is_some());
    let root_uuid = partition_root_uuid(state, p);
    if !uefi && root_uuid.is_none() {
        if partition_image {
            return Err(CommandError::failed_msg(
                "installing GRUB for BIOS boot needs the partition image's root_uuid, and \
                 neither Ironic nor this agent's write gave one",
            ));
        }
        // IPA: a whole-disk image keeps its own boot loader.
        return Ok(Value::Null);
    }
    let target = crate::install::target_disk(state, None)?;
    let name = target.path.display().to_string();
    let disk = crate::image::writer::Target::open(&target.path)
        .map_err(|e| CommandError::failed(format!("opening {name}"), e))?;
    let sector = crate::image::deploy::sector_size(&disk);
    // The image's root filesystem, read only when a loader must come from it.
    let open_image_root = |uuid: &str| -> Result<_, CommandError> {
        let part = from_image::find_root(disk.file(), &name, sector, uuid)
            .map_err(|e| CommandError::failed("finding the root partition", e))?;
        let fs = from_image::open_root(disk.file(), part)
            .map_err(|e| CommandError::failed("reading the root filesystem", e))?;
        Ok((part, fs))
    };
    if !uefi {
        let Some(uuid) = &root_uuid else {
            return Ok(Value::Null);
        };
        let (part, fs) = open_image_root(uuid)?;
        crate::disk::safety::authorize(&target.path, target.choice)
            .map_err(|e| CommandError::failed("installing GRUB", e))?;
        let g = from_image::install_grub_bios(disk.file(), &name, sector, &fs)
            .map_err(|e| CommandError::failed(format!("installing GRUB on {name}"), e))?;
        tracing::info!(disk = %name, root_partition = part.number, core_partition = g.core_partition,
            core_lba = g.core_lba, core_sectors = g.core_sectors, "BIOS GRUB installed from the image");
        return Ok(json!({
            "ferrite_bootloader": "grub-i386-pc",
            "ferrite_root_partition": part.number,
            "ferrite_core_partition": g.core_partition,
            "ferrite_core_lba": g.core_lba,
            "ferrite_core_sectors": g.core_sectors,
        }));
    }
    let vars = efivars::Efivars::open(&root.join("sys/firmware/efi/efivars"))
        .map_err(|e| CommandError::failed("cannot set the UEFI boot entry", e))?;
    let hd = esp::find(
        disk.file(),
        &name,
        sector,
        p.efi_system_part_uuid.as_deref(),
    )
    .map_err(|e| CommandError::failed("finding the EFI system partition", e))?;
    let mut copied = vec![];
    // IPA's order: a loader already on the ESP wins; else the image's own EFI files.
    let loader = match (esp::find_loader(disk.file(), &hd, sector), &root_uuid) {
        (Err(esp::EspError::NoLoader), Some(uuid)) => {
            let (_, fs) = open_image_root(uuid)?;
            crate::disk::safety::authorize(&target.path, target.choice)
                .map_err(|e| CommandError::failed("copying the EFI loader", e))?;
            copied = from_image::copy_efi_assets(disk.file(), &hd, sector, &fs).map_err(|e| {
                CommandError::failed(format!("copying the image's EFI loader to {name}"), e)
            })?;
            tracing::info!(files = ?copied, disk = %name, "EFI files copied from the image to the ESP");
            esp::find_loader(disk.file(), &hd, sector)
        }
        (found, _) => found,
    }
    .map_err(|e| CommandError::failed(format!("finding the boot loader on {name}"), e))?;
    let option = efivars::load_option(ENTRY_DESCRIPTION, &hd, &loader);
    let n = vars
        .add_first(&option)
        .map_err(|e| CommandError::failed("writing the UEFI boot entry", e))?;
    tracing::info!(entry = format!("Boot{n:04X}"), %loader, disk = %name, "UEFI boot entry set first");
    Ok(json!({
        "ferrite_boot_entry": format!("Boot{n:04X}"),
        "ferrite_loader": loader,
        "ferrite_esp_partition": hd.number,
        "ferrite_esp_files": copied,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{AgentConfig, RecordingHooks};

    fn state(root: &std::path::Path, disk: &std::path::Path) -> AgentState {
        AgentState::new(
            AgentConfig {
                root: root.to_owned(),
                target_disk: Some(disk.to_owned()),
                ..AgentConfig::default()
            },
            Arc::new(RecordingHooks::new()),
        )
    }

    #[test]
    fn uefi_sets_the_loader_first_in_boot_order() {
        let root = tempfile::tempdir().unwrap();
        let vars = root.path().join("sys/firmware/efi/efivars");
        std::fs::create_dir_all(&vars).unwrap();
        let disk = esp::tests::disk_with_esp(&["EFI/debian/shimx64.efi"]);
        let s = state(root.path(), disk.path());
        let p = InstallBootloaderParams {
            root_uuid: Some("0x1234abcd".into()),
            target_boot_mode: Some("uefi".into()),
            ..Default::default()
        };
        let r = install(&s, &p).unwrap();
        assert_eq!(r["ferrite_boot_entry"], "Boot0000");
        assert_eq!(r["ferrite_loader"], "\\EFI\\debian\\shimx64.efi");
        let v = efivars::Efivars::open(&vars).unwrap();
        let entry = v.get("Boot0000").unwrap().unwrap();
        let loader: Vec<u8> = "\\EFI\\debian\\shimx64.efi"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert!(entry.windows(loader.len()).any(|w| w == loader));
        assert_eq!(v.get("BootOrder").unwrap().unwrap(), vec![0, 0]);
    }

    #[test]
    fn bios_whole_disk_is_a_no_op_and_uefi_without_efivarfs_fails() {
        let root = tempfile::tempdir().unwrap();
        let disk = esp::tests::disk_with_esp(&["EFI/BOOT/BOOTX64.EFI"]);
        let s = state(root.path(), disk.path());
        let p = InstallBootloaderParams::default();
        assert_eq!(install(&s, &p).unwrap(), Value::Null);
        // A partition image in BIOS mode needs its root to install GRUB from.
        *s.partition_uuids.lock().unwrap() = Some(json!({"partitions": {"root": "/dev/vda2"}}));
        let e = install(&s, &p).unwrap_err();
        assert!(e.details().contains("root_uuid"), "{}", e.details());
        // UEFI boot without efivarfs: the entry cannot be written, and the error says so.
        std::fs::create_dir_all(root.path().join("sys/firmware/efi")).unwrap();
        *s.partition_uuids.lock().unwrap() = None;
        let e = install(&s, &p).unwrap_err();
        assert!(
            e.details().contains("efivarfs is not mounted"),
            "{}",
            e.details()
        );
    }
}
