//! Ironic's `driver_info` keys for IPMI (`ipmi_address`, `ipmi_port`, `ipmi_username`,
//! `ipmi_password`, `ipmi_cipher_suite`, `ipmi_priv_level`) → a [`ClientConfig`], with
//! errors that name the key and say what to set.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use thiserror::Error;

use crate::client::ClientConfig;
use crate::codec::{CipherSuite, Privilege};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DriverInfoError {
    #[error("driver_info is missing {0}: set it to the BMC's address (IP or host name)")]
    MissingAddress(&'static str),
    #[error("driver_info {key} has an invalid value {value}: {expected}")]
    Invalid {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("cannot resolve the BMC host name {host:?}: {reason}")]
    Resolve { host: String, reason: String },
}

fn text(info: &Value, key: &'static str) -> Result<Option<String>, DriverInfoError> {
    match info.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(DriverInfoError::Invalid {
            key,
            value: other.to_string(),
            expected: "a string",
        }),
    }
}

/// The parsed IPMI settings of a node, before the address is resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct IpmiDriverInfo {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    pub cipher_suite: Option<CipherSuite>,
    pub privilege: Privilege,
}

impl std::fmt::Debug for IpmiDriverInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpmiDriverInfo")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"******")
            .field("cipher_suite", &self.cipher_suite)
            .field("privilege", &self.privilege)
            .finish()
    }
}

impl IpmiDriverInfo {
    /// Validates `driver_info` (a JSON object) without any network access.
    pub fn parse(info: &Value) -> Result<IpmiDriverInfo, DriverInfoError> {
        let host = text(info, "ipmi_address")?
            .filter(|s| !s.trim().is_empty())
            .ok_or(DriverInfoError::MissingAddress("ipmi_address"))?;
        let port = match text(info, "ipmi_port")? {
            None => 623,
            Some(p) => {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or(DriverInfoError::Invalid {
                        key: "ipmi_port",
                        value: p,
                        expected: "a UDP port number 1-65535 (623 is the IPMI default)",
                    })?
            }
        };
        let username = text(info, "ipmi_username")?.unwrap_or_default();
        if username.len() > 16 {
            return Err(DriverInfoError::Invalid {
                key: "ipmi_username",
                value: username,
                expected: "at most 16 bytes (an IPMI limit)",
            });
        }
        let password = text(info, "ipmi_password")?.unwrap_or_default();
        if password.len() > 20 {
            return Err(DriverInfoError::Invalid {
                key: "ipmi_password",
                value: "******".into(),
                expected: "at most 20 bytes (an IPMI 2.0 limit)",
            });
        }
        let cipher_suite = match text(info, "ipmi_cipher_suite")? {
            None => None,
            Some(s) => Some(s.parse::<u8>().ok().and_then(CipherSuite::from_id).ok_or(
                DriverInfoError::Invalid {
                    key: "ipmi_cipher_suite",
                    value: s,
                    expected: "3 or 17 (or unset: try 17, then 3)",
                },
            )?),
        };
        let privilege = match text(info, "ipmi_priv_level")? {
            None => Privilege::Administrator,
            Some(s) => Privilege::parse(&s).ok_or(DriverInfoError::Invalid {
                key: "ipmi_priv_level",
                value: s,
                expected: "ADMINISTRATOR, OPERATOR, USER or CALLBACK",
            })?,
        };
        Ok(IpmiDriverInfo {
            host,
            port,
            username,
            password,
            cipher_suite,
            privilege,
        })
    }

