//! Static addressing for the deploy ramdisk from a node's `network_data` (OpenStack's
//! `network_data.json`: `links`, `networks`, `services`), as kernel parameters the
//! ramdisk's init reads: `ferrite-net=MAC,ADDRESS/PREFIX,GATEWAY,DNS[+DNS…]` per static IPv4
//! network (gateway and DNS may be empty). NICs without one use DHCP. Used by virtual-media
//! boot, where no DHCP server may answer (Ironic builds a config drive for its ramdisk from
//! the same data).

use std::net::Ipv4Addr;

use serde_json::Value;

use crate::mac::Mac;

/// `network_data` that cannot become the ramdisk's static addressing; the message says
/// what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("network_data: {0}; fix the node's network_data (OpenStack network_data.json)")]
pub struct NetworkDataError(pub String);

fn err<T>(why: impl Into<String>) -> Result<T, NetworkDataError> {
    Err(NetworkDataError(why.into()))
}

fn ipv4(v: &Value, what: &str) -> Result<Ipv4Addr, NetworkDataError> {
    match v.as_str().map(str::parse::<Ipv4Addr>) {
        Some(Ok(a)) => Ok(a),
        _ => err(format!("{what} {v} is not an IPv4 address")),
    }
}

/// The prefix length of a netmask (`255.255.255.0` → 24), or a prefix given as a number.
fn prefix(v: &Value) -> Result<u32, NetworkDataError> {
    if let Some(n) = v.as_u64().filter(|n| *n <= 32) {
        return Ok(n as u32);
    }
    let mask = u32::from(ipv4(v, "netmask")?);
    if mask.leading_ones() + mask.trailing_zeros() != 32 {
        return err(format!("netmask {v} is not contiguous"));
    }
    Ok(mask.leading_ones())
}

/// The `ferrite-net=…` parameters for `network_data` (none for an empty object or only
/// DHCP networks).
pub fn static_params(network_data: &Value) -> Result<Vec<String>, NetworkDataError> {
    let list = |key: &str| -> Result<Vec<Value>, NetworkDataError> {
        match network_data.get(key) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(v) => err(format!("{key} must be a list, not {v}")),
        }
    };
    if !network_data.is_object() {
        return err(format!("must be an object, not {network_data}"));
    }
    let links = list("links")?;
    let dns: Vec<String> = list("services")?
        .iter()
        .filter(|s| s["type"] == "dns")
        .map(|s| ipv4(&s["address"], "dns address").map(|a| a.to_string()))
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for n in list("networks")? {
        let kind = n["type"].as_str().unwrap_or("");
        match kind {
            "ipv4_dhcp" | "ipv6_dhcp" | "ipv6_slaac" => continue,
            "ipv4" => {}
            other => {
                return err(format!(
                "network {} has type {other:?}; the ramdisk takes static \"ipv4\" (or DHCP) only",
                n["id"]
            ))
            }
        }
        let link_id = &n["link"];
        let link = links.iter().find(|l| &l["id"] == link_id).ok_or_else(|| {
            NetworkDataError(format!("network {} names no link {link_id}", n["id"]))
        })?;
        if link["type"]
            .as_str()
            .is_some_and(|t| t != "phy" && t != "ethernet")
        {
            return err(format!(
                "link {link_id} has type {}; the ramdisk configures physical NICs only",
                link["type"]
            ));
        }
        let mac: Mac = link["ethernet_mac_address"]
            .as_str()
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| {
                NetworkDataError(format!(
                    "link {link_id} has no ethernet_mac_address (the ramdisk finds the NIC by it)"
                ))
            })?;
        let address = ipv4(&n["ip_address"], "ip_address")?;
        let len = prefix(&n["netmask"])?;
        let mut gateway = String::new();
        for r in n["routes"].as_array().into_iter().flatten() {
            let default = r["network"] == "0.0.0.0" && prefix(&r["netmask"]).ok() == Some(0);
            if default {
                gateway = ipv4(&r["gateway"], "gateway")?.to_string();
            }
        }
        out.push(format!(
            "ferrite-net={mac},{address}/{len},{gateway},{}",
            dns.join("+")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data() -> Value {
        json!({
            "links": [{"id": "port0", "type": "phy", "ethernet_mac_address": "52:54:00:FE:30:01"}],
            "networks": [{"id": "net0", "type": "ipv4", "link": "port0",
                          "ip_address": "10.0.2.15", "netmask": "255.255.255.0",
                          "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0",
                                      "gateway": "10.0.2.2"}]}],
            "services": [{"type": "dns", "address": "10.0.2.3"},
                         {"type": "dns", "address": "1.1.1.1"}]
        })
    }

    #[test]
    fn a_static_network_becomes_one_parameter() {
        assert_eq!(
            static_params(&data()).unwrap(),
            ["ferrite-net=52:54:00:fe:30:01,10.0.2.15/24,10.0.2.2,10.0.2.3+1.1.1.1"]
        );
        assert!(static_params(&json!({})).unwrap().is_empty());
        let mut d = data();
        d["networks"][0]["type"] = json!("ipv4_dhcp");
        assert!(static_params(&d).unwrap().is_empty(), "DHCP needs nothing");
        let mut d = data();
        d["networks"][0]["routes"] = json!([]);
        d["services"] = json!([]);
        d["networks"][0]["netmask"] = json!(16);
        assert_eq!(
            static_params(&d).unwrap(),
            ["ferrite-net=52:54:00:fe:30:01,10.0.2.15/16,,"]
        );
    }

    #[test]
    fn what_cannot_be_configured_says_what_to_fix() {
        for (edit, want) in [
            (
                json!({"networks": [{"id": "n", "type": "ipv6", "link": "port0"}]}),
                "ipv6",
            ),
            (json!({"links": [{"id": "port0", "type": "bond"}]}), "bond"),
            (
                json!({"links": [{"id": "port0", "type": "phy"}]}),
                "ethernet_mac_address",
            ),
        ] {
            let mut d = data();
            for (k, v) in edit.as_object().unwrap() {
                d[k] = v.clone();
            }
            let e = static_params(&d).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        let mut d = data();
        d["networks"][0]["netmask"] = json!("255.0.255.0");
        assert!(static_params(&d)
            .unwrap_err()
            .to_string()
            .contains("contiguous"));
        let mut d = data();
        d["networks"][0]["ip_address"] = json!("10.0.2.300");
        assert!(static_params(&d)
            .unwrap_err()
            .to_string()
            .contains("ip_address"));
        assert!(static_params(&json!([])).is_err());
    }
}
