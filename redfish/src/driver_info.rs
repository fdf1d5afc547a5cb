//! Ironic's `driver_info` keys for Redfish (`redfish_address`, `redfish_system_id`,
//! `redfish_username`, `redfish_password`, `redfish_verify_ca`, `redfish_auth_type`) → a
//! [`ClientConfig`], with errors that name the key and say what to set.

use std::path::PathBuf;

use serde_json::Value;
use thiserror::Error;
use url::Url;

use crate::client::{AuthType, ClientConfig, TlsVerify};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DriverInfoError {
    #[error(
        "driver_info is missing redfish_address: set it to the BMC's URL \
         (e.g. https://10.0.0.5 or https://bmc:8443)"
    )]
    MissingAddress,
    #[error("driver_info {key} has an invalid value {value}: {expected}")]
    Invalid {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
}

fn text(info: &Value, key: &'static str) -> Result<Option<String>, DriverInfoError> {
    match info.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(DriverInfoError::Invalid {
            key,
            value: other.to_string(),
            expected: "a string",
        }),
    }
}

/// The parsed Redfish settings of a node.
#[derive(Clone, PartialEq, Eq)]
pub struct RedfishDriverInfo {
    pub address: Url,
    /// An id (`1`) or a path (`/redfish/v1/Systems/1`); `None`: the BMC's only system.
    pub system_id: Option<String>,
    pub username: String,
    pub password: String,
    pub verify: TlsVerify,
    pub auth: AuthType,
}

impl std::fmt::Debug for RedfishDriverInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedfishDriverInfo")
            .field("address", &self.address.as_str())
            .field("system_id", &self.system_id)
            .field("username", &self.username)
            .field("password", &"******")
            .field("verify", &self.verify)
            .field("auth", &self.auth)
            .finish()
    }
}

impl RedfishDriverInfo {
    /// Validates `driver_info` (a JSON object) without any network access.
    pub fn parse(info: &Value) -> Result<RedfishDriverInfo, DriverInfoError> {
        let raw = text(info, "redfish_address")?
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or(DriverInfoError::MissingAddress)?;
        // Ironic: an address without a scheme is https.
        let with_scheme = if raw.contains("://") {
            raw.clone()
        } else {
            format!("https://{raw}")
        };
        let address = Url::parse(&with_scheme)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or(DriverInfoError::Invalid {
                key: "redfish_address",
                value: raw,
                expected: "an http(s) URL or host name of the BMC",
            })?;
        let system_id = text(info, "redfish_system_id")?.filter(|s| !s.trim().is_empty());
        let username = text(info, "redfish_username")?.unwrap_or_default();
        let password = text(info, "redfish_password")?.unwrap_or_default();
        let verify = match text(info, "redfish_verify_ca")? {
            None => TlsVerify::Verify,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => TlsVerify::Verify,
                "false" | "0" | "no" | "off" => TlsVerify::Off,
                _ if v.starts_with('/') => TlsVerify::CaFile(PathBuf::from(v)),
                _ => {
                    return Err(DriverInfoError::Invalid {
                        key: "redfish_verify_ca",
                        value: v,
                        expected: "true, false, or the absolute path of a PEM CA file",
                    })
                }
            },
        };
        let auth = match text(info, "redfish_auth_type")?.as_deref() {
            None | Some("auto") => AuthType::Auto,
            Some("session") => AuthType::Session,
            Some("basic") => AuthType::Basic,
            Some(other) => {
                return Err(DriverInfoError::Invalid {
                    key: "redfish_auth_type",
                    value: other.into(),
                    expected: "auto, session or basic",
                })
            }
        };
        Ok(RedfishDriverInfo {
            address,
            system_id,
            username,
            password,
            verify,
            auth,
        })
    }

    /// The client configuration (default timeouts and retries).
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new(self.address.clone(), &self.username, &self.password);
        c.verify = self.verify.clone();
        c.auth = self.auth;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ironic_style_driver_info_parses() {
        let i = RedfishDriverInfo::parse(&json!({
            "redfish_address": "10.0.0.5:8443", "redfish_system_id": "/redfish/v1/Systems/1",
            "redfish_username": "admin", "redfish_password": "pw",
            "redfish_verify_ca": "/etc/ssl/bmc-ca.pem", "redfish_auth_type": "session",
            "deploy_kernel": "http://x/k"
        }))
        .unwrap();
        assert_eq!(i.address.as_str(), "https://10.0.0.5:8443/");
        assert_eq!(i.system_id.as_deref(), Some("/redfish/v1/Systems/1"));
        assert_eq!(i.verify, TlsVerify::CaFile("/etc/ssl/bmc-ca.pem".into()));
        assert_eq!(i.auth, AuthType::Session);
        assert!(!format!("{i:?}").contains("\"pw\""));
        let d = RedfishDriverInfo::parse(
            &json!({"redfish_address": "http://127.0.0.1:8000", "redfish_verify_ca": false}),
        )
        .unwrap();
        assert_eq!(
            (d.verify, d.auth, d.system_id),
            (TlsVerify::Off, AuthType::Auto, None)
        );
        let c = RedfishDriverInfo::parse(
            &json!({"redfish_address": "bmc", "redfish_verify_ca": "True"}),
        )
        .unwrap()
        .client_config();
        assert_eq!(c.verify, TlsVerify::Verify);
    }

    #[test]
    fn bad_driver_info_names_the_key() {
        let cases = [
            (json!({}), "redfish_address"),
            (json!({"redfish_address": " "}), "redfish_address"),
            (json!({"redfish_address": "ftp://bmc"}), "redfish_address"),
            (json!({"redfish_address": ["a"]}), "redfish_address"),
            (
                json!({"redfish_address": "bmc", "redfish_verify_ca": "maybe"}),
                "redfish_verify_ca",
            ),
            (
                json!({"redfish_address": "bmc", "redfish_auth_type": "digest"}),
                "redfish_auth_type",
            ),
            (
                json!({"redfish_address": "bmc", "redfish_password": {"x": 1}}),
                "redfish_password",
            ),
        ];
        for (info, key) in cases {
            let e = RedfishDriverInfo::parse(&info).unwrap_err();
            assert!(e.to_string().contains(key), "{info}: {e}");
        }
    }
}
