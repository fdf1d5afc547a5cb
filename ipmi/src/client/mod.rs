//! Tokio UDP client for IPMI 2.0 lanplus: sessions with bounded retransmission, a
//! [`Client`] that reuses one session per BMC, and the session-less discovery commands.

mod error;
mod session;
mod transport;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::Mutex;

pub use error::ClientError;
pub use session::Session;
use transport::{Retry, Transport};

use crate::codec::commands::{
    self, AuthCapabilities, BootOptions, ChassisControl, ChassisStatus, CipherSuiteRecord,
    DeviceId, LanParam, PowerState, CURRENT_CHANNEL,
};
use crate::codec::completion::completion_text;
use crate::codec::message::{Request, Response};
use crate::codec::{rmcp, session as wire, CipherSuite, Privilege};

/// How to reach and log in to one BMC.
#[derive(Clone)]
pub struct ClientConfig {
    pub addr: SocketAddr,
    pub username: String,
    pub password: String,
    /// The BMC key K_g for two-key logins; `None` for the usual one-key login.
    pub kg: Option<Vec<u8>>,
    /// `None`: try suite 17, fall back to 3 when the BMC refuses it (the choice is then
    /// kept by the [`Client`]).
    pub cipher_suite: Option<CipherSuite>,
    /// Maximum privilege requested for the session.
    pub privilege: Privilege,
    /// How long to wait for each reply before retransmitting.
    pub timeout: Duration,
    /// Transmissions per request (first one included).
    pub attempts: u32,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("addr", &self.addr)
            .field("username", &self.username)
            .field("password", &"******")
            .field("cipher_suite", &self.cipher_suite)
            .field("privilege", &self.privilege)
            .field("timeout", &self.timeout)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl ClientConfig {
    /// Cipher suite 17 falling back to 3, administrator, 1 s per attempt, 3 attempts.
    pub fn new(addr: SocketAddr, username: &str, password: &str) -> ClientConfig {
        ClientConfig {
            addr,
            username: username.into(),
            password: password.into(),
            kg: None,
            cipher_suite: None,
            privilege: Privilege::Administrator,
            timeout: Duration::from_secs(1),
            attempts: 3,
        }
    }

    pub(crate) fn retry(&self) -> Retry {
        Retry {
            timeout: self.timeout,
            attempts: self.attempts,
        }
    }

    /// The longest one request can take before it fails with a timeout.
    pub fn max_wait(&self) -> Duration {
        self.timeout * self.attempts.max(1)
    }
}

/// A BMC client that keeps one session open and reuses it; when a reused session has gone
/// stale (the BMC timed it out), it re-opens once and retries.
pub struct Client {
    cfg: ClientConfig,
    session: Mutex<Option<Session>>,
    /// The suite found by the first automatic negotiation, reused for later sessions.
    learned_suite: std::sync::Mutex<Option<CipherSuite>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("cfg", &self.cfg).finish()
    }
}

const BOOT_OPTION_ERRORS: &str = "boot option parameter not supported by this BMC";
const LAN_ERRORS: &str = "LAN configuration parameter not supported by this BMC";

