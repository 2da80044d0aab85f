//! End-to-end load benchmark of a running DICOMweb server: STOW-RS ingest,
//! WADO-RS retrieve, metadata and frame latency, QIDO-RS at 10,000 studies and
//! the server's peak memory. It speaks only DICOMweb, so Aina and a peer
//! (Orthanc, see `benches/orthanc/`) are measured by the same client with the
//! same bytes. `benches/compare.sh` runs both; results are in
//! `docs/benchmarks.md`.
//!
//! ```sh
//! # one server (any DICOMweb root); --server-pid samples its RSS from /proc
//! cargo bench --bench load -- --root http://127.0.0.1:8080/dicomweb --name aina \
//!     --server-pid 12345 --json target/load-aina.json
//! cargo bench --bench load -- --root http://127.0.0.1:8042/dicom-web --name orthanc \
//!     --server-pid 23456 --json target/load-orthanc.json
//! # the two side by side, as a Markdown table
//! cargo bench --bench load -- --compare target/load-aina.json target/load-orthanc.json
//! # smoke run with small sizes (about a minute)
//! cargo bench --bench load -- --root http://127.0.0.1:8080/dicomweb --quick
//! ```
//!
//! Other flags: `--skip-qido`, `--studies N` (QIDO archive size, default
//! 10,000). Point it at an empty archive: everything it stores stays there.
//!
//! Data: `aina-sample` with a fixed seed, so pixel data and every attribute
//! but the UIDs are identical from run to run and server to server. Each
//! stored copy gets fresh UIDs (a per-run nonce), so nothing is ever a
//! duplicate: large files have their same-length UIDs patched in place in the
//! header, the 10,000 tiny QIDO studies are re-encoded with dicom-object
//! (names, IDs, dates and modalities vary). All request bodies are built
//! before a phase's clock starts; MB are 10^6 bytes of Part 10 files.
//!
//! Not here: TLS, authentication, DIMSE, rendered images.

#[path = "common/dates.rs"]
mod dates;
use dates::{da, days_from_civil};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aina_sample::{Generated, Options, Patient};
use anyhow::{Context, bail, ensure};
use clap::Parser;
use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::{Deserialize, Serialize};

/// Seed of every generated image: the same bytes for every server.
const SEED: u64 = 2025;
/// Multipart boundary of STOW-RS bodies (never occurs in the generated files'
/// headers; pixel data is binary, and a collision would only fail a request).
const BOUNDARY: &str = "aina-load-bench-3b9d2f0c71e4";
const ACCEPT_DICOM: &str = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";
const ACCEPT_FRAMES: &str =
    "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*";
/// Instances per STOW-RS request when loading the QIDO archive.
const QIDO_BATCH: usize = 100;
/// Time budget of each QIDO query kind, once it has 10 samples.
const QUERY_BUDGET_MS: f64 = 60_000.0;
/// Clients loading the QIDO archive and the 500-instance series.
const LOAD_CLIENTS: usize = 4;

#[derive(Parser, Debug)]
#[command(about = "End-to-end DICOMweb load benchmark (see the module docs)")]
struct Args {
    /// DICOMweb root, e.g. http://127.0.0.1:8080/dicomweb or http://127.0.0.1:8042/dicom-web
    #[arg(long)]
    root: Option<String>,
    /// Label for the report.
    #[arg(long, default_value = "server")]
    name: String,
    /// Skip loading the QIDO archive and the QIDO-RS queries.
    #[arg(long)]
    skip_qido: bool,
    /// Studies in the QIDO archive (default 10,000; 500 with --quick).
    #[arg(long)]
    studies: Option<usize>,
    /// Small sizes for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Server process to sample VmRSS / VmHWM of (/proc/PID/status).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Print two JSON reports side by side instead of running.
    #[arg(long, num_args = 2, value_names = ["A_JSON", "B_JSON"])]
    compare: Option<Vec<PathBuf>>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Scale of the mammography and chest studies posted and retrieved.
    scale: f32,
    /// STOW-RS requests (one study each) per concurrency level.
    stow_requests: usize,
    /// Whole-study retrievals with one client; eight clients do twice as many.
    retrievals: usize,
    metadata_iters: usize,
    series_instances: usize,
    series_iters: usize,
    frame_scale: f32,
    frame_iters: usize,
    studies: usize,
    /// Timed queries per QIDO query kind.
    query_iters: usize,
}

impl Plan {
    fn new(args: &Args) -> Self {
        let mut plan = if args.quick {
            Plan {
                scale: 0.1,
                stow_requests: 8,
                retrievals: 4,
                metadata_iters: 10,
                series_instances: 50,
                series_iters: 5,
                frame_scale: 0.25,
                frame_iters: 5,
                studies: 500,
                query_iters: 10,
            }
        } else {
            Plan {
                scale: 0.5,
                stow_requests: 96,
                retrievals: 48,
                metadata_iters: 100,
                series_instances: 500,
                series_iters: 30,
                frame_scale: 1.0,
                frame_iters: 30,
                studies: 10_000,
                query_iters: 100,
            }
        };
        if let Some(studies) = args.studies {
            plan.studies = studies;
        }
        plan
    }
}

// ---------------------------------------------------------------------------
// Report

/// One measured number.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    /// Stable key, used to line two reports up.
    key: String,
    label: String,
    unit: String,
    /// None when the measurement failed (see `note`).
    value: Option<f64>,
    note: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Report {
    name: String,
    root: String,
    quick: bool,
    unix_time: u64,
    rows: Vec<Row>,
}

impl Report {
    fn push(&mut self, key: &str, label: &str, unit: &str, value: Option<f64>, note: String) {
        let row = Row {
            key: key.to_owned(),
            label: label.to_owned(),
            unit: unit.to_owned(),
            value,
            note,
        };
        println!(
            "  {:<48} {:>10} {:<12} {}",
            row.label,
            fmt_value(row.value),
            row.unit,
            row.note
        );
        self.rows.push(row);
    }

