//! Deployments, their environments' DORA aggregates, and commit times.
//!
//! An environment's aggregates ([`crate::aggregate::dora`]) are one encoded
//! `EnvironmentMetrics` in its row (`environments.metrics`), rewritten in the
//! transaction that records each deployment, under the row's lock (a no-op
//! update first: the row lock on PostgreSQL, the write lock on SQLite), so
//! concurrent deployments to one environment never lose a count. A scrape's
//! first page carries them as they are stored.
//!
//! Deployments are history, deleted by retention like runs; the aggregates
//! stay. Commit times are kept per (organization, commit) as runs report
//! them, for deployments announced without one.

use std::collections::HashSet;

use prost::Message as _;
use runplane_api::workflowrun::v1::{DeploymentKind, DeploymentStatus, EnvironmentMetrics};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait as _, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait as _,
};

use super::Store;
use super::record::CorruptRecord;
use crate::aggregate::dora;
use crate::entity::{commit, deployment, environment};
use crate::error::Error;

/// Most environments one organization may have: each is a dozen series on
/// its scrape, all on the first page.
pub(crate) const MAX_ENVIRONMENTS_PER_ORG: u64 = 1000;

/// Commits remembered as stored already, at most, per replica.
const KNOWN_COMMITS: usize = 10_000;

/// A deployment to record, as the caller checked it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewDeployment<'a> {
    pub(crate) project: &'a str,
    pub(crate) environment: &'a str,
    pub(crate) commit_sha: &'a str,
    pub(crate) committed_at_ms: Option<i64>,
    pub(crate) started_at_ms: Option<i64>,
    pub(crate) finished_at_ms: i64,
    pub(crate) status: DeploymentStatus,
    pub(crate) kind: DeploymentKind,
    pub(crate) url: &'a str,
    pub(crate) run_id: &'a str,
    pub(crate) request_id: Option<&'a str>,
}

/// Which deployments to list.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeploymentFilter {
    pub(crate) environment: Option<String>,
    pub(crate) project: Option<String>,
    /// Only these projects' (a project-limited token).
    pub(crate) projects: Option<Vec<String>>,
}

/// (organization, commit) pairs known to be stored.
#[derive(Debug, Default)]
pub(crate) struct KnownCommits(HashSet<(String, String)>);

impl Store {
    /// Records a finished deployment and counts it in its environment's
    /// aggregates (creating the environment on first use); with a request id
    /// already recorded for the environment, returns that deployment
    /// uncounted. Says whether it counted.
    pub(crate) async fn record_deployment(
        &self,
        org_id: &str,
        new: NewDeployment<'_>,
    ) -> Result<(deployment::Model, bool), Error> {
        let env_id = self
            .find_or_create_environment(org_id, new.project, new.environment)
            .await?;
        let txn = self.db.begin().await?;
        // The lock, before anything is read (see the module).
        environment::Entity::update_many()
            .col_expr(
                environment::Column::Metrics,
                Expr::col(environment::Column::Metrics),
            )
            .filter(environment::Column::Id.eq(&env_id))
            .exec(&txn)
            .await?;
        if let Some(request_id) = new.request_id
            && let Some(earlier) = deployment::Entity::find()
                .filter(deployment::Column::EnvironmentId.eq(&env_id))
                .filter(deployment::Column::RequestId.eq(request_id))
                .one(&txn)
                .await?
        {
            return Ok((earlier, false));
        }
        let committed_at_ms = match new.committed_at_ms {
            Some(at) => Some(at),
            None if new.commit_sha.is_empty() => None,
            None => commit::Entity::find_by_id((org_id.to_owned(), new.commit_sha.to_owned()))
                .one(&txn)
                .await?
                .map(|c| c.committed_at_ms),
        };
        let row = environment::Entity::find_by_id(&env_id)
            .one(&txn)
            .await?
            .ok_or_else(|| sea_orm::DbErr::RecordNotFound("environment vanished".into()))?;
        let mut metrics = decode(&row.metrics)?;
        dora::count(
            &mut metrics,
            dora::Deployed {
                status: new.status,
                kind: new.kind,
                finished_at_ms: new.finished_at_ms,
                committed_at_ms,
            },
        );
        environment::Entity::update_many()
            .col_expr(
                environment::Column::Metrics,
                Expr::value(metrics.encode_to_vec()),
            )
            .filter(environment::Column::Id.eq(&env_id))
            .exec(&txn)
            .await?;
        let recorded = deployment::Model {
            id: uuid::Uuid::now_v7().to_string(),
            org_id: org_id.to_owned(),
            environment_id: env_id,
            project: new.project.to_owned(),
            environment: new.environment.to_owned(),
            commit_sha: new.commit_sha.to_owned(),
            committed_at_ms,
            started_at_ms: new.started_at_ms,
            finished_at_ms: new.finished_at_ms,
            status: new.status.label().to_owned(),
            kind: new.kind.label().to_owned(),
            url: new.url.to_owned(),
            run_id: new.run_id.to_owned(),
            request_id: new.request_id.map(str::to_owned),
        };
        deployment::Entity::insert(deployment::ActiveModel::from(recorded.clone()))
            .exec_without_returning(&txn)
            .await?;
        txn.commit().await?;
        Ok((recorded, true))
    }

