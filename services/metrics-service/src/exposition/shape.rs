//! What `drop_labels` does to the aggregates before they are written: series
//! that differ only by a dropped label are merged into one, so that no two
//! series of a scrape share a label set.
//!
//! Counters and counts add up; gauges of the newest run take the newest; two
//! histograms merge over the bucket bounds they share (a cumulative count at
//! one bound adds up exactly; a bound only one of them has cannot be).

use std::borrow::Cow;

use runplane_api::time::from_timestamp;
use runplane_api::workflowrun::v1::{
    BranchRun, DurationHistogram, EnvironmentMetrics, Exemplar, HistogramExemplars, JobMetrics,
    LastRun, NativeBuckets, QueueHistogram, RunnerType, WorkflowMetrics,
};

use super::cardinality::Cardinality;

/// `workflows` as they are written: unchanged unless labels are dropped.
pub(crate) fn shape<'a>(
    c: &Cardinality,
    workflows: &'a [WorkflowMetrics],
) -> Cow<'a, [WorkflowMetrics]> {
    if !c.drop_runner && !c.drop_project {
        return Cow::Borrowed(workflows);
    }
    let mut shaped: Vec<WorkflowMetrics> = Vec::with_capacity(workflows.len());
    // By workflow name, where each went (dropping `project`).
    let mut by_name: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for w in workflows {
        let mut w = w.clone();
        if c.drop_runner {
            without_runner(&mut w);
        }
        if c.drop_project {
            if let Some(&at) = by_name.get(&w.workflow) {
                merge_workflow(&mut shaped[at], w);
                continue;
            }
            by_name.insert(w.workflow.clone(), shaped.len());
        }
        shaped.push(w);
    }
    Cow::Owned(shaped)
}

/// `environments` as they are written: with `project` dropped, the
/// environments of one name merged (counters add up, histograms merge, the
/// newest deployment times stay, a failure open in any is open).
pub(crate) fn environments<'a>(
    c: &Cardinality,
    environments: &'a [EnvironmentMetrics],
) -> Cow<'a, [EnvironmentMetrics]> {
    if !c.drop_project {
        return Cow::Borrowed(environments);
    }
    let mut merged: Vec<EnvironmentMetrics> = Vec::with_capacity(environments.len());
    for e in environments {
        let Some(into) = merged.iter_mut().find(|m| m.environment == e.environment) else {
            merged.push(e.clone());
            continue;
        };
        let e = e.clone();
        into.deployments_succeeded += e.deployments_succeeded;
        into.deployments_failed += e.deployments_failed;
        into.change_failures += e.change_failures;
        into.deployments_without_commit_time += e.deployments_without_commit_time;
        let time = |at: &Option<runplane_api::time::Timestamp>| at.as_ref().map(from_timestamp);
        if time(&e.last_success_time) > time(&into.last_success_time) {
            into.last_success_time = e.last_success_time;
        }
        if time(&e.last_failure_time) > time(&into.last_failure_time) {
            into.last_failure_time = e.last_failure_time;
        }
        // The earliest: when the environment of this name began failing.
        into.failing_since = match (into.failing_since.take(), e.failing_since) {
            (Some(a), Some(b)) if from_timestamp(&b) < from_timestamp(&a) => Some(b),
            (a, b) => a.or(b),
        };
        if e.create_time.is_some() && time(&e.create_time) < time(&into.create_time) {
            into.create_time = e.create_time;
        }
        merge_histogram(&mut into.lead_time, e.lead_time);
        merge_histogram(&mut into.restore_time, e.restore_time);
    }
    Cow::Owned(merged)
}

fn merge_histogram(into: &mut Option<DurationHistogram>, other: Option<DurationHistogram>) {
    *into = match (into.take(), other) {
        (Some(a), Some(b)) => {
            let mut one = vec![a];
            merge_outcome(&mut one, b);
            one.pop()
        }
        (a, b) => a.or(b),
    };
}

