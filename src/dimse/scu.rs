//! C-STORE as the sender (PS3.4 Annex B, SCU side): what C-MOVE uses towards a
//! configured peer, C-GET over the requesting association, and `aina send`.
//!
//! An instance goes out as the data set of its PS3.10 file (the File Meta
//! Information cut off, the rest byte for byte) in the transfer syntax it was
//! stored in, when the peer accepted a presentation context for it. Otherwise,
//! when the peer accepted Explicit VR Little Endian for the SOP class and the
//! stored syntax is uncompressed, it is re-encoded by dicom-object (same data
//! set, same values) and the sub-operation counts as a warning. Anything else is
//! a failed sub-operation. Left out: compressing or decompressing pixel data.

use std::path::PathBuf;
use std::time::Duration;

use dicom_dictionary_std::{tags, uids};
use dicom_object::OpenFileOptions;
use dicom_ul::ClientAssociationOptions;
use dicom_ul::association::AsyncClientAssociation;
use dicom_ul::pdu::{
    PDataValueType, Pdu, PresentationContextNegotiated, PresentationContextResultReason,
};
use tokio::net::TcpStream;

use super::message::{Assembler, Command, CommandWriter, field, fragments};
use super::status;
use super::{IDLE_TIMEOUT, MAX_PDU_LENGTH, MAX_SEND_PDU};
use crate::retrieve::is_uncompressed;

