//! The families of a workflow's runs: Chainloop's two (`workflow_up`,
//! `workflow_run_duration_seconds`), then runplane's.

use std::collections::BTreeMap;

use runplane_api::time::from_timestamp;
use runplane_api::workflowrun::v1::{
    DurationHistogram, Exemplar, HistogramExemplars, RunStatus, WorkflowMetrics,
};

use super::writer::{Buckets, Kind, Labels, Seconds};
use super::{Families, Gone};

pub(super) const UP_HELP: &str = "Indicate if the last run was successful. A run still in progress does \
not count: the value is that of the newest finished run.";
pub(super) const DURATION_HELP: &str = "Duration of a workflow runs in seconds.";
pub(super) const IN_PROGRESS_HELP: &str = "Runs of the workflow started and not finished yet.";
pub(super) const LAST_TIMESTAMP_HELP: &str = "When the newest run of the workflow with each outcome \
finished, in seconds since the Unix epoch.";
pub(super) const LAST_DURATION_HELP: &str = "Duration of the newest finished run of the workflow that \
reported an outcome (expired runs have none); runs in progress do not count.";
pub(super) const RUNS_HELP: &str = "Runs of the workflow finished, by outcome and runner; kept when old \
runs are deleted.";
pub(super) const QUEUE_HELP: &str = "Time runs of the workflow waited for a runner (queued to started), in \
seconds, for runs whose reporter said when they were queued; counted as each run ends.";
pub(super) const FLAKY_HELP: &str = "Flaky runs of the workflow: successes of a commit after a run of the \
same workflow and commit failed (a later attempt, or a re-run), the first success of each.";
pub(super) const ATTEMPTS_HELP: &str = "Runs of the workflow finished, by attempt (1 for first runs, 4+ \
for the fourth and later); a run that did not say is a first attempt.";
pub(super) const RUNS_QUEUED_HELP: &str =
    "Runs of the workflow with a job waiting for a runner now.";

/// The `attempt` label of each element of `runs_by_attempt`.
pub(super) const ATTEMPT_LABELS: [&str; 4] = ["1", "2", "3", "4+"];

