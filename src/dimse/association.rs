//! One association, from A-ASSOCIATE-AC to release or abort: PDUs in, messages
//! assembled, each request answered in order (no asynchronous operations window
//! is negotiated, so the peer waits for each answer; PS3.7 D.3.3.3).
//!
//! Any protocol error (a PDU that cannot be read, a fragment out of place, a
//! message on a context that was not accepted, the idle timeout) ends the
//! association with an A-ABORT, logged once here with its reason.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use dicom_dictionary_std::{tags, uids};
use dicom_ul::association::{Association, AsyncServerAssociation, Error as UlError};
use dicom_ul::pdu::{
    PDataValue, PDataValueType, Pdu, PresentationContextNegotiated, PresentationContextResultReason,
};
use futures::StreamExt;
use tokio::net::TcpStream;

use super::commitment;
use super::find::find;
use super::message::{Assembler, Command, Message, field, fragments, response};
use super::policy::role_of;
use super::presentation::{FIND_SOP_CLASSES, GET_SOP_CLASSES, MOVE_SOP_CLASSES, is_storage};
use super::retrieve::{Progress, resolve};
use super::scu::{self, MoveOriginator, Outcome, Outgoing, ScuError, StoreScu};
use super::status::{self, Status};
use super::store::{StoreRequest, store};
use super::{MAX_SEND_PDU, Options};
use crate::app::AppState;
use crate::auth::audit::{Action, AuditEvent, Outcome as AuditOutcome};
use crate::auth::{Access, Method, Role};
use crate::config::DicomPeer;
use crate::ingest::Slot;
use crate::retrieve::RetrieveError;

/// What an association runs over: TCP, or TLS over TCP (the DICOM TLS port).
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// How an association ended.
enum End {
    Released,
    PeerAborted,
    Closed,
    /// We abort, for this reason.
    Abort(String),
}

impl From<UlError> for End {
    fn from(e: UlError) -> Self {
        match e {
            UlError::ConnectionClosed { .. }
            | UlError::WireRead { .. }
            | UlError::WireSend { .. } => End::Closed,
            UlError::Timeout { .. } => End::Abort("idle timeout".to_owned()),
            other => End::Abort(other.to_string()),
        }
    }
}

struct Connection<S: Stream> {
    ul: AsyncServerAssociation<S>,
    state: AppState,
    calling_ae_title: String,
    assembler: Assembler,
    /// Fragments received and not yet assembled.
    pdvs: VecDeque<PDataValue>,
    /// Other PDUs read ahead while looking for a C-CANCEL, handled after `pdvs`.
    stash: VecDeque<Pdu>,
    /// The ingest slot held while a data set is received and handled: taken when
    /// its command arrives, so that the server-wide bound on instances in memory
    /// holds for DIMSE too (the peer waits, with TCP backpressure).
    slot: Option<Slot>,
    /// The Message ID a C-CANCEL arrived for while a C-GET sub-operation's
    /// response was awaited (one retrieve runs at a time, so one is enough).
    cancel: Option<u16>,
    /// The Message ID of our next C-STORE-RQ (C-GET sub-operations).
    next_message_id: u16,
    /// What the caller may do (its allow-list entry's role).
    role: Role,
    /// The caller's address, for the audit log.
    peer: SocketAddr,
}

/// Where the sub-operations of a C-MOVE or C-GET go.
enum Target {
    /// To a configured peer, over associations we open (C-MOVE). `covered` is
    /// the index of the first instance the open association was not negotiated
    /// for.
    Peer {
        peer: DicomPeer,
        originator: MoveOriginator,
        scu: Option<Box<StoreScu>>,
        covered: usize,
    },
    /// Back to the requestor over this association (C-GET).
    Requestor,
}

/// The name of a request's command, for logs and the audit log.
fn operation(command_field: u16) -> &'static str {
    match command_field {
        field::C_STORE_RQ => "C-STORE",
        field::C_FIND_RQ => "C-FIND",
        field::C_MOVE_RQ => "C-MOVE",
        field::C_GET_RQ => "C-GET",
        field::N_ACTION_RQ => "N-ACTION",
        _ => "DIMSE",
    }
}

