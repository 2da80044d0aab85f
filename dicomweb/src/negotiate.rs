//! Content negotiation for DICOMweb responses (PS3.18 §8.7): Accept header and
//! `accept` query parameter → what to send.
//!
//! Owns: Accept parsing (media ranges, q-values, the `type` and `transfer-syntax`
//! parameters of `multipart/related`), the media type of each transfer syntax for
//! frames (PS3.18 Table 8.7.3-5), and the choice of JSON or XML. Leaves out
//! transcoding itself and HTTP plumbing: callers get a decision and act on it.
//!
//! Q-values order the ranges (ties keep header order); ranges with `q=0` are skipped
//! rather than treated as exclusions, which is enough for every client seen so far.

use dicom_dictionary_std::uids;

use crate::media::{MediaType, parse_media_type, split_list};

/// The transfer syntax a client asked for when retrieving instances (PS3.18 §8.7.3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferSyntaxRequest {
    /// `transfer-syntax=*`: the instance as stored, byte for byte.
    Original,
    /// No `transfer-syntax` parameter: the default of PS3.18 Table 8.7.3-2, Explicit VR
    /// Little Endian ([`DEFAULT_TRANSFER_SYNTAX`]), except that §8.7.3 lets the server
    /// keep pixel data it holds only in lossy (or too large to decompress) form as it
    /// is. Distinct from an explicit `Uid`, for which that exception does not apply.
    Default,
    /// An explicit transfer syntax UID.
    Uid(String),
}

/// Explicit VR Little Endian, the default transfer syntax of DICOMweb (PS3.18
/// Table 8.7.3-2).
pub const DEFAULT_TRANSFER_SYNTAX: &str = uids::EXPLICIT_VR_LITTLE_ENDIAN;

/// The Accept header (or `accept` parameter) cannot be satisfied: HTTP 406, or 400
/// when it is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotAcceptable {
    /// A media range does not parse.
    #[error("malformed Accept media range `{range}`: {reason}")]
    Malformed { range: String, reason: String },
    /// None of the acceptable media types is offered for this resource.
    #[error(
        "none of the acceptable media types `{accept}` is supported here; supported: {supported}"
    )]
    Unsupported {
        accept: String,
        supported: &'static str,
    },
}

/// One media range of an Accept header with its quality.
#[derive(Debug, Clone)]
struct MediaRange {
    media: MediaType,
    q: f32,
}

impl MediaRange {
    /// The `type` parameter of a multipart range, lowercased.
    fn part_type(&self) -> Option<String> {
        self.media.param("type").map(str::to_ascii_lowercase)
    }

    fn transfer_syntax(&self) -> Option<&str> {
        self.media.param("transfer-syntax")
    }

    fn is_multipart(&self) -> bool {
        matches!(
            self.media.essence.as_str(),
            "multipart/related" | "multipart/*"
        )
    }

    fn is_any(&self) -> bool {
        self.media.essence == "*/*"
    }
}