    fn latency(&mut self, key: &str, label: &str, s: &Samples) {
        let note = s.note();
        self.push(
            &format!("{key}_p50"),
            &format!("{label} p50"),
            "ms",
            s.percentile(50.0),
            note.clone(),
        );
        self.push(
            &format!("{key}_p95"),
            &format!("{label} p95"),
            "ms",
            s.percentile(95.0),
            note,
        );
    }

    fn markdown(&self) -> String {
        let mut out = format!(
            "| {} ({}) | value | unit | note |\n|---|---:|---|---|\n",
            self.name, self.root
        );
        for row in &self.rows {
            out += &format!(
                "| {} | {} | {} | {} |\n",
                row.label,
                fmt_value(row.value),
                row.unit,
                row.note.replace('|', "\\|")
            );
        }
        out
    }
}

fn fmt_value(value: Option<f64>) -> String {
    match value {
        None => "—".to_owned(),
        Some(v) if v.abs() >= 100.0 || v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// Two reports side by side, with the ratio A / B.
fn compare(a: &Report, b: &Report) -> String {
    let mut out = format!(
        "| metric | unit | {} | {} | {} / {} |\n|---|---|---:|---:|---:|\n",
        a.name, b.name, a.name, b.name
    );
    let b_rows: BTreeMap<&str, &Row> = b.rows.iter().map(|r| (r.key.as_str(), r)).collect();
    for row in &a.rows {
        let other = b_rows.get(row.key.as_str());
        let other_value = other.and_then(|r| r.value);
        let ratio = match (row.value, other_value) {
            (Some(x), Some(y)) if y != 0.0 => format!("{:.2}", x / y),
            _ => "—".to_owned(),
        };
        // Rows without a number (load average, failures) show their note.
        let cell = |value: Option<f64>, note: Option<&str>| match value {
            Some(_) => fmt_value(value),
            None => note.unwrap_or("—").replace('|', "\\|"),
        };
        out += &format!(
            "| {} | {} | {} | {} | {} |\n",
            row.label,
            row.unit,
            cell(row.value, Some(&row.note)),
            cell(other_value, other.map(|r| r.note.as_str())),
            ratio
        );
    }
    out
}

// ---------------------------------------------------------------------------
// Generated files with cheap fresh UIDs

/// A generated Part 10 file whose Study, Series and SOP Instance UIDs can be
/// replaced in place: the new UIDs have the same length, so no length field
/// changes and only the header (before Pixel Data) is touched.
#[derive(Debug)]
struct Template {
    bytes: Vec<u8>,
    /// Offset of the Pixel Data element: UIDs are patched before it only.
    header_len: usize,
    study: String,
    series: String,
    sop: String,
}

/// The UIDs of one stored copy.
#[derive(Debug, Clone)]
struct Identity {
    study: String,
    series: String,
    sop: String,
}

impl Template {
    fn new(generated: Generated) -> anyhow::Result<Self> {
        let header_len = pixel_data_offset(&generated.bytes)
            .with_context(|| format!("no Pixel Data in {}", generated.file_name))?;
        let template = Template {
            bytes: generated.bytes,
            header_len,
            study: generated.study_instance_uid,
            series: generated.series_instance_uid,
            sop: generated.sop_instance_uid,
        };
        // Self-check: a patched copy must read back with the new UIDs.
        let mut copy = Vec::new();
        let id = template.write_copy(&mut copy, 1, 2);
        let obj = OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .from_reader(&copy[128..])
            .context("reading a patched copy back")?;
        let read = |tag| -> anyhow::Result<String> {
            Ok(obj
                .element(tag)?
                .to_str()?
                .trim_end_matches('\0')
                .to_owned())
        };
        ensure!(
            read(tags::STUDY_INSTANCE_UID)? == id.study,
            "study UID not patched"
        );
        ensure!(
            read(tags::SERIES_INSTANCE_UID)? == id.series,
            "series UID not patched"
        );
        ensure!(
            read(tags::SOP_INSTANCE_UID)? == id.sop,
            "SOP UID not patched"
        );
        ensure!(
            obj.meta().media_storage_sop_instance_uid() == id.sop,
            "media storage SOP UID not patched"
        );
        Ok(template)
    }

    /// Append a copy with fresh UIDs to `out`: Study and Series UIDs derived
    /// from `study_salt`, the SOP Instance UID from `sop_salt`.
    fn write_copy(&self, out: &mut Vec<u8>, study_salt: u64, sop_salt: u64) -> Identity {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let header = &mut out[start..start + self.header_len];
        let id = Identity {
            study: fresh_uid(&self.study, study_salt),
            series: fresh_uid(&self.series, study_salt),
            sop: fresh_uid(&self.sop, sop_salt),
        };
        replace_uid(header, &self.study, &id.study);
        replace_uid(header, &self.series, &id.series);
        replace_uid(header, &self.sop, &id.sop);
        id
    }

    /// Size of the (only) frame: the Pixel Data value.
    fn pixel_bytes(&self) -> usize {
        // Explicit VR OW: tag, VR, 2 reserved bytes, 4-byte length.
        self.bytes.len() - self.header_len - 12
    }
}

/// Offset of the top-level Pixel Data element (7FE0,0010) of an Explicit VR
/// Little Endian file.
fn pixel_data_offset(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(6)
        .position(|w| w[..4] == [0xE0, 0x7F, 0x10, 0x00] && (&w[4..] == b"OW" || &w[4..] == b"OB"))
}

fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A UID as long as `original`, its last (up to 16) digits replaced by a hash
/// of the original and `salt`.
fn fresh_uid(original: &str, salt: u64) -> String {
    let digits = original.len().saturating_sub("2.25.1".len()).min(16);
    let keep = original.len() - digits;
    let value = mix64(fnv1a(original) ^ mix64(salt)) % 10u64.pow(digits as u32);
    format!("{}{value:0digits$}", &original[..keep])
}

/// Replace every whole occurrence of the UID `from` (not part of a longer
/// UID) by `to`, which has the same length.
fn replace_uid(header: &mut [u8], from: &str, to: &str) {
    debug_assert_eq!(from.len(), to.len());
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let uid_char = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_digit() || *b == b'.');
    let mut i = 0;
    while i + from.len() <= header.len() {
        if &header[i..i + from.len()] == from
            && !uid_char(header.get(i + from.len()))
            && (i == 0 || !uid_char(header.get(i - 1)))
        {
            header[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
}

/// A multipart/related body under construction.
struct Body {
    bytes: Vec<u8>,
    /// Part 10 bytes in it (without the multipart framing).
    dicom_bytes: u64,
    instances: u64,
}

impl Body {
    fn new(capacity: usize) -> Self {
        Body {
            bytes: Vec::with_capacity(capacity + 4096),
            dicom_bytes: 0,
            instances: 0,
        }
    }

    fn part(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        self.bytes.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        let start = self.bytes.len();
        write(&mut self.bytes);
        self.dicom_bytes += (self.bytes.len() - start) as u64;
        self.instances += 1;
        self.bytes.extend_from_slice(b"\r\n");
    }

    fn finish(mut self) -> Self {
        self.bytes
            .extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        self
    }
}

/// Salt for copy `index` of `phase` in this run.
fn salt(nonce: u64, phase: u64, index: u64) -> u64 {
    mix64(nonce ^ mix64(phase.wrapping_mul(0x1000_0000) ^ index))
}

// ---------------------------------------------------------------------------
// HTTP

#[derive(Clone)]
struct Ctx {
    http: reqwest::Client,
    root: String,
}

impl Ctx {
    /// STOW-RS one body; an error unless every instance was stored.
    async fn store(&self, body: Vec<u8>) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}/studies", self.root))
            .header(
                CONTENT_TYPE,
                format!("multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}"),
            )
            .header(ACCEPT, "application/dicom+json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("STOW-RS {status}: {}", snippet(&text));
        }
        // FailedSOPSequence (0008,1198) with items: some instances not stored.
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
            let failed = json
                .pointer("/00081198/Value")
                .and_then(|v| v.as_array())
                .map_or(0, Vec::len);
            ensure!(
                failed == 0,
                "STOW-RS {status}: {failed} instances failed: {}",
                snippet(&text)
            );
        }
        Ok(())
    }

    /// GET `url` and read the whole body, counting its bytes; an error on
    /// any status but 200 (and 204 when `allow_empty`).
    async fn get(&self, url: &str, accept: &str, allow_empty: bool) -> anyhow::Result<Vec<u8>> {
        let mut response = self.http.get(url).header(ACCEPT, accept).send().await?;
        let status = response.status();
        if status == reqwest::StatusCode::NO_CONTENT && allow_empty {
            return Ok(Vec::new());
        }
        if status != reqwest::StatusCode::OK {
            let text = response.text().await.unwrap_or_default();
            bail!("GET {status}: {}", snippet(&text));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// GET, counting the body's bytes without keeping them.
    async fn get_count(&self, url: &str, accept: &str) -> anyhow::Result<u64> {
        let mut response = self.http.get(url).header(ACCEPT, accept).send().await?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            let text = response.text().await.unwrap_or_default();
            bail!("GET {status}: {}", snippet(&text));
        }
        let mut bytes = 0;
        while let Some(chunk) = response.chunk().await? {
            bytes += chunk.len() as u64;
        }
        Ok(bytes)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.root)
    }
}

fn snippet(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.chars().take(200).collect()
}

/// Errors seen in a phase: how many, and the first message.
#[derive(Debug, Default)]
struct Errors {
    count: usize,
    first: Option<String>,
}

impl Errors {
    fn add(&mut self, error: &anyhow::Error) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(format!("{error:#}"));
        }
    }

    fn note(&self) -> String {
        match &self.first {
            None => String::new(),
            Some(first) => format!("{} errors, first: {first}", self.count),
        }
    }
}

