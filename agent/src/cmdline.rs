//! Kernel command line (`/proc/cmdline`) → the typed parameters of CONTRACT.md §3.
//!
//! Unknown parameters and unparsable words are tolerated (a ramdisk's command line
//! carries plenty of things that are not ours) and reported as warnings; a parameter we
//! know with a bad value is an error naming the key, because guessing would send the
//! agent to the wrong place.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;

/// Port the agent API listens on and advertises unless told otherwise.
pub const DEFAULT_AGENT_PORT: u16 = 9999;
/// `ipa-lookup-timeout` default (seconds).
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(600);
/// `ipa-lookup-interval` default: the first lookup backoff (seconds).
pub const DEFAULT_LOOKUP_INTERVAL: Duration = Duration::from_secs(1);
/// Tokens shorter than this are refused (CONTRACT.md §1).
pub const MIN_TOKEN_LEN: usize = 32;

/// Scheme the conductor uses to call the agent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
        }
    }
}

/// Everything the agent takes from the kernel command line.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelParams {
    /// `ipa-api-url`: the conductor. `None` → no lookup or heartbeat.
    pub api_url: Option<Url>,
    /// `ipa-inspection-callback-url`: where the inventory is posted.
    pub inspection_callback_url: Option<Url>,
    /// `ipa-advertise-host`: an IP address or DNS name the conductor reaches us at.
    pub advertise_host: Option<String>,
    /// `ipa-advertise-port`; `None` advertises the port the API actually listens on.
    pub advertise_port: Option<u16>,
    /// `ipa-advertise-protocol`; `None` lets automatic TLS decide.
    pub advertise_protocol: Option<Protocol>,
    /// `ipa-listen-host` (default `::`).
    pub listen_host: IpAddr,
    /// `ipa-listen-port` (default 9999).
    pub listen_port: u16,
    /// `ipa-lookup-timeout`: give up looking up after this long.
    pub lookup_timeout: Duration,
    /// `ipa-lookup-interval`: the first lookup backoff.
    pub lookup_interval: Duration,
    /// `ipa-agent-token`: a pre-shared token; wins over the one the lookup hands out.
    pub agent_token: Option<String>,
    /// `ferrite-inspection-token`: the conductor's one-time token for posting inspection
    /// data (the ramdisk has no agent token before its lookup).
    pub inspection_token: Option<String>,
    /// `ipa-insecure`: skip TLS verification of the conductor.
    pub insecure: bool,
    /// `ipa-global-request-id`: sent as `X-OpenStack-Request-ID`.
    pub global_request_id: Option<String>,
    /// `ipa-debug`: debug logging.
    pub debug: bool,
    /// `ipa-network-interface`: advertise this interface's address.
    pub network_interface: Option<String>,
    /// `ipa-collect-lldp`: listen for LLDP frames on every NIC for the inventory.
    pub collect_lldp: bool,
    /// `ipa-lldp-timeout` (default 30 s, IPA's): how long to listen.
    pub lldp_timeout: Duration,
    /// `BOOTIF`: the MAC the machine PXE-booted from, as `aa:bb:cc:dd:ee:ff`.
    pub bootif: Option<String>,
    /// `ferrite-auto-tls` (default on): serve the API over a self-signed certificate.
    pub auto_tls: bool,
    /// What was ignored, for the log.
    pub warnings: Vec<String>,
}

impl Default for KernelParams {
    fn default() -> Self {
        KernelParams {
            api_url: None,
            inspection_callback_url: None,
            advertise_host: None,
            advertise_port: None,
            advertise_protocol: None,
            listen_host: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            listen_port: DEFAULT_AGENT_PORT,
            lookup_timeout: DEFAULT_LOOKUP_TIMEOUT,
            lookup_interval: DEFAULT_LOOKUP_INTERVAL,
            agent_token: None,
            inspection_token: None,
            insecure: false,
            global_request_id: None,
            debug: false,
            network_interface: None,
            collect_lldp: false,
            lldp_timeout: crate::inventory::LLDP_DEFAULT_TIMEOUT,
            bootif: None,
            auto_tls: true,
            warnings: Vec::new(),
        }
    }
}

