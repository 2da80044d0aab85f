//! The frame-addressable instance container: one object per instance.
//!
//! The original Part 10 bytes are cut (at the offsets [`crate::ingest::layout`]
//! found) into contiguous *segments*, each compressed on its own. Reassembly is the
//! concatenation of the decoded segments, so bit-exactness is structural: nothing
//! is re-encoded. One frame is one ranged read of the object.
//!
//! # Format (version 1, all integers little-endian)
//!
//! ```text
//! object  = MAGIC segment* table table_len:u32 MAGIC
//! MAGIC   = "AINAZ\0\x01\0"                      (8 bytes)
//! table   = version:u16 (=1) flags:u16 (=0)
//!           original_len:u64 sha256:[u8;32]
//!           frame_count:u32 segment_count:u32
//!           record*segment_count
//!           check:[u8;8]                   (first 8 bytes of SHA-256 of the table before it)
//! record  = head:u8                        (low nibble codec, high nibble sample_bytes)
//!           raw_len:varint                 (length in the original)
//!           [stored_len:varint]            (length in the object; absent for Stored)
//!           frame:varint                   (0 = glue, else the 1-based frame it belongs to)
//!           [width:varint]                 (samples per row; predicted codecs only)
//! codec   = 0 Stored | 1 Zstd | 2 LeftDelta | 3 Med
//! varint  = LEB128 (7 bits per byte, low first)
//! ```
//!
//! The table sits at the end so the object can be written as a stream; it is also
//! kept in the index row ([`ContainerIndex::to_bytes`]) so a frame read needs no
//! extra round trip. Offsets are not stored: segments are contiguous in the
//! original (from 0 to `original_len`) and in the object (from 8 up to the table),
//! so they are prefix sums, and the reader checks both ends. Records are varints
//! because encapsulated multi-frame objects have two segments per fragment (the
//! 8-byte item header and the value) and the table lives in a database row: an
//! item-header record is 4 bytes.
//!
//! # Segments and codecs
//! - Glue (everything that is not pixel values: the header, element and item headers,
//!   what follows the pixel data): zstd; pieces under 64 bytes (item headers) raw.
//! - Native frames: each frame its own segments, cut into row-aligned chunks of at
//!   most [`ContainerOptions::chunk_limit`] bytes so memory per segment is bounded
//!   and chunks compress in parallel (rayon). Single-sample 8/16-bit little-endian
//!   frames go through a predictor first ([`Predictor`]): the JPEG-LS median edge
//!   detector (or a plain left delta), zig-zag of the residual, byte planes (all low
//!   bytes, then all high bytes), then zstd. Wrapping arithmetic makes it exactly
//!   reversible for any input, signed data included.
//! - Encapsulated fragments: stored as they are; zstd only makes JPEG/J2K bigger.
//! - Every segment falls back to Stored when its encoding is not smaller.
//!
//! zstd frames carry their content checksum, so corruption inside a compressed
//! segment is reported by the frame read itself; Stored segments are only covered by
//! the whole-object SHA-256 that [`decode_all`] checks.
//!
//! What this module leaves out: object keys and I/O against object_store (the
//! store's job) and any understanding of DICOM beyond the offsets it is given.

use std::borrow::Cow;
use std::io::{self, Write};
use std::ops::Range;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::ingest::layout::{FileLayout, PixelLayout, Source};

/// First and last 8 bytes of every container object.
pub const MAGIC: [u8; 8] = *b"AINAZ\x00\x01\x00";
/// Table format version written by this code.
pub const TABLE_VERSION: u16 = 1;
/// `table_len` plus the closing magic.
pub const TRAILER_LEN: usize = 4 + MAGIC.len();

const TABLE_HEADER_LEN: usize = 2 + 2 + 8 + 32 + 4 + 4;
/// Smallest segment record: a Stored one, head byte and two one-byte varints.
const MIN_RECORD_LEN: usize = 3;
const CODEC_STORED: u8 = 0;
const CODEC_ZSTD: u8 = 1;
const CODEC_LEFT_DELTA: u8 = 2;
const CODEC_MED: u8 = 3;
const TABLE_CHECK_LEN: usize = 8;
/// Glue pieces smaller than this are stored raw: a zstd frame header plus checksum
/// would cost more than it saves on an 8-byte item header.
const RAW_GLUE_MAX: usize = 64;
/// Largest buffer allocated up front from a length read out of a (possibly corrupt)
/// table; longer segments grow their buffer as the decoder actually produces bytes.
const PREALLOC_CAP: u64 = 64 << 20;

/// Filter applied to native single-sample frames before zstd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Predictor {
    /// Plain zstd.
    None,
    /// Left neighbour (above for the first column), zig-zag, byte planes, zstd.
    LeftDelta,
    /// JPEG-LS median edge detector (ISO 14495-1 §A.4.1), zig-zag, byte planes, zstd.
    Med,
}

/// How [`encode`] compresses.
#[derive(Debug, Clone)]
pub struct ContainerOptions {
    /// zstd level for glue, frames and planes.
    pub zstd_level: i32,
    /// Largest raw segment in bytes (frames are cut at row boundaries, so a single
    /// row longer than this is still one segment).
    pub chunk_limit: usize,
    /// Filter for native single-sample 8/16-bit little-endian frames.
    pub predictor: Predictor,
}

impl Default for ContainerOptions {
    /// MED + zig-zag + byte planes + zstd-1, 8 MiB chunks: chosen by
    /// `benches/container.rs` (see its header for the numbers).
    fn default() -> Self {
        ContainerOptions {
            zstd_level: 1,
            chunk_limit: 8 << 20,
            predictor: Predictor::Med,
        }
    }
}

/// How one segment's stored bytes decode back to the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// The original bytes as they are.
    Stored,
    /// One zstd frame.
    Zstd,
    /// Left-delta residuals, zig-zag, byte planes, one zstd frame.
    LeftDelta {
        /// 1 or 2.
        sample_bytes: u8,
        /// Samples per row.
        width: u32,
    },
    /// MED residuals, zig-zag, byte planes, one zstd frame.
    Med {
        /// 1 or 2.
        sample_bytes: u8,
        /// Samples per row.
        width: u32,
    },
}

/// What a segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Anything that is not frame pixel bytes.
    Glue,
    /// Pixel bytes of this 1-based frame (native samples or fragment values).
    Frame(u32),
}

/// One contiguous range of the original, stored on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Offset in the original file.
    pub raw_offset: u64,
    /// Length in the original file.
    pub raw_len: u64,
    /// Offset in the container object.
    pub stored_offset: u64,
    /// Length in the container object.
    pub stored_len: u64,
    /// How it was encoded.
    pub codec: Codec,
    /// What it holds.
    pub role: Role,
}

/// The container's table: everything needed to find and decode any part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerIndex {
    /// Length of the original file.
    pub original_len: u64,
    /// SHA-256 of the original file.
    pub sha256: [u8; 32],
    /// Segments in original (and object) order.
    pub segments: Vec<Segment>,
    /// Segment index range of each frame (glue such as item headers may sit inside
    /// a frame's range; it is skipped when decoding the frame).
    frames: Vec<Range<usize>>,
}

