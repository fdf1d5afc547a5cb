//! `rescue.finalize_rescue` (IPA's `rescue` extension): gives the ramdisk a `rescue` user
//! with the password Ironic sends (a crypt(3) hash with `hashed: true`, else hashed here
//! with SHA-512 crypt), then stops heartbeating. The result is `null`, as IPA's.
//!
//! IPA writes the hash to a file the ramdisk's init applies once IPA exits, and stops its
//! API. Ferrite's ramdisk has no such init step, so the agent writes the user into the
//! ramdisk's `/etc/passwd` and `/etc/shadow` itself, and keeps its API up (still only for
//! the holder of the agent token). It does so only inside the ramdisk, or under an explicit
//! `rescue_root` (tests): never into the passwd files of a machine it merely runs on.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrite_proto::commands::{FinalizeRescueParams, FINALIZE_RESCUE};
use serde_json::Value;

use super::{blocking, CommandError, Mode, Registry};
use crate::state::AgentState;

/// The user Ironic's rescue documents (`ssh rescue@<node>`).
pub const RESCUE_USER: &str = "rescue";
/// Its passwd line: root's powers (the ramdisk has no sudo), root's home, a shell.
const PASSWD_LINE: &str = "rescue:x:0:0:Ironic rescue user:/root:/bin/sh";
/// The marker IPA leaves once rescued.
const MARKER: &str = "etc/.rescued";

pub fn register(r: &mut Registry) {
    r.register(FINALIZE_RESCUE, Mode::Sync, finalize_rescue);
}

async fn finalize_rescue(
    p: FinalizeRescueParams,
    state: Arc<AgentState>,
) -> Result<Value, CommandError> {
    let hash = if p.hashed {
        if !ferrite_proto::crypt::is_crypt_hash(&p.rescue_password) {
            return Err(CommandError::invalid_params(
                "rescue_password",
                "with hashed=true it must be a crypt(3) hash ($<id>$<salt>$<hash>)",
            ));
        }
        p.rescue_password
    } else {
        if p.rescue_password.trim().is_empty() {
            return Err(CommandError::invalid_params(
                "rescue_password",
                "must not be empty",
            ));
        }
        ferrite_proto::crypt::sha512_crypt(&p.rescue_password, &rand::random())
    };
    let root = rescue_root(&state)?;
    blocking("setting the rescue password", move || {
        write_rescue_user(&root, &hash)
            .map_err(|e| CommandError::failed("writing the rescue user's password", e))
    })
    .await?;
    tracing::info!(
        user = RESCUE_USER,
        "rescue password set; heartbeats stop, the API stays up"
    );
    state.finish_rescue();
    Ok(Value::Null)
}

/// Where the passwd files are: the configured root, else `/` inside the ramdisk only.
fn rescue_root(state: &AgentState) -> Result<PathBuf, CommandError> {
    if let Some(root) = &state.config.rescue_root {
        return Ok(root.clone());
    }
    if crate::disk::safety::RootFs::current().is_ramdisk() {
        return Ok(PathBuf::from("/"));
    }
    Err(CommandError::failed_msg(
        "refusing to set the rescue password: this agent is not running in the ramdisk (the \
         root filesystem is not the initramfs), and changing this machine's /etc/shadow is \
         not its business; run it from the Ferrite ramdisk",
    ))
}

/// Replaces (or adds) the rescue user in `root/etc/passwd` and `root/etc/shadow`; each
/// file is written whole and renamed over the old one.
pub fn write_rescue_user(root: &Path, hash: &str) -> std::io::Result<()> {
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc)?;
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0);
    replace_user(&etc.join("passwd"), PASSWD_LINE, 0o644)?;
    let shadow = format!("{RESCUE_USER}:{hash}:{days}:0:99999:7:::");
    replace_user(&etc.join("shadow"), &shadow, 0o600)?;
    std::fs::write(root.join(MARKER), b"")
}