/// Latency samples of one kind of request.
#[derive(Debug, Default)]
struct Samples {
    ms: Vec<f64>,
    errors: Errors,
    extra: String,
}

impl Samples {
    /// Nearest-rank percentile.
    fn percentile(&self, p: f64) -> Option<f64> {
        if self.ms.is_empty() {
            return None;
        }
        let mut sorted = self.ms.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        Some(sorted[rank.clamp(1, sorted.len()) - 1])
    }

    fn note(&self) -> String {
        let mut parts = vec![format!("n={}", self.ms.len())];
        if !self.extra.is_empty() {
            parts.push(self.extra.clone());
        }
        if self.errors.count > 0 {
            parts.push(self.errors.note());
        }
        parts.join("; ")
    }
}

/// Time `iters` sequential calls of `request` after `warmup` untimed ones,
/// stopping early (after at least 5) once `budget` is spent.
async fn time_sequential<F, Fut>(
    iters: usize,
    warmup: usize,
    budget: Duration,
    mut request: F,
) -> Samples
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut samples = Samples::default();
    for i in 0..warmup {
        if let Err(e) = request(i).await {
            samples.errors.add(&e);
        }
    }
    let started = Instant::now();
    for i in 0..iters {
        let t = Instant::now();
        match request(warmup + i).await {
            Ok(()) => samples.ms.push(t.elapsed().as_secs_f64() * 1e3),
            Err(e) => samples.errors.add(&e),
        }
        if i >= 4 && started.elapsed() > budget {
            break;
        }
    }
    samples
}

