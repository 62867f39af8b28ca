//! The `branch_label` setting: which branch label, if any, a finished run is
//! counted under, and the newest run of each label (what `workflow_up` shows
//! per branch).
//!
//! The label is decided when a run is counted, so it is part of the
//! aggregates: changing the setting applies to runs finished from then on,
//! and series counted before keep their labels (as bucket changes do).
//! Labels are bounded per workflow ([`MAX_BRANCH_LABELS`]), so that `all`
//! cannot grow a workflow's series without end.

use regex::Regex;
use runplane_api::time::{from_timestamp, timestamp};
use runplane_api::workflowrun::v1::{BranchRun, WorkflowMetrics};

use super::Finished;

/// The label of runs on branches the setting does not name.
pub(crate) const OTHER: &str = "other";

/// Most branch labels one workflow is counted under; runs of further branches
/// count as [`OTHER`].
pub(crate) const MAX_BRANCH_LABELS: usize = 50;

/// Default branch names assumed for a workflow none of whose runs said its own.
const USUAL_DEFAULTS: [&str; 2] = ["main", "master"];

/// The `branch_label` setting.
#[derive(Debug, Clone, Default)]
pub enum BranchLabel {
    /// No `branch` label: every run counts in one series set (the default).
    #[default]
    None,
    /// The default branch by name, every other branch as `other`.
    Default,
    /// Every branch by name (at most [`MAX_BRANCH_LABELS`] a workflow).
    All,
    /// Branches whose whole name matches by name, the rest as `other`.
    Matching(Regex),
}

impl std::str::FromStr for BranchLabel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        Ok(match text.to_ascii_lowercase().as_str() {
            "" => {
                return Err(
                    "empty: say none, default, all, or a regular expression (alternatives \
                     with |, e.g. main|release/.*)"
                        .into(),
                );
            }
            "none" => BranchLabel::None,
            "default" => BranchLabel::Default,
            "all" => BranchLabel::All,
            _ if comma_outside_braces(text) => {
                return Err(format!(
                    "{text:?} holds a comma: one pattern is expected, its alternatives joined \
                     with | (e.g. main|dev), not a list"
                ));
            }
            _ => {
                let pattern = text;
                let anchored = format!("^(?:{pattern})$");
                BranchLabel::Matching(regex::RegexBuilder::new(&anchored).size_limit(1 << 20).build().map_err(
                    |e| {
                        format!(
                            "{pattern:?} is none of none, default, all, nor a regular expression: {e}"
                        )
                    },
                )?)
            }
        })
    }
}

/// Whether `text` has a comma outside a `{m,n}` repetition: a list given
/// where one pattern is expected (`[main, dev]` in the file reads `main,dev`).
fn comma_outside_braces(text: &str) -> bool {
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => return true,
            _ => {}
        }
    }
    false
}

impl BranchLabel {
    /// The label a run of `branch` counts under in `aggregates` (whose
    /// repository's default branch is `default_branch`, when the run said),
    /// or "" for none.
    pub(crate) fn label(
        &self,
        aggregates: &WorkflowMetrics,
        branch: &str,
        default_branch: &str,
    ) -> String {
        let named = match self {
            BranchLabel::None => return String::new(),
            _ if branch.is_empty() => false,
            BranchLabel::Default => {
                let default = [default_branch, &aggregates.default_branch]
                    .into_iter()
                    .find(|d| !d.is_empty());
                match default {
                    Some(default) => branch == default,
                    None => USUAL_DEFAULTS.contains(&branch),
                }
            }
            BranchLabel::All => true,
            BranchLabel::Matching(pattern) => pattern.is_match(branch),
        };
        let known = aggregates.branch_runs.iter().any(|r| r.branch == branch);
        let room = aggregates.branch_runs.len() < MAX_BRANCH_LABELS;
        if named && branch != OTHER && (known || room) {
            branch.to_owned()
        } else {
            OTHER.to_owned()
        }
    }
}

