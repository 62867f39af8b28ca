//! Renders an organization's workflow aggregates in the Prometheus text
//! format, with metric names and HELP texts drop-in compatible with Chainloop's.
//!
//! The exposition is written straight into one buffer: each series' labels are
//! escaped once and reused for all its lines. Building `prometheus` crate metric
//! families and encoding them was most of a large scrape's cost (see
//! docs/benchmarks.md); the tests check that the output is byte for byte what
//! that encoder writes.

use std::fmt::Write as _;

use runplane_api::workflowrun::v1::{RunStatus, WorkflowMetrics};
use runplane_kit::names;

/// `chainloop_workflow_up`: whether the last finished run succeeded.
pub const WORKFLOW_UP: &str = "chainloop_workflow_up";
/// `chainloop_workflow_run_duration_seconds`: run durations by outcome.
pub const RUN_DURATION: &str = "chainloop_workflow_run_duration_seconds";

const UP_HELP: &str = "Indicate if the last run was successful.";
const DURATION_HELP: &str = "Duration of a workflow runs in seconds.";

/// The text exposition (format 0.0.4) of one organization's workflows.
/// Workflows without a finished run contribute no series; an organization
/// without any has an empty exposition.
pub fn render(org: &str, workflows: &[WorkflowMetrics]) -> String {
    let histograms: usize = workflows.iter().map(|w| w.durations.len()).sum();
    let mut out = String::with_capacity(256 + workflows.len() * 200 + histograms * 2400);
    let org = escape(org);
    let mut labels = String::new();

    let mut header = false;
    for w in workflows {
        let Some(last) = &w.last_run else { continue };
        if !header {
            family_header(&mut out, WORKFLOW_UP, UP_HELP, "gauge");
            header = true;
        }
        labels.clear();
        let _ = write!(
            labels,
            "org=\"{org}\",project=\"{}\",runner=\"{}\",workflow=\"{}\"",
            escape(&w.project),
            names::runner(last.runner_type()),
            escape(&w.workflow)
        );
        let up = if last.status() == RunStatus::Success {
            1
        } else {
            0
        };
        let _ = writeln!(out, "{WORKFLOW_UP}{{{labels}}} {up}");
    }

    let mut header = false;
    for w in workflows {
        if w.durations.is_empty() {
            continue;
        }
        if !header {
            family_header(&mut out, RUN_DURATION, DURATION_HELP, "histogram");
            header = true;
        }
        let (project, workflow) = (escape(&w.project), escape(&w.workflow));
        for d in &w.durations {
            labels.clear();
            let _ = write!(
                labels,
                "org=\"{org}\",project=\"{project}\",runner=\"{}\",status=\"{}\",workflow=\"{workflow}\"",
                names::runner(d.runner_type()),
                names::status(d.status())
            );
            for (bound, count) in d.bucket_bounds.iter().zip(&d.bucket_counts) {
                let _ = writeln!(
                    out,
                    "{RUN_DURATION}_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "{RUN_DURATION}_bucket{{{labels},le=\"+Inf\"}} {}",
                d.count
            );
            let _ = writeln!(out, "{RUN_DURATION}_sum{{{labels}}} {}", d.sum_seconds);
            let _ = writeln!(out, "{RUN_DURATION}_count{{{labels}}} {}", d.count);
        }
    }
    out
}

fn family_header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the text format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    std::borrow::Cow::Owned(escaped)
}

/// The same exposition through the `prometheus` crate's families and encoder:
/// the reference [`render`] must match.
#[cfg(test)]
fn families(org: &str, workflows: &[WorkflowMetrics]) -> Vec<prometheus::proto::MetricFamily> {
    let mut up = Vec::new();
    let mut durations = Vec::new();
    for w in workflows {
        if let Some(last) = &w.last_run {
            let value = if last.status() == RunStatus::Success {
                1.0
            } else {
                0.0
            };
            let mut gauge = prometheus::proto::Gauge::default();
            gauge.set_value(value);
            let mut metric = prometheus::proto::Metric::from_gauge(gauge);
            metric.set_label(labels(&[
                ("org", org),
                ("project", &w.project),
                ("runner", names::runner(last.runner_type())),
                ("workflow", &w.workflow),
            ]));
            up.push(metric);
        }
        for d in &w.durations {
            let mut histogram = prometheus::proto::Histogram::default();
            histogram.set_sample_count(d.count);
            histogram.set_sample_sum(d.sum_seconds);
            histogram.set_bucket(
                d.bucket_bounds
                    .iter()
                    .zip(&d.bucket_counts)
                    .map(|(bound, count)| {
                        let mut bucket = prometheus::proto::Bucket::default();
                        bucket.set_upper_bound(*bound);
                        bucket.set_cumulative_count(*count);
                        bucket
                    })
                    .collect(),
            );
            let mut metric = prometheus::proto::Metric::default();
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
            UP_HELP,
            prometheus::proto::MetricType::GAUGE,
            up,
        ));
    }
    if !durations.is_empty() {
        out.push(family(
            RUN_DURATION,
            DURATION_HELP,
            prometheus::proto::MetricType::HISTOGRAM,
            durations,
        ));
    }
    out
}

#[cfg(test)]
fn encode_text(families: &[prometheus::proto::MetricFamily]) -> Result<String, prometheus::Error> {
    prometheus::TextEncoder::new().encode_to_string(families)
}

#[cfg(test)]
fn family(
    name: &str,
    help: &str,
    kind: prometheus::proto::MetricType,
    metrics: Vec<prometheus::proto::Metric>,
) -> prometheus::proto::MetricFamily {
    let mut family = prometheus::proto::MetricFamily::default();
    family.set_name(name.to_owned());
    family.set_help(help.to_owned());
    family.set_field_type(kind);
    family.set_metric(metrics);
    family
}

/// Label pairs, given in name order (the exposition keeps the order given).
#[cfg(test)]
fn labels(pairs: &[(&str, &str)]) -> Vec<prometheus::proto::LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut pair = prometheus::proto::LabelPair::default();
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
        let text = render(
            "cyberdyne",
            &[workflow("backend-release-production", RunStatus::Success)],
        );
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
        let text = render("o", &[workflow("w", RunStatus::Error)]);
        assert!(text.contains("chainloop_workflow_up{org=\"o\",project=\"default\",runner=\"GITHUB_ACTION\",workflow=\"w\"} 0\n"));
        let fresh = WorkflowMetrics {
            workflow: "never-finished".into(),
            ..WorkflowMetrics::default()
        };
        assert_eq!(render("o", &[fresh]), "");
    }

    #[test]
    fn the_direct_writer_matches_the_prometheus_crates_encoder_byte_for_byte() {
        let mut several = vec![
            workflow("a", RunStatus::Success),
            workflow("b \"quoted\" \\ back\nslash", RunStatus::Error),
            WorkflowMetrics {
                workflow: "never-finished".into(),
                ..WorkflowMetrics::default()
            },
        ];
        let mut two = workflow("two-outcomes", RunStatus::Canceled);
        two.durations.push(DurationHistogram {
            status: RunStatus::Error.into(),
            runner_type: RunnerType::Unspecified.into(),
            count: 0,
            sum_seconds: 0.25,
            bucket_bounds: vec![0.5, 2.5, 1e9],
            bucket_counts: vec![0, 0, 0],
        });
        several.push(two);
        for (org, workflows) in [
            ("cyberdyne", &several[..]),
            ("o", &several[..1]),
            ("o", &several[2..3]),
            ("empty", &[][..]),
        ] {
            let reference = encode_text(&families(org, workflows)).expect("encode");
            assert_eq!(render(org, workflows), reference, "{org}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let name = "say \"hi\"\\\nbye";
        let text = render("o", &[workflow(name, RunStatus::Success)]);
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
