use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // StartRun's idempotency key becomes unique per workflow, not per
        // organization: one CI run id may key the runs of several workflows,
        // and a token limited to some projects must neither learn of nor
        // block the keys of another project's workflows.
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS runs_org_request_id")
            .await?;
        db.execute_unprepared(
            "CREATE UNIQUE INDEX IF NOT EXISTS runs_workflow_request_id \
             ON runs (workflow_id, request_id) WHERE request_id IS NOT NULL",
        )
        .await?;
        Ok(())
    }
}
