//! Cardinality control: families left out (`disabled_metrics`), labels
//! dropped (`drop_labels`: their series merged), and a budget of series per
//! organization (`max_series_per_org`) past which whole workflows are left
//! out of the scrape and counted in `org_series_dropped`.
//!
//! The budget counts every series a workflow adds ([`series_of`]) as the
//! scrape's format makes them: a sample line of the text formats, a series
//! Prometheus keeps of a protobuf one (a native histogram is one). The same
//! conditions as the families' writers; tests hold the two together.

use std::collections::BTreeSet;

use runplane_api::workflowrun::v1::{DurationHistogram, EnvironmentMetrics, WorkflowMetrics};

/// How the series of a duration histogram are counted, by format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Histograms {
    /// A line per bucket, `+Inf`, `_sum`, `_count` (and `_created`).
    Classic,
    /// Protobuf, `protobuf_histograms: both`: the classic series, and the
    /// native one when its buckets are kept.
    ClassicAndNative,
    /// Protobuf, `protobuf_histograms: native`: the native series, or the
    /// classic ones of a histogram without native buckets.
    Native,
}

/// How a scrape's series are counted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counting {
    /// Counters and histograms carry `_created` samples.
    pub(crate) created: bool,
    pub(crate) histograms: Histograms,
}

impl Counting {
    /// Text or OpenMetrics, with or without `_created`.
    #[cfg(test)]
    pub(crate) fn lines(created: bool) -> Self {
        Counting {
            created,
            histograms: Histograms::Classic,
        }
    }

    /// The series of one duration histogram.
    fn duration(self, d: &DurationHistogram) -> usize {
        let classic = d.bucket_bounds.len() + 3 + usize::from(self.created);
        let native = usize::from(d.native.is_some());
        match self.histograms {
            Histograms::Classic => classic,
            Histograms::ClassicAndNative => classic + native,
            Histograms::Native if native == 1 => 1,
            Histograms::Native => classic,
        }
    }
}

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
    "deployments_total",
    "deployment_change_failures_total",
    "deployment_last_timestamp_seconds",
    "deployment_lead_time_seconds",
    "deployments_without_commit_time_total",
    "deployment_time_to_restore_seconds",
    "environment_up",
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

/// How many series `w` adds to a scrape with these settings, counted as
/// `counting` says.
pub(crate) fn series_of(c: &Cardinality, counting: Counting, w: &WorkflowMetrics) -> usize {
    let created = usize::from(counting.created);
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
            .map(|d| counting.duration(d))
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
                .map(|d| counting.duration(d))
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

/// How many series `environments` add to a scrape, counted as `counting` says.
#[cfg(test)]
pub(crate) fn environment_series(
    c: &Cardinality,
    counting: Counting,
    environments: &[EnvironmentMetrics],
) -> usize {
    environments
        .iter()
        .map(|e| series_of_environment(c, counting, e))
        .sum()
}

/// How many series environment `e` adds to a scrape.
fn series_of_environment(c: &Cardinality, counting: Counting, e: &EnvironmentMetrics) -> usize {
    let created = usize::from(counting.created);
    let on = |name: &str| c.enabled(name);
    let mut n = 0;
    if on("deployments_total") {
        n += 2 * (1 + created);
    }
    if on("deployment_change_failures_total") {
        n += 1 + created;
    }
    if on("deployment_last_timestamp_seconds") {
        n +=
            usize::from(e.last_failure_time.is_some()) + usize::from(e.last_success_time.is_some());
    }
    for (family, histogram) in [
        ("deployment_lead_time_seconds", &e.lead_time),
        ("deployment_time_to_restore_seconds", &e.restore_time),
    ] {
        if let Some(h) = histogram.as_ref().filter(|h| h.count > 0 && on(family)) {
            n += counting.duration(h);
        }
    }
    if on("deployments_without_commit_time_total") && e.deployments_without_commit_time > 0 {
        n += 1 + created;
    }
    n + usize::from(on("environment_up"))
}

/// How many of `environments`, in order, fit the budget, the series of those
/// that do not, and the series of those that do.
pub(crate) fn admitted_environments(
    c: &Cardinality,
    counting: Counting,
    environments: &[EnvironmentMetrics],
) -> (usize, usize, usize) {
    let series = environments
        .iter()
        .map(|e| series_of_environment(c, counting, e));
    if c.max_series == 0 {
        return (environments.len(), 0, series.sum());
    }
    fit(c.max_series, 0, series)
}

/// How many items, in order, fit `budget` series after `reserved`, given
/// each one's series: the items that fit, the series of those that do not,
/// and the series used (`reserved` included).
fn fit(
    budget: usize,
    reserved: usize,
    series: impl Iterator<Item = usize>,
) -> (usize, usize, usize) {
    let (mut fitting, mut used, mut left_out) = (0, reserved, 0);
    for n in series {
        if left_out == 0 && used + n <= budget {
            fitting += 1;
            used += n;
        } else {
            left_out += n;
        }
    }
    (fitting, left_out, used)
}

/// How many of `workflows`, in order, fit the budget less `reserved` series
/// (the environments'), and the series of those that do not.
pub(crate) fn admitted(
    c: &Cardinality,
    counting: Counting,
    workflows: &[WorkflowMetrics],
    reserved: usize,
) -> (usize, usize) {
    if c.max_series == 0 {
        return (workflows.len(), 0);
    }
    let series = workflows.iter().map(|w| series_of(c, counting, w));
    let (fitting, left_out, _) = fit(c.max_series, reserved, series);
    (fitting, left_out)
}
