//! Study, series and instance identity, and the attributes every generated
//! instance carries (Patient, General Study, General Series, General
//! Equipment, General Image, SOP Common; PS3.3 C.7), seeded per study.
//! Not here: pixels and modality-specific modules (`chest`, `mammography`).

use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::encode::{ds, part10, put_str, put_us};
use crate::noise::mix64;
use crate::patient::age_at;
use crate::raster::Lattice;
use crate::{Generated, Options, Patient};

/// Manufacturer (0008,0070) of everything we generate.
pub(crate) const MANUFACTURER: &str = "Aina Sample Generator";

/// Character sets we write: UTF-8 by default, ISO 8859-5 for the legacy case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charset {
    /// `ISO_IR 192`: UTF-8, any name.
    Utf8,
    /// `ISO_IR 144`: ISO 8859-5, Latin and Russian Cyrillic only.
    Cyrillic,
}

impl Charset {
    pub(crate) fn defined_term(self) -> &'static str {
        match self {
            Charset::Utf8 => "ISO_IR 192",
            Charset::Cyrillic => "ISO_IR 144",
        }
    }
}

/// A ChaCha RNG seeded from the user's seed and a path of labels, so each
/// (seed, what, whom, when) gets its own reproducible stream.
pub(crate) fn rng_for(seed: u64, labels: &[&str]) -> ChaCha8Rng {
    // FNV-1a over the labels, separated so ("ab","c") differs from ("a","bc").
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for label in labels {
        for b in label.bytes().chain(std::iter::once(0xFF)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    ChaCha8Rng::seed_from_u64(mix64(seed ^ mix64(h)))
}

/// A `2.25.` UID (PS3.5 B.2): the decimal form of a 128-bit number.
pub(crate) fn uid(rng: &mut impl Rng) -> String {
    format!("2.25.{}", rng.random::<u128>())
}

/// The image size at `scale`: at least 16 pixels a side.
pub(crate) fn scaled(base: u32, opts: &Options) -> u32 {
    let scale = if opts.scale.is_finite() && opts.scale > 0.0 {
        opts.scale.min(4.0)
    } else {
        1.0
    };
    ((base as f32 * scale).round() as u32).max(16)
}

/// One study being generated: its identity and study-level attributes.
pub(crate) struct Study<'p> {
    pub(crate) patient: &'p Patient,
    pub(crate) date: String,
    time: (u32, u32, u32),
    pub(crate) study_instance_uid: String,
    accession_number: String,
    study_id: String,
    description: String,
    referring_physician: String,
    institution: String,
    pub(crate) charset: Charset,
    /// The study's random stream: UIDs, times, noise seeds.
    pub(crate) rng: ChaCha8Rng,
}

/// One series of a study.
pub(crate) struct Series {
    pub(crate) series_instance_uid: String,
    number: u32,
    pub(crate) modality: &'static str,
    description: String,
    station: &'static str,
    model: &'static str,
}

/// Geometry and grey-scale description of one native, 16-bit allocated image.
pub(crate) struct PixelModule {
    pub(crate) rows: u32,
    pub(crate) columns: u32,
    pub(crate) frames: u32,
    pub(crate) bits_stored: u16,
    pub(crate) photometric: &'static str,
}

impl PixelModule {
    pub(crate) fn row_bytes(&self) -> usize {
        self.columns as usize * 2
    }

    pub(crate) fn pixel_bytes(&self) -> u64 {
        u64::from(self.rows) * u64::from(self.columns) * u64::from(self.frames) * 2
    }

    /// Largest stored value.
    pub(crate) fn max_value(&self) -> f32 {
        ((1u32 << self.bits_stored) - 1) as f32
    }

    /// Image Pixel module (PS3.3 C.7.6.3) and Number of Frames if multi-frame.
    fn put(&self, obj: &mut InMemDicomObject) {
        put_us(obj, tags::SAMPLES_PER_PIXEL, 1);
        put_str(
            obj,
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            self.photometric,
        );
        put_us(obj, tags::ROWS, self.rows as u16);
        put_us(obj, tags::COLUMNS, self.columns as u16);
        put_us(obj, tags::BITS_ALLOCATED, 16);
        put_us(obj, tags::BITS_STORED, self.bits_stored);
        put_us(obj, tags::HIGH_BIT, self.bits_stored - 1);
        put_us(obj, tags::PIXEL_REPRESENTATION, 0);
        if self.frames > 1 {
            put_str(
                obj,
                tags::NUMBER_OF_FRAMES,
                VR::IS,
                &self.frames.to_string(),
            );
        }
    }
}

const INSTITUTIONS_UTF8: &[&str] = &[
    "Қалалық емхана №2",
    "Городская поликлиника №4",
    "Aina Demo Clinic",
];
const INSTITUTIONS_CYRILLIC: &[&str] = &[
    "Городская поликлиника №4",
    "Областной диагностический центр",
];
const REFERRING_UTF8: &[&str] = &[
    "Ахметова^Динара^Маратовна",
    "Жұмабаев^Нұржан",
    "Ким^Виктор^Николаевич",
    "Brown^Alice",
];
const REFERRING_CYRILLIC: &[&str] = &["Ким^Виктор^Николаевич", "Смирнова^Ольга^Игоревна"];

impl<'p> Study<'p> {
    /// Start a study of `kind` for `patient` on `date` (DA, `YYYYMMDD`).
    pub(crate) fn new(
        opts: &Options,
        kind: &str,
        patient: &'p Patient,
        date: &str,
        description: &str,
        charset: Charset,
    ) -> Self {
        let mut rng = rng_for(opts.seed, &["study", kind, &patient.id, date]);
        let (institutions, referring) = match charset {
            Charset::Utf8 => (INSTITUTIONS_UTF8, REFERRING_UTF8),
            Charset::Cyrillic => (INSTITUTIONS_CYRILLIC, REFERRING_CYRILLIC),
        };
        let study_instance_uid = uid(&mut rng);
        let time = (
            rng.random_range(8..17),
            rng.random_range(0..60),
            rng.random_range(0..60),
        );
        Study {
            patient,
            date: date.to_owned(),
            time,
            study_instance_uid,
            accession_number: format!("A{:08}", rng.random_range(0..100_000_000u32)),
            study_id: rng.random_range(1000..100_000u32).to_string(),
            description: description.to_owned(),
            referring_physician: referring[rng.random_range(0..referring.len())].to_owned(),
            institution: institutions[rng.random_range(0..institutions.len())].to_owned(),
            charset,
            rng,
        }
    }

    /// A new series in this study.
    pub(crate) fn series(
        &mut self,
        number: u32,
        modality: &'static str,
        description: &str,
        model: &'static str,
    ) -> Series {
        let station = match modality {
            "MG" => "AINA-MG1",
            "CR" => "AINA-FLG1",
            _ => "AINA-DX1",
        };
        Series {
            series_instance_uid: uid(&mut self.rng),
            number,
            modality,
            description: description.to_owned(),
            station,
            model,
        }
    }

    /// `HHMMSS` of the study start plus `minutes`.
    fn time_plus(&self, minutes: u32) -> String {
        let (h, m, s) = self.time;
        let total = h * 60 + m + minutes;
        format!("{:02}{:02}{:02}", (total / 60).min(23), total % 60, s)
    }

    /// A new instance of `sop_class_uid` in `series`, with every attribute
    /// common to our IODs filled in; the caller adds the modality modules.
    pub(crate) fn instance(
        &mut self,
        series: &Series,
        instance_number: u32,
        sop_class_uid: &str,
        pixels: &PixelModule,
    ) -> Instance {
        let sop_instance_uid = uid(&mut self.rng);
        let mut obj = InMemDicomObject::new_empty();
        let o = &mut obj;
        let p = self.patient;
        // SOP Common
        put_str(
            o,
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            self.charset.defined_term(),
        );
        put_str(o, tags::SOP_CLASS_UID, VR::UI, sop_class_uid);
        put_str(o, tags::SOP_INSTANCE_UID, VR::UI, &sop_instance_uid);
        put_str(o, tags::INSTANCE_CREATION_DATE, VR::DA, &self.date);
        put_str(o, tags::INSTANCE_CREATION_TIME, VR::TM, &self.time_plus(5));
        // General Study
        put_str(o, tags::STUDY_DATE, VR::DA, &self.date);
        put_str(o, tags::STUDY_TIME, VR::TM, &self.time_plus(0));
        put_str(o, tags::ACCESSION_NUMBER, VR::SH, &self.accession_number);
        put_str(
            o,
            tags::REFERRING_PHYSICIAN_NAME,
            VR::PN,
            &self.referring_physician,
        );
        put_str(o, tags::STUDY_ID, VR::SH, &self.study_id);
        put_str(o, tags::STUDY_DESCRIPTION, VR::LO, &self.description);
        put_str(
            o,
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            &self.study_instance_uid,
        );
        // Patient, Patient Study
        put_str(o, tags::PATIENT_NAME, VR::PN, &p.name);
        put_str(o, tags::PATIENT_ID, VR::LO, &p.id);
        put_str(o, tags::PATIENT_BIRTH_DATE, VR::DA, &p.birth_date);
        put_str(o, tags::PATIENT_SEX, VR::CS, &p.sex);
        put_str(
            o,
            tags::PATIENT_AGE,
            VR::AS,
            &age_at(&p.birth_date, &self.date),
        );
        // General Series
        put_str(o, tags::MODALITY, VR::CS, series.modality);
        put_str(
            o,
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &series.series_instance_uid,
        );
        put_str(o, tags::SERIES_NUMBER, VR::IS, &series.number.to_string());
        put_str(o, tags::SERIES_DATE, VR::DA, &self.date);
        put_str(o, tags::SERIES_TIME, VR::TM, &self.time_plus(1));
        put_str(o, tags::SERIES_DESCRIPTION, VR::LO, &series.description);
        // General Equipment
        put_str(o, tags::MANUFACTURER, VR::LO, MANUFACTURER);
        put_str(o, tags::INSTITUTION_NAME, VR::LO, &self.institution);
        put_str(o, tags::STATION_NAME, VR::SH, series.station);
        put_str(o, tags::MANUFACTURER_MODEL_NAME, VR::LO, series.model);
        put_str(o, tags::DEVICE_SERIAL_NUMBER, VR::LO, "SN-0001");
        put_str(
            o,
            tags::SOFTWARE_VERSIONS,
            VR::LO,
            env!("CARGO_PKG_VERSION"),
        );
        // General Image, Image Pixel
        put_str(
            o,
            tags::INSTANCE_NUMBER,
            VR::IS,
            &instance_number.to_string(),
        );
        put_str(o, tags::CONTENT_DATE, VR::DA, &self.date);
        put_str(
            o,
            tags::CONTENT_TIME,
            VR::TM,
            &self.time_plus(1 + instance_number),
        );
        put_str(o, tags::ACQUISITION_DATE, VR::DA, &self.date);
        put_str(
            o,
            tags::ACQUISITION_TIME,
            VR::TM,
            &self.time_plus(1 + instance_number),
        );
        put_str(o, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
        put_str(o, tags::BURNED_IN_ANNOTATION, VR::CS, "NO");
        pixels.put(o);
        Instance {
            obj,
            sop_instance_uid,
            study_instance_uid: self.study_instance_uid.clone(),
            series_instance_uid: series.series_instance_uid.clone(),
            modality: series.modality,
        }
    }
}

/// An instance under construction.
pub(crate) struct Instance {
    pub(crate) obj: InMemDicomObject,
    sop_instance_uid: String,
    study_instance_uid: String,
    series_instance_uid: String,
    modality: &'static str,
}

impl Instance {
    /// Spacing in mm of both Imager Pixel Spacing and Pixel Spacing (no
    /// magnification correction: the detector plane is the measurement plane).
    pub(crate) fn put_spacing(&mut self, mm: f64) {
        let spacing = format!("{}\\{}", ds(mm), ds(mm));
        put_str(&mut self.obj, tags::IMAGER_PIXEL_SPACING, VR::DS, &spacing);
        put_str(&mut self.obj, tags::PIXEL_SPACING, VR::DS, &spacing);
    }

    /// Modality LUT identity (stored values are the output) and one window.
    pub(crate) fn put_grey_scale(&mut self, center: f32, width: f32, rescale_type: bool) {
        let o = &mut self.obj;
        put_str(o, tags::RESCALE_INTERCEPT, VR::DS, "0");
        put_str(o, tags::RESCALE_SLOPE, VR::DS, "1");
        if rescale_type {
            put_str(o, tags::RESCALE_TYPE, VR::LO, "US");
        }
        put_str(
            o,
            tags::WINDOW_CENTER,
            VR::DS,
            &ds(f64::from(center.round())),
        );
        put_str(o, tags::WINDOW_WIDTH, VR::DS, &ds(f64::from(width.round())));
    }

    /// Encode as Part 10 with pixels painted row by row.
    pub(crate) fn finish<F>(self, file_name: String, pixels: &PixelModule, paint: F) -> Generated
    where
        F: Fn(usize, &mut [u8]) + Sync,
    {
        let bytes = part10(self.obj, pixels.pixel_bytes(), pixels.row_bytes(), paint);
        Generated {
            file_name,
            bytes,
            study_instance_uid: self.study_instance_uid,
            series_instance_uid: self.series_instance_uid,
            sop_instance_uid: self.sop_instance_uid,
            modality: self.modality.to_owned(),
        }
    }
}

/// A row painter for [`Instance::finish`] from an attenuation map:
/// `pixel(x, y, attenuation)` gives the stored value.
pub(crate) fn rows_from<P>(map: Lattice, columns: u32, pixel: P) -> impl Fn(usize, &mut [u8]) + Sync
where
    P: Fn(u32, u32, f32) -> u16 + Sync,
{
    move |y, row: &mut [u8]| {
        map.row(y, columns as usize, |x, a| {
            let value = pixel(x as u32, y as u32, a);
            row[2 * x..2 * x + 2].copy_from_slice(&value.to_le_bytes());
        });
    }
}
