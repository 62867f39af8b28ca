//! `runplane up`: the whole suite on one machine, as five supervised processes.
//!
//! Each service is its own OS process, started from the binary next to
//! `runplane`, with its SQLite file in the data directory. Their logs are
//! prefixed with their names. If one exits, the others are stopped and `up`
//! fails; Ctrl-C (or SIGTERM) stops them all cleanly.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use runplane_auth::secret::{self, SecretKind};
use runplane_server::suite::{self, Member, Protocol};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::cli::Global;

/// How long the services get to start before `up` gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the services get to drain after being asked to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// HTTP address of metrics-service (default: its section's listen_addr in
    /// the config file, else 127.0.0.1:8080).
    #[arg(long, env = "RUNPLANE_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// HTTP address of ingest-service, where CI systems send webhooks and
    /// JSON (default: its section's listen_addr in the config file, else
    /// 127.0.0.1:8081).
    #[arg(long, env = "RUNPLANE_INGEST_ADDR")]
    ingest_addr: Option<SocketAddr>,
    /// One PostgreSQL database for the three stateful services, each in its own
    /// schema (postgres://USER[:PASSWORD]@HOST:PORT/DB). Default: SQLite files in
    /// the data directory.
    #[arg(long, env = "RUNPLANE_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

/// A member of the suite, and whom it calls.
struct Service {
    member: Member,
    /// The members it calls (each started before it).
    peers: &'static [Member],
}

/// The suite, in start order (each depends only on those before it).
const SERVICES: [Service; 5] = [
    Service {
        member: suite::ORG_SERVICE,
        peers: &[],
    },
    Service {
        member: suite::TOKEN_SERVICE,
        peers: &[suite::ORG_SERVICE],
    },
    Service {
        member: suite::WORKFLOW_RUN_SERVICE,
        peers: &[suite::TOKEN_SERVICE],
    },
    Service {
        member: suite::METRICS_SERVICE,
        peers: &[
            suite::ORG_SERVICE,
            suite::TOKEN_SERVICE,
            suite::WORKFLOW_RUN_SERVICE,
        ],
    },
    Service {
        member: suite::INGEST_SERVICE,
        peers: &[suite::TOKEN_SERVICE, suite::WORKFLOW_RUN_SERVICE],
    },
];

/// Everything `up` decides before starting anything.
struct Plan {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    admin_token_file: PathBuf,
    config: Option<PathBuf>,
    database_url: Option<String>,
    /// Listen addresses, in [`SERVICES`] order.
    addrs: Vec<SocketAddr>,
}

impl Plan {
    fn new(global: &Global, args: UpArgs) -> anyhow::Result<Self> {
        let mut plan = Plan {
            bin_dir: std::env::current_exe()
                .context("cannot locate the runplane binary")?
                .parent()
                .map(Path::to_path_buf)
                .context("the runplane binary has no directory")?,
            data_dir: global.data_dir.clone(),
            admin_token_file: PathBuf::new(),
            config: global.config.clone(),
            database_url: args.database_url,
            addrs: Vec::new(),
        };
        // The gRPC services' addresses are resolved with the CLI's (flag or
        // environment, else the service's section, else the top level, else
        // the default: `Global::resolve_from_file`); metrics-service's here.
        let addresses = [
            Some(global.org_service_addr.clone()),
            Some(global.token_service_addr.clone()),
            Some(global.workflow_run_service_addr.clone()),
            args.metrics_addr.map(|a| a.to_string()),
            args.ingest_addr.map(|a| a.to_string()),
        ];
        for (service, given) in SERVICES.iter().zip(addresses) {
            let addr = match given {
                Some(addr) => addr,
                None => plan
                    .file_setting(&service.member, "listen_addr")?
                    .unwrap_or_else(|| service.member.default_addr.to_owned()),
            };
            let addr: SocketAddr =
                addr.trim_start_matches("http://")
                    .parse()
                    .with_context(|| {
                        format!("{}: invalid listen address {addr:?}", service.member.name)
                    })?;
            plan.addrs.push(addr);
        }
        // Resolved with the CLI's, too.
        plan.admin_token_file = global
            .admin_token_file
            .clone()
            .unwrap_or_else(|| plan.data_dir.join("admin-token"));
        Ok(plan)
    }

    /// `up` checks readiness and prints addresses in plain text on loopback:
    /// a config file that has the services serve TLS is refused at once
    /// rather than waited on until the start timeout.
    fn refuse_server_tls(&self) -> anyhow::Result<()> {
        for service in &SERVICES {
            for key in ["tls_cert", "tls_client_ca"] {
                if self.file_setting(&service.member, key)?.is_some() {
                    anyhow::bail!(
                        "{} is set for {} in the config file, but `runplane up` runs the suite \
                         in plain text on one host: remove the server TLS settings (tls_cert, \
                         tls_key, tls_client_ca) to use `up`, or start the services yourself \
                         (README: TLS without a mesh)",
                        key,
                        service.member.name
                    );
                }
            }
        }
        Ok(())
    }

