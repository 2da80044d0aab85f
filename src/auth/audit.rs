//! The audit log: every read and write of patient data, every login and
//! failed login, appended to the index database (the table refuses UPDATE
//! and DELETE) and, when configured, exported as DICOM audit messages
//! (PS3.15 A.5, the IHE ATNA format).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};
use tokio::sync::{mpsc, oneshot};

use super::{Method, Role};
use crate::index::IndexError;
use crate::index::sql::{Dialect, SqlIndex};

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// QIDO-RS, C-FIND.
    Query,
    /// WADO-RS / WADO-URI originals, metadata, frames, bulk data; C-MOVE, C-GET.
    Retrieve,
    /// Rendered images and thumbnails.
    Render,
    /// STOW-RS, C-STORE.
    Store,
    /// DICOMweb DELETE.
    Delete,
    Login,
    LoginFailed,
    Logout,
    /// A DICOM association refused (unknown calling AE title, wrong address).
    AssociationRefused,
    /// Users created, changed or listed.
    Users,
    /// Tokens created, revoked or listed.
    Tokens,
    /// Share links made, listed, revoked or opened.
    Share,
    /// The audit log read or exported.
    AuditRead,
    /// Anything else an authorised principal asked for (the viewer's files).
    Other,
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Success,
    /// Not authenticated or not authorised.
    Refused,
    /// Authorised but failed (not found, bad request, server error).
    Failed,
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEvent {
    pub time_ms: i64,
    /// User name, token name, OIDC subject, calling AE title or `anonymous`
    /// (or what a refused caller claimed to be).
    pub actor: String,
    pub role: Option<Role>,
    pub method: Method,
    /// The peer's IP address.
    pub source: String,
    pub action: Action,
    pub outcome: Outcome,
    /// HTTP status or DIMSE status.
    pub status: Option<i64>,
    pub patient_id: Option<String>,
    pub study_uid: Option<String>,
    pub series_uid: Option<String>,
    pub sop_uid: Option<String>,
    /// The request (method, path and query) or DIMSE operation.
    pub detail: Option<String>,
}

/// A stored event with its sequence number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// Which events to list: all conditions given must hold. Ordered by `seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditFilter {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub actor: Option<String>,
    pub patient_id: Option<String>,
    pub study_uid: Option<String>,
    pub action: Option<Action>,
    pub outcome: Option<Outcome>,
    /// Events after this sequence number (paging).
    pub after: Option<i64>,
    /// At most this many (default and maximum set by the implementation).
    pub limit: Option<u32>,
}

/// Where audit events are kept.
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    /// Appends the events in one transaction. An event with a study UID and no
    /// patient ID gets the study's patient ID from the index.
    async fn append(&self, events: &[AuditEvent]) -> Result<(), IndexError>;
    async fn search(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, IndexError>;
}

/// Events listed at once when the filter names no limit, and at most.
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Query => "query",
            Action::Retrieve => "retrieve",
            Action::Render => "render",
            Action::Store => "store",
            Action::Delete => "delete",
            Action::Login => "login",
            Action::LoginFailed => "login-failed",
            Action::Logout => "logout",
            Action::AssociationRefused => "association-refused",
            Action::Users => "users",
            Action::Tokens => "tokens",
            Action::Share => "share",
            Action::AuditRead => "audit-read",
            Action::Other => "other",
        }
    }
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// A stored name back into its enum (serde's names are the stored ones).
fn parse_name<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, IndexError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| IndexError::Invalid(format!("unknown value {s:?} in the audit log")))
}

