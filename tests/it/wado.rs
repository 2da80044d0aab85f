//! WADO-RS and WADO-URI: instances, metadata, frames, bulk data, negotiation,
//! ETags, compression and CORS.

use dicom_core::header::Header;
use dicom_dictionary_std::tags;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::*;

const ANY_DICOM: &str = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";

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

#[tokio::test]
async fn study_and_series_retrieve_return_every_instance() {
    let srv = start().await;
    let mg: Vec<_> = sample()
        .iter()
        .filter(|g| g.modality == "MG")
        .take(4)
        .collect();
    let files: Vec<&[u8]> = mg.iter().map(|g| g.bytes.as_slice()).collect();
    assert_eq!(srv.stow(&files).await.0, StatusCode::OK);
    let parts = srv
        .retrieve_original(&format!("/studies/{}", mg[0].study_instance_uid))
        .await;
    let mut got: Vec<String> = parts.iter().map(|p| sha256(p)).collect();
    let mut want: Vec<String> = mg.iter().map(|g| sha256(&g.bytes)).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let parts = srv
        .retrieve_original(&format!(
            "/studies/{}/series/{}",
            mg[0].study_instance_uid, mg[0].series_instance_uid
        ))
        .await;
    assert_eq!(parts.len(), 4);
    // No transfer-syntax parameter: the default, Explicit VR Little Endian, which
    // is how the sample is stored — same bytes, and the part says so.
    let res = srv
        .get(
            &instance_path(mg[0]),
            "multipart/related; type=\"application/dicom\"",
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let parts = multipart_parts(res).await;
    assert!(
        parts[0].0.contains("transfer-syntax=1.2.840.10008.1.2.1"),
        "{}",
        parts[0].0
    );
    assert_eq!(sha256(&parts[0].1), sha256(&mg[0].bytes));
}

#[tokio::test]
async fn unknown_uids_are_404_and_bad_ones_400() {
    let srv = start().await;
    assert_eq!(srv.stow(&[&sample()[0].bytes]).await.0, StatusCode::OK);
    let res = srv.get("/studies/1.2.3.4.5", ANY_DICOM).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = srv
        .get("/studies/1.2.3.4.5/metadata", "application/dicom+json")
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = srv
        .get("/studies/1.2.x/metadata", "application/dicom+json")
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = srv.get("/studies/1.2.3", "text/html").await;
    assert_eq!(res.status(), StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn metadata_has_absolute_bulk_data_uris_etags_and_compression() {
    let srv = start().await;
    let g = sample().iter().find(|g| g.modality == "MG").unwrap();
    assert_eq!(srv.stow(&[&g.bytes]).await.0, StatusCode::OK);
    let res = srv
        .get(
            &format!("/studies/{}/metadata", g.study_instance_uid),
            "application/dicom+json",
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/dicom+json");
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let docs: Vec<Value> = res.json().await.unwrap();
    assert_eq!(docs.len(), 1);
    let meta = &docs[0];
    assert_eq!(string(meta, "00080018").unwrap(), g.sop_instance_uid);
    assert!(meta.get("00280010").is_some());
    let uri = meta["7FE00010"]["BulkDataURI"].as_str().unwrap();
    assert!(uri.starts_with(&srv.dicomweb), "{uri}");
    assert!(meta["7FE00010"].get("InlineBinary").is_none());
    // The BulkDataURI answers with the pixel data.
    let res = srv
        .client
        .get(uri)
        .header(
            "accept",
            "multipart/related; type=\"application/octet-stream\"",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let parts = multipart_parts(res).await;
    assert_eq!(parts[0].1, pixel_bytes(&g.bytes));

    // Revalidation.
    let res = srv
        .client
        .get(format!(
            "{}/studies/{}/metadata",
            srv.dicomweb, g.study_instance_uid
        ))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

    // gzip and zstd where the client accepts them, with Vary.
    for enc in ["gzip", "zstd"] {
        let res = srv
            .client
            .get(format!(
                "{}/studies/{}/metadata",
                srv.dicomweb, g.study_instance_uid
            ))
            .header("accept-encoding", enc)
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["content-encoding"], enc);
        assert!(
            res.headers()["vary"]
                .to_str()
                .unwrap()
                .to_lowercase()
                .contains("accept-encoding")
        );
    }
    // Series and instance level metadata.
    let series: Vec<Value> = srv
        .get(
            &format!(
                "/studies/{}/series/{}/metadata",
                g.study_instance_uid, g.series_instance_uid
            ),
            "application/dicom+json",
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(series.len(), 1);
    let inst: Vec<Value> = srv
        .get(
            &format!("{}/metadata", instance_path(g)),
            "application/dicom+json",
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(inst[0], series[0]);
}

#[tokio::test]
async fn native_frames_are_the_pixel_bytes() {
    let srv = start().await;
    let g = sample().iter().find(|g| g.modality == "MG").unwrap();
    assert_eq!(srv.stow(&[&g.bytes]).await.0, StatusCode::OK);
    for accept in [
        "multipart/related; type=\"application/octet-stream\"",
        "multipart/related; type=application/octet-stream; transfer-syntax=*",
        "*/*",
    ] {
        let res = srv
            .get(&format!("{}/frames/1", instance_path(g)), accept)
            .await;
        assert_eq!(res.status(), StatusCode::OK, "{accept}");
        let etag = res.headers().get("etag").cloned();
        assert!(etag.is_some());
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.contains("application/octet-stream"), "{ct}");
        let body = res.bytes().await.unwrap();
        let parts = split_multipart(&ct, &body);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].1, pixel_bytes(&g.bytes), "{accept}");
    }
    let res = srv
        .get(&format!("{}/frames/2", instance_path(g)), "*/*")
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    for bad in ["0", "1,x", "-1", "1;2"] {
        let res = srv
            .get(&format!("{}/frames/{bad}", instance_path(g)), "*/*")
            .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn multi_frame_and_encapsulated_frames() {
    let Some(rle) = corpus("pydicom-data__emri_small_RLE.dcm") else {
        return;
    };
    let Some(native) = corpus("pydicom-data__emri_small.dcm") else {
        return;
    };
    // The two files share their SOP Instance UID, so each goes to its own archive.
    let rle_srv = start().await;
    let native_srv = start().await;
    let mut urls = Vec::new();
    for (srv, file) in [(&rle_srv, &rle), (&native_srv, &native)] {
        let (status, resp) = srv.stow(&[file]).await;
        assert_eq!(status, StatusCode::OK, "{resp}");
        urls.push(string(&resp["00081199"]["Value"][0], "00081190").unwrap());
    }
    let url = |i: usize| urls[i].clone();
    let srv = &rle_srv;

    // RLE: each frame is its fragment, in its own media type.
    let obj = dicom_object::OpenFileOptions::new()
        .from_reader(&rle[..])
        .unwrap();
    let fragments: Vec<Vec<u8>> = match obj.element(tags::PIXEL_DATA).unwrap().value() {
        dicom_core::DicomValue::PixelSequence(seq) => {
            seq.fragments().iter().map(|f| f.to_vec()).collect()
        }
        _ => panic!("RLE file is not encapsulated"),
    };
    let res = srv
        .client
        .get(format!("{}/frames/1,3", url(0)))
        .header("accept", "multipart/related; type=\"image/dicom-rle\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let parts = multipart_parts(res).await;
    assert_eq!(parts.len(), 2);
    assert!(parts[0].0.contains("image/dicom-rle"), "{}", parts[0].0);
    assert_eq!(parts[0].1, fragments[0]);
    assert_eq!(parts[1].1, fragments[2]);
    // Asking for uncompressed frames of an RLE instance: decoded.
    let res = srv
        .client
        .get(format!("{}/frames/1", url(0)))
        .header("accept", "multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // …and in a syntax this archive does not encode to: 406 with a reason.
    let res = srv
        .client
        .get(format!("{}/frames/1", url(0)))
        .header("accept", "multipart/related; type=\"image/jls\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_ACCEPTABLE);

    // Native multi-frame: frame n is the n-th slice of the pixel data.
    let pixels = pixel_bytes(&native);
    let frames = obj_frames(&native);
    let len = pixels.len() / frames;
    let res = srv
        .client
        .get(format!("{}/frames/2", url(1)))
        .header(
            "accept",
            "multipart/related; type=\"application/octet-stream\"",
        )
        .send()
        .await
        .unwrap();
    let parts = multipart_parts(res).await;
    assert_eq!(parts[0].1, pixels[len..2 * len]);
}

fn obj_frames(file: &[u8]) -> usize {
    let obj = dicom_object::OpenFileOptions::new()
        .from_reader(file)
        .unwrap();
    obj.element(tags::NUMBER_OF_FRAMES)
        .map(|e| e.to_int::<usize>().unwrap())
        .unwrap_or(1)
}

#[tokio::test]
async fn implicit_vr_is_served_as_explicit_vr_on_the_web() {
    let Some(implicit) = corpus("pydicom__MR_small_implicit.dcm") else {
        return;
    };
    let srv = start().await;
    let (status, resp) = srv.stow(&[&implicit]).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let url = string(&resp["00081199"]["Value"][0], "00081190").unwrap();
    let res = srv
        .client
        .get(&url)
        .header("accept", ANY_DICOM)
        .send()
        .await
        .unwrap();
    let parts = multipart_parts(res).await;
    assert!(
        parts[0].0.contains("transfer-syntax=1.2.840.10008.1.2.1"),
        "{}",
        parts[0].0
    );
    let served = dicom_object::OpenFileOptions::new()
        .from_reader(&parts[0].1[..])
        .unwrap();
    let original = dicom_object::OpenFileOptions::new()
        .from_reader(&implicit[..])
        .unwrap();
    assert_eq!(served.meta().transfer_syntax(), "1.2.840.10008.1.2.1");
    // Same data set: every element has the same value.
    for elem in original.iter() {
        let other = served.element(elem.tag()).unwrap();
        assert_eq!(
            other.to_bytes().ok(),
            elem.to_bytes().ok(),
            "{}",
            elem.tag()
        );
    }
    assert_eq!(served.iter().count(), original.iter().count());
    // Asking for implicit VR explicitly is refused.
    let res = srv
        .client
        .get(&url)
        .header(
            "accept",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn compressed_instance_asked_uncompressed_is_406() {
    let Some(j2k) = corpus("pydicom-data__RG1_J2KR.dcm") else {
        return;
    };
    let srv = start().await;
    let (status, resp) = srv.stow(&[&j2k]).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let url = string(&resp["00081199"]["Value"][0], "00081190").unwrap();
    let res = srv
        .client
        .get(&url)
        .header(
            "accept",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.1",
        )
        .send()
        .await
        .unwrap();
    // Asked uncompressed, it is decoded (tests/it/render.rs compares the pixels).
    assert_eq!(res.status(), StatusCode::OK);
    let res = srv
        .client
        .get(&url)
        .header(
            "accept",
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.80",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_ACCEPTABLE);
    assert!(res.text().await.unwrap().contains("1.2.840.10008.1.2.4.90"));
    // Its frame in its own media type is the codestream.
    let res = srv
        .client
        .get(format!("{url}/frames/1"))
        .header("accept", "multipart/related; type=\"image/jp2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let parts = multipart_parts(res).await;
    let frame = &parts[0].1;
    assert_eq!(
        &frame[..2],
        &[0xFF, 0x4F],
        "JPEG 2000 codestream starts with SOC"
    );
}

#[tokio::test]
async fn wado_uri_returns_the_file() {
    let srv = start().await;
    let g = &sample()[0];
    assert_eq!(srv.stow(&[&g.bytes]).await.0, StatusCode::OK);
    let q = format!(
        "requestType=WADO&studyUID={}&seriesUID={}&objectUID={}&contentType=application%2Fdicom",
        g.study_instance_uid, g.series_instance_uid, g.sop_instance_uid
    );
    for root in [srv.root.clone(), srv.dicomweb.clone()] {
        let res = srv
            .client
            .get(format!("{root}/wado?{q}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "application/dicom");
        assert_eq!(sha256(&res.bytes().await.unwrap()), sha256(&g.bytes));
    }
    let res = srv
        .client
        .get(format!("{}/wado?requestType=WADO", srv.root))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = srv
        .client
        .get(format!(
            "{}/wado?{}",
            srv.root,
            q.replace("application%2Fdicom", "image%2Fgif")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_ACCEPTABLE);
    let res = srv
        .client
        .get(format!(
            "{}/wado?{}",
            srv.root,
            q.replace(&g.sop_instance_uid, "1.2.3")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn instance_etag_revalidates() {
    let srv = start().await;
    let g = &sample()[0];
    assert_eq!(srv.stow(&[&g.bytes]).await.0, StatusCode::OK);
    let res = srv.get(&instance_path(g), ANY_DICOM).await;
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let first = res.bytes().await.unwrap();
    let res = srv.get(&instance_path(g), ANY_DICOM).await;
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(
        res.bytes().await.unwrap(),
        first,
        "same request, same bytes"
    );
    let res = srv
        .client
        .get(format!("{}{}", srv.dicomweb, instance_path(g)))
        .header("accept", ANY_DICOM)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn cors_allows_browser_viewers() {
    let srv = start().await;
    let res = srv
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/studies", srv.dicomweb),
        )
        .header("origin", "http://viewer.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "accept")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    assert_eq!(res.headers()["access-control-allow-origin"], "*");

    let srv = start_with(|s| s.cors_origin = vec!["http://ohif.example".into()]).await;
    let res = srv
        .client
        .get(format!("{}/studies", srv.dicomweb))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let res = srv
        .client
        .get(format!("{}/studies", srv.dicomweb))
        .header("origin", "http://ohif.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "http://ohif.example"
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let srv = start().await;
    for p in ["/healthz", "/readyz"] {
        let res = srv
            .client
            .get(format!("{}{p}", srv.root))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{p}");
    }
}
