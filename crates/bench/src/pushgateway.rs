//! The peer: Prometheus Pushgateway, what CI users commonly run instead of
//! runplane, each job pushing its run's result to a group of its workflow.
//! Started by the benchmark on loopback (Debian's `prometheus-pushgateway`,
//! no persistence file), measured in the same run, stopped after.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::stats::Latencies;

/// The binary, as Debian installs it.
const BINARY: &str = "prometheus-pushgateway";

/// A running Pushgateway.
pub(crate) struct Pushgateway {
    pub(crate) addr: SocketAddr,
    child: Child,
}

impl Pushgateway {
    /// Starts one on a free loopback port, logging into `dir`.
    pub(crate) async fn start(dir: &Path) -> anyhow::Result<Self> {
        let binary = find(BINARY).with_context(|| {
            format!("{BINARY} is not installed (Debian: apt-get install prometheus-pushgateway)")
        })?;
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        std::fs::create_dir_all(dir)?;
        let child = Command::new(&binary)
            .arg(format!("--web.listen-address={addr}"))
            .arg("--persistence.file=")
            .arg("--web.enable-admin-api")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("pushgateway.log"))?)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut peer = Pushgateway { addr, child };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = peer.child.try_wait()? {
                bail!("{BINARY} exited ({status}); see {}", dir.display());
            }
            let ready = http.get(format!("http://{addr}/-/ready")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Ok(peer);
            }
            if Instant::now() > deadline {
                bail!("{BINARY} did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its scrape URL.
    pub(crate) fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    /// Deletes every group (the Pushgateway's admin API).
    pub(crate) async fn wipe(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        let response = http
            .put(format!("http://{}/api/v1/admin/wipe", self.addr))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "wipe: {}",
            response.status()
        );
        Ok(())
    }

    /// Pushes workflows `0..count`, one group each, `concurrency` at a time.
    pub(crate) async fn fill(&self, count: usize) -> anyhow::Result<()> {
        let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
        let mut tasks = tokio::task::JoinSet::new();
        let per_task = count.div_ceil(8);
        for task in 0..8 {
            let (http, addr) = (http.clone(), self.addr);
            tasks.spawn(async move {
                for n in (task * per_task)..((task + 1) * per_task).min(count) {
                    push(&http, addr, n, n as u64).await?;
                }
                anyhow::Ok(())
            });
        }
        for result in tasks.join_all().await {
            result?;
        }
        Ok(())
    }

    /// `clients` jobs, each on its own connection, pushing one run's result
    /// per request back to back for `duration`, over `workflows` groups:
    /// pushes per second and their latencies.
    pub(crate) async fn ingest(
        &self,
        clients: usize,
        workflows: usize,
        duration: Duration,
    ) -> anyhow::Result<(f64, Latencies)> {
        let began = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for client in 0..clients {
            let http = reqwest::Client::builder()
                .tcp_nodelay(true)
                .pool_max_idle_per_host(1)
                .build()?;
            let addr = self.addr;
            tasks.spawn(async move {
                let (mut latencies, mut pushes) = (Latencies::default(), 0u64);
                while began.elapsed() < duration {
                    let t0 = Instant::now();
                    push(&http, addr, (client + pushes as usize) % workflows, pushes).await?;
                    latencies.push(t0.elapsed());
                    pushes += 1;
                }
                anyhow::Ok((latencies, pushes))
            });
        }
        let (mut latencies, mut pushes) = (Latencies::default(), 0u64);
        for result in tasks.join_all().await {
            let (l, p) = result?;
            latencies.extend(l);
            pushes += p;
        }
        Ok((pushes as f64 / began.elapsed().as_secs_f64(), latencies))
    }

    /// Stops it.
    pub(crate) fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// What a CI job pushes when its run ends: the run's result, duration and
/// time, labelled as runplane labels a workflow, to the group of its workflow
/// (`PUT` replaces the group, as a job reporting its latest run does).
async fn push(
    http: &reqwest::Client,
    addr: SocketAddr,
    workflow: usize,
    run: u64,
) -> anyhow::Result<()> {
    let labels = "org=\"acme\",project=\"default\",runner=\"GITHUB_ACTION\"";
    let body = format!(
        "# TYPE ci_workflow_up gauge\nci_workflow_up{{{labels}}} 1\n\
         # TYPE ci_workflow_last_run_duration_seconds gauge\n\
         ci_workflow_last_run_duration_seconds{{{labels}}} {}.5\n\
         # TYPE ci_workflow_last_run_timestamp_seconds gauge\n\
         ci_workflow_last_run_timestamp_seconds{{{labels}}} {}\n",
        30 + run % 600,
        1_780_000_000 + run
    );
    let response = http
        .put(format!("http://{addr}/metrics/job/workflow-{workflow}"))
        .header("content-type", "text/plain; version=0.0.4")
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "push: {}",
        response.status()
    );
    Ok(())
}

fn find(binary: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(binary))
        .find(|path| path.is_file())
}
