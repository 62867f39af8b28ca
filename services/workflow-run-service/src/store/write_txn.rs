//! A write transaction whose statements reach the database a batch at a time.
//!
//! On SQLite every statement sent through sqlx is a round trip to the
//! connection's worker thread, and its two thread wake-ups cost more than
//! SQLite's own work: a run's start and finish took 27 context switches when
//! each statement went alone. So on SQLite a batch is one multi-statement
//! query, and the transaction's `BEGIN IMMEDIATE` and `COMMIT` travel inside
//! the first and the last batch. sqlx runs a multi-statement SQLite query with
//! parameters, though it calls that deprecated (launchbadge/sqlx#3108); should
//! a release drop it, send the statements one at a time: the transaction means
//! the same either way.
//!
//! PostgreSQL gets the statements one at a time in an ordinary transaction.

use std::sync::Arc;

use sea_orm::sqlx::{self, Either, Executor as _, Sqlite, pool::PoolConnection};
use sea_orm::{
    ConnAcquireErr, ConnectionTrait as _, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, QueryResult, RuntimeErr, Statement, TransactionTrait as _,
};
use sea_query_sqlx::SqlxValues;
use tokio_stream::StreamExt as _;

/// Batches of at most this many statements stay prepared between uses.
const KEEP_PREPARED_UP_TO: usize = 8;

/// The rows of each statement of a batch, in order.
pub(super) type BatchRows = Vec<Vec<QueryResult>>;

/// An open write transaction. Dropped before [`WriteTxn::commit_after`] (an
/// error, a cancelled request), it is rolled back.
pub(super) enum WriteTxn {
    Sqlite(SqliteTxn),
    Pooled(DatabaseTransaction),
}

impl WriteTxn {
    /// Starts a write transaction. On SQLite nothing is sent yet: the first
    /// batch takes the write lock.
    pub(super) async fn begin(db: &DatabaseConnection) -> Result<Self, DbErr> {
        Ok(match db.get_database_backend() {
            DbBackend::Sqlite => WriteTxn::Sqlite(SqliteTxn {
                conn: db
                    .get_sqlite_connection_pool()
                    .acquire()
                    .await
                    .map_err(acquire_error)?,
                open: false,
            }),
            _ => WriteTxn::Pooled(db.begin().await?),
        })
    }

    /// Runs `statements` in order and returns the rows of each.
    pub(super) async fn query(&mut self, statements: Vec<Statement>) -> Result<BatchRows, DbErr> {
        match self {
            WriteTxn::Sqlite(txn) => txn.batch(statements, false).await,
            WriteTxn::Pooled(txn) => one_at_a_time(txn, statements).await,
        }
    }

    /// Runs `statements` in order, then commits.
    pub(super) async fn commit_after(self, statements: Vec<Statement>) -> Result<(), DbErr> {
        match self {
            WriteTxn::Sqlite(mut txn) => txn.batch(statements, true).await.map(drop),
            WriteTxn::Pooled(txn) => {
                one_at_a_time(&txn, statements).await?;
                txn.commit().await
            }
        }
    }
}

async fn one_at_a_time(
    txn: &DatabaseTransaction,
    statements: Vec<Statement>,
) -> Result<BatchRows, DbErr> {
    let mut rows = Vec::with_capacity(statements.len());
    for statement in statements {
        rows.push(txn.query_all_raw(statement).await?);
    }
    Ok(rows)
}

/// SQLite's one connection, held for the whole transaction.
pub(super) struct SqliteTxn {
    conn: PoolConnection<Sqlite>,
    /// A `BEGIN` was sent and the transaction is not known to have ended.
    open: bool,
}

