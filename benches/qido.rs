//! QIDO-RS at archive scale on SQLite and PostgreSQL, and `migrate-index` at
//! that scale. Results are in `docs/benchmarks.md` ("Scale-out").
//!
//! The index is what is measured, so the archive is built as index records
//! (no DICOM files, no objects): `--studies N` (default 100,000) studies of 10
//! instances (2 series × 5), loaded into SQLite at `DIR/index.db` through
//! `Index::insert_instances` in batches of 1,000 (a file already holding the
//! same archive is reused), then copied into PostgreSQL with
//! `index::migrate::migrate` (what `aina migrate-index` does) and ANALYZEd.
//! Each backend is then served by an in-process server (`AppState::open`,
//! `Server::start` on 127.0.0.1:0) and queried over HTTP with the queries a
//! study list, an EHR and a viewer send, parameters drawn at random from the
//! loaded data: 20 warm-up and 300 timed requests per query shape with one
//! client, then a mix of all shapes from 8 concurrent clients. Every answer must
//! be 200 with exactly the number of results the loaded data says (computed in
//! the client from the stored columns), or the run fails.
//!
//! Query plans, for the first 10 requests of each shape: SQLite's from
//! `EXPLAIN QUERY PLAN` of the SQL the server ran (captured from sqlx's
//! statement log) with its bound values, checked by running it; PostgreSQL's
//! from `auto_explain` (`ALTER DATABASE … SET session_preload_libraries`,
//! analyze on, reset afterwards) in the server's log (`--pg-log`). Ten, because
//! sqlx prepares a statement once per connection and PostgreSQL may switch to
//! a generic plan after five executions. The 10th plan is printed, with every
//! access path seen and how often. Needs a superuser on PostgreSQL.
//!
//! Not here: DICOM parsing, object storage, rendering (see `benches/load.rs`).
//!
//! ```sh
//! # a throwaway PostgreSQL database on the server AINA_TEST_POSTGRES_URL names
//! AINA_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5433/postgres \
//!     cargo bench --bench qido -- --studies 2000 --dir target/qido-2000
//! # or a database kept between runs (empty, or holding the same archive)
//! createdb -h 127.0.0.1 -p 5433 -U postgres aina_qido
//! cargo bench --bench qido -- --dir target/qido \
//!     --postgres-url postgres://postgres@127.0.0.1:5433/aina_qido --json target/qido.json
//! ```
//!
//! Other flags: `--backends sqlite|postgres`, `--iters`, `--warmup`,
//! `--clients`, `--mix-requests` (per client), `--seed`, `--pg-log` (the
//! PostgreSQL server log auto_explain writes to), `--no-plans`.

#[path = "common/dates.rs"]
mod dates;
use dates::{da, days_from_civil};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aina::app::{AppState, Server};
use aina::config::Settings;
use aina::index::migrate::migrate;
use aina::index::sqlite::SqliteIndex;
use aina::index::{ConflictPolicy, Index, InsertOutcome, InstanceRecord, SeriesAttrs, StudyAttrs};
use aina::ingest::BULK_BASE_MARKER;
use aina::store::Store;
use aina::testing::TestDatabase;
use aina_dicomweb::fold::{fold, person_name_words};
use aina_dicomweb::qido::wildcard_to_like;
use anyhow::{Context, bail, ensure};
use clap::Parser;
use dicom_core::Tag;
use dicom_dictionary_std::{tags, uids};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, WARNING};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Connection, Executor, PgConnection, Row};

/// Instances per `insert_instances` call (one transaction).
const BATCH_INSTANCES: usize = 1000;
/// Series per study and instances per series.
const SERIES_PER_STUDY: usize = 2;
const INSTANCES_PER_SERIES: usize = 5;
const INSTANCES_PER_STUDY: usize = SERIES_PER_STUDY * INSTANCES_PER_SERIES;
/// The server's page size when a query gives no `limit` (`http::qido::MAX_LIMIT`).
const SERVER_MAX_LIMIT: usize = 1000;
/// Runs of each shape while auto_explain logs; the last one's plan is reported.
const PLAN_RUNS: usize = 10;
/// What every QIDO search statement starts with (`index::query::build_search`).
const SEARCH_SQL_START: &str = "SELECT st.study_instance_uid";

#[derive(Parser, Debug)]
#[command(about = "QIDO-RS at archive scale on SQLite and PostgreSQL (see the module docs)")]
struct Args {
    /// Studies in the archive (10 instances each).
    #[arg(long, default_value_t = 100_000)]
    studies: usize,
    /// Directory of the SQLite index (`DIR/index.db`, reused when it holds the
    /// same archive) and of the servers' data directories.
    #[arg(long, default_value = "target/qido-bench")]
    dir: PathBuf,
    /// PostgreSQL database to copy the archive into and keep (empty, or holding
    /// the same archive). Default: a throwaway database on the server
    /// AINA_TEST_POSTGRES_URL names, dropped at the end.
    #[arg(long)]
    postgres_url: Option<String>,
    /// Backends to query.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sqlite,postgres"
    )]
    backends: Vec<Backend>,
    /// Timed requests per query shape, one client.
    #[arg(long, default_value_t = 300)]
    iters: usize,
    /// Untimed requests per query shape before the timed ones.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Concurrent clients of the mixed run.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Requests per client in the mixed run (shapes in rotation).
    #[arg(long, default_value_t = 150)]
    mix_requests: usize,
    /// Seed of the archive and of the query parameters.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// The PostgreSQL server's log, where auto_explain writes plans.
    #[arg(long, default_value = "/tmp/pg/log")]
    pg_log: PathBuf,
    /// Do not capture query plans.
    #[arg(long)]
    no_plans: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

// ---------------------------------------------------------------------------
// The generated archive

/// A family name pool: the masculine form (feminine derived), most common first.
const RUSSIAN_FAMILIES: &[&str] = &[
    "Иванов",
    "Смирнов",
    "Кузнецов",
    "Попов",
    "Васильев",
    "Петров",
    "Соколов",
    "Михайлов",
    "Новиков",
    "Фёдоров",
    "Морозов",
    "Волков",
    "Алексеев",
    "Лебедев",
    "Семёнов",
    "Егоров",
    "Павлов",
    "Козлов",
    "Степанов",
    "Николаев",
    "Орлов",
    "Андреев",
    "Макаров",
    "Никитин",
    "Захаров",
    "Зайцев",
    "Соловьёв",
    "Борисов",
    "Яковлев",
    "Григорьев",
    "Романов",
    "Воробьёв",
    "Сергеев",
    "Кузьмин",
    "Фролов",
    "Александров",
    "Дмитриев",
    "Королёв",
    "Гусев",
    "Киселёв",
    "Ильин",
    "Максимов",
    "Поляков",
    "Сорокин",
    "Виноградов",
    "Ковалёв",
    "Белов",
    "Медведев",
    "Антонов",
    "Тарасов",
    "Жуков",
    "Баранов",
    "Филиппов",
    "Комаров",
    "Давыдов",
    "Беляев",
    "Герасимов",
    "Богданов",
    "Осипов",
    "Сидоров",
    "Матвеев",
    "Титов",
    "Марков",
    "Миронов",
    "Крылов",
    "Куликов",
    "Карпов",
    "Власов",
    "Мельников",
    "Денисов",
    "Покровский",
    "Никольский",
    "Вишневский",
    "Ткаченко",
    "Шевченко",
    "Бондаренко",
    "Коваленко",
];
const KAZAKH_FAMILIES: &[&str] = &[
    "Ахметов",
    "Омаров",
    "Әбілқасымов",
    "Сулейменов",
    "Искаков",
    "Жұмабаев",
    "Қасымов",
    "Нұрланов",
    "Байжанов",
    "Серікбаев",
    "Тоқтаров",
    "Оспанов",
    "Мұхамеджанов",
    "Садықов",
    "Ибраев",
    "Ержанов",
    "Бекмұхамбетов",
    "Рахимов",
    "Қалиев",
    "Нұрғалиев",
    "Әбенов",
    "Төлеуов",
    "Есенов",
    "Смағұлов",
    "Кенжебаев",
    "Жақсылықов",
    "Өтегенов",
    "Ғабитов",
    "Үсенов",
    "Сейітқалиев",
    "Тұрсынов",
    "Мұқашев",
    "Бейсенов",
    "Тілеубердин",
    "Шайхиев",
    "Құрманов",
    "Әлиев",
    "Дүйсенов",
    "Жанұзақов",
    "Исабеков",
    "Нұрланұлы",
    "Серікұлы",
    "Ерланұлы",
    "Болатұлы",
    "Қайратұлы",
    "Асқарұлы",
    "Маратұлы",
    "Дәуренұлы",
];
const LATIN_FAMILIES: &[&str] = &[
    "Akhmetov",
    "Iskakov",
    "Nurlanov",
    "Suleimenov",
    "Omarov",
    "Ivanov",
    "Kim",
    "Smith",
    "Petrov",
    "Zhumabayev",
    "Li",
    "Johnson",
    "Tsoi",
    "Müller",
    "Kuznetsov",
    "Brown",
    "Garcia",
    "Schmidt",
    "Wang",
    "Nguyen",
    "Rossi",
    "Kowalski",
    "Novák",
    "Yılmaz",
    "O'Brien",
];
const RUSSIAN_GIVEN: [&[&str]; 2] = [
    &[
        "Александр",
        "Сергей",
        "Дмитрий",
        "Андрей",
        "Алексей",
        "Максим",
        "Евгений",
        "Иван",
        "Михаил",
        "Николай",
        "Владимир",
        "Павел",
        "Артём",
        "Юрий",
        "Олег",
        "Виктор",
        "Игорь",
        "Роман",
        "Денис",
        "Константин",
    ],
    &[
        "Анна",
        "Елена",
        "Ольга",
        "Наталья",
        "Ирина",
        "Татьяна",
        "Светлана",
        "Екатерина",
        "Мария",
        "Юлия",
        "Людмила",
        "Галина",
        "Марина",
        "Анастасия",
        "Валентина",
        "Надежда",
        "Оксана",
        "Вера",
        "Ксения",
        "Дарья",
    ],
];
const KAZAKH_GIVEN: [&[&str]; 2] = [
    &[
        "Ерлан",
        "Асқар",
        "Дәурен",
        "Нұрлан",
        "Серік",
        "Бауыржан",
        "Ержан",
        "Мұрат",
        "Айдос",
        "Әлихан",
        "Арман",
        "Қайрат",
        "Талғат",
        "Ерболат",
        "Жандос",
        "Дархан",
        "Тимур",
        "Санжар",
        "Әділ",
        "Нұрсұлтан",
    ],
    &[
        "Гүлнұр",
        "Жанар",
        "Әйгерім",
        "Айгүл",
        "Мадина",
        "Динара",
        "Айжан",
        "Ботагөз",
        "Сәуле",
        "Гүлмира",
        "Жансая",
        "Аружан",
        "Ақмарал",
        "Назерке",
        "Салтанат",
        "Мөлдір",
        "Дана",
        "Інкәр",
        "Әсел",
        "Әсем",
    ],
];
const LATIN_GIVEN: [&[&str]; 2] = [
    &[
        "Yerlan",
        "Askar",
        "Daniyar",
        "Alexander",
        "Sergey",
        "Timur",
        "Arman",
        "John",
        "David",
        "Michael",
        "Nurlan",
        "Bauyrzhan",
    ],
    &[
        "Aigerim", "Dana", "Madina", "Anna", "Elena", "Olga", "Aliya", "Mary", "Sarah", "Emma",
        "Gulnur", "Zhanar",
    ],
];
/// Russian patronymics, masculine (the feminine replaces `вич` by `вна`).
const RUSSIAN_PATRONYMICS: &[&str] = &[
    "Александрович",
    "Сергеевич",
    "Владимирович",
    "Николаевич",
    "Иванович",
    "Петрович",
    "Михайлович",
    "Викторович",
    "Юрьевич",
    "Андреевич",
    "Дмитриевич",
    "Олегович",
];
/// Kazakh fathers' names for patronymics: `…ұлы`/`…қызы`, or the Russified
/// `…ович`/`…овна` in Cyrillic without Kazakh letters, as older documents have it.
const KAZAKH_FATHERS: &[(&str, &str)] = &[
    ("Серік", "Серик"),
    ("Нұрлан", "Нурлан"),
    ("Болат", "Болат"),
    ("Ерлан", "Ерлан"),
    ("Қайрат", "Кайрат"),
    ("Марат", "Марат"),
    ("Бауыржан", "Бауржан"),
    ("Талғат", "Талгат"),
    ("Асқар", "Аскар"),
    ("Жұмабек", "Жумабек"),
];

