//! Settings: defaults, then a TOML file, then `AINA_*` variables, then flags.
//!
//! The flag and variable names are an interface (DESIGN.md): deployment scripts
//! and monitoring depend on them, so they stay stable. [`Settings`] is what the
//! user may give (every field optional, one struct for clap and serde);
//! [`Config`] is the validated result the server runs on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::auth::Role;
use crate::index::ConflictPolicy;

/// What a user may set, from flags and variables (clap) or a TOML file (serde).
/// clap gives a flag precedence over its variable; [`Settings::merge_file`] puts
/// both above the file.
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// TOML configuration file.
    #[arg(long = "config", env = "AINA_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// HTTP listen address (default: 127.0.0.1:8080).
    #[arg(long = "http", env = "AINA_HTTP_ADDR", value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// DICOM listen address (default: 127.0.0.1:11112).
    #[arg(long = "dicom", env = "AINA_DICOM_ADDR", value_name = "ADDR")]
    pub dicom: Option<SocketAddr>,
    /// Our DICOM AE title (default: AINA).
    #[arg(long = "ae-title", env = "AINA_AE_TITLE", value_name = "AET")]
    pub ae_title: Option<String>,
    /// Data directory (default: ./aina-data).
    #[arg(long = "data", env = "AINA_DATA_DIR", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Index database URL (default: `sqlite://DATA/index.db`).
    #[arg(
        long = "database",
        env = "AINA_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database: Option<String>,
    /// Object storage URL (default: `file://DATA/objects`).
    #[arg(long = "storage", env = "AINA_STORAGE_URL", value_name = "URL")]
    pub storage: Option<String>,
    /// C-MOVE destination and allowed caller, AET=HOST:PORT (repeatable).
    #[arg(
        long = "dicom-peer",
        env = "AINA_DICOM_PEERS",
        value_name = "AET=HOST:PORT",
        value_delimiter = ','
    )]
    pub dicom_peer: Vec<String>,
    /// Calling AE titles allowed to associate, `AET[@CIDR][:ROLE]` (repeatable).
    /// When any is given, only these and the `--dicom-peer` AE titles may
    /// associate; when none is, any calling AE title may (default). ROLE is
    /// `ingest` (C-STORE and C-ECHO only) or `reader` (the default: also
    /// C-FIND, C-MOVE, C-GET).
    #[arg(
        long = "dicom-allowed-caller",
        env = "AINA_DICOM_ALLOWED_CALLERS",
        value_name = "AET[@CIDR][:ROLE]",
        value_delimiter = ','
    )]
    pub dicom_allowed_caller: Vec<String>,
    /// Largest PDU we accept on DICOM associations, in bytes, 4096 to 16777216
    /// (default: 262144).
    #[arg(
        long = "dicom-max-pdu",
        env = "AINA_DICOM_MAX_PDU",
        value_name = "BYTES"
    )]
    pub dicom_max_pdu: Option<u32>,
    /// DICOM associations served at once, 1 to 10000; more are rejected with
    /// A-ASSOCIATE-RJ "local limit exceeded" (default: 64).
    #[arg(
        long = "dicom-max-associations",
        env = "AINA_DICOM_MAX_ASSOCIATIONS",
        value_name = "N"
    )]
    pub dicom_max_associations: Option<usize>,
    /// Seconds an association may stay silent before it is aborted, 1 to 86400
    /// (default: 120).
    #[arg(
        long = "dicom-idle-timeout-secs",
        env = "AINA_DICOM_IDLE_TIMEOUT_SECS",
        value_name = "SECS"
    )]
    pub dicom_idle_timeout_secs: Option<u64>,
    /// Seconds a peer has from connecting to the end of association negotiation,
    /// 1 to 3600 (default: 30).
    #[arg(
        long = "dicom-association-timeout-secs",
        env = "AINA_DICOM_ASSOCIATION_TIMEOUT_SECS",
        value_name = "SECS"
    )]
    pub dicom_association_timeout_secs: Option<u64>,
    /// What to do with different bytes under a stored SOP Instance UID
    /// (default: reject).
    #[arg(long = "conflict-policy", env = "AINA_CONFLICT_POLICY", value_enum)]
    pub conflict_policy: Option<ConflictPolicyArg>,
    /// Origins allowed by CORS, comma-separated; `*` for any (default: *).
    #[arg(
        long = "cors-origin",
        env = "AINA_CORS_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origin: Vec<String>,
    /// Largest single instance accepted, in bytes (default: 4 GiB). Each instance
    /// being ingested is held in memory once; a request may carry any number.
    #[arg(long = "max-instance-bytes", env = "AINA_MAX_INSTANCE_BYTES")]
    pub max_instance_bytes: Option<u64>,
    /// Public base URL of the server (e.g. behind a proxy), used in RetrieveURL and
    /// BulkDataURI (default: from the request's Host header).
    #[arg(long = "public-url", env = "AINA_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Memory for rendered images and transcoded instances kept for reuse, in MiB
    /// (default: 256).
    #[arg(
        long = "render-cache-mb",
        env = "AINA_RENDER_CACHE_MB",
        value_name = "MIB"
    )]
    pub render_cache_mb: Option<u64>,
    /// Listen for HTTP beyond loopback although Aina has no user authentication
    /// yet (anyone who reaches the address can read and write every study);
    /// for nodes behind an authenticating proxy, with a firewall. A DICOM
    /// listener beyond loopback needs `--dicom-allowed-caller` instead.
    #[arg(
        long = "insecure",
        env = "AINA_INSECURE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub insecure: Option<bool>,
    /// Require authentication on every HTTP route but health checks and the
    /// login page: viewer sessions, API tokens, OIDC bearer tokens
    /// (default: false, and then HTTP stays on loopback unless --insecure).
    #[arg(
        long = "auth",
        env = "AINA_AUTH",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub auth: Option<bool>,
    /// Hours a viewer session lasts after login, 1 to 720 (default: 12).
    #[arg(
        long = "session-hours",
        env = "AINA_SESSION_HOURS",
        value_name = "HOURS"
    )]
    pub session_hours: Option<u64>,
    /// OIDC issuer whose bearer tokens are accepted (the `iss` claim, exactly).
    #[arg(long = "oidc-issuer", env = "AINA_OIDC_ISSUER", value_name = "URL")]
    pub oidc_issuer: Option<String>,
    /// OIDC audience tokens must be issued for (the `aud` claim).
    #[arg(long = "oidc-audience", env = "AINA_OIDC_AUDIENCE", value_name = "AUD")]
    pub oidc_audience: Option<String>,
    /// The issuer's signing keys: a JWKS file path or an https:// URL.
    #[arg(long = "oidc-jwks", env = "AINA_OIDC_JWKS", value_name = "FILE|URL")]
    pub oidc_jwks: Option<String>,
    /// Claim holding the Aina role name(s), a string or a list (default: roles).
    #[arg(
        long = "oidc-role-claim",
        env = "AINA_OIDC_ROLE_CLAIM",
        value_name = "CLAIM"
    )]
    pub oidc_role_claim: Option<String>,
    /// Claim naming the user in the audit log (default: preferred_username,
    /// then sub).
    #[arg(
        long = "oidc-name-claim",
        env = "AINA_OIDC_NAME_CLAIM",
        value_name = "CLAIM"
    )]
    pub oidc_name_claim: Option<String>,
    /// PEM certificate chain for HTTPS (with --tls-key); reloaded on SIGHUP.
    /// Also the DICOM TLS certificate.
    #[arg(long = "tls-cert", env = "AINA_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS and DICOM TLS.
    #[arg(long = "tls-key", env = "AINA_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// DICOM TLS listen address (PS3.15 B.1; needs --tls-cert and --tls-key).
    #[arg(long = "dicom-tls", env = "AINA_DICOM_TLS_ADDR", value_name = "ADDR")]
    pub dicom_tls: Option<SocketAddr>,
    /// CA certificates (PEM) that DICOM TLS callers must present a
    /// certificate from; without it, callers are not asked for one.
    #[arg(
        long = "dicom-tls-client-ca",
        env = "AINA_DICOM_TLS_CLIENT_CA",
        value_name = "FILE"
    )]
    pub dicom_tls_client_ca: Option<PathBuf>,
    /// Reverse proxies (IP or CIDR, repeatable) whose `X-Forwarded-For` names
    /// the client in the audit log and the failed-login limits; from any other
    /// peer the header is ignored.
    #[arg(
        long = "trusted-proxy",
        env = "AINA_TRUSTED_PROXIES",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub trusted_proxy: Vec<String>,
    /// Where audit events are also sent as DICOM audit messages (PS3.15 A.5):
    /// `file:///PATH` (one XML message per line) or `syslog+udp://HOST:PORT`
    /// / `syslog+tcp://HOST:PORT` (RFC 5424).
    #[arg(long = "audit-export", env = "AINA_AUDIT_EXPORT", value_name = "URL")]
    pub audit_export: Option<String>,
    /// URLs (repeatable) that every change feed entry is POSTed to as JSON,
    /// in order, retried with backoff until answered 2xx (at least once).
    #[arg(
        long = "webhook",
        env = "AINA_WEBHOOKS",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub webhook: Vec<String>,
    /// Sent to webhooks as `Authorization: Bearer <TOKEN>`, so the receiver
    /// knows the events come from this archive.
    #[arg(
        long = "webhook-token",
        env = "AINA_WEBHOOK_TOKEN",
        value_name = "TOKEN"
    )]
    pub webhook_token: Option<String>,
}

