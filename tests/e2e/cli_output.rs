//! The CLI a person reaches for: `get` and `list` of every kind of thing, in
//! text, JSON (`--output json`) and ids (`-q`); the CI's own workflow name as
//! `--workflow`'s default; shell completions; clear words for what is missing.

use serde_json::Value;

use crate::support::Suite;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_thing_can_be_got_and_listed_as_text_json_and_ids() {
    let mut suite = Suite::new("");
    suite.up().await;

    // Organizations.
    let created = json(
        &suite
            .cli(&[
                "organization",
                "create",
                "--name",
                "cyberdyne",
                "-o",
                "json",
            ])
            .await
            .ok(),
    );
    assert_eq!(created["name"], "cyberdyne");
    assert_eq!(created["prometheus_metrics_enabled"], true);
    let got = json(
        &suite
            .cli(&[
                "--output",
                "json",
                "organization",
                "get",
                "--name",
                "cyberdyne",
            ])
            .await
            .ok(),
    );
    assert_eq!(got["id"], created["id"]);
    let text = suite
        .cli(&["organization", "get", "--name", "cyberdyne"])
        .await
        .ok();
    assert!(text.contains("cyberdyne") && text.contains("on"), "{text}");
    let missing = suite
        .cli(&["organization", "get", "--name", "acme-corp"])
        .await
        .err();
    assert!(missing.contains("acme-corp"), "{missing}");
    let listed = json(
        &suite
            .cli(&["organization", "list", "-o", "json"])
            .await
            .ok(),
    );
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    // Tokens: the secret in the creation's JSON, never in a listing; revoked
    // ones with --all; when each was last used.
    let ci = json(
        &suite
            .cli_with_env(
                &[
                    "organization",
                    "api-token",
                    "create",
                    "--org",
                    "cyberdyne",
                    "--name",
                    "ci",
                    "--scope",
                    "runs:write,metrics:read",
                ],
                &[("RUNPLANE_OUTPUT", "json")],
            )
            .await
            .ok(),
    );
    let secret = ci["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("rpt_"), "{ci}");
    assert_eq!(ci["last_used_time"], Value::Null);
    let old = suite.token("cyberdyne", "old", &[]).await;
    suite
        .cli(&[
            "organization",
            "api-token",
            "revoke",
            "--org",
            "cyberdyne",
            "--name",
            "old",
        ])
        .await
        .ok();
    assert!(!old.is_empty());
    let env = [("RUNPLANE_TOKEN", secret.as_str())];

    // The workflow's name comes from the CI's own variables.
    let github = [
        ("RUNPLANE_TOKEN", secret.as_str()),
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_WORKFLOW", "Release"),
        ("GITHUB_SERVER_URL", "https://github.com"),
        ("GITHUB_REPOSITORY", "cyberdyne/app"),
        ("GITHUB_RUN_ID", "42"),
    ];
    let started = json(
        &suite
            .cli_with_env(&["run", "start", "-o", "json"], &github)
            .await
            .ok(),
    );
    assert_eq!(started["workflow"], "Release");
    assert_eq!(started["runner"], "GITHUB_ACTION");
    assert_eq!(started["status"], "running");
    let release_run = started["id"].as_str().expect("id").to_owned();
    let gitlab = [
        ("RUNPLANE_TOKEN", secret.as_str()),
        ("GITLAB_CI", "true"),
        ("CI_PIPELINE_NAME", "unit-tests"),
        ("CI_JOB_NAME", "test-job"),
    ];
    suite
        .cli_with_env(&["run", "exec", "--project", "web", "--", "false"], &gitlab)
        .await
        .err();
    let unnamed = suite.cli_with_env(&["run", "start"], &env).await.err();
    assert!(unnamed.contains("--workflow"), "{unnamed}");

    // Runs: get and list, filtered by project alone, by the states the list prints.
    let got = json(
        &suite
            .cli_with_env(&["run", "get", &release_run, "-o", "json"], &env)
            .await
            .ok(),
    );
    assert_eq!(
        got["run_url"],
        "https://github.com/cyberdyne/app/actions/runs/42"
    );
    let text = suite
        .cli_with_env(&["run", "get", &release_run], &env)
        .await
        .ok();
    assert!(
        text.contains("default/Release") && text.contains("running"),
        "{text}"
    );
    let web = json(
        &suite
            .cli_with_env(&["run", "list", "--project", "web", "-o", "json"], &env)
            .await
            .ok(),
    );
    let web = web.as_array().expect("array");
    assert_eq!(web.len(), 1, "{web:?}");
    assert_eq!(web[0]["workflow"], "unit-tests");
    assert_eq!(web[0]["status"], "error");
    assert_eq!(web[0]["reason"], "exit code 1");
    let table = suite.cli_with_env(&["run", "list"], &env).await.ok();
    for column in ["RUNNER", "URL", "REASON", "GITLAB_PIPELINE", "exit code 1"] {
        assert!(table.contains(column), "{column}: {table}");
    }
    let running = suite
        .cli_with_env(&["run", "list", "--status", "running", "-q"], &env)
        .await
        .ok();
    assert_eq!(running, release_run);
    let gone = suite
        .cli_with_env(
            &["run", "get", "01a20c9e-010e-7721-aa18-340c41e1eeee"],
            &env,
        )
        .await
        .err();
    assert!(
        gone.contains("not found") || gone.contains("no run"),
        "{gone}"
    );

    // Workflows.
    let workflows = json(
        &suite
            .cli_with_env(&["workflow", "list", "-o", "json"], &env)
            .await
            .ok(),
    );
    let mut names: Vec<String> = workflows
        .as_array()
        .expect("array")
        .iter()
        .map(|w| {
            format!(
                "{}/{}",
                w["project"].as_str().unwrap_or(""),
                w["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    names.sort();
    assert_eq!(names, ["default/Release", "web/unit-tests"]);
    let web_only = suite
        .cli_with_env(&["workflow", "list", "--project", "web", "-q"], &env)
        .await
        .ok();
    assert_eq!(web_only, "web/unit-tests");

    // The listing: no secrets, the revoked token with --all, a last use.
    let tokens = json(
        &suite
            .cli(&[
                "organization",
                "api-token",
                "list",
                "--org",
                "cyberdyne",
                "--all",
                "-o",
                "json",
            ])
            .await
            .ok(),
    );
    let tokens = tokens.as_array().expect("array");
    assert!(
        tokens.iter().all(|t| t.get("secret").is_none()),
        "{tokens:?}"
    );
    let by_name = |name: &str| {
        tokens
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {tokens:?}"))
    };
    assert_eq!(by_name("old")["state"], "revoked");
    assert_eq!(by_name("old")["last_used_time"], Value::Null);
    assert!(by_name("ci")["last_used_time"].is_string(), "{tokens:?}");
    let live = suite
        .cli(&[
            "organization",
            "api-token",
            "list",
            "--org",
            "cyberdyne",
            "-q",
        ])
        .await
        .ok();
    assert_eq!(live, "ci");
    // -q wins over RUNPLANE_OUTPUT=json: `ID=$(runplane run start … -q)` holds the id.
    let quiet = suite
        .cli_with_env(
            &["run", "start", "--workflow", "build", "-q"],
            &[
                ("RUNPLANE_TOKEN", secret.as_str()),
                ("RUNPLANE_OUTPUT", "json"),
            ],
        )
        .await
        .ok();
    assert_eq!(quiet.len(), 36, "a bare run id: {quiet}");
    // A reader that has gone (`| head -1`) ends the listing quietly.
    let piped = suite.cli_into_closed_pipe(&["run", "list"], &env).await;
    assert!(piped.status.success(), "{piped:?}");
    assert!(!piped.stderr.contains("panicked"), "{}", piped.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_missing_credentials_are_handled_without_services() {
    let suite = Suite::new("");
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef runplane"),
        ("fish", "complete -c runplane"),
    ] {
        let script = suite.cli(&["completion", shell]).await.ok();
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("api-token"),
            "{shell} completes subcommands"
        );
    }
    for args in [&["completion", "bash"][..], &["admin-token", "generate"]] {
        let piped = suite.cli_into_closed_pipe(args, &[]).await;
        assert!(piped.status.success(), "{args:?}: {piped:?}");
        assert!(!piped.stderr.contains("panicked"), "{}", piped.stderr);
    }
    let unknown = suite.cli(&["completion", "tcsh"]).await.err();
    assert!(unknown.contains("bash"), "{unknown}");
    let no_token = suite
        .cli(&["run", "start", "--workflow", "build"])
        .await
        .err();
    assert!(no_token.contains("RUNPLANE_TOKEN"), "{no_token}");
    let garbled = suite
        .cli_with_env(&["run", "list"], &[("RUNPLANE_TOKEN", "rpt_caf\u{e9}")])
        .await
        .err();
    assert!(garbled.contains("characters no token has"), "{garbled}");
}
