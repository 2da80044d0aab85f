//! DIMSE against dcmtk, an independent implementation: echoscu, storescu (many
//! files, several SOP classes and transfer syntaxes on one association),
//! findscu (both models, every level, Cyrillic and Kazakh names), plus a raw
//! dicom-ul client for C-CANCEL and bytes that are not DICOM at all. What goes
//! in over DIMSE is checked over DICOMweb.
//!
//! Runs when `AINA_TEST_DCMTK` is set (`.ci/run` installs dcmtk and sets it).

use std::path::{Path, PathBuf};
use tokio::process::Command;

use aina::dimse::message::{Command as DimseCommand, CommandWriter, NO_DATA_SET, field};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::common::{self, TestServer, corpus, sample};

pub(crate) fn dcmtk() -> bool {
    if std::env::var_os("AINA_TEST_DCMTK").is_some() {
        true
    } else {
        eprintln!("SKIPPED: set AINA_TEST_DCMTK=1 (dcmtk installed)");
        false
    }
}

fn port(srv: &TestServer) -> String {
    srv.server.dicom_addr.port().to_string()
}

/// Runs a dcmtk tool against the server; returns (success, stdout + stderr).
/// Asynchronously: the server runs on the test's runtime.
async fn run(tool: &str, srv: &TestServer, args: &[&str], files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(tool)
        .args(["-aec", "AINA"])
        .args(args)
        .args(["127.0.0.1", &port(srv)])
        .args(files)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn echo_ok(srv: &TestServer) -> bool {
    run("echoscu", srv, &[], &[]).await.0
}

pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn open(bytes: &[u8]) -> DefaultDicomObject {
    OpenFileOptions::new().from_reader(bytes).unwrap()
}

/// What a data set says, whatever its encoding: its attributes as DICOM JSON
/// without Pixel Data, and the pixel data (native bytes or each fragment). The
/// bytes are not compared: storescu re-encodes on the way (sequences of defined
/// length go out with undefined length), so what arrived is not the file.
fn content(obj: &DefaultDicomObject) -> (Value, Vec<Vec<u8>>) {
    let mut data_set = obj.clone().into_inner();
    let pixels = match data_set.take(tags::PIXEL_DATA).map(|e| e.into_value()) {
        Some(dicom_core::DicomValue::PixelSequence(seq)) => seq.fragments().to_vec(),
        Some(dicom_core::DicomValue::Primitive(p)) => vec![p.to_bytes().into_owned()],
        _ => Vec::new(),
    };
    (dicom_json::to_value(&data_set).unwrap(), pixels)
}

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.element_opt(tag)
        .unwrap()
        .map(|e| e.to_str().unwrap().trim_end_matches(['\0', ' ']).to_owned())
        .unwrap_or_default()
}

/// The instance's original bytes over WADO-RS (`transfer-syntax=*`).
async fn retrieve(srv: &TestServer, obj: &DefaultDicomObject) -> Vec<u8> {
    let path = format!(
        "/studies/{}/series/{}/instances/{}",
        text(obj, tags::STUDY_INSTANCE_UID),
        text(obj, tags::SERIES_INSTANCE_UID),
        text(obj, tags::SOP_INSTANCE_UID)
    );
    let mut parts = srv.retrieve_original(&path).await;
    assert_eq!(parts.len(), 1, "{path}");
    parts.remove(0)
}

#[tokio::test]
async fn echo_survives_garbage_and_wrong_peers() {
    if !dcmtk() {
        return;
    }
    let srv = common::start().await;
    assert!(echo_ok(&srv).await);

    // Bytes that are not DICOM, a PDU header announcing 4 GB, a connection
    // closed at once: each ends its own connection, never the server.
    for garbage in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0x01, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x01],
        (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
        Vec::new(),
    ] {
        let mut s = tokio::net::TcpStream::connect(srv.server.dicom_addr)
            .await
            .unwrap();
        let _ = s.write_all(&garbage).await;
        let _ = s.shutdown().await;
    }
    assert!(echo_ok(&srv).await);

    // A called AE title that is not ours is rejected at association time.
    let out = Command::new("echoscu")
        .args(["-aec", "NOT-AINA", "127.0.0.1", &port(&srv)])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());

    // An unknown SOP class is not negotiated: storescu gives up, we stay up.
    let dir = tempfile::tempdir().unwrap();
    let odd = common::edit(&sample()[0].bytes, |o| {
        o.update_meta(|m| m.media_storage_sop_class_uid = "1.2.3.4.5.6".into());
        o.put_str(tags::SOP_CLASS_UID, dicom_core::VR::UI, "1.2.3.4.5.6");
    });
    let (ok, out) = run("storescu", &srv, &[], &[write(dir.path(), "odd.dcm", &odd)]).await;
    assert!(!ok, "{out}");
    assert!(echo_ok(&srv).await);
}

