//! Chest radiographs: screening fluorography (CR, one PA view) and the DX
//! chest X-ray (PA and left lateral), with anatomy-like pixel content.
//!
//! The picture is an attenuation map (0 = direct exposure, ~1 = bone) built
//! from a few smooth shapes: torso, two lung fields (dark), mediastinum and
//! spine (bright, with vertebral rhythm), heart shadow bulging into the left
//! lung field, ribs as arcs, clavicles, the abdomen below the diaphragm, and
//! smooth texture plus quantum noise. Anatomy is seeded per patient, so a
//! follow-up study looks like the same chest; noise is seeded per study.
//! Not here: a radiologist's idea of realism beyond "looks like a chest".

use std::f32::consts::TAU;

use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::text::{SpecificCharacterSet, TextCodec};
use rand::Rng;

use crate::encode::{code_item, put_seq, put_str};
use crate::noise::{Fbm, gaussish, smoothstep};
use crate::raster::Lattice;
use crate::study::{Charset, PixelModule, Study, rng_for, rows_from, scaled};
use crate::{Error, Generated, Options, Patient};

/// Per-patient chest geometry, in fractions of the image width (`u`) and
/// height (`v`).
struct Anatomy {
    body_half_width: f32,
    lung_offset: f32,
    lung_rx: f32,
    lung_ry: f32,
    lung_cy: f32,
    heart_rx: f32,
    heart_ry: f32,
    rib_spacing: f32,
    texture: Fbm,
    markings: Fbm,
}

impl Anatomy {
    fn of(opts: &Options, patient: &Patient) -> Self {
        let mut rng = rng_for(opts.seed, &["chest-anatomy", &patient.id]);
        let mut jitter = |x: f32| x * (1.0 + rng.random_range(-0.06..0.06));
        Anatomy {
            body_half_width: jitter(0.45).min(0.48),
            lung_offset: jitter(0.19),
            lung_rx: jitter(0.145),
            lung_ry: jitter(0.30),
            lung_cy: jitter(0.45),
            heart_rx: jitter(0.14),
            heart_ry: jitter(0.12),
            rib_spacing: jitter(0.056),
            texture: Fbm::new(&mut rng, 4, 3),
            markings: Fbm::new(&mut rng, 24, 3),
        }
    }

    /// Lung field membership (0..1) and the normalised radius inside it.
    #[inline]
    fn lung(&self, dx: f32, v: f32) -> (f32, f32) {
        // The left lung (patient's left, image right on a PA) is a little
        // smaller: the heart takes its room.
        let ry = if dx > 0.0 {
            self.lung_ry * 0.95
        } else {
            self.lung_ry
        };
        let lx = (dx.abs() - self.lung_offset) / self.lung_rx;
        let ly = (v - self.lung_cy) / ry;
        let r = (lx * lx + ly * ly).sqrt();
        (smoothstep(1.0, 0.86, r), r)
    }

