//! Which CI system is running us, the URL of this run there and the name of
//! its workflow, read from the environment variables each CI system sets.

use runplane_api::workflowrun::v1::RunnerType;

/// What the environment says about the current CI run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Detected {
    pub(crate) runner: RunnerType,
    pub(crate) run_url: Option<String>,
    /// The workflow's name as the CI system calls it (`--workflow`'s default).
    pub(crate) workflow: Option<String>,
    /// Where the run came from, where the CI system says.
    pub(crate) origin: Origin,
    /// This CI run's key, as runplane's webhooks key its run
    /// (`github:RUN_ID:ATTEMPT`, `gitlab:PIPELINE_ID`) or as each other CI
    /// system numbers its runs: what `job` commands name their run by.
    pub(crate) run_key: Option<String>,
    /// This CI job's own id, where the CI numbers its jobs (a retried job
    /// gets another): GitLab's CI_JOB_ID, Azure's SYSTEM_JOBID, CircleCI's
    /// CIRCLE_BUILD_NUM.
    pub(crate) job_id: Option<String>,
}

/// Which attempt of its CI run, the branch and commit, and what triggered it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) attempt: Option<u32>,
    pub(crate) branch: Option<String>,
    pub(crate) commit_sha: Option<String>,
    pub(crate) trigger: Option<String>,
    /// The repository's default branch.
    pub(crate) default_branch: Option<String>,
    /// When the commit was made (GitLab's CI_COMMIT_TIMESTAMP).
    pub(crate) commit_time: Option<runplane_api::time::Timestamp>,
}

/// Where a run came from, resolved from the flags and the CI system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RunOrigin {
    /// 0: not said.
    pub(crate) attempt: u32,
    pub(crate) branch: String,
    pub(crate) commit_sha: String,
    pub(crate) trigger: String,
    pub(crate) default_branch: String,
    /// When the commit was made, if known.
    pub(crate) commit_time: Option<runplane_api::time::Timestamp>,
}

/// Where a run came from, as flags (default: the CI system's own variables).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct OriginArgs {
    /// Which attempt of its CI run this is (default: GITHUB_RUN_ATTEMPT).
    #[arg(long)]
    attempt: Option<u32>,
    /// The branch or ref built (default: GITHUB_HEAD_REF or GITHUB_REF_NAME,
    /// CI_COMMIT_REF_NAME, BUILD_SOURCEBRANCHNAME, BRANCH_NAME or GIT_BRANCH,
    /// CIRCLE_BRANCH).
    #[arg(long)]
    branch: Option<String>,
    /// The commit built, in hex (default: GITHUB_SHA, CI_COMMIT_SHA,
    /// BUILD_SOURCEVERSION, GIT_COMMIT, CIRCLE_SHA1).
    #[arg(long)]
    commit: Option<String>,
    /// What triggered the run, e.g. `push` (default: GITHUB_EVENT_NAME,
    /// CI_PIPELINE_SOURCE, BUILD_REASON).
    #[arg(long)]
    trigger: Option<String>,
    /// The repository's default branch, e.g. `main`, for the `branch_label:
    /// default` setting (default: CI_DEFAULT_BRANCH, or on GitHub the event's
    /// repository.default_branch).
    #[arg(long)]
    default_branch: Option<String>,
    /// When the commit was made (RFC 3339), kept for the lead time of its
    /// deployments (default: CI_COMMIT_TIMESTAMP on GitLab).
    #[arg(long, value_parser = crate::report::parse_time)]
    commit_time: Option<runplane_api::time::Timestamp>,
}

impl OriginArgs {
    /// The flags, else what the CI system said.
    pub(crate) fn resolve(self, detected: Origin) -> RunOrigin {
        RunOrigin {
            attempt: self.attempt.or(detected.attempt).unwrap_or(0),
            branch: self.branch.or(detected.branch).unwrap_or_default(),
            commit_sha: self.commit.or(detected.commit_sha).unwrap_or_default(),
            trigger: self.trigger.or(detected.trigger).unwrap_or_default(),
            default_branch: self
                .default_branch
                .or(detected.default_branch)
                .unwrap_or_default(),
            commit_time: self.commit_time.or(detected.commit_time),
        }
    }
}

