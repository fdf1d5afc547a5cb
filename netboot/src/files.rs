//! The files behind the conductor's `/boot/` URL: one script per port MAC
//! (`<aa-bb-…>.ipxe`), the deploy kernel and ramdisk staged per node (`<uuid>/deploy_kernel`)
//! and a node's virtual-media boot ISO (`<uuid>/boot.iso`), written when a step needs them and
//! removed on cleanup. Every request path is checked:
//! nothing outside the root is ever served. A local deploy kernel/ramdisk is staged only
//! from the configured source directories, never from a system directory, and only when
//! it is world-readable (Ironic's OSSA-2025-001: otherwise anyone who may set driver_info
//! could have the conductor serve any file it can read, without authentication).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::ipxe::{self, ScriptError};
use crate::mac::Mac;

/// The names a node's staged files may have.
pub const STAGED_NAMES: [&str; 2] = ["deploy_kernel", "deploy_ramdisk"];

/// The name of a node's virtual-media boot ISO (`/boot/<uuid>/boot.iso`).
pub const ISO_NAME: &str = "boot.iso";

/// Directories no deploy kernel or ramdisk is ever taken from, whatever is configured
/// (the list Ironic refuses since OSSA-2025-001).
pub const SYSTEM_DIRS: [&str; 6] = ["/dev", "/sys", "/proc", "/boot", "/run", "/etc"];

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("boot file directory {path:?} is not usable")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path:?}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0:?} is not a node UUID")]
    BadNode(String),
    #[error(
        "{name} source {source_ref:?} is neither an http(s) URL nor a readable local file \
         (file:///path or /path); fix the node's driver_info"
    )]
    BadSource { name: String, source_ref: String },
    #[error(
        "{name} source {path:?} is outside the directories local boot files may come from \
         ({allowed}); put the file there, use an http(s) URL, or add its directory to \
         --file-url-allowed-paths"
    )]
    NotAllowed {
        name: String,
        path: PathBuf,
        allowed: String,
    },
    #[error("{name} source {path:?} is under the system directory {dir}, which is never served")]
    SystemPath {
        name: String,
        path: PathBuf,
        dir: &'static str,
    },
    #[error(
        "{name} source {path:?} is not readable by everyone (mode {mode:o}): private files \
         (databases, keys) are never served; chmod o+r it if it really is a boot file"
    )]
    Private {
        name: String,
        path: PathBuf,
        mode: u32,
    },
    #[error("{path:?} cannot be a directory of local boot files: {why}")]
    BadAllowedDir { path: PathBuf, why: String },
    #[error(transparent)]
    Script(#[from] ScriptError),
}

/// What to answer for a request under `/boot/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// A file inside the root.
    File(PathBuf),
    /// A generated script (the chain script, or the "not managed" answer).
    Script(String),
    NotFound,
    /// The path tried to leave the root or is malformed: answer 400/403, never a file.
    Refused(String),
}

#[derive(Debug, Clone)]
pub struct BootFiles {
    root: PathBuf,
    base_url: String,
    /// Canonical directories a local deploy kernel/ramdisk may be staged from.
    local_dirs: Vec<PathBuf>,
}

/// The system directory `path` (canonical) is in, if any.
fn system_dir(path: &Path) -> Option<&'static str> {
    SYSTEM_DIRS.into_iter().find(|d| path.starts_with(d))
}

fn valid_uuid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

impl BootFiles {
    /// `root` is created if missing; `base_url` is the conductor as servers reach it (the
    /// chain script fetches `{base_url}/boot/<mac>.ipxe`).
    pub fn new(root: impl Into<PathBuf>, base_url: &str) -> Result<BootFiles, FilesError> {
        let path = root.into();
        let err = |source| FilesError::Root {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&path).map_err(err)?;
        let root = path.canonicalize().map_err(err)?;
        Ok(BootFiles {
            root,
            base_url: base_url.trim_end_matches('/').to_string(),
            local_dirs: Vec::new(),
        })
    }

