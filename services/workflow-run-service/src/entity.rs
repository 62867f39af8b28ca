//! workflow-run-service's tables.

/// `workflows`: one row per (organization, project, workflow name), carrying the
/// outcome of its most recently finished run and, per (status, runner), how
/// many runs finished so, when the last did, and the histogram of their
/// durations: kept up to date as runs finish, so that a scrape never reads the
/// runs themselves.
pub(crate) mod workflow {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workflows")]
    pub(crate) struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub(crate) id: String,
        pub(crate) org_id: String,
        pub(crate) project: String,
        pub(crate) name: String,
        pub(crate) created_at_ms: i64,
        pub(crate) last_run_status: Option<String>,
        pub(crate) last_run_runner: Option<String>,
        pub(crate) last_run_finished_at_ms: Option<i64>,
        /// How long the newest finished run that reported an outcome took
        /// (an expired run has no duration and leaves it as it was).
        pub(crate) last_run_duration_ms: Option<i64>,
        /// The workflow's aggregates, as a scrape sends them: see
        /// `store::record`.
        pub(crate) metrics: Vec<u8>,
        /// Its histograms' exemplars, stored apart: see `store::record`.
        pub(crate) exemplars: Vec<u8>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `runs`: one row per run.
pub(crate) mod run {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "runs")]
    pub(crate) struct Model {
        /// UUIDv7: ordering by id is ordering by start.
        #[sea_orm(primary_key, auto_increment = false)]
        pub(crate) id: String,
        pub(crate) org_id: String,
        pub(crate) workflow_id: String,
        pub(crate) runner: String,
        pub(crate) run_url: String,
        pub(crate) status: String,
        pub(crate) reason: String,
        pub(crate) started_at_ms: i64,
        pub(crate) finished_at_ms: Option<i64>,
        /// The client's idempotency key for StartRun, when it sent one.
        pub(crate) request_id: Option<String>,
        /// The run's own deadline, when its runner set a timeout; else the
        /// service's run timeout applies.
        pub(crate) expires_at_ms: Option<i64>,
        /// When the run was queued, when its reporter knew.
        pub(crate) queued_at_ms: Option<i64>,
        /// Which attempt of its CI run (0: not said).
        pub(crate) attempt: i32,
        /// The branch or ref, the commit and what triggered it ("": not said).
        pub(crate) branch: String,
        pub(crate) commit_sha: String,
        pub(crate) trigger: String,
        /// The default branch of the run's repository, when its reporter said.
        pub(crate) default_branch: String,
        /// The W3C trace id of the call that started (or else finished) it.
        pub(crate) trace_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `jobs`: one row per job of a run, as its CI system last reported it.
pub(crate) mod job {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "jobs")]
    pub(crate) struct Model {
        /// UUIDv7: ordering by id is ordering by first report.
        #[sea_orm(primary_key, auto_increment = false)]
        pub(crate) id: String,
        pub(crate) org_id: String,
        /// The reporter's key for the job, unique in its project.
        pub(crate) job_key: String,
        pub(crate) project: String,
        pub(crate) workflow: String,
        pub(crate) run_request_id: String,
        /// Its workflow's id once known ("" before): see `store::jobs`.
        pub(crate) workflow_id: String,
        pub(crate) name: String,
        /// `queued`, `in_progress` or `completed`.
        pub(crate) status: String,
        /// A run status label once completed; empty before.
        pub(crate) outcome: String,
        pub(crate) conclusion: String,
        pub(crate) queued_at_ms: Option<i64>,
        pub(crate) started_at_ms: Option<i64>,
        pub(crate) finished_at_ms: Option<i64>,
        pub(crate) runner: String,
        pub(crate) runner_name: String,
        /// One label per line.
        pub(crate) runner_labels: String,
        /// Bumped by every write: concurrent reports of one job never lose one.
        pub(crate) version: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `environments`: one row per (organization, project, environment) a
/// deployment was recorded to, with its DORA aggregates.
pub(crate) mod environment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "environments")]
    pub(crate) struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub(crate) id: String,
        pub(crate) org_id: String,
        pub(crate) project: String,
        pub(crate) name: String,
        pub(crate) created_at_ms: i64,
        /// Its `EnvironmentMetrics`, encoded: see `store::deployments`.
        pub(crate) metrics: Vec<u8>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `deployments`: one row per deployment recorded.
pub(crate) mod deployment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deployments")]
    pub(crate) struct Model {
        /// UUIDv7: ordering by id is ordering by recording.
        #[sea_orm(primary_key, auto_increment = false)]
        pub(crate) id: String,
        pub(crate) org_id: String,
        pub(crate) environment_id: String,
        pub(crate) project: String,
        pub(crate) environment: String,
        pub(crate) commit_sha: String,
        pub(crate) committed_at_ms: Option<i64>,
        pub(crate) started_at_ms: Option<i64>,
        pub(crate) finished_at_ms: i64,
        /// A `DeploymentStatus` label.
        pub(crate) status: String,
        /// A `DeploymentKind` label.
        pub(crate) kind: String,
        pub(crate) url: String,
        /// The run that did it (a `deploy_workflows` workflow's); empty if none.
        pub(crate) run_id: String,
        pub(crate) request_id: Option<String>,
        /// When it was recorded: retention goes by this.
        pub(crate) recorded_at_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `commits`: when each commit a run reported was made, per organization
/// and project (lowercase hex).
pub(crate) mod commit {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "commits")]
    pub(crate) struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub(crate) org_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub(crate) project: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub(crate) commit_sha: String,
        pub(crate) committed_at_ms: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `org_revisions`: counters of the writes to each organization's
/// aggregates, in shards (see `store::revisions`).
pub(crate) mod org_revision {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "org_revisions")]
    pub(crate) struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub(crate) org_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub(crate) shard: i32,
        pub(crate) revision: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub(crate) enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