/// The modalities, their share of studies and what their studies look like.
struct ModalitySpec {
    modality: &'static str,
    weight: u32,
    /// (StudyDescription, BodyPartExamined)
    studies: &'static [(&'static str, &'static str)],
    series: [&'static str; SERIES_PER_STUDY],
    rows: i64,
    columns: i64,
    bits_allocated: i64,
    samples: i64,
    /// Stored (container) bytes per original byte.
    ratio: f64,
}

const MODALITIES: &[ModalitySpec] = &[
    ModalitySpec {
        modality: "CR",
        weight: 25,
        studies: &[
            ("Рентгенография органов грудной клетки", "CHEST"),
            ("Chest PA", "CHEST"),
            ("Кеуде қуысының рентгенографиясы", "CHEST"),
            ("Флюорография", "CHEST"),
            ("Рентгенография придаточных пазух носа", "SKULL"),
        ],
        series: ["PA", "LAT"],
        rows: 2500,
        columns: 2048,
        bits_allocated: 16,
        samples: 1,
        ratio: 0.55,
    },
    ModalitySpec {
        modality: "DX",
        weight: 20,
        studies: &[
            ("Рентгенография коленного сустава", "KNEE"),
            ("Knee AP/LAT", "KNEE"),
            ("Рентгенография поясничного отдела позвоночника", "LSPINE"),
            ("Hand 2 views", "HAND"),
            ("Рентгенография таза", "PELVIS"),
            ("Рентгенография ОГК в 2 проекциях", "CHEST"),
        ],
        series: ["AP", "LAT"],
        rows: 3000,
        columns: 2500,
        bits_allocated: 16,
        samples: 1,
        ratio: 0.5,
    },
    ModalitySpec {
        modality: "MG",
        weight: 15,
        studies: &[
            ("Маммография скрининговая", "BREAST"),
            ("Screening mammography bilateral", "BREAST"),
            ("Маммография диагностическая", "BREAST"),
            ("Сүт безі маммографиясы", "BREAST"),
        ],
        series: ["FOR PRESENTATION", "FOR PROCESSING"],
        rows: 4096,
        columns: 3328,
        bits_allocated: 16,
        samples: 1,
        ratio: 0.4,
    },
    ModalitySpec {
        modality: "CT",
        weight: 15,
        studies: &[
            ("КТ головного мозга без контраста", "HEAD"),
            ("CT Chest w/o contrast", "CHEST"),
            ("КТ органов брюшной полости с контрастом", "ABDOMEN"),
            ("КТ ОГК низкодозная", "CHEST"),
            ("Бас миының КТ", "HEAD"),
        ],
        series: ["Topogram", "Axial 5.0 mm"],
        rows: 512,
        columns: 512,
        bits_allocated: 16,
        samples: 1,
        ratio: 0.45,
    },
    ModalitySpec {
        modality: "MR",
        weight: 10,
        studies: &[
            ("МРТ головного мозга", "BRAIN"),
            ("MRI Knee", "KNEE"),
            ("МРТ пояснично-крестцового отдела", "LSPINE"),
            ("МРТ органов малого таза", "PELVIS"),
        ],
        series: ["T1 SAG", "T2 AX"],
        rows: 512,
        columns: 512,
        bits_allocated: 16,
        samples: 1,
        ratio: 0.5,
    },
    ModalitySpec {
        modality: "US",
        weight: 15,
        studies: &[
            ("УЗИ органов брюшной полости", "ABDOMEN"),
            ("УЗИ щитовидной железы", "THYROID"),
            ("US Breast", "BREAST"),
            ("УЗИ почек", "KIDNEY"),
            ("Құрсақ қуысының УДЗ", "ABDOMEN"),
        ],
        series: ["B-mode", "Doppler"],
        rows: 600,
        columns: 800,
        bits_allocated: 8,
        samples: 3,
        ratio: 0.6,
    },
];

/// The four standard screening views and one additional view, per MG series.
const MG_VIEWS: [(&str, &str); INSTANCES_PER_SERIES] = [
    ("R", "CC"),
    ("L", "CC"),
    ("R", "MLO"),
    ("L", "MLO"),
    ("R", "XCCL"),
];

/// Picks from a list weighted 1 / (rank + 1): a few common names, a long tail.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Self {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|i| {
                total += 1.0 / (i as f64 + 1.0);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn pick(&self, rng: &mut ChaCha8Rng) -> usize {
        let total = *self.cumulative.last().expect("non-empty pool");
        let x = rng.random::<f64>() * total;
        self.cumulative
            .partition_point(|&c| c < x)
            .min(self.cumulative.len() - 1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Culture {
    Kazakh,
    Russian,
    Latin,
}

/// The feminine of a family name, as Russian and Kazakh (Russified) names form it.
fn feminine(family: &str) -> String {
    for (m, f) in [("ский", "ская"), ("ұлы", "қызы")] {
        if let Some(stem) = family.strip_suffix(m) {
            return format!("{stem}{f}");
        }
    }
    if ["ов", "ев", "ёв", "ин", "ын"]
        .iter()
        .any(|s| family.ends_with(s))
    {
        return format!("{family}а");
    }
    if ["ov", "ev", "in"].iter().any(|s| family.ends_with(s)) {
        return format!("{family}a");
    }
    family.to_owned()
}

#[derive(Debug, Clone)]
struct Patient {
    name: String,
    id: String,
    birth_date: String,
    sex: &'static str,
}

struct Names {
    russian: Zipf,
    kazakh: Zipf,
    latin: Zipf,
}

impl Names {
    fn new() -> Self {
        Names {
            russian: Zipf::new(RUSSIAN_FAMILIES.len()),
            kazakh: Zipf::new(KAZAKH_FAMILIES.len()),
            latin: Zipf::new(LATIN_FAMILIES.len()),
        }
    }

    /// A PN value, Family^Given[^Middle].
    fn person(&self, rng: &mut ChaCha8Rng, female: bool) -> String {
        let culture = match rng.random_range(0..100) {
            0..50 => Culture::Kazakh,
            50..85 => Culture::Russian,
            _ => Culture::Latin,
        };
        let sex = usize::from(female);
        match culture {
            Culture::Russian => {
                let family = RUSSIAN_FAMILIES[self.russian.pick(rng)];
                let family = if female {
                    feminine(family)
                } else {
                    family.to_owned()
                };
                let given = pick(rng, RUSSIAN_GIVEN[sex]);
                let middle = pick(rng, RUSSIAN_PATRONYMICS);
                let middle = if female {
                    middle.replace("вич", "вна")
                } else {
                    middle.to_owned()
                };
                format!("{family}^{given}^{middle}")
            }
            Culture::Kazakh => {
                let family = KAZAKH_FAMILIES[self.kazakh.pick(rng)];
                let family = if female {
                    feminine(family)
                } else {
                    family.to_owned()
                };
                let given = pick(rng, KAZAKH_GIVEN[sex]);
                let (father, russified) = KAZAKH_FATHERS[rng.random_range(0..KAZAKH_FATHERS.len())];
                match rng.random_range(0..10) {
                    0..4 => {
                        let suffix = if female { "қызы" } else { "ұлы" };
                        format!("{family}^{given}^{father}{suffix}")
                    }
                    4..8 => {
                        let suffix = if female { "овна" } else { "ович" };
                        format!("{family}^{given}^{russified}{suffix}")
                    }
                    _ => format!("{family}^{given}"),
                }
            }
            Culture::Latin => {
                let family = LATIN_FAMILIES[self.latin.pick(rng)];
                let family = if female {
                    feminine(family)
                } else {
                    family.to_owned()
                };
                let given = pick(rng, LATIN_GIVEN[sex]);
                if rng.random_bool(0.3) {
                    let initial = char::from(b'A' + rng.random_range(0..26u8));
                    format!("{family}^{given}^{initial}")
                } else {
                    format!("{family}^{given}")
                }
            }
        }
    }
}

fn pick<'a>(rng: &mut ChaCha8Rng, list: &[&'a str]) -> &'a str {
    list[rng.random_range(0..list.len())]
}

