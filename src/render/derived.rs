//! Derived objects made once per stored instance: a downsampled preview of each
//! frame and a thumbnail. They sit in the object store beside the instances,
//! under `derived/{sha256}/`, keyed by the content they were made from, so a
//! replaced instance never shows a stale picture and two nodes deriving the same
//! instance write the same bytes.
//!
//! A preview object is self-contained, so a rendered request answered from it is
//! one read: `AINAPV` + version byte + reserved byte, a little-endian `u32`
//! length, a JSON header (dimensions, sample kind, the [`ImageMeta`] the
//! pipeline needs), then the samples compressed with zstd (`u16` little-endian
//! for grayscale, `RGB` bytes for colour).

use serde::{Deserialize, Serialize};

use super::frame::{Frame, Samples};
use super::meta::ImageMeta;

const MAGIC: &[u8; 6] = b"AINAPV";
const VERSION: u8 = 1;
const PREAMBLE: usize = MAGIC.len() + 2 + 4;

/// The prefix every derived object of an instance version is under.
pub fn derived_prefix(sha256: &str) -> String {
    format!("derived/{sha256}")
}

/// Key of the preview of a 1-based frame.
pub fn preview_key(sha256: &str, frame: u32) -> String {
    format!("{}/preview-{frame}.bin", derived_prefix(sha256))
}

/// Key of the thumbnail. Written last: its presence means the instance's
/// derived objects are complete.
pub fn thumbnail_key(sha256: &str) -> String {
    format!("{}/thumbnail.jpg", derived_prefix(sha256))
}

#[derive(Serialize, Deserialize)]
struct Header {
    width: u32,
    height: u32,
    /// `gray` or `rgb8`.
    kind: String,
    signed: bool,
    meta: ImageMeta,
}

/// Serialises a preview frame with the metadata it renders with.
pub fn encode_preview(frame: &Frame, meta: &ImageMeta) -> Result<Vec<u8>, String> {
    let (kind, signed, raw) = match &frame.samples {
        Samples::Gray { data, signed } => (
            "gray",
            *signed,
            data.iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>(),
        ),
        Samples::Rgb8(data) => ("rgb8", false, data.clone()),
    };
    let header = serde_json::to_vec(&Header {
        width: frame.width,
        height: frame.height,
        kind: kind.to_owned(),
        signed,
        meta: meta.clone(),
    })
    .map_err(|e| e.to_string())?;
    let packed = zstd::bulk::compress(&raw, 3).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(PREAMBLE + header.len() + packed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, 0]);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&packed);
    Ok(out)
}

/// Reads a preview object back; the error says what is wrong with it.
pub fn decode_preview(bytes: &[u8]) -> Result<(Frame, ImageMeta), String> {
    if bytes.len() < PREAMBLE || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a preview object".to_owned());
    }
    if bytes[MAGIC.len()] != VERSION {
        return Err(format!(
            "preview version {} is not supported",
            bytes[MAGIC.len()]
        ));
    }
    let len_at = MAGIC.len() + 2;
    let len = u32::from_le_bytes([
        bytes[len_at],
        bytes[len_at + 1],
        bytes[len_at + 2],
        bytes[len_at + 3],
    ]) as usize;
    let header_bytes = bytes
        .get(PREAMBLE..PREAMBLE + len)
        .ok_or("preview header truncated")?;
    let header: Header = serde_json::from_slice(header_bytes).map_err(|e| e.to_string())?;
    let pixels = header.width as usize * header.height as usize;
    let expected = match header.kind.as_str() {
        "gray" => pixels * 2,
        "rgb8" => pixels * 3,
        other => return Err(format!("unknown preview sample kind {other:?}")),
    };
    let raw =
        zstd::bulk::decompress(&bytes[PREAMBLE + len..], expected).map_err(|e| e.to_string())?;
    if raw.len() != expected {
        return Err(format!(
            "preview holds {} sample bytes, expected {expected}",
            raw.len()
        ));
    }
    let samples = if header.kind == "gray" {
        Samples::Gray {
            data: raw
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
            signed: header.signed,
        }
    } else {
        Samples::Rgb8(raw)
    };
    Ok((
        Frame {
            width: header.width,
            height: header.height,
            samples,
        },
        header.meta,
    ))
}
