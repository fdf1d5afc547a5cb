//! The ramdisk agent (`ferrite-agent` with no subcommand): kernel command line → inventory
//! → inspection post → lookup until it hands out a token → agent API (automatic TLS) →
//! heartbeat until stopped. The API is never served to anyone before the agent holds a
//! token. `--standalone` talks to no conductor and needs a pre-shared `ipa-agent-token`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::{bail, Context};
use ferrite_proto::inventory::Inventory;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cmdline::{self, KernelParams, Protocol};
use crate::heartbeat::callback::{advertise_host, callback_url};
use crate::heartbeat::heartbeat::{absorb_token, HeartbeatTiming, Heartbeater};
use crate::heartbeat::inspect::{post_inventory, InspectTiming};
use crate::heartbeat::lookup::{lookup_until_token, LookupTiming};
use crate::heartbeat::token::TokenStore;
use crate::heartbeat::{AgentLink, ConductorClient, FALLBACK_API_VERSION, VERIFY_CA_API_VERSION};
use crate::state::{AgentConfig, AgentState, RealSystemHooks, MIN_TOKEN_LEN};
use crate::system::SystemHooks;

/// Flags of the ramdisk agent run mode.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunConfig {
    /// Kernel command line to use instead of /proc/cmdline: a file that holds it, or the
    /// line itself.
    #[arg(long, value_name = "FILE|LINE")]
    pub cmdline: Option<String>,
    /// Root of the sysfs/procfs/dev tree the inventory reads (a fixture in tests).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Address the API listens on; overrides ipa-listen-host/ipa-listen-port.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Serve the API only: no inspection, lookup or heartbeat.
    #[arg(long)]
    pub standalone: bool,
    /// Where `rescue.finalize_rescue` writes etc/passwd and etc/shadow [default: / and
    /// only inside the ramdisk].
    #[arg(long, value_name = "DIR")]
    pub rescue_root: Option<PathBuf>,
}

impl AgentLink for AgentState {
    fn set_token(&self, token: &str) {
        if let Err(e) = self.set_agent_token(token) {
            tracing::warn!(error = %e, "the agent API kept its token");
        }
    }

    fn set_node(&self, node: &ferrite_proto::lookup::LookupNode) {
        match serde_json::to_value(node) {
            Ok(serde_json::Value::Object(map)) => self.cache_node(map),
            _ => tracing::warn!("the looked-up node is not a JSON object; not cached"),
        }
    }

    fn agent_status(&self) -> (Option<String>, Option<String>) {
        let p = self.progress();
        (p.agent_status, p.agent_status_message)
    }

    fn heartbeat_requested(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(AgentState::heartbeat_requested(self))
    }
}

