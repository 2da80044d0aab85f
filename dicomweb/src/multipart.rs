//! `multipart/related` (RFC 2387) bodies as DICOMweb uses them (PS3.18 §8.6.1.2):
//! a streaming reader for Store requests and a writer for Retrieve responses.
//!
//! Owns: the Content-Type parameters (`boundary`, `type`, `start`), part headers,
//! and precise errors for bodies cut short. The reader streams each part's body in
//! chunks (no buffering of whole parts); it wraps multer, which parses the framing
//! but only accepts `multipart/form-data` Content-Types itself. Leaves out what the
//! parts contain (DICOM parsing is the ingest's business).
//!
//! Known limit (multer): a part with no header lines at all, legal in RFC 2046, is
//! misread; every DICOMweb client sends at least Content-Type.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt, stream};

use crate::media::parse_media_type;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors reading a `multipart/related` body or its Content-Type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MultipartError {
    /// The Content-Type is not `multipart/related` with a usable boundary (HTTP 415
    /// for another media type, 400 for a broken one).
    #[error("invalid multipart/related Content-Type: {0}")]
    ContentType(String),
    /// The body was empty.
    #[error("the multipart/related body is empty")]
    Empty,
    /// The body ended before the closing boundary, while part `part` (1-based) or its
    /// headers were being read: a body cut off mid-upload.
    #[error("the multipart/related body ended before the closing boundary, in part {part}")]
    Truncated { part: usize },
    /// The framing or a part's headers do not parse.
    #[error("malformed multipart/related body")]
    Malformed(#[source] BoxError),
    /// The underlying body stream failed (client disconnect, size limit, I/O).
    #[error("reading the request body failed")]
    Stream(#[source] BoxError),
}

/// The parameters of a `multipart/related` Content-Type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelatedContentType {
    /// The `boundary` parameter, unquoted.
    pub boundary: String,
    /// The `type` parameter (the root part's media type, e.g. `application/dicom`).
    pub type_: Option<String>,
    /// The `start` parameter (Content-ID of the root part).
    pub start: Option<String>,
}

/// Parses a `multipart/related` Content-Type header value (RFC 2387 §3).
pub fn parse_related_content_type(
    content_type: &str,
) -> Result<RelatedContentType, MultipartError> {
    let media = parse_media_type(content_type).map_err(MultipartError::ContentType)?;
    if media.essence != "multipart/related" {
        return Err(MultipartError::ContentType(format!(
            "expected multipart/related, got {}",
            media.essence
        )));
    }
    let boundary = media
        .param("boundary")
        .ok_or_else(|| MultipartError::ContentType("missing boundary parameter".to_owned()))?;
    // RFC 2046 §5.1.1: 1 to 70 characters from bchars, not ending in a space.
    let valid = (1..=70).contains(&boundary.len())
        && !boundary.ends_with(' ')
        && boundary
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "'()+_,-./:=? ".contains(c));
    if !valid {
        return Err(MultipartError::ContentType(
            "boundary must be 1 to 70 characters of RFC 2046 bchars".to_owned(),
        ));
    }
    Ok(RelatedContentType {
        boundary: boundary.to_owned(),
        type_: media.param("type").map(str::to_owned),
        start: media.param("start").map(str::to_owned),
    })
}

/// What the reader has seen of the body, shared with the stream wrapper.
#[derive(Debug, Default)]
struct BodyProgress {
    /// The body stream has returned its end.
    ended: AtomicBool,
    /// Bytes received so far.
    bytes: AtomicU64,
}

/// Reads the parts of a `multipart/related` body one after the other.
pub struct RelatedReader {
    inner: multer::Multipart<'static>,
    progress: Arc<BodyProgress>,
    /// Parts returned so far.
    parts: usize,
}

impl RelatedReader {
    /// Reads `stream` (the request body) with `boundary` (from
    /// [`parse_related_content_type`]).
    pub fn new<S, O, E>(stream: S, boundary: impl Into<String>) -> Self
    where
        S: Stream<Item = Result<O, E>> + Send + 'static,
        O: Into<Bytes> + 'static,
        E: Into<BoxError> + 'static,
    {
        let progress = Arc::new(BodyProgress::default());
        let counted = Arc::clone(&progress);
        let ended = Arc::clone(&progress);
        let body = stream
            .map_ok(move |chunk| {
                let chunk: Bytes = chunk.into();
                counted
                    .bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                chunk
            })
            .map_err(Into::<BoxError>::into)
            .chain(stream::poll_fn(move |_| {
                ended.ended.store(true, Ordering::Relaxed);
                Poll::Ready(None)
            }));
        RelatedReader {
            inner: multer::Multipart::new(body, boundary),
            progress,
            parts: 0,
        }
    }