/// Negotiates and serves one association on `socket`, in TLS when the
/// options carry a TLS configuration (the DICOM TLS listener's).
pub async fn run(
    socket: TcpStream,
    peer: SocketAddr,
    options: &Options,
    state: AppState,
    tls: bool,
) {
    let timeout = state.config.dicom_association_timeout;
    if tls {
        match tokio::time::timeout(timeout, options.establish_tls_async(socket)).await {
            Ok(Ok(ul)) => serve(ul, peer, state).await,
            Ok(Err(e)) => {
                tracing::info!(%peer, reason = %e, "TLS association not established");
                if let Some(reason) = tls_refusal(&e) {
                    state.audit.record(tls_refused(peer, reason)).await;
                }
            }
            Err(_) => tracing::info!(%peer, ?timeout, "TLS association not established in time"),
        }
        return;
    }
    match tokio::time::timeout(timeout, options.establish_async(socket)).await {
        Ok(Ok(ul)) => serve(ul, peer, state).await,
        Ok(Err(e)) => tracing::info!(%peer, reason = %e, "association not established"),
        // The socket is dropped with the future: the connection closes.
        Err(_) => tracing::info!(%peer, ?timeout, "association not established in time"),
    }
}

/// Why a TLS handshake was refused, when the peer spoke and was turned away
/// (no or an untrusted client certificate, not TLS at all), as opposed to a
/// connection merely opened and closed (a port check), which is not audited.
fn tls_refusal(e: &UlError) -> Option<String> {
    let UlError::TlsHandshake { source, .. } = e else {
        return None;
    };
    (source.kind() == std::io::ErrorKind::InvalidData).then(|| source.to_string())
}

/// The audit event of a refused TLS handshake: a node that failed to
/// authenticate, before any AE title is known.
fn tls_refused(peer: SocketAddr, reason: String) -> AuditEvent {
    AuditEvent {
        time_ms: crate::index::sql::now_ms(),
        actor: "unknown".to_owned(),
        role: None,
        method: Method::Dicom,
        source: peer.ip().to_string(),
        action: Action::AssociationRefused,
        outcome: AuditOutcome::Refused,
        status: None,
        patient_id: None,
        study_uid: None,
        series_uid: None,
        sop_uid: None,
        detail: Some(format!("TLS handshake failed: {reason}")),
    }
}

async fn serve<S: Stream>(ul: AsyncServerAssociation<S>, peer: SocketAddr, state: AppState) {
    let calling_ae_title = ul.peer_ae_title().to_owned();
    let accepted = ul
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .count();
    tracing::info!(
        %peer,
        calling = calling_ae_title,
        accepted_contexts = accepted,
        peer_max_pdu = ul.requestor_max_pdu_length(),
        "association established"
    );
    let max_data = state.ingest.max_instance_bytes();
    let mut conn = Connection {
        ul,
        state,
        calling_ae_title,
        assembler: Assembler::new(max_data),
        pdvs: VecDeque::new(),
        stash: VecDeque::new(),
        slot: None,
        cancel: None,
        next_message_id: 1,
        role: Role::Admin,
        peer,
    };
    conn.role = role_of(&conn.state.config, &conn.calling_ae_title, peer.ip());
    match conn.serve().await {
        End::Released => tracing::info!(%peer, "association released"),
        End::PeerAborted => tracing::info!(%peer, "association aborted by the peer"),
        End::Closed => tracing::info!(%peer, "connection closed without release"),
        End::Abort(reason) => {
            tracing::warn!(%peer, reason, "aborting association");
            let _ = conn.ul.abort().await;
        }
    }
}

