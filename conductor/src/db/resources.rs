//! Document rows of the `resources` table: the Ironic collections Ferrite stores without
//! acting on every field (chassis, portgroups, volume connectors and targets, deploy
//! templates, runbooks). The API layer (`api/resources.rs`) owns each kind's fields and
//! rules; this module only stores, finds and lists.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
// Dynamic SQL here only joins constant column names and integers; values are bound.

use super::{json_col, to_json, unique, Db, Result};
use crate::model::Obj;

/// The `kind` of allocations in the `resources` table (the API and the engine's
/// tear-down both use it).
pub const ALLOCATIONS: &str = "allocations";

const COLUMNS: &str = "id, kind, uuid, name, node_uuid, key1, key2, doc, created_at, updated_at";

/// One stored object of some kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub id: i64,
    pub kind: &'static str,
    pub uuid: String,
    pub name: Option<String>,
    pub node_uuid: Option<String>,
    /// Uniqueness keys within the kind (`None` = no constraint).
    pub key1: Option<String>,
    pub key2: Option<String>,
    /// The API fields other than uuid, name, node_uuid and the timestamps.
    pub doc: Obj,
    pub created_at: String,
    pub updated_at: Option<String>,
}

fn from_row(kind: &'static str, row: &AnyRow) -> Result<Resource> {
    Ok(Resource {
        id: row.try_get("id")?,
        kind,
        uuid: row.try_get("uuid")?,
        name: row.try_get("name")?,
        node_uuid: row.try_get("node_uuid")?,
        key1: row.try_get("key1")?,
        key2: row.try_get("key2")?,
        doc: json_col(row, "doc")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Listing filters of one kind.
#[derive(Debug, Default, Clone)]
pub struct ResourceFilter {
    pub node_uuid: Option<String>,
    /// Objects whose first uniqueness key is this (a portgroup's MAC address).
    pub key1: Option<String>,
    /// Objects whose second uniqueness key is this.
    pub key2: Option<String>,
    pub after_id: Option<i64>,
    pub limit: Option<i64>,
}

impl Db {
    pub async fn insert_resource(&self, r: &Resource, what: &'static str) -> Result<Resource> {
        sqlx::query(
            "INSERT INTO resources (kind, uuid, name, node_uuid, key1, key2, doc, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(r.kind)
        .bind(r.uuid.clone())
        .bind(r.name.clone())
        .bind(r.node_uuid.clone())
        .bind(r.key1.clone())
        .bind(r.key2.clone())
        .bind(to_json(&r.doc))
        .bind(r.created_at.clone())
        .bind(r.updated_at.clone())
        .execute(&self.pool)
        .await
        .map_err(|e| unique(e, what))?;
        self.get_resource(r.kind, &r.uuid)
            .await?
            .ok_or(super::DbError::Query(sqlx::Error::RowNotFound))
    }

    /// Writes `r` back; `false` when its row is gone (deleted meanwhile).
    pub async fn save_resource(&self, r: &Resource, what: &'static str) -> Result<bool> {
        let res = sqlx::query(
            "UPDATE resources SET name = $3, node_uuid = $4, key1 = $5, key2 = $6, doc = $7, \
             updated_at = $8 WHERE kind = $1 AND uuid = $2",
        )
        .bind(r.kind)
        .bind(r.uuid.clone())
        .bind(r.name.clone())
        .bind(r.node_uuid.clone())
        .bind(r.key1.clone())
        .bind(r.key2.clone())
        .bind(to_json(&r.doc))
        .bind(r.updated_at.clone())
        .execute(&self.pool)
        .await
        .map_err(|e| unique(e, what))?;
        Ok(res.rows_affected() == 1)
    }

    /// An object of `kind` by UUID or name.
    pub async fn get_resource(&self, kind: &'static str, ident: &str) -> Result<Option<Resource>> {
        let sql =
            format!("SELECT {COLUMNS} FROM resources WHERE kind = $1 AND (uuid = $2 OR name = $2)");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(kind)
            .bind(ident)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(|r| from_row(kind, r)).transpose()
    }

    pub async fn list_resources(
        &self,
        kind: &'static str,
        f: &ResourceFilter,
    ) -> Result<Vec<Resource>> {
        let mut sql = format!("SELECT {COLUMNS} FROM resources WHERE kind = $1");
        let mut binds = vec![kind.to_string()];
        if let Some(n) = &f.node_uuid {
            binds.push(n.clone());
            sql.push_str(&format!(" AND node_uuid = ${}", binds.len()));
        }
        if let Some(k) = &f.key1 {
            binds.push(k.clone());
            sql.push_str(&format!(" AND key1 = ${}", binds.len()));
        }
        if let Some(k) = &f.key2 {
            binds.push(k.clone());
            sql.push_str(&format!(" AND key2 = ${}", binds.len()));
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
        rows.iter().map(|r| from_row(kind, r)).collect()
    }

    pub async fn delete_resource(&self, kind: &'static str, uuid: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM resources WHERE kind = $1 AND uuid = $2")
            .bind(kind)
            .bind(uuid)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }
}