/// Run `jobs` on `clients` concurrent workers; returns the wall time and
/// the summed result of the successful jobs.
async fn run_concurrent<J, F, Fut>(clients: usize, jobs: Vec<J>, work: F) -> (Duration, u64, Errors)
where
    J: Send + 'static,
    F: Fn(J) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<u64>> + Send + 'static,
{
    let jobs: Arc<Vec<std::sync::Mutex<Option<J>>>> = Arc::new(
        jobs.into_iter()
            .map(|j| std::sync::Mutex::new(Some(j)))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicU64::new(0));
    let work = Arc::new(work);
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (jobs, next, total, work) = (jobs.clone(), next.clone(), total.clone(), work.clone());
        handles.push(tokio::spawn(async move {
            let mut errors = Errors::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(slot) = jobs.get(i) else { break };
                let job = slot
                    .lock()
                    .expect("job slot")
                    .take()
                    .expect("each job taken once");
                match work(job).await {
                    Ok(n) => {
                        total.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(e) => errors.add(&e),
                }
            }
            errors
        }));
    }
    let mut errors = Errors::default();
    for handle in handles {
        match handle.await {
            Ok(e) => {
                errors.count += e.count;
                if errors.first.is_none() {
                    errors.first = e.first;
                }
            }
            Err(e) => errors.add(&anyhow::anyhow!("worker panicked: {e}")),
        }
    }
    (started.elapsed(), total.load(Ordering::Relaxed), errors)
}

// ---------------------------------------------------------------------------
// Server memory

/// Samples VmRSS of a process every 100 ms: the peak over the whole run and
/// the peak since the last [`RssSampler::phase_peak`].
struct RssSampler {
    pid: u32,
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicU64>,
    handle: tokio::task::JoinHandle<u64>,
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The 1-minute load average: other work on the machine skews the numbers.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicU64::new(0));
        let (flag, phase_peak) = (stop.clone(), phase.clone());
        let handle = tokio::spawn(async move {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                if let Some(kib) = status_kib(pid, "VmRSS:") {
                    peak = peak.max(kib);
                    phase_peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        });
        RssSampler {
            pid,
            stop,
            phase,
            handle,
        }
    }

    /// Peak VmRSS (KiB) since the previous call, and the current VmRSS.
    fn phase_peak(&self) -> (u64, u64) {
        let now = status_kib(self.pid, "VmRSS:").unwrap_or(0);
        (self.phase.swap(now, Ordering::Relaxed).max(now), now)
    }

    /// Peak sampled VmRSS and the kernel's VmHWM, in KiB.
    async fn finish(self) -> (u64, Option<u64>) {
        self.stop.store(true, Ordering::Relaxed);
        let peak = self.handle.await.unwrap_or(0);
        (peak, status_kib(self.pid, "VmHWM:"))
    }
}

/// Report the server's peak RSS during the phase that just ended.
fn phase_rss(sampler: Option<&RssSampler>, report: &mut Report, key: &str, phase: &str) {
    if let Some(sampler) = sampler {
        let (peak, now) = sampler.phase_peak();
        report.push(
            &format!("rss_{key}_mb"),
            &format!("Server peak RSS during {phase}"),
            "MB",
            Some(peak as f64 * 1024.0 / 1e6),
            format!("{:.0} MB at its end", now as f64 * 1024.0 / 1e6),
        );
    }
}

// ---------------------------------------------------------------------------
// Data

/// Everything generated before the clock starts.
struct Data {
    /// Studies posted in the ingest phases, alternating: 4-view mammography,
    /// chest X-ray (PA + lateral).
    studies: Vec<Vec<Template>>,
    /// One small fluorography image, copied into a 500-instance series.
    series_instance: Template,
    /// One full-size mammogram (RCC).
    frame_instance: Template,
    /// The QIDO archive, already in STOW-RS bodies.
    qido: Option<QidoSet>,
}

fn generate(plan: &Plan, skip_qido: bool, nonce: u64) -> anyhow::Result<Data> {
    let cast = aina_sample::patients();
    let opts = Options {
        seed: SEED,
        scale: plan.scale,
    };
    let templates = |set: Vec<Generated>| -> anyhow::Result<Vec<Template>> {
        set.into_iter().map(Template::new).collect()
    };
    let studies = vec![
        templates(aina_sample::mammography(&opts, &cast[4], "20250310"))?,
        templates(aina_sample::chest_xray(&opts, &cast[0], "20250303"))?,
    ];
    let tiny = Options {
        seed: SEED,
        scale: 0.05,
    };
    let series_instance =
        Template::new(aina_sample::fluorography(&tiny, &cast[2], "20240910").remove(0))?;
    let full = Options {
        seed: SEED,
        scale: plan.frame_scale,
    };
    let frame_instance =
        Template::new(aina_sample::mammography(&full, &cast[3], "20250212").remove(0))?;
    let qido = if skip_qido {
        None
    } else {
        Some(QidoSet::build(plan.studies, nonce)?)
    };
    Ok(Data {
        studies,
        series_instance,
        frame_instance,
        qido,
    })
}

/// Family names of the QIDO archive: Latin, Russian and Kazakh, none starting
/// with `Иван` (reserved for the Cyrillic check).
const FAMILIES: &[(&str, &str)] = &[
    ("Smith", "M"),
    ("Johnson", "F"),
    ("Brown", "M"),
    ("Taylor", "F"),
    ("Walker", "M"),
    ("Miller", "F"),
    ("Петров", "M"),
    ("Петрова", "F"),
    ("Смирнов", "M"),
    ("Смирнова", "F"),
    ("Кузнецов", "M"),
    ("Соколова", "F"),
    ("Фёдоров", "M"),
    ("Морозова", "F"),
    ("Нұрланұлы", "M"),
    ("Әбілқасымова", "F"),
    ("Садықова", "F"),
    ("Сейітқалиева", "F"),
    ("Қасымов", "M"),
    ("Жұмабаев", "M"),
    ("Оспанова", "F"),
    ("Төлеуов", "M"),
    ("Үсенова", "F"),
    ("Ғабитов", "M"),
];
const GIVEN_M: &[&str] = &["John", "Сергей", "Дмитрий", "Ерлан", "Асқар", "Дәурен"];
const GIVEN_F: &[&str] = &["Mary", "Анна", "Ольга", "Гүлнұр", "Жанар", "Әйгерім"];
/// Every this many patients, one is an `Иванов`/`Иванова`.
const IVANOV_EVERY: usize = 200;

