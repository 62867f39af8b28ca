//! How a completed job counts in its workflow's aggregates: per job name, its
//! outcomes (a duration histogram and a count each), the newest outcome, and
//! how long its jobs waited for a runner.
//!
//! Job names are bounded per workflow: a matrix with a name per combination
//! would otherwise grow a workflow's record, and its series, without end.

use runplane_api::time::{from_timestamp, timestamp};
use runplane_api::workflowrun::v1::{JobMetrics, RunStatus, RunnerType, WorkflowMetrics};

use super::{observe, observe_queue, outcome_of, seconds};

/// Most job names counted apart in one workflow.
pub(crate) const MAX_JOB_NAMES: usize = 100;

/// The name jobs past [`MAX_JOB_NAMES`] are counted under.
pub(crate) const OTHER_JOBS: &str = "(other jobs)";

/// A job reported completed for the first time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CompletedJob<'a> {
    pub(crate) name: &'a str,
    /// SUCCESS, ERROR or CANCELED.
    pub(crate) status: RunStatus,
    pub(crate) finished_at_ms: i64,
    /// Start to finish, when both are known.
    pub(crate) duration_ms: Option<i64>,
    /// Queued to started, when both are known.
    pub(crate) queue_ms: Option<i64>,
}

/// Counts `job` in its workflow's aggregates: new histograms take `buckets`
/// (durations) and `queue_buckets`, and keep them after.
pub(crate) fn count_job(
    aggregates: &mut WorkflowMetrics,
    job: CompletedJob<'_>,
    buckets: &[f64],
    queue_buckets: &[f64],
) {
    let jobs = &mut aggregates.jobs;
    let name = if jobs.len() >= MAX_JOB_NAMES && !jobs.iter().any(|j| j.name == job.name) {
        OTHER_JOBS
    } else {
        job.name
    };
    // Kept in name order, the order the scrape lists their series in.
    let at = jobs.partition_point(|j| j.name.as_str() < name);
    if jobs.get(at).is_none_or(|j| j.name != name) {
        jobs.insert(
            at,
            JobMetrics {
                name: name.to_owned(),
                ..JobMetrics::default()
            },
        );
    }
    let metrics = &mut jobs[at];

    let newer = metrics
        .last_finish_time
        .as_ref()
        .is_none_or(|at| from_timestamp(at) <= job.finished_at_ms);
    if newer {
        metrics.last_status = job.status.into();
        metrics.last_finish_time = Some(timestamp(job.finished_at_ms));
    }
    let outcome = outcome_of(
        &mut metrics.durations,
        (job.status, RunnerType::Unspecified, ""),
        buckets,
    );
    outcome.runs_total = outcome.runs_total.saturating_add(1);
    let latest = outcome
        .last_finish_time
        .as_ref()
        .map_or(job.finished_at_ms, |at| {
            from_timestamp(at).max(job.finished_at_ms)
        });
    outcome.last_finish_time = Some(timestamp(latest));
    if let Some(ms) = job.duration_ms {
        observe(outcome, seconds(ms.max(0)));
    }
    if let Some(ms) = job.queue_ms {
        observe_queue(&mut metrics.queue, ms, queue_buckets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::new;

    fn job(name: &str, status: RunStatus, at: i64) -> CompletedJob<'_> {
        CompletedJob {
            name,
            status,
            finished_at_ms: at,
            duration_ms: Some(20_000),
            queue_ms: Some(4_000),
        }
    }

    #[test]
    fn jobs_count_by_name_and_outcome_and_the_newest_outcome_is_the_last() {
        let mut record = new("id", "default", "ci", 0);
        let (buckets, queue) = ([10.0, 60.0], [5.0]);
        count_job(
            &mut record,
            job("test", RunStatus::Error, 2_000),
            &buckets,
            &queue,
        );
        count_job(
            &mut record,
            job("build", RunStatus::Success, 1_000),
            &buckets,
            &queue,
        );
        // Arrives later, finished earlier: counted, but not the last outcome.
        count_job(
            &mut record,
            job("test", RunStatus::Success, 1_500),
            &buckets,
            &queue,
        );
        let skipped = CompletedJob {
            duration_ms: None,
            queue_ms: None,
            ..job("test", RunStatus::Canceled, 500)
        };
        count_job(&mut record, skipped, &buckets, &queue);

        let names: Vec<&str> = record.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["build", "test"]);
        let test = &record.jobs[1];
        assert_eq!(test.last_status(), RunStatus::Error);
        assert_eq!(test.last_finish_time, Some(timestamp(2_000)));
        let outcomes: Vec<(RunStatus, u64, u64, Vec<u64>)> = test
            .durations
            .iter()
            .map(|d| (d.status(), d.runs_total, d.count, d.bucket_counts.clone()))
            .collect();
        assert_eq!(
            outcomes,
            [
                (RunStatus::Canceled, 1, 0, vec![0, 0]),
                (RunStatus::Error, 1, 1, vec![0, 1]),
                (RunStatus::Success, 1, 1, vec![0, 1]),
            ]
        );
        let waited = test.queue.as_ref().expect("a queue histogram");
        assert_eq!((waited.count, waited.sum_seconds), (2, 8.0));
        assert_eq!(waited.bucket_counts, [2]);
    }

    #[test]
    fn job_names_past_the_limit_count_together() {
        let mut record = new("id", "default", "matrix", 0);
        let names: Vec<String> = (0..MAX_JOB_NAMES + 5).map(|i| format!("t{i:03}")).collect();
        for name in &names {
            count_job(
                &mut record,
                job(name, RunStatus::Success, 1),
                &[1.0],
                &[1.0],
            );
        }
        // A name counted before the limit was reached keeps its own series.
        count_job(
            &mut record,
            job("t000", RunStatus::Success, 2),
            &[1.0],
            &[1.0],
        );
        assert_eq!(record.jobs.len(), MAX_JOB_NAMES + 1);
        let other = record
            .jobs
            .iter()
            .find(|j| j.name == OTHER_JOBS)
            .expect("the other jobs");
        assert_eq!(other.durations[0].runs_total, 5);
        assert_eq!(
            record
                .jobs
                .iter()
                .find(|j| j.name == "t000")
                .map(|j| j.durations[0].runs_total),
            Some(2)
        );
    }
}
