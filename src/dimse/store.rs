//! C-STORE SCP (PS3.4 Annex B): a received data set goes through the one ingest
//! path, answered with the status of `status.rs`.
//!
//! Checked here, before ingest: that the command's SOP class is the presentation
//! context's (else 0122), and that the data set's SOP Class and Instance UIDs are
//! the command's (else A900, PS3.4 B.2.3), so an instance never goes in under
//! UIDs other than those the sender was told about. Everything else (parsing,
//! required attributes, conflicts) is ingest's.

use std::io::Read;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::{Codec, TransferSyntaxIndex};
use dicom_parser::dataset::{DataSetReader, DataToken};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::message::{Command, Message};
use super::status::{self, Status};
use crate::app::AppState;
use crate::ingest::Slot;

/// What a C-STORE request names and what the association negotiated for it.
pub struct StoreRequest<'a> {
    pub abstract_syntax: &'a str,
    pub transfer_syntax: &'a str,
    /// The calling AE title, recorded as SendingApplicationEntityTitle.
    pub calling_ae_title: &'a str,
}

/// Stores the data set of one C-STORE-RQ; returns the response status, and
/// puts the stored instance's Study and Series Instance UIDs in `stored` (for
/// the audit log).
#[tracing::instrument(skip_all, fields(calling = request.calling_ae_title))]
pub async fn store(
    state: &AppState,
    slot: Slot,
    request: &StoreRequest<'_>,
    message: Message,
    stored: &mut Option<(String, String)>,
) -> Status {
    let command: &Command = &message.command;
    let (Some(class), Some(instance)) = (
        command.string(tags::AFFECTED_SOP_CLASS_UID),
        command.string(tags::AFFECTED_SOP_INSTANCE_UID),
    ) else {
        return Status::with_comment(
            status::CANNOT_UNDERSTAND,
            "C-STORE-RQ lacks AffectedSOPClassUID or AffectedSOPInstanceUID",
        );
    };
    if class != request.abstract_syntax {
        return Status::with_comment(
            status::SOP_CLASS_NOT_SUPPORTED,
            "AffectedSOPClassUID is not the presentation context's",
        );
    }
    if let Some(size) = message.oversize {
        return Status::with_comment(
            status::OUT_OF_RESOURCES,
            format!(
                "instance of {size} bytes exceeds the maximum of {}",
                state.ingest.max_instance_bytes()
            ),
        );
    }
    match data_set_uids(&message.data, request.transfer_syntax) {
        Ok((found_class, found_instance)) => {
            if found_class.as_deref().is_some_and(|c| c != class) {
                return Status::with_comment(
                    status::DATA_SET_MISMATCH,
                    "SOPClassUID of the data set differs from the command's",
                );
            }
            if found_instance.as_deref().is_some_and(|i| i != instance) {
                return Status::with_comment(
                    status::DATA_SET_MISMATCH,
                    "SOPInstanceUID of the data set differs from the command's",
                );
            }
        }
        Err(reason) => return Status::with_comment(status::CANNOT_UNDERSTAND, reason),
    }
    let result = state
        .ingest
        .ingest_dimse(
            slot,
            message.data,
            request.transfer_syntax,
            &class,
            &instance,
            &state.config.ae_title,
            request.calling_ae_title,
        )
        .await;
    match result {
        Ok(accepted) => {
            *stored = Some((
                accepted.study_instance_uid.clone(),
                accepted.series_instance_uid.clone(),
            ));
            status::for_stored(&accepted.disposition, accepted.warning.as_deref())
        }
        Err(refused) => {
            let status = status::for_ingest_error(&refused.error);
            if refused.error.is_input_error() {
                tracing::info!(sop_instance_uid = %instance, reason = %refused.error, "C-STORE refused");
            } else {
                tracing::error!(sop_instance_uid = %instance, error = &*refused.error as &dyn std::error::Error, "C-STORE failed");
            }
            status
        }
    }
}

/// The SOP Class and Instance UIDs (0008,0016), (0008,0018) of a data set in
/// `transfer_syntax`, reading no further than them. `Err` says why the data set
/// cannot be read at all.
fn data_set_uids(
    data: &[u8],
    transfer_syntax: &str,
) -> Result<(Option<String>, Option<String>), String> {
    let ts = TransferSyntaxRegistry
        .get(transfer_syntax)
        .ok_or_else(|| format!("unknown transfer syntax {transfer_syntax}"))?;
    let source: Box<dyn Read + '_> = match ts.codec() {
        // Deflated Explicit VR Little Endian: inflate on the way.
        Codec::Dataset(Some(adapter)) => adapter.adapt_reader(Box::new(data)),
        _ => Box::new(data),
    };
    let reader = DataSetReader::new_with_ts(source, ts)
        .map_err(|e| format!("cannot read the data set: {e}"))?;
    let (mut class, mut instance) = (None, None);
    let mut wanted: Option<Tag> = None;
    let mut depth = 0usize;
    for token in reader {
        let token = token.map_err(|e| format!("cannot read the data set: {e}"))?;
        match token {
            DataToken::SequenceStart { tag, .. } if depth == 0 && tag > tags::SOP_INSTANCE_UID => {
                break;
            }
            DataToken::SequenceStart { .. } | DataToken::PixelSequenceStart => depth += 1,
            DataToken::SequenceEnd => depth = depth.saturating_sub(1),
            DataToken::ElementHeader(h) if depth == 0 => {
                if h.tag > tags::SOP_INSTANCE_UID {
                    break;
                }
                wanted = [tags::SOP_CLASS_UID, tags::SOP_INSTANCE_UID]
                    .contains(&h.tag)
                    .then_some(h.tag);
            }
            DataToken::PrimitiveValue(v) => {
                if let Some(tag) = wanted.take() {
                    let s = v.to_str();
                    let s = s.trim_matches(['\0', ' ']).to_owned();
                    if tag == tags::SOP_CLASS_UID {
                        class = Some(s);
                    } else {
                        instance = Some(s);
                    }
                }
            }
            _ => {}
        }
    }
    Ok((class, instance))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::uids;
    use dicom_object::InMemDicomObject;

    fn data_set(ts: &str) -> Vec<u8> {
        let obj = InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::SOP_CLASS_UID,
                VR::UI,
                PrimitiveValue::from(uids::SECONDARY_CAPTURE_IMAGE_STORAGE),
            ),
            DataElement::new(
                tags::SOP_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from("2.25.1"),
            ),
            DataElement::new(tags::PATIENT_NAME, VR::PN, PrimitiveValue::from("Doe^J")),
        ]);
        let mut out = Vec::new();
        obj.write_dataset_with_ts(&mut out, TransferSyntaxRegistry.get(ts).unwrap())
            .unwrap();
        out
    }

    #[test]
    #[allow(deprecated)] // Explicit VR Big Endian is retired, still accepted
    fn reads_the_uids_in_any_syntax() {
        for ts in [
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
            uids::EXPLICIT_VR_BIG_ENDIAN,
            uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        ] {
            let (class, instance) = data_set_uids(&data_set(ts), ts).unwrap();
            assert_eq!(
                class.as_deref(),
                Some(uids::SECONDARY_CAPTURE_IMAGE_STORAGE),
                "{ts}"
            );
            assert_eq!(instance.as_deref(), Some("2.25.1"), "{ts}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut bytes = vec![0xffu8; 64];
        bytes[4] = 0x10;
        let _ = data_set_uids(&bytes, uids::EXPLICIT_VR_LITTLE_ENDIAN);
        let _ = data_set_uids(&bytes, uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN);
        assert!(data_set_uids(&[], "1.2.3").is_err());
    }
}
