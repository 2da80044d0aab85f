//! Conformance suite for [`Index`]: one `pub(crate) async fn` per behaviour,
//! each taking a fresh, empty index, so every backend runs the same checks
//! (SQLite in memory and in a file here; PostgreSQL adds its own
//! `conformance_tests!` invocation when a server is named by the environment).

use std::sync::Arc;

use aina_dicomweb::qido::{AttributeMatch, IncludeFields, MatchKind, QidoQuery, QueryLevel};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use serde_json::{Map, Value, json};

use super::query::tag_key;
use super::{
    ConflictPolicy, Deleted, Index, InsertOutcome, InstanceRecord, QidoRow, Scope, SearchOutcome,
    SeriesAttrs, StudyAttrs,
};

// ---- building records and queries ----

/// A record with plausible defaults; `finish` derives the DICOM JSON.
pub(crate) fn rec(study: &str, series: &str, sop: &str) -> InstanceRecord {
    InstanceRecord {
        study_instance_uid: study.to_owned(),
        series_instance_uid: series.to_owned(),
        sop_instance_uid: sop.to_owned(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.1.1".to_owned(),
        transfer_syntax_uid: "1.2.840.10008.1.2.1".to_owned(),
        instance_number: Some(1),
        rows: Some(2048),
        columns: Some(2048),
        bits_allocated: Some(16),
        number_of_frames: None,
        sha256: format!("sha-{sop}"),
        size_bytes: 1000,
        stored_bytes: 500,
        object_key: String::new(),
        container_index: vec![1, 2, 3],
        metadata_json: String::new(),
        study: StudyAttrs {
            patient_name: Some("Doe^Jane".to_owned()),
            patient_id: Some("P1".to_owned()),
            study_date: Some("20240101".to_owned()),
            study_time: Some("101500".to_owned()),
            study_description: Some("Chest".to_owned()),
            ..StudyAttrs::default()
        },
        series: SeriesAttrs {
            modality: Some("DX".to_owned()),
            series_number: Some(1),
            ..SeriesAttrs::default()
        },
    }
}

fn element(vr: &str, value: Value) -> Value {
    json!({ "vr": vr, "Value": [value] })
}

/// Fills object key and the DICOM JSON from the typed fields, as ingest would.
pub(crate) fn finish(mut r: InstanceRecord) -> InstanceRecord {
    r.object_key = format!(
        "{}/{}/{}/{}",
        r.study_instance_uid, r.series_instance_uid, r.sop_instance_uid, r.sha256
    );
    let mut study = Map::new();
    let s = &r.study;
    let text = [
        (tags::PATIENT_ID, "LO", &s.patient_id),
        (tags::PATIENT_SEX, "CS", &s.patient_sex),
        (tags::PATIENT_BIRTH_DATE, "DA", &s.patient_birth_date),
        (tags::STUDY_DATE, "DA", &s.study_date),
        (tags::STUDY_TIME, "TM", &s.study_time),
        (tags::ACCESSION_NUMBER, "SH", &s.accession_number),
        (tags::STUDY_ID, "SH", &s.study_id),
        (tags::STUDY_DESCRIPTION, "LO", &s.study_description),
    ];
    for (tag, vr, v) in text {
        if let Some(v) = v {
            study.insert(tag_key(tag), element(vr, json!(v)));
        }
    }
    if let Some(n) = &s.patient_name {
        study.insert(
            tag_key(tags::PATIENT_NAME),
            element("PN", json!({ "Alphabetic": n })),
        );
    }
    study.insert(
        tag_key(tags::STUDY_INSTANCE_UID),
        element("UI", json!(r.study_instance_uid)),
    );
    study.insert(
        tag_key(tags::INSTITUTION_NAME),
        element("LO", json!("Aina Test Hospital")),
    );
    r.study.attrs_json = Value::Object(study).to_string();

    let mut series = Map::new();
    if let Some(m) = &r.series.modality {
        series.insert(tag_key(tags::MODALITY), element("CS", json!(m)));
    }
    if let Some(n) = r.series.series_number {
        series.insert(tag_key(tags::SERIES_NUMBER), element("IS", json!(n)));
    }
    series.insert(
        tag_key(tags::SERIES_INSTANCE_UID),
        element("UI", json!(r.series_instance_uid)),
    );
    r.series.attrs_json = Value::Object(series).to_string();

    r.metadata_json = json!({
        tag_key(tags::SOP_INSTANCE_UID): element("UI", json!(r.sop_instance_uid)),
        tag_key(tags::IMAGE_TYPE): { "vr": "CS", "Value": ["ORIGINAL", "PRIMARY"] },
    })
    .to_string();
    r
}

/// Inserts a new instance (Reject policy) and checks it was new.
pub(crate) async fn ins(index: &dyn Index, r: InstanceRecord) {
    let r = finish(r);
    let outcome = index.insert_instance(&r, ConflictPolicy::Reject).await;
    assert_eq!(
        outcome.unwrap(),
        InsertOutcome::Inserted,
        "{}",
        r.sop_instance_uid
    );
}

fn query(level: QueryLevel, matches: Vec<(Tag, MatchKind)>) -> QidoQuery {
    QidoQuery {
        level,
        matches: matches
            .into_iter()
            .map(|(tag, kind)| AttributeMatch {
                tag,
                vr: VR::LO,
                kind,
            })
            .collect(),
        include: IncludeFields::Defaults,
        limit: 100,
        offset: 0,
        fuzzy: false,
    }
}

fn single(v: &str) -> MatchKind {
    MatchKind::Single(v.to_owned())
}

fn wildcard(v: &str) -> MatchKind {
    MatchKind::Wildcard(v.to_owned())
}

async fn search(index: &dyn Index, q: &QidoQuery, scope: &Scope) -> SearchOutcome {
    index.search(q, scope).await.unwrap()
}

async fn studies(index: &dyn Index, matches: Vec<(Tag, MatchKind)>) -> Vec<QidoRow> {
    search(index, &query(QueryLevel::Study, matches), &Scope::default())
        .await
        .rows
}

/// The first value of `tag` in a row.
fn value(row: &QidoRow, tag: Tag) -> Option<&Value> {
    row.get(&tag_key(tag))?.get("Value")?.get(0)
}

fn uids(rows: &[QidoRow], tag: Tag) -> Vec<String> {
    rows.iter()
        .map(|r| {
            value(r, tag)
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned()
        })
        .collect()
}

fn study_scope(study: &str) -> Scope {
    Scope {
        study: Some(study.to_owned()),
        ..Scope::default()
    }
}

fn named(study: &str, name: &str) -> InstanceRecord {
    let mut r = rec(study, &format!("{study}.1"), &format!("{study}.1.1"));
    r.study.patient_name = Some(name.to_owned());
    r
}

// ---- the suite ----

pub(crate) async fn insert_counts_and_modalities(index: &dyn Index) {
    for (series, modality, n) in [("1.1", "CT", 3), ("1.2", "MR", 2), ("1.3", "CT", 1)] {
        for i in 0..n {
            let mut r = rec("1", series, &format!("{series}.{i}"));
            r.series.modality = Some(modality.to_owned());
            r.instance_number = Some(i);
            ins(index, r).await;
        }
    }
    let rows = studies(index, vec![]).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        value(row, tags::NUMBER_OF_STUDY_RELATED_SERIES),
        Some(&json!(3))
    );
    assert_eq!(
        value(row, tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
        Some(&json!(6))
    );
    assert_eq!(
        row[&tag_key(tags::MODALITIES_IN_STUDY)],
        json!({ "vr": "CS", "Value": ["CT", "MR"] })
    );
    assert_eq!(
        value(row, tags::INSTANCE_AVAILABILITY),
        Some(&json!("ONLINE"))
    );
    assert_eq!(
        row[&tag_key(tags::PATIENT_NAME)],
        json!({ "vr": "PN", "Value": [{ "Alphabetic": "Doe^Jane" }] })
    );
    // Not a default study attribute.
    assert!(!row.contains_key(&tag_key(tags::INSTITUTION_NAME)));

    let series = search(index, &query(QueryLevel::Series, vec![]), &study_scope("1"))
        .await
        .rows;
    assert_eq!(
        uids(&series, tags::SERIES_INSTANCE_UID),
        ["1.1", "1.2", "1.3"]
    );
    assert_eq!(
        value(&series[0], tags::NUMBER_OF_SERIES_RELATED_INSTANCES),
        Some(&json!(3))
    );
    assert_eq!(
        value(&series[0], tags::STUDY_INSTANCE_UID),
        Some(&json!("1"))
    );

    let instances = index.instances(&study_scope("1")).await.unwrap();
    assert_eq!(instances.len(), 6);
    assert_eq!(instances[0].sop_instance_uid, "1.1.0");
    assert_eq!(instances[0].container_index, vec![1, 2, 3]);
    assert_eq!(instances[0].size_bytes, 1000);
    let metadata = index.metadata(&study_scope("1")).await.unwrap();
    assert_eq!(metadata.len(), 6);
    assert!(metadata[0].contains("1.1.0"));
    assert!(index.instances(&Scope::default()).await.is_err());
    index.ping().await.unwrap();
}

pub(crate) async fn same_bytes_twice_is_already_present(index: &dyn Index) {
    ins(index, rec("1", "1.1", "1.1.1")).await;
    let again = finish(rec("1", "1.1", "1.1.1"));
    for policy in [
        ConflictPolicy::Reject,
        ConflictPolicy::KeepBoth,
        ConflictPolicy::Replace,
    ] {
        assert_eq!(
            index.insert_instance(&again, policy).await.unwrap(),
            InsertOutcome::AlreadyPresent
        );
    }
    assert_eq!(index.objects(None, 100).await.unwrap().len(), 1);
    let rows = studies(index, vec![]).await;
    assert_eq!(
        value(&rows[0], tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
        Some(&json!(1))
    );
}

pub(crate) async fn conflict_reject(index: &dyn Index) {
    ins(index, rec("1", "1.1", "1.1.1")).await;
    let mut other = rec("1", "1.1", "1.1.1");
    other.sha256 = "other".to_owned();
    let outcome = index
        .insert_instance(&finish(other), ConflictPolicy::Reject)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        InsertOutcome::ConflictRejected {
            existing_sha256: "sha-1.1.1".to_owned()
        }
    );
    let stored = index.instances(&study_scope("1")).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].sha256, "sha-1.1.1");

    // The same bytes filed under another series are a conflict too.
    let moved = finish(rec("1", "1.2", "1.1.1"));
    assert!(matches!(
        index
            .insert_instance(&moved, ConflictPolicy::Reject)
            .await
            .unwrap(),
        InsertOutcome::ConflictRejected { .. }
    ));
    assert_eq!(index.objects(None, 100).await.unwrap().len(), 1);
    let series = search(index, &query(QueryLevel::Series, vec![]), &Scope::default()).await;
    assert_eq!(
        series.rows.len(),
        1,
        "a rejected instance leaves no series behind"
    );
}

