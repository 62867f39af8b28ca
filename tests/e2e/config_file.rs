//! The shared config file does what the README says: a top-level key applies
//! to every service that has it, a key no service has (or a key in a section
//! whose service lacks it) is refused naming it, a bad value names the file and
//! the key, `runplane up` and the CLI take the services' addresses from it, and
//! a flag always wins.

use std::process::{Command, Output};

use runplane_api::workflowrun::v1::StartRunRequest;
use tonic::Code;

use crate::support::{Suite, bearer, bin_dir, free_port, grpc_serving};

/// Runs `binary` with `args` in `dir`, without any runplane setting from the
/// environment.
fn run(dir: &std::path::Path, binary: &str, args: &[&str]) -> Output {
    let mut command = Command::new(bin_dir().join(binary));
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RUNPLANE_") {
            command.env_remove(name);
        }
    }
    command.output().expect("run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_level_setting_applies_to_every_service_that_has_it() {
    // None of these is shared by all four services; each applies where it is had.
    let mut suite = Suite::new(
        "max_workflows_per_org: 1\nrun_timeout: 2h\nrequest_timeout: 20s\n\
         metrics_namespace: acme\n",
    );
    suite.up().await;
    let (prom, runner) = suite.org_with_tokens("cyberdyne").await;
    let mut runs = suite.workflow_runs().await;
    let start = |workflow: &str| StartRunRequest {
        workflow: workflow.into(),
        ..StartRunRequest::default()
    };
    runs.start_run(bearer(start("one"), &runner))
        .await
        .expect("the first workflow");
    let refused = runs
        .start_run(bearer(start("two"), &runner))
        .await
        .expect_err("past the limit the top level set");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let scrape = suite
        .scrape("cyberdyne", Some(&format!("Bearer {prom}")))
        .await;
    assert!(
        scrape.body.contains("acme_workflow_runs_in_progress"),
        "{}",
        scrape.body
    );
}

