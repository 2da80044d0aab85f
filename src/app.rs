//! The shared state handed to every entry point, and the server's start-up.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::auth::accounts::Accounts;
use crate::auth::audit::{Audit, AuditLog};
use crate::auth::oidc::Verifier;
use crate::auth::shares::Shares;
use crate::config::Config;
use crate::feed::ChangeFeed;
use crate::index::Index;
use crate::index::postgres::PgIndex;
use crate::index::sqlite::SqliteIndex;
use crate::ingest::Ingest;
use crate::render::{Render, RenderConfig};
use crate::retrieve::Retrieve;
use crate::store::Store;

/// Everything a request handler (HTTP, DIMSE) needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The one ingest path (STOW-RS, C-STORE, import).
    pub ingest: Ingest,
    /// Reading instances, frames and metadata back.
    pub retrieve: Retrieve,
    /// The metadata index (QIDO-RS searches, readiness).
    pub index: Arc<dyn Index>,
    /// The object store (readiness).
    pub store: Store,
    /// Decoding, rendering, previews, thumbnails, transcoding.
    pub render: Render,
    /// The configuration the server was started with.
    pub config: Arc<Config>,
    /// Users, API tokens, viewer sessions.
    pub accounts: Arc<dyn Accounts>,
    /// The audit log as stored (searches).
    pub audit_log: Arc<dyn AuditLog>,
    /// Where every access to patient data is recorded.
    pub audit: Audit,
    /// OIDC bearer token checks, when an issuer is configured.
    pub oidc: Option<Arc<Verifier>>,
    /// Failed logins lately, by user name and by source address.
    pub login_failures: crate::http::auth::LoginFailures,
    /// Every create, replace and delete, in order.
    pub feed: Arc<dyn ChangeFeed>,
    /// Share links.
    pub shares: Arc<dyn Shares>,
}

/// The databases behind one index URL: the same SQL database holds the
/// metadata index, the accounts and the audit log.
pub struct Databases {
    pub index: Arc<dyn Index>,
    pub accounts: Arc<dyn Accounts>,
    pub audit_log: Arc<dyn AuditLog>,
    pub feed: Arc<dyn ChangeFeed>,
    pub shares: Arc<dyn Shares>,
}

/// Opens the index named by a database URL.
pub async fn open_index(url: &str) -> anyhow::Result<Arc<dyn Index>> {
    Ok(open_database(url).await?.index)
}

/// Opens the database named by a URL, applying pending migrations.
pub async fn open_database(url: &str) -> anyhow::Result<Databases> {
    if url.starts_with("sqlite:") {
        if let Some(path) = url.strip_prefix("sqlite://")
            && let Some(parent) =
                std::path::Path::new(path.split('?').next().unwrap_or(path)).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let index = Arc::new(
            SqliteIndex::open(url)
                .await
                .with_context(|| format!("opening index {url}"))?,
        );
        return Ok(Databases {
            index: index.clone(),
            accounts: index.clone(),
            audit_log: index.clone(),
            feed: index.clone(),
            shares: index,
        });
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let index = Arc::new(
            PgIndex::open(url)
                .await
                .with_context(|| format!("opening index {}", redact_url(url)))?,
        );
        return Ok(Databases {
            index: index.clone(),
            accounts: index.clone(),
            audit_log: index.clone(),
            feed: index.clone(),
            shares: index,
        });
    }
    anyhow::bail!(
        "unsupported database URL {:?} (expected sqlite://PATH or postgres://USER@HOST/DB)",
        redact_url(url)
    )
}

