//! DIMSE messages (PS3.7 §9.3, Annex E): command sets read and written by hand,
//! and the assembly of a message from P-DATA fragments (PS3.8 §9.3.5, Annex E).
//!
//! dicom-ul has no DIMSE layer: it delivers presentation data values (PDVs), each
//! flagged command or data set and last-or-not. A command set is always Implicit
//! VR Little Endian (PS3.7 §6.3.1) and holds only group 0000 elements of a few
//! simple VRs (UL, US, UI, AE, LO), so it is parsed here in a few lines rather
//! than through a data set reader; every length is checked, nothing panics on
//! malformed input. What is left out: the data set itself (kept as bytes in the
//! presentation context's transfer syntax), and sending (see `association`).

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_ul::pdu::{PDataValue, PDataValueType};

use super::status::Status;

/// Command Field values (PS3.7 E.1).
pub mod field {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_GET_RQ: u16 = 0x0010;
    pub const C_FIND_RQ: u16 = 0x0020;
    pub const C_MOVE_RQ: u16 = 0x0021;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const C_CANCEL_RQ: u16 = 0x0FFF;
    pub const N_EVENT_REPORT_RQ: u16 = 0x0100;
    pub const N_ACTION_RQ: u16 = 0x0130;
    /// A response's Command Field is its request's with this bit set.
    pub const RESPONSE_BIT: u16 = 0x8000;
}

/// CommandDataSetType (0000,0800) value meaning "no data set follows".
pub const NO_DATA_SET: u16 = 0x0101;
/// Any other value means a data set follows; this is the one we send.
const DATA_SET_PRESENT: u16 = 0x0000;

/// A command set larger than this is not a command set (the biggest real ones,
/// with a long ErrorComment, are a few hundred bytes).
const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// Why a stream of fragments is not a valid DIMSE message: the association is
/// aborted, since the peer and we no longer agree on where messages start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageError {
    /// An element's length runs past the end of the command set.
    #[error("command set is truncated at byte {0}")]
    Truncated(usize),
    /// A command set without Command Field.
    #[error("command set has no CommandField (0000,0100)")]
    NoCommandField,
    /// More command bytes than any command set has.
    #[error("command set is longer than {MAX_COMMAND_BYTES} bytes")]
    CommandTooLong,
    /// A data set fragment where a command was expected.
    #[error("data set fragment before its command")]
    DataBeforeCommand,
    /// A command fragment while the data set of the previous command was due.
    #[error("command fragment while a data set was expected")]
    CommandBeforeData,
    /// A message switched presentation context half-way (PS3.8 §9.3.5.1).
    #[error("fragment on presentation context {got} within a message on {expected}")]
    ContextSwitch { expected: u8, got: u8 },
}

/// A parsed command set: its elements, in the order received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    elements: Vec<(Tag, Vec<u8>)>,
    /// Command Field (0000,0100).
    pub field: u16,
}

impl Command {
    /// Parses an Implicit VR Little Endian command set.
    pub fn parse(bytes: &[u8]) -> Result<Self, MessageError> {
        let mut elements = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let header = bytes
                .get(pos..pos + 8)
                .ok_or(MessageError::Truncated(pos))?;
            let group = u16::from_le_bytes([header[0], header[1]]);
            let element = u16::from_le_bytes([header[2], header[3]]);
            let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
            let start = pos + 8;
            let value = start
                .checked_add(len)
                .and_then(|end| bytes.get(start..end))
                .ok_or(MessageError::Truncated(pos))?;
            elements.push((Tag(group, element), value.to_vec()));
            pos = start + len;
        }
        let mut command = Command { elements, field: 0 };
        command.field = command
            .u16(tags::COMMAND_FIELD)
            .ok_or(MessageError::NoCommandField)?;
        Ok(command)
    }

    fn value(&self, tag: Tag) -> Option<&[u8]> {
        self.elements
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_slice())
    }

    /// A US element.
    pub fn u16(&self, tag: Tag) -> Option<u16> {
        match self.value(tag)? {
            [a, b] => Some(u16::from_le_bytes([*a, *b])),
            _ => None,
        }
    }

    /// A text element (UI, AE, LO) without its padding; `None` when absent,
    /// empty or not text.
    pub fn string(&self, tag: Tag) -> Option<String> {
        let s = std::str::from_utf8(self.value(tag)?).ok()?;
        let s = s.trim_matches(['\0', ' ']);
        (!s.is_empty()).then(|| s.to_owned())
    }

    /// Message ID (0000,0110).
    pub fn message_id(&self) -> u16 {
        self.u16(tags::MESSAGE_ID).unwrap_or(0)
    }

    /// Whether a data set follows (CommandDataSetType other than 0x0101).
    pub fn has_data_set(&self) -> bool {
        self.u16(tags::COMMAND_DATA_SET_TYPE)
            .is_some_and(|t| t != NO_DATA_SET)
    }
}

