//! The audit writer, its export, and the DICOM audit messages, against
//! PS3.15 A.5: schema structure, codes, hostile text, back-pressure, retries,
//! file and syslog (UDP, TCP) sinks.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// An element of a parsed message.
#[derive(Debug, Default)]
struct Node {
    name: String,
    attrs: BTreeMap<String, String>,
    children: Vec<Node>,
    text: String,
}

impl Node {
    fn attr(&self, name: &str) -> &str {
        self.attrs.get(name).map_or("", String::as_str)
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    fn one<'a>(&'a self, name: &'a str) -> &'a Node {
        let mut found = self.all(name);
        let first = found
            .next()
            .unwrap_or_else(|| panic!("no {name} in {self:#?}"));
        assert!(found.next().is_none(), "two {name} in {}", self.name);
        first
    }

    /// The csd-code of each coded child called `name`.
    fn codes<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        self.all(name).map(|c| c.attr("csd-code")).collect()
    }
}

/// Parses a message back with quick-xml (any syntax error fails).
fn parse(xml: &str) -> Node {
    use quick_xml::events::{BytesStart, Event};
    let node = |s: &BytesStart| Node {
        name: s.name().into_inner().to_owned(),
        attrs: s
            .attributes()
            .map(|a| {
                let a = a.expect("well-formed attribute");
                (
                    a.key.into_inner().to_owned(),
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .expect("escaped value")
                        .into_owned(),
                )
            })
            .collect(),
        ..Node::default()
    };
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut stack = vec![Node::default()];
    loop {
        match reader.read_event().expect("well-formed XML") {
            Event::Start(s) => stack.push(node(&s)),
            Event::Empty(s) => {
                let n = node(&s);
                stack.last_mut().unwrap().children.push(n);
            }
            Event::End(_) => {
                let n = stack.pop().unwrap();
                stack.last_mut().unwrap().children.push(n);
            }
            Event::Text(t) => stack.last_mut().unwrap().text.push_str(&t.xml10_content()),
            Event::Eof => break,
            other => panic!("unexpected {other:?} in {xml}"),
        }
    }
    let mut root = stack.pop().unwrap();
    assert!(stack.is_empty(), "unclosed elements in {xml}");
    assert_eq!(root.children.len(), 1, "one root element: {xml}");
    root.children.pop().unwrap()
}

fn event(action: Action, outcome: Outcome, method: Method, detail: &str) -> AuditEvent {
    AuditEvent {
        time_ms: 1_764_115_200_123,
        actor: if method == Method::Dicom {
            "MAMMO1".to_owned()
        } else {
            "dr.aliya".to_owned()
        },
        role: Some(Role::Reader),
        method,
        source: "10.1.2.3".to_owned(),
        action,
        outcome,
        status: Some(200),
        patient_id: Some("KZ-77".to_owned()),
        study_uid: Some("1.2.3".to_owned()),
        series_uid: None,
        sop_uid: None,
        detail: Some(detail.to_owned()),
    }
}

fn coded(node: &Node) {
    for attr in ["csd-code", "codeSystemName", "originalText"] {
        assert!(!node.attr(attr).is_empty(), "{attr} of {node:#?}");
    }
}

