//! Ramdisk profiles: which kernel modules go in, when `/init` loads each, and why, read from
//! the data files `ramdisk-build/modules/<profile>.txt` (one module a line with its reason).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::kmod::normalize;
use crate::Error;

/// When the ramdisk loads a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// When a device's modalias matches one of the module's aliases (cold-plug).
    Match,
    /// On every machine.
    Always,
    /// Whenever the named module is loaded.
    With(String),
}

/// One line of a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSpec {
    /// Normalised module name.
    pub name: String,
    pub load: Load,
    /// Groups sizes in the manifest: `nic`, `storage`, `usb`, `bmc`, `fs`.
    pub category: String,
    pub reason: String,
}

/// A named set of modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// QEMU/KVM nodes: virtio, e1000(e), AHCI, NVMe.
    Virtual,
    /// Common server NICs and disk controllers as well.
    Server,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Virtual => "virtual",
            Profile::Server => "server",
        }
    }

    /// The profile's data file.
    pub fn source(self) -> &'static str {
        match self {
            Profile::Virtual => include_str!("../modules/virtual.txt"),
            Profile::Server => include_str!("../modules/server.txt"),
        }
    }

    pub fn modules(self) -> Result<Vec<ModuleSpec>, Error> {
        parse(self.source()).map_err(|why| Error::BadProfile {
            profile: self.name().into(),
            why,
        })
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Profile, String> {
        match s {
            "virtual" => Ok(Profile::Virtual),
            "server" => Ok(Profile::Server),
            other => Err(format!(
                "unknown ramdisk profile {other:?}: use virtual or server"
            )),
        }
    }
}

/// Parses `name when category reason…` lines; `#` starts a comment line.
pub fn parse(text: &str) -> Result<Vec<ModuleSpec>, String> {
    let mut out: Vec<ModuleSpec> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |why: String| format!("line {}: {why}", i + 1);
        let mut words = line.split_whitespace();
        let (Some(name), Some(when), Some(category)) = (words.next(), words.next(), words.next())
        else {
            return Err(at("expected `name when category reason…`".into()));
        };
        let reason = words.collect::<Vec<_>>().join(" ");
        if reason.is_empty() {
            return Err(at(format!("{name} has no reason")));
        }
        let load = match when {
            "match" => Load::Match,
            "always" => Load::Always,
            w => match w.strip_prefix("with:") {
                Some(m) if !m.is_empty() => Load::With(normalize(m)),
                _ => return Err(at(format!("{name}: unknown `when` {w:?}"))),
            },
        };
        let name = normalize(name);
        if out.iter().any(|m| m.name == name) {
            return Err(at(format!("{name} is listed twice")));
        }
        out.push(ModuleSpec {
            name,
            load,
            category: category.to_string(),
            reason,
        });
    }
    for m in &out {
        if let Load::With(other) = &m.load {
            if !out.iter().any(|o| &o.name == other) {
                return Err(format!(
                    "{} is loaded with {other}, which is not listed",
                    m.name
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_profiles_parse_and_give_every_module_a_reason() {
        for p in [Profile::Virtual, Profile::Server] {
            let mods = p.modules().unwrap();
            assert!(mods.iter().all(|m| m.reason.len() > 5), "{p}");
            assert!(mods.iter().any(|m| m.name == "virtio_net"), "{p}");
        }
        let server = Profile::Server.modules().unwrap();
        for needed in [
            "ixgbe",
            "i40e",
            "ice",
            "igb",
            "e1000e",
            "bnxt_en",
            "mlx4_core",
            "mlx4_en",
            "mlx5_core",
            "tg3",
            "bnx2x",
            "qede",
            "be2net",
            "vmxnet3",
            "megaraid_sas",
            "mpt3sas",
            "mpi3mr",
            "smartpqi",
            "hpsa",
            "aacraid",
            "ahci",
            "nvme",
            "virtio_scsi",
            "vmw_pvscsi",
            "sd_mod",
            "sr_mod",
            "usb_storage",
            "dm_multipath",
        ] {
            assert!(server.iter().any(|m| m.name == needed), "{needed}");
        }
        let en = server.iter().find(|m| m.name == "mlx4_en").unwrap();
        assert_eq!(en.load, Load::With("mlx4_core".into()));
        assert_eq!(en.category, "nic");
    }

    #[test]
    fn bad_lines_are_errors_with_their_line_number() {
        assert!(parse("a match nic\n").unwrap_err().contains("no reason"));
        assert!(parse("\n\na sometimes nic why\n")
            .unwrap_err()
            .starts_with("line 3:"));
        assert!(
            parse("a match nic why\na-b match nic why\na_b always fs why")
                .unwrap_err()
                .contains("twice")
        );
        assert!(parse("a with:b nic why")
            .unwrap_err()
            .contains("not listed"));
        let ok = parse("# c\nusb-storage always usb sticks and media\n").unwrap();
        assert_eq!(ok[0].name, "usb_storage");
        assert_eq!(ok[0].reason, "sticks and media");
        assert_eq!("server".parse::<Profile>(), Ok(Profile::Server));
        assert!("big".parse::<Profile>().is_err());
    }
}
