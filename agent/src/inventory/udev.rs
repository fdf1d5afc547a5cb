//! The udev database (`/run/udev/data/b<major>:<minor>`): the properties (`E:KEY=VALUE`) and
//! device links (`S:disk/by-path/…`) udev recorded for a block device.

use std::collections::BTreeMap;

use super::Root;

/// One device's udev database entry.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UdevEntry {
    pub properties: BTreeMap<String, String>,
    /// Links relative to `/dev`, e.g. `disk/by-path/pci-0000:00:1f.2-ata-1`.
    pub links: Vec<String>,
}

impl UdevEntry {
    /// A non-empty property value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.properties
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Parses a udev database file; lines of other kinds and malformed lines are skipped.
pub fn parse_udev_db(text: &str) -> UdevEntry {
    let mut entry = UdevEntry::default();
    for line in text.lines() {
        if let Some(prop) = line.strip_prefix("E:") {
            if let Some((k, v)) = prop.split_once('=') {
                if !k.is_empty() {
                    entry.properties.insert(k.to_string(), v.to_string());
                }
            }
        } else if let Some(link) = line.strip_prefix("S:") {
            if !link.is_empty() {
                entry.links.push(link.to_string());
            }
        }
    }
    entry
}

/// The udev entry of the block device `major:minor` (the content of sysfs `dev`).
pub(crate) fn block_entry(root: &Root, dev: &str) -> Option<UdevEntry> {
    let text = root.read(&format!("/run/udev/data/b{dev}"))?;
    Some(parse_udev_db(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_properties_and_links() {
        let text = "S:disk/by-id/wwn-0x5000c500a1b2c3d4\nS:disk/by-path/pci-0000:00:1f.2-ata-1\n\
            W:12\nI:1234567\nE:ID_SERIAL=ST4000NM0035_ZC1234AB\nE:ID_SERIAL_SHORT=ZC1234AB\n\
            E:ID_WWN=0x5000c500a1b2c3d4\nE:ID_EMPTY=\nE:=nokey\nE:NOEQUALS\nG:systemd\nQ:systemd\nV:1\n";
        let e = parse_udev_db(text);
        assert_eq!(e.get("ID_SERIAL_SHORT"), Some("ZC1234AB"));
        assert_eq!(e.get("ID_WWN"), Some("0x5000c500a1b2c3d4"));
        assert_eq!(e.get("ID_EMPTY"), None);
        assert_eq!(e.properties.len(), 4);
        assert_eq!(
            e.links,
            [
                "disk/by-id/wwn-0x5000c500a1b2c3d4",
                "disk/by-path/pci-0000:00:1f.2-ata-1"
            ]
        );
    }

    #[test]
    fn values_may_contain_equals_signs() {
        let e = parse_udev_db("E:ID_PATH=pci-0000:00:1f.2-ata-1=x\n");
        assert_eq!(e.get("ID_PATH"), Some("pci-0000:00:1f.2-ata-1=x"));
    }

    #[test]
    fn garbage_is_ignored() {
        assert_eq!(
            parse_udev_db("\u{0}\u{ff}\n\nrandom\n"),
            UdevEntry::default()
        );
    }
}