/// The structure of PS3.15 A.5.1: element order, required attributes,
/// enumerated values, coded values, base64 where the schema says so.
fn check_schema(m: &Node) {
    assert_eq!(m.name, "AuditMessage");
    let names: Vec<&str> = m.children.iter().map(|c| c.name.as_str()).collect();
    let participants = names.iter().filter(|n| **n == "ActiveParticipant").count();
    let objects = names.len() - participants - 2;
    let mut expected = vec!["EventIdentification"];
    expected.extend(std::iter::repeat_n("ActiveParticipant", participants));
    expected.push("AuditSourceIdentification");
    expected.extend(std::iter::repeat_n(
        "ParticipantObjectIdentification",
        objects,
    ));
    assert_eq!(names, expected);
    assert!(participants >= 2, "the requestor and this archive");

    let ev = m.one("EventIdentification");
    assert!(["C", "R", "U", "D", "E"].contains(&ev.attr("EventActionCode")));
    assert!(["0", "4", "8", "12"].contains(&ev.attr("EventOutcomeIndicator")));
    let time = ev.attr("EventDateTime");
    assert!(
        time.len() == 24
            && time.ends_with('Z')
            && time.chars().enumerate().all(|(i, c)| match i {
                4 | 7 => c == '-',
                10 => c == 'T',
                13 | 16 => c == ':',
                19 => c == '.',
                23 => c == 'Z',
                _ => c.is_ascii_digit(),
            }),
        "xsd:dateTime in UTC: {time}"
    );
    let kinds: Vec<&str> = ev.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(kinds[0], "EventID");
    for (i, kind) in kinds.iter().enumerate().skip(1) {
        match *kind {
            "EventTypeCode" => {
                assert!(kinds[..i].iter().all(|k| *k != "EventOutcomeDescription"))
            }
            "EventOutcomeDescription" => assert_eq!(i, kinds.len() - 1),
            other => panic!("{other} in EventIdentification"),
        }
    }
    for c in ev.all("EventID").chain(ev.all("EventTypeCode")) {
        coded(c);
    }
    assert_eq!(
        ev.all("EventOutcomeDescription").count(),
        usize::from(ev.attr("EventOutcomeIndicator") != "0")
    );

    let mut requestors = 0;
    for p in m.all("ActiveParticipant") {
        assert!(!p.attr("UserID").is_empty());
        match p.attr("UserIsRequestor") {
            "true" => requestors += 1,
            "false" => {}
            other => panic!("UserIsRequestor {other:?}"),
        }
        if let Some(kind) = p.attrs.get("NetworkAccessPointTypeCode") {
            assert_eq!(kind, "2");
            assert!(
                p.attr("NetworkAccessPointID")
                    .parse::<std::net::IpAddr>()
                    .is_ok()
            );
        }
        for c in &p.children {
            assert_eq!(c.name, "RoleIDCode");
            coded(c);
        }
    }
    assert_eq!(requestors, 1, "one requestor");

    let source = m.one("AuditSourceIdentification");
    assert!(!source.attr("AuditSourceID").is_empty());
    assert_eq!(source.one("AuditSourceTypeCode").attr("csd-code"), "4");

    for o in m.all("ParticipantObjectIdentification") {
        assert!(!o.attr("ParticipantObjectID").is_empty());
        assert!(["1", "2", "3", "4"].contains(&o.attr("ParticipantObjectTypeCode")));
        let role: u32 = o.attr("ParticipantObjectTypeCodeRole").parse().unwrap();
        assert!((1..=26).contains(&role));
        let kinds: Vec<&str> = o.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(kinds[0], "ParticipantObjectIDTypeCode");
        coded(&o.children[0]);
        let rank = |k: &str| match k {
            "ParticipantObjectName" | "ParticipantObjectQuery" => 1,
            "ParticipantObjectDetail" => 2,
            "ParticipantObjectDescription" => 3,
            other => panic!("{other} in ParticipantObjectIdentification"),
        };
        let ranks: Vec<u8> = kinds[1..].iter().map(|k| rank(k)).collect();
        assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "order: {kinds:?}");
        assert!(ranks.iter().filter(|r| **r == 1).count() <= 1);
        for d in o.all("ParticipantObjectDetail") {
            assert!(!d.attr("type").is_empty());
            decode(d.attr("value"));
        }
        for q in o.all("ParticipantObjectQuery") {
            decode(&q.text);
        }
    }
}

fn decode(text: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64");
    String::from_utf8(bytes).unwrap()
}

const ALL_ACTIONS: [Action; 13] = [
    Action::Query,
    Action::Retrieve,
    Action::Render,
    Action::Store,
    Action::Delete,
    Action::Login,
    Action::LoginFailed,
    Action::Logout,
    Action::AssociationRefused,
    Action::Users,
    Action::Tokens,
    Action::AuditRead,
    Action::Other,
];