#[tokio::test]
async fn store_many_then_serve_over_the_web() {
    if !dcmtk() {
        return;
    }
    let (Some(j2k), Some(rle)) = (
        corpus("pydicom-data__RG1_J2KR.dcm"),
        corpus("pydicom-data__emri_small_RLE.dcm"),
    ) else {
        return;
    };
    let srv = common::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Generated CR, DX and MG (Explicit VR Little Endian) and a JPEG 2000 file,
    // on one association (-xv proposes JPEG 2000 lossless and the uncompressed
    // syntaxes).
    let mut originals: Vec<Vec<u8>> = sample().iter().take(8).map(|g| g.bytes.clone()).collect();
    originals.push(j2k);
    let files: Vec<PathBuf> = originals
        .iter()
        .enumerate()
        .map(|(i, b)| write(dir.path(), &format!("f{i}.dcm"), b))
        .collect();
    let (ok, out) = run("storescu", &srv, &["-xv"], &files).await;
    assert!(ok, "{out}");
    // RLE on its own association.
    let (ok, out) = run(
        "storescu",
        &srv,
        &["-xr"],
        &[write(dir.path(), "rle.dcm", &rle)],
    )
    .await;
    assert!(ok, "{out}");
    originals.push(rle);

    let classes: std::collections::BTreeSet<String> = originals
        .iter()
        .map(|b| text(&open(b), tags::SOP_CLASS_UID))
        .collect();
    assert!(classes.len() >= 3, "{classes:?}");
    for original in &originals {
        let obj = open(original);
        let found = srv
            .qido(&format!(
                "/instances?SOPInstanceUID={}",
                text(&obj, tags::SOP_INSTANCE_UID)
            ))
            .await;
        assert_eq!(found.len(), 1);
        // The stored file is the one the SCP built: the data set as sent, in
        // the transfer syntax it was sent in, under our File Meta Information.
        let stored = retrieve(&srv, &obj).await;
        let stored_obj = open(&stored);
        assert_eq!(content(&stored_obj), content(&obj));
        assert_eq!(
            stored_obj.meta().transfer_syntax(),
            obj.meta().transfer_syntax()
        );
        assert_eq!(
            stored_obj.meta().source_application_entity_title.as_deref(),
            Some("AINA")
        );
        assert_eq!(
            stored_obj
                .meta()
                .sending_application_entity_title
                .as_deref(),
            Some("STORESCU")
        );
    }
}

#[tokio::test]
async fn implicit_vr_from_dimse_is_served_as_explicit_over_the_web() {
    if !dcmtk() {
        return;
    }
    let srv = common::start().await;
    let dir = tempfile::tempdir().unwrap();
    let original = &sample()[1].bytes;
    // -xi: only Implicit VR Little Endian is proposed; storescu converts.
    let (ok, out) = run(
        "storescu",
        &srv,
        &["-xi"],
        &[write(dir.path(), "i.dcm", original)],
    )
    .await;
    assert!(ok, "{out}");
    let obj = open(original);
    let served = open(&retrieve(&srv, &obj).await);
    assert_eq!(
        served.meta().transfer_syntax(),
        uids::EXPLICIT_VR_LITTLE_ENDIAN
    );
    for tag in [
        tags::PATIENT_NAME,
        tags::SOP_INSTANCE_UID,
        tags::STUDY_INSTANCE_UID,
    ] {
        assert_eq!(text(&served, tag), text(&obj, tag));
    }
    let pixels = |o: &DefaultDicomObject| {
        o.element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap()
            .into_owned()
    };
    assert_eq!(pixels(&served), pixels(&obj));
    // The index knows it arrived implicit.
    let meta = srv
        .get(
            &format!(
                "/studies/{}/series/{}/instances/{}/metadata",
                text(&obj, tags::STUDY_INSTANCE_UID),
                text(&obj, tags::SERIES_INSTANCE_UID),
                text(&obj, tags::SOP_INSTANCE_UID)
            ),
            "application/dicom+json",
        )
        .await;
    let meta: Value = meta.json().await.unwrap();
    assert_eq!(
        common::string(&meta[0], "00083002").as_deref(),
        Some(uids::EXPLICIT_VR_LITTLE_ENDIAN)
    );
}

/// Runs findscu with `-X` and reads the answers back.
async fn findscu(srv: &TestServer, model: &str, keys: &[&str]) -> Vec<DefaultDicomObject> {
    let dir = tempfile::tempdir().unwrap();
    let od = dir.path().to_str().unwrap().to_owned();
    let mut args = vec![model, "-X", "-od", &od];
    for k in keys {
        args.extend(["-k", k]);
    }
    let (ok, out) = run("findscu", srv, &args, &[]).await;
    assert!(ok, "{out}");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| open(&std::fs::read(p).unwrap()))
        .collect()
}

fn names(answers: &[DefaultDicomObject]) -> Vec<String> {
    answers
        .iter()
        .map(|a| text(a, tags::PATIENT_NAME))
        .collect()
}