/// Parses an Accept value into media ranges ordered by descending q-value; an absent
/// or empty header is `*/*`.
fn parse_accept(accept: Option<&str>) -> Result<Vec<MediaRange>, NotAcceptable> {
    let accept = accept
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .unwrap_or("*/*");
    let mut ranges = Vec::new();
    for range in split_list(accept) {
        let mut media = parse_media_type(range).map_err(|reason| NotAcceptable::Malformed {
            range: truncate(range),
            reason,
        })?;
        let mut q = 1.0;
        if let Some(pos) = media.params.iter().position(|(n, _)| n == "q") {
            let (_, value) = media.params.remove(pos);
            q = value
                .parse::<f32>()
                .ok()
                .filter(|q| (0.0..=1.0).contains(q))
                .ok_or_else(|| NotAcceptable::Malformed {
                    range: truncate(range),
                    reason: format!("q-value `{value}` is not a number between 0 and 1"),
                })?;
        }
        if q > 0.0 {
            ranges.push(MediaRange { media, q });
        }
    }
    // Stable: equal q keeps header order.
    ranges.sort_by(|a, b| b.q.total_cmp(&a.q));
    Ok(ranges)
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

fn unsupported(accept: Option<&str>, supported: &'static str) -> NotAcceptable {
    NotAcceptable::Unsupported {
        accept: truncate(accept.unwrap_or("")),
        supported,
    }
}

fn requested_syntax(range: &MediaRange) -> TransferSyntaxRequest {
    match range.transfer_syntax() {
        None => TransferSyntaxRequest::Default,
        Some("*") => TransferSyntaxRequest::Original,
        Some(uid) => TransferSyntaxRequest::Uid(uid.to_owned()),
    }
}

/// The value of the `accept` query parameter (PS3.18 §8.3.3.1), percent-decoded;
/// repeated parameters are joined with `, `. When present it replaces the Accept
/// header: `accept_from_query(q).or(header)`.
pub fn accept_from_query(query_string: &str) -> Option<String> {
    let values: Vec<String> = query_string
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            k.eq_ignore_ascii_case("accept").then(|| {
                percent_encoding::percent_decode_str(&v.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
        .filter(|v| !v.trim().is_empty())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// Negotiates a Studies/Series/Instance Retrieve (PS3.18 §10.4, Table 8.7.3-2): the
/// response is `multipart/related; type="application/dicom"`.
///
/// Acceptable: `multipart/related` with `type` `application/dicom` or without `type`,
/// `multipart/*`, and `*/*`; the `transfer-syntax` parameter chooses the syntax.
pub fn negotiate_instances(accept: Option<&str>) -> Result<TransferSyntaxRequest, NotAcceptable> {
    for range in parse_accept(accept)? {
        if range.is_any() {
            return Ok(TransferSyntaxRequest::Default);
        }
        if range.is_multipart()
            && matches!(
                range.part_type().as_deref(),
                None | Some("application/dicom")
            )
        {
            return Ok(requested_syntax(&range));
        }
    }
    Err(unsupported(
        accept,
        "multipart/related; type=\"application/dicom\"[; transfer-syntax=…]",
    ))
}

/// Negotiates a single-part DICOM file response (`application/dicom`, as in WADO-URI,
/// PS3.18 §9): acceptable are `application/dicom[; transfer-syntax=…]`,
/// `application/*` and `*/*`.
pub fn negotiate_dicom_file(accept: Option<&str>) -> Result<TransferSyntaxRequest, NotAcceptable> {
    for range in parse_accept(accept)? {
        match range.media.essence.as_str() {
            "*/*" | "application/*" => return Ok(TransferSyntaxRequest::Default),
            "application/dicom" => return Ok(requested_syntax(&range)),
            _ => {}
        }
    }
    Err(unsupported(
        accept,
        "application/dicom[; transfer-syntax=…]",
    ))
}

/// The media type of a frame (compressed bulk data) in `transfer_syntax_uid`, per
/// PS3.18 Table 8.7.3-5; native (uncompressed) syntaxes and unknown ones give
/// `application/octet-stream`.
pub fn frame_media_type(transfer_syntax_uid: &str) -> &'static str {
    match transfer_syntax_uid.trim_end_matches('\0') {
        uids::JPEG_BASELINE8_BIT
        | uids::JPEG_EXTENDED12_BIT
        | uids::JPEG_LOSSLESS
        | uids::JPEG_LOSSLESS_SV1 => "image/jpeg",
        uids::JPEGLS_LOSSLESS | uids::JPEGLS_NEAR_LOSSLESS => "image/jls",
        uids::JPEG2000_LOSSLESS | uids::JPEG2000 => "image/jp2",
        uids::JPEG2000MC_LOSSLESS | uids::JPEG2000MC => "image/jpx",
        uids::HTJ2K_LOSSLESS | uids::HTJ2K_LOSSLESS_RPCL | uids::HTJ2K => "image/jphc",
        uids::JPEGXL_LOSSLESS | uids::JPEGXLJPEG_RECOMPRESSION | uids::JPEGXL => "image/jxl",
        uids::RLE_LOSSLESS => "image/dicom-rle",
        uids::MPEG2MPML | uids::MPEG2MPMLF | uids::MPEG2MPHL | uids::MPEG2MPHLF => "video/mpeg",
        uids::MPEG4HP41
        | uids::MPEG4HP41F
        | uids::MPEG4HP41BD
        | uids::MPEG4HP41BDF
        | uids::MPEG4HP422D
        | uids::MPEG4HP422DF
        | uids::MPEG4HP423D
        | uids::MPEG4HP423DF
        | uids::MPEG4HP42STEREO
        | uids::MPEG4HP42STEREOF
        | uids::HEVCMP51
        | uids::HEVCM10P51 => "video/mp4",
        _ => "application/octet-stream",
    }
}

/// Whether `transfer_syntax_uid` stores pixel data natively (not encapsulated), so
/// that a frame is a slice of the pixel data.
fn is_native(transfer_syntax_uid: &str) -> bool {
    matches!(
        transfer_syntax_uid.trim_end_matches('\0'),
        uids::IMPLICIT_VR_LITTLE_ENDIAN
            | uids::EXPLICIT_VR_LITTLE_ENDIAN
            | uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
            // Explicit VR Big Endian (retired, so its constant is deprecated).
            | "1.2.840.10008.1.2.2"
    )
}

/// One acceptable frame representation from the Accept header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FrameAccept {
    /// The part media type pattern (`image/jpeg`, `image/*`, `*/*`,
    /// `application/octet-stream`).
    part_type: String,
    /// `None`: no `transfer-syntax` parameter; `Some("*")`: any.
    transfer_syntax: Option<String>,
}

/// What the client accepts for a Frames Retrieve (PS3.18 §10.4.1.1.3), to be
/// resolved against the stored transfer syntax with [`FramesChoice::select`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramesChoice {
    /// In preference order.
    accepted: Vec<FrameAccept>,
}

/// How to send the frames of one instance, decided by [`FramesChoice::select`].
/// The response is `multipart/related; type="<media_type>"` with one part per frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameEncoding {
    /// Native pixels, `application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1`:
    /// a slice of native pixel data as it is, or encapsulated pixel data decoded.
    Uncompressed,
    /// The stored fragment bytes unchanged, labelled with `media_type` and
    /// `transfer-syntax=<transfer_syntax_uid>`.
    AsStored {
        media_type: &'static str,
        transfer_syntax_uid: String,
    },
}

fn media_pattern_matches(pattern: &str, media_type: &str) -> bool {
    match pattern.split_once('/') {
        Some(("*", "*")) => true,
        Some((ty, "*")) => media_type.split_once('/').is_some_and(|(t, _)| t == ty),
        _ => pattern == media_type,
    }
}

impl FramesChoice {
    /// Decides the encoding of frames stored in `stored_transfer_syntax`; `None` means
    /// nothing acceptable is available without transcoding to another compressed
    /// syntax (HTTP 406).
    ///
    /// Rules, for each acceptable range in preference order:
    /// - `application/octet-stream` with no `transfer-syntax` or Explicit VR Little
    ///   Endian: [`FrameEncoding::Uncompressed`] (decode if stored compressed).
    /// - `application/octet-stream; transfer-syntax=*` (OHIF): native stays
    ///   uncompressed, compressed goes as stored, labelled `application/octet-stream`.
    /// - `image/…` (or `image/*`) matching the stored syntax's media type, with `*`, the
    ///   stored UID, or no `transfer-syntax` (leniently: any syntax of that media type):
    ///   as stored.
    /// - `*/*` or a multipart range without `type`: as stored (no transcoding).
    pub fn select(&self, stored_transfer_syntax: &str) -> Option<FrameEncoding> {
        let stored = stored_transfer_syntax.trim_end_matches('\0');
        let native = is_native(stored);
        let stored_media = frame_media_type(stored);
        let as_stored = |media_type: &'static str| {
            if native {
                FrameEncoding::Uncompressed
            } else {
                FrameEncoding::AsStored {
                    media_type,
                    transfer_syntax_uid: stored.to_owned(),
                }
            }
        };
        for a in &self.accepted {
            let ts = a.transfer_syntax.as_deref();
            if a.part_type == "*/*" {
                return Some(as_stored(stored_media));
            }
            if a.part_type == "application/octet-stream" {
                match ts {
                    None | Some(DEFAULT_TRANSFER_SYNTAX) => {
                        return Some(FrameEncoding::Uncompressed);
                    }
                    Some("*") => return Some(as_stored("application/octet-stream")),
                    Some(uid) if uid == stored => {
                        return Some(as_stored("application/octet-stream"));
                    }
                    Some(_) => continue,
                }
            }
            if !native
                && media_pattern_matches(&a.part_type, stored_media)
                && (ts.is_none() || ts == Some("*") || ts == Some(stored))
            {
                return Some(as_stored(stored_media));
            }
        }
        None
    }
}