impl<E: FnMut(Vec<u8>) -> Result<(), Gone>> Families<'_, E> {
    /// `workflow_up`: whether each workflow's last run succeeded; per branch
    /// label, the newest run of each, when runs were counted with one.
    pub(super) fn workflow_up(&mut self) -> Result<(), Gone> {
        let mut family = self.writer.family("workflow_up", UP_HELP, Kind::Gauge);
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            for run in &w.branch_runs {
                let branch = self.writer.format.label_value(&run.branch);
                self.labels.set(&[
                    ("branch", &branch),
                    ("org", &self.org),
                    ("project", project),
                    ("runner", run.runner_type().label()),
                    ("workflow", workflow),
                ]);
                let up = u8::from(run.status() == RunStatus::Success);
                family.sample(&mut self.chunks.buf, "", &self.labels, up);
            }
            let Some(last) = w.last_run.as_ref().filter(|_| w.branch_runs.is_empty()) else {
                continue;
            };
            self.labels.set(&[
                ("org", &self.org),
                ("project", project),
                ("runner", last.runner_type().label()),
                ("workflow", workflow),
            ]);
            let up = u8::from(last.status() == RunStatus::Success);
            family.sample(&mut self.chunks.buf, "", &self.labels, up);
        }
        Ok(())
    }

    /// `workflow_run_duration_seconds`: a histogram per outcome that has
    /// durations (expired runs are counted without one).
    pub(super) fn run_durations(&mut self) -> Result<(), Gone> {
        let mut family = self.writer.family(
            "workflow_run_duration_seconds",
            DURATION_HELP,
            Kind::Histogram,
        );
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            for d in w.durations.iter().filter(|d| d.count > 0) {
                outcome_labels(&mut self.labels, &self.org, project, workflow, d);
                let buckets = Buckets {
                    exemplars: exemplars_of(w, |h| {
                        !h.queue
                            && h.status == d.status
                            && h.runner_type == d.runner_type
                            && h.branch == d.branch
                    }),
                    ..buckets_of(d)
                };
                family.histogram(&mut self.chunks.buf, &self.labels, &buckets, w);
            }
        }
        Ok(())
    }

    /// `workflow_runs_in_progress`.
    pub(super) fn runs_in_progress(&mut self) -> Result<(), Gone> {
        let mut family =
            self.writer
                .family("workflow_runs_in_progress", IN_PROGRESS_HELP, Kind::Gauge);
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            workflow_labels(&mut self.labels, &self.org, project, workflow);
            family.sample(&mut self.chunks.buf, "", &self.labels, w.runs_in_progress);
        }
        Ok(())
    }

    /// `workflow_last_run_timestamp_seconds`: when the newest run of each
    /// status finished, whatever its runner.
    pub(super) fn last_run_timestamps(&mut self) -> Result<(), Gone> {
        let mut family = self.writer.family(
            "workflow_last_run_timestamp_seconds",
            LAST_TIMESTAMP_HELP,
            Kind::Gauge,
        );
        let mut newest: BTreeMap<&'static str, i64> = BTreeMap::new();
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            newest.clear();
            for d in &w.durations {
                if let Some(at) = d.last_finish_time.as_ref().map(from_timestamp) {
                    let entry = newest.entry(d.status().label()).or_insert(at);
                    *entry = (*entry).max(at);
                }
            }
            for (status, at) in &newest {
                self.labels.set(&[
                    ("org", &self.org),
                    ("project", project),
                    ("status", status),
                    ("workflow", workflow),
                ]);
                family.sample(&mut self.chunks.buf, "", &self.labels, Seconds(*at));
            }
        }
        Ok(())
    }

    /// `workflow_last_run_duration_seconds`: how long the newest run that
    /// reported an outcome took.
    pub(super) fn last_run_durations(&mut self) -> Result<(), Gone> {
        let mut family = self.writer.family(
            "workflow_last_run_duration_seconds",
            LAST_DURATION_HELP,
            Kind::Gauge,
        );
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            let Some(seconds) = w.last_run.as_ref().and_then(|l| l.duration_seconds) else {
                continue;
            };
            workflow_labels(&mut self.labels, &self.org, project, workflow);
            family.sample(&mut self.chunks.buf, "", &self.labels, seconds);
        }
        Ok(())
    }

    /// `workflow_runs_total`, by outcome and runner.
    pub(super) fn runs_total(&mut self) -> Result<(), Gone> {
        let mut family = self
            .writer
            .family("workflow_runs", RUNS_HELP, Kind::Counter);
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            for d in &w.durations {
                outcome_labels(&mut self.labels, &self.org, project, workflow, d);
                family.counter(&mut self.chunks.buf, &self.labels, d.runs_total, w);
            }
        }
        Ok(())
    }

    /// `workflow_run_queue_seconds`: how long runs waited for a runner, for
    /// the workflows whose reporters said.
    pub(super) fn queue_times(&mut self) -> Result<(), Gone> {
        let mut family =
            self.writer
                .family("workflow_run_queue_seconds", QUEUE_HELP, Kind::Histogram);
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            let Some(queue) = w.queue.as_ref().filter(|q| q.count > 0) else {
                continue;
            };
            workflow_labels(&mut self.labels, &self.org, project, workflow);
            let buckets = Buckets {
                bounds: &queue.bucket_bounds,
                counts: &queue.bucket_counts,
                count: queue.count,
                sum: queue.sum_seconds,
                exemplars: exemplars_of(w, |h| h.queue),
                native: None,
            };
            family.histogram(&mut self.chunks.buf, &self.labels, &buckets, w);
        }
        Ok(())
    }

    /// `workflow_flaky_runs_total`, for the workflows that have had one.
    pub(super) fn flaky_runs(&mut self) -> Result<(), Gone> {
        let mut family = self
            .writer
            .family("workflow_flaky_runs", FLAKY_HELP, Kind::Counter);
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            if w.flaky_runs == 0 {
                continue;
            }
            workflow_labels(&mut self.labels, &self.org, project, workflow);
            family.counter(&mut self.chunks.buf, &self.labels, w.flaky_runs, w);
        }
        Ok(())
    }

    /// `workflow_runs_by_attempt_total`, for the attempts that happened.
    pub(super) fn runs_by_attempt(&mut self) -> Result<(), Gone> {
        let mut family =
            self.writer
                .family("workflow_runs_by_attempt", ATTEMPTS_HELP, Kind::Counter);
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            for (attempt, runs) in ATTEMPT_LABELS.iter().zip(&w.runs_by_attempt) {
                if *runs == 0 {
                    continue;
                }
                self.labels.set(&[
                    ("attempt", attempt),
                    ("org", &self.org),
                    ("project", project),
                    ("workflow", workflow),
                ]);
                family.counter(&mut self.chunks.buf, &self.labels, *runs, w);
            }
        }
        Ok(())
    }

    /// `workflow_runs_queued`, for the workflows with jobs (counted, or
    /// waiting now).
    pub(super) fn runs_queued(&mut self) -> Result<(), Gone> {
        let mut family = self
            .writer
            .family("workflow_runs_queued", RUNS_QUEUED_HELP, Kind::Gauge);
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            if w.jobs.is_empty() && w.jobs_queued == 0 {
                continue;
            }
            workflow_labels(&mut self.labels, &self.org, project, workflow);
            family.sample(&mut self.chunks.buf, "", &self.labels, w.runs_queued);
        }
        Ok(())
    }
}

/// A duration histogram's buckets (without exemplars).
pub(super) fn buckets_of(d: &DurationHistogram) -> Buckets<'_> {
    Buckets {
        bounds: &d.bucket_bounds,
        counts: &d.bucket_counts,
        count: d.count,
        sum: d.sum_seconds,
        exemplars: &[],
        native: d.native.as_ref(),
    }
}

/// The exemplars of the workflow's histogram that `which` picks (none when
/// the scrape did not fetch them).
fn exemplars_of(w: &WorkflowMetrics, which: impl Fn(&HistogramExemplars) -> bool) -> &[Exemplar] {
    w.exemplars
        .iter()
        .find(|h| which(h))
        .map_or(&[], |h| h.exemplars.as_slice())
}

/// `org`, `project`, `workflow`: the labels of a per-workflow series.
pub(super) fn workflow_labels(labels: &mut Labels, org: &str, project: &str, workflow: &str) {
    labels.set(&[("org", org), ("project", project), ("workflow", workflow)]);
}

/// (`branch`,) `org`, `project`, `runner`, `status`, `workflow`: the labels
/// of an outcome's series; `branch` for runs counted with a branch label.
fn outcome_labels(
    labels: &mut Labels,
    org: &str,
    project: &str,
    workflow: &str,
    outcome: &DurationHistogram,
) {
    let rest = [
        ("org", org),
        ("project", project),
        ("runner", outcome.runner_type().label()),
        ("status", outcome.status().label()),
        ("workflow", workflow),
    ];
    if outcome.branch.is_empty() {
        labels.set(&rest);
    } else {
        let branch = labels.value(&outcome.branch);
        let [o, p, r, s, w] = rest;
        labels.set(&[("branch", &branch), o, p, r, s, w]);
    }
}
