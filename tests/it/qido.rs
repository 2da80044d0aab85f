//! QIDO-RS: matching per PS3.4 C.2.2.2 on a loaded archive, Cyrillic and Kazakh
//! names case-insensitively, paging, includefield, and hostile query strings.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::common::*;

/// One loaded server shared by the read-only tests of this module.
async fn loaded() -> &'static TestServer {
    static SRV: OnceCell<TestServer> = OnceCell::const_new();
    SRV.get_or_init(|| async {
        let srv = start().await;
        let files: Vec<&[u8]> = sample().iter().map(|g| g.bytes.as_slice()).collect();
        let (status, resp) = srv.stow(&files).await;
        assert_eq!(status, StatusCode::OK, "{resp}");
        srv
    })
    .await
}

fn names(rows: &[Value]) -> BTreeSet<String> {
    rows.iter()
        .map(|r| alphabetic(r, "00100010").unwrap_or_default())
        .collect()
}

fn studies_in_sample() -> BTreeSet<String> {
    sample()
        .iter()
        .map(|g| g.study_instance_uid.clone())
        .collect()
}

// Each test runs on its own runtime; the shared server lives on the first one,
// so these tests share one multi-threaded runtime through a blocking helper.
fn run<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
    .block_on(f());
}

#[test]
fn all_studies_with_counts_and_modalities() {
    run(|| async {
        let srv = loaded().await;
        let rows = srv.qido("/studies").await;
        assert_eq!(rows.len(), studies_in_sample().len());
        let mammo = rows
            .iter()
            .find(|r| {
                r.get("00080061")
                    .and_then(|m| m.get("Value"))
                    .is_some_and(|v| v.as_array().unwrap().iter().any(|x| x == "MG"))
            })
            .expect("a mammography study");
        assert_eq!(
            value(mammo, "00201208").and_then(Value::as_u64),
            Some(4),
            "{mammo}"
        );
        assert_eq!(value(mammo, "00201206").and_then(Value::as_u64), Some(1));
        // Every default attribute of PS3.18 Table 6.7.1-2 that the data has is there.
        for tag in [
            "00080020", "00080030", "00080050", "00080056", "00080061", "00080090", "00081190",
            "00100010", "00100020", "00100030", "00100040", "0020000D", "00200010", "00201206",
            "00201208",
        ] {
            assert!(
                mammo.get(tag).is_some(),
                "study result lacks {tag}: {mammo}"
            );
        }
        let url = string(mammo, "00081190").unwrap();
        assert!(
            url.starts_with(&srv.dicomweb) && url.contains("/studies/"),
            "{url}"
        );
    });
}

#[test]
fn patient_name_is_case_insensitive_in_cyrillic_and_kazakh() {
    run(|| async {
        let srv = loaded().await;
        for (query, expected) in [
            ("иванов*", "Иванов^Сергей^Петрович"),
            ("ИВАНОВ*", "Иванов^Сергей^Петрович"),
            ("әбілқасымова*", "Әбілқасымова^Гүлнұр"),
            ("ӘБІЛҚАСЫМОВА^ГҮЛНҰР", "Әбілқасымова^Гүлнұр"),
            ("нұрланұлы*", "Нұрланұлы^Ерлан"),
            ("smith*", "Smith^John"),
            ("SMITH^JOHN", "Smith^John"),
            ("петрова*", "Петрова^Анна^Викторовна"),
            ("Се?ітқалиева*", "Сейітқалиева^Әйгерім"),
        ] {
            let q = format!("/studies?PatientName={}", urlencode(query));
            let rows = srv.qido(&q).await;
            assert!(!rows.is_empty(), "{query} found nothing");
            assert_eq!(
                names(&rows),
                BTreeSet::from([expected.to_owned()]),
                "{query}"
            );
        }
        // Keyword or tag, same answer.
        let by_tag = srv
            .qido(&format!("/studies?00100010={}", urlencode("иванов*")))
            .await;
        assert_eq!(
            names(&by_tag),
            BTreeSet::from(["Иванов^Сергей^Петрович".to_owned()])
        );
        // A family name alone matches its component; a part of a name needs `*`.
        let family = srv
            .qido(&format!("/studies?PatientName={}", urlencode("иванов")))
            .await;
        assert_eq!(
            names(&family),
            BTreeSet::from(["Иванов^Сергей^Петрович".to_owned()])
        );
        assert!(
            srv.qido(&format!("/studies?PatientName={}", urlencode("иван")))
                .await
                .is_empty()
        );
    });
}

