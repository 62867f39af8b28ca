//! A suite of real processes in a temporary directory: started, stopped,
//! killed and restarted, each with its own ports and data.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::clients::{curl, grpc_health_tls, grpc_serving};

/// The services' binary names, in start order.
pub(crate) const SERVICES: [&str; 5] = [
    "org-service",
    "token-service",
    "workflow-run-service",
    "metrics-service",
    "ingest-service",
];

/// CI variables that would change what `run start` detects.
const CI_VARIABLES: &[&str] = &[
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "TF_BUILD",
    "JENKINS_URL",
    "JENKINS_HOME",
    "CIRCLECI",
    "TEAMCITY_VERSION",
    "DAGGER_SESSION_PORT",
    "CHAINLOOP_DAGGER_CLIENT",
    "GITHUB_WORKFLOW",
    "CI_PIPELINE_NAME",
    "CI_JOB_NAME",
    "JOB_NAME",
    "BUILD_DEFINITIONNAME",
    "CIRCLE_JOB",
    "TEAMCITY_BUILDCONF_NAME",
    "RUNPLANE_OUTPUT",
    "RUNPLANE_TOKEN",
    "RUNPLANE_ADMIN_TOKEN",
    "RUNPLANE_CONFIG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "TRACEPARENT",
    "RUNPLANE_LISTEN_ADDR",
    "RUNPLANE_DATABASE_URL",
];

/// Where `cargo build --workspace --bins` put the binaries: next to `deps/`,
/// where this test binary lives.
pub(crate) fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    for name in SERVICES.iter().chain(&["runplane"]) {
        assert!(
            dir.join(name).is_file(),
            "{} is missing: run `cargo build --workspace --bins` before the end-to-end tests",
            dir.join(name).display()
        );
    }
    dir
}

/// What a CLI invocation printed and how it exited.
#[derive(Debug)]
pub(crate) struct CliOutput {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl CliOutput {
    /// Asserts success and returns stdout, trimmed.
    pub(crate) fn ok(self) -> String {
        assert!(self.status.success(), "CLI failed: {self:#?}");
        self.stdout.trim().to_owned()
    }

    /// Asserts failure and returns stderr.
    pub(crate) fn err(self) -> String {
        assert!(!self.status.success(), "CLI should have failed: {self:#?}");
        self.stderr
    }
}

/// Environment variable naming a PostgreSQL server (`postgres://USER@HOST:PORT`):
/// when set, every suite keeps its data in a database of its own there, created
/// for it and dropped afterwards, instead of SQLite files.
pub(crate) const POSTGRES_ENV: &str = "RUNPLANE_TEST_POSTGRES";

/// Four services on free ports, with their data in a temporary directory (or a
/// fresh PostgreSQL database, see [`POSTGRES_ENV`]).
pub(crate) struct Suite {
    pub(crate) dir: tempfile::TempDir,
    /// The suite's PostgreSQL server and database, in PostgreSQL mode.
    postgres: Option<(String, String)>,
    /// Where each of [`SERVICES`] listens, in that order.
    pub(crate) addrs: [SocketAddr; 5],
    pub(crate) config: PathBuf,
    bin: PathBuf,
    up: Option<Child>,
    services: Vec<(&'static str, Child)>,
    pub(super) http: reqwest::Client,
    /// Extra environment of every process the suite starts.
    pub(crate) env: Vec<(String, String)>,
    /// How the harness reaches the services when they speak TLS.
    pub(crate) tls: Option<ClientTls>,
}

/// The CA a client trusts and the certificate it presents (mutual TLS).
#[derive(Debug, Clone)]
pub(crate) struct ClientTls {
    pub(crate) ca: PathBuf,
    pub(crate) identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTls {
    pub(super) fn upstream_args(&self) -> runplane_client::UpstreamArgs {
        runplane_client::UpstreamArgs {
            upstream_timeout: Duration::from_secs(5),
            tls: runplane_tls::ClientTlsArgs {
                upstream_tls_ca: Some(self.ca.clone()),
                upstream_tls_cert: self.identity.as_ref().map(|(cert, _)| cert.clone()),
                upstream_tls_key: self.identity.as_ref().map(|(_, key)| key.clone()),
            },
        }
    }
}

impl Suite {
    /// A suite (not started yet) whose config enables metrics for cyberdyne and
    /// acme-corp, with `extra` YAML appended.
    pub(crate) fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("runplane.yaml");
        std::fs::write(
            &config,
            format!(
                "prometheus_org_metrics:\n  - org_name: cyberdyne\n  - org_name: acme-corp\n\
                 token_service:\n  org_cache_ttl: 0s\n{extra}"
            ),
        )
        .expect("write config");
        let postgres = std::env::var(POSTGRES_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .map(|server| {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                let server = server.trim_end_matches('/').to_owned();
                let name = format!(
                    "runplane_e2e_{}_{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::SeqCst)
                );
                psql(
                    &format!("{server}/postgres"),
                    &format!("CREATE DATABASE {name}"),
                );
                (server, name)
            });
        Suite {
            postgres,
            addrs: free_ports(),
            config,
            dir,
            bin: bin_dir(),
            up: None,
            services: Vec::new(),
            env: Vec::new(),
            tls: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("http client"),
        }
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The suite's PostgreSQL database URL, in PostgreSQL mode.
    pub(crate) fn database_url(&self) -> Option<String> {
        self.postgres
            .as_ref()
            .map(|(server, name)| format!("{server}/{name}"))
    }

    /// Runs SQL in the suite's PostgreSQL database and returns psql's unaligned output.
    pub(crate) fn sql(&self, query: &str) -> String {
        psql(&self.database_url().expect("PostgreSQL mode"), query)
    }

    pub(crate) fn metrics_url(&self, org: &str) -> String {
        format!("http://{}/prom/{org}/metrics", self.addrs[3])
    }

    /// ingest-service's URL for `path` (e.g. `/hooks/github/acme-corp`).
    pub(crate) fn ingest_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addrs[4])
    }