#[test]
fn every_event_is_a_schema_valid_message() {
    for action in ALL_ACTIONS {
        for outcome in [Outcome::Success, Outcome::Refused, Outcome::Failed] {
            for (method, detail) in [
                (Method::Token, "GET /dicomweb/studies?PatientName=Ivanov*"),
                (Method::Session, "POST /admin/users"),
                (
                    Method::Dicom,
                    "C-FIND 1.2.840.10008.5.1.4.1.2.2.1: 1 matches; (0010,0020)=KZ-77",
                ),
                (Method::Dicom, "C-MOVE to DEST: 2 instances of the study"),
                (Method::Cli, "aina audit export"),
            ] {
                for (series, sop, patient, role) in [
                    (None, None, Some("KZ-77"), Some(Role::Reader)),
                    (Some("1.2.3.4"), Some("1.2.3.4.5"), None, None),
                ] {
                    let mut e = event(action, outcome, method, detail);
                    e.series_uid = series.map(str::to_owned);
                    e.sop_uid = sop.map(str::to_owned);
                    e.patient_id = patient.map(str::to_owned);
                    e.role = role;
                    let xml = audit_message(&e, "AINA@pacs");
                    assert!(!xml.contains('\n'), "one line: {xml}");
                    check_schema(&parse(&xml));
                }
            }
        }
    }
}

/// (EventID, EventActionCode, EventTypeCodes, requestor's part,
/// archive's part) of a message.
type Codes = (String, String, Vec<String>, Vec<String>, Vec<String>);

fn expect(id: &str, action: &str, kinds: &[&str], requestor: &[&str], archive: &[&str]) -> Codes {
    (id.into(), action.into(), s(kinds), s(requestor), s(archive))
}

fn codes(m: &Node) -> Codes {
    let ev = m.one("EventIdentification");
    let parts = |requestor: bool| {
        m.all("ActiveParticipant")
            .filter(|p| (p.attr("UserID") == "AINA@pacs") != requestor)
            .flat_map(|p| p.all("RoleIDCode"))
            .filter(|c| c.attr("codeSystemName") == "DCM")
            .map(|c| c.attr("csd-code").to_owned())
            .collect::<Vec<_>>()
    };
    (
        ev.one("EventID").attr("csd-code").to_owned(),
        ev.attr("EventActionCode").to_owned(),
        ev.codes("EventTypeCode")
            .iter()
            .map(|s| s.to_string())
            .collect(),
        parts(true),
        parts(false),
    )
}

fn objects(m: &Node) -> Vec<(String, String, String, String)> {
    m.all("ParticipantObjectIdentification")
        .map(|o| {
            (
                o.attr("ParticipantObjectID").to_owned(),
                o.attr("ParticipantObjectTypeCode").to_owned(),
                o.attr("ParticipantObjectTypeCodeRole").to_owned(),
                o.one("ParticipantObjectIDTypeCode")
                    .attr("csd-code")
                    .to_owned(),
            )
        })
        .collect()
}

