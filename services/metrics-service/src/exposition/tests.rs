//! The exposition writer's tests: byte for byte against the `prometheus`
//! crate's encoder, both formats, chunking, and property tests over arbitrary
//! names.

use std::collections::BTreeMap;

use runplane_api::time::from_timestamp;
use runplane_api::workflowrun::v1::RunStatus;

use super::jobs::*;
use super::runs::*;
use super::*;

/// [`super::render`] in a text format, as text.
fn render(options: &Options, org: &str, workflows: &[WorkflowMetrics], started: Instant) -> String {
    String::from_utf8(super::render(options, org, workflows, started)).expect("text is UTF-8")
}

/// [`super::families`] in a text format, as text.
fn families(options: &Options, org: &str, workflows: &[WorkflowMetrics]) -> String {
    String::from_utf8(super::families(options, org, workflows)).expect("text is UTF-8")
}

/// The text exposition through the `prometheus` crate's families and encoder,
/// in the same family order: the reference [`render`] must match.
fn reference_text(ns: &str, org: &str, workflows: &[WorkflowMetrics]) -> String {
    use prometheus::proto::{Bucket, Counter, Gauge, Histogram, Metric, MetricType};
    let gauge = |value: f64, pairs: &[(&str, &str)]| {
        let mut g = Gauge::default();
        g.set_value(value);
        let mut m = Metric::from_gauge(g);
        m.set_label(labels(pairs));
        m
    };
    let counter = |value: u64, pairs: &[(&str, &str)]| {
        let mut c = Counter::default();
        c.set_value(value as f64);
        let mut m = Metric::default();
        m.set_counter(c);
        m.set_label(labels(pairs));
        m
    };
    let histogram =
        |bounds: &[f64], counts: &[u64], count: u64, sum: f64, pairs: &[(&str, &str)]| {
            let mut histogram = Histogram::default();
            histogram.set_sample_count(count);
            histogram.set_sample_sum(sum);
            histogram.set_bucket(
                bounds
                    .iter()
                    .zip(counts)
                    .map(|(bound, count)| {
                        let mut bucket = Bucket::default();
                        bucket.set_upper_bound(*bound);
                        bucket.set_cumulative_count(*count);
                        bucket
                    })
                    .collect(),
            );
            let mut m = Metric::default();
            m.set_histogram(histogram);
            m.set_label(labels(pairs));
            m
        };
    let (mut up, mut durations, mut in_progress, mut last_at, mut last_duration, mut runs) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut queues, mut flaky, mut attempts, mut runs_queued) = (vec![], vec![], vec![], vec![]);
    let (mut job_up, mut job_durations, mut jobs, mut job_queues, mut jobs_queued) =
        (vec![], vec![], vec![], vec![], vec![]);
    for w in workflows {
        let (o, p, wf) = (
            ("org", org),
            ("project", w.project.as_str()),
            ("workflow", w.workflow.as_str()),
        );
        for run in &w.branch_runs {
            let value = f64::from(u8::from(run.status() == RunStatus::Success));
            let pairs = [
                ("branch", run.branch.as_str()),
                o,
                p,
                ("runner", run.runner_type().label()),
                wf,
            ];
            up.push(gauge(value, &pairs));
        }
        if let Some(last) = &w.last_run {
            if w.branch_runs.is_empty() {
                let value = f64::from(u8::from(last.status() == RunStatus::Success));
                up.push(gauge(
                    value,
                    &[o, p, ("runner", last.runner_type().label()), wf],
                ));
            }
            if let Some(seconds) = last.duration_seconds {
                last_duration.push(gauge(seconds, &[o, p, wf]));
            }
        }
        in_progress.push(gauge(f64::from(w.runs_in_progress), &[o, p, wf]));
        let mut newest: BTreeMap<&str, i64> = BTreeMap::new();
        for d in &w.durations {
            let mut pairs = vec![
                o,
                p,
                ("runner", d.runner_type().label()),
                ("status", d.status().label()),
                wf,
            ];
            if !d.branch.is_empty() {
                pairs.insert(0, ("branch", d.branch.as_str()));
            }
            if let Some(at) = d.last_finish_time.as_ref().map(from_timestamp) {
                let entry = newest.entry(d.status().label()).or_insert(at);
                *entry = (*entry).max(at);
            }
            runs.push(counter(d.runs_total, &pairs));
            if d.count > 0 {
                durations.push(histogram(
                    &d.bucket_bounds,
                    &d.bucket_counts,
                    d.count,
                    d.sum_seconds,
                    &pairs,
                ));
            }
        }
        if w.flaky_runs > 0 {
            flaky.push(counter(w.flaky_runs, &[o, p, wf]));
        }
        for (attempt, n) in ["1", "2", "3", "4+"].into_iter().zip(&w.runs_by_attempt) {
            if *n > 0 {
                attempts.push(counter(*n, &[("attempt", attempt), o, p, wf]));
            }
        }
        if let Some(queue) = w.queue.as_ref().filter(|q| q.count > 0) {
            queues.push(histogram(
                &queue.bucket_bounds,
                &queue.bucket_counts,
                queue.count,
                queue.sum_seconds,
                &[o, p, wf],
            ));
        }
        for (status, at) in newest {
            last_at.push(gauge(at as f64 / 1000.0, &[o, p, ("status", status), wf]));
        }
        if !w.jobs.is_empty() || w.jobs_queued > 0 {
            runs_queued.push(gauge(f64::from(w.runs_queued), &[o, p, wf]));
            jobs_queued.push(gauge(f64::from(w.jobs_queued), &[o, p, wf]));
        }
        for job in &w.jobs {
            let name = ("job", job.name.as_str());
            if job.last_finish_time.is_some() {
                let value = f64::from(u8::from(job.last_status() == RunStatus::Success));
                job_up.push(gauge(value, &[name, o, p, wf]));
            }
            for d in &job.durations {
                let pairs = [name, o, p, ("status", d.status().label()), wf];
                jobs.push(counter(d.runs_total, &pairs));
                if d.count > 0 {
                    job_durations.push(histogram(
                        &d.bucket_bounds,
                        &d.bucket_counts,
                        d.count,
                        d.sum_seconds,
                        &pairs,
                    ));
                }
            }
            if let Some(queue) = job.queue.as_ref().filter(|q| q.count > 0) {
                job_queues.push(histogram(
                    &queue.bucket_bounds,
                    &queue.bucket_counts,
                    queue.count,
                    queue.sum_seconds,
                    &[name, o, p, wf],
                ));
            }
        }
    }
    let org_workflows = vec![gauge(workflows.len() as f64, &[("org", org)])];
    let series_dropped = vec![gauge(0.0, &[("org", org)])];
    let mut families = Vec::new();
    for (name, help, kind, metrics) in [
        ("workflow_up", UP_HELP, MetricType::GAUGE, up),
        (
            "workflow_run_duration_seconds",
            DURATION_HELP,
            MetricType::HISTOGRAM,
            durations,
        ),
        (
            "workflow_runs_in_progress",
            IN_PROGRESS_HELP,
            MetricType::GAUGE,
            in_progress,
        ),
        (
            "workflow_last_run_timestamp_seconds",
            LAST_TIMESTAMP_HELP,
            MetricType::GAUGE,
            last_at,
        ),
        (
            "workflow_last_run_duration_seconds",
            LAST_DURATION_HELP,
            MetricType::GAUGE,
            last_duration,
        ),
        ("workflow_runs_total", RUNS_HELP, MetricType::COUNTER, runs),
        (
            "workflow_run_queue_seconds",
            QUEUE_HELP,
            MetricType::HISTOGRAM,
            queues,
        ),
        (
            "workflow_flaky_runs_total",
            FLAKY_HELP,
            MetricType::COUNTER,
            flaky,
        ),
        (
            "workflow_runs_by_attempt_total",
            ATTEMPTS_HELP,
            MetricType::COUNTER,
            attempts,
        ),
        (
            "workflow_runs_queued",
            RUNS_QUEUED_HELP,
            MetricType::GAUGE,
            runs_queued,
        ),
        ("workflow_job_up", JOB_UP_HELP, MetricType::GAUGE, job_up),
        (
            "workflow_job_duration_seconds",
            JOB_DURATION_HELP,
            MetricType::HISTOGRAM,
            job_durations,
        ),
        ("workflow_jobs_total", JOBS_HELP, MetricType::COUNTER, jobs),
        (
            "workflow_job_queue_seconds",
            JOB_QUEUE_HELP,
            MetricType::HISTOGRAM,
            job_queues,
        ),
        (
            "workflow_jobs_queued",
            JOBS_QUEUED_HELP,
            MetricType::GAUGE,
            jobs_queued,
        ),
        (
            "org_workflows",
            ORG_WORKFLOWS_HELP,
            MetricType::GAUGE,
            org_workflows,
        ),
        (
            "org_series_dropped",
            SERIES_DROPPED_HELP,
            MetricType::GAUGE,
            series_dropped,
        ),
    ] {
        // The encoder refuses empty families; an absent family is what we write.
        if metrics.is_empty() {
            continue;
        }
        let mut family = prometheus::proto::MetricFamily::default();
        family.set_name(format!("{ns}_{name}"));
        family.set_help(help.to_owned());
        family.set_field_type(kind);
        family.set_metric(metrics);
        families.push(family);
    }
    prometheus::TextEncoder::new()
        .encode_to_string(&families)
        .expect("encode")
}