/// The archive, generated study by study from one seed.
struct Archive {
    seed: u64,
    rng: ChaCha8Rng,
    patients: Vec<Patient>,
    women: Vec<usize>,
    physicians: Vec<String>,
    physician_zipf: Zipf,
    modality_total: u32,
}

/// Days since 1970-01-01 of a `YYYYMMDD` value.
fn parse_da(v: &str) -> anyhow::Result<i64> {
    ensure!(
        v.len() == 8 && v.bytes().all(|b| b.is_ascii_digit()),
        "not a DA: {v:?}"
    );
    let n = |r: std::ops::Range<usize>| v[r].parse::<i64>();
    Ok(days_from_civil(n(0..4)?, n(4..6)?, n(6..8)?))
}

/// The DICOM JSON key of a tag.
fn key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

fn put(map: &mut Map<String, Value>, tag: Tag, vr: &str, value: impl Into<Value>) {
    map.insert(key(tag), json!({ "vr": vr, "Value": [value.into()] }));
}

fn put_pn(map: &mut Map<String, Value>, tag: Tag, name: &str) {
    map.insert(
        key(tag),
        json!({ "vr": "PN", "Value": [{ "Alphabetic": name }] }),
    );
}

/// A `2.25.` UID from the seed, the study, the series (0 for the study) and the
/// instance (0 for a study or series).
fn uid(seed: u64, study: usize, series: usize, instance: usize) -> String {
    let n = (u128::from(seed) << 80)
        | ((study as u128) << 16)
        | ((series as u128) << 8)
        | instance as u128;
    format!("2.25.{n}")
}

impl Archive {
    fn new(seed: u64, studies: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let names = Names::new();
        // 2.5 studies per patient on average.
        let n_patients = (studies * 2 / 5).max(1);
        let first_birth = days_from_civil(1940, 1, 1);
        let last_birth = days_from_civil(2015, 12, 31);
        let mut patients = Vec::with_capacity(n_patients);
        let mut women = Vec::new();
        for p in 0..n_patients {
            let female = rng.random_bool(0.55);
            let birth = rng.random_range(first_birth..=last_birth);
            let birth_date = da(birth);
            // Kazakhstan's IIN shape: YYMMDD, then a serial (unique here).
            let id = format!("{}{p:06}", &birth_date[2..]);
            if female {
                women.push(p);
            }
            patients.push(Patient {
                name: names.person(&mut rng, female),
                id,
                birth_date,
                sex: if female { "F" } else { "M" },
            });
        }
        if women.is_empty() {
            women.push(0);
        }
        let physicians: Vec<String> = (0..60)
            .map(|_| {
                let female = rng.random_bool(0.6);
                names.person(&mut rng, female)
            })
            .collect();
        Archive {
            seed,
            rng,
            patients,
            women,
            physician_zipf: Zipf::new(physicians.len()),
            physicians,
            modality_total: MODALITIES.iter().map(|m| m.weight).sum(),
        }
    }

    /// The 10 instance records of study `i` (call in order 0, 1, 2, …).
    fn study(&mut self, i: usize) -> Vec<InstanceRecord> {
        let rng = &mut self.rng;
        let mut w = rng.random_range(0..self.modality_total);
        let spec = MODALITIES
            .iter()
            .find(|m| {
                if w < m.weight {
                    true
                } else {
                    w -= m.weight;
                    false
                }
            })
            .expect("weights cover the range");
        let patient = if spec.modality == "MG" {
            &self.patients[self.women[rng.random_range(0..self.women.len())]]
        } else {
            &self.patients[rng.random_range(0..self.patients.len())]
        };
        // Five years of studies, working hours.
        let day = rng.random_range(days_from_civil(2021, 1, 1)..=days_from_civil(2025, 12, 31));
        let study_date = da(day);
        let study_time = format!(
            "{:02}{:02}{:02}",
            rng.random_range(7..20),
            rng.random_range(0..60),
            rng.random_range(0..60)
        );
        let (description, body_part) = spec.studies[rng.random_range(0..spec.studies.len())];
        let referring = rng
            .random_bool(0.8)
            .then(|| self.physicians[self.physician_zipf.pick(rng)].clone());
        let accession = format!("KZ{}{i:07}", &study_date[2..4]);
        let study_id = format!("{}", 1 + i % 100_000);
        let study_uid = uid(self.seed, i, 0, 0);

        let mut study_json = Map::new();
        put(
            &mut study_json,
            tags::SPECIFIC_CHARACTER_SET,
            "CS",
            "ISO_IR 192",
        );
        put(&mut study_json, tags::STUDY_DATE, "DA", study_date.as_str());
        put(&mut study_json, tags::STUDY_TIME, "TM", study_time.as_str());
        put(
            &mut study_json,
            tags::ACCESSION_NUMBER,
            "SH",
            accession.as_str(),
        );
        put(
            &mut study_json,
            tags::INSTITUTION_NAME,
            "LO",
            "Aina Demo Clinic",
        );
        if let Some(r) = &referring {
            put_pn(&mut study_json, tags::REFERRING_PHYSICIAN_NAME, r);
        }
        put(
            &mut study_json,
            tags::TIMEZONE_OFFSET_FROM_UTC,
            "SH",
            "+0500",
        );
        put(&mut study_json, tags::STUDY_DESCRIPTION, "LO", description);
        put_pn(&mut study_json, tags::PATIENT_NAME, &patient.name);
        put(&mut study_json, tags::PATIENT_ID, "LO", patient.id.as_str());
        put(
            &mut study_json,
            tags::PATIENT_BIRTH_DATE,
            "DA",
            patient.birth_date.as_str(),
        );
        put(&mut study_json, tags::PATIENT_SEX, "CS", patient.sex);
        put(
            &mut study_json,
            tags::STUDY_INSTANCE_UID,
            "UI",
            study_uid.as_str(),
        );
        put(&mut study_json, tags::STUDY_ID, "SH", study_id.as_str());
        study_json.sort_keys();
        let study = StudyAttrs {
            patient_name: Some(patient.name.clone()),
            patient_id: Some(patient.id.clone()),
            issuer_of_patient_id: None,
            patient_birth_date: Some(patient.birth_date.clone()),
            patient_sex: Some(patient.sex.to_owned()),
            study_date: Some(study_date.clone()),
            study_time: Some(study_time.clone()),
            accession_number: Some(accession),
            referring_physician_name: referring,
            study_id: Some(study_id),
            study_description: Some(description.to_owned()),
            timezone_offset_from_utc: Some("+0500".to_owned()),
            attrs_json: Value::Object(study_json.clone()).to_string(),
        };

        let mut records = Vec::with_capacity(INSTANCES_PER_STUDY);
        for (s, series_description) in spec.series.iter().enumerate() {
            let series_number = s as i64 + 1;
            let series_uid = uid(self.seed, i, s + 1, 0);
            let mut series_json = Map::new();
            put(&mut series_json, tags::MODALITY, "CS", spec.modality);
            put(
                &mut series_json,
                tags::SERIES_DESCRIPTION,
                "LO",
                *series_description,
            );
            put(&mut series_json, tags::MANUFACTURER, "LO", "Aina Bench");
            put(&mut series_json, tags::BODY_PART_EXAMINED, "CS", body_part);
            put(
                &mut series_json,
                tags::SERIES_INSTANCE_UID,
                "UI",
                series_uid.as_str(),
            );
            put(&mut series_json, tags::SERIES_NUMBER, "IS", series_number);
            put(
                &mut series_json,
                tags::PERFORMED_PROCEDURE_STEP_START_DATE,
                "DA",
                study_date.as_str(),
            );
            put(
                &mut series_json,
                tags::PERFORMED_PROCEDURE_STEP_START_TIME,
                "TM",
                study_time.as_str(),
            );
            series_json.sort_keys();
            let series = SeriesAttrs {
                modality: Some(spec.modality.to_owned()),
                series_number: Some(series_number),
                series_description: Some((*series_description).to_owned()),
                body_part_examined: Some(body_part.to_owned()),
                performed_procedure_step_start_date: Some(study_date.clone()),
                performed_procedure_step_start_time: Some(study_time.clone()),
                attrs_json: Value::Object(series_json.clone()).to_string(),
            };
            let sop_class = match (spec.modality, s) {
                ("CR", _) => uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
                ("DX", _) => uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
                ("MG", 0) => uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION,
                ("MG", _) => uids::DIGITAL_MAMMOGRAPHY_X_RAY_IMAGE_STORAGE_FOR_PROCESSING,
                ("CT", _) => uids::CT_IMAGE_STORAGE,
                ("MR", _) => uids::MR_IMAGE_STORAGE,
                _ => uids::ULTRASOUND_IMAGE_STORAGE,
            };
            for (n, &(laterality, view)) in MG_VIEWS.iter().enumerate() {
                let instance_number = n as i64 + 1;
                let sop_uid = uid(self.seed, i, s + 1, n + 1);
                let sha256 = hex::encode(Sha256::digest(sop_uid.as_bytes()));
                let size = (spec.rows * spec.columns * spec.bits_allocated / 8 * spec.samples)
                    as u64
                    + 2_048;
                let mut meta = study_json.clone();
                meta.extend(series_json.clone());
                put(&mut meta, tags::SOP_CLASS_UID, "UI", sop_class);
                put(&mut meta, tags::SOP_INSTANCE_UID, "UI", sop_uid.as_str());
                put(&mut meta, tags::INSTANCE_NUMBER, "IS", instance_number);
                put(&mut meta, tags::CONTENT_DATE, "DA", study_date.as_str());
                put(&mut meta, tags::CONTENT_TIME, "TM", study_time.as_str());
                put(&mut meta, tags::SAMPLES_PER_PIXEL, "US", spec.samples);
                put(
                    &mut meta,
                    tags::PHOTOMETRIC_INTERPRETATION,
                    "CS",
                    if spec.samples == 3 {
                        "RGB"
                    } else {
                        "MONOCHROME2"
                    },
                );
                put(&mut meta, tags::ROWS, "US", spec.rows);
                put(&mut meta, tags::COLUMNS, "US", spec.columns);
                put(&mut meta, tags::BITS_ALLOCATED, "US", spec.bits_allocated);
                let stored = if spec.bits_allocated == 16 { 12 } else { 8 };
                put(&mut meta, tags::BITS_STORED, "US", stored);
                put(&mut meta, tags::HIGH_BIT, "US", stored - 1);
                put(&mut meta, tags::PIXEL_REPRESENTATION, "US", 0);
                if spec.modality == "MG" {
                    put(&mut meta, tags::IMAGE_LATERALITY, "CS", laterality);
                    put(&mut meta, tags::VIEW_POSITION, "CS", view);
                    put(
                        &mut meta,
                        tags::PRESENTATION_INTENT_TYPE,
                        "CS",
                        if s == 0 {
                            "FOR PRESENTATION"
                        } else {
                            "FOR PROCESSING"
                        },
                    );
                }
                put(
                    &mut meta,
                    tags::AVAILABLE_TRANSFER_SYNTAX_UID,
                    "UI",
                    uids::EXPLICIT_VR_LITTLE_ENDIAN,
                );
                meta.insert(
                    key(tags::PIXEL_DATA),
                    json!({
                        "vr": if spec.bits_allocated > 8 { "OW" } else { "OB" },
                        "BulkDataURI": format!(
                            "{BULK_BASE_MARKER}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/bulkdata/7FE00010"
                        ),
                    }),
                );
                meta.sort_keys();
                records.push(InstanceRecord {
                    object_key: Store::instance_key(&study_uid, &series_uid, &sop_uid, &sha256),
                    study_instance_uid: study_uid.clone(),
                    series_instance_uid: series_uid.clone(),
                    sop_instance_uid: sop_uid,
                    sop_class_uid: sop_class.to_owned(),
                    transfer_syntax_uid: uids::EXPLICIT_VR_LITTLE_ENDIAN.to_owned(),
                    instance_number: Some(instance_number),
                    rows: Some(spec.rows),
                    columns: Some(spec.columns),
                    bits_allocated: Some(spec.bits_allocated),
                    number_of_frames: None,
                    sha256,
                    size_bytes: size,
                    stored_bytes: (size as f64 * spec.ratio) as u64,
                    // A one-segment container table's size; never read here.
                    container_index: vec![0; 40],
                    metadata_json: Value::Object(meta).to_string(),
                    study: study.clone(),
                    series: series.clone(),
                });
            }
        }
        records
    }
}

