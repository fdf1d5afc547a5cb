//! sushy-tools' `sushy-emulator` with its libvirt driver as the Redfish BMC of the domains
//! of a [`Libvirtd`]: power, boot device and mode, and virtual media (it downloads the
//! inserted image and attaches it to the domain as a CD from its storage pool). Basic auth
//! with a bcrypt htpasswd made by the venv's own `bcrypt`; Debian's python3-libvirt
//! bindings are put on its path alone, not the rest of dist-packages.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::libvirt::{stop_child, Libvirtd, PACKAGES_HINT, PYTHON_LIBVIRT_DIR};
use crate::vm::{free_tcp_port, OVMF_CODE, OVMF_VARS};
use crate::Error;

fn io(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io(what.to_string(), e)
}

/// sushy-emulator with the libvirt driver, as the BMC of every domain of a [`Libvirtd`];
/// killed on drop.
pub struct SushyLibvirt {
    child: Child,
    port: u16,
    log: PathBuf,
}

/// Where `cargo xtask deps` puts sushy-emulator (`FERRITE_SUSHY_EMULATOR` overrides).
pub fn sushy_program() -> PathBuf {
    std::env::var_os("FERRITE_SUSHY_EMULATOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/sushy-venv/bin/sushy-emulator")
        })
}

impl SushyLibvirt {
    /// Starts the emulator on a free loopback port with basic auth (`user`, `password`),
    /// its state and downloads under `dir`, inserted media uploaded to `pool`.
    pub fn start(
        daemon: &Libvirtd,
        dir: &Path,
        pool: &str,
        user: &str,
        password: &str,
    ) -> Result<SushyLibvirt, Error> {
        let program = sushy_program();
        if !program.exists() {
            return Err(Error::MissingInput {
                path: program,
                hint: "make the sushy-tools venv (`cargo xtask deps`)".into(),
            });
        }
        // Only the libvirt bindings from Debian's dist-packages, not everything in it.
        let pylib = dir.join("pylib");
        std::fs::create_dir_all(&pylib).map_err(io("creating pylib"))?;
        let mut found = false;
        for e in std::fs::read_dir(PYTHON_LIBVIRT_DIR)
            .map_err(io(PYTHON_LIBVIRT_DIR))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("libvirt") && (name.ends_with(".py") || name.ends_with(".so")) {
                found = true;
                let dst = pylib.join(&name);
                if !dst.exists() {
                    std::os::unix::fs::symlink(e.path(), &dst).map_err(io("linking libvirt"))?;
                }
            }
        }
        if !found {
            return Err(Error::MissingInput {
                path: PYTHON_LIBVIRT_DIR.into(),
                hint: PACKAGES_HINT.into(),
            });
        }
        // Basic auth: sushy-emulator takes bcrypt htpasswd lines only; its venv has bcrypt.
        let htpasswd = dir.join("htpasswd");
        let out = Command::new(program.with_file_name("python3"))
            .args([
                "-c",
                "import bcrypt,sys; print(sys.argv[1] + ':' + \
                 bcrypt.hashpw(sys.argv[2].encode(), bcrypt.gensalt(4)).decode())",
                user,
                password,
            ])
            .output()
            .map_err(io("hashing the BMC password with the venv's bcrypt"))?;
        if !out.status.success() {
            return Err(Error::Tool {
                tool: "python3 -c 'import bcrypt'".into(),
                why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        std::fs::write(&htpasswd, &out.stdout).map_err(io("writing htpasswd"))?;
        let auth = format!(
            "SUSHY_EMULATOR_AUTH_FILE = {:?}\n",
            htpasswd.display().to_string()
        );
        let port = free_tcp_port()?;
        let py = |p: &Path| format!("{:?}", p.display().to_string());
        let conf = format!(
            "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\nSUSHY_EMULATOR_LISTEN_PORT = {port}\n\
             SUSHY_EMULATOR_LIBVIRT_URI = {uri:?}\n\
             SUSHY_EMULATOR_STATE_DIR = {state}\n\
             SUSHY_EMULATOR_STORAGE_POOL = {pool:?}\n\
             SUSHY_EMULATOR_BOOT_LOADER_MAP = {{'UEFI': {{'x86_64': {code:?}}}, 'Legacy': {{'x86_64': None}}}}\n\
             SUSHY_EMULATOR_SECURE_BOOT_DISABLED_NVRAM = {vars:?}\n{auth}",
            uri = daemon.uri(),
            state = py(&dir.join("state")),
            code = OVMF_CODE,
            vars = OVMF_VARS,
        );
        let conf_path = dir.join("sushy.conf");
        std::fs::write(&conf_path, conf).map_err(io("writing sushy.conf"))?;
        let log = dir.join("sushy.log");
        let f = std::fs::File::create(&log).map_err(io("creating sushy.log"))?;
        let child = Command::new(&program)
            .arg("--config")
            .arg(&conf_path)
            .env("PYTHONPATH", &pylib)
            // Inserted images are downloaded to the temporary directory first.
            .env("TMPDIR", dir)
            .env_remove("SUSHY_EMULATOR_CONFIG")
            .stdin(Stdio::null())
            .stdout(f.try_clone().map_err(io("sushy.log"))?)
            .stderr(f)
            .spawn()
            .map_err(|e| Error::Tool {
                tool: program.display().to_string(),
                why: format!("cannot start: {e}"),
            })?;
        let mut s = SushyLibvirt { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = s.child.try_wait() {
                return Err(Error::Tool {
                    tool: "sushy-emulator".into(),
                    why: format!("exited at start ({status}):\n{}", s.log_tail(20)),
                });
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(Error::Tool {
                    tool: "sushy-emulator".into(),
                    why: format!("no answer on port {port} in 30 s:\n{}", s.log_tail(20)),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_tail(&self, n: usize) -> String {
        crate::console::tail_lines(&std::fs::read_to_string(&self.log).unwrap_or_default(), n)
    }
}

impl Drop for SushyLibvirt {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
    }
}

/// Standard base64 with padding (for a Basic auth header).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(
            super::base64(b"admin:ferrite-bmc"),
            "YWRtaW46ZmVycml0ZS1ibWM="
        );
    }
}