/// Sets up logging once per process (`ipa-debug` → debug, else `RUST_LOG` or info).
fn init_logging(debug: bool) {
    let filter = if debug {
        tracing_subscriber::EnvFilter::new("debug")
    } else {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The MACs to look up by: the PXE MAC first, then every interface's.
pub fn lookup_macs(bootif: Option<&str>, inventory: Option<&Inventory>) -> Vec<String> {
    let mut macs: Vec<String> = bootif.map(str::to_string).into_iter().collect();
    for i in inventory.map(|inv| &inv.interfaces[..]).unwrap_or_default() {
        if let Some(mac) = &i.mac_address {
            let mac = mac.to_ascii_lowercase();
            if !macs.contains(&mac) {
                macs.push(mac);
            }
        }
    }
    macs
}

/// Runs the agent until `shutdown` resolves (or lookup gives up, which is an error, so
/// the ramdisk's init can restart us as IPA's does).
pub async fn run(
    config: RunConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    run_with_hooks(config, Arc::new(RealSystemHooks::detect()), shutdown).await
}

/// [`run`] with the machine-wide actions (power, reboot, network lockdown) injected, so
/// tests can run the whole agent without touching the host.
pub async fn run_with_hooks(
    config: RunConfig,
    hooks: Arc<dyn SystemHooks>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let line =
        cmdline::load(config.cmdline.as_deref()).context("reading the kernel command line")?;
    let params = cmdline::parse(&line)?;
    init_logging(params.debug);
    for w in &params.warnings {
        tracing::warn!("kernel command line: {w}");
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "starting ferrite-agent"
    );

    let root = config.root.clone();
    let lldp = params.collect_lldp.then_some(params.lldp_timeout);
    let inventory =
        match tokio::task::spawn_blocking(move || crate::inventory::collect_with(&root, lldp))
            .await?
        {
            Ok(inv) => Some(inv),
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "inventory failed; looking up by BOOTIF only"
                );
                None
            }
        };
    let macs = lookup_macs(params.bootif.as_deref(), inventory.as_ref());

    let mut client = match (&params.api_url, config.standalone) {
        (Some(url), false) => Some(
            ConductorClient::new(
                url.clone(),
                params.insecure,
                params.global_request_id.clone(),
            )
            .context("building the HTTP client")?,
        ),
        _ => None,
    };
    let mut version = FALLBACK_API_VERSION;
    if let Some(c) = &mut client {
        match c.negotiate_version().await {
            Ok(v) => version = v,
            Err(e) => tracing::warn!(error = %e, "version discovery failed; speaking 1.68"),
        }
    }

    let listen = config
        .listen
        .unwrap_or_else(|| SocketAddr::new(params.listen_host, params.listen_port));

    // Without a conductor there is nobody to call us back, so nothing to advertise or pin.
    let advertised = match &client {
        Some(_) => Some(advertise_host(&params, inventory.as_ref()).await?),
        None => None,
    };
    let tls = match &advertised {
        Some(host) if wants_tls(&params, version)? => Some(crate::tls::generate(host)?),
        _ => None,
    };
    let protocol = if tls.is_some() {
        Protocol::Https
    } else {
        Protocol::Http
    };

    let state = Arc::new(AgentState::new(
        AgentConfig {
            root: config.root.clone(),
            lldp,
            rescue_root: config.rescue_root.clone(),
            ..AgentConfig::default()
        },
        hooks,
    ));
    if let Some(token) = &params.agent_token {
        state.set_agent_token(token).context("ipa-agent-token")?;
    }
    if client.is_none() && state.agent_token().is_none() && config.standalone {
        bail!(
            "--standalone serves commands only to the holder of a pre-shared token: put \
             ipa-agent-token=<at least {MIN_TOKEN_LEN} characters> on the command line (--cmdline)"
        );
    }

    // Inspection and lookup come first: the API is not served until this agent holds a
    // token, so nobody on the network can command it in between (IPA serves after lookup).
    let mut tokens = TokenStore::new(params.agent_token.clone());
    let talk = async {
        let node_uuid = if config.standalone {
            None
        } else {
            inspect(
                &params,
                &config.root,
                inventory.as_ref(),
                &mut tokens,
                &*state,
            )
            .await
        };
        match &client {
            Some(client) => lookup_until_token(
                client,
                &macs,
                node_uuid.as_deref(),
                &lookup_timing(&params),
                &mut tokens,
                &*state,
            )
            .await
            .map(Some)
            .map_err(anyhow::Error::from),
            None => Ok(None),
        }
    };
    let found = tokio::select! {
        _ = shutdown_or_lockdown(&state, &mut shutdown) => return Ok(()),
        found = talk => found?,
    };
    if state.agent_token().is_none() {
        // Only reachable without a conductor (no ipa-api-url) and without a pre-shared
        // token: nothing can ever authorise a command, so serving would be pointless.
        tracing::error!(
            "no ipa-api-url and no ipa-agent-token: this agent can never hold a token, so it \
             does not serve its API"
        );
        shutdown_or_lockdown(&state, &mut shutdown).await;
        return Ok(());
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let listener = bind(listen).await?;
    let port = listener.local_addr()?.port();
    let api = tokio::spawn(crate::api::serve(
        listener,
        tls.as_ref().map(|t| t.server_config.clone()),
        state.clone(),
        stopped(),
    ));
    tracing::info!(%listen, port, tls = tls.is_some(), "agent API listening");

    let work = async {
        let (Some(client), Some(found), Some(host)) = (client, found, advertised) else {
            if !config.standalone {
                tracing::warn!("no ipa-api-url: serving the API without lookup or heartbeat");
            }
            stopped().await;
            return Ok(());
        };
        let mut hb = Heartbeater {
            client,
            node_uuid: String::new(),
            heartbeat_timeout: std::time::Duration::ZERO,
            tokens,
            callback_url: callback_url(protocol, &host, params.advertise_port.unwrap_or(port)),
            verify_ca: tls.as_ref().map(|t| t.cert_pem.clone()),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            timing: HeartbeatTiming::default(),
            macs,
            lookup_timing: lookup_timing(&params),
            link: state.clone(),
        };
        hb.absorb_lookup(&found);
        tracing::info!(node = %hb.node_uuid, callback = %hb.callback_url, "heartbeating");
        // After rescue.finalize_rescue the heartbeats stop; the API keeps serving.
        let until = {
            let stop = stopped();
            let state = state.clone();
            async move {
                tokio::select! {
                    _ = stop => {}
                    _ = state.wait_rescued() => {}
                }
            }
        };
        hb.run(until).await.map_err(anyhow::Error::from)?;
        if state.is_rescued() {
            tracing::info!("rescue finalized: heartbeats stopped, the API keeps serving");
            stopped().await;
        }
        Ok(())
    };
    let result = tokio::select! {
        _ = shutdown_or_lockdown(&state, &mut shutdown) => Ok(()),
        r = work => r,
    };
    let _ = stop_tx.send(true);
    api.await?.context("serving the agent API")?;
    result
}

/// Resolves on `shutdown` or once `system.lockdown` ran; after a lockdown the network is
/// brought down first.
async fn shutdown_or_lockdown(
    state: &AgentState,
    shutdown: &mut Pin<&mut (impl Future<Output = ()> + Send)>,
) {
    tokio::select! {
        _ = shutdown.as_mut() => {}
        _ = state.wait_locked_down() => {
            let hooks = state.hooks.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || hooks.lockdown_network()).await {
                tracing::error!(error = %e, "lockdown: bringing the network down failed");
            }
        }
    }
}