    /// Sets the directories local deploy kernels and ramdisks may come from (none by
    /// default: only http(s) URLs). Each must exist; `/` and system directories are
    /// refused.
    pub fn with_local_dirs(mut self, dirs: &[PathBuf]) -> Result<BootFiles, FilesError> {
        let mut out = Vec::new();
        for d in dirs {
            let bad = |why: String| FilesError::BadAllowedDir {
                path: d.clone(),
                why,
            };
            let real = d
                .canonicalize()
                .map_err(|e| bad(format!("it cannot be resolved ({e})")))?;
            if !real.is_dir() {
                return Err(bad("it is not a directory".into()));
            }
            if real == Path::new("/") {
                return Err(bad("the whole file system would be served".into()));
            }
            if let Some(sys) = system_dir(&real) {
                return Err(bad(format!("{sys} is a system directory")));
            }
            if SYSTEM_DIRS.iter().any(|s| Path::new(s).starts_with(&real)) {
                return Err(bad("it contains system directories".into()));
            }
            out.push(real);
        }
        self.local_dirs = out;
        Ok(self)
    }

    /// The directories local boot files may come from.
    pub fn local_dirs(&self) -> &[PathBuf] {
        &self.local_dirs
    }

    /// Checks a local source: inside a configured directory (after resolving symlinks),
    /// outside system directories and the boot root, a regular world-readable file.
    fn check_local(&self, name: &str, source: &str) -> Result<PathBuf, FilesError> {
        let bad = || FilesError::BadSource {
            name: name.into(),
            source_ref: source.into(),
        };
        let local = Path::new(source.strip_prefix("file://").unwrap_or(source));
        if !local.is_absolute() {
            return Err(bad());
        }
        let real = local.canonicalize().map_err(|_| bad())?;
        if let Some(dir) = system_dir(&real) {
            return Err(FilesError::SystemPath {
                name: name.into(),
                path: real,
                dir,
            });
        }
        if real.starts_with(&self.root) || !self.local_dirs.iter().any(|d| real.starts_with(d)) {
            let allowed = if self.local_dirs.is_empty() {
                "none configured".to_string()
            } else {
                self.local_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(FilesError::NotAllowed {
                name: name.into(),
                path: real,
                allowed,
            });
        }
        let meta = std::fs::metadata(&real).map_err(|_| bad())?;
        if !meta.is_file() {
            return Err(bad());
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o004 == 0 {
            return Err(FilesError::Private {
                name: name.into(),
                path: real,
                mode,
            });
        }
        Ok(real)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The URL of a path under `/boot/`.
    pub fn url(&self, rel: &str) -> String {
        format!("{}/boot/{rel}", self.base_url)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), FilesError> {
        let err = |source| FilesError::Write {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }

    /// Installs `script` as the boot script of every MAC in `macs`.
    pub fn write_node_script(&self, macs: &[Mac], script: &str) -> Result<(), FilesError> {
        for mac in macs {
            let path = self.root.join(format!("{}.ipxe", mac.hexhyp()));
            self.write_atomic(&path, script.as_bytes())?;
        }
        Ok(())
    }

    /// Removes the boot scripts of `macs` (missing ones are fine).
    pub fn remove_node_scripts(&self, macs: &[Mac]) {
        for mac in macs {
            let _ = std::fs::remove_file(self.root.join(format!("{}.ipxe", mac.hexhyp())));
        }
    }

    /// The URL iPXE should fetch `name` (deploy_kernel/deploy_ramdisk) from: http(s)
    /// sources are used as they are (once [`ipxe::check_word`] passes them); a local file
    /// (`file:///p` or `/p`) that [`BootFiles::with_local_dirs`] allows is staged under the
    /// node's directory (hard link, or copy across file systems) and served by us.
    pub fn deploy_url(
        &self,
        node_uuid: &str,
        name: &str,
        source: &str,
    ) -> Result<String, FilesError> {
        if source.starts_with("http://") || source.starts_with("https://") {
            ipxe::check_word(&format!("{name} URL"), source)?;
            return Ok(source.to_string());
        }
        self.stage_local(node_uuid, name, source)?;
        Ok(self.url(&format!("{node_uuid}/{name}")))
    }

    /// Where the node's file `name` (one of [`STAGED_NAMES`] or [`ISO_NAME`]) lives, with
    /// the node's directory created.
    pub fn node_path(&self, node_uuid: &str, name: &str) -> Result<PathBuf, FilesError> {
        if !valid_uuid(node_uuid) {
            return Err(FilesError::BadNode(node_uuid.into()));
        }
        if !STAGED_NAMES.contains(&name) && name != ISO_NAME {
            return Err(FilesError::BadSource {
                name: name.into(),
                source_ref: String::new(),
            });
        }
        let dir = self.root.join(node_uuid);
        std::fs::create_dir_all(&dir).map_err(|source| FilesError::Write {
            path: dir.clone(),
            source,
        })?;
        Ok(dir.join(name))
    }

    /// Stages a local `source` (`file:///p` or `/p`, which [`BootFiles::with_local_dirs`]
    /// allows) as the node's file `name` (deploy_kernel/deploy_ramdisk): a hard link, or a
    /// copy across file systems. Returns the staged path.
    pub fn stage_local(
        &self,
        node_uuid: &str,
        name: &str,
        source: &str,
    ) -> Result<PathBuf, FilesError> {
        if !valid_uuid(node_uuid) {
            return Err(FilesError::BadNode(node_uuid.into()));
        }
        if !STAGED_NAMES.contains(&name) {
            return Err(FilesError::BadSource {
                name: name.into(),
                source_ref: source.into(),
            });
        }
        let local = self.check_local(name, source)?;
        let dest = self.node_path(node_uuid, name)?;
        let _ = std::fs::remove_file(&dest);
        if std::fs::hard_link(&local, &dest).is_err() {
            std::fs::copy(&local, &dest).map_err(|source| FilesError::Write {
                path: dest.clone(),
                source,
            })?;
        }
        Ok(dest)
    }

    /// Removes one file of a node (missing is fine).
    pub fn remove_node_file(&self, node_uuid: &str, name: &str) {
        if valid_uuid(node_uuid) && (STAGED_NAMES.contains(&name) || name == ISO_NAME) {
            let _ = std::fs::remove_file(self.root.join(node_uuid).join(name));
        }
    }

    /// Removes everything staged for a node.
    pub fn remove_node_files(&self, node_uuid: &str) {
        if valid_uuid(node_uuid) {
            let _ = std::fs::remove_dir_all(self.root.join(node_uuid));
        }
    }

    /// Maps a request path (relative to `/boot/`, as the HTTP layer got it) to an answer.
    pub fn serve(&self, rel: &str) -> Served {
        let rel = rel.trim_start_matches('/');
        if rel.contains("..") || rel.contains('\\') || rel.contains('\0') {
            return Served::Refused(format!("{rel:?} tries to leave /boot/"));
        }
        if rel == "boot.ipxe" {
            return Served::Script(ipxe::chain_script(&self.base_url));
        }
        let parts: Vec<&str> = rel.split('/').collect();
        match parts.as_slice() {
            [file] if file.ends_with(".ipxe") => {
                let Ok(mac) = file.trim_end_matches(".ipxe").parse::<Mac>() else {
                    return Served::NotFound;
                };
                let path = self.root.join(format!("{}.ipxe", mac.hexhyp()));
                if path.is_file() {
                    Served::File(path)
                } else {
                    Served::Script(ipxe::not_managed_script(&mac))
                }
            }
            [node, name]
                if valid_uuid(node) && (STAGED_NAMES.contains(name) || *name == ISO_NAME) =>
            {
                let path = self.root.join(node).join(name);
                match path.canonicalize() {
                    Ok(real) if real.starts_with(&self.root) && real.is_file() => {
                        Served::File(real)
                    }
                    Ok(_) => Served::Refused(format!("{rel:?} is not a boot file")),
                    Err(_) => Served::NotFound,
                }
            }
            _ => Served::NotFound,
        }
    }
}