/// Why a container could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// The object does not start or end with [`MAGIC`].
    #[error("not an Aina container: magic bytes missing")]
    BadMagic,
    /// The object or table is shorter than its own structure says.
    #[error("container truncated: {what}")]
    Truncated {
        /// Which part is missing.
        what: &'static str,
    },
    /// The table is inconsistent.
    #[error("container table is invalid: {reason}")]
    BadTable {
        /// What is inconsistent.
        reason: &'static str,
    },
    /// The table was written by a newer format.
    #[error("container table version {0} is not supported (expected {TABLE_VERSION})")]
    UnsupportedVersion(u16),
    /// The bytes handed in for a segment or frame are not as long as the table says.
    #[error("expected {expected} stored bytes, got {actual}")]
    StoredLength {
        /// Length the table gives.
        expected: u64,
        /// Length received.
        actual: u64,
    },
    /// A zstd segment does not decompress.
    #[error("segment at original offset {raw_offset} does not decompress")]
    Decompress {
        /// Where the segment belongs in the original.
        raw_offset: u64,
        /// zstd's report.
        #[source]
        source: io::Error,
    },
    /// A segment decoded to the wrong length.
    #[error(
        "segment at original offset {raw_offset} decoded to {actual} bytes, expected {expected}"
    )]
    SegmentLength {
        /// Where the segment belongs in the original.
        raw_offset: u64,
        /// Length the table gives.
        expected: u64,
        /// Length decoded.
        actual: u64,
    },
    /// The reassembled object has the wrong length.
    #[error("reassembled {actual} bytes, expected {expected}")]
    LengthMismatch {
        /// Original length from the table.
        expected: u64,
        /// Bytes reassembled.
        actual: u64,
    },
    /// The reassembled object does not hash to the recorded SHA-256.
    #[error("SHA-256 of the reassembled object does not match: expected {expected}, got {actual}")]
    ChecksumMismatch {
        /// Hex digest from the table.
        expected: String,
        /// Hex digest of the reassembled bytes.
        actual: String,
    },
    /// The frame number is 0 or beyond the frame count.
    #[error("no frame {frame}: the instance has {frame_count} addressable frames")]
    NoSuchFrame {
        /// Frame asked for (1-based).
        frame: u32,
        /// Frames in the container.
        frame_count: u32,
    },
    /// The layout does not fit the source bytes.
    #[error("layout does not fit the source: {reason}")]
    InvalidLayout {
        /// What does not fit.
        reason: &'static str,
    },
    /// zstd failed while compressing.
    #[error("compressing a segment failed")]
    Compress(#[source] io::Error),
    /// Reading the source failed.
    #[error("reading the source failed")]
    Read(#[source] io::Error),
    /// Writing the object failed.
    #[error("writing the container failed")]
    Write(#[source] io::Error),
}

impl Codec {
    fn to_parts(self) -> (u8, u8, u32) {
        match self {
            Codec::Stored => (CODEC_STORED, 0, 0),
            Codec::Zstd => (CODEC_ZSTD, 0, 0),
            Codec::LeftDelta {
                sample_bytes,
                width,
            } => (CODEC_LEFT_DELTA, sample_bytes, width),
            Codec::Med {
                sample_bytes,
                width,
            } => (CODEC_MED, sample_bytes, width),
        }
    }

    fn from_parts(codec: u8, sample_bytes: u8, width: u32) -> Result<Self, ContainerError> {
        let predicted = |f: fn(u8, u32) -> Codec| {
            if matches!(sample_bytes, 1 | 2) && width > 0 {
                Ok(f(sample_bytes, width))
            } else {
                Err(ContainerError::BadTable {
                    reason: "predicted segment with bad sample size or width",
                })
            }
        };
        match (codec, sample_bytes, width) {
            (CODEC_STORED, 0, 0) => Ok(Codec::Stored),
            (CODEC_ZSTD, 0, 0) => Ok(Codec::Zstd),
            (CODEC_LEFT_DELTA, _, _) => predicted(|sample_bytes, width| Codec::LeftDelta {
                sample_bytes,
                width,
            }),
            (CODEC_MED, _, _) => predicted(|sample_bytes, width| Codec::Med {
                sample_bytes,
                width,
            }),
            _ => Err(ContainerError::BadTable {
                reason: "unknown codec",
            }),
        }
    }
}

/// Emits one segment record (see the module docs) in pieces.
fn record(s: &Segment, mut out: impl FnMut(&[u8])) {
    let (codec, sample_bytes, width) = s.codec.to_parts();
    out(&[codec | (sample_bytes << 4)]);
    varint(s.raw_len, &mut out);
    if codec != CODEC_STORED {
        varint(s.stored_len, &mut out);
    }
    let frame = match s.role {
        Role::Glue => 0,
        Role::Frame(n) => n,
    };
    varint(u64::from(frame), &mut out);
    if codec >= CODEC_LEFT_DELTA {
        varint(u64::from(width), &mut out);
    }
}

/// LEB128: seven bits per byte, low first, high bit set on all but the last.
fn varint(mut v: u64, out: &mut impl FnMut(&[u8])) {
    let mut buf = [0u8; 10];
    let mut n = 0;
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            buf[n] = byte;
            n += 1;
            break;
        }
        buf[n] = byte | 0x80;
        n += 1;
    }
    out(&buf[..n]);
}

/// A little cursor over untrusted table bytes; the caller checked the total length.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], ContainerError> {
        let (head, rest) = self
            .0
            .split_at_checked(N)
            .ok_or(ContainerError::Truncated {
                what: "container table",
            })?;
        self.0 = rest;
        let mut b = [0u8; N];
        b.copy_from_slice(head);
        Ok(b)
    }
    fn u16(&mut self) -> Result<u16, ContainerError> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Result<u32, ContainerError> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, ContainerError> {
        self.take().map(u64::from_le_bytes)
    }
    /// LEB128, refusing encodings longer than a u64 needs or with bits past 64.
    fn varint(&mut self) -> Result<u64, ContainerError> {
        let mut v = 0u64;
        for i in 0..10 {
            let [byte] = self.take::<1>()?;
            let bits = u64::from(byte & 0x7F);
            if i == 9 && bits > 1 {
                return Err(bad("varint overflows 64 bits"));
            }
            v |= bits << (7 * i);
            if byte & 0x80 == 0 {
                // Canonical only (no trailing zero groups): one table, one encoding.
                if i > 0 && byte == 0 {
                    return Err(bad("varint is not minimally encoded"));
                }
                return Ok(v);
            }
        }
        Err(bad("varint longer than 10 bytes"))
    }
}

fn bad(reason: &'static str) -> ContainerError {
    ContainerError::BadTable { reason }
}