pub(crate) async fn conflict_keep_both(index: &dyn Index) {
    ins(index, rec("1", "1.1", "1.1.1")).await;
    let mut v2 = rec("1", "1.1", "1.1.1");
    v2.sha256 = "v2".to_owned();
    let outcome = index
        .insert_instance(&finish(v2), ConflictPolicy::KeepBoth)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        InsertOutcome::ConflictKeptBoth {
            previous_sha256: "sha-1.1.1".to_owned()
        }
    );
    let stored = index.instances(&study_scope("1")).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].sha256, "v2");
    assert_eq!(index.objects(None, 100).await.unwrap().len(), 2);
    let rows = studies(index, vec![]).await;
    assert_eq!(
        value(&rows[0], tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
        Some(&json!(1))
    );

    // Sending the first version again makes it current again (same object key).
    let v1 = finish(rec("1", "1.1", "1.1.1"));
    assert_eq!(
        index
            .insert_instance(&v1, ConflictPolicy::KeepBoth)
            .await
            .unwrap(),
        InsertOutcome::ConflictKeptBoth {
            previous_sha256: "v2".to_owned()
        }
    );
    let stored = index.instances(&study_scope("1")).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].sha256, "sha-1.1.1");
    assert_eq!(index.objects(None, 100).await.unwrap().len(), 2);
}

