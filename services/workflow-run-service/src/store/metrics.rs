//! The per-workflow aggregates a scrape reads: a page of workflows with their
//! (status, runner) aggregates, joined into one text value by the database,
//! plus the runs still in progress (found through the (org, status) index, so
//! finished history is never read).

use std::collections::HashMap;

use runplane_api::workflowrun::v1::RunStatus;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect, Statement,
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

/// Separators of the page's text: workflows, a workflow's fields, its
/// outcomes, an outcome's fields. Project and workflow names are hex-encoded
/// by the database, so no separator can occur in a field.
const WORKFLOW: char = '\n';
const WORKFLOW_FIELD: char = '|';
const OUTCOME: char = ';';
const FIELD: char = ' ';

/// A field of the page's text: text as it is, or a float written so that it
/// reads back exactly.
enum Field<'a> {
    Text(&'a str),
    Float(&'a str),
}

/// An expression joining `fields` with `separator`. SQLite builds the whole
/// record in one `format()`: each `||` allocates and copies the string so far
/// (a page of 1,000 workflows read in 7.0 ms instead of 7.6). PostgreSQL's
/// `format()` has no float conversion, so there the fields are concatenated.
fn record(backend: DbBackend, separator: char, fields: &[Field<'_>]) -> String {
    if backend == DbBackend::Postgres {
        let fields: Vec<String> = fields
            .iter()
            .map(|field| match field {
                Field::Text(expr) => (*expr).to_owned(),
                Field::Float(expr) => format!("{expr}::text"),
            })
            .collect();
        return fields.join(&format!(" || '{separator}' || "));
    }
    let (specs, exprs): (Vec<&str>, Vec<&str>) = fields
        .iter()
        .map(|field| match field {
            Field::Text(expr) => ("%s", *expr),
            // 17 significant digits read back as the same double.
            Field::Float(expr) => ("%.17g", *expr),
        })
        .unzip();
    format!(
        "format('{}', {})",
        specs.join(&separator.to_string()),
        exprs.join(", ")
    )
}

/// The page query: one row, one text value holding the whole page. Floats go
/// through text as the shortest (PostgreSQL) or a 17-digit (SQLite)
/// representation, both of which read back exactly.
fn page_sql(backend: DbBackend, after: bool) -> String {
    let postgres = backend == DbBackend::Postgres;
    let aggregate = if postgres {
        "string_agg"
    } else {
        "group_concat"
    };
    let text = |column: &str| {
        if postgres {
            format!("coalesce({column}::text, '-')")
        } else {
            format!("coalesce({column}, '-')")
        }
    };
    let hex = |column: &str| {
        if postgres {
            format!("encode(convert_to({column}, 'UTF8'), 'hex')")
        } else {
            format!("hex({column})")
        }
    };
    let newline = if postgres { "E'\\n'" } else { "char(10)" };
    let (org, cursor, limit) = match backend {
        DbBackend::Postgres => ("$1", "$2", if after { "$3" } else { "$2" }),
        _ => ("?", "?", "?"),
    };
    let cursor = if after {
        format!(" AND w.id > {cursor}")
    } else {
        String::new()
    };
    let outcome = record(
        backend,
        FIELD,
        &[
            Field::Text("d.status"),
            Field::Text("d.runner"),
            Field::Text("d.count"),
            Field::Float("d.sum_seconds"),
            Field::Text("d.runs_total"),
            Field::Text(&text("d.last_finished_at_ms")),
            Field::Text("d.bucket_bounds"),
            Field::Text("d.bucket_counts"),
        ],
    );
    let outcomes = format!(
        "coalesce((SELECT {aggregate}({outcome}, '{OUTCOME}') \
         FROM run_durations d WHERE d.workflow_id = w.id), '')"
    );
    let workflow = record(
        backend,
        WORKFLOW_FIELD,
        &[
            Field::Text("w.id"),
            Field::Text(&hex("w.project")),
            Field::Text(&hex("w.name")),
            Field::Text("w.created_at_ms"),
            Field::Text(&text("w.last_run_status")),
            Field::Text(&text("w.last_run_runner")),
            Field::Text(&text("w.last_run_finished_at_ms")),
            Field::Text(&text("w.last_run_duration_ms")),
            Field::Text(&outcomes),
        ],
    );
    format!(
        "SELECT {aggregate}(record, {newline}) FROM (SELECT {workflow} AS record \
         FROM workflows w WHERE w.org_id = {org}{cursor} ORDER BY w.id LIMIT {limit}) AS page"
    )
}

impl Store {
    /// A page of an organization's workflows with their aggregates.
    ///
    /// The page crosses the driver as one value: a scrape's cost was dominated
    /// by rows crossing it (each copied out of SQLite, allocated, and handed
    /// from the database thread to the caller, waking it), not by the
    /// database's own work.
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
        let text: Option<String> = match self
            .db
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                page_sql(backend, after.is_some()),
                values,
            ))
            .await?
        {
            Some(row) => row.try_get_by_index(0)?,
            None => None,
        };
        let mut page = text
            .as_deref()
            .unwrap_or_default()
            .split(WORKFLOW)
            .filter(|line| !line.is_empty())
            .map(|line| parse_workflow(org_id, line))
            .collect::<Result<Vec<_>, _>>()?;
        // The aggregate's order is the database's choice; the page's is ours.
        page.sort_unstable_by(|a, b| a.workflow.id.cmp(&b.workflow.id));

        // The page is the organization's workflows between its first and last
        // id, so that range selects their runs. Not an `IN` list of the ids: a
        // 1,000-id bind message followed by a small one is the pattern that
        // Nagle's algorithm stalls for a delayed ACK (~40 ms over TCP), and
        // sqlx 0.9.0 no longer sets TCP_NODELAY on PostgreSQL connections.
        let (first, last) = match (page.first(), page.last()) {
            (Some(first), Some(last)) => (first.workflow.id.clone(), last.workflow.id.clone()),
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
        for aggregates in &mut page {
            aggregates.runs_in_progress = in_progress
                .get(&aggregates.workflow.id)
                .map_or(0, |n| u32::try_from(*n).unwrap_or(u32::MAX));
        }
        Ok(page)
    }
}