    /// The next part, or `None` after the closing boundary. Reading a new part skips
    /// what is left of the previous one.
    pub async fn next_part(&mut self) -> Result<Option<Part<'_>>, MultipartError> {
        match self.inner.next_field().await {
            Ok(Some(field)) => {
                self.parts += 1;
                Ok(Some(Part {
                    field,
                    index: self.parts,
                    progress: &self.progress,
                }))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(classify(e, &self.progress, self.parts + 1)),
        }
    }
}

/// Maps a multer error, telling a body cut short from a malformed one by whether the
/// stream has ended.
fn classify(e: multer::Error, progress: &BodyProgress, part: usize) -> MultipartError {
    match e {
        multer::Error::StreamReadFailed(source) => MultipartError::Stream(source),
        _ if progress.bytes.load(Ordering::Relaxed) == 0
            && progress.ended.load(Ordering::Relaxed) =>
        {
            MultipartError::Empty
        }
        multer::Error::IncompleteStream
        | multer::Error::IncompleteFieldData { .. }
        | multer::Error::IncompleteHeaders
            if progress.ended.load(Ordering::Relaxed) =>
        {
            MultipartError::Truncated { part }
        }
        e => MultipartError::Malformed(Box::new(e)),
    }
}

/// One part of a `multipart/related` body; its body is read with [`Part::chunk`].
pub struct Part<'r> {
    field: multer::Field<'static>,
    /// 1-based position in the body.
    index: usize,
    progress: &'r BodyProgress,
}

impl Part<'_> {
    /// 1-based position of this part in the body.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The value of header `name` (case-insensitive), if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.field.headers().get(name)?.to_str().ok()
    }

    /// All headers as (lowercase name, raw value).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.field
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
    }

    /// The part's Content-Type, as sent.
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// The part's Content-Location (PS3.18 §8.6.1.2: bulk data parts of a Store request).
    pub fn content_location(&self) -> Option<&str> {
        self.header("content-location")
    }

    /// The next chunk of the part's body, `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, MultipartError> {
        self.field
            .chunk()
            .await
            .map_err(|e| classify(e, self.progress, self.index))
    }
}

/// Writes a `multipart/related` body part by part, for streaming responses:
/// `part_header`, the body chunks, the next `part_header`, …, then `closing`.
#[derive(Debug, Clone)]
pub struct RelatedWriter {
    boundary: String,
    parts: usize,
}

impl Default for RelatedWriter {
    fn default() -> Self {
        Self::new()
    }
}

/// Replaces CR and LF, so a value cannot inject headers or end the header block.
fn header_value(value: &str) -> String {
    value.replace(['\r', '\n'], " ")
}

impl RelatedWriter {
    /// A writer with a fresh boundary: 32 hex digits from per-process random hash keys,
    /// a counter and the clock. Bodies that contain it by chance are not a practical
    /// concern (2^-128).
    pub fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut boundary = String::with_capacity(32);
        for _ in 0..2 {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
            if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
                h.write_u128(t.as_nanos());
            }
            boundary.push_str(&format!("{:016x}", h.finish()));
        }
        Self::with_boundary(boundary)
    }

    /// A writer with a given boundary (RFC 2046 bchars, at most 70).
    pub fn with_boundary(boundary: impl Into<String>) -> Self {
        RelatedWriter {
            boundary: boundary.into(),
            parts: 0,
        }
    }

    /// The boundary.
    pub fn boundary(&self) -> &str {
        &self.boundary
    }

    /// The response Content-Type:
    /// `multipart/related; type="<part_type>"; boundary=<boundary>`.
    pub fn content_type(&self, part_type: &str) -> String {
        format!(
            "multipart/related; type=\"{}\"; boundary={}",
            header_value(part_type).replace(['"', '\\'], ""),
            self.boundary
        )
    }

    /// The delimiter and headers that open the next part: `--boundary`,
    /// `Content-Type`, the `extra_headers`, and the empty line. All but the first part
    /// start with the CRLF that ends the previous part's body.
    pub fn part_header(&mut self, content_type: &str, extra_headers: &[(&str, &str)]) -> Bytes {
        let mut out = BytesMut::with_capacity(64 + self.boundary.len() + content_type.len());
        if self.parts > 0 {
            out.put_slice(b"\r\n");
        }
        self.parts += 1;
        out.put_slice(b"--");
        out.put_slice(self.boundary.as_bytes());
        out.put_slice(b"\r\nContent-Type: ");
        out.put_slice(header_value(content_type).as_bytes());
        out.put_slice(b"\r\n");
        for (name, value) in extra_headers {
            out.put_slice(header_value(name).replace(':', "").as_bytes());
            out.put_slice(b": ");
            out.put_slice(header_value(value).as_bytes());
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"\r\n");
        out.freeze()
    }

    /// The closing delimiter, `--boundary--`, after the last part's body.
    pub fn closing(&self) -> Bytes {
        let lead = if self.parts > 0 { "\r\n" } else { "" };
        Bytes::from(format!("{lead}--{}--\r\n", self.boundary))
    }
}

