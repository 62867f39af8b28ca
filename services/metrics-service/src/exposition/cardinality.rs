//! Cardinality control: families left out (`disabled_metrics`), labels
//! dropped (`drop_labels`: their series merged), and a budget of series per
//! organization (`max_series_per_org`) past which whole workflows are left
//! out of the scrape and counted in `org_series_dropped`.
//!
//! The budget counts every sample line a workflow adds ([`series_of`]), the
//! same conditions as the families' writers; a test holds the two together.

use std::collections::BTreeSet;

use runplane_api::workflowrun::v1::WorkflowMetrics;

/// Every family of a workflow that `disabled_metrics` may name, by its name
/// without the namespace.
pub(crate) const FAMILIES: &[&str] = &[
    "workflow_up",
    "workflow_run_duration_seconds",
    "workflow_runs_in_progress",
    "workflow_last_run_timestamp_seconds",
    "workflow_last_run_duration_seconds",
    "workflow_runs_total",
    "workflow_run_queue_seconds",
    "workflow_flaky_runs_total",
    "workflow_runs_by_attempt_total",
    "workflow_runs_queued",
    "workflow_job_up",
    "workflow_job_duration_seconds",
    "workflow_jobs_total",
    "workflow_job_queue_seconds",
    "workflow_jobs_queued",
];

/// Labels `drop_labels` may name.
pub(crate) const DROPPABLE_LABELS: &[&str] = &["runner", "project"];

/// The cardinality settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cardinality {
    /// Families left out, by name without the namespace.
    pub(crate) disabled: BTreeSet<String>,
    /// Merge series that differ only by runner.
    pub(crate) drop_runner: bool,
    /// Merge the workflows of one name in different projects.
    pub(crate) drop_project: bool,
    /// Most series of one organization's scrape; 0: no limit.
    pub(crate) max_series: usize,
}

impl Cardinality {
    /// The settings, checked: every family and label named must exist.
    pub(crate) fn new(
        disabled: &[String],
        dropped: &[String],
        max_series: usize,
    ) -> Result<Self, String> {
        if let Some(unknown) = disabled.iter().find(|f| !FAMILIES.contains(&f.as_str())) {
            return Err(format!(
                "disabled_metrics: {unknown:?} is not a family (one of {}; without the namespace)",
                FAMILIES.join(", ")
            ));
        }
        if let Some(unknown) = dropped
            .iter()
            .find(|l| !DROPPABLE_LABELS.contains(&l.as_str()))
        {
            return Err(format!(
                "drop_labels: {unknown:?} cannot be dropped (only {})",
                DROPPABLE_LABELS.join(" and ")
            ));
        }
        Ok(Cardinality {
            disabled: disabled.iter().cloned().collect(),
            drop_runner: dropped.iter().any(|l| l == "runner"),
            drop_project: dropped.iter().any(|l| l == "project"),
            max_series,
        })
    }

    /// Whether family `name` (without the namespace) is written.
    pub(crate) fn enabled(&self, name: &str) -> bool {
        !self.disabled.contains(name)
    }

    /// The label names left out of every series.
    pub(crate) fn dropped_labels(&self) -> Vec<&'static str> {
        let mut dropped = Vec::new();
        if self.drop_runner {
            dropped.push("runner");
        }
        if self.drop_project {
            dropped.push("project");
        }
        dropped
    }
}

/// How many sample lines `w` adds to a scrape with these settings; `created`:
/// counters and histograms carry `_created` samples.
pub(crate) fn series_of(c: &Cardinality, created: bool, w: &WorkflowMetrics) -> usize {
    let created = usize::from(created);
    let on = |name: &str| c.enabled(name);
    let histogram = |bounds: usize| bounds + 3 + created;
    let mut n = 0;
    if on("workflow_up") {
        n += match (w.branch_runs.len(), &w.last_run) {
            (0, Some(_)) => 1,
            (branches, _) => branches,
        };
    }
    if on("workflow_run_duration_seconds") {
        n += w
            .durations
            .iter()
            .filter(|d| d.count > 0)
            .map(|d| histogram(d.bucket_bounds.len()))
            .sum::<usize>();
    }
    if on("workflow_runs_in_progress") {
        n += 1;
    }
    if on("workflow_last_run_timestamp_seconds") {
        let statuses: BTreeSet<i32> = w
            .durations
            .iter()
            .filter(|d| d.last_finish_time.is_some())
            .map(|d| d.status)
            .collect();
        n += statuses.len();
    }
    if on("workflow_last_run_duration_seconds") {
        n += usize::from(
            w.last_run
                .as_ref()
                .is_some_and(|l| l.duration_seconds.is_some()),
        );
    }
    if on("workflow_runs_total") {
        n += w.durations.len() * (1 + created);
    }
    if on("workflow_run_queue_seconds") {
        n += w
            .queue
            .as_ref()
            .filter(|q| q.count > 0)
            .map_or(0, |q| histogram(q.bucket_bounds.len()));
    }
    if on("workflow_flaky_runs_total") && w.flaky_runs > 0 {
        n += 1 + created;
    }
    if on("workflow_runs_by_attempt_total") {
        n += w.runs_by_attempt.iter().filter(|r| **r > 0).count() * (1 + created);
    }
    let has_jobs = !w.jobs.is_empty() || w.jobs_queued > 0;
    for family in ["workflow_runs_queued", "workflow_jobs_queued"] {
        n += usize::from(on(family) && has_jobs);
    }
    for job in &w.jobs {
        if on("workflow_job_up") && job.last_finish_time.is_some() {
            n += 1;
        }
        if on("workflow_job_duration_seconds") {
            n += job
                .durations
                .iter()
                .filter(|d| d.count > 0)
                .map(|d| histogram(d.bucket_bounds.len()))
                .sum::<usize>();
        }
        if on("workflow_jobs_total") {
            n += job.durations.len() * (1 + created);
        }
        if on("workflow_job_queue_seconds") {
            n += job
                .queue
                .as_ref()
                .filter(|q| q.count > 0)
                .map_or(0, |q| histogram(q.bucket_bounds.len()));
        }
    }
    n
}

/// How many of `workflows`, in order, fit the budget, and the series of
/// those that do not.
pub(crate) fn admitted(
    c: &Cardinality,
    created: bool,
    workflows: &[WorkflowMetrics],
) -> (usize, usize) {
    if c.max_series == 0 {
        return (workflows.len(), 0);
    }
    let (mut total, mut fit) = (0usize, None);
    for (i, w) in workflows.iter().enumerate() {
        total += series_of(c, created, w);
        if fit.is_none() && total > c.max_series {
            fit = Some((i, total - series_of(c, created, w)));
        }
    }
    match fit {
        Some((count, within)) => (count, total - within),
        None => (workflows.len(), 0),
    }
}
