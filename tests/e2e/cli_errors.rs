//! Bad input through the CLI gets a message a person can act on, and loses nothing.

use crate::support::Suite;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_errors_are_clear() {
    let mut suite = Suite::new("");
    suite.up().await;

    let bad = suite
        .cli(&["organization", "create", "--name", "Cyber_Dyne"])
        .await
        .err();
    assert!(
        bad.contains("DNS-1123") && bad.contains("Cyber_Dyne"),
        "{bad}"
    );
    let long = "a".repeat(64);
    assert!(
        suite
            .cli(&["organization", "create", "--name", &long])
            .await
            .err()
            .contains("DNS-1123")
    );

    suite
        .cli(&["organization", "create", "--name", "cyberdyne"])
        .await
        .ok();
    let twice = suite
        .cli(&["organization", "create", "--name", "cyberdyne"])
        .await
        .err();
    assert!(twice.contains("already exists"), "{twice}");

    let nowhere = suite
        .cli(&[
            "organization",
            "api-token",
            "create",
            "--name",
            "prom",
            "--org",
            "nowhere",
        ])
        .await
        .err();
    assert!(
        nowhere.contains("organization \"nowhere\" not found"),
        "{nowhere}"
    );
    suite.token("cyberdyne", "prom", &[]).await;
    let dup = suite
        .cli(&[
            "organization",
            "api-token",
            "create",
            "--name",
            "prom",
            "--org",
            "cyberdyne",
        ])
        .await
        .err();
    assert!(
        dup.contains("already has a live token named \"prom\""),
        "{dup}"
    );
    let scope = suite
        .cli(&[
            "organization",
            "api-token",
            "create",
            "--name",
            "x",
            "--org",
            "cyberdyne",
            "--scope",
            "admin",
        ])
        .await
        .err();
    assert!(
        scope.contains("runs:write, metrics:read or workflows:delete"),
        "{scope}"
    );
    let revoke = suite
        .cli(&[
            "organization",
            "api-token",
            "revoke",
            "--name",
            "nope",
            "--org",
            "cyberdyne",
        ])
        .await
        .err();
    assert!(revoke.contains("no live token named \"nope\""), "{revoke}");
    let delete = suite
        .cli(&["organization", "delete", "--name", "nowhere"])
        .await
        .err();
    assert!(delete.contains("not found"), "{delete}");

    // Management needs the admin credential: a wrong one is refused, a missing one explained.
    let wrong =
        runplane_auth::secret::generate(runplane_auth::secret::SecretKind::Admin).expect("rng");
    let refused = suite
        .cli_with_env(
            &["organization", "list"],
            &[("RUNPLANE_ADMIN_TOKEN", &wrong)],
        )
        .await
        .err();
    assert!(refused.contains("refused the credential"), "{refused}");
    let token = suite.token("cyberdyne", "ci", &[]).await;
    let not_admin = suite
        .cli_with_env(
            &["organization", "list"],
            &[("RUNPLANE_ADMIN_TOKEN", &token)],
        )
        .await
        .err();
    assert!(not_admin.contains("malformed"), "{not_admin}");
    let missing = suite
        .cli_with_env(
            &["organization", "list"],
            &[("RUNPLANE_DATA_DIR", "/nonexistent")],
        )
        .await
        .err();
    assert!(
        missing.contains("admin-token") && missing.contains("runplane up"),
        "{missing}"
    );

    // An address that is another service's, or not a gRPC service at all:
    // named, with the setting to check.
    let token_service = suite.addrs[1].to_string();
    let elsewhere = suite
        .cli(&["--org-service-addr", &token_service, "organization", "list"])
        .await
        .err();
    assert!(
        elsewhere.contains(&format!("{token_service} does not serve org-service's API"))
            && elsewhere.contains("--org-service-addr"),
        "{elsewhere}"
    );
    let http = suite.addrs[3].to_string();
    let not_grpc = suite
        .cli(&["--org-service-addr", &http, "organization", "list"])
        .await
        .err();
    assert!(
        not_grpc.contains(&http) && not_grpc.contains("not gRPC"),
        "{not_grpc}"
    );

    // Runner mistakes: no token, bad status, unknown run, unknown runner.
    let no_token = suite.cli(&["run", "start", "--workflow", "w"]).await.err();
    assert!(no_token.contains("--token"), "{no_token}");
    let env = [("RUNPLANE_TOKEN", token.as_str())];
    let status = suite
        .cli_with_env(&["run", "finish", "x", "--status", "done"], &env)
        .await
        .err();
    assert!(
        status.contains("success") && status.contains("canceled"),
        "{status}"
    );
    let unknown = suite
        .cli_with_env(
            &[
                "run",
                "finish",
                "01a20c9e-010e-7721-aa18-340c41e1eeee",
                "--status",
                "success",
            ],
            &env,
        )
        .await
        .err();
    assert!(unknown.contains("not found"), "{unknown}");
    let malformed = suite
        .cli_with_env(
            &["run", "finish", "no-such-run", "--status", "success"],
            &env,
        )
        .await
        .err();
    assert!(malformed.contains("is not a run id"), "{malformed}");
    let runner = suite
        .cli_with_env(
            &["run", "start", "--workflow", "w", "--runner", "travis"],
            &env,
        )
        .await
        .err();
    assert!(runner.contains("GITHUB_ACTION"), "{runner}");
    let url = suite
        .cli_with_env(
            &["run", "start", "--workflow", "w", "--run-url", "ftp://x"],
            &env,
        )
        .await
        .err();
    assert!(url.contains("run_url"), "{url}");
    let missing_cmd = suite
        .cli_with_env(
            &["run", "exec", "--workflow", "w", "--", "/no/such/binary"],
            &env,
        )
        .await;
    assert_eq!(missing_cmd.status.code(), Some(127), "{missing_cmd:#?}");

    // Nothing was lost along the way: one org, two live tokens, the one exec run (as an error).
    assert_eq!(
        suite.cli(&["organization", "list", "-q"]).await.ok(),
        "cyberdyne"
    );
    let tokens = suite
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
    assert_eq!(tokens.lines().count(), 2, "{tokens}");
    let runs = suite
        .cli_with_env(&["run", "list", "--status", "error", "-q"], &env)
        .await
        .ok();
    assert_eq!(runs.lines().count(), 1, "{runs}");
}
