//! The `callback_url` the conductor calls the agent back at: `ipa-advertise-host/port`, or
//! the address of `ipa-network-interface`, or the source address of the route towards the
//! conductor (found by connecting a UDP socket, which sends nothing).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use ferrite_proto::inventory::Inventory;
use reqwest::Url;

use crate::cmdline::{KernelParams, Protocol};

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("the conductor URL {0} has no host to route towards")]
    NoHost(String),
    #[error("could not resolve the conductor host {host:?}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no route towards the conductor at {target}: set ipa-advertise-host to the address \
         the conductor reaches this agent at"
    )]
    NoRoute {
        target: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the route towards the conductor at {target} leaves from link-local {source_ip}, \
         which the conductor cannot call back: set ipa-advertise-host"
    )]
    LinkLocal {
        target: SocketAddr,
        source_ip: IpAddr,
    },
    #[error(
        "ipa-network-interface={0} has no IP address in the inventory: check the name, or \
         set ipa-advertise-host"
    )]
    InterfaceWithoutAddress(String),
    #[error("nothing to advertise: set ipa-advertise-host or ipa-api-url")]
    Nothing,
}

/// `http(s)://host:port` with IPv6 hosts bracketed.
pub fn callback_url(protocol: Protocol, host: &str, port: u16) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.contains(':') {
        format!("{}://[{host}]:{port}", protocol.as_str())
    } else {
        format!("{}://{host}:{port}", protocol.as_str())
    }
}

/// The local address the kernel would send from towards `target`. Connecting a UDP
/// socket only selects the route: no packet leaves the machine.
pub fn route_source(target: SocketAddr) -> Result<IpAddr, CallbackError> {
    let bind: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let no_route = |source| CallbackError::NoRoute { target, source };
    let socket = UdpSocket::bind(bind).map_err(no_route)?;
    socket.connect(target).map_err(no_route)?;
    let source_ip = socket.local_addr().map_err(no_route)?.ip();
    if is_link_local(source_ip) {
        return Err(CallbackError::LinkLocal { target, source_ip });
    }
    Ok(source_ip)
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Resolves the conductor URL's host to the socket address a route is looked up for.
pub async fn conductor_addr(url: &Url) -> Result<SocketAddr, CallbackError> {
    let port = url.port_or_known_default().unwrap_or(80);
    match url.host() {
        Some(url::Host::Ipv4(ip)) => Ok((ip, port).into()),
        Some(url::Host::Ipv6(ip)) => Ok((ip, port).into()),
        Some(url::Host::Domain(name)) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|source| CallbackError::Resolve {
                host: name.into(),
                source,
            })?
            .next()
            .ok_or_else(|| CallbackError::Resolve {
                host: name.into(),
                source: std::io::Error::other("no addresses"),
            }),
        None => Err(CallbackError::NoHost(url.to_string())),
    }
}

/// The host to advertise, in the order IPA picks it: `ipa-advertise-host`, the address of
/// `ipa-network-interface`, the route source towards the conductor.
pub async fn advertise_host(
    params: &KernelParams,
    inventory: Option<&Inventory>,
) -> Result<String, CallbackError> {
    if let Some(host) = &params.advertise_host {
        return Ok(host.clone());
    }
    if let Some(name) = &params.network_interface {
        return inventory
            .and_then(|inv| inv.interfaces.iter().find(|i| &i.name == name))
            .and_then(|i| i.ipv4_address.clone().or_else(|| i.ipv6_address.clone()))
            .ok_or_else(|| CallbackError::InterfaceWithoutAddress(name.clone()));
    }
    let Some(url) = &params.api_url else {
        return Err(CallbackError::Nothing);
    };
    let target = conductor_addr(url).await?;
    Ok(route_source(target)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_bracket_ipv6() {
        assert_eq!(
            callback_url(Protocol::Http, "10.0.0.5", 9999),
            "http://10.0.0.5:9999"
        );
        assert_eq!(
            callback_url(Protocol::Https, "fd00::5", 9999),
            "https://[fd00::5]:9999"
        );
        assert_eq!(
            callback_url(Protocol::Https, "[fd00::5]", 1),
            "https://[fd00::5]:1"
        );
        assert_eq!(
            callback_url(Protocol::Http, "agent.lan", 80),
            "http://agent.lan:80"
        );
    }

    #[test]
    fn route_towards_loopback_leaves_from_loopback() {
        let src = route_source("127.0.0.1:6385".parse().unwrap()).unwrap();
        assert_eq!(src, IpAddr::V4(Ipv4Addr::LOCALHOST));
        // IPv6 loopback exists on most machines; when it does, the source is ::1 too.
        if let Ok(src6) = route_source("[::1]:6385".parse().unwrap()) {
            assert_eq!(src6, IpAddr::V6(Ipv6Addr::LOCALHOST));
        }
    }

    #[test]
    fn link_local_detection() {
        assert!(is_link_local("169.254.1.1".parse().unwrap()));
        assert!(is_link_local("fe80::1".parse().unwrap()));
        assert!(!is_link_local("fd00::1".parse().unwrap()));
        assert!(!is_link_local("10.0.2.15".parse().unwrap()));
    }

    #[tokio::test]
    async fn advertise_host_prefers_the_command_line() {
        let mut p =
            crate::cmdline::parse("ipa-api-url=http://127.0.0.1:6385 ipa-advertise-host=192.0.2.7")
                .unwrap();
        assert_eq!(advertise_host(&p, None).await.unwrap(), "192.0.2.7");
        p.advertise_host = None;
        assert_eq!(advertise_host(&p, None).await.unwrap(), "127.0.0.1");
        p.network_interface = Some("eth9".into());
        let err = advertise_host(&p, None).await.unwrap_err();
        assert!(err.to_string().contains("eth9"), "{err}");
        let mut inv = Inventory::default();
        inv.interfaces.push(ferrite_proto::inventory::Interface {
            name: "eth9".into(),
            ipv4_address: Some("198.51.100.3".into()),
            ..Default::default()
        });
        assert_eq!(
            advertise_host(&p, Some(&inv)).await.unwrap(),
            "198.51.100.3"
        );
    }

    #[tokio::test]
    async fn names_resolve_before_routing() {
        let url = Url::parse("http://localhost:6385/").unwrap();
        let addr = conductor_addr(&url).await.unwrap();
        assert!(addr.ip().is_loopback());
        assert_eq!(addr.port(), 6385);
        assert!(matches!(
            conductor_addr(&Url::parse("http://[::1]/").unwrap()).await.unwrap(),
            SocketAddr::V6(a) if a.port() == 80
        ));
    }
}