// ---------------------------------------------------------------------------
// Measurement bookkeeping

/// The 1-, 5- and 15-minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".to_owned())
}

/// One measured phase: its wall time and the machine's load around it.
#[derive(Debug, Clone, Serialize)]
struct Phase {
    name: String,
    secs: f64,
    loadavg_start: String,
    loadavg_end: String,
    note: String,
}

struct PhaseClock {
    name: String,
    started: Instant,
    load: String,
}

impl PhaseClock {
    fn start(name: impl Into<String>) -> Self {
        PhaseClock {
            name: name.into(),
            started: Instant::now(),
            load: loadavg(),
        }
    }

    fn end(self, note: impl Into<String>) -> Phase {
        let phase = Phase {
            name: self.name,
            secs: self.started.elapsed().as_secs_f64(),
            loadavg_start: self.load,
            loadavg_end: loadavg(),
            note: note.into(),
        };
        println!(
            "  [{}] {:.1} s, load {} → {}{}",
            phase.name,
            phase.secs,
            phase.loadavg_start,
            phase.loadavg_end,
            if phase.note.is_empty() {
                String::new()
            } else {
                format!("; {}", phase.note)
            }
        );
        phase
    }
}

/// Nearest-rank percentile of unsorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[derive(Debug, Clone, Serialize)]
struct Latency {
    backend: Backend,
    /// "sequential" or "mixN".
    run: String,
    shape: String,
    n: usize,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    mean_ms: f64,
    max_ms: f64,
    mean_results: f64,
    /// Median and largest number of matching studies (before the page limit).
    median_matching: usize,
    max_matching: usize,
    /// The slowest requests: (ms, request, matching).
    slowest: Vec<(f64, String, usize)>,
}

impl Latency {
    fn new(backend: Backend, run: &str, shape: &str, samples: &[(f64, usize)]) -> Self {
        Self::with_requests(backend, run, shape, samples, &[])
    }

    /// `requests`: the request of each sample, when known (same order).
    fn with_requests(
        backend: Backend,
        run: &str,
        shape: &str,
        samples: &[(f64, usize)],
        requests: &[&Request],
    ) -> Self {
        let mut matching: Vec<usize> = requests.iter().map(|r| r.matching).collect();
        matching.sort_unstable();
        let mut slow: Vec<(f64, String, usize)> = samples
            .iter()
            .zip(requests)
            .map(|(s, r)| (s.0, r.display(), r.matching))
            .collect();
        slow.sort_by(|a, b| b.0.total_cmp(&a.0));
        slow.truncate(3);
        let mut ms: Vec<f64> = samples.iter().map(|s| s.0).collect();
        ms.sort_by(f64::total_cmp);
        let n = ms.len().max(1) as f64;
        Latency {
            backend,
            run: run.to_owned(),
            shape: shape.to_owned(),
            n: ms.len(),
            p50_ms: percentile(&ms, 50.0),
            p95_ms: percentile(&ms, 95.0),
            p99_ms: percentile(&ms, 99.0),
            mean_ms: ms.iter().sum::<f64>() / n,
            max_ms: ms.last().copied().unwrap_or(0.0),
            mean_results: samples.iter().map(|s| s.1 as f64).sum::<f64>() / n,
            median_matching: matching.get(matching.len() / 2).copied().unwrap_or(0),
            max_matching: matching.last().copied().unwrap_or(0),
            slowest: slow,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct PlanRecord {
    backend: Backend,
    shape: String,
    sql: String,
    /// The request whose plan is shown: the last of `PLAN_RUNS`.
    request: String,
    /// Its plan lines.
    plan: Vec<String>,
    /// Indexes and scans its plan names.
    access: Vec<String>,
    /// Every distinct access path seen over the runs: (runs, access, an example
    /// request, its plan).
    variants: Vec<(usize, String, String, Vec<String>)>,
    note: String,
}

/// One explained run of a query shape.
struct Run {
    request: String,
    sql: String,
    plan: Vec<String>,
}

/// The plan record of a shape from its runs: the last run's plan, and how
/// often each access path occurred.
fn plan_record(
    backend: Backend,
    shape: Shape,
    runs: Vec<Run>,
    note: String,
) -> anyhow::Result<PlanRecord> {
    let last = runs.last().context("no runs")?;
    let mut variants: Vec<(usize, String, String, Vec<String>)> = Vec::new();
    for run in &runs {
        let access = access_paths(&run.plan).join("; ");
        match variants.iter_mut().find(|v| v.1 == access) {
            Some(v) => v.0 += 1,
            None => variants.push((1, access, run.request.clone(), run.plan.clone())),
        }
    }
    Ok(PlanRecord {
        backend,
        shape: shape.label().to_owned(),
        sql: last.sql.clone(),
        request: last.request.clone(),
        plan: last.plan.clone(),
        access: access_paths(&last.plan),
        variants,
        note,
    })
}

#[derive(Debug, Default, Serialize)]
struct Report {
    studies: usize,
    instances: usize,
    seed: u64,
    phases: Vec<Phase>,
    sqlite_bytes: u64,
    postgres_bytes: Option<i64>,
    postgres_settings: Vec<(String, String)>,
    latencies: Vec<Latency>,
    /// (backend, clients, requests, seconds)
    mix_throughput: Vec<(Backend, usize, usize, f64)>,
    examples: Vec<(String, String)>,
    plans: Vec<PlanRecord>,
}

// ---------------------------------------------------------------------------
// Loading

/// (studies, instances, first Study Instance UID) of an index.
async fn sqlite_counts(url: &str) -> anyhow::Result<(i64, i64, Option<String>)> {
    let options = SqliteConnectOptions::from_str(url)?.read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
    let row = sqlx::query(COUNTS_SQL).fetch_one(&mut conn).await?;
    let counts = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    conn.close().await?;
    Ok(counts)
}

async fn postgres_counts(conn: &mut PgConnection) -> anyhow::Result<(i64, i64, Option<String>)> {
    let row = sqlx::query(COUNTS_SQL).fetch_one(&mut *conn).await?;
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
}

const COUNTS_SQL: &str = "SELECT (SELECT COUNT(*) FROM studies), (SELECT COUNT(*) FROM instances), \
     (SELECT MIN(study_instance_uid) FROM studies)";

/// Loads the archive into the SQLite index at `url`, unless it already holds it.
async fn load_sqlite(url: &str, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let index = SqliteIndex::open(url)
        .await
        .context("opening the SQLite index")?;
    let n = args.studies as i64;
    let (studies, instances, _) = sqlite_counts(url).await?;
    if studies == n && instances == n * INSTANCES_PER_STUDY as i64 {
        println!("SQLite: {url} already holds {studies} studies, {instances} instances; reused");
        index.close().await;
        return Ok(());
    }
    if studies != 0 || instances != 0 {
        bail!(
            "{url} holds {studies} studies and {instances} instances, not {n} and {}: remove it or use another --dir",
            n * INSTANCES_PER_STUDY as i64
        );
    }
    println!(
        "SQLite: loading {} studies, {} instances in batches of {BATCH_INSTANCES}",
        args.studies,
        args.studies * INSTANCES_PER_STUDY
    );
    let clock = PhaseClock::start("load SQLite (insert_instances)");
    let mut archive = Archive::new(args.seed, args.studies);
    let per_batch = BATCH_INSTANCES / INSTANCES_PER_STUDY;
    let mut generating = Duration::ZERO;
    let mut done = 0;
    let step = (args.studies / 10).max(per_batch);
    let mut next_report = step;
    while done < args.studies {
        let end = (done + per_batch).min(args.studies);
        let t = Instant::now();
        let records: Vec<InstanceRecord> = (done..end).flat_map(|i| archive.study(i)).collect();
        generating += t.elapsed();
        let outcomes = index
            .insert_instances(&records, ConflictPolicy::Reject)
            .await
            .with_context(|| format!("inserting studies {done}..{end}"))?;
        if let Some((k, o)) = outcomes
            .iter()
            .enumerate()
            .find(|(_, o)| **o != InsertOutcome::Inserted)
        {
            bail!(
                "instance {} was not inserted: {o:?}",
                records[k].sop_instance_uid
            );
        }
        done = end;
        if done >= next_report || done == args.studies {
            let secs = clock.started.elapsed().as_secs_f64();
            println!(
                "  {done} studies, {:.0} instances/s so far",
                (done * INSTANCES_PER_STUDY) as f64 / secs
            );
            next_report += step;
        }
    }
    // Closing runs `PRAGMA optimize`, as a server's shutdown does.
    index.close().await;
    let secs = clock.started.elapsed().as_secs_f64();
    let rows = args.studies * INSTANCES_PER_STUDY;
    let note = format!(
        "{rows} instances in {secs:.1} s = {:.0} instances/s ({:.1} s of it generating records)",
        rows as f64 / secs,
        generating.as_secs_f64()
    );
    report.phases.push(clock.end(note));
    Ok(())
}

/// Copies the archive into PostgreSQL (unless the database holds it already),
/// then ANALYZE.
async fn prepare_postgres(
    sqlite_url: &str,
    pg_url: &str,
    args: &Args,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut conn = PgConnection::connect(pg_url)
        .await
        .context("connecting to PostgreSQL")?;
    let has_tables: bool = sqlx::query_scalar("SELECT to_regclass('public.studies') IS NOT NULL")
        .fetch_one(&mut conn)
        .await?;
    let n = args.studies as i64;
    let (studies, instances, first) = if has_tables {
        postgres_counts(&mut conn).await?
    } else {
        (0, 0, None)
    };
    if studies == n && instances == n * INSTANCES_PER_STUDY as i64 {
        let (_, _, sqlite_first) = sqlite_counts(sqlite_url).await?;
        ensure!(
            first == sqlite_first,
            "the PostgreSQL database holds another archive of {n} studies (another --seed?)"
        );
        println!("PostgreSQL: the database already holds the archive; reused");
    } else if studies == 0 && instances == 0 {
        println!("PostgreSQL: copying with index::migrate::migrate (aina migrate-index)");
        let clock = PhaseClock::start("migrate-index SQLite → PostgreSQL");
        let step = (args.studies as u64 * INSTANCES_PER_STUDY as u64 / 5).max(1);
        let copied = migrate(sqlite_url, pg_url, |table, rows| {
            if rows % step < 500 || table != "instances" && rows % 50_000 < 500 {
                println!("  {table}: {rows} rows");
            }
        })
        .await
        .context("migrate-index into PostgreSQL")?;
        let secs = clock.started.elapsed().as_secs_f64();
        let rows = copied.studies + copied.series + copied.instances;
        let note = format!(
            "{} studies, {} series, {} instances ({rows} rows) in {secs:.1} s = {:.0} rows/s",
            copied.studies,
            copied.series,
            copied.instances,
            rows as f64 / secs
        );
        report.phases.push(clock.end(note));
    } else {
        bail!(
            "the PostgreSQL database holds {studies} studies and {instances} instances: \
             give an empty database or one holding this archive"
        );
    }
    let clock = PhaseClock::start("ANALYZE (PostgreSQL)");
    conn.execute("ANALYZE").await?;
    report.phases.push(clock.end(""));
    report.postgres_bytes = Some(
        sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&mut conn)
            .await?,
    );
    for setting in [
        "server_version",
        "shared_buffers",
        "work_mem",
        "effective_cache_size",
        "random_page_cost",
        "jit",
        "plan_cache_mode",
    ] {
        let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT current_setting('{setting}')"
        )))
        .fetch_one(&mut conn)
        .await?;
        report.postgres_settings.push((setting.to_owned(), value));
    }
    conn.close().await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Queries

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    StudyList,
    PatientId,
    NamePrefix,
    NameSuffix,
    NameFuzzy,
    DateModality,
    Accession,
    StudySeries,
    StudyInstances,
    PatientInstances,
}