/// A parameter we know carried a value we cannot use.
#[derive(Debug, thiserror::Error)]
#[error("kernel command line: {key}={value:?}: {reason}")]
pub struct CmdlineError {
    pub key: String,
    pub value: String,
    pub reason: String,
}

fn bad(key: &str, value: &str, reason: impl Into<String>) -> CmdlineError {
    CmdlineError {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// Splits a command line into words the way the kernel does: whitespace separates,
/// double quotes group (`key="a b"` and `"key=a b"`), quotes are removed.
pub fn split_words(line: &str) -> (Vec<String>, Option<String>) {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    let warning = quoted.then(|| "unterminated double quote; took the rest of the line".into());
    (words, warning)
}

/// Parses a kernel command line. Unknown words give warnings, bad values of known keys
/// an error naming the key.
pub fn parse(line: &str) -> Result<KernelParams, CmdlineError> {
    let mut p = KernelParams::default();
    let (words, warning) = split_words(line);
    p.warnings.extend(warning);
    for word in words {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word.as_str(), None),
        };
        if word.chars().any(char::is_control) {
            p.warnings
                .push(format!("ignored unprintable word {word:?}"));
            continue;
        }
        if !key.starts_with("ipa-") && !key.starts_with("ferrite-") && key != "BOOTIF" {
            continue; // the kernel's and other programs' parameters: not ours, not news
        }
        // A flag given without a value (`ipa-debug`) means "on".
        let flag_value = value.unwrap_or("1");
        let v = value.unwrap_or("");
        match key {
            "ipa-api-url" => p.api_url = parse_api_url(key, v, &mut p.warnings)?,
            "ipa-inspection-callback-url" => p.inspection_callback_url = Some(parse_url(key, v)?),
            "ipa-advertise-host" => p.advertise_host = Some(parse_host(key, v)?),
            "ipa-advertise-port" => p.advertise_port = Some(parse_port(key, v)?),
            "ipa-advertise-protocol" => {
                p.advertise_protocol = Some(match v.to_ascii_lowercase().as_str() {
                    "http" => Protocol::Http,
                    "https" => Protocol::Https,
                    _ => return Err(bad(key, v, "expected http or https")),
                })
            }
            "ipa-listen-host" => {
                p.listen_host = strip_brackets(v)
                    .parse()
                    .map_err(|_| bad(key, v, "expected an IP address such as :: or 0.0.0.0"))?
            }
            "ipa-listen-port" => p.listen_port = parse_port(key, v)?,
            "ipa-lookup-timeout" => p.lookup_timeout = parse_seconds(key, v)?,
            "ipa-lookup-interval" => p.lookup_interval = parse_seconds(key, v)?,
            "ipa-agent-token" => {
                if v.len() < MIN_TOKEN_LEN {
                    return Err(bad(
                        key,
                        "<hidden>",
                        format!(
                            "a token must be at least {MIN_TOKEN_LEN} characters, got {}",
                            v.len()
                        ),
                    ));
                }
                p.agent_token = Some(v.into());
            }
            "ferrite-inspection-token" => {
                if v.len() < MIN_TOKEN_LEN {
                    return Err(bad(
                        key,
                        "<hidden>",
                        format!(
                            "a token must be at least {MIN_TOKEN_LEN} characters, got {}",
                            v.len()
                        ),
                    ));
                }
                p.inspection_token = Some(v.into());
            }
            "ipa-insecure" => p.insecure = parse_bool(key, flag_value)?,
            "ipa-debug" => p.debug = parse_bool(key, flag_value)?,
            "ipa-collect-lldp" => p.collect_lldp = parse_bool(key, flag_value)?,
            "ipa-lldp-timeout" => p.lldp_timeout = parse_seconds(key, v)?,
            "ferrite-auto-tls" => p.auto_tls = parse_bool(key, flag_value)?,
            // Static addressing, for the ramdisk's init (done before the agent starts).
            "ferrite-net" => {}
            "ipa-global-request-id" => p.global_request_id = Some(parse_request_id(key, v)?),
            "ipa-network-interface" => {
                if v.is_empty() || v.contains('/') {
                    return Err(bad(key, v, "expected an interface name such as eth0"));
                }
                p.network_interface = Some(v.into());
            }
            "BOOTIF" => {
                p.bootif = Some(parse_bootif(v).ok_or_else(|| {
                    bad(
                        key,
                        v,
                        "expected 01-aa-bb-cc-dd-ee-ff (PXELINUX form) or aa:bb:cc:dd:ee:ff",
                    )
                })?)
            }
            _ => p
                .warnings
                .push(format!("ignored unknown parameter {key:?}")),
        }
    }
    Ok(p)
}

