//! `ferrite conductor`: one config struct for flags and file, and the server that takes
//! its listener and a shutdown future (STYLE.md §8).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::api::{self, AppState, Htpasswd};
use crate::db::Db;
use crate::drivers::ipxe::IpxeSettings;
use crate::engine::{Conductor, EngineConfig};
use ferrite_netboot::BootFiles;

/// Conductor settings; keys of the `--config` file (JSON) equal the long flags.
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConductorConfig {
    /// Address to serve the API on [default: 127.0.0.1:6385].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Directory for the SQLite database and other state [default: ./ferrite-state].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// JSON file with these settings; flags override it.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// `postgres://user@host:port/db` to use PostgreSQL instead of SQLite.
    #[arg(long, env = "FERRITE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// htpasswd file (bcrypt) enabling HTTP basic auth; required off loopback.
    #[arg(long)]
    pub htpasswd: Option<PathBuf>,
    /// This conductor's name in `reservation` and `/v1/conductors` [default: hostname].
    #[arg(long)]
    pub host: Option<String>,
    /// Base URL written into links [default: from the Host header].
    #[arg(long)]
    pub public_url: Option<String>,
    /// Seconds a waiting node may go without agent heartbeat [default: 1800].
    #[arg(long)]
    pub callback_timeout: Option<f64>,
    /// Seconds inspection may wait for the agent's data [default: 1800].
    #[arg(long)]
    pub inspect_timeout: Option<f64>,
    /// Seconds a node may stay in `rescue wait` before the rescue fails [default: 1800].
    #[arg(long)]
    pub rescue_callback_timeout: Option<f64>,
    /// Seconds one asynchronous agent step may run [default: 3600].
    #[arg(long)]
    pub step_timeout: Option<f64>,
    /// Seconds between timeout checks [default: 10].
    #[arg(long)]
    pub periodic_interval: Option<f64>,
    /// Seconds the agent is told to heartbeat within [default: 300].
    #[arg(long)]
    pub heartbeat_timeout: Option<u64>,
    /// Fast track (Ironic's [deploy]fast_track): the agent booted for inspection or
    /// cleaning keeps running, and the next cleaning or deploy uses it without a power
    /// cycle; a node's driver_info.fast_track overrides it [default: false].
    #[arg(long, value_name = "BOOL")]
    pub fast_track: Option<bool>,
    /// Seconds since the agent's last heartbeat within which fast track uses it
    /// (Ironic's [deploy]fast_track_timeout) [default: 300].
    #[arg(long, value_name = "SECONDS")]
    pub fast_track_timeout: Option<f64>,
    /// The conductor's URL as servers being deployed reach it: iPXE fetches `/boot/` from
    /// it and the agent gets it as `ipa-api-url` [default: http://LISTEN].
    #[arg(long)]
    pub boot_url: Option<String>,
    /// The conductor's URL as BMCs reach it: `redfish-virtual-media` inserts
    /// `URL/boot/<uuid>/boot.iso` (Ironic's external_http_url) [default: --boot-url].
    #[arg(long)]
    pub external_http_url: Option<String>,
    /// Kernel parameters for every deploy ramdisk, space-separated (e.g. "console=ttyS0");
    /// a node's `driver_info.kernel_append_params` is added after them.
    #[arg(long)]
    pub kernel_params: Option<String>,
    /// Directories a node's local `deploy_kernel`/`deploy_ramdisk` may come from,
    /// comma-separated (Ironic's `file_url_allowed_paths`) [default: the state dir].
    /// /etc, /proc, /sys, /dev, /boot and /run are always refused, and so is any file not
    /// readable by everyone.
    #[arg(long, value_delimiter = ',')]
    pub file_url_allowed_paths: Option<Vec<PathBuf>>,
    /// Which NICs of inspection data get a port: pxe (the one the node booted from),
    /// active (those with an IP address), all, or disabled [default: pxe].
    #[arg(long, value_enum)]
    pub inspect_add_ports: Option<crate::engine::AddPorts>,
    /// dnsmasq `dhcp-hostsfile` to keep listing the MACs of PXE-enabled ports.
    #[arg(long)]
    pub dhcp_hostsfile: Option<PathBuf>,
    /// Seconds between power state reads of every node's BMC; 0 turns it off [default: 60].
    #[arg(long)]
    pub power_sync_interval: Option<f64>,
    /// Serve TFTP (read-only) on this address, to chainload iPXE on PXE-only firmware.
    #[arg(long)]
    pub tftp_listen: Option<SocketAddr>,
    /// Directory served over TFTP [default: <state-dir>/tftp, stocked with undionly.kpxe
    /// and ipxe.efi from Debian's ipxe package when it is installed].
    #[arg(long)]
    pub tftp_root: Option<PathBuf>,
    /// Power a node off when its deploy fails (Ironic's power_off_after_deploy_failure)
    /// [default: true].
    #[arg(long, value_name = "BOOL")]
    pub power_off_after_deploy_failure: Option<bool>,
    /// Power a node off when its cleaning fails [default: true].
    #[arg(long, value_name = "BOOL")]
    pub power_off_after_clean_failure: Option<bool>,
    /// Priority of the full disk erase (erase_devices) in automated cleaning for nodes whose
    /// driver_info.erase_devices_priority does not say; 0 turns it off [default: the
    /// agent's, 10, as Ironic]. Metadata is always erased.
    #[arg(long, value_name = "PRIORITY")]
    pub erase_devices_priority: Option<u16>,
    /// PEM certificate chain (leaf first) to serve the API over HTTPS; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, RSA or EC).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Refuse agents whose heartbeat names a callback_url without https:// (Ironic's
    /// [agent]require_tls), and refuse to serve the API off loopback without
    /// --tls-cert/--tls-key, so tokens never cross the network in clear [default: false].
    #[arg(long, value_name = "BOOL")]
    pub require_tls: Option<bool>,
    /// Accept MD5 image checksums (Ironic's `[agent]allow_md5_checksum`); a deploy whose
    /// image_os_hash_algo is md5, or whose image_checksum is a 32-digit value, is refused
    /// otherwise [default: false].
    #[arg(long, value_name = "BOOL")]
    pub allow_md5_checksum: Option<bool>,
    /// This conductor's group: it handles only nodes whose conductor_group is the same
    /// (Ironic's [conductor]conductor_group) [default: "", the nodes without a group].
    #[arg(long, value_name = "GROUP")]
    pub conductor_group: Option<String>,
    /// The URL the other conductors forward requests for this conductor's nodes to
    /// [default: http(s)://LISTEN, or --boot-url when listening on 0.0.0.0 or ::].
    #[arg(long, value_name = "URL")]
    pub internal_url: Option<String>,
    /// Seconds between this conductor's heartbeats in the conductors table [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub heartbeat_interval: Option<f64>,
    /// Seconds without a heartbeat after which a conductor is dead and the others take its
    /// nodes over [default: 60].
    #[arg(long, value_name = "SECONDS")]
    pub dead_after: Option<f64>,
    /// 2^N points per conductor on the hash ring (Ironic's hash_partition_exponent, whose
    /// default is 5) [default: 7].
    #[arg(long, value_name = "N")]
    pub hash_partition_exponent: Option<u32>,
    /// Record every node's step timeline (states, steps, power actions with durations),
    /// served at /v1/nodes/{node}/timeline; false only to measure its cost [default: true].
    #[arg(long, value_name = "BOOL")]
    pub timeline: Option<bool>,
    /// Record Prometheus metrics served at /metrics (transitions, step durations, BMC
    /// latency, heartbeats, API latency); false only to measure their cost [default: true].
    #[arg(long, value_name = "BOOL")]
    pub metrics: Option<bool>,
    /// Log line format on standard error: text, or json (one object a line, with the
    /// request id and node of the request or work it belongs to) [default: text].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// When to keep the agent's logs (Ironic's deploy_logs_collect): on_failure (a deploy,
    /// cleaning or inspection failed while the agent ran), always (also after good deploys
    /// and cleanings), or never [default: on_failure].
    #[arg(long, value_enum)]
    pub deploy_logs_collect: Option<crate::engine::deploy_logs::Collect>,
    /// Directory of the kept agent logs, one subdirectory per node
    /// [default: <state-dir>/deploy-logs].
    #[arg(long)]
    pub deploy_logs_dir: Option<PathBuf>,
    /// MiB the deploy logs directory may hold; the oldest archives go first (each node also
    /// keeps only its newest 5) [default: 1024].
    #[arg(long, value_name = "MIB")]
    pub deploy_logs_max_mb: Option<u64>,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl ConductorConfig {
    /// Reads `--config` (if any) and lays the flags over it.
    pub fn resolve(self) -> anyhow::Result<ConductorConfig> {
        let Some(path) = &self.config else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let file: ConductorConfig = serde_json::from_str(&text).with_context(|| {
            format!(
                "parsing config file {} (JSON; keys are the long flags)",
                path.display()
            )
        })?;
        macro_rules! over {
            ($($f:ident),*) => { ConductorConfig { $($f: self.$f.clone().or(file.$f.clone()),)* } };
        }
        Ok(over!(
            listen,
            state_dir,
            config,
            database_url,
            htpasswd,
            host,
            public_url,
            callback_timeout,
            inspect_timeout,
            rescue_callback_timeout,
            step_timeout,
            periodic_interval,
            heartbeat_timeout,
            fast_track,
            fast_track_timeout,
            boot_url,
            external_http_url,
            kernel_params,
            file_url_allowed_paths,
            inspect_add_ports,
            dhcp_hostsfile,
            power_sync_interval,
            tftp_listen,
            tftp_root,
            power_off_after_deploy_failure,
            power_off_after_clean_failure,
            erase_devices_priority,
            tls_cert,
            tls_key,
            require_tls,
            allow_md5_checksum,
            conductor_group,
            internal_url,
            heartbeat_interval,
            dead_after,
            hash_partition_exponent,
            timeline,
            metrics,
            log_format,
            deploy_logs_collect,
            deploy_logs_dir,
            deploy_logs_max_mb
        ))
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 6385)))
    }

    fn engine(&self) -> EngineConfig {
        let d = EngineConfig::default();
        let secs = |v: Option<f64>, dflt: Duration| v.map(Duration::from_secs_f64).unwrap_or(dflt);
        EngineConfig {
            host: self.host.clone().unwrap_or_else(hostname),
            callback_timeout: secs(self.callback_timeout, d.callback_timeout),
            inspect_timeout: secs(self.inspect_timeout, d.inspect_timeout),
            rescue_callback_timeout: secs(self.rescue_callback_timeout, d.rescue_callback_timeout),
            step_timeout: secs(self.step_timeout, d.step_timeout),
            periodic_interval: secs(self.periodic_interval, d.periodic_interval),
            heartbeat_timeout: self.heartbeat_timeout.unwrap_or(d.heartbeat_timeout),
            fast_track: self.fast_track.unwrap_or(d.fast_track),
            fast_track_timeout: secs(self.fast_track_timeout, d.fast_track_timeout),
            agent_timeout: d.agent_timeout,
            power_sync_interval: match self.power_sync_interval {
                Some(s) if s <= 0.0 => None,
                Some(s) => Some(Duration::from_secs_f64(s)),
                None => d.power_sync_interval,
            },
            power_sync_workers: d.power_sync_workers,
            power_off_after_deploy_failure: self
                .power_off_after_deploy_failure
                .unwrap_or(d.power_off_after_deploy_failure),
            power_off_after_clean_failure: self
                .power_off_after_clean_failure
                .unwrap_or(d.power_off_after_clean_failure),
            inspect_add_ports: self.inspect_add_ports.unwrap_or(d.inspect_add_ports),
            erase_devices_priority: self.erase_devices_priority.map(i32::from),
            require_tls: self.require_tls.unwrap_or(d.require_tls),
            allow_md5_checksum: self.allow_md5_checksum.unwrap_or(d.allow_md5_checksum),
            conductor_group: self
                .conductor_group
                .clone()
                .unwrap_or_default()
                .to_ascii_lowercase(),
            api_url: self.internal_url.clone(),
            heartbeat_interval: secs(self.heartbeat_interval, d.heartbeat_interval),
            dead_after: secs(self.dead_after, d.dead_after),
            hash_partition_exponent: self
                .hash_partition_exponent
                .unwrap_or(d.hash_partition_exponent),
            timeline: self.timeline.unwrap_or(d.timeline),
            metrics: self.metrics.unwrap_or(d.metrics),
            deploy_logs: crate::engine::deploy_logs::DeployLogs {
                collect: self.deploy_logs_collect.unwrap_or_default(),
                dir: Some(
                    self.deploy_logs_dir
                        .clone()
                        .unwrap_or_else(|| self.state_dir().join("deploy-logs")),
                ),
                max_bytes: self
                    .deploy_logs_max_mb
                    .map(|m| m.saturating_mul(1 << 20))
                    .unwrap_or(d.deploy_logs.max_bytes),
                keep_per_node: d.deploy_logs.keep_per_node,
            },
        }
    }

    /// `--internal-url`, or the address this conductor serves on.
    fn internal_url(&self, local: SocketAddr, https: bool) -> String {
        if let Some(u) = &self.internal_url {
            return u.trim_end_matches('/').to_string();
        }
        let scheme = if https { "https" } else { "http" };
        match &self.boot_url {
            Some(b) if local.ip().is_unspecified() => b.trim_end_matches('/').to_string(),
            _ if local.ip().is_unspecified() => {
                format!("{scheme}://{}:{}", hostname(), local.port())
            }
            _ => format!("{scheme}://{local}"),
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("ferrite-state"))
    }

    /// The TFTP root: the given one as it is, or `<state-dir>/tftp` with iPXE's binaries.
    fn tftp_root(&self) -> anyhow::Result<PathBuf> {
        if let Some(root) = &self.tftp_root {
            return Ok(root.clone());
        }
        let root = self.state_dir().join("tftp");
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating the TFTP root {}", root.display()))?;
        for name in ["undionly.kpxe", "ipxe.efi", "snponly.efi"] {
            let src = std::path::Path::new("/usr/lib/ipxe").join(name);
            let dst = root.join(name);
            if src.is_file() && !dst.exists() {
                std::fs::copy(&src, &dst)
                    .with_context(|| format!("copying {} into the TFTP root", src.display()))?;
            }
        }
        Ok(root)
    }

    /// The `ipxe` boot interface's settings: boot files under `<state-dir>/boot`.
    fn ipxe(&self, local: SocketAddr, https: bool) -> anyhow::Result<IpxeSettings> {
        let scheme = if https { "https" } else { "http" };
        let api_url = self
            .boot_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{local}"))
            .trim_end_matches('/')
            .to_string();
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
            bail!("--boot-url {api_url:?} must be an http(s) URL");
        }
        ferrite_netboot::ipxe::check_word("--boot-url", &api_url)?;
        let media_url = match &self.external_http_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => api_url.clone(),
        };
        if !(media_url.starts_with("http://") || media_url.starts_with("https://")) {
            bail!("--external-http-url {media_url:?} must be an http(s) URL");
        }
        let dir = self.state_dir().join("boot");
        let local_dirs = match &self.file_url_allowed_paths {
            Some(dirs) => dirs.clone(),
            None => vec![self.state_dir()],
        };
        let files = BootFiles::new(&dir, &api_url)
            .with_context(|| format!("preparing the boot file directory {}", dir.display()))?
            .with_local_dirs(&local_dirs)
            .context("checking --file-url-allowed-paths")?;
        let kernel_params: Vec<String> = self
            .kernel_params
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(String::from)
            .collect();
        for p in &kernel_params {
            ferrite_netboot::ipxe::check_word("--kernel-params parameter", p)?;
        }
        Ok(IpxeSettings {
            files,
            api_url,
            media_url,
            kernel_params,
            dhcp_hostsfile: self.dhcp_hostsfile.clone(),
        })
    }

    /// The API's TLS configuration, when --tls-cert and --tls-key are given; refuses plain
    /// HTTP on a `local` address off loopback under --require-tls.
    pub fn tls_config(
        &self,
        local: SocketAddr,
    ) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
            (None, None) => None,
            _ => bail!("--tls-cert and --tls-key go together: pass both, or neither"),
        };
        if tls.is_none() && self.require_tls == Some(true) && !local.ip().is_loopback() {
            bail!(
                "--require-tls: refusing to serve plain HTTP on {local}, where agent tokens \
                 would cross the network in clear: pass --tls-cert and --tls-key"
            );
        }
        Ok(tls)
    }

    fn database_url(&self) -> anyhow::Result<String> {
        if let Some(u) = &self.database_url {
            if !(u.starts_with("postgres://")
                || u.starts_with("postgresql://")
                || u.starts_with("sqlite:"))
            {
                bail!("--database-url {u:?} is not supported: use postgres://… or sqlite://…");
            }
            return Ok(u.clone());
        }
        let dir = self.state_dir();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating state directory {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        Ok(format!("sqlite://{}", dir.join("ferrite.db").display()))
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Serves until `shutdown` resolves, then lets in-flight work finish (up to 30 s).
pub async fn run(
    listener: tokio::net::TcpListener,
    cfg: ConductorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener
        .local_addr()
        .context("reading the listener's address")?;
    let auth = match &cfg.htpasswd {
        Some(p) => Some(Htpasswd::load(p)?),
        None => None,
    };
    if auth.is_none() && !local.ip().is_loopback() {
        bail!(
            "refusing to serve without authentication on {local}: listen on 127.0.0.1 or pass \
             --htpasswd FILE (bcrypt, made with `htpasswd -B`)"
        );
    }
    let tls = cfg.tls_config(local)?;
    let url = cfg.database_url()?;
    let db = Db::open(&url).await.context("opening the database")?;
    let mut engine_cfg = cfg.engine();
    if engine_cfg.heartbeat_interval.is_zero()
        || engine_cfg.dead_after <= engine_cfg.heartbeat_interval
    {
        bail!(
            "--dead-after ({:?}) must be longer than --heartbeat-interval ({:?}), which must \
             not be 0: a live conductor would be taken for dead",
            engine_cfg.dead_after,
            engine_cfg.heartbeat_interval
        );
    }
    let group = &engine_cfg.conductor_group;
    if group.len() > 255
        || !group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        bail!("--conductor-group {group:?}: use letters, digits, '.', '_' and '-' (as a node's conductor_group)");
    }
    if engine_cfg.hash_partition_exponent > 16 {
        bail!("--hash-partition-exponent must be at most 16");
    }
    engine_cfg.api_url = Some(cfg.internal_url(local, tls.is_some()));
    let ipxe = Arc::new(cfg.ipxe(local, tls.is_some())?);
    let conductor =
        Conductor::new(db.clone(), engine_cfg, Some(ipxe)).context("creating the agent client")?;
    let taken = conductor
        .recover()
        .await
        .context("registering the conductor and taking its nodes")?;
    if taken.adopted > 0 || taken.broken > 0 {
        tracing::warn!(
            broken = taken.broken,
            adopted = taken.adopted,
            "took nodes over at start"
        );
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tftp = match cfg.tftp_listen {
        Some(addr) => {
            let root = cfg.tftp_root()?;
            let server = ferrite_tftp::Server::new(ferrite_tftp::ServerConfig::new(&root))
                .context("starting the TFTP server")?;
            let socket = tokio::net::UdpSocket::bind(addr)
                .await
                .with_context(|| format!("binding TFTP to {addr}"))?;
            tracing::info!(%addr, root = %root.display(), "serving TFTP");
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(async move {
                let r = server
                    .run(socket, async move {
                        let _ = stop.changed().await;
                    })
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "TFTP server stopped");
                }
            }))
        }
        None => None,
    };
    let periodic = tokio::spawn(conductor.clone().run_periodic(stop_rx));
    let state = Arc::new(AppState {
        engine: conductor.clone(),
        auth,
        public_url: cfg.public_url.clone(),
    });
    tracing::info!(%local, tls = tls.is_some(), "ferrite conductor serving");
    match tls {
        Some(tls) => {
            let listener = crate::tls::TlsListener::new(listener, tls);
            axum::serve(listener, api::router(state))
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, api::router(state))
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
    .context("serving the API")?;
    let _ = stop_tx.send(true);
    let _ = periodic.await;
    if let Some(t) = tftp {
        let _ = t.await;
    }
    conductor.drain(Duration::from_secs(30)).await;
    let _ = db.unregister_conductor(&conductor.cfg.host).await;
    db.close().await;
    Ok(())
}