impl<S: Stream> Connection<S> {
    async fn serve(&mut self) -> End {
        loop {
            // Fragments already received come first, then PDUs read ahead, then
            // the wire.
            if let Some(pdv) = self.pdvs.pop_front() {
                match self.assembler.push(pdv) {
                    Ok(None) => {
                        if self.assembler.awaiting_data() && self.slot.is_none() {
                            self.slot = Some(self.state.ingest.slot().await);
                        }
                    }
                    Ok(Some(message)) => {
                        let result = self.dispatch(message).await;
                        self.slot = None;
                        if let Err(end) = result {
                            return end;
                        }
                    }
                    Err(e) => return End::Abort(e.to_string()),
                }
                continue;
            }
            let pdu = match self.stash.pop_front() {
                Some(pdu) => pdu,
                None => match self.ul.receive().await {
                    Ok(pdu) => pdu,
                    Err(e) => return e.into(),
                },
            };
            match pdu {
                Pdu::PData { data } => self.pdvs.extend(data),
                Pdu::ReleaseRQ => {
                    let _ = self.ul.send(&Pdu::ReleaseRP).await;
                    return End::Released;
                }
                Pdu::AbortRQ { .. } => return End::PeerAborted,
                other => return End::Abort(format!("unexpected {}", other.short_description())),
            }
        }
    }

    /// An audit event of this association, the rest filled in by the caller.
    fn event(&self, action: Action, outcome: AuditOutcome) -> AuditEvent {
        AuditEvent {
            time_ms: crate::index::sql::now_ms(),
            actor: self.calling_ae_title.clone(),
            role: Some(self.role),
            method: Method::Dicom,
            source: self.peer.ip().to_string(),
            action,
            outcome,
            status: None,
            patient_id: None,
            study_uid: None,
            series_uid: None,
            sop_uid: None,
            detail: None,
        }
    }

    fn context(&self, id: u8) -> Option<PresentationContextNegotiated> {
        self.ul
            .presentation_contexts()
            .iter()
            .find(|pc| pc.id == id && pc.reason == PresentationContextResultReason::Acceptance)
            .cloned()
    }

    async fn dispatch(&mut self, message: Message) -> Result<(), End> {
        let pc = self.context(message.context_id).ok_or_else(|| {
            End::Abort(format!(
                "message on presentation context {} that was not accepted",
                message.context_id
            ))
        })?;
        let command = message.command.clone();
        let needs = match command.field {
            field::C_STORE_RQ | field::N_ACTION_RQ => Some((Access::Store, Action::Store)),
            field::C_FIND_RQ => Some((Access::Read, Action::Query)),
            field::C_MOVE_RQ | field::C_GET_RQ => Some((Access::Read, Action::Retrieve)),
            _ => None,
        };
        if let Some((access, action)) = needs
            && !self.role.grants(access)
        {
            let mut event = self.event(action, AuditOutcome::Refused);
            event.status = Some(i64::from(status::NOT_AUTHORIZED));
            event.sop_uid = command.string(tags::AFFECTED_SOP_INSTANCE_UID);
            event.detail = Some(format!(
                "{} refused for role {}",
                operation(command.field),
                self.role
            ));
            self.state.audit.record(event).await;
            tracing::warn!(
                calling = self.calling_ae_title,
                role = %self.role,
                operation = operation(command.field),
                "DIMSE operation refused: not authorised"
            );
            let status = Status::with_comment(
                status::NOT_AUTHORIZED,
                "this calling AE title may not do this",
            );
            let mut rsp = response(&command, &status, false);
            if let Some(instance) = command.string(tags::AFFECTED_SOP_INSTANCE_UID) {
                rsp = rsp.uid(tags::AFFECTED_SOP_INSTANCE_UID, &instance);
            }
            return self.send(pc.id, rsp.finish(), None).await;
        }
        match command.field {
            field::C_ECHO_RQ => {
                self.respond(&pc, &command, &Status::ok(status::SUCCESS))
                    .await
            }
            field::C_STORE_RQ => {
                let status = if is_storage(&pc.abstract_syntax) {
                    let request = StoreRequest {
                        abstract_syntax: &pc.abstract_syntax,
                        transfer_syntax: &pc.transfer_syntax,
                        calling_ae_title: &self.calling_ae_title,
                    };
                    let slot = match self.slot.take() {
                        Some(slot) => slot,
                        None => self.state.ingest.slot().await,
                    };
                    let mut stored = None;
                    let status = store(&self.state, slot, &request, message, &mut stored).await;
                    let outcome = if status.is_failure() {
                        AuditOutcome::Failed
                    } else {
                        AuditOutcome::Success
                    };
                    let mut event = self.event(Action::Store, outcome);
                    event.status = Some(i64::from(status.code));
                    event.sop_uid = command.string(tags::AFFECTED_SOP_INSTANCE_UID);
                    event.detail = Some("C-STORE".to_owned());
                    if let Some((study, series)) = stored {
                        event.study_uid = Some(study);
                        event.series_uid = Some(series);
                    }
                    self.state.audit.record(event).await;
                    status
                } else {
                    Status::with_comment(
                        status::SOP_CLASS_NOT_SUPPORTED,
                        "C-STORE on a context that is not a storage SOP class",
                    )
                };
                let mut rsp = response(&command, &status, false);
                if let Some(instance) = command.string(tags::AFFECTED_SOP_INSTANCE_UID) {
                    rsp = rsp.uid(tags::AFFECTED_SOP_INSTANCE_UID, &instance);
                }
                self.send(pc.id, rsp.finish(), None).await
            }
            field::C_FIND_RQ => self.find(&pc, message).await,
            field::C_MOVE_RQ | field::C_GET_RQ => self.retrieve(&pc, message).await,
            field::N_ACTION_RQ => self.commit(&pc, message).await,
            f if f == field::N_EVENT_REPORT_RQ | field::RESPONSE_BIT => {
                tracing::info!(
                    status = command.u16(tags::STATUS),
                    "storage commitment report acknowledged"
                );
                Ok(())
            }
            // No operation of that ID is running any more: nothing to cancel
            // (PS3.7 §9.3.2.3 lets a C-CANCEL arrive after the last response).
            field::C_CANCEL_RQ => Ok(()),
            f if f & field::RESPONSE_BIT != 0 => {
                tracing::debug!(field = f, "response to no request of ours ignored");
                Ok(())
            }
            _ => {
                let status = Status::with_comment(
                    status::UNRECOGNIZED_OPERATION,
                    "command not supported by this SCP",
                );
                self.respond(&pc, &command, &status).await
            }
        }
    }

