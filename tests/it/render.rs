//! Pixels over HTTP: rendered resources, thumbnails and previews made at ingest,
//! WADO-URI rendering, transcoding of compressed instances, and bad pixel data.

use std::time::{Duration, Instant};

use dicom_dictionary_std::tags;
use image::GenericImageView;
use reqwest::StatusCode;

use crate::common::*;

fn uids(file: &[u8]) -> (String, String, String) {
    let obj = dicom_object::OpenFileOptions::new()
        .from_reader(file)
        .unwrap();
    let s = |t| obj.element(t).unwrap().to_str().unwrap().trim().to_owned();
    (
        s(tags::STUDY_INSTANCE_UID),
        s(tags::SERIES_INSTANCE_UID),
        s(tags::SOP_INSTANCE_UID),
    )
}

fn path_of(file: &[u8]) -> String {
    let (st, se, i) = uids(file);
    format!("/studies/{st}/series/{se}/instances/{i}")
}

/// Native pixel data of a PS3.10 file.
fn pixel_bytes(file: &[u8]) -> Vec<u8> {
    let obj = dicom_object::OpenFileOptions::new()
        .from_reader(file)
        .unwrap();
    obj.element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .to_vec()
}

async fn get_image(
    srv: &TestServer,
    path: &str,
    accept: &str,
) -> (reqwest::header::HeaderMap, Vec<u8>) {
    let res = srv.get(path, accept).await;
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.bytes().await.unwrap().to_vec();
    assert_eq!(
        status,
        StatusCode::OK,
        "{path}: {}",
        String::from_utf8_lossy(&body)
    );
    (headers, body)
}

fn mammograms() -> Vec<&'static aina_sample::Generated> {
    sample().iter().filter(|g| g.modality == "MG").collect()
}