#[async_trait]
impl<DB> AuditLog for SqlIndex<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
    DB::Arguments: Default + IntoArguments<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    for<'a> &'a str: Encode<'a, DB> + Type<DB>,
    Option<String>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Option<i64>: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
{
    async fn append(&self, events: &[AuditEvent]) -> Result<(), IndexError> {
        let mut tx = self.writer.begin().await?;
        for e in events {
            // The patient of a study named without one (WADO paths name UIDs
            // only); a study not (or no longer) indexed leaves it empty.
            sqlx::query(
                "INSERT INTO audit_events (time_ms, actor, role, method, source, action, outcome, \
                 status, patient_id, study_uid, series_uid, sop_uid, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                 COALESCE($9, (SELECT patient_id FROM studies WHERE study_instance_uid = $10)), \
                 $10, $11, $12, $13)",
            )
            .bind(e.time_ms)
            .bind(&e.actor)
            .bind(e.role.map(|r| r.as_str().to_owned()))
            .bind(e.method.as_str())
            .bind(&e.source)
            .bind(e.action.as_str())
            .bind(e.outcome.as_str())
            .bind(e.status)
            .bind(&e.patient_id)
            .bind(&e.study_uid)
            .bind(&e.series_uid)
            .bind(&e.sop_uid)
            .bind(&e.detail)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn search(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, IndexError> {
        let limit = filter.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        // Every condition is always present, neutral when its value is NULL, so
        // the statement text is fixed and every value is bound.
        let rows = sqlx::query(
            "SELECT seq, time_ms, actor, role, method, source, action, outcome, status, \
             patient_id, study_uid, series_uid, sop_uid, detail FROM audit_events \
             WHERE ($1 IS NULL OR time_ms >= $1) AND ($2 IS NULL OR time_ms < $2) \
             AND ($3 IS NULL OR actor = $3) AND ($4 IS NULL OR patient_id = $4) \
             AND ($5 IS NULL OR study_uid = $5) AND ($6 IS NULL OR action = $6) \
             AND ($7 IS NULL OR outcome = $7) AND ($8 IS NULL OR seq > $8) \
             ORDER BY seq LIMIT $9",
        )
        .bind(filter.since_ms)
        .bind(filter.until_ms)
        .bind(filter.actor.clone())
        .bind(filter.patient_id.clone())
        .bind(filter.study_uid.clone())
        .bind(filter.action.map(|a| a.as_str().to_owned()))
        .bind(filter.outcome.map(|o| o.as_str().to_owned()))
        .bind(filter.after)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                let role: Option<String> = r.try_get("role")?;
                Ok(AuditRecord {
                    seq: r.try_get("seq")?,
                    event: AuditEvent {
                        time_ms: r.try_get("time_ms")?,
                        actor: r.try_get("actor")?,
                        role: match role {
                            Some(role) => Some(role.parse().map_err(IndexError::Invalid)?),
                            None => None,
                        },
                        method: parse_name(&r.try_get::<String, _>("method")?)?,
                        source: r.try_get("source")?,
                        action: parse_name(&r.try_get::<String, _>("action")?)?,
                        outcome: parse_name(&r.try_get::<String, _>("outcome")?)?,
                        status: r.try_get("status")?,
                        patient_id: r.try_get("patient_id")?,
                        study_uid: r.try_get("study_uid")?,
                        series_uid: r.try_get("series_uid")?,
                        sop_uid: r.try_get("sop_uid")?,
                        detail: r.try_get("detail")?,
                    },
                })
            })
            .collect()
    }
}

/// Events waiting to be written, at most; a full queue makes recorders wait.
const QUEUE: usize = 10_000;
/// Events written in one transaction, at most.
const BATCH: usize = 500;
/// The pause after a failed write; it doubles on each failure, up to
/// `MAX_PAUSE`, so a database that is down is not hammered.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(10);

enum Job {
    /// An event, and who waits for it to be in the database.
    Event(Box<AuditEvent>, Option<oneshot::Sender<()>>),
    /// Answered once every event queued before it is written.
    Flush(oneshot::Sender<()>),
}

/// The audit writer: events are queued and written in batches by one task;
/// a request waits until the batch holding its event is in the database
/// (group commit: requests running together share one transaction), so what
/// it read or wrote is on record before its answer leaves. Nothing is
/// dropped: a failed write is retried until it succeeds.
#[derive(Clone)]
pub struct Audit {
    queue: mpsc::Sender<Job>,
}

impl Audit {
    /// Starts the writer (and the export named by `config.audit_export`).
    pub fn start(log: Arc<dyn AuditLog>, config: &crate::config::Config) -> anyhow::Result<Audit> {
        let host = hostname();
        let export = match &config.audit_export {
            Some(url) => Some(Export::open(url, &host)?),
            None => None,
        };
        let source_id = format!("{}@{host}", config.ae_title);
        let (queue, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(log, jobs, export, source_id));
        Ok(Audit { queue })
    }

    /// An audit handle whose events go nowhere, for unit tests of code that
    /// records.
    #[cfg(test)]
    pub fn detached() -> Audit {
        let (queue, _) = mpsc::channel(1);
        Audit { queue }
    }

    /// Records an event; returns once it is in the database.
    pub async fn record(&self, event: AuditEvent) {
        let (done, written) = oneshot::channel();
        if self
            .queue
            .send(Job::Event(Box::new(event), Some(done)))
            .await
            .is_err()
        {
            tracing::error!("audit writer is gone; an audit event was not recorded");
            return;
        }
        let _ = written.await;
    }

    /// Queues an event from code that cannot wait (DICOM access control);
    /// says so in the log if the queue is full.
    pub fn record_now(&self, event: AuditEvent) {
        if self
            .queue
            .try_send(Job::Event(Box::new(event), None))
            .is_err()
        {
            tracing::error!("audit queue full or writer gone; an audit event was not recorded");
        }
    }

    /// Returns once every event recorded before the call is written (and
    /// handed to the export, if any).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Job::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_loop(
    log: Arc<dyn AuditLog>,
    mut jobs: mpsc::Receiver<Job>,
    mut export: Option<Export>,
    source_id: String,
) {
    let mut batch: Vec<AuditEvent> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    let mut recorders: Vec<oneshot::Sender<()>> = Vec::new();
    while let Some(job) = jobs.recv().await {
        let mut next = Some(job);
        // Take what is already queued, up to a batch: one transaction for a
        // burst, no waiting when it is quiet.
        while let Some(job) = next.take() {
            match job {
                Job::Event(e, done) => {
                    batch.push(*e);
                    recorders.extend(done);
                }
                Job::Flush(done) => waiting.push(done),
            }
            if batch.len() < BATCH {
                next = jobs.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let mut pause = FIRST_PAUSE;
            while let Err(e) = log.append(&batch).await {
                tracing::error!(error = %e, events = batch.len(), "writing audit events failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            // Recorders wait for the database, not for a slow collector.
            for done in recorders.drain(..) {
                let _ = done.send(());
            }
            if let Some(out) = &mut export {
                out.send(&batch, &source_id).await;
            }
            batch.clear();
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Who writes the audit messages: `AE_TITLE@host`.
pub fn source_id(config: &crate::config::Config) -> String {
    format!("{}@{}", config.ae_title, hostname())
}

/// This machine's name, as RFC 5424 allows it in HEADER (printable ASCII, no
/// spaces, at most 255 characters).
fn hostname() -> String {
    let name: String = std::fs::read_to_string("/etc/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    }
}

/// How long a syslog collector over TCP gets to accept a connection, or a
/// batch of messages.
const COLLECTOR_TIMEOUT: Duration = Duration::from_secs(5);
/// After a collector failed, how long before connecting again: a collector
/// that is down costs the writer one timeout per period, not one per batch,
/// so the audit log itself is not held up.
const RECONNECT_AFTER: Duration = Duration::from_secs(30);

/// Where DICOM audit messages go as they happen.
struct Export {
    sink: Sink,
    /// HOSTNAME of the syslog messages.
    hostname: String,
    /// Events not exported since the collector went away (they are in the
    /// database; `aina audit export` re-creates their messages).
    missed: u64,
}

enum Sink {
    File(tokio::fs::File),
    Udp(tokio::net::UdpSocket),
    Tcp {
        address: String,
        stream: Option<tokio::net::TcpStream>,
        /// No connection is tried before this.
        retry_at: Option<tokio::time::Instant>,
    },
}

impl Export {
    fn open(url: &str, hostname: &str) -> anyhow::Result<Export> {
        use anyhow::Context;
        let sink = if let Some(path) = url.strip_prefix("file://") {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening the audit export file {path}"))?;
            Sink::File(tokio::fs::File::from_std(file))
        } else if let Some(address) = url.strip_prefix("syslog+udp://") {
            let socket = std::net::UdpSocket::bind(if address.starts_with('[') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            })?;
            socket
                .connect(address)
                .with_context(|| format!("audit syslog collector {address}"))?;
            socket.set_nonblocking(true)?;
            Sink::Udp(tokio::net::UdpSocket::from_std(socket)?)
        } else if let Some(address) = url.strip_prefix("syslog+tcp://") {
            Sink::Tcp {
                address: address.to_owned(),
                stream: None,
                retry_at: None,
            }
        } else {
            anyhow::bail!("unsupported audit export {url:?}")
        };
        Ok(Export {
            sink,
            hostname: hostname.to_owned(),
            missed: 0,
        })
    }

    /// Sends a batch. The export is a copy: what a collector that is down
    /// misses stays in the database, and is said in the log.
    async fn send(&mut self, batch: &[AuditEvent], source_id: &str) {
        use tokio::io::AsyncWriteExt;
        let hostname = self.hostname.as_str();
        let result: std::io::Result<()> = match &mut self.sink {
            Sink::File(file) => {
                let mut text = String::new();
                for e in batch {
                    text.push_str(&audit_message(e, source_id));
                    text.push('\n');
                }
                match file.write_all(text.as_bytes()).await {
                    Ok(()) => file.flush().await,
                    Err(e) => Err(e),
                }
            }
            Sink::Udp(socket) => {
                // One datagram per message; one that cannot go (too large,
                // nobody listening) does not stop the others.
                let mut result = Ok(());
                for e in batch {
                    if let Err(err) = socket.send(syslog(e, hostname, source_id).as_bytes()).await {
                        result = Err(err);
                    }
                }
                result
            }
            Sink::Tcp {
                address,
                stream,
                retry_at,
            } => {
                let now = tokio::time::Instant::now();
                if stream.is_none() && retry_at.is_some_and(|at| now < at) {
                    self.missed += batch.len() as u64;
                    return;
                }
                if stream.is_none() {
                    match tokio::time::timeout(
                        COLLECTOR_TIMEOUT,
                        tokio::net::TcpStream::connect(address.as_str()),
                    )
                    .await
                    {
                        Ok(Ok(connected)) => {
                            *stream = Some(connected);
                            *retry_at = None;
                            if self.missed > 0 {
                                tracing::warn!(
                                    missed = self.missed,
                                    "audit export resumed; the events it missed are in the \
                                     database (aina audit export)"
                                );
                                self.missed = 0;
                            }
                        }
                        Ok(Err(e)) => {
                            *retry_at = Some(now + RECONNECT_AFTER);
                            self.missed += batch.len() as u64;
                            tracing::warn!(error = %e, events = batch.len(), "audit syslog collector unreachable; the events are in the database");
                            return;
                        }
                        Err(_) => {
                            *retry_at = Some(now + RECONNECT_AFTER);
                            self.missed += batch.len() as u64;
                            tracing::warn!(
                                events = batch.len(),
                                "audit syslog collector did not answer; the events are in the database"
                            );
                            return;
                        }
                    }
                }
                // RFC 6587 octet counting: MSG-LEN SP SYSLOG-MSG.
                let mut frames = Vec::new();
                for e in batch {
                    let message = syslog(e, hostname, source_id);
                    frames.extend_from_slice(format!("{} ", message.len()).as_bytes());
                    frames.extend_from_slice(message.as_bytes());
                }
                let written = match stream.as_mut() {
                    Some(s) => tokio::time::timeout(COLLECTOR_TIMEOUT, s.write_all(&frames)).await,
                    None => Ok(Ok(())),
                };
                match written {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => {
                        *stream = None;
                        *retry_at = Some(now + RECONNECT_AFTER);
                        self.missed += batch.len() as u64;
                        Err(e)
                    }
                    Err(_) => {
                        *stream = None;
                        *retry_at = Some(now + RECONNECT_AFTER);
                        self.missed += batch.len() as u64;
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the collector took no data",
                        ))
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, events = batch.len(), "audit export failed; the events are in the database");
        }
    }
}

/// An RFC 5424 syslog message carrying a DICOM audit message, as IHE ATNA
/// (ITI-20) sends it: facility 10 (security/authorization), severity notice,
/// MSGID `IHE+RFC-3881`, the XML as MSG after a byte order mark.
fn syslog(event: &AuditEvent, hostname: &str, source_id: &str) -> String {
    format!(
        "<85>1 {} {hostname} aina - IHE+RFC-3881 - \u{feff}{}",
        rfc3339(event.time_ms),
        audit_message(event, source_id)
    )
}

/// UTC time of Unix milliseconds as `YYYY-MM-DDThh:mm:ss.sssZ`.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        ms.rem_euclid(1000)
    )
}

/// A coded value (PS3.15 A.5.1 `CodedValueType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Code {
    code: &'static str,
    system: &'static str,
    meaning: &'static str,
}

const fn dcm(code: &'static str, meaning: &'static str) -> Code {
    Code {
        code,
        system: "DCM",
        meaning,
    }
}

const fn rfc3881(code: &'static str, meaning: &'static str) -> Code {
    Code {
        code,
        system: "RFC-3881",
        meaning,
    }
}

// Event IDs (PS3.16 CID 400) and event types (CID 401, 403).
const AUDIT_LOG_USED: Code = dcm("110101", "Audit Log Used");
const INSTANCES_ACCESSED: Code = dcm("110103", "DICOM Instances Accessed");
const INSTANCES_TRANSFERRED: Code = dcm("110104", "DICOM Instances Transferred");
const STUDY_DELETED: Code = dcm("110105", "DICOM Study Deleted");
const QUERY: Code = dcm("110112", "Query");
const SECURITY_ALERT: Code = dcm("110113", "Security Alert");
const USER_AUTHENTICATION: Code = dcm("110114", "User Authentication");
const LOGIN: Code = dcm("110122", "Login");
const LOGOUT: Code = dcm("110123", "Logout");
const NODE_AUTHENTICATION: Code = dcm("110126", "Node Authentication");
const RESTRICTED_FUNCTION: Code = dcm("110132", "Use of Restricted Function");
const USER_ATTRIBUTES_CHANGED: Code = dcm("110137", "User Security Attributes Changed");
// Participant roles (CID 402).
const DESTINATION: Code = dcm("110152", "Destination Role ID");
const SOURCE: Code = dcm("110153", "Source Role ID");
// Participant object ID types (A.5.1.2.4, CID 404).
const PATIENT_NUMBER: Code = rfc3881("2", "Patient Number");
const SEARCH_CRITERIA: Code = rfc3881("10", "Search Criteria");
const URI: Code = rfc3881("12", "URI");
const STUDY_INSTANCE_UID: Code = dcm("110180", "Study Instance UID");
const NODE_ID: Code = dcm("110182", "Node ID");
/// Aina's roles, a local coding scheme (PS3.16 8.2: `99` names a private one).
const ROLE_SCHEME: &str = "99AINA";

/// What a message names besides its active participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    /// Nothing (authentication).
    Nothing,
    /// The patient and study of the instances.
    Data,
    /// The query, and the patient and study it names.
    Query,
    /// The audit log.
    AuditLog,
    /// What a security alert is about, and the patient and study if any.
    Alert,
}

/// How one event is told (PS3.15 A.5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    id: Code,
    /// EventActionCode: C, R, U, D or E.
    action: &'static str,
    kind: Option<Code>,
    /// The requestor's part in a transfer or query (Source, Destination).
    requestor: Option<Code>,
    /// This archive's part.
    archive: Option<Code>,
    subject: Subject,
}

fn plain(
    id: Code,
    action: &'static str,
    requestor: Option<Code>,
    archive: Option<Code>,
    subject: Subject,
) -> Shape {
    Shape {
        id,
        action,
        kind: None,
        requestor,
        archive,
        subject,
    }
}

fn typed(id: Code, kind: Code, subject: Subject) -> Shape {
    Shape {
        id,
        action: "E",
        kind: Some(kind),
        requestor: None,
        archive: None,
        subject,
    }
}

/// The DICOM audit message an event is (A.5.3): transfers are Instances
/// Transferred (stores create, retrieves read), rendering is Instances
/// Accessed, deleting a study is Study Deleted; anything refused, and the
/// use of the administrator's functions, is a Security Alert.
fn shape(event: &AuditEvent) -> Shape {
    let changes = http_request(event).is_some_and(|(method, _)| method != "GET");
    match (event.action, event.outcome) {
        (Action::Login | Action::LoginFailed, _) => {
            typed(USER_AUTHENTICATION, LOGIN, Subject::Nothing)
        }
        (Action::Logout, _) => typed(USER_AUTHENTICATION, LOGOUT, Subject::Nothing),
        (Action::AssociationRefused, _) => {
            typed(SECURITY_ALERT, NODE_AUTHENTICATION, Subject::Alert)
        }
        (_, Outcome::Refused) => typed(SECURITY_ALERT, RESTRICTED_FUNCTION, Subject::Alert),
        (Action::Users | Action::Tokens | Action::Share, _) if changes => {
            typed(SECURITY_ALERT, USER_ATTRIBUTES_CHANGED, Subject::Alert)
        }
        (Action::Users | Action::Tokens | Action::Share | Action::Other, _) => {
            typed(SECURITY_ALERT, RESTRICTED_FUNCTION, Subject::Alert)
        }
        (Action::Query, _) => plain(QUERY, "E", Some(SOURCE), Some(DESTINATION), Subject::Query),
        (Action::Store, _) => plain(
            INSTANCES_TRANSFERRED,
            "C",
            Some(SOURCE),
            Some(DESTINATION),
            Subject::Data,
        ),
        (Action::Retrieve, _) => plain(
            INSTANCES_TRANSFERRED,
            "R",
            // A C-MOVE's requestor is not where the instances go: its
            // destination is a participant of its own.
            move_destination(event).is_none().then_some(DESTINATION),
            Some(SOURCE),
            Subject::Data,
        ),
        (Action::Render, _) => plain(INSTANCES_ACCESSED, "R", None, None, Subject::Data),
        (Action::Delete, _) if event.series_uid.is_none() && event.sop_uid.is_none() => {
            plain(STUDY_DELETED, "D", None, None, Subject::Data)
        }
        (Action::Delete, _) => plain(INSTANCES_ACCESSED, "D", None, None, Subject::Data),
        (Action::AuditRead, _) => plain(AUDIT_LOG_USED, "R", None, None, Subject::AuditLog),
    }
}

/// The method and target of an HTTP event (its detail is `GET /path?query`).
fn http_request(event: &AuditEvent) -> Option<(&str, &str)> {
    if event.method == Method::Dicom {
        return None;
    }
    let (method, rest) = event.detail.as_deref()?.split_once(' ')?;
    let target = rest.split(' ').next()?;
    target.starts_with('/').then_some((method, target))
}

/// The Move Destination of a C-MOVE (its detail starts `C-MOVE to AE:`).
fn move_destination(event: &AuditEvent) -> Option<&str> {
    if event.method != Method::Dicom || event.action != Action::Retrieve {
        return None;
    }
    let destination = event.detail.as_deref()?.strip_prefix("C-MOVE to ")?;
    destination.split(':').next().filter(|d| !d.is_empty())
}

/// The SOP Class a C-FIND was on (its detail starts `C-FIND UID:`).
fn find_model(event: &AuditEvent) -> Option<&str> {
    if event.method != Method::Dicom {
        return None;
    }
    let uid = event
        .detail
        .as_deref()?
        .strip_prefix("C-FIND ")?
        .split(':')
        .next()?;
    (!uid.is_empty() && uid.chars().all(|c| c.is_ascii_digit() || c == '.')).then_some(uid)
}

/// EventOutcomeDescription: how it ended, with its HTTP or DIMSE status.
fn outcome_description(event: &AuditEvent) -> String {
    let how = match event.outcome {
        Outcome::Success => "succeeded",
        Outcome::Refused => "refused",
        Outcome::Failed => "failed",
    };
    match event.status {
        Some(s) if event.method == Method::Dicom => format!("{how}: DIMSE status 0x{s:04X}"),
        Some(s) => format!("{how}: status {s}"),
        None => how.to_owned(),
    }
}

/// A DICOM Audit Message (PS3.15 A.5) for one event, one line of XML.
///
/// The query of a Query message is what the audit log keeps (the HTTP
/// request, or the C-FIND keys as text), not the C-FIND data set, so its
/// participant object is identified as search criteria (A.5.3.10 note 2)
/// rather than by SOP Class UID, which would promise the data set.
pub fn audit_message(event: &AuditEvent, source_id: &str) -> String {
    let shape = shape(event);
    let alert = shape.id == SECURITY_ALERT;
    let mut x = Xml(quick_xml::Writer::new(Vec::new()));
    x.open("AuditMessage", &[]);

    // A.5.1 EventOutcomeIndicator: 0 success, 4 minor failure (refused: the
    // safeguard worked), 8 serious failure (the operation failed).
    let outcome = match event.outcome {
        Outcome::Success => "0",
        Outcome::Refused => "4",
        Outcome::Failed => "8",
    };
    let time = rfc3339(event.time_ms);
    x.open(
        "EventIdentification",
        &[
            ("EventActionCode", shape.action),
            ("EventDateTime", &time),
            ("EventOutcomeIndicator", outcome),
        ],
    );
    x.code("EventID", shape.id);
    if let Some(kind) = shape.kind {
        x.code("EventTypeCode", kind);
    }
    if event.outcome != Outcome::Success {
        x.text("EventOutcomeDescription", &outcome_description(event));
    }
    x.close("EventIdentification");

    // The requestor. In a security alert it is one of the "performing
    // persons or processes", whose UserIsRequestor A.5.3.11 sets to false:
    // the alert's requestor is this archive, which reports it.
    let ae_titles = format!("AETITLES={}", event.actor);
    let mut attrs = vec![("UserID", event.actor.as_str())];
    if event.method == Method::Dicom {
        attrs.push(("AlternativeUserID", &ae_titles));
    }
    attrs.push(("UserIsRequestor", if alert { "false" } else { "true" }));
    if event.source.parse::<std::net::IpAddr>().is_ok() {
        attrs.push(("NetworkAccessPointID", &event.source));
        attrs.push(("NetworkAccessPointTypeCode", "2"));
    }
    x.open("ActiveParticipant", &attrs);
    if let Some(part) = shape.requestor {
        x.code("RoleIDCode", part);
    }
    if let Some(role) = event.role {
        x.code(
            "RoleIDCode",
            Code {
                code: role.as_str(),
                system: ROLE_SCHEME,
                meaning: role.as_str(),
            },
        );
    }
    x.close("ActiveParticipant");

    // This archive.
    let our_ae = source_id.split_once('@').map_or(source_id, |(ae, _)| ae);
    let our_ae_titles = format!("AETITLES={our_ae}");
    x.open(
        "ActiveParticipant",
        &[
            ("UserID", source_id),
            ("AlternativeUserID", &our_ae_titles),
            ("UserIsRequestor", if alert { "true" } else { "false" }),
        ],
    );
    if let Some(part) = shape.archive {
        x.code("RoleIDCode", part);
    }
    x.close("ActiveParticipant");

    // Where a C-MOVE sent the instances.
    if let Some(destination) = move_destination(event) {
        let titles = format!("AETITLES={destination}");
        x.open(
            "ActiveParticipant",
            &[
                ("UserID", destination),
                ("AlternativeUserID", &titles),
                ("UserIsRequestor", "false"),
            ],
        );
        x.code("RoleIDCode", DESTINATION);
        x.close("ActiveParticipant");
    }

    x.open("AuditSourceIdentification", &[("AuditSourceID", source_id)]);
    // A.5.1.2.1: 4, an application server process.
    x.empty("AuditSourceTypeCode", &[("csd-code", "4")]);
    x.close("AuditSourceIdentification");

    let target = http_request(event).map(|(_, target)| target);
    let path = target.map(|t| t.split('?').next().unwrap_or(t));
    match shape.subject {
        Subject::Query => {
            let id = find_model(event).or(path).unwrap_or("query");
            x.object(id, "2", "3", SEARCH_CRITERIA);
            if let Some(detail) = &event.detail {
                x.base64("ParticipantObjectQuery", detail.as_bytes());
            }
            x.detail("QueryEncoding", "UTF-8");
            x.close("ParticipantObjectIdentification");
        }
        Subject::AuditLog => {
            // A.5.3.2: the audit log, a security resource, by its URI.
            x.object(target.unwrap_or("aina:audit-log"), "2", "13", URI);
            x.text("ParticipantObjectName", "Security Audit Log");
            x.close("ParticipantObjectIdentification");
        }
        Subject::Alert => {
            // A.5.3.11: what the alert is about: the resource asked for over
            // HTTP, else the node that asked.
            match path {
                Some(path) if event.action != Action::AssociationRefused => {
                    x.object(path, "2", "13", URI)
                }
                _ => x.object(&event.source, "2", "13", NODE_ID),
            }
            let description = format!(
                "{} {}; {}",
                event.action.as_str(),
                event.detail.as_deref().unwrap_or(""),
                outcome_description(event)
            );
            x.detail("Alert Description", &description);
            x.close("ParticipantObjectIdentification");
        }
        Subject::Data | Subject::Nothing => {}
    }
    if shape.subject != Subject::Nothing {
        if let Some(study) = &event.study_uid {
            // A system object (2), a report (3), by Study Instance UID.
            x.object(study, "2", "3", STUDY_INSTANCE_UID);
            if let Some(sop) = &event.sop_uid {
                x.open("ParticipantObjectDescription", &[]);
                x.open("SOPClass", &[("NumberOfInstances", "1")]);
                x.empty("Instance", &[("UID", sop)]);
                x.close("SOPClass");
                x.close("ParticipantObjectDescription");
            }
            x.close("ParticipantObjectIdentification");
        }
        if let Some(patient) = &event.patient_id {
            // A person (1), the patient (1), by Patient Number.
            x.object(patient, "1", "1", PATIENT_NUMBER);
            x.close("ParticipantObjectIdentification");
        }
    }
    x.close("AuditMessage");
    String::from_utf8(x.0.into_inner()).unwrap_or_default()
}

/// Writes a message into memory.
struct Xml(quick_xml::Writer<Vec<u8>>);

impl Xml {
    fn write(&mut self, event: quick_xml::events::Event<'_>) {
        // Writing into a Vec cannot fail.
        let _ = self.0.write_event(event);
    }

    fn start(name: &str, attrs: &[(&str, &str)]) -> quick_xml::events::BytesStart<'static> {
        let mut start = quick_xml::events::BytesStart::new(name.to_owned());
        for (key, value) in attrs {
            start.push_attribute((*key, xml_safe(value).as_ref()));
        }
        start
    }

    fn open(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.write(quick_xml::events::Event::Start(Self::start(name, attrs)));
    }

    fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.write(quick_xml::events::Event::Empty(Self::start(name, attrs)));
    }

    fn close(&mut self, name: &str) {
        self.write(quick_xml::events::Event::End(
            quick_xml::events::BytesEnd::new(name),
        ));
    }

    fn text(&mut self, name: &str, text: &str) {
        self.open(name, &[]);
        let text = xml_safe(text);
        self.write(quick_xml::events::Event::Text(
            quick_xml::events::BytesText::new(&text),
        ));
        self.close(name);
    }

    fn base64(&mut self, name: &str, bytes: &[u8]) {
        self.text(name, &base64(bytes));
    }

    fn code(&mut self, name: &str, code: Code) {
        self.empty(
            name,
            &[
                ("csd-code", code.code),
                ("codeSystemName", code.system),
                ("originalText", code.meaning),
            ],
        );
    }

    /// Opens a ParticipantObjectIdentification with its ID type code.
    fn object(&mut self, id: &str, kind: &str, role: &str, id_type: Code) {
        self.open(
            "ParticipantObjectIdentification",
            &[
                ("ParticipantObjectID", id),
                ("ParticipantObjectTypeCode", kind),
                ("ParticipantObjectTypeCodeRole", role),
            ],
        );
        self.code("ParticipantObjectIDTypeCode", id_type);
    }

    /// A ParticipantObjectDetail: its value is base64 (A.5.1 ValuePair).
    fn detail(&mut self, kind: &str, value: &str) {
        let value = base64(value.as_bytes());
        self.empty(
            "ParticipantObjectDetail",
            &[("type", kind), ("value", &value)],
        );
    }
}

/// Text as XML 1.0 may carry it on one line: control characters (a line
/// break in a user name a caller typed, a NUL) become U+FFFD, so that a
/// message cannot be split into two lines of the export, and stays well-formed.
fn xml_safe(text: &str) -> Cow<'_, str> {
    let bad = |c: char| c.is_control() || matches!(c, '\u{fffe}' | '\u{ffff}');
    if text.chars().any(bad) {
        Cow::Owned(
            text.chars()
                .map(|c| if bad(c) { '\u{fffd}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests;
