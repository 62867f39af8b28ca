//! The per-workflow aggregates a scrape reads: one row per workflow, carrying
//! its (status, runner) aggregates joined into one text column by the
//! database, plus the runs still in progress (found through the (org, status)
//! index, so finished history is never read).
//!
//! One row per workflow rather than one per aggregate: a scrape's cost is
//! dominated by rows crossing the driver (each value copied out of the
//! database, allocated, handed over between threads), not by the database's
//! own work, so a 1,000-workflow page is 1,000 rows instead of ~4,000.

use std::collections::HashMap;

use runplane_api::workflowrun::v1::RunStatus;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryResult, QuerySelect,
    Statement,
};

use super::Store;
use crate::entity::{run, run_duration, workflow};
use crate::error::Error;
use crate::histogram::CorruptHistogram;
use crate::run::status_name;

/// One workflow's row in a scrape.
#[derive(Debug, PartialEq)]
pub struct WorkflowAggregates {
    pub workflow: workflow::Model,
    /// Ordered by (status, runner).
    pub outcomes: Vec<run_duration::Model>,
    pub runs_in_progress: u32,
}

/// Separates an outcome's fields, and outcomes, in the joined column: neither
/// occurs in a status, a runner, a number or a comma-separated list.
const FIELD: char = ' ';
const OUTCOME: char = ';';

/// The page query. Floats go through text as the shortest (PostgreSQL) or a
/// 17-digit (SQLite) representation, both of which read back exactly.
fn page_sql(backend: DbBackend, after: bool) -> String {
    let (aggregate, sum, finished) = match backend {
        DbBackend::Postgres => (
            "string_agg",
            "d.sum_seconds::text",
            "coalesce(d.last_finished_at_ms::text, '-')",
        ),
        _ => (
            "group_concat",
            "printf('%.17g', d.sum_seconds)",
            "coalesce(d.last_finished_at_ms, '-')",
        ),
    };
    let (org, cursor, limit) = match backend {
        DbBackend::Postgres => ("$1", "$2", if after { "$3" } else { "$2" }),
        _ => ("?", "?", "?"),
    };
    let cursor = if after {
        format!(" AND w.id > {cursor}")
    } else {
        String::new()
    };
    format!(
        "SELECT w.id, w.project, w.name, w.created_at_ms, w.last_run_status, w.last_run_runner, \
         w.last_run_finished_at_ms, w.last_run_duration_ms, \
         (SELECT {aggregate}(d.status || ' ' || d.runner || ' ' || d.count || ' ' || {sum} || ' ' \
         || d.runs_total || ' ' || {finished} || ' ' || d.bucket_bounds || ' ' || d.bucket_counts, ';') \
         FROM run_durations d WHERE d.workflow_id = w.id) AS outcomes \
         FROM workflows w WHERE w.org_id = {org}{cursor} ORDER BY w.id LIMIT {limit}"
    )
}