/// Waits until the background work has stored the instance's thumbnail.
async fn wait_for_thumbnail(srv: &TestServer, sha256: &str) {
    let key = format!("derived/{sha256}/thumbnail.jpg");
    let start = Instant::now();
    loop {
        if srv.store().get(&key).await.is_ok() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no thumbnail made in the background at {key}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rendered_instance_in_every_format_and_size() {
    let srv = start().await;
    let mg = mammograms()[0];
    assert_eq!(srv.stow(&[&mg.bytes]).await.0, StatusCode::OK);
    let path = format!("{}/rendered", instance_path(mg));

    let (res, jpeg) = get_image(&srv, &path, "image/jpeg").await;
    assert_eq!(res["content-type"], "image/jpeg");
    let full = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).unwrap();
    let obj = dicom_object::OpenFileOptions::new()
        .from_reader(&mg.bytes[..])
        .unwrap();
    let rows = obj.element(tags::ROWS).unwrap().to_int::<u32>().unwrap();
    let cols = obj.element(tags::COLUMNS).unwrap().to_int::<u32>().unwrap();
    assert_eq!(full.dimensions(), (cols, rows));
    // A mammogram is not a flat picture: the default window shows structure.
    let gray = full.to_luma8();
    let (lo, hi) = gray
        .pixels()
        .fold((255u8, 0u8), |(lo, hi), p| (lo.min(p[0]), hi.max(p[0])));
    assert!(hi - lo > 100, "contrast {lo}..{hi}");

    // Viewport: fits inside, aspect ratio kept.
    let (_, small) = get_image(&srv, &format!("{path}?viewport=128,128"), "image/jpeg").await;
    let small = image::load_from_memory(&small).unwrap();
    let (w, h) = small.dimensions();
    assert!(w <= 128 && h <= 128 && (w == 128 || h == 128), "{w}x{h}");
    let expect_w = (f64::from(cols) * f64::from(h) / f64::from(rows)).round() as i64;
    assert!(
        (i64::from(w) - expect_w).abs() <= 1,
        "{w}x{h} for {cols}x{rows}"
    );

    // PNG 8-bit, PNG 16-bit, WebP.
    let (res, png) = get_image(&srv, &path, "image/png").await;
    assert_eq!(res["content-type"], "image/png");
    let png = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap();
    assert_eq!(png.color(), image::ColorType::L8);
    let (_, png16) = get_image(&srv, &format!("{path}?bitdepth=16"), "image/png").await;
    let png16 = image::load_from_memory_with_format(&png16, image::ImageFormat::Png).unwrap();
    assert_eq!(png16.color(), image::ColorType::L16);
    assert_eq!(png16.dimensions(), (cols, rows));
    let (res, webp) = get_image(&srv, &format!("{path}?accept=image/webp"), "image/jpeg").await;
    assert_eq!(res["content-type"], "image/webp");
    let webp = image::load_from_memory_with_format(&webp, image::ImageFormat::WebP).unwrap();
    assert_eq!(webp.dimensions(), (cols, rows));

    // A narrow window changes the pixels; quality changes the size.
    let (_, narrow) = get_image(&srv, &format!("{path}?window=100,10"), "image/jpeg").await;
    assert_ne!(narrow, jpeg);
    let (_, q10) = get_image(&srv, &format!("{path}?quality=10"), "image/jpeg").await;
    assert!(q10.len() < jpeg.len(), "{} vs {}", q10.len(), jpeg.len());

    // Same request, same ETag; If-None-Match answers 304.
    let (res, again) = get_image(&srv, &path, "image/jpeg").await;
    assert_eq!(again, jpeg);
    let etag = res["etag"].to_str().unwrap().to_owned();
    let res = srv
        .client
        .get(format!("{}{path}", srv.dicomweb))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn rendered_refuses_bad_parameters_with_reasons() {
    let srv = start().await;
    let mg = mammograms()[0];
    assert_eq!(srv.stow(&[&mg.bytes]).await.0, StatusCode::OK);
    let path = format!("{}/rendered", instance_path(mg));
    for (query, accept, status) in [
        ("window=abc", "image/jpeg", StatusCode::BAD_REQUEST),
        ("window=100,-5", "image/jpeg", StatusCode::BAD_REQUEST),
        ("window=NaN,10", "image/jpeg", StatusCode::BAD_REQUEST),
        ("viewport=0,0", "image/jpeg", StatusCode::BAD_REQUEST),
        ("viewport=abc", "image/jpeg", StatusCode::BAD_REQUEST),
        ("quality=0", "image/jpeg", StatusCode::BAD_REQUEST),
        ("quality=101", "image/jpeg", StatusCode::BAD_REQUEST),
        ("bitdepth=12", "image/png", StatusCode::BAD_REQUEST),
        ("bitdepth=16", "image/jpeg", StatusCode::NOT_ACCEPTABLE),
        ("", "application/dicom", StatusCode::NOT_ACCEPTABLE),
        ("", "image/gif", StatusCode::NOT_ACCEPTABLE),
    ] {
        let res = srv.get(&format!("{path}?{query}"), accept).await;
        assert_eq!(res.status(), status, "{query} / {accept}");
        let text = res.text().await.unwrap();
        assert!(text.len() > 10, "{query}: a reason is given: {text:?}");
    }
    let (st, se, _) = uids(&mg.bytes);
    let res = srv
        .get(
            &format!("/studies/{st}/series/{se}/instances/1.2.3.4/rendered"),
            "image/jpeg",
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = srv
        .get(
            &format!("{}/frames/2/rendered", instance_path(mg)),
            "image/jpeg",
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = srv
        .get(
            &format!("{}/frames/1,2/thumbnail", instance_path(mg)),
            "image/jpeg",
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = srv
        .get(
            &format!("{}/frames/0/rendered", instance_path(mg)),
            "image/jpeg",
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn thumbnails_and_previews_are_made_once_in_the_background() {
    let srv = start().await;
    let mg = mammograms();
    let views: Vec<&[u8]> = mg.iter().take(4).map(|g| g.bytes.as_slice()).collect();
    assert_eq!(srv.stow(&views).await.0, StatusCode::OK);
    for g in mg.iter().take(4) {
        let sha = sha256(&g.bytes);
        wait_for_thumbnail(&srv, &sha).await;
        let preview = format!("derived/{sha}/preview-1.bin");
        // The preview is smaller than the original (at this small scale it has
        // every pixel; the benchmark reports full-size ratios).
        let preview_len = srv.store().size(&preview).await.expect(&preview);
        assert!(
            preview_len < g.bytes.len() as u64,
            "{preview_len} vs {}",
            g.bytes.len()
        );
    }
    let study = &mg[0].study_instance_uid;
    let (res, study_thumb) =
        get_image(&srv, &format!("/studies/{study}/thumbnail"), "image/jpeg").await;
    assert_eq!(res["content-type"], "image/jpeg");
    let img = image::load_from_memory(&study_thumb).unwrap();
    let (w, h) = img.dimensions();
    assert!(w.max(h) <= 256 && w.max(h) >= 16, "{w}x{h}");
    // It is the stored object, byte for byte: nothing is decoded to serve it.
    let mut rep = None;
    for g in mg.iter().take(4) {
        let key = format!("derived/{}/thumbnail.jpg", sha256(&g.bytes));
        if srv.store().get(&key).await.is_ok_and(|t| t == study_thumb) {
            rep = Some(g);
        }
    }
    assert!(
        rep.is_some(),
        "study thumbnail is one instance's stored thumbnail"
    );
    let series = &mg[0].series_instance_uid;
    get_image(
        &srv,
        &format!("/studies/{study}/series/{series}/thumbnail"),
        "image/jpeg",
    )
    .await;
    get_image(
        &srv,
        &format!("{}/thumbnail", instance_path(mg[0])),
        "image/jpeg",
    )
    .await;
    // Other sizes and formats are rendered from the preview.
    let (_, png) = get_image(
        &srv,
        &format!("{}/thumbnail?viewport=64,64", instance_path(mg[0])),
        "image/png",
    )
    .await;
    let png = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap();
    assert!(png.width().max(png.height()) <= 64);
    let (_, frame_thumb) = get_image(
        &srv,
        &format!("{}/frames/1/thumbnail", instance_path(mg[0])),
        "image/jpeg",
    )
    .await;
    assert!(!frame_thumb.is_empty());
}

#[tokio::test]
async fn rendered_study_and_series_are_multipart_images() {
    let srv = start().await;
    let mg = mammograms();
    let views: Vec<&[u8]> = mg.iter().take(4).map(|g| g.bytes.as_slice()).collect();
    assert_eq!(srv.stow(&views).await.0, StatusCode::OK);
    let res = srv
        .get(
            &format!(
                "/studies/{}/rendered?viewport=200,200",
                mg[0].study_instance_uid
            ),
            "multipart/related; type=\"image/png\"",
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("multipart/related"), "{ct}");
    let body = res.bytes().await.unwrap();
    let parts = split_multipart(&ct, &body);
    assert_eq!(parts.len(), 4);
    for (part_ct, bytes) in parts {
        assert!(part_ct.contains("image/png"), "{part_ct}");
        let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap();
        assert!(img.width() <= 200 && img.height() <= 200);
    }
}

#[tokio::test]
async fn wado_uri_renders_with_its_own_parameters() {
    let srv = start().await;
    let mg = mammograms()[0];
    assert_eq!(srv.stow(&[&mg.bytes]).await.0, StatusCode::OK);
    let base = format!(
        "{}/wado?requestType=WADO&studyUID={}&seriesUID={}&objectUID={}",
        srv.root, mg.study_instance_uid, mg.series_instance_uid, mg.sop_instance_uid
    );
    let get = |q: String| {
        let client = srv.client.clone();
        async move { client.get(q).send().await.unwrap() }
    };
    // The default content type is image/jpeg.
    let res = get(base.clone()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "image/jpeg");
    let res = get(format!(
        "{base}&contentType=image%2Fpng&rows=100&columns=80&windowCenter=2000&windowWidth=4000&frameNumber=1"
    ))
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let img = image::load_from_memory(&res.bytes().await.unwrap()).unwrap();
    assert!(
        img.width() <= 80 && img.height() <= 100,
        "{:?}",
        img.dimensions()
    );
    let res = get(format!("{base}&contentType=image%2Fjpeg&imageQuality=50")).await;
    assert_eq!(res.status(), StatusCode::OK);
    for (q, status) in [
        ("&windowCenter=10", StatusCode::BAD_REQUEST),
        ("&windowCenter=x&windowWidth=10", StatusCode::BAD_REQUEST),
        ("&rows=0", StatusCode::BAD_REQUEST),
        ("&frameNumber=0", StatusCode::BAD_REQUEST),
        ("&frameNumber=9", StatusCode::NOT_FOUND),
        ("&imageQuality=1000", StatusCode::BAD_REQUEST),
        ("&region=0,0,0.5,0.5", StatusCode::BAD_REQUEST),
        ("&contentType=image%2Fgif", StatusCode::NOT_ACCEPTABLE),
    ] {
        let res = get(format!("{base}{q}")).await;
        assert_eq!(res.status(), status, "{q}");
    }
}

/// A compressed corpus file and its uncompressed twin: transcoding to Explicit
/// VR Little Endian returns the twin's pixels.
#[tokio::test]
async fn compressed_instances_transcode_to_explicit_little_endian() {
    let (Some(j2k), Some(raw)) = (
        corpus("pydicom-data__RG1_J2KR.dcm"),
        corpus("pydicom-data__RG1_UNCR.dcm"),
    ) else {
        return;
    };
    let srv = start().await;
    assert_eq!(srv.stow(&[&j2k]).await.0, StatusCode::OK);
    let path = path_of(&j2k);
    let ele = "1.2.840.10008.1.2.1";
    let res = srv
        .get(
            &path,
            &format!("multipart/related; type=\"application/dicom\"; transfer-syntax={ele}"),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    let body = res.bytes().await.unwrap();
    let parts = split_multipart(&ct, &body);
    assert_eq!(parts.len(), 1);
    assert!(parts[0].0.contains(ele), "{}", parts[0].0);
    let obj = dicom_object::OpenFileOptions::new()
        .from_reader(&parts[0].1[..])
        .unwrap();
    assert_eq!(obj.meta().transfer_syntax(), ele);
    assert_eq!(pixel_bytes(&parts[0].1), pixel_bytes(&raw));
    // The frame, asked uncompressed, is the twin's pixel data.
    let res = srv
        .get(
            &format!("{path}/frames/1"),
            "multipart/related; type=\"application/octet-stream\"",
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    let body = res.bytes().await.unwrap();
    let parts = split_multipart(&ct, &body);
    assert_eq!(parts[0].1, pixel_bytes(&raw));
    // The stored form is still there, exactly.
    assert_eq!(srv.retrieve_original(&path).await, vec![j2k.clone()]);
    // A syntax this archive does not encode to: 406 naming both.
    let res = srv
        .get(
            &path,
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.80",
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_ACCEPTABLE);
    // And it renders.
    get_image(
        &srv,
        &format!("{path}/rendered?viewport=512,512"),
        "image/jpeg",
    )
    .await;
}

#[tokio::test]
async fn multi_frame_instances_render_each_frame() {
    let Some(mf) = corpus("pydicom-data__emri_small_jpeg_2k_lossless.dcm") else {
        return;
    };
    let srv = start().await;
    assert_eq!(srv.stow(&[&mf]).await.0, StatusCode::OK);
    let path = path_of(&mf);
    let (_, f3) = get_image(&srv, &format!("{path}/frames/3/rendered"), "image/png").await;
    let (_, f7) = get_image(&srv, &format!("{path}/frames/7/rendered"), "image/png").await;
    assert_ne!(f3, f7, "different frames render differently");
    let img = image::load_from_memory(&f3).unwrap();
    assert_eq!(img.dimensions(), (64, 64));
    let res = srv
        .get(&format!("{path}/frames/2,4/rendered"), "image/png")
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    let body = res.bytes().await.unwrap();
    assert_eq!(split_multipart(&ct, &body).len(), 2);
    let res = srv
        .get(&format!("{path}/frames/11/rendered"), "image/png")
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// Pixel data that cannot be decoded is stored (the original is sacred) but
/// answers rendering with a reason, and the server goes on.
#[tokio::test]
async fn damaged_pixel_data_is_a_clear_error_not_a_crash() {
    let Some(mut j2k) = corpus("pydicom-data__RG1_J2KR.dcm") else {
        return;
    };
    // Zero the image size (SIZ) segment of the JPEG 2000 codestream: the
    // file still parses, the codestream does not.
    let siz = j2k
        .windows(4)
        .position(|w| w == [0xFF, 0x4F, 0xFF, 0x51])
        .expect("SOC SIZ");
    for b in &mut j2k[siz + 6..siz + 40] {
        *b = 0;
    }
    // A distinct SOP Instance UID is not needed: the server has nothing else.
    let srv = start().await;
    assert_eq!(srv.stow(&[&j2k]).await.0, StatusCode::OK);
    let path = path_of(&j2k);
    let res = srv.get(&format!("{path}/rendered"), "image/jpeg").await;
    assert!(
        res.status().is_client_error() || res.status().is_server_error(),
        "{}",
        res.status()
    );
    let text = res.text().await.unwrap();
    assert!(text.contains("decode"), "{text}");
    // Still serving, and the stored bytes are intact.
    assert_eq!(srv.retrieve_original(&path).await, vec![j2k.clone()]);
    // An instance without pixel data has no rendering and no thumbnail.
    let Some(sr) = corpus("openrem__DX-RDSR-Canon_CXDI.dcm") else {
        return;
    };
    assert_eq!(srv.stow(&[&sr]).await.0, StatusCode::OK);
    let sr_path = path_of(&sr);
    let res = srv.get(&format!("{sr_path}/rendered"), "image/jpeg").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let (st, se, _) = uids(&sr);
    let res = srv
        .get(
            &format!("/studies/{st}/series/{se}/thumbnail"),
            "image/jpeg",
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