    /// Attenuation of a postero-anterior view at (`u`, `v`).
    fn pa(&self, u: f32, v: f32) -> f32 {
        let dx = u - 0.5;
        let adx = dx.abs();
        // Torso: neck at the top widening to the shoulders.
        let hw = 0.09 + (self.body_half_width - 0.09) * smoothstep(0.0, 0.16, v);
        let body = smoothstep(hw + 0.012, hw - 0.012, adx);
        if body == 0.0 {
            return 0.0;
        }
        let mut a = 0.42;
        let (lung, r) = self.lung(dx, v);
        a -= 0.30 * lung;
        // Vessel markings, denser towards the hila.
        let hilum = smoothstep(0.9, 0.2, r);
        a += lung * (0.035 + 0.05 * hilum) * (1.0 + self.markings.sample(u, v) * 2.0);
        // Mediastinum and heart as one soft-tissue shadow (the heart to the
        // patient's left), so they merge rather than add up.
        let mediastinum = smoothstep(0.095, 0.06, adx) * smoothstep(0.02, 0.08, v);
        let hx = (dx - 0.04) / self.heart_rx;
        let hy = (v - 0.63) / self.heart_ry;
        let heart = smoothstep(1.0, 0.85, (hx * hx + hy * hy).sqrt());
        a += 0.24 * mediastinum.max(heart);
        // Spine with vertebral bodies and discs, fainter behind the heart.
        let vertebrae = 0.75 + 0.25 * (v * TAU * 8.0).cos().abs();
        a += 0.16 * smoothstep(0.04, 0.03, adx) * vertebrae * (1.0 - 0.4 * heart);
        // Abdomen below the diaphragm domes.
        let dome = self.lung_cy + self.lung_ry * 0.97 - 0.04 * (1.0 - (adx / 0.35).min(1.0));
        let abdomen = smoothstep(dome - 0.02, dome + 0.03, v);
        a += 0.15 * abdomen;
        // Posterior ribs: arcs leaving the spine, then curving down laterally.
        let lateral = smoothstep(0.04, 0.07, adx) * (1.0 - abdomen);
        let c = -0.25 * adx + 1.9 * adx * adx;
        let phase = (v - 0.1 - c) / self.rib_spacing;
        if (0.0..10.0).contains(&phase) {
            let f = phase.fract();
            let band = smoothstep(0.0, 0.08, f) * smoothstep(0.42, 0.32, f);
            a += 0.08 * band * lateral;
        }
        // Anterior ribs: fainter, running down towards the sternum.
        let phase = (v + 0.45 * adx - 0.2) / (self.rib_spacing * 1.25);
        if (0.0..6.0).contains(&phase) {
            let f = phase.fract();
            let band = smoothstep(0.0, 0.1, f) * smoothstep(0.35, 0.25, f);
            a += 0.04 * band * lateral * lung;
        }
        // Clavicles.
        let d = (v - (0.115 + 0.09 * adx)).abs();
        a += 0.12
            * smoothstep(0.016, 0.008, d)
            * smoothstep(0.03, 0.06, adx)
            * smoothstep(0.32, 0.26, adx);
        a += 0.025 * self.texture.sample(u, v);
        a * body
    }

    /// Attenuation of a left lateral view at (`u`, `v`): the patient faces
    /// the image's left (anterior), spine on the right (posterior).
    fn lateral(&self, u: f32, v: f32) -> f32 {
        let bx = (u - 0.5) / (self.body_half_width * 0.8);
        let by = (v - 0.55) / 0.62;
        let body = smoothstep(1.0, 0.97, (bx * bx + by * by).sqrt());
        if body == 0.0 {
            return 0.0;
        }
        let mut a = 0.5;
        let lx = (u - 0.52) / (self.lung_rx * 1.85);
        let ly = (v - self.lung_cy) / self.lung_ry;
        let r = (lx * lx + ly * ly).sqrt();
        let lung = smoothstep(1.0, 0.85, r);
        a -= 0.28 * lung;
        a += lung * 0.04 * (1.0 + self.markings.sample(u, v) * 2.0);
        let hx = (u - 0.37) / self.heart_rx;
        let hy = (v - 0.62) / self.heart_ry;
        a += 0.14 * smoothstep(1.0, 0.8, (hx * hx + hy * hy).sqrt()) * lung;
        let vertebrae = 0.7 + 0.3 * (v * TAU * 8.0).cos().abs();
        a += 0.25 * smoothstep(0.05, 0.035, (u - 0.78).abs()) * vertebrae;
        // Sternum along the anterior chest wall.
        a += 0.06
            * smoothstep(0.02, 0.01, (u - 0.21 - 0.06 * v).abs())
            * smoothstep(0.15, 0.2, v)
            * smoothstep(0.65, 0.55, v);
        let phase = (v - 0.35 * (u - 0.5)) / (self.rib_spacing * 1.1);
        let f = phase.fract();
        a += 0.05 * smoothstep(0.0, 0.1, f) * smoothstep(0.4, 0.3, f) * lung;
        a += 0.12 * smoothstep(0.74, 0.80, v);
        a += 0.025 * self.texture.sample(u, v);
        a * body
    }
}

#[derive(Clone, Copy)]
enum View {
    PosteroAnterior,
    LeftLateral,
}

impl View {
    fn abbreviation(self) -> &'static str {
        match self {
            View::PosteroAnterior => "PA",
            View::LeftLateral => "LL",
        }
    }

    /// View Code Sequence item (PS3.16 CID 4010 "DX View").
    fn code(self) -> dicom_object::InMemDicomObject {
        match self {
            View::PosteroAnterior => code_item("399348003", "SCT", "postero-anterior"),
            View::LeftLateral => code_item("399173006", "SCT", "left lateral"),
        }
    }

    /// Patient Orientation (row direction, column direction) as displayed.
    fn orientation(self) -> &'static str {
        match self {
            View::PosteroAnterior => "L\\F",
            View::LeftLateral => "P\\F",
        }
    }
}

