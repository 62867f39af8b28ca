//! `runplane-bench`: the real suite (five processes, from the release build)
//! on SQLite and PostgreSQL, measured side by side with its floors, printed as
//! a Markdown report. See docs/benchmarks.md for the command and the figures.

mod compare;
mod formats;
mod ingest;
mod pushgateway;
mod scrape;
mod stats;
mod suite;
mod webhooks;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use runplane_database::DatabaseArgs;
use workflow_run_service::testing::{SeedPlan, Storage};

use crate::scrape::Encoding;
use crate::stats::Repeated;
use crate::suite::{Backend, Suite};

/// Benchmarks runplane against its floors.
#[derive(Debug, Parser)]
#[command(name = "runplane-bench", version, about)]
struct Args {
    /// Seconds and small sizes, for CI: proves the benchmark runs; its figures mean little.
    #[arg(long)]
    quick: bool,
    /// Which database to run on.
    #[arg(long, value_enum, default_value_t = Which::Both)]
    backend: Which,
    /// PostgreSQL server (a user that may create databases); the benchmark makes its own database.
    #[arg(
        long,
        env = "RUNPLANE_TEST_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    postgres: String,
    /// Directory of the runplane binaries (default: this binary's directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Also write the report to this file.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Organization sizes (workflows) to scrape, instead of the mode's.
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Scrapes per batch, instead of the mode's.
    #[arg(long)]
    scrapes: Option<usize>,
    /// Batches of scrapes per organization, instead of the mode's; each
    /// figure is the median of the batches'.
    #[arg(long)]
    repetitions: Option<usize>,
    /// Concurrent ingestion clients, instead of the mode's; `--clients` with
    /// no value skips ingestion (to iterate on scrapes).
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    clients: Option<Vec<usize>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Sqlite,
    Postgres,
    Both,
}

/// Rounds of one client alone, ReportRun then Pushgateway, and each one's length.
const ALONE_ROUNDS: usize = 5;
const ALONE_ROUND: Duration = Duration::from_secs(2);

/// How long after the load memory is measured again.
const SETTLE: Duration = Duration::from_secs(30);

/// Sizes of one run of the benchmark.
struct Plan {
    ingest_for: Duration,
    clients: Vec<usize>,
    /// Webhook senders at once.
    delivery_concurrency: Vec<usize>,
    org_sizes: Vec<usize>,
    long_history_runs: usize,
    scrapes: usize,
    /// Batches of `scrapes` per organization (and of floor (b)).
    repetitions: usize,
    health_checks: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                ingest_for: Duration::from_secs(1),
                clients: vec![1, 8, 64],
                delivery_concurrency: vec![8, 64],
                org_sizes: vec![10, 100],
                long_history_runs: 10_000,
                scrapes: 10,
                repetitions: 1,
                health_checks: 100,
            }
        } else {
            Plan {
                ingest_for: Duration::from_secs(10),
                clients: vec![1, 8, 64],
                delivery_concurrency: vec![8, 64],
                org_sizes: vec![10, 100, 1_000, 10_000],
                long_history_runs: 1_000_000,
                scrapes: 100,
                repetitions: 5,
                health_checks: 2_000,
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .to_path_buf(),
    };
    let bin_dir = bin_dir
        .canonicalize()
        .with_context(|| format!("--bin-dir {}", bin_dir.display()))?;
    let mut plan = Plan::new(args.quick);
    if !args.sizes.is_empty() {
        plan.org_sizes = args.sizes.clone();
    }
    if let Some(scrapes) = args.scrapes {
        plan.scrapes = scrapes;
    }
    if let Some(repetitions) = args.repetitions {
        plan.repetitions = repetitions.max(1);
    }
    if let Some(clients) = &args.clients {
        plan.clients = clients.clone();
    }
    let backends = match args.backend {
        Which::Sqlite => vec![Backend::Sqlite],
        Which::Postgres => vec![Backend::Postgres(args.postgres.clone())],
        Which::Both => vec![Backend::Sqlite, Backend::Postgres(args.postgres.clone())],
    };
    let work = std::env::temp_dir().join(format!("runplane-bench-{}", std::process::id()));
    let mut report = format!(
        "# runplane benchmark ({} mode)\n\nMachine: {} cores, {}; binaries from {}.\n",
        if args.quick { "quick" } else { "full" },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        machine(),
        bin_dir.display()
    );
    for backend in &backends {
        eprintln!("runplane-bench: {} ...", backend.name());
        let section = run(&bin_dir, backend, &plan, &work)
            .await
            .with_context(|| backend.name())?;
        report.push_str(&section);
    }
    let _ = std::fs::remove_dir_all(&work);
    print!("{report}");
    if let Some(path) = args.output {
        std::fs::write(&path, &report).with_context(|| path.display().to_string())?;
    }
    Ok(())
}