/// Negotiates a Frames Retrieve (PS3.18 §10.4.1.1.3, Tables 8.7.3-4 and 8.7.3-5).
///
/// Frames are always sent as `multipart/related`; a single-part Accept such as a bare
/// `image/jpeg` is not offered. `multipart/related` without `type` and `*/*` accept
/// whatever is stored. The decision against the stored syntax is
/// [`FramesChoice::select`].
pub fn negotiate_frames(accept: Option<&str>) -> Result<FramesChoice, NotAcceptable> {
    let mut accepted = Vec::new();
    for range in parse_accept(accept)? {
        if range.is_any() {
            accepted.push(FrameAccept {
                part_type: "*/*".to_owned(),
                transfer_syntax: None,
            });
        } else if range.is_multipart() {
            let part_type = range.part_type().unwrap_or_else(|| "*/*".to_owned());
            if part_type == "*/*"
                || part_type == "application/octet-stream"
                || part_type.starts_with("image/")
                || part_type.starts_with("video/")
            {
                accepted.push(FrameAccept {
                    part_type,
                    transfer_syntax: range.transfer_syntax().map(str::to_owned),
                });
            }
        }
    }
    if accepted.is_empty() {
        return Err(unsupported(
            accept,
            "multipart/related; type=\"application/octet-stream\" or an image media type of Table 8.7.3-5",
        ));
    }
    Ok(FramesChoice { accepted })
}