#[test]
fn keys_no_service_has_and_bad_values_are_refused_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("runplane.yaml");
    let cases = [
        ("run_timout: 1h\n", "`run_timout`"),
        ("listen_addr: 127.0.0.1:1\n", "`listen_addr`"),
        (
            "metrics_service:\n  run_timeout: 1h\n",
            "unknown setting `run_timeout` in section `metrics_service`",
        ),
        ("upstream_timeout: soon\n", "`upstream_timeout`"),
        (
            "metrics_service:\n  listen_addr: localhost:8080\n",
            "`listen_addr`",
        ),
    ];
    for (text, named) in cases {
        std::fs::write(&file, text).expect("write");
        let out = run(
            dir.path(),
            "metrics-service",
            &["--config", &file.to_string_lossy()],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{text}: {stderr}");
        assert!(stderr.contains(named), "{text}: {stderr}");
        assert!(
            stderr.contains(&*file.to_string_lossy()),
            "{text}: {stderr}"
        );
    }
    // A list of records (deploy_workflows): the item and the reason named.
    for (text, reason) in [
        (
            "workflow_run_service:\n  deploy_workflows:\n    - {workflow: Deploy}\n",
            "each with at least workflow and environment",
        ),
        (
            "workflow_run_service:\n  deploy_workflows:\n    - {workflow: Deploy, env: prod}\n",
            "item 1: unknown field `env`",
        ),
        (
            "workflow_run_service:\n  deploy_workflows:\n    - {workflow: Deploy, environment: \"\"}\n",
            "environment name",
        ),
    ] {
        std::fs::write(&file, text).expect("write");
        let out = run(
            dir.path(),
            "workflow-run-service",
            &["--config", &file.to_string_lossy()],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{text}: {stderr}");
        assert!(
            stderr.contains("`deploy_workflows`") && stderr.contains(reason),
            "{text}: {stderr}"
        );
    }
    // A good flag over a bad value in the file: the flag wins, the file's
    // value is never parsed as this service's.
    std::fs::write(&file, "upstream_timeout: soon\n").expect("write");
    let out = run(
        dir.path(),
        "metrics-service",
        &[
            "--config",
            &file.to_string_lossy(),
            "--upstream-timeout",
            "2s",
            "--help",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A bad flag is the command line's mistake: clap's usage message.
    let out = run(
        dir.path(),
        "metrics-service",
        &["--upstream-timeout", "soon"],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_and_the_cli_take_the_services_addresses_from_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let [org, token, workflow_run, metrics] = [free_port(), free_port(), free_port(), free_port()];
    let file = dir.path().join("runplane.yaml");
    std::fs::write(
        &file,
        format!(
            "org_service_addr: {org}\ntoken_service_addr: {token}\n\
             workflow_run_service_addr: 127.0.0.1:1\n\
             workflow_run_service:\n  listen_addr: {workflow_run}\n\
             metrics_service:\n  listen_addr: {metrics}\n"
        ),
    )
    .expect("write");
    let config = file.to_string_lossy().into_owned();
    let mut up = Command::new(bin_dir().join("runplane"));
    up.current_dir(dir.path()).args(["up", "--config", &config]);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RUNPLANE_") {
            up.env_remove(name);
        }
    }
    let log = std::fs::File::create(dir.path().join("up.log")).expect("log");
    let mut up = up
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("runplane up");
    let up_log = || std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !up_log().contains("Press Ctrl-C to stop.") {
        assert!(
            std::time::Instant::now() < deadline && up.try_wait().expect("wait").is_none(),
            "the suite did not start:\n{}",
            up_log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for addr in [org, token, workflow_run] {
        assert!(grpc_serving(addr, "").await, "nothing serves at {addr}");
    }

    // The CLI finds them through the same file: no address given.
    let out = run(
        dir.path(),
        "runplane",
        &[
            "--config",
            &config,
            "organization",
            "create",
            "--name",
            "cyberdyne",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(
        dir.path(),
        "runplane",
        &["--config", &config, "organization", "list", "-q"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cyberdyne");
    // A flag wins over the file: this one points nowhere.
    let out = run(
        dir.path(),
        "runplane",
        &[
            "--config",
            &config,
            "--org-service-addr",
            "127.0.0.1:1",
            "--call-timeout",
            "1s",
            "organization",
            "list",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(up.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = up.wait().expect("wait");
    assert!(status.success(), "{}", up_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_file_flag_wins_over_the_file() {
    let suite = Suite::new("admin_token_file: from-the-file\n");
    let flag = suite.dir.path().join("from-the-flag");
    // A port taken: up fails at once, after generating the credential where
    // the flag says.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let out = suite
        .cli(&[
            "up",
            "--config",
            &suite.config.to_string_lossy(),
            "--admin-token-file",
            &flag.to_string_lossy(),
            "--metrics-addr",
            &taken.local_addr().expect("addr").to_string(),
        ])
        .await;
    assert!(!out.status.success());
    assert!(flag.exists(), "{}", out.stderr);
    assert!(!suite.dir.path().join("from-the-file").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_refuses_at_once_a_file_that_has_the_services_serve_tls() {
    let suite = Suite::new("tls_cert: /etc/runplane/tls.crt\ntls_key: /etc/runplane/tls.key\n");
    let out = suite.up_to_completion().await;
    assert!(!out.status.success());
    // Refused before anything starts, not after waiting for readiness.
    assert!(out.stderr.contains("plain text"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("did not become ready"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_says_where_the_data_is_when_the_file_puts_it_elsewhere() {
    let mut suite = Suite::new("");
    if suite.database_url().is_some() {
        // In PostgreSQL mode `--database-url` decides; covered by postgres.rs.
        return;
    }
    let elsewhere = suite.dir.path().join("elsewhere").join("org.db");
    let mut config = std::fs::read_to_string(&suite.config).expect("config");
    config.push_str(&format!(
        "org_service:\n  database_url: sqlite://{}\n",
        elsewhere.display()
    ));
    std::fs::write(&suite.config, config).expect("write");
    suite.up().await;
    let said = suite.up_output();
    assert!(
        said.contains(&format!("Data in sqlite://{}", elsewhere.display())),
        "{said}"
    );
    assert!(elsewhere.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_admin_credential_runs_a_deployment() {
    let mut suite = Suite::new("");
    let file = suite.dir.path().join("generated-admin-token");
    let path = file.to_string_lossy().into_owned();
    suite
        .cli(&["admin-token", "generate", "--file", &path])
        .await
        .ok();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&file).expect("written").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let credential = std::fs::read_to_string(&file).expect("read");
    assert!(credential.trim().starts_with("rpa_"), "{credential}");
    // Never overwritten.
    suite
        .cli(&["admin-token", "generate", "--file", &path])
        .await
        .err();
    assert_eq!(std::fs::read_to_string(&file).expect("read"), credential);

    // The suite takes it from the file instead of minting its own, and the
    // CLI manages with it.
    let mut config = std::fs::read_to_string(&suite.config).expect("config");
    config.push_str(&format!("admin_token_file: {path}\n"));
    std::fs::write(&suite.config, config).expect("write");
    suite.up().await;
    suite
        .cli(&[
            "--admin-token-file",
            &path,
            "organization",
            "create",
            "--name",
            "cyberdyne",
        ])
        .await
        .ok();
    assert!(!suite.data_dir().join("admin-token").exists());
}

/// `--help` shows each setting's effective value, except the database URL's:
/// a PostgreSQL URL may hold a password, from the environment or the file.
#[test]
fn help_never_shows_a_database_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("runplane.yaml");
    std::fs::write(
        &config,
        "org_service:\n  database_url: postgres://runplane:file-password@db/runplane\n",
    )
    .expect("config");
    let config = config.to_string_lossy().into_owned();
    let from_file = run(dir.path(), "org-service", &["--config", &config, "--help"]);
    let help = String::from_utf8_lossy(&from_file.stdout);
    assert!(
        from_file.status.success() && help.contains("--database-url"),
        "{help}"
    );
    assert!(!help.contains("file-password"), "{help}");
    for binary in ["token-service", "runplane"] {
        let mut command = Command::new(bin_dir().join(binary));
        let args: &[&str] = if binary == "runplane" {
            &["up", "--help"]
        } else {
            &["--help"]
        };
        let output = command
            .current_dir(dir.path())
            .args(args)
            .env(
                "RUNPLANE_DATABASE_URL",
                "postgres://runplane:env-password@db/runplane",
            )
            .output()
            .expect("run");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("--database-url"), "{binary}: {help}");
        assert!(!help.contains("env-password"), "{binary}: {help}");
    }
}
