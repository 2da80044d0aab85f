//! Several `aina serve` nodes on one PostgreSQL database and one S3 bucket, as
//! behind a load balancer: what one node stores every node serves, the same
//! study sent to two nodes at once is stored once, and a node killed in the
//! middle of ingest loses nothing it acknowledged. Runs where the environment
//! names both servers (`.ci/run` starts them).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;

use crate::common::*;
use crate::crash::{renamed, spawn_server};

/// Every stored instance object in the bucket.
async fn stored_objects(srv: &TestServer) -> Vec<String> {
    srv.store()
        .list_instances()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

#[tokio::test]
async fn what_one_node_stores_every_node_serves() {
    let Some(backend) = Backend::shared("two nodes").await else {
        return;
    };
    let backend = Arc::new(backend);
    let a = start_node(backend.clone()).await;
    let b = start_node(backend.clone()).await;
    let files: Vec<&[u8]> = sample().iter().map(|g| g.bytes.as_slice()).collect();
    let (status, resp) = a.stow(&files).await;
    assert_eq!(status, StatusCode::OK, "{resp}");

    let on_b = b.qido("/instances?limit=1000").await;
    assert_eq!(on_b.len(), sample().len());
    for g in sample() {
        let path = instance_path(g);
        let parts = b.retrieve_original(&path).await;
        assert_eq!(
            sha256(&parts[0]),
            sha256(&g.bytes),
            "{} from B",
            g.file_name
        );
    }
    // Images too: B renders (or serves A's stored thumbnail) from the shared
    // store, and its metadata is the same as A's.
    let mg = sample().iter().find(|g| g.modality == "MG").unwrap();
    let path = instance_path(mg);
    let res = b.get(&format!("{path}/thumbnail"), "image/jpeg").await;
    assert_eq!(res.status(), StatusCode::OK);
    image::load_from_memory(&res.bytes().await.unwrap()).unwrap();
    let meta_a = a
        .get(&format!("{path}/metadata"), "application/dicom+json")
        .await;
    let meta_b = b
        .get(&format!("{path}/metadata"), "application/dicom+json")
        .await;
    assert_eq!(
        meta_a.text().await.unwrap().replace(&a.root, ""),
        meta_b.text().await.unwrap().replace(&b.root, "")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_study_sent_to_two_nodes_at_once_is_stored_once() {
    let Some(backend) = Backend::shared("two nodes").await else {
        return;
    };
    let backend = Arc::new(backend);
    let a = Arc::new(start_node(backend.clone()).await);
    let b = Arc::new(start_node(backend.clone()).await);
    let study = &sample()[0].study_instance_uid;
    let files: Vec<Vec<u8>> = sample()
        .iter()
        .filter(|g| &g.study_instance_uid == study)
        .map(|g| g.bytes.clone())
        .collect();
    // Four clients per node, each sending the whole study.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        let files = files.clone();
        tasks.push(tokio::spawn(async move {
            let refs: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
            node.stow(&refs).await
        }));
    }
    for t in tasks {
        let (status, resp) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{resp}");
    }
    for node in [&a, &b] {
        let rows = node
            .qido(&format!("/studies/{study}/instances?limit=1000"))
            .await;
        assert_eq!(rows.len(), files.len());
        let study_row = &node
            .qido(&format!("/studies?StudyInstanceUID={study}"))
            .await[0];
        assert_eq!(
            value(study_row, "00201208").and_then(|v| v.as_u64()),
            Some(files.len() as u64),
            "NumberOfStudyRelatedInstances"
        );
    }
    let objects = stored_objects(&a).await;
    assert_eq!(
        objects.len(),
        files.len(),
        "one object per instance: {objects:?}"
    );
    let indexed = a.server.state.index.objects(None, 1000).await.unwrap();
    assert_eq!(indexed.len(), files.len(), "one row per instance");
}

#[test]
fn a_node_killed_mid_ingest_loses_nothing_it_acknowledged() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(backend) = rt.block_on(Backend::shared("two nodes")) else {
        return;
    };
    let backend = Arc::new(backend);
    let (mut child, root) = spawn_server(&backend);
    let template = sample().iter().find(|g| g.modality == "MG").unwrap();
    let (study, series) = (
        template.study_instance_uid.clone(),
        template.series_instance_uid.clone(),
    );
    let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut tasks = Vec::new();
        for c in 0..4usize {
            let (client, root, acknowledged) = (client.clone(), root.clone(), acknowledged.clone());
            let template = template.bytes.clone();
            tasks.push(tokio::spawn(async move {
                for r in 0..1000usize {
                    let (uid, bytes) = renamed(&template, 5_000_000 + c * 10_000 + r);
                    let (ct, body) = dicom_parts(&[&bytes]);
                    let Ok(res) = client
                        .post(format!("{root}/dicomweb/studies"))
                        .header("content-type", ct)
                        .body(body)
                        .send()
                        .await
                    else {
                        return;
                    };
                    if res.status() != StatusCode::OK || res.text().await.is_err() {
                        return;
                    }
                    acknowledged.lock().unwrap().push((uid, sha256(&bytes)));
                }
            }));
        }
        while acknowledged.lock().unwrap().len() < 24 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        for t in tasks {
            t.await.unwrap();
        }

        // The other node serves every acknowledged instance, bit-exact.
        let b = start_node(backend.clone()).await;
        let acknowledged = acknowledged.lock().unwrap().clone();
        let served: BTreeSet<String> = b
            .qido(&format!(
                "/studies/{study}/series/{series}/instances?limit=100000"
            ))
            .await
            .iter()
            .filter_map(|r| string(r, "00080018"))
            .collect();
        for (uid, sha) in &acknowledged {
            assert!(served.contains(uid), "acknowledged {uid} not indexed");
            let parts = b
                .retrieve_original(&format!("/studies/{study}/series/{series}/instances/{uid}"))
                .await;
            assert_eq!(&sha256(&parts[0]), sha, "{uid}");
        }
    });
    let (code, out) = crate::cli::aina(&backend, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 missing, 0 damaged"), "{out}");
}

