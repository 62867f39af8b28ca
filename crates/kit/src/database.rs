//! Connecting to a service's own database and bringing its schema up to date.
//!
//! `sqlite://…` is the embedded default: WAL journal, `synchronous=NORMAL`
//! (a committed transaction survives a crash of the process), a busy timeout,
//! and one connection, so that writes are serialised in the process rather than
//! fought over with SQLITE_BUSY. `postgres://…` is for production.

use std::path::Path;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait;

/// Connection pool settings every service accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// Most connections in the pool (PostgreSQL; SQLite always uses one writer connection).
    #[arg(long, env = "RUNPLANE_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// How long to wait for the database to accept a connection.
    #[arg(long, env = "RUNPLANE_DB_CONNECT_TIMEOUT", default_value = "5s", value_parser = crate::config::parse_duration)]
    pub db_connect_timeout: Duration,
    /// How long a request waits for a free pooled connection.
    #[arg(long, env = "RUNPLANE_DB_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = crate::config::parse_duration)]
    pub db_acquire_timeout: Duration,
}

/// The database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST:PORT/DB")]
    UnsupportedUrl(String),
    #[error("cannot create the directory for {url}: {source}")]
    CreateDir { url: String, source: std::io::Error },
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: DbErr },
    #[error("cannot migrate {url}: {source}")]
    Migrate { url: String, source: DbErr },
}

/// Connects to `url` and applies the service's migrations `M`.
pub async fn connect_and_migrate<M: MigratorTrait>(
    url: &str,
    args: &DatabaseArgs,
) -> Result<DatabaseConnection, DatabaseError> {
    let db = connect(url, args).await?;
    M::up(&db, None)
        .await
        .map_err(|source| DatabaseError::Migrate {
            url: redact(url),
            source,
        })?;
    Ok(db)
}

/// Opens (creating it if needed) the SQLite file at `path` with default pool
/// settings and applies the migrations `M`: how tests and tools reach a
/// service's storage directly.
pub async fn open_sqlite<M: MigratorTrait>(
    path: &Path,
) -> Result<DatabaseConnection, DatabaseError> {
    let args = DatabaseArgs {
        db_max_connections: 1,
        db_connect_timeout: Duration::from_secs(5),
        db_acquire_timeout: Duration::from_secs(5),
    };
    connect_and_migrate::<M>(&format!("sqlite://{}", path.display()), &args).await
}

/// Connects to `url` with the pool settings in `args`.
pub async fn connect(url: &str, args: &DatabaseArgs) -> Result<DatabaseConnection, DatabaseError> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(args.db_connect_timeout)
        .acquire_timeout(args.db_acquire_timeout)
        .sqlx_logging(false);
    if let Some(path) = sqlite_path(url) {
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|source| DatabaseError::CreateDir {
                url: url.to_owned(),
                source,
            })?;
        }
        options
            .max_connections(1)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|o| {
                o.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
            });
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        options.max_connections(args.db_max_connections.max(1));
    } else {
        return Err(DatabaseError::UnsupportedUrl(redact(url)));
    }
    Database::connect(options)
        .await
        .map_err(|source| DatabaseError::Connect {
            url: redact(url),
            source,
        })
}

/// The path part of a `sqlite:` URL (may be `:memory:`), or `None` for other URLs.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    rest.split('?').next()
}

/// A URL fit for logs: any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                url.to_owned()
            }
        }
        None => url.to_owned(),
    }
}

/// Whether a database error is a unique-constraint violation (on either backend).
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// The gRPC status for a database failure: UNAVAILABLE when the database cannot
/// be reached (the caller may retry), INTERNAL otherwise. Details go to the log,
/// never to the caller.
pub fn status(e: &DbErr) -> tonic::Status {
    tracing::error!(error = %e, "database error");
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => {
            tonic::Status::unavailable("the database is unavailable; retry later")
        }
        _ => tonic::Status::internal("internal error (logged on the server)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/runplane"),
            "postgres://app:***@db:5432/runplane"
        );
        assert_eq!(
            redact("postgres://app@db/runplane"),
            "postgres://app@db/runplane"
        );
        assert_eq!(
            redact("sqlite://.runplane/org.db"),
            "sqlite://.runplane/org.db"
        );
    }

    #[test]
    fn sqlite_paths() {
        assert_eq!(sqlite_path("sqlite://a/b.db?mode=rwc"), Some("a/b.db"));
        assert_eq!(sqlite_path("sqlite:x.db"), Some("x.db"));
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }

    #[tokio::test]
    async fn sqlite_files_and_their_directories_are_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/deeper/x.db");
        let url = format!("sqlite://{}", path.display());
        let args = DatabaseArgs {
            db_max_connections: 4,
            db_connect_timeout: Duration::from_secs(2),
            db_acquire_timeout: Duration::from_secs(2),
        };
        let db = connect(&url, &args).await.expect("connect");
        db.ping().await.expect("ping");
        assert!(path.exists());
        let err = connect("mysql://x", &args).await.expect_err("unsupported");
        assert!(err.to_string().contains("unsupported"), "{err}");
    }
}
