//! A workflow's aggregates, and how a finished run counts in them.
//!
//! The aggregates are the workflow's `WorkflowMetrics` as a scrape sends them,
//! but for its runs in progress: the last run, and per (status, runner) how
//! many runs finished so, when the newest did, and a cumulative histogram of
//! their durations. This module is their arithmetic; the store keeps them
//! (`store::record`) and counts a run in them in the transaction that
//! finishes it.
//!
//! Each histogram keeps the bucket bounds it was created with: changing the
//! configured buckets applies to new series only, so an existing series never
//! changes its `le` set (which would break `rate()` and `histogram_quantile()`
//! over it).

mod branches;
pub(crate) mod dora;
mod exemplars;
mod jobs;
pub(crate) mod native;

pub use branches::BranchLabel;
pub(crate) use jobs::{CompletedJob, count_job};

use runplane_api::time::{from_timestamp, timestamp};
use runplane_api::workflowrun::v1::{
    DurationHistogram, QueueHistogram, RunStatus, RunnerType, WorkflowMetrics,
};

/// Chainloop's default buckets, in seconds (`run_duration_buckets`' default).
#[cfg(any(test, feature = "test-support"))]
pub(crate) const DEFAULT_BUCKETS: &[f64] = &[
    10.0, 30.0, 60.0, 90.0, 120.0, 180.0, 240.0, 300.0, 600.0, 900.0, 1200.0,
];

/// Queue-time buckets, in seconds (`queue_duration_buckets`' default): from
/// a second to an hour, around the waits queue SLOs are written for.
pub(crate) const DEFAULT_QUEUE_BUCKETS: &[f64] = &[
    1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Checks configured bucket bounds (`setting`: their name): at least one,
/// finite, positive, strictly ascending.
pub(crate) fn validate_buckets(setting: &str, bounds: &[f64]) -> Result<(), String> {
    if bounds.is_empty() {
        return Err(format!("{setting} must list at least one bound"));
    }
    if bounds.iter().any(|b| !b.is_finite() || *b <= 0.0) {
        return Err(format!(
            "{setting} must be positive, finite numbers of seconds"
        ));
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("{setting} must be strictly ascending"));
    }
    Ok(())
}

/// Whether a commit is flaky on a workflow, given how its runs ended (status,
/// finish time): a run failed no later than the first success.
fn flaky(runs: impl IntoIterator<Item = (RunStatus, i64)> + Clone) -> bool {
    let first_success = runs
        .clone()
        .into_iter()
        .filter(|(status, _)| *status == RunStatus::Success)
        .map(|(_, at)| at)
        .min();
    first_success.is_some_and(|success| {
        runs.into_iter()
            .any(|(status, at)| status == RunStatus::Error && at <= success)
    })
}

/// Whether counting `this` run (status, finish time) makes its commit flaky,
/// given how the commit's runs counted before it ended: each flaky commit
/// counts once, whatever order its runs' outcomes arrive in (a success after a
/// failure, or a failure reported after the success that followed it).
pub(crate) fn makes_flaky(this: (RunStatus, i64), others: &[(RunStatus, i64)]) -> bool {
    let before = others.iter().copied();
    !flaky(before.clone()) && flaky(before.chain([this]))
}

/// Counts how long a run waited for a runner in its workflow's queue
/// histogram, created over `buckets` on the first such run (its bounds then
/// stay, as the duration histograms' do). A negative wait counts as none.
pub(crate) fn count_queue(
    aggregates: &mut WorkflowMetrics,
    run: &Finished<'_>,
    queue_ms: i64,
    buckets: &[f64],
) {
    observe_queue(&mut aggregates.queue, queue_ms, buckets);
    if let Some(queue) = &aggregates.queue {
        let bounds = queue.bucket_bounds.clone();
        let waited = seconds(queue_ms.max(0));
        exemplars::observe(
            aggregates,
            exemplars::Histogram::Queue,
            run,
            &bounds,
            waited,
        );
    }
}

/// Counts a wait of `queue_ms` in `queue`, created over `buckets` if absent.
fn observe_queue(queue: &mut Option<QueueHistogram>, queue_ms: i64, buckets: &[f64]) {
    let queue = queue.get_or_insert_with(|| QueueHistogram {
        bucket_bounds: buckets.to_vec(),
        bucket_counts: vec![0; buckets.len()],
        ..QueueHistogram::default()
    });
    let waited = seconds(queue_ms.max(0));
    observe_cumulative(&queue.bucket_bounds, &mut queue.bucket_counts, waited);
    queue.count += 1;
    queue.sum_seconds += waited;
}

/// Attempts past this one count together (`runs_by_attempt`' last element).
pub(crate) const ATTEMPTS_COUNTED_APART: usize = 4;

