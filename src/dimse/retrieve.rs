//! C-MOVE and C-GET SCP (PS3.4 C.4.2, C.4.3) on the Patient Root and Study Root
//! models: the identifier resolved to stored instances, the sub-operation
//! counts, and the responses that report them. The sub-operations themselves
//! (C-STORE to a peer, or back over the requesting association) are run by
//! `association`, with the sending of [`super::scu`].
//!
//! Resolution: STUDY, SERIES and IMAGE levels by their unique keys (UID lists,
//! backslash-separated, allowed); PATIENT level by PatientID through the index.
//! Left out: relational retrieve beyond that (keys above the level are not
//! required, as PS3.4 C.4.2.2.1 lets the SCP decide).

use aina_dicomweb::qido::{IncludeFields, QidoQuery, QueryLevel, attribute_match};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::message::{Command, CommandWriter, response};
use super::scu::Outcome;
use super::status::{self, Status};
use crate::app::AppState;
use crate::index::{Scope, StoredInstance};
use crate::retrieve::RetrieveError;

/// More studies than this for one patient are refused (A701): a retrieve that
/// large is a mistake more often than not.
const MAX_PATIENT_STUDIES: u32 = 1_000;

/// The stored instances an identifier names, or the status refusing it.
pub async fn resolve(
    state: &AppState,
    model: &str,
    transfer_syntax: &str,
    identifier: &[u8],
) -> Result<Vec<StoredInstance>, Status> {
    let ts = TransferSyntaxRegistry.get(transfer_syntax).ok_or_else(|| {
        Status::with_comment(status::CANNOT_UNDERSTAND, "unknown transfer syntax")
    })?;
    let obj = InMemDicomObject::read_dataset_with_ts(identifier, ts).map_err(|e| {
        Status::with_comment(
            status::CANNOT_UNDERSTAND,
            format!("cannot read the identifier: {e}"),
        )
    })?;
    let values = |tag| -> Vec<String> {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_str().ok())
            .map(|s| {
                s.split('\\')
                    .map(|v| v.trim_matches(['\0', ' ']).to_owned())
                    .filter(|v| !v.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let level = values(tags::QUERY_RETRIEVE_LEVEL)
        .first()
        .map(|l| l.to_ascii_uppercase())
        .unwrap_or_default();
    let patient_root = model == uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE
        || model == uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET;
    let (key, scope): (_, fn(String) -> Scope) = match level.as_str() {
        "PATIENT" if patient_root => {
            return patient_instances(state, &values(tags::PATIENT_ID)).await;
        }
        "STUDY" => (tags::STUDY_INSTANCE_UID, |uid| Scope {
            study: Some(uid),
            ..Scope::default()
        }),
        "SERIES" => (tags::SERIES_INSTANCE_UID, |uid| Scope {
            series: Some(uid),
            ..Scope::default()
        }),
        "IMAGE" => (tags::SOP_INSTANCE_UID, |uid| Scope {
            instance: Some(uid),
            ..Scope::default()
        }),
        _ => {
            return Err(Status::with_comment(
                status::DATA_SET_MISMATCH,
                format!("QueryRetrieveLevel {level:?} is not valid for this model"),
            ));
        }
    };
    let uids = values(key);
    if uids.is_empty() {
        return Err(Status::with_comment(
            status::DATA_SET_MISMATCH,
            format!("no unique key for level {level}"),
        ));
    }
    let mut found = Vec::new();
    for uid in uids {
        found.extend(instances(state, &scope(uid)).await?);
    }
    Ok(found)
}

async fn instances(state: &AppState, scope: &Scope) -> Result<Vec<StoredInstance>, Status> {
    match state.retrieve.instances(scope).await {
        Ok(found) => Ok(found),
        Err(RetrieveError::NotFound(_)) => Ok(Vec::new()),
        Err(e) => {
            tracing::error!(
                error = &e as &dyn std::error::Error,
                "retrieve lookup failed"
            );
            Err(Status::with_comment(
                status::UNABLE_TO_CALCULATE_MATCHES,
                "index failed",
            ))
        }
    }
}

/// Every instance of the patients with these IDs (exact match).
async fn patient_instances(
    state: &AppState,
    patient_ids: &[String],
) -> Result<Vec<StoredInstance>, Status> {
    if patient_ids.is_empty() || patient_ids.iter().any(|id| id.contains(['*', '?'])) {
        return Err(Status::with_comment(
            status::DATA_SET_MISMATCH,
            "PATIENT level needs PatientID, without wildcards",
        ));
    }
    let mut found = Vec::new();
    for id in patient_ids {
        let matches = attribute_match(tags::PATIENT_ID, VR::LO, id)
            .map_err(|e| Status::with_comment(status::DATA_SET_MISMATCH, e.to_string()))?;
        let query = QidoQuery {
            level: QueryLevel::Study,
            matches: vec![matches],
            include: IncludeFields::Tags(vec![tags::STUDY_INSTANCE_UID]),
            limit: MAX_PATIENT_STUDIES + 1,
            offset: 0,
            fuzzy: false,
        };
        let rows = match state.index.search(&query, &Scope::default()).await {
            Ok(outcome) => outcome.rows,
            Err(e) => {
                tracing::error!(
                    error = &e as &dyn std::error::Error,
                    "retrieve search failed"
                );
                return Err(Status::with_comment(
                    status::UNABLE_TO_CALCULATE_MATCHES,
                    "index failed",
                ));
            }
        };
        if rows.len() > MAX_PATIENT_STUDIES as usize {
            return Err(Status::with_comment(
                status::UNABLE_TO_CALCULATE_MATCHES,
                format!("more than {MAX_PATIENT_STUDIES} studies for one patient"),
            ));
        }
        for row in rows {
            let study = row
                .get("0020000D")
                .and_then(|v| v.get("Value")?.get(0)?.as_str())
                .map(str::to_owned);
            if let Some(study) = study {
                let scope = Scope {
                    study: Some(study),
                    ..Scope::default()
                };
                found.extend(instances(state, &scope).await?);
            }
        }
    }
    Ok(found)
}

/// Sub-operation counts (PS3.4 C.4.2.1.5) and the instances that failed.
#[derive(Debug, Default)]
pub struct Progress {
    pub remaining: u16,
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
    /// SOP Instance UIDs of the failed sub-operations.
    pub failed_uids: Vec<String>,
    /// Sub-operations sent re-encoded as Explicit VR Little Endian.
    pub transcoded: u16,
}

impl Progress {
    pub fn new(total: usize) -> Self {
        Progress {
            remaining: u16::try_from(total).unwrap_or(u16::MAX),
            ..Progress::default()
        }
    }

    /// Records one sub-operation.
    pub fn record(&mut self, sop_instance_uid: &str, outcome: Outcome, transcoded: bool) {
        self.remaining = self.remaining.saturating_sub(1);
        match outcome {
            Outcome::Completed => self.completed = self.completed.saturating_add(1),
            Outcome::Warning => self.warning = self.warning.saturating_add(1),
            Outcome::Failed => {
                self.failed = self.failed.saturating_add(1);
                self.failed_uids.push(sop_instance_uid.to_owned());
            }
        }
        if transcoded && outcome != Outcome::Failed {
            self.transcoded = self.transcoded.saturating_add(1);
        }
    }

    /// A pending response (FF00) with the counts so far.
    pub fn pending(&self, request: &Command) -> Vec<u8> {
        self.counts(response(request, &Status::ok(status::PENDING), false), true)
            .finish()
    }

    /// The final response: 0000, B000 when anything failed or warned, FE00 when
    /// cancelled; with the identifier listing the failed instances, if any
    /// (PS3.4 C.4.2.1.3.2), encoded in `transfer_syntax`.
    pub fn last(
        &self,
        request: &Command,
        cancelled: bool,
        transfer_syntax: &str,
    ) -> (Vec<u8>, Option<Vec<u8>>) {
        let status = self.final_status(cancelled);
        let identifier = (!self.failed_uids.is_empty())
            .then(|| failed_identifier(&self.failed_uids, transfer_syntax))
            .flatten();
        let rsp = self.counts(response(request, &status, identifier.is_some()), cancelled);
        (rsp.finish(), identifier)
    }

    /// The status of the final response: 0000, B000 when anything failed or
    /// warned, FE00 when cancelled.
    pub fn final_status(&self, cancelled: bool) -> Status {
        if cancelled {
            Status::ok(status::CANCEL)
        } else if self.failed > 0 || self.warning > 0 {
            let mut comment = format!("{} failed, {} warnings", self.failed, self.warning);
            if self.transcoded > 0 {
                comment = format!(
                    "{comment}; {} sent re-encoded as Explicit VR LE",
                    self.transcoded
                );
            }
            Status::with_comment(status::WARNING, comment)
        } else {
            Status::ok(status::SUCCESS)
        }
    }

    fn counts(&self, w: CommandWriter, with_remaining: bool) -> CommandWriter {
        let mut w = w
            .u16(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS, self.completed)
            .u16(tags::NUMBER_OF_FAILED_SUBOPERATIONS, self.failed)
            .u16(tags::NUMBER_OF_WARNING_SUBOPERATIONS, self.warning);
        if with_remaining {
            w = w.u16(tags::NUMBER_OF_REMAINING_SUBOPERATIONS, self.remaining);
        }
        w
    }
}

/// An identifier with FailedSOPInstanceUIDList (0008,0058).
fn failed_identifier(failed: &[String], transfer_syntax: &str) -> Option<Vec<u8>> {
    let ts = TransferSyntaxRegistry.get(transfer_syntax)?;
    let obj = InMemDicomObject::from_element_iter([DataElement::new(
        tags::FAILED_SOP_INSTANCE_UID_LIST,
        VR::UI,
        PrimitiveValue::Strs(failed.iter().cloned().collect()),
    )]);
    let mut out = Vec::new();
    obj.write_dataset_with_ts(&mut out, ts).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::message::{CommandWriter, field};
    use super::*;

    #[test]
    fn counts_and_final_status() {
        let request = Command::parse(
            &CommandWriter::default()
                .u16(tags::COMMAND_FIELD, field::C_MOVE_RQ)
                .u16(tags::MESSAGE_ID, 5)
                .finish(),
        )
        .unwrap();
        let mut p = Progress::new(3);
        p.record("2.25.1", Outcome::Completed, false);
        let pending = Command::parse(&p.pending(&request)).unwrap();
        assert_eq!(pending.u16(tags::STATUS), Some(status::PENDING));
        assert_eq!(
            pending.u16(tags::NUMBER_OF_REMAINING_SUBOPERATIONS),
            Some(2)
        );
        p.record("2.25.2", Outcome::Warning, true);
        p.record("2.25.3", Outcome::Failed, false);
        let (rsp, identifier) = p.last(&request, false, uids::EXPLICIT_VR_LITTLE_ENDIAN);
        let rsp = Command::parse(&rsp).unwrap();
        assert_eq!(rsp.u16(tags::STATUS), Some(status::WARNING));
        assert_eq!(rsp.u16(tags::NUMBER_OF_FAILED_SUBOPERATIONS), Some(1));
        assert!(rsp.has_data_set());
        let ts = TransferSyntaxRegistry
            .get(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .unwrap();
        let obj = InMemDicomObject::read_dataset_with_ts(&identifier.unwrap()[..], ts).unwrap();
        assert_eq!(
            obj.element(tags::FAILED_SOP_INSTANCE_UID_LIST)
                .unwrap()
                .to_str()
                .unwrap(),
            "2.25.3"
        );
    }
}
