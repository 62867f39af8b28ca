use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A job's key becomes unique per project, not per organization (as
        // runs' keys became per workflow): a token limited to one project can
        // neither take over nor block the key of another project's job
        // (GitHub's job ids are public and sequential).
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS jobs_org_job_key")
            .await?;
        db.execute_unprepared(
            "CREATE UNIQUE INDEX IF NOT EXISTS jobs_org_project_job_key \
             ON jobs (org_id, project, job_key)",
        )
        .await?;
        Ok(())
    }
}