pub(crate) async fn conflict_replace(index: &dyn Index) {
    ins(index, rec("1", "1.1", "1.1.1")).await;
    ins(index, rec("1", "1.1", "1.1.2")).await;
    let first_key = finish(rec("1", "1.1", "1.1.1")).object_key;
    let mut v2 = rec("1", "1.1", "1.1.1");
    v2.sha256 = "v2".to_owned();
    let outcome = index
        .insert_instance(&finish(v2), ConflictPolicy::Replace)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        InsertOutcome::ConflictReplaced {
            previous_object_key: first_key.clone()
        }
    );
    let objects = index.objects(None, 100).await.unwrap();
    assert_eq!(objects.len(), 2);
    assert!(objects.iter().all(|(k, _)| *k != first_key));
    // The replaced object counts as deleted: `aina verify --repair` removes it
    // if the ingest could not, never indexes it again.
    assert!(index.was_deleted(&first_key).await.unwrap());

    // Replacing with the instance filed under another series moves it: the old
    // series keeps its other instance, counts follow.
    let mut moved = rec("1", "1.2", "1.1.2");
    moved.series.modality = Some("CT".to_owned());
    let outcome = index
        .insert_instance(&finish(moved), ConflictPolicy::Replace)
        .await
        .unwrap();
    assert!(matches!(outcome, InsertOutcome::ConflictReplaced { .. }));
    let rows = studies(index, vec![]).await;
    assert_eq!(
        value(&rows[0], tags::NUMBER_OF_STUDY_RELATED_SERIES),
        Some(&json!(2))
    );
    assert_eq!(
        value(&rows[0], tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
        Some(&json!(2))
    );
    assert_eq!(
        rows[0][&tag_key(tags::MODALITIES_IN_STUDY)]["Value"],
        json!(["CT", "DX"])
    );
}

pub(crate) async fn names_match_case_insensitively(index: &dyn Index) {
    ins(index, named("1", "Иванов^Сергей")).await;
    ins(index, named("2", "Әбілқасымова^Гүлнұр")).await;
    ins(index, named("3", "Smith^John^^^")).await;
    ins(index, named("4", "Иванова^Анна")).await;
    let by = |kind: MatchKind| studies(index, vec![(tags::PATIENT_NAME, kind)]);

    assert_eq!(
        uids(&by(wildcard("иванов*")).await, tags::STUDY_INSTANCE_UID).len(),
        2
    );
    assert_eq!(
        uids(&by(single("иванов")).await, tags::STUDY_INSTANCE_UID),
        ["1"]
    );
    assert_eq!(
        uids(&by(single("ӘБІЛҚАСЫМОВА")).await, tags::STUDY_INSTANCE_UID),
        ["2"]
    );
    assert_eq!(
        uids(
            &by(single("әбілқасымова^гүлнұр")).await,
            tags::STUDY_INSTANCE_UID
        ),
        ["2"]
    );
    assert_eq!(
        uids(&by(single("SMITH^JOHN")).await, tags::STUDY_INSTANCE_UID),
        ["3"]
    );
    assert_eq!(
        uids(&by(wildcard("smi*")).await, tags::STUDY_INSTANCE_UID),
        ["3"]
    );
    assert!(by(single("smi")).await.is_empty());
    assert!(
        by(single("john")).await.is_empty(),
        "family name comes first"
    );
    assert_eq!(
        uids(&by(single("^john")).await, tags::STUDY_INSTANCE_UID),
        ["3"]
    );
    // The matching key is returned with the stored (unfolded) value.
    let rows = by(single("ИВАНОВ^СЕРГЕЙ")).await;
    assert_eq!(
        value(&rows[0], tags::PATIENT_NAME),
        Some(&json!({ "Alphabetic": "Иванов^Сергей" }))
    );
}

pub(crate) async fn wildcard_question_mark(index: &dyn Index) {
    ins(index, named("1", "Иванов^Сергей")).await;
    ins(index, named("2", "Smith^John")).await;
    let by = |p: &'static str| studies(index, vec![(tags::PATIENT_NAME, wildcard(p))]);
    assert_eq!(uids(&by("ив?нов").await, tags::STUDY_INSTANCE_UID), ["1"]);
    assert_eq!(uids(&by("Smit?").await, tags::STUDY_INSTANCE_UID), ["2"]);
    assert!(by("Smi?").await.is_empty(), "? is exactly one character");
    assert_eq!(uids(&by("?????^j*").await, tags::STUDY_INSTANCE_UID), ["2"]);

    let mut r = rec("3", "3.1", "3.1.1");
    r.study.accession_number = Some("ACC-123".to_owned());
    ins(index, r).await;
    let rows = studies(index, vec![(tags::ACCESSION_NUMBER, wildcard("ACC-1?3"))]).await;
    assert_eq!(uids(&rows, tags::STUDY_INSTANCE_UID), ["3"]);
    let rows = studies(index, vec![(tags::ACCESSION_NUMBER, wildcard("acc-*"))]).await;
    assert!(
        rows.is_empty(),
        "non-PN wildcard matching is case-sensitive"
    );
}