    /// Resolves the host and builds the client configuration.
    pub async fn client_config(
        &self,
        timeout: Duration,
        attempts: u32,
    ) -> Result<ClientConfig, DriverInfoError> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let addr: SocketAddr = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, self.port),
            Err(_) => tokio::net::lookup_host((host, self.port))
                .await
                .map_err(|e| DriverInfoError::Resolve {
                    host: self.host.clone(),
                    reason: e.to_string(),
                })?
                .next()
                .ok_or_else(|| DriverInfoError::Resolve {
                    host: self.host.clone(),
                    reason: "no addresses".into(),
                })?,
        };
        let mut cfg = ClientConfig::new(addr, &self.username, &self.password);
        cfg.cipher_suite = self.cipher_suite;
        cfg.privilege = self.privilege;
        cfg.timeout = timeout;
        cfg.attempts = attempts;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ironic_style_driver_info_parses() {
        let i = IpmiDriverInfo::parse(&json!({
            "ipmi_address": "10.0.0.5", "ipmi_port": "6230", "ipmi_username": "admin",
            "ipmi_password": "pw", "ipmi_cipher_suite": 17, "ipmi_priv_level": "OPERATOR",
            "deploy_kernel": "http://x/k"
        }))
        .unwrap();
        assert_eq!(i.port, 6230);
        assert_eq!(i.cipher_suite, Some(CipherSuite::Suite17));
        assert_eq!(i.privilege, Privilege::Operator);
        assert!(!format!("{i:?}").contains("\"pw\""));
        let d = IpmiDriverInfo::parse(&json!({"ipmi_address": "bmc1"})).unwrap();
        assert_eq!(
            (d.port, d.cipher_suite, d.privilege),
            (623, None, Privilege::Administrator)
        );
    }

    #[test]
    fn bad_driver_info_names_the_key() {
        let cases = [
            (json!({}), "ipmi_address"),
            (json!({"ipmi_address": ""}), "ipmi_address"),
            (json!({"ipmi_address": "a", "ipmi_port": "x"}), "ipmi_port"),
            (json!({"ipmi_address": "a", "ipmi_port": 0}), "ipmi_port"),
            (
                json!({"ipmi_address": "a", "ipmi_cipher_suite": "1"}),
                "ipmi_cipher_suite",
            ),
            (
                json!({"ipmi_address": "a", "ipmi_priv_level": "root"}),
                "ipmi_priv_level",
            ),
            (
                json!({"ipmi_address": "a", "ipmi_username": "u".repeat(17)}),
                "ipmi_username",
            ),
            (
                json!({"ipmi_address": "a", "ipmi_password": "p".repeat(21)}),
                "ipmi_password",
            ),
            (json!({"ipmi_address": ["a"]}), "ipmi_address"),
        ];
        for (info, key) in cases {
            let e = IpmiDriverInfo::parse(&info).unwrap_err();
            assert!(e.to_string().contains(key), "{info}: {e}");
            assert!(!e.to_string().contains(&"p".repeat(21)));
        }
    }

    #[tokio::test]
    async fn client_config_resolves_literal_and_names() {
        let i = IpmiDriverInfo::parse(&json!({"ipmi_address": "127.0.0.1", "ipmi_port": 7000}))
            .unwrap();
        let c = i.client_config(Duration::from_secs(2), 4).await.unwrap();
        assert_eq!(c.addr, "127.0.0.1:7000".parse().unwrap());
        assert_eq!((c.timeout, c.attempts), (Duration::from_secs(2), 4));
        let i = IpmiDriverInfo::parse(&json!({"ipmi_address": "localhost"})).unwrap();
        assert!(i
            .client_config(Duration::from_secs(1), 1)
            .await
            .unwrap()
            .addr
            .ip()
            .is_loopback());
        let i = IpmiDriverInfo::parse(&json!({"ipmi_address": "[::1]"})).unwrap();
        assert!(i
            .client_config(Duration::from_secs(1), 1)
            .await
            .unwrap()
            .addr
            .is_ipv6());
        let i = IpmiDriverInfo::parse(&json!({"ipmi_address": "no-such-host.invalid"})).unwrap();
        let e = i
            .client_config(Duration::from_secs(1), 1)
            .await
            .unwrap_err();
        assert!(matches!(e, DriverInfoError::Resolve { .. }), "{e}");
    }
}