fn parse_url(key: &str, v: &str) -> Result<Url, CmdlineError> {
    let url = Url::parse(v).map_err(|e| bad(key, v, format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad(
            key,
            v,
            "expected an http:// or https:// URL with a host",
        ));
    }
    Ok(url)
}

fn parse_api_url(
    key: &str,
    v: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<Url>, CmdlineError> {
    if v == "mdns" {
        return Err(bad(
            key,
            v,
            "mDNS discovery is not supported; give the conductor's URL, e.g. http://HOST:6385",
        ));
    }
    let mut urls = v.split(',').filter(|s| !s.is_empty());
    let Some(first) = urls.next() else {
        return Err(bad(
            key,
            v,
            "empty; give the conductor's URL, e.g. http://HOST:6385",
        ));
    };
    let url = parse_url(key, first)?;
    let rest: Vec<&str> = urls.collect();
    if !rest.is_empty() {
        warnings.push(format!(
            "ipa-api-url lists several conductors; using {first} and ignoring {}",
            rest.join(",")
        ));
    }
    Ok(Some(url))
}

fn strip_brackets(v: &str) -> &str {
    v.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(v)
}

fn parse_host(key: &str, v: &str) -> Result<String, CmdlineError> {
    let host = strip_brackets(v);
    if host.parse::<IpAddr>().is_ok() {
        return Ok(host.into());
    }
    let dns_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
        });
    if dns_ok {
        Ok(host.into())
    } else {
        Err(bad(key, v, "expected an IP address or a DNS name"))
    }
}

fn parse_port(key: &str, v: &str) -> Result<u16, CmdlineError> {
    match v.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad(key, v, "expected a port number 1-65535")),
        Ok(port) => Ok(port),
    }
}