const SHAPES: [Shape; 10] = [
    Shape::StudyList,
    Shape::PatientId,
    Shape::NamePrefix,
    Shape::NameSuffix,
    Shape::NameFuzzy,
    Shape::DateModality,
    Shape::Accession,
    Shape::StudySeries,
    Shape::StudyInstances,
    Shape::PatientInstances,
];

impl Shape {
    fn label(self) -> &'static str {
        match self {
            Shape::StudyList => "(a) study list, newest first",
            Shape::PatientId => "(b) PatientID exact",
            Shape::NamePrefix => "(c) PatientName prefix",
            Shape::NameSuffix => "(d) PatientName leading *",
            Shape::NameFuzzy => "(e) PatientName fuzzy",
            Shape::DateModality => "(f) 7-day StudyDate + MG",
            Shape::Accession => "(g) AccessionNumber exact",
            Shape::StudySeries => "(h) series of a study",
            Shape::StudyInstances => "(i) instances of a study",
            Shape::PatientInstances => "(j) instances of a patient",
        }
    }
}

/// One study as the index stored it: what parameters are drawn from and what
/// the expected answers are computed from.
struct StudyRow {
    uid: String,
    patient_id: String,
    name: String,
    name_fold: String,
    name_words: String,
    accession: String,
    date: String,
    modalities: String,
}

struct Pools {
    studies: Vec<StudyRow>,
    /// patient_name_fold of every study, sorted (prefix counts).
    sorted_folds: Vec<String>,
    studies_of_patient: HashMap<String, usize>,
    mg: Vec<usize>,
}

/// One request, and what its answer must be.
#[derive(Debug, Clone)]
struct Request {
    shape: Shape,
    /// After the DICOMweb root.
    path: String,
    params: Vec<(&'static str, String)>,
    /// The exact number of results.
    expected: usize,
    /// Entities matching, before the page limit.
    matching: usize,
    /// The page size the server applies.
    limit: usize,
    /// Values the SQL binds as text, in order (to explain it on SQLite).
    text_binds: Vec<String>,
}

impl Request {
    fn display(&self) -> String {
        let mut out = self.path.clone();
        for (i, (k, v)) in self.params.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            let _ = write!(out, "{k}={v}");
        }
        out
    }
}

impl Pools {
    async fn read(url: &str) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?.read_only(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
        let rows = sqlx::query(
            "SELECT study_instance_uid, patient_id, patient_name, patient_name_fold, \
             patient_name_words, accession_number, study_date, modalities_in_study, \
             number_of_series, number_of_instances FROM studies",
        )
        .fetch_all(&mut conn)
        .await?;
        conn.close().await?;
        let mut studies = Vec::with_capacity(rows.len());
        for r in &rows {
            let series: i64 = r.try_get("number_of_series")?;
            let instances: i64 = r.try_get("number_of_instances")?;
            ensure!(
                series == SERIES_PER_STUDY as i64 && instances == INSTANCES_PER_STUDY as i64,
                "study with {series} series and {instances} instances in the index"
            );
            studies.push(StudyRow {
                uid: r.try_get("study_instance_uid")?,
                patient_id: r.try_get("patient_id")?,
                name: r.try_get("patient_name")?,
                name_fold: r.try_get("patient_name_fold")?,
                name_words: r.try_get("patient_name_words")?,
                accession: r.try_get("accession_number")?,
                date: r.try_get("study_date")?,
                modalities: r.try_get("modalities_in_study")?,
            });
        }
        ensure!(!studies.is_empty(), "no studies in the index");
        let mut sorted_folds: Vec<String> = studies.iter().map(|s| s.name_fold.clone()).collect();
        sorted_folds.sort();
        let mut studies_of_patient = HashMap::new();
        for s in &studies {
            *studies_of_patient.entry(s.patient_id.clone()).or_insert(0) += 1;
        }
        let mg = studies
            .iter()
            .enumerate()
            .filter(|(_, s)| s.modalities.split('\\').any(|m| m == "MG"))
            .map(|(i, _)| i)
            .collect::<Vec<_>>();
        ensure!(!mg.is_empty(), "no MG study in the index");
        Ok(Pools {
            studies,
            sorted_folds,
            studies_of_patient,
            mg,
        })
    }

    fn count_prefix(&self, prefix: &str) -> usize {
        let upper = format!("{prefix}{}", char::MAX);
        self.sorted_folds
            .partition_point(|s| s.as_str() < upper.as_str())
            - self.sorted_folds.partition_point(|s| s.as_str() < prefix)
    }