    /// Answers with a status only.
    async fn respond(
        &mut self,
        pc: &PresentationContextNegotiated,
        request: &Command,
        status: &Status,
    ) -> Result<(), End> {
        self.send(pc.id, response(request, status, false).finish(), None)
            .await
    }

    async fn find(
        &mut self,
        pc: &PresentationContextNegotiated,
        message: Message,
    ) -> Result<(), End> {
        let request = &message.command;
        if !FIND_SOP_CLASSES.contains(&pc.abstract_syntax.as_str()) {
            let status = Status::with_comment(
                status::SOP_CLASS_NOT_SUPPORTED,
                "C-FIND on a context that is not a Query/Retrieve FIND model",
            );
            return self.respond(pc, request, &status).await;
        }
        let answer = find(
            &*self.state.index,
            &self.state.config.ae_title,
            &pc.abstract_syntax,
            &pc.transfer_syntax,
            &message.data,
        )
        .await;
        let keys = super::find::audit_keys(&pc.transfer_syntax, &message.data);
        let mut event = self.event(
            Action::Query,
            if answer.last.is_failure() {
                AuditOutcome::Failed
            } else {
                AuditOutcome::Success
            },
        );
        event.status = Some(i64::from(answer.last.code));
        event.patient_id = keys.patient_id;
        event.study_uid = keys.study_uid;
        event.detail = Some(format!(
            "C-FIND {}: {} matches; {}",
            pc.abstract_syntax,
            answer.matches.len(),
            keys.detail
        ));
        self.state.audit.record(event).await;
        let pending = Status::ok(answer.pending);
        for identifier in &answer.matches {
            if self.cancelled(request.message_id()).await? {
                tracing::info!("C-FIND cancelled");
                return self.respond(pc, request, &Status::ok(status::CANCEL)).await;
            }
            let rsp = response(request, &pending, true).finish();
            self.send(pc.id, rsp, Some(identifier)).await?;
        }
        self.respond(pc, request, &answer.last).await
    }

