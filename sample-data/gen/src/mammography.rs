//! Four-view screening mammography (RCC, LCC, RMLO, LMLO): Digital
//! Mammography X-Ray Image Storage – For Presentation (PS3.3 A.26, C.8.11.7),
//! with breast-shaped pixel content.
//!
//! Orientation follows the display convention that Patient Orientation
//! (0020,0020) records for mammograms (PS3.3 C.8.11.7, Mammography Image
//! Module; hung as in the IHE Mammography Image profile): the nipple points away from the chest wall, the chest wall is on
//! the image's right for R views (`P\L`, `P\FL`) and on its left for L views
//! (`A\R`, `A\FR`), so hung R|L the chest walls face each other without any
//! flipping. A real GE Senographe LCC header in the shared corpus carries
//! `A\R`, the same convention.
//!
//! The picture: a half-ellipse of tissue against the chest wall (taller
//! towards the axilla in MLO), thinning towards the skin line, fibroglandular
//! density from smooth noise concentrated behind the nipple, fine trabecular
//! texture, a skin line, the nipple, and in MLO views the pectoral muscle
//! triangle at the top of the chest wall. Background is near 0 with a little
//! noise. Anatomy is seeded per patient and side, so a prior study shows the
//! same breasts with new noise.
//! Not here: lesions, calcifications, tomosynthesis.

use dicom_core::VR;
use dicom_dictionary_std::{tags, uids};
use rand::Rng;

use crate::encode::{code_item, ds, put_seq, put_str};
use crate::noise::{Fbm, gaussish, smoothstep};
use crate::raster::Lattice;
use crate::study::{Charset, PixelModule, Study, rng_for, rows_from, scaled};
use crate::{Generated, Options, Patient};

/// Detector size at scale 1: columns × rows, portrait.
const COLUMNS: u32 = 3328;
const ROWS: u32 = 4096;
/// Imager pixel spacing at scale 1, mm.
const SPACING_MM: f64 = 0.07;
const BITS_STORED: u16 = 14;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Right,
    Left,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Projection {
    CranioCaudal,
    MedioLateralOblique,
}

/// The four screening views in the usual acquisition order.
const VIEWS: [(Side, Projection); 4] = [
    (Side::Right, Projection::CranioCaudal),
    (Side::Left, Projection::CranioCaudal),
    (Side::Right, Projection::MedioLateralOblique),
    (Side::Left, Projection::MedioLateralOblique),
];

impl Side {
    fn letter(self) -> &'static str {
        match self {
            Side::Right => "R",
            Side::Left => "L",
        }
    }
}

impl Projection {
    fn view_position(self) -> &'static str {
        match self {
            Projection::CranioCaudal => "CC",
            Projection::MedioLateralOblique => "MLO",
        }
    }

    /// View Code Sequence item (PS3.16 CID 4014 "View for Mammography"),
    /// with its Type 2 View Modifier Code Sequence left empty.
    fn code(self) -> dicom_object::InMemDicomObject {
        let mut item = match self {
            Projection::CranioCaudal => code_item("399162004", "SCT", "cranio-caudal"),
            Projection::MedioLateralOblique => {
                code_item("399368009", "SCT", "medio-lateral oblique")
            }
        };
        put_seq(&mut item, tags::VIEW_MODIFIER_CODE_SEQUENCE, Vec::new());
        item
    }
}

/// Patient Orientation (row direction \ column direction) for a view.
fn patient_orientation(side: Side, projection: Projection) -> &'static str {
    match (side, projection) {
        (Side::Right, Projection::CranioCaudal) => "P\\L",
        (Side::Left, Projection::CranioCaudal) => "A\\R",
        (Side::Right, Projection::MedioLateralOblique) => "P\\FL",
        (Side::Left, Projection::MedioLateralOblique) => "A\\FR",
    }
}

/// One breast's shape and texture.
struct Breast {
    size: f32,
    density: f32,
    glands: Fbm,
    trabeculae: Fbm,
}

impl Breast {
    fn of(opts: &Options, patient: &Patient, side: Side) -> Self {
        let mut shared = rng_for(opts.seed, &["breast", &patient.id]);
        let size = shared.random_range(0.88..1.05);
        let density = shared.random_range(0.5..1.0);
        let mut rng = rng_for(opts.seed, &["breast", &patient.id, side.letter()]);
        Breast {
            size: size * rng.random_range(0.97..1.03),
            density,
            glands: Fbm::new(&mut rng, 5, 4),
            trabeculae: Fbm::new(&mut rng, 48, 2),
        }
    }

