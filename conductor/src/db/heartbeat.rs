//! The heartbeat's narrow queries: one indexed read of the columns a heartbeat needs (no
//! JSON parsing of the whole node), the agent URL written only when it changed, the
//! `agent_status` merged into `driver_internal_info` with a compare-and-swap, and the
//! batched `agent_last_heartbeat` writes.

use sqlx::{AssertSqlSafe, Row};

use super::{Db, DbError, Result};
use crate::state::State;

/// What a heartbeat reads of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatView {
    pub uuid: String,
    pub agent_token: Option<String>,
    pub agent_url: Option<String>,
    pub agent_verify_ca: Option<String>,
    pub provision_state: State,
    pub reservation: Option<String>,
    /// The stored JSON text, parsed only when the heartbeat needs it.
    pub driver_internal_info: String,
}

/// Rows per transaction when the buffered last-heartbeat times are written.
const FLUSH_CHUNK: usize = 500;

impl Db {
    /// The heartbeat's read, by UUID or name: one row through the unique index.
    pub async fn heartbeat_view(&self, ident: &str) -> Result<Option<HeartbeatView>> {
        let col = if crate::model::is_uuid_like(ident) {
            "uuid"
        } else {
            "name"
        };
        let sql = format!(
            "SELECT uuid, agent_token, agent_url, agent_verify_ca, provision_state, \
             reservation, driver_internal_info FROM nodes WHERE {col} = $1"
        );
        let Some(row) = sqlx::query(AssertSqlSafe(sql))
            .bind(ident)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let state: String = row.try_get("provision_state")?;
        Ok(Some(HeartbeatView {
            uuid: row.try_get("uuid")?,
            agent_token: row.try_get("agent_token")?,
            agent_url: row.try_get("agent_url")?,
            agent_verify_ca: row.try_get("agent_verify_ca")?,
            provision_state: state.parse().map_err(|_| DbError::BadState(state))?,
            reservation: row.try_get("reservation")?,
            driver_internal_info: row.try_get("driver_internal_info")?,
        }))
    }

    /// Replaces `driver_internal_info` only if it still holds `old` (the text the caller
    /// read); false when someone wrote it in between.
    pub async fn swap_driver_internal_info(
        &self,
        uuid: &str,
        old: &str,
        new: &str,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE nodes SET driver_internal_info = $1 WHERE uuid = $2 \
             AND driver_internal_info = $3",
        )
        .bind(new)
        .bind(uuid)
        .bind(old)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Writes buffered `(uuid, agent_last_heartbeat)` pairs: one UPDATE … FROM (VALUES …)
    /// per few hundred nodes (one round trip each, on both backends); nodes whose agent
    /// was forgotten meanwhile (no token) are skipped.
    pub async fn save_last_heartbeats(&self, beats: &[(String, String)]) -> Result<()> {
        for chunk in beats.chunks(FLUSH_CHUNK) {
            let sql = last_heartbeats_sql(chunk.len());
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (uuid, at) in chunk {
                q = q.bind(uuid.as_str()).bind(at.as_str());
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }
}

/// `UPDATE nodes … FROM (VALUES ($1, $2), …)` for `rows` pairs. VALUES columns are named
/// `column1`, `column2` by SQLite and PostgreSQL alike.
fn last_heartbeats_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
        .collect();
    format!(
        "UPDATE nodes SET agent_last_heartbeat = v.column2 FROM (VALUES {}) AS v \
         WHERE nodes.uuid = v.column1 AND nodes.agent_token IS NOT NULL",
        values.join(", ")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn batch_sql_numbers_the_pairs() {
        assert_eq!(
            super::last_heartbeats_sql(2),
            "UPDATE nodes SET agent_last_heartbeat = v.column2 FROM (VALUES ($1, $2), ($3, $4)) \
             AS v WHERE nodes.uuid = v.column1 AND nodes.agent_token IS NOT NULL"
        );
    }
}
