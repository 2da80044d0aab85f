//! Generated files re-read with dicom-object: identity, sizes, mammography
//! views, character sets, determinism, the large instance.

use std::collections::HashSet;
use std::sync::OnceLock;

use aina_sample::{
    Generated, Options, chest_xray, cyrillic_iso_ir_144, demo_set, fluorography, large_instance,
    mammography, patients,
};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::text::{SpecificCharacterSet, TextCodec};
use dicom_object::{DefaultDicomObject, InMemDicomObject};

const OPTS: Options = Options {
    seed: 42,
    scale: 0.1,
};

fn demo() -> &'static [Generated] {
    static DEMO: OnceLock<Vec<Generated>> = OnceLock::new();
    DEMO.get_or_init(|| demo_set(&OPTS))
}

/// Parse a Part 10 file held in memory: skip the 128-byte preamble, then
/// `from_reader` expects `DICM` and the meta group.
fn read(g: &Generated) -> DefaultDicomObject {
    assert_eq!(
        &g.bytes[..128],
        &[0u8; 128][..],
        "{}: preamble",
        g.file_name
    );
    assert_eq!(&g.bytes[128..132], b"DICM", "{}: magic", g.file_name);
    dicom_object::from_reader(&g.bytes[128..])
        .unwrap_or_else(|e| panic!("{}: re-read failed: {e}", g.file_name))
}

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.element(tag)
        .unwrap_or_else(|_| panic!("missing {tag}"))
        .to_str()
        .unwrap()
        .trim_end_matches([' ', '\0'])
        .to_owned()
}

fn int(obj: &InMemDicomObject, tag: dicom_core::Tag) -> u32 {
    obj.element(tag).unwrap().to_int::<u32>().unwrap()
}

/// Stored value at (x, y) of frame 0.
fn pixel(obj: &InMemDicomObject, x: u32, y: u32) -> u16 {
    let columns = int(obj, tags::COLUMNS);
    let data = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    let i = ((y * columns + x) * 2) as usize;
    u16::from_le_bytes([data[i], data[i + 1]])
}

/// Mean stored value over a rectangle given in fractions of the image.
fn mean(obj: &InMemDicomObject, u0: f32, u1: f32, v0: f32, v1: f32) -> f64 {
    let (columns, rows) = (int(obj, tags::COLUMNS) as f32, int(obj, tags::ROWS) as f32);
    let (mut sum, mut n) = (0.0, 0.0);
    for y in (v0 * rows) as u32..(v1 * rows) as u32 {
        for x in (u0 * columns) as u32..(u1 * columns) as u32 {
            sum += f64::from(pixel(obj, x, y));
            n += 1.0;
        }
    }
    sum / n
}

#[test]
fn demo_set_rereads_with_its_identity() {
    let set = demo();
    assert_eq!(set.len(), 21);
    let mut names = HashSet::new();
    let mut sops = HashSet::new();
    for g in set {
        assert!(names.insert(&g.file_name), "duplicate {}", g.file_name);
        assert!(sops.insert(&g.sop_instance_uid), "duplicate SOP UID");
        let obj = read(g);
        assert_eq!(
            obj.meta().transfer_syntax(),
            uids::EXPLICIT_VR_LITTLE_ENDIAN
        );
        assert_eq!(
            obj.meta().media_storage_sop_instance_uid(),
            g.sop_instance_uid
        );
        assert_eq!(text(&obj, tags::SOP_INSTANCE_UID), g.sop_instance_uid);
        assert_eq!(text(&obj, tags::STUDY_INSTANCE_UID), g.study_instance_uid);
        assert_eq!(text(&obj, tags::SERIES_INSTANCE_UID), g.series_instance_uid);
        assert_eq!(text(&obj, tags::MODALITY), g.modality);
        assert_eq!(text(&obj, tags::MANUFACTURER), "Aina Sample Generator");
        for uid in [
            &g.study_instance_uid,
            &g.series_instance_uid,
            &g.sop_instance_uid,
        ] {
            assert!(uid.starts_with("2.25.") && uid.len() <= 64, "{uid}");
        }
        let expected_class = match g.modality.as_str() {
            "CR" => uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
            "DX" => uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
            "MG" => uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
            other => panic!("modality {other}"),
        };
        assert_eq!(text(&obj, tags::SOP_CLASS_UID), expected_class);
        for tag in [
            tags::STUDY_DATE,
            tags::STUDY_TIME,
            tags::ACCESSION_NUMBER,
            tags::REFERRING_PHYSICIAN_NAME,
            tags::STUDY_ID,
            tags::STUDY_DESCRIPTION,
            tags::INSTITUTION_NAME,
            tags::PATIENT_AGE,
            tags::PATIENT_ORIENTATION,
            tags::CONTENT_DATE,
            tags::CONTENT_TIME,
            tags::BODY_PART_EXAMINED,
            tags::SERIES_NUMBER,
            tags::INSTANCE_NUMBER,
            tags::WINDOW_CENTER,
            tags::WINDOW_WIDTH,
        ] {
            assert!(!text(&obj, tag).is_empty(), "{}: empty {tag}", g.file_name);
        }
        assert_eq!(int(&obj, tags::PIXEL_REPRESENTATION), 0);
        assert_eq!(int(&obj, tags::BITS_ALLOCATED), 16);
        let pixels = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
        assert_eq!(
            pixels.len() as u32,
            int(&obj, tags::ROWS) * int(&obj, tags::COLUMNS) * 2
        );
    }
}

