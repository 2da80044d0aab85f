//! Fictitious patients with Latin, Russian and Kazakh names, and the
//! transliteration used to build ASCII file names from them.
//! Not here: anything per study.

/// A fictitious patient. Every string is in DICOM form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patient {
    /// Patient's Name (PN): `Family^Given^Middle`, e.g. `Сейітқалиева^Әйгерім`.
    pub name: String,
    /// Patient ID (LO), e.g. `AINA-0005`; never a real national ID (IIN).
    pub id: String,
    /// Patient's Birth Date (DA), `YYYYMMDD`.
    pub birth_date: String,
    /// Patient's Sex (CS): `M`, `F` or `O`.
    pub sex: String,
}

impl Patient {
    fn new(name: &str, id: &str, birth_date: &str, sex: &str) -> Self {
        Patient {
            name: name.to_owned(),
            id: id.to_owned(),
            birth_date: birth_date.to_owned(),
            sex: sex.to_owned(),
        }
    }

    /// The family name transliterated to ASCII (Russian-style, Kazakh letters
    /// folded to their nearest Russian reading), for file names:
    /// `Садықова^Жанар` → `Sadykova`.
    pub fn file_stem(&self) -> String {
        let family = self.name.split('^').next().unwrap_or_default();
        let stem = transliterate(family);
        if stem.is_empty() {
            "Anonymous".to_owned()
        } else {
            stem
        }
    }
}

/// The built-in cast, all fictitious: one Latin name, Russian names (with
/// patronymics), Kazakh names (with letters outside Russian Cyrillic and
/// outside ISO 8859-5: ә, ғ, қ, ң, ө, ұ, ү, һ, і). [`crate::demo_set`] uses
/// them in this order.
pub fn patients() -> Vec<Patient> {
    vec![
        Patient::new("Smith^John", "AINA-0001", "19680412", "M"),
        Patient::new("Иванов^Сергей^Петрович", "AINA-0002", "19751103", "M"),
        Patient::new("Нұрланұлы^Ерлан", "AINA-0003", "19900227", "M"),
        Patient::new("Әбілқасымова^Гүлнұр", "AINA-0004", "19720815", "F"),
        Patient::new("Садықова^Жанар^Серікқызы", "AINA-0005", "19660130", "F"),
        Patient::new("Петрова^Анна^Викторовна", "AINA-0006", "19830719", "F"),
        Patient::new("Сейітқалиева^Әйгерім", "AINA-0007", "19981005", "F"),
    ]
}

/// ASCII transliteration of Latin, Russian and Kazakh letters; anything else
/// is dropped. Case follows the source letter.
pub(crate) fn transliterate(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            continue;
        }
        let lower: String = c.to_lowercase().collect();
        let latin = match lower.as_str() {
            "а" | "ә" => "a",
            "б" => "b",
            "в" => "v",
            "г" | "ғ" => "g",
            "д" => "d",
            "е" => "e",
            "ё" => "yo",
            "ж" => "zh",
            "з" => "z",
            "и" | "і" => "i",
            "й" => "y",
            "к" | "қ" => "k",
            "л" => "l",
            "м" => "m",
            "н" | "ң" => "n",
            "о" | "ө" => "o",
            "п" => "p",
            "р" => "r",
            "с" => "s",
            "т" => "t",
            "у" | "ұ" | "ү" => "u",
            "ф" => "f",
            "х" | "һ" => "kh",
            "ц" => "ts",
            "ч" => "ch",
            "ш" => "sh",
            "щ" => "shch",
            "ы" => "y",
            "э" => "e",
            "ю" => "yu",
            "я" => "ya",
            _ => "",
        };
        if c.is_uppercase() {
            let mut chars = latin.chars();
            if let Some(first) = chars.next() {
                out.push(first.to_ascii_uppercase());
                out.extend(chars);
            }
        } else {
            out.push_str(latin);
        }
    }
    out
}

/// Patient's Age (AS) on `study_date`, e.g. `056Y`; empty if either date is
/// not `YYYYMMDD`.
pub(crate) fn age_at(birth_date: &str, study_date: &str) -> String {
    let parse = |d: &str| -> Option<(u32, u32)> {
        if d.len() != 8 {
            return None;
        }
        Some((d.get(..4)?.parse().ok()?, d.get(4..)?.parse().ok()?))
    };
    match (parse(birth_date), parse(study_date)) {
        (Some((by, bmd)), Some((sy, smd))) if sy >= by => {
            let years = sy - by - u32::from(smd < bmd);
            format!("{:03}Y", years.min(999))
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transliterates_kazakh_and_russian_family_names() {
        assert_eq!(transliterate("Садықова"), "Sadykova");
        assert_eq!(transliterate("Иванов"), "Ivanov");
        assert_eq!(transliterate("Нұрланұлы"), "Nurlanuly");
        assert_eq!(transliterate("Әбілқасымова"), "Abilkasymova");
        assert_eq!(transliterate("Сейітқалиева"), "Seyitkalieva");
        assert_eq!(transliterate("Smith"), "Smith");
    }

    #[test]
    fn age_counts_birthdays() {
        assert_eq!(age_at("19680412", "20250411"), "056Y");
        assert_eq!(age_at("19680412", "20250412"), "057Y");
        assert_eq!(age_at("", "20250412"), "");
    }

    #[test]
    fn cast_has_unique_ids() {
        let ps = patients();
        let mut ids: Vec<_> = ps.iter().map(|p| &p.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), ps.len());
    }
}
