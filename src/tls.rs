//! TLS for HTTP (HTTPS) and for DICOM (PS3.15 B.1 "TLS secure transport"):
//! one certificate chain and key from PEM files, re-read on SIGHUP so that a
//! renewed certificate is served without a restart (a bad new pair is logged
//! and the old one kept).
//!
//! TLS 1.2 and 1.3 only (rustls's safe defaults, ring provider); HTTPS offers
//! HTTP/2 and HTTP/1.1 by ALPN. The DICOM TLS port requires client
//! certificates from a configured CA when one is given.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{InconsistentKeys, ServerConfig};

use crate::config::TlsFiles;

/// The live TLS settings of both listeners.
#[derive(Clone)]
pub struct Tls {
    files: TlsFiles,
    client_ca: Option<PathBuf>,
    /// HTTPS (axum-server swaps it in on reload).
    pub https: RustlsConfig,
    /// DICOM TLS: read at each handshake, so new associations get a new pair.
    pub dicom: Arc<ArcSwap<ServerConfig>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Other rustls users in the process (reqwest, sqlx) use the default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (a chain, or a CA bundle).
fn read_certificates(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading {what} {}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{} holds no PEM certificate ({what})",
        path.display()
    );
    Ok(certs)
}

fn read_pair(
    files: &TlsFiles,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let certs = read_certificates(&files.cert, "the certificate chain")?;
    let key = match PrivateKeyDer::from_pem_file(&files.key) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => anyhow::bail!(
            "{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            files.key.display()
        ),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("reading the private key {}", files.key.display()));
        }
    };
    Ok((certs, key))
}

/// A server configuration for the pair, with client certificates required
/// from `client_ca` when given. ALPN offers HTTP/2 and HTTP/1.1 when `alpn`.
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
            for cert in read_certificates(path, "client CA certificates")? {
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
    let mut config = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => anyhow::anyhow!(
            "the key {} does not match the certificate {}",
            files.key.display(),
            files.cert.display()
        ),
        e => anyhow::Error::new(e).context(format!(
            "using the key {} with the certificate {}",
            files.key.display(),
            files.cert.display()
        )),
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

    /// Re-reads the files (what SIGHUP does); on any error the old pair stays
    /// in use for both listeners.
    pub fn reload(&self) -> anyhow::Result<()> {
        // Both are built before either is swapped: never half a reload.
        let https = server_config(&self.files, None, true)?;
        let dicom = server_config(&self.files, self.client_ca.as_deref(), false)?;
        self.https.reload_from_config(Arc::new(https));
        self.dicom.store(Arc::new(dicom));
        tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// Reloads on every SIGHUP until the task is dropped. Call from within
    /// the runtime: the signal is taken over before this returns, so a SIGHUP
    /// right after start-up reloads rather than ends the process.
    pub fn reload_on_sighup(&self) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        tokio::spawn(async move {
            let mut hup = match hup {
                Ok(hup) => hup,
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "cannot listen for SIGHUP; TLS certificates reload on restart only"
                    );
                    return;
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");

    fn fixture(name: &str) -> PathBuf {
        Path::new(FIXTURES).join(name)
    }

    fn files(cert: PathBuf, key: PathBuf) -> TlsFiles {
        TlsFiles { cert, key }
    }

    fn load_error(files: &TlsFiles, client_ca: Option<&Path>) -> String {
        match Tls::load(files, client_ca) {
            Ok(_) => panic!("{files:?} loaded"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn start_up_errors_name_the_file_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no PEM here\n").unwrap();

        let e = load_error(&files(missing.clone(), fixture("a.key")), None);
        assert!(
            e.contains(&missing.display().to_string()) && e.contains("No such file"),
            "{e}"
        );
        let e = load_error(&files(fixture("a.pem"), missing.clone()), None);
        assert!(
            e.contains(&missing.display().to_string()) && e.contains("No such file"),
            "{e}"
        );
        let e = load_error(&files(empty.clone(), fixture("a.key")), None);
        assert!(
            e.contains(&empty.display().to_string()) && e.contains("no PEM certificate"),
            "{e}"
        );
        // A certificate where the key should be.
        let e = load_error(&files(fixture("a.pem"), fixture("b.pem")), None);
        assert!(
            e.contains("b.pem") && e.contains("no PEM private key"),
            "{e}"
        );
        let e = load_error(&files(fixture("a.pem"), fixture("b.key")), None);
        assert!(
            e.contains("b.key") && e.contains("a.pem") && e.contains("does not match"),
            "{e}"
        );
        let e = load_error(&files(fixture("a.pem"), fixture("a.key")), Some(&empty));
        assert!(
            e.contains(&empty.display().to_string()) && e.contains("client CA"),
            "{e}"
        );
        let tls = Tls::load(
            &files(fixture("a.pem"), fixture("a.key")),
            Some(&fixture("b.pem")),
        )
        .unwrap();
        assert_eq!(
            tls.https.get_inner().alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn a_bad_new_pair_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::copy(fixture("a.pem"), &cert).unwrap();
        std::fs::copy(fixture("a.key"), &key).unwrap();
        let tls = Tls::load(&files(cert.clone(), key.clone()), None).unwrap();
        let (https, dicom) = (tls.https.get_inner(), tls.dicom.load_full());

        // Half-renewed: the new certificate, the old key.
        std::fs::copy(fixture("b.pem"), &cert).unwrap();
        let e = tls.reload().unwrap_err();
        assert!(format!("{e:#}").contains("does not match"), "{e:#}");
        assert!(Arc::ptr_eq(&https, &tls.https.get_inner()));
        assert!(Arc::ptr_eq(&dicom, &tls.dicom.load_full()));

        // Fully renewed: both swapped.
        std::fs::copy(fixture("b.key"), &key).unwrap();
        tls.reload().unwrap();
        assert!(!Arc::ptr_eq(&https, &tls.https.get_inner()));
        assert!(!Arc::ptr_eq(&dicom, &tls.dicom.load_full()));
    }
}