fn replace_user(path: &Path, line: &str, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let old = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let prefix = format!("{RESCUE_USER}:");
    let mut text: String = old
        .lines()
        .filter(|l| !l.starts_with(&prefix))
        .flat_map(|l| [l, "\n"])
        .collect();
    text.push_str(line);
    text.push('\n');
    let tmp = path.with_extension("ferrite-new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{AgentConfig, RecordingHooks};
    use serde_json::json;

    fn state(rescue_root: Option<PathBuf>) -> Arc<AgentState> {
        Arc::new(AgentState::new(
            AgentConfig {
                rescue_root,
                ..AgentConfig::default()
            },
            Arc::new(RecordingHooks::new()),
        ))
    }

    async fn run(state: &Arc<AgentState>, params: Value) -> Result<Value, CommandError> {
        let started = super::super::execute(
            state.clone(),
            FINALIZE_RESCUE.into(),
            params.as_object().unwrap().clone(),
        )
        .await?;
        let r = started.snapshot();
        // IPA's names: the bare name on success, the full one on a failure.
        let want = if r.command_error.is_none() {
            "finalize_rescue"
        } else {
            FINALIZE_RESCUE
        };
        assert_eq!(r.command_name, want);
        // The password is never shown back.
        assert_eq!(r.command_params["rescue_password"], "******", "{r:?}");
        match r.command_error {
            None => Ok(r.command_result.unwrap_or(Value::Null)),
            Some(e) => Err(CommandError::failed_msg(e.to_string())),
        }
    }

    #[tokio::test]
    async fn a_hashed_password_lands_in_the_shadow_file_and_heartbeats_stop() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nrescue:x:1000:1000::/home/rescue:/bin/false\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/shadow"), "root:*:1::::::\n").unwrap();
        let s = state(Some(dir.path().to_path_buf()));
        assert!(!s.is_rescued());
        let hash = ferrite_proto::crypt::sha512_crypt("s3cret", &[7; 16]);
        let r = run(&s, json!({"rescue_password": hash, "hashed": true}))
            .await
            .unwrap();
        assert_eq!(r, Value::Null);
        assert!(s.is_rescued());
        let shadow = std::fs::read_to_string(dir.path().join("etc/shadow")).unwrap();
        assert!(shadow.starts_with("root:*:1::::::\n"), "{shadow}");
        assert!(shadow.contains(&format!("\nrescue:{hash}:")), "{shadow}");
        let passwd = std::fs::read_to_string(dir.path().join("etc/passwd")).unwrap();
        assert_eq!(passwd.matches("rescue:").count(), 1, "{passwd}");
        assert!(passwd.contains(PASSWD_LINE), "{passwd}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("etc/shadow"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(dir.path().join(MARKER).exists());
    }

    #[tokio::test]
    async fn a_clear_password_is_hashed_with_sha512_crypt() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(Some(dir.path().to_path_buf()));
        run(&s, json!({"rescue_password": "clear text"}))
            .await
            .unwrap();
        let shadow = std::fs::read_to_string(dir.path().join("etc/shadow")).unwrap();
        assert!(!shadow.contains("clear text"));
        let hash = shadow.split(':').nth(1).unwrap();
        assert!(hash.starts_with("$6$"), "{shadow}");
        // The same password with the stored salt gives the stored hash.
        assert_eq!(hash, sha_check(hash, "clear text"));
    }

    /// `password` hashed again with the salt of `hash` (the bytes whose alphabet
    /// positions spell it).
    fn sha_check(hash: &str, password: &str) -> String {
        const ALPHA: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let salt = hash.split('$').nth(2).unwrap();
        let mut bytes = [0u8; 16];
        for (b, c) in bytes.iter_mut().zip(salt.bytes()) {
            *b = ALPHA.iter().position(|a| *a == c).unwrap() as u8;
        }
        ferrite_proto::crypt::sha512_crypt(password, &bytes)
    }

    #[tokio::test]
    async fn bad_input_is_refused_and_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let s = state(Some(dir.path().to_path_buf()));
        for bad in [
            json!({"rescue_password": "", "hashed": false}),
            json!({"rescue_password": "not-a-hash", "hashed": true}),
            json!({"rescue_password": "$6$a:b", "hashed": true}),
            json!({"rescue_password": "x", "bogus": 1}),
        ] {
            let e = super::super::execute(
                s.clone(),
                FINALIZE_RESCUE.into(),
                bad.as_object().unwrap().clone(),
            )
            .await
            .unwrap_err();
            assert_eq!(e.status_code(), 400, "{bad}: {e}");
        }
        assert!(!dir.path().join("etc/shadow").exists());
        assert!(!s.is_rescued());
    }

    #[tokio::test]
    async fn outside_the_ramdisk_without_a_root_it_refuses() {
        if crate::disk::safety::RootFs::current().is_ramdisk() {
            eprintln!("skipped: these tests run inside an initramfs");
            return;
        }
        let s = state(None);
        let e = run(&s, json!({"rescue_password": "pw"})).await.unwrap_err();
        assert!(e.to_string().contains("not running in the ramdisk"), "{e}");
        assert!(!s.is_rescued());
    }
}