impl ContainerIndex {
    /// Builds an index from segments, deriving the per-frame lookup; checks that the
    /// segments are consistent (the same checks as [`ContainerIndex::from_bytes`]).
    fn new(
        original_len: u64,
        sha256: [u8; 32],
        frame_count: u32,
        segments: Vec<Segment>,
    ) -> Result<Self, ContainerError> {
        let mut raw = 0u64;
        let mut stored = MAGIC.len() as u64;
        let mut frames: Vec<Range<usize>> = Vec::new();
        for (i, s) in segments.iter().enumerate() {
            if s.raw_offset != raw || s.stored_offset != stored {
                return Err(bad("segments are not contiguous"));
            }
            raw = raw
                .checked_add(s.raw_len)
                .ok_or(bad("segment lengths overflow"))?;
            stored = stored
                .checked_add(s.stored_len)
                .ok_or(bad("segment lengths overflow"))?;
            match s.codec {
                Codec::Stored if s.raw_len != s.stored_len => {
                    return Err(bad("stored segment with different raw and stored lengths"));
                }
                Codec::LeftDelta { sample_bytes, .. } | Codec::Med { sample_bytes, .. }
                    if !s.raw_len.is_multiple_of(u64::from(sample_bytes)) =>
                {
                    return Err(bad("predicted segment is not a whole number of samples"));
                }
                _ => {}
            }
            if let Role::Frame(n) = s.role {
                let current = frames.len() as u64;
                if u64::from(n) == current {
                    if let Some(r) = frames.last_mut() {
                        r.end = i + 1;
                    }
                } else if u64::from(n) == current + 1 && n <= frame_count {
                    frames.push(i..i + 1);
                } else {
                    return Err(bad("frame segments are out of order"));
                }
            }
        }
        if raw != original_len {
            return Err(bad("segment lengths do not add up to the original length"));
        }
        if frames.len() as u64 != u64::from(frame_count) {
            return Err(bad("frame count does not match the frame segments"));
        }
        Ok(ContainerIndex {
            original_len,
            sha256,
            segments,
            frames,
        })
    }

    /// The table, as stored at the end of the object (and in the index row).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.table_len());
        b.extend_from_slice(&TABLE_VERSION.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&self.original_len.to_le_bytes());
        b.extend_from_slice(&self.sha256);
        b.extend_from_slice(&self.frame_count().to_le_bytes());
        // The segment count fits: a table over 4 GiB cannot be described by the
        // u32 trailer anyway, and encode_to refuses it.
        b.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        for s in &self.segments {
            record(s, |bytes| b.extend_from_slice(bytes));
        }
        let check = Sha256::digest(&b);
        b.extend_from_slice(&check[..TABLE_CHECK_LEN]);
        b
    }

    /// Length of [`Self::to_bytes`] without building it.
    pub fn table_len(&self) -> usize {
        let mut n = TABLE_HEADER_LEN + TABLE_CHECK_LEN;
        for s in &self.segments {
            record(s, |bytes| n += bytes.len());
        }
        n
    }

    /// Parses and checks a table (from the object's tail or the index row).
    pub fn from_bytes(b: &[u8]) -> Result<Self, ContainerError> {
        if b.len() < TABLE_HEADER_LEN + TABLE_CHECK_LEN {
            return Err(ContainerError::Truncated {
                what: "container table",
            });
        }
        let (body, check) = b.split_at(b.len() - TABLE_CHECK_LEN);
        let mut c = Cursor(body);
        let version = c.u16()?;
        if version != TABLE_VERSION {
            return Err(ContainerError::UnsupportedVersion(version));
        }
        if Sha256::digest(body)[..TABLE_CHECK_LEN] != *check {
            return Err(bad("table checksum does not match"));
        }
        if c.u16()? != 0 {
            return Err(bad("unknown flags"));
        }
        let original_len = c.u64()?;
        let sha256 = c.take::<32>()?;
        let frame_count = c.u32()?;
        let count = c.u32()?;
        // Checked before allocating: every record takes at least MIN_RECORD_LEN bytes.
        if u64::from(count) * MIN_RECORD_LEN as u64 > c.0.len() as u64 {
            return Err(bad("segment count does not fit the table length"));
        }
        let mut segments = Vec::with_capacity(count as usize);
        let (mut raw_offset, mut stored_offset) = (0u64, MAGIC.len() as u64);
        for _ in 0..count {
            let [head] = c.take::<1>()?;
            let (codec, sample_bytes) = (head & 0x0F, head >> 4);
            let raw_len = c.varint()?;
            let stored_len = if codec == CODEC_STORED {
                raw_len
            } else {
                c.varint()?
            };
            let frame = u32::try_from(c.varint()?).map_err(|_| bad("frame number too large"))?;
            let width = if codec >= CODEC_LEFT_DELTA {
                u32::try_from(c.varint()?).map_err(|_| bad("row width too large"))?
            } else {
                0
            };
            segments.push(Segment {
                raw_offset,
                raw_len,
                stored_offset,
                stored_len,
                codec: Codec::from_parts(codec, sample_bytes, width)?,
                role: if frame == 0 {
                    Role::Glue
                } else {
                    Role::Frame(frame)
                },
            });
            raw_offset = raw_offset
                .checked_add(raw_len)
                .ok_or(bad("segment lengths overflow"))?;
            stored_offset = stored_offset
                .checked_add(stored_len)
                .ok_or(bad("segment lengths overflow"))?;
        }
        if !c.0.is_empty() {
            return Err(bad("bytes left over after the last segment record"));
        }
        Self::new(original_len, sha256, frame_count, segments)
    }

    /// Number of addressable frames (0 when frames cannot be told apart).
    pub fn frame_count(&self) -> u32 {
        // At most one frame per segment, and the count came from a u32.
        self.frames.len() as u32
    }

    fn frame_segments(&self, frame: u32) -> Result<&[Segment], ContainerError> {
        let r = frame
            .checked_sub(1)
            .and_then(|i| self.frames.get(i as usize))
            .ok_or(ContainerError::NoSuchFrame {
                frame,
                frame_count: self.frame_count(),
            })?;
        Ok(&self.segments[r.clone()])
    }

    /// The object range holding a 1-based frame: one contiguous ranged read.
    pub fn frame_stored_range(&self, frame: u32) -> Option<Range<u64>> {
        let segs = self.frame_segments(frame).ok()?;
        let (first, last) = (segs.first()?, segs.last()?);
        Some(first.stored_offset..last.stored_offset + last.stored_len)
    }

    /// Decodes a 1-based frame from the bytes of [`Self::frame_stored_range`]:
    /// native samples, or the concatenated fragment values (no item headers).
    pub fn decode_frame(&self, frame: u32, stored: &[u8]) -> Result<Vec<u8>, ContainerError> {
        let segs = self.frame_segments(frame)?;
        let base = segs.first().map_or(0, |s| s.stored_offset);
        let span = self
            .frame_stored_range(frame)
            .map_or(0, |r| r.end - r.start);
        if stored.len() as u64 != span {
            return Err(ContainerError::StoredLength {
                expected: span,
                actual: stored.len() as u64,
            });
        }
        let total: u64 = segs
            .iter()
            .filter(|s| s.role != Role::Glue)
            .map(|s| s.raw_len)
            .sum();
        let mut pieces = Vec::with_capacity(segs.len());
        for s in segs.iter().filter(|s| s.role != Role::Glue) {
            let at = (s.stored_offset - base) as usize;
            let bytes = stored
                .get(at..at + s.stored_len as usize)
                .ok_or(bad("frame segments are not contiguous"))?;
            pieces.push((s, bytes));
        }
        // A large frame is several chunks: decode them on all cores.
        let decoded: Vec<Result<Vec<u8>, ContainerError>> = pieces
            .par_iter()
            .map(|(s, bytes)| decode_segment(s, bytes))
            .collect();
        let mut out = Vec::with_capacity(total.min(PREALLOC_CAP) as usize);
        for d in decoded {
            out.extend_from_slice(&d?);
        }
        Ok(out)
    }

    /// Total size of the container object in bytes.
    pub fn stored_len(&self) -> u64 {
        let segs: u64 = self.segments.iter().map(|s| s.stored_len).sum();
        MAGIC.len() as u64 + segs + self.table_len() as u64 + TRAILER_LEN as u64
    }

    /// Where the table starts in the object.
    pub fn table_offset(&self) -> u64 {
        self.segments
            .last()
            .map_or(MAGIC.len() as u64, |s| s.stored_offset + s.stored_len)
    }
}