/// Negotiates a JSON response (Metadata Retrieve, PS3.18 §10.4.1.1.2, and Search,
/// §10.6): returns the media type to put in Content-Type, `application/dicom+json`
/// or, when that is what the client asked for, `application/json`.
///
/// The XML metadata representation (`multipart/related; type="application/dicom+xml"`)
/// is not offered: it is optional for the origin server, and no client in use needs it.
pub fn negotiate_metadata(accept: Option<&str>) -> Result<&'static str, NotAcceptable> {
    for range in parse_accept(accept)? {
        match range.media.essence.as_str() {
            "*/*" | "application/*" | "application/dicom+json" => {
                return Ok("application/dicom+json");
            }
            "application/json" => return Ok("application/json"),
            _ => {}
        }
    }
    Err(unsupported(
        accept,
        "application/dicom+json, application/json",
    ))
}

/// A rendered media type this archive produces (PS3.18 §8.7.4, Table 8.7.4-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderedMedia {
    Jpeg,
    Png,
    Webp,
}

impl RenderedMedia {
    pub fn media_type(self) -> &'static str {
        match self {
            RenderedMedia::Jpeg => "image/jpeg",
            RenderedMedia::Png => "image/png",
            RenderedMedia::Webp => "image/webp",
        }
    }
}

