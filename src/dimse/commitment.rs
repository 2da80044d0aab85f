//! Storage Commitment Push Model SCP (PS3.4 Annex J): the N-ACTION-RQ that asks
//! us to commit to keeping a list of instances, the check against the index,
//! and the N-EVENT-REPORT-RQ with the result — on the requesting association
//! while it is open, otherwise on one we open to the requester, when it is a
//! configured peer (`--dicom-peer`).
//!
//! An instance is committed when the index holds it current (not superseded)
//! under the same SOP class: the index row is written only once its object is
//! durable in the store, so the object is not read again. Left out: the Pull
//! Model (retired) and storage media (StorageMediaFileSetID).

use std::sync::Arc;
use std::time::Duration;

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::ClientAssociationOptions;
use dicom_ul::pdu::{PDataValueType, Pdu, PresentationContextResultReason};

use super::message::{Assembler, Command, CommandWriter, field, fragments, response};
use super::status::{self, Status};
use super::{IDLE_TIMEOUT, MAX_PDU_LENGTH, MAX_SEND_PDU};
use crate::config::Config;
use crate::index::{Index, Scope};

/// ActionTypeID (0000,1008) "Request Storage Commitment" (PS3.4 J.3.2.1.1).
pub const REQUEST_COMMITMENT: u16 = 1;
/// EventTypeID (0000,1002): every instance committed (PS3.4 J.3.3.1.1).
pub const ALL_COMMITTED: u16 = 1;
/// EventTypeID: some instances could not be committed (PS3.4 J.3.3.1.2).
pub const SOME_FAILED: u16 = 2;
/// FailureReason (0008,1197): the instance is not in the archive.
pub const NO_SUCH_OBJECT_INSTANCE: u16 = 0x0112;
/// FailureReason: the instance is stored under another SOP class.
pub const CLASS_INSTANCE_CONFLICT: u16 = 0x0119;
/// FailureReason: the check itself failed (the index did not answer).
pub const PROCESSING_FAILURE: u16 = 0x0110;
/// N-ACTION status: the data set is not a valid commitment request.
const INVALID_ARGUMENT_VALUE: u16 = 0x0115;
/// N-ACTION status: an ActionTypeID other than 1.
const NO_SUCH_ACTION: u16 = 0x0123;
/// N-ACTION status: the Requested SOP Instance is not the well-known one.
const NO_SUCH_SOP_INSTANCE: u16 = 0x0112;

/// How long we wait for a requester we associate with to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A commitment request: TransactionUID and the (SOP class, SOP instance) pairs
/// of ReferencedSOPSequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub transaction_uid: String,
    pub references: Vec<(String, String)>,
}