/// The tiny studies of the QIDO archive, in STOW-RS bodies of
/// [`QIDO_BATCH`] instances, and what the queries should find.
struct QidoSet {
    bodies: Vec<Body>,
    studies: usize,
    /// Studies whose Patient's Name starts with `Иван`.
    ivanov_studies: usize,
    /// First study date (days since 1970-01-01); dates span three years from it.
    first_day: i64,
}

impl QidoSet {
    fn build(studies: usize, nonce: u64) -> anyhow::Result<Self> {
        let cast = aina_sample::patients();
        let opts = Options {
            seed: SEED,
            scale: 0.03,
        };
        // One tiny instance per modality; each study is a re-encoded copy.
        let parse = |g: Generated| -> anyhow::Result<(String, DefaultDicomObject)> {
            Ok((
                g.modality.clone(),
                dicom_object::from_reader(&g.bytes[128..])?,
            ))
        };
        let modalities = [
            parse(aina_sample::fluorography(&opts, &cast[1], "20250115").remove(0))?,
            parse(aina_sample::chest_xray(&opts, &cast[0], "20250303").remove(0))?,
            parse(aina_sample::mammography(&opts, &cast[4], "20250310").remove(0))?,
        ];
        ensure!(
            da(days_from_civil(2024, 2, 29) + 1) == "20240301",
            "date arithmetic"
        );
        let first_day = days_from_civil(2023, 1, 1);
        let mut bodies = Vec::new();
        let mut body = Body::new(QIDO_BATCH * 12_000);
        let mut ivanov_studies = 0;
        for i in 0..studies {
            let (modality, template) = &modalities[i % modalities.len()];
            let patient = qido_patient(i / 2);
            if patient.name.starts_with("Иван") {
                ivanov_studies += 1;
            }
            let date = da(first_day + (i as i64 * 7919) % 1096);
            let uid =
                |k: u128| format!("2.25.{}", (u128::from(nonce) << 64) | (i as u128) << 2 | k);
            let sop = uid(2);
            let mut obj = template.clone();
            obj.put_str(tags::PATIENT_NAME, VR::PN, patient.name.as_str());
            obj.put_str(tags::PATIENT_ID, VR::LO, patient.id.as_str());
            obj.put_str(tags::PATIENT_SEX, VR::CS, patient.sex.as_str());
            obj.put_str(
                tags::PATIENT_BIRTH_DATE,
                VR::DA,
                patient.birth_date.as_str(),
            );
            for tag in [tags::STUDY_DATE, tags::SERIES_DATE, tags::CONTENT_DATE] {
                obj.put_str(tag, VR::DA, date.as_str());
            }
            obj.put_str(tags::ACCESSION_NUMBER, VR::SH, format!("QB{i:07}"));
            obj.put_str(tags::STUDY_INSTANCE_UID, VR::UI, uid(0));
            obj.put_str(tags::SERIES_INSTANCE_UID, VR::UI, uid(1));
            obj.put_str(tags::SOP_INSTANCE_UID, VR::UI, sop.as_str());
            obj.put_str(tags::MODALITY, VR::CS, modality.as_str());
            obj.update_meta(|meta| meta.media_storage_sop_instance_uid = sop);
            let mut result = Ok(());
            body.part(|out| result = obj.write_all(out));
            result.context("encoding a QIDO study")?;
            if body.instances as usize == QIDO_BATCH {
                bodies.push(std::mem::replace(&mut body, Body::new(QIDO_BATCH * 12_000)).finish());
            }
        }
        if body.instances > 0 {
            bodies.push(body.finish());
        }
        Ok(QidoSet {
            bodies,
            studies,
            ivanov_studies,
            first_day,
        })
    }
}