pub(crate) async fn date_range(index: &dyn Index) {
    for (study, date) in [
        ("1", Some("20240101")),
        ("2", Some("20240215")),
        ("3", Some("20240320")),
        ("4", None),
    ] {
        let mut r = rec(study, &format!("{study}.1"), &format!("{study}.1.1"));
        r.study.study_date = date.map(str::to_owned);
        ins(index, r).await;
    }
    let range = |from: Option<&str>, to: Option<&str>| MatchKind::Range {
        from: from.map(str::to_owned),
        to: to.map(str::to_owned),
    };
    let by = |kind| studies(index, vec![(tags::STUDY_DATE, kind)]);
    assert_eq!(
        uids(
            &by(range(Some("20240201"), Some("20240331"))).await,
            tags::STUDY_INSTANCE_UID
        ),
        ["3", "2"],
        "newest first"
    );
    assert_eq!(
        uids(
            &by(range(None, Some("20240131"))).await,
            tags::STUDY_INSTANCE_UID
        ),
        ["1"],
        "an absent date is not in any range"
    );
    assert_eq!(
        uids(
            &by(range(Some("20240301"), None)).await,
            tags::STUDY_INSTANCE_UID
        ),
        ["3"]
    );
    assert_eq!(
        uids(&by(single("20240215")).await, tags::STUDY_INSTANCE_UID),
        ["2"]
    );
    // The study without a date sorts last.
    assert_eq!(
        uids(&studies(index, vec![]).await, tags::STUDY_INSTANCE_UID),
        ["3", "2", "1", "4"]
    );

    let time = |from: &str, to: &str| {
        studies(index, vec![(tags::STUDY_TIME, range(Some(from), Some(to)))])
    };
    assert_eq!(
        time("100000", "101500").await.len(),
        4,
        "upper bound inclusive"
    );
    assert!(time("101501", "120000").await.is_empty());
}

pub(crate) async fn uid_list(index: &dyn Index) {
    for s in ["1", "2", "3"] {
        ins(index, rec(s, &format!("{s}.1"), &format!("{s}.1.1"))).await;
    }
    let list = MatchKind::UidList(vec!["1".to_owned(), "3".to_owned(), "9".to_owned()]);
    let mut found = uids(
        &studies(index, vec![(tags::STUDY_INSTANCE_UID, list)]).await,
        tags::STUDY_INSTANCE_UID,
    );
    found.sort();
    assert_eq!(found, ["1", "3"]);
    let q = query(
        QueryLevel::Instance,
        vec![(
            tags::SOP_INSTANCE_UID,
            MatchKind::UidList(vec!["2.1.1".to_owned()]),
        )],
    );
    let rows = search(index, &q, &Scope::default()).await.rows;
    assert_eq!(uids(&rows, tags::SOP_INSTANCE_UID), ["2.1.1"]);
    assert_eq!(
        value(&rows[0], tags::SERIES_INSTANCE_UID),
        Some(&json!("2.1"))
    );
    assert_eq!(value(&rows[0], tags::ROWS), Some(&json!(2048)));
}

pub(crate) async fn modalities_in_study(index: &dyn Index) {
    for (study, series, modality) in [
        ("1", "1.1", "CT"),
        ("1", "1.2", "MR"),
        ("2", "2.1", "DX"),
        ("3", "3.1", "OCT"),
    ] {
        let mut r = rec(study, series, &format!("{series}.1"));
        r.series.modality = Some(modality.to_owned());
        ins(index, r).await;
    }
    let by = |kind| studies(index, vec![(tags::MODALITIES_IN_STUDY, kind)]);
    assert_eq!(
        uids(&by(single("MR")).await, tags::STUDY_INSTANCE_UID),
        ["1"]
    );
    assert_eq!(
        uids(&by(single("CT")).await, tags::STUDY_INSTANCE_UID),
        ["1"],
        "not OCT"
    );
    let mut both = uids(&by(single("CT\\DX")).await, tags::STUDY_INSTANCE_UID);
    both.sort();
    assert_eq!(both, ["1", "2"]);
    // Modality at study level reaches into the series the same way.
    let rows = studies(index, vec![(tags::MODALITY, single("DX"))]).await;
    assert_eq!(uids(&rows, tags::STUDY_INSTANCE_UID), ["2"]);
    // At series level, the study's modalities narrow the series.
    let q = query(
        QueryLevel::Series,
        vec![(tags::MODALITIES_IN_STUDY, single("MR"))],
    );
    let rows = search(index, &q, &Scope::default()).await.rows;
    assert_eq!(uids(&rows, tags::SERIES_INSTANCE_UID), ["1.1", "1.2"]);
}

