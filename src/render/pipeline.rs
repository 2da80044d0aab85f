//! The rendering pipeline for rendered resources (PS3.18 §8.3.5): a decoded
//! [`Frame`] plus its [`ImageMeta`] and the request's parameters become a
//! JPEG, PNG or WebP.
//!
//! Grayscale follows PS3.4 N.2: source region and viewport scaling, Modality
//! LUT, VOI, Presentation LUT, shutters, 8- or 16-bit output. It is built for
//! large images: the frame is resampled first, on stored values, so the rest runs
//! on viewport-sized data, and the three grayscale transforms are folded into one
//! lookup table indexed by stored value. Colour frames are only resampled and
//! encoded. This module owns the query parameter parsers too; decoding pixels
//! and reading the dataset live in `decode` and `meta`.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::ops::BitXor;

use super::frame::{Frame, Samples};
use super::meta::{ImageMeta, Lut, Shutter};

/// JPEG quality when the request gives none.
pub const DEFAULT_QUALITY: u8 = 90;

/// Largest viewport side accepted: above any real image (Rows and Columns are
/// 16-bit, mammograms reach ~6000), and it bounds the memory one request takes.
pub const MAX_VIEWPORT_SIDE: u32 = 8192;

/// A VOI window (PS3.3 C.11.2.1.2), in modality units (e.g. HU).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub center: f64,
    pub width: f64,
    pub function: VoiFunction,
}

/// VOI LUT Function (0028,1056).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoiFunction {
    Linear,
    LinearExact,
    Sigmoid,
}

/// Media type of the rendered image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Jpeg,
    /// 8-bit PNG.
    Png,
    /// 16-bit grayscale PNG (colour frames stay 8-bit).
    Png16,
    /// Lossless WebP.
    Webp,
}

/// PS3.18 §8.3.5.1.3 `viewport=vw,vh[,sx,sy,sw,sh]`: the source region is scaled
/// to the largest size that fits in `width`×`height`, keeping its aspect ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
    pub region: Option<Region>,
}

/// Source region in pixels of the original image: columns `x..x+|w|`, rows
/// `y..y+|h|`; a negative `w` (`h`) flips it horizontally (vertically). Parts
/// outside the image are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
}

/// What the request asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RenderParams {
    /// Overrides the image's own VOI.
    pub window: Option<Window>,
    /// Without one, the frame is rendered at its own size.
    pub viewport: Option<Viewport>,
    /// JPEG quality 1..=100, [`DEFAULT_QUALITY`] when absent.
    pub quality: Option<u8>,
    pub format: OutputFormat,
}

/// Why a frame could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// Bad rendering parameters or an inconsistent frame; the message is meant
    /// for the client.
    #[error("{0}")]
    Invalid(String),
    /// The image encoder failed.
    #[error("encoding the rendered image failed")]
    Encode(#[source] image::ImageError),
}

impl Window {
    /// Whether PS3.3 C.11.2.1.2 defines this window: finite numbers, and a width
    /// of at least 1 for LINEAR (its formula divides by w − 1), above 0 otherwise.
    pub fn is_valid(&self) -> bool {
        let min_width = match self.function {
            VoiFunction::Linear => self.width >= 1.0,
            VoiFunction::LinearExact | VoiFunction::Sigmoid => self.width > 0.0,
        };
        self.center.is_finite() && self.width.is_finite() && min_width
    }

    /// Maps a modality value to 0..=1: PS3.3 C.11.2.1.2 with y_min = 0 and
    /// y_max = 1.
    pub fn apply(&self, x: f64) -> f64 {
        let (c, w) = (self.center, self.width);
        match self.function {
            VoiFunction::Linear => {
                if x <= c - 0.5 - (w - 1.0) / 2.0 {
                    0.0
                } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                    1.0
                } else {
                    (x - (c - 0.5)) / (w - 1.0) + 0.5
                }
            }
            VoiFunction::LinearExact => {
                if x <= c - w / 2.0 {
                    0.0
                } else if x > c + w / 2.0 {
                    1.0
                } else {
                    (x - c) / w + 0.5
                }
            }
            VoiFunction::Sigmoid => 1.0 / (1.0 + (-4.0 * (x - c) / w).exp()),
        }
    }
}

impl VoiFunction {
    /// From a VOI LUT Function defined term (LINEAR, LINEAR_EXACT, SIGMOID).
    pub fn from_keyword(keyword: &str) -> Option<VoiFunction> {
        match keyword.trim().to_ascii_uppercase().as_str() {
            "LINEAR" => Some(VoiFunction::Linear),
            "LINEAR_EXACT" => Some(VoiFunction::LinearExact),
            "SIGMOID" => Some(VoiFunction::Sigmoid),
            _ => None,
        }
    }
}

impl Viewport {
    fn validate(&self) -> Result<(), PipelineError> {
        for (name, side) in [("vw", self.width), ("vh", self.height)] {
            if !(1..=MAX_VIEWPORT_SIDE).contains(&side) {
                return Err(invalid(format!(
                    "viewport {name} must be from 1 to {MAX_VIEWPORT_SIDE}, got {side}"
                )));
            }
        }
        if let Some(region) = self.region {
            for (name, value) in [("sw", region.w), ("sh", region.h)] {
                if value == 0 {
                    return Err(invalid(format!("viewport {name} must not be 0")));
                }
            }
        }
        Ok(())
    }
}

fn invalid(message: String) -> PipelineError {
    PipelineError::Invalid(message)
}

/// Renders `frame` as `params` ask: the full pipeline, from stored values to
/// encoded bytes.
///
/// The viewport's source region and the shutters are in pixels of the original
/// image (`meta.rows`×`meta.columns`), so a downsampled preview of it renders the
/// same picture, only with less detail.
pub fn render(
    frame: &Frame,
    meta: &ImageMeta,
    params: &RenderParams,
) -> Result<Vec<u8>, PipelineError> {
    if frame.pixels() == 0 || !frame.is_consistent() {
        return Err(invalid(format!(
            "the decoded frame ({}x{}) has no pixels or the wrong number of samples",
            frame.width, frame.height
        )));
    }
    let quality = params.quality.unwrap_or(DEFAULT_QUALITY);
    if !(1..=100).contains(&quality) {
        return Err(invalid(format!(
            "quality must be from 1 to 100, got {quality}"
        )));
    }
    if let Some(window) = params.window
        && !window.is_valid()
    {
        return Err(invalid(format!(
            "window {},{} is not usable with the {:?} function",
            window.center, window.width, window.function
        )));
    }
    let geometry = Geometry::new(frame, meta, params.viewport.as_ref())?;
    let (width, height) = (geometry.x.out as u32, geometry.y.out as u32);
    let shutters = ShutterMask::new(frame, meta, &geometry);

    match &frame.samples {
        Samples::Gray { data, signed } => {
            let domain = KeyDomain::new(*signed, meta);
            let keys = resample_gray(data, frame.width as usize, &geometry, &domain);
            let (low, high) = keys
                .par_iter()
                .fold(|| (u16::MAX, 0), |(lo, hi), &k| (lo.min(k), hi.max(k)))
                .reduce(|| (u16::MAX, 0), |a, b| (a.0.min(b.0), a.1.max(b.1)));
            let voi = choose_voi(meta, params, || {
                histogram_window(&keys, geometry.x.out, geometry.y.out, 0, &domain, meta)
                    .unwrap_or_else(|| full_range_window(meta, &domain, low, high))
            });
            let unit = |key: u16| grayscale_unit(meta, &voi, &domain, key);
            if params.format == OutputFormat::Png16 {
                let lut = build_lut(low, high, |key| (unit(key) * 65535.0).round() as u16);
                let mut pixels = apply_lut(&keys, low, &lut);
                shutters.apply(&mut pixels, 1);
                let bytes: Vec<u8> = pixels.iter().flat_map(|v| v.to_ne_bytes()).collect();
                encode(
                    &bytes,
                    width,
                    height,
                    ExtendedColorType::L16,
                    params.format,
                    quality,
                )
            } else {
                let lut = build_lut(low, high, |key| (unit(key) * 255.0).round() as u8);
                let mut pixels = apply_lut(&keys, low, &lut);
                shutters.apply(&mut pixels, 1);
                encode(
                    &pixels,
                    width,
                    height,
                    ExtendedColorType::L8,
                    params.format,
                    quality,
                )
            }
        }
        Samples::Rgb8(data) => {
            let mut pixels =
                resample::<u8, 3>(data, frame.width as usize, &geometry, 0, None, round_u8, 0);
            shutters.apply(&mut pixels, 3);
            encode(
                &pixels,
                width,
                height,
                ExtendedColorType::Rgb8,
                params.format,
                quality,
            )
        }
    }
}

