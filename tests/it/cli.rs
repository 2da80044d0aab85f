//! The real `aina` binary: import, verify (and --repair), reindex.

use std::path::Path;
use std::process::Command;

use aina_sample::Generated;
use bytes::Bytes;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;

use crate::common::*;

/// Runs the `aina` binary on the backend's archive.
pub fn aina(backend: &Backend, args: &[&str]) -> (i32, String) {
    let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    all.extend(backend.args());
    aina_raw(&all)
}

/// Runs the `aina` binary with exactly these arguments.
fn aina_raw(args: &[String]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aina"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run aina");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn write_sample(dir: &Path) {
    let nested = dir.join("a/b");
    std::fs::create_dir_all(&nested).unwrap();
    for (i, g) in sample().iter().enumerate() {
        let target = if i % 2 == 0 { dir } else { &nested };
        std::fs::write(target.join(&g.file_name), &g.bytes).unwrap();
    }
}

#[test]
fn import_verify_repair_reindex() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut data = rt.block_on(Backend::new());
    let store = data.store();
    let input = tempfile::tempdir().unwrap();
    write_sample(input.path());
    std::fs::write(input.path().join("a/garbage.dcm"), b"not dicom").unwrap();

    let (code, out) = aina(&data, &["import", input.path().to_str().unwrap()]);
    assert_eq!(code, 1, "a failed file makes the exit code non-zero: {out}");
    assert!(out.contains("garbage.dcm"), "{out}");
    assert!(
        out.contains(&format!("imported {} new", sample().len())),
        "{out}"
    );
    assert!(out.contains("1 failed"), "{out}");

    std::fs::remove_file(input.path().join("a/garbage.dcm")).unwrap();
    let (code, out) = aina(&data, &["import", input.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{} already stored", sample().len())),
        "{out}"
    );

    let (code, out) = aina(&data, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "verified {} indexed objects: 0 missing, 0 damaged; 0 orphan",
            sample().len()
        )),
        "{out}"
    );

    // Damage one object and lose another, whatever the store.
    let objects = rt.block_on(store.list_instances()).unwrap();
    assert_eq!(objects.len(), sample().len());
    let (damaged, lost) = (&objects[0].key, &objects[1].key);
    let mut bytes = rt.block_on(store.get(damaged)).unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    rt.block_on(async {
        store.delete(damaged).await.unwrap();
        store.put(damaged, Bytes::from(bytes)).await.unwrap();
        store.delete(lost).await.unwrap();
    });
    let (code, out) = aina(&data, &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 missing, 1 damaged"), "{out}");
    assert!(out.contains("missing object"), "{out}");
    assert!(out.contains("damaged object"), "{out}");

    let (code, out) = aina(&data, &["verify", "--repair"]);
    assert_eq!(code, 1, "damaged objects cannot be repaired: {out}");
    assert!(out.contains("removed the row of missing object"), "{out}");
    rt.block_on(store.delete(damaged)).unwrap();
    let (_, _) = aina(&data, &["verify", "--repair"]);
    let (code, out) = aina(&data, &["verify"]);
    assert_eq!(code, 0, "{out}");

    // Rebuild the index from the objects alone.
    rt.block_on(data.lose_index());
    let (code, out) = aina(&data, &["verify"]);
    assert_eq!(code, 0, "orphans alone are no inconsistency: {out}");
    assert!(
        out.contains(&format!("{} orphan objects", sample().len() - 2)),
        "{out}"
    );
    let (code, out) = aina(&data, &["reindex"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "reindexed {} objects (0 failed)",
            sample().len() - 2
        )),
        "{out}"
    );
    let (code, out) = aina(&data, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 orphan objects"), "{out}");

    // The rebuilt index answers QIDO like the original.
    rt.block_on(async {
        let srv = start_on(std::sync::Arc::new(data)).await;
        let rows = srv.qido("/instances?limit=1000").await;
        assert_eq!(rows.len(), sample().len() - 2);
        let names: Vec<String> = rows
            .iter()
            .filter_map(|r| alphabetic(r, "00100010"))
            .collect();
        assert!(
            names.iter().any(|n| n == "Әбілқасымова^Гүлнұр"),
            "{names:?}"
        );
    });
}

