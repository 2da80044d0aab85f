//! Instance container: encode/decode speed and storage ratio per codec, on a real
//! CR (pydicom-data RG1_UNCR, 1955×1841 16-bit; skipped when the corpus is absent)
//! and a seeded synthetic mammogram (3328×4096, 14-bit in 16, breast-shaped, noisy).
//!
//! Run: `cargo bench --bench container -- --warm-up-time 1 --measurement-time 3`.
//! The ratio table (original / stored, with one-shot MB/s) prints once to stdout;
//! criterion measures the times. The default in `ContainerOptions::default()` is
//! chosen from these numbers.
//!
//! Measured (release, 2 shared cores, noisy; criterion MiB/s, encode / frame decode):
//!
//! | image | codec | ratio | encode | decode frame |
//! |---|---|---|---|---|
//! | RG1_UNCR CR | zstd-1 | 1.110 | 331 | 511 |
//! | RG1_UNCR CR | zstd-3 | 1.110 | 265 | 574 |
//! | RG1_UNCR CR | delta+split+zstd-1 | 1.554 | 137–220 | 324 |
//! | RG1_UNCR CR | med+zz+split+zstd-1 | 1.595 | 166–204 | 188 |
//! | RG1_UNCR CR | med+zz+split+zstd-3 | 1.598 | 92–169 | 167 |
//! | synthetic MG | zstd-1 | 1.311 | 219 | 348 |
//! | synthetic MG | zstd-3 | 1.399 | 78 | 479 |
//! | synthetic MG | delta+split+zstd-1 | 1.876 | 324 | 352 |
//! | synthetic MG | med+zz+split+zstd-1 | 1.870 | 276 | 252 |
//! | synthetic MG | med+zz+split+zstd-3 | 1.867 | 251 | 246 |
//!
//! Pixel bytes against compressed twins in the corpus: RG1 MED-1 4 511 921 vs J2K
//! lossless 4 282 752 (105%); emri_small 37 078 vs JPEG-LS 40 386 (92%); MR_small
//! 4 403 vs JPEG-LS 4 430 (99%). MED + zstd-1 is the default: the best ratio on the
//! real radiograph (+2.6% over left delta; the synthetic image's i.i.d. noise has no
//! edges for MED to use), zstd-3 buys nothing after the predictor, and speed stays
//! several times above JPEG-LS/J2K encoders (typically tens of MB/s for 16-bit).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use aina::ingest::layout::{self, FileLayout, PixelLayout};
use aina::store::container::{self, ContainerOptions, Predictor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// The codecs compared: name, zstd level, predictor.
const CODECS: &[(&str, i32, Predictor)] = &[
    ("zstd-1", 1, Predictor::None),
    ("zstd-3", 3, Predictor::None),
    ("delta+split+zstd-1", 1, Predictor::LeftDelta),
    ("med+zz+split+zstd-1", 1, Predictor::Med),
    ("med+zz+split+zstd-3", 3, Predictor::Med),
];

struct Image {
    name: &'static str,
    bytes: Vec<u8>,
    layout: FileLayout,
}

fn real_cr() -> Option<Image> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus/files/pydicom-data__RG1_UNCR.dcm");
    let Ok(bytes) = std::fs::read(&path) else {
        println!("{} absent, skipping the real CR", path.display());
        return None;
    };
    let layout = layout::locate(&bytes).expect("RG1_UNCR locates");
    Some(Image {
        name: "RG1_UNCR CR 1955x1841",
        bytes,
        layout,
    })
}