pub(crate) async fn paging_is_stable(index: &dyn Index) {
    for i in 0..25 {
        let study = format!("2.25.{i:03}");
        let mut r = rec(&study, &format!("{study}.1"), &format!("{study}.1.1"));
        // Few distinct dates: ties must be broken by the UID.
        r.study.study_date = Some(format!("2024010{}", i % 3 + 1));
        ins(index, r).await;
    }
    let mut all = query(QueryLevel::Study, vec![]);
    all.limit = 0;
    let everything = uids(
        &search(index, &all, &Scope::default()).await.rows,
        tags::STUDY_INSTANCE_UID,
    );
    assert_eq!(everything.len(), 25);
    let mut paged = Vec::new();
    for page in 0..3 {
        let mut q = query(QueryLevel::Study, vec![]);
        q.limit = 10;
        q.offset = page * 10;
        let rows = search(index, &q, &Scope::default()).await.rows;
        assert_eq!(rows.len(), if page == 2 { 5 } else { 10 });
        paged.extend(uids(&rows, tags::STUDY_INSTANCE_UID));
    }
    assert_eq!(paged, everything);
    let dates: Vec<String> = search(index, &all, &Scope::default())
        .await
        .rows
        .iter()
        .map(|r| {
            value(r, tags::STUDY_DATE)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut sorted = dates.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(dates, sorted);
}

pub(crate) async fn nested_scopes(index: &dyn Index) {
    for (study, series) in [("1", "1.1"), ("1", "1.2"), ("2", "2.1")] {
        for n in [2, 1] {
            let mut r = rec(study, series, &format!("{series}.{n}"));
            r.instance_number = Some(n);
            r.series.series_number = series[2..].parse().ok();
            ins(index, r).await;
        }
    }
    let series_q = query(QueryLevel::Series, vec![]);
    let rows = search(index, &series_q, &study_scope("1")).await.rows;
    assert_eq!(uids(&rows, tags::SERIES_INSTANCE_UID), ["1.1", "1.2"]);
    assert!(
        !rows[0].contains_key(&tag_key(tags::PATIENT_NAME)),
        "inside a study, series rows carry series attributes"
    );
    let rows = search(index, &series_q, &Scope::default()).await.rows;
    assert_eq!(rows.len(), 3);
    assert!(
        rows[0].contains_key(&tag_key(tags::PATIENT_NAME)),
        "/series carries the study's attributes too"
    );

    let instance_q = query(QueryLevel::Instance, vec![]);
    let scope = Scope {
        study: Some("1".to_owned()),
        series: Some("1.2".to_owned()),
        instance: None,
    };
    let rows = search(index, &instance_q, &scope).await.rows;
    assert_eq!(
        uids(&rows, tags::SOP_INSTANCE_UID),
        ["1.2.1", "1.2.2"],
        "by instance number"
    );
    assert_eq!(value(&rows[0], tags::INSTANCE_NUMBER), Some(&json!(1)));
    let rows = search(index, &instance_q, &study_scope("1")).await.rows;
    assert_eq!(rows.len(), 4);
    let wrong = Scope {
        study: Some("2".to_owned()),
        series: Some("1.2".to_owned()),
        instance: None,
    };
    assert!(search(index, &instance_q, &wrong).await.rows.is_empty());

    let listed = index.instances(&scope).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|i| i.sop_instance_uid.as_str())
            .collect::<Vec<_>>(),
        ["1.2.1", "1.2.2"]
    );
    let listed = index.instances(&study_scope("1")).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|i| i.sop_instance_uid.as_str())
            .collect::<Vec<_>>(),
        ["1.1.1", "1.1.2", "1.2.1", "1.2.2"],
        "by series number, then instance number"
    );
}

pub(crate) async fn fuzzy_matches_word_prefixes(index: &dyn Index) {
    ins(index, named("1", "Иванов^Сергей Петрович")).await;
    ins(index, named("2", "Петрова^Айгүл")).await;
    let fuzzy = |v: &str| {
        let mut q = query(QueryLevel::Study, vec![(tags::PATIENT_NAME, single(v))]);
        q.fuzzy = true;
        q
    };
    let found = |q: QidoQuery| async move {
        let mut u = uids(
            &search(index, &q, &Scope::default()).await.rows,
            tags::STUDY_INSTANCE_UID,
        );
        u.sort();
        u
    };
    assert_eq!(found(fuzzy("серг")).await, ["1"]);
    assert_eq!(found(fuzzy("ПЕТР ИВАН")).await, ["1"]);
    assert_eq!(found(fuzzy("петр")).await, ["1", "2"]);
    assert_eq!(found(fuzzy("айгүл")).await, ["2"]);
    assert!(
        found(fuzzy("ров")).await.is_empty(),
        "prefixes of words only"
    );
    assert!(
        found(query(
            QueryLevel::Study,
            vec![(tags::PATIENT_NAME, single("серг"))]
        ))
        .await
        .is_empty()
    );
}

pub(crate) async fn includefield(index: &dyn Index) {
    ins(index, rec("1", "1.1", "1.1.1")).await;
    let mut q = query(QueryLevel::Study, vec![]);
    let row = &search(index, &q, &Scope::default()).await.rows[0];
    assert!(!row.contains_key(&tag_key(tags::STUDY_DESCRIPTION)));

    q.include = IncludeFields::Tags(vec![tags::STUDY_DESCRIPTION, tags::IMAGE_TYPE]);
    let row = &search(index, &q, &Scope::default()).await.rows[0];
    assert_eq!(value(row, tags::STUDY_DESCRIPTION), Some(&json!("Chest")));
    assert!(
        !row.contains_key(&tag_key(tags::IMAGE_TYPE)),
        "instance-level only"
    );
    assert!(
        row.contains_key(&tag_key(tags::PATIENT_ID)),
        "defaults stay"
    );

    q.include = IncludeFields::All;
    let row = &search(index, &q, &Scope::default()).await.rows[0];
    assert!(row.contains_key(&tag_key(tags::INSTITUTION_NAME)));
    assert!(row.contains_key(&tag_key(tags::NUMBER_OF_STUDY_RELATED_SERIES)));

    let mut q = query(QueryLevel::Instance, vec![]);
    q.include = IncludeFields::Tags(vec![tags::IMAGE_TYPE]);
    let row = &search(index, &q, &study_scope("1")).await.rows[0];
    assert_eq!(
        row[&tag_key(tags::IMAGE_TYPE)]["Value"],
        json!(["ORIGINAL", "PRIMARY"])
    );

    // A matching key comes back even when it is not a default.
    let q = query(
        QueryLevel::Study,
        vec![(tags::STUDY_DESCRIPTION, single("Chest"))],
    );
    let row = &search(index, &q, &Scope::default()).await.rows[0];
    assert_eq!(value(row, tags::STUDY_DESCRIPTION), Some(&json!("Chest")));
}

