//! Pinned Debian packages: fetched with `apt-get download`, checked against a recorded
//! sha256, unpacked with `dpkg-deb -x`, and cached so later builds work offline.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::Error;

/// A Debian package pinned to one version and the sha256 of its `.deb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedDeb {
    pub name: &'static str,
    pub version: &'static str,
    pub sha256: &'static str,
    pub component: Component,
}

/// Where apt finds a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The machine's own apt sources (Debian `main`).
    System,
    /// bookworm's `non-free-firmware`, through an apt configuration of our own under the
    /// cache (`<cache>/apt`), so the machine's sources stay as they are.
    NonFreeFirmware,
}

/// The source line of [`Component::NonFreeFirmware`].
pub const NON_FREE_FIRMWARE_SOURCE: &str =
    "deb http://deb.debian.org/debian bookworm non-free-firmware\n";

/// The kernel of the ramdisk and of the test image (bookworm point release 6.1.176).
pub const KERNEL: PinnedDeb = PinnedDeb {
    name: "linux-image-6.1.0-50-amd64",
    version: "6.1.176-1",
    sha256: "7b5597492a0a65aee61985a492e6bcc3f2cde830072a0e3b3d8c7e1b90279bd3",
    component: Component::System,
};

/// The kernel release (`uname -r`) of [`KERNEL`].
pub const KERNEL_RELEASE: &str = "6.1.0-50-amd64";

/// busybox for the ramdisk's shell, DHCP client and module loading.
pub const BUSYBOX: PinnedDeb = PinnedDeb {
    name: "busybox-static",
    version: "1:1.35.0-4+deb12u1+b1",
    sha256: "3d3fdbe91d4660c873e14b092c213fe81c1da6362daa236eb25d0171eb108744",
    component: Component::System,
};

/// Marks a completely unpacked package tree; holds the `.deb`'s sha256.
const STAMP: &str = ".ferrite-unpacked";

