//! DICOMweb DELETE (admins): instance, series, study; counts follow, the
//! objects and their thumbnails go, a second delete is 404, the same
//! instance can be stored again, and each deleted instance is audited.

use std::collections::BTreeMap;

use aina::auth::audit::{Action, AuditFilter};
use aina::render::derived::{derived_prefix, thumbnail_key};
use reqwest::StatusCode;

use crate::common::*;

#[tokio::test]
async fn delete_instance_series_study() {
    let server = start().await;
    // The study with most instances, with at least two series if any has.
    let mut by_study: BTreeMap<&str, Vec<&aina_sample::Generated>> = BTreeMap::new();
    for g in sample() {
        by_study.entry(&g.study_instance_uid).or_default().push(g);
    }
    let (study, files) = by_study
        .iter()
        .max_by_key(|(_, f)| f.len())
        .map(|(s, f)| (s.to_string(), f.clone()))
        .unwrap();
    assert!(files.len() >= 2, "a study with several instances");
    let bytes: Vec<&[u8]> = files.iter().map(|g| g.bytes.as_slice()).collect();
    let (status, _) = server.stow(&bytes).await;
    assert_eq!(status, StatusCode::OK);
    let other: Vec<&[u8]> = sample()
        .iter()
        .filter(|g| g.study_instance_uid != study)
        .take(1)
        .map(|g| g.bytes.as_slice())
        .collect();
    server.stow(&other).await;
    let objects_before = server.store().list_instances().await.unwrap().len();
    assert_eq!(objects_before, files.len() + other.len());

    let count = |rows: &[serde_json::Value]| {
        rows.iter()
            .find(|r| string(r, "0020000D").as_deref() == Some(study.as_str()))
            .and_then(|r| value(r, "00201208").cloned())
    };
    let del = |path: String| {
        let client = server.client.clone();
        async move { client.delete(path).send().await.unwrap().status() }
    };

    // One instance.
    let first = files[0];
    let instance_path = format!(
        "{}/studies/{study}/series/{}/instances/{}",
        server.dicomweb, first.series_instance_uid, first.sop_instance_uid
    );
    // Its thumbnail exists (made on request) before the delete.
    let thumb = server
        .get(
            &format!(
                "/studies/{study}/series/{}/instances/{}/thumbnail",
                first.series_instance_uid, first.sop_instance_uid
            ),
            "image/jpeg",
        )
        .await;
    assert_eq!(thumb.status(), StatusCode::OK);
    // The stored thumbnail (derived in the background after the store).
    let derived = thumbnail_key(&sha256(&first.bytes));
    for _ in 0..100 {
        if server.store().size(&derived).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        server.store().size(&derived).await.is_ok(),
        "derived before the delete"
    );
    assert_eq!(del(instance_path.clone()).await, StatusCode::NO_CONTENT);
    assert!(
        server.store().size(&derived).await.is_err(),
        "derived objects go too"
    );
    assert_eq!(
        del(instance_path.clone()).await,
        StatusCode::NOT_FOUND,
        "already gone"
    );
    let res = server
        .get(
            &format!(
                "/studies/{study}/series/{}/instances/{}",
                first.series_instance_uid, first.sop_instance_uid
            ),
            "multipart/related; type=\"application/dicom\"",
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let thumb = server
        .get(
            &format!(
                "/studies/{study}/series/{}/instances/{}/thumbnail",
                first.series_instance_uid, first.sop_instance_uid
            ),
            "image/jpeg",
        )
        .await;
    assert_eq!(thumb.status(), StatusCode::NOT_FOUND);
    let rows = server.qido("/studies").await;
    assert_eq!(count(&rows), Some(serde_json::json!(files.len() - 1)));
    assert_eq!(
        server.store().list_instances().await.unwrap().len(),
        objects_before - 1,
        "the object is gone"
    );

    // A series under the wrong study: 404, nothing removed.
    let second = files[1];
    let wrong = format!(
        "{}/studies/1.2.3.999/series/{}",
        server.dicomweb, second.series_instance_uid
    );
    assert_eq!(del(wrong).await, StatusCode::NOT_FOUND);
    // Bad UIDs in the path: 400.
    assert_eq!(
        del(format!("{}/studies/not-a-uid", server.dicomweb)).await,
        StatusCode::BAD_REQUEST
    );

    // The whole study, once the background work has derived every instance
    // left (previews and thumbnail; the thumbnail is written last).
    let derived_of = |g: &aina_sample::Generated| derived_prefix(&sha256(&g.bytes));
    for g in &files[1..] {
        let thumb = thumbnail_key(&sha256(&g.bytes));
        for _ in 0..200 {
            if server.store().size(&thumb).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(server.store().size(&thumb).await.is_ok(), "derived");
    }
    assert_eq!(
        del(format!("{}/studies/{study}", server.dicomweb)).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(count(&server.qido("/studies").await), None);
    for g in &files {
        assert_eq!(
            server.store().delete_prefix(&derived_of(g)).await.unwrap(),
            0,
            "no preview or thumbnail of a deleted instance is left"
        );
    }
    assert_eq!(
        server.store().list_instances().await.unwrap().len(),
        other.len(),
        "only the other study's object is left"
    );
    assert_eq!(
        server
            .get(&format!("/studies/{study}/thumbnail"), "image/jpeg")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // Stored again after the delete: a new instance, served as before.
    let (status, _) = server.stow(&[first.bytes.as_slice()]).await;
    assert_eq!(status, StatusCode::OK);
    let got = server
        .retrieve_original(&format!(
            "/studies/{study}/series/{}/instances/{}",
            first.series_instance_uid, first.sop_instance_uid
        ))
        .await;
    assert_eq!(sha256(&got[0]), sha256(&first.bytes));

    let state = &server.server.state;
    state.audit.flush().await;
    let deleted = state
        .audit_log
        .search(&AuditFilter {
            action: Some(Action::Delete),
            ..Default::default()
        })
        .await
        .unwrap();
    // One event per instance deleted (1, then the rest of the study), plus
    // the refused ones (404 and 400, one event each).
    let ok = deleted
        .iter()
        .filter(|r| r.event.status == Some(204))
        .count();
    assert_eq!(ok, files.len());
    assert!(
        deleted
            .iter()
            .filter(|r| r.event.status == Some(204))
            .all(|r| r.event.patient_id.is_some() && r.event.sop_uid.is_some())
    );
}

#[tokio::test]
async fn delete_one_series_of_two() {
    let server = start().await;
    // A study of two series (the chest X-ray: PA and lateral).
    let mut series_of: BTreeMap<&str, Vec<&aina_sample::Generated>> = BTreeMap::new();
    for g in sample() {
        series_of.entry(&g.study_instance_uid).or_default().push(g);
    }
    let files = series_of
        .into_values()
        .find(|f| f.len() == 2 && f[0].series_instance_uid != f[1].series_instance_uid)
        .expect("a sample study with two series");
    let study = files[0].study_instance_uid.clone();
    let (gone, kept) = (files[0], files[1]);
    let (status, _) = server
        .stow(&[gone.bytes.as_slice(), kept.bytes.as_slice()])
        .await;
    assert_eq!(status, StatusCode::OK);
    let series_path = format!(
        "{}/studies/{study}/series/{}",
        server.dicomweb, gone.series_instance_uid
    );
    let del = || async {
        server
            .client
            .delete(&series_path)
            .send()
            .await
            .unwrap()
            .status()
    };

    assert_eq!(del().await, StatusCode::NO_CONTENT);
    let rows = server
        .qido(&format!("/studies?StudyInstanceUID={study}"))
        .await;
    assert_eq!(rows.len(), 1, "the study stays with its other series");
    assert_eq!(value(&rows[0], "00201206"), Some(&serde_json::json!(1)));
    assert_eq!(value(&rows[0], "00201208"), Some(&serde_json::json!(1)));
    let series: Vec<String> = server
        .qido(&format!("/studies/{study}/series"))
        .await
        .iter()
        .filter_map(|r| string(r, "0020000E"))
        .collect();
    assert_eq!(series, [kept.series_instance_uid.as_str()]);
    assert_eq!(
        server
            .get(
                &format!("/studies/{study}/series/{}", gone.series_instance_uid),
                "multipart/related; type=\"application/dicom\"",
            )
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let left = server.object_keys().await;
    assert_eq!(left.len(), 1);
    assert!(left[0].contains(&kept.sop_instance_uid), "{left:?}");
    assert_eq!(del().await, StatusCode::NOT_FOUND, "already gone");
    // The series kept is whole.
    let got = server
        .retrieve_original(&format!(
            "/studies/{study}/series/{}",
            kept.series_instance_uid
        ))
        .await;
    assert_eq!(got.len(), 1);
    assert_eq!(sha256(&got[0]), sha256(&kept.bytes));
}

/// The objects of a delete go only while still deleted: the same instance
/// stored again before a (late) clean-up keeps its object and is served.
#[tokio::test]
async fn a_late_clean_up_keeps_what_was_stored_again() {
    let server = start().await;
    let again = &sample()[0];
    let gone = sample()
        .iter()
        .find(|g| g.study_instance_uid != again.study_instance_uid)
        .unwrap();
    let (status, _) = server.stow(&[&again.bytes, &gone.bytes]).await;
    assert_eq!(status, StatusCode::OK);
    let state = &server.server.state;
    let mut deleted = Vec::new();
    for g in [again, gone] {
        // The rows only; the removals "run late".
        let d = server.delete_rows(&g.study_instance_uid).await;
        assert_eq!(d.objects.len(), 1);
        deleted.push(d.objects[0].0.clone());
    }
    let (status, _) = server.stow(&[&again.bytes]).await;
    assert_eq!(status, StatusCode::OK);

    let remove = |key: String| async move {
        aina::ingest::remove_deleted_object(&*state.index, &state.store, &key)
            .await
            .unwrap()
    };
    assert!(!remove(deleted[0].clone()).await, "stored again: kept");
    assert!(remove(deleted[1].clone()).await, "still deleted: removed");
    let left = server.object_keys().await;
    assert_eq!(left, [deleted[0].clone()]);
    let path = instance_path(again);
    let parts = server.retrieve_original(&path).await;
    assert_eq!(sha256(&parts[0]), sha256(&again.bytes));
}