/// Patient `p` of the QIDO archive (each has two studies).
fn qido_patient(p: usize) -> Patient {
    let h = mix64(p as u64 ^ 0x51D0);
    let (name, sex) = if p % IVANOV_EVERY == 13 {
        if p.is_multiple_of(2) {
            ("Иванов^Сергей^Петрович".to_owned(), "M")
        } else {
            ("Иванова^Мария^Ивановна".to_owned(), "F")
        }
    } else {
        let (family, sex) = FAMILIES[(h % FAMILIES.len() as u64) as usize];
        let given = if sex == "M" { GIVEN_M } else { GIVEN_F };
        let given = given[((h >> 16) % given.len() as u64) as usize];
        (format!("{family}^{given}"), sex)
    };
    Patient {
        name,
        id: format!("QB-{p:05}"),
        birth_date: format!(
            "19{:02}{:02}{:02}",
            40 + h % 60,
            1 + (h >> 8) % 12,
            1 + (h >> 12) % 28
        ),
        sex: sex.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Phases

/// A study stored in an ingest phase.
#[derive(Debug, Clone)]
struct Stored {
    study: Identity,
    instances: u64,
}

async fn ingest(
    ctx: &Ctx,
    report: &mut Report,
    data: &Data,
    plan: &Plan,
    nonce: u64,
    sampler: Option<&RssSampler>,
) -> Vec<Stored> {
    let mut stored = Vec::new();
    for (phase, clients) in [(1u64, 1usize), (2, 4), (3, 16)] {
        let who = if clients == 1 {
            "1 client".to_owned()
        } else {
            format!("{clients} clients")
        };
        let mut jobs = Vec::new();
        for i in 0..plan.stow_requests {
            let study = &data.studies[i % data.studies.len()];
            let size = study.iter().map(|t| t.bytes.len()).sum();
            let mut body = Body::new(size);
            let s = salt(nonce, phase, i as u64);
            let mut first = None;
            for (k, t) in study.iter().enumerate() {
                body.part(|out| {
                    let id = t.write_copy(out, s, s ^ k as u64);
                    first.get_or_insert(id);
                });
            }
            let body = body.finish();
            stored.push(Stored {
                study: first.expect("a study has instances"),
                instances: body.instances,
            });
            jobs.push(body);
        }
        let instances: u64 = jobs.iter().map(|b| b.instances).sum();
        let per_request =
            jobs.iter().map(|b| b.dicom_bytes).sum::<u64>() as f64 / jobs.len() as f64 / 1e6;
        let stored_instances = Arc::new(AtomicU64::new(0));
        let (ctx2, counter) = (ctx.clone(), stored_instances.clone());
        let (elapsed, bytes, errors) = run_concurrent(clients, jobs, move |body: Body| {
            let (ctx, counter) = (ctx2.clone(), counter.clone());
            async move {
                ctx.store(body.bytes).await?;
                counter.fetch_add(body.instances, Ordering::Relaxed);
                Ok(body.dicom_bytes)
            }
        })
        .await;
        let secs = elapsed.as_secs_f64();
        let ok_instances = stored_instances.load(Ordering::Relaxed);
        let mut note = format!(
            "{} requests of {per_request:.1} MB ({instances} instances) in {secs:.1} s",
            plan.stow_requests
        );
        if errors.count > 0 {
            note += &format!("; {}", errors.note());
        }
        report.push(
            &format!("stow_c{clients}_mbps"),
            &format!("STOW-RS ingest, {who}"),
            "MB/s",
            (bytes > 0).then(|| bytes as f64 / 1e6 / secs),
            note.clone(),
        );
        report.push(
            &format!("stow_c{clients}_ips"),
            &format!("STOW-RS ingest, {who}"),
            "instances/s",
            (ok_instances > 0).then(|| ok_instances as f64 / secs),
            String::new(),
        );
        phase_rss(
            sampler,
            report,
            &format!("stow_c{clients}"),
            &format!("STOW-RS, {who}"),
        );
    }
    stored
}

async fn retrieve(ctx: &Ctx, report: &mut Report, stored: &[Stored], plan: &Plan) {
    for clients in [1usize, 8] {
        let who = if clients == 1 {
            "1 client".to_owned()
        } else {
            format!("{clients} clients")
        };
        let n = plan.retrievals * if clients == 1 { 1 } else { 2 };
        let jobs: Vec<String> = stored
            .iter()
            .cycle()
            .take(n)
            .map(|s| ctx.url(&format!("/studies/{}", s.study.study)))
            .collect();
        let ctx2 = ctx.clone();
        let (elapsed, bytes, errors) = run_concurrent(clients, jobs, move |url: String| {
            let ctx = ctx2.clone();
            async move { ctx.get_count(&url, ACCEPT_DICOM).await }
        })
        .await;
        let secs = elapsed.as_secs_f64();
        let mut note = format!("{n} studies, {:.0} MB in {secs:.1} s", bytes as f64 / 1e6);
        if errors.count > 0 {
            note += &format!("; {}", errors.note());
        }
        report.push(
            &format!("wado_c{clients}_mbps"),
            &format!("WADO-RS retrieve study, {who}"),
            "MB/s",
            (bytes > 0).then(|| bytes as f64 / 1e6 / secs),
            note,
        );
    }
}

/// Number of items in a DICOM JSON array response.
fn json_items(body: &[u8]) -> anyhow::Result<usize> {
    if body.is_empty() {
        return Ok(0);
    }
    let json: serde_json::Value = serde_json::from_slice(body)?;
    json.as_array()
        .map(Vec::len)
        .context("response is not a JSON array")
}

async fn metadata(ctx: &Ctx, report: &mut Report, stored: &[Stored], plan: &Plan) {
    let Some(mammo) = stored.iter().find(|s| s.instances == 4) else {
        return;
    };
    let url = ctx.url(&format!("/studies/{}/metadata", mammo.study.study));
    let items = AtomicUsize::new(0);
    let (url, items_ref) = (&url, &items);
    let mut samples = time_sequential(
        plan.metadata_iters,
        3,
        Duration::from_secs(60),
        move |_| async move {
            let body = ctx.get(url, "application/dicom+json", false).await?;
            items_ref.store(json_items(&body)?, Ordering::Relaxed);
            Ok(())
        },
    )
    .await;
    samples.extra = format!("{} instances returned", items.load(Ordering::Relaxed));
    report.latency("study_metadata", "Study metadata (4-instance MG)", &samples);
}

async fn series_metadata(ctx: &Ctx, report: &mut Report, data: &Data, plan: &Plan, nonce: u64) {
    let template = &data.series_instance;
    let study_salt = salt(nonce, 10, 0);
    let mut jobs = Vec::new();
    let mut body = Body::new(50 * template.bytes.len());
    let mut id = None;
    for k in 0..plan.series_instances {
        body.part(|out| id = Some(template.write_copy(out, study_salt, salt(nonce, 11, k as u64))));
        if body.instances == 50 {
            jobs.push(std::mem::replace(&mut body, Body::new(50 * template.bytes.len())).finish());
        }
    }
    if body.instances > 0 {
        jobs.push(body.finish());
    }
    let Some(id) = id else { return };
    let ctx2 = ctx.clone();
    let (elapsed, _, errors) = run_concurrent(LOAD_CLIENTS, jobs, move |body: Body| {
        let ctx = ctx2.clone();
        async move {
            ctx.store(body.bytes).await?;
            Ok(body.instances)
        }
    })
    .await;
    println!(
        "  ({} instances of {} bytes in one series stored in {:.1} s{})",
        plan.series_instances,
        template.bytes.len(),
        elapsed.as_secs_f64(),
        if errors.count > 0 {
            format!("; {}", errors.note())
        } else {
            String::new()
        }
    );
    let url = ctx.url(&format!(
        "/studies/{}/series/{}/metadata",
        id.study, id.series
    ));
    let items = AtomicUsize::new(0);
    let (url, items_ref) = (&url, &items);
    let mut samples = time_sequential(
        plan.series_iters,
        2,
        Duration::from_secs(90),
        move |_| async move {
            let body = ctx.get(url, "application/dicom+json", false).await?;
            items_ref.store(json_items(&body)?, Ordering::Relaxed);
            Ok(())
        },
    )
    .await;
    samples.extra = format!("{} instances returned", items.load(Ordering::Relaxed));
    report.latency(
        "series_metadata",
        &format!(
            "Series metadata ({}-instance series)",
            plan.series_instances
        ),
        &samples,
    );
}

async fn frame(ctx: &Ctx, report: &mut Report, data: &Data, plan: &Plan, nonce: u64) {
    let template = &data.frame_instance;
    let mut body = Body::new(template.bytes.len());
    let mut id = None;
    body.part(|out| id = Some(template.write_copy(out, salt(nonce, 20, 0), salt(nonce, 21, 0))));
    let Some(id) = id else { return };
    if let Err(e) = ctx.store(body.finish().bytes).await {
        report.push(
            "frame_p50",
            "Raw mammogram frame p50",
            "ms",
            None,
            format!("{e:#}"),
        );
        return;
    }
    let url = ctx.url(&format!(
        "/studies/{}/series/{}/instances/{}/frames/1",
        id.study, id.series, id.sop
    ));
    let expected = template.pixel_bytes();
    let url = &url;
    let mut samples = time_sequential(
        plan.frame_iters,
        3,
        Duration::from_secs(60),
        move |_| async move {
            let bytes = ctx.get_count(url, ACCEPT_FRAMES).await?;
            ensure!(
                bytes as usize >= expected,
                "frame response of {bytes} bytes, the frame has {expected}"
            );
            Ok(())
        },
    )
    .await;
    samples.extra = format!("{:.1} MB frame", expected as f64 / 1e6);
    report.latency(
        "frame",
        &format!("Raw mammogram frame (scale {})", plan.frame_scale),
        &samples,
    );
}

async fn qido(ctx: &Ctx, report: &mut Report, set: QidoSet, plan: &Plan) {
    // Load.
    let studies = set.studies;
    let ctx2 = ctx.clone();
    let (elapsed, stored, errors) = run_concurrent(LOAD_CLIENTS, set.bodies, move |body: Body| {
        let ctx = ctx2.clone();
        async move {
            ctx.store(body.bytes).await?;
            Ok(body.instances)
        }
    })
    .await;
    let secs = elapsed.as_secs_f64();
    let mut note = format!(
        "{stored} of {studies} one-instance studies, {QIDO_BATCH} per request, {LOAD_CLIENTS} clients, {secs:.1} s"
    );
    if errors.count > 0 {
        note += &format!("; {}", errors.note());
    }
    report.push(
        "qido_load_ips",
        "Load of the QIDO archive (tiny instances)",
        "instances/s",
        Some(stored as f64 / secs),
        note,
    );

    // Timed mix, round-robin over the kinds.
    let kinds = [
        "name_latin",
        "name_cyrillic",
        "patient_id",
        "date_range",
        "modality",
        "paging",
    ];
    let latin = ["Smi*", "Joh*", "Bro*", "Tay*", "Wal*"];
    let cyrillic = ["петр*", "смир*", "нұрл*", "сейіт*", "қасым*"];
    let modalities = ["MG", "CR", "DX"];
    let patients = studies.div_ceil(2).max(1);
    let mut per_kind: BTreeMap<&str, Samples> = BTreeMap::new();
    let mut results: BTreeMap<&str, usize> = BTreeMap::new();
    let url = ctx.url("/studies");
    for i in 0..plan.query_iters * kinds.len() {
        let kind = kinds[i % kinds.len()];
        let round = i / kinds.len();
        let h = mix64(round as u64 ^ 0xC0FFEE);
        let limit = ("limit", "101".to_owned());
        let params: Vec<(&str, String)> = match kind {
            "name_latin" => vec![
                ("PatientName", latin[round % latin.len()].to_owned()),
                limit,
            ],
            "name_cyrillic" => {
                vec![
                    ("PatientName", cyrillic[round % cyrillic.len()].to_owned()),
                    limit,
                ]
            }
            "patient_id" => vec![
                ("PatientID", format!("QB-{:05}", h % patients as u64)),
                limit,
            ],
            "date_range" => {
                let from = set.first_day + (h % 1090) as i64;
                let range = format!("{}-{}", da(from), da(from + 6));
                vec![("StudyDate", range), limit]
            }
            "modality" => {
                vec![
                    (
                        "ModalitiesInStudy",
                        modalities[round % modalities.len()].to_owned(),
                    ),
                    limit,
                ]
            }
            _ => vec![
                ("limit", "50".to_owned()),
                (
                    "offset",
                    (h % studies.saturating_sub(50).max(1) as u64).to_string(),
                ),
            ],
        };
        let samples = per_kind.entry(kind).or_default();
        // A slow server gets at least 10 queries of each kind, then a budget.
        if samples.ms.len() >= 10 && samples.ms.iter().sum::<f64>() > QUERY_BUDGET_MS {
            continue;
        }
        let t = Instant::now();
        let response = async {
            let response = ctx
                .http
                .get(&url)
                .query(&params)
                .header(ACCEPT, "application/dicom+json")
                .send()
                .await?;
            let status = response.status();
            let body = response.bytes().await?;
            ensure!(
                status == reqwest::StatusCode::OK || status == reqwest::StatusCode::NO_CONTENT,
                "QIDO {status}: {}",
                snippet(&String::from_utf8_lossy(&body))
            );
            Ok(body)
        }
        .await;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        match response.and_then(|body| json_items(&body)) {
            Ok(n) => {
                samples.ms.push(ms);
                *results.entry(kind).or_default() += n;
            }
            Err(e) => samples.errors.add(&e),
        }
    }
    let mut all = Samples::default();
    for kind in kinds {
        let Some(samples) = per_kind.get_mut(kind) else {
            continue;
        };
        samples.extra = format!(
            "{:.1} results/query",
            results.get(kind).copied().unwrap_or(0) as f64 / samples.ms.len().max(1) as f64
        );
        all.ms.extend_from_slice(&samples.ms);
        all.errors.count += samples.errors.count;
        if all.errors.first.is_none() {
            all.errors.first.clone_from(&samples.errors.first);
        }
        report.latency(&format!("qido_{kind}"), &format!("QIDO {kind}"), samples);
    }
    report.latency(
        "qido_all",
        &format!("QIDO all kinds at {studies} studies"),
        &all,
    );

    // Cyrillic case-insensitive prefix: found / expected.
    for (key, pattern) in [("lower", "иван*"), ("stored_case", "Иван*")] {
        let found = ctx
            .http
            .get(&url)
            .query(&[("PatientName", pattern), ("limit", "1000")])
            .header(ACCEPT, "application/dicom+json")
            .send()
            .await;
        let (value, note) = match found {
            Ok(response) => {
                let status = response.status();
                match response
                    .bytes()
                    .await
                    .map_err(anyhow::Error::from)
                    .and_then(|b| json_items(&b))
                {
                    Ok(n) => (
                        Some(n as f64),
                        format!("expected {} (HTTP {status})", set.ivanov_studies),
                    ),
                    Err(e) => (None, format!("HTTP {status}: {e:#}")),
                }
            }
            Err(e) => (None, format!("{e:#}")),
        };
        report.push(
            &format!("qido_cyrillic_{key}"),
            &format!("QIDO PatientName={pattern} found"),
            "studies",
            value,
            note,
        );
    }
}

// ---------------------------------------------------------------------------

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(files) = &args.compare {
        let read = |p: &PathBuf| -> anyhow::Result<Report> {
            let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
            Ok(serde_json::from_str(&text)?)
        };
        print!("{}", compare(&read(&files[0])?, &read(&files[1])?));
        return Ok(());
    }
    let root = args
        .root
        .clone()
        .context("--root URL is required (or --compare A.json B.json)")?
        .trim_end_matches('/')
        .to_owned();
    let plan = Plan::new(&args);
    let nonce = mix64(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );

    let t = Instant::now();
    let data = generate(&plan, args.skip_qido, nonce)?;
    println!(
        "generated test data in {:.1} s ({} QIDO studies{})",
        t.elapsed().as_secs_f64(),
        plan.studies,
        if args.skip_qido { ", skipped" } else { "" }
    );

    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(run(&args, root, plan, data, nonce))?;
    println!("\n{}", report.markdown());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| path.display().to_string())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

async fn run(
    args: &Args,
    root: String,
    plan: Plan,
    mut data: Data,
    nonce: u64,
) -> anyhow::Result<Report> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(900))
        .pool_max_idle_per_host(64)
        .build()?;
    let ctx = Ctx {
        http,
        root: root.clone(),
    };
    ctx.get(&ctx.url("/studies?limit=1"), "application/dicom+json", true)
        .await
        .with_context(|| format!("{root} does not answer QIDO-RS"))?;

    let mut report = Report {
        name: args.name.clone(),
        root,
        quick: args.quick,
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        rows: Vec::new(),
    };
    println!("{} at {}", report.name, report.root);
    let load_start = loadavg();
    let sampler = args.server_pid.map(RssSampler::start);

    let s = sampler.as_ref();
    let stored = ingest(&ctx, &mut report, &data, &plan, nonce, s).await;
    retrieve(&ctx, &mut report, &stored, &plan).await;
    phase_rss(s, &mut report, "wado", "WADO-RS retrieve");
    metadata(&ctx, &mut report, &stored, &plan).await;
    series_metadata(&ctx, &mut report, &data, &plan, nonce).await;
    phase_rss(s, &mut report, "metadata", "metadata");
    frame(&ctx, &mut report, &data, &plan, nonce).await;
    phase_rss(s, &mut report, "frame", "frames");
    if let Some(set) = data.qido.take() {
        qido(&ctx, &mut report, set, &plan).await;
        phase_rss(s, &mut report, "qido", "QIDO load and queries");
    }

    report.push(
        "loadavg",
        "Machine load average (1 min), start → end",
        "",
        None,
        format!("{load_start} → {}", loadavg()),
    );
    if let Some(sampler) = sampler {
        let (peak, hwm) = sampler.finish().await;
        report.push(
            "rss_peak_mb",
            "Server peak RSS (sampled VmRSS)",
            "MB",
            Some(peak as f64 * 1024.0 / 1e6),
            "every 100 ms during the run".to_owned(),
        );
        report.push(
            "rss_hwm_mb",
            "Server VmHWM at the end",
            "MB",
            hwm.map(|kib| kib as f64 * 1024.0 / 1e6),
            "kernel high-water mark, includes start-up".to_owned(),
        );
    }
    Ok(report)
}