    /// The value the config file gives `key` for `member`, if any.
    fn file_setting(&self, member: &Member, key: &str) -> anyhow::Result<Option<String>> {
        let Some(path) = &self.config else {
            return Ok(None);
        };
        Ok(crate::cli::section_setting(path, member, key)?)
    }

    /// The command line that starts `service` listening on `addr`.
    fn command(&self, service: &Service, addr: SocketAddr) -> anyhow::Result<Command> {
        let binary = self.bin_dir.join(service.member.name);
        if !binary.is_file() {
            anyhow::bail!(
                "cannot find {} next to runplane (looked for {}); build the whole workspace: cargo build --workspace",
                service.member.name,
                binary.display()
            );
        }
        let mut command = Command::new(&binary);
        command
            .arg("--listen-addr")
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Every service checks callers with it or presents it to its peers.
        command
            .arg("--admin-token-file")
            .arg(&self.admin_token_file);
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        if let Some(url) = self.database_of(service)? {
            command.arg("--database-url").arg(url);
        }
        for peer in service.peers {
            let (Some(key), Some(addr)) = (peer.address_key(), self.addr_of(peer)) else {
                anyhow::bail!(
                    "{} calls {}, which is not a gRPC member of the suite",
                    service.member.name,
                    peer.name
                );
            };
            command
                .arg(format!("--{}", key.replace('_', "-")))
                .arg(addr.to_string());
        }
        Ok(command)
    }

    /// The database `service` keeps its data in: `--database-url`, else the
    /// config file's choice, else its SQLite file in the data directory.
    fn database_of(&self, service: &Service) -> anyhow::Result<Option<String>> {
        let Some(file) = service.member.sqlite_file else {
            return Ok(None);
        };
        if let Some(url) = &self.database_url {
            return Ok(Some(url.clone()));
        }
        Ok(Some(
            match self.file_setting(&service.member, "database_url")? {
                Some(url) => url,
                None => format!("sqlite://{}", self.data_dir.join(file).display()),
            },
        ))
    }

    /// Where the suite's data is, for a person: the data directory, or the
    /// databases (passwords hidden) when any is elsewhere.
    fn data_location(&self) -> anyhow::Result<String> {
        let mut elsewhere = Vec::new();
        for service in &SERVICES {
            if let Some(url) = self.database_of(service)? {
                let in_data_dir = url
                    .strip_prefix("sqlite://")
                    .is_some_and(|path| std::path::Path::new(path).starts_with(&self.data_dir));
                if !in_data_dir {
                    elsewhere.push(runplane_config::redact_url(&url));
                }
            }
        }
        elsewhere.dedup();
        Ok(match elsewhere.as_slice() {
            [] => self.data_dir.display().to_string(),
            urls => urls.join(" and "),
        })
    }

    /// Where `member` listens.
    fn addr_of(&self, member: &Member) -> Option<SocketAddr> {
        SERVICES
            .iter()
            .zip(&self.addrs)
            .find_map(|(service, addr)| (service.member == *member).then_some(*addr))
    }
}

