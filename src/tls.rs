//! TLS for HTTP (HTTPS) and for DICOM (PS3.15 B.1 "TLS secure transport"):
//! one certificate chain and key from PEM files, re-read on SIGHUP so that a
//! renewed certificate is served without a restart (a bad new pair is logged
//! and the old one kept).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use axum_server::tls_rustls::RustlsConfig;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::config::TlsFiles;

/// The live TLS settings of both listeners.
#[derive(Clone)]
pub struct Tls {
    files: TlsFiles,
    client_ca: Option<std::path::PathBuf>,
    /// HTTPS (axum-server swaps it in on reload).
    pub https: RustlsConfig,
    /// DICOM TLS: read at each handshake, so new associations get a new pair.
    pub dicom: Arc<ArcSwap<ServerConfig>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pair(
    files: &TlsFiles,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the certificate chain {}", files.cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{} holds no PEM certificate",
        files.cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the private key {}", files.key.display()))?;
    Ok((certs, key))
}

/// A server configuration for the pair, with client certificates required
/// from `client_ca` when given. ALPN offers HTTP/2 and HTTP/1.1.
fn server_config(
    files: &TlsFiles,
    client_ca: Option<&Path>,
    alpn: bool,
) -> anyhow::Result<ServerConfig> {
    let (certs, key) = read_pair(files)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match client_ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .and_then(|c| c.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("reading client CA certificates {}", path.display()))?
            {
                roots
                    .add(cert)
                    .with_context(|| format!("a client CA certificate in {}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .with_context(|| format!("client CA {}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "the key {} does not fit the certificate {}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    if alpn {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    Ok(config)
}

impl Tls {
    /// Loads the pair (and the DICOM client CA); errors name the file and why.
    pub fn load(files: &TlsFiles, client_ca: Option<&Path>) -> anyhow::Result<Tls> {
        let https = RustlsConfig::from_config(Arc::new(server_config(files, None, true)?));
        let dicom = Arc::new(ArcSwap::from_pointee(server_config(
            files, client_ca, false,
        )?));
        Ok(Tls {
            files: files.clone(),
            client_ca: client_ca.map(Path::to_path_buf),
            https,
            dicom,
        })
    }

    /// Re-reads the files; on any error the old pair stays in use.
    pub fn reload(&self) -> anyhow::Result<()> {
        let https = server_config(&self.files, None, true)?;
        let dicom = server_config(&self.files, self.client_ca.as_deref(), false)?;
        self.https.reload_from_config(Arc::new(https));
        self.dicom.store(Arc::new(dicom));
        tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// Reloads on every SIGHUP until the task is dropped.
    pub fn reload_on_sighup(&self) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::warn!("cannot listen for SIGHUP; TLS certificates reload on restart only");
                return;
            };
            while hup.recv().await.is_some() {
                if let Err(e) = tls.reload() {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "TLS reload failed; the previous certificate stays"
                    );
                }
            }
        })
    }
}
