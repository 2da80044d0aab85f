//! Instance container: encode/decode speed and storage ratio per codec, on a real
//! CR (pydicom-data RG1_UNCR, 1955×1841 16-bit; skipped when the corpus is absent)
//! and generated radiographs at real size (aina-sample: a 3328×4096 mammogram, a
//! 2048² fluorography, a 2500×3000 DX chest); then, when dcmtk is installed, the
//! same files through CharLS (`dcmcjpls --encode-lossless`) for size and speed.
//!
//! Run: `cargo bench --bench container -- --warm-up-time 1 --measurement-time 3`
//! (or `-- nomatch` for the printed tables alone). The tables print once to
//! stdout; criterion measures the times. `ContainerOptions::default()` (MED +
//! zig-zag + byte split + zstd-1) was chosen from these numbers: the best ratio on
//! the real radiograph, zstd-3 buys nothing after the predictor, and it stores
//! within 4–8% of CharLS's lossless JPEG-LS at 10–18× its speed. The numbers are
//! in docs/benchmarks.md.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use aina::ingest::layout::{self, FileLayout, PixelLayout};
use aina::store::container::{self, ContainerOptions, Predictor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
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

/// Generated radiographs at real size (aina-sample, seed 2026): a 4096×3328
/// mammogram, a 2048² fluorography and a 3000×2500 DX chest.
fn generated() -> Vec<Image> {
    let opts = aina_sample::Options {
        seed: 2026,
        scale: 1.0,
    };
    let patient = &aina_sample::patients()[3];
    let picks = [
        (
            "generated MG 3328x4096",
            aina_sample::mammography(&opts, patient, "20250212").remove(0),
        ),
        (
            "generated CR 2048x2048",
            aina_sample::fluorography(&opts, patient, "20250212").remove(0),
        ),
        (
            "generated DX 2500x3000",
            aina_sample::chest_xray(&opts, patient, "20250212").remove(0),
        ),
    ];
    picks
        .into_iter()
        .map(|(name, g)| Image {
            name,
            layout: layout::locate(&g.bytes).expect("generated files locate"),
            bytes: g.bytes,
        })
        .collect()
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

/// The same files through CharLS (dcmtk's `dcmcjpls --encode-lossless`), when
/// dcmtk is installed: whole-file size and wall time, against our default
/// container. CharLS's time includes process start and file I/O (a few ms).
fn print_charls(images: &[Image]) {
    if std::process::Command::new("dcmcjpls")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("dcmcjpls (dcmtk) not found: no JPEG-LS comparison\n");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    println!(
        "{:<24} {:>11} {:>11} {:>8} {:>10} {:>10} {:>7}",
        "image", "ours bytes", "JPEG-LS", "ours/JLS", "ours MB/s", "JLS MB/s", "speed×"
    );
    for img in images {
        let sha: [u8; 32] = Sha256::digest(&img.bytes).into();
        let o = ContainerOptions::default();
        let mut ours_secs = f64::MAX;
        let mut ours_len = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let (obj, _) = container::encode(&img.bytes, &img.layout, sha, &o).unwrap();
            ours_secs = ours_secs.min(t.elapsed().as_secs_f64());
            ours_len = obj.len();
        }
        let input = dir.path().join("in.dcm");
        let output = dir.path().join("out.dcm");
        std::fs::write(&input, &img.bytes).unwrap();
        let mut jls_secs = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let status = std::process::Command::new("dcmcjpls")
                .arg("--encode-lossless")
                .arg(&input)
                .arg(&output)
                .status()
                .unwrap();
            jls_secs = jls_secs.min(t.elapsed().as_secs_f64());
            assert!(status.success());
        }
        let jls_len = std::fs::metadata(&output).unwrap().len() as usize;
        println!(
            "{:<24} {:>11} {:>11} {:>7.1}% {:>10.0} {:>10.0} {:>7.1}",
            img.name,
            ours_len,
            jls_len,
            ours_len as f64 * 100.0 / jls_len as f64,
            mbps(img.bytes.len(), ours_secs),
            mbps(img.bytes.len(), jls_secs),
            jls_secs / ours_secs
        );
    }
    println!();
}

fn bench(c: &mut Criterion) {
    let mut images: Vec<Image> = real_cr().into_iter().collect();
    images.extend(generated());
    print_table(&images);
    print_twins();
    print_charls(&images);
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