/// [`ConflictPolicy`] as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicyArg {
    Reject,
    KeepBoth,
    Replace,
}

impl From<ConflictPolicyArg> for ConflictPolicy {
    fn from(a: ConflictPolicyArg) -> Self {
        match a {
            ConflictPolicyArg::Reject => ConflictPolicy::Reject,
            ConflictPolicyArg::KeepBoth => ConflictPolicy::KeepBoth,
            ConflictPolicyArg::Replace => ConflictPolicy::Replace,
        }
    }
}

/// A C-MOVE destination / known DICOM peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DicomPeer {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

/// A calling AE title allowed to associate, optionally only from an IP range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedCaller {
    pub ae_title: String,
    pub network: Option<ipnet::IpNet>,
    /// What the caller may do (default: reader, store and query/retrieve;
    /// `ingest` for a modality that only stores).
    pub role: Role,
}

/// OIDC bearer tokens accepted from one issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    pub issuer: String,
    pub audience: String,
    /// A JWKS file path or an https:// URL.
    pub jwks: String,
    pub role_claim: String,
    pub name_claim: String,
}

/// A certificate chain and its key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The validated configuration the server runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub http: SocketAddr,
    pub dicom: SocketAddr,
    pub ae_title: String,
    pub data: PathBuf,
    pub database: String,
    pub storage: String,
    pub dicom_peers: Vec<DicomPeer>,
    /// Empty: any caller may associate.
    pub dicom_allowed_callers: Vec<AllowedCaller>,
    /// Largest PDU we accept (PS3.8 D.1 Maximum Length).
    pub dicom_max_pdu: u32,
    /// Associations served at once.
    pub dicom_max_associations: usize,
    /// An association silent this long is aborted.
    pub dicom_idle_timeout: Duration,
    /// Time from connection to A-ASSOCIATE-AC (or -RJ).
    pub dicom_association_timeout: Duration,
    pub conflict_policy: ConflictPolicy,
    pub cors_origins: Vec<String>,
    pub max_instance_bytes: u64,
    pub public_url: Option<String>,
    /// Bytes of the render cache.
    pub render_cache_bytes: u64,
    /// HTTP may listen beyond loopback without authentication.
    pub insecure: bool,
    /// Authentication required on HTTP.
    pub auth: bool,
    /// How long a viewer session lasts.
    pub session_lifetime: Duration,
    pub oidc: Option<OidcConfig>,
    /// HTTPS (and the DICOM TLS port's) certificate and key.
    pub tls: Option<TlsFiles>,
    /// DICOM TLS listen address.
    pub dicom_tls: Option<SocketAddr>,
    /// CA bundle DICOM TLS client certificates must chain to.
    pub dicom_tls_client_ca: Option<PathBuf>,
    /// `file://`, `syslog+udp://` or `syslog+tcp://` URL for DICOM audit messages.
    pub audit_export: Option<String>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where change feed entries are POSTed.
    pub webhooks: Vec<String>,
    /// Bearer token sent with webhook POSTs.
    pub webhook_token: Option<String>,
}