/// Starts the suite and supervises it until a signal or a failure.
pub(crate) async fn up(global: &Global, args: UpArgs) -> anyhow::Result<ExitCode> {
    let plan = Plan::new(global, args)?;
    plan.refuse_server_tls()?;
    {
        use std::os::unix::fs::DirBuilderExt as _;
        // Only its user may read the suite's data and its admin credential.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&plan.data_dir)
            .with_context(|| {
                format!(
                    "cannot create the data directory {}",
                    plan.data_dir.display()
                )
            })?;
    }
    ensure_admin_token(&plan.admin_token_file)?;
    ensure_ports_free(&plan)?;

    let mut children: Vec<(&'static str, Child)> = Vec::new();
    if let Err(e) = start_all(&plan, &mut children).await {
        stop_all(&mut children).await;
        return Err(e);
    }

    let data = plan.data_location()?;
    outln!(
        "runplane is up. Data in {data}, admin credential in {}.",
        plan.admin_token_file.display()
    );
    for ((service, addr), (_, child)) in SERVICES.iter().zip(&plan.addrs).zip(&children) {
        let pid = child.id().unwrap_or_default();
        match service.member.protocol {
            Protocol::Http if service.member == suite::INGEST_SERVICE => {
                outln!(
                    "  {:<22} http://{addr}/hooks/{{github,gitlab}}/{{org}}, http://{addr}/v1/runs (pid {pid})",
                    service.member.name
                )
            }
            Protocol::Http => {
                outln!(
                    "  {:<22} http://{addr}/prom/{{org}}/metrics (pid {pid})",
                    service.member.name
                )
            }
            Protocol::Grpc => outln!("  {:<22} {addr} (gRPC, pid {pid})", service.member.name),
        }
    }
    outln!("Press Ctrl-C to stop.");
    let _ = std::io::stdout().flush();

    // Supervise: the first child to exit, or a signal, ends the suite.
    let exited = async {
        let waits = children.iter_mut().map(|(name, child)| {
            let name = *name;
            Box::pin(async move { (name, child.wait().await) })
        });
        first_of(waits.collect()).await
    };
    let outcome = tokio::select! {
        (name, status) = exited => Some((name, status)),
        signal = runplane_server::shutdown::signal() => {
            eprintln!("runplane: {signal} received; stopping the suite");
            None
        }
    };
    stop_all(&mut children).await;
    match outcome {
        None => Ok(ExitCode::SUCCESS),
        Some((name, status)) => {
            let status = status
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string());
            eprintln!("runplane: {name} exited ({status}); stopped the others");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Starts the services in dependency order, each once the previous is ready.
async fn start_all(plan: &Plan, children: &mut Vec<(&'static str, Child)>) -> anyhow::Result<()> {
    for (service, addr) in SERVICES.iter().zip(&plan.addrs) {
        let mut child = plan
            .command(service, *addr)?
            .spawn()
            .with_context(|| format!("cannot start {}", service.member.name))?;
        prefix_output(service.member.name, &mut child);
        children.push((service.member.name, child));
        let (_, child) = children.last_mut().context("just pushed")?;
        wait_ready(&service.member, *addr, child).await?;
    }
    Ok(())
}

/// Fails before starting anything if a port is taken, most often by a suite
/// already running: otherwise that suite would answer our readiness checks.
fn ensure_ports_free(plan: &Plan) -> anyhow::Result<()> {
    for (service, addr) in SERVICES.iter().zip(&plan.addrs) {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            anyhow::bail!(
                "{} cannot listen on {addr}: {e}. Is another `runplane up` running? \
                 Stop it, or choose other addresses in the config file (listen_addr)",
                service.member.name
            );
        }
    }
    Ok(())
}

/// Creates the admin credential on first start (readable by the owner only).
fn ensure_admin_token(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let secret = secret::generate(SecretKind::Admin)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create the admin credential {}", path.display()))?;
    writeln!(file, "{secret}")?;
    eprintln!(
        "runplane: generated the admin credential in {}",
        path.display()
    );
    Ok(())
}

/// Copies a child's stdout and stderr to ours, each line prefixed with its name.
fn prefix_output(name: &'static str, child: &mut Child) {
    fn pump(name: &'static str, stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{name:>20} | {line}");
            }
        });
    }
    if let Some(out) = child.stdout.take() {
        pump(name, out);
    }
    if let Some(err) = child.stderr.take() {
        pump(name, err);
    }
}

/// Waits until the service answers its readiness check, or fails if it exits.
async fn wait_ready(member: &Member, addr: SocketAddr, child: &mut Child) -> anyhow::Result<()> {
    let name = member.name;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("{name} exited during start-up ({status}); see its log above");
        }
        let ready = match member.protocol {
            Protocol::Http => http_ready(addr).await,
            Protocol::Grpc => grpc_ready(addr).await,
        };
        if ready {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("{name} did not become ready on {addr} within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a gRPC server at `addr` reports SERVING on `grpc.health.v1`.
pub(crate) async fn grpc_ready(addr: SocketAddr) -> bool {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{addr}")) else {
        return false;
    };
    let Ok(channel) = endpoint
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
    else {
        return false;
    };
    let mut client = HealthClient::new(channel);
    matches!(
        client.check(HealthCheckRequest { service: String::new() }).await,
        Ok(r) if r.get_ref().status() == ServingStatus::Serving
    )
}

/// Whether an HTTP server at `addr` answers 200 on `/readyz`.
async fn http_ready(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(
                format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Asks every running child to stop (SIGTERM), in reverse start order, and
/// kills those that do not stop in time.
async fn stop_all(children: &mut [(&'static str, Child)]) {
    for (_, child) in children.iter().rev() {
        if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    for (name, child) in children.iter_mut().rev() {
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => eprintln!("runplane: {name} stopped with {status}"),
            Ok(Err(e)) => eprintln!("runplane: cannot wait for {name}: {e}"),
            Err(_) => {
                eprintln!("runplane: {name} did not stop within {STOP_TIMEOUT:?}; killing it");
                let _ = child.kill().await;
            }
        }
    }
}

/// The output of whichever future completes first.
async fn first_of<F: std::future::Future + Unpin>(futures: Vec<F>) -> F::Output {
    let mut futures = futures;
    std::future::poll_fn(move |cx| {
        for f in futures.iter_mut() {
            if let std::task::Poll::Ready(out) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready(out);
            }
        }
        std::task::Poll::Pending
    })
    .await
}