/// One workflow's series without their runner: outcomes of every runner
/// merged per (status, branch).
fn without_runner(w: &mut WorkflowMetrics) {
    let unspecified = i32::from(RunnerType::Unspecified);
    if let Some(last) = &mut w.last_run {
        last.runner_type = unspecified;
    }
    for run in &mut w.branch_runs {
        run.runner_type = unspecified;
    }
    let durations = std::mem::take(&mut w.durations);
    for mut d in durations {
        d.runner_type = unspecified;
        merge_outcome(&mut w.durations, d);
    }
    let exemplars = std::mem::take(&mut w.exemplars);
    for mut h in exemplars {
        h.runner_type = unspecified;
        merge_exemplars(
            &mut w.exemplars,
            h,
            w.durations.as_slice(),
            w.queue.as_ref(),
        );
    }
}

/// Adds `other`, a workflow of the same name, to `into`.
fn merge_workflow(into: &mut WorkflowMetrics, other: WorkflowMetrics) {
    into.last_run = newest_last_run(into.last_run.take(), other.last_run);
    for d in other.durations {
        merge_outcome(&mut into.durations, d);
    }
    into.runs_in_progress = into.runs_in_progress.saturating_add(other.runs_in_progress);
    into.create_time = match (into.create_time.take(), other.create_time) {
        (Some(a), Some(b)) => Some(if from_timestamp(&a) <= from_timestamp(&b) {
            a
        } else {
            b
        }),
        (a, b) => a.or(b),
    };
    merge_queue(&mut into.queue, other.queue);
    into.flaky_runs = into.flaky_runs.saturating_add(other.flaky_runs);
    for job in other.jobs {
        merge_job(&mut into.jobs, job);
    }
    if into.runs_by_attempt.len() < other.runs_by_attempt.len() {
        into.runs_by_attempt.resize(other.runs_by_attempt.len(), 0);
    }
    for (a, b) in into.runs_by_attempt.iter_mut().zip(other.runs_by_attempt) {
        *a = a.saturating_add(b);
    }
    into.jobs_queued = into.jobs_queued.saturating_add(other.jobs_queued);
    into.runs_queued = into.runs_queued.saturating_add(other.runs_queued);
    for run in other.branch_runs {
        merge_branch_run(&mut into.branch_runs, run);
    }
    for h in other.exemplars {
        merge_exemplars(
            &mut into.exemplars,
            h,
            into.durations.as_slice(),
            into.queue.as_ref(),
        );
    }
}

fn finish_ms(at: Option<&runplane_api::time::Timestamp>) -> i64 {
    at.map_or(i64::MIN, from_timestamp)
}

fn newest_last_run(a: Option<LastRun>, b: Option<LastRun>) -> Option<LastRun> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let newer_b = finish_ms(b.finish_time.as_ref()) > finish_ms(a.finish_time.as_ref());
            let (mut newest, older) = if newer_b { (b, a) } else { (a, b) };
            // The newest known duration, as each workflow keeps it.
            if newest.duration_seconds.is_none() {
                newest.duration_seconds = older.duration_seconds;
            }
            Some(newest)
        }
        (a, b) => a.or(b),
    }
}

fn merge_branch_run(runs: &mut Vec<BranchRun>, run: BranchRun) {
    match runs.iter_mut().find(|r| r.branch == run.branch) {
        Some(r) if finish_ms(run.finish_time.as_ref()) > finish_ms(r.finish_time.as_ref()) => {
            *r = run;
        }
        Some(_) => {}
        None => runs.push(run),
    }
}

/// Adds outcome `d` to the outcome of `outcomes` with its (status, runner,
/// branch), or adds it.
fn merge_outcome(outcomes: &mut Vec<DurationHistogram>, d: DurationHistogram) {
    let same = |o: &DurationHistogram| {
        o.status == d.status && o.runner_type == d.runner_type && o.branch == d.branch
    };
    let Some(into) = outcomes.iter_mut().find(|o| same(o)) else {
        outcomes.push(d);
        return;
    };
    into.runs_total = into.runs_total.saturating_add(d.runs_total);
    if finish_ms(d.last_finish_time.as_ref()) > finish_ms(into.last_finish_time.as_ref()) {
        into.last_finish_time = d.last_finish_time;
    }
    let (bounds, counts) = merged_buckets(
        (&into.bucket_bounds, &into.bucket_counts),
        (&d.bucket_bounds, &d.bucket_counts),
    );
    into.bucket_bounds = bounds;
    into.bucket_counts = counts;
    into.native = merged_native((into.native.take(), into.count), (d.native, d.count));
    into.count = into.count.saturating_add(d.count);
    into.sum_seconds += d.sum_seconds;
}