/// A command set being written: elements are encoded as added and sorted by tag
/// when the set is finished, with CommandGroupLength in front.
#[derive(Debug, Clone, Default)]
pub struct CommandWriter {
    elements: Vec<(Tag, Vec<u8>)>,
}

impl CommandWriter {
    /// A US element.
    pub fn u16(mut self, tag: Tag, value: u16) -> Self {
        self.elements.push((tag, value.to_le_bytes().to_vec()));
        self
    }

    /// A UI element, padded to even length with NUL (PS3.5 §9.1).
    pub fn uid(mut self, tag: Tag, value: &str) -> Self {
        let mut v = value.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(0);
        }
        self.elements.push((tag, v));
        self
    }

    /// An AE or LO element, padded to even length with a space.
    pub fn text(mut self, tag: Tag, value: &str) -> Self {
        let mut v = value.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(b' ');
        }
        self.elements.push((tag, v));
        self
    }

    /// The encoded command set (PS3.7 §6.3.1: Implicit VR Little Endian, group
    /// length first).
    pub fn finish(mut self) -> Vec<u8> {
        self.elements.sort_by_key(|(t, _)| *t);
        let body_len: usize = self.elements.iter().map(|(_, v)| 8 + v.len()).sum();
        let mut out = Vec::with_capacity(12 + body_len);
        let mut put = |tag: Tag, value: &[u8]| {
            out.extend_from_slice(&tag.group().to_le_bytes());
            out.extend_from_slice(&tag.element().to_le_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        };
        put(tags::COMMAND_GROUP_LENGTH, &(body_len as u32).to_le_bytes());
        for (tag, value) in &self.elements {
            put(*tag, value);
        }
        out
    }
}

/// The response to `request` (PS3.7 §9.3): Command Field with the response bit,
/// MessageIDBeingRespondedTo, the request's AffectedSOPClassUID, the status and
/// its ErrorComment, and whether a data set follows. Further elements
/// (AffectedSOPInstanceUID, counts) are added by the caller.
pub fn response(request: &Command, status: &Status, with_data_set: bool) -> CommandWriter {
    let mut w = CommandWriter::default()
        .u16(tags::COMMAND_FIELD, request.field | field::RESPONSE_BIT)
        .u16(tags::MESSAGE_ID_BEING_RESPONDED_TO, request.message_id())
        .u16(
            tags::COMMAND_DATA_SET_TYPE,
            if with_data_set {
                DATA_SET_PRESENT
            } else {
                NO_DATA_SET
            },
        )
        .u16(tags::STATUS, status.code);
    if let Some(class) = request.string(tags::AFFECTED_SOP_CLASS_UID) {
        w = w.uid(tags::AFFECTED_SOP_CLASS_UID, &class);
    }
    if let Some(comment) = &status.comment {
        w = w.text(tags::ERROR_COMMENT, comment);
    }
    w
}

/// A complete DIMSE message.
#[derive(Debug)]
pub struct Message {
    /// The presentation context it came on.
    pub context_id: u8,
    pub command: Command,
    /// The data set, in the presentation context's transfer syntax; empty when
    /// none came or when it was larger than the limit.
    pub data: Vec<u8>,
    /// The data set's size when it exceeded the assembler's limit (its bytes
    /// were read and dropped, so the association stays in step).
    pub oversize: Option<u64>,
}

enum State {
    Idle,
    Command {
        context_id: u8,
        bytes: Vec<u8>,
    },
    Data {
        context_id: u8,
        command: Command,
        data: Vec<u8>,
        len: u64,
    },
}

/// Puts fragments back together into messages.
pub struct Assembler {
    state: State,
    max_data: u64,
}

