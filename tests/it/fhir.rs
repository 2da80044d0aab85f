//! FHIR ImagingStudy (`/fhir`): read by id, search by patient, identifier,
//! date range and modality, paging by `next` links, the CapabilityStatement,
//! and OperationOutcome for bad input. Every resource the server returns is
//! validated by an independent FHIR implementation (fhir.resources from
//! PyPI, `tests/interop/fhir_validate.py`) when `AINA_TEST_FHIR_PYTHON` names
//! a Python that has it (`.ci/run` installs it).

use std::collections::{BTreeMap, BTreeSet};

use reqwest::StatusCode;
use serde_json::Value;

use crate::common::*;

/// Every FHIR body a test received, for the validator.
#[derive(Default)]
struct Seen(Vec<Value>);

impl Seen {
    async fn get(&mut self, server: &TestServer, path: &str) -> (StatusCode, Value) {
        self.get_with(server, path, &[]).await
    }

    async fn get_with(
        &mut self,
        server: &TestServer,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", server.root)
        };
        let mut request = server.client.get(&url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let res = request.send().await.unwrap();
        let status = res.status();
        let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("application/fhir+json"),
            "{path}: {content_type}"
        );
        let body: Value = res.json().await.unwrap();
        self.0.push(body.clone());
        (status, body)
    }

    /// Runs the independent validator over everything seen.
    fn validate(self) {
        let Ok(python) = std::env::var("AINA_TEST_FHIR_PYTHON") else {
            eprintln!(
                "SKIPPED: FHIR validation by fhir.resources (set AINA_TEST_FHIR_PYTHON to a \
                 Python with fhir.resources installed; .ci/run does)"
            );
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        for (i, resource) in self.0.iter().enumerate() {
            std::fs::write(
                dir.path().join(format!("{i:03}.json")),
                serde_json::to_vec_pretty(resource).unwrap(),
            )
            .unwrap();
        }
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/fhir_validate.py");
        let out = std::process::Command::new(python)
            .arg(script)
            .arg(dir.path())
            .output()
            .expect("running the FHIR validator");
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "fhir.resources refused resources:\n{report}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            report.lines().filter(|l| l.starts_with("valid ")).count(),
            self.0.len(),
            "{report}"
        );
    }
}

fn entries<'a>(bundle: &'a Value, mode: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|e| e["search"]["mode"] == mode)
                .map(|e| &e["resource"])
                .collect()
        })
        .unwrap_or_default()
}

fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .map(str::to_owned)
}

async fn stored() -> TestServer {
    let server = start().await;
    let files: Vec<&[u8]> = sample().iter().map(|g| g.bytes.as_slice()).collect();
    let (status, _) = server.stow(&files).await;
    assert_eq!(status, StatusCode::OK);
    server
}

