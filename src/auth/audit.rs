//! The audit log: every read and write of patient data, every login and
//! failed login, appended to the index database (the table refuses UPDATE
//! and DELETE) and, when configured, exported as DICOM audit messages
//! (PS3.15 A.5, the IHE ATNA format).

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

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

enum Job {
    Event(Box<AuditEvent>),
    /// Answered once every event queued before it is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The audit writer: events are queued and written in batches by one task,
/// so a request waits for the database only when the queue is full. Nothing
/// is dropped: a failed write is retried until it succeeds.
#[derive(Clone)]
pub struct Audit {
    queue: tokio::sync::mpsc::Sender<Job>,
}

impl Audit {
    /// Starts the writer (and the export named by `config.audit_export`).
    pub fn start(log: Arc<dyn AuditLog>, config: &crate::config::Config) -> anyhow::Result<Audit> {
        let export = match &config.audit_export {
            Some(url) => Some(Export::open(url)?),
            None => None,
        };
        let source_id = source_id(config);
        let (queue, jobs) = tokio::sync::mpsc::channel(QUEUE);
        tokio::spawn(write_loop(log, jobs, export, source_id));
        Ok(Audit { queue })
    }

    /// An audit handle whose events go nowhere, for unit tests of code that
    /// records.
    #[cfg(test)]
    pub fn detached() -> Audit {
        let (queue, _) = tokio::sync::mpsc::channel(1);
        Audit { queue }
    }

    /// Queues an event (waits only when the queue is full).
    pub async fn record(&self, event: AuditEvent) {
        if self.queue.send(Job::Event(Box::new(event))).await.is_err() {
            tracing::error!("audit writer is gone; an audit event was not recorded");
        }
    }

    /// Queues an event from code that cannot wait (DICOM access control);
    /// says so in the log if the queue is full.
    pub fn record_now(&self, event: AuditEvent) {
        if self.queue.try_send(Job::Event(Box::new(event))).is_err() {
            tracing::error!("audit queue full or writer gone; an audit event was not recorded");
        }
    }