impl SqliteTxn {
    async fn batch(
        &mut self,
        statements: Vec<Statement>,
        commit: bool,
    ) -> Result<BatchRows, DbErr> {
        let begin = !self.open;
        let count = statements.len();
        let mut sql = String::new();
        let mut values = Vec::new();
        if begin {
            sql.push_str("BEGIN IMMEDIATE;\n");
        }
        for statement in statements {
            sql.push_str(&statement.sql);
            sql.push_str(";\n");
            values.extend(statement.values.into_iter().flat_map(|v| v.0));
        }
        if commit {
            sql.push_str("COMMIT;\n");
        }
        self.open = true;
        // sqlx keeps each distinct SQL text prepared (100 of them): worth it
        // for the few shapes of a batch of one or two writes, sent again and
        // again; a large batch's text is one of a kind, and kept it held tens
        // of MiB of compiled statements for nothing.
        let query = sqlx::query_with(
            sqlx::AssertSqlSafe(sql),
            SqlxValues(sea_orm::Values(values)),
        )
        .persistent(count <= KEEP_PREPARED_UP_TO);
        let mut rows = Vec::with_capacity(count);
        let mut current = Vec::new();
        // Each statement's rows, if any, are followed by its result; the
        // `BEGIN`'s and the `COMMIT`'s have no rows.
        let mut results = 0;
        let mut stream = self.conn.fetch_many(query);
        let outcome = loop {
            match stream.next().await.transpose() {
                Ok(Some(Either::Right(row))) => current.push(QueryResult::from(row)),
                Ok(Some(Either::Left(_))) => {
                    if results >= usize::from(begin) && rows.len() < count {
                        rows.push(std::mem::take(&mut current));
                    }
                    results += 1;
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(DbErr::Query(RuntimeErr::SqlxError(Arc::new(e)))),
            }
        };
        drop(stream);
        let outcome = outcome.and_then(|()| {
            if rows.len() == count {
                Ok(rows)
            } else {
                Err(DbErr::Custom(format!(
                    "a batch of {count} statements returned {} results",
                    rows.len()
                )))
            }
        });
        match outcome {
            Ok(rows) => {
                self.open = !commit;
                Ok(rows)
            }
            Err(e) => {
                // Best effort: if this fails too, the connection is closed on drop.
                let _ = self.rollback().await;
                Err(e)
            }
        }
    }

    async fn rollback(&mut self) -> Result<(), DbErr> {
        if !self.open {
            return Ok(());
        }
        self.conn
            .execute("ROLLBACK")
            .await
            .map_err(|e| DbErr::Exec(RuntimeErr::SqlxError(Arc::new(e))))?;
        self.open = false;
        Ok(())
    }
}

impl Drop for SqliteTxn {
    fn drop(&mut self) {
        // Never hand the pool a connection inside a transaction: closing it
        // makes SQLite roll the transaction back.
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

/// As sea-orm reports a connection that could not be had.
fn acquire_error(e: sqlx::Error) -> DbErr {
    match e {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        e => DbErr::Conn(RuntimeErr::SqlxError(Arc::new(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{store, store_with_workflow};
    use runplane_api::workflowrun::v1::RunStatus;

    #[tokio::test]
    async fn an_abandoned_transaction_is_rolled_back_and_the_store_writes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, wf) = store_with_workflow(&dir, "build").await;
        let run = store
            .start_run(&wf, "GITHUB_ACTION", "", None)
            .await
            .expect("start");
        let backend = store.db.get_database_backend();
        {
            // A request cancelled between two batches of its transaction.
            let mut txn = WriteTxn::begin(&store.db).await.expect("begin");
            txn.query(vec![Statement::from_sql_and_values(
                backend,
                "UPDATE runs SET status = 'success' WHERE id = ?",
                [run.id.clone().into()],
            )])
            .await
            .expect("claim");
        }
        assert_eq!(
            store.get_run("org", &run.id).await.expect("run").status,
            "initialized"
        );
        store
            .finish_run(crate::store::Finish {
                org_id: Some("org"),
                run_id: &run.id,
                outcome: RunStatus::Error,
                reason: "",
                finished_at_ms: None,
                trace_id: None,
            })
            .await
            .expect("finish after the abandoned transaction");
        assert_eq!(
            store.get_run("org", &run.id).await.expect("run").status,
            "error"
        );
    }

    #[tokio::test]
    async fn statements_of_a_batch_return_their_own_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        let backend = store.db.get_database_backend();
        let select = |sql: &str| Statement::from_string(backend, sql);
        let mut txn = WriteTxn::begin(&store.db).await.expect("begin");
        let rows = txn
            .query(vec![
                select("SELECT 1 UNION ALL SELECT 2"),
                select("SELECT 3 WHERE 0"),
                select("SELECT 4"),
            ])
            .await
            .expect("batch");
        let values: Vec<Vec<i64>> = rows
            .iter()
            .map(|rows| {
                rows.iter()
                    .map(|row| row.try_get_by_index(0).expect("value"))
                    .collect()
            })
            .collect();
        assert_eq!(values, [vec![1, 2], vec![], vec![4]]);
        txn.commit_after(vec![]).await.expect("commit");
    }
}