#[test]
fn sizes_follow_scale() {
    let p = &patients()[0];
    for (scale, mg, dx, cr) in [
        (0.1, (333, 410), (250, 300), (205, 205)),
        (0.25, (832, 1024), (625, 750), (512, 512)),
    ] {
        let opts = Options { seed: 1, scale };
        for (set, (columns, rows), bits) in [
            (mammography(&opts, p, "20250101"), mg, 14),
            (chest_xray(&opts, p, "20250101"), dx, 14),
            (fluorography(&opts, p, "20250101"), cr, 12),
        ] {
            for g in &set {
                let obj = read(g);
                assert_eq!(int(&obj, tags::COLUMNS), columns, "{}", g.file_name);
                assert_eq!(int(&obj, tags::ROWS), rows, "{}", g.file_name);
                assert_eq!(int(&obj, tags::BITS_STORED), bits);
                assert_eq!(int(&obj, tags::HIGH_BIT), bits - 1);
            }
        }
    }
    // Pixel spacing grows as the image shrinks: the same 233 mm field.
    let g = &mammography(&OPTS, p, "20250101")[0];
    let spacing = text(&read(g), tags::IMAGER_PIXEL_SPACING);
    let first: f64 = spacing.split('\\').next().unwrap().parse().unwrap();
    assert!((first * 333.0 - 0.07 * 3328.0).abs() < 0.5, "{spacing}");
}

#[test]
fn same_seed_same_bytes_other_seed_other_uids() {
    let again = demo_set(&OPTS);
    assert!(demo().iter().zip(&again).all(|(a, b)| a == b));
    let other = demo_set(&Options { seed: 43, ..OPTS });
    for (a, b) in demo().iter().zip(&other) {
        assert_ne!(a.sop_instance_uid, b.sop_instance_uid);
        assert_ne!(a.bytes, b.bytes);
    }
}

