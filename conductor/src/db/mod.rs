//! Storage on sqlx: SQLite (one file, the default) or PostgreSQL, with migrations. One
//! query text serves both backends (`$N` placeholders, TEXT JSON, BIGINT booleans).

mod conductors;
mod heartbeat;
mod nodes;
mod ports;
mod resources;

pub use conductors::{ConductorRow, NodeKey};
pub use heartbeat::HeartbeatView;
pub use nodes::NodeFilter;
pub use ports::PortFilter;
pub use resources::{Resource, ResourceFilter, ALLOCATIONS};

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::model::Obj;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open the database {url}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("a {what} with this value already exists")]
    Duplicate { what: &'static str },
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
    #[error("stored JSON in column {column} is corrupt")]
    Corrupt {
        column: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("stored provision state {0:?} is unknown")]
    BadState(String),
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Creates the SQLite database file (and its WAL and shared-memory files, which SQLite
/// creates with the database's mode) readable by the owner only, or tightens an existing
/// one: it holds BMC passwords and agent tokens. `:memory:` databases have no file.
fn restrict_sqlite_files(url: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or("");
    if path.is_empty() || path.starts_with(':') {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let p = format!("{path}{suffix}");
        if std::path::Path::new(&p).exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[derive(Clone)]
pub struct Db {
    pub(crate) pool: AnyPool,
    pub backend: Backend,
}

impl Db {
    /// Opens (creating when needed) and migrates the database at `url`
    /// (`sqlite:///path/file.db` or `postgres://…`).
    pub async fn open(url: &str) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        if backend == Backend::Sqlite {
            restrict_sqlite_files(url).map_err(|source| DbError::Open {
                url: redact(url),
                source: sqlx::Error::Io(source),
            })?;
        }
        let url_full = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let opts = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = NORMAL",
                            "PRAGMA busy_timeout = 10000",
                            "PRAGMA foreign_keys = ON",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            });
        let pool = opts
            .connect(&url_full)
            .await
            .map_err(|source| DbError::Open {
                url: redact(url),
                source,
            })?;
        let db = Db { pool, backend };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        migrator.run(&self.pool).await.map_err(DbError::Migrate)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

pub(crate) fn json_col(row: &AnyRow, column: &'static str) -> Result<Obj> {
    let s: String = row.try_get(column)?;
    serde_json::from_str(&s).map_err(|source| DbError::Corrupt { column, source })
}

pub(crate) fn to_json(o: &Obj) -> String {
    serde_json::to_string(o).unwrap_or_else(|_| "{}".into())
}

/// Maps a unique-constraint violation to [`DbError::Duplicate`].
pub(crate) fn unique(e: sqlx::Error, what: &'static str) -> DbError {
    if let sqlx::Error::Database(d) = &e {
        if d.is_unique_violation() {
            return DbError::Duplicate { what };
        }
    }
    DbError::Query(e)
}
