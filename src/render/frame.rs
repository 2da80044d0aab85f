//! The decoded frame: what `decode` produces and `pipeline` consumes.

use serde::{Deserialize, Serialize};

/// Decoded pixels of one frame, full resolution or downsampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub samples: Samples,
}

/// Pixel samples, row-major, top-left first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Samples {
    /// One sample per pixel: the stored values, masked to Bits Stored. When
    /// `signed` (Pixel Representation 1) each `u16` holds the two's-complement bit
    /// pattern of the sign-extended value (read it with `v as i16`). Modality and
    /// VOI LUTs are not applied. 1-bit and 8-bit data are widened to `u16`.
    Gray { data: Vec<u16>, signed: bool },
    /// Three 8-bit samples per pixel, R G B interleaved: colour data after YBR → RGB
    /// conversion and Palette Color lookup.
    Rgb8(Vec<u8>),
}

impl Frame {
    /// Number of pixels.
    pub fn pixels(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// Whether the sample count matches the dimensions (a frame made anywhere
    /// else than `decode` is checked with this before rendering).
    pub fn is_consistent(&self) -> bool {
        match &self.samples {
            Samples::Gray { data, .. } => data.len() == self.pixels(),
            Samples::Rgb8(data) => data.len() == self.pixels() * 3,
        }
    }
}