impl Assembler {
    /// Data sets larger than `max_data` bytes are counted, not kept.
    pub fn new(max_data: u64) -> Self {
        Assembler {
            state: State::Idle,
            max_data,
        }
    }

    /// Whether a command has arrived and its data set is being received.
    pub fn awaiting_data(&self) -> bool {
        matches!(self.state, State::Data { .. })
    }

    /// Adds one fragment; returns the message it completes, if any.
    pub fn push(&mut self, pdv: PDataValue) -> Result<Option<Message>, MessageError> {
        let PDataValue {
            presentation_context_id: id,
            value_type,
            is_last,
            data: fragment,
        } = pdv;
        let state = std::mem::replace(&mut self.state, State::Idle);
        match (state, value_type) {
            (State::Idle, PDataValueType::Command) => {
                self.command_fragment(id, Vec::new(), fragment, is_last)
            }
            (State::Command { context_id, bytes }, PDataValueType::Command) => {
                check_context(context_id, id)?;
                self.command_fragment(id, bytes, fragment, is_last)
            }
            (
                State::Data {
                    context_id,
                    command,
                    mut data,
                    len,
                },
                PDataValueType::Data,
            ) => {
                check_context(context_id, id)?;
                let len = len + fragment.len() as u64;
                if len <= self.max_data {
                    data.extend_from_slice(&fragment);
                } else {
                    // Over the limit: drop what was kept, keep counting so the
                    // sender gets an answer once its last fragment is in.
                    data = Vec::new();
                }
                if is_last {
                    let oversize = (len > self.max_data).then_some(len);
                    return Ok(Some(Message {
                        context_id,
                        command,
                        data,
                        oversize,
                    }));
                }
                self.state = State::Data {
                    context_id,
                    command,
                    data,
                    len,
                };
                Ok(None)
            }
            (State::Idle | State::Command { .. }, PDataValueType::Data) => {
                Err(MessageError::DataBeforeCommand)
            }
            (State::Data { .. }, PDataValueType::Command) => Err(MessageError::CommandBeforeData),
        }
    }

    fn command_fragment(
        &mut self,
        context_id: u8,
        mut bytes: Vec<u8>,
        fragment: Vec<u8>,
        is_last: bool,
    ) -> Result<Option<Message>, MessageError> {
        if bytes.len() + fragment.len() > MAX_COMMAND_BYTES {
            return Err(MessageError::CommandTooLong);
        }
        bytes.extend_from_slice(&fragment);
        if !is_last {
            self.state = State::Command { context_id, bytes };
            return Ok(None);
        }
        let command = Command::parse(&bytes)?;
        if command.has_data_set() {
            self.state = State::Data {
                context_id,
                command,
                data: Vec::new(),
                len: 0,
            };
            return Ok(None);
        }
        Ok(Some(Message {
            context_id,
            command,
            data: Vec::new(),
            oversize: None,
        }))
    }
}

fn check_context(expected: u8, got: u8) -> Result<(), MessageError> {
    if expected == got {
        Ok(())
    } else {
        Err(MessageError::ContextSwitch { expected, got })
    }
}

