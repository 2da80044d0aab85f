//! The change feed (`/changefeed`): under 8 concurrent ingesting clients a
//! poller sees every instance exactly once, in one order, without gaps;
//! replaces and deletes are entries too; two nodes on one PostgreSQL share
//! one order; bad parameters are refused; webhooks deliver every entry in
//! order, retrying a receiver that fails.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::*;

/// `count` distinct small instances (the smallest sample file under new
/// SOP Instance UIDs, one series per `client`).
fn instances(clients: usize, per_client: usize) -> Vec<Vec<Vec<u8>>> {
    let smallest = sample().iter().min_by_key(|g| g.bytes.len()).unwrap();
    (0..clients)
        .map(|c| {
            (0..per_client)
                .map(|i| {
                    edit(&smallest.bytes, |obj| {
                        let sop = format!("1.2.826.0.1.3680043.9.7.77.{c}.{}", i + 1);
                        obj.put(DataElement::new(
                            tags::SOP_INSTANCE_UID,
                            VR::UI,
                            PrimitiveValue::from(sop.clone()),
                        ));
                        obj.put(DataElement::new(
                            tags::SERIES_INSTANCE_UID,
                            VR::UI,
                            PrimitiveValue::from(format!("1.2.826.0.1.3680043.9.7.77.{c}")),
                        ));
                        obj.update_meta(|m| m.media_storage_sop_instance_uid = sop);
                    })
                })
                .collect()
        })
        .collect()
}