/// A mammogram-like 14-bit image: a half-ellipse breast against the chest wall
/// (left edge), tissue brighter towards the wall with smooth low-frequency
/// structure, a skin-line fall-off, near-zero background, and Gaussian-ish noise
/// (sum of four uniforms) scaled with signal, as in a quantum-limited detector.
fn synthetic_mammogram() -> Image {
    const ROWS: u16 = 4096;
    const COLS: u16 = 3328;
    let mut rng = ChaCha8Rng::seed_from_u64(0x4D47);
    let header: Vec<u8> = (0..1200u32)
        .map(|i| b"DICOM-ish header "[i as usize % 17])
        .collect();
    let mut bytes = header.clone();
    bytes.reserve(usize::from(ROWS) * usize::from(COLS) * 2 + 64);
    let (cy, ry, rx) = (
        f32::from(ROWS) / 2.0,
        f32::from(ROWS) * 0.46,
        f32::from(COLS) * 0.78,
    );
    for y in 0..ROWS {
        for x in 0..COLS {
            let (fx, fy) = (f32::from(x), f32::from(y));
            let d = ((fx / rx).powi(2) + ((fy - cy) / ry).powi(2)).sqrt();
            let mean = if d < 1.0 {
                let tissue = 9000.0 - 4000.0 * d
                    + 900.0 * (fx * 0.013).sin() * (fy * 0.009).cos()
                    + 400.0 * (fx * 0.041 + fy * 0.017).sin();
                // Skin line: a short fall-off over the last few percent of the radius.
                tissue * ((1.0 - d) * 30.0).min(1.0) + 300.0
            } else {
                300.0
            };
            let noise: f32 = (0..4).map(|_| rng.random::<f32>() - 0.5).sum::<f32>();
            let v = (mean + noise * mean.sqrt() * 1.7).clamp(0.0, 16383.0) as u16;
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    let value_offset = header.len() as u64;
    let frame_len = u64::from(ROWS) * u64::from(COLS) * 2;
    bytes.extend_from_slice(b"trailing elements");
    Image {
        name: "synthetic MG 3328x4096",
        bytes,
        layout: FileLayout {
            meta_end: 132,
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            pixel: PixelLayout::Native {
                value_offset,
                value_len: frame_len,
                frame_len,
                frames: 1,
                rows: ROWS,
                columns: COLS,
                samples_per_pixel: 1,
                bits_allocated: 16,
                little_endian: true,
            },
        },
    }
}

fn options(level: i32, predictor: Predictor) -> ContainerOptions {
    ContainerOptions {
        zstd_level: level,
        predictor,
        ..ContainerOptions::default()
    }
}

fn mbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

/// One-shot table: ratio and a rough speed (best of 3) per codec and image.
fn print_table(images: &[Image]) {
    println!();
    println!(
        "{:<24} {:<22} {:>7} {:>12} {:>12} {:>12}",
        "image", "codec", "ratio", "enc MB/s", "frame MB/s", "all MB/s"
    );
    for img in images {
        let sha: [u8; 32] = Sha256::digest(&img.bytes).into();
        for (name, level, predictor) in CODECS {
            let o = options(*level, *predictor);
            let (mut enc, mut dec, mut all) = (f64::MAX, f64::MAX, f64::MAX);
            let mut ratio = 0.0;
            for _ in 0..3 {
                let t = Instant::now();
                let (obj, index) = container::encode(&img.bytes, &img.layout, sha, &o).unwrap();
                enc = enc.min(t.elapsed().as_secs_f64());
                ratio = img.bytes.len() as f64 / obj.len() as f64;
                let r = index.frame_stored_range(1).unwrap();
                let t = Instant::now();
                let frame = index
                    .decode_frame(1, &obj[r.start as usize..r.end as usize])
                    .unwrap();
                dec = dec.min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                let back = container::decode_all(&obj).unwrap();
                all = all.min(t.elapsed().as_secs_f64());
                assert_eq!(back.len(), img.bytes.len());
                black_box(frame);
            }
            println!(
                "{:<24} {:<22} {:>7.3} {:>12.0} {:>12.0} {:>12.0}",
                img.name,
                name,
                ratio,
                mbps(img.bytes.len(), enc),
                mbps(img.bytes.len(), dec),
                mbps(img.bytes.len(), all),
            );
        }
    }
    println!("(frame = one frame decode; all = whole-object decode with SHA-256 check)");
    println!();
}

/// Pixel bytes only: our default container's frame segments against the fragments
/// of the same image's lossless-compressed twin in the corpus (JPEG-LS, J2K).
fn print_twins() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/files");
    let twins = [
        (
            "pydicom-data__RG1_UNCR.dcm",
            "pydicom-data__RG1_J2KR.dcm",
            "J2K lossless",
        ),
        (
            "pydicom-data__emri_small.dcm",
            "pydicom-data__emri_small_jpeg_ls_lossless.dcm",
            "JPEG-LS",
        ),
        (
            "pydicom-data__emri_small.dcm",
            "pydicom-data__emri_small_jpeg_2k_lossless.dcm",
            "J2K lossless",
        ),
        (
            "pydicom__MR_small.dcm",
            "pydicom__MR_small_jpeg_ls_lossless.dcm",
            "JPEG-LS",
        ),
        (
            "pydicom__MR_small.dcm",
            "pydicom__MR_small_jp2klossless.dcm",
            "J2K lossless",
        ),
    ];
    println!(
        "{:<34} {:>10} {:>12} {:>12}  twin",
        "native file", "pixels", "ours (med-1)", "twin"
    );
    for (native, twin, kind) in twins {
        let (Ok(n), Ok(t)) = (
            std::fs::read(dir.join(native)),
            std::fs::read(dir.join(twin)),
        ) else {
            continue;
        };
        let nl = layout::locate(&n).unwrap();
        let PixelLayout::Native { value_len, .. } = nl.pixel else {
            continue;
        };
        let (_, index) = container::encode(&n, &nl, [0; 32], &ContainerOptions::default()).unwrap();
        let ours: u64 = index
            .segments
            .iter()
            .filter(|s| s.role != container::Role::Glue)
            .map(|s| s.stored_len)
            .sum();
        let PixelLayout::Encapsulated { fragments, .. } = layout::locate(&t).unwrap().pixel else {
            continue;
        };
        let theirs: u64 = fragments.iter().map(|f| u64::from(f.len)).sum();
        println!(
            "{:<34} {:>10} {:>12} {:>12}  {kind} (ours = {:.1}% of twin size)",
            native,
            value_len,
            ours,
            theirs,
            ours as f64 * 100.0 / theirs as f64
        );
    }
    println!();
}

fn bench(c: &mut Criterion) {
    let mut images: Vec<Image> = real_cr().into_iter().collect();
    images.push(synthetic_mammogram());
    print_table(&images);
    print_twins();
    for img in &images {
        let sha: [u8; 32] = Sha256::digest(&img.bytes).into();
        let mut g = c.benchmark_group(format!("container/{}", img.name));
        g.sample_size(10);
        g.throughput(Throughput::Bytes(img.bytes.len() as u64));
        for (name, level, predictor) in CODECS {
            let o = options(*level, *predictor);
            g.bench_function(BenchmarkId::new("encode", name), |b| {
                b.iter(|| container::encode(black_box(&img.bytes), &img.layout, sha, &o).unwrap())
            });
            let (obj, index) = container::encode(&img.bytes, &img.layout, sha, &o).unwrap();
            let r = index.frame_stored_range(1).unwrap();
            let stored = &obj[r.start as usize..r.end as usize];
            g.bench_function(BenchmarkId::new("decode_frame", name), |b| {
                b.iter(|| index.decode_frame(1, black_box(stored)).unwrap())
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