/// The native buckets of two merged histograms (each with its count):
/// added bucket by bucket (runplane keeps one schema); none when a histogram
/// that counted durations lacks them (not backfilled yet), so that the merged
/// one goes classic rather than short.
fn merged_native(
    (a, a_count): (Option<NativeBuckets>, u64),
    (b, b_count): (Option<NativeBuckets>, u64),
) -> Option<NativeBuckets> {
    let (a, b) = match (a, b) {
        (Some(a), Some(b)) => (a, b),
        (None, kept) if a_count == 0 => return kept,
        (kept, None) if b_count == 0 => return kept,
        _ => return None,
    };
    if a.schema != b.schema {
        return None;
    }
    let mut merged: std::collections::BTreeMap<i32, u64> =
        a.indexes.into_iter().zip(a.counts).collect();
    for (index, count) in b.indexes.into_iter().zip(b.counts) {
        let at = merged.entry(index).or_default();
        *at = at.saturating_add(count);
    }
    Some(NativeBuckets {
        schema: a.schema,
        zero_count: a.zero_count.saturating_add(b.zero_count),
        indexes: merged.keys().copied().collect(),
        counts: merged.into_values().collect(),
    })
}

fn merge_queue(into: &mut Option<QueueHistogram>, other: Option<QueueHistogram>) {
    let Some(other) = other else { return };
    let Some(queue) = into else {
        *into = Some(other);
        return;
    };
    let (bounds, counts) = merged_buckets(
        (&queue.bucket_bounds, &queue.bucket_counts),
        (&other.bucket_bounds, &other.bucket_counts),
    );
    queue.bucket_bounds = bounds;
    queue.bucket_counts = counts;
    queue.count = queue.count.saturating_add(other.count);
    queue.sum_seconds += other.sum_seconds;
}

fn merge_job(jobs: &mut Vec<JobMetrics>, job: JobMetrics) {
    let Some(into) = jobs.iter_mut().find(|j| j.name == job.name) else {
        jobs.push(job);
        return;
    };
    if finish_ms(job.last_finish_time.as_ref()) > finish_ms(into.last_finish_time.as_ref()) {
        into.last_status = job.last_status;
        into.last_finish_time = job.last_finish_time;
    }
    for d in job.durations {
        merge_outcome(&mut into.durations, d);
    }
    merge_queue(&mut into.queue, job.queue);
}

/// Two cumulative histograms' buckets as one: over the bounds both have, the
/// counts added.
fn merged_buckets(a: (&[f64], &[u64]), b: (&[f64], &[u64])) -> (Vec<f64>, Vec<u64>) {
    if a.0 == b.0 {
        let counts =
            a.1.iter()
                .zip(b.1)
                .map(|(x, y)| x.saturating_add(*y))
                .collect();
        return (a.0.to_vec(), counts);
    }
    let mut bounds = Vec::new();
    let mut counts = Vec::new();
    for (bound, count) in a.0.iter().zip(a.1) {
        if let Some(at) = b.0.iter().position(|other| other == bound) {
            bounds.push(*bound);
            counts.push(count.saturating_add(b.1.get(at).copied().unwrap_or(0)));
        }
    }
    (bounds, counts)
}

/// Adds histogram `h`'s exemplars to those of the histogram of `into` it
/// now belongs to, the newest of each bucket kept; buckets are found again
/// from each exemplar's value, the bounds having possibly merged.
fn merge_exemplars(
    into: &mut Vec<HistogramExemplars>,
    h: HistogramExemplars,
    durations: &[DurationHistogram],
    queue: Option<&QueueHistogram>,
) {
    let bounds: &[f64] = if h.queue {
        queue.map_or(&[], |q| q.bucket_bounds.as_slice())
    } else {
        durations
            .iter()
            .find(|d| {
                d.status == h.status && d.runner_type == h.runner_type && d.branch == h.branch
            })
            .map_or(&[], |d| d.bucket_bounds.as_slice())
    };
    let same = |o: &HistogramExemplars| {
        o.queue == h.queue
            && o.status == h.status
            && o.runner_type == h.runner_type
            && o.branch == h.branch
    };
    let at = match into.iter().position(same) {
        Some(at) => at,
        None => {
            into.push(HistogramExemplars {
                exemplars: Vec::new(),
                ..h.clone()
            });
            into.len() - 1
        }
    };
    let target = &mut into[at].exemplars;
    let existing = std::mem::take(target);
    for e in existing.into_iter().chain(h.exemplars) {
        place(target, e, bounds);
    }
}

