//! The real suite, started with `runplane up` from the given binaries, and
//! what the benchmark needs from it: clients, tokens, memory readings.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use runplane_api::org::v1::CreateOrganizationRequest;
use runplane_api::org::v1::organization_service_client::OrganizationServiceClient;
use runplane_api::token::v1::token_service_client::TokenServiceClient;
use runplane_api::token::v1::{CreateTokenRequest, Scope};
use runplane_client::with_bearer;
use tonic::transport::{Channel, Endpoint};

/// A process killed when dropped.
pub(crate) struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where the data lives.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Sqlite,
    /// A server URL (`postgres://USER@HOST:PORT`); the benchmark makes its own database.
    Postgres(String),
}

impl Backend {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres(_) => "PostgreSQL",
        }
    }
}

/// A running suite.
pub(crate) struct Suite {
    pub(crate) dir: PathBuf,
    /// org, token, workflow-run, metrics and ingest services.
    pub(crate) addrs: [SocketAddr; 5],
    /// The workflow-run-service database, for seeding through its data layer.
    pub(crate) workflow_run_db: String,
    pub(crate) pids: Vec<(String, u32)>,
    admin: String,
    up: Child,
    postgres: Option<(String, String)>,
}

impl Suite {
    /// Starts the suite from `bin_dir` on `backend`, serving metrics for `orgs`.
    pub(crate) async fn start(
        bin_dir: &Path,
        backend: &Backend,
        orgs: &[String],
        work: &Path,
    ) -> anyhow::Result<Self> {
        let dir = work.join(backend.name().to_lowercase());
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("runplane.yaml");
        let list: String = orgs
            .iter()
            .map(|o| format!("  - org_name: {o}\n"))
            .collect();
        std::fs::write(
            &config,
            format!("prometheus_org_metrics:\n{list}log: warn,sqlx=warn\n"),
        )?;
        let addrs = free_ports()?;
        let (postgres, database_url) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres(server) => {
                let name = format!("runplane_bench_{}", std::process::id());
                postgres_admin(server, &format!("DROP DATABASE IF EXISTS {name}")).await?;
                postgres_admin(server, &format!("CREATE DATABASE {name}")).await?;
                let url = format!("{}/{name}", server.trim_end_matches('/'));
                (Some((server.clone(), name)), Some(url))
            }
        };
        let out = dir.join("up.out");
        let mut command = Command::new(bin_dir.join("runplane"));
        command
            .current_dir(&dir)
            .args(["up", "--config"])
            .arg(&config)
            .args(["--metrics-addr", &addrs[3].to_string()])
            .args(["--ingest-addr", &addrs[4].to_string()])
            .args(["--org-service-addr", &addrs[0].to_string()])
            .args(["--token-service-addr", &addrs[1].to_string()])
            .args(["--workflow-run-service-addr", &addrs[2].to_string()])
            .args(["--data-dir", &dir.join("data").display().to_string()])
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(dir.join("up.log"))?)
            .stdin(Stdio::null());
        if let Some(url) = &database_url {
            command.args(["--database-url", url]);
        }
        let mut up = command
            .spawn()
            .with_context(|| format!("starting {}", bin_dir.join("runplane").display()))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let printed = loop {
            if let Some(status) = up.try_wait()? {
                bail!(
                    "runplane up exited ({status}); see {}",
                    dir.join("up.log").display()
                );
            }
            let printed = std::fs::read_to_string(&out).unwrap_or_default();
            if printed.contains("Press Ctrl-C") {
                break printed;
            }
            if Instant::now() > deadline {
                bail!(
                    "runplane up did not come up; see {}",
                    dir.join("up.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let pids = printed
            .lines()
            .filter_map(|l| {
                let name = l.split_whitespace().next()?.to_owned();
                let pid = l
                    .rsplit("pid ")
                    .next()?
                    .trim_end_matches(')')
                    .parse()
                    .ok()?;
                Some((name, pid))
            })
            .collect();
        let admin = std::fs::read_to_string(dir.join("data/admin-token"))?
            .trim()
            .to_owned();
        let workflow_run_db = match &database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", dir.join("data/workflow-run.db").display()),
        };
        Ok(Suite {
            dir,
            addrs,
            workflow_run_db,
            pids,
            admin,
            up,
            postgres,
        })
    }

    /// Creates an organization and a token with both scopes; returns (org id, secret).
    pub(crate) async fn org_with_token(&self, name: &str) -> anyhow::Result<(String, String)> {
        let mut orgs = OrganizationServiceClient::new(channel(self.addrs[0]).await?);
        let org = orgs
            .create_organization(with_bearer(
                CreateOrganizationRequest {
                    name: name.to_owned(),
                },
                &self.admin,
            ))
            .await?
            .into_inner()
            .organization
            .context("no organization")?;
        let mut tokens = TokenServiceClient::new(channel(self.addrs[1]).await?);
        let request = CreateTokenRequest {
            org_name: name.to_owned(),
            name: "bench".to_owned(),
            description: String::new(),
            scopes: vec![Scope::RunsWrite.into(), Scope::MetricsRead.into()],
            expire_time: None,
            projects: Vec::new(),
        };
        let secret = tokens
            .create_token(with_bearer(request, &self.admin))
            .await?
            .into_inner()
            .secret;
        Ok((org.id, secret))
    }

    /// A GitHub webhook of organization `name`; returns its secret.
    pub(crate) async fn github_webhook(&self, name: &str) -> anyhow::Result<String> {
        use runplane_api::token::v1::{CreateWebhookRequest, WebhookProvider};
        let mut tokens = TokenServiceClient::new(channel(self.addrs[1]).await?);
        let request = CreateWebhookRequest {
            org_name: name.to_owned(),
            provider: WebhookProvider::Github.into(),
            name: String::new(),
        };
        Ok(tokens
            .create_webhook(with_bearer(request, &self.admin))
            .await?
            .into_inner()
            .secret)
    }

    /// One more metrics-service beside the suite's, over the same upstreams,
    /// with `settings` (flags): the address it serves on, once it answers.
    /// Stopped when the returned child is dropped.
    pub(crate) async fn extra_metrics_service(
        &self,
        bin_dir: &Path,
        settings: &[&str],
    ) -> anyhow::Result<(ChildGuard, SocketAddr)> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        drop(listener);
        let child = Command::new(bin_dir.join("metrics-service"))
            .current_dir(&self.dir)
            .args(["--listen-addr", &addr.to_string()])
            .args(["--org-service-addr", &format!("http://{}", self.addrs[0])])
            .args(["--token-service-addr", &format!("http://{}", self.addrs[1])])
            .args([
                "--workflow-run-service-addr",
                &format!("http://{}", self.addrs[2]),
            ])
            .arg("--admin-token-file")
            .arg(self.dir.join("data/admin-token"))
            .args(settings)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("extra-metrics.log"))?)
            .spawn()
            .context("starting metrics-service")?;
        let child = ChildGuard(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "metrics-service did not come up; see {}",
                    self.dir.join("extra-metrics.log").display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok((child, addr))
    }

    /// Resident memory of each service, in MiB.
    pub(crate) fn memory_mib(&self) -> Vec<(String, f64)> {
        self.pids
            .iter()
            .map(|(name, pid)| (name.clone(), rss_mib(*pid).unwrap_or(f64::NAN)))
            .collect()
    }

    /// Stops the suite and drops its PostgreSQL database.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        terminate(&self.up);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.up.try_wait()?.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.up.kill();
        if let Some((server, name)) = &self.postgres {
            postgres_admin(
                server,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
            .await?;
        }
        Ok(())
    }
}

/// A connected gRPC channel.
pub(crate) async fn channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

/// Runs one statement on the server's `postgres` database.
async fn postgres_admin(server: &str, sql: &str) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait as _;
    let db =
        sea_orm::Database::connect(format!("{}/postgres", server.trim_end_matches('/'))).await?;
    db.execute_unprepared(sql).await?;
    db.close().await?;
    Ok(())
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

pub(crate) fn free_ports() -> anyhow::Result<[SocketAddr; 5]> {
    let listeners = (0..5)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let addrs = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<Vec<_>, _>>()?;
    Ok([addrs[0], addrs[1], addrs[2], addrs[3], addrs[4]])
}

/// Asks `runplane up` to stop its services (SIGTERM; a SIGKILL would leave them running).
fn terminate(up: &Child) {
    if let Ok(pid) = i32::try_from(up.id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

impl Drop for Suite {
    /// A benchmark that fails midway stops its suite too.
    fn drop(&mut self) {
        if matches!(self.up.try_wait(), Ok(None)) {
            terminate(&self.up);
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.up.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.up.kill();
        }
    }
}