impl Store {
    /// A page of an organization's workflows with their aggregates.
    pub async fn workflow_metrics(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Vec<WorkflowAggregates>, Error> {
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
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut page = rows
            .iter()
            .map(|row| aggregates_from_row(org_id, row))
            .collect::<Result<Vec<_>, Error>>()?;

        let ids: Vec<&str> = page.iter().map(|a| a.workflow.id.as_str()).collect();
        let in_progress: HashMap<String, i64> = run::Entity::find()
            .select_only()
            .column(run::Column::WorkflowId)
            .column_as(run::Column::Id.count(), "runs")
            .filter(run::Column::OrgId.eq(org_id))
            .filter(run::Column::Status.eq(status_name(RunStatus::Initialized)))
            .filter(run::Column::WorkflowId.is_in(ids))
            .group_by(run::Column::WorkflowId)
            .into_tuple::<(String, i64)>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        for aggregates in &mut page {
            aggregates.runs_in_progress = in_progress
                .get(&aggregates.workflow.id)
                .map_or(0, |n| u32::try_from(*n).unwrap_or(u32::MAX));
        }
        Ok(page)
    }
}

/// A workflow and its outcomes from one row of [`page_sql`], read by position.
fn aggregates_from_row(org_id: &str, row: &QueryResult) -> Result<WorkflowAggregates, Error> {
    let workflow = workflow::Model {
        id: row.try_get_by_index(0)?,
        org_id: org_id.to_owned(),
        project: row.try_get_by_index(1)?,
        name: row.try_get_by_index(2)?,
        created_at_ms: row.try_get_by_index(3)?,
        last_run_status: row.try_get_by_index(4)?,
        last_run_runner: row.try_get_by_index(5)?,
        last_run_finished_at_ms: row.try_get_by_index(6)?,
        last_run_duration_ms: row.try_get_by_index(7)?,
    };
    let joined: Option<String> = row.try_get_by_index(8)?;
    let mut outcomes = joined
        .as_deref()
        .unwrap_or_default()
        .split(OUTCOME)
        .filter(|text| !text.is_empty())
        .map(|text| parse_outcome(&workflow.id, text))
        .collect::<Result<Vec<_>, _>>()?;
    outcomes.sort_unstable_by(|a, b| (&a.status, &a.runner).cmp(&(&b.status, &b.runner)));
    Ok(WorkflowAggregates {
        workflow,
        outcomes,
        runs_in_progress: 0,
    })
}

/// One outcome, as the page query joins its fields.
fn parse_outcome(workflow_id: &str, text: &str) -> Result<run_duration::Model, CorruptHistogram> {
    let corrupt = || CorruptHistogram(format!("aggregate of workflow {workflow_id}: {text:?}"));
    let mut fields = text.split(FIELD);
    let mut next = || fields.next().ok_or_else(corrupt);
    let status = next()?.to_owned();
    let runner = next()?.to_owned();
    let count = next()?.parse().map_err(|_| corrupt())?;
    let sum_seconds = next()?.parse().map_err(|_| corrupt())?;
    let runs_total = next()?.parse().map_err(|_| corrupt())?;
    let last_finished_at_ms = match next()? {
        "-" => None,
        at => Some(at.parse().map_err(|_| corrupt())?),
    };
    let bucket_bounds = next()?.to_owned();
    let bucket_counts = next()?.to_owned();
    if fields.next().is_some() {
        return Err(corrupt());
    }
    Ok(run_duration::Model {
        workflow_id: workflow_id.to_owned(),
        status,
        runner,
        count,
        sum_seconds,
        bucket_bounds,
        bucket_counts,
        runs_total,
        last_finished_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_back_exactly() {
        let outcome = parse_outcome(
            "w",
            "SUCCESS GITHUB_ACTION 3 0.30000000000000004 4 1700000000000 10,30 1,2",
        )
        .expect("parses");
        assert_eq!(outcome.sum_seconds, 0.1 + 0.2);
        assert_eq!((outcome.count, outcome.runs_total), (3, 4));
        assert_eq!(outcome.last_finished_at_ms, Some(1_700_000_000_000));
        assert_eq!(
            (
                outcome.bucket_bounds.as_str(),
                outcome.bucket_counts.as_str()
            ),
            ("10,30", "1,2")
        );
        let expired = parse_outcome("w", "EXPIRED UNSPECIFIED 0 0 1 - 10,30 0,0").expect("parses");
        assert_eq!(expired.last_finished_at_ms, None);
    }

    #[test]
    fn a_mangled_outcome_is_an_error_not_a_guess() {
        for text in [
            "SUCCESS GITHUB_ACTION",
            "SUCCESS X 3 x 4 - 10 1",
            "A B 1 1 1 - 1 1 extra",
        ] {
            assert!(parse_outcome("w", text).is_err(), "{text}");
        }
    }
}
