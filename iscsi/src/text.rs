//! Login/Text key=value data (RFC 7143 §6) and operational parameter negotiation. No I/O.

use std::fmt::Write as _;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TextError {
    #[error("text data is not UTF-8")]
    NotUtf8,
    #[error("text pair {0:?} has no '='")]
    NoEquals(String),
    #[error("text key {0:?} is empty or longer than 63 bytes")]
    BadKey(String),
    #[error("value of {key} is longer than {max} bytes")]
    ValueTooLong { key: String, max: usize },
    #[error("key {0} appears twice")]
    Duplicate(String),
}

/// Ordered key=value pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairs(pub Vec<(String, String)>);

impl Pairs {
    pub fn new() -> Pairs {
        Pairs(Vec::new())
    }

    /// Parses NUL-separated `key=value` pairs; trailing NUL padding is allowed.
    pub fn parse(data: &[u8]) -> Result<Pairs, TextError> {
        let mut out: Vec<(String, String)> = Vec::new();
        for item in data.split(|&b| b == 0) {
            if item.is_empty() {
                continue;
            }
            let s = std::str::from_utf8(item).map_err(|_| TextError::NotUtf8)?;
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| TextError::NoEquals(s.chars().take(64).collect()))?;
            if k.is_empty() || k.len() > 63 {
                return Err(TextError::BadKey(k.chars().take(64).collect()));
            }
            // CHAP challenges/responses and SendTargets answers may be long; 8192 bounds all.
            let max = if k.starts_with("CHAP_") { 8192 } else { 4096 };
            if v.len() > max {
                return Err(TextError::ValueTooLong { key: k.into(), max });
            }
            if out.iter().any(|(ok, _)| ok == k) {
                return Err(TextError::Duplicate(k.into()));
            }
            out.push((k.to_string(), v.to_string()));
        }
        Ok(Pairs(out))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn push(&mut self, key: &str, value: impl Into<String>) {
        self.0.push((key.to_string(), value.into()));
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::new();
        for (k, v) in &self.0 {
            let _ = write!(s, "{k}={v}\0");
        }
        s.into_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Operational parameters of a session/connection after negotiation (RFC 7143 §13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub header_digest: bool,
    pub data_digest: bool,
    /// What the peer can receive per PDU (its declared MaxRecvDataSegmentLength).
    pub peer_max_recv_data: u32,
    /// What we receive per PDU (our declared MaxRecvDataSegmentLength).
    pub max_recv_data: u32,
    pub max_burst: u32,
    pub first_burst: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    pub max_outstanding_r2t: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            header_digest: false,
            data_digest: false,
            peer_max_recv_data: 8192,
            max_recv_data: 8192,
            max_burst: 262144,
            first_burst: 65536,
            immediate_data: true,
            initial_r2t: true,
            max_outstanding_r2t: 1,
        }
    }
}

/// What this side offers in negotiation.
#[derive(Debug, Clone, Copy)]
pub struct Offer {
    pub max_recv_data: u32,
    pub max_burst: u32,
    pub first_burst: u32,
    pub allow_digests: bool,
}

impl Default for Offer {
    fn default() -> Self {
        Offer {
            max_recv_data: 262144,
            max_burst: 1048576,
            first_burst: 262144,
            allow_digests: true,
        }
    }
}

fn num(v: &str) -> Option<u64> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        v.parse().ok()
    }
}

fn clamp_len(v: u64) -> u32 {
    v.clamp(512, 0x00ff_ffff) as u32
}

