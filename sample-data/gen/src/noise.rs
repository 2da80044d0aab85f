//! Cheap, deterministic noise for synthetic radiographs.
//!
//! Two kinds: smooth low-frequency texture ([`Fbm`], value noise on a small
//! random lattice, sampled with smoothstep-weighted bilinear interpolation) for
//! tissue structure, and per-pixel quantum noise ([`gaussish`]) hashed from the
//! pixel position. Both are pure functions of their seed and coordinates, so a
//! picture is the same whichever rayon thread paints which row.
//! Not here: anything that knows about anatomy.

use rand::Rng;

/// SplitMix64 finaliser: a fast, well-mixed 64-bit hash.
#[inline]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Roughly standard-normal noise for pixel (`x`, `y`): the sum of four 16-bit
/// uniforms from one hash (Irwin–Hall, variance 4/12), rescaled to unit variance.
#[inline]
pub(crate) fn gaussish(seed: u64, x: u32, y: u32) -> f32 {
    let h = mix64(seed ^ ((u64::from(y) << 32) | u64::from(x)));
    let s = (h & 0xFFFF) + ((h >> 16) & 0xFFFF) + ((h >> 32) & 0xFFFF) + (h >> 48);
    (s as f32 / 65535.0 - 2.0) * 1.732_050_8
}

/// Hermite smoothstep from `e0` to `e1` (either order).
#[inline]
pub(crate) fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Value noise on an `(n+1)²` lattice spanning the unit square, values in −1..1.
struct ValueNoise {
    n: usize,
    lattice: Vec<f32>,
}

impl ValueNoise {
    fn new(rng: &mut impl Rng, n: usize) -> Self {
        let lattice = (0..(n + 1) * (n + 1))
            .map(|_| rng.random::<f32>() * 2.0 - 1.0)
            .collect();
        ValueNoise { n, lattice }
    }

    #[inline]
    fn sample(&self, u: f32, v: f32) -> f32 {
        let n = self.n;
        let fx = u.clamp(0.0, 1.0) * n as f32;
        let fy = v.clamp(0.0, 1.0) * n as f32;
        let ix = (fx as usize).min(n - 1);
        let iy = (fy as usize).min(n - 1);
        let tx = fx - ix as f32;
        let ty = fy - iy as f32;
        let tx = tx * tx * (3.0 - 2.0 * tx);
        let ty = ty * ty * (3.0 - 2.0 * ty);
        let row = n + 1;
        let a = self.lattice[iy * row + ix];
        let b = self.lattice[iy * row + ix + 1];
        let c = self.lattice[(iy + 1) * row + ix];
        let d = self.lattice[(iy + 1) * row + ix + 1];
        let top = a + (b - a) * tx;
        let bottom = c + (d - c) * tx;
        top + (bottom - top) * ty
    }
}

/// A few octaves of value noise ("fractal Brownian motion"), roughly −1..1.
pub(crate) struct Fbm {
    octaves: Vec<(ValueNoise, f32)>,
}

impl Fbm {
    /// Octaves with lattice sizes `base`, `2·base`, … and amplitudes halving.
    pub(crate) fn new(rng: &mut impl Rng, base: usize, count: usize) -> Self {
        let mut amplitude = 1.0;
        let mut total = 0.0;
        let mut octaves = Vec::with_capacity(count);
        for i in 0..count {
            octaves.push((ValueNoise::new(rng, base << i), amplitude));
            total += amplitude;
            amplitude *= 0.5;
        }
        for (_, a) in &mut octaves {
            *a /= total;
        }
        Fbm { octaves }
    }

    /// Sample at normalised coordinates (`u`, `v`) in 0..1.
    #[inline]
    pub(crate) fn sample(&self, u: f32, v: f32) -> f32 {
        self.octaves.iter().map(|(o, a)| o.sample(u, v) * a).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn gaussish_has_unit_variance() {
        let n = 100_000;
        let (mut sum, mut sq) = (0.0f64, 0.0f64);
        for i in 0..n {
            let g = f64::from(gaussish(7, i % 1000, i / 1000));
            sum += g;
            sq += g * g;
        }
        let mean = sum / f64::from(n);
        let var = sq / f64::from(n) - mean * mean;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }

    #[test]
    fn fbm_stays_in_range() {
        let fbm = Fbm::new(&mut ChaCha8Rng::seed_from_u64(1), 4, 3);
        for i in 0..=100 {
            for j in 0..=100 {
                let s = fbm.sample(i as f32 / 100.0, j as f32 / 100.0);
                assert!((-1.0..=1.0).contains(&s));
            }
        }
    }
}
