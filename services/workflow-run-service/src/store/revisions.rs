//! An organization's revision: which writes its aggregates have seen, so
//! that a scrape holding an exposition can ask whether it is still current
//! without reading them (`ListWorkflowMetricsRequest.known_revision`).
//!
//! Every transaction that changes what a scrape's pages carry but for what
//! is true now (a workflow's record or exemplars, a workflow created or
//! deleted, an environment's aggregates) bumps a counter of the
//! organization's, last, before it commits; the revision is their sum. The
//! counters are in shards, by workflow or environment, so that concurrent
//! writes to one organization's different workflows rarely wait for each
//! other on PostgreSQL (they wait on their workflow's row anyway); bumps come
//! last and in one order, so they add no deadlock. Rows are never deleted
//! and a new one starts above any count this one could have reached, so a
//! revision never comes back; it carries the organization's id, so another
//! organization (one recreated under a deleted one's name) never has it.
//!
//! Why a scrape may trust it: it reads the revision before the aggregates,
//! and a change and its bump commit together, so what it reads after is at
//! least as new as the revision it was told. A change committed in between
//! makes the next scrape find another revision and read again: never a stale
//! answer, at worst one more read. A write that does not bump (an older
//! replica during a rolling upgrade, a restored backup whose counters climb
//! back to a revision seen before) shows at metrics-service's next full read,
//! within a minute; a migration that rewrites records must bump every
//! organization it changes.

use std::collections::BTreeSet;

use sea_orm::sea_query::{Expr, ExprTrait as _, OnConflict, Query};
use sea_orm::{DbBackend, Statement};

use super::Store;
use crate::entity::org_revision;
use crate::error::Error;

/// Counters per organization.
const SHARDS: u32 = 64;

/// The shards of the writes to (organization, workflow or environment id)s,
/// each once, in one order.
#[derive(Debug, Default)]
pub(super) struct Bumps(BTreeSet<(String, i32)>);

impl Bumps {
    /// A write to `org_id`'s workflow or environment `id`.
    pub(super) fn add(&mut self, org_id: &str, id: &str) {
        self.0.insert((org_id.to_owned(), shard_of(id)));
    }

    /// The statements that bump them: last in their transaction.
    pub(super) fn statements(&self, backend: DbBackend) -> Vec<Statement> {
        // A new counter starts at the current time in microseconds: above
        // what any earlier one of its shard can have counted to.
        let start = runplane_api::time::now_ms().saturating_mul(1000);
        self.0
            .iter()
            .map(|(org_id, shard)| {
                let insert = Query::insert()
                    .into_table(org_revision::Entity)
                    .columns([
                        org_revision::Column::OrgId,
                        org_revision::Column::Shard,
                        org_revision::Column::Revision,
                    ])
                    .values_panic([org_id.into(), (*shard).into(), start.into()])
                    .on_conflict(
                        OnConflict::columns([
                            org_revision::Column::OrgId,
                            org_revision::Column::Shard,
                        ])
                        .value(
                            org_revision::Column::Revision,
                            Expr::col((org_revision::Entity, org_revision::Column::Revision))
                                .add(1),
                        )
                        .to_owned(),
                    )
                    .to_owned();
                backend.build(&insert)
            })
            .collect()
    }
}

/// The shard of a workflow or environment id (FNV-1a: stable across
/// builds and replicas).
fn shard_of(id: &str) -> i32 {
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % u64::from(SHARDS)) as i32
}

/// Counts a change of `org_id`'s workflow or environment `id` in the
/// organization's revision, in `txn` (last before it commits).
pub(crate) async fn bump(
    txn: &sea_orm::DatabaseTransaction,
    org_id: &str,
    id: &str,
) -> Result<(), Error> {
    use sea_orm::ConnectionTrait as _;
    let mut bumps = Bumps::default();
    bumps.add(org_id, id);
    for statement in bumps.statements(txn.get_database_backend()) {
        txn.execute_raw(statement).await?;
    }
    Ok(())
}

impl Store {
    /// The organization's revision now (read with what is true now by
    /// [`Store::revision_and_now`], which a scrape uses).
    #[cfg(test)]
    pub(crate) async fn revision(&self, org_id: &str) -> Result<String, Error> {
        Ok(self.revision_and_now(org_id, None).await?.0)
    }
}

/// An organization's revision: its id and the sum of its counters, so that
/// another organization (one recreated under a deleted one's name, as a
/// scrape names it) never has it.
pub(super) fn revision_of(org_id: &str, counters_sum: i64) -> String {
    format!("{org_id}:{counters_sum}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn organizations_never_share_a_revision() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::test_support::store(&dir).await;
        let a = store.revision("org-a").await.expect("a");
        let b = store.revision("org-b").await.expect("b");
        assert_ne!(a, b);
    }

    #[test]
    fn shards_spread_ids_and_stay_put() {
        let shards: BTreeSet<i32> = (0..2000).map(|i| shard_of(&format!("wf-{i}"))).collect();
        assert_eq!(shards.len(), SHARDS as usize);
        assert_eq!(
            shard_of("0193a1b2-0000-7000-8000-000000000000"),
            shard_of("0193a1b2-0000-7000-8000-000000000000")
        );
    }
}