/// A name no other build running now uses: process id and a counter.
fn unique(name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

impl PinnedDeb {
    fn file_stem(&self) -> String {
        // apt-get names files with the epoch's colon escaped.
        format!("{}_{}", self.name, self.version.replace(':', "%3a"))
    }

    /// Returns the path of the verified `.deb` in `cache`, downloading it if needed.
    pub fn fetch(&self, cache: &Path) -> Result<PathBuf, Error> {
        let debs = cache.join("debs");
        std::fs::create_dir_all(&debs)
            .map_err(|e| Error::Io(format!("creating {}", debs.display()), e))?;
        let deb = debs.join(format!("{}_amd64.deb", self.file_stem()));
        if let Ok(bytes) = std::fs::read(&deb) {
            if sha256_hex(&bytes) == self.sha256 {
                return Ok(deb);
            }
        }
        let partial = debs.join(format!(".partial-{}", unique(self.name)));
        std::fs::create_dir_all(&partial)
            .map_err(|e| Error::Io(format!("creating {}", partial.display()), e))?;
        let spec = format!("{}={}", self.name, self.version);
        let apt_options = self.apt_options(cache)?;
        let download = || {
            Command::new("apt-get")
                .args(&apt_options)
                .args(["download", "-q", &spec])
                .current_dir(&partial)
                .output()
                .map_err(|e| Error::Tool {
                    tool: "apt-get".into(),
                    why: format!("cannot start it ({e}); is this a Debian system?"),
                })
        };
        // Our apt configuration is shared by the builds of this process (tests run several
        // at once): one apt-get at a time on it.
        static OWN_APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _serial = (self.component != Component::System)
            .then(|| OWN_APT.lock().unwrap_or_else(|e| e.into_inner()));
        let mut out = download()?;
        if !out.status.success() && self.component != Component::System {
            // Our own apt configuration has no package lists yet, or stale ones.
            let update = Command::new("apt-get")
                .args(&apt_options)
                .args(["update", "-q"])
                .output()
                .map_err(|e| Error::Tool {
                    tool: "apt-get".into(),
                    why: format!("cannot start it ({e}); is this a Debian system?"),
                })?;
            if !update.status.success() {
                return Err(Error::Download {
                    package: spec,
                    output: tail(&update.stderr),
                });
            }
            out = download()?;
        }
        if !out.status.success() {
            return Err(Error::Download {
                package: spec,
                output: tail(&out.stderr),
            });
        }
        let got = std::fs::read_dir(&partial)
            .map_err(|e| Error::Io(format!("listing {}", partial.display()), e))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or_else(|| Error::Download {
                package: spec.clone(),
                output: "apt-get succeeded but left no .deb file".into(),
            })?;
        let bytes =
            std::fs::read(&got).map_err(|e| Error::Io(format!("reading {}", got.display()), e))?;
        let actual = sha256_hex(&bytes);
        if actual != self.sha256 {
            return Err(Error::Checksum {
                package: spec,
                expected: self.sha256.into(),
                actual,
            });
        }
        // Concurrent builds may both download: the rename is atomic and the bytes equal.
        let moved = std::fs::rename(&got, &deb);
        let _ = std::fs::remove_dir_all(&partial);
        moved.map_err(|e| Error::Io(format!("moving {} into place", deb.display()), e))?;
        Ok(deb)
    }

    /// `-o` options that point apt at the package's component: none for the system's own
    /// sources, else a sources list, package lists and cache of our own under `cache/apt`.
    fn apt_options(&self, cache: &Path) -> Result<Vec<String>, Error> {
        if self.component == Component::System {
            return Ok(vec![]);
        }
        let apt = cache.join("apt");
        for d in ["lists/partial", "cache/archives/partial", "sources.list.d"] {
            let d = apt.join(d);
            std::fs::create_dir_all(&d)
                .map_err(|e| Error::Io(format!("creating {}", d.display()), e))?;
        }
        let sources = apt.join("sources.list");
        std::fs::write(&sources, NON_FREE_FIRMWARE_SOURCE)
            .map_err(|e| Error::Io(format!("writing {}", sources.display()), e))?;
        let opt = |k: &str, v: &Path| vec!["-o".to_string(), format!("{k}={}", v.display())];
        Ok([
            opt("Dir::Etc::SourceList", &sources),
            opt("Dir::Etc::SourceParts", &apt.join("sources.list.d")),
            opt("Dir::State::Lists", &apt.join("lists")),
            opt("Dir::Cache", &apt.join("cache")),
        ]
        .concat())
    }

    /// Fetches and unpacks the package; returns the directory holding its files.
    pub fn unpack(&self, cache: &Path) -> Result<PathBuf, Error> {
        let deb = self.fetch(cache)?;
        let unpacked = cache.join("unpacked");
        let dir = unpacked.join(self.file_stem());
        let complete =
            |d: &Path| std::fs::read_to_string(d.join(STAMP)).ok().as_deref() == Some(self.sha256);
        if complete(&dir) {
            return Ok(dir);
        }
        // Unpack beside the final place and rename it in, so concurrent builds never see
        // half a tree.
        let tmp = unpacked.join(format!(".tmp-{}", unique(self.name)));
        std::fs::create_dir_all(&tmp)
            .map_err(|e| Error::Io(format!("creating {}", tmp.display()), e))?;
        let result = self.unpack_into(&deb, &tmp);
        let result = result.and_then(|_| {
            if std::fs::rename(&tmp, &dir).is_ok() || complete(&dir) {
                return Ok(());
            }
            // A stale, incomplete tree from an interrupted build: replace it.
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&tmp, &dir)
                .map_err(|e| Error::Io(format!("moving {} into place", dir.display()), e))
        });
        let _ = std::fs::remove_dir_all(&tmp);
        result.map(|_| dir)
    }

    fn unpack_into(&self, deb: &Path, dir: &Path) -> Result<(), Error> {
        let out = Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(dir)
            .output()
            .map_err(|e| Error::Tool {
                tool: "dpkg-deb".into(),
                why: format!("cannot start it ({e}); install dpkg"),
            })?;
        if !out.status.success() {
            return Err(Error::Tool {
                tool: "dpkg-deb".into(),
                why: format!("unpacking {} failed: {}", deb.display(), tail(&out.stderr)),
            });
        }
        let stamp = dir.join(STAMP);
        std::fs::write(&stamp, self.sha256)
            .map_err(|e| Error::Io(format!("writing {}", stamp.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_match_apt_get() {
        assert_eq!(
            BUSYBOX.file_stem(),
            "busybox-static_1%3a1.35.0-4+deb12u1+b1"
        );
    }

    #[test]
    fn a_version_the_mirror_lacks_is_a_clear_error() {
        let cache = tempfile::tempdir().unwrap();
        let pin = PinnedDeb {
            name: "busybox-static",
            version: "0.0-ferrite-no-such-version",
            sha256: "00",
            component: Component::System,
        };
        let e = pin.fetch(cache.path()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("busybox-static=0.0-ferrite-no-such-version"),
            "{msg}"
        );
        assert!(msg.contains("apt-get update"), "{msg}");
    }
}
