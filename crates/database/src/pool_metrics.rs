//! Connection pool usage of a service's database, read at scrape time of the
//! process's own metrics.

use prometheus::core::Collector;
use prometheus::{IntGauge, IntGaugeVec, Opts};

/// Adds `db`'s pool to the process's metrics.
pub fn register(db: &sea_orm::DatabaseConnection) {
    match PoolCollector::new(db.clone()) {
        Ok(collector) => runplane_telemetry::metrics::register(Box::new(collector)),
        Err(e) => tracing::error!(error = %e, "cannot create the database pool metrics"),
    }
}

struct PoolCollector {
    db: sea_orm::DatabaseConnection,
    connections: IntGaugeVec,
    max: IntGauge,
}

impl PoolCollector {
    fn new(db: sea_orm::DatabaseConnection) -> Result<Self, prometheus::Error> {
        Ok(PoolCollector {
            db,
            connections: IntGaugeVec::new(
                Opts::new(
                    "runplane_db_pool_connections",
                    "Database connections open, by state (idle or in_use).",
                ),
                &["state"],
            )?,
            max: IntGauge::new(
                "runplane_db_pool_max_connections",
                "Most database connections the pool opens.",
            )?,
        })
    }
}

impl Collector for PoolCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.connections
            .desc()
            .into_iter()
            .chain(self.max.desc())
            .collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let (size, idle, max) = match self.db.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                let pool = self.db.get_postgres_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            sea_orm::DbBackend::Sqlite => {
                let pool = self.db.get_sqlite_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            _ => return Vec::new(),
        };
        let idle = i64::try_from(idle).unwrap_or(i64::MAX);
        self.connections.with_label_values(&["idle"]).set(idle);
        self.connections
            .with_label_values(&["in_use"])
            .set((i64::from(size) - idle).max(0));
        self.max.set(i64::from(max));
        self.connections
            .collect()
            .into_iter()
            .chain(self.max.collect())
            .collect()
    }
}