/// Makes `run` the newest run of its branch label, if it is; kept in label order.
pub(crate) fn count_branch_run(aggregates: &mut WorkflowMetrics, run: &Finished<'_>) {
    if run.branch.is_empty() {
        return;
    }
    let runs = &mut aggregates.branch_runs;
    let at = runs.partition_point(|r| r.branch.as_str() < run.branch);
    if runs.get(at).is_none_or(|r| r.branch != run.branch) {
        runs.insert(
            at,
            BranchRun {
                branch: run.branch.to_owned(),
                ..BranchRun::default()
            },
        );
    }
    let newest = &mut runs[at];
    let newer = newest
        .finish_time
        .as_ref()
        .is_none_or(|at| from_timestamp(at) <= run.finished_at_ms);
    if newer {
        newest.status = run.status.into();
        newest.runner_type = run.runner.into();
        newest.finish_time = Some(timestamp(run.finished_at_ms));
    }
}

#[cfg(test)]
mod tests {
    use runplane_api::workflowrun::v1::{RunStatus, RunnerType};

    use super::*;
    use crate::aggregate::new;

    fn label(setting: &str, record: &WorkflowMetrics, branch: &str, default: &str) -> String {
        setting
            .parse::<BranchLabel>()
            .expect("setting")
            .label(record, branch, default)
    }

    #[test]
    fn each_setting_labels_branches_as_documented() {
        let mut record = new("id", "default", "ci", 0);
        assert_eq!(label("none", &record, "main", "main"), "");
        assert_eq!(label("default", &record, "trunk", "trunk"), "trunk");
        assert_eq!(label("default", &record, "feature/x", "trunk"), "other");
        // No run said its default branch: main and master are taken for it.
        assert_eq!(label("default", &record, "main", ""), "main");
        assert_eq!(label("default", &record, "develop", ""), "other");
        // One did: that is the workflow's default branch from then on.
        record.default_branch = "develop".into();
        assert_eq!(label("default", &record, "develop", ""), "develop");
        assert_eq!(label("default", &record, "main", ""), "other");
        assert_eq!(label("all", &record, "feature/x", ""), "feature/x");
        assert_eq!(
            label("all", &record, "", ""),
            "other",
            "a run that did not say"
        );
        // A pattern matches the whole name.
        let release = r"main|release/.*";
        assert_eq!(label(release, &record, "release/1.2", ""), "release/1.2");
        assert_eq!(label(release, &record, "mainline", ""), "other");
        assert!("(unclosed".parse::<BranchLabel>().is_err());
        assert!("".parse::<BranchLabel>().is_err(), "empty is no pattern");
        assert!(
            "main,dev".parse::<BranchLabel>().is_err(),
            "a list is no pattern"
        );
        assert!(r"release/\d{1,3}".parse::<BranchLabel>().is_ok());
        assert!(matches!("Default".parse(), Ok(BranchLabel::Default)));
    }

    #[test]
    fn labels_past_the_limit_are_other_and_the_newest_run_of_each_is_kept() {
        let mut record = new("id", "default", "ci", 0);
        for i in 0..MAX_BRANCH_LABELS {
            let finished = Finished {
                status: RunStatus::Success,
                runner: RunnerType::GithubAction,
                finished_at_ms: 10,
                duration_ms: Some(1),
                branch: &format!("b{i:02}"),
                run_id: "",
                trace_id: "",
            };
            count_branch_run(&mut record, &finished);
        }
        assert_eq!(
            label("all", &record, "b07", ""),
            "b07",
            "a known label stays"
        );
        assert_eq!(label("all", &record, "new", ""), OTHER);
        let older = Finished {
            status: RunStatus::Error,
            runner: RunnerType::GithubAction,
            finished_at_ms: 5,
            duration_ms: Some(1),
            branch: "b07",
            run_id: "",
            trace_id: "",
        };
        count_branch_run(&mut record, &older);
        let b07 = record
            .branch_runs
            .iter()
            .find(|r| r.branch == "b07")
            .expect("b07");
        assert_eq!(
            b07.status(),
            RunStatus::Success,
            "an older finish is not the newest"
        );
    }
}
