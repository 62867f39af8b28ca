//! Renders an organization's workflow aggregates as Prometheus metric families,
//! with metric names and HELP texts drop-in compatible with Chainloop's.

use prometheus::proto::{Bucket, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use runplane_api::workflowrun::v1::{RunStatus, WorkflowMetrics};
use runplane_kit::names;

/// `chainloop_workflow_up`: whether the last finished run succeeded.
pub const WORKFLOW_UP: &str = "chainloop_workflow_up";
/// `chainloop_workflow_run_duration_seconds`: run durations by outcome.
pub const RUN_DURATION: &str = "chainloop_workflow_run_duration_seconds";

/// The metric families for one organization's workflows. Workflows without a
/// finished run contribute no series.
pub fn families(org: &str, workflows: &[WorkflowMetrics]) -> Vec<MetricFamily> {
    let mut up = Vec::new();
    let mut durations = Vec::new();
    for w in workflows {
        if let Some(last) = &w.last_run {
            let value = if last.status() == RunStatus::Success {
                1.0
            } else {
                0.0
            };
            let mut gauge = Gauge::default();
            gauge.set_value(value);
            let mut metric = Metric::from_gauge(gauge);
            metric.set_label(labels(&[
                ("org", org),
                ("project", &w.project),
                ("runner", names::runner(last.runner_type())),
                ("workflow", &w.workflow),
            ]));
            up.push(metric);
        }
        for d in &w.durations {
            let mut histogram = Histogram::default();
            histogram.set_sample_count(d.count);
            histogram.set_sample_sum(d.sum_seconds);
            histogram.set_bucket(
                d.bucket_bounds
                    .iter()
                    .zip(&d.bucket_counts)
                    .map(|(bound, count)| {
                        let mut bucket = Bucket::default();
                        bucket.set_upper_bound(*bound);
                        bucket.set_cumulative_count(*count);
                        bucket
                    })
                    .collect(),
            );
            let mut metric = Metric::default();
            metric.set_histogram(histogram);
            metric.set_label(labels(&[
                ("org", org),
                ("project", &w.project),
                ("runner", names::runner(d.runner_type())),
                ("status", names::status(d.status())),
                ("workflow", &w.workflow),
            ]));
            durations.push(metric);
        }
    }
    let mut out = Vec::with_capacity(2);
    // The encoder refuses empty families, and an absent family is what an
    // organization without finished runs should show.
    if !up.is_empty() {
        out.push(family(
            WORKFLOW_UP,
            "Indicate if the last run was successful.",
            MetricType::GAUGE,
            up,
        ));
    }
    if !durations.is_empty() {
        out.push(family(
            RUN_DURATION,
            "Duration of a workflow runs in seconds.",
            MetricType::HISTOGRAM,
            durations,
        ));
    }
    out
}

/// Encodes families in the text exposition format 0.0.4.
pub fn encode_text(families: &[MetricFamily]) -> Result<String, prometheus::Error> {
    prometheus::TextEncoder::new().encode_to_string(families)
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

/// Label pairs, given in name order (the exposition keeps the order given).
fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name((*name).to_owned());
            pair.set_value((*value).to_owned());
            pair
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use runplane_api::workflowrun::v1::{DurationHistogram, LastRun, RunnerType};

    fn workflow(name: &str, status: RunStatus) -> WorkflowMetrics {
        WorkflowMetrics {
            workflow_id: "id".into(),
            project: "default".into(),
            workflow: name.into(),
            last_run: Some(LastRun {
                status: status.into(),
                runner_type: RunnerType::GithubAction.into(),
                finish_time: None,
            }),
            durations: vec![DurationHistogram {
                status: status.into(),
                runner_type: RunnerType::GithubAction.into(),
                count: 3,
                sum_seconds: 75.5,
                bucket_bounds: vec![10.0, 30.0],
                bucket_counts: vec![1, 2],
            }],
        }
    }

    #[test]
    fn renders_chainloop_compatible_series() {
        let text = encode_text(&families(
            "cyberdyne",
            &[workflow("backend-release-production", RunStatus::Success)],
        ))
        .expect("encode");
        assert!(
            text.contains(
                "# HELP chainloop_workflow_up Indicate if the last run was successful.\n"
            )
        );
        assert!(text.contains("# TYPE chainloop_workflow_up gauge\n"));
        assert!(text.contains(
            "chainloop_workflow_up{org=\"cyberdyne\",project=\"default\",runner=\"GITHUB_ACTION\",workflow=\"backend-release-production\"} 1\n"
        ));
        assert!(text.contains("# HELP chainloop_workflow_run_duration_seconds Duration of a workflow runs in seconds.\n"));
        let labels = "org=\"cyberdyne\",project=\"default\",runner=\"GITHUB_ACTION\",status=\"success\",workflow=\"backend-release-production\"";
        for line in [
            format!("chainloop_workflow_run_duration_seconds_bucket{{{labels},le=\"10\"}} 1\n"),
            format!("chainloop_workflow_run_duration_seconds_bucket{{{labels},le=\"30\"}} 2\n"),
            format!("chainloop_workflow_run_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 3\n"),
            format!("chainloop_workflow_run_duration_seconds_sum{{{labels}}} 75.5\n"),
            format!("chainloop_workflow_run_duration_seconds_count{{{labels}}} 3\n"),
        ] {
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn failed_last_run_is_zero_and_no_finished_run_means_no_series() {
        let text = encode_text(&families("o", &[workflow("w", RunStatus::Error)])).expect("encode");
        assert!(text.contains("chainloop_workflow_up{org=\"o\",project=\"default\",runner=\"GITHUB_ACTION\",workflow=\"w\"} 0\n"));
        let fresh = WorkflowMetrics {
            workflow: "never-finished".into(),
            ..WorkflowMetrics::default()
        };
        assert!(families("o", &[fresh]).is_empty());
        assert_eq!(encode_text(&[]).expect("encode"), "");
    }

    #[test]
    fn label_values_are_escaped() {
        let name = "say \"hi\"\\\nbye";
        let text =
            encode_text(&families("o", &[workflow(name, RunStatus::Success)])).expect("encode");
        assert!(
            text.contains(r#"workflow="say \"hi\"\\\nbye""#),
            "escaping wrong in\n{text}"
        );
        // Every sample is still one line.
        assert!(
            text.lines()
                .all(|l| l.starts_with('#') || l.starts_with("chainloop_")),
            "{text}"
        );
    }
}