fn o(id: &str, kind: &str, role: &str, id_type: &str) -> (String, String, String, String) {
    (id.into(), kind.into(), role.into(), id_type.into())
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn codes_follow_ps3_15() {
    use Action::*;
    use Outcome::*;
    let patient = o("KZ-77", "1", "1", "2");
    let study = o("1.2.3", "2", "3", "110180");
    let cases: Vec<(AuditEvent, Codes)> = vec![
        (
            event(
                Query,
                Success,
                Method::Token,
                "GET /dicomweb/studies?PatientID=KZ-77",
            ),
            expect("110112", "E", &[], &["110153"], &["110152"]),
        ),
        (
            event(Store, Success, Method::Dicom, "C-STORE"),
            expect("110104", "C", &[], &["110153"], &["110152"]),
        ),
        (
            event(
                Retrieve,
                Success,
                Method::Token,
                "GET /dicomweb/studies/1.2.3",
            ),
            expect("110104", "R", &[], &["110152"], &["110153"]),
        ),
        (
            event(
                Render,
                Success,
                Method::Session,
                "GET /dicomweb/studies/1.2.3/rendered",
            ),
            expect("110103", "R", &[], &[], &[]),
        ),
        (
            event(
                Delete,
                Success,
                Method::Token,
                "DELETE /dicomweb/studies/1.2.3",
            ),
            expect("110105", "D", &[], &[], &[]),
        ),
        (
            event(Login, Success, Method::Session, "POST /auth/login"),
            expect("110114", "E", &["110122"], &[], &[]),
        ),
        (
            event(LoginFailed, Refused, Method::Session, "POST /auth/login"),
            expect("110114", "E", &["110122"], &[], &[]),
        ),
        (
            event(Logout, Success, Method::Session, "POST /auth/logout"),
            expect("110114", "E", &["110123"], &[], &[]),
        ),
        (
            event(
                AssociationRefused,
                Refused,
                Method::Dicom,
                "A-ASSOCIATE-RJ: not listed",
            ),
            expect("110113", "E", &["110126"], &[], &[]),
        ),
        (
            event(
                Retrieve,
                Refused,
                Method::Token,
                "GET /dicomweb/studies/1.2.3",
            ),
            expect("110113", "E", &["110132"], &[], &[]),
        ),
        (
            event(
                Users,
                Success,
                Method::Session,
                "PATCH /admin/users/dr.aliya",
            ),
            expect("110113", "E", &["110137"], &[], &[]),
        ),
        (
            event(Tokens, Success, Method::Session, "GET /admin/tokens"),
            expect("110113", "E", &["110132"], &[], &[]),
        ),
        (
            event(AuditRead, Success, Method::Session, "GET /audit?actor=x"),
            expect("110101", "R", &[], &[], &[]),
        ),
    ];
    for (e, expected) in cases {
        let m = parse(&audit_message(&e, "AINA@pacs"));
        assert_eq!(codes(&m), expected, "{e:?}");
    }

    // The query: the request, base64, as search criteria (role 3).
    let e = event(
        Query,
        Success,
        Method::Token,
        "GET /dicomweb/studies?PatientID=KZ-77",
    );
    let m = parse(&audit_message(&e, "AINA@pacs"));
    assert_eq!(
        objects(&m),
        vec![
            o("/dicomweb/studies", "2", "3", "10"),
            study.clone(),
            patient.clone()
        ]
    );
    let query = m.all("ParticipantObjectIdentification").next().unwrap();
    assert_eq!(
        decode(&query.one("ParticipantObjectQuery").text),
        "GET /dicomweb/studies?PatientID=KZ-77"
    );
    // A C-FIND's is named by its information model.
    let e = event(
        Query,
        Success,
        Method::Dicom,
        "C-FIND 1.2.840.10008.5.1.4.1.2.2.1: 1 matches; (0010,0020)=KZ-77",
    );
    let m = parse(&audit_message(&e, "AINA@pacs"));
    assert_eq!(objects(&m)[0].0, "1.2.840.10008.5.1.4.1.2.2.1");
    let requestor = m.all("ActiveParticipant").next().unwrap();
    assert_eq!(requestor.attr("UserID"), "MAMMO1");
    assert_eq!(requestor.attr("AlternativeUserID"), "AETITLES=MAMMO1");
    assert_eq!(requestor.attr("NetworkAccessPointID"), "10.1.2.3");
    assert!(requestor.codes("RoleIDCode").contains(&"reader"));

    // A C-MOVE names its destination; the requestor is another party.
    let e = event(
        Retrieve,
        Success,
        Method::Dicom,
        "C-MOVE to DEST: 2 instances of the study",
    );
    let m = parse(&audit_message(&e, "AINA@pacs"));
    let dest = m
        .all("ActiveParticipant")
        .find(|p| p.attr("UserID") == "DEST")
        .expect("the move destination");
    assert_eq!(
        (dest.attr("UserIsRequestor"), dest.codes("RoleIDCode")),
        ("false", vec!["110152"])
    );
    assert_eq!(codes(&m).3, s(&["110152"]), "only DEST is the destination");

    // A stored instance: its study, with the instance, and its patient.
    let mut e = event(Store, Success, Method::Dicom, "C-STORE");
    e.sop_uid = Some("1.2.3.4.5".into());
    let m = parse(&audit_message(&e, "AINA@pacs"));
    assert_eq!(objects(&m), vec![study.clone(), patient.clone()]);
    let description = m.all("ParticipantObjectIdentification").next().unwrap();
    let class = description
        .one("ParticipantObjectDescription")
        .one("SOPClass");
    assert_eq!(class.attr("NumberOfInstances"), "1");
    assert_eq!(class.one("Instance").attr("UID"), "1.2.3.4.5");
    // Deleting one instance is Instances Accessed, Delete.
    let mut e = event(
        Delete,
        Success,
        Method::Token,
        "DELETE /dicomweb/studies/1.2.3/series/1.2.3.4",
    );
    e.series_uid = Some("1.2.3.4".into());
    assert_eq!(codes(&parse(&audit_message(&e, "AINA@pacs"))).0, "110103");

    // A refused association: the node, and why, in the alert.
    let mut e = event(
        AssociationRefused,
        Refused,
        Method::Dicom,
        "A-ASSOCIATE-RJ: calling AE title not on the allow-list",
    );
    (e.patient_id, e.study_uid, e.status, e.role) = (None, None, None, None);
    let m = parse(&audit_message(&e, "AINA@pacs"));
    assert_eq!(objects(&m), vec![o("10.1.2.3", "2", "13", "110182")]);
    let alert = m.one("ParticipantObjectIdentification");
    assert!(
        decode(alert.one("ParticipantObjectDetail").attr("value"))
            .contains("not on the allow-list")
    );
    assert_eq!(
        m.one("EventIdentification").attr("EventOutcomeIndicator"),
        "4"
    );
    // In an alert the archive reports; the caller is a performer.
    let requestors: Vec<&str> = m
        .all("ActiveParticipant")
        .filter(|p| p.attr("UserIsRequestor") == "true")
        .map(|p| p.attr("UserID"))
        .collect();
    assert_eq!(requestors, vec!["AINA@pacs"]);

    // A refused read: the resource, the study and the patient.
    let mut e = event(
        Retrieve,
        Refused,
        Method::Token,
        "GET /dicomweb/studies/1.2.3?x=1",
    );
    e.status = Some(403);
    let m = parse(&audit_message(&e, "AINA@pacs"));
    assert_eq!(
        objects(&m),
        vec![
            o("/dicomweb/studies/1.2.3", "2", "13", "12"),
            study,
            patient
        ]
    );
    assert_eq!(
        m.one("EventIdentification")
            .one("EventOutcomeDescription")
            .text,
        "refused: status 403"
    );

    // A failed C-FIND: serious failure, with its DIMSE status.
    let mut e = event(
        Query,
        Failed,
        Method::Dicom,
        "C-FIND 1.2.840.10008.5.1.4.1.2.2.1: 0 matches",
    );
    e.status = Some(0xA700);
    let m = parse(&audit_message(&e, "AINA@pacs"));
    let ev = m.one("EventIdentification");
    assert_eq!(ev.attr("EventOutcomeIndicator"), "8");
    assert_eq!(
        ev.one("EventOutcomeDescription").text,
        "failed: DIMSE status 0xA700"
    );

    // The audit log read.
    let e = event(AuditRead, Success, Method::Session, "GET /audit?actor=x");
    let m = parse(&audit_message(&e, "AINA@pacs"));
    let log = m.all("ParticipantObjectIdentification").next().unwrap();
    assert_eq!(
        (
            log.attr("ParticipantObjectTypeCodeRole"),
            log.one("ParticipantObjectName").text.as_str()
        ),
        ("13", "Security Audit Log")
    );
    // Logins name nobody's data.
    let e = event(Login, Success, Method::Session, "POST /auth/login");
    assert!(objects(&parse(&audit_message(&e, "AINA@pacs"))).is_empty());
}

/// What a caller typed cannot break a message, or the one-per-line export.
#[test]
fn hostile_text_stays_one_well_formed_line() {
    let mut e = event(
        Action::LoginFailed,
        Outcome::Refused,
        Method::Session,
        "POST /auth/login",
    );
    e.actor = "a\nb\r<c>&\"d'\0\u{1b}[2J".to_owned();
    e.detail = Some("GET /x?\n<AuditMessage>".to_owned());
    e.action = Action::Query;
    let xml = audit_message(&e, "AINA@pacs");
    assert!(!xml.contains(['\n', '\r', '\0', '\u{1b}']), "{xml}");
    let m = parse(&xml);
    check_schema(&m);
    let requestor = m.all("ActiveParticipant").next().unwrap();
    assert_eq!(
        requestor.attr("UserID"),
        "a\u{fffd}b\u{fffd}<c>&\"d'\u{fffd}\u{fffd}[2J"
    );
}

/// An audit log in memory that fails its first `failures` writes, or
/// waits for `gate` before each.
#[derive(Default)]
struct Memory {
    failures: AtomicUsize,
    gate: Option<tokio::sync::Semaphore>,
    events: Mutex<Vec<AuditEvent>>,
    batches: Mutex<Vec<usize>>,
}

#[async_trait]
impl AuditLog for Memory {
    async fn append(&self, events: &[AuditEvent]) -> Result<(), IndexError> {
        if let Some(gate) = &self.gate {
            let _ = gate.acquire().await;
        }
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(IndexError::Invalid("database down".into()));
        }
        self.events.lock().unwrap().extend_from_slice(events);
        self.batches.lock().unwrap().push(events.len());
        Ok(())
    }

    async fn search(&self, _: &AuditFilter) -> Result<Vec<AuditRecord>, IndexError> {
        unimplemented!("the writer only appends")
    }
}