/// The assorted workflows of the rendering tests.
fn rendering_assorted() -> Vec<WorkflowMetrics> {
    rendering::assorted()
}

/// Every series of an exposition appears once.
pub(super) fn assert_unique_series(text: &str) {
    let mut seen = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
        assert!(seen.insert(series.to_owned()), "{series} twice in\n{text}");
    }
}

/// Label pairs, given in name order (the exposition keeps the order given).
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

mod rendering {
    use super::*;
    use runplane_api::time::timestamp;
    use runplane_api::workflowrun::v1::{
        BranchRun, DurationHistogram, Exemplar, HistogramExemplars, JobMetrics, LastRun,
        QueueHistogram, RunnerType,
    };

    pub(super) fn options(format: Format) -> Options {
        Options {
            namespace: DEFAULT_NAMESPACE.to_owned(),
            format,
            created_series: false,
            protobuf_histograms: Default::default(),
            cardinality: Default::default(),
        }
    }

    fn text(org: &str, workflows: &[WorkflowMetrics]) -> String {
        render(&options(Format::Text), org, workflows, Instant::now())
    }

    pub(super) fn workflow(name: &str, status: RunStatus) -> WorkflowMetrics {
        WorkflowMetrics {
            workflow_id: "id".into(),
            project: "default".into(),
            workflow: name.into(),
            last_run: Some(LastRun {
                status: status.into(),
                runner_type: RunnerType::GithubAction.into(),
                finish_time: Some(timestamp(1_732_450_000_500)),
                duration_seconds: Some(42.5),
            }),
            durations: vec![DurationHistogram {
                status: status.into(),
                runner_type: RunnerType::GithubAction.into(),
                count: 3,
                sum_seconds: 75.5,
                bucket_bounds: vec![10.0, 30.0],
                bucket_counts: vec![1, 2],
                runs_total: 3,
                last_finish_time: Some(timestamp(1_732_450_000_500)),
                branch: String::new(),
                native: None,
            }],
            runs_in_progress: 2,
            create_time: Some(timestamp(1_700_000_000_000)),
            queue: None,
            flaky_runs: 0,
            ..WorkflowMetrics::default()
        }
    }