    fn request(&self, shape: Shape, rng: &mut ChaCha8Rng) -> anyhow::Result<Request> {
        let s = &self.studies[rng.random_range(0..self.studies.len())];
        let family = s.name.split('^').next().unwrap_or("");
        let studies_path = "/studies".to_owned();
        let r = match shape {
            Shape::StudyList => Request {
                shape,
                path: studies_path,
                params: vec![("limit", "50".to_owned())],
                expected: self.studies.len().min(50),
                matching: self.studies.len(),
                limit: 50,
                text_binds: vec![],
            },
            Shape::PatientId => Request {
                shape,
                path: studies_path,
                params: vec![("PatientID", s.patient_id.clone())],
                expected: self.studies_of_patient[&s.patient_id].min(SERVER_MAX_LIMIT),
                matching: self.studies_of_patient[&s.patient_id],
                limit: SERVER_MAX_LIMIT,
                text_binds: vec![s.patient_id.clone()],
            },
            Shape::NamePrefix => {
                let k = rng.random_range(3..=5).min(family.chars().count());
                let mut prefix: String = family.chars().take(k).collect();
                if rng.random_bool(0.5) {
                    prefix = prefix.to_lowercase();
                }
                let value = format!("{prefix}*");
                let folded = fold(&prefix);
                let pattern = wildcard_to_like(&fold(&value), '\\');
                Request {
                    shape,
                    path: studies_path,
                    params: vec![("PatientName", value), ("limit", "50".to_owned())],
                    expected: self.count_prefix(&folded).min(50),
                    matching: self.count_prefix(&folded),
                    limit: 50,
                    text_binds: vec![
                        pattern.clone(),
                        format!("{pattern}^%"),
                        folded.clone(),
                        format!("{folded}{}", char::MAX),
                    ],
                }
            }
            Shape::NameSuffix => {
                let chars: Vec<char> = family.chars().collect();
                let suffix: String = chars[chars.len().saturating_sub(3)..].iter().collect();
                let folded = fold(&suffix);
                let value = format!("*{suffix}");
                let pattern = wildcard_to_like(&fold(&value), '\\');
                let tail = format!("{folded}^");
                let matching = self
                    .studies
                    .iter()
                    .filter(|r| r.name_fold.ends_with(&folded) || r.name_fold.contains(&tail))
                    .count();
                Request {
                    shape,
                    path: studies_path,
                    params: vec![("PatientName", value), ("limit", "50".to_owned())],
                    expected: matching.min(50),
                    matching,
                    limit: 50,
                    text_binds: vec![pattern.clone(), format!("{pattern}^%")],
                }
            }
            Shape::NameFuzzy => {
                let words = person_name_words(&s.name);
                ensure!(!words.is_empty(), "a name without words: {:?}", s.name);
                let word = &words[rng.random_range(0..words.len())];
                let k = rng.random_range(4..=6).min(word.chars().count());
                let start: String = word.chars().take(k).collect();
                let needle = format!(" {start}");
                let matching = self
                    .studies
                    .iter()
                    .filter(|r| r.name_words.contains(&needle))
                    .count();
                Request {
                    shape,
                    path: studies_path,
                    params: vec![
                        ("PatientName", start.clone()),
                        ("fuzzymatching", "true".to_owned()),
                        ("limit", "50".to_owned()),
                    ],
                    expected: matching.min(50),
                    matching,
                    limit: 50,
                    text_binds: vec![format!("% {}%", wildcard_to_like(&start, '\\'))],
                }
            }
            Shape::DateModality => {
                let mg = &self.studies[self.mg[rng.random_range(0..self.mg.len())]];
                let day = parse_da(&mg.date)?;
                let (from, to) = (da(day - 3), da(day + 3));
                let matching = self
                    .studies
                    .iter()
                    .filter(|r| {
                        r.date >= from
                            && r.date <= to
                            && r.modalities.split('\\').any(|m| m == "MG")
                    })
                    .count();
                Request {
                    shape,
                    path: studies_path,
                    params: vec![
                        ("StudyDate", format!("{from}-{to}")),
                        ("ModalitiesInStudy", "MG".to_owned()),
                        ("limit", "101".to_owned()),
                    ],
                    expected: matching.min(101),
                    matching,
                    limit: 101,
                    text_binds: vec![from, to, "MG".to_owned()],
                }
            }
            Shape::Accession => Request {
                shape,
                path: studies_path,
                params: vec![("AccessionNumber", s.accession.clone())],
                expected: 1,
                matching: 1,
                limit: SERVER_MAX_LIMIT,
                text_binds: vec![s.accession.clone()],
            },
            Shape::StudySeries => Request {
                shape,
                path: format!("/studies/{}/series", s.uid),
                params: vec![],
                expected: SERIES_PER_STUDY,
                matching: SERIES_PER_STUDY,
                limit: SERVER_MAX_LIMIT,
                text_binds: vec![s.uid.clone()],
            },
            Shape::StudyInstances => Request {
                shape,
                path: format!("/studies/{}/instances", s.uid),
                params: vec![],
                expected: INSTANCES_PER_STUDY,
                matching: INSTANCES_PER_STUDY,
                limit: SERVER_MAX_LIMIT,
                text_binds: vec![s.uid.clone()],
            },
            Shape::PatientInstances => Request {
                shape,
                path: "/instances".to_owned(),
                params: vec![("PatientID", s.patient_id.clone())],
                expected: (self.studies_of_patient[&s.patient_id] * INSTANCES_PER_STUDY)
                    .min(SERVER_MAX_LIMIT),
                matching: self.studies_of_patient[&s.patient_id] * INSTANCES_PER_STUDY,
                limit: SERVER_MAX_LIMIT,
                text_binds: vec![s.patient_id.clone()],
            },
        };
        ensure!(r.expected > 0, "{} would find nothing", r.display());
        Ok(r)
    }
}

/// Sends one request; returns the time to the whole body and the number of
/// results, after checking the answer (any difference is an error).
async fn send(client: &reqwest::Client, root: &str, req: &Request) -> anyhow::Result<(f64, usize)> {
    let t = Instant::now();
    let response = client
        .get(format!("{root}{}", req.path))
        .query(&req.params)
        .header(ACCEPT, "application/dicom+json")
        .send()
        .await
        .with_context(|| format!("GET {}", req.display()))?;
    let status = response.status();
    let warning = response.headers().get(WARNING).cloned();
    let body = response.bytes().await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let text = || String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    ensure!(
        status == StatusCode::OK,
        "GET {} → {status}: {}",
        req.display(),
        text()
    );
    ensure!(
        warning.is_none(),
        "GET {} → Warning: {warning:?}",
        req.display()
    );
    let rows: Vec<Value> = serde_json::from_slice(&body)
        .with_context(|| format!("GET {}: not a JSON array: {}", req.display(), text()))?;
    ensure!(
        rows.len() == req.expected,
        "GET {} → {} results, the loaded data has {}",
        req.display(),
        rows.len(),
        req.expected
    );
    if req.shape == Shape::StudyList {
        let dates: Vec<&str> = rows
            .iter()
            .map(|r| {
                r.pointer("/00080020/Value/0")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            })
            .collect();
        ensure!(
            dates.windows(2).all(|w| w[0] >= w[1]),
            "study list not newest first: {dates:?}"
        );
    }
    Ok((ms, rows.len()))
}

async fn start_server(database: &str, data: &Path) -> anyhow::Result<Server> {
    std::fs::create_dir_all(data)?;
    let settings = Settings {
        data: Some(data.to_path_buf()),
        database: Some(database.to_owned()),
        http: Some(([127, 0, 0, 1], 0).into()),
        dicom: Some(([127, 0, 0, 1], 0).into()),
        ..Settings::default()
    };
    let state = AppState::open(settings.resolve()?).await?;
    Server::start(state).await
}

/// Sends the requests one after another; the timed samples and, for each,
/// the request's index.
async fn run_sequential(
    client: &reqwest::Client,
    root: &str,
    requests: &[Request],
    warmup: usize,
) -> anyhow::Result<Vec<(f64, usize, usize)>> {
    let mut samples = Vec::with_capacity(requests.len());
    for (i, req) in requests.iter().enumerate() {
        let (ms, n) = send(client, root, req).await?;
        if i >= warmup {
            samples.push((ms, n, i));
        }
    }
    Ok(samples)
}

/// Every client sends its list one request after another; all at once.
async fn run_mix(
    client: &reqwest::Client,
    root: &str,
    mix: &[Vec<Request>],
) -> anyhow::Result<(Duration, Vec<(Shape, f64, usize)>)> {
    let started = Instant::now();
    let mut handles = Vec::new();
    for list in mix {
        let (client, root, list) = (client.clone(), root.to_owned(), list.clone());
        handles.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(list.len());
            for req in &list {
                let (ms, n) = send(&client, &root, req).await?;
                out.push((req.shape, ms, n));
            }
            anyhow::Ok(out)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await??);
    }
    Ok((started.elapsed(), all))
}

// ---------------------------------------------------------------------------
// Plans

static CAPTURE: AtomicBool = AtomicBool::new(false);
/// (SQL, rows returned) of each statement sqlx ran while [`CAPTURE`] was set.
static CAPTURED: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());

/// Records sqlx's statement events (target `sqlx::query`): the SQL the server
/// really ran.
struct SqlCapture;

#[derive(Default)]
struct StatementFields {
    summary: String,
    statement: String,
    rows: u64,
}

impl tracing::field::Visit for StatementFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_owned(),
            "db.statement" => self.statement = value.to_owned(),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if field.name() == "rows_returned" {
            self.rows = value;
        }
    }

    fn record_debug(&mut self, _field: &tracing::field::Field, _value: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SqlCapture {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = StatementFields::default();
        event.record(&mut fields);
        let sql = if fields.statement.trim().is_empty() {
            fields.summary
        } else {
            fields.statement.trim().to_owned()
        };
        CAPTURED
            .lock()
            .expect("capture lock")
            .push((sql, fields.rows));
    }
}

fn install_tracing() -> anyhow::Result<()> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{DynFilterFn, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    // Interest "sometimes": the flag is read at each statement, so sqlx formats
    // nothing while it is off (the timed runs).
    let capture = SqlCapture.with_filter(
        DynFilterFn::new(|meta, _| {
            meta.target() == "sqlx::query" && CAPTURE.load(Ordering::Relaxed)
        })
        .with_callsite_filter(|meta| {
            if meta.target() == "sqlx::query" {
                tracing::subscriber::Interest::sometimes()
            } else {
                tracing::subscriber::Interest::never()
            }
        }),
    );
    // The server's own warnings and errors (a 5xx logs its cause here).
    let warnings = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(Targets::new().with_target("aina", tracing::Level::WARN));
    let subscriber = tracing_subscriber::registry().with(capture).with(warnings);
    tracing::subscriber::set_global_default(subscriber)?;
    Ok(())
}