fn config(export: Option<String>) -> crate::config::Config {
    crate::config::Settings {
        audit_export: export,
        ..Default::default()
    }
    .resolve()
    .unwrap()
}

fn numbered(actor: &str, n: usize) -> AuditEvent {
    let mut e = event(Action::Retrieve, Outcome::Success, Method::Token, "GET /x");
    e.actor = actor.to_owned();
    e.time_ms = n as i64;
    e
}

/// Writes that fail are retried: after the flush every event is stored,
/// once, in the order each recorder recorded them, in bounded batches.
#[tokio::test]
async fn nothing_is_dropped_when_the_database_fails() {
    let log = Arc::new(Memory {
        failures: AtomicUsize::new(3),
        ..Default::default()
    });
    let audit = Audit::start(log.clone(), &config(None)).unwrap();
    let recorders: Vec<_> = (0..4)
        .map(|r| {
            let audit = audit.clone();
            tokio::spawn(async move {
                for n in 0..400 {
                    audit.record(numbered(&format!("r{r}"), n)).await;
                }
            })
        })
        .collect();
    for r in recorders {
        r.await.unwrap();
    }
    audit.flush().await;
    let events = log.events.lock().unwrap();
    assert_eq!(events.len(), 1600);
    for r in 0..4 {
        let times: Vec<i64> = events
            .iter()
            .filter(|e| e.actor == format!("r{r}"))
            .map(|e| e.time_ms)
            .collect();
        assert_eq!(times, (0..400).collect::<Vec<_>>(), "recorder {r}");
    }
    assert_eq!(log.failures.load(Ordering::SeqCst), 0, "it did fail");
    assert!(log.batches.lock().unwrap().iter().all(|b| *b <= BATCH));
}