impl Client {
    pub fn new(cfg: ClientConfig) -> Client {
        Client {
            cfg,
            session: Mutex::new(None),
            learned_suite: std::sync::Mutex::new(None),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    async fn open_session(&self) -> Result<Session, ClientError> {
        let learned = *self.learned_suite.lock().expect("not poisoned");
        let session = match (self.cfg.cipher_suite, learned) {
            (None, Some(suite)) => Session::open_with(&self.cfg, suite).await?,
            _ => Session::open(&self.cfg).await?,
        };
        *self.learned_suite.lock().expect("not poisoned") = Some(session.cipher_suite());
        Ok(session)
    }

    /// The cipher suite in use (after the first session opened).
    pub fn cipher_suite(&self) -> Option<CipherSuite> {
        self.cfg
            .cipher_suite
            .or(*self.learned_suite.lock().expect("not poisoned"))
    }

    /// Runs one command in the shared session, opening it if needed.
    async fn call(
        &self,
        command: &'static str,
        req: Request,
        privilege: Privilege,
        cmd_specific: Option<&'static str>,
    ) -> Result<Vec<u8>, ClientError> {
        let mut guard = self.session.lock().await;
        let reused = guard.is_some();
        let first = self
            .call_in(&mut guard, command, &req, privilege, cmd_specific)
            .await;
        match first {
            Err(e) if reused && e.may_be_stale_session() => {
                tracing::debug!(bmc = %self.cfg.addr, error = %e, "re-opening stale session");
                *guard = None;
                self.call_in(&mut guard, command, &req, privilege, cmd_specific)
                    .await
            }
            other => other,
        }
    }

    /// One attempt in the session held by `slot`, opening one if it is empty.
    async fn call_in(
        &self,
        slot: &mut Option<Session>,
        command: &'static str,
        req: &Request,
        privilege: Privilege,
        cmd_specific: Option<&'static str>,
    ) -> Result<Vec<u8>, ClientError> {
        let session = match slot {
            Some(s) => s,
            None => slot.insert(self.open_session().await?),
        };
        session.ensure_privilege(privilege).await?;
        session.call(command, req, cmd_specific).await
    }

    /// Opens the session now (validates address and credentials).
    pub async fn connect(&self) -> Result<(), ClientError> {
        let mut guard = self.session.lock().await;
        if guard.is_none() {
            *guard = Some(self.open_session().await?);
        }
        Ok(())
    }

    /// The BMC's ID of the shared session, if one is open.
    pub async fn session_id(&self) -> Option<u32> {
        self.session
            .lock()
            .await
            .as_ref()
            .map(|s| s.bmc_session_id())
    }

    /// Closes the shared session, if one is open.
    pub async fn close(&self) -> Result<(), ClientError> {
        match self.session.lock().await.take() {
            Some(s) => s.close().await,
            None => Ok(()),
        }
    }

    pub async fn device_id(&self) -> Result<DeviceId, ClientError> {
        let d = self
            .call(
                "Get Device ID",
                commands::get_device_id(),
                Privilege::User,
                None,
            )
            .await?;
        DeviceId::decode(&d).map_err(|source| self.malformed("Get Device ID", source))
    }

    pub async fn chassis_status(&self) -> Result<ChassisStatus, ClientError> {
        let d = self
            .call(
                "Get Chassis Status",
                commands::get_chassis_status(),
                Privilege::User,
                None,
            )
            .await?;
        ChassisStatus::decode(&d).map_err(|source| self.malformed("Get Chassis Status", source))
    }

    pub async fn power_state(&self) -> Result<PowerState, ClientError> {
        Ok(self.chassis_status().await?.power)
    }

    pub async fn chassis_control(&self, action: ChassisControl) -> Result<(), ClientError> {
        self.call(
            "Chassis Control",
            commands::chassis_control(action),
            Privilege::Operator,
            None,
        )
        .await
        .map(|_| ())
    }

    pub async fn set_boot_options(&self, opts: BootOptions) -> Result<(), ClientError> {
        self.call(
            "Set System Boot Options",
            commands::set_system_boot_options(opts),
            Privilege::Operator,
            Some(BOOT_OPTION_ERRORS),
        )
        .await
        .map(|_| ())
    }

    pub async fn boot_options(&self) -> Result<BootOptions, ClientError> {
        let d = self
            .call(
                "Get System Boot Options",
                commands::get_system_boot_options(),
                Privilege::Operator,
                Some(BOOT_OPTION_ERRORS),
            )
            .await?;
        BootOptions::decode(&d).map_err(|source| self.malformed("Get System Boot Options", source))
    }

    /// Raw Get LAN Configuration Parameters data (revision byte included).
    pub async fn lan_config(&self, channel: u8, param: LanParam) -> Result<Vec<u8>, ClientError> {
        self.call(
            "Get LAN Configuration Parameters",
            commands::get_lan_config(channel, param),
            Privilege::Operator,
            Some(LAN_ERRORS),
        )
        .await
    }

    pub async fn lan_ip(&self, channel: u8) -> Result<std::net::Ipv4Addr, ClientError> {
        let d = self.lan_config(channel, LanParam::IpAddress).await?;
        commands::decode_ipv4(&d)
            .map_err(|source| self.malformed("Get LAN Configuration Parameters", source))
    }

    pub async fn lan_mac(&self, channel: u8) -> Result<[u8; 6], ClientError> {
        let d = self.lan_config(channel, LanParam::MacAddress).await?;
        commands::decode_mac(&d)
            .map_err(|source| self.malformed("Get LAN Configuration Parameters", source))
    }

    fn malformed(&self, command: &'static str, source: crate::DecodeError) -> ClientError {
        ClientError::Malformed {
            addr: self.cfg.addr,
            command,
            source,
        }
    }
}

/// Session-less request/response (IPMI 1.5 or 2.0 framing, session ID 0).
async fn sessionless(
    cfg: &ClientConfig,
    command: &'static str,
    req: &Request,
    v2: bool,
) -> Result<Vec<u8>, ClientError> {
    let mut t = Transport::connect(cfg.addr).await?;
    let msg = req.encode(1);
    let packet = if v2 {
        wire::encode_v2(wire::PayloadType::Ipmi, 0, 0, &msg, None)
    } else {
        wire::encode_v15(0, 0, &msg)
    };
    let resp = t
        .exchange(
            command,
            cfg.retry(),
            || packet.clone(),
            |d| {
                let p = wire::decode(d, None).ok()?;
                let r = Response::decode(&p.payload).ok()?;
                (r.cmd == req.cmd && r.netfn == req.netfn + 1).then_some(r)
            },
        )
        .await?;
    if resp.completion_code != 0 {
        return Err(ClientError::Completion {
            addr: cfg.addr,
            command,
            code: resp.completion_code,
            reason: completion_text(resp.completion_code, None),
        });
    }
    Ok(resp.data)
}

/// Get Channel Authentication Capabilities (IPMI 1.5 framing, before any session).
pub async fn channel_auth_capabilities(
    cfg: &ClientConfig,
) -> Result<AuthCapabilities, ClientError> {
    const CMD: &str = "Get Channel Authentication Capabilities";
    let req = commands::get_channel_auth_capabilities(CURRENT_CHANNEL, cfg.privilege);
    let d = sessionless(cfg, CMD, &req, false).await?;
    AuthCapabilities::decode(&d).map_err(|source| ClientError::Malformed {
        addr: cfg.addr,
        command: CMD,
        source,
    })
}

/// Get Channel Cipher Suites, all pages. Bounded by `cfg.max_wait()` per page: BMCs that do
/// not implement it (ipmi_sim) give a [`ClientError::Timeout`], never a stall.
pub async fn channel_cipher_suites(
    cfg: &ClientConfig,
) -> Result<Vec<CipherSuiteRecord>, ClientError> {
    let mut bytes = Vec::new();
    for index in 0..64u8 {
        let req = commands::get_channel_cipher_suites(CURRENT_CHANNEL, index);
        let d = sessionless(cfg, "Get Channel Cipher Suites", &req, true).await?;
        let page = d.get(1..).unwrap_or_default();
        bytes.extend_from_slice(page);
        if page.len() < 16 {
            break;
        }
    }
    Ok(commands::parse_cipher_suite_records(&bytes))
}

/// ASF presence ping: `Ok(true)` when the BMC answers and says it speaks IPMI.
pub async fn ping(cfg: &ClientConfig) -> Result<bool, ClientError> {
    let mut t = Transport::connect(cfg.addr).await?;
    let packet = rmcp::encode_ping(0x5a);
    t.exchange(
        "ASF presence ping",
        cfg.retry(),
        || packet.clone(),
        |d| rmcp::decode_pong(d).ok().map(|p| p.ipmi_supported),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn client_futures_are_send() {
        let cfg = ClientConfig::new("127.0.0.1:9".parse().unwrap(), "u", "p");
        let client = Client::new(cfg.clone());
        assert_send(&client.power_state());
        assert_send(&client.close());
        assert_send(&Session::open(&cfg));
        assert_send(&channel_cipher_suites(&cfg));
    }

    #[test]
    fn config_debug_hides_password() {
        let cfg = ClientConfig::new("127.0.0.1:623".parse().unwrap(), "admin", "s3cret");
        assert!(!format!("{cfg:?}").contains("s3cret"));
        assert_eq!(cfg.max_wait(), Duration::from_secs(3));
    }
}