    /// Storage commitment (PS3.4 J.3.2): answers the N-ACTION, checks the
    /// instances, and sends the N-EVENT-REPORT here unless the requester is
    /// already releasing the association, in which case it goes over a new one.
    async fn commit(
        &mut self,
        pc: &PresentationContextNegotiated,
        message: Message,
    ) -> Result<(), End> {
        let command = &message.command;
        let request = if pc.abstract_syntax != uids::STORAGE_COMMITMENT_PUSH_MODEL {
            Err(Status::with_comment(
                status::SOP_CLASS_NOT_SUPPORTED,
                "N-ACTION on a context that is not Storage Commitment",
            ))
        } else {
            commitment::parse_request(command, &pc.transfer_syntax, &message.data)
        };
        let request = match request {
            Ok(request) => request,
            Err(status) => {
                tracing::info!(
                    status = status.code,
                    comment = status.comment,
                    "storage commitment request refused"
                );
                return self
                    .send(pc.id, commitment::action_rsp(command, &status), None)
                    .await;
            }
        };
        let rsp = commitment::action_rsp(command, &Status::ok(status::SUCCESS));
        self.send(pc.id, rsp, None).await?;
        let references = request.references.len();
        let report = commitment::check(&*self.state.index, request).await;
        tracing::info!(
            transaction_uid = report.transaction_uid,
            references,
            failed = report.failed.len(),
            "storage commitment checked"
        );
        if self.releasing().await? {
            tokio::spawn(commitment::deliver(
                self.state.config.clone(),
                self.calling_ae_title.clone(),
                report,
            ));
            return Ok(());
        }
        let data = report
            .encode(&self.state.config.ae_title, &pc.transfer_syntax)
            .map_err(|e| End::Abort(format!("cannot encode the commitment report: {e}")))?;
        let message_id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        let rq = commitment::event_report_rq(message_id, report.event_type_id());
        // The N-EVENT-REPORT-RSP comes back through the main loop.
        self.send(pc.id, rq, Some(&data)).await
    }

    /// Whether the peer has asked to release or abort the association (or
    /// closed it), without waiting; what is read is kept for the main loop.
    async fn releasing(&mut self) -> Result<bool, End> {
        match tokio::time::timeout(Duration::ZERO, self.ul.receive()).await {
            Ok(Ok(Pdu::PData { data })) => self.pdvs.extend(data),
            Ok(Ok(other)) => self.stash.push_back(other),
            Ok(Err(_)) => return Ok(true),
            Err(_) => {}
        }
        Ok(self
            .stash
            .iter()
            .any(|pdu| matches!(pdu, Pdu::ReleaseRQ | Pdu::AbortRQ { .. })))
    }

