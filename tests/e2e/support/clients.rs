//! How tests talk to the suite: gRPC channels and health checks, HTTP answers,
//! curl as a TLS client that is not runplane's, and the services' own metrics.

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use runplane_api::workflowrun::v1::workflow_run_service_client::WorkflowRunServiceClient;
use tonic::transport::Channel;

use super::checks::without_scrape_duration;
use super::suite::{CliOutput, ClientTls, Suite};

/// An HTTP answer.
pub(crate) struct Scrape {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) www_authenticate: Option<String>,
    pub(crate) retry_after: Option<String>,
    pub(crate) vary: Option<String>,
    pub(crate) body: String,
}

impl Scrape {
    /// The body without `*_scrape_duration_seconds`, the one value that changes
    /// from one scrape to the next when nothing else does.
    pub(crate) fn stable_body(&self) -> String {
        without_scrape_duration(&self.body)
    }
}

/// A connected gRPC channel to `addr`.
pub(crate) async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// Whether `addr` reports SERVING for `service` ("" = the whole server).
pub(crate) async fn grpc_serving(addr: SocketAddr, service: &str) -> bool {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{addr}")) else {
        return false;
    };
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await;
    matches!(answer, Ok(r) if r.get_ref().status() == ServingStatus::Serving)
}

/// `grpc.health.v1` Check of the whole server over TLS, through the same
/// client the services use: its status, or why the call failed.
pub(crate) async fn grpc_health_tls(
    addr: SocketAddr,
    tls: &ClientTls,
) -> Result<tonic_health::pb::health_check_response::ServingStatus, String> {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = runplane_client::channel(&addr.to_string(), &tls.upstream_args())
        .map_err(|e| e.to_string())?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map_err(|status| format!("{status:?}"))?;
    Ok(answer.get_ref().status())
}

/// GET `url` with curl (a TLS client that is not ours), trusting `tls.ca` and
/// presenting its certificate: the status and body, or curl's complaint when
/// no HTTP answer came.
pub(crate) async fn curl(
    url: &str,
    tls: Option<&ClientTls>,
    extra: &[&str],
) -> Result<(u16, String), String> {
    let mut command = tokio::process::Command::new("curl");
    command
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(["--write-out", "\n%{http_code}"]);
    if let Some(tls) = tls {
        command.arg("--cacert").arg(&tls.ca);
        if let Some((cert, key)) = &tls.identity {
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
    }
    let output = command
        .args(extra)
        .arg(url)
        .output()
        .await
        .map_err(|e| format!("cannot run curl: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "curl {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let status = status
        .trim()
        .parse()
        .map_err(|_| format!("no HTTP status from curl: {stdout}"))?;
    Ok((status, body.to_owned()))
}

/// A request carrying a bearer token.
pub(crate) fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    runplane_client::with_bearer(message, token)
}

/// A sample of a service's own `/metrics` (on a gRPC port, or metrics-service's
/// HTTP port), by its name and labels as written (`runplane_requests_in_flight`).
pub(crate) async fn own_metric(addr: SocketAddr, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

/// Waits until the service at `addr` is working on `n` requests: callers
/// hold requests in flight (an upstream frozen with SIGSTOP), then test what
/// happens to them.
pub(crate) async fn wait_in_flight(addr: SocketAddr, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let in_flight = own_metric(addr, "runplane_requests_in_flight").await;
        if in_flight == n as f64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{in_flight} requests in flight, never {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The suite as its clients use it: the CLI, HTTP and gRPC.
impl Suite {
    /// Runs the `runplane` CLI against this suite.
    pub(crate) async fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_with_env(args, &[]).await
    }

    /// Runs the `runplane` CLI with extra environment variables.
    pub(crate) async fn cli_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
        let mut command = self.command("runplane");
        command.args(args).envs(env.iter().copied());
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("join")
            .expect("run runplane");
        CliOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs the `runplane` CLI with its stdout a pipe nobody reads any more
    /// (as in `runplane … | head -1` once head has exited).
    pub(crate) async fn cli_into_closed_pipe(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> CliOutput {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let mut command = self.command("runplane");
        command
            .args(args)
            .envs(env.iter().copied())
            .stdout(writer)
            .stderr(Stdio::piped());
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("join")
            .expect("run runplane");
        CliOutput {
            status: output.status,
            stdout: String::new(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Starts the `runplane` CLI without waiting for it, its output captured.
    pub(crate) fn spawn_cli(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        let mut command = self.command("runplane");
        command
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command.spawn().expect("spawn runplane")
    }

    /// Creates an organization API token and returns its secret.
    pub(crate) async fn token(&self, org: &str, name: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "organization",
            "api-token",
            "create",
            "--org",
            org,
            "--name",
            name,
            "-q",
        ];
        args.extend_from_slice(extra);
        self.cli(&args).await.ok()
    }

    /// Creates organization `org` and returns two of its tokens: Prometheus'
    /// (`metrics:read`) and a CI runner's (`runs:write`).
    pub(crate) async fn org_with_tokens(&self, org: &str) -> (String, String) {
        self.cli(&["organization", "create", "--name", org])
            .await
            .ok();
        let scraper = self
            .token(org, "prometheus", &["--scope", "metrics:read"])
            .await;
        let runner = self.token(org, "ci", &["--scope", "runs:write"]).await;
        (scraper, runner)
    }

    /// GET /prom/{org}/metrics with an optional `Authorization` header value.
    pub(crate) async fn scrape(&self, org: &str, authorization: Option<&str>) -> Scrape {
        self.get(&self.metrics_url(org), authorization).await
    }

    /// GET a URL with an optional `Authorization` header value.
    pub(crate) async fn get(&self, url: &str, authorization: Option<&str>) -> Scrape {
        match authorization {
            Some(value) => self.get_with(url, &[("authorization", value)]).await,
            None => self.get_with(url, &[]).await,
        }
    }

    async fn send_get(&self, url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.http.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("HTTP request")
    }

    /// GET a URL with the given headers.
    pub(crate) async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Scrape {
        let response = self.send_get(url, headers).await;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Scrape {
            status: response.status().as_u16(),
            content_type: header("content-type").unwrap_or_default(),
            www_authenticate: header("www-authenticate"),
            retry_after: header("retry-after"),
            vary: header("vary"),
            body: response.text().await.expect("body"),
        }
    }

    /// GET a URL with the given headers: the `Content-Encoding` and the raw bytes.
    pub(crate) async fn get_raw(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> (Option<String>, Vec<u8>) {
        let response = self.send_get(url, headers).await;
        let encoding = response
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (encoding, response.bytes().await.expect("body").to_vec())
    }

    /// A gRPC client for workflow-run-service.
    pub(crate) async fn workflow_runs(&self) -> WorkflowRunServiceClient<Channel> {
        WorkflowRunServiceClient::new(channel(self.addrs[2]).await)
    }
}