/// Counts a finished run by its attempt (0, not said: a first attempt).
pub(crate) fn count_attempt(aggregates: &mut WorkflowMetrics, attempt: i32) {
    let index = usize::try_from(attempt.max(1) - 1)
        .unwrap_or(0)
        .min(ATTEMPTS_COUNTED_APART - 1);
    let by_attempt = &mut aggregates.runs_by_attempt;
    if by_attempt.len() <= index {
        by_attempt.resize(index + 1, 0);
    }
    by_attempt[index] = by_attempt[index].saturating_add(1);
}

/// The aggregates of a workflow nothing has finished in yet.
pub(crate) fn new(id: &str, project: &str, name: &str, created_at_ms: i64) -> WorkflowMetrics {
    WorkflowMetrics {
        workflow_id: id.to_owned(),
        project: project.to_owned(),
        workflow: name.to_owned(),
        create_time: Some(timestamp(created_at_ms)),
        ..WorkflowMetrics::default()
    }
}

/// One finished run, as its workflow counts it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Finished<'a> {
    pub(crate) status: RunStatus,
    pub(crate) runner: RunnerType,
    pub(crate) finished_at_ms: i64,
    /// `None` for an expired run: counted, but not in the duration histogram.
    pub(crate) duration_ms: Option<i64>,
    /// Its branch label ([`BranchLabel::label`]); "" for none.
    pub(crate) branch: &'a str,
    /// Its id and its trace's, for exemplars ("": none).
    pub(crate) run_id: &'a str,
    pub(crate) trace_id: &'a str,
}

/// Counts a finished run in its workflow's aggregates. The workflow's last run
/// is the one that finished last, whatever order the finishes arrive in; an
/// expired run has no duration, so the last known one stays. New histograms
/// are created over `buckets`.
pub(crate) fn count(aggregates: &mut WorkflowMetrics, run: Finished<'_>, buckets: &[f64]) {
    let newer = aggregates.last_run.as_ref().is_none_or(|last| {
        last.finish_time
            .as_ref()
            .is_none_or(|at| from_timestamp(at) <= run.finished_at_ms)
    });
    if newer {
        let last = aggregates.last_run.get_or_insert_default();
        last.status = run.status.into();
        last.runner_type = run.runner.into();
        last.finish_time = Some(timestamp(run.finished_at_ms));
        if let Some(ms) = run.duration_ms {
            last.duration_seconds = Some(seconds(ms));
        }
    }

    branches::count_branch_run(aggregates, &run);
    let outcome = outcome_of(
        &mut aggregates.durations,
        (run.status, run.runner, run.branch),
        buckets,
    );
    outcome.runs_total = outcome.runs_total.saturating_add(1);
    let latest = outcome
        .last_finish_time
        .as_ref()
        .map_or(run.finished_at_ms, |at| {
            from_timestamp(at).max(run.finished_at_ms)
        });
    outcome.last_finish_time = Some(timestamp(latest));
    if let Some(ms) = run.duration_ms {
        observe(outcome, seconds(ms));
        let bounds = outcome.bucket_bounds.clone();
        exemplars::observe(
            aggregates,
            exemplars::Histogram::Durations,
            &run,
            &bounds,
            seconds(ms),
        );
    }
}

/// Moves a run counted as expired to the outcome its runner reported after
/// all: it leaves the expired count of its runner (the expired histogram goes
/// when it holds no run any more) and counts as `run` says, with its real
/// duration. The expired outcome's newest finish time stays as it was: which
/// expiry came before this one is not kept. Prometheus reads the expired
/// counter's decrease as a reset.
pub(crate) fn replace_expiry(aggregates: &mut WorkflowMetrics, run: Finished<'_>, buckets: &[f64]) {
    let key = (RunStatus::Expired.label(), run.runner.label(), run.branch);
    if let Some(at) = aggregates
        .durations
        .iter()
        .position(|o| outcome_key(o) == key)
    {
        let expired = &mut aggregates.durations[at];
        expired.runs_total = expired.runs_total.saturating_sub(1);
        if expired.runs_total == 0 {
            aggregates.durations.remove(at);
        }
    }
    count(aggregates, run, buckets);
}

