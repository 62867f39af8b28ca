//! The families of a workflow's jobs, per (workflow, job): the newest
//! outcome, durations and counts by outcome, queue times, and the jobs
//! waiting for a runner now.

use runplane_api::workflowrun::v1::{JobMetrics, RunStatus};

use super::runs::{buckets_of, workflow_labels};
use super::writer::{Buckets, Kind, Labels};
use super::{Families, Gone};

pub(super) const JOB_UP_HELP: &str = "Indicate if the newest completed job of this name in the workflow \
succeeded.";
pub(super) const JOB_DURATION_HELP: &str = "Duration of the workflow's jobs in seconds (started to \
completed), by outcome.";
pub(super) const JOBS_HELP: &str = "Jobs of the workflow completed, by outcome; kept when old jobs are \
deleted.";
pub(super) const JOB_QUEUE_HELP: &str = "Time the workflow's jobs waited for a runner (queued to started), \
in seconds.";
pub(super) const JOBS_QUEUED_HELP: &str = "Jobs of the workflow waiting for a runner now.";

impl<E: FnMut(Vec<u8>) -> Result<(), Gone>> Families<'_, E> {
    /// `workflow_job_up`: whether the newest completed job of each name succeeded.
    pub(super) fn job_up(&mut self) -> Result<(), Gone> {
        let mut family = self
            .writer
            .family("workflow_job_up", JOB_UP_HELP, Kind::Gauge);
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            for job in &w.jobs {
                if job.last_finish_time.is_none() {
                    continue;
                }
                job_labels(&mut self.labels, job, &self.org, project, None, workflow);
                let up = u8::from(job.last_status() == RunStatus::Success);
                family.sample(&mut self.chunks.buf, "", &self.labels, up);
            }
        }
        Ok(())
    }

    /// `workflow_job_duration_seconds`: a histogram per job and outcome that
    /// has durations.
    pub(super) fn job_durations(&mut self) -> Result<(), Gone> {
        let mut family = self.writer.family(
            "workflow_job_duration_seconds",
            JOB_DURATION_HELP,
            Kind::Histogram,
        );
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            for job in &w.jobs {
                for d in job.durations.iter().filter(|d| d.count > 0) {
                    let status = Some(d.status().label());
                    job_labels(&mut self.labels, job, &self.org, project, status, workflow);
                    family.histogram(&mut self.chunks.buf, &self.labels, &buckets_of(d), w);
                }
            }
        }
        Ok(())
    }

    /// `workflow_jobs_total`, by job and outcome.
    pub(super) fn jobs_total(&mut self) -> Result<(), Gone> {
        let mut family = self
            .writer
            .family("workflow_jobs", JOBS_HELP, Kind::Counter);
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            for job in &w.jobs {
                for d in &job.durations {
                    let status = Some(d.status().label());
                    job_labels(&mut self.labels, job, &self.org, project, status, workflow);
                    family.counter(&mut self.chunks.buf, &self.labels, d.runs_total, w);
                }
            }
        }
        Ok(())
    }

    /// `workflow_job_queue_seconds`: how long each job waited for a runner.
    pub(super) fn job_queue_times(&mut self) -> Result<(), Gone> {
        let mut family = self.writer.family(
            "workflow_job_queue_seconds",
            JOB_QUEUE_HELP,
            Kind::Histogram,
        );
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            for job in &w.jobs {
                let Some(queue) = job.queue.as_ref().filter(|q| q.count > 0) else {
                    continue;
                };
                job_labels(&mut self.labels, job, &self.org, project, None, workflow);
                let buckets = Buckets {
                    bounds: &queue.bucket_bounds,
                    counts: &queue.bucket_counts,
                    count: queue.count,
                    sum: queue.sum_seconds,
                    exemplars: &[],
                    native: None,
                };
                family.histogram(&mut self.chunks.buf, &self.labels, &buckets, w);
            }
        }
        Ok(())
    }

    /// `workflow_jobs_queued`, for the workflows with jobs (counted, or
    /// waiting now).
    pub(super) fn jobs_queued(&mut self) -> Result<(), Gone> {
        let mut family = self
            .writer
            .family("workflow_jobs_queued", JOBS_QUEUED_HELP, Kind::Gauge);
        for (w, (project, workflow)) in self.workflows.iter().zip(&self.names) {
            self.chunks.cut_if_full()?;
            if w.jobs.is_empty() && w.jobs_queued == 0 {
                continue;
            }
            workflow_labels(&mut self.labels, &self.org, project, workflow);
            family.sample(&mut self.chunks.buf, "", &self.labels, w.jobs_queued);
        }
        Ok(())
    }
}

/// `job`, `org`, `project`, (`status`,) `workflow`: a job's series.
fn job_labels(
    labels: &mut Labels,
    job: &JobMetrics,
    org: &str,
    project: &str,
    status: Option<&str>,
    workflow: &str,
) {
    let name = labels.value(&job.name);
    match status {
        Some(status) => labels.set(&[
            ("job", &name),
            ("org", org),
            ("project", project),
            ("status", status),
            ("workflow", workflow),
        ]),
        None => labels.set(&[
            ("job", &name),
            ("org", org),
            ("project", project),
            ("workflow", workflow),
        ]),
    }
}