/// What differs between fluorography and the chest X-ray.
struct Kind {
    modality: &'static str,
    sop_class_uid: &'static str,
    model: &'static str,
    columns: u32,
    rows: u32,
    spacing_mm: f64,
    bits_stored: u16,
    /// MONOCHROME1 (CR fluorography, like many CR readers) or MONOCHROME2.
    inverted: bool,
}

const FLUOROGRAPHY: Kind = Kind {
    modality: "CR",
    sop_class_uid: uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
    model: "Aina FLG-2048",
    columns: 2048,
    rows: 2048,
    spacing_mm: 0.2,
    bits_stored: 12,
    inverted: true,
};

const CHEST_DX: Kind = Kind {
    modality: "DX",
    sop_class_uid: uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
    model: "Aina DR-4330",
    columns: 2500,
    rows: 3000,
    spacing_mm: 0.143,
    bits_stored: 14,
    inverted: false,
};

/// One chest image of `view` into `study`'s `series`.
fn chest_image(
    opts: &Options,
    kind: &Kind,
    study: &mut Study<'_>,
    series: &crate::study::Series,
    view: View,
    instance_number: u32,
) -> Generated {
    let anatomy = Anatomy::of(opts, study.patient);
    let columns = scaled(kind.columns, opts);
    let rows = scaled(kind.rows, opts);
    let pixels = PixelModule {
        rows,
        columns,
        frames: 1,
        bits_stored: kind.bits_stored,
        photometric: if kind.inverted {
            "MONOCHROME1"
        } else {
            "MONOCHROME2"
        },
    };
    let mut inst = study.instance(series, instance_number, kind.sop_class_uid, &pixels);
    let o = &mut inst.obj;
    put_str(o, tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY");
    put_str(o, tags::BODY_PART_EXAMINED, VR::CS, "CHEST");
    put_str(o, tags::VIEW_POSITION, VR::CS, view.abbreviation());
    put_str(o, tags::PATIENT_ORIENTATION, VR::CS, view.orientation());
    put_seq(o, tags::VIEW_CODE_SEQUENCE, vec![view.code()]);
    put_seq(
        o,
        tags::ANATOMIC_REGION_SEQUENCE,
        vec![code_item("51185008", "SCT", "Chest")],
    );
    put_str(
        o,
        tags::KVP,
        VR::DS,
        if kind.inverted { "90" } else { "125" },
    );
    put_str(o, tags::EXPOSURE, VR::IS, "3");
    put_str(o, tags::DISTANCE_SOURCE_TO_DETECTOR, VR::DS, "1800");
    if kind.modality == "DX" {
        // DX Series, DX Image, DX Detector (PS3.3 C.8.11).
        put_str(
            o,
            tags::PRESENTATION_INTENT_TYPE,
            VR::CS,
            "FOR PRESENTATION",
        );
        put_str(o, tags::PIXEL_INTENSITY_RELATIONSHIP, VR::CS, "LOG");
        o.put(dicom_core::DataElement::new(
            tags::PIXEL_INTENSITY_RELATIONSHIP_SIGN,
            VR::SS,
            dicom_core::PrimitiveValue::from(1_i16),
        ));
        put_str(o, tags::PRESENTATION_LUT_SHAPE, VR::CS, "IDENTITY");
        put_str(o, tags::DETECTOR_TYPE, VR::CS, "SCINTILLATOR");
        put_seq(o, tags::ACQUISITION_CONTEXT_SEQUENCE, Vec::new());
    }
    let spacing = kind.spacing_mm * f64::from(kind.columns) / f64::from(columns);
    inst.put_spacing(spacing);
    let max = pixels.max_value();
    // Window over the grey range the attenuation map maps to.
    inst.put_grey_scale(max * 0.45, max * 0.8, true);
    let noise_seed = study.rng.random::<u64>();
    let inverted = kind.inverted;
    let dn_per_4095 = max / 4095.0;
    let map = Lattice::new(columns, rows, |u, v| match view {
        View::PosteroAnterior => anatomy.pa(u, v),
        View::LeftLateral => anatomy.lateral(u, v),
    });
    let paint = rows_from(map, columns, move |x, y, a| {
        let p = (0.03 + 0.85 * a.clamp(0.0, 1.1)) * max;
        let sigma = (3.0 + 0.2 * (p / dn_per_4095).sqrt()) * dn_per_4095;
        let p = (p + sigma * gaussish(noise_seed, x, y)).clamp(0.0, max);
        (if inverted { max - p } else { p }) as u16
    });
    let file_name = format!(
        "{}-{}-{}-{}.dcm",
        kind.modality,
        study.patient.file_stem(),
        study.date,
        view.abbreviation()
    );
    inst.finish(file_name, &pixels, paint)
}

/// Screening fluorography: one PA chest image, CR, 2048² at scale 1
/// (0.2 mm pixels), 12 bits stored in 16, MONOCHROME1 (as CR readers often
/// send; lungs are high stored values, shown dark).
pub fn fluorography(opts: &Options, patient: &Patient, study_date: &str) -> Vec<Generated> {
    let mut study = Study::new(
        opts,
        "fluorography",
        patient,
        study_date,
        "Флюорография органов грудной клетки",
        Charset::Utf8,
    );
    let series = study.series(
        1,
        FLUOROGRAPHY.modality,
        "Флюорография прямая",
        FLUOROGRAPHY.model,
    );
    vec![chest_image(
        opts,
        &FLUOROGRAPHY,
        &mut study,
        &series,
        View::PosteroAnterior,
        1,
    )]
}

/// Chest X-ray: PA and left lateral, DX For Presentation, 2500×3000 at
/// scale 1 (0.143 mm pixels), 14 bits stored, MONOCHROME2.
pub fn chest_xray(opts: &Options, patient: &Patient, study_date: &str) -> Vec<Generated> {
    let mut study = Study::new(
        opts,
        "chest-xray",
        patient,
        study_date,
        "Кеуде қуысының рентгенографиясы / Chest X-ray",
        Charset::Utf8,
    );
    let pa = study.series(1, CHEST_DX.modality, "Chest PA", CHEST_DX.model);
    let lat = study.series(2, CHEST_DX.modality, "Chest lateral", CHEST_DX.model);
    vec![
        chest_image(opts, &CHEST_DX, &mut study, &pa, View::PosteroAnterior, 1),
        chest_image(opts, &CHEST_DX, &mut study, &lat, View::LeftLateral, 1),
    ]
}

/// A fluorography image encoded with Specific Character Set `ISO_IR 144`
/// (ISO 8859-5): text values, the patient's name included, are written as
/// 8859-5 bytes, as older Russian modalities send them.
///
/// # Errors
/// [`Error::NotInCharacterSet`] if the patient's name (or ID) cannot be
/// written in ISO 8859-5, e.g. a Kazakh name with `ә` or `қ`.
pub fn cyrillic_iso_ir_144(
    opts: &Options,
    patient: &Patient,
    study_date: &str,
) -> Result<Generated, Error> {
    let codec = SpecificCharacterSet::from_code(Charset::Cyrillic.defined_term())
        .expect("dicom-encoding knows ISO_IR 144");
    for value in [&patient.name, &patient.id] {
        codec
            .encode(value)
            .map_err(|source| Error::NotInCharacterSet {
                charset: Charset::Cyrillic.defined_term(),
                source,
            })?;
    }
    let mut study = Study::new(
        opts,
        "fluorography-iso-ir-144",
        patient,
        study_date,
        "Флюорография (ISO 8859-5)",
        Charset::Cyrillic,
    );
    let series = study.series(
        1,
        FLUOROGRAPHY.modality,
        "Флюорография прямая",
        FLUOROGRAPHY.model,
    );
    let mut generated = chest_image(
        opts,
        &FLUOROGRAPHY,
        &mut study,
        &series,
        View::PosteroAnterior,
        1,
    );
    generated.file_name = generated.file_name.replace(".dcm", "-ISO_IR_144.dcm");
    Ok(generated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pa_lungs_are_darker_than_mediastinum() {
        let opts = Options {
            seed: 1,
            scale: 0.1,
        };
        let a = Anatomy::of(&opts, &crate::patients()[0]);
        let lung = a.pa(0.3, 0.4);
        let mediastinum = a.pa(0.5, 0.4);
        let outside = a.pa(0.01, 0.05);
        assert!(lung < mediastinum, "lung {lung} mediastinum {mediastinum}");
        assert!(outside < lung);
    }
}
