//! Port rows: one per NIC, unique MAC address, owned by a node.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
// Dynamic SQL here only joins constant column names and integers; values are bound.

use super::{json_col, to_json, unique, Db, Result};
use crate::model::Port;

const COLUMNS: &str = "id, uuid, address, node_uuid, pxe_enabled, extra, \
    local_link_connection, physical_network, extended, created_at, updated_at";

fn port_from_row(row: &AnyRow) -> Result<Port> {
    Ok(Port {
        id: row.try_get("id")?,
        uuid: row.try_get("uuid")?,
        address: row.try_get("address")?,
        node_uuid: row.try_get("node_uuid")?,
        pxe_enabled: row.try_get::<i64, _>("pxe_enabled")? != 0,
        extra: json_col(row, "extra")?,
        local_link_connection: json_col(row, "local_link_connection")?,
        physical_network: row.try_get("physical_network")?,
        extended: json_col(row, "extended")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Port listing filters.
#[derive(Debug, Default, Clone)]
pub struct PortFilter {
    pub node_uuid: Option<String>,
    pub address: Option<String>,
    pub after_id: Option<i64>,
    pub limit: Option<i64>,
}

impl Db {
    pub async fn insert_port(&self, p: &Port) -> Result<Port> {
        sqlx::query(
            "INSERT INTO ports (uuid, address, node_uuid, pxe_enabled, extra, \
             local_link_connection, physical_network, created_at, updated_at, extended) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(p.uuid.clone())
        .bind(p.address.clone())
        .bind(p.node_uuid.clone())
        .bind(p.pxe_enabled as i64)
        .bind(to_json(&p.extra))
        .bind(to_json(&p.local_link_connection))
        .bind(p.physical_network.clone())
        .bind(p.created_at.clone())
        .bind(p.updated_at.clone())
        .bind(to_json(&p.extended))
        .execute(&self.pool)
        .await
        .map_err(|e| unique(e, "port with this MAC address or uuid"))?;
        self.get_port(&p.uuid)
            .await?
            .ok_or(super::DbError::Query(sqlx::Error::RowNotFound))
    }

    pub async fn save_port(&self, p: &Port) -> Result<()> {
        sqlx::query(
            "UPDATE ports SET address = $2, node_uuid = $3, pxe_enabled = $4, extra = $5, \
             local_link_connection = $6, physical_network = $7, updated_at = $8, extended = $9 \
             WHERE uuid = $1",
        )
        .bind(p.uuid.clone())
        .bind(p.address.clone())
        .bind(p.node_uuid.clone())
        .bind(p.pxe_enabled as i64)
        .bind(to_json(&p.extra))
        .bind(to_json(&p.local_link_connection))
        .bind(p.physical_network.clone())
        .bind(p.updated_at.clone())
        .bind(to_json(&p.extended))
        .execute(&self.pool)
        .await
        .map_err(|e| unique(e, "port with this MAC address"))?;
        Ok(())
    }

    pub async fn get_port(&self, uuid: &str) -> Result<Option<Port>> {
        let sql = format!("SELECT {COLUMNS} FROM ports WHERE uuid = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(uuid)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(port_from_row).transpose()
    }

    pub async fn get_port_by_id(&self, id: i64) -> Result<Option<Port>> {
        let sql = format!("SELECT {COLUMNS} FROM ports WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(port_from_row).transpose()
    }

    pub async fn list_ports(&self, f: &PortFilter) -> Result<Vec<Port>> {
        let mut sql = format!("SELECT {COLUMNS} FROM ports WHERE 1 = 1");
        let mut binds = vec![];
        if let Some(n) = &f.node_uuid {
            binds.push(n.clone());
            sql.push_str(&format!(" AND node_uuid = ${}", binds.len()));
        }
        if let Some(a) = &f.address {
            binds.push(a.clone());
            sql.push_str(&format!(" AND address = ${}", binds.len()));
        }
        if let Some(after) = f.after_id {
            sql.push_str(&format!(" AND id > {after}"));
        }
        sql.push_str(" ORDER BY id");
        if let Some(l) = f.limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for b in &binds {
            q = q.bind(b.as_str());
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(port_from_row).collect()
    }

    pub async fn delete_port(&self, uuid: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM ports WHERE uuid = $1")
            .bind(uuid)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Node UUIDs owning any of these (normalised) MAC addresses.
    pub async fn nodes_by_macs(&self, macs: &[String]) -> Result<Vec<String>> {
        let mut out: Vec<String> = vec![];
        for m in macs {
            let row = sqlx::query("SELECT node_uuid FROM ports WHERE address = $1")
                .bind(m.as_str())
                .fetch_optional(&self.pool)
                .await?;
            if let Some(r) = row {
                let n: String = r.try_get("node_uuid")?;
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }
}
