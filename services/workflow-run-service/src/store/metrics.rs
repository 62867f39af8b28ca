//! A scrape's page: an organization's workflows' metrics records (see
//! [`super::record`]), joined into one value by the database, plus the runs
//! still in progress (found through the (org, status) index, so finished
//! history is never read).

use std::collections::HashMap;

use runplane_api::workflowrun::v1::{RunStatus, WorkflowMetrics};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect, Statement,
};

use super::{Store, record};
use crate::entity::run;
use crate::error::Error;
use crate::run::status_name;

/// The page query. On SQLite it returns one row, one value holding the page's
/// records joined: rows crossing sqlx's SQLite driver are expensive (each is
/// copied out of SQLite, allocated, and handed from the database thread to
/// the caller, waking it), the database's own work is not. On PostgreSQL rows
/// come off the socket cheaply and `string_agg` costs more than it saves
/// (a page of 1,000 read in 1.5 ms as rows, 2.5 ms joined), so it returns
/// the records as rows.
fn page_sql(backend: DbBackend, after: bool) -> String {
    let (org, cursor, limit) = match backend {
        DbBackend::Postgres => ("$1", "$2", if after { "$3" } else { "$2" }),
        _ => ("?", "?", "?"),
    };
    let cursor = if after {
        format!(" AND id > {cursor}")
    } else {
        String::new()
    };
    let page = format!(
        "SELECT metrics FROM workflows WHERE org_id = {org}{cursor} ORDER BY id LIMIT {limit}"
    );
    match backend {
        DbBackend::Postgres => page,
        // group_concat joins the bytes as they are but calls the result text;
        // the cast calls it a blob again.
        _ => format!("SELECT CAST(group_concat(metrics, '') AS BLOB) FROM ({page}) AS page"),
    }
}

impl Store {
    /// A page of an organization's workflows with their aggregates, in id order.
    pub async fn workflow_metrics(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<WorkflowMetrics>, Error> {
        let backend = self.db.get_database_backend();
        let mut values: Vec<sea_orm::Value> = vec![org_id.into()];
        if let Some(after) = after {
            values.push(after.into());
        }
        values.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
        let rows = self
            .db
            .query_all_raw(Statement::from_sql_and_values(
                backend,
                page_sql(backend, after.is_some()),
                values,
            ))
            .await?;
        let mut page = Vec::new();
        for row in rows {
            if let Some(records) = row.try_get_by_index::<Option<Vec<u8>>>(0)? {
                page.extend(record::decode_page(&records)?);
            }
        }
        // The aggregate's order is the database's choice; the page's is ours.
        page.sort_unstable_by(|a, b| a.workflow_id.cmp(&b.workflow_id));

        // The page is the organization's workflows between its first and last
        // id, so that range selects their runs. Not an `IN` list of the ids: a
        // 1,000-id bind message followed by a small one is the pattern that
        // Nagle's algorithm stalls for a delayed ACK (~40 ms over TCP), and
        // sqlx 0.9.0 no longer sets TCP_NODELAY on PostgreSQL connections.
        let (first, last) = match (page.first(), page.last()) {
            (Some(first), Some(last)) => (first.workflow_id.clone(), last.workflow_id.clone()),
            _ => return Ok(page),
        };
        let in_progress: HashMap<String, i64> = run::Entity::find()
            .select_only()
            .column(run::Column::WorkflowId)
            .column_as(run::Column::Id.count(), "runs")
            .filter(run::Column::OrgId.eq(org_id))
            .filter(run::Column::Status.eq(status_name(RunStatus::Initialized)))
            .filter(run::Column::WorkflowId.between(first, last))
            .group_by(run::Column::WorkflowId)
            .into_tuple::<(String, i64)>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        for workflow in &mut page {
            workflow.runs_in_progress = in_progress
                .get(&workflow.workflow_id)
                .map_or(0, |n| u32::try_from(*n).unwrap_or(u32::MAX));
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn runs_in_progress_are_counted_on_every_page_and_only_for_the_org() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::test_support::store(&dir).await;
        // Interleaved creation: the other organization's workflows fall inside
        // this one's id ranges.
        let mut expected = Vec::new();
        for (i, name) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            let ours = store
                .find_or_create_workflow("org", "default", name)
                .await
                .expect("workflow");
            let theirs = store
                .find_or_create_workflow("other", "default", name)
                .await
                .expect("workflow");
            for _ in 0..i {
                store
                    .start_run(&ours, "UNSPECIFIED", "", None)
                    .await
                    .expect("start");
            }
            store
                .start_run(&theirs, "UNSPECIFIED", "", None)
                .await
                .expect("start");
            expected.push((ours.id.clone(), u32::try_from(i).expect("small")));
        }
        expected.sort();
        for limit in [1, 2, 5] {
            let mut counted = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = store
                    .workflow_metrics("org", after.as_deref(), limit)
                    .await
                    .expect("page");
                counted.extend(
                    page.iter()
                        .map(|w| (w.workflow_id.clone(), w.runs_in_progress)),
                );
                if (page.len() as u64) < limit {
                    break;
                }
                after = page.last().map(|w| w.workflow_id.clone());
            }
            assert_eq!(counted, expected, "pages of {limit}");
        }
    }
}