/// Where the run came from, by the CI system's own variables.
fn origin(runner: RunnerType, var: &impl Fn(&str) -> Option<String>) -> Origin {
    let first = |names: &[&str]| {
        names.iter().find_map(|name| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        })
    };
    type Names = &'static [&'static str];
    let (attempt, branch, commit, trigger, default_branch): (Names, Names, Names, Names, Names) =
        match runner {
            // A pull request's own branch when there is one, else the ref built.
            RunnerType::GithubAction => (
                &["GITHUB_RUN_ATTEMPT"],
                &["GITHUB_HEAD_REF", "GITHUB_REF_NAME"],
                &["GITHUB_SHA"],
                &["GITHUB_EVENT_NAME"],
                &[],
            ),
            RunnerType::GitlabPipeline => (
                &[],
                &["CI_COMMIT_REF_NAME"],
                &["CI_COMMIT_SHA"],
                &["CI_PIPELINE_SOURCE"],
                &["CI_DEFAULT_BRANCH"],
            ),
            RunnerType::AzurePipeline => (
                &[],
                &["BUILD_SOURCEBRANCHNAME"],
                &["BUILD_SOURCEVERSION"],
                &["BUILD_REASON"],
                &[],
            ),
            RunnerType::JenkinsJob => (
                &[],
                &["BRANCH_NAME", "GIT_BRANCH"],
                &["GIT_COMMIT"],
                &[],
                &[],
            ),
            RunnerType::CircleciBuild => (&[], &["CIRCLE_BRANCH"], &["CIRCLE_SHA1"], &[], &[]),
            _ => (&[], &[], &[], &[], &[]),
        };
    let default_branch = match runner {
        // GitHub says it only in the event's payload, a file it names.
        RunnerType::GithubAction => var("GITHUB_EVENT_PATH").and_then(|path| {
            let event: serde_json::Value =
                serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
            let branch = event.pointer("/repository/default_branch")?.as_str()?;
            Some(branch.trim().to_owned()).filter(|b| !b.is_empty())
        }),
        _ => first(default_branch),
    };
    let commit_time = match runner {
        RunnerType::GitlabPipeline => {
            first(&["CI_COMMIT_TIMESTAMP"]).and_then(|at| runplane_api::time::parse_rfc3339(&at))
        }
        _ => None,
    };
    Origin {
        attempt: first(attempt).and_then(|a| a.parse().ok()),
        branch: first(branch),
        commit_sha: first(commit),
        trigger: first(trigger),
        default_branch,
        commit_time,
    }
}

/// The workflow an unnamed GitLab pipeline reports to: the file that defines
/// it (ingest-service names it so too).
const GITLAB_UNNAMED_PIPELINE: &str = ".gitlab-ci.yml";