#[tokio::test]
async fn find_on_both_models_at_every_level() {
    if !dcmtk() {
        return;
    }
    let srv = common::start().await;
    let files: Vec<&[u8]> = sample().iter().map(|g| g.bytes.as_slice()).collect();
    let (status, _) = srv.stow(&files).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let utf8 = "(0008,0005)=ISO_IR 192";

    // STUDY level, Study Root: Russian and Kazakh names, lower case, wildcard.
    for (query, prefix, qido) in [
        ("иванов*", "Иванов", "иванов*"),
        ("әбілқасымова*", "Әбілқасымова", "әбілқасымова*"),
    ] {
        let name = format!("PatientName={query}");
        let answers = findscu(
            &srv,
            "-S",
            &[
                utf8,
                "QueryRetrieveLevel=STUDY",
                &name,
                "StudyInstanceUID=",
                "ModalitiesInStudy=",
            ],
        )
        .await;
        let expected = srv.qido(&format!("/studies?PatientName={qido}")).await;
        assert!(!answers.is_empty());
        assert_eq!(answers.len(), expected.len());
        for a in &answers {
            assert!(
                text(a, tags::PATIENT_NAME).starts_with(prefix),
                "{:?}",
                names(&answers)
            );
            assert_eq!(text(a, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
            assert_eq!(text(a, tags::QUERY_RETRIEVE_LEVEL), "STUDY");
            assert!(!text(a, tags::MODALITIES_IN_STUDY).is_empty());
        }
    }

    // SERIES and IMAGE levels below one study.
    let study = &sample()[0];
    let study_key = format!("StudyInstanceUID={}", study.study_instance_uid);
    let series = findscu(
        &srv,
        "-S",
        &[
            "QueryRetrieveLevel=SERIES",
            &study_key,
            "SeriesInstanceUID=",
            "Modality=",
        ],
    )
    .await;
    let expected = srv
        .qido(&format!("/studies/{}/series", study.study_instance_uid))
        .await;
    assert_eq!(series.len(), expected.len());
    assert!(
        series
            .iter()
            .any(|s| text(s, tags::SERIES_INSTANCE_UID) == study.series_instance_uid)
    );
    let series_key = format!("SeriesInstanceUID={}", study.series_instance_uid);
    let images = findscu(
        &srv,
        "-S",
        &[
            "QueryRetrieveLevel=IMAGE",
            &study_key,
            &series_key,
            "SOPInstanceUID=",
            "InstanceNumber=",
        ],
    )
    .await;
    let in_series = sample()
        .iter()
        .filter(|g| g.series_instance_uid == study.series_instance_uid)
        .count();
    assert_eq!(images.len(), in_series);
    assert!(
        images
            .iter()
            .any(|i| text(i, tags::SOP_INSTANCE_UID) == study.sop_instance_uid)
    );

    // Patient Root: PATIENT level groups studies by PatientID.
    let patients = findscu(
        &srv,
        "-P",
        &[
            utf8,
            "QueryRetrieveLevel=PATIENT",
            "PatientName=",
            "PatientID=",
            "NumberOfPatientRelatedStudies=",
        ],
    )
    .await;
    let ids: std::collections::BTreeSet<String> =
        patients.iter().map(|p| text(p, tags::PATIENT_ID)).collect();
    assert_eq!(ids.len(), patients.len(), "one answer per patient");
    assert_eq!(ids.len(), 7, "{:?}", names(&patients));
    let studies = srv.qido("/studies").await;
    let total: i64 = patients
        .iter()
        .map(|p| {
            text(p, tags::NUMBER_OF_PATIENT_RELATED_STUDIES)
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    assert_eq!(total as usize, studies.len());
    // STUDY level of one patient in Patient Root, Kazakh name in the answer.
    let kazakh = patients
        .iter()
        .find(|p| text(p, tags::PATIENT_NAME).starts_with("Нұрланұлы"))
        .expect("Kazakh patient");
    let id_key = format!("PatientID={}", text(kazakh, tags::PATIENT_ID));
    let studies = findscu(
        &srv,
        "-P",
        &[
            "QueryRetrieveLevel=STUDY",
            &id_key,
            "PatientName=",
            "StudyInstanceUID=",
        ],
    )
    .await;
    assert_eq!(
        studies.len() as i64,
        text(kazakh, tags::NUMBER_OF_PATIENT_RELATED_STUDIES)
            .parse::<i64>()
            .unwrap()
    );
    assert!(names(&studies).iter().all(|n| n.starts_with("Нұрланұлы")));

    // A bad level is refused, and the association goes on working.
    let (_, out) = run(
        "findscu",
        &srv,
        &["-v", "-P", "-k", "QueryRetrieveLevel=FOO"],
        &[],
    )
    .await;
    assert!(
        out.contains("Final Find Response (Error: DataSetDoesNotMatchSOPClass)"),
        "{out}"
    );
    assert!(echo_ok(&srv).await);
}

/// C-CANCEL sent right behind the C-FIND: the SCP stops and answers FE00.
#[tokio::test]
async fn find_honours_cancel() {
    if !dcmtk() {
        return;
    }
    let srv = common::start().await;
    let files: Vec<&[u8]> = sample().iter().map(|g| g.bytes.as_slice()).collect();
    srv.stow(&files).await;
    let addr = srv.server.dicom_addr;
    let statuses = tokio::task::spawn_blocking(move || {
        let mut ul = dicom_ul::ClientAssociationOptions::new()
            .calling_ae_title("CANCELLER")
            .called_ae_title("AINA")
            .with_presentation_context(
                uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
                vec![uids::EXPLICIT_VR_LITTLE_ENDIAN],
            )
            .establish(addr)
            .unwrap();
        let pc = ul.presentation_contexts()[0].id;
        let find = CommandWriter::default()
            .u16(tags::COMMAND_FIELD, field::C_FIND_RQ)
            .u16(tags::MESSAGE_ID, 9)
            .u16(tags::PRIORITY, 0)
            .u16(tags::COMMAND_DATA_SET_TYPE, 0)
            .uid(
                tags::AFFECTED_SOP_CLASS_UID,
                uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND,
            )
            .finish();
        let cancel = CommandWriter::default()
            .u16(tags::COMMAND_FIELD, field::C_CANCEL_RQ)
            .u16(tags::MESSAGE_ID_BEING_RESPONDED_TO, 9)
            .u16(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET)
            .finish();
        let mut identifier = InMemDicomObject::new_empty();
        identifier.put_str(tags::QUERY_RETRIEVE_LEVEL, dicom_core::VR::CS, "STUDY");
        identifier.put_str(tags::STUDY_INSTANCE_UID, dicom_core::VR::UI, "");
        let mut id_bytes = Vec::new();
        identifier
            .write_dataset_with_ts(
                &mut id_bytes,
                &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
            )
            .unwrap();
        let pdv = |value_type, data: Vec<u8>| PDataValue {
            presentation_context_id: pc,
            value_type,
            is_last: true,
            data,
        };
        ul.send(&Pdu::PData {
            data: vec![
                pdv(PDataValueType::Command, find),
                pdv(PDataValueType::Data, id_bytes),
                pdv(PDataValueType::Command, cancel),
            ],
        })
        .unwrap();
        let mut statuses = Vec::new();
        loop {
            let Pdu::PData { data } = ul.receive().unwrap() else {
                panic!("P-DATA expected")
            };
            for v in data
                .iter()
                .filter(|v| v.value_type == PDataValueType::Command)
            {
                let c = DimseCommand::parse(&v.data).unwrap();
                let status = c.u16(tags::STATUS).unwrap();
                statuses.push(status);
                if status != 0xFF00 && status != 0xFF01 {
                    let _ = ul.release();
                    return statuses;
                }
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(statuses.last(), Some(&0xFE00), "{statuses:x?}");
    assert!(statuses.len() < sample().len());
}

/// A dcmtk `storescp` on a free port, as a C-MOVE destination; killed when
/// dropped.
struct StoreScp {
    port: u16,
    dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

async fn storescp(ae_title: &str) -> StoreScp {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    // +B: the data set is written to disk exactly as received.
    let child = Command::new("storescp")
        .args(["-aet", ae_title, "+xa", "+B", "-od"])
        .arg(dir.path())
        .arg(port.to_string())
        .kill_on_drop(true)
        .spawn()
        .expect("storescp");
    for _ in 0..100 {
        let ok = Command::new("echoscu")
            .args(["-aec", ae_title, "127.0.0.1", &port.to_string()])
            .output()
            .await
            .is_ok_and(|o| o.status.success());
        if ok {
            return StoreScp {
                port,
                dir,
                _child: child,
            };
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("storescp did not start");
}

/// Every file in `dir`, read.
fn received(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// The data set bytes of a PS3.10 file: after the preamble, `DICM` and the
/// meta group (whose length its first element gives).
fn data_set_bytes(file: &[u8]) -> &[u8] {
    let obj = open(file);
    &file[132 + 12 + obj.meta().information_group_length as usize..]
}

/// The generated instances of the first study of the sample.
fn one_study() -> Vec<&'static aina_sample::Generated> {
    let study = &sample()[0].study_instance_uid;
    sample()
        .iter()
        .filter(|g| &g.study_instance_uid == study)
        .collect()
}

#[tokio::test]
async fn move_sends_the_stored_data_sets_to_a_configured_peer() {
    if !dcmtk() {
        return;
    }
    let dest = storescp("DEST").await;
    let peer = format!("DEST=127.0.0.1:{}", dest.port);
    let srv = common::start_with(|s| s.dicom_peer = vec![peer]).await;
    let study = one_study();
    let bytes: Vec<&[u8]> = study.iter().map(|g| g.bytes.as_slice()).collect();
    let (status, _) = srv.stow(&bytes).await;
    assert!(status.is_success());

    let key = format!("StudyInstanceUID={}", study[0].study_instance_uid);
    let (ok, out) = run(
        "movescu",
        &srv,
        &[
            "-v",
            "-S",
            "-aem",
            "DEST",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            &key,
        ],
        &[],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("Final Move Response (Success)"), "{out}");
    // What the peer received is the stored data set, byte for byte: the STOW-RS
    // file minus its File Meta Information.
    let got = received(dest.dir.path());
    assert_eq!(got.len(), study.len(), "{out}");
    for file in &got {
        let uid = text(&open(file), tags::SOP_INSTANCE_UID);
        let original = study
            .iter()
            .find(|g| g.sop_instance_uid == uid)
            .expect("a stored instance");
        assert!(
            data_set_bytes(file) == data_set_bytes(&original.bytes),
            "{uid}"
        );
        assert_eq!(content(&open(file)), content(&open(&original.bytes)));
    }

    // PATIENT level on Patient Root, by PatientID.
    std::fs::remove_dir_all(dest.dir.path()).unwrap();
    std::fs::create_dir(dest.dir.path()).unwrap();
    let patient = format!(
        "PatientID={}",
        text(&open(&study[0].bytes), tags::PATIENT_ID)
    );
    let (ok, out) = run(
        "movescu",
        &srv,
        &[
            "-v",
            "-P",
            "-aem",
            "DEST",
            "-k",
            "QueryRetrieveLevel=PATIENT",
            "-k",
            &patient,
        ],
        &[],
    )
    .await;
    assert!(ok && out.contains("Final Move Response (Success)"), "{out}");
    assert_eq!(received(dest.dir.path()).len(), study.len(), "{out}");

    // An unknown destination is refused with A801.
    let (_, out) = run(
        "movescu",
        &srv,
        &[
            "-v",
            "-S",
            "-aem",
            "NOBODY",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            &key,
        ],
        &[],
    )
    .await;
    assert!(out.contains("MoveDestinationUnknown"), "{out}");
    assert!(echo_ok(&srv).await);
}

#[tokio::test]
async fn get_retrieves_a_study_on_the_same_association() {
    if !dcmtk() {
        return;
    }
    let srv = common::start().await;
    let study = one_study();
    let bytes: Vec<&[u8]> = study.iter().map(|g| g.bytes.as_slice()).collect();
    let (status, _) = srv.stow(&bytes).await;
    assert!(status.is_success());
    let dir = tempfile::tempdir().unwrap();
    let key = format!("StudyInstanceUID={}", study[0].study_instance_uid);
    let out_dir = dir.path().to_str().unwrap();
    let (ok, out) = run(
        "getscu",
        &srv,
        &[
            "-v",
            "-S",
            "-od",
            out_dir,
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            &key,
        ],
        &[],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("Received C-GET Response (Success)"), "{out}");
    let got = received(dir.path());
    assert_eq!(got.len(), study.len(), "{out}");
    for file in &got {
        let uid = text(&open(file), tags::SOP_INSTANCE_UID);
        let original = study
            .iter()
            .find(|g| g.sop_instance_uid == uid)
            .expect("a stored instance");
        assert_eq!(content(&open(file)), content(&open(&original.bytes)));
    }

    // Stored in Implicit VR Little Endian (storescu -xi), asked for by an SCU
    // that takes only Explicit VR Little Endian for it (+xe: one context per
    // SOP class, explicit first, and we keep the first): re-encoded, a warning.
    let other = sample()
        .iter()
        .find(|g| g.study_instance_uid != study[0].study_instance_uid)
        .expect("a second study");
    let original = &other.bytes;
    let (ok, out) = run(
        "storescu",
        &srv,
        &["-xi"],
        &[write(dir.path(), "implicit.dcm", original)],
    )
    .await;
    assert!(ok, "{out}");
    let got_dir = tempfile::tempdir().unwrap();
    let key = format!("SOPInstanceUID={}", other.sop_instance_uid);
    let (ok, out) = run(
        "getscu",
        &srv,
        &[
            "-v",
            "-S",
            "+xe",
            "-od",
            got_dir.path().to_str().unwrap(),
            "-k",
            "QueryRetrieveLevel=IMAGE",
            "-k",
            &key,
        ],
        &[],
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("Received C-GET Response (Warning")
            && out.contains("Number of Warning Suboperations   : 1"),
        "{out}"
    );
    let got = received(got_dir.path());
    assert_eq!(got.len(), 1, "{out}");
    let obj = open(&got[0]);
    assert_eq!(
        obj.meta().transfer_syntax(),
        uids::EXPLICIT_VR_LITTLE_ENDIAN
    );
    assert_eq!(content(&obj), content(&open(original)));

    // Each C-GET is in the audit log, once per study, with its counts.
    let state = &srv.server.state;
    state.audit.flush().await;
    let retrieved = state
        .audit_log
        .search(&aina::auth::audit::AuditFilter {
            action: Some(aina::auth::audit::Action::Retrieve),
            study_uid: Some(study[0].study_instance_uid.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!retrieved.is_empty());
    let detail = retrieved[0].event.detail.as_deref().unwrap();
    assert!(
        detail.starts_with("C-GET") && detail.contains(&format!("{} instances", study.len())),
        "{detail}"
    );
    assert!(retrieved[0].event.patient_id.is_some());
}

#[tokio::test]
async fn send_stores_files_on_another_node() {
    if !dcmtk() {
        return;
    }
    let srv = common::start().await;
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<&aina_sample::Generated> = sample().iter().take(6).collect();
    for g in &files {
        write(dir.path(), &g.file_name, &g.bytes);
    }
    let aina = env!("CARGO_BIN_EXE_aina");
    let out = Command::new(aina)
        .args([
            "send",
            "--ae-title",
            "SENDER",
            "127.0.0.1",
            &port(&srv),
            "AINA",
        ])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    let text_out = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text_out}");
    assert!(text_out.contains("sent 6 of 6 files"), "{text_out}");
    for g in &files {
        let found = srv
            .qido(&format!("/instances?SOPInstanceUID={}", g.sop_instance_uid))
            .await;
        assert_eq!(found.len(), 1, "{}", g.sop_instance_uid);
        // Stored byte for byte as the data set that was sent.
        let stored = retrieve(&srv, &open(&g.bytes)).await;
        assert!(data_set_bytes(&stored) == data_set_bytes(&g.bytes));
    }
    // Nothing listening there: a failure, and a non-zero exit.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(aina)
        .args(["send", "127.0.0.1", &closed.to_string(), "AINA"])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn callers_not_on_the_allow_list_are_rejected() {
    if !dcmtk() {
        return;
    }
    let srv = common::start_with(|s| {
        s.dicom_allowed_caller = vec!["GOOD@127.0.0.0/8".into(), "FARAWAY@10.0.0.0/8".into()];
        s.dicom_peer = vec!["PEER=127.0.0.1:1".into()];
    })
    .await;
    for (calling, allowed) in [
        ("GOOD", true),
        ("PEER", true),
        ("STRANGER", false),
        ("FARAWAY", false),
    ] {
        let (ok, out) = run("echoscu", &srv, &["-aet", calling], &[]).await;
        assert_eq!(ok, allowed, "{calling}: {out}");
        if !allowed {
            assert!(out.contains("Calling AE Title Not Recognized"), "{out}");
        }
    }
}

#[tokio::test]
async fn move_honours_cancel() {
    if !dcmtk() {
        return;
    }
    let dest = storescp("DEST").await;
    let peer = format!("DEST=127.0.0.1:{}", dest.port);
    let srv = common::start_with(|s| s.dicom_peer = vec![peer]).await;
    let study = one_study();
    let bytes: Vec<&[u8]> = study.iter().map(|g| g.bytes.as_slice()).collect();
    srv.stow(&bytes).await;
    let addr = srv.server.dicom_addr;
    let study_uid = study[0].study_instance_uid.clone();
    let last = tokio::task::spawn_blocking(move || {
        let model = uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE;
        let mut ul = dicom_ul::ClientAssociationOptions::new()
            .calling_ae_title("CANCELLER")
            .called_ae_title("AINA")
            .with_presentation_context(model, vec![uids::EXPLICIT_VR_LITTLE_ENDIAN])
            .establish(addr)
            .unwrap();
        let pc = ul.presentation_contexts()[0].id;
        let request = CommandWriter::default()
            .u16(tags::COMMAND_FIELD, field::C_MOVE_RQ)
            .u16(tags::MESSAGE_ID, 4)
            .u16(tags::PRIORITY, 0)
            .u16(tags::COMMAND_DATA_SET_TYPE, 0)
            .uid(tags::AFFECTED_SOP_CLASS_UID, model)
            .text(tags::MOVE_DESTINATION, "DEST")
            .finish();
        let cancel = CommandWriter::default()
            .u16(tags::COMMAND_FIELD, field::C_CANCEL_RQ)
            .u16(tags::MESSAGE_ID_BEING_RESPONDED_TO, 4)
            .u16(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET)
            .finish();
        let mut identifier = InMemDicomObject::new_empty();
        identifier.put_str(tags::QUERY_RETRIEVE_LEVEL, dicom_core::VR::CS, "STUDY");
        identifier.put_str(tags::STUDY_INSTANCE_UID, dicom_core::VR::UI, study_uid);
        let mut id_bytes = Vec::new();
        identifier
            .write_dataset_with_ts(
                &mut id_bytes,
                &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
            )
            .unwrap();
        let pdv = |value_type, data: Vec<u8>| PDataValue {
            presentation_context_id: pc,
            value_type,
            is_last: true,
            data,
        };
        ul.send(&Pdu::PData {
            data: vec![
                pdv(PDataValueType::Command, request),
                pdv(PDataValueType::Data, id_bytes),
                pdv(PDataValueType::Command, cancel),
            ],
        })
        .unwrap();
        loop {
            let Pdu::PData { data } = ul.receive().unwrap() else {
                panic!("P-DATA expected")
            };
            for v in data
                .iter()
                .filter(|v| v.value_type == PDataValueType::Command)
            {
                let c = DimseCommand::parse(&v.data).unwrap();
                if c.u16(tags::STATUS) != Some(0xFF00) {
                    let _ = ul.release();
                    return c;
                }
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(last.u16(tags::STATUS), Some(0xFE00));
    let completed = last.u16(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS).unwrap();
    assert!((completed as usize) < study.len());
    assert!(echo_ok(&srv).await);
}

/// `--dicom-max-associations 1`: while one association is open a second is
/// refused (A-ASSOCIATE-RJ, transient), and the first one still works.
#[tokio::test]
async fn association_cap_refuses_the_second() {
    if !dcmtk() {
        return;
    }
    let srv = common::start_with(|s| s.dicom_max_associations = Some(1)).await;
    let addr = srv.server.dicom_addr;
    let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let first = tokio::task::spawn_blocking(move || {
        let mut ul = dicom_ul::ClientAssociationOptions::new()
            .calling_ae_title("FIRST")
            .called_ae_title("AINA")
            .with_presentation_context(uids::VERIFICATION, vec![uids::IMPLICIT_VR_LITTLE_ENDIAN])
            .establish(addr)
            .unwrap();
        opened_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        let pc = ul.presentation_contexts()[0].id;
        let echo = CommandWriter::default()
            .u16(tags::COMMAND_FIELD, field::C_ECHO_RQ)
            .u16(tags::MESSAGE_ID, 1)
            .u16(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET)
            .uid(tags::AFFECTED_SOP_CLASS_UID, uids::VERIFICATION)
            .finish();
        ul.send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc,
                value_type: PDataValueType::Command,
                is_last: true,
                data: echo,
            }],
        })
        .unwrap();
        let Pdu::PData { data } = ul.receive().unwrap() else {
            panic!("P-DATA expected")
        };
        let status = DimseCommand::parse(&data[0].data)
            .unwrap()
            .u16(tags::STATUS);
        let _ = ul.release();
        status
    });
    opened_rx.await.unwrap();
    let (ok, out) = run("echoscu", &srv, &[], &[]).await;
    assert!(!ok, "{out}");
    assert!(out.to_lowercase().contains("reject"), "{out}");
    go_tx.send(()).unwrap();
    assert_eq!(first.await.unwrap(), Some(0x0000));
    // The slot is free again once the first association has ended.
    let mut freed = false;
    for _ in 0..50 {
        if echo_ok(&srv).await {
            freed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(freed);
}

/// Storage commitment on the same association: two instances stored by
/// storescu and one unknown UID; the N-EVENT-REPORT (event type 2) commits the
/// two and fails the third with 0x0112, and our N-EVENT-REPORT-RSP is taken.
#[tokio::test]
async fn storage_commitment_reports_on_the_same_association() {
    if !dcmtk() {
        return;
    }
    let srv = common::start().await;
    let dir = tempfile::tempdir().unwrap();
    let stored: Vec<(String, String)> = sample()
        .iter()
        .take(2)
        .map(|g| {
            let obj = open(&g.bytes);
            (
                text(&obj, tags::SOP_CLASS_UID),
                text(&obj, tags::SOP_INSTANCE_UID),
            )
        })
        .collect();
    let files: Vec<PathBuf> = sample()
        .iter()
        .take(2)
        .enumerate()
        .map(|(i, g)| write(dir.path(), &format!("c{i}.dcm"), &g.bytes))
        .collect();
    let (ok, out) = run("storescu", &srv, &[], &files).await;
    assert!(ok, "{out}");
    let unknown = (stored[0].0.clone(), "2.25.999999".to_owned());
    let mut references = stored.clone();
    references.push(unknown.clone());
    let addr = srv.server.dicom_addr;
    let explicit = dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
    let (event, report) = tokio::task::spawn_blocking(move || {
        let mut ul = dicom_ul::ClientAssociationOptions::new()
            .calling_ae_title("MAMMO")
            .called_ae_title("AINA")
            .with_presentation_context(
                uids::STORAGE_COMMITMENT_PUSH_MODEL,
                vec![uids::EXPLICIT_VR_LITTLE_ENDIAN],
            )
            .establish(addr)
            .unwrap();
        let pc = ul.presentation_contexts()[0].id;
        let action = CommandWriter::default()
            .u16(tags::COMMAND_FIELD, field::N_ACTION_RQ)
            .u16(tags::MESSAGE_ID, 5)
            .u16(tags::COMMAND_DATA_SET_TYPE, 0)
            .uid(
                tags::REQUESTED_SOP_CLASS_UID,
                uids::STORAGE_COMMITMENT_PUSH_MODEL,
            )
            .uid(
                tags::REQUESTED_SOP_INSTANCE_UID,
                uids::STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
            )
            .u16(tags::ACTION_TYPE_ID, 1)
            .finish();
        let mut request = InMemDicomObject::new_empty();
        request.put_str(tags::TRANSACTION_UID, dicom_core::VR::UI, "2.25.4242");
        let items: Vec<InMemDicomObject> = references
            .iter()
            .map(|(class, instance)| {
                let mut item = InMemDicomObject::new_empty();
                item.put_str(tags::REFERENCED_SOP_CLASS_UID, dicom_core::VR::UI, class);
                item.put_str(
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    dicom_core::VR::UI,
                    instance,
                );
                item
            })
            .collect();
        request.put(dicom_core::DataElement::new(
            tags::REFERENCED_SOP_SEQUENCE,
            dicom_core::VR::SQ,
            dicom_core::value::DataSetSequence::from(items),
        ));
        let mut data = Vec::new();
        request.write_dataset_with_ts(&mut data, &explicit).unwrap();
        let pdv = |value_type, data: Vec<u8>| PDataValue {
            presentation_context_id: pc,
            value_type,
            is_last: true,
            data,
        };
        ul.send(&Pdu::PData {
            data: vec![
                pdv(PDataValueType::Command, action),
                pdv(PDataValueType::Data, data),
            ],
        })
        .unwrap();
        // N-ACTION-RSP, then N-EVENT-REPORT-RQ with its data set, in whatever
        // PDUs the SCP chose.
        let mut pdvs = Vec::new();
        while pdvs
            .iter()
            .filter(|v: &&PDataValue| v.value_type == PDataValueType::Data && v.is_last)
            .count()
            == 0
        {
            let Pdu::PData { data } = ul.receive().unwrap() else {
                panic!("P-DATA expected")
            };
            pdvs.extend(data);
        }
        let commands: Vec<DimseCommand> = pdvs
            .iter()
            .filter(|v| v.value_type == PDataValueType::Command)
            .map(|v| DimseCommand::parse(&v.data).unwrap())
            .collect();
        assert_eq!(commands[0].field, 0x8130, "N-ACTION-RSP first");
        assert_eq!(commands[0].u16(tags::STATUS), Some(0x0000));
        assert_eq!(
            commands[0].u16(tags::MESSAGE_ID_BEING_RESPONDED_TO),
            Some(5)
        );
        let event = commands[1].clone();
        assert_eq!(event.field, field::N_EVENT_REPORT_RQ);
        let report_bytes: Vec<u8> = pdvs
            .iter()
            .filter(|v| v.value_type == PDataValueType::Data)
            .flat_map(|v| v.data.clone())
            .collect();
        let report =
            InMemDicomObject::read_dataset_with_ts(report_bytes.as_slice(), &explicit).unwrap();
        let rsp = CommandWriter::default()
            .u16(tags::COMMAND_FIELD, field::N_EVENT_REPORT_RQ | 0x8000)
            .u16(tags::MESSAGE_ID_BEING_RESPONDED_TO, event.message_id())
            .u16(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET)
            .u16(tags::STATUS, 0)
            .uid(
                tags::AFFECTED_SOP_CLASS_UID,
                uids::STORAGE_COMMITMENT_PUSH_MODEL,
            )
            .uid(
                tags::AFFECTED_SOP_INSTANCE_UID,
                uids::STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
            )
            .u16(tags::EVENT_TYPE_ID, 2)
            .finish();
        ul.send(&Pdu::PData {
            data: vec![pdv(PDataValueType::Command, rsp)],
        })
        .unwrap();
        ul.release().unwrap();
        (event, report)
    })
    .await
    .unwrap();
    assert_eq!(event.u16(tags::EVENT_TYPE_ID), Some(2));
    assert_eq!(
        event.string(tags::AFFECTED_SOP_INSTANCE_UID).as_deref(),
        Some(uids::STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE)
    );
    assert_eq!(text(&report, tags::TRANSACTION_UID), "2.25.4242");
    let pairs = |tag| -> Vec<(String, String)> {
        report
            .element(tag)
            .unwrap()
            .items()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    text(i, tags::REFERENCED_SOP_CLASS_UID),
                    text(i, tags::REFERENCED_SOP_INSTANCE_UID),
                )
            })
            .collect()
    };
    assert_eq!(pairs(tags::REFERENCED_SOP_SEQUENCE), stored);
    assert_eq!(pairs(tags::FAILED_SOP_SEQUENCE), vec![unknown]);
    let failed = report.element(tags::FAILED_SOP_SEQUENCE).unwrap();
    let reason = failed.items().unwrap()[0]
        .element(tags::FAILURE_REASON)
        .unwrap()
        .to_int::<u16>()
        .unwrap();
    assert_eq!(reason, 0x0112);
    assert!(echo_ok(&srv).await);
}

/// Storage commitment when the requester releases before the report: the
/// report comes over a new association to the requester, a configured peer,
/// on which we propose the SCP role.
#[tokio::test]
async fn storage_commitment_reports_on_a_new_association_after_release() {
    if !dcmtk() {
        return;
    }
    let modality = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = format!("MAMMO=127.0.0.1:{}", modality.local_addr().unwrap().port());
    let srv = common::start_with(|s| s.dicom_peer = vec![peer]).await;
    let addr = srv.server.dicom_addr;
    // The modality's own SCP, waiting for the report.
    let listener = tokio::task::spawn_blocking(move || {
        let (socket, _) = modality.accept().unwrap();
        let mut ul = dicom_ul::ServerAssociationOptions::new()
            .accept_any()
            .ae_title("MAMMO")
            .with_abstract_syntax(uids::STORAGE_COMMITMENT_PUSH_MODEL)
            .establish(socket)
            .unwrap();
        assert_eq!(
            dicom_ul::association::Association::peer_ae_title(&ul),
            "AINA"
        );
        let pc = ul.presentation_contexts()[0].clone();
        assert_eq!(pc.transfer_syntax, uids::EXPLICIT_VR_LITTLE_ENDIAN);
        let mut pdvs: Vec<PDataValue> = Vec::new();
        while !pdvs
            .iter()
            .any(|v| v.value_type == PDataValueType::Data && v.is_last)
        {
            let Pdu::PData { data } = ul.receive().unwrap() else {
                panic!("P-DATA expected")
            };
            pdvs.extend(data);
        }
        let event = DimseCommand::parse(&pdvs[0].data).unwrap();
        let bytes: Vec<u8> = pdvs
            .iter()
            .filter(|v| v.value_type == PDataValueType::Data)
            .flat_map(|v| v.data.clone())
            .collect();
        let explicit = dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let report = InMemDicomObject::read_dataset_with_ts(bytes.as_slice(), &explicit).unwrap();
        let rsp = CommandWriter::default()
            .u16(tags::COMMAND_FIELD, field::N_EVENT_REPORT_RQ | 0x8000)
            .u16(tags::MESSAGE_ID_BEING_RESPONDED_TO, event.message_id())
            .u16(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET)
            .u16(tags::STATUS, 0)
            .finish();
        ul.send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc.id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: rsp,
            }],
        })
        .unwrap();
        // Our side releases.
        assert!(matches!(ul.receive().unwrap(), Pdu::ReleaseRQ));
        ul.send(&Pdu::ReleaseRP).unwrap();
        (event, report)
    });
    tokio::task::spawn_blocking(move || {
        let mut ul = dicom_ul::ClientAssociationOptions::new()
            .calling_ae_title("MAMMO")
            .called_ae_title("AINA")
            .with_presentation_context(
                uids::STORAGE_COMMITMENT_PUSH_MODEL,
                vec![uids::EXPLICIT_VR_LITTLE_ENDIAN],
            )
            .establish(addr)
            .unwrap();
        let pc = ul.presentation_contexts()[0].id;
        let action = CommandWriter::default()
            .u16(tags::COMMAND_FIELD, field::N_ACTION_RQ)
            .u16(tags::MESSAGE_ID, 1)
            .u16(tags::COMMAND_DATA_SET_TYPE, 0)
            .uid(
                tags::REQUESTED_SOP_CLASS_UID,
                uids::STORAGE_COMMITMENT_PUSH_MODEL,
            )
            .uid(
                tags::REQUESTED_SOP_INSTANCE_UID,
                uids::STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
            )
            .u16(tags::ACTION_TYPE_ID, 1)
            .finish();
        let mut request = InMemDicomObject::new_empty();
        request.put_str(tags::TRANSACTION_UID, dicom_core::VR::UI, "2.25.77");
        let mut item = InMemDicomObject::new_empty();
        item.put_str(
            tags::REFERENCED_SOP_CLASS_UID,
            dicom_core::VR::UI,
            uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
        );
        item.put_str(
            tags::REFERENCED_SOP_INSTANCE_UID,
            dicom_core::VR::UI,
            "2.25.55",
        );
        request.put(dicom_core::DataElement::new(
            tags::REFERENCED_SOP_SEQUENCE,
            dicom_core::VR::SQ,
            dicom_core::value::DataSetSequence::from(vec![item]),
        ));
        let mut data = Vec::new();
        let explicit = dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        request.write_dataset_with_ts(&mut data, &explicit).unwrap();
        let pdv = |value_type, data: Vec<u8>| PDataValue {
            presentation_context_id: pc,
            value_type,
            is_last: true,
            data,
        };
        // The request and the release at once: the SCP sees the release
        // before it could send the report here.
        ul.send(&Pdu::PData {
            data: vec![
                pdv(PDataValueType::Command, action),
                pdv(PDataValueType::Data, data),
            ],
        })
        .unwrap();
        ul.send(&Pdu::ReleaseRQ).unwrap();
        loop {
            match ul.receive().unwrap() {
                Pdu::PData { data } => {
                    let c = DimseCommand::parse(&data[0].data).unwrap();
                    assert_eq!(c.field, 0x8130, "only the N-ACTION-RSP comes here");
                }
                Pdu::ReleaseRP => break,
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    let (event, report) = tokio::time::timeout(std::time::Duration::from_secs(20), listener)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.field, field::N_EVENT_REPORT_RQ);
    assert_eq!(event.u16(tags::EVENT_TYPE_ID), Some(2));
    assert_eq!(text(&report, tags::TRANSACTION_UID), "2.25.77");
    let failed = report.element(tags::FAILED_SOP_SEQUENCE).unwrap();
    assert_eq!(
        text(
            &failed.items().unwrap()[0],
            tags::REFERENCED_SOP_INSTANCE_UID
        ),
        "2.25.55"
    );
}