    /// The id of an organization's environment, created (with empty
    /// aggregates) if it is new, within [`MAX_ENVIRONMENTS_PER_ORG`].
    async fn find_or_create_environment(
        &self,
        org_id: &str,
        project: &str,
        name: &str,
    ) -> Result<String, Error> {
        let find = || {
            environment::Entity::find()
                .select_only()
                .column(environment::Column::Id)
                .filter(environment::Column::OrgId.eq(org_id))
                .filter(environment::Column::Project.eq(project))
                .filter(environment::Column::Name.eq(name))
                .into_tuple::<String>()
                .one(&self.db)
        };
        if let Some(id) = find().await? {
            return Ok(id);
        }
        let existing = environment::Entity::find()
            .filter(environment::Column::OrgId.eq(org_id))
            .count(&self.db)
            .await?;
        if existing >= MAX_ENVIRONMENTS_PER_ORG {
            return Err(Error::EnvironmentLimit {
                limit: MAX_ENVIRONMENTS_PER_ORG,
            });
        }
        let created_at_ms = runplane_api::time::now_ms();
        let active = environment::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            org_id: Set(org_id.to_owned()),
            project: Set(project.to_owned()),
            name: Set(name.to_owned()),
            created_at_ms: Set(created_at_ms),
            metrics: Set(dora::new(project, name, created_at_ms).encode_to_vec()),
        };
        // Another caller may create it at the same moment: whoever loses reads the winner's row.
        environment::Entity::insert(active)
            .on_conflict_do_nothing_on([
                environment::Column::OrgId,
                environment::Column::Project,
                environment::Column::Name,
            ])
            .exec_without_returning(&self.db)
            .await?;
        Ok(find()
            .await?
            .ok_or_else(|| sea_orm::DbErr::RecordNotFound("environment vanished".into()))?)
    }

    /// An organization's environments' aggregates (only `projects`' when
    /// given), in (project, environment) order.
    pub(crate) async fn environment_metrics(
        &self,
        org_id: &str,
        projects: Option<&[String]>,
    ) -> Result<Vec<EnvironmentMetrics>, Error> {
        let mut query = environment::Entity::find()
            .select_only()
            .column(environment::Column::Metrics)
            .filter(environment::Column::OrgId.eq(org_id))
            .order_by_asc(environment::Column::Project)
            .order_by_asc(environment::Column::Name);
        if let Some(projects) = projects {
            query = query.filter(environment::Column::Project.is_in(projects));
        }
        let stored: Vec<Vec<u8>> = query.into_tuple().all(&self.db).await?;
        stored.iter().map(|bytes| Ok(decode(bytes)?)).collect()
    }

    /// Deployments, most recently recorded first, before the id `before`.
    pub(crate) async fn list_deployments(
        &self,
        org_id: &str,
        filter: &DeploymentFilter,
        before: Option<&str>,
        limit: u64,
    ) -> Result<Vec<deployment::Model>, Error> {
        let mut query = deployment::Entity::find()
            .filter(deployment::Column::OrgId.eq(org_id))
            .order_by_desc(deployment::Column::Id)
            .limit(limit);
        if let Some(environment) = &filter.environment {
            query = query.filter(deployment::Column::Environment.eq(environment));
        }
        if let Some(project) = &filter.project {
            query = query.filter(deployment::Column::Project.eq(project));
        }
        if let Some(projects) = &filter.projects {
            query = query.filter(deployment::Column::Project.is_in(projects));
        }
        if let Some(before) = before {
            query = query.filter(deployment::Column::Id.lt(before));
        }
        Ok(query.all(&self.db).await?)
    }

    /// Keeps when an organization's commit was made, unless it is known
    /// already (the first time reported stays).
    pub(crate) async fn remember_commit(
        &self,
        org_id: &str,
        commit_sha: &str,
        committed_at_ms: i64,
    ) -> Result<(), Error> {
        let key = (org_id.to_owned(), commit_sha.to_owned());
        if self.known_commits().0.contains(&key) {
            return Ok(());
        }
        let insert = Query::insert()
            .into_table(commit::Entity)
            .columns([
                commit::Column::OrgId,
                commit::Column::CommitSha,
                commit::Column::CommittedAtMs,
            ])
            .values_panic([org_id.into(), commit_sha.into(), committed_at_ms.into()])
            .on_conflict(
                OnConflict::columns([commit::Column::OrgId, commit::Column::CommitSha])
                    .do_nothing()
                    .to_owned(),
            )
            .to_owned();
        let backend = self.db.get_database_backend();
        self.db.execute_raw(backend.build(&insert)).await?;
        let mut known = self.known_commits();
        if known.0.len() >= KNOWN_COMMITS {
            known.0.clear();
        }
        known.0.insert(key);
        Ok(())
    }

    fn known_commits(&self) -> std::sync::MutexGuard<'_, KnownCommits> {
        self.known_commits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Deletes up to `limit` deployments that finished before `cutoff_ms`, and
    /// the commits made before it; says how many deployments went.
    pub(crate) async fn delete_old_deployments(
        &self,
        cutoff_ms: i64,
        limit: u64,
    ) -> Result<u64, Error> {
        let oldest = Query::select()
            .column(deployment::Column::Id)
            .from(deployment::Entity)
            .and_where(deployment::Column::FinishedAtMs.lt(cutoff_ms))
            .limit(limit)
            .to_owned();
        let deployments = deployment::Entity::delete_many()
            .filter(deployment::Column::Id.in_subquery(oldest))
            .exec(&self.db)
            .await?
            .rows_affected;
        // One row per commit, found through its index: no batches needed.
        commit::Entity::delete_many()
            .filter(commit::Column::CommittedAtMs.lt(cutoff_ms))
            .exec(&self.db)
            .await?;
        Ok(deployments)
    }
}