    /// Everything but the scrape duration, whose value changes every time.
    fn without_scrape_duration(text: &str) -> String {
        text.lines()
            .filter(|l| !l.contains("scrape_duration_seconds"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn renders_chainloop_compatible_series() {
        let text = text(
            "cyberdyne",
            &[workflow("backend-release-production", RunStatus::Success)],
        );
        assert!(
            text.contains("# HELP chainloop_workflow_up Indicate if the last run was successful.")
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
            format!("chainloop_workflow_runs_total{{{labels}}} 3\n"),
            "chainloop_workflow_runs_in_progress{org=\"cyberdyne\",project=\"default\",workflow=\"backend-release-production\"} 2\n".into(),
            "chainloop_workflow_last_run_timestamp_seconds{org=\"cyberdyne\",project=\"default\",status=\"success\",workflow=\"backend-release-production\"} 1732450000.5\n".into(),
            "chainloop_workflow_last_run_duration_seconds{org=\"cyberdyne\",project=\"default\",workflow=\"backend-release-production\"} 42.5\n".into(),
            "# TYPE chainloop_workflow_runs_total counter\n".into(),
            "chainloop_org_workflows{org=\"cyberdyne\"} 1\n".into(),
            "# TYPE chainloop_scrape_duration_seconds gauge\n".into(),
        ] {
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("# EOF"));
        assert!(!text.contains("_created"));
    }

    #[test]
    fn failed_last_run_is_zero_and_a_fresh_workflow_has_only_its_gauges() {
        let text = text("o", &[workflow("w", RunStatus::Error)]);
        assert!(text.contains("chainloop_workflow_up{org=\"o\",project=\"default\",runner=\"GITHUB_ACTION\",workflow=\"w\"} 0\n"));
        let fresh = WorkflowMetrics {
            workflow: "never-finished".into(),
            project: "default".into(),
            runs_in_progress: 1,
            ..WorkflowMetrics::default()
        };
        let text = super::render(&options(Format::Text), "o", &[fresh], Instant::now());
        assert!(!text.contains("chainloop_workflow_up"), "{text}");
        assert!(!text.contains("chainloop_workflow_run_duration"), "{text}");
        assert!(text.contains("chainloop_workflow_runs_in_progress{org=\"o\",project=\"default\",workflow=\"never-finished\"} 1\n"));
        assert!(text.contains("chainloop_org_workflows{org=\"o\"} 1\n"));
    }

    pub(super) fn assorted() -> Vec<WorkflowMetrics> {
        let mut several = vec![
            workflow("a", RunStatus::Success),
            workflow("b \"quoted\" \\ back\nslash", RunStatus::Error),
            WorkflowMetrics {
                workflow: "never-finished".into(),
                project: "p".into(),
                ..WorkflowMetrics::default()
            },
        ];
        let mut two = workflow("two-outcomes", RunStatus::Canceled);
        two.durations.push(DurationHistogram {
            status: RunStatus::Error.into(),
            runner_type: RunnerType::Unspecified.into(),
            count: 1,
            sum_seconds: 0.25,
            bucket_bounds: vec![0.5, 2.5, 1e9],
            bucket_counts: vec![1, 1, 1],
            runs_total: 1,
            last_finish_time: Some(timestamp(1_732_450_001_000)),
            branch: String::new(),
            native: None,
        });
        // Expired runs: counted, no histogram.
        two.durations.push(DurationHistogram {
            status: RunStatus::Expired.into(),
            runner_type: RunnerType::Unspecified.into(),
            runs_total: 4,
            last_finish_time: Some(timestamp(1_732_450_002_000)),
            ..DurationHistogram::default()
        });
        // Queue times, for a workflow whose reporter said when runs queued.
        two.queue = Some(QueueHistogram {
            count: 3,
            sum_seconds: 95.5,
            bucket_bounds: vec![1.0, 30.0, 3600.0],
            bucket_counts: vec![0, 2, 3],
        });
        two.flaky_runs = 2;
        // The newest run of the +Inf bucket of the error histogram, and of the
        // queue's first; exemplars are OpenMetrics' only.
        two.exemplars = vec![
            HistogramExemplars {
                status: RunStatus::Error.into(),
                exemplars: vec![Exemplar {
                    bucket: 3,
                    run_id: "0193-error".into(),
                    trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                    value: 2e9,
                    time: Some(timestamp(1_732_450_001_000)),
                }],
                ..HistogramExemplars::default()
            },
            HistogramExemplars {
                queue: true,
                exemplars: vec![Exemplar {
                    bucket: 0,
                    run_id: "0193-queued".into(),
                    value: 0.5,
                    ..Exemplar::default()
                }],
                ..HistogramExemplars::default()
            },
        ];
        two.runs_by_attempt = vec![3, 0, 1, 2];
        two.jobs_queued = 3;
        two.runs_queued = 2;
        // Jobs: one with two outcomes and queue times, one whose jobs were all
        // skipped (counted, no duration), one with a name to escape.
        let job_outcome = |status: RunStatus, count: u64| DurationHistogram {
            status: status.into(),
            count,
            sum_seconds: 12.5 * count as f64,
            bucket_bounds: vec![10.0, 30.0],
            bucket_counts: vec![0, count],
            runs_total: count + 1,
            last_finish_time: Some(timestamp(1_732_450_003_000)),
            ..DurationHistogram::default()
        };
        two.jobs = vec![
            JobMetrics {
                name: "build \"x86\"".into(),
                last_status: RunStatus::Error.into(),
                last_finish_time: Some(timestamp(1_732_450_003_000)),
                durations: vec![
                    job_outcome(RunStatus::Error, 1),
                    job_outcome(RunStatus::Success, 4),
                ],
                queue: Some(QueueHistogram {
                    count: 5,
                    sum_seconds: 40.0,
                    bucket_bounds: vec![1.0, 60.0],
                    bucket_counts: vec![1, 5],
                }),
            },
            JobMetrics {
                name: "lint".into(),
                last_status: RunStatus::Canceled.into(),
                last_finish_time: Some(timestamp(1_732_450_003_000)),
                durations: vec![job_outcome(RunStatus::Canceled, 0)],
                queue: None,
            },
        ];
        several.push(two);
        // Runs counted with branch labels (and some from before, without).
        let mut branched = workflow("branched", RunStatus::Success);
        branched.branch_runs = vec![
            BranchRun {
                branch: "main".into(),
                status: RunStatus::Error.into(),
                runner_type: RunnerType::GithubAction.into(),
                finish_time: Some(timestamp(1_732_450_004_000)),
            },
            BranchRun {
                branch: "other \"x\"".into(),
                status: RunStatus::Success.into(),
                runner_type: RunnerType::GithubAction.into(),
                finish_time: Some(timestamp(1_732_450_005_000)),
            },
        ];
        let mut on_main = branched.durations[0].clone();
        on_main.branch = "main".into();
        branched.durations.push(on_main);
        several.push(branched);
        // Jobs waiting before any completed.
        several.push(WorkflowMetrics {
            workflow: "queued-only".into(),
            project: "p".into(),
            jobs_queued: 1,
            runs_queued: 1,
            ..WorkflowMetrics::default()
        });
        several
    }

    #[test]
    fn the_direct_writer_matches_the_prometheus_crates_encoder_byte_for_byte() {
        let several = assorted();
        for (org, workflows) in [
            ("cyberdyne", &several[..]),
            ("o", &several[..1]),
            ("o", &several[2..3]),
            ("empty", &[][..]),
        ] {
            let reference = reference_text(DEFAULT_NAMESPACE, org, workflows);
            assert_eq!(
                without_scrape_duration(&text(org, workflows)),
                reference,
                "{org}"
            );
        }
        let renamed = Options {
            namespace: "ci".into(),
            ..options(Format::Text)
        };
        let text = render(&renamed, "o", &several, Instant::now());
        assert_eq!(
            without_scrape_duration(&text),
            reference_text("ci", "o", &several)
        );
        assert!(text.contains("# TYPE ci_scrape_duration_seconds gauge"));
    }

    #[test]
    fn chunks_join_to_the_whole_exposition_and_stop_when_the_receiver_is_gone() {
        let several = assorted();
        for format in [Format::Text, Format::OpenMetrics] {
            let whole = families(&options(format), "o", &several);
            let mut chunks = Vec::new();
            render_chunked(&options(format), "o", &several, &[], 1, |c| {
                chunks.push(c);
                Ok(())
            });
            // Cut between workflows, so more chunks than families, each of
            // whole lines.
            assert!(chunks.len() > 8, "{} chunks", chunks.len());
            assert!(chunks.iter().all(|c| c.ends_with(b"\n")), "{chunks:?}");
            assert_eq!(String::from_utf8(chunks.concat()).ok(), Some(whole.clone()));
            // The whole exposition is those families and the tail.
            let rendered = render(&options(format), "o", &several, Instant::now());
            let tail = rendered
                .strip_prefix(whole.as_str())
                .expect("families first");
            assert!(
                tail.starts_with("# HELP chainloop_scrape_duration_seconds "),
                "{tail}"
            );
            assert_eq!(
                tail.ends_with("# EOF\n"),
                format == Format::OpenMetrics,
                "{tail}"
            );

            let mut handed = 0;
            render_chunked(&options(format), "o", &several, &[], 1, |_| {
                handed += 1;
                if handed == 2 { Err(Gone) } else { Ok(()) }
            });
            assert_eq!(handed, 2, "nothing is written after the receiver is gone");
        }
    }

    #[test]
    fn openmetrics_names_counters_without_total_ends_with_eof_and_adds_created_on_request() {
        let several = assorted();
        let om = render(&options(Format::OpenMetrics), "o", &several, Instant::now());
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(
            om.contains("# TYPE chainloop_workflow_runs counter\n"),
            "{om}"
        );
        assert!(
            om.contains("chainloop_workflow_runs_total{org=\"o\","),
            "{om}"
        );
        assert!(om.contains("le=\"10.0\"}"), "{om}");
        assert!(om.contains("status=\"error\",workflow=\"two-outcomes\",le=\"+Inf\"} 1 # {run_id=\"0193-error\",trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 2000000000 1732450001\n"), "{om}");
        assert!(om.contains("chainloop_workflow_run_queue_seconds_bucket{org=\"o\",project=\"default\",workflow=\"two-outcomes\",le=\"1.0\"} 0 # {run_id=\"0193-queued\"} 0.5\n"), "{om}");
        assert_eq!(om.matches(" # {").count(), 2, "{om}");
        assert!(om.contains("le=\"1000000000.0\"}"), "{om}");
        assert!(!om.contains("_created"), "{om}");
        let with_created = Options {
            created_series: true,
            ..options(Format::OpenMetrics)
        };
        let om = render(&with_created, "o", &several, Instant::now());
        assert!(om.contains("chainloop_workflow_runs_created{org=\"o\",project=\"default\",runner=\"GITHUB_ACTION\",status=\"success\",workflow=\"a\"} 1700000000\n"), "{om}");
        assert!(
            om.contains("chainloop_workflow_run_duration_seconds_created{"),
            "{om}"
        );
        // Text never gets them.
        let text = render(
            &Options {
                format: Format::Text,
                ..with_created
            },
            "o",
            &several,
            Instant::now(),
        );
        assert!(!text.contains("_created"));
    }

    #[test]
    fn negotiation_follows_prometheus() {
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        for text in [
            None,
            Some("*/*"),
            Some("text/plain"),
            Some("text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5"),
            Some("application/openmetrics-text;version=2.0.0"),
            Some("application/openmetrics-text;q=0"),
            Some("application/json"),
        ] {
            assert_eq!(Format::negotiate(text), Format::Text, "{text:?}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let name = "say \"hi\"\\\nbye";
        let text = text("o", &[workflow(name, RunStatus::Success)]);
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

/// Property tests: the writer over arbitrary names.
mod properties {
    use super::rendering::workflow;
    use super::*;
    use proptest::prelude::*;
    use runplane_api::workflowrun::v1::RunStatus;

    fn without_scrape_duration(text: &str) -> String {
        text.lines()
            .filter(|l| !l.contains("scrape_duration_seconds"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Whatever the names (quotes, backslashes, new lines, any unicode),
        /// the output is what the prometheus crate's own encoder writes.
        #[test]
        fn any_names_are_written_as_the_reference_encoder_writes_them(
            names in proptest::collection::vec(("(\\PC|[\"\\\\\n])*", "(\\PC|[\"\\\\\n])*"), 0..4),
            failed in any::<bool>(),
        ) {
            let status = if failed { RunStatus::Error } else { RunStatus::Success };
            let workflows: Vec<WorkflowMetrics> = names
                .iter()
                .map(|(project, name)| WorkflowMetrics {
                    project: project.clone(),
                    ..workflow(name, status)
                })
                .collect();
            let options = Options {
                namespace: DEFAULT_NAMESPACE.into(),
                format: Format::Text,
                created_series: false,
                protobuf_histograms: Default::default(),
                cardinality: Default::default(),
            };
            let text = render(&options, "cyberdyne", &workflows, Instant::now());
            prop_assert_eq!(
                without_scrape_duration(&text),
                reference_text(DEFAULT_NAMESPACE, "cyberdyne", &workflows)
            );
        }

        /// In protobuf, whatever the names, each label value is the name as
        /// it was (the text formats' escaping undone exactly).
        #[test]
        fn any_names_reach_protobuf_as_they_are(
            names in proptest::collection::vec(("(\\PC|[\"\\\\\n])*", "(\\PC|[\"\\\\\n])*"), 1..4),
        ) {
            use prost::Message as _;
            let workflows: Vec<WorkflowMetrics> = names
                .iter()
                .map(|(project, name)| WorkflowMetrics {
                    project: project.clone(),
                    ..workflow(name, RunStatus::Success)
                })
                .collect();
            let options = Options {
                namespace: DEFAULT_NAMESPACE.into(),
                format: Format::Protobuf,
                created_series: false,
                protobuf_histograms: Default::default(),
                cardinality: Default::default(),
            };
            let bytes = crate::exposition::families(&options, "cyberdyne", &workflows);
            let mut rest = bytes.as_slice();
            let up = runplane_api::prometheus_client::MetricFamily::decode_length_delimited(&mut rest)
                .expect("workflow_up first");
            let sent: Vec<(String, String)> = up
                .metric
                .iter()
                .map(|m| {
                    let value = |name: &str| {
                        m.label.iter().find(|l| l.name() == name).map(|l| l.value().to_owned())
                    };
                    (value("project").unwrap_or_default(), value("workflow").unwrap_or_default())
                })
                .collect();
            prop_assert_eq!(sent, names);
        }
    }
}

/// Cardinality control: the budget's count of series is what is written,
/// dropped labels merge series, disabled families are left out.
mod cardinality_control {
    use super::rendering::workflow;
    use super::*;
    use crate::exposition::cardinality::{Cardinality, Counting, FAMILIES, series_of};
    use runplane_api::time::timestamp;
    use runplane_api::workflowrun::v1::{
        DurationHistogram, JobMetrics, QueueHistogram, RunStatus, RunnerType,
    };

    pub(super) fn options(format: Format, created: bool, cardinality: Cardinality) -> Options {
        Options {
            namespace: DEFAULT_NAMESPACE.into(),
            format,
            created_series: created,
            protobuf_histograms: Default::default(),
            cardinality: std::sync::Arc::new(cardinality),
        }
    }

    /// The sample lines of one workflow's exposition, but the organization's.
    fn sample_lines(options: &Options, w: &WorkflowMetrics) -> usize {
        let text = render(options, "o", std::slice::from_ref(w), Instant::now());
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("chainloop_org_"))
            .filter(|l| !l.starts_with("chainloop_scrape_duration"))
            .count()
    }

    /// A workflow as the default settings count one: `outcomes` (success,
    /// then error), a queue histogram if `queued`, and `jobs` jobs with one
    /// outcome and queue times each; default bucket sets.
    pub(super) fn typical(outcomes: usize, queued: bool, jobs: usize) -> WorkflowMetrics {
        let buckets = |n: usize| (1..=n).map(|i| i as f64 * 10.0).collect::<Vec<_>>();
        let outcome = |status: RunStatus| DurationHistogram {
            status: status.into(),
            runner_type: RunnerType::GithubAction.into(),
            count: 1,
            sum_seconds: 5.0,
            bucket_bounds: buckets(11),
            bucket_counts: vec![1; 11],
            runs_total: 1,
            last_finish_time: Some(timestamp(1_000)),
            branch: String::new(),
            native: None,
        };
        let queue = QueueHistogram {
            count: 1,
            sum_seconds: 1.0,
            bucket_bounds: buckets(10),
            bucket_counts: vec![1; 10],
        };
        let mut w = workflow("ci", RunStatus::Success);
        w.durations = [RunStatus::Success, RunStatus::Error][..outcomes]
            .iter()
            .map(|s| outcome(*s))
            .collect();
        w.runs_by_attempt = vec![2];
        w.queue = queued.then(|| queue.clone());
        w.jobs = (0..jobs)
            .map(|i| JobMetrics {
                name: format!("job-{i}"),
                last_status: RunStatus::Success.into(),
                last_finish_time: Some(timestamp(1_000)),
                durations: vec![DurationHistogram {
                    runner_type: 0,
                    ..outcome(RunStatus::Success)
                }],
                queue: Some(queue.clone()),
            })
            .collect();
        w
    }

    #[test]
    fn the_budget_counts_exactly_the_series_written() {
        let mut workflows = super::rendering_assorted();
        workflows.push(typical(2, true, 3));
        for format in [Format::Text, Format::OpenMetrics] {
            for created in [false, true] {
                let mut settings = vec![Cardinality::default()];
                for family in FAMILIES {
                    settings.push(Cardinality {
                        disabled: [family.to_string()].into(),
                        ..Cardinality::default()
                    });
                }
                for c in settings {
                    let options = options(format, created, c.clone());
                    for w in &workflows {
                        let expected = series_of(
                            &c,
                            Counting::lines(created && format == Format::OpenMetrics),
                            w,
                        );
                        assert_eq!(
                            sample_lines(&options, w),
                            expected,
                            "{format:?}, created {created}, {:?}, {}",
                            c.disabled,
                            w.workflow
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn past_the_budget_whole_workflows_are_left_out_and_counted() {
        let workflows = [
            typical(1, false, 0),
            typical(2, true, 1),
            typical(1, false, 0),
        ];
        let each: Vec<usize> = workflows
            .iter()
            .map(|w| series_of(&Cardinality::default(), Counting::lines(false), w))
            .collect();
        let c = Cardinality {
            max_series: each[0] + each[1] - 1,
            ..Cardinality::default()
        };
        let text = render(
            &options(Format::Text, false, c),
            "o",
            &workflows,
            Instant::now(),
        );
        // The second does not fit: it and every later one are left out.
        let dropped = each[1] + each[2];
        assert!(
            text.contains(&format!(
                "chainloop_org_series_dropped{{org=\"o\"}} {dropped}\n"
            )),
            "{text}"
        );
        assert!(
            text.contains("chainloop_org_workflows{org=\"o\"} 3\n"),
            "{text}"
        );
        assert_eq!(
            text.matches("chainloop_workflow_runs_in_progress{").count(),
            1,
            "{text}"
        );
        crate::exposition::tests::assert_unique_series(&text);
    }

    #[test]
    fn dropped_labels_merge_series_into_valid_expositions() {
        let mut a = typical(2, true, 1);
        a.durations[1].runner_type = RunnerType::JenkinsJob.into();
        a.durations[1].status = RunStatus::Success.into();
        let mut b = typical(1, true, 1);
        b.project = "other".into();
        let workflows = [a, b];
        for dropped in [&["runner"][..], &["project"], &["runner", "project"]] {
            let dropped: Vec<String> = dropped.iter().map(|d| d.to_string()).collect();
            let c = Cardinality::new(&[], &dropped, 0).expect("settings");
            let text = render(
                &options(Format::Text, false, c),
                "o",
                &workflows,
                Instant::now(),
            );
            for label in &dropped {
                assert!(
                    !text.contains(&format!("{label}=\"")),
                    "{dropped:?}:\n{text}"
                );
            }
            crate::exposition::tests::assert_unique_series(&text);
        }
        // Both of one name's runs are counted in the merged series.
        let c = Cardinality::new(&[], &["runner".into(), "project".into()], 0).expect("settings");
        let text = render(
            &options(Format::Text, false, c),
            "o",
            &workflows,
            Instant::now(),
        );
        assert!(
            text.contains(
                "chainloop_workflow_runs_total{org=\"o\",status=\"success\",workflow=\"ci\"} 3\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_series_per_workflow_are_those_the_readme_states() {
        let default = Cardinality::default();
        let count = |c: &Cardinality, w: &WorkflowMetrics| series_of(c, Counting::lines(false), w);
        // README, "Cardinality": one outcome, two, a queue, each job.
        assert_eq!(count(&default, &typical(1, false, 0)), 20);
        assert_eq!(count(&default, &typical(2, false, 0)), 36);
        assert_eq!(count(&default, &typical(1, true, 0)), 33);
        let with_jobs =
            count(&default, &typical(1, true, 2)) - count(&default, &typical(1, true, 0));
        assert_eq!(with_jobs, 2 + 2 * 29);
        let no_jobs = Cardinality::new(
            &FAMILIES
                .iter()
                .filter(|f| f.contains("job"))
                .map(|f| f.to_string())
                .collect::<Vec<_>>(),
            &[],
            0,
        )
        .expect("settings");
        assert_eq!(
            count(&no_jobs, &typical(1, true, 2)),
            33 + 1,
            "runs_queued stays"
        );
    }
}

/// The protobuf format: Prometheus' own messages, decoded back.
mod protobuf {
    use prost::Message as _;
    use runplane_api::prometheus_client::{BucketSpan, MetricFamily, MetricType};
    use runplane_api::workflowrun::v1::{DurationHistogram, NativeBuckets, RunnerType};

    use super::rendering::{assorted, options, workflow};
    use super::*;

    /// Every delimited message of `bytes`, in order.
    fn decode(bytes: &[u8]) -> Vec<MetricFamily> {
        let mut rest = bytes;
        let mut families = Vec::new();
        while !rest.is_empty() {
            families.push(MetricFamily::decode_length_delimited(&mut rest).expect("a message"));
        }
        families
    }

    /// The families of `families` in the order they first appear, a family
    /// continued over several messages joined into one.
    fn joined(families: Vec<MetricFamily>) -> Vec<MetricFamily> {
        let mut whole: Vec<MetricFamily> = Vec::new();
        for family in families {
            match whole.iter_mut().find(|seen| seen.name == family.name) {
                Some(seen) => seen.metric.extend(family.metric),
                None => whole.push(family),
            }
        }
        whole
    }

    #[test]
    fn prometheus_asking_for_native_histograms_gets_protobuf() {
        // What Prometheus sends with `--enable-feature=native-histograms`.
        let native = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(native)), Format::Protobuf);
        for other in [
            // The text form of the messages, and messages not delimited.
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily",
            "application/vnd.google.protobuf;proto=other.Message;encoding=delimited",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.2,text/plain;q=0.5",
            // A quality above 1 is no quality.
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=2,text/plain;q=0.5",
        ] {
            assert_ne!(Format::negotiate(Some(other)), Format::Protobuf, "{other}");
        }
        assert!(
            Format::Protobuf
                .content_type()
                .contains("encoding=delimited")
        );
    }

    #[test]
    fn the_messages_hold_the_text_formats_samples_with_raw_values() {
        let several = assorted();
        let text = String::from_utf8(crate::exposition::families(
            &options(Format::Text),
            "o",
            &several,
        ))
        .expect("text");
        let families = joined(decode(&crate::exposition::families(
            &options(Format::Protobuf),
            "o",
            &several,
        )));
        // The same families in the same order, a histogram as its three
        // classic families (no native buckets are kept here).
        let expected: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .flat_map(|l| match l.strip_suffix(" histogram") {
                Some(name) => ["bucket", "sum", "count"]
                    .map(|s| format!("{name}_{s} counter"))
                    .to_vec(),
                None => vec![l.to_owned()],
            })
            .collect();
        let types: Vec<String> = families
            .iter()
            .map(|f| {
                let kind = match f.r#type() {
                    MetricType::Counter => "counter",
                    MetricType::Gauge => "gauge",
                    other => panic!("unexpected {other:?}"),
                };
                format!("{} {kind}", f.name())
            })
            .collect();
        assert_eq!(types, expected);
        // Every sample of the text, and no other: the label values escaped
        // as the text format does are the raw ones.
        let samples =
            |lines: Vec<(String, f64)>| -> BTreeMap<String, f64> { lines.into_iter().collect() };
        let in_text = samples(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.rsplit_once(' '))
                .map(|(series, value)| (series.to_owned(), value.parse().expect("a number")))
                .collect(),
        );
        let in_protobuf = samples(
            families
                .iter()
                .flat_map(|f| f.metric.iter().map(move |m| (f.name(), m)))
                .map(|(name, m)| {
                    let labels: Vec<String> = m
                        .label
                        .iter()
                        .map(|l| {
                            format!("{}=\"{}\"", l.name(), Format::Text.label_value(l.value()))
                        })
                        .collect();
                    let value = m
                        .counter
                        .as_ref()
                        .map(|c| c.value())
                        .or(m.gauge.as_ref().map(|g| g.value()))
                        .expect("a counter or gauge");
                    (format!("{name}{{{}}}", labels.join(",")), value)
                })
                .collect(),
        );
        assert_eq!(in_protobuf, in_text);
        assert!(families.iter().all(|f| !f.help().is_empty()));
        let raw = "b \"quoted\" \\ back\nslash";
        assert!(
            families[0]
                .metric
                .iter()
                .any(|m| m.label.iter().any(|l| l.value() == raw)),
            "{:?}",
            families[0]
        );
    }

    #[test]
    fn native_buckets_go_as_spans_and_deltas_beside_the_classic_ones() {
        let mut w = workflow("w", RunStatus::Success);
        w.durations[0].native = Some(NativeBuckets {
            schema: 3,
            zero_count: 1,
            indexes: vec![-2, 0, 1, 2, 5, 9, 10],
            counts: vec![1, 1, 2, 1, 4, 1, 1],
        });
        let families = decode(&families_of(&w));
        let durations = families
            .iter()
            .find(|f| f.name() == "chainloop_workflow_run_duration_seconds")
            .expect("durations");
        let histogram = durations.metric[0].histogram.as_ref().expect("a histogram");
        assert_eq!(histogram.schema, Some(3));
        assert_eq!(histogram.zero_count, Some(1));
        assert!(histogram.zero_threshold() > 0.0);
        let span = |offset, length| BucketSpan {
            offset: Some(offset),
            length: Some(length),
        };
        assert_eq!(
            histogram.positive_span,
            [span(-2, 1), span(1, 3), span(2, 1), span(3, 2)]
        );
        assert_eq!(histogram.positive_delta, [1, 0, 1, -1, 3, -3, 0]);
        assert_eq!(
            (histogram.sample_count(), histogram.sample_sum()),
            (3, 75.5)
        );
        assert!(histogram.bucket.is_empty(), "the classic buckets go apart");
        let classic = families
            .iter()
            .find(|f| f.name() == "chainloop_workflow_run_duration_seconds_bucket")
            .expect("the classic buckets");
        let le: Vec<&str> = classic
            .metric
            .iter()
            .filter_map(|m| m.label.iter().find(|l| l.name() == "le"))
            .map(|l| l.value())
            .collect();
        assert_eq!(le, ["10", "30", "+Inf"], "as the text format writes them");
    }

    #[test]
    fn native_only_sends_one_standard_histogram_message() {
        let mut w = workflow("w", RunStatus::Success);
        w.durations[0].native = Some(NativeBuckets {
            schema: 3,
            zero_count: 0,
            indexes: vec![4, 5],
            counts: vec![2, 1],
        });
        let options = Options {
            protobuf_histograms: ProtobufHistograms::Native,
            ..options(Format::Protobuf)
        };
        let families = decode(&crate::exposition::families(
            &options,
            "o",
            std::slice::from_ref(&w),
        ));
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        assert!(
            !names.iter().any(|n| n.ends_with("_bucket")),
            "no classic families: {names:?}"
        );
        let durations = families
            .iter()
            .find(|f| f.name() == "chainloop_workflow_run_duration_seconds")
            .expect("durations");
        assert_eq!(durations.r#type(), MetricType::Histogram);
        let histogram = durations.metric[0].histogram.as_ref().expect("a histogram");
        let classic: Vec<(f64, u64)> = histogram
            .bucket
            .iter()
            .map(|b| (b.upper_bound(), b.cumulative_count()))
            .collect();
        assert_eq!(
            classic,
            [(10.0, 1), (30.0, 2)],
            "the classic buckets inline"
        );
        assert_eq!(histogram.positive_delta, [2, -1]);
        assert_eq!(histogram.sample_count(), 3);
    }

    /// The series Prometheus keeps of a protobuf exposition: one per metric,
    /// but a histogram without native buckets, kept as its classic series.
    fn kept_series(families: &[MetricFamily]) -> usize {
        families
            .iter()
            .flat_map(|f| &f.metric)
            .map(|m| match &m.histogram {
                Some(h) if h.schema.is_some() => 1,
                Some(h) => h.bucket.len() + 3,
                None => 1,
            })
            .sum()
    }

    fn with_native(mut w: WorkflowMetrics, indexes: Vec<i32>, counts: Vec<u64>) -> WorkflowMetrics {
        w.durations[0].native = Some(NativeBuckets {
            schema: 3,
            zero_count: 0,
            indexes,
            counts,
        });
        w
    }

    #[test]
    fn the_budget_counts_series_as_prometheus_keeps_them_from_protobuf() {
        use crate::exposition::cardinality::{Cardinality, Counting, Histograms, series_of};
        // One workflow whose histogram has native buckets, one whose has not
        // (not backfilled yet).
        let workflows = [
            with_native(workflow("kept", RunStatus::Success), vec![5], vec![3]),
            workflow("older", RunStatus::Success),
        ];
        for (mode, histograms) in [
            (ProtobufHistograms::Both, Histograms::ClassicAndNative),
            (ProtobufHistograms::Native, Histograms::Native),
        ] {
            let options = Options {
                protobuf_histograms: mode,
                ..options(Format::Protobuf)
            };
            let families = decode(&crate::exposition::families(&options, "o", &workflows));
            let counting = Counting {
                created: false,
                histograms,
            };
            let counted: usize = workflows
                .iter()
                .map(|w| series_of(&Cardinality::default(), counting, w))
                .sum();
            // The organization's own two gauges are not a workflow's.
            assert_eq!(kept_series(&families), counted + 2, "{mode:?}");
        }
    }

    #[test]
    fn native_only_sends_histograms_without_native_buckets_in_a_message_of_their_own() {
        let workflows = [
            workflow("older", RunStatus::Success),
            with_native(workflow("kept", RunStatus::Success), vec![5], vec![3]),
        ];
        let options = Options {
            protobuf_histograms: ProtobufHistograms::Native,
            ..options(Format::Protobuf)
        };
        let families = decode(&crate::exposition::families(&options, "o", &workflows));
        let durations: Vec<&MetricFamily> = families
            .iter()
            .filter(|f| f.name() == "chainloop_workflow_run_duration_seconds")
            .collect();
        assert_eq!(durations.len(), 2, "native first, then classic");
        let native = |f: &MetricFamily| {
            f.metric
                .iter()
                .map(|m| m.histogram.as_ref().is_some_and(|h| h.schema.is_some()))
                .collect::<Vec<_>>()
        };
        assert_eq!(native(durations[0]), [true]);
        assert_eq!(native(durations[1]), [false]);
        let classic = durations[1].metric[0]
            .histogram
            .as_ref()
            .expect("histogram");
        assert_eq!(classic.bucket.len(), 2, "its classic buckets");
    }

    #[test]
    fn merged_outcomes_add_their_native_buckets() {
        use crate::exposition::cardinality::Cardinality;
        // A workflow run on two runners: `drop_labels: [runner]` merges them.
        let on_github = with_native(workflow("w", RunStatus::Success), vec![5, 9], vec![2, 1]);
        let mut on_jenkins = with_native(workflow("w", RunStatus::Success), vec![2, 9], vec![1, 4])
            .durations
            .remove(0);
        on_jenkins.runner_type = RunnerType::JenkinsJob.into();
        let merged_of = |jenkins: DurationHistogram| {
            let mut both = on_github.clone();
            both.durations.push(jenkins);
            let options = Options {
                cardinality: std::sync::Arc::new(Cardinality {
                    drop_runner: true,
                    ..Cardinality::default()
                }),
                ..options(Format::Protobuf)
            };
            let families = decode(&crate::exposition::families(&options, "o", &[both]));
            let durations = families
                .iter()
                .find(|f| f.name() == "chainloop_workflow_run_duration_seconds")
                .cloned();
            durations
                .and_then(|f| f.metric.into_iter().next())
                .and_then(|m| m.histogram)
        };
        let merged = merged_of(on_jenkins.clone()).expect("a native histogram");
        assert_eq!(merged.sample_count(), 6);
        let span = |offset, length| BucketSpan {
            offset: Some(offset),
            length: Some(length),
        };
        assert_eq!(merged.positive_span, [span(2, 1), span(2, 1), span(3, 1)]);
        assert_eq!(merged.positive_delta, [1, 1, 3], "counts 1, 2, 5");
        // One side not backfilled: the merged histogram goes classic only.
        on_jenkins.native = None;
        assert_eq!(merged_of(on_jenkins), None, "no native family at all");
    }

    fn families_of(w: &WorkflowMetrics) -> Vec<u8> {
        crate::exposition::families(&options(Format::Protobuf), "o", std::slice::from_ref(w))
    }

    #[test]
    fn chunks_hold_whole_messages_that_join_to_the_whole_exposition() {
        let several = assorted();
        let whole = joined(decode(&crate::exposition::families(
            &options(Format::Protobuf),
            "o",
            &several,
        )));
        let mut chunks = Vec::new();
        render_chunked(&options(Format::Protobuf), "o", &several, &[], 1, |c| {
            chunks.push(c);
            Ok(())
        });
        assert!(chunks.len() > 8, "{} chunks", chunks.len());
        // Each chunk decodes on its own: no message is cut.
        let mut messages = Vec::new();
        for chunk in &chunks {
            messages.extend(decode(chunk));
        }
        assert!(
            messages.len() > whole.len(),
            "families continue across chunks"
        );
        assert_eq!(joined(messages), whole);
    }
}

mod environments {
    use super::cardinality_control::options;
    use super::*;
    use crate::exposition::cardinality::{Cardinality, Counting, FAMILIES, environment_series};
    use runplane_api::time::timestamp;
    use runplane_api::workflowrun::v1::{DurationHistogram, EnvironmentMetrics};

    fn histogram(bounds: &[f64], counts: &[u64], sum: f64) -> DurationHistogram {
        DurationHistogram {
            bucket_bounds: bounds.to_vec(),
            bucket_counts: counts.to_vec(),
            count: *counts.last().unwrap_or(&0),
            sum_seconds: sum,
            ..DurationHistogram::default()
        }
    }

    /// Production after a deploy, a failure and its hotfix.
    pub(super) fn production(project: &str) -> EnvironmentMetrics {
        EnvironmentMetrics {
            project: project.into(),
            environment: "production".into(),
            create_time: Some(timestamp(1_000)),
            deployments_succeeded: 2,
            deployments_failed: 1,
            change_failures: 1,
            last_success_time: Some(timestamp(30_000)),
            last_failure_time: Some(timestamp(20_000)),
            lead_time: Some(histogram(&[3600.0, 86400.0], &[1, 2], 7200.0)),
            restore_time: Some(histogram(&[3600.0], &[1], 600.0)),
            failing_since: None,
            deployments_without_commit_time: 0,
        }
    }

    fn text(options: &Options, environments: &[EnvironmentMetrics]) -> String {
        String::from_utf8(families_of(options, "o", &[], environments)).expect("utf-8")
    }

    #[test]
    fn an_environment_is_written_as_its_dora_series() {
        let mut staging = production("web");
        staging.environment = "staging".into();
        staging.failing_since = Some(timestamp(40_000));
        staging.deployments_without_commit_time = 3;
        staging.restore_time = None;
        let text = text(
            &options(Format::Text, false, Cardinality::default()),
            &[production("web"), staging],
        );
        for line in [
            "# TYPE chainloop_deployments_total counter",
            r#"chainloop_deployments_total{environment="production",org="o",project="web",status="failure"} 1"#,
            r#"chainloop_deployments_total{environment="production",org="o",project="web",status="success"} 2"#,
            r#"chainloop_deployment_change_failures_total{environment="production",org="o",project="web"} 1"#,
            r#"chainloop_deployment_last_timestamp_seconds{environment="production",org="o",project="web",status="success"} 30"#,
            r#"chainloop_deployment_lead_time_seconds_bucket{environment="production",org="o",project="web",le="3600"} 1"#,
            r#"chainloop_deployment_lead_time_seconds_bucket{environment="production",org="o",project="web",le="+Inf"} 2"#,
            r#"chainloop_deployment_lead_time_seconds_sum{environment="production",org="o",project="web"} 7200"#,
            r#"chainloop_deployment_time_to_restore_seconds_count{environment="production",org="o",project="web"} 1"#,
            r#"chainloop_deployments_without_commit_time_total{environment="staging",org="o",project="web"} 3"#,
            r#"chainloop_environment_up{environment="production",org="o",project="web"} 1"#,
            r#"chainloop_environment_up{environment="staging",org="o",project="web"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(!text.contains(r#"time_to_restore_seconds_count{environment="staging""#));
        assert_unique_series(&text);
    }

    #[test]
    fn the_budget_counts_exactly_the_environment_series_written() {
        let mut fresh = production("api");
        fresh.lead_time = None;
        fresh.restore_time = None;
        fresh.last_failure_time = None;
        fresh.deployments_without_commit_time = 1;
        for format in [Format::Text, Format::OpenMetrics] {
            for created in [false, true] {
                let mut settings = vec![Cardinality::default()];
                for family in FAMILIES {
                    settings.push(Cardinality {
                        disabled: [family.to_string()].into(),
                        ..Cardinality::default()
                    });
                }
                for c in settings {
                    let options = options(format, created, c.clone());
                    for e in [production("web"), fresh.clone()] {
                        let text = text(&options, std::slice::from_ref(&e));
                        let lines = text
                            .lines()
                            .filter(|l| !l.starts_with('#') && !l.starts_with("chainloop_org_"))
                            .count();
                        let counting = Counting::lines(created && format == Format::OpenMetrics);
                        assert_eq!(
                            lines,
                            environment_series(&c, counting, std::slice::from_ref(&e)),
                            "{format:?}, created {created}, {:?}\n{text}",
                            c.disabled
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn dropping_the_project_merges_environments_of_one_name() {
        let c = Cardinality {
            drop_project: true,
            ..Cardinality::default()
        };
        let mut failing = production("api");
        failing.failing_since = Some(timestamp(50_000));
        let text = text(
            &options(Format::Text, false, c),
            &[production("web"), failing],
        );
        for line in [
            r#"chainloop_deployments_total{environment="production",org="o",status="success"} 4"#,
            r#"chainloop_deployment_lead_time_seconds_count{environment="production",org="o"} 4"#,
            r#"chainloop_environment_up{environment="production",org="o"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert_unique_series(&text);
    }

    #[test]
    fn environments_past_the_budget_are_left_out_and_counted() {
        let c = Cardinality {
            max_series: 3,
            ..Cardinality::default()
        };
        let none = text(&options(Format::Text, false, c), &[production("web")]);
        assert!(!none.contains("deployments_total{"), "{none}");
        assert!(
            none.contains("chainloop_org_series_dropped{org=\"o\"} 15"),
            "{none}"
        );
        // Room for one of two: the first is kept whole, the second left out.
        let c = Cardinality {
            max_series: 20,
            ..Cardinality::default()
        };
        let one = text(
            &options(Format::Text, false, c),
            &[production("api"), production("web")],
        );
        assert!(one.contains(r#"project="api""#), "{one}");
        assert!(!one.contains(r#"project="web""#), "{one}");
        assert!(
            one.contains("chainloop_org_series_dropped{org=\"o\"} 15"),
            "{one}"
        );
    }
}
