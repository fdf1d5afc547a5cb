//! The dnsmasq `dhcp-hostsfile` the conductor keeps for known ports: each enrolled MAC gets
//! the `ferrite` tag, which the dnsmasq configuration (see the README) answers with iPXE.
//! dnsmasq re-reads the file on SIGHUP.

use std::io::Write;
use std::path::Path;

use crate::mac::Mac;

/// The tag the hosts file sets on known MACs.
pub const TAG: &str = "ferrite";

/// One `MAC,set:ferrite` line per MAC, sorted and de-duplicated (stable output).
pub fn hostsfile(macs: &[Mac]) -> String {
    let mut macs = macs.to_vec();
    macs.sort();
    macs.dedup();
    let mut out = String::from("# Written by Ferrite: known ports boot iPXE from the conductor.\n");
    for m in macs {
        out.push_str(&format!("{m},set:{TAG}\n"));
    }
    out
}

/// Replaces `path` atomically with [`hostsfile`]'s text.
pub fn write_hostsfile(path: &Path, macs: &[Mac]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(hostsfile(macs).as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_unique_lines() {
        let a: Mac = "52:54:00:00:00:02".parse().unwrap();
        let b: Mac = "52:54:00:00:00:01".parse().unwrap();
        assert_eq!(
            hostsfile(&[a, b, a]),
            "# Written by Ferrite: known ports boot iPXE from the conductor.\n\
             52:54:00:00:00:01,set:ferrite\n52:54:00:00:00:02,set:ferrite\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts");
        write_hostsfile(&p, &[a]).unwrap();
        assert!(std::fs::read_to_string(&p)
            .unwrap()
            .contains("52:54:00:00:00:02,set:ferrite"));
    }
}