/// PS3.8 §9.3.2.2: presentation context IDs are the odd numbers 1 to 255.
const MAX_CONTEXTS: usize = 128;
/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an instance or an association to a peer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScuError {
    /// The bytes are not a PS3.10 file (no preamble and `DICM`, a broken meta group).
    #[error("not a DICOM PS3.10 file: {0}")]
    NotPart10(&'static str),
    /// The peer accepted no context in which this instance can be sent.
    #[error("no accepted presentation context for SOP class {sop_class_uid} in {transfer_syntax}")]
    NoContext {
        sop_class_uid: String,
        transfer_syntax: String,
    },
    /// Re-encoding to Explicit VR Little Endian failed.
    #[error("re-encoding failed")]
    Transcode(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Association with the peer could not be established.
    #[error("cannot associate with {0}")]
    Associate(String, #[source] Box<dicom_ul::association::Error>),
    /// The association failed while sending or waiting for the answer.
    #[error("association failed")]
    Association(#[source] Box<dicom_ul::association::Error>),
    /// The stored instance cannot be read back.
    #[error("stored instance cannot be read")]
    Stored(#[source] crate::retrieve::RetrieveError),
    /// The peer sent something that is not a C-STORE-RSP to our request.
    #[error("peer protocol error: {0}")]
    Protocol(String),
}

/// What the SCU needs to know of an instance before reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// The transfer syntax its data set is stored in.
    pub transfer_syntax: String,
}

/// A PS3.10 file's File Meta Information as far as sending needs it, and where
/// its data set starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part10 {
    pub outgoing: Outgoing,
    pub data_set_offset: usize,
}

/// Reads the File Meta Information of a PS3.10 file (PS3.10 §7.1: 128-byte
/// preamble, `DICM`, group 0002 in Explicit VR Little Endian).
pub fn part10(file: &[u8]) -> Result<Part10, ScuError> {
    if file.get(128..132) != Some(b"DICM") {
        return Err(ScuError::NotPart10("no DICM prefix"));
    }
    let mut pos = 132;
    let (mut class, mut instance, mut ts) = (None, None, None);
    while let Some(header) = file.get(pos..pos + 8) {
        let group = u16::from_le_bytes([header[0], header[1]]);
        if group != 0x0002 {
            break;
        }
        let element = u16::from_le_bytes([header[2], header[3]]);
        let long = matches!(
            &header[4..6],
            b"OB" | b"OW" | b"OF" | b"OD" | b"OL" | b"OV" | b"SQ" | b"UT" | b"UN" | b"UC" | b"UR"
        );
        let (start, len) = if long {
            let len = file
                .get(pos + 8..pos + 12)
                .ok_or(ScuError::NotPart10("truncated meta group"))?;
            (
                pos + 12,
                u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize,
            )
        } else {
            (pos + 8, u16::from_le_bytes([header[6], header[7]]) as usize)
        };
        let value = start
            .checked_add(len)
            .and_then(|end| file.get(start..end))
            .ok_or(ScuError::NotPart10("truncated meta group"))?;
        let text = || {
            std::str::from_utf8(value)
                .ok()
                .map(|s| s.trim_matches(['\0', ' ']).to_owned())
        };
        match element {
            0x0002 => class = text(),
            0x0003 => instance = text(),
            0x0010 => ts = text(),
            _ => {}
        }
        pos = start + len;
    }
    match (class, instance, ts) {
        (Some(sop_class_uid), Some(sop_instance_uid), Some(transfer_syntax)) => Ok(Part10 {
            outgoing: Outgoing {
                sop_class_uid,
                sop_instance_uid,
                transfer_syntax,
            },
            data_set_offset: pos,
        }),
        _ => Err(ScuError::NotPart10(
            "meta group lacks SOP class, SOP instance or transfer syntax UID",
        )),
    }
}

/// The presentation contexts to propose for `items` (each SOP class in each
/// stored syntax, plus Explicit VR Little Endian per SOP class as a fallback),
/// as many items as fit one association from the first on; the second value is
/// how many items they cover.
pub fn proposal(items: &[Outgoing]) -> (Vec<(String, String)>, usize) {
    let mut contexts: Vec<(String, String)> = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let wanted = [
            (item.sop_class_uid.clone(), item.transfer_syntax.clone()),
            (
                item.sop_class_uid.clone(),
                uids::EXPLICIT_VR_LITTLE_ENDIAN.to_owned(),
            ),
        ];
        let mut new: Vec<(String, String)> = Vec::new();
        for c in wanted {
            if !contexts.contains(&c) && !new.contains(&c) {
                new.push(c);
            }
        }
        if contexts.len() + new.len() > MAX_CONTEXTS {
            return (contexts, n);
        }
        contexts.extend(new);
    }
    (contexts, items.len())
}

/// How an instance is sent on an association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub context_id: u8,
    /// Re-encoded as Explicit VR Little Endian rather than sent as stored.
    pub transcode: bool,
}

/// Chooses an accepted context for `item` among `contexts`: the stored syntax
/// first, then Explicit VR Little Endian when the stored one is uncompressed.
pub fn choose(contexts: &[PresentationContextNegotiated], item: &Outgoing) -> Option<Choice> {
    let accepted = |ts: &str| {
        contexts
            .iter()
            .find(|pc| {
                pc.reason == PresentationContextResultReason::Acceptance
                    && pc.abstract_syntax == item.sop_class_uid
                    && pc.transfer_syntax == ts
            })
            .map(|pc| pc.id)
    };
    if let Some(context_id) = accepted(&item.transfer_syntax) {
        return Some(Choice {
            context_id,
            transcode: false,
        });
    }
    if is_uncompressed(&item.transfer_syntax) {
        return accepted(uids::EXPLICIT_VR_LITTLE_ENDIAN).map(|context_id| Choice {
            context_id,
            transcode: true,
        });
    }
    None
}

/// The data set to send from a PS3.10 file: its bytes after the meta group, or
/// re-encoded as Explicit VR Little Endian (CPU work: call off the async threads).
pub fn data_set(file: &[u8], transcode: bool) -> Result<Vec<u8>, ScuError> {
    if !transcode {
        let meta = part10(file)?;
        return Ok(file[meta.data_set_offset..].to_vec());
    }
    let obj = OpenFileOptions::new()
        .from_reader(file)
        .map_err(|e| ScuError::Transcode(Box::new(e)))?;
    let mut out = Vec::with_capacity(file.len());
    obj.write_dataset_with_ts(
        &mut out,
        &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
    )
    .map_err(|e| ScuError::Transcode(Box::new(e)))?;
    Ok(out)
}

/// Who asked for a C-STORE made on behalf of a C-MOVE (PS3.7 §9.3.1.1).
#[derive(Debug, Clone)]
pub struct MoveOriginator {
    pub ae_title: String,
    pub message_id: u16,
}

/// The C-STORE-RQ command set for one instance.
pub fn store_rq(item: &Outgoing, message_id: u16, originator: Option<&MoveOriginator>) -> Vec<u8> {
    let mut w = CommandWriter::default()
        .u16(tags::COMMAND_FIELD, field::C_STORE_RQ)
        .u16(tags::MESSAGE_ID, message_id)
        .u16(tags::PRIORITY, 0)
        .u16(tags::COMMAND_DATA_SET_TYPE, 0)
        .uid(tags::AFFECTED_SOP_CLASS_UID, &item.sop_class_uid)
        .uid(tags::AFFECTED_SOP_INSTANCE_UID, &item.sop_instance_uid);
    if let Some(o) = originator {
        w = w
            .text(tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE, &o.ae_title)
            .u16(tags::MOVE_ORIGINATOR_MESSAGE_ID, o.message_id);
    }
    w.finish()
}

/// Classifies a C-STORE-RSP status (PS3.4 B.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Warning,
    Failed,
}