/// Encodes a whole instance held in memory; returns the object and its table.
pub fn encode(
    src: &[u8],
    layout: &FileLayout,
    sha256: [u8; 32],
    opts: &ContainerOptions,
) -> Result<(Vec<u8>, ContainerIndex), ContainerError> {
    // Compressed size is unknown, but the original is a fair upper bound.
    let mut out = Vec::with_capacity(src.len() / 2 + 1024);
    let index = encode_to(Source::Memory(src), layout, sha256, opts, &mut out)?;
    Ok((out, index))
}

/// Encodes an instance from any [`Source`] (a spooled file for large instances),
/// writing the object to `out` as it goes. Memory stays bounded by a window of
/// about two segments per rayon thread, each at most `chunk_limit` raw bytes.
pub fn encode_to<W: Write>(
    src: Source<'_>,
    layout: &FileLayout,
    sha256: [u8; 32],
    opts: &ContainerOptions,
    mut out: W,
) -> Result<ContainerIndex, ContainerError> {
    let pieces = plan(src.len(), layout, opts.chunk_limit.max(1))?;
    out.write_all(&MAGIC).map_err(ContainerError::Write)?;
    let mut stored_offset = MAGIC.len() as u64;
    let mut segments = Vec::with_capacity(pieces.len());
    let window = (rayon::current_num_threads() * 2).max(2);
    for batch in pieces.chunks(window) {
        let encoded: Vec<Result<Encoded<'_>, ContainerError>> = batch
            .par_iter()
            .map(|p| encode_piece(src, p, opts))
            .collect();
        for (p, e) in batch.iter().zip(encoded) {
            let (codec, bytes) = e?;
            out.write_all(&bytes).map_err(ContainerError::Write)?;
            segments.push(Segment {
                raw_offset: p.range.start,
                raw_len: p.range.end - p.range.start,
                stored_offset,
                stored_len: bytes.len() as u64,
                codec,
                role: p.role,
            });
            stored_offset += bytes.len() as u64;
        }
    }
    let frame_count = segments
        .iter()
        .filter_map(|s| match s.role {
            Role::Frame(n) => Some(n),
            Role::Glue => None,
        })
        .max()
        .unwrap_or(0);
    let index = ContainerIndex::new(src.len(), sha256, frame_count, segments)?;
    let table = index.to_bytes();
    let table_len = u32::try_from(table.len()).map_err(|_| ContainerError::InvalidLayout {
        reason: "more segments than a table can describe",
    })?;
    out.write_all(&table).map_err(ContainerError::Write)?;
    out.write_all(&table_len.to_le_bytes())
        .map_err(ContainerError::Write)?;
    out.write_all(&MAGIC).map_err(ContainerError::Write)?;
    out.flush().map_err(ContainerError::Write)?;
    Ok(index)
}

/// A piece's codec and its stored bytes (borrowed when stored as is).
type Encoded<'a> = (Codec, Cow<'a, [u8]>);

/// What kind of bytes a planned piece holds, which decides its codec.
#[derive(Debug, Clone, Copy)]
enum PieceKind {
    Glue,
    Fragment,
    /// Native frame bytes the predictor cannot take (colour, big endian, 32-bit).
    Samples,
    /// Native single-sample 8/16-bit little-endian rows.
    Image {
        sample_bytes: u8,
        width: u32,
    },
}

#[derive(Debug, Clone)]
struct Piece {
    range: Range<u64>,
    kind: PieceKind,
    role: Role,
}

/// Cuts the original into pieces, in order, covering every byte once.
fn plan(len: u64, layout: &FileLayout, limit: usize) -> Result<Vec<Piece>, ContainerError> {
    let limit = limit as u64;
    let mut pieces = Vec::new();
    let glue = |pieces: &mut Vec<Piece>, from: u64, to: u64| {
        let mut at = from;
        while at < to {
            let end = to.min(at + limit);
            pieces.push(Piece {
                range: at..end,
                kind: PieceKind::Glue,
                role: Role::Glue,
            });
            at = end;
        }
    };
    let misfit = |reason| ContainerError::InvalidLayout { reason };
    let mut cursor = 0u64;
    match &layout.pixel {
        PixelLayout::Native {
            value_offset,
            frame_len,
            frames,
            rows,
            columns,
            samples_per_pixel,
            bits_allocated,
            little_endian,
            ..
        } => {
            let end = frame_len
                .checked_mul(u64::from(*frames))
                .and_then(|n| n.checked_add(*value_offset))
                .filter(|end| *end <= len)
                .ok_or(misfit("native frames extend beyond the source"))?;
            let sample_bytes = u64::from(*bits_allocated / 8);
            let row_len = u64::from(*columns) * u64::from(*samples_per_pixel) * sample_bytes;
            if row_len == 0 || row_len * u64::from(*rows) != *frame_len {
                return Err(misfit("frame length is not rows × row length"));
            }
            let predictable = *samples_per_pixel == 1
                && (sample_bytes == 2 && *little_endian || sample_bytes == 1);
            let kind = if predictable {
                PieceKind::Image {
                    sample_bytes: sample_bytes as u8,
                    width: u32::from(*columns),
                }
            } else {
                PieceKind::Samples
            };
            let rows_per_chunk = (limit / row_len).max(1);
            glue(&mut pieces, 0, *value_offset);
            for f in 0..u64::from(*frames) {
                let start = value_offset + f * frame_len;
                let mut row = 0u64;
                while row < u64::from(*rows) {
                    let n = rows_per_chunk.min(u64::from(*rows) - row);
                    pieces.push(Piece {
                        range: start + row * row_len..start + (row + n) * row_len,
                        kind,
                        role: Role::Frame(f as u32 + 1),
                    });
                    row += n;
                }
            }
            cursor = end;
        }
        PixelLayout::Encapsulated { fragments, frames } => {
            let mut roles = vec![Role::Glue; fragments.len()];
            let mut next = 0usize;
            for (k, r) in frames.iter().enumerate() {
                if r.start < next || r.start >= r.end || r.end > fragments.len() {
                    return Err(misfit("frame fragment ranges overlap or are out of order"));
                }
                for role in &mut roles[r.clone()] {
                    *role = Role::Frame(k as u32 + 1);
                }
                next = r.end;
            }
            for (f, role) in fragments.iter().zip(roles) {
                let end = f.value_offset + u64::from(f.len);
                if f.value_offset < cursor || end > len {
                    return Err(misfit("fragments overlap or extend beyond the source"));
                }
                glue(&mut pieces, cursor, f.value_offset);
                if f.len == 0 && role != Role::Glue {
                    // An empty fragment still marks its frame, so the frame has a segment.
                    pieces.push(Piece {
                        range: end..end,
                        kind: PieceKind::Fragment,
                        role,
                    });
                }
                let mut at = f.value_offset;
                while at < end {
                    let e = end.min(at + limit);
                    pieces.push(Piece {
                        range: at..e,
                        kind: PieceKind::Fragment,
                        role,
                    });
                    at = e;
                }
                cursor = end;
            }
        }
        // Opaque native data, deflated datasets and files without pixel data are
        // glue through and through; their big values are still chunked.
        PixelLayout::None | PixelLayout::Opaque { .. } | PixelLayout::Deflated => {}
    }
    glue(&mut pieces, cursor, len);
    Ok(pieces)
}