/// A probe's status and body.
async fn probe(node: &TestServer, path: &str) -> (StatusCode, String) {
    let res = reqwest::get(format!("{}{path}", node.root)).await.unwrap();
    (res.status(), res.text().await.unwrap())
}

/// The load balancer's probes: live while the process serves, ready only while
/// the index and the bucket both answer.
#[tokio::test]
async fn readiness_names_the_dependency_that_is_down() {
    let Some(backend) = Backend::shared("readiness").await else {
        return;
    };
    let backend = Arc::new(backend);
    let node = start_node(backend.clone()).await;
    assert_eq!(
        probe(&node, "/healthz").await,
        (StatusCode::OK, "ok\n".to_owned())
    );
    assert_eq!(
        probe(&node, "/readyz").await,
        (StatusCode::OK, "ready\n".to_owned())
    );

    // The same node configuration with a bucket that does not exist.
    let missing =
        backend
            .bucket
            .as_ref()
            .unwrap()
            .url()
            .replacen("s3://", "s3://no-such-bucket-", 1);
    let broken = start_node_with(backend.clone(), |s| s.storage = Some(missing)).await;
    assert_eq!(
        probe(&broken, "/readyz").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "object store unavailable\n".to_owned()
        )
    );
    assert_eq!(probe(&broken, "/healthz").await.0, StatusCode::OK);

    // A store that refuses the write leaves no index row: the STOW fails with
    // a reason, and the shared index (asked through the healthy node) has
    // nothing.
    let (status, resp) = broken.stow(&[&sample()[0].bytes]).await;
    assert!(!status.is_success(), "{status} {resp}");
    assert!(
        resp.get("00081198").is_some(),
        "a FailedSOPSequence: {resp}"
    );
    assert!(node.qido("/instances").await.is_empty());
}