#[test]
fn fuzzy_matching_finds_a_given_name() {
    run(|| async {
        let srv = loaded().await;
        let rows = srv
            .qido(&format!(
                "/studies?PatientName={}&fuzzymatching=true",
                urlencode("гүлн")
            ))
            .await;
        assert_eq!(
            names(&rows),
            BTreeSet::from(["Әбілқасымова^Гүлнұр".to_owned()])
        );
    });
}

#[test]
fn dates_ranges_uid_lists_and_modalities() {
    run(|| async {
        let srv = loaded().await;
        let all = srv.qido("/studies").await;
        let dates: Vec<String> = all.iter().filter_map(|r| string(r, "00080020")).collect();
        let in_2025 = dates.iter().filter(|d| d.starts_with("2025")).count();
        assert_eq!(
            srv.qido("/studies?StudyDate=20250101-20251231").await.len(),
            in_2025
        );
        assert_eq!(
            srv.qido("/studies?StudyDate=20250101-").await.len(),
            in_2025
        );
        assert_eq!(
            srv.qido("/studies?StudyDate=-20241231").await.len(),
            dates.len() - in_2025
        );
        let one = &dates[0];
        let exact = srv.qido(&format!("/studies?StudyDate={one}")).await;
        assert!(
            exact
                .iter()
                .all(|r| string(r, "00080020").as_deref() == Some(one))
        );

        let uids: Vec<String> = all
            .iter()
            .take(2)
            .map(|r| string(r, "0020000D").unwrap())
            .collect();
        let listed = srv
            .qido(&format!("/studies?StudyInstanceUID={}", uids.join(",")))
            .await;
        assert_eq!(listed.len(), 2);
        let listed = srv
            .qido(&format!(
                "/studies?StudyInstanceUID={}&StudyInstanceUID={}",
                uids[0], uids[1]
            ))
            .await;
        assert_eq!(listed.len(), 2);

        let mg = srv.qido("/studies?ModalitiesInStudy=MG").await;
        let mg_studies: BTreeSet<_> = sample()
            .iter()
            .filter(|g| g.modality == "MG")
            .map(|g| g.study_instance_uid.clone())
            .collect();
        assert_eq!(mg.len(), mg_studies.len());
        let series = srv.qido("/series?Modality=MG").await;
        assert_eq!(series.len(), mg_studies.len());
        assert!(
            series
                .iter()
                .all(|s| string(s, "00080060").as_deref() == Some("MG"))
        );
    });
}

#[test]
fn nested_levels_and_instance_attributes() {
    run(|| async {
        let srv = loaded().await;
        let g = sample().iter().find(|g| g.modality == "MG").unwrap();
        let series = srv
            .qido(&format!("/studies/{}/series", g.study_instance_uid))
            .await;
        assert_eq!(series.len(), 1);
        assert_eq!(
            value(&series[0], "00201209").and_then(Value::as_u64),
            Some(4)
        );
        let inst = srv
            .qido(&format!(
                "/studies/{}/series/{}/instances",
                g.study_instance_uid, g.series_instance_uid
            ))
            .await;
        assert_eq!(inst.len(), 4);
        for i in &inst {
            for tag in [
                "00080016", "00080018", "00200013", "00280010", "00280011", "00280100", "00081190",
            ] {
                assert!(i.get(tag).is_some(), "instance result lacks {tag}: {i}");
            }
        }
        let study_inst = srv
            .qido(&format!("/studies/{}/instances", g.study_instance_uid))
            .await;
        assert_eq!(study_inst.len(), 4);
        // Unknown study: empty, not an error.
        assert!(srv.qido("/studies/1.2.3.999/series").await.is_empty());
    });
}