fn zstd_compress(raw: &[u8], level: i32) -> Result<Vec<u8>, ContainerError> {
    let mut c = zstd::bulk::Compressor::new(level).map_err(ContainerError::Compress)?;
    // The content checksum makes a corrupt segment fail on its own read, not only
    // on a whole-object SHA-256 check.
    c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
        .map_err(ContainerError::Compress)?;
    c.compress(raw).map_err(ContainerError::Compress)
}

fn encode_piece<'a>(
    src: Source<'a>,
    p: &Piece,
    opts: &ContainerOptions,
) -> Result<Encoded<'a>, ContainerError> {
    let raw = src.slice(p.range.clone()).map_err(ContainerError::Read)?;
    let (codec, bytes) = match p.kind {
        PieceKind::Fragment => return Ok((Codec::Stored, raw)),
        PieceKind::Glue if raw.len() < RAW_GLUE_MAX => return Ok((Codec::Stored, raw)),
        PieceKind::Glue | PieceKind::Samples => {
            (Codec::Zstd, zstd_compress(&raw, opts.zstd_level)?)
        }
        PieceKind::Image {
            sample_bytes,
            width,
        } => {
            let filter = match opts.predictor {
                Predictor::None => None,
                Predictor::LeftDelta => Some((
                    Filter::Left,
                    Codec::LeftDelta {
                        sample_bytes,
                        width,
                    },
                )),
                Predictor::Med => Some((
                    Filter::Med,
                    Codec::Med {
                        sample_bytes,
                        width,
                    },
                )),
            };
            match filter {
                None => (Codec::Zstd, zstd_compress(&raw, opts.zstd_level)?),
                Some((filter, codec)) => {
                    let planes = if sample_bytes == 2 {
                        predict::<u16>(&raw, width as usize, filter)
                    } else {
                        predict::<u8>(&raw, width as usize, filter)
                    };
                    (codec, zstd_compress(&planes, opts.zstd_level)?)
                }
            }
        }
    };
    if bytes.len() < raw.len() {
        Ok((codec, Cow::Owned(bytes)))
    } else {
        Ok((Codec::Stored, raw))
    }
}

/// Decompresses one zstd frame that must yield exactly `raw_len` bytes. The
/// length comes from the table, so the buffer is preallocated only up to a cap.
fn zstd_decompress(
    stored: &[u8],
    raw_len: u64,
    raw_offset: u64,
) -> Result<Vec<u8>, ContainerError> {
    let fail = |source| ContainerError::Decompress { raw_offset, source };
    let out = if raw_len <= PREALLOC_CAP {
        let mut out = Vec::with_capacity(raw_len as usize);
        zstd::bulk::Decompressor::new()
            .and_then(|mut d| d.decompress_to_buffer(stored, &mut out))
            .map_err(fail)?;
        out
    } else {
        use std::io::Read;
        let mut out = Vec::with_capacity(PREALLOC_CAP as usize);
        zstd::stream::read::Decoder::with_buffer(stored)
            .map_err(fail)?
            .take(raw_len + 1)
            .read_to_end(&mut out)
            .map_err(fail)?;
        out
    };
    if out.len() as u64 != raw_len {
        return Err(ContainerError::SegmentLength {
            raw_offset,
            expected: raw_len,
            actual: out.len() as u64,
        });
    }
    Ok(out)
}

/// Decodes one segment from exactly its stored bytes (for streaming an instance
/// out segment by segment, with memory bounded by the segment size).
pub fn decode_segment(seg: &Segment, stored: &[u8]) -> Result<Vec<u8>, ContainerError> {
    if stored.len() as u64 != seg.stored_len {
        return Err(ContainerError::StoredLength {
            expected: seg.stored_len,
            actual: stored.len() as u64,
        });
    }
    let (filter, sample_bytes, width) = match seg.codec {
        Codec::Stored => {
            if seg.raw_len != seg.stored_len {
                return Err(bad("stored segment with different raw and stored lengths"));
            }
            return Ok(stored.to_vec());
        }
        Codec::Zstd => return zstd_decompress(stored, seg.raw_len, seg.raw_offset),
        Codec::LeftDelta {
            sample_bytes,
            width,
        } => (Filter::Left, sample_bytes, width),
        Codec::Med {
            sample_bytes,
            width,
        } => (Filter::Med, sample_bytes, width),
    };
    if width == 0
        || !matches!(sample_bytes, 1 | 2)
        || !seg.raw_len.is_multiple_of(u64::from(sample_bytes))
    {
        return Err(bad("predicted segment with bad sample size or width"));
    }
    let planes = zstd_decompress(stored, seg.raw_len, seg.raw_offset)?;
    Ok(if sample_bytes == 2 {
        unpredict::<u16>(&planes, width as usize, filter)
    } else {
        unpredict::<u8>(&planes, width as usize, filter)
    })
}

/// Reads the trailer from the object's last bytes (at least [`TRAILER_LEN`]);
/// returns the table length, so the caller can fetch `table_len + TRAILER_LEN`
/// bytes from the end.
pub fn read_trailer(tail: &[u8]) -> Result<usize, ContainerError> {
    let Some(at) = tail.len().checked_sub(TRAILER_LEN) else {
        return Err(ContainerError::Truncated {
            what: "container trailer",
        });
    };
    let t = &tail[at..];
    if t[4..] != MAGIC {
        return Err(ContainerError::BadMagic);
    }
    let len = u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as usize;
    if len < TABLE_HEADER_LEN + TABLE_CHECK_LEN {
        return Err(bad("table length in the trailer is impossible"));
    }
    Ok(len)
}

/// Reads the table of a whole object, checking it against the object's size.
pub fn index_from_object(obj: &[u8]) -> Result<ContainerIndex, ContainerError> {
    let table_len = read_trailer(obj)?;
    let table_start = obj
        .len()
        .checked_sub(TRAILER_LEN + table_len)
        .filter(|s| *s >= MAGIC.len())
        .ok_or(ContainerError::Truncated {
            what: "container table",
        })?;
    if obj[..MAGIC.len()] != MAGIC {
        return Err(ContainerError::BadMagic);
    }
    let index = ContainerIndex::from_bytes(&obj[table_start..obj.len() - TRAILER_LEN])?;
    if index.table_offset() != table_start as u64 {
        return Err(bad("segments do not end where the table starts"));
    }
    Ok(index)
}

/// Decodes a whole object back to the original bytes, checking length and SHA-256.
pub fn decode_all(obj: &[u8]) -> Result<Vec<u8>, ContainerError> {
    let index = index_from_object(obj)?;
    let mut out = Vec::with_capacity(index.original_len.min(PREALLOC_CAP) as usize);
    let mut hash = Sha256::new();
    for s in &index.segments {
        // In range: index_from_object checked that segments end before the table.
        let bytes = obj
            .get(s.stored_offset as usize..(s.stored_offset + s.stored_len) as usize)
            .ok_or(ContainerError::Truncated { what: "segment" })?;
        let raw = decode_segment(s, bytes)?;
        hash.update(&raw);
        out.extend_from_slice(&raw);
    }
    check_digest(&index, out.len() as u64, hash)?;
    Ok(out)
}