impl Settings {
    /// Fills every field not given by flag or variable from the file named by
    /// `--config` / `AINA_CONFIG`, if any.
    pub fn merge_file(mut self) -> anyhow::Result<Self> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let file: Settings = toml::from_str(&text)
            .with_context(|| format!("parsing config file {}", path.display()))?;
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = file.$f; } )* };
        }
        fill!(
            http,
            dicom,
            ae_title,
            data,
            database,
            storage,
            conflict_policy,
            max_instance_bytes,
            public_url,
            render_cache_mb,
            insecure,
            auth,
            session_hours,
            oidc_issuer,
            oidc_audience,
            oidc_jwks,
            oidc_role_claim,
            oidc_name_claim,
            tls_cert,
            tls_key,
            dicom_tls,
            dicom_tls_client_ca,
            audit_export,
            webhook_token,
            dicom_max_pdu,
            dicom_max_associations,
            dicom_idle_timeout_secs,
            dicom_association_timeout_secs
        );
        if self.dicom_peer.is_empty() {
            self.dicom_peer = file.dicom_peer;
        }
        if self.dicom_allowed_caller.is_empty() {
            self.dicom_allowed_caller = file.dicom_allowed_caller;
        }
        if self.cors_origin.is_empty() {
            self.cors_origin = file.cors_origin;
        }
        if self.trusted_proxy.is_empty() {
            self.trusted_proxy = file.trusted_proxy;
        }
        if self.webhook.is_empty() {
            self.webhook = file.webhook;
        }
        Ok(self)
    }

    /// Applies defaults and validates.
    pub fn resolve(self) -> anyhow::Result<Config> {
        let data = self.data.unwrap_or_else(|| PathBuf::from("aina-data"));
        let ae_title = self.ae_title.unwrap_or_else(|| "AINA".to_owned());
        if ae_title.is_empty() || ae_title.len() > 16 || !ae_title.is_ascii() {
            bail!("AE title must be 1 to 16 ASCII characters, got {ae_title:?}");
        }
        let dicom_peers = self
            .dicom_peer
            .iter()
            .map(|p| parse_peer(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let dicom_allowed_callers = self
            .dicom_allowed_caller
            .iter()
            .map(|c| parse_allowed_caller(c))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let dicom_max_pdu = in_range(
            "dicom-max-pdu",
            self.dicom_max_pdu,
            256 * 1024,
            4096..=16 << 20,
        )?;
        let dicom_max_associations = in_range(
            "dicom-max-associations",
            self.dicom_max_associations,
            64,
            1..=10_000,
        )?;
        let dicom_idle_timeout = in_range(
            "dicom-idle-timeout-secs",
            self.dicom_idle_timeout_secs,
            120,
            1..=86_400,
        )?;
        let dicom_association_timeout = in_range(
            "dicom-association-timeout-secs",
            self.dicom_association_timeout_secs,
            30,
            1..=3_600,
        )?;
        let database = self
            .database
            .unwrap_or_else(|| format!("sqlite://{}", data.join("index.db").display()));
        let storage = self
            .storage
            .unwrap_or_else(|| format!("file://{}", absolute(&data.join("objects")).display()));
        let cors_origins = if self.cors_origin.is_empty() {
            vec!["*".to_owned()]
        } else {
            self.cors_origin
        };
        let session_hours = in_range("session-hours", self.session_hours, 12, 1..=720)?;
        let oidc = match (self.oidc_issuer, self.oidc_audience, self.oidc_jwks) {
            (None, None, None) => None,
            (Some(issuer), Some(audience), Some(jwks)) => Some(OidcConfig {
                issuer,
                audience,
                jwks,
                role_claim: self.oidc_role_claim.unwrap_or_else(|| "roles".to_owned()),
                name_claim: self
                    .oidc_name_claim
                    .unwrap_or_else(|| "preferred_username".to_owned()),
            }),
            _ => bail!("OIDC needs all of --oidc-issuer, --oidc-audience and --oidc-jwks"),
        };
        let tls = match (self.tls_cert, self.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            _ => bail!("HTTPS needs both --tls-cert and --tls-key"),
        };
        if self.dicom_tls.is_some() && tls.is_none() {
            bail!("--dicom-tls needs --tls-cert and --tls-key");
        }
        if self.dicom_tls_client_ca.is_some() && self.dicom_tls.is_none() {
            bail!("--dicom-tls-client-ca needs --dicom-tls");
        }
        if let Some(url) = &self.audit_export
            && !["file://", "syslog+udp://", "syslog+tcp://"]
                .iter()
                .any(|s| url.starts_with(s))
        {
            bail!(
                "--audit-export {url:?}: expected file:///PATH, syslog+udp://HOST:PORT or \
                 syslog+tcp://HOST:PORT"
            );
        }
        for url in &self.webhook {
            let parsed = reqwest013::Url::parse(url)
                .with_context(|| format!("--webhook {url:?} is not a URL"))?;
            if !["http", "https"].contains(&parsed.scheme()) {
                bail!("--webhook {url:?}: expected an http:// or https:// URL");
            }
        }
        Ok(Config {
            http: self.http.unwrap_or(([127, 0, 0, 1], 8080).into()),
            dicom: self.dicom.unwrap_or(([127, 0, 0, 1], 11112).into()),
            ae_title,
            data,
            database,
            storage,
            dicom_peers,
            dicom_allowed_callers,
            dicom_max_pdu,
            dicom_max_associations,
            dicom_idle_timeout: Duration::from_secs(dicom_idle_timeout),
            dicom_association_timeout: Duration::from_secs(dicom_association_timeout),
            conflict_policy: self.conflict_policy.map(Into::into).unwrap_or_default(),
            cors_origins,
            max_instance_bytes: self.max_instance_bytes.unwrap_or(4 << 30),
            public_url: self.public_url.map(|u| u.trim_end_matches('/').to_owned()),
            render_cache_bytes: self.render_cache_mb.unwrap_or(256).saturating_mul(1 << 20),
            insecure: self.insecure.unwrap_or(false),
            auth: self.auth.unwrap_or(false),
            session_lifetime: Duration::from_secs(session_hours * 3600),
            oidc,
            tls,
            dicom_tls: self.dicom_tls,
            dicom_tls_client_ca: self.dicom_tls_client_ca,
            audit_export: self.audit_export,
            trusted_proxies: self
                .trusted_proxy
                .iter()
                .map(|p| parse_network(p).with_context(|| format!("trusted proxy {p:?}")))
                .collect::<anyhow::Result<_>>()?,
            webhooks: self.webhook,
            webhook_token: self.webhook_token,
        })
    }
}

impl Config {
    /// Refuses listeners that would expose patient data to anyone who can reach
    /// them. HTTP beyond loopback needs `--auth`, or `--insecure` (said loudly
    /// at start-up); DICOM beyond loopback (plain or TLS) needs an allow-list
    /// of calling AE titles (`--dicom-allowed-caller`, which may also name
    /// address ranges), DICOM's own access control.
    pub fn check_exposure(&self) -> anyhow::Result<()> {
        if !self.http.ip().is_loopback() && !self.auth && !self.insecure {
            bail!(
                "refusing to listen for HTTP on {} without authentication: anyone who can \
                 reach it could read and write every study. Turn authentication on with \
                 --auth (AINA_AUTH=true), listen on 127.0.0.1 (behind an authenticating \
                 proxy), or pass --insecure (AINA_INSECURE=true) if a firewall lets only \
                 trusted hosts reach this address",
                self.http
            );
        }
        let dicom_exposed =
            !self.dicom.ip().is_loopback() || self.dicom_tls.is_some_and(|a| !a.ip().is_loopback());
        if dicom_exposed && self.dicom_allowed_callers.is_empty() {
            bail!(
                "refusing to listen for DICOM on {} with no allowed callers: any device could \
                 store, find and retrieve studies. Name the calling AE titles (and their \
                 networks) with --dicom-allowed-caller AET@CIDR, or listen on 127.0.0.1",
                if self.dicom.ip().is_loopback() {
                    self.dicom_tls.unwrap_or(self.dicom)
                } else {
                    self.dicom
                }
            );
        }
        Ok(())
    }
}

/// `value`, or `default` when not given; an error naming the setting when
/// outside `range`.
fn in_range<T>(
    name: &str,
    value: Option<T>,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> anyhow::Result<T>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    let value = value.unwrap_or(default);
    if !range.contains(&value) {
        bail!(
            "{name} must be {} to {}, got {value}",
            range.start(),
            range.end()
        );
    }
    Ok(value)
}

/// `file://` URLs need an absolute path; a relative data directory is taken from
/// the current directory.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn parse_peer(s: &str) -> anyhow::Result<DicomPeer> {
    let (aet, addr) = s
        .split_once('=')
        .with_context(|| format!("DICOM peer {s:?} is not AET=HOST:PORT"))?;
    let (host, port) = addr
        .rsplit_once(':')
        .with_context(|| format!("DICOM peer {s:?} has no :PORT"))?;
    let port = port
        .parse()
        .with_context(|| format!("DICOM peer {s:?} has a bad port"))?;
    if aet.is_empty() || aet.len() > 16 || host.is_empty() {
        bail!("DICOM peer {s:?}: AE title must be 1 to 16 characters and HOST non-empty");
    }
    Ok(DicomPeer {
        ae_title: aet.to_owned(),
        host: host.to_owned(),
        port,
    })
}