#[test]
fn limit_and_offset_page_stably() {
    run(|| async {
        let srv = loaded().await;
        let all: Vec<String> = srv
            .qido("/studies")
            .await
            .iter()
            .map(|r| string(r, "0020000D").unwrap())
            .collect();
        let mut paged = Vec::new();
        for offset in (0..all.len()).step_by(3) {
            let page = srv.qido(&format!("/studies?limit=3&offset={offset}")).await;
            assert!(page.len() <= 3);
            paged.extend(page.iter().map(|r| string(r, "0020000D").unwrap()));
        }
        assert_eq!(paged, all);
        assert!(
            srv.qido(&format!("/studies?offset={}", all.len() + 5))
                .await
                .is_empty()
        );
    });
}

#[test]
fn includefield_adds_attributes() {
    run(|| async {
        let srv = loaded().await;
        // InstitutionName (0008,0080) is not a default study attribute.
        let plain = srv.qido("/studies?limit=1").await;
        assert!(plain[0].get("00080080").is_none(), "{}", plain[0]);
        let with = srv
            .qido("/studies?limit=1&includefield=StudyDescription,00080080")
            .await;
        assert!(with[0].get("00081030").is_some(), "{}", with[0]);
        assert!(with[0].get("00080080").is_some(), "{}", with[0]);
        let all = srv.qido("/studies?limit=1&includefield=all").await;
        assert!(all[0].as_object().unwrap().len() >= with[0].as_object().unwrap().len());
    });
}

#[test]
fn hostile_query_strings_are_400_and_harmless() {
    run(|| async {
        let srv = loaded().await;
        for q in [
            "/studies?limit=-1",
            "/studies?limit=abc",
            "/studies?offset=-5",
            "/studies?NoSuchKeyword=1",
            "/studies?StudyDate=2025-13-45",
            "/studies?StudyDate=20250101-20241301",
            "/studies?StudyInstanceUID=1.2.3';DROP%20TABLE%20studies;--",
            "/studies?includefield=Nonsense",
            "/studies?00100010=%ZZ",
            "/studies?fuzzymatching=maybe",
        ] {
            let res = srv.get(q, "application/dicom+json").await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{q}");
            let text = res.text().await.unwrap();
            assert!(!text.trim().is_empty(), "{q}: empty error message");
        }
        // SQL-looking values in a text key are matched literally, and the archive is intact.
        let rows = srv
            .qido(&format!(
                "/studies?PatientName={}",
                urlencode("'; DROP TABLE studies; --")
            ))
            .await;
        assert!(rows.is_empty());
        let rows = srv
            .qido(&format!("/studies?PatientID={}", urlencode("%")))
            .await;
        assert!(rows.is_empty(), "% must not be a wildcard");
        assert_eq!(srv.qido("/studies").await.len(), studies_in_sample().len());
        // A huge limit is clamped, not an error.
        assert_eq!(
            srv.qido("/studies?limit=99999999").await.len(),
            studies_in_sample().len()
        );
        // Path UIDs are validated.
        let res = srv
            .get("/studies/..%2F..%2Fetc/series", "application/dicom+json")
            .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    });
}

#[test]
fn patient_names_come_back_in_utf8_from_iso_ir_144() {
    run(|| async {
        let srv = loaded().await;
        let rows = srv
            .qido(&format!("/studies?PatientName={}", urlencode("ПЕТРОВА*")))
            .await;
        assert_eq!(rows.len(), 1);
        assert_eq!(
            alphabetic(&rows[0], "00100010").unwrap(),
            "Петрова^Анна^Викторовна"
        );
    });
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