impl Outcome {
    /// The outcome of a sub-operation answered with `code`, sent re-encoded or not.
    pub fn of(code: u16, transcoded: bool) -> Self {
        match code {
            status::SUCCESS if transcoded => Outcome::Warning,
            status::SUCCESS => Outcome::Completed,
            0xB000..=0xBFFF => Outcome::Warning,
            _ => Outcome::Failed,
        }
    }
}

/// An association we opened to a storage SCP.
pub struct StoreScu {
    ul: AsyncClientAssociation<TcpStream>,
    assembler: Assembler,
    next_message_id: u16,
    /// The peer, for logs and errors: `AET@HOST:PORT`.
    pub peer: String,
}

impl StoreScu {
    /// Associates with `ae_title` at `host:port` as `our_ae_title`, proposing
    /// contexts for `items` from the first on; returns the association and how
    /// many of `items` it was negotiated for.
    pub async fn connect(
        our_ae_title: &str,
        ae_title: &str,
        host: &str,
        port: u16,
        items: &[Outgoing],
    ) -> Result<(Self, usize), ScuError> {
        let peer = format!("{ae_title}@{host}:{port}");
        let (contexts, covered) = proposal(items);
        let mut options = ClientAssociationOptions::new()
            .calling_ae_title(our_ae_title.to_owned())
            .called_ae_title(ae_title.to_owned())
            .max_pdu_length(MAX_PDU_LENGTH)
            .connection_timeout(CONNECT_TIMEOUT)
            .read_timeout(IDLE_TIMEOUT)
            .write_timeout(IDLE_TIMEOUT);
        for (class, ts) in contexts {
            options = options.with_presentation_context(class, vec![ts]);
        }
        let ul = options
            .establish_async(format!("{host}:{port}"))
            .await
            .map_err(|e| ScuError::Associate(peer.clone(), Box::new(e)))?;
        Ok((
            StoreScu {
                ul,
                // Responses carry no data set.
                assembler: Assembler::new(0),
                next_message_id: 1,
                peer,
            },
            covered,
        ))
    }

    /// How `item` would go on this association, if at all.
    pub fn choose(&self, item: &Outgoing) -> Option<Choice> {
        choose(self.ul.presentation_contexts(), item)
    }

    /// Sends one instance from its PS3.10 `file`; returns the peer's C-STORE
    /// status and whether the data set was re-encoded.
    pub async fn store(
        &mut self,
        item: &Outgoing,
        file: bytes::Bytes,
        originator: Option<&MoveOriginator>,
    ) -> Result<(u16, bool), ScuError> {
        let choice = self.choose(item).ok_or_else(|| ScuError::NoContext {
            sop_class_uid: item.sop_class_uid.clone(),
            transfer_syntax: item.transfer_syntax.clone(),
        })?;
        let data = prepare(file, choice.transcode).await?;
        let message_id = self.next_message_id;
        self.next_message_id = self.next_message_id.wrapping_add(1).max(1);
        let max = self.ul.acceptor_max_pdu_length().min(MAX_SEND_PDU);
        let command = store_rq(item, message_id, originator);
        let mut pdvs = fragments(choice.context_id, PDataValueType::Command, &command, max);
        pdvs.extend(fragments(
            choice.context_id,
            PDataValueType::Data,
            &data,
            max,
        ));
        for pdv in pdvs {
            self.ul
                .send(&Pdu::PData { data: vec![pdv] })
                .await
                .map_err(|e| ScuError::Association(Box::new(e)))?;
        }
        let rsp = self.response().await?;
        if rsp.field != field::C_STORE_RQ | field::RESPONSE_BIT
            || rsp.u16(tags::MESSAGE_ID_BEING_RESPONDED_TO) != Some(message_id)
        {
            return Err(ScuError::Protocol(format!(
                "expected C-STORE-RSP to message {message_id}, got command field {:#06x}",
                rsp.field
            )));
        }
        let code = rsp
            .u16(tags::STATUS)
            .ok_or_else(|| ScuError::Protocol("C-STORE-RSP without Status".to_owned()))?;
        Ok((code, choice.transcode))
    }