    /// Attenuation at `d` (distance from the chest wall, fraction of the
    /// width) and `v` (fraction of the height); `aspect` is height / width.
    fn attenuation(&self, projection: Projection, d: f32, v: f32, aspect: f32) -> f32 {
        let mlo = projection == Projection::MedioLateralOblique;
        let (cy, rx, ry) = if mlo {
            // Taller above the nipple: the axillary tail runs up the chest wall.
            let ry = if v < 0.55 { 0.62 } else { 0.38 };
            (0.55, 0.70 * self.size, ry * self.size)
        } else {
            (0.5, 0.66 * self.size, 0.40 * self.size)
        };
        let ex = d / rx;
        let ey = (v - cy) / ry;
        let r = (ex * ex + ey * ey).sqrt();
        // Nipple: a small bump at the tip, partly outside the skin line.
        let nx = d - rx;
        let ny = (v - cy) * aspect;
        let nipple = 0.25 * smoothstep(0.022, 0.014, (nx * nx + ny * ny).sqrt());
        if r >= 1.0 {
            return nipple;
        }
        let inside = smoothstep(1.0, 0.99, r);
        let thickness = 0.55 + 0.45 * smoothstep(1.0, 0.75, r);
        let mut a = 0.28 * thickness;
        let g = self.glands.sample(d * 1.3, v);
        let weight = smoothstep(0.95, 0.35, r) * self.density;
        a += 0.35 * smoothstep(-0.1, 0.45, g) * weight * thickness;
        a += 0.06 * self.trabeculae.sample(d, v) * thickness;
        a += 0.12 * smoothstep(0.975, 0.99, r) * smoothstep(1.0, 0.993, r);
        if mlo {
            // Pectoral muscle: a triangle at the top of the chest wall with a
            // slightly convex edge.
            let ph = 0.55 * self.size;
            if v < ph {
                let t = v / ph;
                let edge = 0.33 * self.size * (1.0 - t) + 0.03 * (t * std::f32::consts::PI).sin();
                let muscle = smoothstep(0.004, -0.004, d - edge);
                a += (0.14 + 0.03 * g) * muscle;
            }
        }
        a * inside + nipple
    }
}