    /// Returns once every event recorded before the call is written.
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.queue.send(Job::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn write_loop(
    log: Arc<dyn AuditLog>,
    mut jobs: tokio::sync::mpsc::Receiver<Job>,
    mut export: Option<Export>,
    source_id: String,
) {
    let mut batch: Vec<AuditEvent> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
    while let Some(job) = jobs.recv().await {
        let mut next = Some(job);
        // Take what is already queued, up to a batch.
        while let Some(job) = next.take() {
            match job {
                Job::Event(e) => batch.push(*e),
                Job::Flush(done) => waiting.push(done),
            }
            if batch.len() < BATCH {
                next = jobs.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let mut pause = std::time::Duration::from_millis(100);
            while let Err(e) = log.append(&batch).await {
                tracing::error!(error = %e, events = batch.len(), "writing audit events failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(10));
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

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Where DICOM audit messages go as they happen.
enum Export {
    File(tokio::fs::File),
    Udp(tokio::net::UdpSocket),
    Tcp {
        address: String,
        stream: Option<tokio::net::TcpStream>,
    },
}

impl Export {
    fn open(url: &str) -> anyhow::Result<Export> {
        use anyhow::Context;
        if let Some(path) = url.strip_prefix("file://") {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening the audit export file {path}"))?;
            return Ok(Export::File(tokio::fs::File::from_std(file)));
        }
        if let Some(address) = url.strip_prefix("syslog+udp://") {
            let socket = std::net::UdpSocket::bind(if address.starts_with('[') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            })?;
            socket
                .connect(address)
                .with_context(|| format!("audit syslog collector {address}"))?;
            socket.set_nonblocking(true)?;
            return Ok(Export::Udp(tokio::net::UdpSocket::from_std(socket)?));
        }
        if let Some(address) = url.strip_prefix("syslog+tcp://") {
            return Ok(Export::Tcp {
                address: address.to_owned(),
                stream: None,
            });
        }
        anyhow::bail!("unsupported audit export {url:?}")
    }

    /// Sends a batch; a collector that is down loses the export (the events
    /// are in the database, and `aina audit export` re-creates the messages).
    async fn send(&mut self, batch: &[AuditEvent], source_id: &str) {
        use tokio::io::AsyncWriteExt;
        let result: std::io::Result<()> = async {
            match self {
                Export::File(file) => {
                    let mut text = String::new();
                    for e in batch {
                        text.push_str(&audit_message(e, source_id));
                        text.push('\n');
                    }
                    file.write_all(text.as_bytes()).await?;
                    file.flush().await
                }
                Export::Udp(socket) => {
                    for e in batch {
                        socket.send(syslog(e, source_id).as_bytes()).await?;
                    }
                    Ok(())
                }
                Export::Tcp { address, stream } => {
                    if stream.is_none() {
                        *stream = Some(tokio::net::TcpStream::connect(address.as_str()).await?);
                    }
                    let Some(s) = stream.as_mut() else {
                        return Ok(());
                    };
                    for e in batch {
                        // RFC 6587 octet counting.
                        let message = syslog(e, source_id);
                        let framed = format!("{} {message}", message.len());
                        if let Err(err) = s.write_all(framed.as_bytes()).await {
                            *stream = None;
                            return Err(err);
                        }
                    }
                    Ok(())
                }
            }
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, events = batch.len(), "audit export failed; the events are in the database");
        }
    }
}

/// An RFC 5424 syslog message carrying a DICOM audit message, as IHE ATNA
/// (ITI-20) sends it: facility 10 (security/authorization), severity notice.
fn syslog(event: &AuditEvent, source_id: &str) -> String {
    format!(
        "<85>1 {} {} aina - IHE+RFC-3881 - \u{feff}{}",
        rfc3339(event.time_ms),
        hostname(),
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

/// A DICOM Audit Message (PS3.15 A.5.1) for one event, one line of XML.
pub fn audit_message(event: &AuditEvent, source_id: &str) -> String {
    use quick_xml::Writer;
    use quick_xml::events::{BytesEnd, BytesStart, Event};

    // (EventID code, its meaning), EventActionCode, and an EventTypeCode.
    let (id, action, kind): ((&str, &str), &str, Option<(&str, &str)>) = match event.action {
        Action::Query => (("110112", "Query"), "E", None),
        Action::Retrieve | Action::Render => (("110103", "DICOM Instances Accessed"), "R", None),
        Action::Store => (("110104", "DICOM Instances Transferred"), "C", None),
        Action::Delete => (("110103", "DICOM Instances Accessed"), "D", None),
        Action::Login | Action::LoginFailed => (
            ("110114", "User Authentication"),
            "E",
            Some(("110122", "Login")),
        ),
        Action::Logout => (
            ("110114", "User Authentication"),
            "E",
            Some(("110123", "Logout")),
        ),
        Action::AssociationRefused => (
            ("110113", "Security Alert"),
            "E",
            Some(("110126", "Node Authentication")),
        ),
        Action::Users | Action::Tokens => (
            ("110113", "Security Alert"),
            "E",
            Some(("110137", "User Security Attributes Changed")),
        ),
        Action::AuditRead => (("110101", "Audit Log Used"), "R", None),
        Action::Other => (("110100", "Application Activity"), "E", None),
    };
    // A.5.1 EventOutcomeIndicator: 0 success, 4 minor failure (refused), 8
    // serious failure.
    let outcome = match event.outcome {
        Outcome::Success => "0",
        Outcome::Refused => "4",
        Outcome::Failed => "8",
    };
    let mut w = Writer::new(Vec::new());
    let start = |name: &str, attrs: &[(&str, &str)]| {
        let mut e = BytesStart::new(name.to_owned());
        for (k, v) in attrs {
            e.push_attribute((*k, *v));
        }
        e
    };
    let code = |name: &str, csd: &str, code: &str, meaning: &str| {
        start(
            name,
            &[
                ("csd-code", code),
                ("codeSystemName", csd),
                ("originalText", meaning),
            ],
        )
    };
    let time = rfc3339(event.time_ms);
    let mut out = || -> std::io::Result<()> {
        w.write_event(Event::Start(start("AuditMessage", &[])))?;
        w.write_event(Event::Start(start(
            "EventIdentification",
            &[
                ("EventActionCode", action),
                ("EventDateTime", &time),
                ("EventOutcomeIndicator", outcome),
            ],
        )))?;
        w.write_event(Event::Empty(code("EventID", "DCM", id.0, id.1)))?;
        if let Some((c, m)) = kind {
            w.write_event(Event::Empty(code("EventTypeCode", "DCM", c, m)))?;
        }
        w.write_event(Event::End(BytesEnd::new("EventIdentification")))?;

        let role = event.role.map(Role::as_str).unwrap_or("none");
        w.write_event(Event::Start(start(
            "ActiveParticipant",
            &[
                ("UserID", &event.actor),
                ("AlternativeUserID", event.method.as_str()),
                ("UserIsRequestor", "true"),
                ("NetworkAccessPointID", &event.source),
                ("NetworkAccessPointTypeCode", "2"),
            ],
        )))?;
        w.write_event(Event::Empty(code("RoleIDCode", "aina", role, role)))?;
        w.write_event(Event::End(BytesEnd::new("ActiveParticipant")))?;
        w.write_event(Event::Start(start(
            "ActiveParticipant",
            &[("UserID", source_id), ("UserIsRequestor", "false")],
        )))?;
        w.write_event(Event::Empty(code(
            "RoleIDCode",
            "DCM",
            "110153",
            "Source Role ID",
        )))?;
        w.write_event(Event::End(BytesEnd::new("ActiveParticipant")))?;

        w.write_event(Event::Start(start(
            "AuditSourceIdentification",
            &[("AuditSourceID", source_id)],
        )))?;
        w.write_event(Event::Empty(start(
            "AuditSourceTypeCode",
            &[("csd-code", "4"), ("codeSystemName", "DCM")],
        )))?;
        w.write_event(Event::End(BytesEnd::new("AuditSourceIdentification")))?;

        if let Some(patient) = &event.patient_id {
            // A.5.2.6: a person (1), the patient (role 1), by Patient Number (2).
            w.write_event(Event::Start(start(
                "ParticipantObjectIdentification",
                &[
                    ("ParticipantObjectID", patient),
                    ("ParticipantObjectTypeCode", "1"),
                    ("ParticipantObjectTypeCodeRole", "1"),
                ],
            )))?;
            w.write_event(Event::Empty(start(
                "ParticipantObjectIDTypeCode",
                &[
                    ("csd-code", "2"),
                    ("codeSystemName", "RFC-3881"),
                    ("originalText", "Patient Number"),
                ],
            )))?;
            w.write_event(Event::End(BytesEnd::new("ParticipantObjectIdentification")))?;
        }
        if let Some(study) = &event.study_uid {
            // A system object (2), a report/study (role 3), by Study Instance UID.
            w.write_event(Event::Start(start(
                "ParticipantObjectIdentification",
                &[
                    ("ParticipantObjectID", study),
                    ("ParticipantObjectTypeCode", "2"),
                    ("ParticipantObjectTypeCodeRole", "3"),
                ],
            )))?;
            w.write_event(Event::Empty(code(
                "ParticipantObjectIDTypeCode",
                "DCM",
                "110180",
                "Study Instance UID",
            )))?;
            if let Some(sop) = &event.sop_uid {
                let mut detail = start("ParticipantObjectDetail", &[("type", "SOPInstanceUID")]);
                detail.push_attribute(("value", base64(sop.as_bytes()).as_str()));
                w.write_event(Event::Empty(detail))?;
            }
            w.write_event(Event::End(BytesEnd::new("ParticipantObjectIdentification")))?;
        }
        if event.action == Action::Query
            && let Some(detail) = &event.detail
        {
            // A.5.3.2 Query: the query itself, base64, on a system object (2),
            // role query (24), by SOP Class UID (110181).
            w.write_event(Event::Start(start(
                "ParticipantObjectIdentification",
                &[
                    ("ParticipantObjectID", "1.2.840.10008.5.1.4.1.2.2.1"),
                    ("ParticipantObjectTypeCode", "2"),
                    ("ParticipantObjectTypeCodeRole", "24"),
                ],
            )))?;
            w.write_event(Event::Empty(code(
                "ParticipantObjectIDTypeCode",
                "DCM",
                "110181",
                "SOP Class UID",
            )))?;
            w.write_event(Event::Start(start("ParticipantObjectQuery", &[])))?;
            w.write_event(Event::Text(quick_xml::events::BytesText::new(&base64(
                detail.as_bytes(),
            ))))?;
            w.write_event(Event::End(BytesEnd::new("ParticipantObjectQuery")))?;
            w.write_event(Event::End(BytesEnd::new("ParticipantObjectIdentification")))?;
        }
        w.write_event(Event::End(BytesEnd::new("AuditMessage")))?;
        Ok(())
    };
    // Writing into a Vec cannot fail.
    let _ = out();
    String::from_utf8(w.into_inner()).unwrap_or_default()
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