/// Downsamples so that the longer side is at most `max_side`, keeping stored
/// values: each output pixel is the area average of the source pixels it covers
/// (signed data averaged as signed). For previews and thumbnails; a frame already
/// small enough, or inconsistent, comes back as a clone.
pub fn downsample(frame: &Frame, max_side: u32) -> Frame {
    let max_side = max_side.max(1);
    let longer = frame.width.max(frame.height);
    if longer <= max_side || !frame.is_consistent() {
        return frame.clone();
    }
    let scale = f64::from(max_side) / f64::from(longer);
    let side = |len: u32| {
        (f64::from(len) * scale)
            .round()
            .clamp(1.0, f64::from(max_side)) as u32
    };
    let (width, height) = (side(frame.width), side(frame.height));
    let geometry = Geometry::whole(frame, width as usize, height as usize);
    let samples = match &frame.samples {
        Samples::Gray { data, signed } => {
            let xor = if *signed { 0x8000 } else { 0 };
            let data = resample::<u16, 1>(
                data,
                frame.width as usize,
                &geometry,
                xor,
                None,
                move |v| round_u16(v) ^ xor,
                0,
            );
            Samples::Gray {
                data,
                signed: *signed,
            }
        }
        Samples::Rgb8(data) => Samples::Rgb8(resample::<u8, 3>(
            data,
            frame.width as usize,
            &geometry,
            0,
            None,
            round_u8,
            0,
        )),
    };
    Frame {
        width,
        height,
        samples,
    }
}

/// A window chosen from the pixel values, for images without one of their own:
/// the 0.5th to 99.5th percentile of the modality values, after dropping padding,
/// a 2 % border and a dominant background peak at either end (see
/// `histogram_window`). `None` for colour frames and frames of padding only.
pub fn auto_window(frame: &Frame, meta: &ImageMeta) -> Option<Window> {
    match &frame.samples {
        Samples::Gray { data, signed } if frame.is_consistent() => {
            let domain = KeyDomain::new(*signed, meta);
            histogram_window(
                data,
                frame.width as usize,
                frame.height as usize,
                domain.xor(),
                &domain,
                meta,
            )
        }
        _ => None,
    }
}

/// Parses `window=center,width,function` (PS3.18 §8.3.5.1.4). The function is
/// `linear`, `linear-exact` or `sigmoid` (any case) and defaults to linear when
/// left out.
pub fn parse_window(s: &str) -> Result<Window, PipelineError> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let (center, width, function) = match parts[..] {
        [center, width] => (center, width, "linear"),
        [center, width, function] => (center, width, function),
        _ => {
            return Err(invalid(format!(
                "window must be center,width,function (e.g. 40,400,linear), got {}",
                quoted(s)
            )));
        }
    };
    let center = parse_finite("window center", center)?;
    let width = parse_finite("window width", width)?;
    let function = match function.to_ascii_lowercase().as_str() {
        "linear" => VoiFunction::Linear,
        "linear-exact" | "linear_exact" => VoiFunction::LinearExact,
        "sigmoid" => VoiFunction::Sigmoid,
        _ => {
            return Err(invalid(format!(
                "window function must be linear, linear-exact or sigmoid, got {}",
                quoted(function)
            )));
        }
    };
    if width <= 0.0 {
        return Err(invalid(format!(
            "window width must be positive, got {width}"
        )));
    }
    let window = Window {
        center,
        width,
        function,
    };
    if !window.is_valid() {
        return Err(invalid(format!(
            "window width must be at least 1 for the linear function, got {width}"
        )));
    }
    Ok(window)
}

/// Parses `viewport=vw,vh[,sx,sy,sw,sh]` (PS3.18 §8.3.5.1.3).
pub fn parse_viewport(s: &str) -> Result<Viewport, PipelineError> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    if parts.len() != 2 && parts.len() != 6 {
        return Err(invalid(format!(
            "viewport must be vw,vh or vw,vh,sx,sy,sw,sh, got {}",
            quoted(s)
        )));
    }
    let side = |name: &str, text: &str| {
        parse_integer(name, text).and_then(|v| {
            u32::try_from(v)
                .ok()
                .filter(|v| (1..=MAX_VIEWPORT_SIDE).contains(v))
                .ok_or_else(|| {
                    invalid(format!(
                        "viewport {name} must be from 1 to {MAX_VIEWPORT_SIDE}, got {v}"
                    ))
                })
        })
    };
    // Image coordinates are 16-bit (Rows and Columns are US).
    let limit = i64::from(u16::MAX);
    let offset = |name: &str, text: &str| {
        parse_integer(name, text).and_then(|v| {
            if (0..=limit).contains(&v) {
                Ok(v)
            } else {
                Err(invalid(format!(
                    "viewport {name} must be from 0 to {limit}, got {v}"
                )))
            }
        })
    };
    let extent = |name: &str, text: &str| {
        parse_integer(name, text).and_then(|v| {
            if v != 0 && v.abs() <= limit {
                Ok(v)
            } else {
                Err(invalid(format!(
                    "viewport {name} must be a non-zero integer from -{limit} to {limit}, got {v}"
                )))
            }
        })
    };
    let region = if parts.len() == 6 {
        Some(Region {
            x: offset("sx", parts[2])?,
            y: offset("sy", parts[3])?,
            w: extent("sw", parts[4])?,
            h: extent("sh", parts[5])?,
        })
    } else {
        None
    };
    Ok(Viewport {
        width: side("vw", parts[0])?,
        height: side("vh", parts[1])?,
        region,
    })
}

/// Parses `quality=1..100` (PS3.18 §8.3.5.1.2).
pub fn parse_quality(s: &str) -> Result<u8, PipelineError> {
    s.trim()
        .parse::<u8>()
        .ok()
        .filter(|q| (1..=100).contains(q))
        .ok_or_else(|| {
            invalid(format!(
                "quality must be an integer from 1 to 100, got {}",
                quoted(s)
            ))
        })
}

fn parse_finite(name: &str, text: &str) -> Result<f64, PipelineError> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| {
            invalid(format!(
                "{name} must be a finite number, got {}",
                quoted(text)
            ))
        })
}

fn parse_integer(name: &str, text: &str) -> Result<i64, PipelineError> {
    text.parse::<i64>().map_err(|_| {
        invalid(format!(
            "viewport {name} must be an integer, got {}",
            quoted(text)
        ))
    })
}

/// Echoes client input in an error message, shortened so that a huge parameter
/// does not make a huge response.
fn quoted(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// Which output pixels come from where, along one axis, in continuous frame
/// coordinates (pixel `i` spans `i..i+1`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Span {
    start: f64,
    len: f64,
    out: usize,
    flip: bool,
}

impl Span {
    /// Where output pixel `i` comes from: its footprint starts here and is
    /// `len / out` long.
    fn footprint_start(&self, i: usize) -> f64 {
        let i = if self.flip { self.out - 1 - i } else { i };
        self.start + i as f64 * self.len / self.out as f64
    }

