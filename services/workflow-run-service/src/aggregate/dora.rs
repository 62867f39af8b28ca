//! An environment's DORA aggregates (`EnvironmentMetrics`), and how a
//! deployment counts in them.
//!
//! The incident model (docs/dora.md): a failed deployment opens a failure
//! for its environment, unless one is open already; so does a deployment
//! marked as a rollback or a hotfix, for the deployment before it (its change
//! failed: the failure began when that one finished). The next successful
//! deployment closes the failure: time to restore is from its opening to that
//! deployment's finish. Change failures count failed deployments and the
//! successful ones a rollback or hotfix undid.
//!
//! Deployments count in the order they are recorded, but by their finish
//! times where order matters, since webhooks arrive in any order: a success
//! that finished before the open failure began does not close it, and a
//! failure that finished before the newest success counts as a failure but
//! opens nothing (a later deployment had fixed it already).

use runplane_api::time::{from_timestamp, timestamp};
use runplane_api::workflowrun::v1::{
    DeploymentKind, DeploymentStatus, DurationHistogram, EnvironmentMetrics,
};

const HOUR: f64 = 3600.0;
const DAY: f64 = 24.0 * HOUR;

/// Lead time for changes buckets, in seconds: an hour to half a year, with a
/// bound at each of DORA's thresholds (a day, a week, a month, six months),
/// so that the tier a median falls in is exact.
pub(crate) const LEAD_TIME_BUCKETS: &[f64] = &[
    HOUR,
    4.0 * HOUR,
    12.0 * HOUR,
    DAY,
    2.0 * DAY,
    7.0 * DAY,
    14.0 * DAY,
    30.0 * DAY,
    90.0 * DAY,
    180.0 * DAY,
];

/// Time to restore buckets, in seconds: ten minutes to half a year, with a
/// bound at each of DORA's thresholds (an hour, a day, a week, a month).
pub(crate) const RESTORE_BUCKETS: &[f64] = &[
    600.0,
    1800.0,
    HOUR,
    4.0 * HOUR,
    12.0 * HOUR,
    DAY,
    2.0 * DAY,
    7.0 * DAY,
    30.0 * DAY,
    180.0 * DAY,
];

/// A deployment as it counts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deployed {
    pub(crate) status: DeploymentStatus,
    pub(crate) kind: DeploymentKind,
    pub(crate) finished_at_ms: i64,
    /// When its commit was made, if known.
    pub(crate) committed_at_ms: Option<i64>,
}

/// The aggregates of an environment no deployment has counted in yet.
pub(crate) fn new(project: &str, environment: &str, created_at_ms: i64) -> EnvironmentMetrics {
    EnvironmentMetrics {
        project: project.to_owned(),
        environment: environment.to_owned(),
        create_time: Some(timestamp(created_at_ms)),
        ..EnvironmentMetrics::default()
    }
}

/// Counts `deployment` in `env` (see the module for the model).
pub(crate) fn count(env: &mut EnvironmentMetrics, deployment: Deployed) {
    let finished = deployment.finished_at_ms;
    if deployment.kind != DeploymentKind::Unspecified
        && env.failing_since.is_none()
        && let Some(undone) = env.last_success_time
    {
        // The deployment before it broke the environment.
        env.change_failures += 1;
        env.failing_since = Some(undone);
    }
    match deployment.status {
        DeploymentStatus::Success => {
            env.deployments_succeeded += 1;
            env.last_success_time = Some(timestamp(newest(env.last_success_time, finished)));
            // A rollback deploys an earlier change again: not a change's lead time.
            if deployment.kind != DeploymentKind::Rollback {
                match deployment.committed_at_ms {
                    Some(committed) => observe(
                        env.lead_time
                            .get_or_insert_with(|| histogram(LEAD_TIME_BUCKETS)),
                        finished - committed,
                    ),
                    None => env.deployments_without_commit_time += 1,
                }
            }
            if let Some(since) = env.failing_since.map(|at| from_timestamp(&at))
                && since <= finished
            {
                env.failing_since = None;
                observe(
                    env.restore_time
                        .get_or_insert_with(|| histogram(RESTORE_BUCKETS)),
                    finished - since,
                );
            }
        }
        DeploymentStatus::Failure | DeploymentStatus::Unspecified => {
            env.deployments_failed += 1;
            env.change_failures += 1;
            env.last_failure_time = Some(timestamp(newest(env.last_failure_time, finished)));
            let fixed_since = env
                .last_success_time
                .is_some_and(|at| from_timestamp(&at) > finished);
            if env.failing_since.is_none() && !fixed_since {
                env.failing_since = Some(timestamp(finished));
            }
        }
    }
}

fn newest(at: Option<runplane_api::time::Timestamp>, ms: i64) -> i64 {
    at.as_ref().map_or(ms, |at| from_timestamp(at).max(ms))
}

fn histogram(bounds: &[f64]) -> DurationHistogram {
    DurationHistogram {
        bucket_bounds: bounds.to_vec(),
        bucket_counts: vec![0; bounds.len()],
        ..DurationHistogram::default()
    }
}