/// Streams a whole object from `src` to `out`, one segment in memory at a time;
/// checks length and SHA-256 at the end (the caller must discard what it wrote on
/// error).
pub fn decode_to<W: Write>(src: Source<'_>, mut out: W) -> Result<ContainerIndex, ContainerError> {
    let n = src.len();
    let tail_len = n.min((TRAILER_LEN) as u64);
    let tail = src.slice(n - tail_len..n).map_err(ContainerError::Read)?;
    let table_len = read_trailer(&tail)? as u64;
    let table_start = n
        .checked_sub(TRAILER_LEN as u64 + table_len)
        .filter(|s| *s >= MAGIC.len() as u64)
        .ok_or(ContainerError::Truncated {
            what: "container table",
        })?;
    if *src
        .slice(0..MAGIC.len() as u64)
        .map_err(ContainerError::Read)?
        != MAGIC
    {
        return Err(ContainerError::BadMagic);
    }
    let table = src
        .slice(table_start..n - TRAILER_LEN as u64)
        .map_err(ContainerError::Read)?;
    let index = ContainerIndex::from_bytes(&table)?;
    if index.table_offset() != table_start {
        return Err(bad("segments do not end where the table starts"));
    }
    let mut hash = Sha256::new();
    let mut written = 0u64;
    for s in &index.segments {
        let bytes = src
            .slice(s.stored_offset..s.stored_offset + s.stored_len)
            .map_err(ContainerError::Read)?;
        let raw = decode_segment(s, &bytes)?;
        hash.update(&raw);
        out.write_all(&raw).map_err(ContainerError::Write)?;
        written += raw.len() as u64;
    }
    check_digest(&index, written, hash)?;
    Ok(index)
}

fn check_digest(index: &ContainerIndex, len: u64, hash: Sha256) -> Result<(), ContainerError> {
    if len != index.original_len {
        return Err(ContainerError::LengthMismatch {
            expected: index.original_len,
            actual: len,
        });
    }
    let digest: [u8; 32] = hash.finalize().into();
    if digest != index.sha256 {
        return Err(ContainerError::ChecksumMismatch {
            expected: hex::encode(index.sha256),
            actual: hex::encode(digest),
        });
    }
    Ok(())
}

/// The predictor filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    Left,
    Med,
}

/// A sample type the filters work on: wrapping arithmetic in its own width makes
/// prediction exactly reversible whatever the data (signed, full 16 bits).
trait Sample: Copy + Default {
    const BYTES: usize;
    fn load(b: &[u8]) -> Self;
    fn store(self, b: &mut [u8]);
    fn wadd(self, o: Self) -> Self;
    fn wsub(self, o: Self) -> Self;
    fn to_i32(self) -> i32;
    /// Truncates to the sample width.
    fn from_i32(v: i32) -> Self;
    /// Zig-zag of the residual read as two's complement: 0, -1, 1, -2 → 0, 1, 2, 3,
    /// so small residuals of either sign have a zero high byte.
    fn zigzag(self) -> Self;
    fn unzigzag(self) -> Self;
    /// Writes samples as byte planes: all low bytes, then all high bytes.
    fn to_planes(s: &[Self], planes: &mut [u8]);
    /// Reads `s.len()` samples starting at sample `start` from byte planes of `n`
    /// samples each.
    fn from_planes_at(planes: &[u8], n: usize, start: usize, s: &mut [Self]);
}