    fn center(&self, i: usize) -> f64 {
        self.footprint_start(i) + 0.5 * self.len / self.out as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Geometry {
    x: Span,
    y: Span,
}

impl Geometry {
    fn whole(frame: &Frame, width: usize, height: usize) -> Geometry {
        let span = |len: u32, out| Span {
            start: 0.0,
            len: f64::from(len),
            out,
            flip: false,
        };
        Geometry {
            x: span(frame.width, width),
            y: span(frame.height, height),
        }
    }

    fn new(
        frame: &Frame,
        meta: &ImageMeta,
        viewport: Option<&Viewport>,
    ) -> Result<Geometry, PipelineError> {
        let Some(viewport) = viewport else {
            return Ok(Geometry::whole(
                frame,
                frame.width as usize,
                frame.height as usize,
            ));
        };
        viewport.validate()?;
        let (frame_w, frame_h) = (f64::from(frame.width), f64::from(frame.height));
        let (mut x, mut y) = ((0.0, frame_w, false), (0.0, frame_h, false));
        if let Some(region) = viewport.region {
            let (scale_x, scale_y) = original_to_frame(frame, meta);
            // One side of the region, clipped to the frame.
            let clip = |start: i64, len: i64, scale: f64, limit: f64| {
                let begin = (start as f64 * scale).max(0.0);
                let end = ((start as f64 + len.unsigned_abs() as f64) * scale).min(limit);
                (end > begin).then_some((begin, end, len < 0))
            };
            match (
                clip(region.x, region.w, scale_x, frame_w),
                clip(region.y, region.h, scale_y, frame_h),
            ) {
                (Some(sx), Some(sy)) => (x, y) = (sx, sy),
                _ => {
                    return Err(invalid(format!(
                        "viewport region {},{},{},{} lies outside the image",
                        region.x, region.y, region.w, region.h
                    )));
                }
            }
        }
        let (region_w, region_h) = (x.1 - x.0, y.1 - y.0);
        let (viewport_w, viewport_h) = (f64::from(viewport.width), f64::from(viewport.height));
        let fit = (viewport_w / region_w).min(viewport_h / region_h);
        let out = |len: f64, max: f64| (len * fit).round().clamp(1.0, max) as usize;
        Ok(Geometry {
            x: Span {
                start: x.0,
                len: region_w,
                out: out(region_w, viewport_w),
                flip: x.2,
            },
            y: Span {
                start: y.0,
                len: region_h,
                out: out(region_h, viewport_h),
                flip: y.2,
            },
        })
    }
}

/// Frame pixels per original pixel along x and y: below 1 when the frame is a
/// downsampled preview.
fn original_to_frame(frame: &Frame, meta: &ImageMeta) -> (f64, f64) {
    let ratio = |frame_len: u32, original: u32| {
        if original == 0 {
            1.0
        } else {
            f64::from(frame_len) / f64::from(original)
        }
    };
    (
        ratio(frame.width, meta.columns),
        ratio(frame.height, meta.rows),
    )
}

/// The source samples and weights of each output pixel along one axis. Each
/// pixel reads a run of consecutive source samples.
struct Taps {
    /// Per output pixel: its first source index (relative to `first`) and the
    /// range of its weights in `weights`.
    pixels: Vec<(u32, u32, u32)>,
    /// Weights of consecutive source samples; those of a pixel sum to 1.
    weights: Vec<f32>,
    /// First source index any output pixel uses.
    first: usize,
    /// One past the last.
    end: usize,
    /// Set when output pixel `i` is exactly the average of source samples
    /// `first + i·k .. first + (i + 1)·k`: shrinking by a whole factor `k`.
    whole_factor: Option<usize>,
}

impl Taps {
    /// Area average when shrinking (each output pixel averages what it covers),
    /// linear interpolation between pixel centres when enlarging.
    fn new(span: &Span, src_len: usize) -> Taps {
        let scale = span.len / span.out as f64;
        let last = src_len as i64 - 1;
        let mut runs: Vec<(usize, Vec<f64>)> = Vec::with_capacity(span.out);
        for i in 0..span.out {
            let begin = span.footprint_start(i);
            let mut taps: Vec<(usize, f64)> = Vec::new();
            if scale >= 1.0 {
                let end = begin + scale;
                let mut j = begin.floor();
                while j < end {
                    let overlap = end.min(j + 1.0) - begin.max(j);
                    if overlap > 1e-6 {
                        taps.push(((j as i64).clamp(0, last) as usize, overlap));
                    }
                    j += 1.0;
                }
            } else {
                let center = begin + scale / 2.0 - 0.5;
                let j = center.floor();
                let t = center - j;
                for (index, weight) in [(j as i64, 1.0 - t), (j as i64 + 1, t)] {
                    let index = index.clamp(0, last) as usize;
                    // Clamped at the edges, both taps can land on one sample.
                    match taps.last_mut() {
                        Some((previous, w)) if *previous == index => *w += weight,
                        _ => taps.push((index, weight)),
                    }
                }
            }
            let total: f64 = taps.iter().map(|&(_, w)| w).sum();
            let start = taps.first().map_or(0, |&(j, _)| j);
            runs.push((start, taps.iter().map(|&(_, w)| w / total).collect()));
        }
        let first = runs.iter().map(|(start, _)| *start).min().unwrap_or(0);
        let end = runs
            .iter()
            .map(|(start, w)| start + w.len())
            .max()
            .unwrap_or(0);
        let mut pixels = Vec::with_capacity(span.out);
        let mut weights = Vec::new();
        for (start, run) in &runs {
            let from = weights.len() as u32;
            weights.extend(run.iter().map(|&w| w as f32));
            pixels.push(((start - first) as u32, from, weights.len() as u32));
        }
        let factor = scale.round() as usize;
        let whole_factor = (!span.flip
            && span.start.fract() == 0.0
            && factor >= 1
            && (factor * span.out) as f64 == span.len)
            .then_some(factor);
        Taps {
            pixels,
            weights,
            first,
            end,
            whole_factor,
        }
    }

    /// First source index (relative to `first`) and weights of output pixel `i`.
    fn of(&self, i: usize) -> (usize, &[f32]) {
        let (start, from, to) = self.pixels[i];
        (start as usize, &self.weights[from as usize..to as usize])
    }
}

/// Resamples the region `geometry` describes into its output size, separably:
/// for each output row the source rows it needs are summed with their weights
/// (a pass the compiler vectorises), then each output pixel sums its columns.
///
/// A sample's value is the sample `^ xor` (see `KeyDomain`). Samples in the
/// `padding` range are left out of the averages, and an output pixel mostly
/// made of them becomes `padding_out`, so padding stays padding and never
/// bleeds into its neighbours.
fn resample<T, const C: usize>(
    src: &[T],
    src_w: usize,
    geometry: &Geometry,
    xor: T,
    padding: Option<(u16, u16)>,
    store: impl Fn(f32) -> T + Sync,
    padding_out: T,
) -> Vec<T>
where
    T: Copy + Send + Sync + BitXor<Output = T> + Into<u16>,
{
    let src_h = src.len() / C / src_w.max(1);
    let columns = Taps::new(&geometry.x, src_w);
    let rows = Taps::new(&geometry.y, src_h);
    let used = (columns.end - columns.first) * C;
    let out_w = geometry.x.out;
    let source_row = |sy: usize| {
        let start = ((rows.first + sy) * src_w + columns.first) * C;
        &src[start..start + used]
    };
    // A plain function of a local: a closure argument here would be reloaded
    // through a pointer on every sample and keep the loops from vectorising.
    let value = move |sample: T| -> u16 { (sample ^ xor).into() };
    let whole_factors = match (padding, columns.whole_factor, rows.whole_factor) {
        (None, Some(kx), Some(ky)) => Some((kx, ky)),
        _ => None,
    };
    let mut out = vec![padding_out; out_w * geometry.y.out * C];
    out.par_chunks_mut(out_w * C).enumerate().for_each_init(
        || {
            let weights = if padding.is_some() { used } else { 0 };
            (vec![0f32; used], vec![0f32; weights], vec![0u32; used])
        },
        |(values, weights, sums), (oy, out_row)| {
            let (first_row, row_weights) = rows.of(oy);
            if let Some((kx, ky)) = whole_factors {
                // Shrinking by whole factors (the usual 4096 → 1024): integer
                // sums, several times faster than float multiply-adds. A column
                // of at most 65535 16-bit values cannot overflow 32 bits.
                sums.fill(0);
                for sy in first_row..first_row + ky {
                    for (sum, &sample) in sums.iter_mut().zip(source_row(sy)) {
                        *sum += u32::from(value(sample));
                    }
                }
                let per_sample = 1.0 / (kx * ky) as f64;
                for (pixel, block) in out_row.chunks_exact_mut(C).zip(sums.chunks_exact(kx * C)) {
                    for (c, out) in pixel.iter_mut().enumerate() {
                        let total: u64 =
                            block.iter().skip(c).step_by(C).map(|&v| u64::from(v)).sum();
                        *out = store((total as f64 * per_sample) as f32);
                    }
                }
                return;
            }
            values.fill(0.0);
            weights.fill(0.0);
            for (sy, &wy) in (first_row..).zip(row_weights) {
                let row = source_row(sy);
                if let Some((low, high)) = padding {
                    for ((value_sum, weight_sum), &sample) in
                        values.iter_mut().zip(weights.iter_mut()).zip(row)
                    {
                        let v = value(sample);
                        let w = if (low..=high).contains(&v) { 0.0 } else { wy };
                        *value_sum += w * f32::from(v);
                        *weight_sum += w;
                    }
                } else {
                    for (value_sum, &sample) in values.iter_mut().zip(row) {
                        *value_sum += wy * f32::from(value(sample));
                    }
                }
            }
            for (ox, pixel) in out_row.chunks_exact_mut(C).enumerate() {
                let (start, column_weights) = columns.of(ox);
                let span = start * C..(start + column_weights.len()) * C;
                for (c, out) in pixel.iter_mut().enumerate() {
                    let weighted = |plane: &[f32]| -> f32 {
                        plane[span.clone()]
                            .iter()
                            .skip(c)
                            .step_by(C)
                            .zip(column_weights)
                            .map(|(v, w)| v * w)
                            .sum()
                    };
                    let value_sum = weighted(values);
                    *out = match padding {
                        None => store(value_sum),
                        Some(_) => {
                            let weight_sum = weighted(weights);
                            if weight_sum < 0.5 {
                                padding_out
                            } else {
                                store(value_sum / weight_sum)
                            }
                        }
                    };
                }
            }
        },
    );
    out
}

// Values are never negative, so adding ½ and truncating (the cast saturates)
// rounds; `f32::round` is a libm call on baseline x86-64 and showed in profiles.
fn round_u16(v: f32) -> u16 {
    (v + 0.5) as u16
}

fn round_u8(v: f32) -> u8 {
    (v + 0.5) as u8
}

/// Stored values as unsigned keys that keep their order, so that signed and
/// unsigned data share one resampler and one table: key = stored + `offset`
/// (for 16-bit two's complement that is flipping the sign bit).
#[derive(Debug, Clone, Copy)]
struct KeyDomain {
    offset: i32,
    /// Inclusive key range of Pixel Padding.
    padding: Option<(u16, u16)>,
}

impl KeyDomain {
    fn new(signed: bool, meta: &ImageMeta) -> KeyDomain {
        let offset = if signed { 32768 } else { 0 };
        let padding = meta.padding_range().and_then(|(low, high)| {
            let low = (low + offset).max(0);
            let high = (high + offset).min(65535);
            (low <= high).then_some((low as u16, high as u16))
        });
        KeyDomain { offset, padding }
    }

    /// Turns a frame sample (a two's complement bit pattern when signed) into its key.
    fn xor(&self) -> u16 {
        if self.offset == 0 { 0 } else { 0x8000 }
    }

    fn stored(&self, key: u16) -> i32 {
        i32::from(key) - self.offset
    }

    fn is_padding(&self, key: u16) -> bool {
        self.padding
            .is_some_and(|(low, high)| (low..=high).contains(&key))
    }
}

fn resample_gray(data: &[u16], src_w: usize, geometry: &Geometry, domain: &KeyDomain) -> Vec<u16> {
    let padding_out = domain.padding.map_or(0, |(low, _)| low);
    resample::<u16, 1>(
        data,
        src_w,
        geometry,
        domain.xor(),
        domain.padding,
        round_u16,
        padding_out,
    )
}

/// The VOI transform chosen for a rendering.
enum Voi<'a> {
    Window(Window),
    Table(&'a Lut),
}

impl Voi<'_> {
    /// Modality value to 0..=1.
    fn apply(&self, x: f64) -> f64 {
        match self {
            Voi::Window(window) => window.apply(x),
            Voi::Table(lut) => {
                f64::from(lut.lookup(x.round() as i64)) / f64::from(lut.max_output().max(1))
            }
        }
    }
}

/// The request's window, else the image's first window, else its VOI LUT, else
/// the stored automatic window, else one computed now by `auto`.
fn choose_voi<'a>(
    meta: &'a ImageMeta,
    params: &RenderParams,
    auto: impl FnOnce() -> Window,
) -> Voi<'a> {
    if let Some(window) = params.window.or_else(|| meta.windows.first().copied()) {
        Voi::Window(window)
    } else if let Some(lut) = &meta.voi_lut {
        Voi::Table(lut)
    } else {
        Voi::Window(meta.auto_window.unwrap_or_else(auto))
    }
}

