//! TLS for deployments without a mesh: every server speaks TLS, every
//! inter-service call verifies its peer against the configured CA and presents
//! a client certificate (mutual TLS), and a client without the right
//! certificate, or talking plain text, gets nothing. The certificates are made
//! here, by the test (rcgen).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::{ClientTls, SERVICES, Suite, bin_dir, curl, free_port, grpc_health_tls};

/// A certificate and its private key, as PEM files.
type Pair = (PathBuf, PathBuf);

/// Two certificate authorities: the deployment's, and one it does not trust.
struct Pki {
    ca: PathBuf,
    server: Pair,
    client: Pair,
    other_ca: PathBuf,
    other_client: Pair,
}

impl Pki {
    fn new(dir: &Path) -> Self {
        let (ca, ca_pem) = authority(dir, "runplane test CA");
        let (other, other_pem) = authority(dir, "somebody else's CA");
        Pki {
            ca: ca_pem,
            server: leaf(
                dir,
                "server",
                &ca,
                &["localhost", "127.0.0.1"],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            client: leaf(dir, "client", &ca, &[], ExtendedKeyUsagePurpose::ClientAuth),
            other_ca: other_pem,
            other_client: leaf(
                dir,
                "other-client",
                &other,
                &[],
                ExtendedKeyUsagePurpose::ClientAuth,
            ),
        }
    }

    /// What every process of a mutual-TLS suite is given.
    fn mutual_env(&self) -> Vec<(String, String)> {
        let path = |p: &Path| p.display().to_string();
        [
            ("RUNPLANE_TLS_CERT", path(&self.server.0)),
            ("RUNPLANE_TLS_KEY", path(&self.server.1)),
            ("RUNPLANE_TLS_CLIENT_CA", path(&self.ca)),
            ("RUNPLANE_UPSTREAM_TLS_CA", path(&self.ca)),
            ("RUNPLANE_UPSTREAM_TLS_CERT", path(&self.client.0)),
            ("RUNPLANE_UPSTREAM_TLS_KEY", path(&self.client.1)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

fn authority(dir: &Path, name: &str) -> (CertifiedIssuer<'static, KeyPair>, PathBuf) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
    let path = dir.join(format!("{}.crt", name.replace(' ', "-")));
    std::fs::write(&path, ca.pem()).expect("write CA");
    (ca, path)
}

fn leaf(
    dir: &Path,
    name: &str,
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Pair {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("sign");
    let (cert_path, key_path) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_on_every_server_and_every_call() {
    let mut suite = Suite::new("");
    let pki = Pki::new(suite.dir.path());
    let client = ClientTls {
        ca: pki.ca.clone(),
        identity: Some(pki.client.clone()),
    };
    suite.env = pki.mutual_env();
    suite.tls = Some(client.clone());
    for service in SERVICES {
        suite.start_service(service).await;
    }

    // The CLI reaches the services over mutual TLS, and they reach each other:
    // token-service asks org-service, workflow-run-service asks token-service,
    // metrics-service asks all three.
    let (scraper, runner) = suite.org_with_tokens("cyberdyne").await;
    let env = [("RUNPLANE_TOKEN", runner.as_str())];
    let run = suite
        .cli_with_env(&["run", "start", "--workflow", "deploy", "-q"], &env)
        .await
        .ok();
    suite
        .cli_with_env(&["run", "finish", &run, "--status", "success"], &env)
        .await
        .ok();

    // Prometheus' scrape over HTTPS, on HTTP/1.1 and on HTTP/2.
    let url = format!("https://{}/prom/cyberdyne/metrics", suite.addrs[3]);
    let authorization = format!("Authorization: Bearer {scraper}");
    for version in ["--http1.1", "--http2"] {
        let (status, body) = curl(&url, Some(&client), &[version, "-H", &authorization])
            .await
            .expect("scrape over mutual TLS");
        assert_eq!(status, 200, "{version}: {body}");
        assert!(
            body.lines().any(|l| l.starts_with("chainloop_workflow_up{")
                && l.contains(r#"workflow="deploy""#)
                && l.ends_with(" 1")),
            "{version}: the finished run is not in the scrape:\n{body}"
        );
    }
    // Each gRPC port serves its own metrics over TLS too (plain HTTP/1.1 GET).
    for addr in &suite.addrs[..3] {
        let (status, body) = curl(
            &format!("https://{addr}/metrics"),
            Some(&client),
            &["--http1.1"],
        )
        .await
        .expect("own metrics over TLS");
        assert_eq!(status, 200);
        assert!(body.contains("grpc_server_handled_total"), "{body}");
    }

    // No client certificate, or one from another CA: no answer at all, on
    // HTTP or gRPC, whatever the bearer token.
    let refused = [
        (
            "no client certificate",
            ClientTls {
                ca: pki.ca.clone(),
                identity: None,
            },
        ),
        (
            "a client certificate from another CA",
            ClientTls {
                ca: pki.ca.clone(),
                identity: Some(pki.other_client.clone()),
            },
        ),
        (
            "a client that does not trust the server's CA",
            ClientTls {
                ca: pki.other_ca.clone(),
                identity: Some(pki.client.clone()),
            },
        ),
    ];
    for (who, tls) in &refused {
        let answer = curl(&url, Some(tls), &["-H", &authorization]).await;
        assert!(answer.is_err(), "{who}: scrape answered {answer:?}");
        for addr in &suite.addrs[..3] {
            let health = grpc_health_tls(*addr, tls).await;
            assert!(health.is_err(), "{who}: {addr} answered {health:?}");
        }
    }
    // Plain text on a TLS port gets no answer either.
    let plain = curl(
        &format!("http://{}/prom/cyberdyne/metrics", suite.addrs[3]),
        None,
        &["-H", &authorization],
    )
    .await;
    assert!(plain.is_err(), "plain HTTP answered {plain:?}");
    assert!(!crate::support::grpc_serving(suite.addrs[0], "").await);
    // The servers say why, without naming any secret (checked on drop).
    assert!(
        suite.log().contains("TLS handshake failed"),
        "{}",
        suite.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_tls_without_client_certificates() {
    let mut suite = Suite::new("");
    let pki = Pki::new(suite.dir.path());
    suite.env = vec![
        (
            "RUNPLANE_TLS_CERT".into(),
            pki.server.0.display().to_string(),
        ),
        (
            "RUNPLANE_TLS_KEY".into(),
            pki.server.1.display().to_string(),
        ),
    ];
    let client = ClientTls {
        ca: pki.ca.clone(),
        identity: None,
    };
    suite.tls = Some(client.clone());
    suite.start_service("org-service").await;

    assert_eq!(
        grpc_health_tls(suite.addrs[0], &client).await,
        Ok(ServingStatus::Serving)
    );
    let untrusting = ClientTls {
        ca: pki.other_ca.clone(),
        identity: None,
    };
    let answer = grpc_health_tls(suite.addrs[0], &untrusting).await;
    assert!(
        answer.is_err(),
        "an untrusted server was accepted: {answer:?}"
    );
}

#[test]
fn an_unusable_tls_file_stops_the_service_and_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new(dir.path());
    let admin = dir.path().join("admin-token");
    let secret =
        runplane_auth::secret::generate(runplane_auth::secret::SecretKind::Admin).expect("rng");
    std::fs::write(&admin, secret).expect("admin token");
    let missing = dir.path().join("missing.key");
    // A key that is not the certificate's, and a key file that is not there.
    let cases = [
        ("org-service", pki.client.1.clone(), "cannot serve with it"),
        (
            "metrics-service",
            missing.clone(),
            "cannot read tls-key file",
        ),
    ];
    for (service, key, expected) in cases {
        let mut command = Command::new(bin_dir().join(service));
        command
            .args(["--listen-addr", &free_port().to_string()])
            .arg("--tls-cert")
            .arg(&pki.server.0)
            .arg("--tls-key")
            .arg(&key)
            .env("RUNPLANE_ADMIN_TOKEN_FILE", &admin)
            .env_remove("RUNPLANE_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if service == "org-service" {
            command
                .arg("--database-url")
                .arg(format!("sqlite://{}", dir.path().join("org.db").display()));
        }
        let output = command.output().expect("run service");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{service} started: {stderr}");
        assert!(
            stderr.contains(expected) && stderr.contains(&key.display().to_string()),
            "{service}: {stderr}"
        );
    }
}