/// Records one duration of `ms` (zero if negative).
fn observe(histogram: &mut DurationHistogram, ms: i64) {
    histogram.runs_total += 1;
    super::observe(histogram, super::seconds(ms.max(0)));
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn deployed(status: DeploymentStatus, kind: DeploymentKind, at: i64) -> Deployed {
        Deployed {
            status,
            kind,
            finished_at_ms: at,
            committed_at_ms: Some(at - 2 * H),
        }
    }

    fn seconds(h: i64) -> f64 {
        (h * H) as f64 / 1000.0
    }

    #[test]
    fn a_failed_deployment_opens_a_failure_that_the_next_success_closes() {
        let mut env = new("web", "production", 0);
        count(
            &mut env,
            deployed(
                DeploymentStatus::Success,
                DeploymentKind::Unspecified,
                10 * H,
            ),
        );
        count(
            &mut env,
            deployed(
                DeploymentStatus::Failure,
                DeploymentKind::Unspecified,
                20 * H,
            ),
        );
        // A second failure while the first is open does not move its opening.
        count(
            &mut env,
            deployed(
                DeploymentStatus::Failure,
                DeploymentKind::Unspecified,
                21 * H,
            ),
        );
        assert_eq!(env.failing_since, Some(timestamp(20 * H)));
        count(
            &mut env,
            deployed(DeploymentStatus::Success, DeploymentKind::Hotfix, 23 * H),
        );
        assert_eq!(env.failing_since, None);
        assert_eq!((env.deployments_succeeded, env.deployments_failed), (2, 2));
        assert_eq!(env.change_failures, 2);
        let restore = env.restore_time.as_ref().expect("restored");
        assert_eq!((restore.count, restore.sum_seconds), (1, seconds(3)));
        let lead = env.lead_time.as_ref().expect("lead time");
        // Both successes, two hours after their commits.
        assert_eq!((lead.count, lead.sum_seconds), (2, seconds(4)));
        assert_eq!(env.last_success_time, Some(timestamp(23 * H)));
        assert_eq!(env.last_failure_time, Some(timestamp(21 * H)));
    }

    #[test]
    fn a_rollback_fails_the_change_before_it_and_restores_at_once() {
        let mut env = new("web", "production", 0);
        count(
            &mut env,
            deployed(
                DeploymentStatus::Success,
                DeploymentKind::Unspecified,
                10 * H,
            ),
        );
        count(
            &mut env,
            deployed(DeploymentStatus::Success, DeploymentKind::Rollback, 11 * H),
        );
        assert_eq!(env.change_failures, 1);
        assert_eq!(env.deployments_failed, 0);
        assert_eq!(env.failing_since, None);
        let restore = env.restore_time.as_ref().expect("restored");
        assert_eq!((restore.count, restore.sum_seconds), (1, seconds(1)));
        // The rollback's commit is an old one: no lead time of its own.
        assert_eq!(env.lead_time.as_ref().map(|l| l.count), Some(1));
    }

    #[test]
    fn deployments_out_of_order_neither_close_nor_open_by_mistake() {
        let mut env = new("web", "production", 0);
        count(
            &mut env,
            deployed(
                DeploymentStatus::Failure,
                DeploymentKind::Unspecified,
                12 * H,
            ),
        );
        // A success that finished before the failure: no restore.
        count(
            &mut env,
            deployed(
                DeploymentStatus::Success,
                DeploymentKind::Unspecified,
                11 * H,
            ),
        );
        assert_eq!(env.failing_since, Some(timestamp(12 * H)));
        assert_eq!(env.restore_time, None);
        count(
            &mut env,
            deployed(
                DeploymentStatus::Success,
                DeploymentKind::Unspecified,
                14 * H,
            ),
        );
        assert_eq!(env.failing_since, None);
        // A failure delivered late, fixed since by the 14 h success: counted,
        // opens nothing.
        count(
            &mut env,
            deployed(
                DeploymentStatus::Failure,
                DeploymentKind::Unspecified,
                13 * H,
            ),
        );
        assert_eq!(env.failing_since, None);
        assert_eq!((env.deployments_failed, env.change_failures), (2, 2));
        assert_eq!(env.restore_time.map(|r| r.count), Some(1));
    }

    #[test]
    fn without_a_commit_time_a_success_has_no_lead_time_and_says_so() {
        let mut env = new("web", "production", 0);
        count(
            &mut env,
            Deployed {
                committed_at_ms: None,
                ..deployed(DeploymentStatus::Success, DeploymentKind::Unspecified, H)
            },
        );
        assert_eq!(env.lead_time, None);
        assert_eq!(env.deployments_without_commit_time, 1);
    }

    #[test]
    fn lead_times_fall_in_the_buckets_of_their_tier() {
        let mut env = new("web", "production", 0);
        for hours in [1, 20, 100] {
            count(
                &mut env,
                Deployed {
                    committed_at_ms: Some(1000 * H - hours * H),
                    ..deployed(
                        DeploymentStatus::Success,
                        DeploymentKind::Unspecified,
                        1000 * H,
                    )
                },
            );
        }
        let lead = env.lead_time.expect("lead time");
        // ≤ 1 h, ≤ 4 h, ≤ 12 h, ≤ 1 d, ≤ 2 d, ≤ 7 d, …
        assert_eq!(lead.bucket_counts, [1, 1, 1, 2, 2, 3, 3, 3, 3, 3]);
        assert_eq!(lead.native.map(|n| n.counts.iter().sum::<u64>()), Some(3));
    }
}
