//! On-disk formats over [`io::DiskIo`] (a local file or device, or a remote LUN): GPT and
//! MBR (the `mbr` codec), partition layouts, FAT32/swap headers, ISO9660 and VFAT config drives, signature
//! wiping.

pub mod configdrive;
pub mod gpt;
pub mod io;
pub mod iso9660;
pub mod layout;
pub mod mbr;
pub mod mkfs;
pub mod table_write;
pub mod vfat_build;
pub mod wipe;
