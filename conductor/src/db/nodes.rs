//! Node rows: create, read by UUID or name, filtered listing with markers, save,
//! delete, and the `reservation` lock taken with one atomic UPDATE.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
// Dynamic SQL here only joins constant column names and integers; values are bound.

use super::{json_col, to_json, unique, Db, DbError, Result};
use crate::model::{Node, Obj};
use crate::state::State;

const COLUMNS: &str = "id, uuid, name, driver, driver_info, properties, instance_info, \
    instance_uuid, extra, provision_state, target_provision_state, power_state, \
    target_power_state, last_error, maintenance, maintenance_reason, reservation, conductor, \
    driver_internal_info, clean_step, deploy_step, resource_class, boot_interface, \
    deploy_interface, power_interface, management_interface, inspect_interface, created_at, \
    updated_at, provision_updated_at, inspection_started_at, inspection_finished_at, extended";
const AGENT_COLUMNS: &str = "agent_token, agent_url, agent_verify_ca, agent_last_heartbeat";

/// Listing filters (CONTRACT.md §6).
#[derive(Debug, Default, Clone)]
pub struct NodeFilter {
    pub provision_state: Option<String>,
    pub maintenance: Option<bool>,
    pub driver: Option<String>,
    pub resource_class: Option<String>,
    pub associated: Option<bool>,
    pub instance_uuid: Option<String>,
    /// Equality on `model::EXTENDED_FIELDS` strings (owner, lessee, conductor_group, shard);
    /// a field not set compares as its default.
    pub extended: Vec<(&'static str, String)>,
    /// Whether an `EXTENDED_FIELDS` value is set (`true`) or null (`false`): `sharded`, and
    /// child nodes left out of lists unless `include_children`.
    pub extended_set: Vec<(&'static str, bool)>,
    /// Nodes whose owner or lessee is this project.
    pub project: Option<String>,
    /// Return rows with `id` greater than this.
    pub after_id: Option<i64>,
    pub limit: Option<i64>,
}

fn state_col(row: &AnyRow, col: &'static str) -> Result<Option<State>> {
    let s: Option<String> = row.try_get(col)?;
    match s {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| DbError::BadState(s)),
    }
}

fn node_from_row(row: &AnyRow) -> Result<Node> {
    Ok(Node {
        id: row.try_get("id")?,
        uuid: row.try_get("uuid")?,
        name: row.try_get("name")?,
        driver: row.try_get("driver")?,
        driver_info: json_col(row, "driver_info")?,
        properties: json_col(row, "properties")?,
        instance_info: json_col(row, "instance_info")?,
        instance_uuid: row.try_get("instance_uuid")?,
        extra: json_col(row, "extra")?,
        provision_state: state_col(row, "provision_state")?.unwrap_or(State::Enroll),
        target_provision_state: state_col(row, "target_provision_state")?,
        power_state: row.try_get("power_state")?,
        target_power_state: row.try_get("target_power_state")?,
        last_error: row.try_get("last_error")?,
        maintenance: row.try_get::<i64, _>("maintenance")? != 0,
        maintenance_reason: row.try_get("maintenance_reason")?,
        reservation: row.try_get("reservation")?,
        conductor: row.try_get("conductor")?,
        driver_internal_info: json_col(row, "driver_internal_info")?,
        clean_step: json_col(row, "clean_step")?,
        deploy_step: json_col(row, "deploy_step")?,
        resource_class: row.try_get("resource_class")?,
        boot_interface: row.try_get("boot_interface")?,
        deploy_interface: row.try_get("deploy_interface")?,
        power_interface: row.try_get("power_interface")?,
        management_interface: row.try_get("management_interface")?,
        inspect_interface: row.try_get("inspect_interface")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        provision_updated_at: row.try_get("provision_updated_at")?,
        inspection_started_at: row.try_get("inspection_started_at")?,
        inspection_finished_at: row.try_get("inspection_finished_at")?,
        extended: json_col(row, "extended")?,
        agent_token: row.try_get("agent_token")?,
        agent_url: row.try_get("agent_url")?,
        agent_verify_ca: row.try_get("agent_verify_ca")?,
        agent_last_heartbeat: row.try_get("agent_last_heartbeat")?,
    })
}

fn dup_what(e: &DbError, node: &Node) -> DbError {
    match e {
        DbError::Duplicate { .. } => {
            // The constraint name differs per backend; say the likely field.
            let what = if node.instance_uuid.is_some() && node.name.is_none() {
                "node instance_uuid"
            } else {
                "node name or uuid"
            };
            DbError::Duplicate { what }
        }
        _ => DbError::Duplicate { what: "node" },
    }
}

impl Db {
    pub async fn insert_node(&self, n: &Node) -> Result<Node> {
        let sql = format!(
            "INSERT INTO nodes ({}) VALUES (DEFAULT_ID, $1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, \
             $26, $27, $28, $29, $30, $31, $32)",
            COLUMNS
        )
        .replacen("id, ", "", 1)
        .replacen("DEFAULT_ID, ", "", 1);
        let res = bind_node(sqlx::query(AssertSqlSafe(sql)), n)
            .execute(&self.pool)
            .await;
        if let Err(e) = res {
            let e = unique(e, "node");
            return Err(match e {
                DbError::Duplicate { .. } => dup_what(&e, n),
                other => other,
            });
        }
        self.get_node(&n.uuid)
            .await?
            .ok_or(DbError::Query(sqlx::Error::RowNotFound))
    }

