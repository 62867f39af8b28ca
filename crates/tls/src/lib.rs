//! TLS for deployments without a service mesh: every gRPC server and
//! metrics-service's HTTP server can serve TLS, optionally requiring client
//! certificates (mutual TLS), and calls to peer services can verify them
//! against a configured CA and present a client certificate.
//!
//! Certificates and keys are PEM files, read once at start-up; a file that is
//! missing, empty or does not match its pair stops the service with a message
//! that names it. rustls with the ring provider (the one sqlx already uses).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{RootCertStore, ServerConfig};

/// ALPN protocols a server offers: HTTP/2 for gRPC, HTTP/1.1 for plain
/// `GET /metrics` and `/prom` clients.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// How a server speaks TLS. Without `--tls-cert` it speaks plain TCP (behind a
/// mesh or on loopback).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerTlsArgs {
    /// PEM certificate chain to serve with; the server then accepts TLS only.
    #[arg(long, env = "RUNPLANE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "RUNPLANE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: clients must present a certificate signed by one
    /// of them (mutual TLS).
    #[arg(long, env = "RUNPLANE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

/// How calls to peer services speak TLS. Any of these makes a peer address
/// without a scheme (`host:port`) mean `https://host:port`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientTlsArgs {
    /// PEM CA certificates that peers' server certificates must chain to
    /// (default for https:// peers: the Mozilla root store).
    #[arg(long, global = true, env = "RUNPLANE_UPSTREAM_TLS_CA")]
    pub upstream_tls_ca: Option<PathBuf>,
    /// PEM certificate chain to present to peers that require mutual TLS.
    #[arg(
        long,
        global = true,
        env = "RUNPLANE_UPSTREAM_TLS_CERT",
        requires = "upstream_tls_key"
    )]
    pub upstream_tls_cert: Option<PathBuf>,
    /// PEM private key of --upstream-tls-cert.
    #[arg(
        long,
        global = true,
        env = "RUNPLANE_UPSTREAM_TLS_KEY",
        requires = "upstream_tls_cert"
    )]
    pub upstream_tls_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// Whether any client TLS setting is given.
    pub fn is_set(&self) -> bool {
        self.upstream_tls_ca.is_some()
            || self.upstream_tls_cert.is_some()
            || self.upstream_tls_key.is_some()
    }
}

/// A TLS file that cannot be used, named with the setting it came from.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {setting} file {path}: {cause}")]
    Read {
        setting: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{setting} file {path} holds no PEM {expected}")]
    Empty {
        setting: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("{setting} file {path}: {cause}")]
    Invalid {
        setting: &'static str,
        path: PathBuf,
        cause: String,
    },
    #[error("--{setting} is set without --{missing}")]
    Unpaired {
        setting: &'static str,
        missing: &'static str,
    },
}

/// The ring provider, named explicitly: the process may link more than one.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|cause| TlsError::Read {
        setting,
        path: path.to_owned(),
        cause,
    })
}

/// Reads a PEM file's certificates (at least one), returning them with the
/// file's bytes.
fn read_certificates(
    setting: &'static str,
    path: &Path,
) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), TlsError> {
    let pem = read(setting, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            setting,
            path: path.to_owned(),
            cause: e.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::Empty {
            setting,
            path: path.to_owned(),
            expected: "certificate",
        });
    }
    Ok((pem, certificates))
}

/// Reads a PEM file's private key, returning it with the file's bytes.
fn read_private_key(
    setting: &'static str,
    path: &Path,
) -> Result<(Vec<u8>, PrivateKeyDer<'static>), TlsError> {
    let pem = read(setting, path)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            setting,
            path: path.to_owned(),
            expected: "private key (PKCS#8, PKCS#1 or SEC1)",
        },
        e => TlsError::Invalid {
            setting,
            path: path.to_owned(),
            cause: e.to_string(),
        },
    })?;
    Ok((pem, key))
}

/// A PEM file of CA certificates, as a root store, with the file's bytes.
fn roots(setting: &'static str, path: &Path) -> Result<(Vec<u8>, RootCertStore), TlsError> {
    let (pem, certificates) = read_certificates(setting, path)?;
    let mut roots = RootCertStore::empty();
    for certificate in certificates {
        roots.add(certificate).map_err(|e| TlsError::Invalid {
            setting,
            path: path.to_owned(),
            cause: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok((pem, roots))
}

/// The server's rustls configuration, or `None` when it serves plain TCP.
pub fn server_config(args: &ServerTlsArgs) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let (cert_path, key_path) = match (&args.tls_cert, &args.tls_key) {
        (None, None) if args.tls_client_ca.is_none() => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (None, _) => {
            return Err(TlsError::Unpaired {
                setting: if args.tls_key.is_some() {
                    "tls-key"
                } else {
                    "tls-client-ca"
                },
                missing: "tls-cert",
            });
        }
        (Some(_), None) => {
            return Err(TlsError::Unpaired {
                setting: "tls-cert",
                missing: "tls-key",
            });
        }
    };
    let (_, chain) = read_certificates("tls-cert", cert_path)?;
    let (_, key) = read_private_key("tls-key", key_path)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid {
            setting: "tls-cert",
            path: cert_path.clone(),
            cause: e.to_string(),
        })?;
    let builder = match &args.tls_client_ca {
        Some(ca_path) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots("tls-client-ca", ca_path)?.1),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Invalid {
                setting: "tls-client-ca",
                path: ca_path.clone(),
                cause: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Invalid {
            setting: "tls-key",
            path: key_path.clone(),
            cause: format!("cannot serve with it and {}: {e}", cert_path.display()),
        })?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Some(Arc::new(config)))
}