pub(crate) async fn unsupported_keys_are_reported(index: &dyn Index) {
    ins(index, rec("1", "1.1", "1.1.1")).await;
    let q = query(
        QueryLevel::Study,
        vec![
            (tags::INSTITUTION_NAME, single("Nowhere")),
            (tags::PATIENT_ID, single("P1")),
            (tags::OPERATORS_NAME, MatchKind::Universal),
        ],
    );
    let outcome = search(index, &q, &Scope::default()).await;
    assert_eq!(outcome.rows.len(), 1, "ignored, not matched");
    assert_eq!(outcome.unsupported, vec![tags::INSTITUTION_NAME]);
    let q = query(QueryLevel::Series, vec![(tags::SERIES_NUMBER, single("x"))]);
    assert!(index.search(&q, &Scope::default()).await.is_err());
}

pub(crate) async fn concurrent_inserts(index: Arc<dyn Index>) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let index = Arc::clone(&index);
            tokio::spawn(async move {
                let series = if i % 2 == 0 { "1.1" } else { "1.2" };
                let mut r = rec("1", series, &format!("1.9.{i}"));
                r.series.modality = Some(if i % 2 == 0 { "CC" } else { "MG" }.to_owned());
                r.instance_number = Some(i);
                index
                    .insert_instance(&finish(r), ConflictPolicy::Reject)
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), InsertOutcome::Inserted);
    }
    let rows = studies(index.as_ref(), vec![]).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        value(&rows[0], tags::NUMBER_OF_STUDY_RELATED_SERIES),
        Some(&json!(2))
    );
    assert_eq!(
        value(&rows[0], tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
        Some(&json!(16))
    );
    assert_eq!(
        rows[0][&tag_key(tags::MODALITIES_IN_STUDY)]["Value"],
        json!(["CC", "MG"])
    );
}

/// The same instance arriving on many connections at once (two nodes, a
/// device retrying) is decided once: one insert, the rest already present.
pub(crate) async fn concurrent_same_instance(index: Arc<dyn Index>) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let index = Arc::clone(&index);
            tokio::spawn(async move {
                index
                    .insert_instance(&finish(rec("1", "1.1", "1.1.1")), ConflictPolicy::Reject)
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap().unwrap());
    }
    let inserted = outcomes
        .iter()
        .filter(|o| **o == InsertOutcome::Inserted)
        .count();
    assert_eq!(inserted, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, InsertOutcome::Inserted | InsertOutcome::AlreadyPresent)),
        "{outcomes:?}"
    );
    assert_eq!(index.objects(None, 100).await.unwrap().len(), 1);
    let rows = studies(index.as_ref(), vec![]).await;
    assert_eq!(
        value(&rows[0], tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
        Some(&json!(1))
    );
}

pub(crate) async fn batch_insert(index: &dyn Index) {
    let batch: Vec<_> = ["1.1.1", "1.1.2", "1.1.1"]
        .iter()
        .map(|sop| finish(rec("1", "1.1", sop)))
        .collect();
    let outcomes = index
        .insert_instances(&batch, ConflictPolicy::Reject)
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            InsertOutcome::Inserted,
            InsertOutcome::Inserted,
            InsertOutcome::AlreadyPresent
        ]
    );
    let rows = studies(index, vec![]).await;
    assert_eq!(
        value(&rows[0], tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
        Some(&json!(2))
    );
    // A failing record rolls the whole batch back.
    let mut bad = vec![
        finish(rec("2", "2.1", "2.1.1")),
        finish(rec("3", "1.1", "3.1.1")),
    ];
    bad[1].series_instance_uid = "1.1".to_owned();
    assert!(
        index
            .insert_instances(&bad, ConflictPolicy::Reject)
            .await
            .is_err()
    );
    assert_eq!(studies(index, vec![]).await.len(), 1);
}

pub(crate) async fn values_match_literally(index: &dyn Index) {
    let hostile = "'; DROP TABLE studies; --";
    for (study, id) in [
        ("1", hostile),
        ("2", "100%"),
        ("3", "1000"),
        ("4", "A_B"),
        ("5", "AXB"),
    ] {
        let mut r = rec(study, &format!("{study}.1"), &format!("{study}.1.1"));
        r.study.patient_id = Some(id.to_owned());
        r.study.patient_name = Some(hostile.to_owned());
        ins(index, r).await;
    }
    let by = |kind| studies(index, vec![(tags::PATIENT_ID, kind)]);
    assert_eq!(
        uids(&by(single(hostile)).await, tags::STUDY_INSTANCE_UID),
        ["1"]
    );
    assert_eq!(
        uids(&by(wildcard("100%")).await, tags::STUDY_INSTANCE_UID),
        ["2"]
    );
    assert!(by(single("%")).await.is_empty());
    assert!(by(wildcard("%")).await.is_empty());
    assert_eq!(
        uids(&by(wildcard("A_B")).await, tags::STUDY_INSTANCE_UID),
        ["4"]
    );
    assert!(by(wildcard("10_0")).await.is_empty(), "_ is not a wildcard");
    let names = studies(index, vec![(tags::PATIENT_NAME, wildcard("'; drop*"))]).await;
    assert_eq!(names.len(), 5);
    assert_eq!(
        studies(index, vec![]).await.len(),
        5,
        "the table is still there"
    );
}