    /// Starts the whole suite with `runplane up` and waits until it says it is up.
    pub(crate) async fn up(&mut self) {
        let stdout = std::fs::File::create(self.dir.path().join("up.out")).expect("stdout file");
        let stderr = std::fs::File::create(self.dir.path().join("up.log")).expect("log file");
        let mut command = self.command("runplane");
        command
            .args(["up", "--config"])
            .arg(&self.config)
            .args(["--metrics-addr", &self.addrs[3].to_string()])
            .args(["--ingest-addr", &self.addrs[4].to_string()])
            .args(
                self.database_url()
                    .map(|url| format!("--database-url={url}")),
            )
            .stdout(stdout)
            .stderr(stderr);
        let mut child = command.spawn().expect("spawn runplane up");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("runplane up exited ({status}):\n{}", self.log());
            }
            if self.up_output().contains("Press Ctrl-C to stop.") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "runplane up did not come up:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.up = Some(child);
    }

    /// Runs `runplane up` on this suite's configuration in the foreground and
    /// waits for it to exit: for starts that must fail.
    pub(crate) async fn up_to_completion(&self) -> CliOutput {
        let config = self.config.display().to_string();
        let metrics_addr = self.addrs[3].to_string();
        let ingest_addr = self.addrs[4].to_string();
        self.cli(&[
            "up",
            "--config",
            &config,
            "--metrics-addr",
            &metrics_addr,
            "--ingest-addr",
            &ingest_addr,
        ])
        .await
    }

    /// What `runplane up` printed on stdout.
    pub(crate) fn up_output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.out")).unwrap_or_default()
    }

