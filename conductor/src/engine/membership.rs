//! Conductor membership: who is alive (rows of the `conductors` table whose heartbeat,
//! `updated_at`, is younger than `--dead-after`), and which of them owns a node (the hash
//! ring of the node's conductor group and hardware type). Read from the database at most
//! once per [`TTL`] and shared by every caller in between.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ring::HashRing;
use super::{Conductor, EResult};
use crate::db::ConductorRow;
use crate::model::{age_secs, Node};

/// How long a membership snapshot is used before the table is read again.
pub const TTL: Duration = Duration::from_secs(1);

/// The live conductors at one moment, and their rings.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// This conductor's hostname (always counted alive by itself).
    pub me: String,
    /// Alive conductors, by hostname.
    pub live: HashMap<String, ConductorRow>,
    /// Conductors with a row that are not alive: their locks may be broken.
    dead: std::collections::HashSet<String>,
    /// One ring per (conductor group, hardware type) some live conductor serves.
    rings: HashMap<(String, String), HashRing>,
}

/// A node's conductor group as the ring reads it (lower-case, `""` for none).
pub fn node_group(node: &Node) -> String {
    node.ext("conductor_group")
        .as_str()
        .unwrap_or("")
        .to_ascii_lowercase()
}

impl Snapshot {
    /// Builds the snapshot from the table's rows: alive = not shut down cleanly and a
    /// heartbeat younger than `dead_after`. `me` is alive whatever its row says.
    pub fn new(me: &ConductorRow, rows: Vec<ConductorRow>, dead_after: Duration, exp: u32) -> Self {
        let known: Vec<String> = rows.iter().map(|r| r.hostname.clone()).collect();
        let mut live: HashMap<String, ConductorRow> = rows
            .into_iter()
            .filter(|r| {
                r.online
                    && r.updated_at
                        .as_deref()
                        .and_then(age_secs)
                        .is_some_and(|age| age <= dead_after.as_secs_f64())
            })
            .map(|r| (r.hostname.clone(), r))
            .collect();
        live.insert(me.hostname.clone(), me.clone());
        let mut members: HashMap<(String, String), Vec<&str>> = HashMap::new();
        for c in live.values() {
            for d in &c.drivers {
                members
                    .entry((c.conductor_group.to_ascii_lowercase(), d.clone()))
                    .or_default()
                    .push(&c.hostname);
            }
        }
        let rings = members
            .into_iter()
            .map(|(k, hosts)| (k, HashRing::new(&hosts, exp)))
            .collect();
        let dead = known
            .into_iter()
            .filter(|h| !live.contains_key(h))
            .collect();
        Snapshot {
            me: me.hostname.clone(),
            live,
            dead,
            rings,
        }
    }

    pub fn is_alive(&self, host: &str) -> bool {
        self.live.contains_key(host)
    }

    /// A conductor that registered and stopped heartbeating. A lock holder that never
    /// registered (a tool, another installation) is neither alive nor dead: its locks stay.
    pub fn is_dead(&self, host: &str) -> bool {
        self.dead.contains(host)
    }

    /// The live conductor that owns the node of `uuid` in `group` with hardware type
    /// `driver`; `None` when no live conductor serves that group and type.
    pub fn owner_of(&self, uuid: &str, group: &str, driver: &str) -> Option<&ConductorRow> {
        let ring = self.rings.get(&(group.to_string(), driver.to_string()))?;
        ring.owner(uuid).and_then(|h| self.live.get(h))
    }

    pub fn owner(&self, node: &Node) -> Option<&ConductorRow> {
        self.owner_of(&node.uuid, &node_group(node), &node.driver)
    }

    /// Whether this conductor owns the node.
    pub fn owns(&self, node: &Node) -> bool {
        self.owner(node).is_some_and(|c| c.hostname == self.me)
    }
}

/// A takeover pass looks at every node another conductor handled last at least once in
/// this many passes, and whenever membership changed.
pub const FULL_SCAN_EVERY: u32 = 6;

/// (hostname, group) of each live conductor, sorted: what a full scan saw.
type LiveSet = Vec<(String, String)>;

/// The cached snapshot.
#[derive(Default)]
pub struct Membership {
    cached: Mutex<Option<(Instant, Arc<Snapshot>)>>,
    /// The live set the last full takeover scan saw, and the passes since.
    scanned: Mutex<Option<(LiveSet, u32)>>,
}

impl Membership {
    /// Whether this takeover pass must look at every node (see [`FULL_SCAN_EVERY`]).
    pub fn full_scan_due(&self, snap: &Snapshot) -> bool {
        let mut live: LiveSet = snap
            .live
            .values()
            .map(|c| (c.hostname.clone(), c.conductor_group.clone()))
            .collect();
        live.sort();
        let mut scanned = self.scanned.lock().unwrap_or_else(|e| e.into_inner());
        match scanned.as_mut() {
            Some((seen, passes)) if *seen == live && *passes + 1 < FULL_SCAN_EVERY => {
                *passes += 1;
                false
            }
            _ => {
                *scanned = Some((live, 0));
                true
            }
        }
    }
}

