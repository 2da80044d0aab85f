//! A 2 GB STOW-RS request is streamed: every instance lands and the server's
//! memory stays bounded by the instance size, not the request size.

use std::time::Instant;

use bytes::Bytes;
use dicom_core::value::{PixelFragmentSequence, Value as DicomValue};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use futures::StreamExt;
use rand::{RngCore, SeedableRng};
use reqwest::StatusCode;

use crate::common::*;
use crate::crash::spawn_server;

const INSTANCES: usize = 40;
const FRAGMENT: usize = 1 << 20;
const FRAGMENTS: usize = 50;

/// A JPEG 2000 multi-fragment instance of about 50 MB whose SOP Instance UID is
/// `uid(0)` (the same length as every `uid(n)`, so copies are a byte patch).
fn template() -> Vec<u8> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut noise = vec![0u8; FRAGMENT];
    rng.fill_bytes(&mut noise);
    let fragments: Vec<Vec<u8>> = (0..FRAGMENTS).map(|_| noise.clone()).collect();
    let g = &sample()[0];
    let uid0 = uid(0);
    let mut obj = dicom_object::OpenFileOptions::new()
        .from_reader(&g.bytes[..])
        .unwrap();
    obj.put(DataElement::new(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(uid0.as_str()),
    ));
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        DicomValue::PixelSequence(PixelFragmentSequence::new(vec![], fragments)),
    ));
    obj.update_meta(|m| {
        m.media_storage_sop_instance_uid = uid0.clone();
        m.set_transfer_syntax(
            &dicom_transfer_syntax_registry::entries::JPEG_2000_IMAGE_COMPRESSION_LOSSLESS_ONLY,
        );
    });
    let mut out = Vec::new();
    obj.write_all(&mut out).unwrap();
    assert!(uids::JPEG2000_LOSSLESS.len() > 10);
    out
}

fn uid(n: usize) -> String {
    format!("2.25.{:020}", 90_000_000_000_000_000u64 + n as u64)
}

fn copy_with_uid(template: &[u8], n: usize) -> Vec<u8> {
    let from = uid(0);
    let to = uid(n);
    let mut out = template.to_vec();
    // The UID is in the meta group and the data set header, before Pixel Data.
    let header = 64 * 1024;
    let mut i = 0;
    while let Some(p) = out[i..header]
        .windows(from.len())
        .position(|w| w == from.as_bytes())
    {
        out[i + p..i + p + to.len()].copy_from_slice(to.as_bytes());
        i += p + to.len();
    }
    out
}

fn vm_hwm_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn two_gigabyte_stow_is_streamed_with_bounded_memory() {
    let backend = Backend::new_blocking();
    let (mut child, root) = spawn_server(&backend);
    let template = template();
    let size = template.len();
    let total = size * INSTANCES;
    assert!(total > 2_000_000_000, "{total}");
    let study = {
        let obj = dicom_object::OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .from_reader(&template[..])
            .unwrap();
        obj.element(tags::STUDY_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_owned()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let post_url = format!("{root}/dicomweb/studies");
    let (status, text) = rt.block_on(async move {
        // The body is produced as it is sent: the test holds one instance at a time.
        let body = futures::stream::iter(0..=INSTANCES).map(move |n| {
            let chunk = if n == INSTANCES {
                format!("\r\n--{BOUNDARY}--\r\n").into_bytes()
            } else {
                let lead = if n == 0 { "" } else { "\r\n" };
                let mut part =
                    format!("{lead}--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n")
                        .into_bytes();
                part.extend_from_slice(&copy_with_uid(&template, n + 1));
                part
            };
            Ok::<_, std::io::Error>(Bytes::from(chunk))
        });
        let res = reqwest::Client::new()
            .post(post_url)
            .header(
                "content-type",
                format!("multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}"),
            )
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap())
    });
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{}", &text[..text.len().min(2000)]);
    let resp: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        resp["00081199"]["Value"].as_array().unwrap().len(),
        INSTANCES
    );
    let peak_mb = vm_hwm_kb(child.id()) / 1024;
    eprintln!(
        "2 GB STOW: {:.0} MB in {:.1} s ({:.0} MB/s), server peak RSS {peak_mb} MB",
        total as f64 / 1e6,
        elapsed.as_secs_f64(),
        total as f64 / 1e6 / elapsed.as_secs_f64()
    );
    // Bounded by a few instances in flight (each ~50 MB), far below the request.
    assert!(
        peak_mb < 800,
        "server peak RSS {peak_mb} MB for a {} MB request",
        total / 1_000_000
    );

    // Spot-check: all there, first and last bit-exact.
    rt.block_on(async {
        let client = reqwest::Client::new();
        let rows: Vec<serde_json::Value> = client
            .get(format!(
                "{root}/dicomweb/studies/{study}/instances?limit=1000"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(rows.len(), INSTANCES);
        let template = self::template();
        for n in [1, INSTANCES] {
            let want = sha256(&copy_with_uid(&template, n));
            let row = rows
                .iter()
                .find(|r| string(r, "00080018").as_deref() == Some(uid(n).as_str()))
                .unwrap();
            let url = string(row, "00081190").unwrap();
            let res = client
                .get(url)
                .header(
                    "accept",
                    "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
                )
                .send()
                .await
                .unwrap();
            let parts = multipart_parts(res).await;
            assert_eq!(sha256(&parts[0].1), want);
        }
    });
    child.kill().unwrap();
    child.wait().unwrap();
}
