//! Connecting to a service's own database and bringing its schema up to date.
//!
//! `sqlite://…` is the embedded default: WAL journal, `synchronous=NORMAL`
//! (a committed transaction survives a crash of the process), a 16 MiB page
//! cache, a busy timeout,
//! and one connection, so that writes are serialised in the process rather than
//! fought over with SQLITE_BUSY. `postgres://…` is for production: each service
//! keeps its tables in its own schema, and its migrations run in one
//! transaction under an advisory lock, so replicas that start together apply
//! each migration exactly once. Pool usage is among the process's own metrics
//! ([`pool_metrics`]).

pub mod pool_metrics;

use std::path::Path;
use std::time::Duration;

use runplane_config::redact_url;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

/// Rows of one SQLite query buffered between the database thread and the
/// caller: a whole page of a scrape.
const SQLITE_ROW_BUFFER: usize = 1024;

/// SQLite's page cache per connection, in KiB (negative: a size, not pages).
const SQLITE_CACHE_SIZE: &str = "-16384";

/// A pooled PostgreSQL connection idle this long is checked before use.
const POSTGRES_PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);

/// A stateful service's database settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    // Its default is each service's own SQLite file, given at load time. The
    // value is never shown by --help: a PostgreSQL URL may hold a password.
    /// Database URL: sqlite://PATH (embedded) or postgres://USER[:PASSWORD]@HOST:PORT/DB
    /// (default: the service's own SQLite file in .runplane/).
    #[arg(
        long,
        env = "RUNPLANE_DATABASE_URL",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub database_url: String,
    /// Most connections in the pool (PostgreSQL; SQLite always uses one writer connection).
    #[arg(long, env = "RUNPLANE_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// How long to wait for the database to accept a connection.
    #[arg(long, env = "RUNPLANE_DB_CONNECT_TIMEOUT", default_value = "5s", value_parser = runplane_config::parse_duration)]
    pub db_connect_timeout: Duration,
    /// How long a request waits for a free pooled connection.
    #[arg(long, env = "RUNPLANE_DB_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = runplane_config::parse_duration)]
    pub db_acquire_timeout: Duration,
    /// PostgreSQL schema for this service's tables (default: the service's own,
    /// e.g. `org_service`), created if missing. Ignored by SQLite.
    #[arg(long, env = "RUNPLANE_DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
}

/// The database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST:PORT/DB")]
    UnsupportedUrl(String),
    #[error("cannot create the directory for {url}: {cause}")]
    CreateDir { url: String, cause: std::io::Error },
    #[error("cannot connect to {url}: {cause}")]
    Connect { url: String, cause: String },
    #[error("cannot migrate {url}: {cause}")]
    Migrate { url: String, cause: DbErr },
    #[error(
        "invalid database schema {0:?}: use 1 to 63 characters of a-z, 0-9 and _, starting with a letter or _"
    )]
    InvalidSchema(String),
}