impl Conductor {
    /// This conductor's own row, as it registers it.
    pub fn me(&self) -> ConductorRow {
        ConductorRow {
            hostname: self.cfg.host.clone(),
            conductor_group: self.cfg.conductor_group.clone(),
            drivers: self.drivers.names().into_iter().map(String::from).collect(),
            online: true,
            created_at: String::new(),
            updated_at: None,
            api_url: self.cfg.api_url.clone(),
        }
    }

    /// The membership snapshot, read again when older than [`TTL`] (or `fresh`).
    pub async fn members(&self, fresh: bool) -> EResult<Arc<Snapshot>> {
        if !fresh {
            let c = self
                .membership
                .cached
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some((at, snap)) = c.as_ref() {
                if at.elapsed() < TTL {
                    return Ok(snap.clone());
                }
            }
        }
        let rows = self.db.conductors().await?;
        let snap = Arc::new(Snapshot::new(
            &self.me(),
            rows,
            self.cfg.dead_after,
            self.cfg.hash_partition_exponent,
        ));
        *self
            .membership
            .cached
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), snap.clone()));
        Ok(snap)
    }
}

impl Conductor {
    /// Where to forward a request for `target`: the owner's URL, or `None` when this
    /// conductor owns the node, the node is unknown, or its owner has no URL. Alone in
    /// the cluster, a conductor reads nothing.
    /// `fresh`: read the membership again instead of the cached snapshot.
    pub async fn owner_url(
        &self,
        target: &crate::api::forward::Target,
        fresh: bool,
    ) -> EResult<Option<String>> {
        use crate::api::forward::Target;
        let members = self.members(fresh).await?;
        if members.live.len() == 1 {
            return Ok(None);
        }
        let ident = match target {
            Target::Node(ident) => ident.clone(),
            Target::Macs(macs) => match self.db.nodes_by_macs(macs).await?.as_slice() {
                [one] => one.clone(),
                _ => return Ok(None),
            },
        };
        let Some((uuid, driver, group)) = self.db.node_route(&ident).await? else {
            return Ok(None);
        };
        Ok(members
            .owner_of(&uuid, &group, &driver)
            .filter(|o| o.hostname != self.cfg.host)
            .and_then(|o| o.api_url.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(host: &str, group: &str, age: i64, online: bool) -> ConductorRow {
        let t = time::OffsetDateTime::now_utc() - time::Duration::seconds(age);
        ConductorRow {
            hostname: host.into(),
            conductor_group: group.into(),
            drivers: vec!["fake-hardware".into()],
            online,
            created_at: String::new(),
            updated_at: t
                .format(&time::format_description::well_known::Rfc3339)
                .ok(),
            api_url: Some(format!("http://{host}")),
        }
    }

    #[test]
    fn liveness_follows_heartbeat_age_and_the_online_flag() {
        let me = row("me", "", 0, true);
        let rows = vec![
            row("fresh", "", 5, true),
            row("stale", "", 120, true),
            row("stopped", "", 1, false),
            row("me", "", 999, false),
        ];
        let s = Snapshot::new(&me, rows, Duration::from_secs(60), 5);
        assert!(s.is_alive("fresh") && s.is_alive("me"));
        assert!(!s.is_alive("stale") && !s.is_alive("stopped") && !s.is_alive("unknown"));
        assert!(s.is_dead("stale") && s.is_dead("stopped"));
        assert!(!s.is_dead("unknown") && !s.is_dead("me") && !s.is_dead("fresh"));
    }

    #[test]
    fn a_full_scan_follows_membership_changes_and_every_few_passes() {
        let me = row("me", "", 0, true);
        let one = Snapshot::new(&me, vec![], Duration::from_secs(60), 5);
        let two = Snapshot::new(&me, vec![row("b", "", 0, true)], Duration::from_secs(60), 5);
        let m = Membership::default();
        assert!(m.full_scan_due(&one), "the first pass");
        for _ in 1..FULL_SCAN_EVERY {
            assert!(!m.full_scan_due(&one));
        }
        assert!(m.full_scan_due(&one), "every FULL_SCAN_EVERY passes");
        assert!(!m.full_scan_due(&one));
        assert!(m.full_scan_due(&two), "a conductor came");
        assert!(!m.full_scan_due(&two));
        assert!(m.full_scan_due(&one), "a conductor went");
    }

    #[test]
    fn nodes_map_only_to_conductors_of_their_group() {
        let me = row("me", "", 0, true);
        let rows = vec![
            row("rack1-a", "rack1", 0, true),
            row("rack1-b", "rack1", 0, true),
        ];
        let s = Snapshot::new(&me, rows, Duration::from_secs(60), 5);
        for i in 0..50 {
            let uuid = format!("node-{i}");
            let o = s.owner_of(&uuid, "rack1", "fake-hardware").unwrap();
            assert!(o.hostname.starts_with("rack1-"), "{}", o.hostname);
            assert_eq!(
                s.owner_of(&uuid, "", "fake-hardware").unwrap().hostname,
                "me"
            );
            assert!(s.owner_of(&uuid, "rack2", "fake-hardware").is_none());
            assert!(s.owner_of(&uuid, "", "ipmi").is_none());
        }
    }
}