/// Encodes whole parts in one go (tests, clients): returns the Content-Type, whose
/// `type` is the first part's media type, and the body.
pub fn encode(parts: &[(&str, &[u8])]) -> (String, Bytes) {
    let mut writer = RelatedWriter::new();
    let part_type = parts
        .first()
        .map(|(ct, _)| ct.split(';').next().unwrap_or(ct).trim())
        .unwrap_or("application/octet-stream");
    let content_type = writer.content_type(part_type);
    let mut body = BytesMut::new();
    for (ct, bytes) in parts {
        body.put(writer.part_header(ct, &[]));
        body.put_slice(bytes);
    }
    body.put(writer.closing());
    (content_type, body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    type TestResult = Result<Bytes, std::io::Error>;

    /// A body stream that yields `chunks`, then optionally an error.
    fn body(chunks: Vec<Vec<u8>>, error: bool) -> impl Stream<Item = TestResult> + Send + 'static {
        let tail = error.then(|| {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            ))
        });
        stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c))).chain(tail))
    }

    /// Reads all parts, returning (content type, body) each, or the first error.
    async fn read_all(
        chunks: Vec<Vec<u8>>,
        error: bool,
        boundary: &str,
    ) -> Result<Vec<(Option<String>, Vec<u8>)>, MultipartError> {
        let mut reader = RelatedReader::new(body(chunks, error), boundary);
        let mut out = Vec::new();
        while let Some(mut part) = reader.next_part().await? {
            let ct = part.content_type().map(str::to_owned);
            let mut data = Vec::new();
            while let Some(chunk) = part.chunk().await? {
                data.extend_from_slice(&chunk);
            }
            out.push((ct, data));
        }
        Ok(out)
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    // The second part has no Content-Type. (A part with no headers at all, legal in
    // RFC 2046, is misread by multer; no DICOMweb client sends one.)
    const TWO_PARTS: &str = "preamble to ignore\r\n--XyZ\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n--XyZ\r\nContent-ID: <2@x>\r\n\r\nsec--ond\r\n\r\n--XyZ--\r\nepilogue";

    #[rstest]
    #[case(
        r#"multipart/related; type="application/dicom"; boundary=XyZ"#,
        "XyZ",
        Some("application/dicom")
    )]
    #[case(
        r#"multipart/related; boundary="a b:c"; type=application/dicom; start="<1@x>""#,
        "a b:c",
        Some("application/dicom")
    )]
    #[case("Multipart/Related;boundary=q", "q", None)]
    fn content_types(#[case] ct: &str, #[case] boundary: &str, #[case] ty: Option<&str>) {
        let parsed = parse_related_content_type(ct).unwrap();
        assert_eq!(parsed.boundary, boundary);
        assert_eq!(parsed.type_.as_deref(), ty);
    }

    #[rstest]
    #[case("multipart/form-data; boundary=x")]
    #[case("application/dicom")]
    #[case("multipart/related; type=application/dicom")]
    #[case("multipart/related; boundary=\"\"")]
    #[case("multipart/related; boundary=\"bad\x01\"")]
    fn bad_content_types(#[case] ct: &str) {
        assert!(matches!(
            parse_related_content_type(ct),
            Err(MultipartError::ContentType(_))
        ));
    }

    #[test]
    fn reads_parts_with_preamble_epilogue_and_missing_content_type() {
        let parts = run(read_all(vec![TWO_PARTS.as_bytes().to_vec()], false, "XyZ")).unwrap();
        assert_eq!(
            parts,
            vec![
                (Some("application/dicom".to_owned()), b"first".to_vec()),
                (None, b"sec--ond\r\n".to_vec()),
            ]
        );
    }

    #[test]
    fn reads_byte_by_byte() {
        let chunks = TWO_PARTS.bytes().map(|b| vec![b]).collect();
        let parts = run(read_all(chunks, false, "XyZ")).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].1, b"sec--ond\r\n");
    }

    #[test]
    fn part_accessors() {
        let raw = "--b\r\nContent-Type: application/octet-stream\r\nContent-Location: /bulk/1\r\nX-Extra: yes\r\n\r\nz\r\n--b--";
        run(async {
            let mut reader = RelatedReader::new(body(vec![raw.as_bytes().to_vec()], false), "b");
            let part = reader.next_part().await.unwrap().unwrap();
            assert_eq!(part.index(), 1);
            assert_eq!(part.content_location(), Some("/bulk/1"));
            assert_eq!(part.header("X-EXTRA"), Some("yes"));
            assert_eq!(part.headers().count(), 3);
        });
    }

    #[rstest]
    // cut in the middle of the second part's body
    #[case(
        "--b\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n--b\r\nContent-Type: application/dicom\r\n\r\nseco",
        2
    )]
    // cut inside the second part's headers
    #[case(
        "--b\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n--b\r\nContent-Ty",
        2
    )]
    // cut right after a delimiter
    #[case("--b\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n--b", 2)]
    // no final boundary at all
    #[case("--b\r\nContent-Type: application/dicom\r\n\r\nfirst", 1)]
    // cut in the first part's headers
    #[case("--b\r\nContent-", 1)]
    fn truncated_bodies(#[case] raw: &str, #[case] part: usize) {
        let err = run(read_all(vec![raw.as_bytes().to_vec()], false, "b")).unwrap_err();
        assert!(
            matches!(err, MultipartError::Truncated { part: p } if p == part),
            "{err:?}"
        );
    }

    #[test]
    fn empty_body() {
        let err = run(read_all(vec![], false, "b")).unwrap_err();
        assert!(matches!(err, MultipartError::Empty), "{err:?}");
    }

    #[test]
    fn stream_error_is_not_truncation() {
        let raw = b"--b\r\nContent-Type: application/dicom\r\n\r\nfir".to_vec();
        let err = run(read_all(vec![raw], true, "b")).unwrap_err();
        assert!(matches!(err, MultipartError::Stream(_)), "{err:?}");
    }

    #[test]
    fn bare_lf_headers_are_not_accepted_as_complete() {
        let raw = b"--b\nContent-Type: application/dicom\n\nx\n--b--\n".to_vec();
        assert!(run(read_all(vec![raw], false, "b")).is_err());
    }

    #[test]
    fn writer_layout() {
        let mut w = RelatedWriter::with_boundary("B");
        assert_eq!(
            w.content_type("application/dicom"),
            "multipart/related; type=\"application/dicom\"; boundary=B"
        );
        assert_eq!(
            &w.part_header("application/dicom", &[])[..],
            b"--B\r\nContent-Type: application/dicom\r\n\r\n"
        );
        assert_eq!(
            &w.part_header("image/jpeg", &[("Content-Location", "/f/1\r\nX: y")])[..],
            b"\r\n--B\r\nContent-Type: image/jpeg\r\nContent-Location: /f/1  X: y\r\n\r\n"
        );
        assert_eq!(&w.closing()[..], b"\r\n--B--\r\n");
        assert_eq!(
            &RelatedWriter::with_boundary("B").closing()[..],
            b"--B--\r\n"
        );
    }

    #[test]
    fn boundaries_differ_and_are_valid() {
        let a = RelatedWriter::new();
        let b = RelatedWriter::new();
        assert_ne!(a.boundary(), b.boundary());
        assert_eq!(a.boundary().len(), 32);
        let ct = a.content_type("application/dicom");
        assert_eq!(
            parse_related_content_type(&ct).unwrap().boundary,
            a.boundary()
        );
    }

    #[test]
    fn encode_empty_reads_as_no_parts() {
        let (ct, body) = encode(&[]);
        let boundary = parse_related_content_type(&ct).unwrap().boundary;
        let parts = run(read_all(vec![body.to_vec()], false, &boundary)).unwrap();
        assert!(parts.is_empty());
    }

    fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![any::<u8>(), Just(b'-'), Just(b'\r'), Just(b'\n'),],
            0..300,
        )
    }

    proptest! {
        #[test]
        fn write_read_round_trip(
            bodies in prop::collection::vec(body_bytes(), 1..5),
            chunk in 1usize..64,
        ) {
            let parts: Vec<(&str, &[u8])> = bodies.iter().map(|b| ("application/dicom", b.as_slice())).collect();
            let (ct, encoded) = encode(&parts);
            let boundary = parse_related_content_type(&ct).unwrap().boundary;
            let chunks = encoded.chunks(chunk).map(<[u8]>::to_vec).collect();
            let read = run(read_all(chunks, false, &boundary)).unwrap();
            prop_assert_eq!(read.len(), bodies.len());
            for ((ct, data), original) in read.iter().zip(&bodies) {
                prop_assert_eq!(ct.as_deref(), Some("application/dicom"));
                prop_assert_eq!(data, original);
            }
        }

        #[test]
        fn truncation_is_reported(
            bodies in prop::collection::vec(body_bytes(), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let parts: Vec<(&str, &[u8])> = bodies.iter().map(|b| ("application/dicom", b.as_slice())).collect();
            let (ct, encoded) = encode(&parts);
            let boundary = parse_related_content_type(&ct).unwrap().boundary;
            // Cut anywhere before the final "--" of the closing delimiter.
            let len = cut.index(encoded.len() - 4) + 1;
            let result = run(read_all(vec![encoded[..len].to_vec()], false, &boundary));
            prop_assert!(matches!(result, Err(MultipartError::Truncated { .. })), "{:?}", result);
        }
    }
}
