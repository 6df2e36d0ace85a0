//! The CLI's HTTP client speaks TLS: `easel top --once` against a tiny
//! HTTPS server on 127.0.0.1 with a certificate from a private CA generated
//! here. The client trusts the CA named by `SSL_CERT_FILE` (rustls with the
//! platform verifier, which reads that variable on Linux), so the scrape
//! succeeds; trusting another CA, the handshake fails and `easel` says the
//! certificate is the problem.
//!
//! The server answers every request with an empty metrics exposition and
//! closes the connection: enough for `top`, and no server crate needed.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA, as PEM, and a server certificate for 127.0.0.1 signed by it.
struct Pki {
    ca_pem: String,
    server: ServerConfig,
}

fn pki(ca_name: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().unwrap();
    // An IP string becomes an IP-address subject alternative name.
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let server = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        server,
    }
}

/// Serves HTTPS on 127.0.0.1:0 until the test ends; returns the port.
async fn https_server(config: ServerConfig) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that does not trust us aborts the handshake.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = "# EOF\n";
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

/// `easel top --once` against `https://127.0.0.1:port`, trusting only the
/// CA in `ca_file`.
async fn top_once(port: u16, ca_file: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_easel"));
    command
        .args(["top", "--once", "--interval", "0.1", "--url"])
        .arg(format!("https://127.0.0.1:{port}"))
        .env("SSL_CERT_FILE", ca_file)
        .env_remove("SSL_CERT_DIR");
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reaches_an_https_server_whose_ca_is_in_ssl_cert_file() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki("Easel test CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let port = https_server(pki.server).await;

    let out = top_once(port, &ca_file).await;

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!out.stdout.is_empty(), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_a_server_certificate_from_an_untrusted_ca() {
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    // The two CAs have different names, so rustls finds no issuer at all.
    std::fs::write(&other_ca, pki("Some other CA").ca_pem).unwrap();
    let port = https_server(pki("Easel test CA").server).await;

    let out = top_once(port, &other_ca).await;

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("invalid peer certificate: UnknownIssuer"),
        "the error should say the certificate is not trusted:\n{stderr}"
    );
}
