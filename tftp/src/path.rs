//! Maps a requested TFTP file name to a file inside the served directory, refusing
//! anything that could leave it (`..`, symlinks pointing out, devices, directories).

use std::path::{Component, Path, PathBuf};

/// Why a requested name is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("file name {0:?} tries to leave the TFTP root")]
    Traversal(String),
    #[error("file name {0:?} is empty or not a plain relative path")]
    Invalid(String),
    #[error("file {0:?} not found")]
    NotFound(String),
    #[error("{0:?} is not a regular file")]
    NotAFile(String),
}

/// Resolves `requested` under `root` (which must be canonical).
pub fn resolve(root: &Path, requested: &str) -> Result<PathBuf, PathError> {
    // Clients send "/pxelinux.0" or "pxelinux.0" alike; some firmware uses backslashes.
    let name = requested.replace('\\', "/");
    let rel = name.trim_start_matches('/');
    if rel.is_empty() || rel.contains('\0') {
        return Err(PathError::Invalid(requested.into()));
    }
    let mut path = root.to_path_buf();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => path.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(PathError::Traversal(requested.into())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(PathError::Invalid(requested.into()))
            }
        }
    }
    let real = path
        .canonicalize()
        .map_err(|_| PathError::NotFound(requested.into()))?;
    if !real.starts_with(root) {
        return Err(PathError::Traversal(requested.into()));
    }
    if !real.is_file() {
        return Err(PathError::NotAFile(requested.into()));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inside_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.efi"), b"x").unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        let root = root.canonicalize().unwrap();

        assert_eq!(resolve(&root, "sub/a.efi").unwrap(), root.join("sub/a.efi"));
        assert_eq!(
            resolve(&root, "/sub/a.efi").unwrap(),
            root.join("sub/a.efi")
        );
        assert_eq!(
            resolve(&root, "sub\\a.efi").unwrap(),
            root.join("sub/a.efi")
        );
        for bad in [
            "../secret",
            "sub/../../secret",
            "..",
            "/../secret",
            "..\\secret",
        ] {
            assert_eq!(
                resolve(&root, bad),
                Err(PathError::Traversal(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            resolve(&root, "link"),
            Err(PathError::Traversal("link".into()))
        );
        assert_eq!(
            resolve(&root, "sub"),
            Err(PathError::NotAFile("sub".into()))
        );
        assert_eq!(
            resolve(&root, "nope"),
            Err(PathError::NotFound("nope".into()))
        );
        assert_eq!(resolve(&root, "/"), Err(PathError::Invalid("/".into())));
        assert_eq!(resolve(&root, ""), Err(PathError::Invalid("".into())));
    }
}