/// Last resort when the histogram gives nothing (only padding): the whole
/// range of values present.
fn full_range_window(meta: &ImageMeta, domain: &KeyDomain, low: u16, high: u16) -> Window {
    let a = meta.modality_value(domain.stored(low));
    let b = meta.modality_value(domain.stored(high));
    linear_window(a.min(b), a.max(b))
}

/// The LINEAR window mapping `low` to the first output value and `high` to the last:
/// c − 0.5 − (w − 1)/2 = low and c − 0.5 + (w − 1)/2 = high. A single value
/// (a blank image) is shown mid-grey rather than black.
fn linear_window(low: f64, high: f64) -> Window {
    if high <= low {
        return Window {
            center: low,
            width: 1.0,
            function: VoiFunction::LinearExact,
        };
    }
    Window {
        center: (low + high + 1.0) / 2.0,
        width: high - low + 1.0,
        function: VoiFunction::Linear,
    }
}

/// Stored key → displayed value in 0..=1: Modality LUT, VOI, Presentation LUT;
/// padding is black whatever the polarity.
fn grayscale_unit(meta: &ImageMeta, voi: &Voi, domain: &KeyDomain, key: u16) -> f64 {
    if domain.is_padding(key) {
        return 0.0;
    }
    let value = voi.apply(meta.modality_value(domain.stored(key)));
    if meta.is_inverted() {
        1.0 - value
    } else {
        value
    }
}

/// The table for keys `low..=high`, the only ones the image holds.
fn build_lut<T: Send>(low: u16, high: u16, entry: impl Fn(u16) -> T + Sync) -> Vec<T> {
    (low..=high).into_par_iter().map(&entry).collect()
}

fn apply_lut<T: Copy + Send + Sync>(keys: &[u16], low: u16, lut: &[T]) -> Vec<T> {
    keys.par_iter()
        .map(|&key| lut[usize::from(key - low)])
        .collect()
}

/// Which output pixels the display shutters hide, precomputed per column and
/// row in original-image coordinates.
struct ShutterMask<'a> {
    shutters: &'a [Shutter],
    /// Original-image x of each output column's centre (0-based, continuous).
    columns: Vec<f64>,
    rows: Vec<f64>,
}

