//! Exemplars: for each bucket of a workflow's run histograms, the newest run
//! that fell in it (its id, and the trace of the call that reported it), so
//! that a slow bucket on a dashboard links to a run.
//!
//! They are kept apart from the rest of the aggregates (`store::record`) and
//! read only for OpenMetrics scrapes, the one format that carries them.

use runplane_api::time::{from_timestamp, timestamp};
use runplane_api::workflowrun::v1::{Exemplar, HistogramExemplars, WorkflowMetrics};

use super::Finished;

/// Which histogram of a workflow an exemplar belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Histogram {
    /// The durations of the run's outcome (status, runner, branch label).
    Durations,
    /// The queue times.
    Queue,
}

/// Makes `run` the exemplar of the bucket of `bounds` that `seconds` fell
/// in, unless a run that finished later is already.
pub(super) fn observe(
    aggregates: &mut WorkflowMetrics,
    histogram: Histogram,
    run: &Finished<'_>,
    bounds: &[f64],
    seconds: f64,
) {
    if run.run_id.is_empty() {
        return;
    }
    let matches = |h: &HistogramExemplars| match histogram {
        Histogram::Queue => h.queue,
        Histogram::Durations => {
            !h.queue
                && h.status() == run.status
                && h.runner_type() == run.runner
                && h.branch == run.branch
        }
    };
    let at = match aggregates.exemplars.iter().position(matches) {
        Some(at) => at,
        None => {
            let mut new = HistogramExemplars::default();
            match histogram {
                Histogram::Queue => new.queue = true,
                Histogram::Durations => {
                    new.status = run.status.into();
                    new.runner_type = run.runner.into();
                    new.branch = run.branch.to_owned();
                }
            }
            aggregates.exemplars.push(new);
            aggregates.exemplars.len() - 1
        }
    };
    let exemplars = &mut aggregates.exemplars[at].exemplars;
    let bucket = bounds
        .iter()
        .position(|bound| seconds <= *bound)
        .unwrap_or(bounds.len());
    let bucket = u32::try_from(bucket).unwrap_or(u32::MAX);
    let exemplar = Exemplar {
        bucket,
        run_id: run.run_id.to_owned(),
        trace_id: run.trace_id.to_owned(),
        value: seconds,
        time: Some(timestamp(run.finished_at_ms)),
    };
    let slot = exemplars.partition_point(|e| e.bucket < bucket);
    match exemplars.get_mut(slot) {
        Some(current) if current.bucket == bucket => {
            let newer = current
                .time
                .as_ref()
                .is_none_or(|t| from_timestamp(t) <= run.finished_at_ms);
            if newer {
                *current = exemplar;
            }
        }
        _ => exemplars.insert(slot, exemplar),
    }
}

#[cfg(test)]
mod tests {
    use runplane_api::workflowrun::v1::{RunStatus, RunnerType};

    use super::*;
    use crate::aggregate::new;

    fn run<'a>(id: &'a str, at: i64) -> Finished<'a> {
        Finished {
            status: RunStatus::Success,
            runner: RunnerType::GithubAction,
            finished_at_ms: at,
            duration_ms: Some(1),
            branch: "",
            run_id: id,
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
        }
    }

    #[test]
    fn each_bucket_keeps_the_newest_run_that_fell_in_it() {
        let mut record = new("id", "default", "ci", 0);
        let bounds = [10.0, 60.0];
        let (a, b, c, d) = (run("a", 100), run("b", 50), run("c", 200), run("d", 300));
        observe(&mut record, Histogram::Durations, &a, &bounds, 5.0);
        // Finished earlier, reported later: not the newest of its bucket.
        observe(&mut record, Histogram::Durations, &b, &bounds, 7.0);
        observe(&mut record, Histogram::Durations, &c, &bounds, 600.0);
        observe(&mut record, Histogram::Queue, &d, &bounds, 30.0);
        let [durations, queue] = record.exemplars.as_slice() else {
            panic!("two histograms: {:?}", record.exemplars);
        };
        let kept: Vec<(u32, &str)> = durations
            .exemplars
            .iter()
            .map(|e| (e.bucket, e.run_id.as_str()))
            .collect();
        assert_eq!(kept, [(0, "a"), (2, "c")], "+Inf is bucket 2");
        assert!(queue.queue);
        assert_eq!(queue.exemplars[0].bucket, 1);
        assert_eq!(
            queue.exemplars[0].trace_id,
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        // A run without an id (a test's, a benchmark's) leaves none.
        let anonymous = run("", 400);
        observe(&mut record, Histogram::Queue, &anonymous, &bounds, 1.0);
        assert_eq!(record.exemplars[1].exemplars.len(), 1);
    }
}