/// Target side: answers one batch of the initiator's operational keys, updating `p`.
/// Keys handled elsewhere (names, SessionType, AuthMethod, CHAP_*) must be removed first.
pub fn negotiate_target(req: &Pairs, offer: &Offer, p: &mut Params) -> Pairs {
    let mut out = Pairs::new();
    for (k, v) in &req.0 {
        let k = k.as_str();
        match k {
            "HeaderDigest" | "DataDigest" => {
                let choice = v
                    .split(',')
                    .find(|c| *c == "None" || (offer.allow_digests && *c == "CRC32C"));
                let choice = choice.unwrap_or("Reject");
                let on = choice == "CRC32C";
                if k == "HeaderDigest" {
                    p.header_digest = on;
                } else {
                    p.data_digest = on;
                }
                out.push(k, choice);
            }
            "MaxRecvDataSegmentLength" => match num(v) {
                Some(n) => p.peer_max_recv_data = clamp_len(n),
                None => out.push(k, "Reject"),
            },
            "MaxBurstLength" => match num(v) {
                Some(n) => {
                    p.max_burst = clamp_len(n.min(offer.max_burst as u64));
                    out.push(k, p.max_burst.to_string());
                }
                None => out.push(k, "Reject"),
            },
            "FirstBurstLength" => match num(v) {
                Some(n) => {
                    p.first_burst = clamp_len(n.min(offer.first_burst as u64));
                    out.push(k, p.first_burst.to_string());
                }
                None => out.push(k, "Reject"),
            },
            "ImmediateData" => {
                p.immediate_data = v == "Yes";
                out.push(k, if p.immediate_data { "Yes" } else { "No" });
            }
            // We always require the first burst to be solicited: OR with our Yes.
            "InitialR2T" => {
                p.initial_r2t = true;
                out.push(k, "Yes");
            }
            "DataPDUInOrder" | "DataSequenceInOrder" => out.push(k, "Yes"),
            "MaxOutstandingR2T" => {
                p.max_outstanding_r2t = 1;
                out.push(k, "1");
            }
            "ErrorRecoveryLevel" => out.push(k, "0"),
            "MaxConnections" => out.push(k, "1"),
            "DefaultTime2Wait" => out.push(k, "2"),
            "DefaultTime2Retain" => out.push(k, "0"),
            "IFMarker" | "OFMarker" => out.push(k, "No"),
            "InitiatorAlias" | "TargetAlias" => {}
            _ => out.push(k, "NotUnderstood"),
        }
    }
    if out.get("MaxBurstLength").is_some() || req.get("MaxRecvDataSegmentLength").is_some() {
        // Keep FirstBurstLength ≤ MaxBurstLength whatever order the keys came in.
        p.first_burst = p.first_burst.min(p.max_burst);
    }
    out
}

/// The declarative key the target always sends once in operational negotiation.
pub fn target_declarations(offer: &Offer, p: &mut Params) -> Pairs {
    let mut out = Pairs::new();
    p.max_recv_data = offer.max_recv_data;
    out.push("MaxRecvDataSegmentLength", offer.max_recv_data.to_string());
    out
}

/// Initiator side: the keys we propose.
pub fn initiator_offer(offer: &Offer) -> Pairs {
    let mut out = Pairs::new();
    out.push("HeaderDigest", "None");
    out.push("DataDigest", "None");
    out.push("MaxRecvDataSegmentLength", offer.max_recv_data.to_string());
    out.push("MaxBurstLength", offer.max_burst.to_string());
    out.push("FirstBurstLength", offer.first_burst.to_string());
    out.push("ImmediateData", "Yes");
    out.push("InitialR2T", "Yes");
    out.push("DataPDUInOrder", "Yes");
    out.push("DataSequenceInOrder", "Yes");
    out.push("MaxOutstandingR2T", "1");
    out.push("ErrorRecoveryLevel", "0");
    out.push("MaxConnections", "1");
    out.push("DefaultTime2Wait", "0");
    out.push("DefaultTime2Retain", "0");
    out
}

