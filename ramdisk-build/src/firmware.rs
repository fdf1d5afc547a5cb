//! Firmware for the ramdisk's drivers: the files their `firmware=` lines name, taken from
//! pinned Debian firmware packages (bookworm's `non-free-firmware`), and the list of those
//! no package has.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::deb::{Component, PinnedDeb};
use crate::kmod::Module;
use crate::Error;

/// linux-firmware as Debian bookworm splits it; the packages the server drivers need.
pub const PACKAGES: &[PinnedDeb] = &[
    // bnx2x: BCM57710-57840 10 GbE.
    PinnedDeb {
        name: "firmware-bnx2x",
        version: "20230210-5",
        sha256: "27a81b94a771a4e08ea49ffbf67be246cdcc20c6390e93b5d79659950cfb6aaf",
        component: Component::NonFreeFirmware,
    },
    // bnx2: BCM5708/5709 1 GbE.
    PinnedDeb {
        name: "firmware-bnx2",
        version: "20230210-5",
        sha256: "36e3cc703c59130207cf288d8dbf20c765c8956df6a74c7865c706aa61e694ae",
        component: Component::NonFreeFirmware,
    },
    // qed (qede's core): FastLinQ 41000/45000.
    PinnedDeb {
        name: "firmware-qlogic",
        version: "20230210-5",
        sha256: "2c1a254d2c496ef0be29d5eeb016113825785b13ca87ec5e3246bd109ff61897",
        component: Component::NonFreeFirmware,
    },
    // ice's DDP package, tg3's TSO/57766 firmware, and the rest of linux-firmware.
    PinnedDeb {
        name: "firmware-misc-nonfree",
        version: "20230210-5",
        sha256: "bc837b3c19f046d48e4f2fb5530ab10b93a6e9e263d60ba06a345d13cee96422",
        component: Component::NonFreeFirmware,
    },
];

/// A firmware file a module names and no pinned package has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Missing {
    pub module: String,
    pub file: String,
}

/// The firmware the modules name: the files found (path under `/lib/firmware`, bytes) and
/// the ones missing.
#[derive(Debug, Default)]
pub struct Found {
    pub files: BTreeMap<String, Vec<u8>>,
    /// Which module asked for each file, for the manifest's per-category sizes.
    pub owner: BTreeMap<String, String>,
    pub missing: Vec<Missing>,
}

/// Unpacks the pinned packages (cached) and returns their `lib/firmware` directories.
pub fn unpack_all(cache: &Path) -> Result<Vec<PathBuf>, Error> {
    PACKAGES
        .iter()
        .map(|p| Ok(p.unpack(cache)?.join("lib/firmware")))
        .collect()
}

/// Looks each module's `firmware=` files up in `dirs`, first match wins.
pub fn collect(modules: &[Module], dirs: &[PathBuf]) -> Result<Found, Error> {
    let mut found = Found::default();
    for m in modules {
        for file in &m.firmware {
            if found.files.contains_key(file) {
                continue;
            }
            if file.split('/').any(|c| c == ".." || c.is_empty()) {
                return Err(Error::BadArchivePath(file.clone()));
            }
            match dirs.iter().map(|d| d.join(file)).find(|p| p.is_file()) {
                Some(path) => {
                    let bytes = std::fs::read(&path)
                        .map_err(|e| Error::Io(format!("reading {}", path.display()), e))?;
                    found.files.insert(file.clone(), bytes);
                    found.owner.insert(file.clone(), m.name.clone());
                }
                None => found.missing.push(Missing {
                    module: m.name.clone(),
                    file: file.clone(),
                }),
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_files_in_the_first_directory_that_has_them_and_lists_the_rest() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(a.path().join("tigon")).unwrap();
        std::fs::write(a.path().join("tigon/tg3_tso.bin"), b"tso").unwrap();
        std::fs::create_dir_all(b.path().join("intel/ice/ddp")).unwrap();
        std::fs::write(b.path().join("intel/ice/ddp/ice.pkg"), b"ddp").unwrap();
        let module = |name: &str, fw: &[&str]| Module {
            name: name.into(),
            rel_path: format!("kernel/{name}.ko"),
            depends: vec![],
            aliases: vec![],
            firmware: fw.iter().map(|s| s.to_string()).collect(),
            data: vec![],
        };
        let found = collect(
            &[
                module("tg3", &["tigon/tg3_tso.bin", "tigon/tg357766.bin"]),
                module("ice", &["intel/ice/ddp/ice.pkg"]),
            ],
            &[a.path().to_path_buf(), b.path().to_path_buf()],
        )
        .unwrap();
        assert_eq!(found.files["tigon/tg3_tso.bin"], b"tso");
        assert_eq!(found.files["intel/ice/ddp/ice.pkg"], b"ddp");
        assert_eq!(found.owner["intel/ice/ddp/ice.pkg"], "ice");
        assert_eq!(
            found.missing,
            [Missing {
                module: "tg3".into(),
                file: "tigon/tg357766.bin".into()
            }]
        );
        let bad = collect(&[module("x", &["../etc/passwd"])], &[]).unwrap_err();
        assert!(matches!(bad, Error::BadArchivePath(_)));
    }
}
