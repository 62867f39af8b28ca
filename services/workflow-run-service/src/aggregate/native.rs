//! A duration histogram's native buckets ([`NativeBuckets`]): the
//! exponential buckets of a Prometheus native histogram, kept beside the
//! classic ones so that a protobuf scrape can carry both (one native series
//! instead of a series per bound, at any quantile's resolution).
//!
//! Schema 3 (eight buckets per power of two, each bound 2^(1/8) ≈ 1.09 times
//! the previous): a quantile is within ~4.5% of the truth, and the durations
//! of a CI run (a second to a day) span at most ~130 buckets, of which only
//! those holding a run are kept.

use runplane_api::workflowrun::v1::{
    DurationHistogram, NativeBuckets, RunStatus, RunnerType, WorkflowMetrics,
};

/// The schema of every native histogram runplane keeps.
pub(crate) const SCHEMA: i32 = 3;

/// The native buckets of a histogram nothing is counted in yet.
pub(crate) fn empty() -> NativeBuckets {
    NativeBuckets {
        schema: SCHEMA,
        ..NativeBuckets::default()
    }
}

/// The index of the bucket holding `seconds` (> 0) at `schema`: the `i` with
/// 2^((i-1)/2^schema) < seconds ≤ 2^(i/2^schema).
pub(crate) fn bucket_index(seconds: f64, schema: i32) -> i32 {
    let per_octave = f64::from(1u32 << schema);
    let upper = |i: i32| (f64::from(i) / per_octave).exp2();
    // The logarithm can be one off at a bucket's bound: settle on the bound.
    let mut i = (seconds.log2() * per_octave).ceil() as i32;
    if upper(i) < seconds {
        i += 1;
    } else if upper(i - 1) >= seconds {
        i -= 1;
    }
    i
}

/// The upper bound of bucket `index` at `schema`, in seconds.
#[cfg(test)]
pub(crate) fn upper_bound(index: i32, schema: i32) -> f64 {
    (f64::from(index) / f64::from(1u32 << schema)).exp2()
}

/// Counts `count` durations of `seconds` in `native`.
pub(crate) fn observe_n(native: &mut NativeBuckets, seconds: f64, count: u64) {
    if seconds <= 0.0 {
        native.zero_count += count;
        return;
    }
    let index = bucket_index(seconds, native.schema);
    match native.indexes.binary_search(&index) {
        Ok(at) => native.counts[at] += count,
        Err(at) => {
            native.indexes.insert(at, index);
            native.counts.insert(at, count);
        }
    }
}

/// Counts one duration in `histogram`'s native buckets. A histogram that has
/// counted durations without them (counted before runplane kept them) is
/// left to the backfill, which adds this duration with the rest.
pub(super) fn observe(histogram: &mut DurationHistogram, seconds: f64) {
    if histogram.native.is_none() && histogram.count == 0 {
        histogram.native = Some(empty());
    }
    if let Some(native) = &mut histogram.native {
        observe_n(native, seconds, 1);
    }
}

/// The native buckets of a classic histogram counted without them, from the
/// durations of its runs still `kept`: each classic bucket holds as many of
/// them as the classic counts allow (where the runs fit in its bounds), and
/// the runs deleted since (by retention) are counted at the bucket's upper
/// bound, those past the last bound just above it. So the native buckets
/// count what the classic ones count, exactly where the runs are kept.
pub(crate) fn backfill(histogram: &DurationHistogram, kept: &[f64]) -> NativeBuckets {
    let bounds = &histogram.bucket_bounds;
    // Each classic bucket's own count (the stored counts are cumulative),
    // the last one past the last bound.
    let mut room: Vec<u64> = Vec::with_capacity(bounds.len() + 1);
    let mut below = 0;
    for cumulative in histogram
        .bucket_counts
        .iter()
        .chain(std::iter::once(&histogram.count))
    {
        room.push(cumulative.saturating_sub(below));
        below = below.max(*cumulative);
    }
    let mut native = empty();
    for &seconds in kept {
        let bucket = bounds.partition_point(|bound| *bound < seconds);
        if let Some(left) = room.get_mut(bucket).filter(|left| **left > 0) {
            *left -= 1;
            observe_n(&mut native, seconds, 1);
        }
    }
    for (bucket, left) in room.into_iter().enumerate() {
        if left == 0 {
            continue;
        }
        let at = match bounds.get(bucket) {
            Some(bound) => *bound,
            // Past the last bound: in the native bucket after the last bound's.
            None => bounds.last().map_or(1.0, |last| last * 1.1),
        };
        observe_n(&mut native, at, left);
    }
    native
}