    async fn response(&mut self) -> Result<Command, ScuError> {
        loop {
            match self
                .ul
                .receive()
                .await
                .map_err(|e| ScuError::Association(Box::new(e)))?
            {
                Pdu::PData { data } => {
                    for pdv in data {
                        match self.assembler.push(pdv) {
                            Ok(Some(message)) => return Ok(message.command),
                            Ok(None) => {}
                            Err(e) => return Err(ScuError::Protocol(e.to_string())),
                        }
                    }
                }
                other => {
                    return Err(ScuError::Protocol(format!(
                        "unexpected {}",
                        other.short_description()
                    )));
                }
            }
        }
    }

    /// Releases the association (A-RELEASE); a peer that does not answer is
    /// only logged.
    pub async fn release(self) {
        let peer = self.peer;
        if let Err(e) = self.ul.release().await {
            tracing::info!(peer, error = %e, "association release failed");
        }
    }
}

/// What sending files came to.
#[derive(Debug, Default)]
pub struct SendReport {
    pub completed: usize,
    /// Stored with a warning status, or sent re-encoded.
    pub warning: usize,
    /// Each file that was not stored, and why.
    pub failed: Vec<(PathBuf, String)>,
}

/// Sends PS3.10 files to `ae_title` at `host:port` with C-STORE as
/// `our_ae_title`, on as few associations as the presentation context limit
/// allows (`aina send`). Each file is read twice (its meta group first, to
/// negotiate), so that one file at a time is in memory.
pub async fn send_files(
    our_ae_title: &str,
    ae_title: &str,
    host: &str,
    port: u16,
    files: &[PathBuf],
) -> SendReport {
    let mut report = SendReport::default();
    let mut items = Vec::new();
    for path in files {
        match tokio::fs::read(path).await {
            Ok(bytes) => match part10(&bytes) {
                Ok(p) => items.push((path.clone(), p.outgoing)),
                Err(e) => report.failed.push((path.clone(), e.to_string())),
            },
            Err(e) => report.failed.push((path.clone(), e.to_string())),
        }
    }
    let outgoing: Vec<Outgoing> = items.iter().map(|(_, o)| o.clone()).collect();
    let mut scu: Option<StoreScu> = None;
    let mut covered = 0;
    for (n, (path, item)) in items.iter().enumerate() {
        if n >= covered {
            if let Some(open) = scu.take() {
                open.release().await;
            }
            match StoreScu::connect(our_ae_title, ae_title, host, port, &outgoing[n..]).await {
                Ok((open, count)) => {
                    scu = Some(open);
                    covered = n + count;
                }
                Err(e) => {
                    let reason = error_chain(&e);
                    for (path, _) in &items[n..] {
                        report.failed.push((path.clone(), reason.clone()));
                    }
                    return report;
                }
            }
        }
        let Some(open) = scu.as_mut() else {
            break;
        };
        let result = match tokio::fs::read(path).await {
            Ok(bytes) => open.store(item, bytes.into(), None).await,
            Err(e) => {
                report.failed.push((path.clone(), e.to_string()));
                continue;
            }
        };
        match result {
            Ok((code, transcoded)) => match Outcome::of(code, transcoded) {
                Outcome::Completed => report.completed += 1,
                Outcome::Warning => report.warning += 1,
                Outcome::Failed => report
                    .failed
                    .push((path.clone(), format!("status {code:#06X}"))),
            },
            Err(e) => report.failed.push((path.clone(), error_chain(&e))),
        }
    }
    if let Some(open) = scu {
        open.release().await;
    }
    report
}