/// The histogram of one outcome (status, runner, branch label), created over
/// `buckets` if it is the first run to finish so. Outcomes are kept in
/// (status, runner, branch) order, the order the scrape lists their series in.
pub(super) fn outcome_of<'a>(
    outcomes: &'a mut Vec<DurationHistogram>,
    (status, runner, branch): (RunStatus, RunnerType, &str),
    buckets: &[f64],
) -> &'a mut DurationHistogram {
    let key = (status.label(), runner.label(), branch);
    let at = outcomes
        .iter()
        .position(|o| outcome_key(o) >= key)
        .unwrap_or(outcomes.len());
    if outcomes.get(at).is_none_or(|o| outcome_key(o) != key) {
        outcomes.insert(
            at,
            DurationHistogram {
                status: status.into(),
                runner_type: runner.into(),
                bucket_bounds: buckets.to_vec(),
                bucket_counts: vec![0; buckets.len()],
                branch: branch.to_owned(),
                ..DurationHistogram::default()
            },
        );
    }
    &mut outcomes[at]
}

fn outcome_key(outcome: &DurationHistogram) -> (&'static str, &'static str, &str) {
    (
        outcome.status().label(),
        outcome.runner_type().label(),
        &outcome.branch,
    )
}

/// Records one run that took `seconds` in a cumulative histogram.
pub(super) fn observe(histogram: &mut DurationHistogram, seconds: f64) {
    // Before the count: it tells a new histogram from one counted without
    // native buckets.
    native::observe(histogram, seconds);
    observe_cumulative(
        &histogram.bucket_bounds,
        &mut histogram.bucket_counts,
        seconds,
    );
    histogram.count += 1;
    histogram.sum_seconds += seconds;
}

/// Adds `value` to every cumulative bucket whose bound it is within.
fn observe_cumulative(bounds: &[f64], counts: &mut [u64], value: f64) {
    for (bound, count) in bounds.iter().zip(counts.iter_mut()) {
        if value <= *bound {
            *count += 1;
        }
    }
}