/// Checks the N-ACTION-RQ command and reads its data set. `Err` is the
/// N-ACTION-RSP status to answer with.
pub fn parse_request(
    command: &Command,
    transfer_syntax: &str,
    data: &[u8],
) -> Result<Request, Status> {
    if command.string(tags::REQUESTED_SOP_INSTANCE_UID).as_deref()
        != Some(uids::STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE)
    {
        return Err(Status::with_comment(
            NO_SUCH_SOP_INSTANCE,
            "Requested SOP Instance is not 1.2.840.10008.1.20.1.1",
        ));
    }
    if command.u16(tags::ACTION_TYPE_ID) != Some(REQUEST_COMMITMENT) {
        return Err(Status::with_comment(
            NO_SUCH_ACTION,
            "ActionTypeID must be 1",
        ));
    }
    let invalid = |what: String| Status::with_comment(INVALID_ARGUMENT_VALUE, what);
    let ts = TransferSyntaxRegistry
        .get(transfer_syntax)
        .ok_or_else(|| invalid("unknown transfer syntax".to_owned()))?;
    let obj = InMemDicomObject::read_dataset_with_ts(data, ts)
        .map_err(|e| invalid(format!("cannot read the data set: {e}")))?;
    let transaction_uid = text(&obj, tags::TRANSACTION_UID)
        .ok_or_else(|| invalid("TransactionUID missing".to_owned()))?;
    let items = obj
        .element_opt(tags::REFERENCED_SOP_SEQUENCE)
        .ok()
        .flatten()
        .and_then(|e| e.items())
        .filter(|items| !items.is_empty())
        .ok_or_else(|| invalid("ReferencedSOPSequence missing or empty".to_owned()))?;
    let references = items
        .iter()
        .map(|item| {
            let class = text(item, tags::REFERENCED_SOP_CLASS_UID);
            let instance = text(item, tags::REFERENCED_SOP_INSTANCE_UID);
            class.zip(instance).ok_or_else(|| {
                invalid("a ReferencedSOPSequence item lacks a class or instance UID".to_owned())
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Request {
        transaction_uid,
        references,
    })
}

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    let value = obj.element_opt(tag).ok().flatten()?.to_str().ok()?;
    let value = value.trim_matches(['\0', ' ']);
    (!value.is_empty()).then(|| value.to_owned())
}

/// The outcome of a commitment request, as the N-EVENT-REPORT carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub transaction_uid: String,
    /// (SOP class, SOP instance) committed.
    pub committed: Vec<(String, String)>,
    /// (SOP class, SOP instance, FailureReason).
    pub failed: Vec<(String, String, u16)>,
}

impl Report {
    /// EventTypeID: 1 when every instance was committed, 2 otherwise.
    pub fn event_type_id(&self) -> u16 {
        if self.failed.is_empty() {
            ALL_COMMITTED
        } else {
            SOME_FAILED
        }
    }

    /// The event information (PS3.4 Table J.3-2) in `transfer_syntax`.
    pub fn encode(&self, ae_title: &str, transfer_syntax: &str) -> Result<Vec<u8>, String> {
        let reference = |class: &str, instance: &str| {
            let mut item = InMemDicomObject::new_empty();
            item.put_str(tags::REFERENCED_SOP_CLASS_UID, VR::UI, class);
            item.put_str(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, instance);
            item
        };
        let mut obj = InMemDicomObject::new_empty();
        obj.put_str(tags::TRANSACTION_UID, VR::UI, self.transaction_uid.as_str());
        obj.put_str(tags::RETRIEVE_AE_TITLE, VR::AE, ae_title);
        if !self.committed.is_empty() {
            let items: Vec<_> = self
                .committed
                .iter()
                .map(|(class, instance)| reference(class, instance))
                .collect();
            obj.put(DataElement::new(
                tags::REFERENCED_SOP_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(items),
            ));
        }
        if !self.failed.is_empty() {
            let items: Vec<_> = self
                .failed
                .iter()
                .map(|(class, instance, reason)| {
                    let mut item = reference(class, instance);
                    item.put(DataElement::new(
                        tags::FAILURE_REASON,
                        VR::US,
                        dicom_core::PrimitiveValue::from(*reason),
                    ));
                    item
                })
                .collect();
            obj.put(DataElement::new(
                tags::FAILED_SOP_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(items),
            ));
        }
        let ts = TransferSyntaxRegistry
            .get(transfer_syntax)
            .ok_or_else(|| format!("unknown transfer syntax {transfer_syntax}"))?;
        let mut out = Vec::new();
        obj.write_dataset_with_ts(&mut out, ts)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// Checks each referenced instance against the index.
pub async fn check(index: &dyn Index, request: Request) -> Report {
    let mut report = Report {
        transaction_uid: request.transaction_uid,
        committed: Vec::new(),
        failed: Vec::new(),
    };
    for (class, instance) in request.references {
        let scope = Scope {
            instance: Some(instance.clone()),
            ..Scope::default()
        };
        match index.instances(&scope).await {
            Ok(found) if found.iter().any(|i| i.sop_class_uid == class) => {
                report.committed.push((class, instance));
            }
            Ok(found) if found.is_empty() => {
                report
                    .failed
                    .push((class, instance, NO_SUCH_OBJECT_INSTANCE));
            }
            Ok(_) => report
                .failed
                .push((class, instance, CLASS_INSTANCE_CONFLICT)),
            Err(e) => {
                tracing::error!(
                    error = &e as &dyn std::error::Error,
                    sop_instance_uid = instance,
                    "storage commitment: index lookup failed"
                );
                report.failed.push((class, instance, PROCESSING_FAILURE));
            }
        }
    }
    report
}

/// The N-ACTION-RSP to `request` (PS3.7 §10.3.4).
pub fn action_rsp(request: &Command, status: &Status) -> Vec<u8> {
    let mut w = response(request, status, false);
    if let Some(class) = request.string(tags::REQUESTED_SOP_CLASS_UID) {
        w = w.uid(tags::AFFECTED_SOP_CLASS_UID, &class);
    }
    if let Some(instance) = request.string(tags::REQUESTED_SOP_INSTANCE_UID) {
        w = w.uid(tags::AFFECTED_SOP_INSTANCE_UID, &instance);
    }
    if status.code == status::SUCCESS {
        w = w.u16(tags::ACTION_TYPE_ID, REQUEST_COMMITMENT);
    }
    w.finish()
}

/// The N-EVENT-REPORT-RQ command set (PS3.7 §10.3.1); the event information
/// follows as its data set.
pub fn event_report_rq(message_id: u16, event_type_id: u16) -> Vec<u8> {
    CommandWriter::default()
        .u16(tags::COMMAND_FIELD, field::N_EVENT_REPORT_RQ)
        .u16(tags::MESSAGE_ID, message_id)
        .u16(tags::COMMAND_DATA_SET_TYPE, 0)
        .uid(
            tags::AFFECTED_SOP_CLASS_UID,
            uids::STORAGE_COMMITMENT_PUSH_MODEL,
        )
        .uid(
            tags::AFFECTED_SOP_INSTANCE_UID,
            uids::STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
        )
        .u16(tags::EVENT_TYPE_ID, event_type_id)
        .finish()
}

/// Sends `report` over a new association to `requester`, when it is a
/// configured peer; otherwise logs and drops it (PS3.4 J.3.3: the SCU is then
/// expected to ask again).
pub async fn deliver(config: Arc<Config>, requester: String, report: Report) {
    let Some(peer) = config.dicom_peers.iter().find(|p| p.ae_title == requester) else {
        tracing::warn!(
            calling = requester,
            transaction_uid = report.transaction_uid,
            "storage commitment report dropped: the requester released the association \
             and is not a configured --dicom-peer"
        );
        return;
    };
    match send_report(&config.ae_title, peer, &report).await {
        Ok(code) => tracing::info!(
            peer = requester,
            transaction_uid = report.transaction_uid,
            status = code,
            "storage commitment report sent on a new association"
        ),
        Err(reason) => tracing::warn!(
            peer = requester,
            transaction_uid = report.transaction_uid,
            reason,
            "storage commitment report not delivered"
        ),
    }
}

/// Associates with `peer` proposing Storage Commitment Push Model with us in
/// the SCP role (PS3.4 J.3.3, PS3.7 D.3.3.4), sends the N-EVENT-REPORT-RQ and
/// returns the peer's status.
async fn send_report(
    our_ae_title: &str,
    peer: &crate::config::DicomPeer,
    report: &Report,
) -> Result<u16, String> {
    let mut ul = ClientAssociationOptions::new()
        .calling_ae_title(our_ae_title.to_owned())
        .called_ae_title(peer.ae_title.clone())
        .max_pdu_length(MAX_PDU_LENGTH)
        .connection_timeout(CONNECT_TIMEOUT)
        .read_timeout(IDLE_TIMEOUT)
        .write_timeout(IDLE_TIMEOUT)
        .with_presentation_context(
            uids::STORAGE_COMMITMENT_PUSH_MODEL,
            vec![
                uids::EXPLICIT_VR_LITTLE_ENDIAN,
                uids::IMPLICIT_VR_LITTLE_ENDIAN,
            ],
        )
        .with_role_selection(uids::STORAGE_COMMITMENT_PUSH_MODEL, false, true)
        .establish_async(format!("{}:{}", peer.host, peer.port))
        .await
        .map_err(|e| format!("cannot associate: {e}"))?;
    let Some(pc) = ul
        .presentation_contexts()
        .iter()
        .find(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .cloned()
    else {
        let _ = ul.abort().await;
        return Err("Storage Commitment Push Model not accepted".to_owned());
    };
    let data = report.encode(our_ae_title, &pc.transfer_syntax)?;
    let max = ul.acceptor_max_pdu_length().min(MAX_SEND_PDU);
    let command = event_report_rq(1, report.event_type_id());
    let mut pdvs = fragments(pc.id, PDataValueType::Command, &command, max);
    pdvs.extend(fragments(pc.id, PDataValueType::Data, &data, max));
    for pdv in pdvs {
        ul.send(&Pdu::PData { data: vec![pdv] })
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut assembler = Assembler::new(0);
    loop {
        match ul.receive().await.map_err(|e| e.to_string())? {
            Pdu::PData { data } => {
                for pdv in data {
                    if let Some(message) = assembler.push(pdv).map_err(|e| e.to_string())? {
                        let code = message.command.u16(tags::STATUS).unwrap_or(0xFFFF);
                        let _ = ul.release().await;
                        return Ok(code);
                    }
                }
            }
            other => return Err(format!("unexpected {}", other.short_description())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips() {
        let report = Report {
            transaction_uid: "2.25.1".into(),
            committed: vec![("1.2.3".into(), "2.25.2".into())],
            failed: vec![("1.2.3".into(), "2.25.3".into(), NO_SUCH_OBJECT_INSTANCE)],
        };
        assert_eq!(report.event_type_id(), SOME_FAILED);
        let bytes = report
            .encode("AINA", uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .unwrap();
        let ts = TransferSyntaxRegistry
            .get(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .unwrap();
        let obj = InMemDicomObject::read_dataset_with_ts(bytes.as_slice(), ts).unwrap();
        assert_eq!(text(&obj, tags::TRANSACTION_UID).as_deref(), Some("2.25.1"));
        let failed = obj.element(tags::FAILED_SOP_SEQUENCE).unwrap();
        let item = &failed.items().unwrap()[0];
        assert_eq!(
            item.element(tags::FAILURE_REASON)
                .unwrap()
                .to_int::<u16>()
                .unwrap(),
            NO_SUCH_OBJECT_INSTANCE
        );

        // The same data set as an N-ACTION request.
        let command = Command::parse(
            &CommandWriter::default()
                .u16(tags::COMMAND_FIELD, field::N_ACTION_RQ)
                .u16(tags::ACTION_TYPE_ID, REQUEST_COMMITMENT)
                .uid(
                    tags::REQUESTED_SOP_INSTANCE_UID,
                    uids::STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
                )
                .finish(),
        )
        .unwrap();
        let mut request = InMemDicomObject::new_empty();
        request.put_str(tags::TRANSACTION_UID, VR::UI, "2.25.1");
        let mut item = InMemDicomObject::new_empty();
        item.put_str(tags::REFERENCED_SOP_CLASS_UID, VR::UI, "1.2.3");
        item.put_str(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, "2.25.2");
        request.put(DataElement::new(
            tags::REFERENCED_SOP_SEQUENCE,
            VR::SQ,
            DataSetSequence::from(vec![item]),
        ));
        let mut bytes = Vec::new();
        request.write_dataset_with_ts(&mut bytes, ts).unwrap();
        let parsed = parse_request(&command, uids::EXPLICIT_VR_LITTLE_ENDIAN, &bytes).unwrap();
        assert_eq!(
            parsed.references,
            vec![("1.2.3".to_owned(), "2.25.2".to_owned())]
        );
        let status = parse_request(&command, uids::EXPLICIT_VR_LITTLE_ENDIAN, b"junk").unwrap_err();
        assert_eq!(status.code, INVALID_ARGUMENT_VALUE);
    }
}
