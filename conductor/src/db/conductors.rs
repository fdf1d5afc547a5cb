//! The conductors' rows (membership and heartbeats) and the node queries of takeovers
//! and request routing (engine::membership, engine::takeover, api::forward).

use sqlx::Row;

use super::{Db, Result};

impl Db {
    /// Records this conductor as alive: its group, drivers and the URL the other
    /// conductors forward its nodes' requests to. Also its first heartbeat.
    pub async fn register_conductor(&self, me: &ConductorRow) -> Result<()> {
        let now = crate::model::now();
        let drivers = serde_json::to_string(&me.drivers).unwrap_or_default();
        sqlx::query(
            "INSERT INTO conductors (hostname, drivers, alive, created_at, updated_at, \
             conductor_group, api_url) VALUES ($1, $2, 1, $3, $3, $4, $5) \
             ON CONFLICT (hostname) DO UPDATE SET drivers = $2, alive = 1, updated_at = $3, \
             conductor_group = $4, api_url = $5",
        )
        .bind(&me.hostname)
        .bind(drivers)
        .bind(now)
        .bind(&me.conductor_group)
        .bind(me.api_url.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The conductor's heartbeat: `updated_at` is now. False when its row is gone (the
    /// caller registers again).
    pub async fn conductor_heartbeat(&self, hostname: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE conductors SET updated_at = $1, alive = 1 WHERE hostname = $2")
            .bind(crate::model::now())
            .bind(hostname)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn unregister_conductor(&self, hostname: &str) -> Result<()> {
        sqlx::query("UPDATE conductors SET alive = 0 WHERE hostname = $1")
            .bind(hostname)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every conductor row, by hostname.
    pub async fn conductors(&self) -> Result<Vec<ConductorRow>> {
        let rows = sqlx::query(
            "SELECT hostname, drivers, alive, created_at, updated_at, conductor_group, api_url \
             FROM conductors ORDER BY hostname",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = vec![];
        for r in rows {
            let drivers: String = r.try_get("drivers")?;
            out.push(ConductorRow {
                hostname: r.try_get("hostname")?,
                conductor_group: r.try_get("conductor_group")?,
                drivers: serde_json::from_str(&drivers).unwrap_or_default(),
                online: r.try_get::<i64, _>("alive")? != 0,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
                api_url: r.try_get("api_url")?,
            });
        }
        Ok(out)
    }

    /// Breaks each (node, holder) lock if that holder still holds it (the holders are
    /// dead conductors); returns the nodes whose lock was broken. One statement per
    /// holder and 500 nodes.
    pub async fn break_reservations(&self, locks: &[(String, String)]) -> Result<Vec<String>> {
        let mut by_holder: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for (uuid, holder) in locks {
            by_holder.entry(holder).or_default().push(uuid);
        }
        let mut broken = vec![];
        for (holder, uuids) in by_holder {
            for chunk in uuids.chunks(CHUNK) {
                let sql = format!(
                    "UPDATE nodes SET reservation = NULL WHERE reservation = $1 \
                     AND uuid IN ({}) RETURNING uuid",
                    placeholders(2, chunk.len())
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(holder);
                for u in chunk {
                    q = q.bind(*u);
                }
                for r in q.fetch_all(&self.pool).await? {
                    broken.push(r.try_get("uuid")?);
                }
            }
        }
        Ok(broken)
    }

    /// Sets the `conductor` column of the unlocked nodes among `uuids` (the conductor
    /// whose disk holds their boot files, or that handles them); locked ones are left.
    pub async fn set_nodes_conductor(&self, uuids: &[String], host: &str) -> Result<u64> {
        let mut n = 0;
        for chunk in uuids.chunks(CHUNK) {
            let sql = format!(
                "UPDATE nodes SET conductor = $1 WHERE reservation IS NULL AND uuid IN ({})",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(host);
            for u in chunk {
                q = q.bind(u);
            }
            n += q.execute(&self.pool).await?.rows_affected();
        }
        Ok(n)
    }
}

/// Nodes per batched statement.
const CHUNK: usize = 500;

/// `$first, $first+1, …` (`n` of them).
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a takeover pass reads of a node: enough to find its owner and whether to act.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeKey {
    pub uuid: String,
    pub driver: String,
    /// Its conductor group, lower-case.
    pub group: String,
    pub reservation: Option<String>,
    pub conductor: Option<String>,
    pub provision_state: String,
    pub boot_interface: String,
}

impl Db {
    /// The nodes a takeover pass of conductor `me` may act on: locked ones and ones in
    /// the `working` states; with `all`, also those another conductor handled last.
    pub async fn takeover_keys(
        &self,
        me: &str,
        working: &[&str],
        all: bool,
    ) -> Result<Vec<NodeKey>> {
        let others = if all {
            "OR conductor IS NULL OR conductor <> $1"
        } else {
            // $1 is bound either way; this keeps the placeholders numbered alike.
            "OR conductor = $1 AND 1 = 0"
        };
        let sql = format!(
            "SELECT uuid, driver, extended, reservation, conductor, provision_state, \
             boot_interface FROM nodes WHERE reservation IS NOT NULL {others} \
             OR provision_state IN ({})",
            placeholders(2, working.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(me);
        for s in working {
            q = q.bind(*s);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let extended: String = r.try_get("extended")?;
            out.push(NodeKey {
                uuid: r.try_get("uuid")?,
                driver: r.try_get("driver")?,
                group: crate::engine::takeover::group_of_extended(&extended),
                reservation: r.try_get("reservation")?,
                conductor: r.try_get("conductor")?,
                provision_state: r.try_get("provision_state")?,
                boot_interface: r.try_get("boot_interface")?,
            });
        }
        Ok(out)
    }
}

impl Db {
    /// (uuid, hardware type, conductor group) of the node `ident` (UUID, or name when not
    /// UUID-like): what routing a request to its owner needs, in one narrow read.
    pub async fn node_route(&self, ident: &str) -> Result<Option<(String, String, String)>> {
        let col = if crate::model::is_uuid_like(ident) {
            "uuid"
        } else {
            "name"
        };
        let sql = format!("SELECT uuid, driver, extended FROM nodes WHERE {col} = $1");
        let Some(r) = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ident)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let extended: String = r.try_get("extended")?;
        Ok(Some((
            r.try_get("uuid")?,
            r.try_get("driver")?,
            crate::engine::takeover::group_of_extended(&extended),
        )))
    }
}

/// One row of the `conductors` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ConductorRow {
    pub hostname: String,
    pub conductor_group: String,
    pub drivers: Vec<String>,
    /// `alive` in the table: false once the conductor shut down cleanly. Whether it is
    /// alive also depends on how old `updated_at` is (`engine::membership`).
    pub online: bool,
    pub created_at: String,
    /// The last heartbeat.
    pub updated_at: Option<String>,
    /// Where the other conductors forward requests for its nodes.
    pub api_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn takeover_statements_work_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        let mut uuids = vec![];
        for (i, holder) in ["dead", "dead", "alive"].iter().enumerate() {
            let mut n = crate::api::nodes::blank_node();
            n.driver = "fake-hardware".into();
            n.name = Some(format!("n{i}"));
            n.conductor = Some("old".into());
            let n = db.insert_node(&n).await.unwrap();
            assert!(db.reserve(&n.uuid, holder).await.unwrap());
            uuids.push(n.uuid);
        }
        let keys = db.takeover_keys("me", &["deploying"], false).await.unwrap();
        assert_eq!(keys.len(), 3, "locked nodes are always read");
        let locks: Vec<(String, String)> = keys
            .iter()
            .map(|k| (k.uuid.clone(), k.reservation.clone().unwrap()))
            .filter(|(_, h)| h == "dead")
            .collect();
        let mut broken = db.break_reservations(&locks).await.unwrap();
        broken.sort();
        let mut want = uuids[..2].to_vec();
        want.sort();
        assert_eq!(broken, want);
        assert!(db.break_reservations(&locks).await.unwrap().is_empty());
        assert_eq!(db.set_nodes_conductor(&uuids, "me").await.unwrap(), 2);
        let still = db.get_node(&uuids[2]).await.unwrap().unwrap();
        assert_eq!(
            still.conductor.as_deref(),
            Some("old"),
            "locked: left alone"
        );
        assert_eq!(
            db.takeover_keys("me", &["deploying"], true)
                .await
                .unwrap()
                .len(),
            1,
            "the locked node; the others are this conductor's, unlocked, not working"
        );
    }
}