fn sop_of(bytes: &[u8]) -> String {
    let obj = dicom_object::OpenFileOptions::new()
        .from_reader(bytes)
        .unwrap();
    obj.element(tags::SOP_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches('\0')
        .to_owned()
}

async fn feed(server: &TestServer, since: i64, limit: u32) -> Vec<Value> {
    let res = server
        .client
        .get(format!(
            "{}/changefeed?since={since}&limit={limit}",
            server.root
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// `GET /changefeed/latest`.
async fn latest(server: &TestServer) -> Value {
    let res = server
        .client
        .get(format!("{}/changefeed/latest", server.root))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// Reads everything after `since`, page by page.
async fn read_all(server: &TestServer, mut since: i64) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let page = feed(server, since, 7).await;
        let Some(last) = page.last() else { break };
        since = last["sequence"].as_i64().unwrap();
        all.extend(page);
    }
    all
}

/// Stores every client's instances, each client one request per instance,
/// all clients at once (`servers` in turn).
async fn ingest_concurrently(servers: &[&TestServer], files: Vec<Vec<Vec<u8>>>) {
    let mut tasks = Vec::new();
    for (c, client_files) in files.into_iter().enumerate() {
        let url = format!("{}/studies", servers[c % servers.len()].dicomweb);
        let client = reqwest::Client::new();
        tasks.push(tokio::spawn(async move {
            for f in client_files {
                let (ct, body) = dicom_parts(&[&f]);
                let res = client
                    .post(&url)
                    .header("content-type", ct)
                    .header("accept", "application/dicom+json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), StatusCode::OK);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Polls the feed while `ingest` runs, as an EHR would, and checks what it
/// collected against the whole feed read afterwards.
async fn poll_while(servers: &[&TestServer], files: Vec<Vec<Vec<u8>>>) -> Vec<Value> {
    let expected: BTreeSet<String> = files.iter().flatten().map(|f| sop_of(f)).collect();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let client = reqwest::Client::new();
        let root = servers[servers.len() - 1].root.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen: Vec<Value> = Vec::new();
            let mut since = 0i64;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page: Vec<Value> = client
                    .get(format!("{root}/changefeed?since={since}&limit=5"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if let Some(last) = page.last() {
                    since = last["sequence"].as_i64().unwrap();
                } else if finished {
                    break;
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                seen.extend(page);
            }
            seen
        })
    };
    ingest_concurrently(servers, files).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let polled = poller.await.unwrap();

    // No gaps, no duplicates: 1, 2, 3, … as the poller met them.
    let sequences: Vec<i64> = polled
        .iter()
        .map(|c| c["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=expected.len() as i64).collect::<Vec<_>>());
    // Every instance once, each a create.
    let sops: BTreeSet<String> = polled
        .iter()
        .map(|c| c["sop_instance_uid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sops, expected);
    assert!(polled.iter().all(|c| c["kind"] == "create"));
    // Stable: read again afterwards, from every node, the feed is the same.
    for server in servers {
        assert_eq!(read_all(server, 0).await, polled);
    }
    polled
}

#[tokio::test]
async fn eight_concurrent_clients_one_order() {
    let server = start_with(|s| {
        s.conflict_policy = Some(aina::config::ConflictPolicyArg::KeepBoth);
    })
    .await;
    let files = instances(8, 6);
    let first = files[0][0].clone();
    let polled = poll_while(&[&server], files).await;
    let latest = latest(&server).await;
    assert_eq!(latest["sequence"], 48);
    // The feed's identity, on every answer, from its first entry.
    let feed_id = latest["feed"].as_str().unwrap().to_owned();
    assert_eq!(feed_id.len(), 16);
    let res = server
        .client
        .get(format!("{}/changefeed?since=40", server.root))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["aina-feed"], feed_id.as_str());
    let one = &polled[0];
    assert!(one["patient_id"].as_str().is_some());
    assert!(one["time"].as_str().unwrap().ends_with('Z'));

    // A replace (different bytes under a stored SOP Instance UID) and a
    // delete are entries too; storing the same bytes again is not.
    let sop = sop_of(&first);
    server.stow(&[&first]).await;
    let changed = edit(&first, |obj| {
        obj.put(DataElement::new(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            PrimitiveValue::from("second version"),
        ));
    });
    // 202: stored, with a warning that an earlier version is kept.
    let (status, _) = server.stow(&[&changed]).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let after = read_all(&server, 48).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0]["kind"], "replace");
    assert_eq!(after[0]["sequence"], 49);
    assert_eq!(after[0]["sop_instance_uid"], sop);
    let study = after[0]["study_instance_uid"].as_str().unwrap();
    let series = after[0]["series_instance_uid"].as_str().unwrap();
    let deleted = server
        .client
        .delete(format!(
            "{}/studies/{study}/series/{series}",
            server.dicomweb
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let after = read_all(&server, 49).await;
    assert_eq!(after.len(), 6, "one delete per instance of the series");
    assert!(after.iter().all(|c| c["kind"] == "delete"));
    assert_eq!(after[0]["sequence"], 50);
    assert_eq!(after[5]["sequence"], 55);
}

#[tokio::test]
async fn two_nodes_share_one_order() {
    let Some(backend) = Backend::shared("change feed across nodes").await else {
        eprintln!("SKIPPED: change feed across nodes (needs PostgreSQL and S3)");
        return;
    };
    let backend = Arc::new(backend);
    let a = start_node(backend.clone()).await;
    let b = start_node(backend).await;
    poll_while(&[&a, &b], instances(8, 4)).await;
}

#[tokio::test]
async fn bad_parameters_are_refused() {
    let server = start().await;
    let smallest = sample().iter().min_by_key(|g| g.bytes.len()).unwrap();
    server.stow(&[&smallest.bytes]).await;
    for (query, says) in [
        ("since=2", "beyond the latest"),
        ("since=-1", "since"),
        ("since=abc", "since"),
        ("since=99999999999999999999999", "since"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("after=1", "since and limit"),
    ] {
        let res = server
            .client
            .get(format!("{}/changefeed?{query}", server.root))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{query}");
        let text = res.text().await.unwrap();
        assert!(text.contains(says), "{query}: {text}");
    }
    // At the latest: nothing new, not an error.
    assert!(feed(&server, 1, 10).await.is_empty());
}

/// One POST a webhook receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    body: Value,
    sequence: Option<String>,
    feed: Option<String>,
    authorization: Option<String>,
}

/// A webhook receiver that fails its first `failures` requests.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Delivery>>>,
}

async fn receiver(failures: usize) -> Receiver {
    use axum::http::HeaderMap;
    let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let got = got.clone();
            move |headers: HeaderMap, body: axum::body::Bytes| {
                let got = got.clone();
                let calls = calls.clone();
                async move {
                    let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    got.lock().unwrap().push(Delivery {
                        body: serde_json::from_slice(&body).unwrap(),
                        sequence: header("x-aina-sequence"),
                        feed: header("x-aina-feed"),
                        authorization: header("authorization"),
                    });
                    if n < failures {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::NO_CONTENT
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url: format!("http://{addr}/hook"),
        got,
    }
}

#[tokio::test]
async fn webhooks_deliver_in_order_and_retry() {
    let hook = receiver(2).await;
    let url = hook.url.clone();
    let server = start_with(move |s| {
        s.webhook = vec![url];
        s.webhook_token = Some("hook-secret".into());
    })
    .await;
    let files = instances(1, 5).remove(0);
    for f in &files {
        let (status, _) = server.stow(&[f]).await;
        assert_eq!(status, StatusCode::OK);
    }
    // The first entry fails twice (1 s, then 2 s of backoff), then all go.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let acknowledged = hook.got.lock().unwrap().len();
        if acknowledged >= 7 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "webhook deliveries: {:?}",
            hook.got.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = hook.got.lock().unwrap().clone();
    let sequences: Vec<i64> = got
        .iter()
        .map(|d| d.body["sequence"].as_i64().unwrap())
        .collect();
    // At least once, in order: 1 three times (two failures), then 2 to 5.
    assert_eq!(sequences, [1, 1, 1, 2, 3, 4, 5]);
    let latest = latest(&server).await;
    for d in &got {
        assert_eq!(
            d.sequence.as_deref(),
            Some(d.body["sequence"].to_string().as_str())
        );
        assert_eq!(d.authorization.as_deref(), Some("Bearer hook-secret"));
        assert_eq!(d.feed.as_deref(), latest["feed"].as_str());
        assert_eq!(d.body["kind"], "create");
    }
    let sops: Vec<String> = files.iter().map(|f| sop_of(f)).collect();
    let delivered: Vec<String> = got[2..]
        .iter()
        .map(|d| d.body["sop_instance_uid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(delivered, sops);
    // The cursor is kept: nothing more is sent.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hook.got.lock().unwrap().len(), 7);
}

#[tokio::test]
async fn a_move_is_a_delete_and_a_create() {
    let server = start_with(|s| {
        s.conflict_policy = Some(aina::config::ConflictPolicyArg::KeepBoth);
    })
    .await;
    let first = instances(1, 1).remove(0).remove(0);
    server.stow(&[&first]).await;
    // The same SOP Instance UID, corrected into another study and series.
    let moved = edit(&first, |obj| {
        obj.put(DataElement::new(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.826.0.1.3680043.9.7.78"),
        ));
        obj.put(DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.826.0.1.3680043.9.7.78.1"),
        ));
    });
    let (status, _) = server.stow(&[&moved]).await;
    assert!(status.is_success(), "{status}");
    let all = read_all(&server, 0).await;
    let summary: Vec<(String, String)> = all
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_owned(),
                c["study_instance_uid"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let old_study = all[0]["study_instance_uid"].as_str().unwrap().to_owned();
    assert_eq!(
        summary,
        [
            ("create".to_owned(), old_study.clone()),
            ("delete".to_owned(), old_study),
            ("create".to_owned(), "1.2.826.0.1.3680043.9.7.78".to_owned()),
        ]
    );
    assert!(
        all.iter()
            .all(|c| c["sop_instance_uid"] == all[0]["sop_instance_uid"])
    );
}

#[tokio::test]
async fn webhooks_from_two_nodes_deliver_each_entry_once() {
    let Some(backend) = Backend::shared("webhooks across nodes").await else {
        eprintln!("SKIPPED: webhooks across nodes (needs PostgreSQL and S3)");
        return;
    };
    let backend = Arc::new(backend);
    let hook = receiver(0).await;
    let url = hook.url.clone();
    let a = start_node_with(backend.clone(), |s| s.webhook = vec![url]).await;
    let url = hook.url.clone();
    let b = start_node_with(backend, |s| s.webhook = vec![url]).await;
    ingest_concurrently(&[&a, &b], instances(2, 4)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while hook.got.lock().unwrap().len() < 8 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            hook.got.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Both nodes poll every second: give a second sender time to show itself.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let sequences: Vec<i64> = hook
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.body["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(
        sequences,
        (1..=8).collect::<Vec<_>>(),
        "one deliverer, in order"
    );
}
