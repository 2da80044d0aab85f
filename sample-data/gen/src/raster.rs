//! Attenuation maps evaluated on a coarse lattice and upsampled bilinearly.
//!
//! The anatomy functions cost tens of nanoseconds a point (several noise
//! octaves, square roots); a full-size mammogram has 13.6 million pixels. Their
//! structures are all many pixels wide at scale 1, so they are evaluated once
//! per `step`×`step` block (step up to 4, one per ~512 pixels of the short
//! side) and interpolated; per-pixel quantum noise is added after. Small
//! (test-size) images use step 1, i.e. exact evaluation.
//! Not here: what the map depicts.

use rayon::prelude::*;

/// A map sampled every `step` pixels, covering the image plus one lattice
/// point past each far edge.
pub(crate) struct Lattice {
    step: usize,
    width: usize,
    values: Vec<f32>,
}

impl Lattice {
    /// Evaluate `f(u, v)` (pixel centres normalised to 0..1) for an image of
    /// `columns`×`rows`.
    pub(crate) fn new<F>(columns: u32, rows: u32, f: F) -> Self
    where
        F: Fn(f32, f32) -> f32 + Sync,
    {
        let step = (columns.min(rows) as usize / 512).clamp(1, 4);
        let width = columns as usize / step + 2;
        let height = rows as usize / step + 2;
        let (fw, fh) = (columns as f32, rows as f32);
        let mut values = vec![0.0; width * height];
        values
            .par_chunks_mut(width)
            .enumerate()
            .for_each(|(j, row)| {
                let v = ((j * step) as f32 + 0.5) / fh;
                for (i, value) in row.iter_mut().enumerate() {
                    *value = f(((i * step) as f32 + 0.5) / fw, v);
                }
            });
        Lattice {
            step,
            width,
            values,
        }
    }

    /// Fill one image row: `out(x, value)` for each column `x` in 0..columns.
    #[inline]
    pub(crate) fn row(&self, y: usize, columns: usize, mut out: impl FnMut(usize, f32)) {
        let step = self.step;
        if step == 1 {
            let line = &self.values[y * self.width..][..columns];
            for (x, &value) in line.iter().enumerate() {
                out(x, value);
            }
            return;
        }
        let inv = 1.0 / step as f32;
        let j = y / step;
        let ty = (y % step) as f32 * inv;
        let top = &self.values[j * self.width..][..self.width];
        let bottom = &self.values[(j + 1) * self.width..][..self.width];
        for x in 0..columns {
            let i = x / step;
            let tx = (x % step) as f32 * inv;
            let a = top[i] + (top[i + 1] - top[i]) * tx;
            let b = bottom[i] + (bottom[i + 1] - bottom[i]) * tx;
            out(x, a + (b - a) * ty);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Lattice;

    #[test]
    fn upsampling_is_exact_on_lattice_points_and_linear_between() {
        let map = Lattice::new(2048, 2048, |u, _| u);
        assert_eq!(map.step, 4);
        let mut row = vec![0.0; 2048];
        map.row(5, 2048, |x, v| row[x] = v);
        for (x, v) in row.iter().enumerate() {
            let exact = (x as f32 + 0.5) / 2048.0;
            assert!((v - exact).abs() < 1e-5, "{x}: {v} vs {exact}");
        }
    }
}