/// The media type of a rendered or thumbnail resource: the most preferred of
/// `image/jpeg` (the default, also for `*/*` and `image/*`), `image/png` and
/// `image/webp`. A `multipart/related; type=…` range names its part type (rendered
/// study and series resources are multipart).
pub fn negotiate_rendered(accept: Option<&str>) -> Result<RenderedMedia, NotAcceptable> {
    for range in parse_accept(accept)? {
        let essence = match range.media.essence.as_str() {
            "multipart/related" => range.part_type().unwrap_or_else(|| "image/jpeg".to_owned()),
            e => e.to_owned(),
        };
        match essence.as_str() {
            "*/*" | "image/*" | "image/jpeg" => return Ok(RenderedMedia::Jpeg),
            "image/png" => return Ok(RenderedMedia::Png),
            "image/webp" => return Ok(RenderedMedia::Webp),
            _ => {}
        }
    }
    Err(unsupported(accept, "image/jpeg, image/png, image/webp"))
}

/// Whether a Store response (PS3.18 §10.5.3) should be XML: the most preferred of the
/// supported types is `application/dicom+xml` (also as a `multipart/related` `type`,
/// as older clients send) or `application/xml`. JSON is the default, also when the
/// header does not parse.
pub fn wants_xml(accept: Option<&str>) -> bool {
    let Ok(ranges) = parse_accept(accept) else {
        return false;
    };
    for range in ranges {
        let essence = if range.is_multipart() {
            range.part_type().unwrap_or_default()
        } else {
            range.media.essence.clone()
        };
        match essence.as_str() {
            "application/dicom+xml" | "application/xml" | "text/xml" => return true,
            "application/dicom+json" | "application/json" | "*/*" | "application/*" => {
                return false;
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const JPEG: &str = "1.2.840.10008.1.2.4.50";
    const J2K: &str = "1.2.840.10008.1.2.4.90";
    const ELE: &str = "1.2.840.10008.1.2.1";

    fn uid(s: &str) -> TransferSyntaxRequest {
        TransferSyntaxRequest::Uid(s.to_owned())
    }

    #[rstest]
    #[case(None, TransferSyntaxRequest::Default)]
    #[case(Some(""), TransferSyntaxRequest::Default)]
    #[case(Some("*/*"), TransferSyntaxRequest::Default)]
    #[case(Some("multipart/related"), TransferSyntaxRequest::Default)]
    #[case(
        Some("multipart/related; type=\"application/dicom\""),
        TransferSyntaxRequest::Default
    )]
    // dicomweb-client
    #[case(
        Some("multipart/related; type=\"application/dicom\"; transfer-syntax=*"),
        TransferSyntaxRequest::Original
    )]
    #[case(
        Some("multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90"),
        uid(J2K)
    )]
    #[case(
        Some(
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1, multipart/related; type=\"application/dicom\"; transfer-syntax=*; q=0.5"
        ),
        uid(ELE)
    )]
    #[case(
        Some(
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1; q=0.4, multipart/related; type=\"application/dicom\"; transfer-syntax=*; q=0.9"
        ),
        TransferSyntaxRequest::Original
    )]
    #[case(Some("application/json, */*;q=0.1"), TransferSyntaxRequest::Default)]
    fn instances(#[case] accept: Option<&str>, #[case] expected: TransferSyntaxRequest) {
        assert_eq!(negotiate_instances(accept).unwrap(), expected);
    }

    #[rstest]
    #[case("application/dicom+json")]
    #[case("multipart/related; type=\"application/octet-stream\"")]
    #[case("application/dicom")]
    fn instances_not_acceptable(#[case] accept: &str) {
        assert!(matches!(
            negotiate_instances(Some(accept)),
            Err(NotAcceptable::Unsupported { .. })
        ));
    }

    #[rstest]
    #[case("multipart/related; type=")]
    #[case("text/html; q=2")]
    #[case("nonsense")]
    fn malformed_accept(#[case] accept: &str) {
        assert!(matches!(
            negotiate_instances(Some(accept)),
            Err(NotAcceptable::Malformed { .. })
        ));
    }

    #[rstest]
    #[case(None, TransferSyntaxRequest::Default)]
    #[case(Some("application/dicom"), TransferSyntaxRequest::Default)]
    #[case(
        Some("application/dicom; transfer-syntax=*"),
        TransferSyntaxRequest::Original
    )]
    #[case(
        Some("application/dicom;transfer-syntax=1.2.840.10008.1.2.4.50"),
        uid(JPEG)
    )]
    fn dicom_file(#[case] accept: Option<&str>, #[case] expected: TransferSyntaxRequest) {
        assert_eq!(negotiate_dicom_file(accept).unwrap(), expected);
    }

    #[rstest]
    #[case(ELE, "application/octet-stream")]
    #[case("1.2.840.10008.1.2", "application/octet-stream")]
    #[case("1.2.840.10008.1.2.4.50", "image/jpeg")]
    #[case("1.2.840.10008.1.2.4.51", "image/jpeg")]
    #[case("1.2.840.10008.1.2.4.57", "image/jpeg")]
    #[case("1.2.840.10008.1.2.4.70", "image/jpeg")]
    #[case("1.2.840.10008.1.2.4.80", "image/jls")]
    #[case("1.2.840.10008.1.2.4.81", "image/jls")]
    #[case("1.2.840.10008.1.2.4.90", "image/jp2")]
    #[case("1.2.840.10008.1.2.4.91", "image/jp2")]
    #[case("1.2.840.10008.1.2.4.92", "image/jpx")]
    #[case("1.2.840.10008.1.2.4.201", "image/jphc")]
    #[case("1.2.840.10008.1.2.4.203", "image/jphc")]
    #[case("1.2.840.10008.1.2.5", "image/dicom-rle")]
    #[case("1.2.840.10008.1.2.4.102", "video/mp4")]
    #[case("1.2.840.10008.1.2.4.50\0", "image/jpeg")]
    fn media_types(#[case] ts: &str, #[case] expected: &str) {
        assert_eq!(frame_media_type(ts), expected);
    }

    fn as_stored(media_type: &'static str, ts: &str) -> Option<FrameEncoding> {
        Some(FrameEncoding::AsStored {
            media_type,
            transfer_syntax_uid: ts.to_owned(),
        })
    }

    const OHIF_FRAMES: &str = "multipart/related; type=application/octet-stream; transfer-syntax=*";

    #[rstest]
    // OHIF
    #[case(Some(OHIF_FRAMES), ELE, Some(FrameEncoding::Uncompressed))]
    #[case(Some(OHIF_FRAMES), JPEG, as_stored("application/octet-stream", JPEG))]
    #[case(None, JPEG, as_stored("image/jpeg", JPEG))]
    #[case(None, ELE, Some(FrameEncoding::Uncompressed))]
    #[case(Some("*/*"), J2K, as_stored("image/jp2", J2K))]
    #[case(Some("multipart/related"), J2K, as_stored("image/jp2", J2K))]
    #[case(
        Some("multipart/related; type=\"application/octet-stream\""),
        J2K,
        Some(FrameEncoding::Uncompressed)
    )]
    #[case(
        Some(
            "multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.1"
        ),
        JPEG,
        Some(FrameEncoding::Uncompressed)
    )]
    #[case(
        Some("multipart/related; type=\"image/jpeg\""),
        JPEG,
        as_stored("image/jpeg", JPEG)
    )]
    #[case(
        Some("multipart/related; type=\"image/jpeg\"; transfer-syntax=1.2.840.10008.1.2.4.50"),
        JPEG,
        as_stored("image/jpeg", JPEG)
    )]
    #[case(
        Some("multipart/related; type=\"image/jpeg\"; transfer-syntax=1.2.840.10008.1.2.4.70"),
        JPEG,
        None
    )]
    #[case(Some("multipart/related; type=\"image/jpeg\""), J2K, None)]
    #[case(Some("multipart/related; type=\"image/jpeg\""), ELE, None)]
    #[case(
        Some("multipart/related; type=\"image/*\""),
        J2K,
        as_stored("image/jp2", J2K)
    )]
    #[case(
        Some(
            "multipart/related; type=\"image/jls\", multipart/related; type=\"application/octet-stream\"; q=0.5"
        ),
        J2K,
        Some(FrameEncoding::Uncompressed)
    )]
    #[case(
        Some(
            "multipart/related; type=\"image/jp2\"; transfer-syntax=1.2.840.10008.1.2.4.90, multipart/related; type=\"application/octet-stream\"; q=0.5"
        ),
        J2K,
        as_stored("image/jp2", J2K)
    )]
    fn frames(
        #[case] accept: Option<&str>,
        #[case] stored: &str,
        #[case] expected: Option<FrameEncoding>,
    ) {
        assert_eq!(negotiate_frames(accept).unwrap().select(stored), expected);
    }

    #[rstest]
    #[case("application/dicom+json")]
    #[case("image/jpeg")]
    fn frames_not_acceptable(#[case] accept: &str) {
        assert!(negotiate_frames(Some(accept)).is_err());
    }

    #[rstest]
    #[case(None, Some("application/dicom+json"))]
    // OHIF
    #[case(Some("application/dicom+json"), Some("application/dicom+json"))]
    #[case(Some("application/json"), Some("application/json"))]
    #[case(Some("application/json, text/plain, */*"), Some("application/json"))]
    #[case(Some("multipart/related; type=\"application/dicom+xml\""), None)]
    #[case(Some("text/html"), None)]
    fn metadata(#[case] accept: Option<&str>, #[case] expected: Option<&str>) {
        assert_eq!(negotiate_metadata(accept).ok(), expected);
    }

    #[rstest]
    #[case(None, false)]
    #[case(Some("application/dicom+json"), false)]
    #[case(Some("application/dicom+xml"), true)]
    #[case(Some("multipart/related; type=\"application/dicom+xml\""), true)]
    #[case(Some("application/dicom+json;q=0.5, application/dicom+xml"), true)]
    #[case(Some("*/*, application/dicom+xml;q=0.2"), false)]
    #[case(Some("garbage"), false)]
    fn stow_xml(#[case] accept: Option<&str>, #[case] expected: bool) {
        assert_eq!(wants_xml(accept), expected);
    }

    #[rstest]
    #[case("", None)]
    #[case("limit=10", None)]
    #[case("accept=application%2Fdicom%2Bjson", Some("application/dicom+json"))]
    #[case(
        "accept=multipart/related;type=image/jpeg&accept=*/*",
        Some("multipart/related;type=image/jpeg, */*")
    )]
    fn accept_parameter(#[case] query: &str, #[case] expected: Option<&str>) {
        assert_eq!(accept_from_query(query).as_deref(), expected);
    }

    #[rstest]
    #[case(None, RenderedMedia::Jpeg)]
    #[case(Some("*/*"), RenderedMedia::Jpeg)]
    #[case(Some("image/*"), RenderedMedia::Jpeg)]
    #[case(Some("image/png"), RenderedMedia::Png)]
    #[case(Some("image/webp, image/jpeg;q=0.5"), RenderedMedia::Webp)]
    #[case(Some("image/jpeg;q=0.2, image/png"), RenderedMedia::Png)]
    #[case(Some("image/gif, image/png;q=0.1"), RenderedMedia::Png)]
    #[case(Some("multipart/related; type=\"image/png\""), RenderedMedia::Png)]
    fn rendered_media(#[case] accept: Option<&str>, #[case] expected: RenderedMedia) {
        assert_eq!(negotiate_rendered(accept).unwrap(), expected);
    }

    #[test]
    fn rendered_media_refusals() {
        assert!(matches!(
            negotiate_rendered(Some("application/dicom")),
            Err(NotAcceptable::Unsupported { .. })
        ));
        assert!(matches!(
            negotiate_rendered(Some("image/gif")),
            Err(NotAcceptable::Unsupported { .. })
        ));
        assert!(matches!(
            negotiate_rendered(Some("image/jpeg;q=abc")),
            Err(NotAcceptable::Malformed { .. })
        ));
    }
}