/// An IP range, or one address.
fn parse_network(s: &str) -> anyhow::Result<ipnet::IpNet> {
    match s.parse::<ipnet::IpNet>() {
        Ok(n) => Ok(n),
        Err(_) => Ok(ipnet::IpNet::from(s.parse::<std::net::IpAddr>()?)),
    }
}

fn parse_allowed_caller(s: &str) -> anyhow::Result<AllowedCaller> {
    // A role is the last `:` suffix when it names one (an IPv6 range has `:`s too).
    let (s, role) = match s.rsplit_once(':') {
        Some((rest, role)) if role.parse::<Role>().is_ok() => {
            (rest, role.parse::<Role>().map_err(anyhow::Error::msg)?)
        }
        _ => (s, Role::Reader),
    };
    let (aet, network) = match s.split_once('@') {
        Some((aet, net)) => {
            let network = parse_network(net)
                .with_context(|| format!("allowed caller {s:?}: {net:?} is not an IP or CIDR"))?;
            (aet, Some(network))
        }
        None => (s, None),
    };
    if aet.is_empty() || aet.len() > 16 || !aet.is_ascii() {
        bail!("allowed caller {s:?}: AE title must be 1 to 16 ASCII characters");
    }
    Ok(AllowedCaller {
        ae_title: aet.to_owned(),
        network,
        role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_design() {
        let c = Settings::default().resolve().unwrap();
        assert_eq!(c.http.to_string(), "127.0.0.1:8080");
        assert_eq!(c.dicom.to_string(), "127.0.0.1:11112");
        assert_eq!(c.ae_title, "AINA");
        assert_eq!(c.database, "sqlite://aina-data/index.db");
        assert!(c.storage.starts_with("file:///") && c.storage.ends_with("aina-data/objects"));
        assert_eq!(c.conflict_policy, ConflictPolicy::Reject);
    }

    #[test]
    fn flags_win_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("aina.toml");
        std::fs::write(
            &file,
            "ae-title = \"FROMFILE\"\nhttp = \"0.0.0.0:9000\"\ndicom-peer = [\"WS=10.0.0.5:104\"]\n",
        )
        .unwrap();
        let s = Settings {
            config: Some(file),
            ae_title: Some("FLAG".into()),
            ..Default::default()
        };
        let c = s.merge_file().unwrap().resolve().unwrap();
        assert_eq!(c.ae_title, "FLAG");
        assert_eq!(c.http.to_string(), "0.0.0.0:9000");
        assert_eq!(
            c.dicom_peers,
            vec![DicomPeer {
                ae_title: "WS".into(),
                host: "10.0.0.5".into(),
                port: 104
            }]
        );
    }

    #[test]
    fn allowed_callers_parse() {
        let s = Settings {
            dicom_allowed_caller: vec!["WS".into(), "CR1@10.1.0.0/16".into(), "MG@::1".into()],
            ..Default::default()
        };
        let c = s.resolve().unwrap();
        assert_eq!(c.dicom_allowed_callers[0].network, None);
        assert_eq!(
            c.dicom_allowed_callers[1].network,
            Some("10.1.0.0/16".parse().unwrap())
        );
        assert_eq!(
            c.dicom_allowed_callers[2].network,
            Some("::1/128".parse().unwrap())
        );
        let s = Settings {
            dicom_allowed_caller: vec!["WS@10.1.0.0/99".into()],
            ..Default::default()
        };
        assert!(s.resolve().is_err());
        assert!(
            c.dicom_allowed_callers
                .iter()
                .all(|a| a.role == Role::Reader)
        );
        let s = Settings {
            dicom_allowed_caller: vec![
                "MAMMO1@10.1.2.0/24:ingest".into(),
                "WS:reader".into(),
                "MG@fd00::/8:ingest".into(),
            ],
            ..Default::default()
        };
        let c = s.resolve().unwrap();
        let got: Vec<_> = c
            .dicom_allowed_callers
            .iter()
            .map(|a| {
                (
                    a.ae_title.as_str(),
                    a.network.map(|n| n.to_string()),
                    a.role,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("MAMMO1", Some("10.1.2.0/24".into()), Role::Ingest),
                ("WS", None, Role::Reader),
                ("MG", Some("fd00::/8".into()), Role::Ingest),
            ]
        );
    }

    #[test]
    fn security_settings_are_validated() {
        let c = Settings::default().resolve().unwrap();
        assert!(!c.auth && c.oidc.is_none() && c.tls.is_none());
        assert_eq!(c.session_lifetime, Duration::from_secs(12 * 3600));
        for bad in [
            Settings {
                oidc_issuer: Some("https://sso".into()),
                ..Default::default()
            },
            Settings {
                tls_cert: Some("cert.pem".into()),
                ..Default::default()
            },
            Settings {
                dicom_tls: Some("127.0.0.1:2762".parse().unwrap()),
                ..Default::default()
            },
            Settings {
                session_hours: Some(0),
                ..Default::default()
            },
            Settings {
                audit_export: Some("http://collector".into()),
                ..Default::default()
            },
            Settings {
                webhook: vec!["ftp://ehr/hook".into()],
                ..Default::default()
            },
            Settings {
                webhook: vec!["not a url".into()],
                ..Default::default()
            },
        ] {
            assert!(bad.resolve().is_err());
        }
        let hooks = Settings {
            webhook: vec!["https://ehr.hospital.kz/hook".into()],
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(hooks.webhooks, ["https://ehr.hospital.kz/hook"]);
        // Beyond loopback: HTTP needs --auth or --insecure; DICOM (plain or
        // TLS) needs an allow-list.
        let exposed = |f: fn(&mut Settings)| {
            let mut s = Settings {
                http: Some("0.0.0.0:8080".parse().unwrap()),
                ..Default::default()
            };
            f(&mut s);
            s.resolve().unwrap().check_exposure()
        };
        assert!(exposed(|_| {}).is_err());
        assert!(exposed(|s| s.auth = Some(true)).is_ok());
        assert!(exposed(|s| s.insecure = Some(true)).is_ok());
        assert!(
            exposed(|s| {
                s.auth = Some(true);
                s.tls_cert = Some("c.pem".into());
                s.tls_key = Some("k.pem".into());
                s.dicom_tls = Some("0.0.0.0:2762".parse().unwrap());
            })
            .is_err()
        );
    }

    #[test]
    fn dicom_limits_parse_and_are_validated() {
        let c = Settings::default().resolve().unwrap();
        assert_eq!(c.dicom_max_pdu, 256 * 1024);
        assert_eq!(c.dicom_max_associations, 64);
        assert_eq!(c.dicom_idle_timeout, Duration::from_secs(120));
        assert_eq!(c.dicom_association_timeout, Duration::from_secs(30));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("aina.toml");
        std::fs::write(
            &file,
            "dicom-max-pdu = 16384\ndicom-max-associations = 8\n\
             dicom-idle-timeout-secs = 600\ndicom-association-timeout-secs = 5\n",
        )
        .unwrap();
        let s = Settings {
            config: Some(file),
            dicom_max_associations: Some(2),
            ..Default::default()
        };
        let c = s.merge_file().unwrap().resolve().unwrap();
        assert_eq!(c.dicom_max_pdu, 16384);
        assert_eq!(c.dicom_max_associations, 2, "the flag wins over the file");
        assert_eq!(c.dicom_idle_timeout, Duration::from_secs(600));
        assert_eq!(c.dicom_association_timeout, Duration::from_secs(5));

        let parsed = <CliSettings as clap::Parser>::try_parse_from([
            "aina",
            "--dicom-max-pdu",
            "65536",
            "--dicom-idle-timeout-secs",
            "30",
        ])
        .unwrap();
        assert_eq!(parsed.settings.dicom_max_pdu, Some(65536));
        assert_eq!(parsed.settings.dicom_idle_timeout_secs, Some(30));

        for bad in [
            Settings {
                dicom_max_pdu: Some(1024),
                ..Default::default()
            },
            Settings {
                dicom_max_pdu: Some(u32::MAX),
                ..Default::default()
            },
            Settings {
                dicom_max_associations: Some(0),
                ..Default::default()
            },
            Settings {
                dicom_idle_timeout_secs: Some(0),
                ..Default::default()
            },
            Settings {
                dicom_association_timeout_secs: Some(3_601),
                ..Default::default()
            },
        ] {
            let e = bad.resolve().unwrap_err().to_string();
            assert!(e.contains("dicom-"), "{e}");
        }
    }

    /// The settings as a command line, to check the flag names.
    #[derive(clap::Parser)]
    struct CliSettings {
        #[command(flatten)]
        settings: Settings,
    }

    #[test]
    fn exposed_listeners_need_a_decision() {
        let resolve = |f: fn(&mut Settings)| {
            let mut s = Settings::default();
            f(&mut s);
            s.resolve().unwrap().check_exposure()
        };
        assert!(resolve(|_| {}).is_ok(), "loopback defaults");
        let err = resolve(|s| s.http = Some("0.0.0.0:8080".parse().unwrap())).unwrap_err();
        assert!(err.to_string().contains("--insecure"), "{err}");
        assert!(
            resolve(|s| {
                s.http = Some("0.0.0.0:8080".parse().unwrap());
                s.insecure = Some(true);
            })
            .is_ok()
        );
        let err = resolve(|s| s.dicom = Some("0.0.0.0:11112".parse().unwrap())).unwrap_err();
        assert!(err.to_string().contains("--dicom-allowed-caller"), "{err}");
        assert!(
            resolve(|s| {
                s.dicom = Some("[::]:11112".parse().unwrap());
                s.dicom_allowed_caller = vec!["CR1@10.0.0.0/8".to_owned()];
            })
            .is_ok()
        );
        // --insecure is about HTTP; it does not open DICOM to any caller.
        assert!(
            resolve(|s| {
                s.dicom = Some("0.0.0.0:11112".parse().unwrap());
                s.insecure = Some(true);
            })
            .is_err()
        );
    }

    #[test]
    fn bad_values_are_refused() {
        let s = Settings {
            dicom_peer: vec!["nohostport".into()],
            ..Default::default()
        };
        assert!(s.resolve().is_err());
        let s = Settings {
            ae_title: Some("A_VERY_LONG_AE_TITLE_X".into()),
            ..Default::default()
        };
        assert!(s.resolve().is_err());
    }
}