fn parse_seconds(key: &str, v: &str) -> Result<Duration, CmdlineError> {
    let secs: f64 = v
        .parse()
        .map_err(|_| bad(key, v, "expected a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(bad(key, v, "expected a positive number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_bool(key: &str, v: &str) -> Result<bool, CmdlineError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" | "t" => Ok(true),
        "0" | "false" | "no" | "off" | "n" | "f" => Ok(false),
        _ => Err(bad(key, v, "expected 1/0, true/false, yes/no or on/off")),
    }
}

fn parse_request_id(key: &str, v: &str) -> Result<String, CmdlineError> {
    let ok = v
        .strip_prefix("req-")
        .is_some_and(|u| uuid::Uuid::try_parse(u).is_ok());
    if ok {
        Ok(v.into())
    } else {
        Err(bad(
            key,
            v,
            "expected req-<uuid>, as OpenStack request ids are",
        ))
    }
}

/// `01-aa-bb-cc-dd-ee-ff` (hardware type 1 = Ethernet, as PXELINUX and iPXE write it) or a
/// plain MAC → `aa:bb:cc:dd:ee:ff`.
pub fn parse_bootif(v: &str) -> Option<String> {
    let parts: Vec<&str> = v.split(['-', ':']).collect();
    let octets = match parts.len() {
        7 if parts[0] == "01" => &parts[1..],
        6 => &parts[..],
        _ => return None,
    };
    let ok = octets
        .iter()
        .all(|o| o.len() == 2 && o.chars().all(|c| c.is_ascii_hexdigit()));
    ok.then(|| octets.join(":").to_ascii_lowercase())
}

/// Reads `--cmdline FILE|STRING`: a path that exists is read, anything else is taken
/// as the command line itself; `None` reads `/proc/cmdline`.
pub fn load(arg: Option<&str>) -> Result<String, std::io::Error> {
    match arg {
        None => std::fs::read_to_string("/proc/cmdline"),
        Some(a) if std::path::Path::new(a).is_file() => std::fs::read_to_string(a),
        Some(a) => Ok(a.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn typical_ramdisk_line() {
        let line = format!(
            "BOOT_IMAGE=/vmlinuz root=/dev/ram0 console=ttyS0,115200 quiet \
             ipa-api-url=http://10.0.2.2:6385 ipa-inspection-callback-url=http://10.0.2.2:6385/v1/continue_inspection \
             ipa-advertise-host=127.0.0.1 ipa-advertise-port=40001 ipa-lookup-timeout=30 \
             ipa-lookup-interval=0.5 ipa-agent-token={TOKEN} ipa-insecure=1 ipa-debug \
             ipa-global-request-id=req-1b2c3d4e-1111-2222-3333-444455556666 \
             ipa-network-interface=eth0 BOOTIF=01-52-54-00-AB-CD-EF ferrite-auto-tls=0"
        );
        let p = parse(&line).unwrap();
        assert_eq!(p.api_url.unwrap().as_str(), "http://10.0.2.2:6385/");
        assert_eq!(
            p.inspection_callback_url.unwrap().path(),
            "/v1/continue_inspection"
        );
        assert_eq!(p.advertise_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(p.advertise_port, Some(40001));
        assert_eq!(p.lookup_timeout, Duration::from_secs(30));
        assert_eq!(p.lookup_interval, Duration::from_millis(500));
        assert_eq!(p.agent_token.as_deref(), Some(TOKEN));
        assert!(p.insecure && p.debug && !p.auto_tls);
        assert_eq!(p.network_interface.as_deref(), Some("eth0"));
        assert_eq!(p.bootif.as_deref(), Some("52:54:00:ab:cd:ef"));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(p.listen_port, DEFAULT_AGENT_PORT);
    }

    #[test]
    fn defaults_when_nothing_is_given() {
        let p = parse("").unwrap();
        assert_eq!(p, KernelParams::default());
        assert_eq!(p.listen_host.to_string(), "::");
        assert_eq!(p.lookup_timeout, Duration::from_secs(600));
        assert!(!p.collect_lldp);
        assert_eq!(p.lldp_timeout, Duration::from_secs(30));
    }

    #[test]
    fn lldp_collection_as_ipa_spells_it() {
        let p = parse("ipa-collect-lldp=1 ipa-lldp-timeout=2.5").unwrap();
        assert!(p.collect_lldp);
        assert_eq!(p.lldp_timeout, Duration::from_millis(2500));
        assert!(parse("ipa-collect-lldp").unwrap().collect_lldp);
        assert!(!parse("ipa-collect-lldp=0").unwrap().collect_lldp);
        assert!(parse("ipa-lldp-timeout=soon").is_err());
    }

    #[test]
    fn garbage_and_unknown_parameters_are_tolerated() {
        let p =
            parse("=== \u{1}\u{2} ipa-frobnicate=7 ipa-api-url=http://c:1 \"unterminated").unwrap();
        assert_eq!(p.api_url.unwrap().host_str(), Some("c"));
        assert!(p.warnings.iter().any(|w| w.contains("ipa-frobnicate")));
        assert!(p.warnings.iter().any(|w| w.contains("quote")));
        assert!(p.warnings.iter().any(|w| w.contains("unprintable")));
    }

    #[test]
    fn the_ramdisk_inits_static_addressing_is_known_and_left_alone() {
        let p =
            parse("ipa-api-url=http://c:1 ferrite-net=52:54:00:fe:30:01,10.0.2.15/24,10.0.2.2,")
                .unwrap();
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn quotes_group_words() {
        let (w, warn) = split_words("a=\"x y\" \"b=c d\"  e");
        assert_eq!(w, ["a=x y", "b=c d", "e"]);
        assert!(warn.is_none());
    }

    #[test]
    fn bad_values_name_the_key() {
        for (line, key) in [
            ("ipa-advertise-port=eighty", "ipa-advertise-port"),
            ("ipa-advertise-port=0", "ipa-advertise-port"),
            ("ipa-listen-port=70000", "ipa-listen-port"),
            ("ipa-api-url=not%20a%20url", "ipa-api-url"),
            ("ipa-api-url=ftp://x/", "ipa-api-url"),
            ("ipa-api-url=mdns", "ipa-api-url"),
            (
                "ipa-inspection-callback-url=::",
                "ipa-inspection-callback-url",
            ),
            ("ipa-lookup-timeout=-3", "ipa-lookup-timeout"),
            ("ipa-lookup-interval=soon", "ipa-lookup-interval"),
            ("ipa-insecure=maybe", "ipa-insecure"),
            ("ipa-advertise-protocol=gopher", "ipa-advertise-protocol"),
            ("ipa-advertise-host=bad_host!", "ipa-advertise-host"),
            ("ipa-listen-host=example.com", "ipa-listen-host"),
            ("ipa-agent-token=short", "ipa-agent-token"),
            ("ferrite-inspection-token=short", "ferrite-inspection-token"),
            ("ipa-global-request-id=abc", "ipa-global-request-id"),
            ("BOOTIF=01-zz-bb-cc-dd-ee-ff", "BOOTIF"),
            ("BOOTIF=01-aa-bb", "BOOTIF"),
        ] {
            let err = parse(line).expect_err(line);
            assert_eq!(err.key, key, "{line}");
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn inspection_token_is_read() {
        let t = "t".repeat(43);
        let p = parse(&format!("ferrite-inspection-token={t}")).unwrap();
        assert_eq!(p.inspection_token.as_deref(), Some(t.as_str()));
        assert_eq!(p.agent_token, None);
    }

    #[test]
    fn token_is_not_echoed_in_errors() {
        let err = parse("ipa-agent-token=secret").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn bootif_forms() {
        assert_eq!(
            parse_bootif("01-aa-bb-cc-dd-ee-ff").unwrap(),
            "aa:bb:cc:dd:ee:ff"
        );
        assert_eq!(
            parse_bootif("AA:BB:CC:DD:EE:FF").unwrap(),
            "aa:bb:cc:dd:ee:ff"
        );
        assert!(parse_bootif("06-aa-bb-cc-dd-ee-ff").is_none());
        assert!(parse_bootif("").is_none());
    }

    #[test]
    fn ipv6_hosts_and_several_api_urls() {
        let p = parse("ipa-advertise-host=[fd00::5] ipa-listen-host=[::1] ipa-api-url=http://[fd00::1]:6385,http://b:6385").unwrap();
        assert_eq!(p.advertise_host.as_deref(), Some("fd00::5"));
        assert_eq!(p.listen_host.to_string(), "::1");
        assert_eq!(p.api_url.unwrap().host_str(), Some("[fd00::1]"));
        assert!(p.warnings.iter().any(|w| w.contains("several")));
    }

    #[test]
    fn load_takes_a_file_or_a_string() {
        let dir = std::env::temp_dir().join(format!("ferrite-cmdline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("cmdline");
        std::fs::write(&f, "ipa-debug=1\n").unwrap();
        assert_eq!(load(Some(f.to_str().unwrap())).unwrap(), "ipa-debug=1\n");
        assert_eq!(load(Some("ipa-debug=0")).unwrap(), "ipa-debug=0");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