pub(crate) async fn remove_objects(index: &dyn Index) {
    ins(index, rec("1", "1.1", "1.1.1")).await;
    let mut r = rec("1", "1.2", "1.2.1");
    r.series.modality = Some("CT".to_owned());
    ins(index, r).await;
    let objects = index.objects(None, 1).await.unwrap();
    assert_eq!(objects.len(), 1);
    let rest = index.objects(Some(&objects[0].0), 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_ne!(rest[0].0, objects[0].0);

    let ct_key = finish(rec("1", "1.2", "1.2.1")).object_key;
    assert!(index.remove_object(&ct_key).await.unwrap());
    assert!(!index.remove_object(&ct_key).await.unwrap());
    let rows = studies(index, vec![]).await;
    assert_eq!(
        value(&rows[0], tags::NUMBER_OF_STUDY_RELATED_SERIES),
        Some(&json!(1))
    );
    assert_eq!(
        rows[0][&tag_key(tags::MODALITIES_IN_STUDY)]["Value"],
        json!(["DX"])
    );

    let dx_key = finish(rec("1", "1.1", "1.1.1")).object_key;
    assert!(index.remove_object(&dx_key).await.unwrap());
    assert!(studies(index, vec![]).await.is_empty());
    assert!(index.objects(None, 10).await.unwrap().is_empty());
    // The emptied study and series are gone: the same UIDs can come back.
    ins(index, rec("1", "1.1", "1.1.1")).await;
}

pub(crate) async fn later_instances_fill_gaps(index: &dyn Index) {
    let mut first = rec("1", "1.1", "1.1.1");
    first.study.accession_number = None;
    first.study.study_description = Some("First".to_owned());
    ins(index, first).await;
    let mut second = rec("1", "1.1", "1.1.2");
    second.study.accession_number = Some("A42".to_owned());
    second.study.study_description = Some("Second".to_owned());
    ins(index, second).await;
    let rows = studies(index, vec![(tags::ACCESSION_NUMBER, single("A42"))]).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(value(&rows[0], tags::ACCESSION_NUMBER), Some(&json!("A42")));
    let rows = studies(index, vec![(tags::STUDY_DESCRIPTION, single("First"))]).await;
    assert_eq!(rows.len(), 1, "the first instance's values win");
}

pub(crate) async fn delete_scopes(index: &dyn Index) {
    // Two series of two instances (DX and CT); one instance also has a
    // superseded version.
    let rec_in = |series: &str, sop: &str| {
        let mut r = rec("1", series, sop);
        if series == "1.2" {
            r.series.modality = Some("CT".to_owned());
        }
        r
    };
    for (series, sop) in [
        ("1.1", "1.1.1"),
        ("1.1", "1.1.2"),
        ("1.2", "1.2.1"),
        ("1.2", "1.2.2"),
    ] {
        ins(index, rec_in(series, sop)).await;
    }
    // Another study, untouched by every delete below.
    ins(index, rec("2", "2.1", "2.1.1")).await;
    let mut replaced = rec_in("1.2", "1.2.2");
    replaced.sha256 = "other-bytes".to_owned();
    assert!(matches!(
        index
            .insert_instance(&finish(replaced), ConflictPolicy::KeepBoth)
            .await
            .unwrap(),
        InsertOutcome::ConflictKeptBoth { .. }
    ));
    let scope = |series: Option<&str>, sop: Option<&str>| Scope {
        study: Some("1".to_owned()),
        series: series.map(str::to_owned),
        instance: sop.map(str::to_owned),
    };
    let study_one = |rows: &[QidoRow]| {
        rows.iter()
            .find(|r| value(r, tags::STUDY_INSTANCE_UID) == Some(&json!("1")))
            .cloned()
    };

    let none = index.delete(&scope(Some("9.9"), None)).await.unwrap();
    assert_eq!(none, Deleted::default());
    // A series of study 1 asked under study 2: nothing.
    let wrong = Scope {
        study: Some("2".to_owned()),
        series: Some("1.1".to_owned()),
        instance: None,
    };
    assert_eq!(index.delete(&wrong).await.unwrap(), Deleted::default());
    assert!(
        index.delete(&Scope::default()).await.is_err(),
        "the study must be named"
    );

    // One instance, both its versions.
    let d = index
        .delete(&scope(Some("1.2"), Some("1.2.2")))
        .await
        .unwrap();
    assert_eq!(d.instances, [("1".into(), "1.2".into(), "1.2.2".into())]);
    let mut objects = d.objects.clone();
    objects.sort();
    assert_eq!(
        objects,
        [
            ("1/1.2/1.2.2/other-bytes".into(), "other-bytes".into()),
            ("1/1.2/1.2.2/sha-1.2.2".into(), "sha-1.2.2".into())
        ],
        "current and superseded versions, with their keys"
    );
    assert_eq!(d.patient_id.as_deref(), Some("P1"));
    // Both objects are remembered as deleted (so `aina verify` does not
    // index a leftover again); an object never stored is not.
    for (key, _) in &objects {
        assert!(index.was_deleted(key).await.unwrap(), "{key}");
    }
    assert!(!index.was_deleted("1/1.1/1.1.1/sha-1.1.1").await.unwrap());
    let study = study_one(&studies(index, vec![]).await).unwrap();
    assert_eq!(
        value(&study, tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
        Some(&json!(3))
    );
    assert_eq!(
        value(&study, tags::NUMBER_OF_STUDY_RELATED_SERIES),
        Some(&json!(2))
    );
    assert_eq!(
        study[&tag_key(tags::MODALITIES_IN_STUDY)]["Value"],
        json!(["CT", "DX"])
    );

    // A series: counts and modalities follow.
    let d = index.delete(&scope(Some("1.2"), None)).await.unwrap();
    assert_eq!(d.instances, [("1".into(), "1.2".into(), "1.2.1".into())]);
    let study = study_one(&studies(index, vec![]).await).unwrap();
    assert_eq!(
        value(&study, tags::NUMBER_OF_STUDY_RELATED_SERIES),
        Some(&json!(1))
    );
    assert_eq!(
        value(&study, tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
        Some(&json!(2))
    );
    assert_eq!(
        study[&tag_key(tags::MODALITIES_IN_STUDY)]["Value"],
        json!(["DX"])
    );
    assert!(
        index
            .instances(&scope(Some("1.2"), None))
            .await
            .unwrap()
            .is_empty()
    );

    // The study, with what is left of it.
    let d = index.delete(&scope(None, None)).await.unwrap();
    assert_eq!(d.instances.len(), 2);
    assert_eq!(d.objects.len(), 2);
    let rows = studies(index, vec![]).await;
    assert!(study_one(&rows).is_none());
    assert_eq!(rows.len(), 1, "the other study stays");
    assert!(
        index
            .instances(&scope(None, None))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        index.delete(&scope(None, None)).await.unwrap(),
        Deleted::default(),
        "deleting again finds nothing"
    );
    // Stored again after a delete: a new instance.
    assert_eq!(
        index
            .insert_instance(&finish(rec("1", "1.1", "1.1.1")), ConflictPolicy::Reject)
            .await
            .unwrap(),
        InsertOutcome::Inserted
    );
    // Stored again, its object is no longer a deleted one.
    assert!(!index.was_deleted("1/1.1/1.1.1/sha-1.1.1").await.unwrap());
}

/// Generates one `#[tokio::test]` per suite function; `$open` is an async
/// expression giving `Some((Arc<dyn Index>, guard))`, where the guard keeps the
/// database alive for the test, or `None` when the backend is not available
/// here (it has said so).
macro_rules! conformance_tests {
    ($open:expr) => {
        conformance_tests!(@each $open;
            insert_counts_and_modalities,
            same_bytes_twice_is_already_present,
            conflict_reject,
            conflict_keep_both,
            conflict_replace,
            names_match_case_insensitively,
            wildcard_question_mark,
            date_range,
            uid_list,
            modalities_in_study,
            paging_is_stable,
            nested_scopes,
            fuzzy_matches_word_prefixes,
            includefield,
            unsupported_keys_are_reported,
            values_match_literally,
            batch_insert,
            remove_objects,
            later_instances_fill_gaps,
            delete_scopes
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_inserts() {
            let Some((index, _guard)) = $open.await else { return };
            $crate::index::tests::concurrent_inserts(index).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn concurrent_same_instance() {
            let Some((index, _guard)) = $open.await else { return };
            $crate::index::tests::concurrent_same_instance(index).await;
        }
    };
    (@each $open:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((index, _guard)) = $open.await else { return };
                $crate::index::tests::$name(index.as_ref()).await;
            }
        )*
    };
}
pub(crate) use conformance_tests;

mod sqlite_memory {
    use std::sync::Arc;

    use crate::index::Index;
    use crate::index::sqlite::SqliteIndex;

    async fn open() -> Option<(Arc<dyn Index>, ())> {
        let index = SqliteIndex::open("sqlite::memory:").await.unwrap();
        Some((Arc::new(index), ()))
    }

    super::conformance_tests!(open());
}

mod sqlite_file {
    use std::sync::Arc;

    use crate::index::Index;
    use crate::index::sqlite::SqliteIndex;

    async fn open() -> Option<(Arc<dyn Index>, tempfile::TempDir)> {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("index.db").display());
        let index = SqliteIndex::open(&url).await.unwrap();
        Some((Arc::new(index), dir))
    }

    super::conformance_tests!(open());

    /// Reopening runs no migration twice and keeps the data.
    #[tokio::test]
    async fn reopen_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("index.db").display());
        let index = SqliteIndex::open(&url).await.unwrap();
        super::ins(&index, super::rec("1", "1.1", "1.1.1")).await;
        index.close().await;
        let index = SqliteIndex::open(&url).await.unwrap();
        assert_eq!(index.objects(None, 10).await.unwrap().len(), 1);
    }
}