#[test]
fn mammography_views_and_orientation() {
    let set = mammography(&OPTS, &patients()[3], "20250212");
    let expected = [
        ("R", "CC", "399162004", "cranio-caudal", "P\\L"),
        ("L", "CC", "399162004", "cranio-caudal", "A\\R"),
        ("R", "MLO", "399368009", "medio-lateral oblique", "P\\FL"),
        ("L", "MLO", "399368009", "medio-lateral oblique", "A\\FR"),
    ];
    assert_eq!(set.len(), 4);
    let study = &set[0].study_instance_uid;
    for (g, (lat, view, code, meaning, orientation)) in set.iter().zip(expected) {
        assert_eq!(&g.study_instance_uid, study);
        assert!(
            g.file_name.ends_with(&format!("{lat}{view}.dcm")),
            "{}",
            g.file_name
        );
        let obj = read(g);
        assert_eq!(text(&obj, tags::IMAGE_LATERALITY), lat);
        assert_eq!(text(&obj, tags::VIEW_POSITION), view);
        assert_eq!(text(&obj, tags::PATIENT_ORIENTATION), orientation);
        assert_eq!(
            text(&obj, tags::PRESENTATION_INTENT_TYPE),
            "FOR PRESENTATION"
        );
        assert_eq!(text(&obj, tags::PHOTOMETRIC_INTERPRETATION), "MONOCHROME2");
        assert_eq!(text(&obj, tags::BREAST_IMPLANT_PRESENT), "NO");
        let items = obj
            .element(tags::VIEW_CODE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(text(&items[0], tags::CODE_VALUE), code);
        assert_eq!(text(&items[0], tags::CODING_SCHEME_DESIGNATOR), "SCT");
        assert_eq!(text(&items[0], tags::CODE_MEANING), meaning);

        // Tissue against the chest wall (right edge for R, left for L),
        // background near 0 on the far side.
        let (wall, far) = if lat == "R" {
            (
                mean(&obj, 0.9, 1.0, 0.4, 0.6),
                mean(&obj, 0.0, 0.1, 0.0, 0.1),
            )
        } else {
            (
                mean(&obj, 0.0, 0.1, 0.4, 0.6),
                mean(&obj, 0.9, 1.0, 0.0, 0.1),
            )
        };
        assert!(
            wall > 3000.0 && far < 200.0,
            "{}: wall {wall} far {far}",
            g.file_name
        );
    }
}

#[test]
fn chest_looks_like_a_chest() {
    let set = chest_xray(
        &Options {
            seed: 5,
            scale: 0.2,
        },
        &patients()[1],
        "20250101",
    );
    let pa = read(&set[0]);
    assert_eq!(text(&pa, tags::VIEW_POSITION), "PA");
    let lung = mean(&pa, 0.28, 0.36, 0.35, 0.5);
    let mediastinum = mean(&pa, 0.48, 0.52, 0.35, 0.5);
    let outside = mean(&pa, 0.0, 0.03, 0.0, 0.1);
    assert!(
        outside < lung && lung < mediastinum,
        "{outside} {lung} {mediastinum}"
    );
    // MONOCHROME1 fluorography stores the lungs high.
    let fluoro = read(&fluorography(&OPTS, &patients()[1], "20250101")[0]);
    assert_eq!(
        text(&fluoro, tags::PHOTOMETRIC_INTERPRETATION),
        "MONOCHROME1"
    );
    assert!(mean(&fluoro, 0.28, 0.36, 0.35, 0.5) > mean(&fluoro, 0.48, 0.52, 0.35, 0.5));
}

#[test]
fn prior_mammography_is_the_same_patient_a_year_earlier() {
    let set = demo();
    let sadykova: Vec<_> = set
        .iter()
        .filter(|g| g.file_name.starts_with("MG-Sadykova-"))
        .collect();
    assert_eq!(sadykova.len(), 8);
    let studies: HashSet<_> = sadykova.iter().map(|g| &g.study_instance_uid).collect();
    assert_eq!(studies.len(), 2);
    let dates: HashSet<_> = sadykova
        .iter()
        .map(|g| text(&read(g), tags::STUDY_DATE))
        .collect();
    assert_eq!(
        dates,
        HashSet::from(["20240305".to_owned(), "20250310".to_owned()])
    );
    let ids: HashSet<_> = sadykova
        .iter()
        .map(|g| text(&read(g), tags::PATIENT_ID))
        .collect();
    assert_eq!(ids.len(), 1);
}

#[test]
fn kazakh_and_russian_names_round_trip_in_utf8() {
    for p in patients() {
        let g = &fluorography(&OPTS, &p, "20250101")[0];
        let obj = read(g);
        assert_eq!(text(&obj, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
        assert_eq!(text(&obj, tags::PATIENT_NAME), p.name);
        // UTF-8 on the wire.
        let raw = p.name.as_bytes();
        assert!(g.bytes.windows(raw.len()).any(|w| w == raw), "{}", p.name);
    }
}

#[test]
fn iso_ir_144_writes_8859_5_bytes_and_reads_back() {
    let petrova = &patients()[5];
    let g = cyrillic_iso_ir_144(&OPTS, petrova, "20250128").unwrap();
    let obj = read(&g);
    assert_eq!(text(&obj, tags::SPECIFIC_CHARACTER_SET), "ISO_IR 144");
    assert_eq!(text(&obj, tags::PATIENT_NAME), petrova.name);
    let latin5 = SpecificCharacterSet::from_code("ISO_IR 144")
        .unwrap()
        .encode(&petrova.name)
        .unwrap();
    assert_eq!(latin5.len(), petrova.name.chars().count());
    assert!(g.bytes.windows(latin5.len()).any(|w| w == latin5));
    let utf8 = petrova.name.as_bytes();
    assert!(!g.bytes.windows(utf8.len()).any(|w| w == utf8));
    // Kazakh letters have no ISO 8859-5 code.
    assert!(cyrillic_iso_ir_144(&OPTS, &patients()[3], "20250128").is_err());
}

#[test]
fn large_instance_hits_its_target() {
    for target in [300_000u64, 3_000_000, 9_000_000] {
        let g = large_instance(&OPTS, target);
        let len = g.bytes.len() as u64;
        assert!(len <= target, "{len} > {target}");
        assert!(len as f64 >= target as f64 * 0.99, "{len} vs {target}");
        let obj = read(&g);
        let frames = int(&obj, tags::NUMBER_OF_FRAMES);
        let pixels = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
        assert_eq!(
            pixels.len() as u32,
            frames * int(&obj, tags::ROWS) * int(&obj, tags::COLUMNS) * 2
        );
        assert_eq!(text(&obj, tags::SOP_INSTANCE_UID), g.sop_instance_uid);
    }
    assert_eq!(
        large_instance(&OPTS, 3_000_000),
        large_instance(&OPTS, 3_000_000)
    );
}