/// Four-view mammography (RCC, LCC, RMLO, LMLO), one series, For
/// Presentation, 3328×4096 at scale 1 (0.07 mm), 14 bits stored in 16,
/// MONOCHROME2. Calling it again for the same patient with an earlier date
/// gives a prior study of the same breasts.
pub fn mammography(opts: &Options, patient: &Patient, study_date: &str) -> Vec<Generated> {
    let mut study = Study::new(
        opts,
        "mammography",
        patient,
        study_date,
        "Скринингтік маммография / Маммография скрининговая",
        Charset::Utf8,
    );
    let series = study.series(1, "MG", "Screening mammography", "Aina MAMMO-24");
    let columns = scaled(COLUMNS, opts);
    let rows = scaled(ROWS, opts);
    let spacing = SPACING_MM * f64::from(COLUMNS) / f64::from(columns);
    let breasts = [
        Breast::of(opts, patient, Side::Right),
        Breast::of(opts, patient, Side::Left),
    ];
    let thickness: u32 = study.rng.random_range(38..62);
    let mut out = Vec::with_capacity(VIEWS.len());
    for (number, (side, projection)) in (1..).zip(VIEWS) {
        let pixels = PixelModule {
            rows,
            columns,
            frames: 1,
            bits_stored: BITS_STORED,
            photometric: "MONOCHROME2",
        };
        let mut inst = study.instance(
            &series,
            number,
            uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
            &pixels,
        );
        let kvp = 28 + study.rng.random_range(0..5u32);
        let force = study.rng.random_range(70..130u32);
        let o = &mut inst.obj;
        put_str(o, tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY");
        put_str(
            o,
            tags::PRESENTATION_INTENT_TYPE,
            VR::CS,
            "FOR PRESENTATION",
        );
        put_str(o, tags::BODY_PART_EXAMINED, VR::CS, "BREAST");
        put_str(o, tags::IMAGE_LATERALITY, VR::CS, side.letter());
        put_str(o, tags::VIEW_POSITION, VR::CS, projection.view_position());
        put_str(
            o,
            tags::PATIENT_ORIENTATION,
            VR::CS,
            patient_orientation(side, projection),
        );
        put_seq(o, tags::VIEW_CODE_SEQUENCE, vec![projection.code()]);
        put_seq(
            o,
            tags::ANATOMIC_REGION_SEQUENCE,
            vec![code_item("76752008", "SCT", "Breast")],
        );
        put_str(o, tags::BREAST_IMPLANT_PRESENT, VR::CS, "NO");
        put_str(o, tags::PARTIAL_VIEW, VR::CS, "NO");
        put_str(o, tags::POSITIONER_TYPE, VR::CS, "MAMMOGRAPHIC");
        put_str(o, tags::ORGAN_EXPOSED, VR::CS, "BREAST");
        put_str(o, tags::PIXEL_INTENSITY_RELATIONSHIP, VR::CS, "LOG");
        o.put(dicom_core::DataElement::new(
            tags::PIXEL_INTENSITY_RELATIONSHIP_SIGN,
            VR::SS,
            dicom_core::PrimitiveValue::from(1_i16),
        ));
        put_str(o, tags::PRESENTATION_LUT_SHAPE, VR::CS, "IDENTITY");
        put_str(o, tags::DETECTOR_TYPE, VR::CS, "DIRECT");
        put_str(o, tags::KVP, VR::DS, &kvp.to_string());
        put_str(o, tags::BODY_PART_THICKNESS, VR::DS, &thickness.to_string());
        put_str(o, tags::COMPRESSION_FORCE, VR::DS, &force.to_string());
        put_str(o, tags::ANODE_TARGET_MATERIAL, VR::CS, "TUNGSTEN");
        put_str(o, tags::FILTER_MATERIAL, VR::CS, "RHODIUM");
        put_str(o, tags::DISTANCE_SOURCE_TO_DETECTOR, VR::DS, "660");
        put_str(
            o,
            tags::ESTIMATED_RADIOGRAPHIC_MAGNIFICATION_FACTOR,
            VR::DS,
            "1",
        );
        put_str(
            o,
            tags::ORGAN_DOSE,
            VR::DS,
            &ds(f64::from(thickness) * 0.025),
        );
        put_seq(o, tags::ACQUISITION_CONTEXT_SEQUENCE, Vec::new());
        inst.put_spacing(spacing);
        let max = pixels.max_value();
        inst.put_grey_scale(max * 0.42, max * 0.55, true);

        let noise_seed = study.rng.random::<u64>();
        let breast = match side {
            Side::Right => &breasts[0],
            Side::Left => &breasts[1],
        };
        let aspect = rows as f32 / columns as f32;
        let map = Lattice::new(columns, rows, |u, v| {
            // Chest wall on the image's right for R views, left for L views.
            let d = match side {
                Side::Right => 1.0 - u,
                Side::Left => u,
            };
            breast.attenuation(projection, d, v, aspect)
        });
        let paint = rows_from(map, columns, move |x, y, a| {
            let n = gaussish(noise_seed, x, y);
            let p = if a <= 0.0 {
                40.0 + 6.0 * n
            } else {
                let p = (0.06 + 0.8 * a) * max;
                p + (4.0 + 0.35 * p.sqrt()) * n
            };
            p.clamp(0.0, max) as u16
        });
        let file_name = format!(
            "MG-{}-{}-{}{}.dcm",
            patient.file_stem(),
            study_date,
            side.letter(),
            projection.view_position()
        );
        out.push(inst.finish(file_name, &pixels, paint));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tissue_at_chest_wall_background_far_away() {
        let opts = Options {
            seed: 3,
            scale: 0.1,
        };
        let b = Breast::of(&opts, &crate::patients()[3], Side::Left);
        for p in [Projection::CranioCaudal, Projection::MedioLateralOblique] {
            assert!(b.attenuation(p, 0.05, 0.55, 1.23) > 0.1);
            assert_eq!(b.attenuation(p, 0.95, 0.02, 1.23), 0.0);
        }
        // The pectoral muscle makes the top of the chest wall denser in MLO.
        let muscle = b.attenuation(Projection::MedioLateralOblique, 0.03, 0.08, 1.23);
        let beside = b.attenuation(Projection::MedioLateralOblique, 0.4, 0.08, 1.23);
        assert!(muscle > beside + 0.05, "muscle {muscle} beside {beside}");
    }
}