fn decode(bytes: &[u8]) -> Result<EnvironmentMetrics, CorruptRecord> {
    EnvironmentMetrics::decode(bytes).map_err(|e| CorruptRecord(e.to_string()))
}

#[cfg(test)]
mod tests {
    use runplane_api::workflowrun::v1::{DeploymentKind, DeploymentStatus};

    use super::*;
    use crate::store::test_support::store;

    const H: i64 = 3_600_000;

    fn deploy(status: DeploymentStatus, at: i64, request_id: Option<&str>) -> NewDeployment<'_> {
        NewDeployment {
            project: "web",
            environment: "production",
            commit_sha: "abc123",
            committed_at_ms: None,
            started_at_ms: None,
            finished_at_ms: at,
            status,
            kind: DeploymentKind::Unspecified,
            url: "",
            run_id: "",
            request_id,
        }
    }

    /// Commit times from runs, a redelivered deployment, a failure and its
    /// restore: exact aggregates, in the store's own tables.
    async fn deployments_count_once_with_their_commits_time(store: Store) {
        let start = 1_000 * H;
        store
            .remember_commit("org", "abc123", start - 5 * H)
            .await
            .expect("commit");
        // Later reports of the same commit do not move its time.
        store
            .remember_commit("org", "abc123", start)
            .await
            .expect("commit again");
        let (first, counted) = store
            .record_deployment("org", deploy(DeploymentStatus::Success, start, Some("d1")))
            .await
            .expect("deploy");
        assert!(counted);
        assert_eq!(first.committed_at_ms, Some(start - 5 * H));
        let (again, counted) = store
            .record_deployment("org", deploy(DeploymentStatus::Success, start, Some("d1")))
            .await
            .expect("redelivered");
        assert_eq!((again.id, counted), (first.id.clone(), false));
        store
            .record_deployment(
                "org",
                deploy(DeploymentStatus::Failure, start + H, Some("d2")),
            )
            .await
            .expect("failure");
        store
            .record_deployment(
                "org",
                deploy(DeploymentStatus::Success, start + 3 * H, None),
            )
            .await
            .expect("fix");
        // Another organization's deployment of the same names is its own.
        store
            .record_deployment("other", deploy(DeploymentStatus::Failure, start, None))
            .await
            .expect("other org");

        let envs = store.environment_metrics("org", None).await.expect("envs");
        assert_eq!(envs.len(), 1);
        let env = &envs[0];
        assert_eq!(
            (env.project.as_str(), env.environment.as_str()),
            ("web", "production")
        );
        assert_eq!((env.deployments_succeeded, env.deployments_failed), (2, 1));
        assert_eq!(env.change_failures, 1);
        assert_eq!(env.failing_since, None);
        let lead = env.lead_time.as_ref().expect("lead time");
        // 5 h, then 8 h after the commit.
        assert_eq!((lead.count, lead.sum_seconds), (2, 13.0 * 3600.0));
        let restore = env.restore_time.as_ref().expect("restore");
        assert_eq!((restore.count, restore.sum_seconds), (1, 2.0 * 3600.0));
        assert_eq!(
            store
                .environment_metrics("org", Some(&["api".to_owned()]))
                .await
                .expect("other project")
                .len(),
            0
        );
        let listed = store
            .list_deployments("org", &DeploymentFilter::default(), None, 10)
            .await
            .expect("list");
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[2].id, first.id, "newest first");

        // Retention: the history goes (both organizations'), the aggregates stay.
        assert_eq!(
            store
                .delete_old_deployments(start + 2 * H, 100)
                .await
                .expect("retention"),
            3
        );
        assert_eq!(
            store.environment_metrics("org", None).await.expect("envs"),
            envs
        );
    }

    #[tokio::test]
    async fn deployments_count_once_with_their_commits_time_on_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        deployments_count_once_with_their_commits_time(store(&dir).await).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: set RUNPLANE_TEST_POSTGRES (scripts/test does)"]
    async fn deployments_count_once_with_their_commits_time_on_postgres() {
        crate::store::test_support::on_postgres(deployments_count_once_with_their_commits_time)
            .await;
    }
}
