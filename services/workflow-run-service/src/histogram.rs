//! Cumulative run-duration histograms, one per (workflow, status, runner).
//!
//! Each histogram keeps the bucket bounds it was created with: changing the
//! configured buckets applies to new series only, so an existing series never
//! changes its `le` set (which would break `rate()` and
//! `histogram_quantile()` over it).

use runplane_api::workflowrun::v1::{DurationHistogram, RunStatus, RunnerType};

/// Chainloop's default buckets, in seconds.
pub const DEFAULT_BUCKETS: &[f64] = &[
    10.0, 30.0, 60.0, 90.0, 120.0, 180.0, 240.0, 300.0, 600.0, 900.0, 1200.0,
];

/// An empty histogram of one outcome over `bounds`.
pub fn empty(status: RunStatus, runner: RunnerType, bounds: &[f64]) -> DurationHistogram {
    DurationHistogram {
        status: status.into(),
        runner_type: runner.into(),
        bucket_bounds: bounds.to_vec(),
        bucket_counts: vec![0; bounds.len()],
        ..DurationHistogram::default()
    }
}

/// Records one run that took `seconds`.
pub fn observe(histogram: &mut DurationHistogram, seconds: f64) {
    for (bound, count) in histogram
        .bucket_bounds
        .iter()
        .zip(histogram.bucket_counts.iter_mut())
    {
        if seconds <= *bound {
            *count += 1;
        }
    }
    histogram.count += 1;
    histogram.sum_seconds += seconds;
}

/// Checks configured bucket bounds: at least one, finite, positive, strictly ascending.
pub fn validate_buckets(bounds: &[f64]) -> Result<(), String> {
    if bounds.is_empty() {
        return Err("run_duration_buckets must list at least one bound".into());
    }
    if bounds.iter().any(|b| !b.is_finite() || *b <= 0.0) {
        return Err("run_duration_buckets must be positive, finite numbers of seconds".into());
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err("run_duration_buckets must be strictly ascending".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_are_cumulative() {
        let mut h = empty(
            RunStatus::Success,
            RunnerType::GithubAction,
            &[10.0, 30.0, 60.0],
        );
        for v in [5.0, 10.0, 25.0, 61.0] {
            observe(&mut h, v);
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
        assert!(validate_buckets(DEFAULT_BUCKETS).is_ok());
        assert!(validate_buckets(&[0.5, 1.0]).is_ok());
        assert!(validate_buckets(&[]).is_err());
        assert!(validate_buckets(&[10.0, 10.0]).is_err());
        assert!(validate_buckets(&[30.0, 10.0]).is_err());
        assert!(validate_buckets(&[-1.0]).is_err());
        assert!(validate_buckets(&[f64::INFINITY]).is_err());
    }
}