/// An error with its causes, for a person to read.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// [`data_set`] on the blocking pool.
pub async fn prepare(file: bytes::Bytes, transcode: bool) -> Result<Vec<u8>, ScuError> {
    tokio::task::spawn_blocking(move || data_set(&file, transcode))
        .await
        .map_err(|e| ScuError::Transcode(Box::new(e)))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

    fn file(ts: &str) -> Vec<u8> {
        let obj = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::SOP_CLASS_UID,
                VR::UI,
                PrimitiveValue::from(uids::SECONDARY_CAPTURE_IMAGE_STORAGE),
            ),
            DataElement::new(
                tags::SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from("2.25.9"),
            ),
            DataElement::new(tags::PATIENT_NAME, VR::PN, PrimitiveValue::from("Doe^J")),
        ]);
        let obj = obj
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax(ts)
                    .media_storage_sop_class_uid(uids::SECONDARY_CAPTURE_IMAGE_STORAGE)
                    .media_storage_sop_instance_uid("2.25.9"),
            )
            .unwrap();
        let mut out = Vec::new();
        obj.write_all(&mut out).unwrap();
        out
    }

    #[test]
    fn splits_the_meta_group() {
        let bytes = file(uids::IMPLICIT_VR_LITTLE_ENDIAN);
        let p = part10(&bytes).unwrap();
        assert_eq!(p.outgoing.sop_instance_uid, "2.25.9");
        assert_eq!(p.outgoing.transfer_syntax, uids::IMPLICIT_VR_LITTLE_ENDIAN);
        // The data set starts with SOPClassUID (0008,0016), implicit VR.
        assert_eq!(
            &bytes[p.data_set_offset..p.data_set_offset + 4],
            &[8, 0, 0x16, 0]
        );
        for cut in 0..p.data_set_offset {
            let _ = part10(&bytes[..cut]);
        }
        assert!(part10(&[0; 200]).is_err());
        // Re-encoding keeps the values.
        let explicit = data_set(&bytes, true).unwrap();
        let back = InMemDicomObject::read_dataset_with_ts(
            &explicit[..],
            &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
        )
        .unwrap();
        assert_eq!(
            back.element(tags::PATIENT_NAME).unwrap().to_str().unwrap(),
            "Doe^J"
        );
    }

    fn pc(id: u8, class: &str, ts: &str) -> PresentationContextNegotiated {
        PresentationContextNegotiated {
            id,
            reason: PresentationContextResultReason::Acceptance,
            transfer_syntax: ts.to_owned(),
            abstract_syntax: class.to_owned(),
        }
    }

    #[test]
    fn chooses_stored_syntax_then_explicit() {
        let item = |ts: &str| Outgoing {
            sop_class_uid: uids::CT_IMAGE_STORAGE.to_owned(),
            sop_instance_uid: "2.25.1".to_owned(),
            transfer_syntax: ts.to_owned(),
        };
        let contexts = [
            pc(1, uids::CT_IMAGE_STORAGE, uids::JPEG2000_LOSSLESS),
            pc(3, uids::CT_IMAGE_STORAGE, uids::EXPLICIT_VR_LITTLE_ENDIAN),
        ];
        let c = |ts: &str| choose(&contexts, &item(ts));
        assert_eq!(
            c(uids::JPEG2000_LOSSLESS).map(|c| (c.context_id, c.transcode)),
            Some((1, false))
        );
        assert_eq!(
            c(uids::IMPLICIT_VR_LITTLE_ENDIAN).map(|c| (c.context_id, c.transcode)),
            Some((3, true))
        );
        assert_eq!(c(uids::RLE_LOSSLESS), None);
        let many: Vec<Outgoing> = (0..100)
            .map(|i| Outgoing {
                sop_class_uid: format!("1.2.3.{i}"),
                sop_instance_uid: format!("2.25.{i}"),
                transfer_syntax: uids::JPEG2000_LOSSLESS.to_owned(),
            })
            .collect();
        let (contexts, covered) = proposal(&many);
        assert_eq!((contexts.len(), covered), (128, 64));
    }
}
