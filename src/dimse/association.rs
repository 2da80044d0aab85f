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

use dicom_dictionary_std::tags;
use dicom_ul::association::{Association, AsyncServerAssociation, Error as UlError};
use dicom_ul::pdu::{
    PDataValue, PDataValueType, Pdu, PresentationContextNegotiated, PresentationContextResultReason,
};
use tokio::net::TcpStream;

use super::find::find;
use super::message::{Assembler, Command, Message, field, fragments, response};
use super::presentation::{FIND_SOP_CLASSES, is_storage};
use super::status::{self, Status};
use super::store::{StoreRequest, store};
use super::{MAX_SEND_PDU, Options};
use crate::app::AppState;
use crate::ingest::Slot;

type Ul = AsyncServerAssociation<TcpStream>;

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

struct Connection {
    ul: Ul,
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
}

/// Negotiates and serves one association on `socket`.
pub async fn run(socket: TcpStream, peer: SocketAddr, options: &Options, state: AppState) {
    let ul = match options.establish_async(socket).await {
        Ok(ul) => ul,
        Err(e) => {
            tracing::info!(%peer, reason = %e, "association not established");
            return;
        }
    };
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
    };
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

impl Connection {
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
                    store(&self.state, slot, &request, message).await
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

    /// Whether a C-CANCEL-RQ for `message_id` has arrived, without waiting. It
    /// may be among the fragments already received (even in the PDU of the
    /// request) or in a PDU on the wire; anything else read meanwhile is kept
    /// for the main loop.
    async fn cancelled(&mut self, message_id: u16) -> Result<bool, End> {
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