#[test]
fn bad_configuration_is_refused_with_a_message() {
    // A bare data directory: the URLs given here are the ones under test.
    let data = Backend {
        dir: tempfile::tempdir().unwrap(),
        database: None,
        bucket: None,
    };
    let (code, out) = aina(&data, &["verify", "--database", "mysql://x"]);
    assert_ne!(code, 0);
    assert!(out.contains("unsupported database URL"), "{out}");
    let (code, out) = aina(&data, &["verify", "--storage", "file://relative/dir"]);
    assert_ne!(code, 0);
    assert!(out.contains("storage"), "{out}");
    // No authentication yet: listening beyond loopback is refused unless asked for.
    let (code, out) = aina(
        &data,
        &["serve", "--http", "0.0.0.0:0", "--dicom", "127.0.0.1:0"],
    );
    assert_ne!(code, 0);
    assert!(
        out.contains("without authentication") && out.contains("--insecure"),
        "{out}"
    );
    let (code, out) = aina(
        &data,
        &["serve", "--http", "127.0.0.1:0", "--dicom", "0.0.0.0:0"],
    );
    assert_ne!(code, 0);
    assert!(out.contains("--dicom-allowed-caller"), "{out}");
}

/// `aina migrate-index` moves an embedded archive's index to PostgreSQL: the
/// server on the new index answers as before, without re-reading any object.
#[test]
fn migrate_index_to_postgres() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(target) = rt.block_on(aina::testing::TestDatabase::create("aina migrate-index"))
    else {
        return;
    };
    let data = Backend {
        dir: tempfile::tempdir().unwrap(),
        database: None,
        bucket: None,
    };
    let input = tempfile::tempdir().unwrap();
    write_sample(input.path());
    let (code, out) = aina(&data, &["import", input.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");

    let from = format!("sqlite://{}/index.db", data.dir.path().display());
    let migrate = ["migrate-index", "--from", &from, "--to", target.url()].map(str::to_owned);
    let (code, out) = aina_raw(&migrate);
    assert_eq!(code, 0, "{out}");
    let studies = sample()
        .iter()
        .map(|g| &g.study_instance_uid)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(
        out.contains(&format!("copied {studies} studies,"))
            && out.contains(&format!(" {} instances, 0 users", sample().len())),
        "{out}"
    );
    // Into a non-empty index: refused, nothing changed.
    let (code, out) = aina_raw(&migrate);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("not empty"), "{out}");

    // Same answers from the migrated index; objects untouched, verify clean.
    let migrated = Backend {
        dir: data.dir,
        database: Some(target),
        bucket: None,
    };
    let (code, out) = aina(&migrated, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 missing, 0 damaged; 0 orphan"), "{out}");
    rt.block_on(async {
        let srv = start_on(std::sync::Arc::new(migrated)).await;
        assert_eq!(
            srv.qido("/instances?limit=1000").await.len(),
            sample().len()
        );
        let rows = srv
            .qido("/studies?PatientName=%D3%99%D0%B1%D1%96%D0%BB*")
            .await;
        assert!(
            !rows.is_empty(),
            "Kazakh name prefix search on the migrated index"
        );
    });
}

/// `--insecure` is the deliberate way to listen beyond loopback (a node behind a
/// proxy): the server starts and answers on every address.
#[tokio::test]
async fn insecure_listens_beyond_loopback() {
    let srv = start_with(|s| {
        s.http = Some("0.0.0.0:0".parse().unwrap());
        s.insecure = Some(true);
    })
    .await;
    assert!(srv.server.http_addr.ip().is_unspecified());
    let url = format!("http://127.0.0.1:{}/healthz", srv.server.http_addr.port());
    let res = reqwest::get(url).await.unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
}

/// `aina verify` names the one object a delete left behind (not an orphan to
/// index again), `--repair` removes it, and then all is clean.
fn remove_one_leftover(data: &Backend) {
    let (code, out) = aina(data, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("0 orphan objects; 1 objects of deleted instances")
            && out.contains("deleted instance's object left behind"),
        "{out}"
    );
    let (code, out) = aina(data, &["verify", "--repair"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("repaired: removed the deleted instance's object"),
        "{out}"
    );
    let (code, out) = aina(data, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("0 orphan objects; 0 objects of deleted instances"),
        "{out}"
    );
}

/// An object a delete could not remove (here: the rows deleted through the
/// index alone) is not an orphan to index again: `aina verify` names it and
/// `--repair` removes it, so a deleted study stays deleted.
#[test]
fn verify_removes_what_a_delete_left_behind() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = std::sync::Arc::new(rt.block_on(Backend::new()));
    let g = &sample()[0];
    rt.block_on(async {
        let srv = start_on(data.clone()).await;
        let (status, _) = srv.stow(&[g.bytes.as_slice()]).await;
        assert!(status.is_success());
        let deleted = srv.delete_rows(&g.study_instance_uid).await;
        assert_eq!(deleted.objects.len(), 1);
    });
    remove_one_leftover(&data);
    // Nothing came back.
    rt.block_on(async {
        let srv = start_on(data.clone()).await;
        assert!(srv.qido("/studies").await.is_empty());
    });
}

/// Imports one file with a conflict policy, as a modality sending it would.
fn import_one(data: &Backend, bytes: &[u8], policy: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.dcm"), bytes).unwrap();
    let path = dir.path().to_str().unwrap();
    let (code, out) = aina(data, &["import", "--conflict-policy", policy, path]);
    assert_eq!(code, 0, "{out}");
}

/// A sample instance with its Series Description changed: another version.
fn version(g: &Generated, description: &str) -> Vec<u8> {
    edit(&g.bytes, |o| {
        o.put(DataElement::new(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            PrimitiveValue::from(description),
        ));
    })
}

/// The SHA-256 of the one version the archive serves of a sample instance.
fn served(rt: &tokio::runtime::Runtime, data: std::sync::Arc<Backend>, g: &Generated) -> String {
    rt.block_on(async {
        let srv = start_on(data).await;
        let path = instance_path(g);
        let parts = srv.retrieve_original(&path).await;
        assert_eq!(parts.len(), 1);
        sha256(&parts[0])
    })
}

/// With `--conflict-policy replace` the replaced version's object goes; one
/// the ingest could not remove (put back here) is a leftover that `aina
/// verify --repair` removes, never an orphan indexed again over the
/// replacement.
#[test]
fn a_replacement_stays_replaced() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = std::sync::Arc::new(rt.block_on(Backend::new()));
    let store = data.store();
    let g = &sample()[0];
    let changed = version(g, "corrected");
    let objects_of_instance = || {
        rt.block_on(store.list_instances())
            .unwrap()
            .into_iter()
            .filter(|o| o.key.contains(&g.sop_instance_uid))
            .collect::<Vec<_>>()
    };

    import_one(&data, &g.bytes, "reject");
    let old = objects_of_instance();
    assert_eq!(old.len(), 1);
    let old_bytes = rt.block_on(store.get(&old[0].key)).unwrap();
    import_one(&data, &changed, "replace");
    let now = objects_of_instance();
    assert_eq!(now.len(), 1, "the replaced object is removed: {now:?}");
    assert_ne!(now[0].key, old[0].key);

    rt.block_on(store.put(&old[0].key, old_bytes)).unwrap();
    remove_one_leftover(&data);
    assert_eq!(objects_of_instance(), now);
    assert_eq!(served(&rt, data.clone(), g), sha256(&changed));
}

/// `aina reindex` of an archive that kept several versions of an instance
/// (keep-both) serves the one stored last again, whatever the listing order.
#[test]
fn reindex_serves_the_version_stored_last() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut data = rt.block_on(Backend::new());
    let g = &sample()[0];
    let versions = ["first", "second", "third"].map(|d| version(g, d));
    for (i, v) in versions.iter().enumerate() {
        if i > 0 {
            // S3 keeps write times to the second.
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        import_one(&data, v, "keep-both");
    }
    rt.block_on(data.lose_index());
    let (code, out) = aina(&data, &["reindex"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("reindexed 3 objects (0 failed)"), "{out}");
    assert_eq!(
        served(&rt, std::sync::Arc::new(data), g),
        sha256(&versions[2]),
        "the last version is served"
    );
}