/// This CI job's own id (see [`Detected::job_id`]).
fn job_id(runner: RunnerType, var: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let name = match runner {
        RunnerType::GitlabPipeline => "CI_JOB_ID",
        RunnerType::AzurePipeline => "SYSTEM_JOBID",
        RunnerType::CircleciBuild => "CIRCLE_BUILD_NUM",
        _ => return None,
    };
    var(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// This CI run's key (see [`Detected::run_key`]).
fn run_key(runner: RunnerType, var: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let value = |name: &str| {
        var(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    match runner {
        RunnerType::GithubAction => {
            let attempt = value("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".into());
            Some(format!("github:{}:{attempt}", value("GITHUB_RUN_ID")?))
        }
        RunnerType::GitlabPipeline => Some(format!("gitlab:{}", value("CI_PIPELINE_ID")?)),
        RunnerType::AzurePipeline => Some(format!("azure:{}", value("BUILD_BUILDID")?)),
        RunnerType::JenkinsJob => Some(format!("jenkins:{}", value("BUILD_TAG")?)),
        RunnerType::CircleciBuild => Some(format!("circleci:{}", value("CIRCLE_WORKFLOW_ID")?)),
        RunnerType::TeamcityPipeline => Some(format!("teamcity:{}", value("BUILD_NUMBER")?)),
        _ => None,
    }
}

/// Detects the CI system from `var` (the process environment in production,
/// a map in tests) and `tekton_dir` (whether `/tekton` exists, which is how a
/// Tekton step is recognised: Tekton sets no variable of its own).
pub(crate) fn detect(var: impl Fn(&str) -> Option<String>, tekton_dir: bool) -> Detected {
    let set = |name: &str| var(name).is_some_and(|v| !v.is_empty());
    let is = |name: &str, value: &str| var(name).is_some_and(|v| v.eq_ignore_ascii_case(value));
    let (runner, run_url, workflow) = if is("GITHUB_ACTIONS", "true") {
        let url = match (
            var("GITHUB_SERVER_URL"),
            var("GITHUB_REPOSITORY"),
            var("GITHUB_RUN_ID"),
        ) {
            (Some(server), Some(repo), Some(id)) => {
                Some(format!("{server}/{repo}/actions/runs/{id}"))
            }
            _ => None,
        };
        (RunnerType::GithubAction, url, var("GITHUB_WORKFLOW"))
    } else if is("GITLAB_CI", "true") {
        (
            RunnerType::GitlabPipeline,
            var("CI_JOB_URL").or_else(|| var("CI_PIPELINE_URL")),
            // The pipeline's name when it has one (workflow:name), else the
            // file that defines it, as the webhooks name it: every job of one
            // pipeline reports to one workflow.
            Some(
                var("CI_PIPELINE_NAME")
                    .filter(|v| !v.trim().is_empty())
                    .unwrap_or_else(|| GITLAB_UNNAMED_PIPELINE.to_owned()),
            ),
        )
    } else if is("TF_BUILD", "true") {
        let url = match (
            var("SYSTEM_TEAMFOUNDATIONCOLLECTIONURI"),
            var("SYSTEM_TEAMPROJECT"),
            var("BUILD_BUILDID"),
        ) {
            (Some(base), Some(project), Some(id)) => {
                Some(format!("{base}{project}/_build/results?buildId={id}"))
            }
            _ => None,
        };
        (RunnerType::AzurePipeline, url, var("BUILD_DEFINITIONNAME"))
    } else if set("JENKINS_URL") || set("JENKINS_HOME") {
        (RunnerType::JenkinsJob, var("BUILD_URL"), var("JOB_NAME"))
    } else if is("CIRCLECI", "true") {
        (
            RunnerType::CircleciBuild,
            var("CIRCLE_BUILD_URL"),
            var("CIRCLE_JOB"),
        )
    } else if set("TEAMCITY_VERSION") {
        (
            RunnerType::TeamcityPipeline,
            None,
            var("TEAMCITY_BUILDCONF_NAME"),
        )
    } else if set("DAGGER_SESSION_PORT") || set("CHAINLOOP_DAGGER_CLIENT") {
        (RunnerType::DaggerPipeline, None, None)
    } else if tekton_dir {
        (RunnerType::TektonPipeline, None, None)
    } else {
        (RunnerType::Unspecified, None, None)
    };
    Detected {
        origin: origin(runner, &var),
        run_key: run_key(runner, &var),
        job_id: job_id(runner, &var),
        runner,
        run_url: run_url.filter(|u| !u.is_empty()),
        workflow: workflow
            .map(|w| w.trim().to_owned())
            .filter(|w| !w.is_empty()),
    }
}

/// Detects from this process's environment.
pub(crate) fn detect_from_process() -> Detected {
    detect(
        |name| std::env::var(name).ok(),
        std::path::Path::new("/tekton").is_dir(),
    )
}

/// Parses `--runner`: Chainloop's names, any case, `-` or `_`.
pub(crate) fn parse_runner(text: &str) -> Result<RunnerType, String> {
    let name = text.trim().to_ascii_uppercase().replace('-', "_");
    let name = name.strip_prefix("RUNNER_TYPE_").unwrap_or(&name);
    match RunnerType::from_str_name(&format!("RUNNER_TYPE_{name}")) {
        Some(RunnerType::Unspecified) | None => Err(format!(
            "unknown runner {text:?}: use one of GITHUB_ACTION, GITLAB_PIPELINE, AZURE_PIPELINE, \
             JENKINS_JOB, CIRCLECI_BUILD, DAGGER_PIPELINE, TEAMCITY_PIPELINE, TEKTON_PIPELINE"
        )),
        Some(runner) => Ok(runner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn detects_each_ci_system_its_run_url_and_workflow() {
        type Case<'a> = (
            Vec<(&'a str, &'a str)>,
            RunnerType,
            Option<&'a str>,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                vec![
                    ("GITHUB_ACTIONS", "true"),
                    ("GITHUB_SERVER_URL", "https://github.com"),
                    ("GITHUB_REPOSITORY", "acme/app"),
                    ("GITHUB_RUN_ID", "42"),
                    ("GITHUB_WORKFLOW", "Release"),
                ],
                RunnerType::GithubAction,
                Some("https://github.com/acme/app/actions/runs/42"),
                Some("Release"),
            ),
            (
                vec![
                    ("GITLAB_CI", "true"),
                    ("CI_JOB_URL", "https://gitlab.com/a/b/-/jobs/7"),
                    ("CI_JOB_NAME", "unit-tests"),
                ],
                RunnerType::GitlabPipeline,
                Some("https://gitlab.com/a/b/-/jobs/7"),
                // An unnamed pipeline: its file, as the webhooks name it.
                Some(".gitlab-ci.yml"),
            ),
            (
                vec![
                    ("GITLAB_CI", "true"),
                    ("CI_PIPELINE_NAME", "nightly"),
                    ("CI_JOB_NAME", "unit-tests"),
                ],
                RunnerType::GitlabPipeline,
                None,
                Some("nightly"),
            ),
            (
                vec![
                    ("GITLAB_CI", "true"),
                    ("CI_PIPELINE_NAME", "  "),
                    ("CI_JOB_NAME", "unit-tests"),
                ],
                RunnerType::GitlabPipeline,
                None,
                Some(".gitlab-ci.yml"),
            ),
            (
                vec![
                    ("TF_BUILD", "True"),
                    (
                        "SYSTEM_TEAMFOUNDATIONCOLLECTIONURI",
                        "https://dev.azure.com/acme/",
                    ),
                    ("SYSTEM_TEAMPROJECT", "app"),
                    ("BUILD_BUILDID", "9"),
                    ("BUILD_DEFINITIONNAME", "app-ci"),
                ],
                RunnerType::AzurePipeline,
                Some("https://dev.azure.com/acme/app/_build/results?buildId=9"),
                Some("app-ci"),
            ),
            (
                vec![
                    ("JENKINS_URL", "https://ci/"),
                    ("BUILD_URL", "https://ci/job/x/3/"),
                    ("JOB_NAME", "folder/x"),
                ],
                RunnerType::JenkinsJob,
                Some("https://ci/job/x/3/"),
                Some("folder/x"),
            ),
            (
                vec![
                    ("CIRCLECI", "true"),
                    ("CIRCLE_BUILD_URL", "https://circleci.com/gh/a/b/5"),
                    ("CIRCLE_JOB", "build"),
                ],
                RunnerType::CircleciBuild,
                Some("https://circleci.com/gh/a/b/5"),
                Some("build"),
            ),
            (
                vec![
                    ("TEAMCITY_VERSION", "2024.1"),
                    ("TEAMCITY_BUILDCONF_NAME", " Deploy "),
                ],
                RunnerType::TeamcityPipeline,
                None,
                Some("Deploy"),
            ),
            (
                vec![("DAGGER_SESSION_PORT", "1234")],
                RunnerType::DaggerPipeline,
                None,
                None,
            ),
            (vec![], RunnerType::Unspecified, None, None),
        ];
        for (vars, runner, url, workflow) in cases {
            let detected = detect(env(&vars), false);
            assert_eq!(detected.runner, runner, "{vars:?}");
            assert_eq!(detected.run_url.as_deref(), url, "{vars:?}");
            assert_eq!(detected.workflow.as_deref(), workflow, "{vars:?}");
        }
        assert_eq!(detect(env(&[]), true).runner, RunnerType::TektonPipeline);
    }

    #[test]
    fn runner_flag_accepts_chainloop_names_in_any_case() {
        assert_eq!(parse_runner("GITHUB_ACTION"), Ok(RunnerType::GithubAction));
        assert_eq!(
            parse_runner("gitlab-pipeline"),
            Ok(RunnerType::GitlabPipeline)
        );
        assert_eq!(
            parse_runner("runner_type_tekton_pipeline"),
            Ok(RunnerType::TektonPipeline)
        );
        assert!(parse_runner("travis").is_err());
        assert!(parse_runner("unspecified").is_err());
    }

    #[test]
    fn each_ci_system_says_where_its_run_came_from() {
        let github = detect(
            env(&[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_RUN_ATTEMPT", "2"),
                ("GITHUB_REF_NAME", "main"),
                ("GITHUB_SHA", "acb5820ced9479c074f688cc328bf03f341a511d"),
                ("GITHUB_EVENT_NAME", "push"),
            ]),
            false,
        );
        assert_eq!(
            github.origin,
            Origin {
                attempt: Some(2),
                branch: Some("main".into()),
                commit_sha: Some("acb5820ced9479c074f688cc328bf03f341a511d".into()),
                trigger: Some("push".into()),
                default_branch: None,
                commit_time: None,
            }
        );
        // A pull request's own branch wins over the merge ref.
        let pull = detect(
            env(&[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_HEAD_REF", "feature/x"),
                ("GITHUB_REF_NAME", "42/merge"),
            ]),
            false,
        );
        assert_eq!(pull.origin.branch.as_deref(), Some("feature/x"));
        let gitlab = detect(
            env(&[
                ("GITLAB_CI", "true"),
                ("CI_COMMIT_REF_NAME", "main"),
                ("CI_COMMIT_SHA", "bcbb5ec396a2c0f828686f14fac9b80b780504f2"),
                ("CI_PIPELINE_SOURCE", "merge_request_event"),
            ]),
            false,
        );
        assert_eq!(
            gitlab.origin.trigger.as_deref(),
            Some("merge_request_event")
        );
        assert_eq!(gitlab.origin.attempt, None);
        assert_eq!(detect(env(&[]), false).origin, Origin::default());
    }

    #[test]
    fn the_default_branch_and_the_run_key_come_from_the_ci_system() {
        let dir = tempfile::tempdir().expect("tempdir");
        let event = dir.path().join("event.json");
        std::fs::write(&event, r#"{"repository": {"default_branch": "trunk"}}"#).expect("write");
        let event = event.to_string_lossy().into_owned();
        let github = detect(
            env(&[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_RUN_ID", "30433642"),
                ("GITHUB_RUN_ATTEMPT", "2"),
                ("GITHUB_EVENT_PATH", &event),
            ]),
            false,
        );
        assert_eq!(github.origin.default_branch.as_deref(), Some("trunk"));
        assert_eq!(github.run_key.as_deref(), Some("github:30433642:2"));
        let gitlab = detect(
            env(&[
                ("GITLAB_CI", "true"),
                ("CI_PIPELINE_ID", "1234"),
                ("CI_DEFAULT_BRANCH", "main"),
            ]),
            false,
        );
        assert_eq!(gitlab.origin.default_branch.as_deref(), Some("main"));
        assert_eq!(gitlab.run_key.as_deref(), Some("gitlab:1234"));
        // An event file that is missing or not JSON says nothing.
        let broken = detect(
            env(&[
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_EVENT_PATH", "/nonexistent"),
            ]),
            false,
        );
        assert_eq!((broken.origin.default_branch, broken.run_key), (None, None));
        assert_eq!(detect(env(&[]), false).run_key, None);
    }
}