impl Sample for u8 {
    const BYTES: usize = 1;
    fn load(b: &[u8]) -> Self {
        b[0]
    }
    fn store(self, b: &mut [u8]) {
        b[0] = self;
    }
    fn wadd(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
    fn wsub(self, o: Self) -> Self {
        self.wrapping_sub(o)
    }
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    fn from_i32(v: i32) -> Self {
        v as u8
    }
    fn zigzag(self) -> Self {
        let r = self as i8;
        ((r << 1) ^ (r >> 7)) as u8
    }
    fn unzigzag(self) -> Self {
        (self >> 1) ^ (self & 1).wrapping_neg()
    }
    fn to_planes(s: &[Self], planes: &mut [u8]) {
        planes.copy_from_slice(s);
    }
    fn from_planes_at(planes: &[u8], _n: usize, start: usize, s: &mut [Self]) {
        s.copy_from_slice(&planes[start..start + s.len()]);
    }
}

impl Sample for u16 {
    const BYTES: usize = 2;
    fn load(b: &[u8]) -> Self {
        u16::from_le_bytes([b[0], b[1]])
    }
    fn store(self, b: &mut [u8]) {
        b.copy_from_slice(&self.to_le_bytes());
    }
    fn wadd(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
    fn wsub(self, o: Self) -> Self {
        self.wrapping_sub(o)
    }
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
    fn from_i32(v: i32) -> Self {
        v as u16
    }
    fn zigzag(self) -> Self {
        let r = self as i16;
        ((r << 1) ^ (r >> 15)) as u16
    }
    fn unzigzag(self) -> Self {
        (self >> 1) ^ (self & 1).wrapping_neg()
    }
    fn to_planes(s: &[Self], planes: &mut [u8]) {
        let (lo, hi) = planes.split_at_mut(s.len());
        for ((v, l), h) in s.iter().zip(lo).zip(hi) {
            let [a, b] = v.to_le_bytes();
            *l = a;
            *h = b;
        }
    }
    fn from_planes_at(planes: &[u8], n: usize, start: usize, s: &mut [Self]) {
        let lo = &planes[start..start + s.len()];
        let hi = &planes[n + start..n + start + s.len()];
        for ((v, l), h) in s.iter_mut().zip(lo).zip(hi) {
            *v = u16::from_le_bytes([*l, *h]);
        }
    }
}

/// JPEG-LS median edge detector (a = left, b = above, c = above-left), written as
/// the equivalent clamp of the gradient a + b - c into [min(a,b), max(a,b)]: no
/// branches, and in i32 the gradient cannot wrap.
#[inline(always)]
fn med<S: Sample>(a: S, b: S, c: S) -> S {
    let (a, b, c) = (a.to_i32(), b.to_i32(), c.to_i32());
    S::from_i32((a + b - c).clamp(a.min(b), a.max(b)))
}

/// Residuals of one row. The first row predicts from the left (the first sample
/// from 0), the first column from above; each chunk starts afresh, so chunks
/// decode independently.
fn residual_row<S: Sample>(prev: Option<&[S]>, cur: &[S], out: &mut [S], filter: Filter) {
    let (Some(first), Some(o0)) = (cur.first(), out.first_mut()) else {
        return;
    };
    let up = prev.and_then(|p| p.first().copied()).unwrap_or_default();
    *o0 = first.wsub(up).zigzag();
    let pairs = out[1..].iter_mut().zip(cur.windows(2));
    match (prev, filter) {
        (Some(p), Filter::Med) => {
            for ((o, w), pw) in pairs.zip(p.windows(2)) {
                *o = w[1].wsub(med(w[0], pw[1], pw[0])).zigzag();
            }
        }
        _ => {
            for (o, w) in pairs {
                *o = w[1].wsub(w[0]).zigzag();
            }
        }
    }
}

/// Inverse of [`residual_row`]: each sample depends on its left neighbour.
fn restore_row<S: Sample>(prev: Option<&[S]>, res: &[S], cur: &mut [S], filter: Filter) {
    let (Some(r0), Some(c0)) = (res.first(), cur.first_mut()) else {
        return;
    };
    let up = prev.and_then(|p| p.first().copied()).unwrap_or_default();
    let mut a = up.wadd(r0.unzigzag());
    *c0 = a;
    let pairs = cur[1..].iter_mut().zip(&res[1..]);
    match (prev, filter) {
        (Some(p), Filter::Med) => {
            for ((c, r), pw) in pairs.zip(p.windows(2)) {
                a = med(a, pw[1], pw[0]).wadd(r.unzigzag());
                *c = a;
            }
        }
        _ => {
            for (c, r) in pairs {
                a = a.wadd(r.unzigzag());
                *c = a;
            }
        }
    }
}

/// Samples → zig-zagged residual byte planes (same length as `raw`, whole samples).
fn predict<S: Sample>(raw: &[u8], w: usize, filter: Filter) -> Vec<u8> {
    let s: Vec<S> = raw.chunks_exact(S::BYTES).map(S::load).collect();
    let mut res = vec![S::default(); s.len()];
    let mut prev: Option<&[S]> = None;
    for (cur, out) in s.chunks(w).zip(res.chunks_mut(w)) {
        residual_row(prev, cur, out, filter);
        prev = Some(cur);
    }
    let mut planes = vec![0u8; s.len() * S::BYTES];
    S::to_planes(&res, &mut planes);
    planes
}

/// Residual byte planes → samples as little-endian bytes. The caller checked that
/// `planes` is a whole number of samples and `w > 0`. One pass, row by row, with
/// two row buffers that stay in cache: this is the hot path of every retrieve.
fn unpredict<S: Sample>(planes: &[u8], w: usize, filter: Filter) -> Vec<u8> {
    let n = planes.len() / S::BYTES;
    let mut out = vec![0u8; n * S::BYTES];
    let mut res = vec![S::default(); w];
    let mut prev = vec![S::default(); w];
    let mut cur = vec![S::default(); w];
    let mut start = 0;
    while start < n {
        let len = w.min(n - start);
        S::from_planes_at(planes, n, start, &mut res[..len]);
        let above = (start > 0).then_some(&prev[..len]);
        restore_row(above, &res[..len], &mut cur[..len], filter);
        let bytes = &mut out[start * S::BYTES..(start + len) * S::BYTES];
        for (v, b) in cur[..len].iter().zip(bytes.chunks_exact_mut(S::BYTES)) {
            v.store(b);
        }
        std::mem::swap(&mut prev, &mut cur);
        start += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::layout::{self, Fragment};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::path::PathBuf;

    fn sha(b: &[u8]) -> [u8; 32] {
        Sha256::digest(b).into()
    }

    fn opts(predictor: Predictor, chunk_limit: usize) -> ContainerOptions {
        ContainerOptions {
            zstd_level: 1,
            chunk_limit,
            predictor,
        }
    }

    /// Encodes, decodes whole and frame by frame, and checks every frame against
    /// the layout's own bytes.
    fn round_trip(src: &[u8], layout: &FileLayout, o: &ContainerOptions) -> ContainerIndex {
        let (obj, index) = encode(src, layout, sha(src), o).unwrap();
        assert_eq!(index.stored_len(), obj.len() as u64);
        assert_eq!(decode_all(&obj).unwrap(), src);
        let again = index_from_object(&obj).unwrap();
        assert_eq!(again, index);
        assert_eq!(
            ContainerIndex::from_bytes(&index.to_bytes()).unwrap(),
            index
        );
        let expected = expected_frames(src, layout);
        assert_eq!(index.frame_count() as usize, expected.len());
        for (i, want) in expected.iter().enumerate() {
            let f = i as u32 + 1;
            let r = index.frame_stored_range(f).unwrap();
            let got = index
                .decode_frame(f, &obj[r.start as usize..r.end as usize])
                .unwrap();
            assert!(got == *want, "frame {f} differs");
        }
        assert!(index.frame_stored_range(0).is_none());
        assert!(index.frame_stored_range(index.frame_count() + 1).is_none());
        // The streaming paths agree with the in-memory ones.
        let mut streamed = Vec::new();
        let index2 = encode_to(Source::Memory(src), layout, sha(src), o, &mut streamed).unwrap();
        assert_eq!(index2, index);
        assert_eq!(streamed, obj);
        let mut out = Vec::new();
        decode_to(Source::Memory(&obj), &mut out).unwrap();
        assert_eq!(out, src);
        index
    }

    fn expected_frames(src: &[u8], layout: &FileLayout) -> Vec<Vec<u8>> {
        match &layout.pixel {
            PixelLayout::Native {
                value_offset,
                frame_len,
                frames,
                ..
            } => (0..u64::from(*frames))
                .map(|i| {
                    let s = (value_offset + i * frame_len) as usize;
                    src[s..s + *frame_len as usize].to_vec()
                })
                .collect(),
            PixelLayout::Encapsulated { fragments, frames } => frames
                .iter()
                .map(|r| {
                    fragments[r.clone()]
                        .iter()
                        .flat_map(|f| {
                            src[f.value_offset as usize
                                ..(f.value_offset + u64::from(f.len)) as usize]
                                .iter()
                                .copied()
                        })
                        .collect()
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn whole_corpus_round_trips() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/files");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            println!("corpus {} absent, skipping", dir.display());
            return;
        };
        let mut total = (0u64, 0u64);
        for e in entries {
            let path = e.unwrap().path();
            let src = std::fs::read(&path).unwrap();
            let layout = layout::locate(&src).unwrap_or_else(|_| FileLayout::opaque());
            for o in [
                ContainerOptions::default(),
                opts(Predictor::LeftDelta, 64 << 10),
                opts(Predictor::None, 1 << 20),
            ] {
                round_trip(&src, &layout, &o);
            }
            let (obj, _) = encode(&src, &layout, sha(&src), &ContainerOptions::default()).unwrap();
            total.0 += src.len() as u64;
            total.1 += obj.len() as u64;
            println!("{}: {} -> {}", path.display(), src.len(), obj.len());
        }
        println!("corpus total {} -> {}", total.0, total.1);
    }

    /// A synthetic Part 10-like byte string: `head` glue bytes, native frames, tail.
    fn synthetic_native(
        rows: u16,
        columns: u16,
        frames: u32,
        bits: u16,
        signed: bool,
        seed: u64,
    ) -> (Vec<u8>, FileLayout) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut src: Vec<u8> = (0..300).map(|i| (i % 7) as u8 + b'A').collect();
        let value_offset = src.len() as u64;
        for f in 0..frames {
            for y in 0..rows {
                for x in 0..columns {
                    let smooth = ((f32::from(x) * 0.01).sin() * 900.0
                        + (f32::from(y) * 0.02).cos() * 700.0
                        + f as f32 * 50.0) as i32;
                    let v = smooth + rng.random_range(-20..=20) + if signed { 0 } else { 2000 };
                    if bits == 16 {
                        src.extend_from_slice(&(v as i16).to_le_bytes());
                    } else {
                        src.push((v / 16) as u8);
                    }
                }
            }
        }
        let frame_len = u64::from(rows) * u64::from(columns) * u64::from(bits / 8);
        let value_len = frame_len * u64::from(frames);
        src.extend_from_slice(b"trailing glue after the pixel data");
        let layout = FileLayout {
            meta_end: 132,
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            pixel: PixelLayout::Native {
                value_offset,
                value_len,
                frame_len,
                frames,
                rows,
                columns,
                samples_per_pixel: 1,
                bits_allocated: bits,
                little_endian: true,
            },
        };
        (src, layout)
    }

    #[test]
    fn synthetic_native_round_trips() {
        for (rows, cols, frames, bits, signed) in [
            (256, 257, 1, 16, false), // odd width
            (1, 1000, 1, 16, false),  // one row
            (1, 1, 1, 16, true),      // one pixel
            (100, 33, 3, 16, true),   // signed, 3 frames
            (64, 65, 3, 8, false),    // 8-bit
            (129, 3, 2, 16, false),   // narrow
        ] {
            let (src, layout) = synthetic_native(rows, cols, frames, bits, signed, 1);
            for p in [Predictor::Med, Predictor::LeftDelta, Predictor::None] {
                for limit in [8 << 20, 1000, 1] {
                    round_trip(&src, &layout, &opts(p, limit));
                }
            }
        }
    }

    #[test]
    fn chunked_frames_use_the_predictor() {
        let (src, layout) = synthetic_native(300, 301, 2, 16, false, 2);
        let index = round_trip(&src, &layout, &opts(Predictor::Med, 301 * 2 * 7));
        let frame_segments = index
            .segments
            .iter()
            .filter(|s| s.role == Role::Frame(1))
            .count();
        assert_eq!(frame_segments, 300usize.div_ceil(7));
        assert!(index.segments.iter().any(|s| matches!(
            s.codec,
            Codec::Med {
                width: 301,
                sample_bytes: 2
            }
        )));
    }

    #[test]
    fn filters_reverse_any_input() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..200 {
            let w = rng.random_range(1..40);
            let n = rng.random_range(0..400);
            let raw: Vec<u8> = (0..n * 2).map(|_| rng.random()).collect();
            for f in [Filter::Left, Filter::Med] {
                let p = predict::<u16>(&raw, w, f);
                assert_eq!(unpredict::<u16>(&p, w, f), raw);
                let p = predict::<u8>(&raw, w, f);
                assert_eq!(unpredict::<u8>(&p, w, f), raw);
            }
        }
    }

    #[test]
    fn no_pixel_data_and_empty_pixel_data() {
        let src: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        round_trip(&src, &FileLayout::opaque(), &ContainerOptions::default());
        round_trip(&[], &FileLayout::opaque(), &ContainerOptions::default());
        // Encapsulated with an empty fragment and a frame made of two fragments.
        let mut src = vec![1u8; 100];
        let mut fragments = Vec::new();
        for len in [0u32, 10, 20, 5] {
            let item_offset = src.len() as u64;
            src.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            src.extend_from_slice(&len.to_le_bytes());
            fragments.push(Fragment {
                item_offset,
                value_offset: item_offset + 8,
                len,
            });
            src.extend((0..len).map(|i| i as u8));
        }
        src.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let layout = FileLayout {
            meta_end: 0,
            transfer_syntax_uid: String::new(),
            pixel: PixelLayout::Encapsulated {
                fragments,
                frames: vec![0..1, 1..3, 3..4],
            },
        };
        for limit in [8 << 20, 3] {
            let index = round_trip(&src, &layout, &opts(Predictor::Med, limit));
            assert_eq!(index.frame_count(), 3);
        }
    }

    #[test]
    fn layout_that_does_not_fit_is_refused() {
        let (src, layout) = synthetic_native(10, 10, 2, 16, false, 4);
        let short = &src[..src.len() - 100];
        assert!(matches!(
            encode(short, &layout, sha(short), &ContainerOptions::default()),
            Err(ContainerError::InvalidLayout { .. })
        ));
    }

    #[test]
    fn wrong_sha_is_reported() {
        let (src, layout) = synthetic_native(10, 10, 1, 16, false, 5);
        let (obj, _) = encode(&src, &layout, [0; 32], &ContainerOptions::default()).unwrap();
        assert!(matches!(
            decode_all(&obj),
            Err(ContainerError::ChecksumMismatch { .. })
        ));
    }

    /// Random corruptions and truncations of encoded objects give errors, never
    /// panics; when decoding does succeed it must not return wrong bytes silently.
    #[test]
    fn corruption_is_an_error_not_a_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let mut objects = Vec::new();
        let (src, layout) = synthetic_native(40, 37, 3, 16, false, 7);
        objects.push((
            src.clone(),
            encode(&src, &layout, sha(&src), &ContainerOptions::default())
                .unwrap()
                .0,
        ));
        let (src, layout) = synthetic_native(20, 21, 2, 8, false, 8);
        objects.push((
            src.clone(),
            encode(&src, &layout, sha(&src), &opts(Predictor::LeftDelta, 100))
                .unwrap()
                .0,
        ));
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/files");
        for name in ["pydicom__CT_small.dcm", "pydicom-data__emri_small_RLE.dcm"] {
            if let Ok(src) = std::fs::read(dir.join(name)) {
                let l = layout::locate(&src).unwrap();
                let obj = encode(&src, &l, sha(&src), &ContainerOptions::default())
                    .unwrap()
                    .0;
                objects.push((src, obj));
            }
        }
        for (src, obj) in &objects {
            let index = index_from_object(obj).unwrap();
            for i in 0..500 {
                let mut b = obj.clone();
                for _ in 0..rng.random_range(1..4) {
                    // Half the time aim at the table, where structure lives.
                    let at = if i % 2 == 0 {
                        rng.random_range(index.table_offset() as usize..b.len())
                    } else {
                        rng.random_range(0..b.len())
                    };
                    b[at] ^= rng.random_range(1..=255u8);
                }
                if i % 5 == 0 {
                    b.truncate(rng.random_range(0..b.len()));
                }
                if let Ok(out) = decode_all(&b) {
                    assert_eq!(&out, src, "corruption decoded to wrong bytes");
                }
                if let Ok(ix) = index_from_object(&b) {
                    for f in 1..=ix.frame_count() {
                        if let Some(r) = ix.frame_stored_range(f)
                            && let Some(stored) = b.get(r.start as usize..r.end as usize)
                        {
                            let _ = ix.decode_frame(f, stored);
                        }
                    }
                }
                let _ = ContainerIndex::from_bytes(&b);
                let _ = read_trailer(&b);
                let mut sink = Vec::new();
                let _ = decode_to(Source::Memory(&b), &mut sink);
            }
            // Frame reads with the original table but corrupt stored bytes.
            for f in 1..=index.frame_count() {
                let r = index.frame_stored_range(f).unwrap();
                let mut stored = obj[r.start as usize..r.end as usize].to_vec();
                if stored.is_empty() {
                    continue;
                }
                let at = rng.random_range(0..stored.len());
                stored[at] ^= 0x55;
                let _ = index.decode_frame(f, &stored);
                let _ = index.decode_frame(f, &stored[..stored.len() / 2]);
            }
        }
    }
}