/// A recorder returns only once its event is in the database: while the
/// database does not answer, every recorder waits (and nothing of what they
/// recorded is lost); once it answers, requests recorded together were
/// written together.
#[tokio::test]
async fn recorders_wait_for_the_database() {
    let log = Arc::new(Memory {
        gate: Some(tokio::sync::Semaphore::new(0)),
        ..Default::default()
    });
    let audit = Audit::start(log.clone(), &config(None)).unwrap();
    let recorded = Arc::new(AtomicUsize::new(0));
    let total = 200;
    let recorders: Vec<_> = (0..total)
        .map(|n| {
            let (audit, recorded) = (audit.clone(), recorded.clone());
            tokio::spawn(async move {
                audit.record(numbered("r", n)).await;
                recorded.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        recorded.load(Ordering::SeqCst),
        0,
        "nobody returns before the write"
    );
    log.gate.as_ref().unwrap().add_permits(1_000_000);
    for r in recorders {
        r.await.unwrap();
    }
    assert_eq!(recorded.load(Ordering::SeqCst), total);
    assert_eq!(log.events.lock().unwrap().len(), total);
    assert!(
        log.batches.lock().unwrap().len() < total / 2,
        "recorded together, written together"
    );
}

/// The file export appends one message per line, across restarts.
#[tokio::test]
async fn file_export_appends_one_message_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.xml");
    let url = format!("file://{}", path.display());
    for round in 1..=2 {
        let log = Arc::new(Memory::default());
        let audit = Audit::start(log.clone(), &config(Some(url.clone()))).unwrap();
        for n in 0..3 {
            audit.record(numbered("dr.aliya", n)).await;
        }
        audit.flush().await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3 * round, "{text}");
        for line in text.lines() {
            let m = parse(line);
            check_schema(&m);
            assert_eq!(
                m.all("ActiveParticipant").next().unwrap().attr("UserID"),
                "dr.aliya"
            );
        }
    }
}

/// The RFC 5424 frame around a message: `<85>1 TIME HOST aina -
/// IHE+RFC-3881 - BOM XML`.
fn check_syslog(message: &str, event: &AuditEvent) {
    let rest = message.strip_prefix("<85>1 ").expect(message);
    let (time, rest) = rest.split_once(' ').unwrap();
    assert_eq!(time, rfc3339(event.time_ms));
    let (host, rest) = rest.split_once(' ').unwrap();
    assert!(!host.is_empty() && host.chars().all(|c| c.is_ascii_graphic()));
    let xml = rest
        .strip_prefix("aina - IHE+RFC-3881 - \u{feff}")
        .expect(rest);
    let m = parse(xml);
    check_schema(&m);
    assert!(
        m.one("AuditSourceIdentification")
            .attr("AuditSourceID")
            .ends_with(&format!("@{host}"))
    );
}

#[tokio::test]
async fn syslog_over_udp() {
    let collector = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let url = format!("syslog+udp://{}", collector.local_addr().unwrap());
    let log = Arc::new(Memory::default());
    let audit = Audit::start(log.clone(), &config(Some(url))).unwrap();
    let e = numbered("dr.aliya", 1_764_115_200_123);
    audit.record(e.clone()).await;
    audit.flush().await;
    let mut buf = vec![0; 65_536];
    let n = tokio::time::timeout(Duration::from_secs(5), collector.recv(&mut buf))
        .await
        .expect("a datagram")
        .unwrap();
    check_syslog(std::str::from_utf8(&buf[..n]).unwrap(), &e);
}

/// Over TCP, RFC 6587 octet counting: `LEN SP MESSAGE`, back to back.
#[tokio::test]
async fn syslog_over_tcp_with_octet_counting() {
    use tokio::io::AsyncReadExt;
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("syslog+tcp://{}", collector.local_addr().unwrap());
    let log = Arc::new(Memory::default());
    let audit = Audit::start(log.clone(), &config(Some(url))).unwrap();
    let mut events = Vec::new();
    for n in 0..3 {
        let mut e = numbered("dr.aliya", 1_764_115_200_000 + n);
        // Non-ASCII: the count is of octets, not characters.
        e.actor = format!("Әлия-{n}");
        events.push(e.clone());
        audit.record(e).await;
    }
    audit.flush().await;
    let (mut stream, _) = collector.accept().await.unwrap();
    let mut received = Vec::new();
    let mut frames = Vec::new();
    while frames.len() < events.len() {
        let mut buf = [0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("more data")
            .unwrap();
        assert!(n > 0, "closed early");
        received.extend_from_slice(&buf[..n]);
        // Take the complete frames.
        while let Some(space) = received.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&received[..space])
                .unwrap()
                .parse()
                .unwrap();
            if received.len() < space + 1 + len {
                break;
            }
            let frame = received[space + 1..space + 1 + len].to_vec();
            received.drain(..space + 1 + len);
            frames.push(String::from_utf8(frame).unwrap());
        }
    }
    for (frame, e) in frames.iter().zip(&events) {
        check_syslog(frame, e);
        assert!(frame.contains(&e.actor));
    }
}

/// A collector that is not there costs the audit log nothing.
#[tokio::test]
async fn a_missing_collector_does_not_hold_up_the_log() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("syslog+tcp://{}", closed.local_addr().unwrap());
    drop(closed);
    let log = Arc::new(Memory::default());
    let audit = Audit::start(log.clone(), &config(Some(url))).unwrap();
    for n in 0..3 {
        audit.record(numbered("dr.aliya", n)).await;
        tokio::time::timeout(Duration::from_secs(2), audit.flush())
            .await
            .expect("flushed without the collector");
    }
    assert_eq!(log.events.lock().unwrap().len(), 3);
}