    /// Writes every column of `n` (matched by uuid).
    pub async fn save_node(&self, n: &Node) -> Result<()> {
        let sql = "UPDATE nodes SET uuid = $1, name = $2, driver = $3, driver_info = $4, \
            properties = $5, instance_info = $6, instance_uuid = $7, extra = $8, \
            provision_state = $9, target_provision_state = $10, power_state = $11, \
            target_power_state = $12, last_error = $13, maintenance = $14, \
            maintenance_reason = $15, reservation = $16, conductor = $17, \
            driver_internal_info = $18, clean_step = $19, deploy_step = $20, \
            resource_class = $21, boot_interface = $22, deploy_interface = $23, \
            power_interface = $24, management_interface = $25, inspect_interface = $26, \
            created_at = $27, updated_at = $28, provision_updated_at = $29, \
            inspection_started_at = $30, inspection_finished_at = $31, extended = $32 \
            WHERE uuid = $1";
        bind_node(sqlx::query(sql), n)
            .execute(&self.pool)
            .await
            .map_err(|e| unique(e, "node name or instance_uuid"))?;
        Ok(())
    }

    /// By UUID, or by name when `ident` is not a UUID.
    pub async fn get_node(&self, ident: &str) -> Result<Option<Node>> {
        let col = if crate::model::is_uuid_like(ident) {
            "uuid"
        } else {
            "name"
        };
        let sql = format!("SELECT {COLUMNS}, {AGENT_COLUMNS} FROM nodes WHERE {col} = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(ident)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(node_from_row).transpose()
    }

    pub async fn get_node_by_id(&self, id: i64) -> Result<Option<Node>> {
        let sql = format!("SELECT {COLUMNS}, {AGENT_COLUMNS} FROM nodes WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(node_from_row).transpose()
    }

    pub async fn list_nodes(&self, f: &NodeFilter) -> Result<Vec<Node>> {
        let mut sql = format!("SELECT {COLUMNS}, {AGENT_COLUMNS} FROM nodes WHERE 1 = 1");
        let mut texts: Vec<String> = vec![];
        let mut n = 0;
        let mut add = |sql: &mut String, col: &str, v: &str| {
            n += 1;
            sql.push_str(&format!(" AND {col} = ${n}"));
            texts.push(v.to_string());
        };
        if let Some(v) = &f.provision_state {
            add(&mut sql, "provision_state", v);
        }
        if let Some(v) = &f.driver {
            add(&mut sql, "driver", v);
        }
        if let Some(v) = &f.resource_class {
            add(&mut sql, "resource_class", v);
        }
        if let Some(v) = &f.instance_uuid {
            add(&mut sql, "instance_uuid", v);
        }
        // Field names are compile-time constants (the API maps its query keys onto them);
        // values are bound.
        let ext = |key: &str| -> String {
            let default = if key == "conductor_group" {
                "''"
            } else {
                "NULL"
            };
            match self.backend {
                super::Backend::Sqlite => {
                    format!("COALESCE(json_extract(extended, '$.{key}'), {default})")
                }
                super::Backend::Postgres => {
                    format!("COALESCE(extended::json ->> '{key}', {default})")
                }
            }
        };
        for (key, v) in &f.extended {
            add(&mut sql, &ext(key), v);
        }
        for (key, set) in &f.extended_set {
            let test = if *set { "IS NOT NULL" } else { "IS NULL" };
            sql.push_str(&format!(" AND {} {test}", ext(key)));
        }
        if let Some(p) = &f.project {
            n += 1;
            sql.push_str(&format!(
                " AND ({} = ${n} OR {} = ${n})",
                ext("owner"),
                ext("lessee")
            ));
            texts.push(p.clone());
        }
        if let Some(m) = f.maintenance {
            sql.push_str(if m {
                " AND maintenance = 1"
            } else {
                " AND maintenance = 0"
            });
        }
        if let Some(a) = f.associated {
            sql.push_str(if a {
                " AND instance_uuid IS NOT NULL"
            } else {
                " AND instance_uuid IS NULL"
            });
        }
        if let Some(after) = f.after_id {
            sql.push_str(&format!(" AND id > {after}"));
        }
        sql.push_str(" ORDER BY id");
        if let Some(l) = f.limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for t in &texts {
            q = q.bind(t.as_str());
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(node_from_row).collect()
    }

    /// `(shard, number of nodes)` for every shard some node is in (Ironic's shard list).
    pub async fn shard_counts(&self) -> Result<Vec<(String, i64)>> {
        let col = match self.backend {
            super::Backend::Sqlite => "json_extract(extended, '$.shard')",
            super::Backend::Postgres => "(extended::json ->> 'shard')",
        };
        let sql = format!(
            "SELECT CAST({col} AS TEXT) AS shard, COUNT(*) AS n FROM nodes WHERE {col} IS NOT NULL \
             GROUP BY {col} ORDER BY 1"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("shard")?, r.try_get("n")?)))
            .collect()
    }

    /// `(provision state, power state, number of nodes)` of every pair some node is in
    /// (the metrics' node gauges); an unknown power state reads as `None`.
    pub async fn state_counts(&self) -> Result<Vec<(String, Option<String>, i64)>> {
        let rows = sqlx::query(
            "SELECT provision_state, power_state, COUNT(*) AS n FROM nodes \
             GROUP BY provision_state, power_state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("provision_state")?,
                    r.try_get("power_state")?,
                    r.try_get("n")?,
                ))
            })
            .collect()
    }

    /// Connections of the pool: (open, idle, most allowed).
    pub fn pool_use(&self) -> (u32, usize, u32) {
        (
            self.pool.size(),
            self.pool.num_idle(),
            self.pool.options().get_max_connections(),
        )
    }

    pub async fn nodes_in_states(&self, states: &[State]) -> Result<Vec<Node>> {
        let mut out = vec![];
        for s in states {
            out.extend(
                self.list_nodes(&NodeFilter {
                    provision_state: Some(s.as_str().into()),
                    ..Default::default()
                })
                .await?,
            );
        }
        Ok(out)
    }

    pub async fn delete_node(&self, uuid: &str) -> Result<bool> {
        for table in ["ports", "inventories"] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE node_uuid = $1"
            )))
            .bind(uuid)
            .execute(&self.pool)
            .await?;
        }
        sqlx::query("DELETE FROM resources WHERE kind = 'history' AND node_uuid = $1")
            .bind(uuid)
            .execute(&self.pool)
            .await?;
        let r = sqlx::query("DELETE FROM nodes WHERE uuid = $1")
            .bind(uuid)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Takes the node's lock for `host`; false when someone holds it.
    pub async fn reserve(&self, uuid: &str, host: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE nodes SET reservation = $1 WHERE uuid = $2 AND reservation IS NULL",
        )
        .bind(host)
        .bind(uuid)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn release(&self, uuid: &str, host: &str) -> Result<()> {
        sqlx::query("UPDATE nodes SET reservation = NULL WHERE uuid = $1 AND reservation = $2")
            .bind(uuid)
            .bind(host)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Clears locks a previous run of `host` left behind; returns how many.
    pub async fn clear_reservations(&self, host: &str) -> Result<u64> {
        let r = sqlx::query("UPDATE nodes SET reservation = NULL WHERE reservation = $1")
            .bind(host)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// Stores only the agent's bookkeeping of a heartbeat (no state change).
    pub async fn save_driver_internal_info(&self, uuid: &str, dii: &Obj) -> Result<()> {
        sqlx::query("UPDATE nodes SET driver_internal_info = $1 WHERE uuid = $2")
            .bind(to_json(dii))
            .bind(uuid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Hands out a token if none is set; returns it, or `None` when one was set before.
    pub async fn issue_agent_token(&self, uuid: &str, token: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE nodes SET agent_token = $1 WHERE uuid = $2 AND agent_token IS NULL",
        )
        .bind(token)
        .bind(uuid)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Forgets the agent of the previous boot (token, URL, certificate).
    pub async fn clear_agent(&self, uuid: &str) -> Result<()> {
        sqlx::query(
            "UPDATE nodes SET agent_token = NULL, agent_url = NULL, agent_verify_ca = NULL, \
             agent_last_heartbeat = NULL WHERE uuid = $1",
        )
        .bind(uuid)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a heartbeat: where the agent listens, its certificate, and when.
    /// Records the first heartbeat of a boot: the agent's URL and certificate are pinned
    /// here until the next boot clears them ([`Db::clear_agent`]). False when another
    /// heartbeat pinned other values first; a concurrent first heartbeat with the same URL
    /// and certificate (the loser of the race) is true.
    pub async fn record_heartbeat(
        &self,
        uuid: &str,
        url: &str,
        verify_ca: Option<&str>,
        at: &str,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE nodes SET agent_url = $1, agent_verify_ca = $2, agent_last_heartbeat = $3 \
             WHERE uuid = $4 AND (agent_url IS NULL OR (agent_url = $1 \
             AND agent_verify_ca IS NOT DISTINCT FROM $2))",
        )
        .bind(url)
        .bind(verify_ca)
        .bind(at)
        .bind(uuid)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn save_inventory(
        &self,
        uuid: &str,
        inventory: &str,
        plugin_data: &str,
    ) -> Result<()> {
        sqlx::query("DELETE FROM inventories WHERE node_uuid = $1")
            .bind(uuid)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO inventories (node_uuid, inventory, plugin_data, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(uuid)
        .bind(inventory)
        .bind(plugin_data)
        .bind(crate::model::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// (inventory, plugin_data) JSON texts.
    pub async fn inventory(&self, uuid: &str) -> Result<Option<(String, String)>> {
        let row =
            sqlx::query("SELECT inventory, plugin_data FROM inventories WHERE node_uuid = $1")
                .bind(uuid)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((r.try_get("inventory")?, r.try_get("plugin_data")?))),
        }
    }

    pub async fn count_nodes(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM nodes")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }
}

fn bind_node<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    n: &Node,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    q.bind(n.uuid.clone())
        .bind(n.name.clone())
        .bind(n.driver.clone())
        .bind(to_json(&n.driver_info))
        .bind(to_json(&n.properties))
        .bind(to_json(&n.instance_info))
        .bind(n.instance_uuid.clone())
        .bind(to_json(&n.extra))
        .bind(n.provision_state.as_str().to_string())
        .bind(n.target_provision_state.map(|s| s.as_str().to_string()))
        .bind(n.power_state.clone())
        .bind(n.target_power_state.clone())
        .bind(n.last_error.clone())
        .bind(n.maintenance as i64)
        .bind(n.maintenance_reason.clone())
        .bind(n.reservation.clone())
        .bind(n.conductor.clone())
        .bind(to_json(&n.driver_internal_info))
        .bind(to_json(&n.clean_step))
        .bind(to_json(&n.deploy_step))
        .bind(n.resource_class.clone())
        .bind(n.boot_interface.clone())
        .bind(n.deploy_interface.clone())
        .bind(n.power_interface.clone())
        .bind(n.management_interface.clone())
        .bind(n.inspect_interface.clone())
        .bind(n.created_at.clone())
        .bind(n.updated_at.clone())
        .bind(n.provision_updated_at.clone())
        .bind(n.inspection_started_at.clone())
        .bind(n.inspection_finished_at.clone())
        .bind(to_json(&n.extended))
}