/// A finished run still kept, as the backfill reads it.
#[derive(Debug, Clone)]
pub(crate) struct KeptRun {
    pub(crate) status: RunStatus,
    pub(crate) runner: RunnerType,
    /// The branch it reported ("": none).
    pub(crate) branch: String,
    pub(crate) seconds: f64,
}

/// A completed job still kept, as the backfill reads it.
#[derive(Debug, Clone)]
pub(crate) struct KeptJob {
    pub(crate) name: String,
    pub(crate) status: RunStatus,
    pub(crate) seconds: f64,
}

/// Whether some histogram of `record` counted durations without native
/// buckets (before runplane kept them), so needs [`backfill_record`].
pub(crate) fn lacks_native(record: &WorkflowMetrics) -> bool {
    let jobs = record.jobs.iter().flat_map(|j| &j.durations);
    record
        .durations
        .iter()
        .chain(jobs)
        .any(|d| d.native.is_none() && d.count > 0)
}

/// Gives every histogram of `record` that lacks them native buckets, from
/// the runs and jobs of its workflow still kept ([`backfill`]). A run counts
/// toward the outcome of its status, runner and branch; runs of a branch
/// counted as `other` (or under a setting since changed) that cannot be told
/// apart are left to the classic counts, which bound every bucket anyway.
pub(crate) fn backfill_record(record: &mut WorkflowMetrics, runs: &[KeptRun], jobs: &[KeptJob]) {
    let labels: Vec<String> = record
        .durations
        .iter()
        .map(|d| d.branch.clone())
        .filter(|b| !b.is_empty())
        .collect();
    let branch_counts_as = |label: &str, branch: &str| match label {
        "" => true,
        super::branches::OTHER => !labels.iter().any(|l| l == branch),
        label => label == branch,
    };
    for d in record
        .durations
        .iter_mut()
        .filter(|d| d.native.is_none() && d.count > 0)
    {
        let kept: Vec<f64> = runs
            .iter()
            .filter(|r| r.status == d.status() && r.runner == d.runner_type())
            .filter(|r| branch_counts_as(&d.branch, &r.branch))
            .map(|r| r.seconds)
            .collect();
        d.native = Some(backfill(d, &kept));
    }
    for job in &mut record.jobs {
        for d in job
            .durations
            .iter_mut()
            .filter(|d| d.native.is_none() && d.count > 0)
        {
            let kept: Vec<f64> = jobs
                .iter()
                .filter(|j| j.name == job.name && j.status == d.status())
                .map(|j| j.seconds)
                .collect();
            d.native = Some(backfill(d, &kept));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_falls_in_the_bucket_whose_bounds_hold_it() {
        assert_eq!(bucket_index(1.0, 3), 0, "1 is a bound: the top of bucket 0");
        assert_eq!(bucket_index(1.0001, 3), 1);
        assert_eq!(bucket_index(2.0, 3), 8);
        assert_eq!(bucket_index(0.5, 3), -8);
        assert_eq!(bucket_index(0.001, 3), -79);
        for index in -100..200 {
            let bound = upper_bound(index, 3);
            assert_eq!(bucket_index(bound, 3), index, "bound {bound}");
            assert_eq!(bucket_index(bound * 1.000_001, 3), index + 1);
        }
        let mut native = empty();
        for seconds in [0.0, 30.0, 1.0, 30.0, 2.0] {
            observe_n(&mut native, seconds, 1);
        }
        assert_eq!(native.zero_count, 1);
        assert_eq!(native.indexes, [0, 8, bucket_index(30.0, 3)]);
        assert_eq!(native.counts, [1, 1, 2]);
    }

    #[test]
    fn a_backfill_counts_what_the_classic_buckets_count() {
        // Five runs were counted: 5 s, 8 s, 25 s, 50 s and 400 s; the 8 s and
        // the 400 s runs were deleted since.
        let histogram = DurationHistogram {
            bucket_bounds: vec![10.0, 30.0, 60.0],
            bucket_counts: vec![2, 3, 4],
            count: 5,
            sum_seconds: 488.0,
            ..DurationHistogram::default()
        };
        let native = backfill(&histogram, &[5.0, 25.0, 50.0]);
        let mut expected = empty();
        for seconds in [5.0, 10.0, 25.0, 50.0, 66.0] {
            observe_n(&mut expected, seconds, 1);
        }
        assert_eq!(native, expected);
        assert_eq!(native.counts.iter().sum::<u64>(), 5);
        // A kept run the classic buckets do not hold room for (counted under
        // another outcome's label then) is left out.
        let native = backfill(&histogram, &[5.0, 6.0, 7.0, 25.0, 50.0]);
        assert_eq!(native.counts.iter().sum::<u64>(), 5);
        assert_eq!(native.counts.first(), Some(&1), "5 s");
    }

    #[test]
    fn a_histogram_counted_without_native_buckets_waits_for_its_backfill() {
        let mut fresh = DurationHistogram::default();
        observe(&mut fresh, 3.0);
        assert_eq!(fresh.native.map(|n| n.counts), Some(vec![1]));
        let mut older = DurationHistogram {
            count: 4,
            ..DurationHistogram::default()
        };
        observe(&mut older, 3.0);
        assert_eq!(older.native, None);
    }

    #[test]
    fn a_record_is_backfilled_per_outcome_and_job_from_its_own_runs() {
        let outcome = |status: RunStatus, branch: &str, count: u64| DurationHistogram {
            status: status.into(),
            runner_type: RunnerType::GithubAction.into(),
            bucket_bounds: vec![10.0],
            bucket_counts: vec![count],
            count,
            branch: branch.to_owned(),
            ..DurationHistogram::default()
        };
        let mut record = WorkflowMetrics {
            durations: vec![
                outcome(RunStatus::Error, "main", 1),
                outcome(RunStatus::Success, "main", 2),
                outcome(RunStatus::Success, "other", 1),
                // Counted since: its native buckets stay as they are.
                DurationHistogram {
                    native: Some(empty()),
                    ..outcome(RunStatus::Canceled, "main", 0)
                },
            ],
            jobs: vec![runplane_api::workflowrun::v1::JobMetrics {
                name: "build".into(),
                durations: vec![outcome(RunStatus::Success, "", 1)],
                ..Default::default()
            }],
            ..WorkflowMetrics::default()
        };
        assert!(lacks_native(&record));
        let run = |status, branch: &str, seconds| KeptRun {
            status,
            runner: RunnerType::GithubAction,
            branch: branch.into(),
            seconds,
        };
        let runs = [
            run(RunStatus::Success, "main", 2.0),
            run(RunStatus::Success, "main", 4.0),
            run(RunStatus::Success, "feature", 8.0),
            run(RunStatus::Error, "main", 1.0),
        ];
        let jobs = [KeptJob {
            name: "build".into(),
            status: RunStatus::Success,
            seconds: 0.5,
        }];
        backfill_record(&mut record, &runs, &jobs);
        assert!(!lacks_native(&record));
        let indexes = |d: &DurationHistogram| d.native.as_ref().map(|n| n.indexes.clone());
        let at = |seconds: &[f64]| Some(seconds.iter().map(|s| bucket_index(*s, SCHEMA)).collect());
        assert_eq!(indexes(&record.durations[0]), at(&[1.0]));
        assert_eq!(indexes(&record.durations[1]), at(&[2.0, 4.0]));
        assert_eq!(
            indexes(&record.durations[2]),
            at(&[8.0]),
            "feature is `other`"
        );
        assert_eq!(indexes(&record.durations[3]), Some(vec![]));
        assert_eq!(indexes(&record.jobs[0].durations[0]), at(&[0.5]));
    }
}