impl<'a> ShutterMask<'a> {
    fn new(frame: &Frame, meta: &'a ImageMeta, geometry: &Geometry) -> ShutterMask<'a> {
        let (scale_x, scale_y) = original_to_frame(frame, meta);
        let centres = |span: &Span, scale: f64| {
            if meta.shutters.is_empty() {
                Vec::new()
            } else {
                (0..span.out).map(|i| span.center(i) / scale).collect()
            }
        };
        ShutterMask {
            shutters: &meta.shutters,
            columns: centres(&geometry.x, scale_x),
            rows: centres(&geometry.y, scale_y),
        }
    }

    /// Whether the pixel centred at (x, y) is inside every shutter. Shutter
    /// coordinates are 1-based pixel indices (PS3.3 C.7.6.11.1).
    fn visible(&self, x: f64, y: f64) -> bool {
        let (column, row) = (x.floor() + 1.0, y.floor() + 1.0);
        self.shutters.iter().all(|shutter| match *shutter {
            Shutter::Rectangular {
                left,
                right,
                upper,
                lower,
            } => {
                (f64::from(left)..=f64::from(right)).contains(&column)
                    && (f64::from(upper)..=f64::from(lower)).contains(&row)
            }
            Shutter::Circular {
                center_row,
                center_column,
                radius,
            } => {
                // The centre pixel's own centre is at index − 0.5.
                let dx = x - (f64::from(center_column) - 0.5);
                let dy = y - (f64::from(center_row) - 0.5);
                dx * dx + dy * dy <= f64::from(radius) * f64::from(radius)
            }
        })
    }

    /// Paints hidden pixels black.
    fn apply<T: Copy + Default + Send>(&self, pixels: &mut [T], channels: usize) {
        if self.shutters.is_empty() {
            return;
        }
        let row_len = self.columns.len() * channels;
        pixels
            .par_chunks_mut(row_len)
            .zip(self.rows.par_iter())
            .for_each(|(row, &y)| {
                for (pixel, &x) in row.chunks_exact_mut(channels).zip(&self.columns) {
                    if !self.visible(x, y) {
                        pixel.fill(T::default());
                    }
                }
            });
    }
}

/// Percentiles at which the automatic window clips: a few hot or dead pixels,
/// burned-in markers or a ruler must not stretch the window, and clipping 1 % of
/// the pixels is invisible, which plain min/max cannot promise.
const AUTO_LOW_PERCENTILE: f64 = 0.005;
const AUTO_HIGH_PERCENTILE: f64 = 0.995;
/// About this many samples make the histogram; more changes nothing visible.
const AUTO_SAMPLES: usize = 1 << 20;

/// The automatic window of a frame's samples (`sample ^ xor` is the key).
///
/// A 2 % border is skipped: collimator edges and detector borders sit there, at
/// extreme values. A peak in the outer sixteenth of the value range at either
/// end that holds at least a tenth of the samples is dropped with its flank:
/// that is the empty background of a mammogram, the air around a CT or MR
/// slice, or a collimated area, and windowing it would spend the grey levels on
/// nothing. Then the 0.5th–99.5th percentiles are the window's ends.
fn histogram_window(
    samples: &[u16],
    width: usize,
    height: usize,
    xor: u16,
    domain: &KeyDomain,
    meta: &ImageMeta,
) -> Option<Window> {
    let (border_x, border_y) = (width / 50, height / 50);
    let inner = (width - 2 * border_x) * (height - 2 * border_y);
    let step = ((inner as f64 / AUTO_SAMPLES as f64).sqrt().ceil() as usize).max(1);
    let mut histogram = vec![0u32; 65536];
    for y in (border_y..height - border_y).step_by(step) {
        let row = &samples[y * width..(y + 1) * width];
        for &sample in row[border_x..width - border_x].iter().step_by(step) {
            let key = sample ^ xor;
            if !domain.is_padding(key) {
                histogram[usize::from(key)] += 1;
            }
        }
    }
    // (modality value, count), in value order: a Modality LUT or a negative
    // slope need not keep stored order.
    let mut bins: Vec<(f64, u64)> = histogram
        .iter()
        .enumerate()
        .filter(|&(_, &count)| count > 0)
        .map(|(key, &count)| {
            let value = meta.modality_value(domain.stored(key as u16));
            (value, u64::from(count))
        })
        .collect();
    if bins.is_empty() {
        return None;
    }
    bins.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let bins = without_background(&bins);
    let total: u64 = bins.iter().map(|&(_, count)| count).sum();
    let percentile = |fraction: f64| {
        let target = (fraction * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for &(value, count) in bins {
            seen += count;
            if seen >= target {
                return value;
            }
        }
        bins[bins.len() - 1].0
    };
    Some(linear_window(
        percentile(AUTO_LOW_PERCENTILE),
        percentile(AUTO_HIGH_PERCENTILE),
    ))
}

/// `bins` without a dominant peak at either end of the value range (see
/// `histogram_window`), unless that would leave almost nothing.
fn without_background(bins: &[(f64, u64)]) -> &[(f64, u64)] {
    const COARSE: usize = 256;
    const EDGE: usize = COARSE / 16;
    // Label maps, segmentations and other images of a few values have no
    // background to speak of: every value is content.
    const MIN_VALUES: usize = 64;
    let (low, high) = (bins[0].0, bins[bins.len() - 1].0);
    if high <= low || bins.len() < MIN_VALUES {
        return bins;
    }
    let coarse_index =
        |value: f64| (((value - low) / (high - low)) * (COARSE - 1) as f64).round() as usize;
    let mut coarse = [0u64; COARSE];
    for &(value, count) in bins {
        coarse[coarse_index(value)] += count;
    }
    let total: u64 = coarse.iter().sum();
    // The last coarse bin of the background lobe counted from one end: its peak,
    // then down its flank while the counts keep falling (up to the valley before
    // the anatomy) and stay above 1/32 of the peak (where the lobe has ended,
    // when anatomy follows without a valley).
    let lobe_end = |count: &dyn Fn(usize) -> u64| {
        let peak = (0..EDGE).max_by_key(|&i| count(i))?;
        let peak_count = count(peak);
        if peak_count * 10 < total {
            return None;
        }
        let mut end = peak;
        while end + 1 < COARSE && count(end + 1) <= count(end) && count(end + 1) * 32 >= peak_count
        {
            end += 1;
        }
        Some(end)
    };
    let low_end = lobe_end(&|i| coarse[i]);
    let high_end = lobe_end(&|i| coarse[COARSE - 1 - i]).map(|end| COARSE - 1 - end);
    let start = low_end.map_or(0, |end| {
        bins.partition_point(|&(value, _)| coarse_index(value) <= end)
    });
    let stop = high_end.map_or(bins.len(), |end| {
        bins.partition_point(|&(value, _)| coarse_index(value) < end)
    });
    if start >= stop {
        return bins;
    }
    let kept = &bins[start..stop];
    let kept_total: u64 = kept.iter().map(|&(_, count)| count).sum();
    if kept_total * 20 < total { bins } else { kept }
}

fn encode(
    pixels: &[u8],
    width: u32,
    height: u32,
    color: ExtendedColorType,
    format: OutputFormat,
    quality: u8,
) -> Result<Vec<u8>, PipelineError> {
    let mut out = Vec::new();
    let written = match format {
        OutputFormat::Jpeg => JpegEncoder::new_with_quality(&mut out, quality)
            .write_image(pixels, width, height, color),
        // Fast compression: PNG output is for exact values, not small files, and
        // the default level costs several times as long.
        OutputFormat::Png | OutputFormat::Png16 => {
            PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
                .write_image(pixels, width, height, color)
        }
        OutputFormat::Webp => {
            WebPEncoder::new_lossless(&mut out).write_image(pixels, width, height, color)
        }
    };
    written.map_err(PipelineError::Encode)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use dicom_dictionary_std::tags;

    use super::*;
    use crate::render::meta::PresentationLutShape;

    const CORPUS: &str = "/work/shared/corpus/files";

    /// With Png16 output, stored values below 32768 come out unchanged:
    /// ((x − 32768)/65536 + 0.5) · 65535 = x − x/65536.
    const IDENTITY16: Window = Window {
        center: 32768.0,
        width: 65536.0,
        function: VoiFunction::LinearExact,
    };

    fn gray(width: u32, height: u32, data: Vec<u16>) -> Frame {
        Frame {
            width,
            height,
            samples: Samples::Gray {
                data,
                signed: false,
            },
        }
    }

    fn signed(width: u32, height: u32, values: &[i16]) -> Frame {
        Frame {
            width,
            height,
            samples: Samples::Gray {
                data: values.iter().map(|&v| v as u16).collect(),
                signed: true,
            },
        }
    }

    fn meta(bits_stored: u16) -> ImageMeta {
        ImageMeta {
            bits_stored,
            ..ImageMeta::default()
        }
    }

    fn window(center: f64, width: f64, function: VoiFunction) -> Window {
        Window {
            center,
            width,
            function,
        }
    }

    fn params(
        format: OutputFormat,
        window: Option<Window>,
        viewport: Option<&str>,
    ) -> RenderParams {
        RenderParams {
            window,
            viewport: viewport.map(|v| parse_viewport(v).unwrap()),
            quality: None,
            format,
        }
    }

    /// Renders to 8-bit PNG and decodes: (width, height, pixels).
    fn render8(frame: &Frame, meta: &ImageMeta, params: RenderParams) -> (u32, u32, Vec<u8>) {
        let params = RenderParams {
            format: OutputFormat::Png,
            ..params
        };
        let image = image::load_from_memory(&render(frame, meta, &params).unwrap()).unwrap();
        (image.width(), image.height(), image.to_luma8().into_raw())
    }

    fn render16(frame: &Frame, meta: &ImageMeta, params: RenderParams) -> (u32, u32, Vec<u16>) {
        let params = RenderParams {
            format: OutputFormat::Png16,
            ..params
        };
        let image = image::load_from_memory(&render(frame, meta, &params).unwrap()).unwrap();
        let luma = image.as_luma16().expect("a 16-bit grayscale PNG");
        (image.width(), image.height(), luma.as_raw().clone())
    }

    fn pixels8(frame: &Frame, meta: &ImageMeta, window: Option<Window>) -> Vec<u8> {
        render8(frame, meta, params(OutputFormat::Png, window, None)).2
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn linear_window_boundaries() {
        // c = 40, w = 400: c − 0.5 − (w − 1)/2 = −160, c − 0.5 + (w − 1)/2 = 239.
        let brain = window(40.0, 400.0, VoiFunction::Linear);
        assert_eq!(brain.apply(-1000.0), 0.0);
        assert_eq!(brain.apply(-160.0), 0.0);
        // ((−159 − 39.5)/399 + 0.5) · 255 = 0.639098
        assert!((brain.apply(-159.0) * 255.0 - 0.639_098).abs() < 1e-6);
        assert!(close(brain.apply(39.5), 0.5));
        assert!(close(brain.apply(239.0), 1.0));
        assert_eq!(brain.apply(239.5), 1.0);
        // w = 1 is a threshold at c − 0.5.
        let threshold = window(100.0, 1.0, VoiFunction::Linear);
        assert_eq!(threshold.apply(99.5), 0.0);
        assert_eq!(threshold.apply(99.51), 1.0);
    }

    #[test]
    fn linear_exact_window_boundaries() {
        // c − w/2 = −160, c + w/2 = 240.
        let brain = window(40.0, 400.0, VoiFunction::LinearExact);
        assert_eq!(brain.apply(-160.0), 0.0);
        assert!(close(brain.apply(-159.0), 0.0025));
        assert!(close(brain.apply(40.0), 0.5));
        assert!(close(brain.apply(240.0), 1.0));
        assert_eq!(brain.apply(240.5), 1.0);
    }

    #[test]
    fn sigmoid_window_values() {
        let brain = window(40.0, 400.0, VoiFunction::Sigmoid);
        assert!(close(brain.apply(40.0), 0.5));
        // 1 / (1 + e^∓2) at c ± w/2.
        assert!(close(brain.apply(240.0), 0.880_797_077_977_882_3));
        assert!(close(brain.apply(-160.0), 0.119_202_922_022_117_57));
    }

    #[test]
    fn monochrome1_and_presentation_lut_shape() {
        let frame = gray(2, 1, vec![0, 255]);
        let ramp = Some(window(128.0, 256.0, VoiFunction::Linear));
        let cases = [
            ("MONOCHROME2", None, [0, 255]),
            ("MONOCHROME2", Some(PresentationLutShape::Inverse), [255, 0]),
            ("MONOCHROME1", None, [255, 0]),
            // INVERSE is MONOCHROME1's own inversion (PS3.3 C.8.11.3), not a second one.
            ("MONOCHROME1", Some(PresentationLutShape::Inverse), [255, 0]),
            (
                "MONOCHROME1",
                Some(PresentationLutShape::Identity),
                [0, 255],
            ),
        ];
        for (photometric, shape, expected) in cases {
            let meta = ImageMeta {
                photometric_interpretation: photometric.to_owned(),
                presentation_lut_shape: shape,
                ..meta(8)
            };
            assert_eq!(
                pixels8(&frame, &meta, ramp),
                expected,
                "{photometric} {shape:?}"
            );
        }
    }

    #[test]
    fn rescale_to_hu_then_window() {
        // Stored + (−1024) = HU: −1024, 0, 40, 400, 239.
        let frame = gray(5, 1, vec![0, 1024, 1064, 1424, 1263]);
        let ct = ImageMeta {
            rescale_intercept: -1024.0,
            windows: vec![window(40.0, 400.0, VoiFunction::Linear)],
            ..meta(12)
        };
        // 0 HU: ((0 − 39.5)/399 + 0.5) · 255 = 102.26; 40 HU: 127.82.
        assert_eq!(pixels8(&frame, &ct, None), [0, 102, 128, 255, 255]);
        // The request's window wins over the dataset's.
        let bone = Some(window(0.5, 2001.0, VoiFunction::Linear));
        assert_eq!(pixels8(&frame, &ct, bone), [0, 128, 133, 179, 158]);
    }

    #[test]
    fn signed_values_window_right() {
        let frame = signed(5, 1, &[-1000, -500, 0, 500, 1000]);
        let meta = ImageMeta {
            signed: true,
            ..meta(16)
        };
        // c − 0.5 ∓ (w − 1)/2 = ∓1000.
        let full = Some(window(0.5, 2001.0, VoiFunction::Linear));
        assert_eq!(pixels8(&frame, &meta, full), [0, 64, 128, 191, 255]);

        let ramp: Vec<i16> = (0..100 * 100)
            .map(|i| ((i % 100) as f64 * 2000.0 / 99.0 - 1000.0).round() as i16)
            .collect();
        let auto = auto_window(&signed(100, 100, &ramp), &meta).unwrap();
        assert!(auto.center.abs() < 25.0, "{auto:?}");
        assert!((1800.0..2000.0).contains(&auto.width), "{auto:?}");
    }

    #[test]
    fn padding_renders_black_and_is_ignored() {
        let frame = gray(5, 1, vec![0, 5, 10, 500, 1000]);
        let padded = ImageMeta {
            pixel_padding_value: Some(0),
            pixel_padding_range_limit: Some(10),
            ..meta(12)
        };
        let exact = Some(window(500.0, 1000.0, VoiFunction::LinearExact));
        assert_eq!(pixels8(&frame, &padded, exact), [0, 0, 0, 128, 255]);
        // Black in MONOCHROME1 too, where everything else is inverted.
        let inverted = ImageMeta {
            photometric_interpretation: "MONOCHROME1".to_owned(),
            ..padded.clone()
        };
        assert_eq!(pixels8(&frame, &inverted, exact), [0, 0, 0, 128, 0]);

        // Resampling neither averages padding in nor lets it bleed out.
        let row = gray(4, 1, vec![0, 1000, 1000, 1000]);
        let one = params(OutputFormat::Png, exact, Some("1,1"));
        assert_eq!(render8(&row, &padded, one.clone()).2, [255]);
        let mostly_padding = gray(4, 1, vec![0, 0, 0, 1000]);
        assert_eq!(render8(&mostly_padding, &padded, one).2, [0]);

        // A field of padding with some anatomy: only the anatomy is windowed.
        let data = (0..100 * 100)
            .map(|i| {
                if i % 100 < 70 {
                    0
                } else {
                    1000 + (i % 100) as u16
                }
            })
            .collect();
        let auto = auto_window(&gray(100, 100, data), &padded).unwrap();
        assert!(auto.center - auto.width / 2.0 >= 999.0, "{auto:?}");
    }

    #[test]
    fn automatic_window_ignores_background_and_collimation() {
        // A mammogram: 60 % noisy background near 50, breast tissue 1000..3000.
        let mammogram = (0..200 * 200)
            .map(|i| {
                let (x, y) = (i % 200, i / 200);
                if x < 120 {
                    45 + ((x * 7 + y * 13) % 11) as u16
                } else {
                    1000 + ((x - 120) * 25) as u16
                }
            })
            .collect();
        let auto = auto_window(&gray(200, 200, mammogram), &meta(12)).unwrap();
        let (low, high) = (
            auto.center - auto.width / 2.0,
            auto.center + auto.width / 2.0,
        );
        assert!(low >= 900.0 && high <= 3100.0, "{auto:?}");

        // A radiograph: collimated band at 4095 around anatomy 500..2500.
        let radiograph = (0..200 * 200)
            .map(|i| {
                let (x, y) = (i % 200, i / 200);
                if !(20..180).contains(&x) || !(20..180).contains(&y) {
                    4095
                } else {
                    500 + ((x - 20) * 2000 / 160) as u16
                }
            })
            .collect();
        let auto = auto_window(&gray(200, 200, radiograph), &meta(12)).unwrap();
        let (low, high) = (
            auto.center - auto.width / 2.0,
            auto.center + auto.width / 2.0,
        );
        assert!(low >= 450.0 && high <= 2600.0, "{auto:?}");

        // A segmentation: 8 % object on background, both must stay visible.
        let mask = gray(10, 10, (0..100).map(|i| u16::from(i % 25 < 2)).collect());
        let rendered = pixels8(&mask, &meta(1), None);
        assert_eq!((rendered[0], rendered[2]), (255, 0));
        // A blank image is mid-grey.
        assert_eq!(pixels8(&gray(2, 2, vec![7; 4]), &meta(12), None), [128; 4]);
    }

    #[test]
    fn stored_or_computed_automatic_window_is_the_fallback() {
        let frame = gray(2, 1, vec![100, 200]);
        let stored = ImageMeta {
            auto_window: Some(window(150.0, 100.0, VoiFunction::LinearExact)),
            ..meta(12)
        };
        assert_eq!(pixels8(&frame, &stored, None), [0, 255]);
        // Computed now: the two values become the ends.
        assert_eq!(pixels8(&frame, &meta(12), None), [0, 255]);
        // A dataset window comes before either.
        let windowed = ImageMeta {
            windows: vec![window(100.0, 400.0, VoiFunction::LinearExact)],
            ..stored
        };
        assert_eq!(pixels8(&frame, &windowed, None), [128, 191]);
    }

    #[test]
    fn viewport_fits_and_keeps_aspect_ratio() {
        let mammogram = Frame {
            width: 4096,
            height: 3328,
            samples: Samples::Gray {
                data: Vec::new(),
                signed: false,
            },
        };
        let fit = |viewport: &str| {
            let viewport = parse_viewport(viewport).unwrap();
            let geometry = Geometry::new(&mammogram, &meta(16), Some(&viewport)).unwrap();
            (geometry.x.out, geometry.y.out)
        };
        assert_eq!(fit("1024,1024"), (1024, 832));
        assert_eq!(fit("2000,500"), (615, 500));
        assert_eq!(fit("8192,8192"), (8192, 6656));

        let ramp = gray(
            409,
            333,
            (0..409 * 333).map(|i| (i % 4096) as u16).collect(),
        );
        let small = params(OutputFormat::Png, None, Some("100,100"));
        let (width, height, _) = render8(&ramp, &meta(12), small);
        assert_eq!((width, height), (100, 81));
        // Enlarging fits as well.
        let tiny = gray(10, 5, vec![7; 50]);
        let large = params(OutputFormat::Png, None, Some("40,40"));
        let (width, height, _) = render8(&tiny, &meta(12), large);
        assert_eq!((width, height), (40, 20));
    }

    #[test]
    fn region_crops_and_negative_extent_flips() {
        let frame = gray(4, 2, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        let crop = |viewport: &str, meta: &ImageMeta| {
            render16(
                &frame,
                meta,
                params(OutputFormat::Png16, Some(IDENTITY16), Some(viewport)),
            )
            .2
        };
        assert_eq!(crop("2,2,1,0,2,2", &meta(16)), [2, 3, 6, 7]);
        assert_eq!(crop("2,2,1,0,-2,2", &meta(16)), [3, 2, 7, 6]);
        assert_eq!(crop("2,2,1,0,2,-2", &meta(16)), [6, 7, 2, 3]);
        // Partly outside: clipped.
        assert_eq!(crop("1,2,3,0,5,2", &meta(16)), [4, 8]);
        // The region is in original-image pixels when the frame is a preview.
        let original = ImageMeta {
            columns: 8,
            rows: 4,
            ..meta(16)
        };
        assert_eq!(crop("2,2,2,0,4,4", &original), [2, 3, 6, 7]);

        let outside = params(OutputFormat::Png, None, Some("2,2,10,10,2,2"));
        let error = render(&frame, &meta(16), &outside).unwrap_err();
        assert!(error.to_string().contains("outside the image"), "{error}");
    }

    #[test]
    fn shutters_paint_outside_black() {
        let frame = gray(10, 10, vec![1000; 100]);
        let visible = Some(window(500.0, 1000.0, VoiFunction::LinearExact));
        let rectangle = ImageMeta {
            shutters: vec![Shutter::Rectangular {
                left: 3,
                right: 8,
                upper: 2,
                lower: 9,
            }],
            ..meta(12)
        };
        let out = pixels8(&frame, &rectangle, visible);
        let at = |x: usize, y: usize| out[y * 10 + x];
        assert_eq!((at(1, 5), at(2, 5), at(7, 5), at(8, 5)), (0, 255, 255, 0));
        assert_eq!((at(5, 0), at(5, 1), at(5, 8), at(5, 9)), (0, 255, 255, 0));

        let circle = ImageMeta {
            shutters: vec![Shutter::Circular {
                center_row: 5,
                center_column: 5,
                radius: 2,
            }],
            ..meta(12)
        };
        let out = pixels8(&frame, &circle, visible);
        let at = |x: usize, y: usize| out[y * 10 + x];
        assert_eq!((at(4, 4), at(4, 6), at(4, 7), at(6, 6)), (255, 255, 0, 0));

        // Bounds scale with the image: column 3 starts at output x 4 when doubled.
        let doubled = params(OutputFormat::Png, visible, Some("20,20"));
        let (_, _, out) = render8(&frame, &rectangle, doubled);
        assert_eq!((out[10 * 20 + 3], out[10 * 20 + 4]), (0, 255));
    }

    #[test]
    fn modality_lut_sequence_from_real_file() {
        let path = Path::new(CORPUS).join("pydicom-data__mlut_18.dcm");
        if !path.exists() {
            println!("SKIPPED: real DICOM corpus not found at {CORPUS}");
            return;
        }
        let object = dicom_object::open_file(&path).unwrap();
        let meta = ImageMeta::from_object(&object);
        let lut = meta.modality_lut.as_ref().expect("a Modality LUT");
        assert_eq!(
            (lut.first_mapped, lut.data.len(), lut.bits),
            (-2048, 4096, 16)
        );
        // Entries as dcmdump +L lists them.
        let entries = [
            (-2048, 0),
            (-2047, 16),
            (-1, 32759),
            (0, 32776),
            (2047, 65535),
        ];
        for (input, entry) in entries {
            assert_eq!(lut.lookup(input), entry);
        }
        // 12 bits stored, signed: mask and sign-extend as the decoder does.
        let bytes = object
            .element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap();
        let stored: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|pair| {
                let v = u16::from_le_bytes([pair[0], pair[1]]) & 0x0FFF;
                (if v & 0x0800 != 0 { v | 0xF000 } else { v }) as i16
            })
            .collect();
        let frame = signed(meta.columns, meta.rows, &stored);
        let (_, _, out) = render16(
            &frame,
            &meta,
            params(OutputFormat::Png16, Some(IDENTITY16), None),
        );
        for (&value, &rendered) in stored.iter().zip(&out) {
            let entry = f64::from(lut.lookup(i64::from(value)));
            assert_eq!(f64::from(rendered), (entry / 65536.0 * 65535.0).round());
        }
    }

    #[test]
    fn voi_lut_sequence_from_real_file() {
        let path = Path::new(CORPUS).join("pydicom-data__vlut_04.dcm");
        if !path.exists() {
            println!("SKIPPED: real DICOM corpus not found at {CORPUS}");
            return;
        }
        let object = dicom_object::open_file(&path).unwrap();
        let meta = ImageMeta::from_object(&object);
        let lut = meta.voi_lut.as_ref().expect("a VOI LUT");
        assert_eq!((lut.first_mapped, lut.data.len(), lut.bits), (0, 256, 16));
        let bytes = object
            .element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap();
        let frame = gray(
            meta.columns,
            meta.rows,
            bytes.iter().map(|&b| u16::from(b)).collect(),
        );
        // No window in the dataset or the request: the VOI LUT applies.
        let out = pixels8(&frame, &meta, None);
        for (&value, &rendered) in bytes.iter().zip(&out) {
            let entry = f64::from(lut.data[usize::from(value)]);
            assert_eq!(f64::from(rendered), (entry / 65535.0 * 255.0).round());
        }
    }

    #[test]
    fn parsers_refuse_garbage() {
        let refused = [
            (parse_window("abc").err(), "window"),
            (parse_window("40").err(), "window"),
            (parse_window("40,400,cubic").err(), "function"),
            (parse_window("NaN,400,linear").err(), "center"),
            (parse_window("40,inf,linear").err(), "width"),
            (parse_window("40,-1,linear").err(), "positive"),
            (parse_window("40,0,sigmoid").err(), "positive"),
            (parse_window("40,0.5,linear").err(), "at least 1"),
            (parse_viewport("0,0").err(), "vw"),
            (parse_viewport("99999999,1").err(), "vw"),
            (parse_viewport("abc").err(), "viewport"),
            (parse_viewport("1,2,3").err(), "viewport"),
            (parse_viewport("10,10,-1,0,5,5").err(), "sx"),
            (parse_viewport("10,10,0,0,0,5").err(), "sw"),
            (parse_viewport("10,10,0,x,5,5").err(), "sy"),
            (parse_quality("0").err(), "quality"),
            (parse_quality("101").err(), "quality"),
            (parse_quality("abc").err(), "quality"),
            (parse_quality("").err(), "quality"),
            (parse_quality("50.5").err(), "quality"),
        ];
        for (error, word) in refused {
            let error = error.expect("refused").to_string();
            assert!(error.contains(word), "{error:?} should mention {word}");
        }
        let long = "x".repeat(10_000);
        assert!(parse_window(&long).unwrap_err().to_string().len() < 200);
    }

    #[test]
    fn parsers_accept_the_standard_forms() {
        assert_eq!(
            parse_window("40,400,linear").unwrap(),
            window(40.0, 400.0, VoiFunction::Linear)
        );
        assert_eq!(
            parse_window(" -600 , 1500 , LINEAR-EXACT ").unwrap(),
            window(-600.0, 1500.0, VoiFunction::LinearExact)
        );
        assert_eq!(
            parse_window("40,400,sigmoid").unwrap().function,
            VoiFunction::Sigmoid
        );
        assert_eq!(
            parse_window("40,400").unwrap().function,
            VoiFunction::Linear
        );
        assert_eq!(
            parse_viewport("512,256").unwrap(),
            Viewport {
                width: 512,
                height: 256,
                region: None
            }
        );
        assert_eq!(
            parse_viewport("512,512,10,20,-100,200").unwrap().region,
            Some(Region {
                x: 10,
                y: 20,
                w: -100,
                h: 200
            })
        );
        assert_eq!(parse_quality(" 75 ").unwrap(), 75);
        assert_eq!(parse_quality("100").unwrap(), 100);
    }

    #[test]
    fn render_refuses_inconsistent_input() {
        let short = gray(4, 4, vec![0; 3]);
        assert!(matches!(
            render(&short, &meta(12), &RenderParams::default()),
            Err(PipelineError::Invalid(_))
        ));
        let frame = gray(2, 2, vec![0; 4]);
        let bad_quality = RenderParams {
            quality: Some(0),
            ..RenderParams::default()
        };
        assert!(render(&frame, &meta(12), &bad_quality).is_err());
        let bad_window = RenderParams {
            window: Some(window(0.0, -5.0, VoiFunction::Sigmoid)),
            ..RenderParams::default()
        };
        assert!(render(&frame, &meta(12), &bad_window).is_err());
    }

    #[test]
    fn png16_holds_16_bit_values() {
        let frame = gray(3, 1, vec![0, 1000, 30000]);
        let (_, _, out) = render16(
            &frame,
            &meta(16),
            params(OutputFormat::Png16, Some(IDENTITY16), None),
        );
        assert_eq!(out, [0, 1000, 30000]);
    }

    #[test]
    fn jpeg_and_webp_decode_to_the_viewport_size() {
        let ramp = gray(
            300,
            200,
            (0..300 * 200).map(|i| (i % 300) as u16 * 10).collect(),
        );
        let colour = Frame {
            width: 300,
            height: 200,
            samples: Samples::Rgb8((0..300 * 200 * 3).map(|i| (i % 251) as u8).collect()),
        };
        for frame in [&ramp, &colour] {
            for format in [OutputFormat::Jpeg, OutputFormat::Webp, OutputFormat::Png] {
                let bytes =
                    render(frame, &meta(12), &params(format, None, Some("150,150"))).unwrap();
                let image = image::load_from_memory(&bytes).unwrap();
                assert_eq!((image.width(), image.height()), (150, 100), "{format:?}");
            }
        }
    }

    #[test]
    fn downsample_averages_stored_values() {
        let frame = signed(4, 1, &[-100, 100, -1, -3]);
        let small = downsample(&frame, 2);
        assert_eq!(small, signed(2, 1, &[0, -2]));
        let extremes = downsample(&gray(2, 1, vec![0, 65535]), 1);
        assert_eq!(extremes, gray(1, 1, vec![32768]));
        let colour = Frame {
            width: 4,
            height: 2,
            samples: Samples::Rgb8([[0, 10, 200]; 8].concat()),
        };
        let small = downsample(&colour, 2);
        assert_eq!((small.width, small.height), (2, 1));
        assert_eq!(small.samples, Samples::Rgb8([[0, 10, 200]; 2].concat()));
        assert_eq!(downsample(&frame, 4), frame);
    }

    /// Not a test: measures `render` for a mammogram-sized frame. Run with
    /// `cargo test --release --lib render::pipeline -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn render_time_mammogram() {
        let (width, height) = (4096u32, 3328u32);
        let data: Vec<u16> = (0..width * height)
            .map(|i| {
                let (x, y) = (i % width, i / width);
                ((x * 3 + y * 5) % 4096 + (x ^ y) % 97) as u16
            })
            .collect();
        let frame = gray(width, height, data);
        let meta = meta(12);
        let params = params(OutputFormat::Jpeg, None, Some("1024,1024"));
        for _ in 0..2 {
            render(&frame, &meta, &params).unwrap();
        }
        let runs = 10;
        let start = std::time::Instant::now();
        for _ in 0..runs {
            render(&frame, &meta, &params).unwrap();
        }
        println!(
            "render 4096x3328 -> 1024 JPEG: {:?} per frame",
            start.elapsed() / runs
        );
    }
}