/// Connects to the database and applies the service's migrations `M`. On
/// PostgreSQL the tables live in `args.database_schema`, or `default_schema`
/// when unset.
pub async fn connect_and_migrate<M: MigratorTrait>(
    args: &DatabaseArgs,
    default_schema: &str,
) -> Result<DatabaseConnection, DatabaseError> {
    let url = args.database_url.as_str();
    let schema = args.database_schema.as_deref().unwrap_or(default_schema);
    let db = connect(args, schema).await?;
    let migrate = |cause| DatabaseError::Migrate {
        url: redact_url(url),
        cause,
    };
    match db.get_database_backend() {
        DbBackend::Postgres => {
            // One transaction, behind a lock keyed by the schema: a replica that
            // starts at the same time waits, then finds nothing left to apply.
            let txn = db.begin().await.map_err(migrate)?;
            txn.execute_unprepared(&format!(
                "SELECT pg_advisory_xact_lock({})",
                advisory_key(schema)
            ))
            .await
            .map_err(migrate)?;
            txn.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .await
                .map_err(migrate)?;
            M::up(&txn, None).await.map_err(migrate)?;
            txn.commit().await.map_err(migrate)?;
        }
        _ => {
            // Replicas sharing one SQLite file may start together: the loser of
            // a race on the migrations table tries again, and then finds the
            // winner's migrations applied.
            let mut attempt = 1;
            while let Err(cause) = M::up(&db, None).await {
                if attempt == 10 {
                    return Err(migrate(cause));
                }
                tracing::debug!(error = %cause, attempt, "migration raced another process; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                attempt += 1;
            }
        }
    }
    pool_metrics::register(&db);
    Ok(db)
}

/// The advisory lock that serialises migrations of one schema.
fn advisory_key(schema: &str) -> i64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("runplane-migrate:{schema}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// Checks a PostgreSQL schema name (it is spliced into SQL, so it must be plain).
fn validate_schema(schema: &str) -> Result<(), DatabaseError> {
    let ok = (1..=63).contains(&schema.len())
        && schema
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(DatabaseError::InvalidSchema(schema.to_owned()))
    }
}

/// Opens (creating it if needed) the SQLite file at `path` with default pool
/// settings and applies the migrations `M`: how tests and tools reach a
/// service's storage directly.
pub async fn open_sqlite<M: MigratorTrait>(
    path: &Path,
) -> Result<DatabaseConnection, DatabaseError> {
    let args = DatabaseArgs {
        database_url: format!("sqlite://{}", path.display()),
        db_max_connections: 1,
        db_connect_timeout: Duration::from_secs(5),
        db_acquire_timeout: Duration::from_secs(5),
        database_schema: None,
    };
    connect_and_migrate::<M>(&args, "main").await
}

/// Connects to the database with the pool settings in `args`; on PostgreSQL
/// every connection's `search_path` is `schema`.
pub async fn connect(
    args: &DatabaseArgs,
    schema: &str,
) -> Result<DatabaseConnection, DatabaseError> {
    let url = args.database_url.as_str();
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(args.db_connect_timeout)
        .acquire_timeout(args.db_acquire_timeout)
        .sqlx_logging(false);
    if let Some(path) = sqlite_path(url) {
        create_private(Path::new(path)).map_err(|cause| DatabaseError::CreateDir {
            url: url.to_owned(),
            cause,
        })?;
        options
            .max_connections(1)
            .min_connections(1)
            // A file cannot hang up: pinging it on every checkout is a round
            // trip to SQLite's worker thread per statement for nothing.
            .test_before_acquire(false)
            .map_sqlx_sqlite_opts(|o| {
                o.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
                    // Room for the upper levels of every index of a table of
                    // millions of runs: at SQLite's default (2 MiB) they no
                    // longer fit, and each insert reads index pages back from
                    // the OS (ingestion was 1.35× slower with 2,000,000 runs
                    // stored). Pages are cached as they are read: a small
                    // database never fills it.
                    .pragma("cache_size", SQLITE_CACHE_SIZE)
                    // Rows cross from SQLite's worker thread through a bounded
                    // channel; at sqlx's default of 50, a scrape's page of 1,000
                    // rows stops and wakes that thread every 50 rows.
                    .row_buffer_size(SQLITE_ROW_BUFFER)
            });
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        validate_schema(schema)?;
        options
            .max_connections(args.db_max_connections.max(1))
            // Ping only a connection idle long enough to have been dropped by
            // the server or a proxy, not one in steady use: every ping is a
            // network round trip before the statement's own.
            .test_before_acquire_if_idle_for(POSTGRES_PING_IF_IDLE_FOR)
            .set_schema_search_path(schema.to_owned());
    } else {
        return Err(DatabaseError::UnsupportedUrl(redact_url(url)));
    }
    match Database::connect(options).await {
        Ok(db) => Ok(db),
        Err(pool_error) => {
            // The pool reports only that it timed out; one direct attempt says why.
            let diagnosis = match sqlite_path(url) {
                Some(_) => None,
                None => diagnose_postgres(url, args.db_connect_timeout).await,
            };
            let cause = diagnosis.unwrap_or_else(|| pool_error.to_string());
            Err(DatabaseError::Connect {
                url: redact_url(url),
                cause,
            })
        }
    }
}

/// Creates a SQLite file that does not exist yet, and the directories it
/// needs, readable by the service's user only (0600, directories 0700): the
/// file holds every organization's data. SQLite gives its WAL and shared
/// memory files the database file's permissions. An existing file is left
/// as its owner set it.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    if path.as_os_str() == ":memory:" || path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        // Another replica created it meanwhile: fine.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        result => result.map(drop),
    }
}

/// Why a single PostgreSQL connection to `url` fails, if it is PostgreSQL and does.
async fn diagnose_postgres(url: &str, timeout: Duration) -> Option<String> {
    use sea_orm::sqlx::ConnectOptions as _;
    let options: sea_orm::sqlx::postgres::PgConnectOptions = url.parse().ok()?;
    match tokio::time::timeout(timeout, options.connect()).await {
        Ok(Ok(_)) => None,
        // The server's own words, without where in PostgreSQL's source they
        // come from (sqlx appends "at line N", which reads like a config line).
        Ok(Err(e)) => Some(match e.as_database_error() {
            Some(db) => match db.code() {
                Some(code) => format!("{} (SQLSTATE {code})", db.message()),
                None => db.message().to_owned(),
            },
            None => e.to_string(),
        }),
        Err(_) => Some(format!(
            "no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// The path part of a `sqlite:` URL (may be `:memory:`), or `None` for other URLs.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    rest.split('?').next()
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
    fn schema_names_are_plain_identifiers() {
        for ok in ["org_service", "_x", "a1"] {
            assert!(validate_schema(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Org", "1a", "a-b", "a\"b", "a;drop", &"a".repeat(64)] {
            assert!(validate_schema(bad).is_err(), "{bad}");
        }
        assert_ne!(advisory_key("org_service"), advisory_key("token_service"));
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
        let mut args = DatabaseArgs {
            database_url: format!("sqlite://{}", path.display()),
            db_max_connections: 4,
            db_connect_timeout: Duration::from_secs(2),
            db_acquire_timeout: Duration::from_secs(2),
            database_schema: None,
        };
        let db = connect(&args, "main").await.expect("connect");
        db.ping().await.expect("ping");
        assert!(path.exists());
        // Only the service's user may read what every organization stored.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().expect("dir")), 0o700);
        args.database_url = "mysql://x".into();
        let err = connect(&args, "main").await.expect_err("unsupported");
        assert!(err.to_string().contains("unsupported"), "{err}");
    }
}