/// A workflow and its outcomes, from one line of [`page_sql`]'s text.
fn parse_workflow(org_id: &str, line: &str) -> Result<WorkflowAggregates, CorruptHistogram> {
    let corrupt = || CorruptHistogram(format!("workflow record {line:?}"));
    // The outcomes come last and hold no field separator.
    let mut fields = line.splitn(9, WORKFLOW_FIELD);
    let mut next = || fields.next().ok_or_else(corrupt);
    let id = next()?.to_owned();
    let project = unhex(next()?).ok_or_else(corrupt)?;
    let name = unhex(next()?).ok_or_else(corrupt)?;
    let created_at_ms = next()?.parse().map_err(|_| corrupt())?;
    let last_run_status = optional(next()?).map(str::to_owned);
    let last_run_runner = optional(next()?).map(str::to_owned);
    let last_run_finished_at_ms = optional(next()?)
        .map(str::parse)
        .transpose()
        .map_err(|_| corrupt())?;
    let last_run_duration_ms = optional(next()?)
        .map(str::parse)
        .transpose()
        .map_err(|_| corrupt())?;
    let mut outcomes = next()?
        .split(OUTCOME)
        .filter(|text| !text.is_empty())
        .map(|text| parse_outcome(&id, text))
        .collect::<Result<Vec<_>, _>>()?;
    outcomes.sort_unstable_by(|a, b| (&a.status, &a.runner).cmp(&(&b.status, &b.runner)));
    Ok(WorkflowAggregates {
        workflow: workflow::Model {
            id,
            org_id: org_id.to_owned(),
            project,
            name,
            created_at_ms,
            last_run_status,
            last_run_runner,
            last_run_finished_at_ms,
            last_run_duration_ms,
        },
        outcomes,
        runs_in_progress: 0,
    })
}

/// `-` is the page's NULL.
fn optional(field: &str) -> Option<&str> {
    (field != "-").then_some(field)
}

/// Text the database hex-encoded (either case).
fn unhex(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
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
                        .map(|a| (a.workflow.id.clone(), a.runs_in_progress)),
                );
                if (page.len() as u64) < limit {
                    break;
                }
                after = page.last().map(|a| a.workflow.id.clone());
            }
            assert_eq!(counted, expected, "pages of {limit}");
        }
    }

    #[test]
    fn any_name_survives_the_page_text() {
        let hex = |s: &str| s.bytes().map(|b| format!("{b:02X}")).collect::<String>();
        let (project, name) = ("a|b;c d", "déploiement\u{202e}\"x\"");
        let line = format!(
            "id-1|{}|{}|1700000000000|SUCCESS|GITHUB_ACTION|1700000001000|-|\
             SUCCESS GITHUB_ACTION 1 1 1 1700000001000 10 1",
            hex(project),
            hex(name).to_lowercase()
        );
        let parsed = parse_workflow("org", &line).expect("parses");
        assert_eq!(
            (
                parsed.workflow.project.as_str(),
                parsed.workflow.name.as_str()
            ),
            (project, name)
        );
        assert_eq!(parsed.workflow.last_run_duration_ms, None);
        assert_eq!(parsed.outcomes.len(), 1);
        assert!(parse_workflow("org", "id-1|zz|00|1|-|-|-|-|").is_err());
        assert!(parse_workflow("org", "id-1|41|41|1|-|-|-").is_err());
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