/// Index names, scans and sorts a plan mentions, in order, without repeats.
fn access_paths(plan: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: String| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    for line in plan {
        let line = line.trim().trim_start_matches("->").trim();
        // PostgreSQL
        for (marker, kind) in [
            ("Index Only Scan Backward using ", "index-only backward"),
            ("Index Only Scan using ", "index-only"),
            ("Index Scan Backward using ", "index backward"),
            ("Index Scan using ", "index"),
            ("Bitmap Index Scan on ", "bitmap"),
        ] {
            if let Some(rest) = line.strip_prefix(marker) {
                add(format!(
                    "{kind} {}",
                    rest.split_whitespace().next().unwrap_or("")
                ));
            }
        }
        if let Some(rest) = line.strip_prefix("Seq Scan on ") {
            add(format!(
                "SEQ SCAN {}",
                rest.split_whitespace().next().unwrap_or("")
            ));
        }
        if line.starts_with("Sort ")
            || line.starts_with("Incremental Sort")
            || line.starts_with("Top-N")
        {
            add("sort".to_owned());
        }
        // SQLite
        if line.starts_with("SEARCH ") || line.starts_with("SCAN ") {
            let full_scan = line.starts_with("SCAN ") && !line.contains(" USING ");
            if full_scan {
                add(format!("FULL SCAN {}", line.trim_start_matches("SCAN ")));
            } else {
                add(line.to_owned());
            }
        }
        if line.starts_with("USE TEMP B-TREE") {
            add(line.to_lowercase());
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Bind {
    Text(String),
    Int(i64),
}

/// The bound values of a captured SQLite statement: LIMIT/OFFSET from the
/// request's page, the rest from its text values in order.
fn sqlite_binds(sql: &str, req: &Request) -> anyhow::Result<Vec<Bind>> {
    let mut texts = req.text_binds.iter();
    let mut out = Vec::new();
    for (i, _) in sql.match_indices('?') {
        let before = sql[..i].trim_end();
        if before.ends_with("LIMIT") {
            out.push(Bind::Int(req.limit as i64));
        } else if before.ends_with("OFFSET") {
            out.push(Bind::Int(0));
        } else {
            let v = texts
                .next()
                .with_context(|| format!("more placeholders than values in {sql}"))?;
            out.push(Bind::Text(v.clone()));
        }
    }
    ensure!(
        texts.next().is_none(),
        "fewer placeholders than values in {sql}"
    );
    Ok(out)
}

/// SQLite: the SQL each shape ran (captured), explained with its values; the
/// values are checked by running the statement and comparing the row count.
async fn sqlite_plans(
    client: &reqwest::Client,
    root: &str,
    url: &str,
    requests: &[(Shape, Vec<Request>)],
) -> anyhow::Result<Vec<PlanRecord>> {
    let options = SqliteConnectOptions::from_str(url)?
        .read_only(true)
        .pragma("case_sensitive_like", "ON");
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    let mut plans = Vec::new();
    for (shape, list) in requests {
        let mut runs = Vec::new();
        let mut unchecked = 0;
        for req in list.iter().take(PLAN_RUNS) {
            CAPTURED.lock().expect("capture lock").clear();
            CAPTURE.store(true, Ordering::Relaxed);
            let sent = send(client, root, req).await;
            CAPTURE.store(false, Ordering::Relaxed);
            sent?;
            let statements: Vec<(String, u64)> = CAPTURED
                .lock()
                .expect("capture lock")
                .drain(..)
                .filter(|(sql, _)| sql.starts_with(SEARCH_SQL_START))
                .collect();
            ensure!(
                statements.len() == 1,
                "{}: {} search statements captured",
                req.display(),
                statements.len()
            );
            let (sql, rows_returned) = statements.into_iter().next().expect("one");
            let binds = sqlite_binds(&sql, req)?;
            let bind_all =
                |q: sqlx::query::Query<'static, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>| {
                    binds.iter().fold(q, |q, b| match b {
                        Bind::Text(s) => q.bind(s.clone()),
                        Bind::Int(i) => q.bind(*i),
                    })
                };
            let explain = bind_all(sqlx::query(sqlx::AssertSqlSafe(format!(
                "EXPLAIN QUERY PLAN {sql}"
            ))))
            .fetch_all(&pool)
            .await
            .with_context(|| format!("EXPLAIN QUERY PLAN {sql}"))?;
            // Rows: id, parent, notused, detail; children indented under parents.
            let mut depth: HashMap<i64, usize> = HashMap::new();
            let mut plan = Vec::new();
            for r in &explain {
                let (id, parent, detail): (i64, i64, String) =
                    (r.try_get(0)?, r.try_get(1)?, r.try_get(3)?);
                let d = depth.get(&parent).map_or(0, |d| d + 1);
                depth.insert(id, d);
                plan.push(format!("{}{detail}", "  ".repeat(d)));
            }
            // The values are right if the statement returns what the server's did.
            let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql.clone())))
                .fetch_all(&pool)
                .await?
                .len() as u64;
            if rows != rows_returned {
                unchecked += 1;
            }
            runs.push(Run {
                request: req.display(),
                sql,
                plan,
            });
        }
        let check = if unchecked == 0 {
            "bound values checked: each statement returned here what it returned in the server"
                .to_owned()
        } else {
            format!("VALUES NOT CHECKED in {unchecked} runs (row counts differ)")
        };
        plans.push(plan_record(Backend::Sqlite, *shape, runs, check)?);
    }
    pool.close().await;
    Ok(plans)
}

/// An auto_explain entry: the statement and its plan lines.
struct Explained {
    query: String,
    plan: Vec<String>,
}

/// The auto_explain entries of the given backends in a piece of the server log
/// (`log_line_prefix` '%m [%p] ': continuation lines start with a tab).
fn parse_auto_explain(log: &str, pids: &HashSet<u32>) -> Vec<Explained> {
    let mut out = Vec::new();
    let mut current: Option<Explained> = None;
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix('\t') {
            if let Some(entry) = current.as_mut() {
                if let Some(q) = rest.strip_prefix("Query Text: ") {
                    entry.query = q.to_owned();
                } else {
                    entry.plan.push(rest.to_owned());
                }
            }
            continue;
        }
        if let Some(entry) = current.take() {
            out.push(entry);
        }
        let pid = line
            .split_once(" [")
            .and_then(|(_, rest)| rest.split_once(']'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        if pid.is_some_and(|p| pids.contains(&p))
            && line.contains("duration:")
            && line.ends_with("plan:")
        {
            current = Some(Explained {
                query: String::new(),
                plan: Vec::new(),
            });
        }
    }
    if let Some(entry) = current.take() {
        out.push(entry);
    }
    out
}

/// PostgreSQL: plans by auto_explain for the database, read from the server log.
async fn postgres_plans(
    client: &reqwest::Client,
    pg_url: &str,
    data: &Path,
    log_path: &Path,
    requests: &[(Shape, Vec<Request>)],
) -> anyhow::Result<Vec<PlanRecord>> {
    let mut admin = PgConnection::connect(pg_url).await?;
    let db: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut admin)
        .await?;
    ensure!(
        db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "database name {db:?} needs quoting; not handled"
    );
    // Loaded here so that the auto_explain.* settings are known when set.
    admin.execute("LOAD 'auto_explain'").await?;
    let settings = [
        "session_preload_libraries = 'auto_explain'",
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_analyze = on",
    ];
    for s in settings {
        admin
            .execute(sqlx::AssertSqlSafe(format!("ALTER DATABASE {db} SET {s}")))
            .await?;
    }
    let result = async {
        let server = start_server(pg_url, data).await?;
        let root = format!("http://{}/dicomweb", server.http_addr);
        let mut slices = Vec::new();
        for (shape, list) in requests {
            let start = std::fs::metadata(log_path)
                .with_context(|| format!("reading {}", log_path.display()))?
                .len();
            for req in list.iter().take(PLAN_RUNS) {
                send(client, &root, req).await?;
            }
            // auto_explain writes at the end of execution, before the answer.
            let bytes = std::fs::read(log_path)?;
            let slice = String::from_utf8_lossy(&bytes[start as usize..]).into_owned();
            let displays: Vec<String> =
                list.iter().take(PLAN_RUNS).map(Request::display).collect();
            slices.push((*shape, displays, slice));
        }
        let pids: HashSet<u32> = sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut admin)
        .await?
        .into_iter()
        .map(|p| p as u32)
        .collect();
        server.abort();
        ensure!(
            !pids.is_empty(),
            "no server connections found in pg_stat_activity"
        );
        let mut plans = Vec::new();
        for (shape, displays, slice) in slices {
            let entries: Vec<Explained> = parse_auto_explain(&slice, &pids)
                .into_iter()
                .filter(|e| e.query.starts_with(SEARCH_SQL_START))
                .collect();
            ensure!(
                entries.len() == displays.len(),
                "{} auto_explain plans for the {} requests of {} in {} (is the log where --pg-log says?)",
                entries.len(),
                displays.len(),
                shape.label(),
                log_path.display()
            );
            let generic = entries
                .iter()
                .filter(|e| {
                    e.plan.iter().any(|l| {
                        l.split('$')
                            .skip(1)
                            .any(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
                    })
                })
                .count();
            let runs = entries
                .into_iter()
                .zip(displays)
                .map(|(e, request)| Run {
                    request,
                    sql: e.query,
                    plan: e.plan,
                })
                .collect();
            let kind = format!(
                "{} of the runs with a generic plan ($n parameters), the others custom",
                generic
            );
            plans.push(plan_record(Backend::Postgres, shape, runs, kind)?);
        }
        anyhow::Ok(plans)
    }
    .await;
    for s in [
        "session_preload_libraries",
        "auto_explain.log_min_duration",
        "auto_explain.log_analyze",
    ] {
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "ALTER DATABASE {db} RESET {s}"
            )))
            .await?;
    }
    admin.close().await?;
    result
}