#[tokio::test]
async fn read_and_search_imaging_studies() {
    let server = stored().await;
    let mut seen = Seen::default();

    // Read: one study with its series and instances, as the index has them.
    let mut by_study: BTreeMap<&str, Vec<&aina_sample::Generated>> = BTreeMap::new();
    for g in sample() {
        by_study.entry(&g.study_instance_uid).or_default().push(g);
    }
    let (study, files) = by_study.iter().max_by_key(|(_, f)| f.len()).unwrap();
    let (status, resource) = seen
        .get(&server, &format!("/fhir/ImagingStudy/{study}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{resource}");
    assert_eq!(resource["resourceType"], "ImagingStudy");
    assert_eq!(resource["id"], *study);
    assert_eq!(resource["status"], "available");
    assert_eq!(resource["identifier"][0]["system"], "urn:dicom:uid");
    assert_eq!(
        resource["identifier"][0]["value"],
        format!("urn:oid:{study}")
    );
    assert_eq!(resource["numberOfInstances"], files.len());
    let series: BTreeSet<&str> = files
        .iter()
        .map(|g| g.series_instance_uid.as_str())
        .collect();
    assert_eq!(resource["numberOfSeries"], series.len());
    let listed: BTreeSet<String> = resource["series"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["instance"].as_array().unwrap().iter())
        .map(|i| i["uid"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = files.iter().map(|g| g.sop_instance_uid.clone()).collect();
    assert_eq!(listed, expected);
    // Each image titled by its view as the file names it (`R CC`), each
    // series' body site coded from Body Part Examined.
    for g in files.iter() {
        let attr = |name: &str| {
            dicom_object::OpenFileOptions::new()
                .from_reader(g.bytes.as_slice())
                .unwrap()
                .element_by_name(name)
                .ok()
                .and_then(|e| e.to_str().ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let series = resource["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["uid"] == g.series_instance_uid.as_str())
            .unwrap();
        let instance = series["instance"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["uid"] == g.sop_instance_uid.as_str())
            .unwrap();
        let view: Vec<String> = [attr("ImageLaterality"), attr("ViewPosition")]
            .into_iter()
            .flatten()
            .collect();
        assert!(!view.is_empty(), "the sample's images name their view");
        assert_eq!(instance["title"], view.join(" "), "{instance}");
        let site = match attr("BodyPartExamined").as_deref() {
            Some("BREAST") => "76752008",
            Some("CHEST") => "51185008",
            other => panic!("the sample's studies are chests and breasts: {other:?}"),
        };
        assert_eq!(series["bodySite"]["system"], "http://snomed.info/sct");
        assert_eq!(series["bodySite"]["code"], site);
    }
    assert!(
        resource["referrer"]["display"].as_str().is_some(),
        "{resource}"
    );
    let modality = &resource["series"][0]["modality"];
    assert_eq!(
        modality["system"],
        "http://dicom.nema.org/resources/ontology/DCM"
    );
    assert_eq!(modality["code"], files[0].modality);
    // The endpoint a client fetches pixels from.
    assert_eq!(resource["endpoint"][0]["reference"], "#dicomweb");
    let endpoint = &resource["contained"][0];
    assert_eq!(endpoint["resourceType"], "Endpoint");
    assert_eq!(endpoint["connectionType"]["code"], "dicom-wado-rs");
    assert_eq!(endpoint["address"], server.dicomweb);
    // The patient, by identifier and name.
    let qido = server
        .qido(&format!("/studies?StudyInstanceUID={study}"))
        .await;
    let patient_id = string(&qido[0], "00100020").unwrap();
    assert_eq!(resource["subject"]["identifier"]["value"], patient_id);
    assert_eq!(resource["subject"]["type"], "Patient");
    assert!(resource["subject"]["display"].as_str().is_some());
    // The pixels are where the endpoint says.
    let sop = &files[0];
    let frames = server
        .client
        .get(format!(
            "{}/studies/{study}/series/{}/instances/{}/frames/1",
            endpoint["address"].as_str().unwrap(),
            sop.series_instance_uid,
            sop.sop_instance_uid
        ))
        .header(
            "accept",
            "multipart/related; type=\"application/octet-stream\"",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(frames.status(), StatusCode::OK);

    // Search by patient, both spellings, system given or not.
    let patient_studies = by_study
        .values()
        .filter(|f| {
            let bytes = f[0].bytes.as_slice();
            let obj = dicom_object::OpenFileOptions::new()
                .from_reader(bytes)
                .unwrap();
            obj.element_by_name("PatientID")
                .ok()
                .and_then(|e| e.to_str().ok())
                .is_some_and(|p| p.trim() == patient_id)
        })
        .count();
    for query in [
        format!("patient.identifier={patient_id}"),
        format!("subject:Patient.identifier=urn:oid:1.2.3%7C{patient_id}"),
    ] {
        let (status, bundle) = seen
            .get(&server, &format!("/fhir/ImagingStudy?{query}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{bundle}");
        assert_eq!(bundle["resourceType"], "Bundle");
        assert_eq!(bundle["type"], "searchset");
        let found = entries(&bundle, "match");
        assert_eq!(found.len(), patient_studies, "{query}");
        assert!(
            found
                .iter()
                .all(|s| s["subject"]["identifier"]["value"] == patient_id)
        );
        let urls: Vec<&str> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["fullUrl"].as_str())
            .collect();
        assert!(
            urls.iter()
                .all(|u| u.starts_with(&format!("{}/fhir/ImagingStudy/", server.root)))
        );
    }

    // By Study Instance UID.
    let (_, bundle) = seen
        .get(
            &server,
            &format!("/fhir/ImagingStudy?identifier=urn:dicom:uid%7Curn:oid:{study}"),
        )
        .await;
    let found = entries(&bundle, "match");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], *study);
    // Parameters are ANDed: two different studies match nothing.
    let other = by_study.keys().find(|s| **s != *study).unwrap();
    let (_, bundle) = seen
        .get(
            &server,
            &format!("/fhir/ImagingStudy?_id={study}&identifier=urn:oid:{other}"),
        )
        .await;
    assert!(entries(&bundle, "match").is_empty());

    // By modality and date range: the mammography studies of 2025.
    let expected: BTreeSet<&str> = sample()
        .iter()
        .filter(|g| g.modality == "MG" && g.file_name.contains("-2025"))
        .map(|g| g.study_instance_uid.as_str())
        .collect();
    assert!(!expected.is_empty());
    let (_, bundle) = seen
        .get(
            &server,
            "/fhir/ImagingStudy?modality=MG&started=ge2025-01-01&started=lt2026",
        )
        .await;
    let found: BTreeSet<&str> = entries(&bundle, "match")
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(found, expected);
    for s in entries(&bundle, "match") {
        assert!(s["started"].as_str().unwrap().starts_with("2025-"), "{s}");
    }

    // Paging: two at a time, following `next` links to the end, sees every
    // study once.
    let mut url = "/fhir/ImagingStudy?_count=2".to_owned();
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let (status, bundle) = seen.get(&server, &url).await;
        assert_eq!(status, StatusCode::OK);
        let page = entries(&bundle, "match");
        assert!(page.len() <= 2);
        ids.extend(page.iter().map(|s| s["id"].as_str().unwrap().to_owned()));
        pages += 1;
        match next_link(&bundle) {
            Some(next) => url = next,
            None => break,
        }
        assert!(pages < 50, "paging ends");
    }
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no study twice across pages");
    assert_eq!(unique.len(), by_study.len(), "every study once");
    // _count=0: no entries, still a valid Bundle.
    let (_, bundle) = seen.get(&server, "/fhir/ImagingStudy?_count=0").await;
    assert!(entries(&bundle, "match").is_empty());

    // The CapabilityStatement.
    let (status, statement) = seen.get(&server, "/fhir/metadata").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    assert_eq!(statement["rest"][0]["resource"][0]["type"], "ImagingStudy");

    seen.validate();
}

#[tokio::test]
async fn bad_input_is_an_operation_outcome() {
    let server = stored().await;
    let mut seen = Seen::default();

    // Parameters that only shape the answer, or that FHIR does not know:
    // ignored with a note in the Bundle, or refused when the client asks for
    // strict handling.
    let (status, bundle) = seen
        .get(&server, "/fhir/ImagingStudy?_sort=-started&_count=1")
        .await;
    assert_eq!(status, StatusCode::OK);
    let notes = entries(&bundle, "outcome");
    assert_eq!(notes.len(), 1, "{bundle}");
    assert_eq!(notes[0]["resourceType"], "OperationOutcome");
    assert!(
        notes[0]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("_sort")
    );
    assert_eq!(entries(&bundle, "match").len(), 1);
    let (status, outcome) = seen
        .get_with(
            &server,
            "/fhir/ImagingStudy?_sort=-started",
            &[("prefer", "handling=strict")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    // A filter this server does not have is refused, never ignored: ignoring
    // `patient=` would hand the chart every patient's studies.
    for query in [
        "patient=Patient/123",
        "bodysite=chest",
        "subject=Patient/1",
        "series=1.2.3",
    ] {
        let (status, outcome) = seen
            .get(&server, &format!("/fhir/ImagingStudy?{query}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("not supported"),
            "{query}"
        );
    }

    // Bad values are always refused, each with its reason.
    for (query, says) in [
        ("started=2025-02-30", "started"),
        ("started=yesterday", "started"),
        ("started=ap2025", "ap"),
        ("_count=-5", "negative"),
        ("_count=99999999999999999999999", "_count"),
        ("_count=ten", "_count"),
        ("patient.identifier=*", "patient"),
        ("identifier=urn:oid:1.2.03", "identifier"),
        ("modality=MG,CR", "one modality"),
        ("_count=1&_count=2", "more than once"),
        ("patient.identifier=%FF%FE", "UTF-8"),
        ("_format=xml", "JSON only"),
        ("started=2025-01-01T10:00", "time"),
    ] {
        let (status, outcome) = seen
            .get(&server, &format!("/fhir/ImagingStudy?{query}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(outcome["issue"][0]["severity"], "error");
        let text = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(text.contains(says), "{query}: {text}");
    }
    // A huge page is capped, and said.
    let (status, bundle) = seen.get(&server, "/fhir/ImagingStudy?_count=5000").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        entries(&bundle, "outcome")[0]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("100")
    );

    // Unknown and malformed ids.
    for id in ["1.2.3.4.5.6.7.8.9", "not-a-uid", "1.2.%3Cscript%3E"] {
        let (status, outcome) = seen.get(&server, &format!("/fhir/ImagingStudy/{id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(outcome["issue"][0]["code"], "not-found");
    }
    // Only JSON is spoken.
    let (status, outcome) = seen
        .get_with(
            &server,
            "/fhir/ImagingStudy",
            &[("accept", "application/fhir+xml")],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(outcome["resourceType"], "OperationOutcome");

    seen.validate();
}