#[cfg(test)]
mod revision_tests {
    use runplane_api::workflowrun::v1::{DeploymentKind, DeploymentStatus, RunStatus};

    use crate::store::test_support::{finished_run, store};
    use crate::store::{NewDeployment, Store};

    /// Every write a scrape's aggregates show changes the revision; a run
    /// started (shown as what is true now) does not.
    async fn every_write_to_the_aggregates_moves_the_revision(store: Store) {
        let mut seen = vec![store.revision("org").await.expect("revision")];
        fn moved(seen: &mut Vec<String>, revision: String, what: &str) {
            assert!(
                !seen.contains(&revision),
                "{what}: {revision} seen before: {seen:?}"
            );
            seen.push(revision);
        }
        let wf = store
            .find_or_create_workflow("org", "default", "build")
            .await
            .expect("workflow");
        moved(
            &mut seen,
            store.revision("org").await.expect("revision"),
            "created",
        );
        let before_start = store.revision("org").await.expect("revision");
        let run = store
            .start_run(&wf, "UNSPECIFIED", "", None)
            .await
            .expect("start");
        assert_eq!(store.revision("org").await.expect("revision"), before_start);
        let now = store.revision_and_now("org", None).await.expect("now").1;
        assert_eq!((now.len(), now[0].runs_in_progress), (1, 1));
        // A token of another project sees none of it.
        let web = ["web".to_owned()];
        assert!(
            store
                .revision_and_now("org", Some(&web))
                .await
                .expect("now")
                .1
                .is_empty()
        );
        store
            .finish_run(crate::store::Finish {
                org_id: Some("org"),
                run_id: &run.id,
                outcome: RunStatus::Success,
                reason: "",
                finished_at_ms: None,
                trace_id: None,
            })
            .await
            .expect("finish");
        moved(
            &mut seen,
            store.revision("org").await.expect("revision"),
            "finished",
        );
        assert!(
            store
                .revision_and_now("org", None)
                .await
                .expect("now")
                .1
                .is_empty()
        );
        finished_run(&store, &wf, "UNSPECIFIED", RunStatus::Error).await;
        let before_job = store.revision("org").await.expect("revision");
        store
            .report_job(crate::store::JobReport {
                org_id: "org".into(),
                job_key: "job-1".into(),
                project: "default".into(),
                workflow: "build".into(),
                run_request_id: "run-1".into(),
                name: "test".into(),
                status: runplane_api::workflowrun::v1::JobStatus::Queued,
                outcome: None,
                conclusion: String::new(),
                queued_at_ms: Some(runplane_api::time::now_ms()),
                started_at_ms: None,
                finished_at_ms: None,
                runner: runplane_api::workflowrun::v1::RunnerType::GithubAction,
                runner_name: String::new(),
                runner_labels: Vec::new(),
            })
            .await
            .expect("queued");
        // Queued: what is true now, not the aggregates.
        assert_eq!(store.revision("org").await.expect("revision"), before_job);
        assert_eq!(
            store.revision_and_now("org", None).await.expect("now").1[0].jobs_queued,
            1
        );
        moved(
            &mut seen,
            store.revision("org").await.expect("revision"),
            "reported",
        );
        let deployment = NewDeployment {
            project: "default",
            environment: "production",
            commit_sha: "abc",
            committed_at_ms: None,
            started_at_ms: None,
            finished_at_ms: runplane_api::time::now_ms(),
            status: DeploymentStatus::Success,
            kind: DeploymentKind::Unspecified,
            url: "",
            run_id: "",
            request_id: None,
        };
        store
            .record_deployment("org", deployment)
            .await
            .expect("deploy");
        moved(
            &mut seen,
            store.revision("org").await.expect("revision"),
            "deployed",
        );
        // Another organization's writes leave this one's revision alone.
        store
            .find_or_create_workflow("other", "default", "build")
            .await
            .expect("other");
        let same = store.revision("org").await.expect("revision");
        assert_eq!(Some(&same), seen.last());
        store
            .delete_environment("org", "default", "production")
            .await
            .expect("delete environment");
        moved(
            &mut seen,
            store.revision("org").await.expect("revision"),
            "environment deleted",
        );
        store
            .delete_workflow("org", "default", "build")
            .await
            .expect("delete");
        moved(
            &mut seen,
            store.revision("org").await.expect("revision"),
            "workflow deleted",
        );
    }

    #[tokio::test]
    async fn every_write_to_the_aggregates_moves_the_revision_on_sqlite() {
        let dir = tempfile::tempdir().expect("tempdir");
        every_write_to_the_aggregates_moves_the_revision(store(&dir).await).await;
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL: set RUNPLANE_TEST_POSTGRES (scripts/test does)"]
    async fn every_write_to_the_aggregates_moves_the_revision_on_postgres() {
        crate::store::test_support::on_postgres(every_write_to_the_aggregates_moves_the_revision)
            .await;
    }
}
