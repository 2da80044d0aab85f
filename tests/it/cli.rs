//! The real `aina` binary: import, verify (and --repair), reindex.

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;

use crate::common::*;

pub fn aina(data: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aina"))
        .args(args)
        .arg("--data")
        .arg(data)
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

fn object_files(data: &Path) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(data.join("objects"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "aina"))
        .map(|e| e.into_path())
        .collect()
}

#[test]
fn import_verify_repair_reindex() {
    let data = tempfile::tempdir().unwrap();
    let input = tempfile::tempdir().unwrap();
    write_sample(input.path());
    std::fs::write(input.path().join("a/garbage.dcm"), b"not dicom").unwrap();

    let (code, out) = aina(data.path(), &["import", input.path().to_str().unwrap()]);
    assert_eq!(code, 1, "a failed file makes the exit code non-zero: {out}");
    assert!(out.contains("garbage.dcm"), "{out}");
    assert!(
        out.contains(&format!("imported {} new", sample().len())),
        "{out}"
    );
    assert!(out.contains("1 failed"), "{out}");

    std::fs::remove_file(input.path().join("a/garbage.dcm")).unwrap();
    let (code, out) = aina(data.path(), &["import", input.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{} already stored", sample().len())),
        "{out}"
    );

    let (code, out) = aina(data.path(), &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "verified {} indexed objects: 0 missing, 0 damaged; 0 orphan",
            sample().len()
        )),
        "{out}"
    );

    // Damage one object and lose another.
    let objects = object_files(data.path());
    assert_eq!(objects.len(), sample().len());
    let mut bytes = std::fs::read(&objects[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&objects[0], bytes).unwrap();
    std::fs::remove_file(&objects[1]).unwrap();
    let (code, out) = aina(data.path(), &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 missing, 1 damaged"), "{out}");
    assert!(out.contains("missing object"), "{out}");
    assert!(out.contains("damaged object"), "{out}");

    let (code, out) = aina(data.path(), &["verify", "--repair"]);
    assert_eq!(code, 1, "damaged objects cannot be repaired: {out}");
    assert!(out.contains("removed the row of missing object"), "{out}");
    std::fs::remove_file(&objects[0]).unwrap();
    let (_, _) = aina(data.path(), &["verify", "--repair"]);
    let (code, out) = aina(data.path(), &["verify"]);
    assert_eq!(code, 0, "{out}");

    // Rebuild the index from the objects alone.
    for f in ["index.db", "index.db-wal", "index.db-shm"] {
        let _ = std::fs::remove_file(data.path().join(f));
    }
    let (code, out) = aina(data.path(), &["verify"]);
    assert_eq!(code, 0, "orphans alone are no inconsistency: {out}");
    assert!(
        out.contains(&format!("{} orphan objects", sample().len() - 2)),
        "{out}"
    );
    let (code, out) = aina(data.path(), &["reindex"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "reindexed {} objects (0 failed)",
            sample().len() - 2
        )),
        "{out}"
    );
    let (code, out) = aina(data.path(), &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 orphan objects"), "{out}");

    // The rebuilt index answers QIDO like the original.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let settings = aina::config::Settings {
            http: Some("127.0.0.1:0".parse().unwrap()),
            dicom: Some("127.0.0.1:0".parse().unwrap()),
            data: Some(data.path().to_path_buf()),
            ..Default::default()
        };
        let state = aina::app::AppState::open(settings.resolve().unwrap())
            .await
            .unwrap();
        let server = aina::app::Server::start(state).await.unwrap();
        let url = format!("http://{}/dicomweb/instances?limit=1000", server.http_addr);
        let res = reqwest::get(&url).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let rows: Vec<serde_json::Value> = res.json().await.unwrap();
        assert_eq!(rows.len(), sample().len() - 2);
        let names: Vec<String> = rows
            .iter()
            .filter_map(|r| alphabetic(r, "00100010"))
            .collect();
        assert!(
            names.iter().any(|n| n == "Әбілқасымова^Гүлнұр"),
            "{names:?}"
        );
        server.abort();
    });
}

#[test]
fn bad_configuration_is_refused_with_a_message() {
    let data = tempfile::tempdir().unwrap();
    let (code, out) = aina(data.path(), &["verify", "--database", "mysql://x"]);
    assert_ne!(code, 0);
    assert!(out.contains("unsupported database URL"), "{out}");
    let (code, out) = aina(data.path(), &["verify", "--storage", "file://relative/dir"]);
    assert_ne!(code, 0);
    assert!(out.contains("storage"), "{out}");
}