async fn run(
    bin_dir: &std::path::Path,
    backend: &Backend,
    plan: &Plan,
    work: &std::path::Path,
) -> anyhow::Result<String> {
    let mut orgs = vec!["ingest".to_owned()];
    for n in &plan.org_sizes {
        orgs.push(format!("s{n}"));
        orgs.push(format!("l{n}"));
    }
    let pushgateway = pushgateway::Pushgateway::start(&work.join("pushgateway")).await?;
    let suite = Suite::start(bin_dir, backend, &orgs, work).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = suite.memory_mib();
    let mut out = format!("\n## {}\n", backend.name());

    // Floor (a): one gRPC hop.
    let health = ingest::health_round_trips(suite.addrs[0], plan.health_checks).await?;

    // Ingestion through the API, then the database alone on a database of its own.
    let (ingest_org, ingest_secret) = suite.org_with_token("ingest").await?;
    let mut ingestion = Vec::new();
    for clients in &plan.clients {
        ingestion.push(
            ingest::through_api(suite.addrs[2], &ingest_secret, *clients, plan.ingest_for).await?,
        );
    }
    // One client, whole runs in one call each; then webhook deliveries.
    let (report_rate, report_latencies) =
        webhooks::report_run_alone(suite.addrs[2], &ingest_secret, plan.ingest_for, 0).await?;
    let mut pushes = Vec::new();
    for clients in &plan.clients {
        let (rate, latencies) = pushgateway
            .ingest(*clients, ingest::WORKFLOWS, plan.ingest_for)
            .await?;
        pushes.push((*clients, rate, latencies.p50(), latencies.p99()));
    }
    // One client each, ReportRun and Pushgateway's pushes in alternating
    // rounds, so that both see the same moments of a shared machine.
    let mut alone_rounds = Vec::new();
    for round in 0..ALONE_ROUNDS {
        let first = (round as u64 + 1) * 1_000_000_000;
        let (ours, _) =
            webhooks::report_run_alone(suite.addrs[2], &ingest_secret, ALONE_ROUND, first).await?;
        let (theirs, _) = pushgateway
            .ingest(1, ingest::WORKFLOWS, ALONE_ROUND)
            .await?;
        alone_rounds.push((ours, theirs));
    }
    let hook_secret = suite.github_webhook("ingest").await?;
    let mut deliveries = Vec::new();
    for (i, concurrency) in plan.delivery_concurrency.iter().enumerate() {
        let first_id = (i as u64 + 1) * 1_000_000_000_000;
        deliveries.push(
            webhooks::deliveries(
                suite.addrs[4],
                "ingest",
                &hook_secret,
                *concurrency,
                plan.ingest_for,
                first_id,
            )
            .await?,
        );
    }
    let floor_db = match backend {
        Backend::Sqlite => format!("sqlite://{}", suite.dir.join("floor.db").display()),
        Backend::Postgres(_) => suite.workflow_run_db.clone(),
    };
    let floor_store = store(&floor_db, "bench_floor").await?;
    let mut floors_c = Vec::new();
    for clients in &plan.clients {
        floors_c.push(
            ingest::database_alone(floor_store.clone(), &ingest_org, *clients, plan.ingest_for)
                .await?,
        );
    }

    // Scrapes of growing organizations, with short and long histories seeded
    // straight into workflow-run-service's database through its data layer.
    // Floor (b) serves the bytes of the short-history organization nearest
    // 1,000 workflows, measured in batches alternating with that
    // organization's, so that both see the same moments of a shared machine.
    let seeder = store(&suite.workflow_run_db, "workflow_run_service").await?;
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let reference = *plan
        .org_sizes
        .iter()
        .min_by_key(|n| n.abs_diff(1_000))
        .context("no organization size")?;
    let mut scrapes = Vec::new();
    let mut floor_b = None;
    let mut seeded_runs = 0u64;
    let mut side_by_side = Vec::new();
    let mut formats = Vec::new();
    // The same organizations from a metrics-service sending native
    // histograms alone in protobuf.
    let (_native_only, native_only) = suite
        .extra_metrics_service(bin_dir, &["--protobuf-histograms", "native"])
        .await?;
    let hosts = [suite.addrs[3].to_string(), native_only.to_string()];
    for n in &plan.org_sizes {
        for (prefix, runs_per_workflow) in [("s", 10), ("l", (plan.long_history_runs / n).max(1))] {
            let name = format!("{prefix}{n}");
            let (org_id, secret) = suite.org_with_token(&name).await?;
            let seed = SeedPlan {
                org_id,
                project: "default".into(),
                workflows: *n,
                runs_per_workflow,
                runner: "GITHUB_ACTION".into(),
            };
            let runs = seeder.seed_history(&seed).await?;
            seeded_runs += runs;
            let url = format!("http://{}/prom/{name}/metrics", suite.addrs[3]);
            let count = if *n >= 10_000 {
                plan.scrapes.min(30)
            } else {
                plan.scrapes
            };
            let before = scrape::Counters::read(&http, &suite.addrs).await?;
            let body = scrape::fetch(&http, &url, Some(&secret), Encoding::Identity).await?;
            let floor_url = if *n == reference && prefix == "s" {
                let addr = scrape::serve_from_memory(body.clone(), Encoding::Identity).await?;
                Some(format!("http://{addr}/metrics"))
            } else {
                None
            };
            let mut measured = Repeated::default();
            let mut floor = Repeated::default();
            for _ in 0..plan.repetitions {
                measured.push(
                    scrape::batch(&http, &url, Some(&secret), Encoding::Identity, count).await?,
                );
                if let Some(floor_url) = &floor_url {
                    floor.push(
                        scrape::batch(&http, floor_url, None, Encoding::Identity, count).await?,
                    );
                }
            }
            let after = scrape::Counters::read(&http, &suite.addrs).await?;
            // The warm-up scrape counts too.
            let breakdown = before.per_scrape_ms(&after, count * plan.repetitions + 1);
            if floor_url.is_some() {
                floor_b = Some((*n, body.len(), floor));
            }
            let measured = scrape::Scrapes {
                latencies: measured,
                bytes: body.len(),
            };
            scrapes.push((*n, prefix == "l", runs, measured, breakdown));
            if prefix == "s" {
                let target = (url.as_str(), secret.as_str());
                side_by_side.push(
                    compare::scrapes(&http, target, &pushgateway, *n, count, plan.repetitions)
                        .await?,
                );
                formats.push(
                    formats::measure(
                        &http,
                        [&hosts[0], &hosts[1]],
                        (&name, &secret),
                        *n,
                        count,
                        plan.repetitions,
                    )
                    .await?,
                );
            }
        }
    }
    pushgateway.stop();
    let (reference, reference_bytes, floor_b) = floor_b.context("no floor (b)")?;

    // Ingestion again, now that the database holds every seeded history: does
    // it slow down as runs pile up (indexes, aggregates, WAL)?
    let mut with_history = Vec::new();
    if seeded_runs > 0 {
        for clients in &plan.clients {
            with_history.push(
                ingest::through_api(suite.addrs[2], &ingest_secret, *clients, plan.ingest_for)
                    .await?,
            );
        }
    }
    let loaded = suite.memory_mib();
    // Services give freed memory back on their own (every 10 s): 30 s on,
    // each should be back near idle.
    tokio::time::sleep(SETTLE).await;
    let settled = suite.memory_mib();
    let allocators = allocator_mib(&http, &suite.addrs).await;

    // The report.
    let _ = writeln!(
        out,
        "\n### Ingestion (run start + finish pairs, real gRPC and token authentication)\n"
    );
    let _ = writeln!(
        out,
        "| clients | pairs/s | StartRun p50 / p99 (ms) | FinishRun p50 / p99 (ms) | floor (c): database alone, pairs/s | floor ÷ runplane |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|");
    for (i, floor) in ingestion.iter().zip(&floors_c) {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2} / {:.2} | {:.2} / {:.2} | {:.0} | {:.2}× |",
            i.clients,
            i.pairs_per_second,
            i.start.p50(),
            i.start.p99(),
            i.finish.p50(),
            i.finish.p99(),
            floor,
            floor / i.pairs_per_second
        );
    }
    if !with_history.is_empty() {
        let _ = writeln!(
            out,
            "\nThe same ingestion with {seeded_runs} more runs stored (the seeded histories), against the fresh database above:\n"
        );
        let _ = writeln!(
            out,
            "| clients | fresh, pairs/s | {seeded_runs} runs stored, pairs/s | fresh ÷ stored |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|");
        for (fresh, stored) in ingestion.iter().zip(&with_history) {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.0} | {:.2}× |",
                fresh.clients,
                fresh.pairs_per_second,
                stored.pairs_per_second,
                fresh.pairs_per_second / stored.pairs_per_second
            );
        }
    }
    if let Some(pairs) = ingestion.iter().find(|i| i.clients == 1) {
        let _ = writeln!(
            out,
            "\nOne client, whole runs: ReportRun {report_rate:.0} runs/s (p50 {:.2} ms, p99 {:.2} ms) \
             against StartRun + FinishRun {:.0} runs/s: {:.2}×.",
            report_latencies.p50(),
            report_latencies.p99(),
            pairs.pairs_per_second,
            report_rate / pairs.pairs_per_second
        );
    }
    let _ = writeln!(
        out,
        "\n### Webhook deliveries (GitHub `workflow_run` completed, signed, each a new run, through ingest-service)\n"
    );
    let _ = writeln!(
        out,
        "| senders | deliveries/s | p50 (ms) | p99 (ms) | payload |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|");
    for d in &deliveries {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.2} | {:.2} | {} |",
            d.concurrency,
            d.per_second,
            d.latencies.p50(),
            d.latencies.p99(),
            size(d.payload_bytes)
        );
    }
    let _ = writeln!(out, "\n### Scrape (`GET /prom/{{org}}/metrics`)\n");
    let _ = writeln!(
        out,
        "p50 and p99 are the medians of {} batches' own, each of {} scrapes back to back \
         ({} for 10,000 workflows or more), after one warm-up.\n",
        plan.repetitions,
        plan.scrapes,
        plan.scrapes.min(30)
    );
    let _ = writeln!(
        out,
        "| workflows | history | runs in org | p50 (ms) | p99 (ms) | p99 of each batch, lowest – highest (ms) | size | p50 ÷ floor (b) p50 |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|");
    for (n, long, runs, s, _) in &scrapes {
        let (lowest, highest) = s.latencies.p99_range();
        let _ = writeln!(
            out,
            "| {n} | {} | {runs} | {:.2} | {:.2} | {lowest:.1} – {highest:.1} | {} | {:.1}× |",
            if *long { "long" } else { "10 runs/workflow" },
            s.latencies.p50(),
            s.latencies.p99(),
            size(s.bytes),
            s.latencies.p50() / floor_b.p50()
        );
    }
    let _ = writeln!(
        out,
        "\nWhere a scrape's time goes (means per scrape, from the services' own metrics: \
         metrics-service's wait on each call, and each process's CPU time):\n"
    );
    let _ = writeln!(
        out,
        "| workflows | history | {} | CPU ms: {} |",
        scrape::UPSTREAM_CALLS
            .map(|c| format!("{c} (ms)"))
            .join(" | "),
        scrape::SERVICES.join(" / ")
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---|");
    for (n, long, _, _, b) in &scrapes {
        let _ = writeln!(
            out,
            "| {n} | {} | {:.2} | {:.2} | {:.2} | {} |",
            if *long { "long" } else { "10 runs/workflow" },
            b.upstream_seconds[0],
            b.upstream_seconds[1],
            b.upstream_seconds[2],
            b.cpu_seconds.map(|ms| format!("{ms:.1}")).join(" / ")
        );
    }
    let _ = writeln!(
        out,
        "\nLong vs short history, same workflows (p50 ratio, target ≤ 1.2×):"
    );
    for n in &plan.org_sizes {
        let p50 = |long: bool| {
            scrapes
                .iter()
                .find(|s| s.0 == *n && s.1 == long)
                .map(|s| s.3.latencies.p50())
                .unwrap_or(f64::NAN)
        };
        let _ = write!(out, " {n}: {:.2}×;", p50(true) / p50(false));
    }
    let ours: Vec<(usize, f64)> = ingestion
        .iter()
        .map(|i| (i.clients, i.pairs_per_second))
        .collect();
    compare::report(&mut out, &side_by_side, &pushes, &ours, report_rate);
    compare::alone_rounds(&mut out, &alone_rounds);
    formats::report(&mut out, &formats);
    let _ = writeln!(out, "\n### Floors\n");
    let _ = writeln!(out, "| floor | p50 (ms) | p99 (ms) | samples |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let _ = writeln!(
        out,
        "| (a) gRPC health check, one hop | {:.3} | {:.3} | {} |",
        health.p50(),
        health.p99(),
        health.len()
    );
    let _ = writeln!(
        out,
        "| (b) HTTP, the {reference}-workflow scrape's bytes ({}) from memory, in batches beside its scrapes | {:.3} | {:.3} | {} in {} batches |",
        size(reference_bytes),
        floor_b.p50(),
        floor_b.p99(),
        floor_b.len(),
        floor_b.batches()
    );
    let _ = writeln!(
        out,
        "| (c) database alone, start + finish | see ingestion | | |"
    );
    let _ = writeln!(out, "\n### Resident memory (MiB)\n");
    let _ = writeln!(
        out,
        "| service | idle | right after the load | {0} s after | allocator {0} s after: in use / free |",
        SETTLE.as_secs()
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for (((name, before), (_, after)), (_, settled)) in idle.iter().zip(&loaded).zip(&settled) {
        let allocator = allocators
            .iter()
            .find(|(service, _)| service == name)
            .and_then(|(_, bytes)| *bytes)
            .map_or("n/a".to_owned(), |(in_use, free)| {
                format!("{in_use:.1} / {free:.1}")
            });
        let _ = writeln!(
            out,
            "| {name} | {before:.1} | {after:.1} | {settled:.1} | {allocator} |"
        );
    }
    suite.stop().await?;
    Ok(out)
}

/// Each service's allocator, from its own metrics: MiB in use and free.
async fn allocator_mib(
    http: &reqwest::Client,
    addrs: &[std::net::SocketAddr],
) -> Vec<(String, Option<(f64, f64)>)> {
    let names = [
        "org-service",
        "token-service",
        "workflow-run-service",
        "metrics-service",
        "ingest-service",
    ];
    let mut out = Vec::new();
    for (name, addr) in names.into_iter().zip(addrs) {
        let text = match http.get(format!("http://{addr}/metrics")).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let gauge = |metric: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(metric)?.strip_prefix(' '))
                .and_then(|v| v.parse::<f64>().ok())
                .map(|bytes| bytes / 1_048_576.0)
        };
        let bytes =
            gauge("runplane_allocator_in_use_bytes").zip(gauge("runplane_allocator_free_bytes"));
        out.push((name.to_owned(), bytes));
    }
    out
}

/// workflow-run-service's storage on `url`, reached directly.
async fn store(url: &str, schema: &str) -> anyhow::Result<Storage> {
    let args = DatabaseArgs {
        database_url: url.to_owned(),
        db_max_connections: 10,
        db_connect_timeout: Duration::from_secs(10),
        db_acquire_timeout: Duration::from_secs(30),
        database_schema: Some(schema.to_owned()),
    };
    Storage::open(&args, schema).await
}

pub(crate) fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().to_owned()))
        })
        .unwrap_or_default();
    format!("{cpu}, {memory} memory")
}