/// The same suite on a real PostgreSQL server, when `AINA_TEST_POSTGRES_URL`
/// names one (a database the test user may `CREATE DATABASE` from; `.ci/run`
/// starts one). Each test gets a database of its own, dropped afterwards.
mod postgres {
    use std::sync::Arc;

    use crate::index::Index;
    use crate::index::postgres::PgIndex;
    use crate::testing::TestDatabase;

    async fn open() -> Option<(Arc<dyn Index>, TestDatabase)> {
        let db = TestDatabase::create("index conformance tests").await?;
        let index = PgIndex::open(db.url()).await.unwrap();
        Some((Arc::new(index), db))
    }

    super::conformance_tests!(open());

    /// Reopening (a second node starting) applies no migration twice.
    #[tokio::test]
    async fn reopen_keeps_data() {
        let Some(db) = TestDatabase::create("index conformance tests").await else {
            return;
        };
        let index = PgIndex::open(db.url()).await.unwrap();
        super::ins(&index, super::rec("1", "1.1", "1.1.1")).await;
        let second = PgIndex::open(db.url()).await.unwrap();
        assert_eq!(second.objects(None, 10).await.unwrap().len(), 1);
        // The session settings reach every connection.
        let settings: (String, String) = sqlx::query_as(
            "SELECT current_setting('plan_cache_mode'), current_setting('lock_timeout')",
        )
        .fetch_one(&second.reader)
        .await
        .unwrap();
        assert_eq!(
            settings,
            ("force_custom_plan".to_owned(), "1min".to_owned())
        );
        index.close().await;
        second.close().await;
    }
}