    /// Everything the services logged.
    pub(crate) fn log(&self) -> String {
        let mut text = std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default();
        for name in SERVICES {
            if let Ok(more) = std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))) {
                text.push_str(&more);
            }
        }
        text
    }

    /// The pid `runplane up` reported for `service`.
    pub(crate) fn pid_of(&self, service: &str) -> i32 {
        let out = self.up_output();
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(service))
            .unwrap_or_else(|| panic!("{service} not in up's output:\n{out}"));
        let pid = line
            .rsplit("pid ")
            .next()
            .and_then(|p| p.trim_end_matches(')').parse().ok());
        pid.unwrap_or_else(|| panic!("no pid in {line:?}"))
    }

    /// Sends SIGINT (Ctrl-C) to `runplane up` and waits for it to exit.
    pub(crate) async fn stop_up(&mut self) -> ExitStatus {
        let mut child = self.up.take().expect("suite is up");
        signal(child.id(), nix::sys::signal::Signal::SIGINT);
        wait_exit(&mut child, Duration::from_secs(30)).await
    }

    /// Waits for `runplane up` to exit by itself.
    pub(crate) async fn wait_up_exit(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.up.take().expect("suite is up");
        wait_exit(&mut child, within).await
    }

    /// Starts one service directly (without `up`) on its usual address, and
    /// waits until it is ready.
    pub(crate) async fn start_service(&mut self, name: &'static str) {
        let index = SERVICES
            .iter()
            .position(|s| *s == name)
            .expect("known service");
        let peers = [self.addrs[0], self.addrs[1], self.addrs[2]];
        self.start_instance(name, self.addrs[index], peers).await;
    }

    /// Starts one instance of a service on `listen`, talking to the given
    /// org-service, token-service and workflow-run-service: replicas share the
    /// database, each has its own address.
    pub(crate) async fn start_instance(
        &mut self,
        name: &'static str,
        listen: SocketAddr,
        peers: [SocketAddr; 3],
    ) {
        self.start_instances(name, &[listen], peers).await;
    }

    /// Starts several instances of a service at the same moment (all processes
    /// first, then waits for each), as replicas do when a deployment rolls out.
    pub(crate) async fn start_instances(
        &mut self,
        name: &'static str,
        listens: &[SocketAddr],
        peers: [SocketAddr; 3],
    ) {
        let children: Vec<(SocketAddr, Child)> = listens
            .iter()
            .map(|listen| (*listen, self.spawn_instance(name, *listen, peers)))
            .collect();
        for (listen, mut child) in children {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    panic!("{name} exited ({status}):\n{}", self.log());
                }
                if self.ready(name, listen).await {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{name} did not become ready:\n{}",
                    self.log()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            self.services.push((name, child));
        }
    }

    fn spawn_instance(
        &self,
        name: &'static str,
        listen: SocketAddr,
        [org, token, workflow_run]: [SocketAddr; 3],
    ) -> Child {
        let admin = self.data_dir().join("admin-token");
        if !admin.exists() {
            std::fs::create_dir_all(self.data_dir()).expect("data dir");
            let secret = runplane_auth::secret::generate(runplane_auth::secret::SecretKind::Admin)
                .expect("rng");
            std::fs::write(&admin, secret).expect("admin token");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .expect("log file");
        let mut command = self.command(name);
        command
            .arg("--config")
            .arg(&self.config)
            .args(["--listen-addr", &listen.to_string()])
            .stdout(Stdio::null())
            .stderr(log);
        command.arg("--admin-token-file").arg(&admin);
        if !matches!(name, "metrics-service" | "ingest-service") {
            let url = self.database_url().unwrap_or_else(|| {
                format!(
                    "sqlite://{}",
                    self.data_dir().join(format!("{name}.db")).display()
                )
            });
            command.arg("--database-url").arg(url);
        }
        let peers: &[(&str, SocketAddr)] = match name {
            "token-service" => &[("--org-service-addr", org)],
            "workflow-run-service" => &[("--token-service-addr", token)],
            "metrics-service" => &[
                ("--org-service-addr", org),
                ("--token-service-addr", token),
                ("--workflow-run-service-addr", workflow_run),
            ],
            "ingest-service" => &[
                ("--token-service-addr", token),
                ("--workflow-run-service-addr", workflow_run),
            ],
            _ => &[],
        };
        for (flag, peer) in peers {
            command.args([*flag, &peer.to_string()]);
        }
        command.spawn().expect("spawn service")
    }

    /// Stops a directly started service with SIGTERM and waits for it.
    pub(crate) async fn stop_service(&mut self, name: &str) -> ExitStatus {
        let index = self
            .services
            .iter()
            .position(|(n, _)| *n == name)
            .expect("service started");
        let (_, mut child) = self.services.remove(index);
        signal(child.id(), nix::sys::signal::Signal::SIGTERM);
        wait_exit(&mut child, Duration::from_secs(30)).await
    }

    /// Sends `signal` to a service: the one started directly under that name,
    /// else the one `runplane up` started.
    pub(crate) fn signal_service(&self, name: &str, sig: nix::sys::signal::Signal) {
        match self.services.iter().find(|(n, _)| *n == name) {
            Some((_, child)) => signal(child.id(), sig),
            None => signal(self.pid_of(name).unsigned_abs(), sig),
        }
    }

    /// Kills a directly started service with SIGKILL: no drain, no flush.
    pub(crate) async fn kill_service(&mut self, name: &str) {
        let index = self
            .services
            .iter()
            .position(|(n, _)| *n == name)
            .expect("service started");
        let (_, mut child) = self.services.remove(index);
        signal(child.id(), nix::sys::signal::Signal::SIGKILL);
        wait_exit(&mut child, Duration::from_secs(10)).await;
    }

    async fn ready(&self, name: &str, addr: SocketAddr) -> bool {
        match (&self.tls, name) {
            (None, "metrics-service" | "ingest-service") => {
                let url = format!("http://{addr}/readyz");
                matches!(self.http.get(url).send().await, Ok(r) if r.status() == 200)
            }
            (None, _) => grpc_serving(addr, "").await,
            (Some(tls), "metrics-service" | "ingest-service") => {
                let url = format!("https://{addr}/readyz");
                matches!(curl(&url, Some(tls), &[]).await, Ok((200, _)))
            }
            (Some(tls), _) => matches!(
                grpc_health_tls(addr, tls).await,
                Ok(tonic_health::pb::health_check_response::ServingStatus::Serving)
            ),
        }
    }

    /// A command for one of the suite's binaries, with the suite's environment.
    pub(super) fn command(&self, binary: &str) -> Command {
        let mut command = Command::new(self.bin.join(binary));
        command.current_dir(self.dir.path());
        for var in CI_VARIABLES {
            command.env_remove(var);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
            .env("RUNPLANE_DATA_DIR", self.data_dir())
            .env("RUNPLANE_ORG_SERVICE_ADDR", self.addrs[0].to_string())
            .env("RUNPLANE_TOKEN_SERVICE_ADDR", self.addrs[1].to_string())
            .env(
                "RUNPLANE_WORKFLOW_RUN_SERVICE_ADDR",
                self.addrs[2].to_string(),
            );
        command
    }
}

/// Dropping a suite stops its processes. Tests run on a multi-threaded runtime
/// (`#[tokio::test(flavor = "multi_thread")]`) so that, while this blocks one
/// thread, the test's own gRPC connections still answer the servers' GOAWAY and
/// the servers stop at once instead of waiting out their drain timeout.
impl Suite {
    /// Every log line the suite's processes wrote must be free of secrets: no
    /// API token, no admin credential, whatever the test did.
    fn assert_no_secret_logged(&self) {
        let log = self.log();
        let admin =
            std::fs::read_to_string(self.data_dir().join("admin-token")).unwrap_or_default();
        let admin = admin.trim();
        for (n, line) in log.lines().enumerate() {
            let leak = ["rpt_", "rpa_"].iter().any(|prefix| {
                line.match_indices(prefix).any(|(at, _)| {
                    line[at + prefix.len()..]
                        .chars()
                        .take_while(char::is_ascii_alphanumeric)
                        .count()
                        >= 16
                })
            }) || (!admin.is_empty() && line.contains(admin));
            assert!(!leak, "a secret was logged (line {}): {line}", n + 1);
        }
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        // Never leave processes behind: ask nicely, then insist.
        let mut children: Vec<Child> = self.up.take().into_iter().collect();
        children.extend(self.services.drain(..).map(|(_, c)| c));
        for child in &children {
            signal(child.id(), nix::sys::signal::Signal::SIGTERM);
        }
        for mut child in children {
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some((server, name)) = &self.postgres {
            psql(
                &format!("{server}/postgres"),
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
        if !std::thread::panicking() {
            self.assert_no_secret_logged();
        }
    }
}

/// Runs SQL with psql against `url` and returns its unaligned output.
fn psql(url: &str, query: &str) -> String {
    let output = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qAtc", query])
        .output()
        .expect("psql is required in PostgreSQL mode (Debian: postgresql-client)");
    assert!(
        output.status.success(),
        "psql {query:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A free port on the loopback interface that no other test of this run is given.
///
/// Not the kernel's `bind(0)`: that may hand a port to one test while another is
/// restarting its suite on it, and then the second suite's readiness check is
/// answered by the first suite's service. Ports come from a counter below the
/// kernel's ephemeral range (32768 on Linux), where neither `bind(0)` nor an
/// outgoing connection ever lands, and each is handed out once per process.
pub(crate) fn free_port() -> SocketAddr {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 20_000;
    const END: u16 = 32_768;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Two test processes at once (two checkouts) start far apart.
    let start = FIRST + (std::process::id() % 40) as u16 * 300;
    loop {
        let offset = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = start + offset;
        assert!(port < END, "ran out of test ports");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // Skip a port something else on the machine listens on.
        if TcpListener::bind(addr).is_ok() {
            return addr;
        }
    }
}

fn free_ports() -> [SocketAddr; 5] {
    [
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    ]
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

async fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process did not exit within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