/// tonic's client TLS configuration for `https://` peers: the configured CA
/// (else the Mozilla roots) and, for mutual TLS, the client certificate.
pub fn client_config(args: &ClientTlsArgs) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let mut config = ClientTlsConfig::new();
    config = match &args.upstream_tls_ca {
        Some(path) => {
            // Parsed here too (tonic would only fail at the first call), so
            // that a bad file is named at start-up.
            let (pem, _) = roots("upstream-tls-ca", path)?;
            config.ca_certificate(Certificate::from_pem(pem))
        }
        None => config.with_webpki_roots(),
    };
    match (&args.upstream_tls_cert, &args.upstream_tls_key) {
        (Some(cert), Some(key)) => {
            let (cert, _) = read_certificates("upstream-tls-cert", cert)?;
            let (key, _) = read_private_key("upstream-tls-key", key)?;
            config = config.identity(Identity::from_pem(cert, key));
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(TlsError::Unpaired {
                setting: "upstream-tls-cert",
                missing: "upstream-tls-key",
            });
        }
        (None, Some(_)) => {
            return Err(TlsError::Unpaired {
                setting: "upstream-tls-key",
                missing: "upstream-tls-cert",
            });
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            Files {
                dir: tempfile::tempdir().expect("tempdir"),
            }
        }

        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, contents).expect("write");
            path
        }

        /// A self-signed certificate and its key.
        fn pair(&self, prefix: &str) -> (PathBuf, PathBuf) {
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
                .expect("params")
                .self_signed(&key)
                .expect("self-signed");
            (
                self.write(&format!("{prefix}.crt"), &cert.pem()),
                self.write(&format!("{prefix}.key"), &key.serialize_pem()),
            )
        }
    }

    fn server(cert: &Path, key: &Path, ca: Option<&Path>) -> ServerTlsArgs {
        ServerTlsArgs {
            tls_cert: Some(cert.to_owned()),
            tls_key: Some(key.to_owned()),
            tls_client_ca: ca.map(Path::to_owned),
        }
    }

    #[test]
    fn no_settings_means_plain_tcp() {
        assert!(
            server_config(&ServerTlsArgs::default())
                .expect("plain")
                .is_none()
        );
    }

    #[test]
    fn a_matching_pair_serves_h2_and_http1_with_or_without_client_ca() {
        let files = Files::new();
        let (cert, key) = files.pair("server");
        let config = server_config(&server(&cert, &key, None))
            .expect("valid")
            .expect("tls");
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(
            server_config(&server(&cert, &key, Some(&cert)))
                .expect("mutual")
                .is_some()
        );
    }

    #[test]
    fn bad_files_are_named() {
        let files = Files::new();
        let (cert, key) = files.pair("server");
        let (_, other_key) = files.pair("other");
        let garbage = files.write("garbage.pem", "not pem at all\n");
        let missing = files.dir.path().join("missing.pem");

        let message = |args: ServerTlsArgs| {
            server_config(&args)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let text = message(server(&missing, &key, None));
        assert!(
            text.starts_with("cannot read tls-cert file") && text.contains("missing.pem"),
            "{text}"
        );
        let text = message(server(&garbage, &key, None));
        assert!(text.contains("holds no PEM certificate"), "{text}");
        let text = message(server(&cert, &cert, None));
        assert!(
            text.contains("tls-key file") && text.contains("private key"),
            "{text}"
        );
        let text = message(server(&cert, &other_key, None));
        assert!(text.contains("cannot serve with it"), "{text}");
        let text = message(server(&cert, &key, Some(&garbage)));
        assert!(text.starts_with("tls-client-ca file"), "{text}");
        let text = message(ServerTlsArgs {
            tls_client_ca: Some(cert.clone()),
            ..ServerTlsArgs::default()
        });
        assert_eq!(text, "--tls-client-ca is set without --tls-cert");
    }

    #[test]
    fn client_settings_are_checked_up_front() {
        let files = Files::new();
        let (cert, key) = files.pair("client");
        let garbage = files.write("garbage.pem", "nothing here\n");
        let args = |ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>| ClientTlsArgs {
            upstream_tls_ca: ca.map(Path::to_owned),
            upstream_tls_cert: cert.map(Path::to_owned),
            upstream_tls_key: key.map(Path::to_owned),
        };
        assert!(client_config(&args(Some(&cert), Some(&cert), Some(&key))).is_ok());
        assert!(client_config(&args(None, None, None)).is_ok());
        let error = client_config(&args(Some(&garbage), None, None))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.starts_with("upstream-tls-ca file"), "{error}");
        let error = client_config(&args(Some(&cert), Some(&cert), None))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            error,
            "--upstream-tls-cert is set without --upstream-tls-key"
        );
    }
}