/// Initiator side: applies the target's answers to our offer.
pub fn apply_target_answers(ans: &Pairs, offer: &Offer, p: &mut Params) {
    p.max_recv_data = offer.max_recv_data;
    for (k, v) in &ans.0 {
        match k.as_str() {
            "HeaderDigest" => p.header_digest = v == "CRC32C",
            "DataDigest" => p.data_digest = v == "CRC32C",
            "MaxRecvDataSegmentLength" => {
                if let Some(n) = num(v) {
                    p.peer_max_recv_data = clamp_len(n)
                }
            }
            "MaxBurstLength" => {
                if let Some(n) = num(v) {
                    p.max_burst = clamp_len(n.min(offer.max_burst as u64))
                }
            }
            "FirstBurstLength" => {
                if let Some(n) = num(v) {
                    p.first_burst = clamp_len(n.min(offer.first_burst as u64))
                }
            }
            "ImmediateData" => p.immediate_data = v == "Yes",
            "InitialR2T" => p.initial_r2t = v != "No",
            "MaxOutstandingR2T" => {
                if let Some(n) = num(v) {
                    p.max_outstanding_r2t = n.clamp(1, 65535) as u32
                }
            }
            _ => {}
        }
    }
    p.first_burst = p.first_burst.min(p.max_burst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_encode_round_trip() {
        let raw = b"InitiatorName=iqn.2024-01.x:y\0SessionType=Normal\0\0\0";
        let p = Pairs::parse(raw).unwrap();
        assert_eq!(p.get("InitiatorName"), Some("iqn.2024-01.x:y"));
        assert_eq!(p.get("SessionType"), Some("Normal"));
        assert_eq!(
            p.encode(),
            b"InitiatorName=iqn.2024-01.x:y\0SessionType=Normal\0".to_vec()
        );
    }

    #[test]
    fn parse_rejects_bad_text() {
        assert_eq!(
            Pairs::parse(b"novalue\0"),
            Err(TextError::NoEquals("novalue".into()))
        );
        assert!(matches!(Pairs::parse(b"=x\0"), Err(TextError::BadKey(_))));
        assert_eq!(Pairs::parse(b"\xff=1\0"), Err(TextError::NotUtf8));
        assert_eq!(
            Pairs::parse(b"A=1\0A=2\0"),
            Err(TextError::Duplicate("A".into()))
        );
        let long = format!("K={}\0", "x".repeat(5000));
        assert!(matches!(
            Pairs::parse(long.as_bytes()),
            Err(TextError::ValueTooLong { .. })
        ));
    }

    #[test]
    fn target_negotiation_takes_minimums_and_forces_r2t() {
        let req = Pairs::parse(
            b"HeaderDigest=CRC32C,None\0DataDigest=None\0MaxRecvDataSegmentLength=65536\0\
              MaxBurstLength=16776192\0FirstBurstLength=300000\0ImmediateData=Yes\0\
              InitialR2T=No\0MaxOutstandingR2T=8\0ErrorRecoveryLevel=2\0X-foo=1\0",
        )
        .unwrap();
        let mut p = Params::default();
        let ans = negotiate_target(&req, &Offer::default(), &mut p);
        assert!(p.header_digest && !p.data_digest);
        assert_eq!(p.peer_max_recv_data, 65536);
        assert_eq!(ans.get("MaxBurstLength"), Some("1048576"));
        assert_eq!(ans.get("FirstBurstLength"), Some("262144"));
        assert_eq!(ans.get("InitialR2T"), Some("Yes"));
        assert_eq!(ans.get("MaxOutstandingR2T"), Some("1"));
        assert_eq!(ans.get("ErrorRecoveryLevel"), Some("0"));
        assert_eq!(ans.get("X-foo"), Some("NotUnderstood"));
        assert!(ans.get("MaxRecvDataSegmentLength").is_none());
        assert!(p.initial_r2t && p.immediate_data);
    }

    #[test]
    fn initiator_applies_answers() {
        let offer = Offer::default();
        let mut p = Params::default();
        let ans =
            Pairs::parse(b"MaxRecvDataSegmentLength=8192\0MaxBurstLength=65536\0FirstBurstLength=131072\0ImmediateData=No\0").unwrap();
        apply_target_answers(&ans, &offer, &mut p);
        assert_eq!(p.peer_max_recv_data, 8192);
        assert_eq!(p.max_burst, 65536);
        assert_eq!(p.first_burst, 65536);
        assert!(!p.immediate_data);
    }
}