    /// C-MOVE or C-GET: resolves the identifier, runs one C-STORE sub-operation
    /// per instance with a pending response after each, and answers with the
    /// counts (PS3.4 C.4.2.3, C.4.3.3).
    async fn retrieve(
        &mut self,
        pc: &PresentationContextNegotiated,
        message: Message,
    ) -> Result<(), End> {
        let request = &message.command;
        let is_move = request.field == field::C_MOVE_RQ;
        let (models, what) = if is_move {
            (MOVE_SOP_CLASSES, "C-MOVE")
        } else {
            (GET_SOP_CLASSES, "C-GET")
        };
        if !models.contains(&pc.abstract_syntax.as_str()) {
            let status = Status::with_comment(
                status::SOP_CLASS_NOT_SUPPORTED,
                format!("{what} on a context that is not a Query/Retrieve {what} model"),
            );
            return self.respond(pc, request, &status).await;
        }
        // The identifier's patient and study, for the audit log when nothing
        // is retrieved.
        let keys = super::find::audit_keys(&pc.transfer_syntax, &message.data);
        let move_destination =
            is_move.then(|| request.string(tags::MOVE_DESTINATION).unwrap_or_default());
        let label = match &move_destination {
            Some(d) => format!("{what} to {d}"),
            None => what.to_owned(),
        };
        let mut target = if is_move {
            let destination = move_destination.clone().unwrap_or_default();
            let peer = self
                .state
                .config
                .dicom_peers
                .iter()
                .find(|p| p.ae_title == destination);
            match peer {
                Some(peer) => Target::Peer {
                    peer: peer.clone(),
                    originator: MoveOriginator {
                        ae_title: self.calling_ae_title.clone(),
                        message_id: request.message_id(),
                    },
                    scu: None,
                    covered: 0,
                },
                None => {
                    tracing::info!(destination, "C-MOVE to an unknown destination refused");
                    let status = Status::with_comment(
                        status::MOVE_DESTINATION_UNKNOWN,
                        format!("move destination {destination:?} is not configured"),
                    );
                    self.audit_retrieve(&label, &keys, &[], &status, false, "unknown destination")
                        .await;
                    return self.respond(pc, request, &status).await;
                }
            }
        } else {
            Target::Requestor
        };
        let instances = match resolve(
            &self.state,
            &pc.abstract_syntax,
            &pc.transfer_syntax,
            &message.data,
        )
        .await
        {
            Ok(found) => found,
            Err(status) => {
                let why = status.comment.clone().unwrap_or_default();
                self.audit_retrieve(&label, &keys, &[], &status, false, &why)
                    .await;
                return self.respond(pc, request, &status).await;
            }
        };
        // The studies retrieved, with their instance counts, in order.
        let mut studies: Vec<(String, usize)> = Vec::new();
        for i in &instances {
            match studies.iter_mut().find(|(s, _)| *s == i.study_instance_uid) {
                Some((_, n)) => *n += 1,
                None => studies.push((i.study_instance_uid.clone(), 1)),
            }
        }
        let items: Vec<Outgoing> = instances
            .iter()
            .map(|i| Outgoing {
                sop_class_uid: i.sop_class_uid.clone(),
                sop_instance_uid: i.sop_instance_uid.clone(),
                transfer_syntax: i.transfer_syntax_uid.clone(),
            })
            .collect();
        let mut progress = Progress::new(items.len());
        let mut cancelled = false;
        let mut unreachable = None;
        // The next few instances are read while one is being sent, in order;
        // leaving the loop stops their reads.
        let mut files = std::pin::pin!(self.state.retrieve.originals(instances));
        for n in 0..items.len() {
            if self.cancelled(request.message_id()).await? {
                cancelled = true;
                break;
            }
            let file = files.next().await.unwrap_or_else(|| {
                Err(RetrieveError::Invalid(
                    "fewer files read than instances".to_owned(),
                ))
            });
            let result = self.sub_operation(&mut target, &items, n, file).await?;
            let (outcome, transcoded) = match result {
                Ok((code, transcoded)) => (Outcome::of(code, transcoded), transcoded),
                Err(e @ ScuError::Associate(..)) => {
                    // The destination cannot be reached: the rest fails too.
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "C-MOVE destination unreachable"
                    );
                    for item in &items[n..] {
                        progress.record(&item.sop_instance_uid, Outcome::Failed, false);
                    }
                    unreachable = Some(e.to_string());
                    break;
                }
                Err(e) => {
                    let uid = &items[n].sop_instance_uid;
                    let error = &e as &dyn std::error::Error;
                    if matches!(e, ScuError::Stored(_)) {
                        // The archive's side: the store or the container failed.
                        tracing::error!(
                            sop_instance_uid = uid,
                            error,
                            "{what} sub-operation failed"
                        );
                    } else {
                        tracing::info!(
                            sop_instance_uid = uid,
                            error,
                            "{what} sub-operation failed"
                        );
                    }
                    (Outcome::Failed, false)
                }
            };
            progress.record(&items[n].sop_instance_uid, outcome, transcoded);
            if progress.remaining > 0 {
                self.send(pc.id, progress.pending(request), None).await?;
            }
        }
        if let Target::Peer { scu: Some(scu), .. } = target {
            scu.release().await;
        }
        tracing::info!(
            completed = progress.completed,
            failed = progress.failed,
            warning = progress.warning,
            cancelled,
            "{what} done"
        );
        let summary = format!(
            "{} completed, {} failed, {} warning{}",
            progress.completed,
            progress.failed,
            progress.warning,
            if cancelled { ", cancelled" } else { "" }
        );
        if let Some(reason) = unreachable
            && progress.completed == 0
            && progress.warning == 0
        {
            let status = Status::with_comment(status::UNABLE_TO_PERFORM_SUBOPERATIONS, reason);
            self.audit_retrieve(&label, &keys, &studies, &status, true, &summary)
                .await;
            return self.respond(pc, request, &status).await;
        }
        let status = progress.final_status(cancelled);
        let failed = progress.failed > 0;
        self.audit_retrieve(&label, &keys, &studies, &status, failed, &summary)
            .await;
        let (rsp, identifier) = progress.last(request, cancelled, &pc.transfer_syntax);
        self.send(pc.id, rsp, identifier.as_deref()).await
    }

    /// Records what a C-MOVE or C-GET (`label`: `C-GET`, `C-MOVE to AE`)
    /// did: one event per study it sent from (PS3.15 A.5.3.7 names studies),
    /// or, when it sent nothing, one naming the identifier's study and
    /// patient. A failure status or a failed sub-operation (`failed`) makes
    /// the outcome Failed.
    async fn audit_retrieve(
        &self,
        label: &str,
        keys: &super::find::AuditKeys,
        studies: &[(String, usize)],
        status: &Status,
        failed: bool,
        summary: &str,
    ) {
        let outcome = if failed || status.is_failure() {
            AuditOutcome::Failed
        } else {
            AuditOutcome::Success
        };
        let mut event = self.event(Action::Retrieve, outcome);
        event.status = Some(i64::from(status.code));
        if studies.is_empty() {
            event.study_uid = keys.study_uid.clone();
            event.patient_id = keys.patient_id.clone();
            event.detail = Some(format!("{label}: nothing sent; {summary}"));
            self.state.audit.record(event).await;
            return;
        }
        for (study, count) in studies {
            let mut one = event.clone();
            one.study_uid = Some(study.clone());
            one.detail = Some(format!(
                "{label}: {count} instances of the study; {summary}"
            ));
            self.state.audit.record(one).await;
        }
    }

    /// One C-STORE sub-operation: `items[n]`, whose stored file was read as
    /// `file`. The outer `Err` ends the association; the inner one fails the
    /// sub-operation.
    async fn sub_operation(
        &mut self,
        target: &mut Target,
        items: &[Outgoing],
        n: usize,
        file: Result<bytes::Bytes, RetrieveError>,
    ) -> Result<Result<(u16, bool), ScuError>, End> {
        let item = &items[n];
        if let Target::Peer {
            peer, scu, covered, ..
        } = target
            && n >= *covered
        {
            // The first instance, or one beyond what the open association was
            // negotiated for (at most 128 presentation contexts each).
            if let Some(open) = scu.take() {
                open.release().await;
            }
            match StoreScu::connect(
                &self.state.config.ae_title,
                &peer.ae_title,
                &peer.host,
                peer.port,
                &items[n..],
            )
            .await
            {
                Ok((open, count)) => {
                    *scu = Some(Box::new(open));
                    *covered = n + count;
                }
                Err(e) => return Ok(Err(e)),
            }
        }
        let file = match file {
            Ok(file) => file,
            Err(e) => return Ok(Err(ScuError::Stored(e))),
        };
        match target {
            Target::Peer {
                scu: Some(scu),
                originator,
                ..
            } => Ok(scu.store(item, file, Some(originator)).await),
            Target::Peer { scu: None, .. } => Ok(Err(ScuError::Protocol(
                "no association with the destination".to_owned(),
            ))),
            Target::Requestor => self.store_here(item, file).await,
        }
    }

    /// Sends one instance back over this association (a C-GET sub-operation) and
    /// waits for its C-STORE-RSP; a C-CANCEL arriving meanwhile is noted.
    async fn store_here(
        &mut self,
        item: &Outgoing,
        file: bytes::Bytes,
    ) -> Result<Result<(u16, bool), ScuError>, End> {
        let Some(choice) = scu::choose(self.ul.presentation_contexts(), item) else {
            return Ok(Err(ScuError::NoContext {
                sop_class_uid: item.sop_class_uid.clone(),
                transfer_syntax: item.transfer_syntax.clone(),
            }));
        };
        let data = match scu::prepare(file, choice.transcode).await {
            Ok(data) => data,
            Err(e) => return Ok(Err(e)),
        };
        let message_id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        let command = scu::store_rq(item, message_id, None);
        self.send(choice.context_id, command, Some(&data)).await?;
        loop {
            let message = self.next_message().await?;
            let command = &message.command;
            match command.field {
                f if f == field::C_STORE_RQ | field::RESPONSE_BIT
                    && command.u16(tags::MESSAGE_ID_BEING_RESPONDED_TO) == Some(message_id) =>
                {
                    let code = command
                        .u16(tags::STATUS)
                        .ok_or_else(|| End::Abort("C-STORE-RSP without Status".to_owned()))?;
                    return Ok(Ok((code, choice.transcode)));
                }
                field::C_CANCEL_RQ => {
                    self.cancel = command.u16(tags::MESSAGE_ID_BEING_RESPONDED_TO);
                }
                f => {
                    return Err(End::Abort(format!(
                        "command field {f:#06x} while a C-STORE-RSP was awaited"
                    )));
                }
            }
        }
    }

    /// The next complete message, from fragments already received or the wire.
    async fn next_message(&mut self) -> Result<Message, End> {
        loop {
            if let Some(pdv) = self.pdvs.pop_front() {
                match self.assembler.push(pdv) {
                    Ok(Some(message)) => return Ok(message),
                    Ok(None) => continue,
                    Err(e) => return Err(End::Abort(e.to_string())),
                }
            }
            let pdu = match self.stash.pop_front() {
                Some(pdu) => pdu,
                None => self.ul.receive().await?,
            };
            match pdu {
                Pdu::PData { data } => self.pdvs.extend(data),
                Pdu::AbortRQ { .. } => return Err(End::PeerAborted),
                other => {
                    return Err(End::Abort(format!(
                        "unexpected {} during C-GET",
                        other.short_description()
                    )));
                }
            }
        }
    }

    /// Whether a C-CANCEL-RQ for `message_id` has arrived, without waiting. It
    /// may be among the fragments already received (even in the PDU of the
    /// request) or in a PDU on the wire; anything else read meanwhile is kept
    /// for the main loop.
    async fn cancelled(&mut self, message_id: u16) -> Result<bool, End> {
        if self.cancel.take() == Some(message_id) {
            return Ok(true);
        }
        // A zero timeout still polls the read once: a PDU already received is
        // returned, otherwise nothing is consumed (the read is cancel-safe: bytes
        // read so far stay in the association's buffer).
        if let Ok(result) = tokio::time::timeout(Duration::ZERO, self.ul.receive()).await {
            match result? {
                Pdu::PData { data } => self.pdvs.extend(data),
                other => self.stash.push_back(other),
            }
        }
        let is_cancel = |pdv: &PDataValue| {
            pdv.value_type == PDataValueType::Command
                && pdv.is_last
                && Command::parse(&pdv.data).is_ok_and(|c| {
                    c.field == field::C_CANCEL_RQ
                        && c.u16(tags::MESSAGE_ID_BEING_RESPONDED_TO) == Some(message_id)
                })
        };
        match self.pdvs.iter().position(is_cancel) {
            Some(i) => {
                self.pdvs.remove(i);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Sends a command set and optionally a data set, fragmented to the peer's
    /// maximum PDU length.
    async fn send(
        &mut self,
        context_id: u8,
        command: Vec<u8>,
        data: Option<&[u8]>,
    ) -> Result<(), End> {
        let max = self.ul.requestor_max_pdu_length().min(MAX_SEND_PDU);
        let mut pdvs = fragments(context_id, PDataValueType::Command, &command, max);
        if let Some(data) = data {
            pdvs.extend(fragments(context_id, PDataValueType::Data, data, max));
        }
        for pdv in pdvs {
            self.ul.send(&Pdu::PData { data: vec![pdv] }).await?;
        }
        Ok(())
    }
}