/// A database URL with any password replaced by `***` (in the user info, which
/// may itself contain `@`, or as a `password=` parameter), for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (location, query) = match rest.split_once('?') {
        Some((l, q)) => (l, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match location.find('/') {
        Some(i) => location.split_at(i),
        None => (location, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let mut out = format!("{scheme}://{authority}{path}");
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

impl AppState {
    /// Opens the index and the store the configuration names.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data)
            .with_context(|| format!("creating data directory {}", config.data.display()))?;
        let Databases {
            index,
            accounts,
            audit_log,
            feed,
            shares,
        } = open_database(&config.database).await?;
        let store = Store::open(&config.storage).with_context(|| {
            // The query is left out: only its names are ever shown (see store).
            let url = config.storage.split('?').next().unwrap_or_default();
            format!("opening storage {url}")
        })?;
        tracing::info!(
            index = redact_url(&config.database),
            storage = ?store,
            "archive opened"
        );
        let oidc = match &config.oidc {
            Some(oidc) => {
                Some(Arc::new(Verifier::new(oidc).with_context(|| {
                    format!("setting up OIDC for issuer {}", oidc.issuer)
                })?))
            }
            None => None,
        };
        let audit = Audit::start(audit_log.clone(), &config)?;
        Ok(Self {
            ingest: Ingest::new(
                store.clone(),
                index.clone(),
                config.conflict_policy,
                config.max_instance_bytes,
            ),
            retrieve: Retrieve::new(store.clone(), index.clone()),
            render: Render::new(
                store.clone(),
                index.clone(),
                RenderConfig {
                    cache_bytes: config.render_cache_bytes,
                    ..RenderConfig::default()
                },
            ),
            index,
            store,
            config: Arc::new(config),
            accounts,
            audit_log,
            audit,
            oidc,
            login_failures: crate::http::auth::LoginFailures::default(),
            feed,
            shares,
        })
    }
}

/// The largest request head HTTPS accepts (hyper's HTTP/1 read buffer, and
/// HTTP/2's header list).
const HEADER_LIMIT: usize = 64 * 1024;

/// A running server (for tests and embedding).
pub struct Server {
    /// The address the HTTP listener is bound to.
    pub http_addr: SocketAddr,
    /// The address the DICOM (DIMSE) listener is bound to.
    pub dicom_addr: SocketAddr,
    /// The state the server runs on.
    pub state: AppState,
    /// The address of the DICOM TLS listener, when there is one.
    pub dicom_tls_addr: Option<SocketAddr>,
    /// The TLS certificate in use, when HTTPS is on (tests reload it).
    pub tls: Option<crate::tls::Tls>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The DICOM listeners and the SIGHUP watcher.
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Binds the listeners and starts serving in the background.
    pub async fn start(mut state: AppState) -> anyhow::Result<Self> {
        // Previews and thumbnails of what is stored from now on are made in the
        // background, after the acknowledgement.
        state.config.check_exposure()?;
        let config = &state.config;
        if config.auth {
            tracing::info!(
                oidc = config.oidc.is_some(),
                https = config.tls.is_some(),
                "authentication required on HTTP"
            );
            if config.tls.is_none() && !config.http.ip().is_loopback() {
                tracing::warn!(
                    http = %config.http,
                    "passwords and tokens cross the network in clear text: serve HTTPS \
                     (--tls-cert, --tls-key) or put a TLS proxy in front"
                );
            }
        } else if config.insecure && !config.http.ip().is_loopback() {
            tracing::warn!(
                http = %config.http,
                "--insecure: HTTP listens beyond loopback without authentication; \
                 anyone who reaches this address can read and write every study"
            );
        } else {
            tracing::info!("no user authentication (--auth off): HTTP listens on loopback only");
        }
        state.ingest = state.ingest.with_derive_queue(state.render.spawn_worker());
        crate::feed::webhooks::spawn(
            state.feed.clone(),
            &state.config.webhooks,
            state.config.webhook_token.clone(),
        );
        let tls = match &state.config.tls {
            Some(files) => Some(crate::tls::Tls::load(
                files,
                state.config.dicom_tls_client_ca.as_deref(),
            )?),
            None => None,
        };
        let mut background = Vec::new();
        let listener = TcpListener::bind(state.config.http)
            .await
            .with_context(|| format!("binding HTTP to {}", state.config.http))?;
        let http_addr = listener.local_addr()?;
        // The peer's address reaches the auth middleware (audit log, failed
        // sign-in limits) as `ConnectInfo`.
        let service =
            crate::http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let task = match &tls {
            None => tokio::spawn(async move {
                axum::serve(listener, service)
                    .with_graceful_shutdown(shutdown_signal())
                    .await
            }),
            Some(tls) => {
                background.push(tls.reload_on_sighup());
                let handle = axum_server::Handle::new();
                let stop = handle.clone();
                tokio::spawn(async move {
                    shutdown_signal().await;
                    stop.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
                });
                let mut server =
                    axum_server::from_tcp_rustls(listener.into_std()?, tls.https.clone())?
                        .handle(handle);
                // Request heads beyond 64 KiB are refused (431).
                server.http_builder().http1().max_buf_size(HEADER_LIMIT);
                server
                    .http_builder()
                    .http2()
                    .max_header_list_size(HEADER_LIMIT as u32);
                tokio::spawn(server.serve(service))
            }
        };
        tracing::info!(
            %http_addr,
            https = tls.is_some(),
            "HTTP listening; DICOMweb root /dicomweb"
        );
        let dicom = TcpListener::bind(state.config.dicom)
            .await
            .with_context(|| format!("binding DICOM to {}", state.config.dicom))?;
        let dicom_addr = dicom.local_addr()?;
        let slots = crate::dimse::association_slots(&state.config);
        background.push(tokio::spawn(crate::dimse::serve(
            dicom,
            state.clone(),
            None,
            slots.clone(),
        )));
        tracing::info!(%dicom_addr, ae_title = state.config.ae_title, "DICOM listening");
        let dicom_tls_addr = match (state.config.dicom_tls, &tls) {
            (Some(addr), Some(tls)) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding DICOM TLS to {addr}"))?;
                let bound = listener.local_addr()?;
                background.push(tokio::spawn(crate::dimse::serve(
                    listener,
                    state.clone(),
                    Some(tls.dicom.clone()),
                    slots,
                )));
                tracing::info!(
                    dicom_tls_addr = %bound,
                    client_certificates = state.config.dicom_tls_client_ca.is_some(),
                    "DICOM TLS listening"
                );
                Some(bound)
            }
            _ => None,
        };
        Ok(Self {
            http_addr,
            dicom_addr,
            dicom_tls_addr,
            tls,
            state,
            task,
            background,
        })
    }

    /// Waits until the server stops (Ctrl-C or SIGTERM).
    pub async fn wait(self) -> anyhow::Result<()> {
        let result = self.task.await;
        for task in &self.background {
            task.abort();
        }
        // Whatever refusals were queued without waiting are written too.
        self.state.audit.flush().await;
        result.context("server task")??;
        Ok(())
    }

    /// Stops serving at once.
    pub fn abort(&self) {
        self.task.abort();
        for task in &self.background {
            task.abort();
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_reach_messages() {
        for (url, shown) in [
            (
                "postgres://aina:s3cr@t@db.local:5432/aina",
                "postgres://aina:***@db.local:5432/aina",
            ),
            (
                "postgres://aina@db.local/aina",
                "postgres://aina@db.local/aina",
            ),
            (
                "postgres://db.local/aina?user=aina&password=s3cr3t&sslmode=require",
                "postgres://db.local/aina?user=aina&password=***&sslmode=require",
            ),
            (
                "sqlite:///var/lib/aina/index.db",
                "sqlite:///var/lib/aina/index.db",
            ),
        ] {
            assert_eq!(redact_url(url), shown);
        }
    }
}
