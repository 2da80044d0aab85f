//! DIMSE status codes (PS3.7 Annex C, PS3.4 B.2.3 and C.4.1.1.4) and the one
//! table from our errors to them, as `http/error.rs` is for HTTP statuses.
//!
//! Every failure and warning carries an ErrorComment (0000,0902) saying what is
//! wrong; it is an LO, so it is cut to 64 characters.

use crate::ingest::{Disposition, IngestError};

/// Success.
pub const SUCCESS: u16 = 0x0000;
/// C-FIND: a match follows, every key supported (PS3.4 C.4.1.1.4).
pub const PENDING: u16 = 0xFF00;
/// C-FIND: a match follows, but some optional keys were not matched on.
pub const PENDING_KEYS_UNSUPPORTED: u16 = 0xFF01;
/// The operation was cancelled by a C-CANCEL.
pub const CANCEL: u16 = 0xFE00;
/// Stored, with something the sender should know (PS3.4 B.2.3: coercion of
/// data elements; we also use it for stored-as-a-new-version).
pub const WARNING: u16 = 0xB000;
/// Refused: out of resources (storage or index failed, too large).
pub const OUT_OF_RESOURCES: u16 = 0xA700;
/// C-MOVE / C-GET refused: the matches could not be worked out (index failed,
/// too many).
pub const UNABLE_TO_CALCULATE_MATCHES: u16 = 0xA701;
/// C-MOVE refused: the sub-operations cannot be performed (the destination
/// cannot be associated with).
pub const UNABLE_TO_PERFORM_SUBOPERATIONS: u16 = 0xA702;
/// C-MOVE refused: the Move Destination is not a configured peer.
pub const MOVE_DESTINATION_UNKNOWN: u16 = 0xA801;
/// Error: the data set does not match the SOP class of the request (or the
/// C-FIND identifier is not valid for the information model).
pub const DATA_SET_MISMATCH: u16 = 0xA900;
/// Error: cannot understand (malformed data set, missing or invalid UIDs).
pub const CANNOT_UNDERSTAND: u16 = 0xC000;
/// Failure: a different instance is already stored under this SOP Instance UID
/// (PS3.7 C.4.2 Duplicate SOP Instance), conflict policy `reject`.
pub const DUPLICATE_SOP_INSTANCE: u16 = 0x0111;
/// Refused: the SOP class of the command is not the presentation context's.
pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
/// The command is not one this SCP performs (PS3.7 C.4.4).
pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
/// Refused: Not Authorized (PS3.7 C.5.x): the calling AE title's role does
/// not allow the operation.
pub const NOT_AUTHORIZED: u16 = 0x0124;

/// The longest ErrorComment: (0000,0902) is an LO.
const MAX_COMMENT_CHARS: usize = 64;

/// A status with its ErrorComment, as one response carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub comment: Option<String>,
}

impl Status {
    /// Whether the status is a failure (PS3.7 C.1.2): not success, pending,
    /// cancel or a warning.
    pub fn is_failure(&self) -> bool {
        matches!(self.code, 0x0100..=0x02FF | 0xA000..=0xAFFF | 0xC000..=0xCFFF)
            && !matches!(self.code, 0x0107 | 0x0116)
    }

    /// A status without comment.
    pub fn ok(code: u16) -> Self {
        Status {
            code,
            comment: None,
        }
    }

    /// A status with an ErrorComment, cut to what an LO holds.
    pub fn with_comment(code: u16, comment: impl Into<String>) -> Self {
        let comment: String = comment.into();
        let comment = if comment.chars().count() > MAX_COMMENT_CHARS {
            comment.chars().take(MAX_COMMENT_CHARS).collect()
        } else {
            comment
        };
        Status {
            code,
            comment: Some(comment),
        }
    }
}

/// The C-STORE status of a refused instance (PS3.4 B.2.3).
pub fn for_ingest_error(e: &IngestError) -> Status {
    let code = match e {
        IngestError::Conflict { .. } => DUPLICATE_SOP_INSTANCE,
        IngestError::TooLarge { .. } => OUT_OF_RESOURCES,
        e if e.is_input_error() => CANNOT_UNDERSTAND,
        // Store, index, container, JSON, task: the archive's side. The detail is
        // logged at the edge; the sender gets the step that failed.
        _ => OUT_OF_RESOURCES,
    };
    Status::with_comment(code, e.to_string())
}

/// The C-STORE status of a stored instance: success, or a warning when it went
/// in as another version or with a note from ingest.
pub fn for_stored(disposition: &Disposition, warning: Option<&str>) -> Status {
    match (disposition, warning) {
        (Disposition::KeptBothVersions { .. }, _) => Status::with_comment(
            WARNING,
            "different content under this SOP Instance UID: kept both",
        ),
        (Disposition::Replaced, _) => Status::with_comment(
            WARNING,
            "different content under this SOP Instance UID: replaced",
        ),
        (_, Some(w)) => Status::with_comment(WARNING, w),
        (Disposition::Stored | Disposition::AlreadyStored, None) => Status::ok(SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_fit_an_lo() {
        let s = Status::with_comment(CANNOT_UNDERSTAND, "ж".repeat(100));
        assert_eq!(s.comment.map(|c| c.chars().count()), Some(64));
    }

    #[test]
    fn ingest_errors_map_per_ps3_4() {
        let too_large = IngestError::TooLarge { size: 2, max: 1 };
        assert_eq!(for_ingest_error(&too_large).code, OUT_OF_RESOURCES);
        let missing = IngestError::MissingAttribute("StudyInstanceUID");
        assert_eq!(for_ingest_error(&missing).code, CANNOT_UNDERSTAND);
        let conflict = IngestError::Conflict {
            existing_sha256: "00".into(),
        };
        assert_eq!(for_ingest_error(&conflict).code, DUPLICATE_SOP_INSTANCE);
        assert_eq!(for_stored(&Disposition::Stored, None).code, SUCCESS);
        assert_eq!(for_stored(&Disposition::Replaced, None).code, WARNING);
        assert_eq!(
            for_stored(&Disposition::AlreadyStored, Some("stale meta")).code,
            WARNING
        );
    }
}