/// Splits one encoded command set or data set into PDVs that fit a P-DATA-TF PDU
/// of at most `max_pdu_length` bytes (PS3.8 §9.3.5: the PDU's variable part; each
/// PDV adds a 6-byte header).
pub fn fragments(
    context_id: u8,
    value_type: PDataValueType,
    bytes: &[u8],
    max_pdu_length: u32,
) -> Vec<PDataValue> {
    let chunk = (max_pdu_length as usize).saturating_sub(6).max(1);
    let mut out: Vec<PDataValue> = bytes
        .chunks(chunk)
        .map(|c| PDataValue {
            presentation_context_id: context_id,
            value_type: value_type.clone(),
            is_last: false,
            data: c.to_vec(),
        })
        .collect();
    match out.last_mut() {
        Some(last) => last.is_last = true,
        // An empty data set is still one (last) fragment.
        None => out.push(PDataValue {
            presentation_context_id: context_id,
            value_type,
            is_last: true,
            data: Vec::new(),
        }),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dimse::status;

    fn echo_rq(id: u16) -> Vec<u8> {
        CommandWriter::default()
            .u16(tags::COMMAND_FIELD, field::C_ECHO_RQ)
            .u16(tags::MESSAGE_ID, id)
            .u16(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET)
            .uid(
                tags::AFFECTED_SOP_CLASS_UID,
                dicom_dictionary_std::uids::VERIFICATION,
            )
            .finish()
    }

    fn pdv(value_type: PDataValueType, is_last: bool, data: &[u8]) -> PDataValue {
        PDataValue {
            presentation_context_id: 1,
            value_type,
            is_last,
            data: data.to_vec(),
        }
    }

    #[test]
    fn command_round_trip() {
        let bytes = echo_rq(7);
        // Group length counts the bytes after itself.
        assert_eq!(
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            bytes.len() - 12
        );
        let c = Command::parse(&bytes).unwrap();
        assert_eq!(c.field, field::C_ECHO_RQ);
        assert_eq!(c.message_id(), 7);
        assert!(!c.has_data_set());
        assert_eq!(
            c.string(tags::AFFECTED_SOP_CLASS_UID).as_deref(),
            Some(dicom_dictionary_std::uids::VERIFICATION)
        );
        let rsp = response(&c, &Status::with_comment(status::WARNING, "odd"), false).finish();
        let r = Command::parse(&rsp).unwrap();
        assert_eq!(r.field, 0x8030);
        assert_eq!(r.u16(tags::MESSAGE_ID_BEING_RESPONDED_TO), Some(7));
        assert_eq!(r.u16(tags::STATUS), Some(status::WARNING));
        assert_eq!(r.string(tags::ERROR_COMMENT).as_deref(), Some("odd"));
    }

    #[test]
    fn malformed_commands_are_errors() {
        let bytes = echo_rq(1);
        for cut in 1..bytes.len() {
            // Cutting inside an element is an error; at an element boundary the
            // rest may still parse, but never panics.
            let _ = Command::parse(&bytes[..cut]);
        }
        assert_eq!(
            Command::parse(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            Err(MessageError::Truncated(0))
        );
        assert_eq!(Command::parse(&[]), Err(MessageError::NoCommandField));
    }

    #[test]
    fn assembles_fragmented_messages() {
        let command = CommandWriter::default()
            .u16(tags::COMMAND_FIELD, field::C_STORE_RQ)
            .u16(tags::MESSAGE_ID, 3)
            .u16(tags::COMMAND_DATA_SET_TYPE, 0)
            .finish();
        let mut a = Assembler::new(10);
        let (head, tail) = command.split_at(5);
        assert!(
            a.push(pdv(PDataValueType::Command, false, head))
                .unwrap()
                .is_none()
        );
        assert!(
            a.push(pdv(PDataValueType::Command, true, tail))
                .unwrap()
                .is_none()
        );
        assert!(
            a.push(pdv(PDataValueType::Data, false, b"abcd"))
                .unwrap()
                .is_none()
        );
        let m = a
            .push(pdv(PDataValueType::Data, true, b"ef"))
            .unwrap()
            .unwrap();
        assert_eq!((m.data.as_slice(), m.oversize), (&b"abcdef"[..], None));

        // Over the limit: counted, not kept; the next message starts clean.
        assert!(
            a.push(pdv(PDataValueType::Command, true, &command))
                .unwrap()
                .is_none()
        );
        let m = a
            .push(pdv(PDataValueType::Data, true, &[0; 11]))
            .unwrap()
            .unwrap();
        assert_eq!((m.data.len(), m.oversize), (0, Some(11)));
        assert_eq!(
            a.push(pdv(PDataValueType::Data, true, b"x")).unwrap_err(),
            MessageError::DataBeforeCommand
        );
    }

    /// SplitMix64: a seeded generator, so a failure is reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }

        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    /// Real command sets to mutate: requests and responses of every kind served.
    fn seeds() -> Vec<Vec<u8>> {
        let store = CommandWriter::default()
            .u16(tags::COMMAND_FIELD, field::C_STORE_RQ)
            .u16(tags::MESSAGE_ID, 3)
            .u16(tags::PRIORITY, 0)
            .u16(tags::COMMAND_DATA_SET_TYPE, 0)
            .uid(tags::AFFECTED_SOP_CLASS_UID, "1.2.840.10008.5.1.4.1.1.1")
            .uid(tags::AFFECTED_SOP_INSTANCE_UID, "2.25.123456789")
            .text(tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE, "WS")
            .finish();
        let action = CommandWriter::default()
            .u16(tags::COMMAND_FIELD, field::N_ACTION_RQ)
            .u16(tags::MESSAGE_ID, 4)
            .u16(tags::COMMAND_DATA_SET_TYPE, 0)
            .uid(tags::REQUESTED_SOP_CLASS_UID, "1.2.840.10008.1.20.1")
            .uid(tags::REQUESTED_SOP_INSTANCE_UID, "1.2.840.10008.1.20.1.1")
            .u16(tags::ACTION_TYPE_ID, 1)
            .finish();
        let echo = Command::parse(&echo_rq(9)).unwrap();
        let rsp = response(&echo, &Status::with_comment(status::WARNING, "x"), false).finish();
        vec![echo_rq(1), store, action, rsp]
    }

    fn mutate(rng: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
        for _ in 0..=rng.below(4) {
            let at = rng.below(bytes.len());
            match rng.below(6) {
                0 if !bytes.is_empty() => bytes[at] = rng.next() as u8,
                1 => bytes.truncate(at),
                2 => bytes.insert(at.min(bytes.len()), rng.next() as u8),
                3 if at < bytes.len() => {
                    bytes.remove(at);
                }
                // A length field (bytes 4..8 of an element) set to something
                // large or odd.
                4 if at + 4 <= bytes.len() => {
                    let len = [u32::MAX, 0x7FFF_FFFF, 0xFFFF_FFF8, 1, 0][rng.below(5)];
                    bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
                }
                _ => {
                    let len = rng.below(16);
                    bytes.extend(rng.bytes(len));
                }
            }
        }
        bytes
    }

    /// The stable, CI-run counterpart of `fuzz/` (docs/dimse.md): random and
    /// mutated command sets, and random fragment sequences, must give errors,
    /// never panics.
    #[test]
    fn malformed_input_never_panics() {
        let mut rng = Rng(0x00A1_4A00);
        let seeds = seeds();
        let mut errors = 0;
        for round in 0..20_000 {
            let input = if round % 4 == 0 {
                let len = rng.below(64);
                rng.bytes(len)
            } else {
                let seed = seeds[rng.below(seeds.len())].clone();
                mutate(&mut rng, seed)
            };
            match Command::parse(&input) {
                Ok(c) => {
                    // Whatever parsed reads back without panicking either.
                    let _ = (
                        c.message_id(),
                        c.has_data_set(),
                        c.string(tags::ERROR_COMMENT),
                    );
                }
                Err(_) => errors += 1,
            }
        }
        assert!(
            errors > 5_000,
            "only {errors} errors: the mutations are too mild"
        );

        // Fragment sequences: commands, data, contexts and last flags at random,
        // into one assembler that is replaced after each error (as the
        // association is aborted).
        let mut assembler = Assembler::new(64);
        let mut failures = 0;
        for _ in 0..20_000 {
            let value_type = if rng.below(2) == 0 {
                PDataValueType::Command
            } else {
                PDataValueType::Data
            };
            let data = match (&value_type, rng.below(3)) {
                (PDataValueType::Command, 0) => seeds[rng.below(seeds.len())].clone(),
                (PDataValueType::Command, 1) => {
                    let seed = seeds[rng.below(seeds.len())].clone();
                    mutate(&mut rng, seed)
                }
                _ => {
                    let len = rng.below(100);
                    rng.bytes(len)
                }
            };
            let pdv = PDataValue {
                presentation_context_id: [1, 1, 1, 3][rng.below(4)],
                value_type,
                is_last: rng.below(3) != 0,
                data,
            };
            if assembler.push(pdv).is_err() {
                failures += 1;
                assembler = Assembler::new(64);
            }
        }
        assert!(failures > 0);
    }

    #[test]
    fn fragments_fit_the_pdu() {
        let f = fragments(1, PDataValueType::Data, &[1; 25], 16);
        assert_eq!(
            f.iter().map(|p| p.data.len()).collect::<Vec<_>>(),
            [10, 10, 5]
        );
        assert!(f[2].is_last && !f[0].is_last);
        let f = fragments(1, PDataValueType::Data, &[], 16);
        assert!(f.len() == 1 && f[0].is_last);
    }
}