pub(crate) fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(status: RunStatus, at: i64, duration_ms: Option<i64>) -> Finished<'static> {
        Finished {
            status,
            runner: RunnerType::GithubAction,
            finished_at_ms: at,
            duration_ms,
            branch: "",
            run_id: "",
            trace_id: "",
        }
    }

    #[test]
    fn observations_are_cumulative() {
        let mut outcomes = Vec::new();
        let h = outcome_of(
            &mut outcomes,
            (RunStatus::Success, RunnerType::GithubAction, ""),
            &[10.0, 30.0, 60.0],
        );
        for v in [5.0, 10.0, 25.0, 61.0] {
            observe(h, v);
        }
        assert_eq!(h.bucket_counts, [2, 3, 3]);
        assert_eq!(h.count, 4);
        assert_eq!(h.sum_seconds, 101.0);
        assert_eq!(
            h.runs_total, 0,
            "observing a duration is not counting a run"
        );
    }

    #[test]
    fn bucket_configuration_is_checked() {
        assert!(validate_buckets("b", DEFAULT_BUCKETS).is_ok());
        assert!(validate_buckets("b", &[0.5, 1.0]).is_ok());
        assert!(validate_buckets("b", &[]).is_err());
        assert!(validate_buckets("b", &[10.0, 10.0]).is_err());
        assert!(validate_buckets("b", &[30.0, 10.0]).is_err());
        assert!(validate_buckets("b", &[-1.0]).is_err());
        assert!(validate_buckets("b", DEFAULT_QUEUE_BUCKETS).is_ok());
        let (ok, failed) = (RunStatus::Success, RunStatus::Error);
        assert!(makes_flaky((ok, 10), &[(failed, 5)]));
        assert!(makes_flaky((ok, 10), &[(failed, 5), (failed, 7)]));
        assert!(
            !makes_flaky((ok, 10), &[(failed, 5), (ok, 8)]),
            "only the first success counts"
        );
        assert!(!makes_flaky((ok, 10), &[]));
        assert!(!makes_flaky((ok, 10), &[(ok, 5)]));
        // Out of order: the failure arrives after the success it preceded.
        assert!(makes_flaky((failed, 5), &[(ok, 10)]));
        assert!(
            !makes_flaky((failed, 5), &[(ok, 10), (failed, 3)]),
            "counted once"
        );
        assert!(
            !makes_flaky((failed, 12), &[(ok, 10)]),
            "a failure after the success"
        );
        // A success arriving late, before the one already counted flaky.
        assert!(!makes_flaky((ok, 5), &[(failed, 1), (ok, 10)]));
        assert!(!makes_flaky((failed, 5), &[]));
        let mut record = new("id", "default", "w", 0);
        let run = Finished {
            status: RunStatus::Success,
            runner: RunnerType::Unspecified,
            finished_at_ms: 0,
            duration_ms: None,
            branch: "",
            run_id: "",
            trace_id: "",
        };
        count_queue(&mut record, &run, 7_500, &[5.0, 10.0]);
        count_queue(&mut record, &run, -3, &[1.0]);
        let queue = record.queue.expect("a queue histogram");
        assert_eq!((queue.count, queue.sum_seconds), (2, 7.5));
        assert_eq!(queue.bucket_counts, [1, 2], "the first run's bounds stay");
        assert!(validate_buckets("b", &[f64::INFINITY]).is_err());
    }

    #[test]
    fn runs_count_by_attempt_with_later_attempts_together() {
        let mut record = new("id", "default", "w", 0);
        count_attempt(&mut record, 2);
        assert_eq!(record.runs_by_attempt, [0, 1], "no trailing zeros");
        for attempt in [0, 1, 2, 3, 4, 9, i32::MAX] {
            count_attempt(&mut record, attempt);
        }
        assert_eq!(record.runs_by_attempt, [2, 2, 1, 3]);
    }

    #[test]
    fn finishes_count_in_order_of_outcome_whatever_order_they_arrive_in() {
        let mut aggregates = new("id", "default", "build", 0);
        let buckets = [10.0, 60.0];
        count(
            &mut aggregates,
            finished(RunStatus::Success, 2_000, Some(2_000)),
            &buckets,
        );
        count(
            &mut aggregates,
            finished(RunStatus::Error, 1_000, Some(70_000)),
            &buckets,
        );
        count(
            &mut aggregates,
            finished(RunStatus::Success, 3_000, Some(20_000)),
            &buckets,
        );
        count(
            &mut aggregates,
            finished(RunStatus::Expired, 4_000, None),
            &buckets,
        );

        let statuses: Vec<RunStatus> = aggregates.durations.iter().map(|d| d.status()).collect();
        assert_eq!(
            statuses,
            [RunStatus::Error, RunStatus::Expired, RunStatus::Success]
        );
        let success = &aggregates.durations[2];
        assert_eq!((success.count, success.runs_total), (2, 2));
        assert_eq!(success.sum_seconds, 22.0);
        assert_eq!(success.bucket_counts, [1, 2]);
        assert_eq!(success.last_finish_time, Some(timestamp(3_000)));
        let expired = &aggregates.durations[1];
        assert_eq!((expired.count, expired.runs_total), (0, 1));
        assert_eq!(expired.bucket_counts, [0, 0]);

        // The expired run finished last: it is the last run, and the last
        // known duration stays.
        let last = aggregates.last_run.as_ref().expect("a last run");
        assert_eq!(
            (
                last.status(),
                last.runner_type(),
                last.finish_time,
                last.duration_seconds
            ),
            (
                RunStatus::Expired,
                RunnerType::GithubAction,
                Some(timestamp(4_000)),
                Some(20.0)
            )
        );
        // A run finishing earlier than the last one counts, but is not the last run.
        count(
            &mut aggregates,
            finished(RunStatus::Error, 500, Some(1)),
            &buckets,
        );
        assert_eq!(aggregates.durations[0].runs_total, 2);
        assert_eq!(
            aggregates.last_run.as_ref().map(|l| l.status()),
            Some(RunStatus::Expired)
        );
        assert_eq!(
            aggregates.durations[0].last_finish_time,
            Some(timestamp(1_000)),
            "the newest finish of the outcome stays"
        );
    }

    #[test]
    fn an_outcome_after_expiry_moves_the_run_from_expired_to_it() {
        let mut aggregates = new("id", "default", "build", 0);
        let buckets = [10.0, 60.0];
        count(
            &mut aggregates,
            finished(RunStatus::Expired, 1_000, None),
            &buckets,
        );
        count(
            &mut aggregates,
            finished(RunStatus::Expired, 2_000, None),
            &buckets,
        );
        // The second expired run reports success after all, 30 s long.
        replace_expiry(
            &mut aggregates,
            finished(RunStatus::Success, 3_000, Some(30_000)),
            &buckets,
        );
        let outcomes: Vec<(RunStatus, u64, u64)> = aggregates
            .durations
            .iter()
            .map(|d| (d.status(), d.runs_total, d.count))
            .collect();
        assert_eq!(
            outcomes,
            [(RunStatus::Expired, 1, 0), (RunStatus::Success, 1, 1)]
        );
        assert_eq!(aggregates.durations[1].bucket_counts, [0, 1]);
        let last = aggregates.last_run.as_ref().expect("a last run");
        assert_eq!(
            (last.status(), last.duration_seconds),
            (RunStatus::Success, Some(30.0))
        );
        // The first reports too: no expired run is left, nor its histogram.
        replace_expiry(
            &mut aggregates,
            finished(RunStatus::Error, 4_000, Some(5_000)),
            &buckets,
        );
        let statuses: Vec<RunStatus> = aggregates.durations.iter().map(|d| d.status()).collect();
        assert_eq!(statuses, [RunStatus::Error, RunStatus::Success]);
    }
}
