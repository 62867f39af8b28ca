//! runplane's own telemetry: traces across all services into an OTLP receiver
//! started here, the services' own Prometheus metrics, one log event per
//! request, and the CI/CD semantic-convention metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;

use crate::support::{Suite, free_port, promtool_check};

/// A data point's attributes, as text.
type Attributes = BTreeMap<String, String>;
/// Metric names with their data points.
type MetricPoints = Vec<(String, Vec<Attributes>)>;

/// What the receiver got: spans with their service's name, and metric names
/// with their data points' attributes.
#[derive(Default, Clone)]
struct Received {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    metrics: Arc<Mutex<MetricPoints>>,
}

fn text(attributes: &[KeyValue]) -> Attributes {
    attributes
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some((kv.key.clone(), s.clone())),
            Value::IntValue(i) => Some((kv.key.clone(), i.to_string())),
            _ => None,
        })
        .collect()
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().expect("lock");
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .map(|r| text(&r.attributes))
                .and_then(|a| a.get("service.name").cloned())
                .unwrap_or_default();
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        let mut metrics = self.metrics.lock().expect("lock");
        for resource in request.into_inner().resource_metrics {
            for scope in resource.scope_metrics {
                for metric in scope.metrics {
                    let points = match &metric.data {
                        Some(Data::Histogram(h)) => {
                            h.data_points.iter().map(|p| text(&p.attributes)).collect()
                        }
                        Some(Data::Sum(s)) => {
                            s.data_points.iter().map(|p| text(&p.attributes)).collect()
                        }
                        _ => Vec::new(),
                    };
                    metrics.push((metric.name.clone(), points));
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const RUNNER_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const RUNNER_SPAN: &str = "b7ad6b7169203331";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn name_of(span: &Span) -> &str {
    &span.name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_scrape_is_one_trace_across_the_services_and_every_service_measures_itself() {
    let received = Received::default();
    let addr = free_port();
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(received.clone()))
        .add_service(MetricsServiceServer::new(received.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);

    let mut suite = Suite::new("workflow_run_service:\n  otel_cicd_metrics: true\n");
    suite.env = vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            format!("http://{addr}"),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ("OTEL_METRIC_EXPORT_INTERVAL".into(), "300".into()),
        (
            "OTEL_RESOURCE_ATTRIBUTES".into(),
            "deployment.environment=e2e".into(),
        ),
        ("RUNPLANE_LOG_FORMAT".into(), "json".into()),
        // Successful requests are logged one by one at DEBUG.
        (
            "RUNPLANE_LOG".into(),
            "debug,sqlx=warn,h2=warn,hyper=warn,hyper_util=warn,tower=warn,tonic=warn,opentelemetry=warn,opentelemetry_sdk=warn".into(),
        ),
    ];
    suite.up().await;
    suite
        .cli(&["organization", "create", "--name", "cyberdyne"])
        .await
        .ok();
    let token = suite.token("cyberdyne", "ci", &[]).await;

    // A runner in a traced CI job: its StartRun joins the job's trace.
    let traceparent = format!("00-{RUNNER_TRACE_ID}-{RUNNER_SPAN}-01");
    let env = [
        ("RUNPLANE_TOKEN", token.as_str()),
        ("TRACEPARENT", traceparent.as_str()),
    ];
    let run = suite
        .cli_with_env(&["run", "start", "--workflow", "build", "-q"], &env)
        .await
        .ok();
    suite
        .cli_with_env(&["run", "finish", run.trim(), "--status", "error"], &env)
        .await
        .ok();

    // One scrape, sent as part of the caller's trace.
    let auth = format!("Bearer {token}");
    let scrape = suite
        .get_with(
            &suite.metrics_url("cyberdyne"),
            &[
                ("authorization", &auth),
                ("traceparent", &format!("00-{TRACE_ID}-{CALLER_SPAN}-01")),
            ],
        )
        .await;
    assert_eq!(scrape.status, 200, "{}", scrape.body);

    // Spans of the scrape from metrics-service, token-service and workflow-run-service.
    let deadline = Instant::now() + Duration::from_secs(20);
    let trace = loop {
        let spans: Vec<(String, Span)> = received
            .spans
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, s)| hex(&s.trace_id) == TRACE_ID)
            .cloned()
            .collect();
        let services: std::collections::BTreeSet<&str> =
            spans.iter().map(|(s, _)| s.as_str()).collect();
        if [
            "metrics-service",
            "token-service",
            "workflow-run-service",
            "org-service",
        ]
        .iter()
        .all(|s| services.contains(s))
            && spans.iter().any(|(s, span)| {
                s == "workflow-run-service" && name_of(span).ends_with("ListWorkflowMetrics")
            })
        {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans so far: {:?}",
            spans
                .iter()
                .map(|(s, span)| (s, &span.name))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_id: BTreeMap<String, &(String, Span)> = trace
        .iter()
        .map(|entry| (hex(&entry.1.span_id), entry))
        .collect();
    let parent_of = |span: &Span| {
        by_id
            .get(&hex(&span.parent_span_id))
            .map(|(service, s)| (service.as_str(), s.name.as_str()))
    };
    // The HTTP server span is the caller's child.
    let root = trace
        .iter()
        .find(|(service, s)| service == "metrics-service" && s.name.starts_with("GET /prom/"))
        .expect("metrics-service's request span");
    assert_eq!(hex(&root.1.parent_span_id), CALLER_SPAN);
    // Each server span hangs off a client span of its caller.
    for (service, method) in [
        ("token-service", "Authenticate"),
        ("org-service", "GetOrganization"),
        ("workflow-run-service", "ListWorkflowMetrics"),
    ] {
        let server = trace
            .iter()
            .find(|(s, span)| s == service && span.name.ends_with(method))
            .unwrap_or_else(|| panic!("no {service} {method} span"));
        let (caller, client_name) = parent_of(&server.1)
            .unwrap_or_else(|| panic!("{service} {method}: parent not in the trace"));
        assert!(
            client_name.ends_with(method),
            "{service} {method}: parent {caller} {client_name}"
        );
        assert_ne!(caller, service);
    }
    // The runner's StartRun joined the runner's trace.
    let start = received
        .spans
        .lock()
        .expect("lock")
        .iter()
        .find(|(s, span)| s == "workflow-run-service" && span.name.ends_with("StartRun"))
        .map(|(_, span)| span.clone())
        .expect("a StartRun span");
    assert_eq!(hex(&start.trace_id), RUNNER_TRACE_ID);
    // Its parent is the runner's span, or the CLI's own call span under it
    // (the CLI exports too when OTEL_EXPORTER_OTLP_ENDPOINT is set, as here).
    let parent = hex(&start.parent_span_id);
    if parent != RUNNER_SPAN {
        let spans = received.spans.lock().expect("lock");
        let (cli, call) = spans
            .iter()
            .find(|(_, s)| hex(&s.span_id) == parent)
            .expect("StartRun's parent span");
        assert_eq!(cli, "runplane", "{}", call.name);
        assert_eq!(hex(&call.parent_span_id), RUNNER_SPAN);
    }

    // Every service's own metrics, on its own port's /metrics (plain HTTP).
    for (i, service) in ["org-service", "token-service", "workflow-run-service"]
        .iter()
        .enumerate()
    {
        let own = suite
            .get(&format!("http://{}/metrics", suite.addrs[i]), None)
            .await;
        assert_eq!(own.status, 200, "{service}");
        promtool_check(&own.body).unwrap_or_else(|e| panic!("{service}: {e}"));
        for needle in [
            "grpc_server_handled_total{grpc_code=\"OK\"",
            "grpc_server_handling_seconds_bucket{",
            "process_resident_memory_bytes ",
            "runplane_db_pool_connections{state=\"idle\"}",
        ] {
            assert!(
                own.body.contains(needle),
                "{service}: no {needle} in\n{}",
                own.body
            );
        }
    }
    let wrs = suite
        .get(&format!("http://{}/metrics", suite.addrs[2]), None)
        .await
        .body;
    assert!(wrs.contains("grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"StartRun\",grpc_service=\"runplane.workflowrun.v1.WorkflowRunService\"} 1\n"), "{wrs}");
    assert!(wrs.contains("grpc_client_handled_total{grpc_code=\"OK\",grpc_method=\"Authenticate\",grpc_service=\"runplane.token.v1.TokenService\"}"), "{wrs}");
    let metrics_own = suite
        .get(&format!("http://{}/metrics", suite.addrs[3]), None)
        .await
        .body;
    promtool_check(&metrics_own).expect("metrics-service's own metrics");
    for needle in [
        "runplane_http_requests_total{code=\"200\",route=\"/prom/{org}/metrics\"} 1\n",
        "grpc_client_handled_total{grpc_code=\"OK\",grpc_method=\"ListWorkflowMetrics\"",
        "process_cpu_seconds_total ",
    ] {
        assert!(
            metrics_own.contains(needle),
            "no {needle} in\n{metrics_own}"
        );
    }
    assert!(
        !metrics_own.contains("cyberdyne"),
        "no tenant names on the operators' endpoint"
    );

    // One JSON log event per request (at DEBUG when it went well), with
    // method, code, latency, org and trace id.
    let log = suite.log();
    let events: Vec<serde_json::Value> = log
        .lines()
        // `runplane up` prefixes each service's lines with its name.
        .map(|l| l.split_once(" | ").map_or(l, |(_, json)| json))
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &serde_json::Value| e["message"] == "request")
        .collect();
    let start_log = events
        .iter()
        .find(|e| e["method"] == "/runplane.workflowrun.v1.WorkflowRunService/StartRun")
        .unwrap_or_else(|| panic!("no StartRun request event in\n{log}"));
    assert_eq!(start_log["code"], "OK", "{start_log}");
    assert_eq!(start_log["trace_id"], RUNNER_TRACE_ID, "{start_log}");
    assert_eq!(start_log["span"]["org"], "cyberdyne", "{start_log}");
    assert!(start_log["latency_ms"].as_f64().is_some(), "{start_log}");
    let scrape_log = events
        .iter()
        .find(|e| e["route"] == "/prom/{org}/metrics")
        .unwrap_or_else(|| panic!("no scrape request event in\n{log}"));
    assert_eq!(scrape_log["status"], 200, "{scrape_log}");
    assert_eq!(scrape_log["trace_id"], TRACE_ID, "{scrape_log}");
    assert_eq!(scrape_log["span"]["org"], "cyberdyne", "{scrape_log}");

    // CI/CD semantic-convention metrics, pushed over OTLP.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics = received.metrics.lock().expect("lock").clone();
        let find = |name: &str| {
            metrics
                .iter()
                .filter(|(n, _)| n == name)
                .flat_map(|(_, p)| p.clone())
                .collect::<Vec<_>>()
        };
        let duration = find("cicd.pipeline.run.duration");
        let errors = find("cicd.pipeline.run.errors");
        let active = find("cicd.pipeline.run.active");
        if !duration.is_empty() && !errors.is_empty() && !active.is_empty() {
            let point = &duration[0];
            assert_eq!(
                point.get("cicd.pipeline.name").map(String::as_str),
                Some("default/build")
            );
            assert_eq!(
                point.get("cicd.pipeline.result").map(String::as_str),
                Some("failure")
            );
            assert_eq!(
                point.get("runplane.org.name").map(String::as_str),
                Some("cyberdyne")
            );
            assert_eq!(
                errors[0].get("error.type").map(String::as_str),
                Some("failure")
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "CI/CD metrics so far: {:?}",
            metrics.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