// ---------------------------------------------------------------------------

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    install_tracing()?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.studies > 0 && args.iters > 0, "nothing to measure");
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::path::absolute(&args.dir)?;
    let db_path = dir.join("index.db");
    let sqlite_url = format!("sqlite://{}", db_path.display());
    let mut report = Report {
        studies: args.studies,
        instances: args.studies * INSTANCES_PER_STUDY,
        seed: args.seed,
        ..Report::default()
    };
    println!("load average at start: {}", loadavg());

    load_sqlite(&sqlite_url, &args, &mut report).await?;
    report.sqlite_bytes = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db_path.display())).ok())
        .map(|m| m.len())
        .sum();
    let pools = Pools::read(&sqlite_url).await?;
    ensure!(
        pools.studies.len() == args.studies,
        "the index holds {} studies",
        pools.studies.len()
    );

    // Kept alive until the end: dropping it drops the database.
    let mut throwaway = None;
    let pg_url = if args.backends.contains(&Backend::Postgres) {
        let url = match &args.postgres_url {
            Some(url) => url.clone(),
            None => {
                let db = TestDatabase::create("qido bench").await.context(
                    "PostgreSQL needs --postgres-url or AINA_TEST_POSTGRES_URL (or --backends sqlite)",
                )?;
                let url = db.url().to_owned();
                throwaway = Some(db);
                url
            }
        };
        prepare_postgres(&sqlite_url, &url, &args, &mut report).await?;
        Some(url)
    } else {
        None
    };

    // Every request is drawn before any clock starts; both backends get the same.
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x5149_444F);
    let mut sequential = Vec::new();
    for shape in SHAPES {
        let list = (0..args.warmup + args.iters)
            .map(|_| pools.request(shape, &mut rng))
            .collect::<anyhow::Result<Vec<_>>>()?;
        report
            .examples
            .push((shape.label().to_owned(), list[0].display()));
        sequential.push((shape, list));
    }
    let mix = (0..args.clients)
        .map(|c| {
            (0..args.mix_requests)
                .map(|k| pools.request(SHAPES[(c + k) % SHAPES.len()], &mut rng))
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(64)
        .build()?;
    for &backend in &args.backends {
        let url = match backend {
            Backend::Sqlite => sqlite_url.clone(),
            Backend::Postgres => pg_url.clone().context("no PostgreSQL URL")?,
        };
        let data = dir.join(format!("data-{backend:?}").to_lowercase());
        let server = start_server(&url, &data).await?;
        let root = format!("http://{}/dicomweb", server.http_addr);
        println!("\n{} at {root}", backend.label());
        let mut all_sequential = Vec::new();
        for (shape, list) in &sequential {
            let clock = PhaseClock::start(format!("{} {}", backend.label(), shape.label()));
            let timed = run_sequential(&client, &root, list, args.warmup).await?;
            let samples: Vec<(f64, usize)> = timed.iter().map(|t| (t.0, t.1)).collect();
            let reqs: Vec<&Request> = timed.iter().map(|t| &list[t.2]).collect();
            all_sequential.extend_from_slice(&samples);
            let latency =
                Latency::with_requests(backend, "sequential", shape.label(), &samples, &reqs);
            report.phases.push(clock.end(format!(
                "p50 {:.2} / p95 {:.2} / p99 {:.2} ms, {:.1} results",
                latency.p50_ms, latency.p95_ms, latency.p99_ms, latency.mean_results
            )));
            report.latencies.push(latency);
        }
        report.latencies.push(Latency::new(
            backend,
            "sequential",
            "all shapes",
            &all_sequential,
        ));
        let clock = PhaseClock::start(format!(
            "{} mix, {} clients × {}",
            backend.label(),
            args.clients,
            args.mix_requests
        ));
        let (wall, samples) = run_mix(&client, &root, &mix).await?;
        let total = samples.len();
        let run = format!("mix{}", args.clients);
        for shape in SHAPES {
            let of: Vec<(f64, usize)> = samples
                .iter()
                .filter(|s| s.0 == shape)
                .map(|s| (s.1, s.2))
                .collect();
            if !of.is_empty() {
                report
                    .latencies
                    .push(Latency::new(backend, &run, shape.label(), &of));
            }
        }
        let all: Vec<(f64, usize)> = samples.iter().map(|s| (s.1, s.2)).collect();
        let overall = Latency::new(backend, &run, "all shapes", &all);
        report.phases.push(clock.end(format!(
            "{total} requests in {:.1} s = {:.0} requests/s; p50 {:.2} / p95 {:.2} / p99 {:.2} ms",
            wall.as_secs_f64(),
            total as f64 / wall.as_secs_f64(),
            overall.p50_ms,
            overall.p95_ms,
            overall.p99_ms
        )));
        report.latencies.push(overall);
        report
            .mix_throughput
            .push((backend, args.clients, total, wall.as_secs_f64()));

        if !args.no_plans && backend == Backend::Sqlite {
            let plans = sqlite_plans(&client, &root, &url, &sequential).await?;
            report.plans.extend(plans);
        }
        server.abort();
        if !args.no_plans && backend == Backend::Postgres {
            let plans = postgres_plans(&client, &url, &data, &args.pg_log, &sequential).await?;
            report.plans.extend(plans);
        }
    }

    print!("{}", markdown(&report, &args));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| path.display().to_string())?;
        println!("wrote {}", path.display());
    }
    drop(throwaway);
    Ok(())
}

fn markdown(report: &Report, args: &Args) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n## QIDO-RS at {} studies, {} instances (seed {})\n",
        report.studies, report.instances, report.seed
    );
    let _ = writeln!(
        out,
        "SQLite file {:.2} GB; PostgreSQL database {}",
        report.sqlite_bytes as f64 / 1e9,
        report
            .postgres_bytes
            .map_or("—".to_owned(), |b| format!("{:.2} GB", b as f64 / 1e9))
    );
    if !report.postgres_settings.is_empty() {
        let s: Vec<String> = report
            .postgres_settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(out, "PostgreSQL: {}", s.join(", "));
    }
    let _ = writeln!(
        out,
        "\n| phase | s | load avg start → end | note |\n|---|---:|---|---|"
    );
    for p in &report.phases {
        let _ = writeln!(
            out,
            "| {} | {:.1} | {} → {} | {} |",
            p.name, p.secs, p.loadavg_start, p.loadavg_end, p.note
        );
    }
    for run in ["sequential".to_owned(), format!("mix{}", args.clients)] {
        let title = if run == "sequential" {
            format!(
                "one client, {} timed requests per shape after {} warm-up",
                args.iters, args.warmup
            )
        } else {
            format!(
                "{} concurrent clients, {} requests each, shapes in rotation",
                args.clients, args.mix_requests
            )
        };
        let _ = writeln!(out, "\n### {title}\n");
        let mut header = "| query |".to_owned();
        let mut rule = "|---|".to_owned();
        for b in &args.backends {
            let _ = write!(header, " {} p50 / p95 / p99 ms | results |", b.label());
            rule.push_str("---:|---:|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        let mut shapes: Vec<String> = SHAPES.iter().map(|s| s.label().to_owned()).collect();
        shapes.push("all shapes".to_owned());
        for shape in shapes {
            let mut line = format!("| {shape} |");
            for b in &args.backends {
                match report
                    .latencies
                    .iter()
                    .find(|l| l.backend == *b && l.run == run && l.shape == shape)
                {
                    Some(l) => {
                        let _ = write!(
                            line,
                            " {:.2} / {:.2} / {:.2} | {:.1} |",
                            l.p50_ms, l.p95_ms, l.p99_ms, l.mean_results
                        );
                    }
                    None => line.push_str(" — | — |"),
                }
            }
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = writeln!(
        out,
        "\n### Matching studies per request and the slowest requests (one client)\n"
    );
    for l in report
        .latencies
        .iter()
        .filter(|l| l.run == "sequential" && !l.slowest.is_empty())
    {
        let slow: Vec<String> = l
            .slowest
            .iter()
            .map(|(ms, r, m)| format!("{ms:.1} ms `{r}` ({m} matching)"))
            .collect();
        let _ = writeln!(
            out,
            "- {} {}: matching median {}, max {}; slowest {}",
            l.backend.label(),
            l.shape,
            l.median_matching,
            l.max_matching,
            slow.join(", ")
        );
    }
    for (b, clients, n, secs) in &report.mix_throughput {
        let _ = writeln!(
            out,
            "\n{} mix: {n} requests from {clients} clients in {secs:.1} s = {:.0} requests/s",
            b.label(),
            *n as f64 / secs
        );
    }
    let _ = writeln!(out, "\n### Example requests (first of each shape)\n");
    for (shape, example) in &report.examples {
        let _ = writeln!(out, "- {shape}: `{example}`");
    }
    if !report.plans.is_empty() {
        let _ = writeln!(out, "\n### Plans\n");
        for p in &report.plans {
            let _ = writeln!(
                out,
                "#### {} — {}\n\nPlan of `{}` (the last of {PLAN_RUNS} runs); {}.\n",
                p.shape,
                p.backend.label(),
                p.request,
                p.note
            );
            let _ = writeln!(out, "```text\n{}\n```\n", p.plan.join("\n"));
            let _ = writeln!(out, "Access paths over the {PLAN_RUNS} runs:\n");
            for (n, access, request, _) in &p.variants {
                let _ = writeln!(out, "- {n}×: {access} (e.g. `{request}`)");
            }
            for (n, access, request, plan) in &p.variants {
                if *access != p.access.join("; ") {
                    let _ = writeln!(
                        out,
                        "\nOther plan ({n}×, `{request}`):\n\n```text\n{}\n```",
                        plan.join("\n")
                    );
                }
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "\n### SQL (SQLite form)\n");
        for p in report.plans.iter().filter(|p| p.backend == Backend::Sqlite) {
            let _ = writeln!(out, "- {}: `{}`", p.shape, p.sql);
        }
    }
    out
}