fn lookup_timing(params: &KernelParams) -> LookupTiming {
    LookupTiming {
        timeout: params.lookup_timeout,
        start: params.lookup_interval,
        ..LookupTiming::default()
    }
}

/// Binds the API listener. The default `[::]` falls back to `0.0.0.0` on kernels booted
/// without IPv6 (`ipv6.disable=1`), which ramdisks sometimes are.
async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    let context = || format!("binding the agent API to {listen} (ipa-listen-host/port, --listen)");
    match TcpListener::bind(listen).await {
        Ok(l) => Ok(l),
        Err(e)
            if listen.ip() == std::net::Ipv6Addr::UNSPECIFIED
                && e.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
        {
            tracing::warn!("no IPv6 in this kernel; listening on 0.0.0.0");
            let v4 = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), listen.port());
            TcpListener::bind(v4).await.with_context(context)
        }
        Err(e) => Err(e).with_context(context),
    }
}

/// Automatic TLS unless switched off (`ferrite-auto-tls=0`, `ipa-advertise-protocol=http`)
/// or the conductor is too old to pin our certificate (before 1.68).
fn wants_tls(params: &KernelParams, version: (u32, u32)) -> anyhow::Result<bool> {
    let possible = params.auto_tls && version >= VERIFY_CA_API_VERSION;
    match params.advertise_protocol {
        Some(Protocol::Http) => Ok(false),
        Some(Protocol::Https) if !possible => bail!(
            "ipa-advertise-protocol=https needs automatic TLS, which is off (ferrite-auto-tls=0 \
             or a conductor older than API 1.68): drop one of them"
        ),
        _ => Ok(possible),
    }
}

/// Posts the inventory to `ipa-inspection-callback-url` when one is set; the node UUID
/// it answers (used by the lookup), and any token it hands out, are kept.
async fn inspect(
    params: &KernelParams,
    root: &std::path::Path,
    inventory: Option<&Inventory>,
    tokens: &mut TokenStore,
    link: &dyn AgentLink,
) -> Option<String> {
    let url = params.inspection_callback_url.as_ref()?;
    let Some(inv) = inventory else {
        tracing::error!("no inventory to post to the inspection callback");
        return None;
    };
    let http = match reqwest::Client::builder()
        .danger_accept_invalid_certs(params.insecure)
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client for the inspection callback");
            return None;
        }
    };
    let root_disk = crate::inventory::root_disk(root, inv);
    // IPA's optional `pci-devices` and `numa-topology` collectors, always sent: a few sysfs
    // reads, and what Ironic's pci-devices and accelerators hooks need.
    let extras = crate::inventory::inspection_extras(root).unwrap_or_else(|e| {
        tracing::warn!(error = %format!("{e:#}"), "no PCI devices or NUMA topology to send");
        Default::default()
    });
    match post_inventory(
        &http,
        url,
        inv,
        root_disk,
        extras,
        params.bootif.as_deref(),
        params
            .inspection_token
            .as_deref()
            .or(params.agent_token.as_deref()),
        &InspectTiming::default(),
    )
    .await
    {
        Ok(answer) => {
            tracing::info!(node = %answer.uuid, "inspection data accepted");
            let offered = answer
                .config
                .as_ref()
                .and_then(|c| c.agent_token.as_deref());
            absorb_token(tokens, offered, link);
            Some(answer.uuid)
        }
        Err(e) => {
            tracing::error!(error = %e, "inspection failed; going on to the lookup");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_start_with_bootif_and_are_unique() {
        let mut inv = Inventory::default();
        for (name, mac) in [("eth0", "52:54:00:00:00:01"), ("eth1", "52:54:00:00:00:02")] {
            inv.interfaces.push(ferrite_proto::inventory::Interface {
                name: name.into(),
                mac_address: Some(mac.into()),
                ..Default::default()
            });
        }
        assert_eq!(
            lookup_macs(Some("52:54:00:00:00:02"), Some(&inv)),
            ["52:54:00:00:00:02", "52:54:00:00:00:01"]
        );
        assert_eq!(lookup_macs(None, None), Vec::<String>::new());
    }

    #[test]
    fn tls_choice() {
        let p = |line: &str| cmdline::parse(line).unwrap();
        assert!(wants_tls(&p(""), (1, 68)).unwrap());
        assert!(!wants_tls(&p(""), (1, 46)).unwrap());
        assert!(!wants_tls(&p("ferrite-auto-tls=0"), (1, 68)).unwrap());
        assert!(!wants_tls(&p("ipa-advertise-protocol=http"), (1, 68)).unwrap());
        assert!(wants_tls(&p("ipa-advertise-protocol=https"), (1, 68)).unwrap());
        let err = wants_tls(
            &p("ipa-advertise-protocol=https ferrite-auto-tls=0"),
            (1, 68),
        )
        .unwrap_err();
        assert!(err.to_string().contains("ipa-advertise-protocol"), "{err}");
    }
}