/// Puts `e` in the bucket of `bounds` its value falls in, unless a newer one is there.
fn place(exemplars: &mut Vec<Exemplar>, mut e: Exemplar, bounds: &[f64]) {
    let bucket = bounds
        .iter()
        .position(|b| e.value <= *b)
        .unwrap_or(bounds.len());
    e.bucket = u32::try_from(bucket).unwrap_or(u32::MAX);
    let slot = exemplars.partition_point(|x| x.bucket < e.bucket);
    match exemplars.get_mut(slot) {
        Some(x) if x.bucket == e.bucket => {
            if finish_ms(e.time.as_ref()) > finish_ms(x.time.as_ref()) {
                *x = e;
            }
        }
        _ => exemplars.insert(slot, e),
    }
}

#[cfg(test)]
mod tests {
    use runplane_api::time::timestamp;
    use runplane_api::workflowrun::v1::RunStatus;

    use super::*;

    fn outcome(runner: RunnerType, bounds: &[f64], counts: &[u64], at: i64) -> DurationHistogram {
        DurationHistogram {
            status: RunStatus::Success.into(),
            runner_type: runner.into(),
            count: counts.last().copied().unwrap_or(0) + 1,
            sum_seconds: 10.0,
            bucket_bounds: bounds.to_vec(),
            bucket_counts: counts.to_vec(),
            runs_total: 5,
            last_finish_time: Some(timestamp(at)),
            branch: String::new(),
            native: None,
        }
    }

    fn workflow(project: &str, durations: Vec<DurationHistogram>) -> WorkflowMetrics {
        WorkflowMetrics {
            workflow_id: project.into(),
            project: project.into(),
            workflow: "ci".into(),
            durations,
            runs_in_progress: 1,
            flaky_runs: 1,
            runs_by_attempt: vec![2],
            ..WorkflowMetrics::default()
        }
    }

    #[test]
    fn dropping_the_runner_merges_outcomes_over_their_shared_bounds() {
        let c = Cardinality {
            drop_runner: true,
            ..Cardinality::default()
        };
        let w = workflow(
            "p",
            vec![
                outcome(RunnerType::GithubAction, &[10.0, 30.0, 60.0], &[1, 2, 3], 5),
                outcome(RunnerType::JenkinsJob, &[10.0, 60.0], &[4, 4], 9),
            ],
        );
        let shaped = shape(&c, std::slice::from_ref(&w));
        let [merged] = shaped[0].durations.as_slice() else {
            panic!("one outcome: {:?}", shaped[0].durations);
        };
        assert_eq!(merged.bucket_bounds, [10.0, 60.0]);
        assert_eq!(merged.bucket_counts, [5, 7]);
        assert_eq!(
            (merged.count, merged.runs_total, merged.sum_seconds),
            (9, 10, 20.0)
        );
        assert_eq!(merged.last_finish_time, Some(timestamp(9)));
        assert_eq!(merged.runner_type(), RunnerType::Unspecified);
    }

    #[test]
    fn dropping_the_project_merges_workflows_of_one_name() {
        let c = Cardinality {
            drop_project: true,
            ..Cardinality::default()
        };
        let bounds = [10.0];
        let workflows = [
            workflow(
                "a",
                vec![outcome(RunnerType::GithubAction, &bounds, &[1], 5)],
            ),
            workflow(
                "b",
                vec![outcome(RunnerType::GithubAction, &bounds, &[2], 7)],
            ),
            WorkflowMetrics {
                workflow: "other".into(),
                ..workflow("a", Vec::new())
            },
        ];
        let shaped = shape(&c, &workflows);
        assert_eq!(shaped.len(), 2);
        let ci = &shaped[0];
        assert_eq!((ci.runs_in_progress, ci.flaky_runs), (2, 2));
        assert_eq!(ci.runs_by_attempt, [4]);
        assert_eq!(ci.durations[0].bucket_counts, [3]);
        // Nothing to drop: the aggregates as they are, not copied.
        assert!(matches!(
            shape(&Cardinality::default(), &workflows),
            Cow::Borrowed(_)
        ));
    }
}
