//! Deployments, their environments' DORA aggregates, and commit times.
//!
//! An environment's aggregates ([`crate::aggregate::dora`]) are one encoded
//! `EnvironmentMetrics` in its row (`environments.metrics`), rewritten in the
//! transaction that records each deployment, under the row's lock (a no-op
//! update first: the row lock on PostgreSQL, the write lock on SQLite), so
//! concurrent deployments to one environment never lose a count. A scrape's
//! first page carries them as they are stored.
//!
//! Deployments are history, deleted by retention like runs (by when they
//! were recorded); the aggregates stay. Commit times are kept per
//! (organization, project, commit) as runs and deployments report them, for
//! deployments announced without one; commits are lowercase hex.

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

/// (organization, project, commit) known to be stored.
#[derive(Debug, Default)]
pub(crate) struct KnownCommits(HashSet<(String, String, String)>);

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
        let commit_sha = new.commit_sha.to_ascii_lowercase();
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
            // A repeat; the same key for another deployment is a mistake.
            if earlier.status != new.status.label() || earlier.commit_sha != commit_sha {
                return Err(Error::DeploymentKeyTaken {
                    request_id: request_id.to_owned(),
                    status: earlier.status,
                    commit_sha: earlier.commit_sha,
                });
            }
            return Ok((earlier, false));
        }
        let committed_at_ms = match new.committed_at_ms {
            Some(at) => {
                // Kept for this commit's deployments to other environments.
                txn.execute_raw(remember_commit(
                    self.db.get_database_backend(),
                    org_id,
                    new.project,
                    &commit_sha,
                    at,
                ))
                .await?;
                Some(at)
            }
            None if commit_sha.is_empty() => None,
            None => commit::Entity::find_by_id((
                org_id.to_owned(),
                new.project.to_owned(),
                commit_sha.clone(),
            ))
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
                // A commit time after the deployment (a run's clock, or a
                // rebased commit's date) gives no lead time.
                committed_at_ms: committed_at_ms.filter(|at| *at <= new.finished_at_ms),
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
            commit_sha,
            committed_at_ms,
            started_at_ms: new.started_at_ms,
            finished_at_ms: new.finished_at_ms,
            status: new.status.label().to_owned(),
            kind: new.kind.label().to_owned(),
            url: new.url.to_owned(),
            run_id: new.run_id.to_owned(),
            request_id: new.request_id.map(str::to_owned),
            recorded_at_ms: runplane_api::time::now_ms(),
        };
        deployment::Entity::insert(deployment::ActiveModel::from(recorded.clone()))
            .exec_without_returning(&txn)
            .await?;
        super::revisions::bump(&txn, org_id, &recorded.environment_id).await?;
        txn.commit().await?;
        Ok((recorded, true))
    }

    /// Deletes an organization's environment, its aggregates and its
    /// deployments; says how many deployments went.
    pub(crate) async fn delete_environment(
        &self,
        org_id: &str,
        project: &str,
        name: &str,
    ) -> Result<u64, Error> {
        let txn = self.db.begin().await?;
        let Some(env_id) = environment::Entity::find()
            .select_only()
            .column(environment::Column::Id)
            .filter(environment::Column::OrgId.eq(org_id))
            .filter(environment::Column::Project.eq(project))
            .filter(environment::Column::Name.eq(name))
            .into_tuple::<String>()
            .one(&txn)
            .await?
        else {
            return Err(Error::EnvironmentNotFound {
                project: project.to_owned(),
                environment: name.to_owned(),
            });
        };
        // The environment's row first: a deployment waiting for its lock
        // then finds it gone.
        environment::Entity::delete_by_id(&env_id)
            .exec(&txn)
            .await?;
        let deleted = deployment::Entity::delete_many()
            .filter(deployment::Column::EnvironmentId.eq(&env_id))
            .exec(&txn)
            .await?
            .rows_affected;
        super::revisions::bump(&txn, org_id, &env_id).await?;
        txn.commit().await?;
        Ok(deleted)
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
        let id = uuid::Uuid::now_v7().to_string();
        let active = environment::ActiveModel {
            id: Set(id.clone()),
            org_id: Set(org_id.to_owned()),
            project: Set(project.to_owned()),
            name: Set(name.to_owned()),
            created_at_ms: Set(created_at_ms),
            metrics: Set(dora::new(project, name, created_at_ms).encode_to_vec()),
        };
        // Another caller may create it at the same moment: whoever loses reads
        // the winner's row.
        let txn = self.db.begin().await?;
        let inserted = environment::Entity::insert(active)
            .on_conflict_do_nothing_on([
                environment::Column::OrgId,
                environment::Column::Project,
                environment::Column::Name,
            ])
            .exec_without_returning(&txn)
            .await?;
        if matches!(inserted, sea_orm::TryInsertResult::Inserted(n) if n > 0) {
            super::revisions::bump(&txn, org_id, &id).await?;
        }
        txn.commit().await?;
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

    /// Keeps when a project's commit was made, unless it is known already
    /// (the first time reported stays).
    pub(crate) async fn remember_commit(
        &self,
        org_id: &str,
        project: &str,
        commit_sha: &str,
        committed_at_ms: i64,
    ) -> Result<(), Error> {
        let commit_sha = commit_sha.to_ascii_lowercase();
        let key = (org_id.to_owned(), project.to_owned(), commit_sha);
        if self.known_commits().0.contains(&key) {
            return Ok(());
        }
        let backend = self.db.get_database_backend();
        self.db
            .execute_raw(remember_commit(
                backend,
                org_id,
                project,
                &key.2,
                committed_at_ms,
            ))
            .await?;
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

    /// Deletes up to `limit` deployments recorded before `cutoff_ms`, and the
    /// commits made before it; says how many deployments went.
    pub(crate) async fn delete_old_deployments(
        &self,
        cutoff_ms: i64,
        limit: u64,
    ) -> Result<u64, Error> {
        let oldest = Query::select()
            .column(deployment::Column::Id)
            .from(deployment::Entity)
            .and_where(deployment::Column::RecordedAtMs.lt(cutoff_ms))
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

/// Keeps a commit's time unless its project has it already.
fn remember_commit(
    backend: sea_orm::DbBackend,
    org_id: &str,
    project: &str,
    commit_sha: &str,
    committed_at_ms: i64,
) -> sea_orm::Statement {
    let insert = Query::insert()
        .into_table(commit::Entity)
        .columns([
            commit::Column::OrgId,
            commit::Column::Project,
            commit::Column::CommitSha,
            commit::Column::CommittedAtMs,
        ])
        .values_panic([
            org_id.into(),
            project.into(),
            commit_sha.into(),
            committed_at_ms.into(),
        ])
        .on_conflict(
            OnConflict::columns([
                commit::Column::OrgId,
                commit::Column::Project,
                commit::Column::CommitSha,
            ])
            .do_nothing()
            .to_owned(),
        )
        .to_owned();
    backend.build(&insert)
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
            .remember_commit("org", "web", "ABC123", start - 5 * H)
            .await
            .expect("commit");
        // Later reports of the same commit do not move its time.
        store
            .remember_commit("org", "web", "abc123", start)
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

        // The same key for another deployment is refused.
        let taken = store
            .record_deployment("org", deploy(DeploymentStatus::Failure, start, Some("d1")))
            .await
            .expect_err("another deployment under d1");
        assert!(
            matches!(taken, Error::DeploymentKeyTaken { .. }),
            "{taken:?}"
        );

        // Commit times are the project's: another project's deployment of
        // the same commit has none; a deployment's own time is kept for the
        // commit's next environment.
        let docs = NewDeployment {
            project: "docs",
            ..deploy(DeploymentStatus::Success, start, None)
        };
        let (recorded, _) = store.record_deployment("org", docs).await.expect("docs");
        assert_eq!(recorded.committed_at_ms, None);
        let staging = NewDeployment {
            environment: "staging",
            commit_sha: "FFFF",
            committed_at_ms: Some(start - H),
            ..deploy(DeploymentStatus::Success, start, None)
        };
        store
            .record_deployment("org", staging)
            .await
            .expect("staging");
        let promoted = NewDeployment {
            environment: "production",
            commit_sha: "ffff",
            ..deploy(DeploymentStatus::Success, start + 4 * H, None)
        };
        let (promoted, _) = store
            .record_deployment("org", promoted)
            .await
            .expect("promoted");
        assert_eq!(promoted.committed_at_ms, Some(start - H));

        // Retention (by when deployments were recorded): the history goes,
        // every organization's, and the aggregates stay.
        let envs = store.environment_metrics("org", None).await.expect("envs");
        let future = runplane_api::time::now_ms() + 60_000;
        assert_eq!(
            store
                .delete_old_deployments(future, 100)
                .await
                .expect("retention"),
            7
        );
        assert_eq!(
            store.environment_metrics("org", None).await.expect("envs"),
            envs
        );

        // An environment deleted goes with its deployments and aggregates.
        store
            .delete_environment("org", "web", "staging")
            .await
            .expect("delete");
        let left = store.environment_metrics("org", None).await.expect("envs");
        assert_eq!(left.len(), 2, "{left:?}");
        let gone = store
            .delete_environment("org", "web", "staging")
            .await
            .expect_err("gone");
        assert!(
            matches!(gone, Error::EnvironmentNotFound { .. }),
            "{gone:?}"
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
